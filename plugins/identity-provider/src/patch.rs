//! The three PATCH formats FusionAuth accepts, as pure functions over JSON documents.
//!
//! - `application/json`: FusionAuth's merge — objects merge recursively, `null` removes a
//!   member, and arrays are *appended* to (the documented limitation).
//! - `application/merge-patch+json`: RFC 7396 — like the above, but arrays are replaced.
//! - `application/json-patch+json`: RFC 6902 — `add`, `remove`, `replace`, `move`, `copy` and
//!   `test`, applied in order to a copy; any failing operation (including a `test` whose value
//!   differs) leaves the document untouched and reports which operation failed.
//!
//! Patches apply to the request shape (`{"identityProvider": {...}}`, `{"lambda": {...}}`).
//! The work is bounded ([`MAX_OPERATIONS`], [`MAX_WORK`], the document limits after every
//! operation), and handlers run it on the [`CpuPool`] ([`apply_offloaded`]), never on the
//! threads that serve requests.

use std::sync::Arc;

use gatehouse_plugin_api::{ApiError, CpuPool};
use serde_json::Value;

/// The PATCH format named by a Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchFormat {
    /// `application/json`.
    FusionAuthMerge,
    /// `application/merge-patch+json`.
    MergePatch,
    /// `application/json-patch+json`.
    JsonPatch,
}

impl PatchFormat {
    /// The format of a Content-Type header (parameters such as `charset` ignored); `None` for
    /// anything else (a 415). A missing header means `application/json`.
    pub fn from_content_type(content_type: Option<&str>) -> Option<PatchFormat> {
        let Some(ct) = content_type else {
            return Some(PatchFormat::FusionAuthMerge);
        };
        let essence = ct
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" | "" => Some(PatchFormat::FusionAuthMerge),
            "application/merge-patch+json" => Some(PatchFormat::MergePatch),
            "application/json-patch+json" => Some(PatchFormat::JsonPatch),
            _ => None,
        }
    }
}

/// Why a patch could not be applied; the message names the operation and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchError {
    /// FusionAuth-style code, e.g. `[invalid]` or `[TestFailed]`.
    pub code: &'static str,
    /// What went wrong.
    pub message: String,
}

fn error(code: &'static str, message: impl Into<String>) -> PatchError {
    PatchError {
        code,
        message: message.into(),
    }
}

/// Applies `patch` in `format` to `target`, returning the patched document.
pub fn apply(format: PatchFormat, target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let doc = match format {
        PatchFormat::FusionAuthMerge => {
            let mut doc = target.clone();
            fusionauth_merge(&mut doc, patch);
            doc
        }
        PatchFormat::MergePatch => {
            let mut doc = target.clone();
            merge_patch(&mut doc, patch);
            doc
        }
        PatchFormat::JsonPatch => json_patch(target, patch)?,
    };
    gatehouse_plugin_api::json::check(&doc)
        .map_err(|limit| error("[tooLarge]", format!("The patched document is {limit}.")))?;
    Ok(doc)
}

/// [`apply`] on `cpu`, off the threads that serve requests: the patched document, or a 400
/// (FusionAuth's Errors JSON) naming what failed.
pub async fn apply_offloaded(
    cpu: &CpuPool,
    format: PatchFormat,
    target: Value,
    patch: Arc<Value>,
) -> Result<Value, ApiError> {
    cpu.run(move || apply(format, &target, &patch))
        .await?
        .map_err(|e| ApiError::general(e.code, e.message))
}

/// FusionAuth's `application/json` PATCH merge: arrays are appended to.
pub fn fusionauth_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (key, value) in p {
                if value.is_null() {
                    t.remove(key);
                } else if let Some(existing) = t.get_mut(key) {
                    fusionauth_merge(existing, value);
                } else {
                    t.insert(key.clone(), value.clone());
                }
            }
        }
        (Value::Array(t), Value::Array(p)) => t.extend(p.iter().cloned()),
        (t, p) => *t = p.clone(),
    }
}

