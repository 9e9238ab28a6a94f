//! Completing an OpenID Connect login through the API: the authorization code the caller got
//! from the provider is exchanged at its token endpoint, the ID token verified, the userinfo
//! endpoint read, and what they say about the user returned to [`crate::login`], which
//! reconciles it like an External JWT's claims.
//!
//! 1. the endpoints ([`discovery`]): the provider's own, the rest discovered from its issuer;
//! 2. the token request (RFC 6749 §4.1.3): `grant_type=authorization_code`, the code, the
//!    `redirect_uri`, the PKCE `code_verifier` when given, and the client authentication the
//!    provider names (`client_secret_basic`: the id and secret form-urlencoded, then Base64,
//!    RFC 6749 §2.3.1; `client_secret_post`; `none`: the client id alone);
//! 3. the ID token, when the token endpoint returns one and the issuer is known: its
//!    signature by the issuer's published keys (the host's `RemoteKeys`: asymmetric
//!    algorithms only, never `none`), or for `HS256`/`HS384`/`HS512` by the client secret
//!    ([`signed`]: only when the provider has one; each key bound to its algorithm family),
//!    then its claims ([`id_token::check`]);
//! 4. the userinfo answer, when the provider has the endpoint: a JSON object whose `sub` is
//!    the ID token's, or a signed JWT (`Content-Type: application/jwt`, OpenID Connect Core
//!    §5.3.2) verified as the ID token is, whose `iss` must be the issuer and `aud` contain
//!    the client id when present, never used unverified;
//! 5. the claims the user is read from: the ID token's, with the userinfo answer's over them.
//!
//! Every failure is a [`OidcFailure`] with its status: 401 for a code the provider refuses
//! or a token or answer that fails a check, 502 for a provider that answers wrongly or cannot
//! be reached, 503 when its keys cannot be had, 504 when it does not answer in time. Messages
//! never carry a code, a token, a secret or an answer's body.

pub mod discovery;
pub mod id_token;
pub mod signed;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use gatehouse_plugin_api::remote::{
    HttpAnswer, HttpCall, HttpClient, HttpFailure, HttpMethod, RemoteKeyError, RemoteKeys,
};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::events::DebugLog;
use crate::provider::{ClientAuthenticationMethod, OpenIdConnect};
use discovery::{discovery_url, DiscoveryCache, Endpoints};
use id_token::Expected;

/// The algorithms an ID token may be signed with by the issuer's published keys (the key's own
/// type must agree): never `none`, never HMAC (HMAC is the client secret's, see [`signed`]).
pub const ID_TOKEN_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
];

/// What the caller sends in `data` to complete a login.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeGrant {
    /// `data.code`: the authorization code.
    pub code: String,
    /// `data.redirect_uri`: the one the authorization request named.
    pub redirect_uri: String,
    /// `data.code_verifier`: the PKCE verifier, when the authorization request had a challenge.
    pub code_verifier: Option<String>,
    /// `data.nonce`: the nonce of the authorization request; the ID token must carry it.
    pub nonce: Option<String>,
}

impl std::fmt::Debug for CodeGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeGrant")
            .field("redirect_uri", &self.redirect_uri)
            .field("code_verifier", &self.code_verifier.is_some())
            .field("nonce", &self.nonce.is_some())
            .finish_non_exhaustive()
    }
}

