//! Observability shared by every layer: structured logging ([`logging`]), the Prometheus
//! metrics ([`metrics`]), and locks a panic poisoned, taken over and reported ([`poison`]).

pub mod logging;
pub mod metrics;
pub mod poison;
