//! Where each node of a YAML file is written: its path as the configuration names paths
//! (`routes[1].auth.roles[0]`) mapped to the line and column of its key (or, for a sequence
//! item, of the item). `gatehouse check` uses it to give every problem its position, not
//! only the first one the YAML deserializer stops at.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Line and column (both from 1) of nodes, by path.
pub type Positions = HashMap<String, (usize, usize)>;

/// Line and column of every node of `text` by path; empty when the text is not YAML (the
/// parse error is reported elsewhere).
pub fn locations(text: &str) -> Positions {
    let mut walker = Walker::default();
    let mut parser = Parser::new_from_str(text);
    // Event by event (the parser's own loader recurses once per level): a file nested deeper
    // than anything a configuration needs gets no positions, the deserializer refuses it.
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => return walker.found,
            Ok((event, mark)) => walker.on_event(event, mark),
            Err(_) => return HashMap::new(),
        }
        if walker.stack.len() > MAX_DEPTH {
            return HashMap::new();
        }
    }
}

/// The deepest nesting located; serde_yaml refuses deeper documents anyway (128 levels).
const MAX_DEPTH: usize = 128;

/// A container being walked: a mapping (waiting for a key, or for the value of `key`) or a
/// sequence (at item `next`).
enum Frame {
    Mapping { path: String, key: Option<String> },
    Sequence { path: String, next: usize },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    found: HashMap<String, (usize, usize)>,
}

impl Walker {
    /// The path of the node that starts now, recording where it is; `None` when it is a
    /// mapping key (recorded as the path of its value).
    fn enter_node(&mut self, mark: Marker, scalar: Option<&str>) -> Option<String> {
        let position = (mark.line(), mark.col() + 1);
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Sequence { path, next }) => {
                let item = format!("{path}[{next}]");
                *next += 1;
                // A container item is placed at its first key or item (the parser marks a
                // block mapping where its first value starts).
                if scalar.is_some() {
                    self.found.entry(item.clone()).or_insert(position);
                }
                Some(item)
            }
            Some(Frame::Mapping { path, key }) => match key.take() {
                Some(key) => Some(join(path, &key)),
                None => {
                    let key = scalar.unwrap_or_default().to_string();
                    let full = join(path, &key);
                    self.found.entry(full).or_insert(position);
                    if !path.is_empty() {
                        self.found.entry(path.clone()).or_insert(position);
                    }
                    if let Some(Frame::Mapping { key: slot, .. }) = self.stack.last_mut() {
                        *slot = Some(key);
                    }
                    None
                }
            },
        }
    }
}

/// `base.key`, or `key` at the top.
fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(value, ..) => {
                self.enter_node(mark, Some(&value));
            }
            Event::Alias(_) => {
                self.enter_node(mark, Some(""));
            }
            Event::MappingStart(..) => {
                let path = self.enter_node(mark, None).unwrap_or_default();
                self.stack.push(Frame::Mapping { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.enter_node(mark, None).unwrap_or_default();
                self.stack.push(Frame::Sequence { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_items_are_located_in_block_and_flow_style() {
        let text =
            "listen: x\nroutes:\n  - path: /\n    auth: {roles: [a, b], bogus: 1}\n  - path: /b\n";
        let found = locations(text);
        assert_eq!(found.get("listen"), Some(&(1, 1)));
        assert_eq!(found.get("routes"), Some(&(2, 1)));
        assert_eq!(found.get("routes[0]"), Some(&(3, 5)));
        assert_eq!(found.get("routes[0].path"), Some(&(3, 5)));
        assert_eq!(found.get("routes[0].auth"), Some(&(4, 5)));
        assert_eq!(found.get("routes[0].auth.roles[1]"), Some(&(4, 23)));
        assert_eq!(found.get("routes[0].auth.bogus"), Some(&(4, 27)));
        assert_eq!(found.get("routes[1].path"), Some(&(5, 5)));
    }

    #[test]
    fn text_that_is_not_yaml_has_no_locations() {
        assert!(locations("a: [").is_empty());
    }

    #[test]
    fn deep_nesting_gets_no_locations_and_no_stack_overflow() {
        let block = format!("bogus:\n  {}x\n", "- ".repeat(20_000));
        assert!(locations(&block).is_empty());
        let flow = format!("bogus: {}x{}\n", "[".repeat(250), "]".repeat(250));
        assert!(locations(&flow).is_empty());
        let fine = format!("ok: {}x{}\n", "[".repeat(10), "]".repeat(10));
        assert_eq!(locations(&fine).get("ok"), Some(&(1, 1)));
    }
}