/// What a completed exchange says about the user.
#[derive(Clone)]
pub struct Completed {
    /// The claims the user is read from: the ID token's, the userinfo answer's over them.
    pub claims: Map<String, Value>,
    /// The reconcile lambda's `jwt`: the userinfo answer (the ID token's claims when the
    /// provider has no userinfo endpoint).
    pub jwt: Value,
    /// The lambda's `id_token`: the ID token's claims (`null` without one).
    pub id_token: Value,
    /// The lambda's `tokens`: `access_token` and, when given, `id_token`, encoded.
    pub tokens: Value,
    /// The provider's refresh token, for the link.
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for Completed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completed")
            .field("claims", &self.claims.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Why an exchange failed: the status and general error of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcFailure {
    /// 401, 502, 503 or 504.
    pub status: u16,
    /// The general error code.
    pub code: &'static str,
    /// The message (no secret, no token, no body).
    pub message: String,
}

fn failure(status: u16, code: &'static str, message: impl Into<String>) -> OidcFailure {
    OidcFailure {
        status,
        code,
        message: message.into(),
    }
}

/// A provider that answered wrongly: 502 `[InvalidIdentityProviderResponse]`.
fn bad_answer(what: &str, why: impl std::fmt::Display) -> OidcFailure {
    failure(
        502,
        "[InvalidIdentityProviderResponse]",
        format!("The identity provider's {what} {why}."),
    )
}

/// A request that got no answer: 504 when it timed out, else 502.
fn no_answer(what: &str, error: HttpFailure) -> OidcFailure {
    match error {
        HttpFailure::Timeout => failure(
            504,
            "[IdentityProviderTimeout]",
            format!("The identity provider's {what} did not answer in time."),
        ),
        HttpFailure::Unreachable(_) => failure(
            502,
            "[IdentityProviderUnreachable]",
            format!("The identity provider's {what} {error}."),
        ),
        HttpFailure::TooLarge | HttpFailure::Refused(_) => bad_answer(what, error),
    }
}

/// What an exchange works with.
pub struct Exchange<'a> {
    /// Outbound HTTP.
    pub http: &'a dyn HttpClient,
    /// The issuers' published keys.
    pub keys: &'a dyn RemoteKeys,
    /// Discovery documents already fetched.
    pub discovery: &'a DiscoveryCache,
    /// The time limit of each request to the provider.
    pub timeout: Duration,
    /// Clock-skew allowance for the ID token's `exp` and `iat` (seconds).
    pub leeway: i64,
    /// Now (seconds since the epoch).
    pub now: i64,
}

impl Exchange<'_> {
    /// Sends `call` with the exchange's time limit.
    async fn send(
        &self,
        method: HttpMethod,
        url: &str,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
    ) -> Result<HttpAnswer, HttpFailure> {
        let call = HttpCall {
            method,
            url: url.to_string(),
            headers,
            body,
            timeout: self.timeout,
        };
        self.http.send(call).await
    }
}

/// Completes a login to `application_id` with the provider `settings` and the caller's
/// `grant`. Returns what the provider says about the user, or why not ([`OidcFailure`]).
pub async fn complete(
    ex: &Exchange<'_>,
    settings: &OpenIdConnect,
    application_id: Uuid,
    grant: &CodeGrant,
    debug: &mut DebugLog,
) -> Result<Completed, OidcFailure> {
    let endpoints = endpoints(ex, settings).await?;
    let (client_id, secret) = settings.client_for(application_id);
    let tokens = exchange_code(ex, settings, application_id, &endpoints.token, grant).await?;
    debug.line(format!(
        "The token endpoint answered (an ID token: {}, a refresh token: {})",
        tokens.id_token.is_some(),
        tokens.refresh_token.is_some()
    ));
    let signers = settings.issuer.as_deref().map(|issuer| Signers {
        issuer,
        jwks_uri: endpoints.keys.as_ref().map(|(_, uri)| uri.as_str()),
        secret: secret.map(|s| s.expose()),
        client_id,
    });
    let id_claims = match (&tokens.id_token, &signers) {
        (Some(token), Some(signers)) if signers.can_verify(token) => {
            let expected = Expected {
                issuer: signers.issuer,
                client_id,
                nonce: grant.nonce.as_deref(),
                now: ex.now,
                leeway: ex.leeway,
            };
            let claims = verify_id_token(ex, token, signers, &expected).await?;
            debug.line("The ID token is verified");
            Some(claims)
        }
        // With an issuer, the ID token is the proof of the login: without the keys to check
        // it (no `jwks_uri` for a signature that is not the client secret's HMAC), or without
        // it when `openid` was asked for (OpenID Connect Core §3.1.3.3), the userinfo answer
        // alone is not taken instead.
        (Some(_), Some(_)) => {
            return Err(bad_answer(
                "discovery document",
                "names no jwks_uri to check the ID token with",
            ))
        }
        (Some(_), None) => {
            debug.line("No issuer is configured: the ID token is not used, the userinfo answer is");
            None
        }
        (None, _) if settings.issuer.is_some() && settings.asks_for(application_id, "openid") => {
            return Err(bad_answer("token endpoint", "answered with no id_token"))
        }
        (None, _) => None,
    };
    if grant.nonce.is_some() && id_claims.is_none() {
        return Err(failure(
            401,
            "[InvalidIdToken]",
            "A nonce was given and the identity provider returned no ID token that could carry it.",
        ));
    }
    let userinfo = match &endpoints.userinfo {
        Some(url) => {
            let signers = signers.as_ref();
            let access = &tokens.access_token;
            Some(read_userinfo(ex, url, access, id_claims.as_ref(), signers).await?)
        }
        None => None,
    };
    if userinfo.is_some() {
        debug.line("The userinfo endpoint answered");
    }
    combine(id_claims, userinfo, tokens)
}

