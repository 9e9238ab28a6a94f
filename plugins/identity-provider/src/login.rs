//! Login with an identity provider: `POST /api/identity-provider/login` and
//! `POST /api/jwt/reconcile` (no authentication; a tenant-locked API key or
//! `X-FusionAuth-TenantId` scopes the request). Both take FusionAuth's
//! `IdentityProviderLoginRequest`: for an ExternalJWT provider the JWT is `encodedJWT` or
//! `data.token`; for an OpenIDConnect provider `data.code` and `data.redirect_uri` (with
//! `data.code_verifier` and `data.nonce` when the authorization request had them). The flow:
//! 1. the provider (enabled, enabled for the application) and the application (active, in the
//!    request's tenant scope) — else 401;
//! 2. the claims: the JWT verified with the provider's keys ([`crate::keys`]) — else 401; or
//!    the authorization code exchanged once ([`crate::oidc`]: ID token, userinfo) — else 401,
//!    or 502/503/504 when the provider fails, is down or does not answer in time;
//! 3. the identity ([`crate::reconcile::identity`]): unique id, email (its domain must be one of
//!    `domains` when any are set), username — else 401;
//! 4. the user: the linked one, else (`noLink` → 404) the linking strategy's decision
//!    ([`crate::reconcile::decide`]); `CreatePendingLink` answers 200 with `pendingIdPLinkId`
//!    and nothing else; strategies that cannot link answer 404; an unverified email, a link
//!    limit, or a missing claim answer 401;
//! 5. `claimMap`, then the reconcile lambda (not for `LinkAnonymously`): ExternalJWT's
//!    `reconcile(user, registration, jwt)`, OpenID Connect's `reconcile(user, registration,
//!    jwt, id_token, tokens)` with the userinfo answer as `jwt`; a failing lambda is a 401
//!    `[LambdaInvocationFailed]` and nothing is saved;
//! 6. the user (created or updated, `lastLoginInstant`), the registration (created with the
//!    application's default roles when `createRegistration`), the link (`lastLoginInstant`, and
//!    the provider's refresh token in `token`: from `refresh_token`/`data.refresh_token` for
//!    ExternalJWT, from the token endpoint's answer for OpenID Connect);
//! 7. unless `noJWT`: a refresh token (when registered and the application generates them) and
//!    an access token (`authenticationType` `FEDERATED_JWT`, `sid` = the refresh token id), in
//!    the body and in the `access_token` (session) and `refresh_token` cookies.
//!
//! 200 when the user is registered to the application, 202 when not. Refusals carry an Errors
//! body with a general error naming the reason (never token content). With `debug: true` on the
//! provider every attempt writes a `Debug` event-log entry.

use gatehouse_plugin_api::helpers::{secure_cookies, session_cookie, signing_error, tenant_header};
use gatehouse_plugin_api::model::{
    Application, DeviceInfo, IdentityProviderLink, RefreshTokenMetaData, Registration, Tenant, User,
};
use gatehouse_plugin_api::{
    AccessTokenRequest, ApiError, Cookie, Errors, PluginRequest, PluginResponse,
};
use gatehouse_refresh::issue_refresh_token;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::clash::{self, Clash};
use crate::common::{json_body, Env};
use crate::events::DebugLog;
use crate::keys::{verify, KeyChoice, RingKey};
use crate::lambdas::lambda_type;
use crate::oidc::{self, CodeGrant, Completed};
use crate::pending::{PendingLink, PendingLinks};
use crate::provider::{LinkingStrategy, Provider, ProviderType};
use crate::reconcile::{
    apply_claim_map, decide, identity, is_birth_date, is_time_zone, Decision, Identity, Refusal,
};
use crate::sandbox::Sandbox;
use crate::store::LinkWrite;
use crate::users::full_user;

/// The `authenticationType` of access tokens issued here.
pub const FEDERATED_JWT: &str = "FEDERATED_JWT";

/// Which endpoint was called (it names the missing-token field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /api/identity-provider/login`.
    Login,
    /// `POST /api/jwt/reconcile`.
    Reconcile,
}

/// The parsed request body.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginRequest {
    /// `applicationId`.
    pub application_id: Uuid,
    /// `identityProviderId`.
    pub identity_provider_id: Uuid,
    /// What proves the user's identity.
    pub credential: Credential,
    /// `ipAddress`.
    pub ip_address: Option<String>,
    /// `metaData.device`.
    pub device: DeviceInfo,
    /// `noJWT`.
    pub no_jwt: bool,
    /// `noLink`.
    pub no_link: bool,
    /// The provider's refresh token (`refresh_token` or `data.refresh_token`).
    pub provider_refresh_token: Option<String>,
    /// Where the request gave the provider's refresh token (`refresh_token` or
    /// `data.refresh_token`), for error messages.
    pub provider_refresh_token_field: &'static str,
}

