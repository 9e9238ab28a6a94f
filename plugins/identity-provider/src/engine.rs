//! The reconcile-lambda engine: FusionAuth's `function reconcile(user, registration, jwt)` run
//! in an embedded QuickJS (via `rquickjs`).
//!
//! This is the evaluator a lambda worker process runs ([`crate::worker`]); the gateway itself
//! never calls it on untrusted code, it goes through [`crate::sandbox`], which enforces the time
//! and memory limits from outside the interpreter as well.
//!
//! Each run gets a fresh runtime and context, so nothing leaks between logins. The sandbox
//! exposes only the ECMAScript built-ins and a `console` whose output is collected (for the event
//! log): no file system, no network, no timers, no modules. A memory limit bounds the heap, an
//! interrupt handler stops the script at the time limit, and the stack is capped, so a throwing,
//! looping, recursing or allocating lambda becomes a [`LambdaError`], never a crash or a hang.
//!
//! The lambda mutates `user` and `registration` in place (as in FusionAuth); both are read back
//! as JSON after the call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rquickjs::{Context, Ctx, Function, Object, Runtime};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Resource limits of one lambda run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time for evaluating the body and calling `reconcile`.
    pub time: Duration,
    /// Heap limit in bytes.
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            time: Duration::from_millis(1000),
            memory_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Why a lambda run failed. Messages come from the script (exception text) or the engine and
/// never include the user's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LambdaError {
    /// The body does not compile or throws while being evaluated.
    Compile(String),
    /// The body defines no `reconcile` function.
    MissingFunction,
    /// `reconcile` threw.
    Thrown(String),
    /// The time limit was reached.
    Timeout,
    /// The memory (or stack) limit was reached.
    OutOfMemory,
    /// The engine could not be set up, or the objects could not be read back.
    Engine(String),
    /// The worker process running the lambda died or answered with something unreadable.
    Crashed(String),
    /// Every lambda worker stayed busy for the whole queueing time.
    Busy,
}

impl std::fmt::Display for LambdaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LambdaError::Compile(m) => write!(f, "the lambda body is invalid: {m}"),
            LambdaError::MissingFunction => f.write_str(
                "the lambda body does not define function reconcile(user, registration, jwt)",
            ),
            LambdaError::Thrown(m) => write!(f, "the lambda threw an exception: {m}"),
            LambdaError::Timeout => f.write_str("the lambda exceeded its time limit"),
            LambdaError::OutOfMemory => f.write_str("the lambda exceeded its memory limit"),
            LambdaError::Engine(m) => write!(f, "the lambda engine failed: {m}"),
            LambdaError::Crashed(m) => write!(f, "the lambda worker failed: {m}"),
            LambdaError::Busy => f.write_str("every lambda worker is busy; try again"),
        }
    }
}

/// The objects after a successful run, and what the lambda logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reconciled {
    /// The user, as the lambda left it.
    pub user: Value,
    /// The registration, as the lambda left it.
    pub registration: Value,
    /// `console.*` output (at most 100 lines).
    pub logs: Vec<String>,
}

const PRELUDE: &str = r#"
var console = (function () {
  var logs = [];
  function write() {
    if (logs.length >= 100) { return; }
    var parts = [];
    for (var i = 0; i < arguments.length; i++) {
      var a = arguments[i];
      if (typeof a === 'string') { parts.push(a); }
      else { try { parts.push(JSON.stringify(a)); } catch (e) { parts.push(String(a)); } }
    }
    logs.push(parts.join(' ').substring(0, 2000));
  }
  return { log: write, info: write, warn: write, error: write, debug: write, __logs: logs };
})();
"#;

struct Sandbox {
    // Declared before the runtime so it is dropped first.
    context: Context,
    _runtime: Runtime,
    timed_out: Arc<AtomicBool>,
}

fn sandbox(limits: Limits) -> Result<Sandbox, LambdaError> {
    let runtime = Runtime::new().map_err(|e| LambdaError::Engine(e.to_string()))?;
    runtime.set_memory_limit(limits.memory_bytes);
    runtime.set_max_stack_size(512 * 1024);
    let deadline = Instant::now() + limits.time;
    let timed_out = Arc::new(AtomicBool::new(false));
    let flag = timed_out.clone();
    runtime.set_interrupt_handler(Some(Box::new(move || {
        let over = Instant::now() >= deadline;
        if over {
            flag.store(true, Ordering::SeqCst);
        }
        over
    })));
    let context = Context::full(&runtime).map_err(|e| LambdaError::Engine(e.to_string()))?;
    Ok(Sandbox {
        context,
        _runtime: runtime,
        timed_out,
    })
}

