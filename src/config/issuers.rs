//! Validation of `issuers:`: each trusted issuer's URL shapes, where its keys are found
//! (`discovery` or `jwksUri`, exactly one), its algorithms (never `none`, never HMAC: a JWKS
//! never carries a secret the gateway could use), its roles claim path and its timings, every
//! problem reported with its path (`issuers[1].algorithms[0]`).

use std::path::Path;
use std::time::Duration;

use gatehouse_plugin_api::model::Tenant;

use super::raw::RawIssuer;
use super::sections::{bounded, Problems};
use crate::auth::issuers::config::{self as defaults, IssuerSpec, JwksSource};
use crate::auth::keys::KeyAlgorithm;

/// The validated `issuers:` section. A problem for an issuer that is also a tenant's (the
/// gateway's own tokens are checked with its own keys only) or that is listed twice.
pub(super) fn issuers(
    p: &mut Problems,
    raw: &[RawIssuer],
    tenants: &[Tenant],
    default_leeway: u64,
    base_dir: &Path,
) -> Vec<IssuerSpec> {
    let mut specs: Vec<IssuerSpec> = Vec::with_capacity(raw.len());
    for (index, r) in raw.iter().enumerate() {
        let path = format!("issuers[{index}]");
        if r.issuer.trim().is_empty() || r.issuer.trim() != r.issuer {
            p.add(
                format!("{path}.issuer"),
                "must not be blank or padded with spaces",
            );
        } else if tenants.iter().any(|t| t.issuer == r.issuer) {
            p.add(
                format!("{path}.issuer"),
                "is a tenant's issuer: the gateway's own tokens are checked with its own keys",
            );
        } else if specs.iter().any(|s| s.issuer == r.issuer) {
            p.add(format!("{path}.issuer"), "is listed twice");
        }
        specs.push(issuer(p, &path, r, default_leeway, base_dir));
    }
    specs
}

/// One issuer, problems reported under `path`.
fn issuer(
    p: &mut Problems,
    path: &str,
    r: &RawIssuer,
    default_leeway: u64,
    base_dir: &Path,
) -> IssuerSpec {
    let jwks = jwks_source(p, path, r);
    let seconds = |p: &mut Problems, field: &str, value, default, range: (u64, u64)| {
        let message = format!("must be between {} and {}", range.0, range.1);
        Duration::from_secs(bounded(
            p,
            &format!("{path}.{field}"),
            value,
            default,
            range,
            &message,
        ))
    };
    let refresh_interval = seconds(
        p,
        "refreshIntervalSeconds",
        r.refresh_interval_seconds,
        defaults::DEFAULT_REFRESH_SECONDS,
        (1, 86_400),
    );
    let max_stale = seconds(
        p,
        "maxStaleSeconds",
        r.max_stale_seconds,
        defaults::DEFAULT_MAX_STALE_SECONDS,
        (1, 30 * 86_400),
    );
    if max_stale < refresh_interval {
        p.add(
            format!("{path}.maxStaleSeconds"),
            "must be at least refreshIntervalSeconds (keys would lapse between two fetches)",
        );
    }
    IssuerSpec {
        issuer: r.issuer.clone(),
        jwks,
        algorithms: algorithms(p, path, r.algorithms.as_deref()),
        audiences: audiences(p, path, &r.audiences),
        roles_claim: roles_claim(p, path, r.roles_claim.as_deref()),
        leeway_seconds: bounded(
            p,
            &format!("{path}.leewaySeconds"),
            r.leeway_seconds,
            default_leeway,
            (0, 300),
            "must be at most 300",
        ) as i64,
        refresh_interval,
        min_refetch: seconds(
            p,
            "minRefetchSeconds",
            r.min_refetch_seconds,
            defaults::DEFAULT_MIN_REFETCH_SECONDS,
            (1, 3600),
        ),
        unknown_key_cache: seconds(
            p,
            "unknownKeyCacheSeconds",
            r.unknown_key_cache_seconds,
            defaults::DEFAULT_UNKNOWN_KEY_CACHE_SECONDS,
            (1, 86_400),
        ),
        max_stale,
        timeout: seconds(
            p,
            "timeoutSeconds",
            r.timeout_seconds,
            defaults::DEFAULT_TIMEOUT_SECONDS,
            (1, 60),
        ),
        unknown_key_wait: Duration::from_millis(bounded(
            p,
            &format!("{path}.unknownKeyWaitMillis"),
            r.unknown_key_wait_millis,
            defaults::DEFAULT_UNKNOWN_KEY_WAIT_MILLIS,
            (10, 10_000),
            "must be between 10 and 10000",
        )),
        ca_file: r.ca_file.as_ref().map(|file| {
            let resolved = base_dir.join(file);
            if !resolved.is_file() {
                p.add(
                    format!("{path}.caFile"),
                    format!("no file at {}", resolved.display()),
                );
            }
            resolved
        }),
    }
}