/// What a login request presents to the provider.
#[derive(Debug, Clone, PartialEq)]
pub enum Credential {
    /// ExternalJWT: `encodedJWT` or `data.token`.
    Jwt(String),
    /// OpenIDConnect: `data.code`, `data.redirect_uri`, `data.code_verifier`, `data.nonce`.
    Code(CodeGrant),
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Adds a field error for each text field of the request (the JWT, the provider's refresh
/// token, at the top or in `data`) given as another type than a string — refused, never read
/// as absent — and for a provider's refresh token no link should keep. True when the JWT
/// itself was of another type (then it is not also reported as blank).
fn check_text_fields(body: &Value, errors: &mut Errors) -> bool {
    let data_field = |name: &str| body.get("data").and_then(|d| d.get(name));
    for name in ["data", "metaData"] {
        if body
            .get(name)
            .is_some_and(|v| !v.is_object() && !v.is_null())
        {
            errors.field(name, "invalid", "Expected an object.");
        }
    }
    let mut jwt_mistyped = false;
    for (name, value) in [
        ("encodedJWT", body.get("encodedJWT")),
        ("data.token", data_field("token")),
        ("refresh_token", body.get("refresh_token")),
        ("data.refresh_token", data_field("refresh_token")),
    ] {
        if value.is_some_and(|v| !v.is_string() && !v.is_null()) {
            errors.field(name, "invalid", "Expected a string.");
            jwt_mistyped |= name == "encodedJWT" || name == "data.token";
        }
    }
    check_provider_refresh_token(body.get("refresh_token"), "refresh_token", errors);
    check_provider_refresh_token(data_field("refresh_token"), "data.refresh_token", errors);
    jwt_mistyped
}

/// Adds a field error when the provider's refresh token given as `name` is one no link should
/// keep: a control character in it (a CR or LF would reach whoever reads it back), or over
/// [`crate::pending::MAX_PENDING_TOKEN_BYTES`] (the bound a pending link keeps, now one bound
/// for every link).
fn check_provider_refresh_token(value: Option<&Value>, name: &str, errors: &mut Errors) {
    let Some(token) = value.and_then(Value::as_str) else {
        return;
    };
    if token.chars().any(char::is_control) {
        errors.field(
            name,
            "invalid",
            "The refresh token holds a control character.",
        );
    } else if token.len() > crate::pending::MAX_PENDING_TOKEN_BYTES {
        errors.field(
            name,
            "tooLarge",
            format!(
                "The identity provider's refresh token is over {} bytes.",
                crate::pending::MAX_PENDING_TOKEN_BYTES
            ),
        );
    }
}

/// What `data` must carry for an OpenID Connect login: the code and the redirect URI (each a
/// field error when missing), with the optional verifier and nonce.
fn code_grant(data: Option<&Value>, errors: &mut Errors) -> Option<CodeGrant> {
    let member = |name: &str| text(data.and_then(|d| d.get(name)));
    let (code, redirect_uri) = (member("code"), member("redirect_uri"));
    if code.is_none() {
        errors.field(
            "data.code",
            "blank",
            "You must specify the authorization code returned by the identity provider.",
        );
    }
    if redirect_uri.is_none() {
        errors.field(
            "data.redirect_uri",
            "blank",
            "You must specify the redirect_uri of the authorization request.",
        );
    }
    Some(CodeGrant {
        code: code?,
        redirect_uri: redirect_uri?,
        code_verifier: member("code_verifier"),
        nonce: member("nonce"),
    })
}

/// Parses and checks the body; every problem is a field error of one 400. `with_code`: the
/// provider is an OpenID Connect one, so `data.code` and `data.redirect_uri` are required
/// instead of a JWT.
pub fn parse_request(
    body: &Value,
    endpoint: Endpoint,
    with_code: bool,
) -> Result<LoginRequest, ApiError> {
    let mut errors = Errors::new();
    let mut uuid = |name: &str| -> Option<Uuid> {
        match text(body.get(name)) {
            None => {
                errors.field(name, "blank", format!("You must specify the {name}."));
                None
            }
            Some(s) => match Uuid::parse_str(&s) {
                Ok(id) => Some(id),
                Err(_) => {
                    errors.field(name, "invalid", format!("The {name} must be a UUID."));
                    None
                }
            },
        }
    };
    let application_id = uuid("applicationId");
    let identity_provider_id = uuid("identityProviderId");
    let data = body.get("data");
    let jwt_mistyped = check_text_fields(body, &mut errors);
    let token = text(data.and_then(|d| d.get("token"))).or_else(|| text(body.get("encodedJWT")));
    let credential = if with_code {
        code_grant(data, &mut errors).map(Credential::Code)
    } else {
        token.clone().map(Credential::Jwt)
    };
    if token.is_none() && !with_code && !jwt_mistyped {
        let field = match endpoint {
            Endpoint::Login => "encodedJWT",
            Endpoint::Reconcile => "data.token",
        };
        errors.field(
            field,
            "blank",
            "You must specify the JWT issued by the identity provider.",
        );
    }
    let flag = |errors: &mut Errors, name: &str| match body.get(name) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errors.field(name, "invalid", "Expected a boolean.");
            false
        }
    };
    let no_jwt = flag(&mut errors, "noJWT");
    let no_link = flag(&mut errors, "noLink");
    let mut device = DeviceInfo::default();
    if let Some(d) = body.get("metaData").and_then(|m| m.get("device")) {
        match serde_json::from_value::<DeviceInfo>(d.clone()) {
            Ok(parsed) => device = parsed,
            Err(_) => {
                errors.field(
                    "metaData.device",
                    "invalid",
                    "Expected description, lastAccessedAddress, name and type as strings.",
                );
            }
        }
    }
    if let Some(v) = body.get("ipAddress") {
        if !v.is_string() && !v.is_null() {
            errors.field("ipAddress", "invalid", "Expected a string.");
        }
    }
    errors.into_result()?;
    match (application_id, identity_provider_id, credential) {
        (Some(application_id), Some(identity_provider_id), Some(credential)) => Ok(LoginRequest {
            application_id,
            identity_provider_id,
            credential,
            ip_address: text(body.get("ipAddress")),
            device,
            no_jwt,
            no_link,
            provider_refresh_token: text(body.get("refresh_token"))
                .or_else(|| text(data.and_then(|d| d.get("refresh_token")))),
            provider_refresh_token_field: if text(body.get("refresh_token")).is_some() {
                "refresh_token"
            } else {
                "data.refresh_token"
            },
        }),
        _ => Err(ApiError::general("[invalid]", "The request is incomplete.")),
    }
}

/// The LoginResponse body.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    /// The access token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Its expiry (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_expiration_instant: Option<i64>,
    /// The refresh token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Its id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token_id: Option<Uuid>,
    /// The pending link id (`CreatePendingLink`).
    #[serde(rename = "pendingIdPLinkId", skip_serializing_if = "Option::is_none")]
    pub pending_idp_link_id: Option<String>,
    /// The user, with registrations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
}

/// Why a login did not complete.
enum Failure {
    /// A refusal with a status and a general error.
    Refused {
        status: u16,
        code: &'static str,
        message: String,
    },
    /// Any other API error (store, 400…).
    Api(ApiError),
    /// The user changed (or was created) by a concurrent request while this login ran: the
    /// login starts over.
    Concurrent,
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

impl From<gatehouse_plugin_api::StoreError> for Failure {
    fn from(e: gatehouse_plugin_api::StoreError) -> Self {
        Failure::Api(e.into())
    }
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Failure::Refused {
            status: r.status(),
            code: r.code(),
            message: r.message(),
        }
    }
}

fn refused(code: &'static str, message: impl Into<String>) -> Failure {
    Failure::Refused {
        status: 401,
        code,
        message: message.into(),
    }
}

/// What the plugin passes to a login besides the request.
pub struct LoginEnv<'a> {
    /// The context.
    pub context: &'a Env<'a>,
    /// Pending links.
    pub pending: &'a PendingLinks,
    /// The lambda workers.
    pub sandbox: &'a Sandbox,
    /// OpenID Connect discovery documents already fetched.
    pub discovery: &'a oidc::discovery::DiscoveryCache,
    /// The plugin's settings (the OpenID Connect time limit and leeway).
    pub settings: &'a crate::common::Settings,
}

/// The tenant a login is scoped to: a presented API key's (a wrong key is a 401), else the
/// `X-FusionAuth-TenantId` header.
fn tenant_scope(request: &PluginRequest, context: &Env<'_>) -> Result<Option<Uuid>, ApiError> {
    if request
        .header("authorization")
        .is_some_and(|h| !h.trim().is_empty())
        && request.bearer_token().is_none()
    {
        return Ok(context.api_keys.authenticate(request)?.tenant_id);
    }
    tenant_header(request)
}

/// How often a login starts over after a concurrent change of its user.
const MAX_ATTEMPTS: usize = 64;

/// Handles both login endpoints.
pub async fn login(
    request: &PluginRequest,
    env: &LoginEnv<'_>,
    endpoint: Endpoint,
) -> Result<PluginResponse, ApiError> {
    Ok(login_keeping_id_token(request, env, endpoint).await?.0)
}

