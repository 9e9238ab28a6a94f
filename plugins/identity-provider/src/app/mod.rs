//! FusionAuth's hosted-backend routes, under `login.basePath` (default `/app`): a browser is
//! sent to an OpenID Connect provider and comes back logged in, with the gateway's
//! `access_token` and `refresh_token` cookies.
//!
//! | route | module |
//! | --- | --- |
//! | `GET {base}/login/{applicationId}` (or `?client_id=`), `GET {base}/callback` | [`flow`] |
//! | `POST {base}/refresh/{applicationId}` (or `?client_id=`), `GET {base}/me`, `GET {base}/logout/{applicationId}` (or `?client_id=`) | [`session`] |
//!
//! **Why in this plugin, not in the proxy.** The plugin contract already lets a plugin answer
//! with any status, `Location` and `Set-Cookie` ([`PluginResponse`]), and everything a login
//! needs is here: the provider documents, discovery, the code exchange and ID-token checks,
//! reconcile and the link store. Served by the host, the proxy would have had to reach into the
//! plugin's records and steps, an import the layering forbids (host → plugin API only). The host
//! gives the plugin its `login:` section ([`AppSettings`]) and sends browsers here
//! (`auth.login: true` routes); nothing else of the host is involved.
//!
//! The security rules live in small modules: [`state`] (the login state bound to the browser
//! by an HMAC-signed, short-lived, HttpOnly cookie, used once), [`redirect`] (which redirect
//! targets are allowed), [`page`] (the provider choice page).

pub mod flow;
pub mod page;
pub mod redirect;
pub mod session;
pub mod state;

use gatehouse_plugin_api::{ApiError, Cookie, Errors, PluginRequest, PluginResponse, RouteSpec};
use http::Method;
use uuid::Uuid;

use crate::provider::Provider;

pub use crate::common::AppSettings;

/// The hosted-backend endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppRoute {
    /// `GET {base}/login/{applicationId}`
    Login,
    /// `GET {base}/login?client_id=`
    LoginByClientId,
    /// `GET {base}/callback`
    Callback,
    /// `POST {base}/refresh/{applicationId}`
    Refresh,
    /// `POST {base}/refresh?client_id=`
    RefreshByClientId,
    /// `GET {base}/me`
    Me,
    /// `GET {base}/logout/{applicationId}`
    Logout,
    /// `GET {base}/logout?client_id=`
    LogoutByClientId,
}

impl AppRoute {
    /// Every route.
    pub const ALL: &'static [AppRoute] = &[
        AppRoute::Login,
        AppRoute::LoginByClientId,
        AppRoute::Callback,
        AppRoute::Refresh,
        AppRoute::RefreshByClientId,
        AppRoute::Me,
        AppRoute::Logout,
        AppRoute::LogoutByClientId,
    ];

    /// The route's name, as given to [`RouteSpec::name`].
    pub fn name(self) -> &'static str {
        match self {
            AppRoute::Login => "app_login",
            AppRoute::LoginByClientId => "app_login_client_id",
            AppRoute::Callback => "app_callback",
            AppRoute::Refresh => "app_refresh",
            AppRoute::RefreshByClientId => "app_refresh_client_id",
            AppRoute::Me => "app_me",
            AppRoute::Logout => "app_logout",
            AppRoute::LogoutByClientId => "app_logout_client_id",
        }
    }

    /// The route whose name is `name`, if any.
    pub fn from_name(name: &str) -> Option<AppRoute> {
        AppRoute::ALL.iter().copied().find(|r| r.name() == name)
    }

    /// The method and the path under the base path.
    fn method_and_suffix(self) -> (Method, &'static str) {
        match self {
            AppRoute::Login => (Method::GET, "/login/{applicationId}"),
            AppRoute::LoginByClientId => (Method::GET, "/login"),
            AppRoute::Callback => (Method::GET, "/callback"),
            AppRoute::Refresh => (Method::POST, "/refresh/{applicationId}"),
            AppRoute::RefreshByClientId => (Method::POST, "/refresh"),
            AppRoute::Me => (Method::GET, "/me"),
            AppRoute::Logout => (Method::GET, "/logout/{applicationId}"),
            AppRoute::LogoutByClientId => (Method::GET, "/logout"),
        }
    }

    /// The routes under `base_path`. Their templates are made once, when the plugin is built
    /// (route templates are `'static`: the few bytes live as long as the process).
    pub fn specs(base_path: &str) -> Vec<RouteSpec> {
        AppRoute::ALL
            .iter()
            .map(|route| {
                let (method, suffix) = route.method_and_suffix();
                let path: &'static str = Box::leak(format!("{base_path}{suffix}").into_boxed_str());
                let spec = RouteSpec::new(method, path, route.name());
                // `me` only reads the session; login, callback and logout act.
                match route {
                    AppRoute::Me => spec.reading(),
                    _ => spec,
                }
            })
            .collect()
    }
}

