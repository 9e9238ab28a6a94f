//! A JWK Set parsed once into ready verifying keys. Each key is bound to the algorithms its own
//! type allows (`kty`, `crv`, and its `alg` when it names one) among those the issuer accepts, so
//! a JWKS can never turn an RSA key into an HMAC secret or a P-256 key into an ES384 one
//! (algorithm confusion). Keys that cannot verify signatures for us are skipped, never fatal:
//! `use` other than `sig`, `key_ops` without `verify`, symmetric (`oct`) keys, RSA moduli under
//! 2048 bits, points not on their curve, unknown key types. A `kid` published twice is dropped
//! (which key would be meant is ambiguous). A set without one usable key, or with more than
//! [`MAX_KEYS`] entries, is refused whole.

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use gatehouse_plugin_api::tokens::TokenError;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::auth::keys::es512::Es512Key;
use crate::auth::keys::KeyAlgorithm;

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// The most entries a JWKS may have (real issuers publish a handful; a set of thousands is a
/// mistake or an attack on the parser, and is refused whole).
pub const MAX_KEYS: usize = 100;

/// How a remote key checks a signature.
enum Verifier {
    /// Through the JWT library: the key and one validation per algorithm it may be used with.
    Jwt {
        key: DecodingKey,
        validations: Vec<(KeyAlgorithm, Validation)>,
    },
    /// ES512 (P-521), which the JWT library lacks.
    Es512(Es512Key),
}

/// One verifying key of an issuer, ready to use.
pub struct RemoteKey {
    /// Its `kid`.
    pub kid: String,
    /// The algorithms it verifies (its type's, the issuer's, and its own `alg` when given).
    pub algorithms: Vec<KeyAlgorithm>,
    /// Its public material and algorithms as text: equal for the same key published again,
    /// different when a `kid` is reused for another key.
    pub fingerprint: String,
    verifier: Verifier,
}

impl std::fmt::Debug for RemoteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

impl RemoteKey {
    /// Verifies `token`'s signature with this key and the token's `alg`, which must be one of
    /// the key's algorithms (`AlgorithmMismatch` otherwise). The claims; times, issuer and
    /// audience are the caller's to check.
    pub fn verify(&self, alg: &str, token: &str) -> Result<Map<String, Value>, TokenError> {
        let algorithm = KeyAlgorithm::from_name(alg)
            .filter(|a| self.algorithms.contains(a))
            .ok_or(TokenError::AlgorithmMismatch)?;
        match &self.verifier {
            Verifier::Jwt { key, validations } => {
                let validation = validations
                    .iter()
                    .find(|(a, _)| *a == algorithm)
                    .map(|(_, v)| v)
                    .ok_or(TokenError::AlgorithmMismatch)?;
                jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
                    .map(|data| data.claims)
                    .map_err(|e| match e.kind() {
                        jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                            TokenError::BadSignature
                        }
                        jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                            TokenError::AlgorithmMismatch
                        }
                        _ => TokenError::Malformed,
                    })
            }
            Verifier::Es512(key) => key.verify(token),
        }
    }
}

/// An issuer's keys by `kid`.
pub type KeyMap = HashMap<String, Arc<RemoteKey>>;

/// Why a JWKS document was refused as a whole (the last good set is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    /// Not a JSON object with a `keys` array.
    NotAJwks,
    /// No key in it can verify tokens for this issuer.
    NoUsableKeys,
    /// More than [`MAX_KEYS`] entries.
    TooManyKeys,
}

impl JwksError {
    /// A short, stable name for logs and metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            JwksError::NotAJwks => "invalid",
            JwksError::NoUsableKeys => "no_usable_keys",
            JwksError::TooManyKeys => "too_many_keys",
        }
    }
}

