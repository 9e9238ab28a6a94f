//! The token service plugins and the proxy share: signs access tokens, vends arbitrary JWTs,
//! verifies tokens against the key ring, and lists public keys. Implemented by the host.

pub mod signing;

use std::sync::Arc;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::model::{Application, Registration, Tenant, User};
use signing::PendingToken;

/// Why a token was not accepted, or could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenError {
    /// Not three base64url parts, bad JSON, a header without `kid`, or a time claim (`exp`,
    /// `nbf`, `iat`) that is not a number.
    Malformed,
    /// The header names a `crit` extension (none is implemented) or a `typ` other than a JWT
    /// access token (RFC 7515 §4.1.11, RFC 8725 §3.11).
    UnsupportedHeader,
    /// No key with the token's `kid`.
    UnknownKey,
    /// The header's `alg` is not the algorithm bound to the key (this includes `none`).
    AlgorithmMismatch,
    /// The signature does not verify.
    BadSignature,
    /// `exp` is past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `iss` is not the issuer of the token's tenant.
    InvalidIssuer,
    /// The token's session or user was revoked after it was issued.
    Revoked,
    /// The key cannot sign (public-only) or signing failed.
    CannotSign,
    /// `aud` names none of the audiences the token's issuer is trusted for.
    InvalidAudience,
    /// The keys that would check the token cannot be had right now (its issuer cannot be
    /// reached and no fresh enough key set is held): not the token's fault.
    KeysUnavailable,
    /// The key that signed the token is bound to tenants or applications (it signs theirs)
    /// and the token names another.
    KeyOutOfScope,
}

impl TokenError {
    /// A short, stable name for logs and metrics labels.
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::UnsupportedHeader => "unsupported_header",
            TokenError::UnknownKey => "unknown_key",
            TokenError::AlgorithmMismatch => "algorithm_mismatch",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::InvalidIssuer => "invalid_issuer",
            TokenError::Revoked => "revoked",
            TokenError::CannotSign => "cannot_sign",
            TokenError::InvalidAudience => "invalid_audience",
            TokenError::KeyOutOfScope => "key_out_of_scope",
            TokenError::KeysUnavailable => "keys_unavailable",
        }
    }
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for TokenError {}

/// The claims of a verified token, with the ones policy needs already parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedClaims {
    /// Every claim, as decoded.
    pub claims: Map<String, Value>,
    /// `kid` of the key that verified it.
    pub key_id: String,
    /// `exp`, seconds.
    pub exp: i64,
    /// `iat`, seconds (0 when absent).
    pub iat: i64,
    /// `nbf`, seconds, when present.
    pub not_before: Option<i64>,
    /// `sub` as a UUID, when it is one.
    pub subject: Option<Uuid>,
    /// `applicationId`, when present and a UUID.
    pub application_id: Option<Uuid>,
    /// `tid`, when present and a UUID.
    pub tenant_id: Option<Uuid>,
    /// `sid`: the refresh token id the token was minted from, when present.
    pub session_id: Option<Uuid>,
    /// `roles`, empty when absent.
    pub roles: Vec<String>,
    /// `aud` when present: the UUIDs it names (a string or an array; other values name no
    /// application). `None` when the token has no `aud`.
    pub audience: Option<Vec<Uuid>>,
    /// Header values of the claims asked for so far, each rendered the first time it is asked
    /// for (see [`VerifiedClaims::header_value`]); a cached token renders nothing again, and
    /// keeps no value for a claim no route forwards.
    pub header_values: crate::claim_headers::RenderedHeaders,
}

/// A claim as the value of an identity header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimHeader<'a> {
    /// The token has no such claim (or it is `null` or an object): no header is set.
    Absent,
    /// The claim's header value.
    Value(&'a http::HeaderValue),
    /// The claim holds bytes no header value may carry (CR, LF, NUL, other controls): a token
    /// with it cannot be forwarded with its identity.
    Unrepresentable,
}