/// RFC 7396 JSON Merge Patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(t) = target {
        for (key, value) in p {
            if value.is_null() {
                t.remove(key);
            } else {
                merge_patch(t.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// Splits an RFC 6901 JSON pointer into unescaped tokens.
fn pointer_tokens(pointer: &str) -> Result<Vec<String>, PatchError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer.strip_prefix('/').ok_or_else(|| {
        error(
            "[invalid]",
            "A path is not a JSON pointer (it must start with /).",
        )
    })?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn array_index(token: &str, len: usize, allow_end: bool) -> Option<usize> {
    if allow_end && token == "-" {
        return Some(len);
    }
    if token.is_empty() || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    let index: usize = token.parse().ok()?;
    let limit = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    (index <= limit && (allow_end || len > 0)).then_some(index)
}

fn parent_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Result<&'a mut Value, PatchError> {
    let mut current = doc;
    for token in tokens {
        current = match current {
            Value::Object(map) => map.get_mut(token),
            Value::Array(items) => {
                let len = items.len();
                array_index(token, len, false).and_then(move |i| items.get_mut(i))
            }
            _ => None,
        }
        .ok_or_else(|| error("[invalid]", "A path does not exist in the document."))?;
    }
    Ok(current)
}

fn get<'a>(doc: &'a Value, path: &str) -> Result<&'a Value, PatchError> {
    let tokens = pointer_tokens(path)?;
    let mut current = doc;
    for token in &tokens {
        current = match current {
            Value::Object(map) => map.get(token),
            Value::Array(items) => {
                array_index(token, items.len(), false).and_then(|i| items.get(i))
            }
            _ => None,
        }
        .ok_or_else(|| error("[invalid]", "A path does not exist in the document."))?;
    }
    Ok(current)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), PatchError> {
    let tokens = pointer_tokens(path)?;
    let Some((last, parents)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parents)? {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            let index = array_index(last, items.len(), true)
                .ok_or_else(|| error("[invalid]", "An array index is out of bounds."))?;
            items.insert(index, value);
            Ok(())
        }
        _ => Err(error(
            "[invalid]",
            "The parent of a path is neither an object nor an array.",
        )),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, PatchError> {
    let tokens = pointer_tokens(path)?;
    let Some((last, parents)) = tokens.split_last() else {
        return Err(error("[invalid]", "The whole document cannot be removed."));
    };
    let missing = || error("[invalid]", "A path does not exist in the document.");
    match parent_mut(doc, parents)? {
        Value::Object(map) => map.remove(last).ok_or_else(missing),
        Value::Array(items) => {
            let index = array_index(last, items.len(), false).ok_or_else(missing)?;
            Ok(items.remove(index))
        }
        _ => Err(missing()),
    }
}

fn op_string<'a>(op: &'a Value, name: &str, index: usize) -> Result<&'a str, PatchError> {
    op.get(name).and_then(Value::as_str).ok_or_else(|| {
        error(
            "[invalid]",
            format!("Operation {index} needs a string member [{name}]."),
        )
    })
}

/// RFC 6902 JSON Patch, all or nothing.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops = patch.as_array().ok_or_else(|| {
        error(
            "[invalid]",
            "A JSON Patch (application/json-patch+json) body must be an array of operations.",
        )
    })?;
    if ops.len() > MAX_OPERATIONS {
        return Err(error(
            "[invalid]",
            format!("A JSON Patch may have at most {MAX_OPERATIONS} operations."),
        ));
    }
    let mut doc = target.clone();
    let mut work = 0usize;
    for (index, op) in ops.iter().enumerate() {
        apply_operation(&mut doc, op, index)?;
        // The work is bounded while it is done: a result over the document limits stops here,
        // and so does a patch whose operations have visited too many values in all.
        let values = gatehouse_plugin_api::json::check_counting(&doc).map_err(|limit| {
            error(
                "[tooLarge]",
                format!("Operation {index} makes the document {limit}."),
            )
        })?;
        work = work.saturating_add(values);
        if work > MAX_WORK {
            return Err(error(
                "[tooLarge]",
                format!(
                    "The JSON Patch is over its work limit at operation {index}: its operations \
                     may visit at most {MAX_WORK} document values in all (the number of \
                     operations times the values of the document)."
                ),
            ));
        }
    }
    Ok(doc)
}

