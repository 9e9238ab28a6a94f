//! The key ring: every declared key parsed once into ready signing/verifying keys, bound to its
//! one algorithm, looked up by `kid` in an immutable map (no locks on the hot path).
//!
//! Keys without material are generated on first start ([`generate_material`]) and persisted in
//! the store by the caller, so the same key signs after a restart.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use gatehouse_plugin_api::model::KeyMaterial;
use gatehouse_plugin_api::tokens::{PublicKeyInfo, TokenError};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::config::{KeySource, KeySpec};

/// A key ready to sign (when it has private material) and verify, with its algorithm.
pub struct SigningKey {
    /// The key id as a UUID.
    pub id: Uuid,
    /// The `kid` text (the UUID's hyphenated form).
    pub kid: String,
    /// Display name.
    pub name: String,
    /// The only algorithm this key is used with.
    pub algorithm: Algorithm,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    validation: Validation,
    public: Option<PublicKeyInfo>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("can_sign", &self.encoding.is_some())
            .finish()
    }
}

fn family(algorithm: Algorithm) -> AlgorithmFamily {
    algorithm.family()
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

/// Generates material for `spec`: a 2048-bit RSA key, an EC key on the algorithm's curve, an
/// Ed25519 key, or a 64-byte HMAC secret.
pub fn generate_material(spec: &KeySpec, now_millis: i64) -> Result<KeyMaterial, String> {
    let failed = |what: &str| format!("cannot generate {what} key");
    let pkcs8 = |der: &[u8]| pem_encode("PRIVATE KEY", der);
    let (private_key, secret) = match spec.algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            let mut bytes = [0u8; 64];
            aws_lc_rs::rand::fill(&mut bytes).map_err(|_| failed("HMAC"))?;
            (
                None,
                Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)),
            )
        }
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| failed("RSA"))?;
            let der: Pkcs8V1Der = pair.as_der().map_err(|_| failed("RSA"))?;
            (Some(pkcs8(der.as_ref())), None)
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let alg = if spec.algorithm == Algorithm::ES256 {
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING
            };
            let pair =
                aws_lc_rs::signature::EcdsaKeyPair::generate(alg).map_err(|_| failed("EC"))?;
            let doc = pair.to_pkcs8v1().map_err(|_| failed("EC"))?;
            (Some(pkcs8(doc.as_ref())), None)
        }
        Algorithm::EdDSA => {
            let pair =
                aws_lc_rs::signature::Ed25519KeyPair::generate().map_err(|_| failed("Ed25519"))?;
            let doc = pair.to_pkcs8v1().map_err(|_| failed("Ed25519"))?;
            (Some(pkcs8(doc.as_ref())), None)
        }
        _ => return Err("this algorithm is not supported".into()),
    };
    Ok(KeyMaterial {
        id: spec.id,
        algorithm: algorithm_name(spec.algorithm).to_string(),
        private_key,
        secret,
        insert_instant: now_millis,
    })
}

/// The JOSE name of an algorithm.
pub fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        _ => "unsupported",
    }
}

fn encoding_from_pem(algorithm: Algorithm, pem: &str) -> Result<EncodingKey, String> {
    let result = match family(algorithm) {
        AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(pem.as_bytes()),
        AlgorithmFamily::Ec => EncodingKey::from_ec_pem(pem.as_bytes()),
        AlgorithmFamily::Ed => EncodingKey::from_ed_pem(pem.as_bytes()),
        AlgorithmFamily::Hmac => return Err("HMAC keys have no PEM".into()),
    };
    result.map_err(|_| {
        format!(
            "privateKey is not a valid {} private key in PEM (PKCS#8{})",
            family_name(algorithm),
            if family(algorithm) == AlgorithmFamily::Rsa {
                " or PKCS#1"
            } else {
                ""
            }
        )
    })
}

