//! Chunked request bodies on proxied routes: judged before any of them reaches the upstream.
//!
//! The engine's chunked parser (the patched copy in `vendor/pingora-core`, see its README)
//! refuses malformed framing — control bytes or bare CR/LF in a chunk extension, more than
//! 4 KiB of extensions in a body, junk around a chunk size, more than 16 hex digits, an
//! oversized or malformed trailer section — but only as the body is read, and the engine
//! sends the request header upstream before it reads the body. So a chunked body is read
//! here, in the request phase, before the upstream is contacted:
//!
//! - a body that ends within the engine's retry buffer (64 KiB) is read whole; the engine then
//!   sends it upstream from that buffer, as it does when it retries a request. A malformed one
//!   is refused with 400 and the upstream never hears of the request;
//! - a longer body is read up to the buffer, then the rest streams through
//!   [`HeldBody::filter`], which holds every byte back until the body's last chunk has been
//!   parsed (at most `limits.maxBodyBytes` of it). A malformed one is refused with 400 and
//!   the upstream, which already has the request header, gets no byte of the body: the
//!   gateway closes that upstream connection.
//!
//! Bodies framed by `Content-Length` have no chunk framing to judge and stream as before.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::header::{EXPECT, TRANSFER_ENCODING};
use pingora::prelude::*;
use pingora::proxy::Session;

use super::{Gateway, RequestContext};

/// What the proxy does with the request body it streams upstream.
#[derive(Debug, Default)]
pub enum HeldBody {
    /// Not a chunked body: streamed as read, only counted against the limit.
    #[default]
    Streaming,
    /// A chunked body read whole before the upstream was contacted; the engine sends it from
    /// its retry buffer. Already counted.
    Replayed,
    /// A chunked body longer than the engine's retry buffer: what was read so far, held back
    /// until the last chunk has been parsed.
    Holding(BytesMut),
}

impl HeldBody {
    /// Reads a chunked request body before the upstream is contacted (see the module
    /// documentation). `max_body_bytes` is the body limit; `counted` the body bytes seen so
    /// far, updated.
    ///
    /// Returns how the rest of the body is to be handled, or the error that refuses the
    /// request: `HTTPStatus(413)` over the limit, or the engine's read error marked as the
    /// client's (a framing error is answered 400 by the proxy's failure path; a connection
    /// the client closed gets no answer).
    pub async fn prefetch(
        session: &mut Session,
        max_body_bytes: usize,
        counted: &mut usize,
        started: Option<Instant>,
    ) -> Result<HeldBody> {
        session.as_mut().enable_retry_buffering();
        let mut held = BytesMut::new();
        loop {
            if session.as_ref().retry_buffer_truncated() {
                // The engine cannot replay this body: a data piece was just read, so the body
                // is not done (its end is only ever reported by a read with no data).
                return Ok(HeldBody::Holding(held));
            }
            match session.read_request_body().await {
                Ok(Some(piece)) => {
                    count(counted, piece.len(), max_body_bytes, started)?;
                    held.extend_from_slice(&piece);
                    keep_pace(session, started, *counted);
                }
                Ok(None) => return Ok(HeldBody::Replayed),
                Err(e) => return Err(e.into_down()),
            }
        }
    }

    /// The request body filter: counts the bytes of a streamed body against the limit, and
    /// holds back every byte of a long chunked body until its end, then hands the whole body
    /// on at once. `body` is the piece the engine is about to send upstream (an empty piece is
    /// not sent), `end_of_stream` whether the client's body has ended.
    ///
    /// Returns `HTTPStatus(413)` when the body goes over `max_body_bytes`, `HTTPStatus(408)`
    /// when it arrives too slowly since the request `started` ([`arrives_too_slowly`]).
    pub fn filter(
        &mut self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        counted: &mut usize,
        max_body_bytes: usize,
        started: Option<Instant>,
    ) -> Result<()> {
        match self {
            HeldBody::Replayed => Ok(()),
            HeldBody::Streaming => match body {
                Some(piece) => count(counted, piece.len(), max_body_bytes, started),
                None => Ok(()),
            },
            HeldBody::Holding(held) => {
                if let Some(piece) = body.take() {
                    count(counted, piece.len(), max_body_bytes, started)?;
                    held.extend_from_slice(&piece);
                }
                *body = Some(if end_of_stream {
                    std::mem::take(held).freeze()
                } else {
                    Bytes::new()
                });
                Ok(())
            }
        }
    }
}

