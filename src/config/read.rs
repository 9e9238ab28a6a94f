//! Reading the file as written into its serde structs, reporting every problem of its shape in
//! one run: an unknown key or a value of the wrong type is recorded with its path, removed,
//! and the rest read again, so `gatehouse check` on a file with three mistakes names all
//! three, each with the line and column where it is written ([`super::locate`]), in plain
//! words ([`super::wording`]). A wrongly typed required value is reported once: it is replaced
//! by a stand-in of the right type rather than reported again as missing.

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use serde_yaml::Value;

use super::locate::Positions;
use super::ConfigError;

/// How many shape problems are collected before giving up on a file.
const MAX_PROBLEMS: usize = 64;

/// `text` read into `T`: the value when the file (less its offending keys) reads, and every
/// shape problem found. `None` with the problems when it cannot be read at all (bad YAML, a
/// missing required key).
pub fn read_all<T: DeserializeOwned>(
    text: &str,
    positions: &Positions,
) -> (Option<T>, Vec<ConfigError>) {
    let mut doc: Value = match serde_yaml::from_str(text) {
        Ok(doc) => doc,
        Err(e) => return (None, vec![syntax_problem(&e)]),
    };
    let mut problems: Vec<ConfigError> = Vec::new();
    // List items removed so far: (the list's path as written, the item's index as written).
    let mut removed: Vec<(String, usize)> = Vec::new();
    while problems.len() < MAX_PROBLEMS {
        let error = match serde_path_to_error::deserialize::<_, T>(doc.clone()) {
            Ok(value) => return (Some(value), problems),
            Err(error) => error,
        };
        let message = error.inner().to_string();
        if let Some(field) = reported_missing(&message, error.path(), &problems, &removed) {
            // A required value already reported for its type: stand in for it, or stop.
            if stand_in::<T>(&mut doc, error.path(), field) {
                continue;
            }
            return (None, problems);
        }
        let mut segments: Vec<&Segment> = error.path().iter().collect();
        // An unknown key can be recorded twice (as the key, then as its value's place).
        if let [.., Segment::Map { key: a }, Segment::Map { key: b }] = segments.as_slice() {
            if a == b && message.starts_with("unknown field") {
                segments.pop();
            }
        }
        let path = written_path(&segments, &removed);
        let location = position_of(positions, &path).or_else(|| {
            problems
                .is_empty()
                .then(|| first_location::<T>(text))
                .flatten()
        });
        let mut problem = problem(path, &message);
        if let Some((line, column)) = location {
            problem.message = format!("{} (line {line}, column {column})", problem.message);
        }
        if let Some((Segment::Seq { .. }, parents)) = segments.split_last() {
            let written = &problem.path;
            let index = written[written.rfind('[').map_or(0, |at| at + 1)..written.len() - 1]
                .parse()
                .unwrap_or(0);
            removed.push((written_path(parents, &removed), index));
        }
        problems.push(problem);
        if !remove(&mut doc, &segments) {
            return (None, problems);
        }
    }
    problems.push(ConfigError {
        path: String::new(),
        message: format!(
            "reading stopped after these {MAX_PROBLEMS} problems of the file's shape (there may be more): fix them and check again (what the rest means is not checked yet)"
        ),
    });
    (None, problems)
}

/// Where the node at `path` is written, or else its nearest written parent (a missing key is
/// placed at the mapping that lacks it).
pub fn position_of(positions: &Positions, path: &str) -> Option<(usize, usize)> {
    let mut path = path;
    loop {
        if let Some(position) = positions.get(path) {
            return Some(*position);
        }
        let parent = path.rfind(['.', '[']).map(|at| &path[..at])?;
        if parent.is_empty() {
            return None;
        }
        path = parent;
    }
}

/// The path as written in the file of a node at `segments` of the document after the list
/// items in `removed` (each by its list's path and its index as written) were taken out.
fn written_path(segments: &[&Segment], removed: &[(String, usize)]) -> String {
    let mut text = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => {
                let mut taken: Vec<usize> = removed
                    .iter()
                    .filter(|(list, _)| *list == text)
                    .map(|(_, at)| *at)
                    .collect();
                taken.sort_unstable();
                let mut index = *index;
                for at in taken {
                    if at <= index {
                        index += 1;
                    }
                }
                text.push_str(&format!("[{index}]"));
            }
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    text
}

