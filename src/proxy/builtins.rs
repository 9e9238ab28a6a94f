//! The gateway's built-in answers: the public `/health`, and plugin paths — a plugin request
//! is read here (the body, within `limits.maxBodyBytes`), handled on the API's own runtime
//! ([`crate::api::executor::ApiExecutor`], within its time and in-flight bounds) and its
//! response written here. A path under a plugin's prefix that no plugin serves, or served
//! with another method, is refused through [`GatewayError`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use gatehouse_plugin_api::{ApiError, Plugin, PluginRequest, PluginResponse, RouteSpec};
use pingora::prelude::*;
use pingora::proxy::Session;

use super::body::{
    arrives_too_slowly, has_unmet_expectation, keep_pace, send_continue, waits_for_continue,
};
use super::{access, answer, canonical_path_of, Gateway, RequestContext};
use crate::api::plugins::RouteMatch;
use crate::proxy::error::GatewayError;
use answer::declares_body;

impl Gateway {
    /// Serves the request when the health check or a plugin route matches its canonical path
    /// (a plugin path no plugin serves with this method is refused). True when it was
    /// answered; a request for an upstream costs no allocation here.
    pub(super) async fn serve_builtin(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
    ) -> Result<bool> {
        let path = canonical_path_of(session, ctx);
        if path == "/health" {
            let method = &session.req_header().method;
            if *method != http::Method::GET && *method != http::Method::HEAD {
                let refusal = GatewayError::MethodNotAllowed {
                    method: method.clone(),
                    allow: "GET, HEAD".to_string(),
                };
                Box::pin(self.deny(session, ctx, refusal)).await?;
                return Ok(true);
            }
            ctx.outcome = Some(access::HEALTH);
            ctx.uncommon_mut().builtin = Some(access::HEALTH_ROUTE);
            Box::pin(self.serve_health(session)).await?;
            return Ok(true);
        }
        let header = session.req_header();
        let method = &header.method;
        let refusal = match self.plugins.find(method, path) {
            RouteMatch::None => return Ok(false),
            RouteMatch::Found { .. } if declares_body(session) && has_unmet_expectation(header) => {
                GatewayError::ExpectationFailed
            }
            RouteMatch::Found {
                plugin,
                spec,
                params,
            } => {
                let path = path.to_string();
                ctx.outcome = Some(access::API);
                ctx.uncommon_mut().builtin = Some(plugin.name());
                let (plugin, spec) = (plugin.clone(), spec.clone());
                let started = ctx.started;
                let serve = self.serve_plugin(session, plugin, spec, path, params, started);
                Box::pin(serve).await?;
                return Ok(true);
            }
            RouteMatch::MethodNotAllowed => GatewayError::MethodNotAllowed {
                method: method.clone(),
                allow: self.plugins.allowed_methods(path),
            },
            RouteMatch::UnknownApiPath => GatewayError::UnknownApiPath,
        };
        Box::pin(self.deny(session, ctx, refusal)).await?;
        Ok(true)
    }

    /// Serves a plugin route: reads the body, has the plugin handle the request on the API's
    /// runtime (within its time and in-flight bounds), writes the response. `path` is the
    /// canonical path.
    async fn serve_plugin(
        &self,
        session: &mut Session,
        plugin: Arc<dyn Plugin>,
        spec: RouteSpec,
        path: String,
        params: HashMap<String, String>,
        started: Option<Instant>,
    ) -> Result<()> {
        let body = if self.declares_oversized_body(session) {
            Err(ApiError::PayloadTooLarge)
        } else {
            self.read_body(session, started).await
        };
        let response = match body {
            Ok(body) => {
                let request = self.plugin_request(session, path, body, params);
                let context = self.context.clone();
                match self.api.run(plugin, spec, request, context).await {
                    Ok(response) => response,
                    Err(error) => render_api_error(&error),
                }
            }
            Err(error) => {
                // A refused body: answer now, and do not read the rest of this connection.
                session.set_keepalive(None);
                let response = render_api_error(&error);
                write_plugin_response(session, response).await?;
                answer::discard_refused_body(session, self.settings.max_body_bytes).await;
                return Ok(());
            }
        };
        write_plugin_response(session, response).await
    }

