//! Verifying external JWTs with a provider's keys.
//!
//! A provider's `keys` map holds, per key identifier, one of:
//! - a PEM public key (`PUBLIC KEY`, SubjectPublicKeyInfo; or `RSA PUBLIC KEY`, PKCS#1),
//! - a PEM X.509 certificate (`CERTIFICATE`; its subject public key is used),
//! - anything else: an HMAC secret (its UTF-8 bytes).
//!
//! Each parsed key is bound to the algorithms its type allows — RSA: `RS*`/`PS*`; EC P-256:
//! `ES256`; EC P-384: `ES384`; EC P-521: `ES512`; Ed25519: `EdDSA`; HMAC: `HS*` — and a token
//! whose header `alg` is
//! not among them is refused before any signature check, so `alg` alone is never trusted
//! (algorithm confusion, `none`).
//!
//! Key selection ([`select_key`]): the header parameter the provider names
//! (`headerKeyParameter`, e.g. `kid` or `x5t`) when the header carries it — a key of the
//! provider's `keys` map, else one of its `verificationKeyIds` (an unknown value is refused);
//! otherwise `defaultKeyId`; otherwise the first of `verificationKeyIds`; otherwise the entry
//! with the empty key.
//!
//! `verificationKeyIds` (FusionAuth 1.70) name keys of the gateway's own key ring by id, the
//! way FusionAuth names keys of Key Master; a token verified with one of them must carry that
//! key's own algorithm (an `RS256` key verifies `RS256` only).
//!
//! PEM, DER, SubjectPublicKeyInfo and X.509 are read by the `pem` and `x509-parser` crates; this
//! module only maps what they read to a verifying key.

use std::collections::BTreeMap;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use uuid::Uuid;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::der_parser::parse_der;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo, X509Certificate};

/// How many seconds of clock skew `exp` and `nbf` allow.
pub const LEEWAY_SECONDS: i64 = 5;

/// An EC curve Gatehouse can verify on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256 (`ES256`).
    P256,
    /// NIST P-384 (`ES384`).
    P384,
    /// NIST P-521 (`ES512`): verified with aws-lc directly, the JWT library has no P-521.
    P521,
}

/// A parsed verification key.
#[derive(Clone, PartialEq, Eq)]
pub enum VerifyingKey {
    /// An HMAC secret.
    Hmac(Vec<u8>),
    /// An RSA public key (PKCS#1 `RSAPublicKey` DER).
    Rsa(Vec<u8>),
    /// An EC public key (uncompressed point).
    Ec(Curve, Vec<u8>),
    /// An Ed25519 public key (32 bytes).
    Ed25519(Vec<u8>),
}

impl std::fmt::Debug for VerifyingKey {
    // Never print key bytes: HMAC secrets are secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl VerifyingKey {
    /// The algorithms this key may verify.
    pub fn allowed_algorithms(&self) -> &'static [&'static str] {
        match self {
            VerifyingKey::Hmac(_) => &["HS256", "HS384", "HS512"],
            VerifyingKey::Rsa(_) => &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
            VerifyingKey::Ec(Curve::P256, _) => &["ES256"],
            VerifyingKey::Ec(Curve::P384, _) => &["ES384"],
            VerifyingKey::Ec(Curve::P521, _) => &["ES512"],
            VerifyingKey::Ed25519(_) => &["EdDSA"],
        }
    }

    /// A short name of the key type, for messages and debug events.
    pub fn kind(&self) -> &'static str {
        match self {
            VerifyingKey::Hmac(_) => "HMAC secret",
            VerifyingKey::Rsa(_) => "RSA public key",
            VerifyingKey::Ec(Curve::P256, _) => "EC P-256 public key",
            VerifyingKey::Ec(Curve::P384, _) => "EC P-384 public key",
            VerifyingKey::Ec(Curve::P521, _) => "EC P-521 public key",
            VerifyingKey::Ed25519(_) => "Ed25519 public key",
        }
    }

    fn decoding_key(&self) -> DecodingKey {
        match self {
            VerifyingKey::Hmac(secret) => DecodingKey::from_secret(secret),
            VerifyingKey::Rsa(der) => DecodingKey::from_rsa_der(der),
            VerifyingKey::Ec(_, point) => DecodingKey::from_ec_der(point),
            VerifyingKey::Ed25519(raw) => DecodingKey::from_ed_der(raw),
        }
    }
}