/// The most operations one JSON Patch may have.
pub const MAX_OPERATIONS: usize = 1000;

/// The most work one JSON Patch may do: the values of the document summed over its operations
/// (each operation costs at most one walk of the document, and checking the result is one).
/// 1000 operations on a 2000-value document fit, as do 20 on a document at
/// [`gatehouse_plugin_api::json::MAX_VALUES`]; a provider or lambda is a few dozen values.
pub const MAX_WORK: usize = 2_000_000;

/// Applies operation `index` of a JSON Patch to `doc`.
fn apply_operation(doc: &mut Value, op: &Value, index: usize) -> Result<(), PatchError> {
    let name = op_string(op, "op", index)?;
    let path = op_string(op, "path", index)?;
    let value = || {
        op.get("value").cloned().ok_or_else(|| {
            error(
                "[invalid]",
                format!("Operation {index} ({name}) needs a [value]."),
            )
        })
    };
    match name {
        "add" => add(doc, path, value()?),
        "remove" => remove(doc, path).map(drop),
        "replace" => {
            let v = value()?;
            get(doc, path)?;
            if path.is_empty() {
                *doc = v;
                return Ok(());
            }
            remove(doc, path)?;
            add(doc, path, v)
        }
        "move" => {
            let from = op_string(op, "from", index)?;
            if path.starts_with(&format!("{from}/")) {
                return Err(error(
                    "[invalid]",
                    format!("Operation {index} moves a value into its own child."),
                ));
            }
            let v = remove(doc, from)?;
            add(doc, path, v)
        }
        "copy" => {
            let from = op_string(op, "from", index)?;
            let v = get(doc, from)?.clone();
            add(doc, path, v)
        }
        "test" => test(doc, path, &value()?, index),
        _ => Err(error(
            "[invalid]",
            format!("Operation {index} has an unknown op."),
        )),
    }
}