/// A NumericDate claim (RFC 7519 §2) in whole seconds: any JSON number, integer or not,
/// `round`ed to an integer; `Ok(None)` when absent; `Err` for any other type or a value out of
/// range.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &str,
    round: fn(f64) -> f64,
) -> Result<Option<i64>, ()> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    if let Some(seconds) = value.as_i64() {
        return Ok(Some(seconds));
    }
    let seconds = value.as_f64().filter(|_| value.is_f64()).ok_or(())?;
    let rounded = round(seconds);
    // ±2^53: every integer in range is exact, and far beyond any real date.
    const LIMIT: f64 = 9_007_199_254_740_992.0;
    if !(-LIMIT..=LIMIT).contains(&rounded) {
        return Err(());
    }
    Ok(Some(rounded as i64))
}

impl VerifiedClaims {
    /// The claims the policy needs, parsed from `claims`; `None` without `exp`, or when `exp`,
    /// `nbf` or `iat` is not a number. A fractional time is valid: `exp` and `iat` are rounded
    /// down and `nbf` up, so rounding never extends a token's life.
    pub fn from_claims(claims: Map<String, Value>, key_id: String) -> Option<VerifiedClaims> {
        let exp = numeric_date(&claims, "exp", f64::floor).ok()??;
        let not_before = numeric_date(&claims, "nbf", f64::ceil).ok()?;
        let iat = numeric_date(&claims, "iat", f64::floor).ok()?;
        let uuid_claim = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok())
        };
        let roles = match claims.get("roles") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        Some(VerifiedClaims {
            exp,
            iat: iat.unwrap_or(0),
            not_before,
            audience: claims.get("aud").map(audience_of),
            subject: uuid_claim("sub"),
            application_id: uuid_claim("applicationId"),
            tenant_id: uuid_claim("tid"),
            session_id: uuid_claim("sid"),
            roles,
            key_id,
            claims,
            header_values: Default::default(),
        })
    }

    /// True when the token may be used for `application`: its `aud`, when present, names it.
    pub fn audience_allows(&self, application: Uuid) -> bool {
        self.audience
            .as_ref()
            .is_none_or(|audience| audience.contains(&application))
    }

    /// A claim (a name or a dotted path, read as [`claim_at`] reads it) as a header value, as
    /// [`VerifiedClaims::claim_text`] renders it; each claim is
    /// rendered once, the first time it is asked for, so the proxy's hot path only looks up.
    /// A claim that cannot be told apart from another in header form is unrepresentable: a
    /// string with surrounding whitespace (HTTP drops it: `" admin "` would arrive as `admin`),
    /// an array element with a `,` or surrounding whitespace (`["user,admin"]` would read as two
    /// roles), a nested array or object, a number whose float may not have kept its JSON text
    /// (see [`exact_number`]), or a `roles` claim that is not an array of strings (the policy sees no
    /// roles in it, so the upstream must not see any either).
    pub fn header_value(&self, name: &str) -> ClaimHeader<'_> {
        use crate::claim_headers::Rendered;
        let rendered =
            self.header_values
                .get_or_render(name, || match claim_at(&self.claims, name) {
                    Some(Value::Object(_)) if name == "roles" => Rendered::Unrepresentable,
                    None | Some(Value::Null | Value::Object(_)) => Rendered::Absent,
                    Some(value) => header_text(name, value)
                        .and_then(|text| http::HeaderValue::from_bytes(text.as_bytes()).ok())
                        .map_or(Rendered::Unrepresentable, Rendered::Value),
                });
        match rendered {
            Rendered::Absent => ClaimHeader::Absent,
            Rendered::Value(value) => ClaimHeader::Value(value),
            Rendered::Unrepresentable => ClaimHeader::Unrepresentable,
        }
    }

    /// A claim rendered as header text: strings as they are, arrays joined with `,`, numbers and
    /// booleans in JSON form; `None` when absent or an object.
    pub fn claim_text(&self, name: &str) -> Option<String> {
        match self.claims.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Array(items) => Some(
                items
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            Value::Null | Value::Object(_) => None,
        }
    }
}