/// A login as [`login`] answers it, with the provider's encoded ID token when an OpenID
/// Connect login's code exchange returned one (`None` otherwise, whatever the answer), for the
/// hosted-backend routes, which keep it for the provider's logout.
pub async fn login_keeping_id_token(
    request: &PluginRequest,
    env: &LoginEnv<'_>,
    endpoint: Endpoint,
) -> Result<(PluginResponse, Option<String>), ApiError> {
    let body = json_body(request)?;
    let kind = named_type(&body, env.context).await?;
    let with_code = kind.is_some_and(ProviderType::logs_in_with_code);
    let parsed = parse_request(&body, endpoint, with_code)?;
    let scope = tenant_scope(request, env.context)?;
    let mut debug = DebugLog::new(false);
    let heading = format!(
        "{} login with identity provider [{}] for application [{}]",
        if with_code {
            "OpenID Connect"
        } else {
            "External JWT"
        },
        parsed.identity_provider_id,
        parsed.application_id
    );
    // The authorization code is exchanged once, whatever attempts the login takes.
    let mut exchanged = None;
    let mut outcome = Err(Failure::Concurrent);
    for _ in 0..MAX_ATTEMPTS {
        outcome = run(request, env, &parsed, scope, &mut exchanged, &mut debug).await;
        if !matches!(outcome, Err(Failure::Concurrent)) {
            break;
        }
        debug.line("The user changed during the login; starting over");
        // A short random pause, so logins that keep colliding spread out.
        let pause = u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 8) + 1;
        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
    }
    let response = match outcome {
        Ok(response) => Ok(response),
        Err(Failure::Refused {
            status,
            code,
            message,
        }) => {
            debug.line(format!("Refused with {status} {code}: {message}"));
            if status == 404 || status == 410 {
                Ok(PluginResponse::empty(status))
            } else {
                let mut errors = Errors::new();
                errors.general(code, message);
                let answer = PluginResponse::json(status, &errors);
                // The provider's keys may be back soon (as the edge answers for them).
                Ok(match status {
                    503 => answer.with_header("Retry-After", "5"),
                    _ => answer,
                })
            }
        }
        Err(Failure::Api(e)) => {
            debug.line(format!("Failed with status {}", e.status()));
            Err(e)
        }
        Err(Failure::Concurrent) => {
            let mut errors = Errors::new();
            errors.general(
                "[Conflict]",
                "The user kept changing while this login ran; try again.",
            );
            Err(ApiError::Conflict(errors))
        }
    };
    debug.flush(env.context, &heading).await;
    let id_token = exchanged
        .as_ref()
        .and_then(|done| done.tokens.get("id_token"))
        .and_then(Value::as_str)
        .map(str::to_string);
    response.map(|answer| (answer, id_token))
}

/// One login attempt: the request, and what every step of [`run`] reads.
struct Attempt<'a> {
    /// The HTTP request (client address, TLS).
    request: &'a PluginRequest,
    /// The context, pending links and lambda workers.
    env: &'a LoginEnv<'a>,
    /// The parsed body.
    req: &'a LoginRequest,
    /// What the provider says about the user.
    proven: &'a Proven,
    /// When the attempt started (ms).
    now: i64,
}

/// What step 2 established about the user, whichever the provider's type.
struct Proven {
    /// The claims the user is read from (identity, `claimMap`).
    claims: Map<String, Value>,
    /// The reconcile lambda's `jwt`.
    jwt: Value,
    /// The lambda's arguments after `jwt` (OpenID Connect: `id_token`, `tokens`).
    rest: Vec<Value>,
    /// The provider's refresh token, for the link.
    provider_refresh_token: Option<String>,
    /// Where it came from, for error messages.
    provider_refresh_token_field: &'static str,
}

/// What step 1 loads.
struct Target {
    /// The ExternalJWT provider, enabled for the application.
    provider: Provider,
    /// The active application, in the request's tenant scope.
    application: Application,
    /// The application's tenant.
    tenant: Tenant,
}

/// The user step 4 finds or creates.
struct LoginUser {
    /// The user (the claim map and the lambda change it).
    user: User,
    /// True when this login creates the user.
    created: bool,
    /// The user as stored, to write back only if no one changed it meanwhile (`None` when
    /// created).
    read_user: Option<User>,
    /// The provider user's link in the application's tenant, when one exists.
    existing_link: Option<IdentityProviderLink>,
}

/// What step 4 decides.
enum UserStep {
    /// Log this user in.
    Found(Box<LoginUser>),
    /// `CreatePendingLink`: answer with this pending link id and nothing else.
    Pending(String),
}

/// The registration step 5 works on.
struct Registrations {
    /// The user's stored registration to the application, if any.
    stored: Option<Registration>,
    /// True when the login registers the user (none stored, and `createRegistration`).
    registering: bool,
    /// The stored registration or a new one, with the claim map and the lambda applied.
    working: Registration,
}

/// One attempt of a login, the pipeline of the module's documentation: load provider → verify
/// token → resolve identity → find or create user → claims and lambda → persist → tokens.
///
/// Returns the answer (200 or 202 with the user, or 200 with a pending link id), or why the
/// login did not complete ([`Failure::Concurrent`]: start over).
async fn run(
    request: &PluginRequest,
    env: &LoginEnv<'_>,
    req: &LoginRequest,
    scope: Option<Uuid>,
    exchanged: &mut Option<Completed>,
    debug: &mut DebugLog,
) -> Result<PluginResponse, Failure> {
    let context = env.context;
    // 1. provider and application
    let provider = load_provider(context, req, debug).await?;
    let target = load_application(context, req, scope, provider).await?;
    // 2. the claims
    let proven = prove(env, &target, req, exchanged, debug).await?;
    let at = Attempt {
        request,
        env,
        req,
        proven: &proven,
        now: context.clock.now_millis(),
    };
    let claims = &proven.claims;
    // 3. identity
    let who = resolve_identity(&target.provider, claims, debug)?;
    // 4. the user
    let mut login = match find_or_create_user(&at, &target, &who, debug).await? {
        UserStep::Found(login) => *login,
        UserStep::Pending(id) => return Ok(pending_response(id)),
    };
    // 5. claim map and lambda
    let registrations = reconcile_user(&at, &target, &mut login.user, debug).await?;
    // The lambda may have deactivated the user or ended its account: then no tokens, and
    // nothing of this login is written.
    may_log_in(&login.user, at.now)?;
    // 6. persist
    let (user, registration) = persist(&at, &target, &who, login, registrations, debug).await?;
    // 7. tokens
    respond(&at, &target, user, registration, debug).await
}

/// The type of the stored provider the body's `identityProviderId` names; `None` when it
/// names none (whatever is wrong with the request is reported by the caller).
async fn named_type(body: &Value, context: &Env<'_>) -> Result<Option<ProviderType>, ApiError> {
    let Some(id) = text(body.get("identityProviderId")).and_then(|s| Uuid::parse_str(&s).ok())
    else {
        return Ok(None);
    };
    let doc = context.records.get_identity_provider(id).await?;
    Ok(doc.as_ref().and_then(ProviderType::of))
}

