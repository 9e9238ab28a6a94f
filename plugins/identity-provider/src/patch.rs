//! The three PATCH formats FusionAuth accepts, as pure functions over JSON documents.
//!
//! - `application/json`: FusionAuth's merge ([`fusionauth_merge`], FusionAuth's own semantics,
//!   so ours to keep): objects merge recursively, `null` removes a member, and arrays are
//!   *appended* to (the documented limitation).
//! - `application/merge-patch+json`: RFC 7396, by the `json-patch` crate ([`json_patch::merge`]).
//! - `application/json-patch+json`: RFC 6902, each operation applied by the `json-patch` crate,
//!   in order, to a copy; any failing operation (including a `test` whose value differs) leaves
//!   the document untouched and reports which operation failed.
//!
//! Around the crate this module is a thin adapter that keeps what clients see: operations are
//! read one at a time, in order, with our error codes and messages (`[invalid]`, `[TestFailed]`,
//! `[tooLarge]`), and the crate's collapsed error kinds are explained back into them
//! ([`explain`]). Pointers are read strictly, as RFC 6901 and the crate read them: an invalid
//! escape (`~2`) is refused, and an array index is digits only (`+1`, `01`, `1e0` are not
//! indexes). Patches apply to the request shape (`{"identityProvider": {...}}`,
//! `{"lambda": {...}}`). The work is bounded ([`MAX_OPERATIONS`], [`MAX_WORK`], the document
//! limits after every operation: operations go to the crate one by one, so the bound stops a
//! patch mid-way), and handlers run it on the [`CpuPool`] ([`apply_offloaded`]), never on the
//! threads that serve requests.

use std::sync::Arc;

use gatehouse_plugin_api::{ApiError, CpuPool};
use json_patch::jsonptr::{Pointer, PointerBuf};
use json_patch::{
    AddOperation, CopyOperation, MoveOperation, PatchErrorKind, PatchOperation, RemoveOperation,
    ReplaceOperation, TestOperation,
};
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

/// `[invalid]`: a path (or `from`) names nothing in the document.
fn missing() -> PatchError {
    error("[invalid]", "A path does not exist in the document.")
}

/// `[invalid]`: `remove` (or `move`) of the root.
fn whole_document() -> PatchError {
    error("[invalid]", "The whole document cannot be removed.")
}

/// `[TestFailed]` for operation `index`, saying `why`.
fn test_failed(index: usize, why: &str) -> PatchError {
    error(
        "[TestFailed]",
        format!("Operation {index} (test) failed: {why}."),
    )
}