/// The application a route names: the `{applicationId}` segment, else `?client_id=` (FusionAuth's
/// SDKs send the client id, which is the application id). A 400 naming the field when neither
/// is a UUID.
pub fn application_id(request: &PluginRequest) -> Result<Uuid, ApiError> {
    let given = request
        .path_param("applicationId")
        .map(str::to_string)
        .or_else(|| request.query_param("client_id"));
    given
        .as_deref()
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| {
            ApiError::field(
                "client_id",
                "invalid",
                "Give the application's id in the path or as client_id.",
            )
        })
}

/// The query parameters the hosted-backend routes act on.
pub const READ_PARAMETERS: &[&str] = &[
    "client_id",
    "redirect_uri",
    "post_logout_redirect_uri",
    "state",
    "idp_hint",
    "code",
    "iss",
    "error",
];

/// `Ok` when no parameter the routes act on ([`READ_PARAMETERS`]) is given more than once; a
/// 400 `[AmbiguousRequest]` naming it otherwise (`?state=a&state=b`: which one was meant
/// cannot be told, and a proxy or the provider may have read the other one).
pub fn unambiguous(request: &PluginRequest) -> Result<(), ApiError> {
    let names: Vec<String> = gatehouse_plugin_api::request::parse_form(&request.query)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    for name in READ_PARAMETERS {
        if names.iter().filter(|n| n.as_str() == *name).count() > 1 {
            return Err(ApiError::general(
                "[AmbiguousRequest]",
                format!("The parameter {name} is given more than once."),
            ));
        }
    }
    Ok(())
}

/// The enabled OpenID Connect providers enabled for `application_id`, in name order.
pub async fn providers_for(
    records: &dyn crate::store::IdentityProviderStore,
    application_id: Uuid,
) -> Result<Vec<Provider>, ApiError> {
    let mut found: Vec<Provider> = records
        .list_identity_providers()
        .await?
        .iter()
        .filter_map(Provider::from_document)
        .filter(|p| p.enabled && p.openid_connect.is_some() && p.enabled_for(application_id))
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    Ok(found)
}

/// A 400 (or `status`) with one general error.
pub fn general(status: u16, code: &str, message: &str) -> PluginResponse {
    let mut errors = Errors::new();
    errors.general(code, message);
    PluginResponse::json(status, &errors)
}

/// A 302 to `location`, with `Cache-Control: no-store` (a redirect that carries a login's
/// state must not be replayed from a cache).
pub fn found(location: &str) -> PluginResponse {
    PluginResponse::empty(302)
        .with_header("Location", location)
        .with_header("Cache-Control", "no-store")
}

/// A cookie that deletes `name` at `path` (a cookie is only cleared at the path it was set
/// with), `Secure` like the one it replaces.
pub fn cleared_at(name: &str, path: &str, secure: bool) -> Cookie {
    let mut cookie = Cookie::cleared(name);
    cookie.path = path.to_string();
    cookie.secure = secure;
    cookie
}

/// The `app.at_exp` cookie FusionAuth's SDKs read: the access token's expiry (`access_expiry_ms`)
/// in seconds, not HttpOnly (scripts read it to know when to refresh), with `Max-Age`
/// `max_age_seconds` (`None`: a session cookie, like the `access_token` cookie of a login).
/// The same cookie the edge sets on a transparent refresh ([`Cookie::access_expiry`]).
pub fn at_exp_cookie(access_expiry_ms: i64, max_age_seconds: Option<i64>, secure: bool) -> Cookie {
    let mut cookie = Cookie::access_expiry(access_expiry_ms, secure);
    cookie.max_age = max_age_seconds;
    cookie
}