/// Step 5: the claims, the lambda's arguments and the refresh token, from a verified ID token
/// and a checked userinfo answer; 502 when there is neither.
fn combine(
    id_claims: Option<Map<String, Value>>,
    userinfo: Option<Map<String, Value>>,
    tokens: TokenAnswer,
) -> Result<Completed, OidcFailure> {
    let mut claims = id_claims.clone().unwrap_or_default();
    if id_claims.is_none() && userinfo.is_none() {
        return Err(bad_answer(
            "answers",
            "give no verifiable ID token and there is no userinfo endpoint",
        ));
    }
    if let Some(info) = &userinfo {
        claims.extend(info.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let id_token = id_claims.map(Value::Object).unwrap_or(Value::Null);
    let jwt = userinfo
        .map(Value::Object)
        .unwrap_or_else(|| id_token.clone());
    let mut encoded = json!({"access_token": tokens.access_token});
    if let Some(token) = &tokens.id_token {
        encoded["id_token"] = json!(token);
    }
    Ok(Completed {
        claims,
        jwt,
        id_token,
        tokens: encoded,
        refresh_token: tokens.refresh_token,
    })
}

/// Step 1: the provider's endpoints, discovering what its document leaves out (and the keys,
/// which only discovery names) when it has an issuer.
async fn endpoints(ex: &Exchange<'_>, settings: &OpenIdConnect) -> Result<Endpoints, OidcFailure> {
    let discovered = match &settings.issuer {
        Some(issuer) => Some(discover(ex, issuer).await?),
        None => None,
    };
    let found = discovered.clone().unwrap_or_default();
    let token = (settings.token_endpoint.clone())
        .or(found.token_endpoint)
        .ok_or_else(|| bad_answer("discovery document", "names no token_endpoint"))?;
    let keys = match (&settings.issuer, found.jwks_uri) {
        (Some(issuer), Some(uri)) => Some((issuer.clone(), uri)),
        _ => None,
    };
    Ok(Endpoints {
        token,
        userinfo: settings
            .userinfo_endpoint
            .clone()
            .or(found.userinfo_endpoint),
        keys,
    })
}

/// Where a browser logs in and out at a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserEndpoints {
    /// The authorization endpoint: the provider's own, else the discovered one.
    pub authorization: String,
    /// The discovered `end_session_endpoint`, when the provider has one.
    pub end_session: Option<String>,
    /// The provider names itself (`iss`) in every authorization answer (RFC 9207): one
    /// without it is refused.
    pub iss_required: bool,
}

/// The endpoints a browser is sent to for `settings`: its `authorization_endpoint` (else the
/// discovered one) and the discovered `end_session_endpoint`. Returns why not as a failure
/// (502 for a discovery document without an authorization endpoint).
pub async fn browser_endpoints(
    ex: &Exchange<'_>,
    settings: &OpenIdConnect,
) -> Result<BrowserEndpoints, OidcFailure> {
    let discovered = match &settings.issuer {
        Some(issuer) => discover(ex, issuer).await?,
        None => discovery::Discovered::default(),
    };
    let authorization = (settings.authorization_endpoint.clone())
        .or(discovered.authorization_endpoint)
        .ok_or_else(|| bad_answer("discovery document", "names no authorization_endpoint"))?;
    Ok(BrowserEndpoints {
        authorization,
        end_session: discovered.end_session_endpoint,
        iss_required: discovered.iss_parameter_supported,
    })
}

/// The discovery document of `issuer`, from the cache or fetched (and kept when good).
async fn discover(ex: &Exchange<'_>, issuer: &str) -> Result<discovery::Discovered, OidcFailure> {
    if let Some(found) = ex.discovery.get(issuer) {
        return Ok(found);
    }
    let what = "discovery document";
    let headers = vec![("Accept".to_string(), "application/json".to_string())];
    let answer = ex
        .send(HttpMethod::Get, &discovery_url(issuer), headers, None)
        .await
        .map_err(|e| no_answer(what, e))?;
    if answer.status != 200 {
        return Err(bad_answer(what, format!("answered HTTP {}", answer.status)));
    }
    let found = discovery::parse(&answer.body, issuer).map_err(|why| bad_answer(what, why))?;
    ex.discovery.put(issuer, found.clone());
    Ok(found)
}

/// What the token endpoint returned.
struct TokenAnswer {
    access_token: String,
    id_token: Option<String>,
    refresh_token: Option<String>,
}

/// The token request's headers and form body for `grant`, with the client authentication
/// `settings` names for `application_id`.
fn token_request(
    settings: &OpenIdConnect,
    application_id: Uuid,
    grant: &CodeGrant,
) -> (Vec<(String, String)>, Vec<u8>) {
    let (client_id, secret) = settings.client_for(application_id);
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "authorization_code");
    form.append_pair("code", &grant.code);
    form.append_pair("redirect_uri", &grant.redirect_uri);
    if let Some(verifier) = &grant.code_verifier {
        form.append_pair("code_verifier", verifier);
    }
    let mut headers = vec![
        (
            "Content-Type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("Accept".to_string(), "application/json".to_string()),
    ];
    let secret = secret.map(|s| s.expose()).unwrap_or_default();
    match settings.client_authentication_method {
        ClientAuthenticationMethod::ClientSecretBasic => {
            let encode =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", encode(client_id), encode(secret));
            headers.push((
                "Authorization".to_string(),
                format!("Basic {}", STANDARD.encode(pair)),
            ));
        }
        ClientAuthenticationMethod::ClientSecretPost => {
            form.append_pair("client_id", client_id);
            form.append_pair("client_secret", secret);
        }
        ClientAuthenticationMethod::None => {
            form.append_pair("client_id", client_id);
        }
    }
    (headers, form.finish().into_bytes())
}

/// Step 2: exchanges the code. 401 when the provider refuses the grant, 502 when it refuses
/// the client or answers wrongly, 504 when it does not answer in time.
async fn exchange_code(
    ex: &Exchange<'_>,
    settings: &OpenIdConnect,
    application_id: Uuid,
    url: &str,
    grant: &CodeGrant,
) -> Result<TokenAnswer, OidcFailure> {
    let what = "token endpoint";
    let (headers, body) = token_request(settings, application_id, grant);
    let answer = ex
        .send(HttpMethod::Post, url, headers, Some(body))
        .await
        .map_err(|e| no_answer(what, e))?;
    let document: Option<Map<String, Value>> = serde_json::from_slice(&answer.body).ok();
    if answer.status != 200 {
        let error = document
            .as_ref()
            .and_then(|d| d.get("error"))
            .and_then(Value::as_str);
        return Err(match error {
            Some(error) if (400..500).contains(&answer.status) => oauth_error(error),
            _ => bad_answer(what, format!("answered HTTP {}", answer.status)),
        });
    }
    let document = document.ok_or_else(|| bad_answer(what, "answered with no JSON object"))?;
    let text = |name: &str| {
        document
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let access_token =
        text("access_token").ok_or_else(|| bad_answer(what, "answered with no access_token"))?;
    let (id_token, refresh_token) = (text("id_token"), text("refresh_token"));
    // The tokens go into request headers and cookies: only the characters they may have.
    let tokens_ok = vschar(&access_token)
        && refresh_token.as_deref().is_none_or(vschar)
        && id_token.as_deref().is_none_or(compact_jws);
    if !tokens_ok {
        return Err(bad_answer(
            what,
            "answered with a token holding characters no token has",
        ));
    }
    if let Some(kind) = document.get("token_type") {
        if !kind
            .as_str()
            .is_some_and(|k| k.eq_ignore_ascii_case("bearer"))
        {
            return Err(bad_answer(
                what,
                "answered with a token_type other than Bearer",
            ));
        }
    }
    Ok(TokenAnswer {
        access_token,
        id_token,
        refresh_token,
    })
}

/// True for an access or refresh token's characters (RFC 6749 Appendix A: `VSCHAR`, printable
/// ASCII and space; no control byte, so nothing can be added to a header it goes into).
fn vschar(token: &str) -> bool {
    token.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// True for a compact JWS (RFC 7515 §7.1): three base64url parts, separated by dots.
pub fn compact_jws(token: &str) -> bool {
    let base64url =
        |part: &str| (part.bytes()).all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| base64url(p))
}

/// The answer to an OAuth error of the token endpoint (RFC 6749 §5.2): the client's
/// configuration (`invalid_client`, `unauthorized_client`) is the gateway's problem, a 502;
/// anything else (`invalid_grant`: a code that is wrong, used or expired…) a 401. The error
/// code is quoted only when it is a plain token.
fn oauth_error(error: &str) -> OidcFailure {
    let plain = !error.is_empty()
        && error.len() <= 64
        && error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    let name = if plain { error } else { "an error" };
    match error {
        "invalid_client" | "unauthorized_client" => failure(
            502,
            "[IdentityProviderRejectedClient]",
            format!("The identity provider refused the gateway's client credentials ({name})."),
        ),
        _ => failure(
            401,
            "[InvalidAuthorizationCode]",
            format!("The identity provider refused the authorization code ({name})."),
        ),
    }
}

/// Who may sign what a provider sends signed (the ID token, a signed userinfo answer): the
/// issuer's published keys (asymmetric algorithms) and the client secret (HMAC).
pub struct Signers<'a> {
    /// The provider's issuer.
    pub issuer: &'a str,
    /// Where the issuer publishes its keys, when discovery named it.
    pub jwks_uri: Option<&'a str>,
    /// The client secret, when the provider has one.
    pub secret: Option<&'a str>,
    /// The client id (a signed userinfo answer's `aud`, when present, must contain it).
    pub client_id: &'a str,
}

impl Signers<'_> {
    /// True when a key that could verify `token` is known: the client secret for an HMAC
    /// token (one without a secret is still checked, and refused), the issuer's keys for any
    /// other.
    fn can_verify(&self, token: &str) -> bool {
        self.jwks_uri.is_some() || signed::algorithm(token).is_some_and(|a| signed::is_hmac(&a))
    }
}

