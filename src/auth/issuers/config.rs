//! What the configuration says about one trusted issuer ([`IssuerSpec`]), validated by the
//! config layer (`src/config/issuers.rs`) and read by the key set and the verifier. Defined here,
//! beside what uses it, so `config` depends on `auth` and never the reverse.

use std::path::PathBuf;
use std::time::Duration;

use crate::auth::keys::KeyAlgorithm;

/// Where an issuer's JWKS is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// `jwks_uri` from `{issuer}/.well-known/openid-configuration`.
    Discovery,
    /// This URL.
    Uri(String),
}

/// Default `refreshIntervalSeconds`: how often the JWKS is fetched again.
pub const DEFAULT_REFRESH_SECONDS: u64 = 300;
/// Default `minRefetchSeconds`: at most one fetch for unknown `kid`s per this many seconds.
pub const DEFAULT_MIN_REFETCH_SECONDS: u64 = 10;
/// Default `unknownKeyCacheSeconds`: a `kid` still unknown after a fetch is refused this long
/// without asking the issuer again.
pub const DEFAULT_UNKNOWN_KEY_CACHE_SECONDS: u64 = 60;
/// Default `maxStaleSeconds`: the last good key set keeps serving this long while the issuer
/// cannot be reached.
pub const DEFAULT_MAX_STALE_SECONDS: u64 = 86_400;
/// Default `timeoutSeconds` of one fetch (connect to end of body).
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 5;
/// Default `unknownKeyWaitMillis`: how long a request with an unknown `kid` waits for the
/// one refetch it triggered or joined.
pub const DEFAULT_UNKNOWN_KEY_WAIT_MILLIS: u64 = 2_000;
/// The largest discovery document or JWKS accepted (bytes), enforced while reading.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// One entry of `issuers:`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerSpec {
    /// The `iss` accepted, compared exactly.
    pub issuer: String,
    /// Where its keys are published.
    pub jwks: JwksSource,
    /// Algorithms accepted (never `none`, never HMAC); a key's own type must agree too.
    pub algorithms: Vec<KeyAlgorithm>,
    /// When not empty, the token's `aud` (string or array) must name one of these.
    pub audiences: Vec<String>,
    /// The dotted path of the roles claim (`roles`, `realm_access.roles`, `permissions`).
    pub roles_claim: String,
    /// Clock-skew allowance for `exp`/`nbf` (seconds).
    pub leeway_seconds: i64,
    /// How often the key set is fetched again (a `Cache-Control: max-age` may shorten it).
    pub refresh_interval: Duration,
    /// The least time between two fetches triggered by unknown `kid`s.
    pub min_refetch: Duration,
    /// How long a `kid` still unknown after a successful fetch is refused without a fetch.
    pub unknown_key_cache: Duration,
    /// How long the last good key set serves while fetches fail.
    pub max_stale: Duration,
    /// The time limit of one fetch.
    pub timeout: Duration,
    /// How long a request with an unknown `kid` waits for the refetch.
    pub unknown_key_wait: Duration,
    /// Extra trusted CA certificates (PEM), besides the system roots.
    pub ca_file: Option<PathBuf>,
}

impl IssuerSpec {
    /// The URLs this issuer is reached at that use plain `http://` (for the start-up warning).
    pub fn plain_http_urls(&self) -> Vec<String> {
        let mut urls = Vec::new();
        match &self.jwks {
            JwksSource::Discovery if self.issuer.starts_with("http://") => {
                urls.push(self.issuer.clone())
            }
            JwksSource::Uri(uri) if uri.starts_with("http://") => urls.push(uri.clone()),
            _ => {}
        }
        urls
    }
}
