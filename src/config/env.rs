//! `${VAR}` and `${VAR:-default}` substitution in the configuration text, before YAML parsing.
//!
//! Comments are left alone, so a comment can mention a variable that is not set: a line whose
//! first non-blank character is `#`, and the rest of a line from a `#` that YAML reads as a
//! comment's start (after a blank, outside quotes, not inside a block scalar). Substituted
//! values are remembered so that error messages can be scrubbed of them (they are often
//! secrets).

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
    // The indentation of the line that opened the block scalar (`key: |`) being read, if any.
    let mut block: Option<usize> = None;
    for (index, line) in input.split_inclusive('\n').enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let blank = line.trim().is_empty();
        let in_block = block.is_some_and(|opened| blank || indent > opened);
        if !in_block {
            block = None;
        }
        if line.trim_start().starts_with('#') {
            out.text.push_str(line);
            continue;
        }
        // Inside a block scalar a `#` is text, not a comment.
        let code = match in_block {
            true => line.len(),
            false => comment_start(line).unwrap_or(line.len()),
        };
        substitute_line(&line[..code], index + 1, &lookup, &mut out, &mut errors);
        out.text.push_str(&line[code..]);
        if !in_block && opens_block_scalar(&line[..code]) {
            block = Some(indent);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Where the comment of `line` starts: the first `#` outside quotes that follows a blank (a
/// `#` inside a plain scalar, `a#b`, is text); `None` when it has none.
fn comment_start(line: &str) -> Option<usize> {
    let (mut double, mut single) = (false, false);
    let (mut previous, mut last) = (' ', ' ');
    let mut escaped = false;
    for (at, c) in line.char_indices() {
        match c {
            '"' if !single && (double || starts_scalar(previous)) && !escaped => double = !double,
            '\'' if !double && (single || starts_scalar(previous)) => single = !single,
            '#' if !double && !single && last.is_whitespace() => return Some(at),
            _ => {}
        }
        escaped = double && c == '\\' && !escaped;
        if !c.is_whitespace() {
            previous = c;
        }
        last = c;
    }
    None
}

/// True when `code` (a line without its comment) ends with a block scalar's header (`key: |`,
/// `- >-`, `key: |2+`), so the lines indented under it are the scalar's text.
fn opens_block_scalar(code: &str) -> bool {
    let code = code.trim_end();
    let header = code.trim_end_matches(|c: char| c.is_ascii_digit() || c == '+' || c == '-');
    let Some(before) = header
        .strip_suffix('|')
        .or_else(|| header.strip_suffix('>'))
    else {
        return false;
    };
    before.is_empty() || before.ends_with([' ', '\t'])
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
        let place = Place::of(&line[..line.len() - rest.len() + start], &after[end + 1..]);
        let written = expression_value(&after[..end], lookup).and_then(|(value, from_env)| {
            place
                .written(&value, &after[..end])
                .map(|w| (value, from_env, w))
        });
        match written {
            Ok((value, from_env, written)) => {
                // The environment's values are scrubbed from messages (a default is written
                // in the file itself; scrubbing it would garble messages that share its words).
                if from_env && value.len() >= 4 {
                    out.values.push(value);
                }
                out.text.push_str(&written);
            }
            Err(message) => errors.push(format!("line {line_number}: {message}")),
        }
        rest = &after[end + 1..];
    }
    out.text.push_str(rest);
}

/// Where in the YAML text an expression stands, which decides how its value is written so that
/// YAML reads back exactly the value: never a comment, a second key, an anchor or a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Inside a double-quoted scalar: written with JSON's escapes (YAML's own).
    DoubleQuoted,
    /// Inside a single-quoted scalar: `'` doubled.
    SingleQuoted,
    /// The whole of a plain scalar (`key: ${X}`): as is when YAML reads it back as written
    /// (so `threads: ${N}` stays a number), else as one double-quoted string.
    Whole { flow: bool },
    /// Part of a plain scalar (`http://${HOST}`): as is, or refused when YAML would read it
    /// otherwise.
    Part { flow: bool },
}

impl Place {
    /// The place of an expression after `before` and before `after` on its line.
    fn of(before: &str, after: &str) -> Place {
        let (mut double, mut single, mut depth) = (false, false, 0i32);
        let mut previous = ' ';
        let mut escaped = false;
        for c in before.chars() {
            match c {
                '"' if !single && (double || starts_scalar(previous)) && !escaped => {
                    double = !double
                }
                '\'' if !double && (single || starts_scalar(previous)) => single = !single,
                '[' | '{' if !double && !single => depth += 1,
                ']' | '}' if !double && !single => depth -= 1,
                _ => {}
            }
            escaped = double && c == '\\' && !escaped;
            if !c.is_whitespace() {
                previous = c;
            }
        }
        let flow = depth > 0;
        if double {
            return Place::DoubleQuoted;
        }
        if single {
            return Place::SingleQuoted;
        }
        let opens = starts_scalar(previous);
        let next = after.trim_start();
        let closes = next.is_empty()
            || next.starts_with('#') && after.starts_with(char::is_whitespace)
            || (flow && next.starts_with([',', ']', '}']));
        match opens && closes {
            true => Place::Whole { flow },
            false => Place::Part { flow },
        }
    }