/// The claims of `token` (the provider's `what`, e.g. "ID token") once its signature verifies:
/// `HS*` with the client secret only (401 `code` when the provider has none or it does not
/// verify), any other algorithm with the issuer's published keys only (503 when they cannot be
/// had, 401 `code` when it does not verify). The claims are not checked here.
async fn verify_signature(
    ex: &Exchange<'_>,
    token: &str,
    signers: &Signers<'_>,
    code: &'static str,
    what: &str,
) -> Result<Map<String, Value>, OidcFailure> {
    if let Some(alg) = signed::algorithm(token).filter(|a| signed::is_hmac(a)) {
        let secret = signers.secret.ok_or_else(|| {
            let message = format!(
                "The {what} is signed with {alg}, and the identity provider has no client secret to verify it with."
            );
            failure(401, code, message)
        })?;
        return signed::verify_hmac(token, secret).map_err(|why| {
            failure(
                401,
                code,
                format!("The {what} is not signed with the client secret ({why})."),
            )
        });
    }
    let Some(jwks_uri) = signers.jwks_uri else {
        return Err(failure(
            401,
            code,
            format!("The {what} cannot be verified: the identity provider publishes no keys."),
        ));
    };
    ex.keys
        .verify(signers.issuer, jwks_uri, ID_TOKEN_ALGORITHMS, token)
        .await
        .map_err(|e| match e {
            RemoteKeyError::Unavailable => failure(
                503,
                "[IdentityProviderKeysUnavailable]",
                "The identity provider's keys cannot be fetched now; try again later.",
            ),
            RemoteKeyError::Invalid(reason) => failure(
                401,
                code,
                format!("The {what} is not signed by the identity provider's keys ({reason})."),
            ),
        })
}

