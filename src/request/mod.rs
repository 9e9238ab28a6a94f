//! What a client request is, read once before any route or plugin sees it: the canonical
//! form of its target ([`canonical`]) and host ([`host`]), and its credentials (`gatehouse_plugin_api::credentials`,
//! shared with the plugins). Whatever cannot
//! be read one way only is refused here. Plain functions over `http` types: no proxy engine.

pub mod canonical;
pub mod client;
pub mod host;