/// Adds `more` body bytes to `counted`; `HTTPStatus(413)` once over `max_body_bytes`,
/// `HTTPStatus(408)` when the body, `counted` bytes since the request `started`, arrives too
/// slowly ([`arrives_too_slowly`]; an empty piece is not judged).
fn count(
    counted: &mut usize,
    more: usize,
    max_body_bytes: usize,
    started: Option<Instant>,
) -> Result<()> {
    *counted += more;
    if *counted > max_body_bytes {
        return Error::e_explain(HTTPStatus(413), "request body over the limit");
    }
    if more > 0 && started.is_some_and(|s| arrives_too_slowly(s, *counted)) {
        return Error::e_explain(HTTPStatus(408), "request body arriving too slowly");
    }
    Ok(())
}

/// How long a request may take before its body must keep up with [`BODY_BYTES_PER_SECOND`].
const BODY_GRACE_MILLIS: u128 = 20_000;

/// The pace a request body must keep once [`BODY_GRACE_MILLIS`] have passed: each second
/// more of the request's time takes this many more bytes. Apache's `mod_reqtimeout` default
/// (`body=20,MinRate=500`).
const BODY_BYTES_PER_SECOND: u128 = 500;

/// True when a request that `started` has had more time than its body of `received` bytes
/// earns: 20 s, and one more second for each 500 bytes. A client trickling its body (a slow
/// POST, a byte every few seconds, each read well within the read timeout) is cut off
/// instead of holding its connection, and a slot of `limits.maxConnections`, for as long as
/// it likes; any upload faster than 4 kbit/s is never cut.
pub(super) fn arrives_too_slowly(started: Instant, received: usize) -> bool {
    Instant::now() > body_deadline(started, received)
}

/// When a request that `started` and has `received` body bytes must have its next piece of
/// body: see [`arrives_too_slowly`].
pub(super) fn body_deadline(started: Instant, received: usize) -> Instant {
    let earned = BODY_GRACE_MILLIS as u64 + received as u64 * 1000 / BODY_BYTES_PER_SECOND as u64;
    started + std::time::Duration::from_millis(earned)
}

/// Bounds the engine's next reads of the request body by the time its `received` bytes
/// earned since the request `started`: bytes that carry no data (chunk extensions, trailers,
/// a chunk size's leading zeros) earn no time, so a client trickling them is cut off at the
/// deadline instead of renewing the read timeout with each byte.
pub(super) fn keep_pace(session: &mut Session, started: Option<Instant>, received: usize) {
    if let Some(started) = started {
        session
            .as_mut()
            .set_body_deadline(Some(body_deadline(started, received)));
    }
}

/// Whether the request waits for `100 Continue` before it sends its body: `Expect:
/// 100-continue` on an HTTP/1.1 request (RFC 9110 §10.1.1; an HTTP/1.0 client cannot ask)
/// that has a body. HTTP/2 clients are not answered early (the engine sends no informational
/// answer over HTTP/2); they send on after their own wait.
pub(super) fn waits_for_continue(session: &mut Session) -> bool {
    let header = session.req_header();
    header.version == http::Version::HTTP_11
        && header
            .headers
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
        && !session.as_ref().is_http2()
        && !session.as_mut().is_body_empty()
}

/// True when the request names an expectation the gateway does not meet (RFC 9110 §10.1.1):
/// an `Expect` member other than `100-continue` (no parameters; any case), on an HTTP/1.1 or
/// HTTP/2 request. An HTTP/1.0 request's expectations are ignored, as the RFC requires of
/// `100-continue` there. Asked only of an admitted request with a body (an expectation is
/// about the body; a request without one has nothing to expect, and costs no lookup). No
/// upstream ever gets the header: the gateway meets the expectation itself
/// ([`send_continue`]) and strips it (`src/proxy/upstream.rs`).
pub(super) fn has_unmet_expectation(header: &RequestHeader) -> bool {
    let mut values = header.headers.get_all(EXPECT).iter().peekable();
    if values.peek().is_none() || header.version < http::Version::HTTP_11 {
        return false;
    }
    values.any(|value| {
        value
            .as_bytes()
            .split(|b| *b == b',')
            .map(<[u8]>::trim_ascii)
            .any(|member| !member.is_empty() && !member.eq_ignore_ascii_case(b"100-continue"))
    })
}