/// Applies `patch` in `format` to `target`: the patched document, or what failed (a 400).
pub fn apply(format: PatchFormat, target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let doc = match format {
        PatchFormat::FusionAuthMerge => {
            let mut doc = target.clone();
            fusionauth_merge(&mut doc, patch);
            doc
        }
        PatchFormat::MergePatch => {
            let mut doc = target.clone();
            json_patch::merge(&mut doc, patch);
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

/// FusionAuth's `application/json` PATCH merge: like RFC 7396, except that an array patched
/// with an array is appended to.
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

/// RFC 6902 JSON Patch, all or nothing: the patched copy of `target`, or the first failure.
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

/// Applies operation `index` (`raw`, as the client sent it) to `doc` with the crate. On an
/// error `doc` may be half-changed: the caller drops it.
fn apply_operation(doc: &mut Value, raw: &Value, index: usize) -> Result<(), PatchError> {
    let op = read_operation(doc, raw, index)?;
    if let PatchOperation::Test(test) = &op {
        // Ours, not the crate's: RFC 6902 §4.6 compares numbers by value (`1` is `1.0`).
        return match doc.pointer(test.path.as_str()) {
            None => Err(test_failed(index, "the path does not exist")),
            Some(found) if json_equal(found, &test.value) => Ok(()),
            Some(_) => Err(test_failed(index, "the value differs")),
        };
    }
    json_patch::patch_unsafe(doc, std::slice::from_ref(&op))
        .map_err(|failure| explain(doc, &op, failure.kind, index))
}

/// RFC 6902 §4.6 equality: numbers are equal when numerically equal (`1`, `1.0`, `1e0`),
/// arrays item by item, objects member by member (in any order), anything else as JSON.
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i128(), y.as_i128()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64().zip(y.as_f64()).is_some_and(|(x, y)| x == y),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// The string member `name` of operation `index`, or an `[invalid]` error naming it.
fn member<'a>(op: &'a Value, name: &str, index: usize) -> Result<&'a str, PatchError> {
    op.get(name).and_then(Value::as_str).ok_or_else(|| {
        error(
            "[invalid]",
            format!("Operation {index} needs a string member [{name}]."),
        )
    })
}

/// Reads operation `index` into the crate's operation, reporting its first problem in the order the members are needed: `op`,
/// `path`, then `value` or `from`, then the pointers (a `from` that names nothing is reported
/// before a `path` that is not a pointer).
fn read_operation(doc: &Value, raw: &Value, index: usize) -> Result<PatchOperation, PatchError> {
    let name = member(raw, "op", index)?;
    let path = member(raw, "path", index)?;
    let value = || {
        raw.get("value").cloned().ok_or_else(|| {
            error(
                "[invalid]",
                format!("Operation {index} ({name}) needs a [value]."),
            )
        })
    };
    let op = match name {
        "add" => {
            let value = value()?;
            PatchOperation::Add(AddOperation {
                path: pointer(path)?,
                value,
            })
        }
        "remove" => PatchOperation::Remove(RemoveOperation {
            path: pointer(path)?,
        }),
        "replace" => {
            let value = value()?;
            PatchOperation::Replace(ReplaceOperation {
                path: pointer(path)?,
                value,
            })
        }
        "move" => read_move(doc, path, member(raw, "from", index)?, index)?,
        "copy" => {
            let from = pointer(member(raw, "from", index)?)?;
            let path = pointer(path).map_err(|e| source_problem(doc, &from, false).unwrap_or(e))?;
            PatchOperation::Copy(CopyOperation { path, from })
        }
        "test" => {
            let value = value()?;
            let path = pointer(path).map_err(|_| test_failed(index, "the path does not exist"))?;
            PatchOperation::Test(TestOperation { path, value })
        }
        _ => {
            return Err(error(
                "[invalid]",
                format!("Operation {index} has an unknown op."),
            ))
        }
    };
    Ok(op)
}

/// Reads a `move` from `from` to `path`. A `path` below `from` (a value moved into its own
/// child) is refused, as RFC 6902 requires.
fn read_move(
    doc: &Value,
    path: &str,
    from: &str,
    index: usize,
) -> Result<PatchOperation, PatchError> {
    if path.starts_with(&format!("{from}/")) {
        return Err(error(
            "[invalid]",
            format!("Operation {index} moves a value into its own child."),
        ));
    }
    let from = pointer(from)?;
    let path = pointer(path).map_err(|e| source_problem(doc, &from, true).unwrap_or(e))?;
    Ok(PatchOperation::Move(MoveOperation { from, path }))
}

/// The error a `move` (`removes`) or `copy` of `from` meets before its `path` is read: the
/// root cannot be removed, and `from` must name a value; `None` when it has none.
fn source_problem(doc: &Value, from: &Pointer, removes: bool) -> Option<PatchError> {
    if removes && from.is_root() {
        Some(whole_document())
    } else {
        doc.pointer(from.as_str()).is_none().then(missing)
    }
}

/// `raw` as a JSON pointer (RFC 6901): empty, or `/`-separated tokens in which `~` is only
/// ever `~0` or `~1`. Anything else is refused rather than read some other way.
fn pointer(raw: &str) -> Result<PointerBuf, PatchError> {
    PointerBuf::parse(raw).map_err(|_| {
        error(
            "[invalid]",
            "A path is not a JSON pointer (it must start with / and write ~ only as ~0 or ~1).",
        )
    })
}

/// Our error for the crate's failure `kind` of `op` (operation `index`) on `doc` as the crate
/// left it (for a `move`, with `from` removed once the failure is in adding at `path`).
fn explain(doc: &Value, op: &PatchOperation, kind: PatchErrorKind, index: usize) -> PatchError {
    use PatchOperation::{Add, Copy, Move, Remove, Test};
    match (op, kind) {
        (Test(_), PatchErrorKind::TestFailed) => test_failed(index, "the value differs"),
        (Test(_), _) => test_failed(index, "the path does not exist"),
        (Remove(r), _) if r.path.is_root() => whole_document(),
        (Move(m), PatchErrorKind::InvalidFromPointer) if m.from.is_root() => whole_document(),
        (Add(AddOperation { path, .. }), PatchErrorKind::InvalidPointer)
        | (Copy(CopyOperation { path, .. }), PatchErrorKind::InvalidPointer)
        | (Move(MoveOperation { path, .. }), PatchErrorKind::InvalidPointer) => {
            match path.parent().and_then(|p| doc.pointer(p.as_str())) {
                Some(Value::Array(_)) => error("[invalid]", "An array index is out of bounds."),
                Some(Value::Object(_)) | None => missing(),
                Some(_) => error(
                    "[invalid]",
                    "The parent of a path is neither an object nor an array.",
                ),
            }
        }
        // The rest names a value that is not there: a `remove`, `replace`, or `copy`/`move`
        // source (a `move` into its own child is refused before, by `read_move`).
        _ => missing(),
    }
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

    /// The result of a one-operation JSON Patch: the document, or `code message`.
    fn one(target: &Value, op: Value) -> Result<Value, String> {
        apply(PatchFormat::JsonPatch, target, &json!([op]))
            .map_err(|e| format!("{} {}", e.code, e.message))
    }

    const MISSING: &str = "[invalid] A path does not exist in the document.";

    #[test]
    fn test_compares_numbers_by_value_at_any_depth() {
        let doc = json!({"n": 1, "f": 1.0, "deep": {"a": [1, {"b": 2.5}]}, "s": "1"});
        for (path, value) in [
            ("/n", json!(1)),
            ("/n", json!(1.0)),
            ("/f", json!(1)),
            ("/f", json!(1.0)),
            ("/deep", json!({"a": [1.0, {"b": 2.5}]})),
            ("/deep/a", json!([1e0, {"b": 25e-1}])),
        ] {
            let op = json!({"op": "test", "path": path, "value": value});
            assert!(one(&doc, op).is_ok(), "{path} {value}");
        }
        for (path, value) in [
            ("/n", json!(2)),
            ("/n", json!("1")),
            ("/s", json!(1)),
            ("/f", json!(1.5)),
            ("/deep", json!({"a": [1.0, {"b": 2.5}], "c": 1})),
            ("/deep/a", json!([1, {"b": 2}])),
            ("/deep/a", json!([{"b": 2.5}, 1])),
        ] {
            assert_eq!(
                one(&doc, json!({"op": "test", "path": path, "value": value})).unwrap_err(),
                "[TestFailed] Operation 0 (test) failed: the value differs.",
                "{path} {value}"
            );
        }
        for path in ["/nope", "n", "/n/0"] {
            assert_eq!(
                one(&doc, json!({"op": "test", "path": path, "value": 1})).unwrap_err(),
                "[TestFailed] Operation 0 (test) failed: the path does not exist.",
                "{path}"
            );
        }
    }

    #[test]
    fn moves_into_their_own_child_are_refused() {
        let doc = json!({"a": {"b": 1}, "list": [{"x": 1}, {"y": 2}], "s": ["t", "u"]});
        let own_child = "[invalid] Operation 0 moves a value into its own child.";
        for (from, path) in [("/a", "/a/c"), ("", "/x"), ("/list", "/list/0")] {
            let op = json!({"op": "move", "from": from, "path": path});
            assert_eq!(one(&doc, op).unwrap_err(), own_child, "{from} {path}");
        }
        // A `+` is no index: `/list/+0` is no item, before or after the move.
        let op = json!({"op": "move", "from": "/list/0", "path": "/list/+0/z"});
        assert_eq!(one(&doc, op).unwrap_err(), MISSING);
        let op = json!({"op": "move", "from": "/s/+0", "path": "/s/0/v"});
        assert_eq!(one(&doc, op).unwrap_err(), MISSING);
        let op = json!({"op": "move", "from": "", "path": ""});
        assert_eq!(
            one(&doc, op).unwrap_err(),
            "[invalid] The whole document cannot be removed."
        );
        let op = json!({"op": "move", "from": "/a", "path": "/a"});
        assert_eq!(one(&doc, op).expect("same place"), doc);
    }

    #[test]
    fn the_end_index_only_adds() {
        let doc = json!({"list": [1, 2]});
        let add = json!({"op": "add", "path": "/list/-", "value": 3});
        assert_eq!(one(&doc, add).expect("appended")["list"], json!([1, 2, 3]));
        let copy = json!({"op": "copy", "from": "/list/0", "path": "/list/-"});
        assert_eq!(one(&doc, copy).expect("copied")["list"], json!([1, 2, 1]));
        for op in [
            json!({"op": "remove", "path": "/list/-"}),
            json!({"op": "replace", "path": "/list/-", "value": 0}),
            json!({"op": "copy", "from": "/list/-", "path": "/x"}),
            json!({"op": "move", "from": "/list/-", "path": "/x"}),
            json!({"op": "add", "path": "/list/-/x", "value": 0}),
        ] {
            assert_eq!(one(&doc, op.clone()).unwrap_err(), MISSING, "{op}");
        }
    }

    #[test]
    fn pointers_are_read_as_rfc_6901_says() {
        let doc = json!({"a/b": 1, "m~n": 2, "~1": 3, "+1": 6, "list": [7, 8]});
        let get = |path: &str| {
            one(&doc, json!({"op": "copy", "from": path, "path": "/out"})).map(|d| d["out"].clone())
        };
        assert_eq!(get("/a~1b"), Ok(json!(1)));
        assert_eq!(get("/m~0n"), Ok(json!(2)));
        assert_eq!(get("/~01"), Ok(json!(3)));
        // A `~` that is no escape makes no pointer: refused, never read as a name.
        let not_a_pointer = "[invalid] A path is not a JSON pointer (it must start with / and \
                             write ~ only as ~0 or ~1).";
        for path in ["/~2", "/~", "/a~", "x", "/list/~2"] {
            assert_eq!(get(path), Err(not_a_pointer.into()), "{path}");
            let add = json!({"op": "add", "path": path, "value": 0});
            assert_eq!(one(&doc, add).unwrap_err(), not_a_pointer, "{path}");
        }
        // An array index is digits without a sign or leading zero; `+1` is only a member name.
        assert_eq!(get("/+1"), Ok(json!(6)));
        for path in ["/list/+1", "/list/+01", "/list/01", "/list/1e0", "/list/ 1"] {
            assert_eq!(get(path), Err(MISSING.into()), "{path}");
        }
        let add = json!({"op": "add", "path": "/list/+0", "value": 0});
        assert!(one(&doc, add).is_err());
    }

    #[test]
    fn each_failure_keeps_its_message() {
        let doc = json!({"s": "x", "list": [1], "o": {}});
        for (op, expected) in [
            (
                json!({"op": "add", "path": "/list/5", "value": 0}),
                "[invalid] An array index is out of bounds.",
            ),
            (
                json!({"op": "add", "path": "/list/01", "value": 0}),
                "[invalid] An array index is out of bounds.",
            ),
            (
                json!({"op": "add", "path": "/s/x", "value": 0}),
                "[invalid] The parent of a path is neither an object nor an array.",
            ),
            (json!({"op": "add", "path": "/o/x/y", "value": 0}), MISSING),
            (
                json!({"op": "add", "path": "o", "value": 0}),
                "[invalid] A path is not a JSON pointer (it must start with / and write ~ only as ~0 or ~1).",
            ),
            (
                json!({"op": "add", "path": "o"}),
                "[invalid] Operation 0 (add) needs a [value].",
            ),
            (
                json!({"op": "remove", "path": ""}),
                "[invalid] The whole document cannot be removed.",
            ),
            (json!({"op": "remove", "path": "/s/0"}), MISSING),
            (
                json!({"op": "replace", "path": "/nope", "value": 0}),
                MISSING,
            ),
            (
                json!({"op": "copy", "path": "/x"}),
                "[invalid] Operation 0 needs a string member [from].",
            ),
            // A `from` that names nothing is the first problem, before a `path` that is no pointer.
            (json!({"op": "copy", "from": "/nope", "path": "x"}), MISSING),
            (
                json!({"op": "copy", "from": "/s", "path": "x"}),
                "[invalid] A path is not a JSON pointer (it must start with / and write ~ only as ~0 or ~1).",
            ),
            (
                json!({"op": "move", "from": "", "path": "x"}),
                "[invalid] The whole document cannot be removed.",
            ),
            (json!({"op": "move", "from": "/nope", "path": "x"}), MISSING),
            (
                json!({"op": "move", "from": "/list/0", "path": "/list/1"}),
                "[invalid] An array index is out of bounds.",
            ),
            (
                json!({"path": "/s"}),
                "[invalid] Operation 0 needs a string member [op].",
            ),
            (
                json!({"op": "jump"}),
                "[invalid] Operation 0 needs a string member [path].",
            ),
            (
                json!({"op": "jump", "path": "/s"}),
                "[invalid] Operation 0 has an unknown op.",
            ),
        ] {
            assert_eq!(one(&doc, op.clone()).unwrap_err(), expected, "{op}");
        }
    }

    #[test]
    fn copies_of_a_large_value_count_against_the_work_bound() {
        // A 40 002-value document (the root, `big` and its items) whose `big` is copied next to
        // it and the copy removed, over and over: 80 003 then 40 002 values after each pair's
        // operations, so operation 32 (a copy) brings the work to 2 000 083, over the bound,
        // although the document stays within its limits.
        let numbers: Vec<u32> = (0..40_000).collect();
        let target = json!({ "big": numbers });
        let ops: Vec<Value> = (0..40)
            .map(|i| match i % 2 {
                0 => json!({"op": "copy", "from": "/big", "path": "/x"}),
                _ => json!({"op": "remove", "path": "/x"}),
            })
            .collect();
        let refused = apply(PatchFormat::JsonPatch, &target, &json!(ops)).unwrap_err();
        assert_eq!(refused.code, "[tooLarge]");
        assert!(
            refused
                .message
                .starts_with("The JSON Patch is over its work limit at operation 32:"),
            "{}",
            refused.message
        );
        assert!(apply(PatchFormat::JsonPatch, &target, &json!(ops[..32])).is_ok());
    }
}