/// The cookie scripts read the access token's expiry from.
pub const AT_EXP_COOKIE: &str = gatehouse_plugin_api::AT_EXP_COOKIE;

/// The HttpOnly cookie holding the provider and its ID token for the provider's logout
/// (`{providerId}:{id token}`), sent only to the logout routes.
pub const ID_TOKEN_COOKIE: &str = "app.idt";

/// The most bytes of ID token kept in [`ID_TOKEN_COOKIE`] (browsers keep cookies to about
/// 4 KiB); a longer one is not kept, and the provider's logout then goes without a hint.
pub const MAX_ID_TOKEN_BYTES: usize = 3500;

/// The value of the cookie `name` in the request: `Ok(None)` when absent or empty, a 400 when
/// it is given twice with different values (which one the browser meant cannot be told).
pub fn cookie<'a>(request: &'a PluginRequest, name: &str) -> Result<Option<&'a str>, ApiError> {
    let mut seen: Option<&[u8]> = None;
    for pair in gatehouse_plugin_api::credentials::cookies(&request.headers) {
        if pair.name != name.as_bytes() || pair.value.is_empty() {
            continue;
        }
        match seen {
            Some(value) if value != pair.value => {
                return Err(ApiError::general(
                    "[AmbiguousRequest]",
                    "A cookie is given twice with different values.",
                ))
            }
            _ => seen = Some(pair.value),
        }
    }
    Ok(seen.and_then(|v| std::str::from_utf8(v).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_live_under_the_base_path_and_round_trip() {
        let specs = AppRoute::specs("/auth/app");
        assert_eq!(specs.len(), AppRoute::ALL.len());
        assert!(specs.iter().all(|s| s.path.starts_with("/auth/app/")));
        for route in AppRoute::ALL {
            assert_eq!(AppRoute::from_name(route.name()), Some(*route));
        }
        assert_eq!(AppRoute::from_name("idp_login"), None);
    }

    #[test]
    fn the_application_comes_from_the_path_or_client_id() {
        let id = Uuid::new_v4();
        let mut request = PluginRequest::new(Method::GET, "/app/login");
        request
            .path_params
            .insert("applicationId".into(), id.to_string());
        assert_eq!(application_id(&request).ok(), Some(id));
        let by_client = PluginRequest::new(Method::GET, &format!("/app/login?client_id={id}"));
        assert_eq!(application_id(&by_client).ok(), Some(id));
        let bad = PluginRequest::new(Method::GET, "/app/login?client_id=nope");
        assert_eq!(application_id(&bad).map_err(|e| e.status()), Err(400));
    }

    #[test]
    fn a_parameter_the_routes_read_is_given_once_at_most() {
        for query in [
            "state=a&state=b",
            "state=&state=b",
            "code=a&state=s&code=a",
            "redirect_uri=%2F&redirect_uri=%2F%2Fevil",
            "client_id=a&client_id=b",
            "iss=a&iss=a",
        ] {
            let request = PluginRequest::new(Method::GET, &format!("/app/callback?{query}"));
            assert_eq!(
                unambiguous(&request).map_err(|e| e.status()),
                Err(400),
                "{query}"
            );
        }
        for query in ["", "state=a&code=b&iss=c", "x=1&x=2&state=a"] {
            let request = PluginRequest::new(Method::GET, &format!("/app/callback?{query}"));
            assert!(unambiguous(&request).is_ok(), "{query}");
        }
    }

    #[test]
    fn a_cookie_given_twice_differently_is_refused() {
        let mut request = PluginRequest::new(Method::GET, "/app/me");
        request.headers.insert(
            "cookie",
            "a=1; gatehouse_login=x; b=2".parse().expect("header"),
        );
        assert_eq!(cookie(&request, "gatehouse_login").ok(), Some(Some("x")));
        request
            .headers
            .append("cookie", "gatehouse_login=y".parse().expect("header"));
        assert!(cookie(&request, "gatehouse_login").is_err());
    }
}
