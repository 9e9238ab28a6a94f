//! The gateway's refusals of gRPC calls, in gRPC's own terms: a gRPC client (`content-type:
//! application/grpc…` over HTTP/2) gets a trailers-only answer — HTTP 200, `grpc-status` and
//! `grpc-message` in the one header block that ends the stream — as gRPC servers and Envoy's
//! authorization filter answer, so every client reads the status the gateway meant
//! (`UNAUTHENTICATED` for a missing or refused token, `PERMISSION_DENIED` for the policy…) and
//! its message, instead of mapping an HTTP status it was not meant to see.

use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::http::HttpTask;
use pingora::proxy::Session;

/// True when `headers` are a gRPC call's: `content-type` is `application/grpc`, alone or with
/// a `+format` or parameters (any case). gRPC-Web (`application/grpc-web…`) is not: its
/// clients read statuses from the body.
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    let Some(value) = headers.get(http::header::CONTENT_TYPE) else {
        return false;
    };
    let value = value.as_bytes();
    let prefix = b"application/grpc";
    value.len() >= prefix.len()
        && value[..prefix.len()].eq_ignore_ascii_case(prefix)
        && matches!(value.get(prefix.len()), None | Some(b'+' | b';'))
}

/// The gRPC status code (gRPC's `doc/statuscodes.md`) of the gateway's HTTP status.
pub fn status_code(http_status: u16) -> u8 {
    match http_status {
        400 => 3,        // INVALID_ARGUMENT
        401 => 16,       // UNAUTHENTICATED
        403 => 7,        // PERMISSION_DENIED
        404 => 12,       // UNIMPLEMENTED: no route, no method there
        405 => 12,       // UNIMPLEMENTED
        413 | 431 => 8,  // RESOURCE_EXHAUSTED
        502..=504 => 14, // UNAVAILABLE
        _ => 13,         // INTERNAL
    }
}

/// `message` percent-encoded as `grpc-message` requires: every byte outside printable ASCII
/// (space to `~`), and `%` itself.
pub fn encode_message(message: &str) -> String {
    let mut encoded = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (b' '..=b'~').contains(&byte) && byte != b'%' {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Answers the call with a trailers-only response: HTTP 200, `content-type: application/grpc`,
/// `grpc-status` of `http_status`, `grpc-message` (`message`, encoded), and `headers` (cookies of
/// a transparent refresh, a challenge); no body.
pub async fn refuse(
    session: &mut Session,
    http_status: u16,
    message: &str,
    headers: &[(&str, &str)],
) -> Result<()> {
    let mut header = ResponseHeader::build(200, Some(headers.len() + 3))?;
    for (name, value) in headers {
        header.append_header(name.to_string(), *value)?;
    }
    header.insert_header(http::header::CONTENT_TYPE, "application/grpc")?;
    header.insert_header("grpc-status", status_code(http_status).to_string())?;
    header.insert_header("grpc-message", encode_message(message))?;
    // One header block that ends the stream (`write_response_header` would end it with an
    // empty DATA frame, which gRPC clients read as a call cut short).
    let task = HttpTask::Header(Box::new(header), true);
    session.write_response_tasks(vec![task]).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content_type(value: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, value.parse().expect("value"));
        headers
    }

    #[test]
    fn grpc_calls_are_told_by_their_content_type() {
        for value in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC;x=1",
        ] {
            assert!(is_grpc(&content_type(value)), "{value}");
        }
        for value in [
            "application/grpc-web",
            "application/grpcx",
            "application/json",
        ] {
            assert!(!is_grpc(&content_type(value)), "{value}");
        }
        assert!(!is_grpc(&http::HeaderMap::new()));
    }

    #[test]
    fn refusals_map_to_the_grpc_statuses_clients_expect() {
        assert_eq!(status_code(401), 16);
        assert_eq!(status_code(403), 7);
        assert_eq!(status_code(503), 14);
        assert_eq!(status_code(431), 8);
        assert_eq!(status_code(500), 13);
    }

    #[test]
    fn the_message_is_percent_encoded() {
        assert_eq!(encode_message("100% é\n"), "100%25 %C3%A9%0A");
        assert_eq!(encode_message("plain (text)."), "plain (text).");
    }
}
