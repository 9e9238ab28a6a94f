//! The key ring: every declared key parsed once into ready signing/verifying keys, bound to its
//! one algorithm, looked up by `kid` in an immutable map (no locks on the hot path).
//!
//! Keys without material are generated on first start ([`generate_material`]) and persisted in
//! the store by the caller, so the same key signs after a restart. Every algorithm but ES512
//! goes through the JWT library; ES512 (P-521), which it lacks, through [`es512`].

pub mod es512;
mod prepared;

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use gatehouse_plugin_api::model::KeyMaterial;
use gatehouse_plugin_api::tokens::{PublicKeyInfo, TokenError};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use es512::Es512Key;
use prepared::PreparedSigner;

/// The algorithm a key is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    EdDSA,
}

impl KeyAlgorithm {
    /// Every algorithm, in the order messages list them.
    pub const ALL: [KeyAlgorithm; 13] = [
        KeyAlgorithm::RS256,
        KeyAlgorithm::RS384,
        KeyAlgorithm::RS512,
        KeyAlgorithm::PS256,
        KeyAlgorithm::PS384,
        KeyAlgorithm::PS512,
        KeyAlgorithm::ES256,
        KeyAlgorithm::ES384,
        KeyAlgorithm::ES512,
        KeyAlgorithm::EdDSA,
        KeyAlgorithm::HS256,
        KeyAlgorithm::HS384,
        KeyAlgorithm::HS512,
    ];

    /// The JOSE name (`alg`).
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::HS256 => "HS256",
            KeyAlgorithm::HS384 => "HS384",
            KeyAlgorithm::HS512 => "HS512",
            KeyAlgorithm::RS256 => "RS256",
            KeyAlgorithm::RS384 => "RS384",
            KeyAlgorithm::RS512 => "RS512",
            KeyAlgorithm::PS256 => "PS256",
            KeyAlgorithm::PS384 => "PS384",
            KeyAlgorithm::PS512 => "PS512",
            KeyAlgorithm::ES256 => "ES256",
            KeyAlgorithm::ES384 => "ES384",
            KeyAlgorithm::ES512 => es512::NAME,
            KeyAlgorithm::EdDSA => "EdDSA",
        }
    }

    /// The algorithm of a JOSE name; `None` for anything else (`none` included).
    pub fn from_name(name: &str) -> Option<KeyAlgorithm> {
        KeyAlgorithm::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The JWT library's algorithm; `None` for ES512, which [`es512`] handles.
    fn jwt(self) -> Option<Algorithm> {
        Some(match self {
            KeyAlgorithm::HS256 => Algorithm::HS256,
            KeyAlgorithm::HS384 => Algorithm::HS384,
            KeyAlgorithm::HS512 => Algorithm::HS512,
            KeyAlgorithm::RS256 => Algorithm::RS256,
            KeyAlgorithm::RS384 => Algorithm::RS384,
            KeyAlgorithm::RS512 => Algorithm::RS512,
            KeyAlgorithm::PS256 => Algorithm::PS256,
            KeyAlgorithm::PS384 => Algorithm::PS384,
            KeyAlgorithm::PS512 => Algorithm::PS512,
            KeyAlgorithm::ES256 => Algorithm::ES256,
            KeyAlgorithm::ES384 => Algorithm::ES384,
            KeyAlgorithm::EdDSA => Algorithm::EdDSA,
            KeyAlgorithm::ES512 => return None,
        })
    }

    /// The JWT library's algorithm; `None` for ES512 (see [`es512`]).
    pub fn jwt_algorithm(self) -> Option<Algorithm> {
        self.jwt()
    }

    /// True for the HMAC algorithms (a shared secret, no public key).
    pub fn is_hmac(self) -> bool {
        matches!(
            self,
            KeyAlgorithm::HS256 | KeyAlgorithm::HS384 | KeyAlgorithm::HS512
        )
    }
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn family_name(family: AlgorithmFamily) -> &'static str {
    match family {
        AlgorithmFamily::Rsa => "RSA",
        AlgorithmFamily::Ec => "EC",
        AlgorithmFamily::Ed => "Ed25519",
        AlgorithmFamily::Hmac => "HMAC",
    }
}

