//! The header values of a verified token's claims, rendered one claim at a time, the first
//! time that claim is asked for, and kept with the token.
//!
//! A cached token keeps only the values the proxy asked for (the routes' identity headers),
//! not one per claim: with many cached tokens this is most of an entry's memory. The values
//! form an append-only list whose nodes never move, so a lookup is lock-free and a rendered
//! value can be lent out for as long as the token lives.

use std::sync::OnceLock;

use http::HeaderValue;

/// A claim in header form, as rendered once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendered {
    /// The token has no such claim (or it is `null` or an object).
    Absent,
    /// The claim's header value.
    Value(HeaderValue),
    /// The claim cannot be told apart from another in header form.
    Unrepresentable,
}

/// One rendered claim, and the next one rendered after it.
#[derive(Debug)]
struct Node {
    name: Box<str>,
    rendered: Rendered,
    next: OnceLock<Box<Node>>,
}

/// The claims rendered so far, in the order they were first asked for.
#[derive(Debug, Default)]
pub struct RenderedHeaders {
    head: OnceLock<Box<Node>>,
}

impl RenderedHeaders {
    /// Claim `name` in header form: as rendered before, or `render()` now, kept for the next
    /// call. Concurrent first calls for one name may both render, but only one value is kept
    /// and every caller gets that one. The list grows by one node per distinct name asked for,
    /// so callers ask only for names from configuration (a route's identity headers).
    pub fn get_or_render(&self, name: &str, render: impl FnOnce() -> Rendered) -> &Rendered {
        let mut render = Some(render);
        let mut slot = &self.head;
        loop {
            let node = slot.get_or_init(|| {
                let rendered = render.take().map_or(Rendered::Absent, |render| render());
                Box::new(Node {
                    name: name.into(),
                    rendered,
                    next: OnceLock::new(),
                })
            });
            if &*node.name == name {
                return &node.rendered;
            }
            slot = &node.next;
        }
    }

    /// How many claims have been rendered.
    pub fn len(&self) -> usize {
        let mut count = 0;
        let mut slot = &self.head;
        while let Some(node) = slot.get() {
            count += 1;
            slot = &node.next;
        }
        count
    }

    /// True when no claim has been rendered yet.
    pub fn is_empty(&self) -> bool {
        self.head.get().is_none()
    }

    /// The bytes the rendered values hold, with per-allocation overhead (for weighing a cache
    /// entry).
    pub fn estimated_bytes(&self) -> usize {
        let mut bytes = 0;
        let mut slot = &self.head;
        while let Some(node) = slot.get() {
            let value = match &node.rendered {
                Rendered::Value(value) => value.len() + 32,
                _ => 0,
            };
            bytes += std::mem::size_of::<Node>() + 16 + node.name.len() + value;
            slot = &node.next;
        }
        bytes
    }
}

/// Rendered values are derived from the claims: a copy starts empty and renders again.
impl Clone for RenderedHeaders {
    fn clone(&self) -> Self {
        RenderedHeaders::default()
    }
}

/// Rendered values are derived from the claims, so they take no part in equality.
impl PartialEq for RenderedHeaders {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn value(text: &str) -> Rendered {
        Rendered::Value(HeaderValue::from_str(text).expect("header value"))
    }

    #[test]
    fn each_name_renders_once_and_keeps_its_value() {
        let headers = RenderedHeaders::default();
        assert!(headers.is_empty());
        let calls = std::cell::Cell::new(0);
        let render = |text: &'static str| {
            let calls = &calls;
            move || {
                calls.set(calls.get() + 1);
                value(text)
            }
        };
        assert_eq!(headers.get_or_render("sub", render("a")), &value("a"));
        assert_eq!(headers.get_or_render("roles", render("b")), &value("b"));
        assert_eq!(
            headers.get_or_render("nope", || Rendered::Absent),
            &Rendered::Absent
        );
        // Asked again: the kept value, not a new rendering.
        assert_eq!(headers.get_or_render("sub", render("other")), &value("a"));
        assert_eq!(headers.get_or_render("roles", render("other")), &value("b"));
        assert_eq!(calls.get(), 2);
        assert_eq!(headers.len(), 3);
        assert!(headers.estimated_bytes() > 3 * std::mem::size_of::<Node>());
        // A copy renders again; equality ignores what was rendered.
        let copy = headers.clone();
        assert!(copy.is_empty());
        assert_eq!(copy, headers);
    }

    #[test]
    fn concurrent_first_calls_all_get_the_one_kept_value() {
        let headers = Arc::new(RenderedHeaders::default());
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let headers = headers.clone();
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    for name in ["a", "b", "c", "d"] {
                        let rendered = headers.get_or_render(name, || value(&format!("{name}{i}")));
                        seen.push(rendered.clone());
                    }
                    seen
                })
            })
            .collect();
        let seen: Vec<Vec<Rendered>> = threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        assert!(seen.iter().all(|s| s == &seen[0]), "{seen:?}");
        assert_eq!(headers.len(), 4);
    }
}
