//! The session routes: `POST {base}/refresh/{applicationId}`, `GET {base}/me` and
//! `GET {base}/logout/{applicationId}`.
//!
//! **Cross-site requests.** Refresh and logout act on the browser's cookies, so a page on
//! another site must not trigger them. The session cookies are `SameSite=Lax`: a cross-site
//! `POST` (a form on another site) carries none, and neither does a cross-site image or fetch.
//! Lax cookies do follow a cross-site top-level `GET` link, and logout is a `GET` (FusionAuth's
//! shape), so both routes also refuse (403 `[CrossSiteRequest]`, nothing revoked or changed) a
//! request a browser marks as coming from another origin of another or the same site
//! (`Sec-Fetch-Site: cross-site` or `same-site`: a sibling subdomain gets Lax cookies even on a
//! form POST) or whose `Origin` is neither `login.publicOrigin` nor one of `login.redirects`,
//! unless its `Referer` (or, for `Sec-Fetch-Site`, its `Origin`) is on one of those origins
//! (an allowed app linking to logout or calling refresh). Clients that send neither header (not
//! browsers) are not refused: they can only act on cookies they already hold.

use gatehouse_plugin_api::helpers::secure_cookies;
use gatehouse_plugin_api::store::RevokeScope;
use gatehouse_plugin_api::{ApiError, Cookie, PluginContext, PluginRequest, PluginResponse};
use gatehouse_refresh::{exchange_refresh_token_scoped, refresh_env, RefreshError};
use serde_json::{json, Map, Value};

use super::flow::App;
use super::{redirect, AppSettings};
use crate::oidc;
use crate::provider::Provider;

/// True when a browser says the request comes from another site than the gateway's or an
/// allowed origin's (see the module documentation).
pub fn cross_site(request: &PluginRequest, settings: &AppSettings) -> bool {
    let allowed = |value: &str| {
        let origin = url::Url::parse(value).map(|u| u.origin().ascii_serialization());
        origin.is_ok_and(|o| o == settings.public_origin || settings.redirects.contains(&o))
    };
    let referer_ok = request.header("referer").is_some_and(allowed);
    let origin = request.header("origin");
    if origin.is_some_and(|o| !allowed(o)) && !referer_ok {
        return true;
    }
    // `same-site` is another origin of the same site (a sibling subdomain), which Lax
    // cookies follow even on a form POST: refused like another site unless it is vouched for.
    let vouched = referer_ok || origin.is_some_and(allowed);
    let site = request.header("sec-fetch-site");
    matches!(site, Some("cross-site" | "same-site")) && !vouched
}

fn cross_site_refusal() -> PluginResponse {
    super::general(
        403,
        "[CrossSiteRequest]",
        "This request comes from another site; it is not acted on.",
    )
}

/// `POST {base}/refresh/{applicationId}`: the session refreshed from the `refresh_token`
/// cookie (any body); 200 with the new cookies, 400 when the user must log in again (no
/// cookie, a token unknown, expired, revoked, or of another application), 503 when the store
/// cannot be reached, 403 for a cross-site request.
pub async fn refresh(request: &PluginRequest, app: &App<'_>) -> Result<PluginResponse, ApiError> {
    let application = super::application_id(request)?;
    if cross_site(request, app.settings) {
        return Ok(cross_site_refusal());
    }
    let context: &PluginContext = app.env.context;
    let credentials = request.credentials()?;
    let Some(value) = credentials
        .refresh_token
        .and_then(|v| std::str::from_utf8(v).ok())
    else {
        return Ok(must_log_in());
    };
    // Another application's token is left untouched (as at the edge: a refresh never uses up
    // a token a route of another application holds).
    match context.store.find_refresh_token(value).await? {
        Some(token) if token.application_id == Some(application) => {}
        Some(_) => return Ok(must_log_in()),
        None => {}
    }
    let ip = request.client_ip();
    let outcome =
        match exchange_refresh_token_scoped(refresh_env(context), value, ip.as_deref(), None).await
        {
            Ok(outcome) => outcome,
            Err(RefreshError::Store(e)) => return Err(e.into()),
            Err(_) => return Ok(must_log_in()),
        };
    let now = context.clock.now_millis();
    let secure = secure_cookies(request, context);
    let access = &outcome.access_token;
    let refresh_token = &outcome.refresh_token;
    Ok(PluginResponse::empty(200)
        .with_header("Cache-Control", "no-store")
        .with_cookie(&Cookie::expiring(
            "access_token",
            &access.token,
            access.expiration_instant,
            now,
            secure,
        ))
        .with_cookie(&Cookie::expiring(
            "refresh_token",
            &refresh_token.token,
            refresh_token.expiration_instant,
            now,
            secure,
        ))
        .with_cookie(&super::at_exp_cookie(
            access.expiration_instant,
            None,
            secure,
        )))
}