/// Once a request that [`waits_for_continue`] has been admitted (an API request; a proxied
/// one, whose body the gateway reads itself, judged whole when chunked): answers `100
/// Continue`. Without it the client holds its body back until its own timeout (a second, for
/// curl) while the gateway waits for it, or relies on an upstream that may not answer. The
/// expectation is then met, and taken off the request: the upstream does not answer it again
/// (nginx and Envoy do the same). A refused request gets its final answer instead, and its
/// body is never asked for. `Err` is a write the client did not take.
pub(super) async fn send_continue(session: &mut Session) -> Result<()> {
    session
        .as_mut()
        .write_continue_response()
        .await
        .map_err(|e| e.into_down())?;
    session.req_header_mut().remove_header(&EXPECT);
    Ok(())
}

impl Gateway {
    /// For an admitted request with a body: refuses an expectation other than `100-continue`
    /// (`HTTPStatus(417)`, [`has_unmet_expectation`]); tells a client that waits to send it
    /// ([`send_continue`]); bounds its reads by the pace a body must keep
    /// ([`keep_pace`]); with a chunked body, judges the body before the upstream hears of the
    /// request ([`HeldBody::prefetch`]). A refusal is an `Err`, answered by
    /// `fail_to_proxy`; a body framed by `Content-Length` streams as it comes.
    pub(super) async fn hold_chunked_body(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        if !session.as_mut().is_body_empty() {
            if has_unmet_expectation(session.req_header()) {
                return Error::e_explain(HTTPStatus(417), "an expectation other than 100-continue");
            }
            if waits_for_continue(session) {
                Box::pin(send_continue(session)).await?;
            }
            keep_pace(session, ctx.started, 0);
        }
        if session.req_header().headers.contains_key(TRANSFER_ENCODING) {
            let prefetch = HeldBody::prefetch(
                session,
                self.settings.max_body_bytes,
                &mut ctx.body_bytes,
                ctx.started,
            );
            let held = Box::pin(prefetch).await?;
            ctx.uncommon_mut().held_body = held;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A body earns 20 s, then one more second each 500 bytes; a piece that arrives after
    /// the time it earned is refused with 408, an empty piece never.
    #[test]
    fn a_body_must_keep_up_with_the_time_it_has_earned() {
        let ago = |seconds| {
            Instant::now()
                .checked_sub(std::time::Duration::from_secs(seconds))
                .expect("uptime")
        };
        assert!(!arrives_too_slowly(ago(0), 0));
        assert!(!arrives_too_slowly(ago(15), 1));
        assert!(arrives_too_slowly(ago(25), 1));
        assert!(!arrives_too_slowly(ago(25), 5_000));
        assert!(arrives_too_slowly(ago(45), 5_000));
        assert!(!arrives_too_slowly(ago(300), 200_000));
        let mut counted = 0;
        let slow = count(&mut counted, 1, 10, Some(ago(25))).expect_err("too slow");
        assert_eq!(*slow.etype(), HTTPStatus(408));
        let mut counted = 0;
        assert!(count(&mut counted, 0, 10, Some(ago(25))).is_ok());
        assert!(count(&mut counted, 1, 10, None).is_ok());
    }

    /// Only `100-continue` is an expectation the gateway meets; an HTTP/1.0 request's are
    /// ignored.
    #[test]
    fn expectations_other_than_100_continue_are_unmet() {
        let request = |version, values: &[&str]| {
            let mut header = RequestHeader::build("POST", b"/", None).expect("request");
            header.set_version(version);
            for value in values {
                header.append_header("Expect", *value).expect("header");
            }
            header
        };
        use http::Version;
        for met in [
            &[][..],
            &["100-continue"],
            &["100-Continue"],
            &[" 100-continue , "],
            &["100-continue", "100-CONTINUE"],
        ] {
            assert!(
                !has_unmet_expectation(&request(Version::HTTP_11, met)),
                "{met:?}"
            );
        }
        for unmet in [
            &["foo"][..],
            &["100-continue, foo"],
            &["100-continue;x=1"],
            &["100-continue", "bar"],
            &["100-continuee"],
        ] {
            assert!(
                has_unmet_expectation(&request(Version::HTTP_11, unmet)),
                "{unmet:?}"
            );
            assert!(
                has_unmet_expectation(&request(Version::HTTP_2, unmet)),
                "{unmet:?}"
            );
            assert!(
                !has_unmet_expectation(&request(Version::HTTP_10, unmet)),
                "{unmet:?}"
            );
        }
    }

    fn filter(
        held: &mut HeldBody,
        piece: Option<&'static [u8]>,
        end: bool,
        counted: &mut usize,
    ) -> Result<Option<Bytes>> {
        let mut body = piece.map(Bytes::from_static);
        held.filter(&mut body, end, counted, 10, Some(Instant::now()))?;
        Ok(body)
    }

    #[test]
    fn a_long_chunked_body_is_held_back_until_its_end() {
        let mut held = HeldBody::Holding(BytesMut::from(&b"abc"[..]));
        let mut counted = 3;
        let out = filter(&mut held, Some(b"de"), false, &mut counted).expect("within");
        assert_eq!(
            out.as_deref(),
            Some(&b""[..]),
            "nothing is sent before the end"
        );
        let out = filter(&mut held, Some(b"f"), false, &mut counted).expect("within");
        assert_eq!(out.as_deref(), Some(&b""[..]));
        let out = filter(&mut held, None, true, &mut counted).expect("within");
        assert_eq!(
            out.as_deref(),
            Some(&b"abcdef"[..]),
            "the whole body at the end"
        );
        assert_eq!(counted, 6);
    }

    #[test]
    fn the_last_piece_and_the_end_can_come_together() {
        let mut held = HeldBody::Holding(BytesMut::from(&b"ab"[..]));
        let mut counted = 2;
        let out = filter(&mut held, Some(b"cd"), true, &mut counted).expect("within");
        assert_eq!(out.as_deref(), Some(&b"abcd"[..]));
    }

    #[test]
    fn the_limit_holds_for_held_and_streamed_bodies() {
        let mut held = HeldBody::Holding(BytesMut::from(&b"12345678"[..]));
        let mut counted = 8;
        let error = filter(&mut held, Some(b"abc"), false, &mut counted).expect_err("over");
        assert_eq!(*error.etype(), HTTPStatus(413));
        let mut streaming = HeldBody::Streaming;
        let mut counted = 0;
        let out = filter(&mut streaming, Some(b"12345"), false, &mut counted).expect("within");
        assert_eq!(out.as_deref(), Some(&b"12345"[..]), "streamed as read");
        let error = filter(&mut streaming, Some(b"123456"), true, &mut counted).expect_err("over");
        assert_eq!(*error.etype(), HTTPStatus(413));
    }

    #[test]
    fn a_replayed_body_passes_as_the_engine_sends_it_and_is_not_counted_twice() {
        let mut held = HeldBody::Replayed;
        let mut counted = 9;
        let out = filter(&mut held, Some(b"123456789"), true, &mut counted).expect("counted");
        assert_eq!(out.as_deref(), Some(&b"123456789"[..]));
        assert_eq!(counted, 9);
    }

    /// An engine session that has read the request header of `request`, sent over TCP, and
    /// the client's task (its stream, once the whole request is written or refused).
    pub(in crate::proxy) async fn engine_session(
        request: Vec<u8>,
    ) -> (
        pingora::protocols::http::v1::server::HttpSession,
        tokio::task::JoinHandle<tokio::net::TcpStream>,
    ) {
        use pingora::protocols::http::v1::server::HttpSession;
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            // The client may be cut off once the engine refuses the body.
            let _ = stream.write_all(&request).await;
            stream
        });
        let (stream, _) = listener.accept().await.expect("accept");
        let mut session = HttpSession::new(Box::new(pingora::protocols::l4::stream::Stream::from(
            stream,
        )));
        session.read_request().await.expect("request header");
        (session, client)
    }