/// `routes[1].auth`, as the rest of the configuration names paths.
fn path_text(segments: &[&Segment]) -> String {
    let mut text = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => text.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    text
}

/// A problem at `path`, its message stripped of literal values (they may be secrets) and put
/// in plain words.
fn problem(path: String, message: &str) -> ConfigError {
    let message = super::redact_serde_message(message);
    // serde_yaml appends its own position; the caller adds the original one when it has it.
    let message = match message.find(" at line ") {
        Some(at) => &message[..at],
        None => &message,
    };
    let message = super::wording::plain(&path, message);
    ConfigError { path, message }
}

/// serde_yaml's words, after the value's path and `: ` when it has one, for an integer it
/// cannot hold (beyond 64 bits).
const INTEGER_OUT_OF_RANGE: &str = "invalid type: integer, expected any YAML value";

/// How serde_yaml's messages about a value start, after the value's path and `: ` (the
/// scanner's own messages carry no path).
const VALUE_MESSAGES: [&str; 9] = [
    "duplicate entry with key",
    "invalid type",
    "invalid value",
    "invalid length",
    "unknown variant",
    "unknown field",
    "missing field",
    "recursion limit exceeded",
    "repetition limit exceeded",
];

/// A YAML syntax error, with the line and column where the parser stopped. A message about a
/// value is split from the value's path, which is shown as any path is (see
/// [`super::wording::shown_path`]); a duplicate key is shown as any key is. An integer too large
/// to read stops the reading too; it is named as a number out of range, not as a syntax error.
fn syntax_problem(error: &serde_yaml::Error) -> ConfigError {
    // Matched once the literal is out of the message (serde quotes the number in it).
    let text = super::redact_serde_message(&error.to_string());
    let text = text
        .find(" at line ")
        .map_or(text.as_str(), |at| &text[..at]);
    let (path, message) = split_path(text);
    let mut problem = if message == INTEGER_OUT_OF_RANGE {
        ConfigError {
            path: path.to_string(),
            message: "invalid value: a number out of range (the rest of the file is checked \
                      once it is fixed)"
                .to_string(),
        }
    } else {
        ConfigError {
            path: path.to_string(),
            message: format!("YAML syntax error: {}", shown_duplicate_key(message)),
        }
    };
    if let Some(location) = error.location() {
        let (line, column) = (location.line(), location.column());
        problem.message = format!("{} (line {line}, column {column})", problem.message);
    }
    problem
}

/// serde_yaml's `path: message` split into its path (empty when there is none) and message.
fn split_path(text: &str) -> (&str, &str) {
    if VALUE_MESSAGES.iter().any(|m| text.starts_with(m)) {
        return ("", text);
    }
    let split = VALUE_MESSAGES
        .iter()
        .filter_map(|m| text.find(&format!(": {m}")))
        .min();
    match split {
        Some(at) => (&text[..at], &text[at + 2..]),
        None => ("", text),
    }
}

/// `message` with the key of a `duplicate entry with key "…"` shown as keys are.
fn shown_duplicate_key(message: &str) -> String {
    const DUPLICATE: &str = "duplicate entry with key \"";
    let Some(key) = message.strip_prefix(DUPLICATE) else {
        return message.to_string();
    };
    match key.rsplit_once('"') {
        Some((key, after)) => format!("{DUPLICATE}{}\"{after}", super::wording::shown_key(key)),
        None => "duplicate entry".to_string(),
    }
}

/// The field of a `missing field` error whose value was already reported (for its type) and
/// removed, so that it is not reported twice.
fn reported_missing<'a>(
    message: &'a str,
    path: &serde_path_to_error::Path,
    problems: &[ConfigError],
    removed: &[(String, usize)],
) -> Option<&'a str> {
    let field = message.strip_prefix("missing field `")?.strip_suffix('`')?;
    let segments: Vec<&Segment> = path.iter().collect();
    let parent = written_path(&segments, removed);
    let full = if parent.is_empty() {
        field.to_string()
    } else {
        format!("{parent}.{field}")
    };
    problems.iter().any(|p| p.path == full).then_some(field)
}