/// Step 3: the ID token's signature ([`verify_signature`]), then its claims (401); returns
/// them.
async fn verify_id_token(
    ex: &Exchange<'_>,
    token: &str,
    signers: &Signers<'_>,
    expected: &Expected<'_>,
) -> Result<Map<String, Value>, OidcFailure> {
    let claims = verify_signature(ex, token, signers, "[InvalidIdToken]", "ID token").await?;
    id_token::check(&claims, expected)
        .map_err(|p| failure(401, "[InvalidIdToken]", p.message()))?;
    Ok(claims)
}

/// Step 4: the userinfo answer for `access_token`: a JSON object, or a signed JWT
/// (`application/jwt`) verified with `signers` and whose `iss` and `aud` are checked
/// ([`id_token::check_signed_userinfo`]); either must name the ID token's `sub`. 401 for an
/// answer that fails a check (a signed one without an issuer to check it against included),
/// 502 for any other answer, 504 when none in time.
async fn read_userinfo(
    ex: &Exchange<'_>,
    url: &str,
    access_token: &str,
    id_claims: Option<&Map<String, Value>>,
    signers: Option<&Signers<'_>>,
) -> Result<Map<String, Value>, OidcFailure> {
    let what = "userinfo endpoint";
    let headers = vec![
        (
            "Authorization".to_string(),
            format!("Bearer {access_token}"),
        ),
        (
            "Accept".to_string(),
            "application/json, application/jwt".to_string(),
        ),
    ];
    let answer = ex
        .send(HttpMethod::Get, url, headers, None)
        .await
        .map_err(|e| no_answer(what, e))?;
    if answer.status != 200 {
        return Err(bad_answer(what, format!("answered HTTP {}", answer.status)));
    }
    let is_jwt = (answer.content_type.as_deref())
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/jwt"));
    let info: Map<String, Value> = if is_jwt {
        signed_userinfo(ex, &answer.body, signers).await?
    } else {
        serde_json::from_slice(&answer.body)
            .map_err(|_| bad_answer(what, "answered with no JSON object"))?
    };
    id_token::check_userinfo(&info, id_claims)
        .map_err(|p| failure(401, "[InvalidUserInfo]", p.message()))?;
    Ok(info)
}

/// The claims of a signed userinfo answer (`body`, a compact JWS), verified with `signers`
/// and checked for `iss` and `aud`; 401 `[InvalidUserInfo]` otherwise (never used unverified).
async fn signed_userinfo(
    ex: &Exchange<'_>,
    body: &[u8],
    signers: Option<&Signers<'_>>,
) -> Result<Map<String, Value>, OidcFailure> {
    let code = "[InvalidUserInfo]";
    let Some(signers) = signers else {
        return Err(failure(
            401,
            code,
            "The userinfo answer is signed and the identity provider has no issuer to verify it against.",
        ));
    };
    let token = std::str::from_utf8(body)
        .map(str::trim)
        .ok()
        .filter(|t| t.split('.').count() == 3)
        .ok_or_else(|| bad_answer("userinfo endpoint", "answered with a malformed JWT"))?;
    let claims = verify_signature(ex, token, signers, code, "userinfo answer").await?;
    id_token::check_signed_userinfo(&claims, signers.issuer, signers.client_id)
        .map_err(|p| failure(401, code, p.message()))?;
    Ok(claims)
}

#[cfg(test)]
mod tests;