/// The claim at a dotted `path`: a claim named `path` itself first (namespaced claims such as
/// `https://example.com/roles` contain dots), else the members of nested objects
/// (`realm_access.roles`). `None` when absent. Route policies and identity headers read claims
/// this one way, so a header carries the value its route's checks judged.
pub fn claim_at<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut segments = path.split('.');
    let mut value = claims.get(segments.next()?)?;
    for segment in segments {
        value = value.as_object()?.get(segment)?;
    }
    Some(value)
}

/// The header text of claim `name` with value `value` (not null, not an object), or `None`
/// when it cannot be rendered unambiguously (see [`VerifiedClaims::header_value`]).
fn header_text(name: &str, value: &Value) -> Option<String> {
    match value {
        Value::Array(items) => {
            let texts: Option<Vec<String>> = items
                .iter()
                .map(|item| match item {
                    Value::String(s) if !s.contains(',') && !has_blank_edge(s) && !s.is_empty() => {
                        Some(s.clone())
                    }
                    Value::Number(n) if name != "roles" => exact_number(n),
                    Value::Bool(_) if name != "roles" => Some(item.to_string()),
                    _ => None,
                })
                .collect();
            texts.map(|t| t.join(","))
        }
        _ if name == "roles" => None,
        // HTTP drops a header value's surrounding whitespace: `" admin "` would arrive as
        // `admin`, another identity than the policy saw.
        Value::String(s) if !has_blank_edge(s) => Some(s.clone()),
        Value::String(_) => None,
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => exact_number(n),
        Value::Null | Value::Object(_) => None,
    }
}

/// A number's header text, `None` when it may not be the number's own. An integer within 64
/// bits is exact. Any other number (a fraction, an exponent, an integer beyond 64 bits) was
/// read as a float, which keeps at most 15 significant digits of its JSON text for sure (and
/// the JSON reader may be a unit in the last place off): `123456789012345678901234567890` and
/// `…891` read as the same float. So a float of 10^15 or more, or whose shortest form needs
/// more than 15 significant digits, is refused; `12.5` or `0.25` are written as read.
/// (A JSON text of more than 15 digits that reads as a shorter float, `0.10000000000000000001`
/// as `0.1`, cannot be told from the shorter one: the text itself is not kept.)
fn exact_number(number: &serde_json::Number) -> Option<String> {
    if number.is_i64() || number.is_u64() {
        return Some(number.to_string());
    }
    number
        .as_f64()
        .filter(|f| f.is_finite() && f.abs() < 1e15)?;
    let text = number.to_string();
    let mantissa = text.split(['e', 'E']).next().unwrap_or_default();
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    (digits.trim_matches('0').len() <= 15).then_some(text)
}

/// True when `text` starts or ends with whitespace, or with a default-ignorable code point
/// (zero-width space and joiners, soft hyphen, bidirectional marks, BOM…, see
/// [`crate::text::is_default_ignorable`]) that string trimming elsewhere drops: an upstream
/// that trims would read another value than the policy saw.
fn has_blank_edge(text: &str) -> bool {
    let blank = |c: char| c.is_whitespace() || crate::text::is_default_ignorable(c);
    text.starts_with(blank) || text.ends_with(blank)
}

/// The application ids an `aud` claim names: a UUID string, or the UUID strings of an array.
fn audience_of(aud: &Value) -> Vec<Uuid> {
    let parse = |v: &Value| v.as_str().and_then(|s| Uuid::parse_str(s).ok());
    match aud {
        Value::Array(items) => items.iter().filter_map(parse).collect(),
        other => parse(other).into_iter().collect(),
    }
}

