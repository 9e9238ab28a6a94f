//! The login itself: `GET {base}/login/{applicationId}` sends the browser to the provider,
//! `GET {base}/callback` brings it back logged in.
//!
//! The login: the application's enabled OpenID Connect providers (the `idp_hint` one, the only
//! one, or a page to choose from several), the target checked ([`super::redirect`]), then a 302
//! to the provider's authorization endpoint with `response_type=code`, the client id and the
//! scopes of the application (its `applicationConfiguration` overrides, else the provider's;
//! `prompt=consent` when they include `offline_access`, OpenID Connect Core §11),
//! `redirect_uri = {publicOrigin}{base}/callback`, a fresh `state` and `nonce`, and a PKCE
//! S256 challenge, all kept in the signed login-state cookie ([`super::state`]).
//!
//! The callback: the cookie opened (its MAC, its age), its `state` equal to the parameter
//! (constant time), the provider's `iss` parameter (RFC 9207) equal to its
//! issuer when sent (no mix-up between providers), an `error=` answer refused, the `state`
//! recorded as used in the store (once, whichever gateway the callback reaches), then the login
//! completed exactly as `POST /api/identity-provider/login` completes it (code exchange with the
//! verifier, the ID token checked with the `nonce` — a provider without an issuer has no ID
//! token to check, and its userinfo answer says who logged in —, userinfo, reconcile, link), and
//! a 302 to the saved target with the `access_token`, `refresh_token` and `app.at_exp` cookies
//! (for a `CreatePendingLink` provider whose user is not linked yet: a 302 to the target with
//! `pendingIdPLinkId`, no session, for the app to complete the link through the Link API). Every
//! refusal is a 4xx (or the login's 502/503/504) with Errors JSON, and clears the state
//! cookie.

use gatehouse_plugin_api::helpers::secure_cookies;
use gatehouse_plugin_api::{ApiError, Cookie, PluginRequest, PluginResponse};
use http::{HeaderMap, Method};
use serde_json::{json, Value};
use uuid::Uuid;

use super::page::{self, Choice};
use super::state::{self, LoginState, SharedStateKey, StateKey, STATE_COOKIE, STATE_TTL_SECONDS};
use super::{redirect, AppSettings};
use crate::login::{login_keeping_id_token, Endpoint, LoginEnv};
use crate::oidc;
use crate::provider::Provider;

/// What the hosted-backend routes work with besides the request.
pub struct App<'a> {
    /// The `login:` section.
    pub settings: &'a AppSettings,
    /// The login-state key, shared through the store.
    pub key: &'a SharedStateKey,
    /// The login's context (records, discovery, settings).
    pub env: &'a LoginEnv<'a>,
}

impl App<'_> {
    /// The exchange settings for a request to a provider.
    fn exchange(&self) -> oidc::Exchange<'_> {
        let context = self.env.context;
        oidc::Exchange {
            http: context.http.as_ref(),
            keys: context.remote_keys.as_ref(),
            discovery: self.env.discovery,
            timeout: self.env.settings.provider_timeout,
            leeway: self.env.settings.provider_leeway_seconds,
            now: context.clock.now_seconds(),
        }
    }

    /// The login-state key (read from the store once); a 503 when the store cannot be read.
    async fn state_key(&self) -> Result<&StateKey, ApiError> {
        Ok(self.key.load(self.env.context.records).await?)
    }

    /// The state cookie: `value` at `{base}/callback`, HttpOnly, Lax, ten minutes (`0`: cleared).
    fn state_cookie(&self, value: &str, max_age: i64, secure: bool) -> Cookie {
        let mut cookie = Cookie::new(STATE_COOKIE, value);
        cookie.path = format!("{}/callback", self.settings.base_path);
        cookie.max_age = Some(max_age);
        cookie.secure = secure;
        cookie
    }
}

/// The most bytes of `redirect_uri` a login keeps.
pub const MAX_REDIRECT_BYTES: usize = 1536;

/// The most bytes of the app's `state` a login keeps.
pub const MAX_APP_STATE_BYTES: usize = 1024;

/// The most bytes of the login-state cookie's value: browsers drop a cookie over 4 KiB
/// (name, value and attributes) without a word, and the callback would then fail.
pub const MAX_STATE_COOKIE_BYTES: usize = 3800;

/// A 400 naming `field`, too long to be kept.
fn too_long(field: &str, most: usize) -> ApiError {
    ApiError::field(
        field,
        "tooLong",
        format!("The {field} is too long to be kept during the login (at most {most} bytes)."),
    )
}