/// Parses one entry of a provider's `keys` map: PEM public key, PEM certificate, or HMAC secret.
/// The error is a message safe to show (it never contains the key text).
pub fn parse_key(text: &str) -> Result<VerifyingKey, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("the key is empty".into());
    }
    if !trimmed.starts_with("-----BEGIN ") {
        return Ok(VerifyingKey::Hmac(text.as_bytes().to_vec()));
    }
    let block = pem::parse(trimmed).map_err(|_| "the PEM text is malformed".to_string())?;
    let der = block.contents();
    match block.tag() {
        "PUBLIC KEY" => {
            let (rest, spki) = SubjectPublicKeyInfo::from_der(der)
                .map_err(|_| "the public key is malformed".to_string())?;
            if !rest.is_empty() {
                return Err("the public key is malformed".into());
            }
            spki_key(&spki)
        }
        "RSA PUBLIC KEY" => rsa_public_key(der),
        "CERTIFICATE" => {
            let (_, certificate) = X509Certificate::from_der(der)
                .map_err(|_| "the certificate is malformed".to_string())?;
            spki_key(certificate.public_key())
        }
        l if l.contains("PRIVATE KEY") => {
            Err("a private key was given; give the public key or certificate".into())
        }
        other => Err(format!("unsupported PEM type `{other}`")),
    }
}

/// A PKCS#1 `RSAPublicKey`: a SEQUENCE of two INTEGERs (modulus, exponent), kept as DER.
fn rsa_public_key(der: &[u8]) -> Result<VerifyingKey, String> {
    let bad = || "the RSA public key is malformed".to_string();
    let (rest, object) = parse_der(der).map_err(|_| bad())?;
    let items = object.as_sequence().map_err(|_| bad())?;
    let integers = items.len() == 2 && items.iter().all(|i| i.header.tag() == Tag::Integer);
    if !rest.is_empty() || !integers {
        return Err(bad());
    }
    Ok(VerifyingKey::Rsa(der.to_vec()))
}

/// The verifying key of a SubjectPublicKeyInfo: RSA, EC on P-256/P-384/P-521 (a P-521 point
/// must be on the curve), or Ed25519.
fn spki_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<VerifyingKey, String> {
    let bad = || "the public key is malformed".to_string();
    if spki.subject_public_key.unused_bits != 0 {
        return Err(bad());
    }
    let key = spki.subject_public_key.data.to_vec();
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        Ok(VerifyingKey::Rsa(key))
    } else if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or_else(bad)?;
        if curve == OID_EC_P256 {
            Ok(VerifyingKey::Ec(Curve::P256, key))
        } else if curve == OID_NIST_EC_P384 {
            Ok(VerifyingKey::Ec(Curve::P384, key))
        } else if curve == OID_NIST_EC_P521 {
            aws_lc_rs::signature::ParsedPublicKey::new(
                &aws_lc_rs::signature::ECDSA_P521_SHA512_FIXED,
                &key,
            )
            .map_err(|_| "the P-521 public key is not a point on the curve".to_string())?;
            Ok(VerifyingKey::Ec(Curve::P521, key))
        } else {
            Err("unsupported EC curve: use P-256, P-384 or P-521".into())
        }
    } else if *algorithm == OID_SIG_ED25519 {
        if key.len() != 32 {
            return Err(bad());
        }
        Ok(VerifyingKey::Ed25519(key))
    } else {
        Err("unsupported public key algorithm: use RSA, EC P-256/P-384/P-521 or Ed25519".into())
    }
}