fn decoding_from_pem(algorithm: Algorithm, pem: &str) -> Result<DecodingKey, String> {
    let result = match family(algorithm) {
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem.as_bytes()),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem.as_bytes()),
        AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem.as_bytes()),
        AlgorithmFamily::Hmac => return Err("HMAC keys have no PEM".into()),
    };
    result.map_err(|_| {
        format!(
            "publicKey is not a valid {} public key in PEM",
            family_name(algorithm)
        )
    })
}

fn family_name(algorithm: Algorithm) -> &'static str {
    match family(algorithm) {
        AlgorithmFamily::Rsa => "RSA",
        AlgorithmFamily::Ec => "EC",
        AlgorithmFamily::Ed => "Ed25519",
        AlgorithmFamily::Hmac => "HMAC",
    }
}

/// SubjectPublicKeyInfo PEM derived from an encoding key's private material.
fn public_pem_from_private(algorithm: Algorithm, encoding: &EncodingKey) -> Result<String, String> {
    let bad = || "cannot derive the public key from privateKey".to_string();
    let der: PublicKeyX509Der = match family(algorithm) {
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

impl SigningKey {
    /// Builds a key from its spec; `material` supplies generated keys (from the store).
    /// `leeway` is the `exp`/`nbf` allowance used when verifying.
    ///
    /// Returns a message (no key material in it) when the material is unusable, including a
    /// private/public pair that do not match or a key on the wrong curve.
    pub fn from_spec(
        spec: &KeySpec,
        material: Option<&KeyMaterial>,
        leeway: u64,
    ) -> Result<SigningKey, String> {
        let algorithm = spec.algorithm;
        let kid = spec.id.to_string();
        let (encoding, decoding, public_pem, jwk) = match (&spec.source, material) {
            (KeySource::Secret(secret), _) => (
                Some(EncodingKey::from_secret(secret.as_bytes())),
                DecodingKey::from_secret(secret.as_bytes()),
                None,
                None,
            ),
            (KeySource::Generate, Some(m)) if family(algorithm) == AlgorithmFamily::Hmac => {
                let secret = m.secret.as_deref().ok_or("stored key has no secret")?;
                (
                    Some(EncodingKey::from_secret(secret.as_bytes())),
                    DecodingKey::from_secret(secret.as_bytes()),
                    None,
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
                    Some(public.trim().to_string() + "\n"),
                    Some(jwk),
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
        let mut validation = Validation::new(algorithm);
        validation.leeway = leeway;
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        let public = match (public_pem, jwk) {
            (Some(pem), Some(mut jwk)) => {
                jwk.common.key_id = Some(kid.clone());
                jwk.common.public_key_use = Some(PublicKeyUse::Signature);
                let jwk = serde_json::to_value(&jwk)
                    .map_err(|_| "public key cannot be expressed as a JWK".to_string())?;
                Some(PublicKeyInfo {
                    key_id: kid.clone(),
                    algorithm: algorithm_name(algorithm).to_string(),
                    pem,
                    jwk,
                })
            }
            _ => None,
        };
        let key = SigningKey {
            id: spec.id,
            kid,
            name: spec.name.clone(),
            algorithm,
            encoding,
            decoding,
            validation,
            public,
        };
        key.self_check()?;
        Ok(key)
    }

    /// Signs and verifies a probe, proving the private and public halves belong together.
    fn self_check(&self) -> Result<(), String> {
        if self.encoding.is_none() {
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
        self.encoding.is_some()
    }

    /// The public half, for asymmetric keys.
    pub fn public(&self) -> Option<&PublicKeyInfo> {
        self.public.as_ref()
    }

    /// Signs `claims` with this key's algorithm and `kid`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, TokenError> {
        let encoding = self.encoding.as_ref().ok_or(TokenError::CannotSign)?;
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, encoding).map_err(|_| TokenError::CannotSign)
    }

    /// Verifies signature, `exp` and `nbf` with this key's algorithm (never the token's alone)
    /// and returns the claims.
    pub fn verify(&self, token: &str) -> Result<Map<String, Value>, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        jsonwebtoken::decode::<Map<String, Value>>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAlgorithm => TokenError::AlgorithmMismatch,
                _ => TokenError::Malformed,
            })
    }
}

type Parts = (
    Option<EncodingKey>,
    DecodingKey,
    Option<String>,
    Option<Jwk>,
);

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
    Ok((Some(encoding), decoding, Some(pem), Some(jwk)))
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

    fn spec(algorithm: Algorithm, source: KeySource) -> KeySpec {
        KeySpec {
            id: Uuid::new_v4(),
            name: "k".into(),
            algorithm,
            source,
        }
    }

    #[test]
    fn every_algorithm_generates_signs_and_verifies() {
        for algorithm in [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
            Algorithm::HS256,
            Algorithm::HS384,
            Algorithm::HS512,
        ] {
            let spec = spec(algorithm, KeySource::Generate);
            let material = generate_material(&spec, 0).expect("generate");
            let key = SigningKey::from_spec(&spec, Some(&material), 0).expect("load");
            let token = key
                .sign(&serde_json::json!({"exp": 4_000_000_000i64, "sub": "x"}))
                .expect("sign");
            let claims = key.verify(&token).expect("verify");
            assert_eq!(claims["sub"], "x");
            assert_eq!(
                key.public().is_some(),
                family(algorithm) != AlgorithmFamily::Hmac
            );
        }
    }

    #[test]
    fn a_key_rejects_tokens_of_another_algorithm() {
        let rsa = spec(Algorithm::RS256, KeySource::Generate);
        let rsa_key = SigningKey::from_spec(&rsa, Some(&generate_material(&rsa, 0).expect("g")), 0)
            .expect("rsa");
        // An HS256 token whose secret is the RSA public key PEM: the classic confusion attack.
        let pem = rsa_key.public().expect("public").pem.clone();
        let mut header = Header::new(Algorithm::HS256);
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
        let full = spec(Algorithm::ES256, KeySource::Generate);
        let key = SigningKey::from_spec(&full, Some(&generate_material(&full, 0).expect("g")), 0)
            .expect("key");
        let token = key
            .sign(&serde_json::json!({"exp": 4_000_000_000i64}))
            .expect("sign");
        let public = spec(
            Algorithm::ES256,
            KeySource::Pem {
                private: None,
                public: Some(key.public().expect("pub").pem.clone()),
            },
        );
        let verifier = SigningKey::from_spec(&public, None, 0).expect("public key");
        assert!(!verifier.can_sign());
        assert!(verifier.verify(&token).is_ok());
    }

    #[test]
    fn mismatched_pairs_and_garbage_are_refused() {
        let a = spec(Algorithm::RS256, KeySource::Generate);
        let b = spec(Algorithm::RS256, KeySource::Generate);
        let ma = generate_material(&a, 0).expect("g");
        let mb = generate_material(&b, 0).expect("g");
        let kb = SigningKey::from_spec(&b, Some(&mb), 0).expect("b");
        let mismatched = spec(
            Algorithm::RS256,
            KeySource::Pem {
                private: ma.private_key.clone(),
                public: Some(kb.public().expect("pub").pem.clone()),
            },
        );
        assert!(SigningKey::from_spec(&mismatched, None, 0).is_err());
        let garbage = spec(
            Algorithm::ES256,
            KeySource::Pem {
                private: Some(
                    "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
                ),
                public: None,
            },
        );
        let message = SigningKey::from_spec(&garbage, None, 0).unwrap_err();
        assert!(message.contains("privateKey"), "{message}");
    }

    #[test]
    fn an_es384_key_declared_as_es256_is_refused() {
        let p384 = spec(Algorithm::ES384, KeySource::Generate);
        let material = generate_material(&p384, 0).expect("g");
        let wrong = spec(
            Algorithm::ES256,
            KeySource::Pem {
                private: material.private_key.clone(),
                public: None,
            },
        );
        assert!(SigningKey::from_spec(&wrong, None, 0).is_err());
    }
}