/// What to put in a new access token.
#[derive(Debug, Clone)]
pub struct AccessTokenRequest<'a> {
    /// The subject.
    pub user: &'a User,
    /// The user's tenant (issuer, default key and lifetime).
    pub tenant: &'a Tenant,
    /// The application, when the token is for one.
    pub application: Option<&'a Application>,
    /// The registration to that application; without one, no application claims are added.
    pub registration: Option<&'a Registration>,
    /// `authenticationType`, e.g. `JWT_SSO`, `REFRESH_TOKEN`, `FEDERATED_JWT`.
    pub authentication_type: &'a str,
    /// A fixed `exp` (seconds) instead of now + TTL, e.g. for `/api/jwt/issue`.
    pub expires_at: Option<i64>,
    /// `sid`: the refresh token id this token belongs to.
    pub session_id: Option<Uuid>,
}

/// A signed token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The compact JWT.
    pub token: String,
    /// `exp` in milliseconds (FusionAuth's `tokenExpirationInstant`).
    pub expiration_instant: i64,
    /// `jti`.
    pub jti: Uuid,
}

/// A public key as published by `/api/jwt/public-key` and the JWKS.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicKeyInfo {
    /// `kid`.
    pub key_id: String,
    /// Algorithm, e.g. `RS256`.
    pub algorithm: String,
    /// SubjectPublicKeyInfo PEM.
    pub pem: String,
    /// The JWK (with `kid`, `alg`, `use`).
    pub jwk: Value,
}

/// Signs and verifies tokens with the gateway's keys.
pub trait TokenService: Send + Sync {
    /// Signs an access token with FusionAuth's claims, using the application's JWT settings
    /// when they are enabled, else the tenant's.
    fn issue_access_token(
        &self,
        request: &AccessTokenRequest<'_>,
    ) -> Result<IssuedToken, TokenError>;

    /// Signs `claims` as given (except `exp`, `iat`, `iss`, `jti`, which it sets), with key
    /// `key_id` or the tenant's access-token key, valid for `ttl_seconds`.
    fn vend(
        &self,
        tenant: &Tenant,
        key_id: Option<Uuid>,
        claims: Map<String, Value>,
        ttl_seconds: i64,
    ) -> Result<IssuedToken, TokenError>;

    /// [`TokenService::issue_access_token`] for an async caller: the claims decided and the key
    /// chosen now, the signature made now when it is cheap, else when the caller awaits
    /// [`PendingToken::sign`] (on a pool, off the caller's thread). The same token either way.
    /// By default signed at once.
    fn prepare_access_token(
        &self,
        request: &AccessTokenRequest<'_>,
    ) -> Result<PendingToken, TokenError> {
        self.issue_access_token(request).map(PendingToken::signed)
    }

    /// [`TokenService::vend`] for an async caller, as
    /// [`TokenService::prepare_access_token`] is for `issue_access_token`. By default signed at
    /// once.
    fn prepare_vend(
        &self,
        tenant: &Tenant,
        key_id: Option<Uuid>,
        claims: Map<String, Value>,
        ttl_seconds: i64,
    ) -> Result<PendingToken, TokenError> {
        self.vend(tenant, key_id, claims, ttl_seconds)
            .map(PendingToken::signed)
    }

    /// Verifies a token's signature (with the key's own algorithm), `exp`/`nbf` and issuer.
    /// Returns the parsed claims, shared with the verified-token cache.
    fn verify(&self, token: &str) -> Result<Arc<VerifiedClaims>, TokenError>;

    /// Like [`TokenService::verify`] but accepting any `iss`: the signature (with the key's own
    /// algorithm), `exp`/`nbf` and revocations. For `/api/jwt/validate`, which answers for any
    /// token the gateway signed (vended tokens may carry a custom issuer). Defaults to `verify`.
    fn verify_any_issuer(&self, token: &str) -> Result<Arc<VerifiedClaims>, TokenError> {
        self.verify(token)
    }

    /// Public keys of every asymmetric key; HMAC secrets are never included.
    fn public_keys(&self) -> Vec<PublicKeyInfo>;

    /// True when `key_id` names a key of the ring (of any kind).
    fn has_key(&self, key_id: &str) -> bool;

