//! Prometheus metrics, served on `/metrics`: counters of the proxy's outcomes, latency
//! histograms (requests by route and outcome, upstream answers by route, transparent refreshes
//! by outcome), trusted issuers' key fetches, keys held, key-set age and 503s for unavailable
//! keys (by configured issuer), and the process' own metrics (`process_*`). Every label is bounded: a route is
//! named by its configured path (never the request's), an outcome comes from a fixed set.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Latency buckets, in seconds: from 0.5 ms (a cached token, a local upstream) to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

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
    /// Seconds from a request's arrival to the end of its answer, by route and outcome.
    pub request_duration: HistogramVec,
    /// Seconds from choosing an upstream to its response header, by route.
    pub upstream_duration: HistogramVec,
    /// Seconds a transparent refresh took, by outcome (`done`, `coalesced`, `grace`, `failed`).
    pub refresh_duration: HistogramVec,
    /// Fetches of trusted issuers' keys, by issuer (as configured) and outcome.
    pub issuer_fetches: IntCounterVec,
    /// Keys held per trusted issuer.
    pub issuer_keys: IntGaugeVec,
    /// Seconds since each trusted issuer's key set was last fetched (-1: never).
    pub issuer_key_age: IntGaugeVec,
    /// Tokens answered 503 because their issuer's keys were unavailable, by issuer.
    pub issuer_unavailable: IntCounterVec,
    /// Configuration reloads by outcome (`applied`, `refused`).
    pub reloads: IntCounterVec,
    /// The generation of the configuration in force: 1 at start, one more per applied reload.
    pub config_generation: IntGauge,
    /// The first 32 bits of the SHA-256 of the configuration file in force, as a number.
    pub config_hash: IntGauge,
}

/// A histogram family with the latency buckets.
fn histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .expect("static metric definition")
}

/// The reload counter and the configuration's generation and hash gauges, registered in
/// `registry`.
fn reload_metrics(registry: &Registry) -> (IntCounterVec, IntGauge, IntGauge) {
    let reloads = IntCounterVec::new(
        Opts::new(
            "gatehouse_config_reloads_total",
            "Configuration reloads by outcome (applied, refused)",
        ),
        &["outcome"],
    )
    .expect("static metric definition");
    let generation = IntGauge::new(
        "gatehouse_config_generation",
        "The generation of the configuration in force (1 at start, +1 per applied reload)",
    )
    .expect("static metric definition");
    let hash = IntGauge::new(
        "gatehouse_config_hash",
        "The first 32 bits of the SHA-256 of the configuration file in force",
    )
    .expect("static metric definition");
    for collector in [
        Box::new(reloads.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(generation.clone()),
        Box::new(hash.clone()),
    ] {
        registry
            .register(collector)
            .expect("metric names are unique");
    }
    (reloads, generation, hash)
}

impl Metrics {
    /// Fresh metrics, registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &[label]).expect("static metric definition")
        };
        let requests = counter(
            "gatehouse_proxy_requests_total",
            "Proxied requests by outcome",
            "outcome",
        );
        let validations = counter(
            "gatehouse_token_validations_total",
            "Token validations by result",
            "result",
        );
        let refreshes = counter(
            "gatehouse_refreshes_total",
            "Transparent refreshes by outcome",
            "outcome",
        );
        let revocations = IntGauge::new(
            "gatehouse_revocation_set_size",
            "Entries in the in-memory revocation set",
        )
        .expect("static metric definition");
        let request_duration = histogram(
            "gatehouse_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by route and outcome",
            &["route", "outcome"],
        );
        let upstream_duration = histogram(
            "gatehouse_upstream_duration_seconds",
            "Time from choosing an upstream to its response header, by route",
            &["route"],
        );
        let refresh_duration = histogram(
            "gatehouse_refresh_duration_seconds",
            "Time a transparent refresh took, by outcome",
            &["outcome"],
        );
        let issuer_fetches = IntCounterVec::new(
            Opts::new(
                "gatehouse_issuer_key_fetches_total",
                "Fetches of trusted issuers' keys, by issuer and outcome",
            ),
            &["issuer", "outcome"],
        )
        .expect("static metric definition");
        let gauge = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["issuer"]).expect("static metric definition")
        };
        let issuer_keys = gauge("gatehouse_issuer_keys", "Keys held per trusted issuer");
        let issuer_key_age = gauge(
            "gatehouse_issuer_key_set_age_seconds",
            "Seconds since the issuer's key set was last fetched successfully (-1: never)",
        );
        let issuer_unavailable = counter(
            "gatehouse_issuer_keys_unavailable_total",
            "Tokens answered 503 because their issuer's keys were unavailable",
            "issuer",
        );
        let (reloads, config_generation, config_hash) = reload_metrics(&registry);
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(validations.clone()),
            Box::new(refreshes.clone()),
            Box::new(revocations.clone()),
            Box::new(request_duration.clone()),
            Box::new(upstream_duration.clone()),
            Box::new(refresh_duration.clone()),
            Box::new(issuer_fetches.clone()),
            Box::new(issuer_keys.clone()),
            Box::new(issuer_key_age.clone()),
            Box::new(issuer_unavailable.clone()),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
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
            request_duration,
            upstream_duration,
            refresh_duration,
            issuer_fetches,
            issuer_keys,
            issuer_key_age,
            issuer_unavailable,
            reloads,
            config_generation,
            config_hash,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_and_process_metrics_are_rendered() {
        let metrics = Metrics::new();
        metrics
            .request_duration
            .with_label_values(&["/", "allowed"])
            .observe(0.002);
        metrics
            .upstream_duration
            .with_label_values(&["/"])
            .observe(0.001);
        metrics
            .refresh_duration
            .with_label_values(&["done"])
            .observe(0.02);
        let text = String::from_utf8(metrics.render()).expect("utf-8");
        for expected in [
            "gatehouse_request_duration_seconds_bucket{outcome=\"allowed\",route=\"/\",le=\"0.0025\"} 1",
            "gatehouse_upstream_duration_seconds_count{route=\"/\"} 1",
            "gatehouse_refresh_duration_seconds_sum{outcome=\"done\"} 0.02",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
            "process_cpu_seconds_total ",
        ] {
            assert!(text.contains(expected), "{expected} missing:\n{text}");
        }
    }
}
