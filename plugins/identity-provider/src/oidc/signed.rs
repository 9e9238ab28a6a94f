//! JWTs a provider signs with the client secret (OpenID Connect Core §10.1: an HMAC whose key
//! is the octets of the client secret's UTF-8 form): HS256, HS384 and HS512 ID tokens and
//! signed userinfo answers, which FusionAuth accepts too.
//!
//! The key is bound to the algorithm family: an `HS*` token is checked with the client secret
//! only, never with a key the issuer publishes (the classic confusion of an RSA public key used
//! as an HMAC secret fails here), and a token of any other algorithm never with the secret
//! (the caller sends those to the issuer's published keys). `none` is never accepted.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

/// The HMAC algorithms a provider may sign with its client's secret.
pub const HMAC_ALGORITHMS: &[&str] = &["HS256", "HS384", "HS512"];

/// The `alg` of a compact JWS's header, not verified; `None` when the header cannot be read.
pub fn algorithm(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header).ok()?;
    let header: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    header.get("alg")?.as_str().map(str::to_string)
}

/// True when `alg` is one of [`HMAC_ALGORITHMS`].
pub fn is_hmac(alg: &str) -> bool {
    HMAC_ALGORITHMS.contains(&alg)
}

/// The claims of `token`, a compact JWS signed with `alg` (one of [`HMAC_ALGORITHMS`], the
/// one its header names) under `secret`'s octets, checked in constant time. `Err` says why
/// not, naming no value: another algorithm, a malformed token, a signature that does not
/// verify, a payload that is not a JSON object.
pub fn verify_hmac(token: &str, secret: &str) -> Result<Map<String, Value>, &'static str> {
    let alg = algorithm(token).ok_or("its header cannot be read")?;
    let family = match alg.as_str() {
        "HS256" => hmac::HMAC_SHA256,
        "HS384" => hmac::HMAC_SHA384,
        "HS512" => hmac::HMAC_SHA512,
        _ => return Err("its algorithm is not an HMAC"),
    };
    if secret.is_empty() {
        return Err("the client secret is empty");
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("it is not a compact JWS");
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| "its signature is not base64url")?;
    let key = hmac::Key::new(family, secret.as_bytes());
    let signing_input = format!("{header}.{payload}");
    hmac::verify(&key, signing_input.as_bytes(), &signature)
        .map_err(|_| "its signature does not verify with the client secret")?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| "its payload is not base64url")?;
    serde_json::from_slice(&payload).map_err(|_| "its payload is not a JSON object")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A compact JWS of `claims` signed with `alg` (an HMAC) under `secret`.
    pub(crate) fn sign(alg: &str, claims: &Value, secret: &[u8]) -> String {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "typ": "JWT"}).to_string());
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let family = match alg {
            "HS384" => hmac::HMAC_SHA384,
            "HS512" => hmac::HMAC_SHA512,
            _ => hmac::HMAC_SHA256,
        };
        let tag = hmac::sign(
            &hmac::Key::new(family, secret),
            format!("{header}.{payload}").as_bytes(),
        );
        format!(
            "{header}.{payload}.{}",
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    #[test]
    fn each_hmac_algorithm_verifies_with_the_client_secret_only() {
        let claims = json!({"sub": "u1", "aud": "gatehouse"});
        for alg in HMAC_ALGORITHMS {
            let token = sign(alg, &claims, b"the-client-secret");
            assert_eq!(algorithm(&token).as_deref(), Some(*alg));
            assert_eq!(
                verify_hmac(&token, "the-client-secret").map(Value::Object),
                Ok(claims.clone()),
                "{alg}"
            );
            assert!(verify_hmac(&token, "another-secret").is_err(), "{alg}");
        }
    }

    #[test]
    fn confusion_tampering_and_none_are_refused() {
        let claims = json!({"sub": "u1"});
        // An RSA public key used as the HMAC secret: what an attacker who only knows the
        // issuer's published key can sign with. The client secret is not that key.
        let public_pem = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----\n";
        let confused = sign("HS256", &claims, public_pem.as_bytes());
        assert!(verify_hmac(&confused, "the-client-secret").is_err());
        // The header names HS512, the tag is HS256's.
        let token = sign("HS256", &claims, b"s");
        let (_, rest) = token.split_once('.').expect("parts");
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "HS512"}).to_string());
        assert!(verify_hmac(&format!("{header}.{rest}"), "s").is_err());
        // An altered payload.
        let parts: Vec<&str> = token.split('.').collect();
        let other = URL_SAFE_NO_PAD.encode(json!({"sub": "admin"}).to_string());
        assert!(verify_hmac(&format!("{}.{other}.{}", parts[0], parts[2]), "s").is_err());
        // alg none, and an asymmetric algorithm: never with the secret.
        let none = URL_SAFE_NO_PAD.encode(json!({"alg": "none"}).to_string());
        assert_eq!(
            verify_hmac(&format!("{none}.{}.", parts[1]), "s"),
            Err("its algorithm is not an HMAC")
        );
        let rs = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256"}).to_string());
        assert!(verify_hmac(&format!("{rs}.{}.{}", parts[1], parts[2]), "s").is_err());
        assert!(!is_hmac("none") && !is_hmac("RS256") && is_hmac("HS384"));
        // An empty secret, malformed tokens.
        assert!(verify_hmac(&token, "").is_err());
        assert!(verify_hmac("a.b", "s").is_err());
        assert!(verify_hmac(&format!("{token}.x"), "s").is_err());
    }
}