/// Values that stand in for a removed required value, one of which has its type.
fn stand_ins() -> [Value; 6] {
    [
        Value::String(String::new()),
        Value::Number(0.into()),
        Value::Bool(false),
        Value::Mapping(Default::default()),
        Value::Sequence(Vec::new()),
        Value::String("00000000-0000-0000-0000-000000000000".into()),
    ]
}

/// Puts at `field` of the mapping at `parent` the first stand-in the deserializer accepts
/// there. False when none is accepted (the caller stops reading).
fn stand_in<T: DeserializeOwned>(
    doc: &mut Value,
    parent: &serde_path_to_error::Path,
    field: &str,
) -> bool {
    let parents: Vec<&Segment> = parent.iter().collect();
    let key = Value::String(field.to_string());
    for value in stand_ins() {
        let Some(Value::Mapping(map)) = node(doc, &parents) else {
            return false;
        };
        map.insert(key.clone(), value);
        let rejected = match serde_path_to_error::deserialize::<_, T>(doc.clone()) {
            Ok(_) => false,
            Err(error) => {
                let segments: Vec<&Segment> = error.path().iter().collect();
                let at = path_text(&segments);
                let here = path_text(&parents);
                at == join_path(&here, field)
                    || (at == here && error.inner().to_string().contains(&format!("`{field}`")))
            }
        };
        if !rejected {
            return true;
        }
    }
    if let Some(Value::Mapping(map)) = node(doc, &parents) {
        map.remove(&key);
    }
    false
}