/// `GET {base}/login/{applicationId}`: a 302 to the provider (or the choice page, 200); 400
/// for an unknown application id form, a target not allowed, a `redirect_uri` or `state` too
/// long to keep, an `idp_hint` that is not one of the application's providers, or an
/// application without any.
pub async fn login(request: &PluginRequest, app: &App<'_>) -> Result<PluginResponse, ApiError> {
    let application = super::application_id(request)?;
    let target = request
        .query_text("redirect_uri")
        .unwrap_or_else(|| "/".into());
    if target.len() > MAX_REDIRECT_BYTES {
        return Err(too_long("redirect_uri", MAX_REDIRECT_BYTES));
    }
    if (request.query_text("state")).is_some_and(|s| s.len() > MAX_APP_STATE_BYTES) {
        return Err(too_long("state", MAX_APP_STATE_BYTES));
    }
    let Some(target) = redirect::allowed(&target, app.settings) else {
        return Err(ApiError::field(
            "redirect_uri",
            "invalid",
            "The redirect_uri must be a path on this site or an allowed origin.",
        ));
    };
    let providers = super::providers_for(app.env.context.records, application).await?;
    let hint = request.query_text("idp_hint");
    let chosen: Vec<&Provider> = match &hint {
        Some(hint) => providers
            .iter()
            .filter(|p| p.id.to_string() == *hint)
            .collect(),
        None => providers.iter().collect(),
    };
    match chosen.as_slice() {
        [] => Ok(super::general(
            400,
            "[InvalidIdentityProvider]",
            "No enabled OpenID Connect identity provider of this application matches.",
        )),
        [provider] => redirect_to(request, app, provider, application, target).await,
        several => Ok(choice_page(request, several, application)),
    }
}

/// The page listing `providers` with their buttons for `application` (each provider's text and
/// image, or the application's overrides of them; the provider's name when it has no text):
/// 200, HTML, not cached.
fn choice_page(
    request: &PluginRequest,
    providers: &[&Provider],
    application: Uuid,
) -> PluginResponse {
    let query: Vec<&str> = (request.query.split('&'))
        .filter(|p| !p.is_empty() && !p.starts_with("idp_hint="))
        .collect();
    let choices: Vec<Choice> = providers
        .iter()
        .map(|p| {
            let settings = p.openid_connect.as_ref();
            let text = settings.map(|o| o.button_text_for(application));
            Choice {
                text: (text.filter(|t| !t.trim().is_empty()))
                    .map_or_else(|| p.name.clone(), str::to_string),
                image: settings.and_then(|o| o.button_image_for(application).map(str::to_string)),
                provider: p.id,
            }
        })
        .collect();
    let html = page::render(&request.path, &query.join("&"), &choices);
    let policy = format!(
        "default-src 'none'; {}frame-ancestors 'none'",
        page::image_sources(&choices)
    );
    PluginResponse {
        status: 200,
        headers: vec![
            ("Content-Type".into(), "text/html; charset=utf-8".into()),
            ("Cache-Control".into(), "no-store".into()),
            ("X-Frame-Options".into(), "DENY".into()),
            ("Content-Security-Policy".into(), policy),
        ],
        body: html.into_bytes(),
    }
}

/// The 302 to `provider`'s authorization endpoint, with the state cookie set.
async fn redirect_to(
    request: &PluginRequest,
    app: &App<'_>,
    provider: &Provider,
    application: Uuid,
    target: String,
) -> Result<PluginResponse, ApiError> {
    let Some(oidc_settings) = provider.openid_connect.as_ref() else {
        return Err(ApiError::internal(
            "an OpenIDConnect provider without its settings",
        ));
    };
    let endpoints = match oidc::browser_endpoints(&app.exchange(), oidc_settings).await {
        Ok(found) => found,
        Err(f) => return Ok(super::general(f.status, f.code, &f.message)),
    };
    let now = app.env.context.clock.now_seconds();
    let login = LoginState {
        state: state::random_value(),
        nonce: state::random_value(),
        verifier: state::random_value(),
        provider: provider.id,
        application,
        redirect: target,
        app_state: request.query_text("state"),
        expires: now + STATE_TTL_SECONDS,
    };
    let scope = oidc_settings.scope_for(application);
    let (client_id, _) = oidc_settings.client_for(application);
    let mut url = url::Url::parse(&endpoints.authorization)
        .map_err(|_| ApiError::internal("an authorization endpoint that is not a URL"))?;
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", &app.settings.callback_url())
            .append_pair("scope", scope)
            .append_pair("state", &login.state)
            .append_pair("nonce", &login.nonce)
            .append_pair("code_challenge", &state::challenge(&login.verifier))
            .append_pair("code_challenge_method", "S256");
        if oidc_settings.asks_for(application, "offline_access") {
            query.append_pair("prompt", "consent");
        }
    }
    let secure = secure_cookies(request, app.env.context);
    let sealed = app.state_key().await?.seal(&login);
    if sealed.len() > MAX_STATE_COOKIE_BYTES {
        // Only the app's state can grow in the cookie (escaped control characters).
        return Err(too_long("state", MAX_APP_STATE_BYTES));
    }
    let cookie = app.state_cookie(&sealed, STATE_TTL_SECONDS, secure);
    Ok(super::found(url.as_str()).with_cookie(&cookie))
}