/// Where key material comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Generated on first start and persisted in the store.
    Generate,
    /// An HMAC secret.
    Secret(String),
    /// PEM text: a private key (public derived), a public key (verify only), or both.
    Pem {
        /// Private key PEM.
        private: Option<String>,
        /// Public key PEM.
        public: Option<String>,
    },
}

/// A declared key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// `kid`.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// The one algorithm this key signs and verifies with.
    pub algorithm: KeyAlgorithm,
    /// The material.
    pub source: KeySource,
}

/// The parts of a token's header that pick and check its key.
#[derive(Debug, Deserialize)]
pub struct TokenHeader {
    /// `alg`, as written.
    pub alg: String,
    /// `kid`, when present.
    pub kid: Option<String>,
    /// `typ`, when present (any JSON value: a non-string is refused).
    #[serde(default)]
    typ: Option<Value>,
    /// `crit`, when present (no extension is implemented: any value is refused).
    #[serde(default)]
    crit: Option<Value>,
}

/// True when `typ` declares a JWT access token: `JWT` or `at+jwt`, in any case, with or
/// without the `application/` prefix (RFC 7515 §4.1.9, RFC 9068 §2.1).
fn is_access_token_type(typ: &str) -> bool {
    let bare = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    bare.eq_ignore_ascii_case("jwt") || bare.eq_ignore_ascii_case("at+jwt")
}

impl TokenHeader {
    /// The header of a compact JWS, without verifying anything; `Malformed` when the token is
    /// not three segments or its header not a base64url JSON object with a string `alg`;
    /// `UnsupportedHeader` when it has a `crit` parameter (no extension is implemented, RFC
    /// 7515 §4.1.11) or a `typ` that is not a JWT access token's (RFC 8725 §3.11).
    pub fn parse(token: &str) -> Result<TokenHeader, TokenError> {
        if token.split('.').count() != 3 {
            return Err(TokenError::Malformed);
        }
        let segment = token.split('.').next().ok_or(TokenError::Malformed)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(segment)
            .map_err(|_| TokenError::Malformed)?;
        let header: TokenHeader =
            serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
        if header.crit.is_some() {
            return Err(TokenError::UnsupportedHeader);
        }
        match &header.typ {
            None => Ok(header),
            Some(Value::String(typ)) if is_access_token_type(typ) => Ok(header),
            Some(_) => Err(TokenError::UnsupportedHeader),
        }
    }
}

/// How a key signs and verifies.
enum Engine {
    /// Verified through the JWT library; signed with the key parsed once (the same bytes the
    /// library would produce, see [`prepared`]).
    Jwt {
        signer: Option<PreparedSigner>,
        decoding: DecodingKey,
        validation: Box<Validation>,
    },
    /// ES512, by hand over aws-lc.
    Es512(Es512Key),
}