/// `discovery: true` or `jwksUri`, exactly one; the URL each implies must be http(s) with a
/// host.
fn jwks_source(p: &mut Problems, path: &str, r: &RawIssuer) -> JwksSource {
    match (r.discovery, &r.jwks_uri) {
        (Some(true), None) => {
            if let Err(why) = check_url(&r.issuer) {
                p.add(
                    format!("{path}.issuer"),
                    format!("discovery needs the issuer to be a URL: {why}"),
                );
            }
            JwksSource::Discovery
        }
        (None | Some(false), Some(uri)) => {
            if let Err(why) = check_url(uri) {
                p.add(format!("{path}.jwksUri"), why);
            }
            JwksSource::Uri(uri.clone())
        }
        (Some(true), Some(_)) => {
            p.add(path, "give discovery: true or jwksUri, not both");
            JwksSource::Discovery
        }
        (_, None) => {
            p.add(
                path,
                "give discovery: true or jwksUri (where the issuer's keys are)",
            );
            JwksSource::Discovery
        }
    }
}

/// `Ok` for an absolute `http(s)://host…` URL without a fragment, user info or whitespace.
fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| "is not a URL".to_string())?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("scheme `{}` is not http or https", parsed.scheme()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if parsed.fragment().is_some() || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not have a fragment or user info".into());
    }
    if url.contains(char::is_whitespace) {
        return Err("must not contain spaces".into());
    }
    Ok(())
}

/// The accepted algorithms (default RS256): known names, never `none`, never HMAC.
fn algorithms(p: &mut Problems, path: &str, raw: Option<&[String]>) -> Vec<KeyAlgorithm> {
    let Some(raw) = raw else {
        return vec![KeyAlgorithm::RS256];
    };
    if raw.is_empty() {
        p.add(format!("{path}.algorithms"), "name at least one algorithm");
    }
    let mut algorithms = Vec::new();
    for (j, name) in raw.iter().enumerate() {
        let at = format!("{path}.algorithms[{j}]");
        match KeyAlgorithm::from_name(name) {
            _ if name.eq_ignore_ascii_case("none") => {
                p.add(at, "`none` is never accepted: tokens must be signed")
            }
            Some(a) if a.is_hmac() => p.add(
                at,
                "HMAC algorithms cannot be checked with a JWKS (it never carries a usable secret): use RS*, PS*, ES* or EdDSA",
            ),
            Some(a) => {
                if !algorithms.contains(&a) {
                    algorithms.push(a);
                }
            }
            None => p.add(
                at,
                "unknown algorithm: use RS256/384/512, PS256/384/512, ES256/384/512 or EdDSA",
            ),
        }
    }
    algorithms
}

/// The audiences: none blank.
fn audiences(p: &mut Problems, path: &str, raw: &[String]) -> Vec<String> {
    for (j, aud) in raw.iter().enumerate() {
        if aud.trim().is_empty() {
            p.add(format!("{path}.audiences[{j}]"), "must not be blank");
        }
    }
    raw.to_vec()
}