/// Step 1, the provider: returns the provider the request names (401 when there is none, or
/// when it is not of the type the request was read for) and turns the debug log on when the
/// provider asks for it.
async fn load_provider(
    context: &Env<'_>,
    req: &LoginRequest,
    debug: &mut DebugLog,
) -> Result<Provider, Failure> {
    let doc = context
        .records
        .get_identity_provider(req.identity_provider_id)
        .await?;
    let provider = doc
        .as_ref()
        .and_then(Provider::from_document)
        .ok_or_else(|| {
            refused(
                "[InvalidIdentityProvider]",
                "No identity provider exists with this identityProviderId.",
            )
        })?;
    // The type was read before the body was (a provider replaced meanwhile by one of another
    // type is refused, never read with the other type's rules).
    if provider.kind.logs_in_with_code() != matches!(req.credential, Credential::Code(_)) {
        return Err(refused(
            "[InvalidIdentityProvider]",
            "The identity provider is not of the type the request was read for.",
        ));
    }
    debug.set_enabled(provider.debug);
    debug.line(format!(
        "Provider [{}] linking strategy [{}]",
        provider.name,
        provider.linking_strategy.name()
    ));
    Ok(provider)
}

/// Step 1, the application: returns the provider with the active application the request names
/// and its tenant; 401 when the application is unknown, inactive, outside the request's tenant
/// scope or the provider's tenant, or when the provider is disabled (for it).
async fn load_application(
    context: &Env<'_>,
    req: &LoginRequest,
    scope: Option<Uuid>,
    provider: Provider,
) -> Result<Target, Failure> {
    let application = context
        .store
        .get_application(req.application_id)
        .await?
        .filter(|a| a.active)
        .filter(|a| scope.is_none_or(|t| t == a.tenant_id))
        .ok_or_else(|| {
            refused(
                "[InvalidApplication]",
                "No active application exists with this applicationId.",
            )
        })?;
    if provider
        .tenant_id
        .is_some_and(|t| t != application.tenant_id)
    {
        return Err(refused(
            "[InvalidApplication]",
            "The application is not in the identity provider's tenant.",
        ));
    }
    if !provider.enabled {
        return Err(refused(
            "[IdentityProviderDisabled]",
            "The identity provider is disabled.",
        ));
    }
    if !provider.enabled_for(application.id) {
        return Err(refused(
            "[IdentityProviderDisabledForApplication]",
            "The identity provider is not enabled for this application.",
        ));
    }
    let tenant = context
        .store
        .get_tenant(application.tenant_id)
        .await?
        .ok_or_else(|| ApiError::internal("the application's tenant is missing"))?;
    Ok(Target {
        provider,
        application,
        tenant,
    })
}

/// Step 2: returns the claims of the request's JWT, verified with the provider's keys (or a key
/// of the gateway's ring); 401 when it does not verify or its claims could not be stored.
fn verify_token(
    context: &Env<'_>,
    provider: &Provider,
    token: &str,
    debug: &mut DebugLog,
) -> Result<Map<String, Value>, Failure> {
    let ring = |id: &str| ring_key(context, id);
    let choice = KeyChoice {
        header_key_parameter: &provider.header_key_parameter,
        keys: &provider.keys,
        default_key_id: provider.default_key_id.as_deref(),
        verification_key_ids: &provider.verification_key_ids,
    };
    let verified = verify(token, choice, &ring, context.clock.now_seconds()).map_err(|e| {
        debug.line(format!("JWT verification failed: {e}"));
        refused(
            "[InvalidJWT]",
            format!("The JWT could not be verified: {e}."),
        )
    })?;
    debug.line(format!(
        "JWT verified with {} ({}, {}); claims present: [{}]",
        verified.source,
        verified.key_kind,
        verified.algorithm,
        verified
            .claims
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    ));

    // What a login may copy into the store must be storable (no NUL, within the limits).
    if gatehouse_plugin_api::json::check(&Value::Object(verified.claims.clone())).is_err() {
        return Err(refused(
            "[InvalidJWT]",
            "The JWT carries claims that cannot be stored.",
        ));
    }
    Ok(verified.claims)
}

/// Step 2: returns what the provider says about the user: the verified JWT's claims
/// (ExternalJWT), or the outcome of the authorization code exchange (OpenID Connect), which
/// runs once per login (`exchanged` keeps it for the attempts after the first).
async fn prove(
    env: &LoginEnv<'_>,
    target: &Target,
    req: &LoginRequest,
    exchanged: &mut Option<Completed>,
    debug: &mut DebugLog,
) -> Result<Proven, Failure> {
    let context = env.context;
    let grant = match &req.credential {
        Credential::Jwt(token) => {
            let claims = verify_token(context, &target.provider, token, debug)?;
            return Ok(Proven {
                jwt: Value::Object(claims.clone()),
                claims,
                rest: Vec::new(),
                provider_refresh_token: req.provider_refresh_token.clone(),
                provider_refresh_token_field: req.provider_refresh_token_field,
            });
        }
        Credential::Code(grant) => grant,
    };
    let completed = match exchanged {
        Some(done) => done.clone(),
        None => {
            let done = exchange(env, target, grant, debug).await?;
            *exchanged = Some(done.clone());
            done
        }
    };
    // What a login may copy into the store must be storable (no NUL, within the limits).
    if gatehouse_plugin_api::json::check(&Value::Object(completed.claims.clone())).is_err() {
        return Err(refused(
            "[InvalidUserInfo]",
            "The identity provider's claims cannot be stored.",
        ));
    }
    Ok(Proven {
        claims: completed.claims,
        jwt: completed.jwt,
        rest: vec![completed.id_token, completed.tokens],
        provider_refresh_token: completed.refresh_token,
        provider_refresh_token_field: "refresh_token",
    })
}

/// The authorization code exchange of an OpenID Connect login ([`oidc::complete`]), its
/// failures as refusals with their status.
async fn exchange(
    env: &LoginEnv<'_>,
    target: &Target,
    grant: &CodeGrant,
    debug: &mut DebugLog,
) -> Result<Completed, Failure> {
    let context = env.context;
    let settings = (target.provider.openid_connect.as_ref())
        .ok_or_else(|| ApiError::internal("an OpenIDConnect provider without its settings"))?;
    let ex = oidc::Exchange {
        http: context.http.as_ref(),
        keys: context.remote_keys.as_ref(),
        discovery: env.discovery,
        timeout: env.settings.provider_timeout,
        leeway: env.settings.provider_leeway_seconds,
        now: context.clock.now_seconds(),
    };
    let application_id = target.application.id;
    oidc::complete(&ex, settings, application_id, grant, debug)
        .await
        .map_err(|f| {
            debug.line(format!("The code exchange failed: {}", f.message));
            Failure::Refused {
                status: f.status,
                code: f.code,
                message: f.message,
            }
        })
}