fn must_log_in() -> PluginResponse {
    super::general(
        400,
        "[InvalidRefreshToken]",
        "The session is over; log in again.",
    )
}

/// `GET {base}/me`: the user of the access token (cookie or Bearer), in FusionAuth's userinfo
/// shape (`sub`, `email`, `email_verified`, `preferred_username`, `roles`, `applicationId`,
/// `tid`…); 401 without a valid one.
pub async fn me(
    request: &PluginRequest,
    context: &PluginContext,
) -> Result<PluginResponse, ApiError> {
    let credentials = request.credentials()?;
    let token = credentials
        .access_token
        .and_then(|v| std::str::from_utf8(v).ok());
    let Some(verified) = token.and_then(|t| context.tokens.verify(t).ok()) else {
        return Err(ApiError::Unauthorized);
    };
    let mut info = Map::new();
    for name in [
        "sub",
        "email",
        "email_verified",
        "preferred_username",
        "given_name",
        "family_name",
        "name",
        "picture",
        "roles",
        "applicationId",
        "tid",
        "aud",
        "iss",
    ] {
        if let Some(value) = verified.claims.get(name) {
            info.insert(name.to_string(), value.clone());
        }
    }
    if !info.contains_key("roles") {
        info.insert("roles".into(), json!([]));
    }
    Ok(PluginResponse::json(200, &Value::Object(info)).with_header("Cache-Control", "no-store"))
}

/// `GET {base}/logout/{applicationId}`: this browser's session ended whatever application the
/// path names (as FusionAuth's hosted backend: the cookies are the browser's, not the
/// application's) — its refresh token revoked (its access tokens refused at once at the edge),
/// every cookie the gateway set cleared, and a 302 to the provider's `end_session_endpoint`
/// (with `id_token_hint`, the `client_id` of the application the session logged into — the
/// path's when there is no live session — and the target made absolute as
/// `post_logout_redirect_uri`) when it has one, else to the target
/// (`post_logout_redirect_uri`, else `redirect_uri`, else `/`). 400 for a target not allowed,
/// 403 for a cross-site request.
pub async fn logout(request: &PluginRequest, app: &App<'_>) -> Result<PluginResponse, ApiError> {
    let application = super::application_id(request)?;
    if cross_site(request, app.settings) {
        return Ok(cross_site_refusal());
    }
    let wanted = (request.query_text("post_logout_redirect_uri"))
        .or_else(|| request.query_text("redirect_uri"))
        .unwrap_or_else(|| "/".into());
    let Some(target) = redirect::allowed(&wanted, app.settings) else {
        return Err(ApiError::field(
            "post_logout_redirect_uri",
            "invalid",
            "The redirect must be a path on this site or an allowed origin.",
        ));
    };
    let context: &PluginContext = app.env.context;
    let mut session_application = None;
    if let Some(value) = request
        .credentials()?
        .refresh_token
        .and_then(|v| std::str::from_utf8(v).ok())
    {
        session_application = revoke(context, value).await?;
    }
    // The provider's logout is for the client this browser's session logged in with.
    let application = session_application.unwrap_or(application);
    let location = match super::cookie(request, super::ID_TOKEN_COOKIE)
        .ok()
        .flatten()
    {
        Some(kept) => end_session(app, kept, application, &target)
            .await
            .unwrap_or(target),
        None => target,
    };
    let secure = secure_cookies(request, context);
    let base = &app.settings.base_path;
    let mut out = super::found(&location);
    for cookie in [
        super::cleared_at("access_token", "/", secure),
        super::cleared_at("refresh_token", "/", secure),
        super::cleared_at(super::AT_EXP_COOKIE, "/", secure),
        super::cleared_at(super::ID_TOKEN_COOKIE, &format!("{base}/logout"), secure),
        super::cleared_at(
            super::state::STATE_COOKIE,
            &format!("{base}/callback"),
            secure,
        ),
    ] {
        out = out.with_cookie(&cookie);
    }
    Ok(out)
}

