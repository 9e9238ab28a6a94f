//! A private key parsed once into the aws-lc key it signs with, and the token header encoded
//! once per key.
//!
//! The JWT library keeps an `EncodingKey` as DER bytes and parses them into an aws-lc key pair
//! on every `encode` (for RSA a full private-key parse and check, for ECDSA and Ed25519 a PKCS#8
//! parse that derives the public point), and serializes and encodes the same header each time.
//! A refresh signs one token, so that cost was paid per refresh. [`PreparedSigner`] does the
//! parse at load time and produces exactly the bytes `jsonwebtoken::encode` produces (the same
//! serialized [`Header`], the same claim serialization, the same signature encodings).

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use gatehouse_plugin_api::tokens::TokenError;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// The parsed key of one algorithm.
enum Parsed {
    Hmac(Box<hmac::Key>),
    Rsa(RsaKeyPair, &'static dyn signature::RsaEncoding),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A key ready to sign tokens with its algorithm and `kid`.
pub(super) struct PreparedSigner {
    key: Parsed,
    /// `base64url(header JSON) + "."`, the start of every token this key signs.
    prefix: String,
    rng: SystemRandom,
}

impl PreparedSigner {
    /// Parses `encoding` (as the JWT library built it from the PEM, or a secret) for
    /// `algorithm`, with the header every token will carry (`typ` `JWT`, `alg`, `kid`).
    /// Returns why the key cannot sign with that algorithm.
    pub(super) fn new(
        algorithm: Algorithm,
        encoding: &EncodingKey,
        kid: &str,
    ) -> Result<PreparedSigner, String> {
        let der = encoding.as_bytes();
        let rsa = |encoding: &'static dyn signature::RsaEncoding| {
            RsaKeyPair::from_der(der)
                .map(|pair| Parsed::Rsa(pair, encoding))
                .map_err(|e| format!("invalid RSA private key: {e}"))
        };
        let ecdsa = |alg: &'static signature::EcdsaSigningAlgorithm| {
            EcdsaKeyPair::from_pkcs8(alg, der)
                .map(Parsed::Ecdsa)
                .map_err(|e| format!("invalid EC private key: {e}"))
        };
        let key = match algorithm {
            Algorithm::HS256 => Parsed::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, der))),
            Algorithm::HS384 => Parsed::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA384, der))),
            Algorithm::HS512 => Parsed::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA512, der))),
            Algorithm::RS256 => rsa(&signature::RSA_PKCS1_SHA256)?,
            Algorithm::RS384 => rsa(&signature::RSA_PKCS1_SHA384)?,
            Algorithm::RS512 => rsa(&signature::RSA_PKCS1_SHA512)?,
            Algorithm::PS256 => rsa(&signature::RSA_PSS_SHA256)?,
            Algorithm::PS384 => rsa(&signature::RSA_PSS_SHA384)?,
            Algorithm::PS512 => rsa(&signature::RSA_PSS_SHA512)?,
            Algorithm::ES256 => ecdsa(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)?,
            Algorithm::ES384 => ecdsa(&signature::ECDSA_P384_SHA384_FIXED_SIGNING)?,
            Algorithm::EdDSA => Parsed::Ed25519(
                Ed25519KeyPair::from_pkcs8(der)
                    .map_err(|e| format!("invalid Ed25519 private key: {e}"))?,
            ),
            other => return Err(format!("{other:?} keys cannot sign here")),
        };
        let mut header = Header::new(algorithm);
        header.kid = Some(kid.to_string());
        header.typ = Some("JWT".into());
        let header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
        let mut prefix = URL_SAFE_NO_PAD.encode(header);
        prefix.push('.');
        Ok(PreparedSigner {
            key,
            prefix,
            rng: SystemRandom::new(),
        })
    }

    /// The compact JWS of `claims`: `header.payload.signature`, each part base64url without
    /// padding. `CannotSign` when the claims do not serialize or the signature fails.
    pub(super) fn sign<T: Serialize>(&self, claims: &T) -> Result<String, TokenError> {
        let payload = serde_json::to_vec(claims).map_err(|_| TokenError::CannotSign)?;
        let mut token = String::with_capacity(self.prefix.len() + payload.len() * 4 / 3 + 700);
        token.push_str(&self.prefix);
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let message = token.as_bytes();
        let signature: Vec<u8> = match &self.key {
            Parsed::Hmac(key) => hmac::sign(key, message).as_ref().to_vec(),
            Parsed::Rsa(pair, encoding) => {
                let mut out = vec![0; pair.public_modulus_len()];
                pair.sign(*encoding, &self.rng, message, &mut out)
                    .map_err(|_| TokenError::CannotSign)?;
                out
            }
            Parsed::Ecdsa(pair) => pair
                .sign(&self.rng, message)
                .map_err(|_| TokenError::CannotSign)?
                .as_ref()
                .to_vec(),
            Parsed::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::{generated_for_tests, KeyAlgorithm};
    use serde_json::json;

    /// The encoding key the JWT library builds for a generated key of `algorithm`.
    fn encoding_for(algorithm: KeyAlgorithm) -> EncodingKey {
        let (_, material) = generated_for_tests(algorithm);
        if algorithm.is_hmac() {
            return EncodingKey::from_secret(material.secret.expect("secret").as_bytes());
        }
        let pem = material.private_key.expect("private key");
        let jwt = algorithm.jwt().expect("a JWT-library algorithm");
        super::super::encoding_from_pem(jwt, &pem).expect("encoding key")
    }

    #[test]
    fn tokens_are_what_the_jwt_library_would_sign_and_verify_with_it() {
        let claims = json!({"sub": "u", "exp": 4_000_000_000_i64, "roles": ["a", "b"]});
        for algorithm in KeyAlgorithm::ALL
            .into_iter()
            .filter(|a| *a != KeyAlgorithm::ES512)
        {
            let jwt = algorithm.jwt().expect("jwt algorithm");
            let encoding = encoding_for(algorithm);
            let signer = PreparedSigner::new(jwt, &encoding, "kid-1").expect("prepared");
            let ours = signer.sign(&claims).expect("sign");
            let mut header = Header::new(jwt);
            header.kid = Some("kid-1".into());
            header.typ = Some("JWT".into());
            let library = jsonwebtoken::encode(&header, &claims, &encoding).expect("encode");
            // Header and payload are byte for byte the library's; deterministic signatures
            // (HMAC, RSA PKCS#1 v1.5, Ed25519) too.
            let head = |t: &str| t.rsplit_once('.').map(|(h, _)| h.to_string());
            assert_eq!(head(&ours), head(&library), "{algorithm:?}");
            let deterministic = matches!(
                jwt,
                Algorithm::HS256
                    | Algorithm::HS384
                    | Algorithm::HS512
                    | Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::EdDSA
            );
            if deterministic {
                assert_eq!(ours, library, "{algorithm:?}");
            }
        }
    }

    #[test]
    fn a_key_of_another_family_is_refused_not_used() {
        let ec = encoding_for(KeyAlgorithm::ES256);
        assert!(PreparedSigner::new(Algorithm::RS256, &ec, "k").is_err());
        assert!(PreparedSigner::new(Algorithm::EdDSA, &ec, "k").is_err());
        let rsa = encoding_for(KeyAlgorithm::RS256);
        assert!(PreparedSigner::new(Algorithm::ES256, &rsa, "k").is_err());
    }
}