/// A key ready to sign (when it has private material) and verify, with its algorithm.
pub struct SigningKey {
    /// The key id as a UUID.
    pub id: Uuid,
    /// The `kid` text (the UUID's hyphenated form).
    pub kid: String,
    /// Display name.
    pub name: String,
    /// The only algorithm this key is used with.
    pub algorithm: KeyAlgorithm,
    engine: Engine,
    public: Option<PublicKeyInfo>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("can_sign", &self.can_sign())
            .finish()
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER inside a PEM block whose label is one of `labels`.
fn pem_decode(pem: &str, labels: &[&str]) -> Option<Vec<u8>> {
    let block = pem::parse(pem.trim()).ok()?;
    labels.contains(&block.tag()).then(|| block.into_contents())
}

/// A fresh key of `algorithm` for tests: its spec (a new id, generated material) and that
/// material.
#[cfg(test)]
pub(crate) fn generated_for_tests(algorithm: KeyAlgorithm) -> (KeySpec, KeyMaterial) {
    let spec = KeySpec {
        id: uuid::Uuid::new_v4(),
        name: "k".into(),
        algorithm,
        source: KeySource::Generate,
    };
    let material = generate_material(&spec, 0).expect("generate");
    (spec, material)
}

/// Generates material for `spec`: a 2048-bit RSA key, an EC key on the algorithm's curve, an
/// Ed25519 key, or a 64-byte HMAC secret.
pub fn generate_material(spec: &KeySpec, now_millis: i64) -> Result<KeyMaterial, String> {
    let failed = |what: &str| format!("cannot generate {what} key");
    let pkcs8 = |der: &[u8]| pem_encode("PRIVATE KEY", der);
    let (private_key, secret) = match spec.algorithm {
        KeyAlgorithm::HS256 | KeyAlgorithm::HS384 | KeyAlgorithm::HS512 => {
            let mut bytes = [0u8; 64];
            aws_lc_rs::rand::fill(&mut bytes).map_err(|_| failed("HMAC"))?;
            (
                None,
                Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)),
            )
        }
        KeyAlgorithm::RS256
        | KeyAlgorithm::RS384
        | KeyAlgorithm::RS512
        | KeyAlgorithm::PS256
        | KeyAlgorithm::PS384
        | KeyAlgorithm::PS512 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| failed("RSA"))?;
            let der: Pkcs8V1Der = pair.as_der().map_err(|_| failed("RSA"))?;
            (Some(pkcs8(der.as_ref())), None)
        }
        KeyAlgorithm::ES256 | KeyAlgorithm::ES384 => {
            let alg = if spec.algorithm == KeyAlgorithm::ES256 {
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING
            };
            let pair =
                aws_lc_rs::signature::EcdsaKeyPair::generate(alg).map_err(|_| failed("EC"))?;
            let doc = pair.to_pkcs8v1().map_err(|_| failed("EC"))?;
            (Some(pkcs8(doc.as_ref())), None)
        }
        KeyAlgorithm::ES512 => (Some(pkcs8(&es512::generate_pkcs8()?)), None),
        KeyAlgorithm::EdDSA => {
            let pair =
                aws_lc_rs::signature::Ed25519KeyPair::generate().map_err(|_| failed("Ed25519"))?;
            let doc = pair.to_pkcs8v1().map_err(|_| failed("Ed25519"))?;
            (Some(pkcs8(doc.as_ref())), None)
        }
    };
    Ok(KeyMaterial {
        id: spec.id,
        algorithm: spec.algorithm.name().to_string(),
        private_key,
        secret,
        insert_instant: now_millis,
    })
}

fn encoding_from_pem(algorithm: Algorithm, pem: &str) -> Result<EncodingKey, String> {
    let result = match algorithm.family() {
        AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(pem.as_bytes()),
        AlgorithmFamily::Ec => EncodingKey::from_ec_pem(pem.as_bytes()),
        AlgorithmFamily::Ed => EncodingKey::from_ed_pem(pem.as_bytes()),
        AlgorithmFamily::Hmac => return Err("HMAC keys have no PEM".into()),
    };
    result.map_err(|_| {
        format!(
            "privateKey is not a valid {} private key in PEM (PKCS#8{})",
            family_name(algorithm.family()),
            if algorithm.family() == AlgorithmFamily::Rsa {
                " or PKCS#1"
            } else {
                ""
            }
        )
    })
}

fn decoding_from_pem(algorithm: Algorithm, pem: &str) -> Result<DecodingKey, String> {
    let result = match algorithm.family() {
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem.as_bytes()),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem.as_bytes()),
        AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem.as_bytes()),
        AlgorithmFamily::Hmac => return Err("HMAC keys have no PEM".into()),
    };
    result.map_err(|_| {
        format!(
            "publicKey is not a valid {} public key in PEM",
            family_name(algorithm.family())
        )
    })
}

/// SubjectPublicKeyInfo PEM derived from an encoding key's private material.
fn public_pem_from_private(algorithm: Algorithm, encoding: &EncodingKey) -> Result<String, String> {
    let bad = || "cannot derive the public key from privateKey".to_string();
    let der: PublicKeyX509Der = match algorithm.family() {
        AlgorithmFamily::Rsa => aws_lc_rs::rsa::KeyPair::from_der(encoding.as_bytes())
            .map_err(|_| bad())?
            .public_key()
            .as_der()
            .map_err(|_| bad())?,
        AlgorithmFamily::Ec => {
            let alg = if algorithm == Algorithm::ES256 {
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING
            };
            aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(alg, encoding.as_bytes())
                .map_err(|_| "privateKey is not a key on the curve of the algorithm".to_string())?
                .public_key()
                .as_der()
                .map_err(|_| bad())?
        }
        AlgorithmFamily::Ed => {
            aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(encoding.as_bytes())
                .map_err(|_| bad())?
                .public_key()
                .as_der()
                .map_err(|_| bad())?
        }
        AlgorithmFamily::Hmac => return Err(bad()),
    };
    Ok(pem_encode("PUBLIC KEY", der.as_ref()))
}

