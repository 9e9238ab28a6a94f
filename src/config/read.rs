//! Reading the file as written into its serde structs, reporting every problem of its shape in
//! one run: an unknown key or a value of the wrong type is recorded with its path, removed,
//! and the rest read again, so `gatehouse check` on a file with three mistakes names all
//! three, each with the line and column where it is written ([`super::locate`]).

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
        Err(e) => return (None, vec![problem(String::new(), &e.to_string())]),
    };
    let mut problems = Vec::new();
    while problems.len() < MAX_PROBLEMS {
        let error = match serde_path_to_error::deserialize::<_, T>(doc.clone()) {
            Ok(value) => return (Some(value), problems),
            Err(error) => error,
        };
        let message = error.inner().to_string();
        let mut segments: Vec<&Segment> = error.path().iter().collect();
        // An unknown key can be recorded twice (as the key, then as its value's place).
        if let [.., Segment::Map { key: a }, Segment::Map { key: b }] = segments.as_slice() {
            if a == b && message.starts_with("unknown field") {
                segments.pop();
            }
        }
        let path = path_text(&segments);
        let location = position_of(positions, &path).or_else(|| {
            problems
                .is_empty()
                .then(|| first_location::<T>(text))
                .flatten()
        });
        let message = match location {
            Some((line, column)) => format!("{message} (line {line}, column {column})"),
            None => message,
        };
        problems.push(problem(path, &message));
        if !remove(&mut doc, &segments) {
            return (None, problems);
        }
    }
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

/// A problem at `path`, its message stripped of literal values (they may be secrets).
fn problem(path: String, message: &str) -> ConfigError {
    let message = super::redact_serde_message(message);
    // serde_yaml appends its own position; the caller adds the original one when it has it.
    let message = match message.find(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message,
    };
    ConfigError { path, message }
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
}
