//! `listenOptions:` — which HTTP versions the proxy listener speaks besides HTTP/1.1: HTTP/2
//! offered by ALPN on a TLS listener (`http2`, on by default), and HTTP/2 with prior knowledge
//! on a plain listener (`h2c`, off by default: a plain listener is usually behind a proxy that
//! speaks HTTP/1.1 to it, or reached by `curl` and browsers, which never send h2c unasked).

use super::raw::RawListenOptions;
use super::sections::Problems;

/// The HTTP versions the proxy listener accepts besides HTTP/1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenProtocols {
    /// Offer `h2` by ALPN on the TLS listener (clients that do not ask get HTTP/1.1).
    pub http2: bool,
    /// Accept HTTP/2 with prior knowledge (the connection preface) on the plain listener;
    /// connections without the preface are read as HTTP/1.1.
    pub h2c: bool,
}

impl Default for ListenProtocols {
    fn default() -> Self {
        ListenProtocols {
            http2: true,
            h2c: false,
        }
    }
}

/// The listener's protocols from `listenOptions` on a listener with (`tls`) or without TLS.
/// A problem at its path for a combination that would not do what it says: `h2c` on a TLS
/// listener (there HTTP/2 is negotiated by ALPN), or `h2c` with `http2: false`.
pub(super) fn listen_protocols(
    p: &mut Problems,
    raw: &RawListenOptions,
    tls: bool,
) -> ListenProtocols {
    let defaults = ListenProtocols::default();
    let protocols = ListenProtocols {
        http2: raw.http2.unwrap_or(defaults.http2),
        h2c: raw.h2c.unwrap_or(defaults.h2c),
    };
    if protocols.h2c && tls {
        p.add(
            "listenOptions.h2c",
            "is for a plain listener; with tls, HTTP/2 is offered by ALPN (listenOptions.http2)",
        );
    } else if protocols.h2c && !protocols.http2 {
        p.add(
            "listenOptions.h2c",
            "h2c is HTTP/2: it cannot be on while listenOptions.http2 is false",
        );
    }
    protocols
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(http2: Option<bool>, h2c: Option<bool>, tls: bool) -> (ListenProtocols, Vec<String>) {
        let mut p = Problems::default();
        let protocols = listen_protocols(&mut p, &RawListenOptions { http2, h2c }, tls);
        let problems = p.0.iter().map(|e| format!("{}: {}", e.path, e.message));
        (protocols, problems.collect())
    }

    #[test]
    fn http2_is_offered_over_tls_and_h2c_is_an_opt_in() {
        let on = |http2, h2c| ListenProtocols { http2, h2c };
        assert_eq!(read(None, None, true), (on(true, false), vec![]));
        assert_eq!(read(None, None, false), (on(true, false), vec![]));
        assert_eq!(read(Some(false), None, true), (on(false, false), vec![]));
        assert_eq!(read(None, Some(true), false), (on(true, true), vec![]));
    }

    #[test]
    fn combinations_that_would_not_do_what_they_say_are_problems() {
        let (_, problems) = read(None, Some(true), true);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("listenOptions.h2c: is for a plain listener"));
        let (_, problems) = read(Some(false), Some(true), false);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("cannot be on while listenOptions.http2 is false"));
    }
}