/// Why an external JWT was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// Not a compact JWS, or its header/payload is not JSON.
    Malformed,
    /// The header names a key the provider does not have, or no key applies.
    UnknownKey(String),
    /// The key cannot be used (unparseable).
    BadKey(String),
    /// The header's `alg` is not one the selected key allows (this includes `none`).
    AlgorithmMismatch(String),
    /// The signature does not verify.
    BadSignature,
    /// `exp` is past.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// The header lists critical extensions (`crit`): none is supported, so the JWS is invalid
    /// (RFC 7515 §4.1.11).
    UnsupportedHeader,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyError::Malformed => f.write_str("the JWT is malformed"),
            VerifyError::UnknownKey(m) => write!(f, "no key to verify the JWT: {m}"),
            VerifyError::BadKey(m) => write!(f, "the verification key is unusable: {m}"),
            VerifyError::AlgorithmMismatch(m) => write!(f, "algorithm refused: {m}"),
            VerifyError::BadSignature => f.write_str("the JWT signature is invalid"),
            VerifyError::Expired => f.write_str("the JWT has expired"),
            VerifyError::NotYetValid => f.write_str("the JWT is not valid yet (nbf)"),
            VerifyError::UnsupportedHeader => {
                f.write_str("the JWT's header lists critical extensions (crit), none supported")
            }
        }
    }
}

/// Where the verifying key came from, for debug events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The header parameter named by `headerKeyParameter`, with its value.
    Header(String),
    /// `defaultKeyId` (a key of the provider's map or of the gateway's key ring).
    DefaultKeyId(String),
    /// A key of the gateway's ring named by `verificationKeyIds`.
    VerificationKey(String),
    /// The entry with the empty key.
    EmptyKey,
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Header(id) => write!(f, "header key [{id}]"),
            KeySource::DefaultKeyId(id) => write!(f, "defaultKeyId [{id}]"),
            KeySource::VerificationKey(id) => write!(f, "verification key [{id}]"),
            KeySource::EmptyKey => f.write_str("the empty-key entry"),
        }
    }
}

/// A public key of the gateway's key ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingKey {
    /// SubjectPublicKeyInfo PEM.
    pub pem: String,
    /// The key's one algorithm (its JOSE name, e.g. `RS256`).
    pub algorithm: String,
}

/// The inputs of key selection for one provider.
#[derive(Debug, Clone, Copy)]
pub struct KeyChoice<'a> {
    /// `headerKeyParameter`.
    pub header_key_parameter: &'a str,
    /// `keys`.
    pub keys: &'a BTreeMap<String, String>,
    /// `defaultKeyId`.
    pub default_key_id: Option<&'a str>,
    /// `verificationKeyIds`: ids of keys of the gateway's ring.
    pub verification_key_ids: &'a [Uuid],
}

/// The key [`select_key`] picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Where it came from.
    pub source: KeySource,
    /// Its text: PEM key or certificate, or HMAC secret.
    pub text: String,
    /// The one algorithm a token may carry for it, when the key is bound to one (a ring key
    /// named by `verificationKeyIds`); `None`: any algorithm of the key's type.
    pub algorithm: Option<String>,
}

impl Selected {
    fn of(source: KeySource, text: &str) -> Selected {
        Selected {
            source,
            text: text.to_string(),
            algorithm: None,
        }
    }
}

/// Picks the key for a token header: see the module documentation. `ring` resolves an id to a
/// public key of the gateway's ring (for `defaultKeyId` and `verificationKeyIds`). Returns the
/// key, or [`VerifyError::UnknownKey`] when the header names a key the provider does not have
/// or no key applies.
pub fn select_key(
    choice: KeyChoice<'_>,
    header: &Map<String, Value>,
    ring: &dyn Fn(&str) -> Option<RingKey>,
) -> Result<Selected, VerifyError> {
    let named = header
        .get(choice.header_key_parameter)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    if let Some(id) = named {
        if let Some(k) = choice.keys.get(id) {
            return Ok(Selected::of(KeySource::Header(id.to_string()), k));
        }
        let listed = Uuid::parse_str(id)
            .ok()
            .filter(|u| choice.verification_key_ids.contains(u));
        return match listed {
            Some(key_id) => verification_key(key_id, ring),
            None => Err(VerifyError::UnknownKey(format!(
                "the provider has no key [{id}] (header parameter [{}])",
                choice.header_key_parameter
            ))),
        };
    }
    if let Some(id) = choice.default_key_id.filter(|s| !s.is_empty()) {
        if let Some(k) = choice.keys.get(id) {
            return Ok(Selected::of(KeySource::DefaultKeyId(id.to_string()), k));
        }
        if let Some(key) = ring(id) {
            return Ok(Selected::of(
                KeySource::DefaultKeyId(id.to_string()),
                &key.pem,
            ));
        }
        return Err(VerifyError::UnknownKey(format!(
            "defaultKeyId [{id}] names no key"
        )));
    }
    if let Some(first) = choice.verification_key_ids.first() {
        return verification_key(*first, ring);
    }
    choice
        .keys
        .get("")
        .map(|k| Selected::of(KeySource::EmptyKey, k))
        .ok_or_else(|| {
            VerifyError::UnknownKey(format!(
                "the JWT header has no [{}] and the provider has neither a defaultKeyId, verificationKeyIds nor an empty-key entry",
                choice.header_key_parameter
            ))
        })
}

