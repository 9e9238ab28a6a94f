//! The admin listener: `/metrics` (Prometheus text) and `/health` with details, for operators
//! and monitoring. It listens apart from the public listener (loopback in the shipped config),
//! so neither the metrics nor the store's state are visible to the clients of the proxy.
//! `POST /reload` (from loopback only) reloads the configuration file (see
//! [`crate::server::reload`]).

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
use crate::server::reload::{ReloadHandle, Report};

/// The admin service.
pub struct Admin {
    /// The gateway's metrics.
    pub metrics: Arc<Metrics>,
    /// The store, for the health check.
    pub store: Arc<dyn GatewayStore>,
    /// Asks for a configuration reload (`POST /reload`); `None` answers it 404.
    pub reload: Option<ReloadHandle>,
    /// Seconds an idle keep-alive connection stays open: `limits.idleTimeoutSeconds` at start.
    pub idle_timeout_seconds: u64,
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
    /// The answer to a request that was read: status, content type and body. A `HEAD` is
    /// answered as the `GET` of the same path (RFC 9110 §9.3.2); [`respond`] leaves out its body.
    async fn answer(&self, session: &ServerSession) -> (u16, &'static str, Vec<u8>) {
        let header = session.req_header();
        let method = match header.method.as_str() {
            "HEAD" => "GET",
            other => other,
        };
        match (method, header.uri.path()) {
            ("GET", "/metrics") => (200, "text/plain; version=0.0.4", self.metrics.render()),
            ("GET", "/health") => self.health().await,
            ("POST", "/reload") if self.reload.is_some() => self.reload(session).await,
            (_, path) if self.allowed_methods(path).is_some() => (
                405,
                "application/json",
                br#"{"generalErrors":[{"code":"[MethodNotAllowed]","message":"The request method is not allowed on this path."}]}"#.to_vec(),
            ),
            _ => (
                404,
                "application/json",
                br#"{"generalErrors":[{"code":"[NotFound]","message":"Not found."}]}"#.to_vec(),
            ),
        }
    }

    /// The methods `path` is answered with, as an `Allow` header lists them; `None` for a path
    /// the listener does not serve.
    fn allowed_methods(&self, path: &str) -> Option<&'static str> {
        match path {
            "/metrics" | "/health" => Some("GET, HEAD"),
            "/reload" if self.reload.is_some() => Some("POST"),
            _ => None,
        }
    }
}

impl Admin {
    /// `POST /reload`, from loopback only (an IPv4 loopback address seen through a dual-stack
    /// IPv6 listener, `::ffff:127.0.0.1`, is loopback too): reloads the configuration file and answers what
    /// happened — 200 `{"status":"applied","generation","hash","warnings"}`, or 400 with the
    /// file's problems as Errors JSON (`fieldErrors` by path; `generalErrors` for problems of
    /// the whole file) and the running configuration kept; 403 from any other address, 503
    /// when the reload thread is gone.
    async fn reload(&self, session: &ServerSession) -> (u16, &'static str, Vec<u8>) {
        let loopback = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .is_some_and(|a| a.ip().to_canonical().is_loopback());
        if !loopback {
            return (403, "application/json", FORBIDDEN.to_vec());
        }
        let report = match &self.reload {
            Some(handle) => handle.reload().await,
            None => None,
        };
        match report {
            Some(report) => reload_answer(&report),
            None => (503, "application/json", UNAVAILABLE.to_vec()),
        }
    }
}

/// The answer to `POST /reload` for `report`: status, content type and body.
fn reload_answer(report: &Report) -> (u16, &'static str, Vec<u8>) {
    let body = match report {
        Report::Applied {
            generation,
            hash,
            warnings,
        } => {
            let body = serde_json::json!({
                "status": "applied",
                "generation": generation,
                "hash": hash,
                "warnings": warnings,
            });
            return (200, "application/json", body.to_string().into_bytes());
        }
        Report::Refused { problems } => {
            let mut fields = serde_json::Map::new();
            let mut general = Vec::new();
            for problem in problems {
                let error = |code: String| serde_json::json!({"code": code, "message": problem.to_string()});
                if problem.path.is_empty() {
                    general.push(error("[InvalidConfiguration]".into()));
                } else if let serde_json::Value::Array(list) = fields
                    .entry(problem.path.clone())
                    .or_insert_with(|| serde_json::Value::Array(Vec::new()))
                {
                    list.push(error(format!("[invalid]{}", problem.path)));
                }
            }
            let mut body = serde_json::Map::new();
            if !fields.is_empty() {
                body.insert("fieldErrors".into(), fields.into());
            }
            if !general.is_empty() {
                body.insert("generalErrors".into(), general.into());
            }
            serde_json::Value::Object(body)
        }
    };
    (400, "application/json", body.to_string().into_bytes())
}

/// The answer to `POST /reload` from an address other than loopback.
const FORBIDDEN: &[u8] = br#"{"generalErrors":[{"code":"[Forbidden]","message":"Reloads are accepted from loopback only."}]}"#;

/// The answer to `POST /reload` when the reload thread is gone.
const UNAVAILABLE: &[u8] = br#"{"generalErrors":[{"code":"[Unavailable]","message":"The reload thread is not running."}]}"#;

/// Writes one complete answer on `session`: with `head` (the answer to a `HEAD`), the header of
/// `body` (its `Content-Length`) and no body; `allow`, the `Allow` header of a 405.
async fn respond(
    session: &mut ServerSession,
    (status, content_type, body): (u16, &str, Vec<u8>),
    head: bool,
    allow: Option<&str>,
) -> pingora::Result<()> {
    let mut header = ResponseHeader::build(status, Some(4))?;
    if let Some(allow) = allow {
        header.insert_header("Allow", allow)?;
    }
    header.insert_header("Content-Type", content_type)?;
    header.insert_header("Content-Length", body.len().to_string())?;
    header.insert_header("Cache-Control", "no-store")?;
    session.write_response_header(Box::new(header)).await?;
    if !head {
        session.write_response_body(Bytes::from(body), true).await?;
    }
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
                let answer = (400, "application/json", MALFORMED.to_vec());
                let _ = respond(&mut session, answer, false, None).await;
                return None;
            }
        }
        let idle = Some(self.idle_timeout_seconds);
        session.set_keepalive(if *shutdown.borrow() { None } else { idle });
        // Requests pipelined behind this one are kept for the connection's next session,
        // not dropped with a keep-alive answer that promised to read them.
        session.set_pipelining_enabled(true);
        let answer = self.answer(&session).await;
        let head = session.req_header().method == http::Method::HEAD;
        let allow = match answer.0 {
            405 => self.allowed_methods(session.req_header().uri.path()),
            _ => None,
        };
        if let Err(e) = respond(&mut session, answer, head, allow).await {
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