/// Keys a JWKS held that were skipped: `(kid or position, why)`.
pub type Skipped = Vec<(String, &'static str)>;

/// Parses a JWKS document into the keys usable with `allowed` algorithms. `Err` when the
/// document is not a JWKS, has more than [`MAX_KEYS`] entries or no usable key; keys that are
/// skipped are listed in the second value for the log.
pub fn parse_jwks(body: &[u8], allowed: &[KeyAlgorithm]) -> Result<(KeyMap, Skipped), JwksError> {
    let document: Value = serde_json::from_slice(body).map_err(|_| JwksError::NotAJwks)?;
    let keys = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(JwksError::NotAJwks)?;
    if keys.len() > MAX_KEYS {
        return Err(JwksError::TooManyKeys);
    }
    let mut usable: KeyMap = HashMap::new();
    let mut skipped = Vec::new();
    let mut duplicated = Vec::new();
    for (index, jwk) in keys.iter().enumerate() {
        let label = jwk
            .get("kid")
            .and_then(Value::as_str)
            .map_or_else(|| format!("keys[{index}]"), str::to_string);
        match parse_key(jwk, allowed) {
            Ok(key) => {
                if usable.contains_key(&key.kid) {
                    duplicated.push(key.kid.clone());
                }
                usable.insert(key.kid.clone(), Arc::new(key));
            }
            Err(why) => skipped.push((label, why)),
        }
    }
    for kid in duplicated {
        if usable.remove(&kid).is_some() {
            skipped.push((kid, "the kid is published more than once"));
        }
    }
    if usable.is_empty() {
        return Err(JwksError::NoUsableKeys);
    }
    Ok((usable, skipped))
}

/// One JWK as a verifying key, or why it is skipped.
fn parse_key(jwk: &Value, allowed: &[KeyAlgorithm]) -> Result<RemoteKey, &'static str> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    let kid = field("kid").ok_or("no kid")?.to_string();
    match jwk.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return Err("not a signature key (use)"),
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        if !verifies {
            return Err("not a verification key (key_ops)");
        }
    }
    let kty = field("kty").ok_or("no kty")?;
    let by_type = algorithms_of_type(kty, field("crv"))?;
    let declared = match jwk.get("alg") {
        None => None,
        Some(Value::String(alg)) => {
            Some(KeyAlgorithm::from_name(alg).ok_or("alg is not a signature algorithm")?)
        }
        Some(_) => return Err("alg is not a string"),
    };
    if declared.is_some_and(|alg| !by_type.contains(&alg)) {
        return Err("alg does not agree with kty/crv");
    }
    let algorithms: Vec<KeyAlgorithm> = by_type
        .iter()
        .copied()
        .filter(|a| allowed.contains(a) && declared.is_none_or(|d| d == *a))
        .collect();
    if algorithms.is_empty() {
        return Err("no algorithm of this key is accepted for the issuer");
    }
    let verifier = verifier(jwk, kty, &algorithms)?;
    let fingerprint = ["kty", "crv", "n", "e", "x", "y"]
        .iter()
        .map(|name| field(name).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("|")
        + &format!("|{algorithms:?}");
    Ok(RemoteKey {
        kid,
        algorithms,
        fingerprint,
        verifier,
    })
}

/// The algorithms a key of type `kty` (and curve `crv`) can verify; `Err` for symmetric and
/// unknown types.
fn algorithms_of_type(
    kty: &str,
    crv: Option<&str>,
) -> Result<&'static [KeyAlgorithm], &'static str> {
    use KeyAlgorithm::*;
    match (kty, crv) {
        ("RSA", _) => Ok(&[RS256, RS384, RS512, PS256, PS384, PS512]),
        ("EC", Some("P-256")) => Ok(&[ES256]),
        ("EC", Some("P-384")) => Ok(&[ES384]),
        ("EC", Some("P-521")) => Ok(&[ES512]),
        ("EC", _) => Err("unsupported EC curve"),
        ("OKP", Some("Ed25519")) => Ok(&[EdDSA]),
        ("OKP", _) => Err("unsupported OKP curve"),
        ("oct", _) => Err("symmetric keys are never taken from a JWKS"),
        _ => Err("unsupported kty"),
    }
}

/// A base64url member of the JWK, decoded.
fn member(jwk: &Value, name: &str) -> Result<Vec<u8>, &'static str> {
    let text = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or("a key parameter is missing")?;
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| "a key parameter is not base64url")
}