/// The message of the pending exception after `error`, classified.
fn classify(ctx: &Ctx<'_>, error: rquickjs::Error, timed_out: &AtomicBool) -> (bool, String) {
    if timed_out.load(Ordering::SeqCst) {
        return (true, "timeout".into());
    }
    let message = match error {
        rquickjs::Error::Exception => {
            let value = ctx.catch();
            if value.is_null() {
                // What QuickJS leaves when it could not even allocate the "out of memory" error
                // (a script's own `throw null` reads the same).
                "out of memory".into()
            } else if let Some(ex) = value.as_exception() {
                ex.message()
                    .unwrap_or_else(|| "an exception without a message".into())
            } else if let Some(s) = value.as_string() {
                s.to_string().unwrap_or_default()
            } else {
                ctx.json_stringify(value)
                    .ok()
                    .flatten()
                    .and_then(|s| s.to_string().ok())
                    .unwrap_or_else(|| "a non-error value was thrown".into())
            }
        }
        other => other.to_string(),
    };
    let mut message: String = message.chars().take(500).collect();
    if message.is_empty() {
        message = "an exception without a message".into();
    }
    (false, message)
}

fn is_memory(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("out of memory") || m.contains("stack overflow") || m.contains("call stack size")
}

fn failure(
    ctx: &Ctx<'_>,
    error: rquickjs::Error,
    timed_out: &AtomicBool,
    wrap: fn(String) -> LambdaError,
) -> LambdaError {
    let (timeout, message) = classify(ctx, error, timed_out);
    if timeout {
        LambdaError::Timeout
    } else if is_memory(&message) {
        LambdaError::OutOfMemory
    } else {
        wrap(message)
    }
}

fn load<'js>(
    ctx: &Ctx<'js>,
    body: &str,
    timed_out: &AtomicBool,
) -> Result<Function<'js>, LambdaError> {
    ctx.eval::<(), _>(PRELUDE)
        .map_err(|e| LambdaError::Engine(e.to_string()))?;
    ctx.eval::<(), _>(body.as_bytes().to_vec())
        .map_err(|e| failure(ctx, e, timed_out, LambdaError::Compile))?;
    let value: rquickjs::Value = ctx
        .globals()
        .get("reconcile")
        .map_err(|_| LambdaError::MissingFunction)?;
    value.into_function().ok_or(LambdaError::MissingFunction)
}

/// Checks that `body` compiles and defines `reconcile` (used when a lambda is saved).
pub fn check(body: &str, limits: Limits) -> Result<(), LambdaError> {
    let sandbox = sandbox(limits)?;
    let timed_out = sandbox.timed_out.clone();
    sandbox
        .context
        .with(|ctx| load(&ctx, body, &timed_out).map(|_| ()))
}

fn to_json<'js>(
    ctx: &Ctx<'js>,
    value: rquickjs::Value<'js>,
    what: &str,
) -> Result<Value, LambdaError> {
    let text = ctx
        .json_stringify(value)
        .map_err(|e| LambdaError::Engine(format!("cannot read back the {what}: {e}")))?
        .and_then(|s| s.to_string().ok())
        .ok_or_else(|| LambdaError::Engine(format!("the {what} is no longer an object")))?;
    serde_json::from_str(&text)
        .map_err(|e| LambdaError::Engine(format!("cannot read back the {what}: {e}")))
}

