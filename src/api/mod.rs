//! The REST API host: each plugin's typed settings and the router that hands a request to its
//! plugin ([`plugins`]), and the API's own runtime with its time and in-flight bounds
//! ([`executor`]).

pub mod executor;
pub mod plugins;