/// Returns the public key `id` of the gateway's ring (the id as written, or the same UUID in
/// any case), with its algorithm; `None` when there is none (HMAC keys have no public key).
pub fn ring_key(context: &Env<'_>, id: &str) -> Option<RingKey> {
    let wanted = Uuid::parse_str(id).ok();
    context
        .tokens
        .public_keys()
        .into_iter()
        .find(|k| k.key_id == id || (wanted.is_some() && Uuid::parse_str(&k.key_id).ok() == wanted))
        .map(|k| RingKey {
            pem: k.pem,
            algorithm: k.algorithm,
        })
}

/// Step 3: returns who the token names (unique id, email, username); 401 when a needed claim is
/// missing or the email's domain is not one of the provider's `domains`.
fn resolve_identity(
    provider: &Provider,
    claims: &Map<String, Value>,
    debug: &mut DebugLog,
) -> Result<Identity, Failure> {
    let who = identity(provider, claims)?;
    debug.line(format!(
        "Unique id claim [{}] = [{}]",
        provider.unique_id_claim, who.unique_id
    ));
    Ok(who)
}

/// Step 4: returns the linked user, else what the linking strategy decides (a found or new user,
/// or a pending link); 404 for `noLink` without a link, 401 for a deactivated user (and the
/// strategy's refusals).
async fn find_or_create_user(
    at: &Attempt<'_>,
    target: &Target,
    who: &Identity,
    debug: &mut DebugLog,
) -> Result<UserStep, Failure> {
    let context = at.env.context;
    let existing_link = context
        .records
        .find_links(Some(target.provider.id), None, Some(&who.unique_id))
        .await?
        .into_iter()
        .find(|l| l.tenant_id == target.application.tenant_id);
    let linked_user = match &existing_link {
        Some(link) => context.store.get_user(link.user_id).await?,
        None => None,
    };
    let (user, created) = match linked_user {
        Some(user) => {
            debug.line(format!("Existing link to user [{}]", user.id));
            (user, false)
        }
        None => {
            if at.req.no_link {
                debug.line("No link exists and noLink was requested");
                return Err(Refusal::NotLinked.into());
            }
            let (provider, application) = (&target.provider, &target.application);
            match resolve(at.env, provider, application, who, at.proven, at.now, debug).await? {
                Resolved::User(user, created) => (*user, created),
                Resolved::Pending(id) => return Ok(UserStep::Pending(id)),
            }
        }
    };
    may_log_in(&user, at.now)?;
    // The user as stored, to write back only if no one changed it meanwhile.
    let read_user = (!created).then(|| user.clone());
    Ok(UserStep::Found(Box::new(LoginUser {
        user,
        created,
        read_user,
        existing_link,
    })))
}

/// Whether `user` may log in at `now_ms`: a deactivated user is a 401 `[UserInactive]`, an
/// expired account a 410 with no body (FusionAuth's answer for an expired user).
fn may_log_in(user: &User, now_ms: i64) -> Result<(), Failure> {
    if !user.active {
        return Err(refused("[UserInactive]", "The user is deactivated."));
    }
    if user.expired_at(now_ms) {
        return Err(Failure::Refused {
            status: 410,
            code: "[UserExpired]",
            message: "The user's account has expired.".into(),
        });
    }
    Ok(())
}

/// Returns the `CreatePendingLink` answer: 200 with `pendingIdPLinkId` and nothing else.
fn pending_response(id: String) -> PluginResponse {
    let body = LoginResponse {
        pending_idp_link_id: Some(id),
        ..Default::default()
    };
    PluginResponse::json(200, &body)
}

/// Step 5: applies `claimMap`, then the reconcile lambda (not for `LinkAnonymously`), to `user`
/// and to the registration (the stored one, else a new one with the application's default
/// roles); returns the registrations. A failing lambda is a 401 `[LambdaInvocationFailed]`.
async fn reconcile_user(
    at: &Attempt<'_>,
    target: &Target,
    user: &mut User,
    debug: &mut DebugLog,
) -> Result<Registrations, Failure> {
    let claims = &at.proven.claims;
    let (provider, application) = (&target.provider, &target.application);
    let app_config = provider.applications.get(&application.id).copied();
    let stored = at
        .env
        .context
        .store
        .get_registration(user.id, application.id)
        .await?;
    let registering = stored.is_none() && app_config.is_some_and(|c| c.create_registration);
    let mut working = stored.clone().unwrap_or_else(|| Registration {
        id: Uuid::new_v4(),
        application_id: application.id,
        user_id: Some(user.id),
        roles: application.default_roles(),
        insert_instant: at.now,
        verified: true,
        ..Default::default()
    });
    let applied = apply_claim_map(&provider.claim_map, claims, user, &mut working.data);
    if !applied.is_empty() {
        debug.line(format!("claimMap applied claims [{}]", applied.join(", ")));
    }
    if let Some(lambda_id) = provider.reconcile_lambda_id {
        if provider.linking_strategy != LinkingStrategy::LinkAnonymously {
            let lambda = (lambda_id, provider.kind);
            let (u, r) = run_lambda(at.env, lambda, user, &working, at.proven, debug).await?;
            *user = u;
            working = r;
        }
    }
    Ok(Registrations {
        stored,
        registering,
        working,
    })
}

/// Step 6: saves, in one transaction, the user (`lastLoginInstant`, a newer
/// `lastUpdateInstant`), the registration when the user is or becomes registered, and the link;
/// returns the user and the registration in force.
///
/// Nothing is written when what the claims and the lambda made is over the document limits (it
/// could not be read back: 400), or has an email or username longer than the store keeps (400
/// `[tooLong]user.email`, `[tooLong]user.username`), nor when the user changed since it was read
/// ([`Failure::Concurrent`]: the login starts over).
async fn persist(
    at: &Attempt<'_>,
    target: &Target,
    who: &Identity,
    login: LoginUser,
    registrations: Registrations,
    debug: &mut DebugLog,
) -> Result<(User, Option<Registration>), Failure> {
    let LoginUser {
        mut user,
        created,
        read_user,
        existing_link,
    } = login;
    let Registrations {
        stored,
        registering,
        working: mut working_registration,
    } = registrations;
    let now = at.now;
    check_document("user", &user)?;
    check_document("registration", &working_registration)?;
    gatehouse_plugin_api::indexed::check_user(&user)?;
    user.last_login_instant = Some(now);
    // The user's version moves forward, even within one millisecond.
    user.last_update_instant = read_user
        .as_ref()
        .map_or(now, |read| now.max(read.last_update_instant + 1));
    let registered = stored.is_some() || registering;
    if registered {
        working_registration.last_login_instant = Some(now);
        working_registration.last_update_instant = now;
    }
    let new_link = existing_link.is_none();
    let link = login_link(at, target, who, existing_link, user.id);
    // The link is written only as this login found it: still absent, or still the user's.
    let link_write = match new_link {
        true => LinkWrite::Insert {
            limit: (target.provider.link_limit(target.application.tenant_id))
                .map(|max| u64::try_from(max).unwrap_or(0)),
        },
        false => LinkWrite::ReplaceOwn,
    };
    let saved = save_login(
        at.env.context,
        (&user, read_user.as_ref()),
        registered.then_some(&working_registration),
        (&link, link_write),
    )
    .await?;
    if saved == Saved::Taken {
        let write = clash::Write {
            provider_id: target.provider.id,
            tenant_id: target.application.tenant_id,
            who,
            user: &user,
            created,
            had_link: !new_link,
        };
        return Err(taken(at.env.context, &write, debug).await);
    }
    if created {
        debug.line(format!("Created user [{}]", user.id));
    }
    if registering {
        debug.line(format!(
            "Registered the user to the application with roles [{}]",
            working_registration.roles.join(", ")
        ));
    }
    let registration = if registered {
        Some(working_registration)
    } else {
        stored
    };
    if new_link {
        debug.line(format!("Linked the provider user to user [{}]", user.id));
    }
    Ok((user, registration))
}