/// `base.key`, or `key` at the top.
fn join_path(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

/// The line and column of the first problem reading `text` into `T`, as the parser gives it.
fn first_location<T: DeserializeOwned>(text: &str) -> Option<(usize, usize)> {
    let error = serde_yaml::from_str::<T>(text).err()?;
    let location = error.location()?;
    Some((location.line(), location.column()))
}

/// Removes the node a problem points at (an unknown key's, or a wrongly typed value's). False
/// when there is nothing to remove (a problem of the whole file, or a key that is missing
/// rather than wrong).
fn remove(doc: &mut Value, path: &[&Segment]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    match (node(doc, parents), last) {
        (Some(Value::Mapping(map)), Segment::Map { key }) => map.remove(key.as_str()).is_some(),
        (Some(Value::Sequence(items)), Segment::Seq { index }) if *index < items.len() => {
            items.remove(*index);
            true
        }
        _ => false,
    }
}

/// The node at `path`, when there is one.
fn node<'a>(doc: &'a mut Value, path: &[&Segment]) -> Option<&'a mut Value> {
    let mut current = doc;
    for segment in path {
        current = match (current, segment) {
            (Value::Mapping(map), Segment::Map { key }) => map.get_mut(key.as_str())?,
            (Value::Sequence(items), Segment::Seq { index }) => items.get_mut(*index)?,
            _ => return None,
        };
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        #[serde(default)]
        count: Option<u32>,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        id: u32,
        #[serde(default)]
        label: Option<String>,
    }

    #[test]
    fn every_shape_problem_is_reported_in_one_run() {
        let text = "name: x\nbogus: 1\ncount: many\nitems:\n  - {id: 1, extra: 2}\n  - {id: 2, label: [1]}\n";
        let (doc, problems) = read_all::<Doc>(text, &crate::config::locate::locations(text));
        assert!(doc.is_some(), "{problems:?}");
        let mut paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        paths.sort_unstable();
        assert_eq!(
            paths,
            vec!["bogus", "count", "items[0].extra", "items[1].label"]
        );
        assert!(problems[0].message.contains("line 2"), "{:?}", problems[0]);
        assert!(
            problems.iter().all(|p| !p.message.contains("many")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_missing_required_key_stops_reading() {
        let (doc, problems) = read_all::<Doc>("bogus: 1\n", &Default::default());
        assert!(doc.is_none());
        assert_eq!(problems[0].path, "bogus");
        assert!(
            problems.iter().any(|p| p.message.contains("missing field")),
            "{problems:?}"
        );
        let (doc, problems) = read_all::<Doc>("name: [unclosed\n", &Default::default());
        assert!(doc.is_none());
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn items_after_a_removed_item_keep_their_index_as_written() {
        let text = "name: x\nitems: [1, {id: 2, extra: 1}, 3, {id: 4, bogus: 1}]\n";
        let (_, problems) = read_all::<Doc>(text, &Default::default());
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["items[0]", "items[1].extra", "items[2]", "items[3].bogus"],
            "{problems:?}"
        );
    }

    #[test]
    fn an_integer_beyond_64_bits_is_named_by_its_path_as_out_of_range() {
        let cases = [
            (
                "name: x\nitems:\n  - id: 99999999999999999999999\n",
                "items[0].id",
                3,
                9,
            ),
            ("name: x\ncount: -99999999999999999999999\n", "count", 2, 8),
            ("name: 0x1ffffffffffffffffffff\n", "name", 1, 7),
            ("99999999999999999999999: x\n", "", 1, 1),
        ];
        for (text, path, line, column) in cases {
            let (doc, problems) = read_all::<Doc>(text, &Default::default());
            assert!(doc.is_none(), "{text}");
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].path, path, "{problems:?}");
            assert!(
                problems[0]
                    .message
                    .starts_with("invalid value: a number out of range"),
                "{problems:?}"
            );
            let at = format!("(line {line}, column {column})");
            assert!(problems[0].message.ends_with(&at), "{problems:?}");
        }
    }

    #[test]
    fn a_syntax_errors_path_and_duplicate_key_are_split_from_its_message() {
        let cases = [
            ("logx:\n  secret:HUNTER2: 1\n  secret:HUNTER2: 2\n", "logx"),
            ("bogus: {pw:HUNTER2: {a: 1, a: 2}}\n", "bogus.pw:HUNTER2"),
            ("bogus: {pw:HUNTER2: !!int abc}\n", "bogus.pw:HUNTER2"),
        ];
        for (text, path) in cases {
            let (doc, problems) = read_all::<Doc>(text, &Default::default());
            assert!(doc.is_none(), "{text}");
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].path, path, "{problems:?}");
            let message = &problems[0].message;
            assert!(message.starts_with("YAML syntax error: "), "{message}");
            assert!(!message.contains("HUNTER2"), "{message}");
            assert!(message.contains("(line "), "{message}");
        }
        assert_eq!(
            shown_duplicate_key("duplicate entry with key \"pw:HUNTER2\""),
            "duplicate entry with key \"pw:…\""
        );
    }

    #[test]
    fn a_yaml_syntax_error_names_its_line_and_column() {
        let text = "name: x\nitems:\n  - id: 1\n   label: y\n";
        let (doc, problems) = read_all::<Doc>(text, &Default::default());
        assert!(doc.is_none());
        assert_eq!(problems.len(), 1, "{problems:?}");
        let message = &problems[0].message;
        assert!(message.starts_with("YAML syntax error: "), "{message}");
        assert!(message.contains("(line 4, column 4)"), "{message}");
    }

    #[test]
    fn a_wrongly_typed_required_value_is_one_problem() {
        let text = "name: [1, 2]\ncount: many\nitems:\n  - {id: x}\n";
        let (doc, problems) = read_all::<Doc>(text, &crate::config::locate::locations(text));
        let mut paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        paths.sort_unstable();
        assert_eq!(paths, vec!["count", "items[0].id", "name"], "{problems:?}");
        assert!(
            doc.is_some(),
            "the stand-ins let the rest be read: {problems:?}"
        );
        assert!(
            problems.iter().all(|p| !p.message.contains("missing")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .all(|p| !super::super::wording::has_jargon(&p.message)),
            "{problems:?}"
        );
    }
}
