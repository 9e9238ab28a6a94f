//! What the refresh rules run against: the plugin API's store, token service and clock, the
//! race window, and this node's rotation ledger, bundled and borrowed ([`RefreshEnv`]).

use gatehouse_plugin_api::clock::Clock;
use gatehouse_plugin_api::rotations::RotationLedger;
use gatehouse_plugin_api::store::Store;
use gatehouse_plugin_api::tokens::TokenService;

/// The services refresh-token logic needs: borrowed, so the plugin and the proxy can both build
/// one from what they hold.
#[derive(Clone, Copy)]
pub struct RefreshEnv<'a> {
    /// Where refresh tokens, users, tenants and applications live.
    pub store: &'a dyn Store,
    /// Mints access tokens and refresh token values; records revocations.
    pub tokens: &'a dyn TokenService,
    /// The current time.
    pub clock: &'a dyn Clock,
    /// The race window (ms) of one-time-use rotations (see [`crate::DEFAULT_RACE_WINDOW_MS`]).
    pub race_window_ms: i64,
    /// This node's rotations under way or unconfirmed (one ledger per process).
    pub rotations: &'a RotationLedger,
}

impl<'a> RefreshEnv<'a> {
    /// Bundles the services a refresh needs (the race window in ms, see
    /// [`crate::DEFAULT_RACE_WINDOW_MS`]; the process's rotation ledger).
    pub fn new(
        store: &'a dyn Store,
        tokens: &'a dyn TokenService,
        clock: &'a dyn Clock,
        race_window_ms: i64,
        rotations: &'a RotationLedger,
    ) -> Self {
        RefreshEnv {
            store,
            tokens,
            clock,
            race_window_ms,
            rotations,
        }
    }
}

/// The services a refresh-token rule needs, taken from a plugin's context.
pub fn refresh_env(context: &gatehouse_plugin_api::PluginContext) -> RefreshEnv<'_> {
    RefreshEnv::new(
        context.store.as_ref(),
        context.tokens.as_ref(),
        context.clock.as_ref(),
        context.race_window_ms,
        &context.rotations,
    )
}