/// Returns why a login's write found a unique value taken: [`Failure::Concurrent`] for a race
/// (start over), else the 400 naming the field another user's value is in.
async fn taken(context: &Env<'_>, write: &clash::Write<'_>, debug: &mut DebugLog) -> Failure {
    match clash::classify(context, write).await {
        Ok(Clash::Race) => Failure::Concurrent,
        Ok(Clash::Taken(error)) => {
            debug.line("The user's email or username is another user's; nothing was saved");
            Failure::Api(error)
        }
        Err(e) => e.into(),
    }
}

/// What [`save_login`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Saved {
    /// The user, registration and link are written.
    Written,
    /// Nothing was written: a unique value is taken.
    Taken,
}

/// Writes the user (unless it changed since `read_user` was read), the registration and the
/// link (as `link_write` says) in one transaction; returns [`Failure::Concurrent`] when the
/// user changed meanwhile (the login then starts over), and [`Saved::Taken`] when a unique
/// value (email, username) is taken or the link is no longer as the login found it, which
/// [`clash::classify`] tells a race from a permanent conflict.
async fn save_login(
    context: &Env<'_>,
    (user, read_user): (&User, Option<&User>),
    registration: Option<&Registration>,
    (link, link_write): (&IdentityProviderLink, LinkWrite),
) -> Result<Saved, Failure> {
    let saved = context
        .records
        .save_login(user, read_user, registration, link, link_write)
        .await;
    match saved {
        Ok(true) => Ok(Saved::Written),
        // Changed meanwhile: start over.
        Ok(false) => Err(Failure::Concurrent),
        Err(gatehouse_plugin_api::StoreError::Conflict(_)) => Ok(Saved::Taken),
        Err(e) => Err(e.into()),
    }
}

/// Returns the link of the provider user to `user_id` as this login leaves it: the existing one
/// or a new one, with this login's `lastLoginInstant`, the provider's current name and the
/// provider's refresh token when the login has one.
fn login_link(
    at: &Attempt<'_>,
    target: &Target,
    who: &Identity,
    existing_link: Option<IdentityProviderLink>,
    user_id: Uuid,
) -> IdentityProviderLink {
    let (provider, now) = (&target.provider, at.now);
    let mut link = existing_link.unwrap_or_else(|| IdentityProviderLink {
        data: Default::default(),
        display_name: Some(who.display_name()),
        identity_provider_id: provider.id,
        identity_provider_name: Some(provider.name.clone()),
        identity_provider_type: Some(provider.kind.name().into()),
        identity_provider_user_id: who.unique_id.clone(),
        insert_instant: now,
        last_login_instant: now,
        tenant_id: target.application.tenant_id,
        token: None,
        user_id,
    });
    link.last_login_instant = now;
    link.identity_provider_name = Some(provider.name.clone());
    if let Some(token) = &at.proven.provider_refresh_token {
        link.token = Some(token.clone());
    }
    link
}

/// Step 7: returns the answer: the user, 200 when registered to the application and 202 when
/// not, and unless `noJWT` the tokens, in the body and in cookies.
async fn respond(
    at: &Attempt<'_>,
    target: &Target,
    user: User,
    registration: Option<Registration>,
    debug: &mut DebugLog,
) -> Result<PluginResponse, Failure> {
    let ip = at.req.ip_address.clone().or_else(|| at.request.client_ip());
    debug.line(format!(
        "Login from [{}]",
        ip.as_deref().unwrap_or("unknown")
    ));
    let mut body = LoginResponse::default();
    let mut response_cookies = Vec::new();
    if !at.req.no_jwt {
        response_cookies =
            issue_tokens(at, target, &user, registration.as_ref(), ip, &mut body).await?;
    }
    let status = if registration.is_some() { 200 } else { 202 };
    debug.line(format!("Answered {status} for user [{}]", user.id));
    body.user = Some(full_user(at.env.context, user).await?);
    let mut response = PluginResponse::json(status, &body);
    for cookie in &response_cookies {
        response = response.with_cookie(cookie);
    }
    Ok(response)
}

/// Issues the tokens of a login into `body`: a refresh token when the user is registered and the
/// application generates them, and an access token (`sid` = the refresh token's id). Returns
/// their cookies (`access_token`, a session cookie, and `refresh_token`).
async fn issue_tokens(
    at: &Attempt<'_>,
    target: &Target,
    user: &User,
    registration: Option<&Registration>,
    ip: Option<String>,
    body: &mut LoginResponse,
) -> Result<Vec<gatehouse_plugin_api::Cookie>, Failure> {
    let context = at.env.context;
    let secure = secure_cookies(at.request, context);
    let generates = target
        .application
        .login_configuration
        .generate_refresh_tokens;
    let refresh = match registration {
        Some(_) if generates => Some(issue_refresh(at, target, user, ip).await?),
        _ => None,
    };
    let issued = issue(
        context,
        user,
        &target.tenant,
        &target.application,
        registration,
        refresh.as_ref().map(|r| r.id),
    )
    .await?;
    let mut cookies = vec![session_cookie("access_token", &issued.token, secure)];
    if let Some(r) = &refresh {
        cookies.push(Cookie::expiring(
            "refresh_token",
            &r.token,
            r.expiration_instant,
            at.now,
            secure,
        ));
    }
    body.token = Some(issued.token);
    body.token_expiration_instant = Some(issued.expiration_instant);
    body.refresh_token_id = refresh.as_ref().map(|r| r.id);
    body.refresh_token = refresh.map(|r| r.token);
    Ok(cookies)
}

/// Returns a new refresh token of `user` for the application, with the request's device (whose
/// address defaults to the client's `ip`).
async fn issue_refresh(
    at: &Attempt<'_>,
    target: &Target,
    user: &User,
    ip: Option<String>,
) -> Result<gatehouse_plugin_api::model::RefreshToken, Failure> {
    let mut device = at.req.device.clone();
    if device.last_accessed_address.is_none() {
        device.last_accessed_address = ip;
    }
    device.last_accessed_instant = Some(at.now);
    let meta = RefreshTokenMetaData {
        device,
        scopes: Vec::new(),
    };
    let token = issue_refresh_token(
        crate::common::refresh_env(at.env.context),
        user,
        &target.tenant,
        Some(&target.application),
        meta,
    )
    .await?;
    Ok(token)
}