/// An ES512 key from PEM: a private key (PKCS#8 or SEC1), a public key, or both.
fn es512_from_pem(private: Option<&str>, public: Option<&str>) -> Result<Es512Key, String> {
    let public_der = public
        .map(|pem| {
            pem_decode(pem, &["PUBLIC KEY"])
                .ok_or_else(|| "publicKey is not a valid EC public key in PEM".to_string())
        })
        .transpose()?;
    match private {
        Some(pem) => {
            let der = pem_decode(pem, &["PRIVATE KEY", "EC PRIVATE KEY"]).ok_or_else(|| {
                "privateKey is not a valid EC private key in PEM (PKCS#8 or SEC1)".to_string()
            })?;
            Es512Key::from_private_der(&der, public_der.as_deref())
        }
        None => match public_der {
            Some(der) => Es512Key::from_public_der(&der),
            None => Err("a PEM key needs privateKey or publicKey".into()),
        },
    }
}

impl SigningKey {
    /// Builds a key from its spec; `material` supplies generated keys (from the store).
    ///
    /// Returns a message (no key material in it) when the material is unusable, including a
    /// private/public pair that do not match or a key on the wrong curve.
    pub fn from_spec(spec: &KeySpec, material: Option<&KeyMaterial>) -> Result<SigningKey, String> {
        let kid = spec.id.to_string();
        let (engine, public) = match spec.algorithm.jwt() {
            Some(algorithm) => {
                let (engine, public) = jwt_engine(spec, algorithm, material)?;
                let public = match public {
                    Some((pem, mut jwk)) => {
                        jwk.common.key_id = Some(kid.clone());
                        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
                        let jwk = serde_json::to_value(&jwk)
                            .map_err(|_| "public key cannot be expressed as a JWK".to_string())?;
                        Some(PublicKeyInfo {
                            key_id: kid.clone(),
                            algorithm: spec.algorithm.name().to_string(),
                            pem,
                            jwk,
                        })
                    }
                    None => None,
                };
                (engine, public)
            }
            None => {
                let key = match (&spec.source, material) {
                    (KeySource::Generate, Some(m)) => {
                        let pem = m
                            .private_key
                            .as_deref()
                            .ok_or("stored key has no private key")?;
                        es512_from_pem(Some(pem), None)?
                    }
                    (KeySource::Generate, None) => {
                        return Err("no material: the key is generated on first start".into())
                    }
                    (KeySource::Pem { private, public }, _) => {
                        es512_from_pem(private.as_deref(), public.as_deref())?
                    }
                    (KeySource::Secret(_), _) => {
                        return Err("ES512 keys take PEM keys, not a secret".into())
                    }
                };
                let public = PublicKeyInfo {
                    key_id: kid.clone(),
                    algorithm: spec.algorithm.name().to_string(),
                    pem: pem_encode("PUBLIC KEY", key.public_der()),
                    jwk: key.jwk(&kid),
                };
                (Engine::Es512(key), Some(public))
            }
        };
        let key = SigningKey {
            id: spec.id,
            kid,
            name: spec.name.clone(),
            algorithm: spec.algorithm,
            engine,
            public,
        };
        key.self_check()?;
        Ok(key)
    }

    /// Signs and verifies a probe, proving the private and public halves belong together.
    fn self_check(&self) -> Result<(), String> {
        if !self.can_sign() {
            return Ok(());
        }
        let probe = serde_json::json!({"exp": i64::MAX / 2_000, "probe": true});
        let token = self
            .sign(&probe)
            .map_err(|_| "the key cannot sign with its algorithm".to_string())?;
        self.verify(&token)
            .map(|_| ())
            .map_err(|_| "the public key does not match the private key".to_string())
    }

    /// True when the key has private material.
    pub fn can_sign(&self) -> bool {
        match &self.engine {
            Engine::Jwt { signer, .. } => signer.is_some(),
            Engine::Es512(key) => key.can_sign(),
        }
    }

    /// The public half, for asymmetric keys.
    pub fn public(&self) -> Option<&PublicKeyInfo> {
        self.public.as_ref()
    }