/// The roles claim path (default `roles`): dot-separated names, none empty.
fn roles_claim(p: &mut Problems, path: &str, raw: Option<&str>) -> String {
    let claim = raw.unwrap_or("roles");
    if claim.split('.').any(|segment| segment.trim().is_empty()) {
        p.add(
            format!("{path}.rolesClaim"),
            "must be a claim name or a dotted path such as realm_access.roles",
        );
    }
    claim.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(yaml: &str) -> RawIssuer {
        serde_yaml::from_str(yaml).expect("raw issuer")
    }

    fn problems(yaml: &str) -> Vec<String> {
        let mut p = Problems::default();
        issuers(&mut p, &[raw(yaml)], &[], 5, Path::new("."));
        p.0.into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect()
    }

    #[test]
    fn a_valid_issuer_gets_its_defaults() {
        let mut p = Problems::default();
        let specs = issuers(
            &mut p,
            &[raw("{issuer: https://login.example.com, discovery: true}")],
            &[],
            5,
            Path::new("."),
        );
        assert!(p.0.is_empty(), "{:?}", p.0);
        let spec = &specs[0];
        assert_eq!(spec.jwks, JwksSource::Discovery);
        assert_eq!(spec.algorithms, [KeyAlgorithm::RS256]);
        assert_eq!(spec.roles_claim, "roles");
        assert_eq!(spec.leeway_seconds, 5);
        assert_eq!(spec.refresh_interval, Duration::from_secs(300));
        assert_eq!(spec.min_refetch, Duration::from_secs(10));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let both =
            problems("{issuer: https://a.example, discovery: true, jwksUri: https://a.example/k}");
        assert!(
            both[0].starts_with("issuers[0]: give discovery: true or jwksUri, not both"),
            "{both:?}"
        );
        let neither = problems("{issuer: https://a.example}");
        assert!(
            neither[0].starts_with("issuers[0]: give discovery"),
            "{neither:?}"
        );
        let algorithms = problems(
            "{issuer: x, jwksUri: https://a.example/k, algorithms: [none, HS256, RS257, ES256]}",
        );
        assert_eq!(algorithms.len(), 3, "{algorithms:?}");
        assert!(algorithms[0].starts_with("issuers[0].algorithms[0]: `none`"));
        assert!(algorithms[1].starts_with("issuers[0].algorithms[1]: HMAC"));
        assert!(algorithms[2].starts_with("issuers[0].algorithms[2]: unknown"));
        for (yaml, at) in [
            (
                "{issuer: login.example.com, discovery: true}",
                "issuers[0].issuer",
            ),
            (
                "{issuer: x, jwksUri: ftp://a.example/k}",
                "issuers[0].jwksUri",
            ),
            ("{issuer: x, jwksUri: 'https://'}", "issuers[0].jwksUri"),
            (
                "{issuer: x, jwksUri: 'https://a.example/k#f'}",
                "issuers[0].jwksUri",
            ),
            (
                "{issuer: x, jwksUri: https://a.example/k, rolesClaim: 'a..b'}",
                "issuers[0].rolesClaim",
            ),
            (
                "{issuer: x, jwksUri: https://a.example/k, refreshIntervalSeconds: 0}",
                "issuers[0].refreshIntervalSeconds",
            ),
            (
                "{issuer: x, jwksUri: https://a.example/k, maxStaleSeconds: 10}",
                "issuers[0].maxStaleSeconds",
            ),
            (
                "{issuer: x, jwksUri: https://a.example/k, caFile: /nonexistent.pem}",
                "issuers[0].caFile",
            ),
            (
                "{issuer: ' x', jwksUri: https://a.example/k}",
                "issuers[0].issuer",
            ),
        ] {
            let found = problems(yaml);
            assert!(
                found.iter().any(|f| f.starts_with(&format!("{at}:"))),
                "{yaml}: {found:?}"
            );
        }
    }

    #[test]
    fn a_tenant_issuer_or_a_repeated_one_is_refused() {
        let tenant: Tenant = serde_json::from_value(serde_json::json!({
            "id": "0a6a8d1e-3f2b-4c5d-8e9f-1a2b3c4d5e6f", "name": "t", "issuer": "https://own.example"
        }))
        .expect("tenant");
        let mut p = Problems::default();
        issuers(
            &mut p,
            &[
                raw("{issuer: https://own.example, discovery: true}"),
                raw("{issuer: https://a.example, discovery: true}"),
                raw("{issuer: https://a.example, discovery: true}"),
            ],
            &[tenant],
            5,
            Path::new("."),
        );
        let paths: Vec<&str> = p.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["issuers[0].issuer", "issuers[2].issuer"]);
    }
}
