//! Prometheus metrics, served on `/metrics`.

use prometheus::{Encoder, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// The gateway's metrics, in their own registry.
pub struct Metrics {
    registry: Registry,
    /// Proxied requests by outcome (`allowed`, `unauthenticated`, `forbidden`, …).
    pub requests: IntCounterVec,
    /// Token validations by result (`valid` or a [`TokenError`] reason).
    ///
    /// [`TokenError`]: gatehouse_plugin_api::TokenError
    pub validations: IntCounterVec,
    /// Transparent refreshes by outcome.
    pub refreshes: IntCounterVec,
    /// Entries in the revocation set.
    pub revocations: IntGauge,
}

impl Metrics {
    /// Fresh metrics, registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "gatehouse_proxy_requests_total",
                "Proxied requests by outcome",
            ),
            &["outcome"],
        )
        .expect("static metric definition");
        let validations = IntCounterVec::new(
            Opts::new(
                "gatehouse_token_validations_total",
                "Token validations by result",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let refreshes = IntCounterVec::new(
            Opts::new(
                "gatehouse_refreshes_total",
                "Transparent refreshes by outcome",
            ),
            &["outcome"],
        )
        .expect("static metric definition");
        let revocations = IntGauge::new(
            "gatehouse_revocation_set_size",
            "Entries in the in-memory revocation set",
        )
        .expect("static metric definition");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(validations.clone()),
            Box::new(refreshes.clone()),
            Box::new(revocations.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            validations,
            refreshes,
            revocations,
        }
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding to a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
