//! The admin listener: `/metrics` (Prometheus text) and `/health` with details, for operators
//! and monitoring. It listens apart from the public listener (loopback in the shipped config),
//! so neither the metrics nor the store's state are visible to the clients of the proxy.

use std::sync::Arc;

use crate::store::GatewayStore;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use uuid::Uuid;

use crate::observe::metrics::Metrics;

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
        let body = match crate::store::check_health(self.store.as_ref()).await {
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

/// The body of the answer to a request that cannot be read.
const MALFORMED: &[u8] =
    br#"{"generalErrors":[{"code":"[MalformedRequest]","message":"The request could not be read."}]}"#;

impl Admin {
    /// The answer to a request that was read: status, content type and body.
    async fn answer(&self, session: &ServerSession) -> (u16, &'static str, Vec<u8>) {
        let header = session.req_header();
        match (header.method.as_str(), header.uri.path()) {
            ("GET", "/metrics") => (200, "text/plain; version=0.0.4", self.metrics.render()),
            ("GET", "/health") => self.health().await,
            _ => (
                404,
                "application/json",
                br#"{"generalErrors":[{"code":"[NotFound]","message":"Not found."}]}"#.to_vec(),
            ),
        }
    }
}

/// Writes one complete answer on `session`.
async fn respond(
    session: &mut ServerSession,
    status: u16,
    content_type: &str,
    body: Vec<u8>,
) -> pingora::Result<()> {
    let mut header = ResponseHeader::build(status, Some(3))?;
    header.insert_header("Content-Type", content_type)?;
    header.insert_header("Content-Length", body.len().to_string())?;
    header.insert_header("Cache-Control", "no-store")?;
    session.write_response_header(Box::new(header)).await?;
    session.write_response_body(Bytes::from(body), true).await?;
    session.finish_body().await
}

/// The admin listener's HTTP application. Unlike the engine's generic one, a request that
/// cannot be read gets a 400 with Errors JSON, and the log names only the kind of failure: the
/// engine's error would carry the raw header block (cookies, `Authorization`).
#[async_trait]
impl HttpServerApp for Admin {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match session.read_request().await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::debug!(kind = ?e.etype(), "admin listener: a request that cannot be read was refused");
                session.set_keepalive(None);
                let _ = respond(&mut session, 400, "application/json", MALFORMED.to_vec()).await;
                return None;
            }
        }
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
        let (status, content_type, body) = self.answer(&session).await;
        if let Err(e) = respond(&mut session, status, content_type, body).await {
            tracing::debug!(kind = ?e.etype(), "admin listener: the answer could not be written");
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(stream) => stream.map(|s| ReusedHttpStream::from_reusable_stream(s, settings)),
            Err(_) => None,
        }
    }
}