    /// True when a signature with this key costs more than a hop to another thread: RSA
    /// (RS/PS 256/384/512, a private-key operation of hundreds of µs at 2048 bits, more for
    /// larger keys), which callers that serve other requests on their thread sign on a pool.
    /// False for ECDSA, Ed25519 and HMAC (about 20 µs or less: signed where they are asked
    /// for). Decided by the key's type, never by a timer.
    pub fn signs_slowly(&self) -> bool {
        matches!(
            self.algorithm,
            KeyAlgorithm::RS256
                | KeyAlgorithm::RS384
                | KeyAlgorithm::RS512
                | KeyAlgorithm::PS256
                | KeyAlgorithm::PS384
                | KeyAlgorithm::PS512
        )
    }

    /// Signs `claims` with this key's algorithm and `kid`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, TokenError> {
        match &self.engine {
            Engine::Jwt { signer, .. } => {
                signer.as_ref().ok_or(TokenError::CannotSign)?.sign(claims)
            }
            Engine::Es512(key) => key.sign(&self.kid, claims),
        }
    }

    /// Verifies the signature with this key's algorithm (never the token's alone) and returns
    /// the claims; times are checked by the token service.
    pub fn verify(&self, token: &str) -> Result<Map<String, Value>, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        match &self.engine {
            Engine::Jwt {
                decoding,
                validation,
                ..
            } => jsonwebtoken::decode::<Map<String, Value>>(token, decoding, validation)
                .map(|data| data.claims)
                .map_err(|e| match e.kind() {
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                    ErrorKind::InvalidSignature => TokenError::BadSignature,
                    ErrorKind::InvalidAlgorithm => TokenError::AlgorithmMismatch,
                    _ => TokenError::Malformed,
                }),
            Engine::Es512(key) => key.verify(token),
        }
    }
}

/// The public half of a key the JWT library handles: its PEM and its JWK.
type PublicParts = Option<(String, Jwk)>;

/// A key the JWT library handles, and its public half (none for HMAC).
fn jwt_engine(
    spec: &KeySpec,
    algorithm: Algorithm,
    material: Option<&KeyMaterial>,
) -> Result<(Engine, PublicParts), String> {
    let (encoding, decoding, public) = match (&spec.source, material) {
        (KeySource::Secret(secret), _) => (
            Some(EncodingKey::from_secret(secret.as_bytes())),
            DecodingKey::from_secret(secret.as_bytes()),
            None,
        ),
        (KeySource::Generate, Some(m)) if spec.algorithm.is_hmac() => {
            let secret = m.secret.as_deref().ok_or("stored key has no secret")?;
            (
                Some(EncodingKey::from_secret(secret.as_bytes())),
                DecodingKey::from_secret(secret.as_bytes()),
                None,
            )
        }
        (KeySource::Generate, None) => {
            return Err("no material: the key is generated on first start".into())
        }
        (KeySource::Generate, Some(m)) => {
            let pem = m
                .private_key
                .as_deref()
                .ok_or("stored key has no private key")?;
            private_parts(algorithm, pem, None)?
        }
        (
            KeySource::Pem {
                private: Some(private),
                public,
            },
            _,
        ) => private_parts(algorithm, private, public.as_deref())?,
        (
            KeySource::Pem {
                private: None,
                public: Some(public),
            },
            _,
        ) => {
            let decoding = decoding_from_pem(algorithm, public)?;
            let jwk = Jwk::from_decoding_key(&decoding, Some(algorithm))
                .map_err(|_| "publicKey cannot be expressed as a JWK".to_string())?;
            (
                None,
                decoding,
                Some((public.trim().to_string() + "\n", jwk)),
            )
        }
        (
            KeySource::Pem {
                private: None,
                public: None,
            },
            _,
        ) => return Err("a PEM key needs privateKey or publicKey".into()),
    };
    // The library checks the signature and the algorithm; times (`exp`, `nbf`, `iat` as
    // NumericDates, integer or not) are checked by the token service for every key alike.
    let mut validation = Validation::new(algorithm);
    validation.validate_aud = false;
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_required_spec_claims::<&str>(&[]);
    let signer = encoding
        .map(|encoding| PreparedSigner::new(algorithm, &encoding, &spec.id.to_string()))
        .transpose()?;
    Ok((
        Engine::Jwt {
            signer,
            decoding,
            validation: Box::new(validation),
        },
        public,
    ))
}

type Parts = (Option<EncodingKey>, DecodingKey, PublicParts);