    /// Sends `request` to an engine session over TCP and reads its body to the end: the body,
    /// or the engine's error kind.
    async fn engine_reads(request: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
        let (mut session, client) = engine_session(request).await;
        let mut body = Vec::new();
        let outcome = loop {
            match session.read_body_bytes().await {
                Ok(Some(piece)) => body.extend_from_slice(&piece),
                Ok(None) => break Ok(body),
                Err(e) => break Err(e.etype().as_str().to_string()),
            }
        };
        drop(client.await);
        outcome
    }

    fn chunked(body: &[u8]) -> Vec<u8> {
        let mut request =
            b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        request.extend_from_slice(body);
        request
    }

    #[tokio::test]
    async fn the_engine_refuses_malformed_chunk_size_lines() {
        let long_ext = format!("5;{}\r\nhello\r\n0\r\n\r\n", "a".repeat(4100));
        let spread_ext = format!(
            "{}0\r\n\r\n",
            format!("1;{}\r\nx\r\n", "e".repeat(1000)).repeat(5)
        );
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "bare LF in an extension",
                b"5;a\nb\r\nhello\r\n0\r\n\r\n".to_vec(),
            ),
            (
                "bare CR in an extension",
                b"5;a\rb\r\nhello\r\n0\r\n\r\n".to_vec(),
            ),
            (
                "NUL in an extension",
                b"5;a\x00b\r\nhello\r\n0\r\n\r\n".to_vec(),
            ),
            (
                "ESC in an extension",
                b"5;a=\x1b\r\nhello\r\n0\r\n\r\n".to_vec(),
            ),
            (
                "DEL in an extension",
                b"5;a\x7f\r\nhello\r\n0\r\n\r\n".to_vec(),
            ),
            (
                "a bare LF ending the line",
                b"5\nhello\r\n0\r\n\r\n".to_vec(),
            ),
            ("an empty chunk size", b"\r\nhello\r\n0\r\n\r\n".to_vec()),
            (
                "an extension without a size",
                b";a=b\r\nhello\r\n0\r\n\r\n".to_vec(),
            ),
            ("leading space", b" 5\r\nhello\r\n0\r\n\r\n".to_vec()),
            ("leading sign", b"+5\r\nhello\r\n0\r\n\r\n".to_vec()),
            ("a 0x prefix", b"0x5\r\nhello\r\n0\r\n\r\n".to_vec()),
            ("trailing junk", b"5x\r\nhello\r\n0\r\n\r\n".to_vec()),
            (
                "junk after whitespace",
                b"5 x\r\nhello\r\n0\r\n\r\n".to_vec(),
            ),
            ("trailing whitespace", b"5 \r\nhello\r\n0\r\n\r\n".to_vec()),
            (
                "17 hex digits",
                b"00000000000000005\r\nhello\r\n0\r\n\r\n".to_vec(),
            ),
            ("one extension over 4 KiB", long_ext.into_bytes()),
            ("extensions over 4 KiB in all", spread_ext.into_bytes()),
            (
                "NUL in the last chunk's extension",
                b"0;\x00\r\n\r\n".to_vec(),
            ),
            ("NUL in a trailer", b"0\r\nX-T: a\x00b\r\n\r\n".to_vec()),
            (
                "a bare LF in a trailer",
                b"0\r\nX-T: a\nX-U: b\r\n\r\n".to_vec(),
            ),
        ];
        for (what, body) in cases {
            let outcome = engine_reads(chunked(&body)).await;
            assert!(outcome.is_err(), "{what}: accepted as {outcome:?}");
        }
        let mut oversized = b"0\r\n".to_vec();
        for i in 0..2000 {
            oversized
                .extend_from_slice(format!("X-Trailer-{i}: {}\r\n", "v".repeat(40)).as_bytes());
        }
        oversized.extend_from_slice(b"\r\n");
        let outcome = engine_reads(chunked(&oversized)).await;
        assert!(
            outcome.is_err(),
            "an oversized trailer section: {outcome:?}"
        );
    }

    #[tokio::test]
    async fn the_engine_accepts_well_formed_chunked_bodies() {
        let budget = format!("5;{}\r\nhello\r\n0\r\n\r\n", "a".repeat(4095));
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("plain", b"5\r\nhello\r\n0\r\n\r\n".to_vec()),
            ("an extension", b"5;a=b\r\nhello\r\n0\r\n\r\n".to_vec()),
            (
                "whitespace before extensions",
                b"5 ;a=b ;c\r\nhello\r\n0\r\n\r\n".to_vec(),
            ),
            (
                "a quoted value with HTAB and obs-text",
                b"5;a=\"x\ty\xff\"\r\nhello\r\n0\r\n\r\n".to_vec(),
            ),
            (
                "16 hex digits, upper case",
                b"0000000000000005\r\nhello\r\n0\r\n\r\n".to_vec(),
            ),
            ("extensions of exactly 4 KiB", budget.into_bytes()),
            (
                "trailers",
                b"5\r\nhello\r\n0;last\r\nX-T: v\tw\r\nX-U: z\r\n\r\n".to_vec(),
            ),
        ];
        for (what, body) in cases {
            let outcome = engine_reads(chunked(&body)).await;
            assert_eq!(outcome.as_deref(), Ok(&b"hello"[..]), "{what}");
        }
        let outcome = engine_reads(chunked(b"A\r\n0123456789\r\n0\r\n\r\n")).await;
        assert_eq!(outcome.as_deref(), Ok(&b"0123456789"[..]), "upper-case hex");
    }
}