/// Revokes the refresh token `value` and every access token minted from it, whatever the
/// application it was issued for. Returns that application (`None` when no live token has the
/// value).
async fn revoke(context: &PluginContext, value: &str) -> Result<Option<uuid::Uuid>, ApiError> {
    let scope = RevokeScope::Token(value.to_string());
    let revoked = context.store.revoke_refresh_tokens(&scope).await?;
    // Dated as the store dated it, as every other node reads it.
    for one in &revoked.edge {
        context.tokens.record_revocation(*one, revoked.at);
    }
    Ok(revoked.tokens.iter().find_map(|t| t.application_id))
}

/// The provider's logout URL for the kept `{providerId}:{id token}`, when the provider still
/// exists, is enabled for the application and has an `end_session_endpoint`.
async fn end_session(
    app: &App<'_>,
    kept: &str,
    application: uuid::Uuid,
    target: &str,
) -> Option<String> {
    let (id, id_token) = kept.split_once(':')?;
    let id = uuid::Uuid::parse_str(id).ok()?;
    let doc = app
        .env
        .context
        .records
        .get_identity_provider(id)
        .await
        .ok()??;
    let provider = Provider::from_document(&doc).filter(|p| p.enabled_for(application))?;
    let settings = provider.openid_connect.as_ref()?;
    let ex = oidc::Exchange {
        http: app.env.context.http.as_ref(),
        keys: app.env.context.remote_keys.as_ref(),
        discovery: app.env.discovery,
        timeout: app.env.settings.provider_timeout,
        leeway: app.env.settings.provider_leeway_seconds,
        now: app.env.context.clock.now_seconds(),
    };
    let endpoint = oidc::browser_endpoints(&ex, settings)
        .await
        .ok()?
        .end_session?;
    let mut url = url::Url::parse(&endpoint).ok()?;
    url.query_pairs_mut()
        .append_pair("id_token_hint", id_token)
        .append_pair("client_id", settings.client_for(application).0)
        .append_pair(
            "post_logout_redirect_uri",
            &redirect::absolute(target, app.settings),
        );
    Some(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn with(headers: &[(&'static str, &str)]) -> PluginRequest {
        let mut request = PluginRequest::new(Method::POST, "/app/refresh");
        for (name, value) in headers {
            request
                .headers
                .insert(*name, value.parse().expect("header"));
        }
        request
    }

    #[test]
    fn cross_site_requests_are_told_apart() {
        let s = AppSettings {
            public_origin: "https://app.example".into(),
            base_path: "/app".into(),
            redirects: vec!["https://other.example".into()],
        };
        assert!(!cross_site(&with(&[]), &s), "no browser headers");
        assert!(!cross_site(&with(&[("sec-fetch-site", "same-origin")]), &s));
        assert!(!cross_site(&with(&[("origin", "https://app.example")]), &s));
        assert!(!cross_site(
            &with(&[("origin", "https://other.example")]),
            &s
        ));
        assert!(cross_site(&with(&[("origin", "https://evil.example")]), &s));
        assert!(cross_site(&with(&[("origin", "null")]), &s));
        assert!(cross_site(&with(&[("sec-fetch-site", "cross-site")]), &s));
        let linked = [
            ("sec-fetch-site", "cross-site"),
            ("referer", "https://other.example/page"),
        ];
        assert!(!cross_site(&with(&linked), &s));
        let evil = [
            ("sec-fetch-site", "cross-site"),
            ("referer", "https://evil.example/"),
        ];
        assert!(cross_site(&with(&evil), &s));
        // A sibling subdomain: same site, another origin.
        assert!(cross_site(&with(&[("sec-fetch-site", "same-site")]), &s));
        let sibling = [
            ("sec-fetch-site", "same-site"),
            ("referer", "https://blog.app.example/"),
        ];
        assert!(cross_site(&with(&sibling), &s));
        // An allowed origin's script that sends no Referer is vouched for by its Origin.
        let script = [
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://other.example"),
        ];
        assert!(!cross_site(&with(&script), &s));
        assert!(!cross_site(&with(&[("sec-fetch-site", "none")]), &s));
    }
}
