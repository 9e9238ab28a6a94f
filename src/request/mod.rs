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
