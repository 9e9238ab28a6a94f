//! The claim checks of an OpenID Connect ID token whose signature the provider's keys verified
//! (OpenID Connect Core §3.1.3.7): `iss`, `aud`, `azp`, `exp`, `iat`, `nbf` when present
//! (RFC 7519 §4.1.5), `nonce`, `sub`; the
//! userinfo answer's `sub` against the ID token's, and a signed userinfo answer's `iss` and
//! `aud` (§5.3.2).

use serde_json::{Map, Value};

/// What the ID token must say.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The provider's issuer, compared exactly.
    pub issuer: &'a str,
    /// The client id the login used: `aud` must contain it, `azp` must be it.
    pub client_id: &'a str,
    /// The nonce the caller sent in the authorization request, when it gives one.
    pub nonce: Option<&'a str>,
    /// Now (seconds since the epoch).
    pub now: i64,
    /// Clock-skew allowance for `exp`, `iat` and `nbf` (seconds).
    pub leeway: i64,
}

/// Why an ID token (or a userinfo answer) is refused. The message names the claim, never
/// its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// `iss` is not the provider's issuer.
    Issuer,
    /// `aud` does not contain the client id.
    Audience,
    /// `azp` is present and not the client id.
    AuthorizedParty,
    /// Several audiences and no `azp`.
    MissingAuthorizedParty,
    /// `exp` is missing or not a number.
    MissingExpiry,
    /// `exp` is past (beyond the leeway).
    Expired,
    /// `iat` is missing or not a number.
    MissingIssuedAt,
    /// `iat` is in the future (beyond the leeway).
    IssuedInTheFuture,
    /// `nbf` is in the future (beyond the leeway), or not a number.
    NotYetValid,
    /// The caller gave a nonce and the token has another one, or none.
    Nonce,
    /// `sub` is missing or not a string.
    MissingSubject,
    /// The userinfo answer names another `sub` than the ID token.
    UserInfoSubject,
    /// A signed userinfo answer's `iss` is not the provider's issuer.
    UserInfoIssuer,
    /// A signed userinfo answer's `aud` does not contain the client id.
    UserInfoAudience,
}

impl Problem {
    /// A message for the Errors body.
    pub fn message(self) -> &'static str {
        match self {
            Problem::Issuer => "The ID token's iss is not the identity provider's issuer.",
            Problem::Audience => "The ID token's aud does not contain the client id.",
            Problem::AuthorizedParty => "The ID token's azp is not the client id.",
            Problem::MissingAuthorizedParty => {
                "The ID token has several audiences and no azp naming the client id."
            }
            Problem::MissingExpiry => "The ID token has no numeric exp.",
            Problem::Expired => "The ID token has expired.",
            Problem::MissingIssuedAt => "The ID token has no numeric iat.",
            Problem::IssuedInTheFuture => "The ID token's iat is in the future.",
            Problem::NotYetValid => "The ID token's nbf is in the future or not a number.",
            Problem::Nonce => "The ID token's nonce is not the one of the login request.",
            Problem::MissingSubject => "The ID token has no sub.",
            Problem::UserInfoSubject => "The userinfo answer names another sub than the ID token.",
            Problem::UserInfoIssuer => {
                "The signed userinfo answer's iss is not the identity provider's issuer."
            }
            Problem::UserInfoAudience => {
                "The signed userinfo answer's aud does not contain the client id."
            }
        }
    }
}

