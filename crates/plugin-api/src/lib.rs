//! The API Gatehouse plugins build against.
//!
//! A plugin is a value implementing [`Plugin`]: it declares the routes it serves
//! ([`RouteSpec`]: a method and a path template such as `/api/jwt/refresh/{tokenId}`) and
//! handles a matched request ([`PluginRequest`]) with the [`PluginContext`] the host gives it:
//! the [`Store`], the [`TokenService`], the [`ApiKeyRing`], a [`Clock`], and the ports to
//! other servers ([`HttpClient`], [`RemoteKeys`]). It reads its
//! `plugins.<name>` settings once with [`plugin::parse_settings`].
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`plugin`] | the [`Plugin`] trait, [`RouteSpec`], [`PluginContext`] |
//! | [`request`], [`response`], [`credentials`] | the request and answer values; the one reader of tokens and cookies, with the edge's ambiguity rules (the proxy reads with it too) |
//! | [`error`], [`json`] | FusionAuth's Errors JSON; JSON bodies within limits |
//! | [`indexed`] | the limits of the free text the stores index (email, username, provider user id, API key) |
//! | [`model`] | FusionAuth's records (tenant, application, user, refresh token, …) |
//! | [`store`] | the storage ports: `Directory`, `UserStore`, `RefreshTokenStore` ([`Store`] is all three) |
//! | [`tokens`], [`apikeys`], [`clock`] | the services: minting and verifying tokens, API keys, time |
//! | [`cpu`] | [`CpuPool`]: where CPU-heavy synchronous steps of a handler run, a bounded number at once |
//! | [`signing`] | [`PendingToken`]: a prepared token, signed at once (cheap keys) or on a [`CpuPool`] when awaited (RSA) |
//! | [`remote`] | the ports to other servers: [`HttpClient`] (outbound HTTP with the host's limits) and [`RemoteKeys`] (JWTs verified with an issuer's published keys) |
//! | `store_suite` | (feature `store-suite`) the tests every store implementation passes |
//!
//! The refresh-token rules are not here: they are the `gatehouse-refresh` crate, which both
//! the JWT plugin and the proxy use. Nothing here depends on the proxy engine, so a plugin can
//! be unit-tested with plain values. Errors are [`ApiError`], which renders FusionAuth's Errors
//! JSON.
#![warn(missing_docs)]

pub mod apikeys;
pub mod claim_headers;
pub mod clock;
pub mod cpu;
pub mod credentials;
pub mod error;
pub mod helpers;
pub mod ids;
pub mod indexed;
pub mod json;
pub mod model;
pub mod plugin;
pub mod remote;
pub mod request;
pub mod response;
pub mod rotations;
pub mod store;
#[cfg(feature = "store-suite")]
pub mod store_suite;
pub mod text;
pub mod tokens;

pub use apikeys::{ApiKeyGrant, ApiKeyRing};
pub use clock::{Clock, SystemClock};
pub use cpu::{CpuPool, CpuPoolError};
pub use error::{ApiError, ErrorItem, Errors};
pub use plugin::{Plugin, PluginContext, RouteSpec};
pub use remote::{
    HttpAnswer, HttpCall, HttpClient, HttpFailure, HttpMethod, Offline, RemoteKeyError, RemoteKeys,
};
pub use request::PluginRequest;
pub use response::{Cookie, PluginResponse, AT_EXP_COOKIE};
pub use rotations::RotationLedger;
pub use store::{Store, StoreError};
pub use tokens::signing;
pub use tokens::signing::PendingToken;
pub use tokens::{
    AccessTokenRequest, ClaimHeader, IssuedToken, TokenError, TokenService, VerifiedClaims,
};
