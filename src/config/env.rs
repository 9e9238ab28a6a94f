//! `${VAR}` and `${VAR:-default}` substitution in the configuration text, before YAML parsing.
//!
//! Lines whose first non-blank character is `#` are left alone, so a comment can mention a
//! variable that is not set. Substituted values are remembered so that error messages can be
//! scrubbed of them (they are often secrets).

/// The text after substitution, and every value that was substituted in.
#[derive(Debug, Default)]
pub struct Substituted {
    /// The configuration text with variables replaced.
    pub text: String,
    /// Values substituted in (for redaction of messages).
    pub values: Vec<String>,
}

/// Replaces `${VAR}` and `${VAR:-default}` using `lookup`.
///
/// Returns every unset variable without a default as an error message naming the line and the
/// variable (never a value).
pub fn substitute(
    input: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Substituted, Vec<String>> {
    let mut out = Substituted::default();
    let mut errors = Vec::new();
    for (index, line) in input.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.text.push_str(line);
        } else {
            substitute_line(line, index + 1, &lookup, &mut out, &mut errors);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Substitutes the expressions of one line (number `line_number`) into `out`, adding a
/// message to `errors` for each one that cannot be substituted.
fn substitute_line(
    line: &str,
    line_number: usize,
    lookup: &impl Fn(&str) -> Option<String>,
    out: &mut Substituted,
    errors: &mut Vec<String>,
) {
    let mut rest = line;
    while let Some(start) = rest.find("${") {
        out.text.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            errors.push(format!(
                "line {line_number}: unterminated `${{` (write `${{NAME}}`)"
            ));
            out.text.push_str(&rest[start..]);
            return;
        };
        match expression_value(&after[..end], lookup) {
            Ok(value) => {
                if value.len() >= 4 {
                    out.values.push(value.clone());
                }
                out.text.push_str(&value);
            }
            Err(message) => errors.push(format!("line {line_number}: {message}")),
        }
        rest = &after[end + 1..];
    }
    out.text.push_str(rest);
}

/// The value of one `NAME` or `NAME:-default` expression, or why there is none (naming the
/// variable, never a value).
fn expression_value(
    expression: &str,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let (name, default) = match expression.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (expression, None),
    };
    let valid_name =
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(format!("`${{{name}}}` is not a valid variable name"));
    }
    lookup(name)
        .or_else(|| default.map(str::to_string))
        .ok_or_else(|| {
            format!(
            "environment variable {name} is not set and has no default (write ${{{name}:-default}})"
        )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("s3cr3t-value".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_and_defaults() {
        let out = substitute("a: ${SET}\nb: ${UNSET:-dflt}\nc: ${EMPTY:-x}\n", env).expect("ok");
        assert_eq!(out.text, "a: s3cr3t-value\nb: dflt\nc: \n");
        assert!(out.values.contains(&"s3cr3t-value".to_string()));
    }

    #[test]
    fn unset_variable_is_an_error_naming_it() {
        let errors = substitute("x: 1\nkey: ${MISSING}\n", env).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("line 2"));
        assert!(errors[0].contains("MISSING"));
    }

    #[test]
    fn comments_are_not_substituted() {
        let out = substitute("# uses ${MISSING}\nx: 1\n", env).expect("ok");
        assert!(out.text.contains("${MISSING}"));
    }

    #[test]
    fn malformed_expressions_are_errors() {
        assert!(substitute("x: ${oops\n", env).is_err());
        assert!(substitute("x: ${a-b}\n", env).is_err());
    }
}