/// The ring key `key_id` of `verificationKeyIds`, bound to its own algorithm; `UnknownKey` when
/// the ring no longer has it (or it is not a public key).
fn verification_key(
    key_id: Uuid,
    ring: &dyn Fn(&str) -> Option<RingKey>,
) -> Result<Selected, VerifyError> {
    let id = key_id.to_string();
    let key = ring(&id).ok_or_else(|| {
        VerifyError::UnknownKey(format!(
            "verificationKeyIds names [{id}], which is no public key of the gateway"
        ))
    })?;
    Ok(Selected {
        source: KeySource::VerificationKey(id),
        text: key.pem,
        algorithm: Some(key.algorithm),
    })
}

/// A verified external JWT.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The decoded header.
    pub header: Map<String, Value>,
    /// The claims.
    pub claims: Map<String, Value>,
    /// Where the key came from.
    pub source: KeySource,
    /// The key type.
    pub key_kind: &'static str,
    /// The algorithm used (its JOSE name).
    pub algorithm: &'static str,
}

/// Decodes the JSON header of a compact JWS without verifying anything.
pub fn decode_header(token: &str) -> Result<Map<String, Value>, VerifyError> {
    let mut parts = token.trim().split('.');
    let header = parts.next().ok_or(VerifyError::Malformed)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| VerifyError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| VerifyError::Malformed)
}

/// Verifies `token` for a provider: selects the key, checks `alg` against it, the signature,
/// then `exp` and `nbf` against `now_seconds` (with [`LEEWAY_SECONDS`]).
pub fn verify(
    token: &str,
    choice: KeyChoice<'_>,
    ring: &dyn Fn(&str) -> Option<RingKey>,
    now_seconds: i64,
) -> Result<Verified, VerifyError> {
    let token = token.trim();
    if token.split('.').count() != 3 {
        return Err(VerifyError::Malformed);
    }
    let header = decode_header(token)?;
    if header.contains_key("crit") {
        return Err(VerifyError::UnsupportedHeader);
    }
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(VerifyError::Malformed)?
        .to_string();
    let selected = select_key(choice, &header, ring)?;
    let key = parse_key(&selected.text).map_err(VerifyError::BadKey)?;
    if let Some(bound) = selected.algorithm.as_deref().filter(|a| *a != alg_name) {
        return Err(VerifyError::AlgorithmMismatch(format!(
            "[{alg_name}] is not the algorithm of the selected key ({bound})"
        )));
    }
    let source = selected.source;
    let algorithm = key
        .allowed_algorithms()
        .iter()
        .copied()
        .find(|a| *a == alg_name)
        .ok_or_else(|| {
            VerifyError::AlgorithmMismatch(format!(
                "[{alg_name}] cannot be used with the selected {}",
                key.kind()
            ))
        })?;
    let claims = match (&key, algorithm.parse::<Algorithm>()) {
        (VerifyingKey::Ec(Curve::P521, point), _) => verify_es512(token, point)?,
        (_, Ok(library_algorithm)) => verify_with_library(token, &key, library_algorithm)?,
        (_, Err(_)) => {
            return Err(VerifyError::AlgorithmMismatch(format!(
                "[{alg_name}] cannot be used with the selected {}",
                key.kind()
            )))
        }
    };
    check_times(&claims, now_seconds)?;
    Ok(Verified {
        header,
        claims,
        source,
        key_kind: key.kind(),
        algorithm,
    })
}