fn private_parts(
    algorithm: Algorithm,
    private: &str,
    public: Option<&str>,
) -> Result<Parts, String> {
    let encoding = encoding_from_pem(algorithm, private)?;
    let (decoding, jwk, pem) = match public {
        Some(public) => {
            let decoding = decoding_from_pem(algorithm, public)?;
            let jwk = Jwk::from_decoding_key(&decoding, Some(algorithm))
                .map_err(|_| "publicKey cannot be expressed as a JWK".to_string())?;
            (decoding, jwk, public.trim().to_string() + "\n")
        }
        None => {
            let jwk = Jwk::from_encoding_key(&encoding, algorithm)
                .map_err(|_| "cannot derive the public key from privateKey".to_string())?;
            let decoding = DecodingKey::from_jwk(&jwk)
                .map_err(|_| "cannot derive the public key from privateKey".to_string())?;
            let pem = public_pem_from_private(algorithm, &encoding)?;
            (decoding, jwk, pem)
        }
    };
    Ok((Some(encoding), decoding, Some((pem, jwk))))
}

/// All keys by `kid`. Built once at start; read without locks.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: HashMap<String, Arc<SigningKey>>,
    /// Declaration order, for stable listings.
    order: Vec<String>,
}

impl KeyRing {
    /// A ring of these keys.
    pub fn new(keys: Vec<SigningKey>) -> Self {
        let order = keys.iter().map(|k| k.kid.clone()).collect();
        let keys = keys
            .into_iter()
            .map(|k| (k.kid.clone(), Arc::new(k)))
            .collect();
        KeyRing { keys, order }
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&Arc<SigningKey>> {
        self.keys.get(kid)
    }

    /// Keys in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<SigningKey>> {
        self.order.iter().filter_map(|kid| self.keys.get(kid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(algorithm: KeyAlgorithm, source: KeySource) -> KeySpec {
        KeySpec {
            id: Uuid::new_v4(),
            name: "k".into(),
            algorithm,
            source,
        }
    }

    #[test]
    fn every_algorithm_generates_signs_and_verifies() {
        for algorithm in KeyAlgorithm::ALL {
            let spec = spec(algorithm, KeySource::Generate);
            let material = generate_material(&spec, 0).expect("generate");
            let key = SigningKey::from_spec(&spec, Some(&material)).expect("load");
            let token = key
                .sign(&serde_json::json!({"exp": 4_000_000_000i64, "sub": "x"}))
                .expect("sign");
            let claims = key.verify(&token).expect("verify");
            assert_eq!(claims["sub"], "x");
            assert_eq!(key.public().is_some(), !algorithm.is_hmac());
            assert_eq!(
                TokenHeader::parse(&token).expect("header").alg,
                algorithm.name()
            );
        }
    }

    #[test]
    fn token_headers_need_three_segments_and_a_string_alg() {
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let header = b64(serde_json::json!({"alg": "none", "kid": "k"}));
        let parsed = TokenHeader::parse(&format!("{header}.e30.")).expect("three segments");
        assert_eq!(
            (parsed.alg.as_str(), parsed.kid.as_deref()),
            ("none", Some("k"))
        );
        for token in [
            header.clone(),
            format!("{header}.e30"),
            format!("{header}.e30.x.y"),
            format!("{header}.e30.x.y.z"),
            format!("{}.e30.x", b64(serde_json::json!({"kid": "k"}))),
            format!("{}.e30.x", b64(serde_json::json!({"alg": 1}))),
            "!!.e30.x".to_string(),
        ] {
            assert_eq!(
                TokenHeader::parse(&token).err(),
                Some(TokenError::Malformed),
                "{token}"
            );
        }
    }

    #[test]
    fn a_key_rejects_tokens_of_another_algorithm() {
        let rsa = spec(KeyAlgorithm::RS256, KeySource::Generate);
        let rsa_key = SigningKey::from_spec(&rsa, Some(&generate_material(&rsa, 0).expect("g")))
            .expect("rsa");
        // An HS256 token whose secret is the RSA public key PEM: the classic confusion attack.
        let pem = rsa_key.public().expect("public").pem.clone();
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = Some(rsa_key.kid.clone());
        let forged = jsonwebtoken::encode(
            &header,
            &serde_json::json!({"exp": 4_000_000_000i64}),
            &EncodingKey::from_secret(pem.as_bytes()),
        )
        .expect("encode");
        assert_eq!(rsa_key.verify(&forged), Err(TokenError::AlgorithmMismatch));
    }

    #[test]
    fn public_only_keys_verify_but_cannot_sign() {
        let full = spec(KeyAlgorithm::ES256, KeySource::Generate);
        let key = SigningKey::from_spec(&full, Some(&generate_material(&full, 0).expect("g")))
            .expect("key");
        let token = key
            .sign(&serde_json::json!({"exp": 4_000_000_000i64}))
            .expect("sign");
        let public = spec(
            KeyAlgorithm::ES256,
            KeySource::Pem {
                private: None,
                public: Some(key.public().expect("pub").pem.clone()),
            },
        );
        let verifier = SigningKey::from_spec(&public, None).expect("public key");
        assert!(!verifier.can_sign());
        assert!(verifier.verify(&token).is_ok());
    }

    #[test]
    fn mismatched_pairs_and_garbage_are_refused() {
        let a = spec(KeyAlgorithm::RS256, KeySource::Generate);
        let b = spec(KeyAlgorithm::RS256, KeySource::Generate);
        let ma = generate_material(&a, 0).expect("g");
        let mb = generate_material(&b, 0).expect("g");
        let kb = SigningKey::from_spec(&b, Some(&mb)).expect("b");
        let mismatched = spec(
            KeyAlgorithm::RS256,
            KeySource::Pem {
                private: ma.private_key.clone(),
                public: Some(kb.public().expect("pub").pem.clone()),
            },
        );
        assert!(SigningKey::from_spec(&mismatched, None).is_err());
        let garbage = spec(
            KeyAlgorithm::ES256,
            KeySource::Pem {
                private: Some(
                    "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
                ),
                public: None,
            },
        );
        let message = SigningKey::from_spec(&garbage, None).unwrap_err();
        assert!(message.contains("privateKey"), "{message}");
    }

    #[test]
    fn es512_keys_load_from_pem_publish_a_jwk_and_refuse_mismatched_halves() {
        let a = spec(KeyAlgorithm::ES512, KeySource::Generate);
        let key =
            SigningKey::from_spec(&a, Some(&generate_material(&a, 0).expect("g"))).expect("es512");
        let public = key.public().expect("public half");
        assert_eq!(public.algorithm, "ES512");
        assert_eq!(public.jwk["crv"], "P-521");
        assert_eq!(public.jwk["kid"], key.kid);
        let token = key
            .sign(&serde_json::json!({"exp": 4_000_000_000i64}))
            .expect("sign");
        let verifier = SigningKey::from_spec(
            &spec(
                KeyAlgorithm::ES512,
                KeySource::Pem {
                    private: None,
                    public: Some(public.pem.clone()),
                },
            ),
            None,
        )
        .expect("public-only key");
        assert!(!verifier.can_sign());
        assert!(verifier.verify(&token).is_ok());
        let other = generate_material(&a, 0).expect("g");
        let mismatched = spec(
            KeyAlgorithm::ES512,
            KeySource::Pem {
                private: other.private_key,
                public: Some(public.pem.clone()),
            },
        );
        let message = SigningKey::from_spec(&mismatched, None).unwrap_err();
        assert!(message.contains("does not match"), "{message}");
        // A P-384 key declared as ES512, and an ES512 key declared as ES384.
        let p384 = spec(KeyAlgorithm::ES384, KeySource::Generate);
        let p384_pem = generate_material(&p384, 0).expect("g").private_key;
        let wrong = spec(
            KeyAlgorithm::ES512,
            KeySource::Pem {
                private: p384_pem,
                public: None,
            },
        );
        assert!(SigningKey::from_spec(&wrong, None).is_err());
        let wrong = spec(
            KeyAlgorithm::ES384,
            KeySource::Pem {
                private: generate_material(&a, 0).expect("g").private_key,
                public: None,
            },
        );
        assert!(SigningKey::from_spec(&wrong, None).is_err());
    }

    #[test]
    fn an_es384_key_declared_as_es256_is_refused() {
        let p384 = spec(KeyAlgorithm::ES384, KeySource::Generate);
        let material = generate_material(&p384, 0).expect("g");
        let wrong = spec(
            KeyAlgorithm::ES256,
            KeySource::Pem {
                private: material.private_key.clone(),
                public: None,
            },
        );
        assert!(SigningKey::from_spec(&wrong, None).is_err());
    }
}
