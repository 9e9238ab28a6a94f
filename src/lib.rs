//! Gatehouse: an authentication gateway. A Pingora reverse proxy that validates access tokens
//! inline and applies per-route policy, with FusionAuth's REST API hosted in-process by plugins.
//!
//! Layout:
//! - [`config`]: the file as written, substitution, validation into [`config::Config`];
//! - [`store`]: the storage backends behind the storage ports (the plugin API's, the
//!   identity-provider plugin's, the host's), and the revocation feed;
//! - [`revocation_sync`]: the in-memory revocation set kept in step with the store;
//! - [`keys`] and [`tokens`]: the key ring and the token service;
//! - [`request`]: a client request read once: its canonical target;
//! - [`proxy`]: the Pingora `ProxyHttp` implementation; [`plugins`]: the plugin host;
//!   [`api_executor`]: the REST API's own runtime, with its time and in-flight bounds;
//! - [`admin`]: the admin listener (`/metrics`, `/health` with details);
//! - [`server`]: start-up (store, keys, plugins, listeners) and shutdown; [`cli`]: commands.
#![deny(clippy::unwrap_used, clippy::todo, clippy::unimplemented)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod admin;
pub mod api_executor;
pub mod cli;
pub mod config;
pub mod echo;
pub mod error;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod plugins;
pub mod proxy;
pub mod request;
pub mod revocation_sync;
pub mod server;
pub mod store;
pub mod tokens;
