//! ES512 — ECDSA on P-521 with SHA-512 — for the key ring, signed and verified with aws-lc-rs:
//! the JWT library has no P-521 curve, so this module writes and reads the compact JWS form
//! (RFC 7515 §7.1) itself. The signature is the fixed-size `R ‖ S`, 66 bytes each (RFC 7518
//! §3.4). Keys are parsed once into an aws-lc key pair and a parsed public key; a token's
//! `alg` must be `ES512` (the key's algorithm). Times (`exp`, `nbf`) are checked by the token
//! service, in one place for every key.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, ParsedPublicKey, ECDSA_P521_SHA512_FIXED,
    ECDSA_P521_SHA512_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use gatehouse_plugin_api::tokens::TokenError;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// The JOSE name.
pub const NAME: &str = "ES512";
/// An uncompressed P-521 point: `0x04 ‖ X ‖ Y`, 66 bytes per coordinate.
const POINT_LEN: usize = 1 + 2 * COORDINATE_LEN;
const COORDINATE_LEN: usize = 66;

/// An ES512 key: the public half always, the private half when it can sign.
pub struct Es512Key {
    pair: Option<EcdsaKeyPair>,
    public: ParsedPublicKey,
    /// SubjectPublicKeyInfo DER of the public key.
    public_der: Vec<u8>,
}

/// A new P-521 private key, PKCS#8 DER.
pub fn generate_pkcs8() -> Result<Vec<u8>, String> {
    let failed = || "cannot generate a P-521 key".to_string();
    let pair = EcdsaKeyPair::generate(&ECDSA_P521_SHA512_FIXED_SIGNING).map_err(|_| failed())?;
    Ok(pair.to_pkcs8v1().map_err(|_| failed())?.as_ref().to_vec())
}

impl Es512Key {
    /// A key from a private key (PKCS#8 or SEC1 DER), with its public half derived, or checked
    /// against `public_der` (SubjectPublicKeyInfo) when given. The message names the field at
    /// fault and holds no key material.
    pub fn from_private_der(
        private_der: &[u8],
        public_der: Option<&[u8]>,
    ) -> Result<Es512Key, String> {
        let pair =
            EcdsaKeyPair::from_private_key_der(&ECDSA_P521_SHA512_FIXED_SIGNING, private_der)
                .map_err(|_| "privateKey is not a P-521 EC private key".to_string())?;
        let derived = pair
            .public_key()
            .as_der()
            .map_err(|_| "cannot derive the public key from privateKey".to_string())?;
        let mut key = match public_der {
            Some(der) => Es512Key::from_public_der(der)?,
            None => Es512Key::from_public_der(derived.as_ref())?,
        };
        key.pair = Some(pair);
        Ok(key)
    }

    /// A verify-only key from a SubjectPublicKeyInfo DER.
    pub fn from_public_der(public_der: &[u8]) -> Result<Es512Key, String> {
        let bad = || "publicKey is not a P-521 EC public key".to_string();
        let public =
            ParsedPublicKey::new(&ECDSA_P521_SHA512_FIXED, public_der).map_err(|_| bad())?;
        // Re-encoded canonically, so the point is the last bytes of the DER.
        let public_der = public.as_der().map_err(|_| bad())?.as_ref().to_vec();
        if public_der.len() < POINT_LEN || public_der[public_der.len() - POINT_LEN] != 0x04 {
            return Err(bad());
        }
        Ok(Es512Key {
            pair: None,
            public,
            public_der,
        })
    }

    /// True when the key has its private half.
    pub fn can_sign(&self) -> bool {
        self.pair.is_some()
    }

    /// SubjectPublicKeyInfo DER of the public key.
    pub fn public_der(&self) -> &[u8] {
        &self.public_der
    }

    /// The public key as a JWK (RFC 7518 §6.2), with `kid`, `use` and `alg`.
    pub fn jwk(&self, kid: &str) -> Value {
        let point = &self.public_der[self.public_der.len() - POINT_LEN..];
        json!({
            "kty": "EC",
            "crv": "P-521",
            "x": URL_SAFE_NO_PAD.encode(&point[1..1 + COORDINATE_LEN]),
            "y": URL_SAFE_NO_PAD.encode(&point[1 + COORDINATE_LEN..]),
            "kid": kid,
            "use": "sig",
            "alg": NAME,
        })
    }