/// The verifier of a JWK of type `kty`, checked now (modulus size, point on the curve) so a
/// bad key is skipped at fetch time, not found out on a request.
fn verifier(jwk: &Value, kty: &str, algorithms: &[KeyAlgorithm]) -> Result<Verifier, &'static str> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str).unwrap_or_default();
    let key = match kty {
        "RSA" => {
            let n = member(jwk, "n")?;
            member(jwk, "e")?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < MIN_RSA_BITS {
                return Err("RSA modulus under 2048 bits");
            }
            DecodingKey::from_rsa_components(text("n"), text("e")).map_err(|_| "bad RSA key")?
        }
        "EC" => {
            let mut point = vec![0x04];
            point.extend(member(jwk, "x")?);
            point.extend(member(jwk, "y")?);
            if algorithms == [KeyAlgorithm::ES512] {
                return Es512Key::from_public_der(&point)
                    .map(Verifier::Es512)
                    .map_err(|_| "the point is not on P-521");
            }
            let curve = if algorithms == [KeyAlgorithm::ES256] {
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED
            } else {
                &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED
            };
            aws_lc_rs::signature::ParsedPublicKey::new(curve, &point)
                .map_err(|_| "the point is not on the key's curve")?;
            DecodingKey::from_ec_components(text("x"), text("y")).map_err(|_| "bad EC key")?
        }
        _ => {
            let x = member(jwk, "x")?;
            aws_lc_rs::signature::ParsedPublicKey::new(&aws_lc_rs::signature::ED25519, &x)
                .map_err(|_| "bad Ed25519 key")?;
            DecodingKey::from_ed_components(text("x")).map_err(|_| "bad Ed25519 key")?
        }
    };
    let validations = algorithms
        .iter()
        .filter_map(|a| Some((*a, validation(a.jwt_algorithm()?))))
        .collect();
    Ok(Verifier::Jwt { key, validations })
}

