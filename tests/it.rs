//! The integration tests: one binary, one module per area. Each test starts the real
//! `gatehouse` binary on ephemeral ports with a temporary config and SQLite file, and drives it
//! over HTTP.

mod it {
    pub mod api_boundary;
    pub mod api_isolation;
    pub mod app_cluster;
    pub mod app_flow;
    pub mod app_login;
    pub mod app_overrides;
    pub mod boundary;
    pub mod cache_attacks;
    pub mod cluster;
    pub mod config;
    pub mod edge;
    pub mod fake_oidc;
    pub mod forward_auth;
    pub mod forward_auth_attacks;
    pub mod framing;
    pub mod http2;
    pub mod http2_attacks;
    pub mod identity_provider;
    pub mod idp_safety;
    pub mod integrity;
    pub mod issuers;
    pub mod jwt_api;
    pub mod kit;
    pub mod lambda_sandbox;
    pub mod login_attacks;
    pub mod oidc_attacks;
    pub mod oidc_login;
    pub mod oidc_provider;
    pub mod operability;
    pub mod packaging;
    pub mod postgres;
    pub mod proxy;
    pub mod python_client;
    pub mod python_idp;
    pub mod readme;
    pub mod reload;
    pub mod reload_attacks;
    pub mod restart;
    pub mod store_attacks;
    pub mod tenancy;
    pub mod upgrade;
    pub mod websocket;
}