    /// `value` as written at this place, or why it cannot be (naming `expression`, never the
    /// value).
    fn written(self, value: &str, expression: &str) -> Result<String, String> {
        let name = expression.split(":-").next().unwrap_or(expression);
        match self {
            Place::DoubleQuoted => Ok(escaped(value)),
            Place::SingleQuoted if value.chars().any(breaks_or_controls) => Err(format!(
                "the value of {name} holds a line break or control character: write \"${{{name}}}\" in double quotes"
            )),
            Place::SingleQuoted => Ok(value.replace('\'', "''")),
            // An empty value is written `""`: unquoted, YAML would read nothing (null).
            Place::Whole { flow } if reads_as_written(value, flow) && !reads_as_other(value) => {
                Ok(value.to_string())
            }
            Place::Whole { .. } => Ok(format!("\"{}\"", escaped(value))),
            Place::Part { flow } if value.is_empty() || reads_as_written(value, flow) => {
                Ok(value.to_string())
            }
            Place::Part { .. } => Err(format!(
                "the value of {name} would not read as written inside an unquoted value: put the whole value in double quotes"
            )),
        }
    }
}

/// `value` for the inside of a YAML double-quoted scalar: `"` and `\` escaped, and every
/// character YAML would not keep as it is (a control character, a line or paragraph separator,
/// a BOM) as `\uXXXX`, so the scalar holds exactly `value` on one line.
fn escaped(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if breaks_or_controls(c) || c == '\u{FEFF}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out
}

