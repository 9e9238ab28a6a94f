//! Observability shared by every layer: structured logging ([`logging`]) and the Prometheus
//! metrics ([`metrics`]).

pub mod logging;
pub mod metrics;