    /// Reads the whole request body, refusing more than the limit, and a body arriving too
    /// slowly since the request `started` (see [`arrives_too_slowly`]).
    async fn read_body(
        &self,
        session: &mut Session,
        started: Option<Instant>,
    ) -> std::result::Result<Vec<u8>, ApiError> {
        let mut body = Vec::new();
        if waits_for_continue(session) && send_continue(session).await.is_err() {
            return Err(ApiError::general(
                "[invalid]",
                "The request body could not be read.",
            ));
        }
        keep_pace(session, started, 0);
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > self.settings.max_body_bytes {
                        return Err(ApiError::PayloadTooLarge);
                    }
                    body.extend_from_slice(&chunk);
                    if started.is_some_and(|s| arrives_too_slowly(s, body.len())) {
                        return Err(ApiError::general(
                            "[invalid]",
                            "The request body arrived too slowly.",
                        ));
                    }
                    keep_pace(session, started, body.len());
                }
                Ok(None) => return Ok(body),
                Err(_) => {
                    return Err(ApiError::general(
                        "[invalid]",
                        "The request body could not be read.",
                    ))
                }
            }
        }
    }

    /// The plugin's view of the request: the canonical path, the query as sent. A `HEAD` is
    /// handed on as the `GET` it asks the header of (the API key's permissions for `GET` apply);
    /// [`answer::respond`] leaves out the body.
    fn plugin_request(
        &self,
        session: &Session,
        path: String,
        body: Vec<u8>,
        path_params: HashMap<String, String>,
    ) -> PluginRequest {
        let header = session.req_header();
        let method = match header.method {
            http::Method::HEAD => http::Method::GET,
            ref other => other.clone(),
        };
        PluginRequest {
            method,
            path,
            query: header.uri.query().unwrap_or("").to_string(),
            headers: header.headers.clone(),
            body,
            client_address: self.client_address(session),
            tls: self.settings.tls,
            path_params,
        }
    }

    /// The public health check: the status and nothing about internals (details are on the
    /// admin listener).
    async fn serve_health(&self, session: &mut Session) -> Result<()> {
        let (status, body) = match crate::store::check_health(self.store.as_ref()).await {
            Ok(()) => (200, &br#"{"status":"ok"}"#[..]),
            Err(e) => {
                tracing::warn!(error = %e, "health check: store unreachable");
                (503, &br#"{"status":"unavailable"}"#[..])
            }
        };
        answer::respond(
            session,
            status,
            &[("Content-Type", "application/json")],
            body.to_vec(),
        )
        .await
    }
}

/// Writes a plugin's response. Unless the plugin said how it may be cached, it is
/// `Cache-Control: no-store`: the API's answers carry tokens, users and session cookies, which
/// no cache on the way may keep (RFC 6749 §5.1 asks the same of token responses).
async fn write_plugin_response(session: &mut Session, response: PluginResponse) -> Result<()> {
    let PluginResponse {
        status,
        headers,
        body,
    } = response;
    let mut headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("Cache-Control"))
    {
        headers.push(("Cache-Control", "no-store"));
    }
    answer::respond(session, status, &headers, body).await
}

/// Renders an API error, logging internal ones with their correlation id.
fn render_api_error(error: &ApiError) -> PluginResponse {
    if let ApiError::Internal {
        correlation_id,
        detail,
    }
    | ApiError::Unavailable {
        correlation_id,
        detail,
    } = error
    {
        tracing::error!(correlation_id = %correlation_id, error = %detail, "API request failed");
    }
    error.to_response()
}