/// Runs `reconcile(user, registration, jwt, ...rest)` from `body` with the given objects:
/// `rest` is empty for an ExternalJWT lambda, `[id_token, tokens]` for an OpenID Connect one
/// (FusionAuth's `reconcile(user, registration, jwt, id_token, tokens)`); missing arguments are
/// `undefined`.
pub fn run_reconcile(
    body: &str,
    user: &Value,
    registration: &Value,
    jwt: &Value,
    rest: &[Value],
    limits: Limits,
) -> Result<Reconciled, LambdaError> {
    let sandbox = sandbox(limits)?;
    let timed_out = sandbox.timed_out.clone();
    sandbox.context.with(|ctx| {
        let function = load(&ctx, body, &timed_out)?;
        let parse = |v: &Value| {
            ctx.json_parse(v.to_string())
                .map_err(|e| LambdaError::Engine(e.to_string()))
        };
        let user_js = parse(user)?;
        let registration_js = parse(registration)?;
        let jwt_js = parse(jwt)?;
        let argument = |i: usize| match rest.get(i) {
            Some(v) => parse(v),
            None => Ok(rquickjs::Value::new_undefined(ctx.clone())),
        };
        let (id_token_js, tokens_js) = (argument(0)?, argument(1)?);
        let arguments = (
            user_js.clone(),
            registration_js.clone(),
            jwt_js,
            id_token_js,
            tokens_js,
        );
        function
            .call::<_, rquickjs::Value>(arguments)
            .map_err(|e| failure(&ctx, e, &timed_out, LambdaError::Thrown))?;
        let user = to_json(&ctx, user_js, "user")?;
        let registration = to_json(&ctx, registration_js, "registration")?;
        let logs = ctx
            .globals()
            .get::<_, Object>("console")
            .and_then(|c| c.get::<_, rquickjs::Value>("__logs"))
            .ok()
            .and_then(|v| to_json(&ctx, v, "console output").ok())
            .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
            .unwrap_or_default();
        Ok(Reconciled {
            user,
            registration,
            logs,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn quick() -> Limits {
        Limits {
            time: Duration::from_millis(300),
            memory_bytes: 8 * 1024 * 1024,
        }
    }

    #[test]
    fn an_openid_connect_lambda_gets_the_id_token_and_the_tokens() {
        let body = r#"
            function reconcile(user, registration, jwt, id_token, tokens) {
              registration.roles = jwt.roles;
              user.data = {nonce: id_token.nonce, hasAccess: typeof tokens.access_token};
            }"#;
        let out = run_reconcile(
            body,
            &json!({}),
            &json!({"roles": []}),
            &json!({"sub": "s", "roles": ["editor"]}),
            &[
                json!({"sub": "s", "nonce": "n1"}),
                json!({"access_token": "a"}),
            ],
            quick(),
        )
        .expect("runs");
        assert_eq!(out.registration["roles"], json!(["editor"]));
        assert_eq!(
            out.user["data"],
            json!({"nonce": "n1", "hasAccess": "string"})
        );
        // An ExternalJWT lambda declaring five parameters sees `undefined` for the last two.
        let body = "function reconcile(u, r, j, i, t) { u.data = {i: typeof i, t: typeof t}; }";
        let out =
            run_reconcile(body, &json!({}), &json!({}), &json!({}), &[], quick()).expect("runs");
        assert_eq!(
            out.user["data"],
            json!({"i": "undefined", "t": "undefined"})
        );
    }

    #[test]
    fn the_lambda_mutates_user_and_registration() {
        let body = r#"
            function reconcile(user, registration, jwt) {
              user.firstName = jwt.given_name;
              user.data = user.data || {};
              user.data.dept = jwt.dept;
              registration.roles = ['admin'];
              console.log('reconciled', jwt.sub, {n: 1});
            }"#;
        let out = run_reconcile(
            body,
            &json!({"email": "a@b.c"}),
            &json!({"roles": []}),
            &json!({"sub": "s1", "given_name": "Ann", "dept": "ops"}),
            &[],
            quick(),
        )
        .expect("runs");
        assert_eq!(out.user["firstName"], "Ann");
        assert_eq!(out.user["data"]["dept"], "ops");
        assert_eq!(out.user["email"], "a@b.c");
        assert_eq!(out.registration["roles"], json!(["admin"]));
        assert_eq!(out.logs, vec!["reconciled s1 {\"n\":1}".to_string()]);
    }

    #[test]
    fn failures_are_errors_not_crashes() {
        let run =
            |body: &str| run_reconcile(body, &json!({}), &json!({}), &json!({}), &[], quick());
        // Filling the memory limit takes longer than the quick time limit on a loaded machine:
        // the memory cases get time enough that only the memory limit can stop them.
        let roomy = Limits {
            time: Duration::from_secs(10),
            ..quick()
        };
        let fill = |body: &str| run_reconcile(body, &json!({}), &json!({}), &json!({}), &[], roomy);
        assert_eq!(
            run("function reconcile(u, r, j) { throw new Error('nope'); }"),
            Err(LambdaError::Thrown("nope".into()))
        );
        assert_eq!(
            run("function reconcile(u, r, j) { throw 'plain'; }"),
            Err(LambdaError::Thrown("plain".into()))
        );
        assert_eq!(
            run("function reconcile(u, r, j) { while (true) {} }"),
            Err(LambdaError::Timeout)
        );
        assert_eq!(run("while (true) {}"), Err(LambdaError::Timeout));
        assert_eq!(
            fill("function reconcile(u, r, j) { var a = []; while (true) { a.push(new Array(100000).fill(1)); } }"),
            Err(LambdaError::OutOfMemory)
        );
        assert_eq!(
            fill("function reconcile(u, r, j) { return reconcile(u, r, j); }"),
            Err(LambdaError::OutOfMemory)
        );
        assert!(matches!(
            run("function reconcile(u, r, j) {"),
            Err(LambdaError::Compile(_))
        ));
        assert_eq!(run("var x = 1;"), Err(LambdaError::MissingFunction));
        assert_eq!(run("var reconcile = 5;"), Err(LambdaError::MissingFunction));
        assert!(matches!(
            run("function reconcile(u, r, j) { require('fs'); }"),
            Err(LambdaError::Thrown(_))
        ));
        assert_eq!(
            fill("let a = []; while (true) a.push(new Array(1e6));"),
            Err(LambdaError::OutOfMemory)
        );
        assert_eq!(
            fill(
                "function reconcile(u, r, j) { let a = []; while (true) a.push(new Array(1e6)); }"
            ),
            Err(LambdaError::OutOfMemory)
        );
        assert_eq!(
            check("function f() { f(); } f();", roomy),
            Err(LambdaError::OutOfMemory)
        );
        assert!(check("function reconcile(u, r, j) {}", quick()).is_ok());
        assert!(check("function nope() {}", quick()).is_err());
    }
}
