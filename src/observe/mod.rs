//! Observability shared by every layer: structured logging ([`logging`]) and its direct writer
//! of per-request lines ([`line`]) with their per-thread buffers ([`sink`]), the Prometheus metrics ([`metrics`]), and locks a panic
//! poisoned, taken over and reported ([`poison`]).

pub mod line;
pub mod logging;
pub mod metrics;
pub mod poison;
pub mod sink;