/// True for a control character or one YAML reads as a line break (NEL, U+2028, U+2029).
fn breaks_or_controls(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// True when `value`, a whole unquoted scalar, would read as nothing (`null`, `~`) or as a
/// whole number too large for YAML's integers, rather than as its text.
fn reads_as_other(value: &str) -> bool {
    let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
    matches!(value, "null" | "Null" | "NULL" | "~")
        || (!digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && value.parse::<i64>().is_err()
            && value.parse::<u64>().is_err())
}

/// True when a scalar may start after `previous` (the last non-blank character before it).
fn starts_scalar(previous: char) -> bool {
    matches!(previous, ' ' | ':' | '-' | '[' | '{' | ',' | '?')
}

/// True when YAML reads `value`, written unquoted, back as these same characters: no comment,
/// no `key: value`, no anchor, alias, tag or block indicator, no quote, no surrounding blank,
/// no control character, and in a flow collection no `,`, `[`, `]`, `{` or `}`.
fn reads_as_written(value: &str, flow: bool) -> bool {
    let Some(first) = value.chars().next() else {
        return false;
    };
    let indicator = "-?:,[]{}#&*!|>'\"%@`".contains(first)
        && !(first == '-' && value[1..].starts_with(|c: char| c.is_ascii_digit()));
    !indicator
        && value.trim() == value
        && !value
            .chars()
            .any(|c| breaks_or_controls(c) || c == '\u{FEFF}')
        && !value.contains(" #")
        && !value.contains(": ")
        && !value.ends_with(':')
        && !(flow && value.contains([',', '[', ']', '{', '}']))
}

/// The value of one `NAME` or `NAME:-default` expression, and whether it came from the
/// environment (not the default); or why there is none (naming the variable, never a value).
fn expression_value(
    expression: &str,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<(String, bool), String> {
    let (name, default) = match expression.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (expression, None),
    };
    let valid_name =
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(format!("`${{{name}}}` is not a valid variable name"));
    }
    match (lookup(name), default) {
        (Some(value), _) => Ok((value, true)),
        (None, Some(default)) => Ok((default.to_string(), false)),
        (None, None) => Err(format!(
            "environment variable {name} is not set and has no default (write ${{{name}:-default}})"
        )),
    }
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
        assert_eq!(out.text, "a: s3cr3t-value\nb: dflt\nc: \"\"\n");
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
        // A trailing comment is a comment too; a `#` in quotes or in a plain value is not.
        let cases = [
            ("threads: 2 # ${MISSING}\n", "threads: 2 # ${MISSING}\n"),
            ("k: ${SET} # ${MISSING}\n", "k: s3cr3t-value # ${MISSING}\n"),
            ("- {a: 1} # ${MISSING}", "- {a: 1} # ${MISSING}"),
            (
                "k: \"a #${SET}\" # ${MISSING}\n",
                "k: \"a #s3cr3t-value\" # ${MISSING}\n",
            ),
            ("k: 'a #${SET}'\n", "k: 'a #s3cr3t-value'\n"),
            ("u: http://h/#${SET}\n", "u: http://h/#s3cr3t-value\n"),
        ];
        for (text, expected) in cases {
            assert_eq!(substitute(text, env).expect(text).text, expected, "{text}");
        }
        for text in [
            "k: ${MISSING} # note\n",
            "k: \"# ${MISSING}\"\n",
            "u: a#${MISSING}\n",
        ] {
            assert!(substitute(text, env).is_err(), "{text}");
        }
    }

    #[test]
    fn a_hash_inside_a_block_scalar_is_text() {
        let text = "body: |  # ${MISSING}\n  a # ${SET}\n\n  b\nnext: 1 # ${MISSING}\n";
        let out = substitute(text, env).expect("ok");
        assert_eq!(
            out.text,
            "body: |  # ${MISSING}\n  a # s3cr3t-value\n\n  b\nnext: 1 # ${MISSING}\n"
        );
        assert!(substitute("- >-\n  x # ${MISSING}\n", env).is_err());
    }

    #[test]
    fn an_empty_value_reads_as_an_empty_string() {
        let cases = [
            ("k: ${EMPTY}\n", "k: \"\"\n"),
            ("- {k: ${EMPTY}}\n", "- {k: \"\"}\n"),
            ("k: ${UNSET:-}\n", "k: \"\"\n"),
            ("u: http://${EMPTY}x\n", "u: http://x\n"),
            ("k: \"${EMPTY}\"\n", "k: \"\"\n"),
        ];
        for (text, expected) in cases {
            let out = substitute(text, env).expect(text);
            assert_eq!(out.text, expected, "{text}");
            let parsed: serde_yaml::Value = serde_yaml::from_str(&out.text).expect("yaml");
            assert!(
                !format!("{parsed:?}").contains("Null"),
                "{text}: {parsed:?}"
            );
        }
    }

    fn with(value: &str) -> impl Fn(&str) -> Option<String> + '_ {
        move |name| (name == "V").then(|| value.to_string())
    }

    #[test]
    fn a_value_is_written_so_yaml_reads_back_exactly_it() {
        let cases = [
            // As is where YAML reads it back as written: numbers stay numbers.
            ("n: ${V}\n", "2", "n: 2\n"),
            (
                "url: http://${V}:80\n",
                "host.example",
                "url: http://host.example:80\n",
            ),
            ("k: ${V} # note\n", "abc", "k: abc # note\n"),
            // Quoted where it would not: a comment, a key, an anchor, a list, a line break.
            (
                "k: ${V}\n",
                "long secret #tail",
                "k: \"long secret #tail\"\n",
            ),
            ("k: ${V}\n", "*star", "k: \"*star\"\n"),
            ("k: ${V}\n", "[a]", "k: \"[a]\"\n"),
            ("k: ${V}\n", "X\n  bogus: [", "k: \"X\\u000a  bogus: [\"\n"),
            ("- {key: ${V}}\n", "a,b", "- {key: \"a,b\"}\n"),
            ("- {key: ${V}, x: 1}\n", "ok", "- {key: ok, x: 1}\n"),
            // Text that would read as nothing or as a number too large: quoted.
            ("k: ${V}\n", "null", "k: \"null\"\n"),
            ("k: ${V}\n", "~", "k: \"~\"\n"),
            (
                "k: ${V}\n",
                "1234567890123456789012",
                "k: \"1234567890123456789012\"\n",
            ),
            // Line separators and controls YAML would fold or refuse: escaped.
            (
                "k: ${V}\n",
                "a\u{2028}b\u{7f}c",
                "k: \"a\\u2028b\\u007fc\"\n",
            ),
            // Inside quotes: escaped for them.
            ("k: \"${V}\"\n", "a\"b\\c", "k: \"a\\\"b\\\\c\"\n"),
            ("k: 'x${V}'\n", "it's", "k: 'xit''s'\n"),
        ];
        for (text, value, expected) in cases {
            let out = substitute(text, with(value)).expect(text);
            assert_eq!(out.text, expected, "{text} with {value:?}");
            let parsed: serde_yaml::Value = serde_yaml::from_str(&out.text).expect("yaml");
            let read = match &parsed {
                serde_yaml::Value::Sequence(items) => items[0]["key"].clone(),
                map => map
                    .get("k")
                    .or(map.get("n"))
                    .or(map.get("url"))
                    .cloned()
                    .unwrap_or_default(),
            };
            if text.starts_with("k: ${V}")
                || text.starts_with("k: \"")
                || text.starts_with("- {key: ${V}}")
            {
                assert_eq!(read.as_str(), Some(value), "{text} with {value:?}");
            }
        }
        // Inside an unquoted value, a value that would read otherwise is refused, unnamed.
        let errors = substitute("url: http://${V}:80\n", with("a #b")).unwrap_err();
        assert!(
            errors[0].contains("V") && !errors[0].contains("a #b"),
            "{errors:?}"
        );
    }

    #[test]
    fn malformed_expressions_are_errors() {
        assert!(substitute("x: ${oops\n", env).is_err());
        assert!(substitute("x: ${a-b}\n", env).is_err());
    }
}
