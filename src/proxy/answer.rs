//! Answers the gateway writes itself (refusals, plugin responses, `/health`), and what it does
//! with a request body it refuses.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

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
    session
        .write_response_header(Box::new(header), body.is_empty())
        .await?;
    if !body.is_empty() {
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await?;
    }
    Ok(())
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

/// True when the client is a browser asking for a page.
pub fn wants_html(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// The `Set-Cookie` values that delete both token cookies.
pub fn cleared_cookies() -> [String; 2] {
    [
        gatehouse_plugin_api::Cookie::cleared("access_token").to_header_value(),
        gatehouse_plugin_api::Cookie::cleared("refresh_token").to_header_value(),
    ]
}