    /// A compact JWS of `claims` with header `{"alg":"ES512","kid":kid,"typ":"JWT"}`.
    pub fn sign<T: Serialize>(&self, kid: &str, claims: &T) -> Result<String, TokenError> {
        let pair = self.pair.as_ref().ok_or(TokenError::CannotSign)?;
        let header = json!({"alg": NAME, "kid": kid, "typ": "JWT"});
        let header = serde_json::to_vec(&header).map_err(|_| TokenError::CannotSign)?;
        let payload = serde_json::to_vec(claims).map_err(|_| TokenError::CannotSign)?;
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(payload));
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let signature = pair
            .sign(&rng, token.as_bytes())
            .map_err(|_| TokenError::CannotSign)?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
        Ok(token)
    }

    /// Verifies `token`: its `alg` must be ES512 and the signature this key's. The claims, or
    /// why not; times are the caller's to check.
    pub fn verify(&self, token: &str) -> Result<Map<String, Value>, TokenError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header = decode_json(header_b64)?;
        if header.get("alg").and_then(Value::as_str) != Some(NAME) {
            return Err(TokenError::AlgorithmMismatch);
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| TokenError::Malformed)?;
        // The signing input: `header.payload`, as sent.
        let signed = &token[..header_b64.len() + 1 + payload_b64.len()];
        self.public
            .verify_sig(signed.as_bytes(), &signature)
            .map_err(|_| TokenError::BadSignature)?;
        decode_json(payload_b64)
    }
}

/// A base64url (unpadded) segment holding a JSON object.
fn decode_json(segment: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAR: i64 = 4_000_000_000;

    fn key() -> Es512Key {
        Es512Key::from_private_der(&generate_pkcs8().expect("generate"), None).expect("load")
    }

    #[test]
    fn signs_and_verifies_with_a_fixed_size_signature() {
        let key = key();
        let token = key
            .sign("k1", &json!({"exp": FAR, "sub": "x"}))
            .expect("sign");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(parts[2]).expect("b64").len(),
            2 * COORDINATE_LEN
        );
        let header = decode_json(parts[0]).expect("header");
        assert_eq!(header["alg"], "ES512");
        assert_eq!(header["kid"], "k1");
        let claims = key.verify(&token).expect("verify");
        assert_eq!(claims["sub"], "x");
        let jwk = key.jwk("k1");
        assert_eq!(jwk["crv"], "P-521");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["x"].as_str().expect("x"))
                .expect("b64")
                .len(),
            COORDINATE_LEN
        );
    }

    #[test]
    fn tampering_other_keys_and_other_algorithms_are_refused() {
        let key = key();
        let token = key
            .sign("k1", &json!({"exp": FAR, "sub": "x"}))
            .expect("sign");
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"{"exp":4000000000,"sub":"admin"}"#);
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(key.verify(&tampered), Err(TokenError::BadSignature));
        assert_eq!(
            self::key().verify(&token),
            Err(TokenError::BadSignature),
            "another key's signature"
        );
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1"}"#);
        let unsigned = format!("{none}.{}.", parts[1]);
        assert_eq!(key.verify(&unsigned), Err(TokenError::AlgorithmMismatch));
        let es256 = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","kid":"k1"}"#);
        let relabelled = format!("{es256}.{}.{}", parts[1], parts[2]);
        assert_eq!(key.verify(&relabelled), Err(TokenError::AlgorithmMismatch));
        for garbage in ["", "a.b", "a.b.c.d", "!!.!!.!!", &format!("{}..", parts[0])] {
            assert!(key.verify(garbage).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn a_public_key_verifies_but_cannot_sign_and_a_wrong_curve_is_refused() {
        let key = key();
        let token = key.sign("k", &json!({"exp": FAR})).expect("sign");
        let public = Es512Key::from_public_der(key.public_der()).expect("public");
        assert!(!public.can_sign());
        assert!(public.verify(&token).is_ok());
        assert_eq!(
            public.sign("k", &json!({"exp": FAR})),
            Err(TokenError::CannotSign)
        );
        let p256 = EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING)
            .expect("p256");
        let p256_der = p256.to_pkcs8v1().expect("der");
        assert!(Es512Key::from_private_der(p256_der.as_ref(), None).is_err());
        let p256_public = p256.public_key().as_der().expect("der");
        assert!(Es512Key::from_public_der(p256_public.as_ref()).is_err());
    }
}
