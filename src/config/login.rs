//! The `login:` section (browser login at the edge) and the checks it needs across sections:
//!
//! ```yaml
//! login:
//!   publicOrigin: https://app.example.com   # where browsers reach the gateway; required when login is used
//!   basePath: /app                          # default
//!   redirects: [https://other.example.com]  # extra origins a redirect may name
//! ```
//!
//! A route's `auth.login: true` needs `login.publicOrigin`, an `applicationId` and the
//! `identity-provider` plugin; each problem is reported with its path. It also needs an enabled
//! `OpenIDConnect` provider enabled for that application, which may be declared in
//! `identityProviders:` or created through the API: the file alone cannot tell, so a route
//! without one in the file is a warning of `gatehouse check` (which never reads the store), and
//! the gateway warns at start and on reload for a route whose application has none in the
//! store ([`routes_without_provider`] serves both). The validated section is handed to the
//! identity-provider plugin, which serves the `{basePath}/*` routes, and each such route gets
//! its login path.

use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::raw::RawRoute;
use super::sections::Problems;
use super::Route;
use crate::api::plugins::PluginSettings;
pub use gatehouse_plugin_identity_provider::app::AppSettings as LoginSettings;

/// `login:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawLogin {
    /// `scheme://host[:port]` browsers use.
    #[serde(default)]
    pub public_origin: Option<String>,
    /// The routes' prefix (default `/app`).
    #[serde(default)]
    pub base_path: Option<String>,
    /// Extra origins redirects may name.
    #[serde(default)]
    pub redirects: Vec<String>,
}

/// The default `login.basePath`.
pub const DEFAULT_BASE_PATH: &str = "/app";

/// An origin as browsers write it (`https://host[:port]`, default port left out), or why not.
fn origin(text: &str) -> Result<String, &'static str> {
    let lower = text.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err("must be an origin such as https://app.example.com");
    }
    let url =
        url::Url::parse(text).map_err(|_| "must be an origin such as https://app.example.com")?;
    let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
    let plain = url.username().is_empty() && url.password().is_none();
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || !bare || !plain {
        return Err("must be an http(s) origin without a path, such as https://app.example.com");
    }
    Ok(url.origin().ascii_serialization())
}

/// `basePath` when it is `/` followed by plain segments (letters, digits, `-`, `_`, `.`, `~`,
/// no dot-segment), not under `/api` or `/.well-known`, without a trailing `/`.
fn base_path(text: &str) -> Result<String, &'static str> {
    let segments: Vec<&str> = text.strip_prefix('/').unwrap_or("").split('/').collect();
    let plain = |s: &&str| {
        !s.is_empty()
            && *s != "."
            && *s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c))
    };
    if !text.starts_with('/') || !segments.iter().all(plain) {
        return Err("must be a path such as /app (plain segments, no trailing /)");
    }
    if matches!(segments[0], "api" | ".well-known" | "health") {
        return Err("must not be under /api, /.well-known or /health");
    }
    Ok(text.to_string())
}

/// Validates `login:` (when present or needed by a route) and the `login: true` routes; gives
/// the plugin its settings and each such route its login path. Returns the settings in
/// force, if any.
pub(super) fn login(
    p: &mut Problems,
    raw: Option<&RawLogin>,
    raw_routes: &[RawRoute],
    routes: &mut [Route],
    plugins: &mut [PluginSettings],
) -> Option<LoginSettings> {
    let logins: Vec<(usize, bool)> = (raw_routes.iter().enumerate())
        .map(|(i, r)| (i, r.auth.as_ref().is_some_and(|a| a.login)))
        .collect();
    let used = logins.iter().any(|(_, login)| *login);
    if raw.is_none() && !used {
        return None;
    }
    let raw_login = raw.map_or_else(RawLogin::default, |r| RawLogin {
        public_origin: r.public_origin.clone(),
        base_path: r.base_path.clone(),
        redirects: r.redirects.clone(),
    });
    let public_origin = match &raw_login.public_origin {
        Some(text) => origin(text)
            .map_err(|m| p.add("login.publicOrigin", m))
            .ok(),
        None => {
            p.add(
                "login.publicOrigin",
                "is required when a route has login: true or login: is given",
            );
            None
        }
    };
    let base = raw_login.base_path.as_deref().unwrap_or(DEFAULT_BASE_PATH);
    let base = base_path(base).map_err(|m| p.add("login.basePath", m)).ok();
    let mut redirects = Vec::new();
    for (i, text) in raw_login.redirects.iter().enumerate() {
        match origin(text) {
            Ok(o) => redirects.push(o),
            Err(m) => p.add(format!("login.redirects[{i}]"), m),
        }
    }
    let plugin = plugins.iter_mut().find_map(|s| match s {
        PluginSettings::IdentityProvider(settings) => Some(settings),
        _ => None,
    });
    if plugin.is_none() {
        p.add(
            "login",
            "needs the identity-provider plugin (plugins: {identity-provider: {}})",
        );
    }
    let settings = LoginSettings {
        public_origin: public_origin?,
        base_path: base?,
        redirects,
    };
    check_routes(p, &logins, routes, &settings.base_path);
    if let Some(plugin) = plugin {
        plugin.app = Some(settings.clone());
    }
    Some(settings)
}