/// Returns the access token of a login (`authenticationType` `FEDERATED_JWT`, `sid` =
/// `session_id`): an expensive signature (RSA) made on the token service's signing pool, off
/// the thread serving requests; a signing failure is an internal error.
async fn issue(
    context: &Env<'_>,
    user: &User,
    tenant: &Tenant,
    application: &Application,
    registration: Option<&Registration>,
    session_id: Option<Uuid>,
) -> Result<gatehouse_plugin_api::IssuedToken, Failure> {
    let pending = context
        .tokens
        .prepare_access_token(&AccessTokenRequest {
            user,
            tenant,
            application: Some(application),
            registration,
            authentication_type: FEDERATED_JWT,
            expires_at: None,
            session_id,
        })
        .map_err(|e| Failure::Api(signing_error(e)))?;
    pending
        .sign()
        .await
        .map_err(|e| Failure::Api(signing_error(e)))
}

enum Resolved {
    User(Box<User>, bool),
    Pending(String),
}

/// The user for a provider user without a link, per the linking strategy.
async fn resolve(
    env: &LoginEnv<'_>,
    provider: &Provider,
    application: &Application,
    who: &Identity,
    proven: &Proven,
    now: i64,
    debug: &mut DebugLog,
) -> Result<Resolved, Failure> {
    let context = env.context;
    let tenant_id = application.tenant_id;
    let strategy = provider.linking_strategy;
    let found = if strategy.by_email() {
        match &who.email {
            Some(email) => context.store.find_user_by_email(tenant_id, email).await?,
            None => None,
        }
    } else if strategy.by_username() {
        match &who.username {
            Some(username) => {
                context
                    .store
                    .find_user_by_username(tenant_id, username)
                    .await?
            }
            None => None,
        }
    } else {
        None
    };
    match decide(strategy, provider, who, found) {
        Decision::Pending => {
            let link = PendingLink {
                identity_provider_id: provider.id,
                identity_provider_name: provider.name.clone(),
                identity_provider_type: provider.kind.name(),
                identity_provider_user_id: who.unique_id.clone(),
                display_name: who.display_name(),
                email: who.email.clone(),
                username: who.username.clone(),
                tenant_id,
                token: proven.provider_refresh_token.clone(),
            };
            link.check_size(proven.provider_refresh_token_field)?;
            let new_id = context.tokens.new_refresh_token_value();
            let id = env.pending.insert(new_id, link);
            debug.line("Created (or renewed) the provider user's pending link");
            Ok(Resolved::Pending(id))
        }
        Decision::Refuse(r) => Err(r.into()),
        Decision::Link(user) => {
            if let Some(max) = provider.link_limit(tenant_id) {
                let count = context
                    .records
                    .find_links(Some(provider.id), Some(user.id), None)
                    .await?
                    .len();
                if count as i64 >= max {
                    return Err(Refusal::LinkLimitReached(max).into());
                }
            }
            debug.line(format!(
                "Found existing user [{}] by {}",
                user.id,
                if strategy.by_email() {
                    "email"
                } else {
                    "username"
                }
            ));
            Ok(Resolved::User(user, false))
        }
        Decision::Create { email, username } => {
            // A username-linked user keeps the token's email when no one else has it.
            let email = match (email, strategy.by_username(), &who.email) {
                (Some(e), _, _) => Some(e),
                (None, true, Some(e))
                    if context
                        .store
                        .find_user_by_email(tenant_id, e)
                        .await?
                        .is_none() =>
                {
                    Some(e.clone())
                }
                _ => None,
            };
            let verified = email.is_some() && who.email_verified != Some(false);
            let user = User {
                id: Uuid::new_v4(),
                tenant_id,
                email,
                username,
                verified,
                active: true,
                insert_instant: now,
                last_update_instant: now,
                ..Default::default()
            };
            Ok(Resolved::User(Box::new(user), true))
        }
    }
}

/// Refuses (401 `[LambdaInvocationFailed]`) a user the lambda `name` left with a birth date or
/// time zone a typed client cannot read, when it set them (`before` is the user it was given).
fn check_lambda_user(name: &str, before: &User, after: &User) -> Result<(), Failure> {
    let invalid = |what: &str| {
        Err(refused(
            "[LambdaInvocationFailed]",
            format!("The reconcile lambda [{name}] left an invalid user: {what}."),
        ))
    };
    let birth_date = after.birth_date.as_deref();
    if after.birth_date != before.birth_date && !birth_date.is_none_or(is_birth_date) {
        return invalid("birthDate is not a YYYY-MM-DD date");
    }
    if after.timezone != before.timezone && !after.timezone.as_deref().is_none_or(is_time_zone) {
        return invalid("timezone is not an IANA time zone");
    }
    Ok(())
}

/// Runs the reconcile lambda `(id, provider type)` and merges its result; identifiers cannot
/// be changed by it. The lambda must be of the type the provider's type pairs with.
async fn run_lambda(
    env: &LoginEnv<'_>,
    (lambda_id, kind): (Uuid, ProviderType),
    user: &User,
    registration: &Registration,
    proven: &Proven,
    debug: &mut DebugLog,
) -> Result<(User, Registration), Failure> {
    let lambda = env
        .context
        .records
        .get_lambda(lambda_id)
        .await?
        .ok_or_else(|| {
            refused(
                "[LambdaInvocationFailed]",
                "The reconcile lambda of the identity provider does not exist.",
            )
        })?;
    let wanted = kind.reconcile_lambda_type();
    if lambda_type(&lambda) != Some(wanted) {
        return Err(refused(
            "[LambdaInvocationFailed]",
            format!("The reconcile lambda of the identity provider is not of type {wanted}."),
        ));
    }
    let body = lambda
        .get("body")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let lambda_debug = lambda
        .get("debug")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let name = lambda
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let user_json = serde_json::to_value(user).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut registration_json =
        serde_json::to_value(registration).map_err(|e| ApiError::internal(e.to_string()))?;
    if let Some(obj) = registration_json.as_object_mut() {
        obj.remove("userId");
    }
    let result = env
        .sandbox
        .reconcile(
            &body,
            &user_json,
            &registration_json,
            &proven.jwt,
            &proven.rest,
        )
        .await;
    let reconciled = match result {
        Ok(r) => r,
        Err(e) => {
            debug.line(format!("Reconcile lambda [{lambda_id}] failed: {e}"));
            return Err(refused(
                "[LambdaInvocationFailed]",
                format!("The reconcile lambda [{name}] failed: {e}."),
            ));
        }
    };
    if lambda_debug && !reconciled.logs.is_empty() {
        let message = format!(
            "Reconcile lambda [{name}] ({lambda_id}) console output:\n  {}",
            reconciled.logs.join("\n  ")
        );
        let _ = env.context.records.add_event("Debug", &message).await;
    }
    debug.line(format!("Reconcile lambda [{lambda_id}] ran"));
    let bad = |what: &str, e: serde_json::Error| {
        refused(
            "[LambdaInvocationFailed]",
            format!("The reconcile lambda [{name}] left an invalid {what}: {e}."),
        )
    };
    let mut new_user: User =
        serde_json::from_value(strip_nulls(reconciled.user)).map_err(|e| bad("user", e))?;
    check_lambda_user(&name, user, &new_user)?;
    new_user.id = user.id;
    new_user.tenant_id = user.tenant_id;
    new_user.insert_instant = user.insert_instant;
    new_user.registrations = Vec::new();
    let mut new_registration: Registration =
        serde_json::from_value(strip_nulls(reconciled.registration))
            .map_err(|e| bad("registration", e))?;
    new_registration.id = registration.id;
    new_registration.application_id = registration.application_id;
    new_registration.user_id = registration.user_id;
    new_registration.insert_instant = registration.insert_instant;
    Ok((new_user, new_registration))
}