/// The `test` operation: the value at `path` must equal `expected`.
fn test(doc: &Value, path: &str, expected: &Value, index: usize) -> Result<(), PatchError> {
    let actual = get(doc, path).map_err(|_| {
        error(
            "[TestFailed]",
            format!("Operation {index} (test) failed: the path does not exist."),
        )
    })?;
    if actual != expected {
        return Err(error(
            "[TestFailed]",
            format!("Operation {index} (test) failed: the value differs."),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_types_pick_the_format() {
        use PatchFormat::*;
        assert_eq!(PatchFormat::from_content_type(None), Some(FusionAuthMerge));
        assert_eq!(
            PatchFormat::from_content_type(Some("application/json; charset=UTF-8")),
            Some(FusionAuthMerge)
        );
        assert_eq!(
            PatchFormat::from_content_type(Some("Application/Merge-Patch+JSON")),
            Some(MergePatch)
        );
        assert_eq!(
            PatchFormat::from_content_type(Some("application/json-patch+json")),
            Some(JsonPatch)
        );
        assert_eq!(PatchFormat::from_content_type(Some("text/plain")), None);
    }

    #[test]
    fn fusionauth_merge_appends_arrays_and_null_removes() {
        let target = json!({"a": {"b": 1, "c": 2}, "list": ["x"], "gone": 1});
        let patch = json!({"a": {"b": 5}, "list": ["y"], "gone": null, "new": true});
        let out = apply(PatchFormat::FusionAuthMerge, &target, &patch).expect("ok");
        assert_eq!(
            out,
            json!({"a": {"b": 5, "c": 2}, "list": ["x", "y"], "new": true})
        );
    }

    #[test]
    fn rfc7396_replaces_arrays() {
        // RFC 7396 appendix A examples
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
        ];
        for (target, patch, expected) in cases {
            assert_eq!(
                apply(PatchFormat::MergePatch, &target, &patch).expect("ok"),
                expected
            );
        }
    }

    #[test]
    fn rfc6902_operations() {
        let target = json!({"foo": "bar", "list": [1, 2], "a/b": 0, "m~n": 1});
        let patch = json!([
            {"op": "test", "path": "/foo", "value": "bar"},
            {"op": "add", "path": "/list/1", "value": 9},
            {"op": "add", "path": "/list/-", "value": 3},
            {"op": "replace", "path": "/foo", "value": "baz"},
            {"op": "remove", "path": "/a~1b"},
            {"op": "copy", "from": "/foo", "path": "/copy"},
            {"op": "move", "from": "/m~0n", "path": "/moved"}
        ]);
        let out = apply(PatchFormat::JsonPatch, &target, &patch).expect("ok");
        assert_eq!(
            out,
            json!({"foo": "baz", "list": [1, 9, 2, 3], "copy": "baz", "moved": 1})
        );
    }

    #[test]
    fn json_patch_work_is_bounded_by_operations_times_document_size() {
        // A 20k-value document: 100 operations are 2M values of work, just over the bound.
        let big: Vec<u32> = (0..20_000).collect();
        let target = json!({ "big": big, "small": 1 });
        let ops = |n: usize| -> Value {
            (0..n)
                .map(|i| {
                    if i % 2 == 0 {
                        json!({"op": "copy", "from": "/small", "path": "/x"})
                    } else {
                        json!({"op": "remove", "path": "/x"})
                    }
                })
                .collect()
        };
        assert!(apply(PatchFormat::JsonPatch, &target, &ops(90)).is_ok());
        let refused = apply(PatchFormat::JsonPatch, &target, &ops(100)).unwrap_err();
        assert_eq!(refused.code, "[tooLarge]");
        assert!(
            refused.message.contains("work limit")
                && refused.message.contains(&MAX_WORK.to_string()),
            "{}",
            refused.message
        );
        // The same operations on a small document are nowhere near it.
        let small = json!({ "small": 1 });
        assert!(apply(PatchFormat::JsonPatch, &small, &ops(MAX_OPERATIONS)).is_ok());
    }

    #[tokio::test]
    async fn offloaded_patches_run_on_the_cpu_pool_and_fail_as_400() {
        let cpu = CpuPool::new(1);
        let target = json!({"a": 1});
        let patched = apply_offloaded(
            &cpu,
            PatchFormat::JsonPatch,
            target.clone(),
            Arc::new(json!([{"op": "add", "path": "/b", "value": 2}])),
        )
        .await
        .expect("patched");
        assert_eq!(patched, json!({"a": 1, "b": 2}));
        let failed = apply_offloaded(
            &cpu,
            PatchFormat::JsonPatch,
            target,
            Arc::new(json!([{"op": "remove", "path": "/nope"}])),
        )
        .await
        .expect_err("refused");
        assert_eq!(failed.status(), 400);
    }

    #[test]
    fn rfc6902_failures_are_clean() {
        let target = json!({"foo": "bar", "list": [1]});
        let failed = apply(
            PatchFormat::JsonPatch,
            &target,
            &json!([{"op": "replace", "path": "/foo", "value": 1}, {"op": "test", "path": "/foo", "value": "bar"}]),
        )
        .unwrap_err();
        assert_eq!(failed.code, "[TestFailed]");
        for bad in [
            json!({"op": "add"}),
            json!([{"op": "remove", "path": "/nope"}]),
            json!([{"op": "add", "path": "/list/5", "value": 1}]),
            json!([{"op": "add", "path": "/list/01", "value": 1}]),
            json!([{"op": "jump", "path": "/foo"}]),
            json!([{"op": "add", "path": "foo", "value": 1}]),
            json!([{"op": "replace", "path": "/missing", "value": 1}]),
            json!([{"op": "move", "from": "/list", "path": "/list/0"}]),
            json!([{"op": "test", "path": "/nope", "value": 1}]),
            json!([{"op": "add", "path": "/foo/x", "value": 1}]),
        ] {
            assert!(
                apply(PatchFormat::JsonPatch, &target, &bad).is_err(),
                "{bad}"
            );
        }
    }
}
