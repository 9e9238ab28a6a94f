//! The admin listener: `/metrics` (Prometheus text) and `/health` with details, for operators
//! and monitoring. It listens apart from the public listener (loopback in the shipped config),
//! so neither the metrics nor the store's state are visible to the clients of the proxy.

use std::sync::Arc;

use crate::store::GatewayStore;
use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use uuid::Uuid;

use crate::metrics::Metrics;

/// The admin service.
pub struct Admin {
    /// The gateway's metrics.
    pub metrics: Arc<Metrics>,
    /// The store, for the health check.
    pub store: Arc<dyn GatewayStore>,
}

impl Admin {
    /// The health check with details: 200 when the store answers, else 503 with a correlation
    /// id that the log line carries too.
    async fn health(&self) -> (u16, &'static str, Vec<u8>) {
        let body = match self.store.ping().await {
            Ok(()) => {
                return (
                    200,
                    "application/json",
                    br#"{"status":"ok","store":"ok"}"#.to_vec(),
                )
            }
            Err(e) => {
                let id = Uuid::new_v4();
                tracing::error!(correlation_id = %id, error = %e, "health check: store unreachable");
                format!(
                    r#"{{"status":"unavailable","store":"unreachable","correlationId":"{id}"}}"#
                )
            }
        };
        (503, "application/json", body.into_bytes())
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let header = session.req_header();
        let (status, content_type, body) = match (header.method.as_str(), header.uri.path()) {
            ("GET", "/metrics") => (200, "text/plain; version=0.0.4", self.metrics.render()),
            ("GET", "/health") => self.health().await,
            _ => (
                404,
                "application/json",
                br#"{"generalErrors":[{"code":"[NotFound]","message":"Not found."}]}"#.to_vec(),
            ),
        };
        http::Response::builder()
            .status(status)
            .header("Content-Type", content_type)
            .header("Content-Length", body.len())
            .body(body)
            .unwrap_or_default()
    }
}
