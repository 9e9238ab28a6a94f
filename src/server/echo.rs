//! The demo upstream: an HTTP service that answers every request with the method, path, query,
//! headers and body it received, as JSON. The default `config.yaml` protects it, so the whole
//! flow (token in, identity headers out) can be seen with curl; the tests use it as a real
//! upstream.

use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Map, Value};

/// The echo service.
pub struct Echo;

/// Largest body the echo service reads back.
const MAX_ECHO_BODY: usize = 1024 * 1024;

#[async_trait]
impl ServeHttp for Echo {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = session.read_request_body().await {
            if body.len() + chunk.len() > MAX_ECHO_BODY {
                break;
            }
            body.extend_from_slice(&chunk);
        }
        let header = session.req_header();
        let mut headers = Map::new();
        for (name, value) in header.headers.iter() {
            let value = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
            match headers.get_mut(name.as_str()) {
                Some(Value::Array(values)) => values.push(value),
                Some(existing) => {
                    let first = existing.take();
                    *existing = Value::Array(vec![first, value]);
                }
                None => {
                    headers.insert(name.as_str().to_string(), value);
                }
            }
        }
        let echoed = json!({
            "method": header.method.as_str(),
            "path": header.uri.path(),
            "query": header.uri.query().unwrap_or(""),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        });
        let bytes = serde_json::to_vec_pretty(&echoed).unwrap_or_default();
        http::Response::builder()
            .status(200)
            .header("Content-Type", "application/json")
            .header("Content-Length", bytes.len())
            .body(bytes)
            .unwrap_or_else(|_| http::Response::new(Vec::new()))
    }
}
