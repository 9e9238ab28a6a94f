//! Gatehouse: an authentication gateway. A Pingora reverse proxy that validates access tokens
//! inline and applies per-route policy, with FusionAuth's REST API hosted in-process by plugins.
//!
//! The host's modules, in layer order (each uses only those after it; `scripts/import-cycles`
//! checks and prints the order). The plugin contract and the shared refresh rules are the
//! library crates under `crates/`; the plugins live under `plugins/`.
//! - [`cli`]: the commands; [`server`]: start-up (store, keys, plugins, listeners), shutdown,
//!   the admin listener and the demo upstream;
//! - [`proxy`]: the Pingora `ProxyHttp` implementation, its phases in request order, and the
//!   proxy's one error type;
//! - [`config`]: the file as written, substitution, validation into [`config::Config`];
//! - [`api`]: the plugin host (typed settings, router) and the REST API's own runtime;
//! - [`auth`]: the key ring, the token service with its verified-token cache, trusted remote
//!   issuers and their key sets, and the revocation set kept in step with the store;
//! - [`store`]: the storage backends behind the storage ports, and the revocation feed;
//! - [`request`]: a client request read once (framing, target, host, canonical path,
//!   credentials, client address);
//! - [`observe`]: logging and metrics, used by every layer.
#![deny(clippy::unwrap_used, clippy::todo, clippy::unimplemented)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod allocator;
pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod observe;
pub mod proxy;
pub mod request;
pub mod server;
pub mod store;