/// The signature check of the JWT library, with `algorithm` (the key's) alone allowed; times
/// are checked by the caller. The claims.
fn verify_with_library(
    token: &str,
    key: &VerifyingKey,
    algorithm: Algorithm,
) -> Result<Map<String, Value>, VerifyError> {
    let mut validation = Validation::new(algorithm);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding_key(), &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => VerifyError::BadSignature,
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => VerifyError::AlgorithmMismatch(
                format!("[{algorithm:?}] does not match the selected key"),
            ),
            jsonwebtoken::errors::ErrorKind::InvalidKeyFormat
            | jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey
            | jsonwebtoken::errors::ErrorKind::InvalidRsaKey(_) => {
                VerifyError::BadKey("the key does not fit the algorithm".into())
            }
            _ => VerifyError::Malformed,
        })
}

/// The ES512 signature (fixed-size `R ‖ S`, RFC 7518 §3.4) of a compact JWS, checked with the
/// P-521 `point` by aws-lc; the claims.
fn verify_es512(token: &str, point: &[u8]) -> Result<Map<String, Value>, VerifyError> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (signing_input, signature) = token.rsplit_once('.').ok_or(VerifyError::Malformed)?;
    let (_, payload) = signing_input
        .split_once('.')
        .ok_or(VerifyError::Malformed)?;
    let signature = b64.decode(signature).map_err(|_| VerifyError::Malformed)?;
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P521_SHA512_FIXED,
        point,
    )
    .verify(signing_input.as_bytes(), &signature)
    .map_err(|_| VerifyError::BadSignature)?;
    let payload = b64.decode(payload).map_err(|_| VerifyError::Malformed)?;
    serde_json::from_slice(&payload).map_err(|_| VerifyError::Malformed)
}

