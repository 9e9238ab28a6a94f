//! The engine's limit, for the benchmarks only: a Pingora proxy that does nothing but pick its one
//! peer. Same Pingora version and features as the gateway, the same allocator (mimalloc), the same
//! server options (threads, upstream keep-alive pool) — so the gap between this and a Gatehouse
//! route is what Gatehouse itself costs. Not part of the product; `bench/compare.sh` runs it.
//!
//! Usage: `bare_pingora LISTEN UPSTREAM [THREADS]`, e.g. `bare_pingora 127.0.0.1:9000 127.0.0.1:8080 1`.

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

/// The gateway's allocator (mimalloc, called as `gatehouse::allocator` does): what speeds the
/// gateway's allocations speeds the engine's own too.
#[global_allocator]
static ALLOCATOR: gatehouse::allocator::Allocator = gatehouse::allocator::Allocator;

/// The peer every request goes to (plain HTTP/1.1, kept alive by Pingora's pool).
struct Bare {
    upstream: std::net::SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bare_pingora LISTEN UPSTREAM [THREADS]";
    let listen = args.next().expect(usage);
    let upstream = args
        .next()
        .expect(usage)
        .parse()
        .expect("UPSTREAM is an address such as 127.0.0.1:8080");
    let threads = args
        .next()
        .map(|t| t.parse().expect("THREADS is a number"))
        .unwrap_or(1);
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        // As the gateway: timeouts of a second or more on Tokio's timer (see its `server` module).
        fast_timeout_to_tokio_threshold_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Bare { upstream });
    // As the gateway's client listener: a write buffer of four segments.
    let write = 4 * pingora::listeners::DEFAULT_L4_WRITE_BUFFER_SIZE;
    proxy.add_listener(
        pingora::listeners::ListenerConfig::tcp(listen)
            .l4_buffer(pingora::listeners::L4BufferSettings::default().write(write)),
    );
    server.add_service(proxy);
    server.run_forever();
}