    /// True when key `key_id` may sign tokens of `tenant`: no tenant or application signs
    /// with it, or `tenant` or one of its applications does (a token of another tenant signed
    /// with it is refused). Defaults to true.
    fn key_speaks_for(&self, _key_id: &str, _tenant: Uuid) -> bool {
        true
    }

    /// A new opaque refresh token value: 256 bits from a CSPRNG, URL-safe base64.
    fn new_refresh_token_value(&self) -> String;

    /// Records that tokens of `scope` issued before `instant_seconds` are revoked, so that
    /// [`TokenService::verify`] refuses them from now on.
    /// The instant is the one the store dated the revocation ([`crate::store::Revoked::at`]
    /// or what [`crate::store::RefreshTokenStore::list_revocations`] holds), never one of the
    /// node's own.
    fn record_revocation(&self, scope: RevocationScope, instant_seconds: i64);
}

/// True when a token dated after a revocation of `earlier` (a token issued in the same second
/// is dated one second after it) can fall under a revocation of `later`, so `later` must be
/// dated after `earlier`. Session revocations never date tokens, so they never count as
/// `earlier`.
pub fn revocation_dates_tokens_of(earlier: &RevocationScope, later: &RevocationScope) -> bool {
    use RevocationScope::{Application, Session, User, UserApplication};
    match (later, earlier) {
        (_, Session(_)) => false,
        (Session(_), _) => true,
        (User(u), User(e)) | (User(u), UserApplication(e, _)) => u == e,
        (User(_), Application(_)) | (Application(_), User(_)) => true,
        (Application(a), Application(e)) | (Application(a), UserApplication(_, e)) => a == e,
        (UserApplication(u, _), User(e)) => u == e,
        (UserApplication(_, a), Application(e)) => a == e,
        (UserApplication(u, a), UserApplication(eu, ea)) => u == eu && a == ea,
    }
}

/// The instant (s) a revocation of `scopes` made at `now_seconds` is dated, given the
/// revocations already `known` (scope and instant): `now_seconds`, or one second after the
/// latest known revocation dated now or later whose tokens these scopes cover. Revocations
/// refuse tokens issued at or before their second, and a token issued in the same second as a
/// revocation is dated just after it (so a login right after "log out everywhere" works); a
/// second revocation in that second must then be dated after that token, or it would miss it.
/// Every node and store applies this same rule.
pub fn revocation_instant<'a>(
    scopes: &[RevocationScope],
    now_seconds: i64,
    known: impl IntoIterator<Item = (&'a RevocationScope, i64)>,
) -> i64 {
    known
        .into_iter()
        .filter(|(_, at)| *at >= now_seconds)
        .filter(|(earlier, _)| {
            scopes
                .iter()
                .any(|s| revocation_dates_tokens_of(earlier, s))
        })
        .map(|(_, at)| at.saturating_add(1))
        .fold(now_seconds, i64::max)
}

/// What a revocation cuts off at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevocationScope {
    /// Every token of a user.
    User(Uuid),
    /// Every token of an application.
    Application(Uuid),
    /// Every token of a user for one application.
    UserApplication(Uuid, Uuid),
    /// Tokens minted from one refresh token (`sid`).
    Session(Uuid),
}

#[cfg(test)]
mod revocation_instant_tests {
    use super::*;

    #[test]
    fn a_second_revocation_in_the_same_second_is_dated_after_the_tokens_the_first_dated() {
        let (u, v, a, b) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let known = [(RevocationScope::UserApplication(u, a), 100)];
        let known = || known.iter().map(|(s, at)| (s, *at));
        assert_eq!(
            revocation_instant(&[RevocationScope::User(u)], 100, known()),
            101
        );
        assert_eq!(
            revocation_instant(&[RevocationScope::Application(a)], 100, known()),
            101
        );
        assert_eq!(
            revocation_instant(&[RevocationScope::Session(b)], 100, known()),
            101
        );
        // Unrelated scopes, and revocations of earlier seconds, change nothing.
        assert_eq!(
            revocation_instant(&[RevocationScope::User(v)], 100, known()),
            100
        );
        assert_eq!(
            revocation_instant(&[RevocationScope::Application(b)], 100, known()),
            100
        );
        assert_eq!(
            revocation_instant(&[RevocationScope::User(u)], 101, known()),
            101
        );
        // Session revocations date no token.
        let sessions = [(RevocationScope::Session(b), 100)];
        let sessions = sessions.iter().map(|(s, at)| (s, *at));
        assert_eq!(
            revocation_instant(&[RevocationScope::User(u)], 100, sessions),
            100
        );
    }
}