/// Checks `exp` and `nbf` (numeric seconds; absent claims are not required).
pub fn check_times(claims: &Map<String, Value>, now_seconds: i64) -> Result<(), VerifyError> {
    let number = |name: &str| -> Result<Option<i64>, VerifyError> {
        match claims.get(name) {
            // Absent: the token does not expire (or is valid from the start). `null` is not
            // read as absent: it is malformed, as any other value that is not a number.
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(|f| Some(f as i64))
                .ok_or(VerifyError::Malformed),
        }
    };
    if let Some(exp) = number("exp")? {
        if now_seconds > exp.saturating_add(LEEWAY_SECONDS) {
            return Err(VerifyError::Expired);
        }
    }
    if let Some(nbf) = number("nbf")? {
        if now_seconds.saturating_add(LEEWAY_SECONDS) < nbf {
            return Err(VerifyError::NotYetValid);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    fn b64(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    fn pem(label: &str, der: &[u8]) -> String {
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            b64(der)
        )
    }

    fn no_ring(_: &str) -> Option<RingKey> {
        None
    }

    fn hs(secret: &str, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(
            &header,
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("sign")
    }

    #[test]
    fn secrets_and_malformed_pem_are_told_apart() {
        assert!(matches!(parse_key("s3cret"), Ok(VerifyingKey::Hmac(_))));
        assert!(parse_key("   ").is_err());
        assert!(
            parse_key("-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----").is_err()
        );
        let err = parse_key(&pem("PRIVATE KEY", &[0x30, 0x00])).unwrap_err();
        assert!(err.contains("private key"), "{err}");
        assert!(parse_key(&pem("PUBLIC KEY", &[0x30, 0x00])).is_err());
        // debug output never shows the secret
        assert_eq!(format!("{:?}", parse_key("s3cret")), "Ok(HMAC secret)");
    }

    #[test]
    fn spki_algorithms_are_recognised() {
        // Ed25519 SPKI: SEQ { SEQ { OID 1.3.101.112 }, BIT STRING (0, 32 bytes) }
        let mut der = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        der.extend_from_slice(&[7u8; 32]);
        let key = parse_key(&pem("PUBLIC KEY", &der)).expect("ed25519");
        assert_eq!(key.allowed_algorithms(), &["EdDSA"]);
        // A self-signed Ed25519 certificate: its subject public key is used.
        let certificate = "-----BEGIN CERTIFICATE-----
MIIBSDCB+6ADAgECAhQruxI4XNLr5bBUTVc9dX3DiBHULDAFBgMrZXAwGTEXMBUG
A1UEAwwOZ2F0ZWhvdXNlIHRlc3QwIBcNMjYxMjA1MjMyNjU2WhgPMjEyNjExMTEy
MzI2NTZaMBkxFzAVBgNVBAMMDmdhdGVob3VzZSB0ZXN0MCowBQYDK2VwAyEA0yxG
GBWsaFy4dHJYKoh04LSZogplWUbvZYPbZu8itKujUzBRMB0GA1UdDgQWBBTrEFwU
3XjLMf41bDg1hw3xJUmCizAfBgNVHSMEGDAWgBTrEFwU3XjLMf41bDg1hw3xJUmC
izAPBgNVHRMBAf8EBTADAQH/MAUGAytlcANBAK4R2T1w/k2FCkFqWjGnqL8Wr7Mc
B1UHHgEIYITtg+fSHTWDbGvqdWJGg3mEJTtRbItkINfVh3BQWPzhVVnhvwg=
-----END CERTIFICATE-----";
        let key = parse_key(certificate).expect("certificate");
        let VerifyingKey::Ed25519(raw) = &key else {
            panic!("{key:?}");
        };
        let public = parse_key(
            "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA0yxGGBWsaFy4dHJYKoh04LSZogplWUbvZYPbZu8itKs=
-----END PUBLIC KEY-----",
        )
        .expect("public key");
        assert!(matches!(&public, VerifyingKey::Ed25519(p) if p == raw));
        // A structure that is no certificate, trailing bytes after a key, a bit string with
        // unused bits: refused.
        let mut tbs = vec![0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x01, 0x01];
        for _ in 0..4 {
            tbs.extend_from_slice(&[0x30, 0x00]);
        }
        tbs.extend_from_slice(&der);
        let mut fake = vec![0x30, tbs.len() as u8];
        fake.extend_from_slice(&tbs);
        assert!(parse_key(&pem("CERTIFICATE", &fake)).is_err());
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(parse_key(&pem("PUBLIC KEY", &trailing)).is_err());
        let mut unused = der.clone();
        unused[11] = 1;
        assert!(parse_key(&pem("PUBLIC KEY", &unused)).is_err());
    }

    #[test]
    fn key_selection_order() {
        let keys: BTreeMap<String, String> = [
            ("k1".to_string(), "one".to_string()),
            ("".to_string(), "empty".to_string()),
            ("d".to_string(), "default".to_string()),
        ]
        .into_iter()
        .collect();
        let choice = KeyChoice {
            header_key_parameter: "kid",
            keys: &keys,
            default_key_id: Some("d"),
            verification_key_ids: &[],
        };
        let header = |v: Value| v.as_object().cloned().expect("object");
        let pick = |choice: KeyChoice<'_>, h: Value, ring: &dyn Fn(&str) -> Option<RingKey>| {
            select_key(choice, &header(h), ring).map(|s| (s.source, s.text, s.algorithm))
        };
        assert_eq!(
            pick(choice, json!({"kid": "k1"}), &no_ring),
            Ok((KeySource::Header("k1".into()), "one".into(), None))
        );
        assert!(matches!(
            pick(choice, json!({"kid": "zz"}), &no_ring),
            Err(VerifyError::UnknownKey(_))
        ));
        assert_eq!(
            pick(choice, json!({}), &no_ring),
            Ok((KeySource::DefaultKeyId("d".into()), "default".into(), None))
        );
        let no_default = KeyChoice {
            default_key_id: None,
            ..choice
        };
        let (s, _, _) = pick(no_default, json!({"x5t": "k1"}), &no_ring).expect("e");
        assert_eq!(s, KeySource::EmptyKey);
        let ring_default = KeyChoice {
            default_key_id: Some("ring-key"),
            ..choice
        };
        let ring = |id: &str| {
            (id == "ring-key").then(|| RingKey {
                pem: "PEM".into(),
                algorithm: "RS256".into(),
            })
        };
        // a ring key named by defaultKeyId is not bound to its algorithm (as before)
        assert_eq!(
            pick(ring_default, json!({}), &ring),
            Ok((
                KeySource::DefaultKeyId("ring-key".into()),
                "PEM".into(),
                None
            ))
        );
    }

    #[test]
    fn verification_key_ids_name_ring_keys_bound_to_their_algorithm() {
        let (first, second, gone) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let keys: BTreeMap<String, String> = [
            ("k1".to_string(), "one".to_string()),
            ("".to_string(), "empty".to_string()),
        ]
        .into_iter()
        .collect();
        let ids = [first, second, gone];
        let choice = KeyChoice {
            header_key_parameter: "kid",
            keys: &keys,
            default_key_id: None,
            verification_key_ids: &ids,
        };
        let ring = |id: &str| {
            let algorithm = if id == first.to_string() {
                "ES256"
            } else if id == second.to_string() {
                "RS384"
            } else {
                return None;
            };
            Some(RingKey {
                pem: format!("PEM {id}"),
                algorithm: algorithm.into(),
            })
        };
        let header = |v: Value| v.as_object().cloned().expect("object");
        let pick = |h: Value| select_key(choice, &header(h), &ring);
        // the header names a listed ring key (in any case): that key, bound to its algorithm
        let named = pick(json!({"kid": second.to_string().to_uppercase()})).expect("second");
        assert_eq!(named.source, KeySource::VerificationKey(second.to_string()));
        assert_eq!(named.text, format!("PEM {second}"));
        assert_eq!(named.algorithm.as_deref(), Some("RS384"));
        // the provider's own map still wins for its ids
        let own = pick(json!({"kid": "k1"})).expect("map");
        assert_eq!((own.text.as_str(), own.algorithm), ("one", None));
        // no header key: the first listed key, before the empty-key entry
        let first_key = pick(json!({})).expect("first");
        assert_eq!(
            first_key.source,
            KeySource::VerificationKey(first.to_string())
        );
        assert_eq!(first_key.algorithm.as_deref(), Some("ES256"));
        // a listed id the ring no longer has, and a ring key that is not listed, are refused
        assert!(matches!(
            pick(json!({"kid": gone.to_string()})),
            Err(VerifyError::UnknownKey(_))
        ));
        assert!(matches!(
            pick(json!({"kid": Uuid::new_v4().to_string()})),
            Err(VerifyError::UnknownKey(_))
        ));
    }

    #[test]
    fn a_verification_key_verifies_only_its_own_algorithm() {
        let secret = "a-shared-secret-for-this-test-only";
        let id = Uuid::new_v4();
        let ids = [id];
        let keys = BTreeMap::new();
        let choice = KeyChoice {
            header_key_parameter: "kid",
            keys: &keys,
            default_key_id: None,
            verification_key_ids: &ids,
        };
        let ring = |_: &str| {
            Some(RingKey {
                pem: secret.into(),
                algorithm: "HS384".into(),
            })
        };
        let mut header = Header::new(Algorithm::HS384);
        header.kid = Some(id.to_string());
        let token = hs(secret, header, &json!({"sub": "a"}));
        assert_eq!(
            verify(&token, choice, &ring, 0).expect("ok").algorithm,
            "HS384"
        );
        // the same secret, another HMAC algorithm of the family: refused
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(id.to_string());
        let other = hs(secret, header, &json!({"sub": "a"}));
        assert!(matches!(
            verify(&other, choice, &ring, 0),
            Err(VerifyError::AlgorithmMismatch(_))
        ));
    }

    #[test]
    fn hmac_tokens_verify_and_alg_is_bound_to_the_key() {
        let keys: BTreeMap<String, String> = [("k".to_string(), "secret".to_string())]
            .into_iter()
            .collect();
        let choice = KeyChoice {
            header_key_parameter: "kid",
            keys: &keys,
            default_key_id: None,
            verification_key_ids: &[],
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k".into());
        let token = hs("secret", header.clone(), &json!({"sub": "a", "exp": 2_000}));
        let ok = verify(&token, choice, &no_ring, 1_000).expect("valid");
        assert_eq!(ok.claims["sub"], "a");
        assert_eq!(ok.algorithm, "HS256");
        assert_eq!(
            verify(&token, choice, &no_ring, 3_000).unwrap_err(),
            VerifyError::Expired
        );
        let wrong = hs("other", header.clone(), &json!({"sub": "a"}));
        assert_eq!(
            verify(&wrong, choice, &no_ring, 1_000).unwrap_err(),
            VerifyError::BadSignature
        );
        let early = hs("secret", header.clone(), &json!({"nbf": 5_000}));
        assert_eq!(
            verify(&early, choice, &no_ring, 1_000).unwrap_err(),
            VerifyError::NotYetValid
        );
        // `exp` or `nbf` given as null is malformed, not absent
        for claims in [
            json!({"exp": null}),
            json!({"nbf": null}),
            json!({"exp": "2000"}),
        ] {
            let token = hs("secret", header.clone(), &claims);
            assert_eq!(
                verify(&token, choice, &no_ring, 1_000).unwrap_err(),
                VerifyError::Malformed,
                "{claims}"
            );
        }
        // a critical extension, understood or not, makes the JWS invalid (RFC 7515 §4.1.11)
        let mut critical = header.clone();
        critical.crit = Some(vec!["b64".into()]);
        let token = hs("secret", critical, &json!({"sub": "a"}));
        assert_eq!(
            verify(&token, choice, &no_ring, 1_000).unwrap_err(),
            VerifyError::UnsupportedHeader
        );
        // alg none, and an RSA alg on an HMAC key, are refused before any signature check
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            engine.encode(json!({"alg": "none", "kid": "k"}).to_string()),
            engine.encode(json!({"sub": "a"}).to_string())
        );
        assert!(matches!(
            verify(&none, choice, &no_ring, 1_000),
            Err(VerifyError::AlgorithmMismatch(_))
        ));
        let rs = format!(
            "{}.{}.c2ln",
            engine.encode(json!({"alg": "RS256", "kid": "k"}).to_string()),
            engine.encode(json!({"sub": "a"}).to_string())
        );
        assert!(matches!(
            verify(&rs, choice, &no_ring, 1_000),
            Err(VerifyError::AlgorithmMismatch(_))
        ));
        assert_eq!(
            verify("abc", choice, &no_ring, 0).unwrap_err(),
            VerifyError::Malformed
        );
    }

    #[test]
    fn p521_keys_verify_es512_and_nothing_else() {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P521_SHA512_FIXED_SIGNING};
        let pair = EcdsaKeyPair::generate(&ECDSA_P521_SHA512_FIXED_SIGNING).expect("p521");
        let spki = pair.public_key().as_der().expect("der");
        let public_pem = pem("PUBLIC KEY", spki.as_ref());
        let key = parse_key(&public_pem).expect("a P-521 key");
        assert_eq!(key.kind(), "EC P-521 public key");
        assert_eq!(key.allowed_algorithms(), &["ES512"]);
        let keys: BTreeMap<String, String> = [("k".to_string(), public_pem)].into_iter().collect();
        let choice = KeyChoice {
            header_key_parameter: "kid",
            keys: &keys,
            default_key_id: None,
            verification_key_ids: &[],
        };
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let sign = |header: Value, claims: Value| {
            let input = format!(
                "{}.{}",
                engine.encode(header.to_string()),
                engine.encode(claims.to_string())
            );
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let signature = pair.sign(&rng, input.as_bytes()).expect("sign");
            format!("{input}.{}", engine.encode(signature.as_ref()))
        };
        let token = sign(
            json!({"alg": "ES512", "kid": "k"}),
            json!({"sub": "a", "exp": 2_000}),
        );
        let ok = verify(&token, choice, &no_ring, 1_000).expect("valid");
        assert_eq!(
            (ok.claims["sub"].as_str(), ok.algorithm),
            (Some("a"), "ES512")
        );
        assert_eq!(
            verify(&token, choice, &no_ring, 3_000).unwrap_err(),
            VerifyError::Expired
        );
        let parts: Vec<&str> = token.split('.').collect();
        let forged = engine.encode(json!({"sub": "b", "exp": 2_000}).to_string());
        assert_eq!(
            verify(
                &format!("{}.{forged}.{}", parts[0], parts[2]),
                choice,
                &no_ring,
                1_000
            )
            .unwrap_err(),
            VerifyError::BadSignature
        );
        let relabelled = sign(json!({"alg": "ES384", "kid": "k"}), json!({"sub": "a"}));
        assert!(matches!(
            verify(&relabelled, choice, &no_ring, 1_000),
            Err(VerifyError::AlgorithmMismatch(_))
        ));
        // A P-521 curve id with bytes that are no point on it is refused when the key is read.
        let mut bad = spki.as_ref().to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        assert!(parse_key(&pem("PUBLIC KEY", &bad)).is_err());
    }
}
