//! Answers: the gateway's own ([`Gateway::deny`]: every refusal, from a [`GatewayError`];
//! plugin responses and `/health` through [`respond`]), what it does with a request body it
//! refuses, and the token cookies a transparent refresh hands to the browser on any answer.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use super::{forward_auth, grpc, Gateway, RequestContext};
use crate::proxy::error::GatewayError;
use crate::proxy::refresh::Refreshed;

/// The most of a refused body the gateway reads, after answering, before it closes the
/// connection: enough that a client still sending a modest body reads the answer instead of
/// a reset, never enough to hold the gateway.
const DISCARD_LIMIT_BYTES: usize = 1024 * 1024;
/// How long it keeps reading it.
const DISCARD_TIMEOUT: Duration = Duration::from_secs(1);

/// Writes a complete response and ends the request.
pub async fn respond(
    session: &mut Session,
    status: u16,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<()> {
    let mut header = ResponseHeader::build(status, Some(headers.len() + 2))?;
    for (name, value) in headers {
        header.append_header(name.to_string(), *value)?;
    }
    header.insert_header(CONTENT_LENGTH, body.len().to_string())?;
    // A HEAD answer has the GET answer's header and no body (RFC 9110 §9.3.2). The engine
    // drops the body of an HTTP/1.1 one itself, not of an HTTP/2 one, where DATA after a
    // HEAD's answer is a protocol error.
    let body = match session.req_header().method == http::Method::HEAD {
        true => Vec::new(),
        false => body,
    };
    // A failed write is the client's (gone, or not reading: the write timeout): marked as
    // the downstream's, it is logged at debug level like any failure of the client's.
    session
        .write_response_header(Box::new(header), body.is_empty())
        .await
        .map_err(|e| e.into_down())?;
    if !body.is_empty() {
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await
            .map_err(|e| e.into_down())?;
    }
    Ok(())
}

/// True when the request's header declares a body: a chunked one, or a `Content-Length` other
/// than 0.
pub fn declares_body(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .contains_key(http::header::TRANSFER_ENCODING)
        || declared_length(session).is_some_and(|length| length > 0)
}

/// The body length the request declares, when it declares a valid one.
pub fn declared_length(session: &Session) -> Option<u64> {
    session
        .req_header()
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// After a refusal has been written: reads and discards what the client still sends of its
/// body, up to [`DISCARD_LIMIT_BYTES`] or [`DISCARD_TIMEOUT`], so closing the connection does
/// not reset it before the client has read the answer. A body declared far over the limit
/// (more than `max_body_bytes` + [`DISCARD_LIMIT_BYTES`]) is not read at all: the connection
/// closes at once. It is closed afterwards in any case (the caller turned keep-alive off
/// before answering).
pub async fn discard_refused_body(session: &mut Session, max_body_bytes: usize) {
    let far_over = (max_body_bytes + DISCARD_LIMIT_BYTES) as u64;
    if declared_length(session).is_some_and(|len| len > far_over) {
        return;
    }
    let deadline = Instant::now() + DISCARD_TIMEOUT;
    let mut read = 0usize;
    while read < DISCARD_LIMIT_BYTES {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return;
        };
        match tokio::time::timeout(left, session.read_request_body()).await {
            Ok(Ok(Some(chunk))) => read += chunk.len(),
            _ => return,
        }
    }
}

/// The headers by which an upstream lets caches store its answer: replaced by
/// `Cache-Control: no-store` on an answer that sets the session's cookies.
const CACHING_HEADERS: &[&str] = &[
    "Cache-Control",
    "Expires",
    "Surrogate-Control",
    "CDN-Cache-Control",
    "Cloudflare-CDN-Cache-Control",
];

/// The `Set-Cookie` values that delete both token cookies.
pub fn cleared_cookies() -> [String; 2] {
    [
        gatehouse_plugin_api::Cookie::cleared("access_token").to_header_value(),
        gatehouse_plugin_api::Cookie::cleared("refresh_token").to_header_value(),
    ]
}

impl Gateway {
    /// Answers with a gateway error: Errors JSON, the `WWW-Authenticate` challenge where one
    /// applies, `Retry-After` for 503, cleared cookies after a failed refresh, or a redirect to
    /// the route's login page for browsers. A forward-auth decision also names each cookie in
    /// a header of its own and the login page in `X-Gatehouse-Redirect`, and answers the nginx
    /// convention 401 instead of redirecting (see [`forward_auth`]). Counts the outcome and
    /// closes the connection after a 400, 413 or 417.
    pub(super) async fn deny(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
        error: GatewayError,
    ) -> Result<()> {
        ctx.outcome = Some(error.outcome());
        if !error.is_api_answer() {
            self.metrics
                .requests
                .with_label_values(&[error.outcome()])
                .inc();
        }
        let status = error.status();
        if matches!(status, 400 | 413 | 417) {
            // The rest of this connection cannot be trusted to be read the same way (after a
            // 417, the body the client may send anyway would be read as a request).
            session.set_keepalive(None);
        }
        // A refresh done for this request hands its pair to the browser whatever the answer
        // (a refused role, an upstream down): a one-time-use value is never used up unseen.
        let cookies = match ctx.refreshed() {
            Some(refreshed) => self.refreshed_cookies(refreshed, ctx),
            None if status == 401 && ctx.clear_cookies() => cleared_cookies().to_vec(),
            None => Vec::new(),
        };
        let challenge = error.challenge();
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(5);
        for cookie in &cookies {
            headers.push(("Set-Cookie", cookie));
        }
        // A decision also offers each cookie in a header of its own, and the login page.
        let decision = ctx.decision();
        if decision.is_some() {
            headers.extend(forward_auth::cookie_copies(&cookies));
        }
        let login = self.login_redirect(session, ctx, status);
        if let Some(location) = &login {
            headers.push(("Location", location));
            return respond(session, 302, &headers, Vec::new()).await;
        }
        let login_url = self.route(ctx).and_then(|r| r.auth.login_url.as_deref());
        let navigation = super::login::is_navigation(&session.req_header().headers);
        if let (401, Some(url), true) = (status, login_url, navigation) {
            if decision.is_some() {
                headers.push((forward_auth::REDIRECT_HEADER, url));
            }
            if decision.is_none_or(|d| d.redirects()) {
                headers.push(("Location", url));
                return respond(session, 302, &headers, Vec::new()).await;
            }
        }
        if let Some(challenge) = &challenge {
            headers.push(("WWW-Authenticate", challenge));
        }
        if let GatewayError::MethodNotAllowed { allow, .. } = &error {
            // RFC 9110 §15.5.6: a 405 lists the methods the path is served with.
            headers.push(("Allow", allow));
        }
        // A gRPC call is refused in gRPC's terms (a forward-auth decision never is: the front
        // proxy reads the HTTP status).
        if decision.is_none() && grpc::is_grpc(&session.req_header().headers) {
            let message = error.code_and_message().map(|(_, m)| m).unwrap_or_default();
            return grpc::refuse(session, status, &message, &headers).await;
        }
        let body = error.body();
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        if status == 503 {
            headers.push(("Retry-After", "2"));
        }
        respond(session, status, &headers, body).await
    }

    /// A refusal in the request phase: [`Self::deny`], then, for a declared body over the
    /// limit, a short and bounded discard of it before the connection closes. `Ok(true)`: the
    /// request was answered.
    pub(super) async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
        error: GatewayError,
    ) -> Result<bool> {
        let too_large = error == GatewayError::BodyTooLarge;
        self.deny(session, ctx, error).await?;
        if too_large {
            discard_refused_body(session, self.settings.max_body_bytes).await;
        }
        Ok(true)
    }

    /// The hosted-backend login to send a 401'd browser navigation to, on a `login: true`
    /// route (never in a forward-auth decision); `None` otherwise.
    fn login_redirect(
        &self,
        session: &Session,
        ctx: &RequestContext,
        status: u16,
    ) -> Option<String> {
        let login_path = self.route(ctx)?.auth.login_path.as_deref()?;
        let request = session.req_header();
        let browser = super::login::navigation(&request.method, &request.headers);
        (status == 401 && ctx.decision().is_none() && browser).then(|| {
            let path = super::canonical_path_of(session, ctx);
            super::login::location(login_path, path, super::query_of(session, ctx))
        })
    }

    /// True when the request declares a body over the limit.
    pub(super) fn declares_oversized_body(&self, session: &Session) -> bool {
        declared_length(session).is_some_and(|len| len > self.settings.max_body_bytes as u64)
    }

    /// The `Set-Cookie` values that hand a transparent refresh's outcome to the browser: the
    /// new access token, its expiry in `app.at_exp` (readable by scripts, as the login sets it:
    /// FusionAuth's SDKs schedule their refreshes by it, so a stale value would make them
    /// refresh in a loop or never), and the refresh token when it rotated or its window moved.
    /// They are
    /// `Secure` on a TLS listener, with `cookies.secure`, or when a forward-auth decision says
    /// the browser came over TLS.
    fn refreshed_cookies(&self, refreshed: &Refreshed, ctx: &RequestContext) -> Vec<String> {
        let now = self.context.clock.now_millis();
        let secure = self.settings.tls
            || self.settings.secure_cookies
            || ctx.decision().is_some_and(|d| d.https);
        let mut cookies = vec![gatehouse_plugin_api::Cookie::expiring(
            "access_token",
            &refreshed.access_token,
            refreshed.access_expiration_ms,
            now,
            secure,
        )
        .to_header_value()];
        cookies.push(
            gatehouse_plugin_api::Cookie::access_expiry(refreshed.access_expiration_ms, secure)
                .to_header_value(),
        );
        if refreshed.set_refresh_cookie {
            let refresh = gatehouse_plugin_api::Cookie::expiring(
                "refresh_token",
                &refreshed.refresh_token,
                refreshed.refresh_expiration_ms,
                now,
                secure,
            );
            cookies.push(refresh.to_header_value());
        }
        cookies
    }

    /// The `Set-Cookie` values of a request let through: the cookies of a transparent refresh
    /// done for it, or both token cookies cleared after a refresh token was refused; none
    /// otherwise.
    pub(super) fn session_cookies(&self, ctx: &RequestContext) -> Vec<String> {
        if let Some(refreshed) = ctx.refreshed() {
            self.refreshed_cookies(refreshed, ctx)
        } else if ctx.clear_cookies() {
            cleared_cookies().to_vec()
        } else {
            Vec::new()
        }
    }

    /// On the upstream's answer: the [`Self::session_cookies`]. An answer that carries them is
    /// one user's and must not be stored by any cache: whatever caching the upstream allowed
    /// (a `public` page, say) gives way to `Cache-Control: no-store`, or a shared cache in
    /// front could hand the new tokens (or the cleared cookies) to whoever asks next.
    pub(super) fn set_session_cookies(
        &self,
        upstream_response: &mut ResponseHeader,
        ctx: &RequestContext,
    ) -> Result<()> {
        if ctx.refreshed().is_none() && !ctx.clear_cookies() {
            return Ok(());
        }
        for cookie in self.session_cookies(ctx) {
            upstream_response.append_header("Set-Cookie", cookie)?;
        }
        for caching in CACHING_HEADERS {
            upstream_response.remove_header(*caching);
        }
        upstream_response.insert_header("Cache-Control", "no-store")?;
        Ok(())
    }
}