#[cfg(test)]
mod header_text_tests {
    use super::*;
    use serde_json::json;

    /// Integers within 64 bits are written as they are, floats only where the float surely
    /// kept the JSON text (below 10^15, at most 15 significant digits).
    #[test]
    fn only_numbers_that_keep_their_text_become_header_text() {
        let text = |value: Value| header_text("n", &value);
        for (value, expected) in [
            (json!(0), "0"),
            (json!(-7), "-7"),
            (json!(i64::MIN), "-9223372036854775808"),
            (json!(u64::MAX), "18446744073709551615"),
        ] {
            assert_eq!(text(value).as_deref(), Some(expected));
        }
        for (raw, expected) in [
            ("12.5", "12.5"),
            ("0.25", "0.25"),
            ("1.0", "1.0"),
            ("1e3", "1000.0"),
            ("-0.0", "-0.0"),
            ("123456789.012345", "123456789.012345"),
            ("123456789012345.0", "123456789012345.0"),
        ] {
            let value: Value = serde_json::from_str(raw).expect("json");
            assert_eq!(text(value).as_deref(), Some(expected), "{raw}");
        }
        let lossy = [
            "18446744073709551616",
            "18446744073709551617",
            "123456789012345678901234567890",
            "9007199254740993.0",
            "9007199254740991.0",
            "1e300",
            "0.12345678901234567",
            "-1234567890.1234567",
        ];
        for raw in lossy {
            let value: Value = serde_json::from_str(raw).expect("json");
            assert_eq!(text(value.clone()), None, "{raw}");
            assert_eq!(text(json!([value, 1])), None, "{raw} in an array");
        }
        assert_eq!(text(json!([1, true, "a"])).as_deref(), Some("1,true,a"));
    }

    /// A header's claim is read as route checks read it: the claim of that name, else the
    /// members of nested objects along its dots.
    #[test]
    fn a_header_reads_a_dotted_claim_as_the_checks_do() {
        let claims = json!({
            "exp": 4_000_000_000u64,
            "org": {"name": "acme", "deep": {"tier": 2}},
            "realm_access": {"roles": ["a", "b"]},
            "a.b": "literal",
            "a": {"b": "nested"},
        });
        let Value::Object(map) = claims else {
            panic!("an object")
        };
        let verified = VerifiedClaims::from_claims(map.clone(), "k".into()).expect("claims");
        let header = |name: &str| match verified.header_value(name) {
            ClaimHeader::Value(value) => Some(value.to_str().expect("text").to_string()),
            _ => None,
        };
        assert_eq!(header("org.name").as_deref(), Some("acme"));
        assert_eq!(header("org.deep.tier").as_deref(), Some("2"));
        assert_eq!(header("realm_access.roles").as_deref(), Some("a,b"));
        assert_eq!(
            header("a.b").as_deref(),
            Some("literal"),
            "the claim of that name first"
        );
        assert_eq!(
            verified.header_value("org"),
            ClaimHeader::Absent,
            "an object"
        );
        assert_eq!(verified.header_value("org.none"), ClaimHeader::Absent);
        assert_eq!(verified.header_value("org.name.x"), ClaimHeader::Absent);
        for path in ["org.name", "a.b", "org.deep.tier", "nothing"] {
            assert_eq!(
                claim_at(&map, path).is_some(),
                header(path).is_some(),
                "{path}"
            );
        }
    }
}