/// Each `login: true` route: an application; its login path set.
fn check_routes(p: &mut Problems, logins: &[(usize, bool)], routes: &mut [Route], base: &str) {
    for (index, _) in logins.iter().filter(|(_, login)| *login) {
        let path = format!("routes[{index}].auth.login");
        let Some(route) = routes.iter_mut().find(|r| r.index == *index) else {
            continue;
        };
        let Some(app) = route.auth.application_id else {
            p.add(
                path,
                "needs auth.applicationId: the application browsers log in to",
            );
            continue;
        };
        route.auth.login_path = Some(format!("{base}/login/{app}"));
    }
}

/// The `login: true` routes (those with a login path) whose application has no enabled
/// `OpenIDConnect` provider enabled for it among `providers` (the file's declarations, or the
/// store's documents): each route's `routes[i].auth.login` path and application. A browser
/// sent to log in on such a route gets a 400 `[InvalidIdentityProvider]`.
pub fn routes_without_provider(routes: &[Route], providers: &[Value]) -> Vec<(String, Uuid)> {
    (routes.iter())
        .filter(|route| route.auth.login_path.is_some())
        .filter_map(|route| {
            let app = route.auth.application_id?;
            let served = (providers.iter()).any(|doc| oidc_enabled_for(doc, &app.to_string()));
            (!served).then(|| (format!("routes[{}].auth.login", route.index), app))
        })
        .collect()
}

/// True for an enabled `OpenIDConnect` provider document enabled for `application`.
fn oidc_enabled_for(doc: &Value, application: &str) -> bool {
    doc["type"] == "OpenIDConnect"
        && doc["enabled"].as_bool().unwrap_or(true)
        && doc["applicationConfiguration"][application]["enabled"].as_bool() == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_base_paths_are_checked() {
        assert_eq!(
            origin("https://App.Example.com").as_deref(),
            Ok("https://app.example.com")
        );
        assert_eq!(
            origin("https://a.example:443/").as_deref(),
            Ok("https://a.example")
        );
        assert_eq!(
            origin("http://127.0.0.1:8080").as_deref(),
            Ok("http://127.0.0.1:8080")
        );
        for bad in [
            "app.example",
            "https://a.example/x",
            "ftp://a.example",
            "https://u@a.example",
            "https://a.example?x",
            "https:evil",
        ] {
            assert!(origin(bad).is_err(), "{bad}");
        }
        assert_eq!(base_path("/app").as_deref(), Ok("/app"));
        assert_eq!(base_path("/auth/app").as_deref(), Ok("/auth/app"));
        for bad in [
            "app",
            "/",
            "/app/",
            "//app",
            "/a/../b",
            "/api",
            "/api/app",
            "/.well-known",
            "/a b",
            "/a%2f",
        ] {
            assert!(base_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_provider_counts_when_enabled_for_the_application() {
        let app = "3c219e58-ed0e-4b18-ad48-f4f92793ae32";
        let doc = serde_json::json!({"type": "OpenIDConnect", "enabled": true,
            "applicationConfiguration": {app: {"enabled": true}}});
        assert!(oidc_enabled_for(&doc, app));
        let mut off = doc.clone();
        off["enabled"] = false.into();
        assert!(!oidc_enabled_for(&off, app));
        let mut jwt = doc.clone();
        jwt["type"] = "ExternalJWT".into();
        assert!(!oidc_enabled_for(&jwt, app));
        assert!(!oidc_enabled_for(&doc, "another"));
    }
}