/// A 400 naming `field` when `value` is over the document limits.
fn check_document<T: serde::Serialize>(field: &str, value: &T) -> Result<(), ApiError> {
    let json = serde_json::to_value(value).map_err(ApiError::internal)?;
    gatehouse_plugin_api::json::check_field(&json, field)
}

/// Drops `null` members of an object (a lambda may set `user.middleName = null`).
fn strip_nulls(mut value: Value) -> Value {
    if let Some(obj) = value.as_object_mut() {
        obj.retain(|_, v| !v.is_null());
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_are_parsed_with_field_errors() {
        let app = Uuid::new_v4();
        let idp = Uuid::new_v4();
        let ok = parse_request(
            &json!({"applicationId": app, "identityProviderId": idp, "data": {"token": "t", "refresh_token": "r"},
                    "ipAddress": "10.0.0.1", "noJWT": true, "metaData": {"device": {"name": "n", "type": "BROWSER"}}}),
            Endpoint::Reconcile,
            false,
        )
        .expect("ok");
        assert_eq!(ok.credential, Credential::Jwt("t".into()));
        assert_eq!(ok.provider_refresh_token.as_deref(), Some("r"));
        assert!(ok.no_jwt && !ok.no_link);
        assert_eq!(ok.device.device_type.as_deref(), Some("BROWSER"));
        let legacy = parse_request(
            &json!({"applicationId": app, "identityProviderId": idp, "encodedJWT": "e"}),
            Endpoint::Login,
            false,
        )
        .expect("ok");
        assert_eq!(legacy.credential, Credential::Jwt("e".into()));

        let err = parse_request(
            &json!({"applicationId": "x", "noLink": "yes"}),
            Endpoint::Login,
            false,
        )
        .unwrap_err();
        let body: Value = serde_json::from_slice(&err.to_response().body).expect("json");
        for field in [
            "applicationId",
            "identityProviderId",
            "encodedJWT",
            "noLink",
        ] {
            assert!(body["fieldErrors"][field].is_array(), "{field}: {body}");
        }
        let err = parse_request(&json!({}), Endpoint::Reconcile, false).unwrap_err();
        let body: Value = serde_json::from_slice(&err.to_response().body).expect("json");
        assert!(body["fieldErrors"]["data.token"].is_array());

        // Text fields of another type, and refresh tokens no link keeps, are named.
        let base = json!({"applicationId": app, "identityProviderId": idp, "encodedJWT": "e"});
        let code_of = |extra: Value| {
            let mut request = base.clone();
            for (k, v) in extra.as_object().expect("object") {
                request[k] = v.clone();
            }
            let err = parse_request(&request, Endpoint::Login, false).unwrap_err();
            let body: Value = serde_json::from_slice(&err.to_response().body).expect("json");
            let errors = body["fieldErrors"]
                .as_object()
                .expect("field errors")
                .clone();
            assert_eq!(errors.len(), 1, "{body}");
            errors.values().next().expect("one")[0]["code"]
                .as_str()
                .expect("code")
                .to_string()
        };
        assert_eq!(code_of(json!({"encodedJWT": 5})), "[invalid]encodedJWT");
        assert_eq!(code_of(json!({"data": "x"})), "[invalid]data");
        assert_eq!(code_of(json!({"metaData": "x"})), "[invalid]metaData");
        assert_eq!(
            code_of(json!({"refresh_token": 5})),
            "[invalid]refresh_token"
        );
        assert_eq!(
            code_of(json!({"refresh_token": {"a": 1}})),
            "[invalid]refresh_token"
        );
        assert_eq!(
            code_of(json!({"data": {"refresh_token": []}})),
            "[invalid]data.refresh_token"
        );
        assert_eq!(
            code_of(json!({"refresh_token": "a\r\nb"})),
            "[invalid]refresh_token"
        );
        let big = "r".repeat(crate::pending::MAX_PENDING_TOKEN_BYTES + 1);
        assert_eq!(
            code_of(json!({"refresh_token": big})),
            "[tooLarge]refresh_token"
        );
    }

    #[test]
    fn openid_connect_requests_need_a_code_and_a_redirect_uri() {
        let (app, idp) = (Uuid::new_v4(), Uuid::new_v4());
        for endpoint in [Endpoint::Login, Endpoint::Reconcile] {
            let ok = parse_request(
                &json!({"applicationId": app, "identityProviderId": idp,
                        "data": {"code": "c", "redirect_uri": "https://a/cb",
                                 "code_verifier": "v", "nonce": "n"}}),
                endpoint,
                true,
            )
            .expect("ok");
            let Credential::Code(grant) = ok.credential else {
                panic!("a code grant")
            };
            assert_eq!(
                (grant.code.as_str(), grant.redirect_uri.as_str()),
                ("c", "https://a/cb")
            );
            assert_eq!(grant.code_verifier.as_deref(), Some("v"));
            assert_eq!(grant.nonce.as_deref(), Some("n"));
            assert!(
                !format!("{grant:?}").contains("\"c\""),
                "the code is not printed"
            );
        }
        // A JWT is no substitute; every missing member is named at once.
        let err = parse_request(
            &json!({"applicationId": app, "identityProviderId": idp, "encodedJWT": "e",
                    "data": {"code": " "}}),
            Endpoint::Login,
            true,
        )
        .unwrap_err();
        let body: Value = serde_json::from_slice(&err.to_response().body).expect("json");
        assert!(body["fieldErrors"]["data.code"].is_array(), "{body}");
        assert!(
            body["fieldErrors"]["data.redirect_uri"].is_array(),
            "{body}"
        );
        assert!(body["fieldErrors"]["encodedJWT"].is_null(), "{body}");
    }

    #[test]
    fn the_login_response_omits_what_it_lacks() {
        let body = serde_json::to_value(LoginResponse {
            pending_idp_link_id: Some("p".into()),
            ..Default::default()
        })
        .expect("json");
        assert_eq!(body, json!({"pendingIdPLinkId": "p"}));
        assert_eq!(strip_nulls(json!({"a": null, "b": 1})), json!({"b": 1}));
    }
}
