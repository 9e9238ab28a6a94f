//! The signing-bound limit of a transparent refresh, for the benchmarks only: one thread signs
//! the claims an access token issued by a refresh carries (the same claim set, in the same
//! order, as the token service builds), with the gateway's own key code (`SigningKey::sign`: the
//! aws-lc key parsed once at load and the header encoded once, as the gateway signs), as fast as
//! it can for a fixed time. A refresh through the proxy
//! also writes the store, so its rate over this one is what everything but the signature costs.
//! Not part of the product; `bench/compare.sh` runs it.
//!
//! Usage: `sign_limit ALGORITHM [SECONDS]`, e.g. `sign_limit RS256 3`. Prints one line,
//! `ALGORITHM SIGNATURES_PER_SECOND MICROSECONDS_PER_SIGNATURE MICROSECONDS_PER_VERIFICATION`:
//! the last is what checking one such token's signature costs (measured for a tenth of the
//! time), which the proxy also pays when it verifies the token a refresh just issued.

use std::time::{Duration, Instant};

use gatehouse::auth::keys::{generate_material, KeyAlgorithm, KeySource, KeySpec, SigningKey};
use serde_json::{json, Map, Value};
use uuid::Uuid;

#[global_allocator]
static ALLOCATOR: gatehouse::allocator::Allocator = gatehouse::allocator::Allocator;

/// The claims of an access token a refresh issues for a registered user with an email (what
/// `Tokens::issue_access_token` builds), with a fresh `jti` and the times of `now` (seconds).
fn refresh_claims(now: i64) -> Map<String, Value> {
    let app = Uuid::new_v4();
    let mut claims = Map::new();
    claims.insert("aud".into(), json!(app));
    claims.insert("exp".into(), json!(now + 3600));
    claims.insert("iat".into(), json!(now));
    claims.insert("iss".into(), json!("bench.test"));
    claims.insert("sub".into(), json!(Uuid::new_v4()));
    claims.insert("jti".into(), json!(Uuid::new_v4()));
    claims.insert("authenticationType".into(), json!("REFRESH_TOKEN"));
    claims.insert("email".into(), json!("0.bench@example.com"));
    claims.insert("email_verified".into(), json!(true));
    claims.insert("applicationId".into(), json!(app));
    claims.insert("roles".into(), json!(["user"]));
    claims.insert("auth_time".into(), json!(now));
    claims.insert("tid".into(), json!(Uuid::new_v4()));
    claims.insert("sid".into(), json!(Uuid::new_v4()));
    claims
}

/// The current Unix time in seconds; an error message when the clock is before 1970.
fn unix_now() -> Result<i64, String> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs() as i64)
}

/// A freshly generated key of `algorithm`, as the gateway generates and loads one; an error
/// message when the algorithm cannot be generated or loaded.
fn key_for(algorithm: KeyAlgorithm) -> Result<SigningKey, String> {
    let spec = KeySpec {
        id: Uuid::new_v4(),
        name: "sign-limit".into(),
        algorithm,
        source: KeySource::Generate,
    };
    let material = generate_material(&spec, 0)?;
    SigningKey::from_spec(&spec, Some(&material))
}

/// Verifies `token` for `duration` in this thread; returns the microseconds one verification
/// took on average, or why it failed.
fn verify_for(key: &SigningKey, token: &str, duration: Duration) -> Result<f64, String> {
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < duration {
        key.verify(token)
            .map_err(|e| format!("cannot verify: {e:?}"))?;
        count += 1;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / count as f64)
}

/// Signs for `duration` in this thread, each signature over a new `jti` (as each refresh has);
/// returns how many signatures were made and the time they took.
fn sign_for(key: &SigningKey, duration: Duration) -> Result<(u64, Duration), String> {
    let mut claims = refresh_claims(unix_now()?);
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < duration {
        claims.insert("jti".into(), json!(Uuid::new_v4()));
        key.sign(&claims)
            .map_err(|e| format!("cannot sign: {e:?}"))?;
        count += 1;
    }
    Ok((count, start.elapsed()))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: sign_limit ALGORITHM [SECONDS]  (ALGORITHM: RS256, ES256, EdDSA, …)";
    let algorithm = args
        .next()
        .and_then(|name| KeyAlgorithm::from_name(&name))
        .unwrap_or_else(|| {
            eprintln!("{usage}");
            std::process::exit(2)
        });
    let seconds: f64 = match args.next().map(|s| s.parse()) {
        None => 3.0,
        Some(Ok(s)) if s > 0.0 => s,
        Some(_) => {
            eprintln!("{usage}");
            std::process::exit(2)
        }
    };
    let duration = Duration::from_secs_f64(seconds);
    let result = key_for(algorithm).and_then(|key| {
        let (count, took) = sign_for(&key, duration)?;
        let token = key
            .sign(&refresh_claims(unix_now()?))
            .map_err(|e| format!("cannot sign: {e:?}"))?;
        Ok((count, took, verify_for(&key, &token, duration / 10)?))
    });
    match result {
        Ok((count, took, verify_micros)) => {
            let per_second = count as f64 / took.as_secs_f64();
            println!(
                "{} {per_second:.0} {:.1} {verify_micros:.1}",
                algorithm.name(),
                1e6 / per_second
            );
        }
        Err(message) => {
            eprintln!("sign_limit: {message}");
            std::process::exit(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_tokens_the_key_verifies_for_each_refresh_key_type() {
        for algorithm in [
            KeyAlgorithm::RS256,
            KeyAlgorithm::ES256,
            KeyAlgorithm::EdDSA,
        ] {
            let key = key_for(algorithm).expect("key");
            let token = key
                .sign(&refresh_claims(unix_now().expect("clock")))
                .expect("sign");
            let claims = key.verify(&token).expect("verify");
            assert_eq!(claims["authenticationType"], "REFRESH_TOKEN");
            assert_eq!(claims["roles"], json!(["user"]));
        }
    }

    #[test]
    fn counts_signatures_for_the_time_given() {
        let key = key_for(KeyAlgorithm::ES256).expect("key");
        let (count, took) = sign_for(&key, Duration::from_millis(50)).expect("sign");
        assert!(count > 0);
        assert!(took >= Duration::from_millis(50));
    }

    #[test]
    fn times_verification_of_a_valid_token_and_refuses_a_forged_one() {
        let key = key_for(KeyAlgorithm::EdDSA).expect("key");
        let token = key
            .sign(&refresh_claims(unix_now().expect("clock")))
            .expect("sign");
        let micros = verify_for(&key, &token, Duration::from_millis(20)).expect("verify");
        assert!(micros > 0.0);
        let other = key_for(KeyAlgorithm::EdDSA).expect("key");
        assert!(verify_for(&other, &token, Duration::from_millis(20)).is_err());
    }
}