/// `GET {base}/callback`: the checks of the module documentation, the login, and a 302 to
/// the saved target with the session cookies; a refusal is an Errors JSON answer.
pub async fn callback(request: &PluginRequest, app: &App<'_>) -> Result<PluginResponse, ApiError> {
    let secure = secure_cookies(request, app.env.context);
    let clear = app.state_cookie("", 0, secure);
    let key = app.state_key().await?;
    let answer = match checked_state(request, app, key).await {
        Ok(checked) => {
            let now = app.env.context.clock.now_seconds();
            let records = app.env.context.records;
            let login = &checked.login;
            if state::use_once(records, &login.state, login.expires, now).await? {
                complete(request, app, &checked, secure).await?
            } else {
                super::general(400, "[InvalidState]", "This login was already completed.")
            }
        }
        // Another login's cookie (a newer tab's) is left for its own callback.
        Err(Refusal::OtherLogin(refusal)) => return Ok(refusal),
        Err(Refusal::Spent(refusal)) => refusal,
    };
    Ok(answer.with_cookie(&clear))
}

/// Why a callback is refused, and whether the browser's login-state cookie goes with it.
enum Refusal {
    /// The cookie is for another login than this callback's `state` (a login started later
    /// in another tab, or a callback URL an attacker made the browser open): it is kept, so
    /// that login still completes.
    OtherLogin(PluginResponse),
    /// The cookie is unusable or its login is over: it is cleared.
    Spent(PluginResponse),
}

/// The login state of a callback whose cookie (opened with `key`), `state`, `iss` and provider
/// answer pass, with the code; else the refusal to send ([`Refusal`]). The state is not yet
/// marked used.
async fn checked_state(
    request: &PluginRequest,
    app: &App<'_>,
    key: &StateKey,
) -> Result<Checked, Refusal> {
    let refuse = |code: &str, message: &str| Refusal::Spent(super::general(400, code, message));
    let cookie = super::cookie(request, STATE_COOKIE).map_err(|_| {
        refuse(
            "[InvalidState]",
            "The login state cookie is ambiguous; log in again.",
        )
    })?;
    let now = app.env.context.clock.now_seconds();
    let login = cookie.and_then(|c| key.open(c, now)).ok_or_else(|| {
        refuse(
            "[InvalidState]",
            "This browser started no login, or it expired; log in again.",
        )
    })?;
    let given = request.query_text("state").unwrap_or_default();
    if !state::same(&given, &login.state) {
        return Err(Refusal::OtherLogin(super::general(
            400,
            "[InvalidState]",
            "The state is not the one of this browser's latest login; log in again.",
        )));
    }
    let has_issuer = check_issuer(request, app, &login)
        .await
        .map_err(Refusal::Spent)?;
    if request.query_text("error").is_some() {
        return Err(refuse(
            "[IdentityProviderError]",
            "The identity provider did not log the user in.",
        ));
    }
    let code = request.query_text("code").ok_or_else(|| {
        refuse(
            "[InvalidAuthorizationCode]",
            "The identity provider sent no code.",
        )
    })?;
    Ok(Checked {
        login,
        code,
        has_issuer,
    })
}

/// A callback that passed the checks.
struct Checked {
    /// This browser's login.
    login: LoginState,
    /// The provider's code.
    code: String,
    /// The provider has an issuer, whose ID token carries the login's `nonce` (without one,
    /// its userinfo answer says who logged in, and the code is bound by PKCE and `state`).
    has_issuer: bool,
}

/// RFC 9207: when the provider names itself (`iss`), it must be the provider this login
/// went to; a provider whose discovery document promises `iss`
/// (`authorization_response_iss_parameter_supported`) must send it with a code (§2.4: an
/// answer without it may come from another provider, and its code must not be sent to this
/// one's token endpoint). `Ok(true)` when the provider has an issuer.
async fn check_issuer(
    request: &PluginRequest,
    app: &App<'_>,
    login: &LoginState,
) -> Result<bool, PluginResponse> {
    let doc = app
        .env
        .context
        .records
        .get_identity_provider(login.provider)
        .await;
    let settings = (doc.ok().flatten().as_ref())
        .and_then(Provider::from_document)
        .and_then(|p| p.openid_connect);
    let issuer = settings.as_ref().and_then(|o| o.issuer.clone());
    let Some(iss) = request.query_text("iss") else {
        // An error answer logs no one in: it is refused as such below.
        let carries_code = request.query_text("error").is_none();
        let promised = match &settings {
            Some(s) if issuer.is_some() && carries_code => {
                oidc::browser_endpoints(&app.exchange(), s)
                    .await
                    .map_err(|f| super::general(f.status, f.code, &f.message))?
                    .iss_required
            }
            _ => false,
        };
        if promised {
            return Err(super::general(
                400,
                "[InvalidIssuer]",
                "The identity provider names itself in every answer, and this one names no iss.",
            ));
        }
        return Ok(issuer.is_some());
    };
    match issuer {
        Some(issuer) if issuer == iss => Ok(true),
        _ => Err(super::general(
            400,
            "[InvalidIssuer]",
            "The answer names another identity provider than the one this login went to.",
        )),
    }
}

