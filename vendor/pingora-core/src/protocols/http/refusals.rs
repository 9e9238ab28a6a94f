//! A hook told of each request the engine refuses by itself (a request it cannot read one way
//! only, a method it does not serve) before any proxy phase runs, so a proxy can log it like
//! the requests its phases answer. Vendored addition, see `vendor/README.md`.

use std::sync::OnceLock;

/// A request the engine refused and answered itself.
pub struct Refusal<'a> {
    /// The status written.
    pub status: u16,
    /// The method as read; empty when the request could not be read.
    pub method: &'a str,
    /// The request target as read (the query string included: the hook decides what it
    /// shows); empty when the request could not be read.
    pub target: &'a [u8],
}

/// What the hook is called with.
pub type RefusalHook = Box<dyn Fn(&Refusal<'_>) + Send + Sync>;

static HOOK: OnceLock<RefusalHook> = OnceLock::new();

/// Sets the hook, once per process; `false` when one was already set (it stays).
pub fn set_refusal_hook(hook: RefusalHook) -> bool {
    HOOK.set(hook).is_ok()
}

/// Tells the hook, when there is one, of `refusal`.
pub(crate) fn report(refusal: &Refusal<'_>) {
    if let Some(hook) = HOOK.get() {
        hook(refusal);
    }
}