/// The library's validation for `algorithm`: the signature and the algorithm only; times,
/// issuer and audience are checked by the verifier for every key alike.
fn validation(algorithm: jsonwebtoken::Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.validate_aud = false;
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_required_spec_claims::<&str>(&[]);
    validation
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::{generated_for_tests, SigningKey};
    use serde_json::json;
    use KeyAlgorithm::*;

    /// A key of `algorithm` that signs, and its public JWK with `kid`.
    fn key(algorithm: KeyAlgorithm, kid: &str) -> (SigningKey, Value) {
        let (spec, material) = generated_for_tests(algorithm);
        let key = SigningKey::from_spec(&spec, Some(&material)).expect("key");
        let mut jwk = key.public().expect("public").jwk.clone();
        jwk["kid"] = json!(kid);
        (key, jwk)
    }

    fn jwks(keys: &[&Value]) -> Vec<u8> {
        serde_json::to_vec(&json!({ "keys": keys })).expect("json")
    }

    #[test]
    fn every_asymmetric_family_is_parsed_once_and_verifies() {
        for algorithm in [RS256, RS512, PS256, ES256, ES384, ES512, EdDSA] {
            let (signer, jwk) = key(algorithm, "a");
            let (keys, skipped) = parse_jwks(&jwks(&[&jwk]), &[algorithm]).expect("usable");
            assert!(skipped.is_empty(), "{algorithm}: {skipped:?}");
            let token = signer
                .sign(&json!({"exp": 4_000_000_000i64}))
                .expect("sign");
            // The signer's own kid is in the header; the verifier is picked by the caller.
            let claims = keys["a"].verify(algorithm.name(), &token).expect("verify");
            assert_eq!(claims["exp"], json!(4_000_000_000i64), "{algorithm}");
        }
    }

    #[test]
    fn the_key_type_and_the_token_algorithm_must_agree() {
        let (rsa, rsa_jwk) = key(RS256, "r");
        let mut bare = rsa_jwk.clone();
        bare.as_object_mut().expect("object").remove("alg");
        // Without its own `alg`, an RSA key serves the RSA algorithms the issuer accepts.
        let (keys, _) = parse_jwks(&jwks(&[&bare]), &[RS256, PS256, ES256]).expect("usable");
        assert_eq!(keys["r"].algorithms, [RS256, PS256]);
        let token = rsa.sign(&json!({"exp": 4_000_000_000i64})).expect("sign");
        assert_eq!(
            keys["r"].verify("ES256", &token).err(),
            Some(TokenError::AlgorithmMismatch)
        );
        assert_eq!(
            keys["r"].verify("HS256", &token).err(),
            Some(TokenError::AlgorithmMismatch)
        );
        assert_eq!(
            keys["r"].verify("none", &token).err(),
            Some(TokenError::AlgorithmMismatch)
        );
        // The `alg` passed is the header's: a header that does not say PS256 is not checked
        // as PS256.
        assert_eq!(
            keys["r"].verify("PS256", &token).err(),
            Some(TokenError::AlgorithmMismatch)
        );
        let mut tampered = token.clone();
        tampered.truncate(token.len() - 4);
        tampered.push_str("AAAA");
        assert_eq!(
            keys["r"].verify("RS256", &tampered).err(),
            Some(TokenError::BadSignature)
        );
        // An `alg` that its type cannot have, or that the issuer does not accept: skipped.
        let mut lying = rsa_jwk.clone();
        lying["alg"] = json!("ES256");
        assert_eq!(
            parse_jwks(&jwks(&[&lying]), &[RS256, ES256]).err(),
            Some(JwksError::NoUsableKeys)
        );
        let (_, p256) = key(ES256, "e");
        assert_eq!(
            parse_jwks(&jwks(&[&p256]), &[ES384]).err(),
            Some(JwksError::NoUsableKeys)
        );
        let mut wrong_curve = p256.clone();
        wrong_curve["crv"] = json!("P-384");
        wrong_curve["alg"] = json!("ES384");
        assert_eq!(
            parse_jwks(&jwks(&[&wrong_curve]), &[ES384]).err(),
            Some(JwksError::NoUsableKeys),
            "a P-256 point is not on P-384"
        );
    }

    #[test]
    fn keys_that_cannot_verify_for_us_are_skipped() {
        let (_, good) = key(ES256, "good");
        let oct = json!({"kty": "oct", "kid": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "alg": "HS256"});
        let mut enc = good.clone();
        enc["kid"] = json!("enc");
        enc["use"] = json!("enc");
        let mut ops = good.clone();
        ops["kid"] = json!("ops");
        ops["key_ops"] = json!(["encrypt"]);
        let small_rsa = json!({"kty": "RSA", "kid": "small", "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode([0xc5u8; 128]), "e": "AQAB"});
        let unknown = json!({"kty": "XYZ", "kid": "xyz"});
        let no_kid = json!({"kty": "EC", "crv": "P-256", "x": good["x"], "y": good["y"]});
        let body = jwks(&[&good, &oct, &enc, &ops, &small_rsa, &unknown, &no_kid]);
        let (keys, skipped) =
            parse_jwks(&body, &[ES256, RS256, KeyAlgorithm::HS256]).expect("usable");
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["good"]);
        let why: HashMap<String, &str> = skipped.into_iter().collect();
        assert!(why["oct"].contains("symmetric"));
        assert!(why["enc"].contains("use"));
        assert!(why["ops"].contains("key_ops"));
        assert!(why["small"].contains("2048"));
        assert!(why["xyz"].contains("kty"));
        assert!(why["keys[6]"].contains("kid"));
    }

    #[test]
    fn a_kid_published_twice_is_dropped_and_garbage_is_refused() {
        let (_, a) = key(ES256, "same");
        let (_, b) = key(ES256, "same");
        let (_, c) = key(ES256, "other");
        let (keys, skipped) = parse_jwks(&jwks(&[&a, &b, &c]), &[ES256]).expect("usable");
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["other"]);
        assert_eq!(skipped[0].0, "same");
        assert_eq!(
            parse_jwks(&jwks(&[&a, &b]), &[ES256]).err(),
            Some(JwksError::NoUsableKeys)
        );
        for garbage in [&b"<html>"[..], b"{}", b"{\"keys\": 7}", b"[]", b""] {
            assert_eq!(
                parse_jwks(garbage, &[ES256]).err(),
                Some(JwksError::NotAJwks)
            );
        }
        assert_eq!(
            parse_jwks(b"{\"keys\": []}", &[ES256]).err(),
            Some(JwksError::NoUsableKeys)
        );
    }

    #[test]
    fn a_set_of_too_many_keys_is_refused_whole() {
        let (_, jwk) = key(ES256, "k");
        let many: Vec<Value> = (0..=MAX_KEYS)
            .map(|i| {
                let mut k = jwk.clone();
                k["kid"] = json!(format!("k{i}"));
                k
            })
            .collect();
        let refs: Vec<&Value> = many.iter().collect();
        assert_eq!(
            parse_jwks(&jwks(&refs), &[ES256]).err(),
            Some(JwksError::TooManyKeys)
        );
        let (keys, _) = parse_jwks(&jwks(&refs[..MAX_KEYS]), &[ES256]).expect("at the limit");
        assert_eq!(keys.len(), MAX_KEYS);
        // The same key published again has the same fingerprint; another key under its kid not.
        let (again, _) = parse_jwks(&jwks(&[&jwk]), &[ES256]).expect("usable");
        assert_eq!(again["k"].fingerprint, keys["k0"].fingerprint.clone());
        let (_, other) = key(ES256, "k");
        let (other, _) = parse_jwks(&jwks(&[&other]), &[ES256]).expect("usable");
        assert_ne!(again["k"].fingerprint, other["k"].fingerprint);
    }
}