/// `target` with each given `(name, value)` added to its query (form-encoded), before any
/// fragment.
fn with_params(target: &str, params: &[Option<(&str, &str)>]) -> String {
    let (base, fragment) = match target.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (target, None),
    };
    let mut out = base.to_string();
    for (name, value) in params.iter().flatten() {
        out.push(if out.contains('?') { '&' } else { '?' });
        let encoded: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
        out.push_str(&format!("{name}={encoded}"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// The login through the same steps as `POST /api/identity-provider/login`, then the 302 to
/// the target with the session cookies (or the login's refusal). A `CreatePendingLink`
/// provider's pending link goes to the target as `pendingIdPLinkId`, without a session.
async fn complete(
    request: &PluginRequest,
    app: &App<'_>,
    checked: &Checked,
    secure: bool,
) -> Result<PluginResponse, ApiError> {
    let login = &checked.login;
    let mut body = json!({
        "applicationId": login.application,
        "identityProviderId": login.provider,
        "data": {"code": checked.code, "redirect_uri": app.settings.callback_url(),
                 "code_verifier": login.verifier},
    });
    if checked.has_issuer {
        body["data"]["nonce"] = json!(login.nonce);
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    let inner = PluginRequest {
        method: Method::POST,
        path: "/api/identity-provider/login".into(),
        query: String::new(),
        headers,
        body: body.to_string().into_bytes(),
        client_address: request.client_address,
        tls: request.tls,
        path_params: Default::default(),
    };
    let (answer, id_token) = login_keeping_id_token(&inner, app.env, Endpoint::Login).await?;
    if !matches!(answer.status, 200 | 202) {
        return Ok(answer);
    }
    let parsed: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let app_state = login.app_state.as_deref().map(|s| ("state", s));
    if let Some(pending) = parsed["pendingIdPLinkId"].as_str() {
        // CreatePendingLink: no session; the app completes the link through the Link API
        // (with the user it asks to sign in some other way), then logs the user in again.
        let params = [Some(("pendingIdPLinkId", pending)), app_state];
        return Ok(super::found(&with_params(&login.redirect, &params)));
    }
    if parsed.get("token").is_none() {
        return Ok(super::general(
            400,
            "[LoginNotCompleted]",
            "The identity provider's login gave no token; log in again.",
        ));
    }
    let target = with_params(&login.redirect, &[app_state]);
    let mut out = super::found(&target);
    out.headers.extend(
        (answer.headers.into_iter()).filter(|(name, _)| name.eq_ignore_ascii_case("set-cookie")),
    );
    let expiry = parsed["tokenExpirationInstant"]
        .as_i64()
        .unwrap_or_default();
    out = out.with_cookie(&super::at_exp_cookie(expiry, None, secure));
    // Only a verified ID token (a provider with an issuer) is kept, and only a compact JWS:
    // the provider's logout is found by discovery, and the value goes into a Set-Cookie.
    let kept = id_token.filter(|t| {
        checked.has_issuer && t.len() <= super::MAX_ID_TOKEN_BYTES && oidc::compact_jws(t)
    });
    if let Some(token) = kept {
        let mut cookie = Cookie::new(
            super::ID_TOKEN_COOKIE,
            format!("{}:{token}", login.provider),
        );
        cookie.path = format!("{}/logout", app.settings.base_path);
        cookie.secure = secure;
        out = out.with_cookie(&cookie);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_join_the_query_before_the_fragment_encoded() {
        let state = Some(("state", "a b&c"));
        assert_eq!(with_params("/", &[state]), "/?state=a+b%26c");
        assert_eq!(
            with_params("/p?x=1#top", &[Some(("pendingIdPLinkId", "id")), state]),
            "/p?x=1&pendingIdPLinkId=id&state=a+b%26c#top"
        );
        assert_eq!(
            with_params("https://o.example/p", &[None]),
            "https://o.example/p"
        );
    }
}
