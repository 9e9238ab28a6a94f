//! What a client request is, read once before any route or plugin sees it, in request order:
//! the framing, target form and canonical host and path ([`target`], over [`host`] and
//! [`canonical`]), the credentials ([`credentials`], through the reader the plugins share) and
//! the client's address ([`client`]); in forward-auth mode, the request a front proxy asks
//! about ([`forwarded`]). Whatever cannot be read one way only is refused here,
//! with a reason the proxy turns into its answer. Plain functions over `http` types: no proxy
//! engine.

pub mod canonical;
pub mod client;
pub mod credentials;
pub mod forwarded;
pub mod host;
pub mod target;

/// A table of the bytes that are ASCII letters or digits or one of `extra`: one look a byte for
/// the hot path's scans (a canonical path, a conventional header name).
pub(crate) const fn alphanumeric_or(extra: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = (byte as u8).is_ascii_alphanumeric();
        byte += 1;
    }
    let mut at = 0;
    while at < extra.len() {
        table[extra[at] as usize] = true;
        at += 1;
    }
    table
}