/// The audiences of `aud` (a string or an array of strings); empty when it is neither.
fn audiences(claims: &Map<String, Value>) -> Vec<&str> {
    match claims.get("aud") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// A time claim in whole seconds (a fraction is cut off); `None` when absent or not a number.
fn seconds(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    let value = claims.get(name)?;
    value
        .as_i64()
        .or_else(|| value.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

/// Checks the claims of a verified ID token. `Ok` when every check passes, else the first
/// problem found.
pub fn check(claims: &Map<String, Value>, expected: &Expected<'_>) -> Result<(), Problem> {
    if claims.get("iss").and_then(Value::as_str) != Some(expected.issuer) {
        return Err(Problem::Issuer);
    }
    let audiences = audiences(claims);
    if !audiences.contains(&expected.client_id) {
        return Err(Problem::Audience);
    }
    match claims.get("azp") {
        Some(azp) if azp.as_str() != Some(expected.client_id) => {
            return Err(Problem::AuthorizedParty)
        }
        None if audiences.len() > 1 => return Err(Problem::MissingAuthorizedParty),
        _ => {}
    }
    let exp = seconds(claims, "exp").ok_or(Problem::MissingExpiry)?;
    if expected.now >= exp.saturating_add(expected.leeway) {
        return Err(Problem::Expired);
    }
    let iat = seconds(claims, "iat").ok_or(Problem::MissingIssuedAt)?;
    if iat.saturating_sub(expected.leeway) > expected.now {
        return Err(Problem::IssuedInTheFuture);
    }
    if claims.contains_key("nbf") {
        let nbf = seconds(claims, "nbf").ok_or(Problem::NotYetValid)?;
        if nbf.saturating_sub(expected.leeway) > expected.now {
            return Err(Problem::NotYetValid);
        }
    }
    if let Some(nonce) = expected.nonce {
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
            return Err(Problem::Nonce);
        }
    }
    subject(claims).ok_or(Problem::MissingSubject)?;
    Ok(())
}

/// The `sub` of `claims`, when it is a non-empty string.
pub fn subject(claims: &Map<String, Value>) -> Option<&str> {
    claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Checks that a userinfo answer names the ID token's subject (when there was an ID token).
pub fn check_userinfo(
    userinfo: &Map<String, Value>,
    id_token: Option<&Map<String, Value>>,
) -> Result<(), Problem> {
    let sub = subject(userinfo).ok_or(Problem::MissingSubject)?;
    match id_token.and_then(subject) {
        Some(expected) if expected != sub => Err(Problem::UserInfoSubject),
        _ => Ok(()),
    }
}

/// Checks a signed userinfo answer's `iss` (required, the provider's issuer) and `aud` (when
/// present, it must contain `client_id`), as OpenID Connect Core §5.3.2 asks.
pub fn check_signed_userinfo(
    claims: &Map<String, Value>,
    issuer: &str,
    client_id: &str,
) -> Result<(), Problem> {
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(Problem::UserInfoIssuer);
    }
    if claims.contains_key("aud") && !audiences(claims).contains(&client_id) {
        return Err(Problem::UserInfoAudience);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    fn expected(nonce: Option<&str>) -> Expected<'_> {
        Expected {
            issuer: "https://idp.example",
            client_id: "gatehouse",
            nonce,
            now: NOW,
            leeway: 30,
        }
    }

    fn claims(changes: Value) -> Map<String, Value> {
        let mut base = json!({"iss": "https://idp.example", "aud": "gatehouse", "sub": "u1",
                              "exp": NOW + 60, "iat": NOW, "nonce": "n1"});
        for (k, v) in changes.as_object().expect("object") {
            if v.is_null() {
                base.as_object_mut().expect("object").remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        base.as_object().cloned().expect("object")
    }

    #[test]
    fn a_good_token_passes() {
        assert_eq!(check(&claims(json!({})), &expected(Some("n1"))), Ok(()));
        assert_eq!(check(&claims(json!({})), &expected(None)), Ok(()));
        let one_of_two = claims(json!({"aud": ["other", "gatehouse"], "azp": "gatehouse"}));
        assert_eq!(check(&one_of_two, &expected(None)), Ok(()));
        // Within the leeway on both ends.
        let skewed = claims(json!({"exp": NOW - 10, "iat": NOW + 20, "nbf": NOW + 20}));
        assert_eq!(check(&skewed, &expected(None)), Ok(()));
        // A fractional time is read.
        assert_eq!(
            check(&claims(json!({"exp": NOW as f64 + 60.5})), &expected(None)),
            Ok(())
        );
    }

    #[test]
    fn each_claim_is_checked() {
        let cases = [
            (json!({"iss": "https://idp.example/"}), Problem::Issuer),
            (json!({"iss": null}), Problem::Issuer),
            (json!({"aud": "other"}), Problem::Audience),
            (json!({"aud": ["other"]}), Problem::Audience),
            (json!({"aud": null}), Problem::Audience),
            (json!({"azp": "other"}), Problem::AuthorizedParty),
            (json!({"azp": 5}), Problem::AuthorizedParty),
            (
                json!({"aud": ["gatehouse", "other"]}),
                Problem::MissingAuthorizedParty,
            ),
            (json!({"exp": null}), Problem::MissingExpiry),
            (json!({"exp": "soon"}), Problem::MissingExpiry),
            (json!({"exp": NOW - 30}), Problem::Expired),
            (json!({"iat": null}), Problem::MissingIssuedAt),
            (json!({"iat": NOW + 31}), Problem::IssuedInTheFuture),
            (json!({"nbf": NOW + 31}), Problem::NotYetValid),
            (json!({"nbf": "now"}), Problem::NotYetValid),
            (json!({"nonce": "other"}), Problem::Nonce),
            (json!({"nonce": null}), Problem::Nonce),
            (json!({"sub": null}), Problem::MissingSubject),
            (json!({"sub": ""}), Problem::MissingSubject),
        ];
        for (changes, problem) in cases {
            assert_eq!(
                check(&claims(changes.clone()), &expected(Some("n1"))),
                Err(problem),
                "{changes}"
            );
        }
        // A nonce in the token that the caller does not check is not a problem.
        assert_eq!(
            check(&claims(json!({"nonce": "x"})), &expected(None)),
            Ok(())
        );
    }

    #[test]
    fn a_signed_userinfo_answer_must_name_the_issuer_and_the_client() {
        let info = |v: Value| v.as_object().cloned().expect("object");
        let check = |v: Value| check_signed_userinfo(&info(v), "https://idp.example", "gatehouse");
        assert_eq!(
            check(json!({"iss": "https://idp.example", "sub": "u1"})),
            Ok(())
        );
        assert_eq!(
            check(json!({"iss": "https://idp.example", "aud": ["x", "gatehouse"]})),
            Ok(())
        );
        assert_eq!(check(json!({"sub": "u1"})), Err(Problem::UserInfoIssuer));
        assert_eq!(
            check(json!({"iss": "https://evil.example"})),
            Err(Problem::UserInfoIssuer)
        );
        assert_eq!(
            check(json!({"iss": "https://idp.example", "aud": "other"})),
            Err(Problem::UserInfoAudience)
        );
        assert_eq!(
            check(json!({"iss": "https://idp.example", "aud": 5})),
            Err(Problem::UserInfoAudience)
        );
    }

    #[test]
    fn userinfo_must_name_the_same_subject() {
        let token = claims(json!({}));
        let info = |v: Value| v.as_object().cloned().expect("object");
        assert_eq!(
            check_userinfo(&info(json!({"sub": "u1"})), Some(&token)),
            Ok(())
        );
        assert_eq!(
            check_userinfo(&info(json!({"sub": "u2"})), Some(&token)),
            Err(Problem::UserInfoSubject)
        );
        assert_eq!(
            check_userinfo(&info(json!({"email": "a@b"})), Some(&token)),
            Err(Problem::MissingSubject)
        );
        assert_eq!(check_userinfo(&info(json!({"sub": "u2"})), None), Ok(()));
        for p in [
            Problem::Issuer,
            Problem::Nonce,
            Problem::UserInfoSubject,
            Problem::UserInfoIssuer,
            Problem::UserInfoAudience,
        ] {
            assert!(p.message().ends_with('.'));
        }
    }
}
