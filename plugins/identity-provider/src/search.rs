//! `POST /api/identity-provider/search` (`{"search": {...}}`, FusionAuth's
//! `IdentityProviderSearchRequest`) and `GET /api/identity-provider/search` with the same
//! criteria as query parameters. The answer is `{"identityProviders": [...], "total": N}`:
//! one page of the matching providers the API key may see, secrets redacted as in every answer,
//! and how many match in all.
//!
//! Criteria (each optional, all must hold):
//! - `name`: case-insensitive; `*` matches any run of characters; without a `*` the name
//!   matches anywhere (`value` reads as `*value*`);
//! - `type`: one of FusionAuth's provider types (another is a 400);
//! - `applicationId`: providers enabled for the application
//!   (`applicationConfiguration[applicationId].enabled`);
//! - `tenantId`: the providers that tenant can use (global ones and its own), as an API key
//!   locked to that tenant sees them;
//! - `numberOfResults` (default 25, at most 500), `startRow` (default 0);
//! - `orderBy`: `enabled`, `id`, `insertInstant`, `name` or `type`, then optionally `ASC` or
//!   `DESC` (default `name ASC`; ties by id).

use gatehouse_plugin_api::{ApiError, PluginRequest, PluginResponse};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{api_key, document_tenant, visible_providers, Env, SearchMembers};
use crate::provider::redact;

/// FusionAuth's identity-provider types (`IdentityProviderType`), the values `type` may take.
const PROVIDER_TYPES: [&str; 16] = [
    "Apple",
    "EpicGames",
    "ExternalJWT",
    "Facebook",
    "Google",
    "HYPR",
    "LinkedIn",
    "Nintendo",
    "OpenIDConnect",
    "SAMLv2",
    "SAMLv2IdPInitiated",
    "SonyPSN",
    "Steam",
    "Twitch",
    "Twitter",
    "Xbox",
];

/// Page size when `numberOfResults` is not given, and the largest one allowed.
const DEFAULT_RESULTS: i64 = 25;
const MAX_RESULTS: i64 = 500;

/// What a search may order by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OrderField {
    Enabled,
    Id,
    InsertInstant,
    Name,
    Type,
}

/// One search's criteria, read from the body or the query.
#[derive(Debug)]
struct Criteria {
    /// The name pattern, lower-cased, split at its `*`s.
    name: Option<Vec<String>>,
    provider_type: Option<String>,
    application_id: Option<Uuid>,
    tenant_id: Option<Uuid>,
    number_of_results: usize,
    start_row: usize,
    order: (OrderField, bool),
}

impl Criteria {
    /// The criteria `get` gives (a member of `search`, or a query parameter); `Err` names the
    /// first member that is not what it must be (`search.{member}`).
    fn read(get: &dyn Fn(&str) -> Option<Value>) -> Result<Criteria, ApiError> {
        let text = |name: &str| -> Result<Option<String>, ApiError> {
            match get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
                Some(_) => Err(invalid(name, "Expected a string.")),
            }
        };
        let number = |name: &str, default: i64, (min, max): (i64, i64)| {
            let value = match get(name) {
                None | Some(Value::Null) => return Ok(default),
                Some(Value::Number(n)) => n.as_i64(),
                Some(Value::String(s)) if s.trim().is_empty() => return Ok(default),
                Some(Value::String(s)) => s.trim().parse().ok(),
                Some(_) => None,
            };
            match value {
                Some(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(invalid(
                    name,
                    format!("Expected a whole number from {min} to {max}."),
                )),
            }
        };
        let uuid = |name: &str| -> Result<Option<Uuid>, ApiError> {
            match text(name)? {
                None => Ok(None),
                Some(s) => Uuid::parse_str(&s)
                    .map(Some)
                    .map_err(|_| invalid(name, "Expected a UUID.")),
            }
        };
        let provider_type = text("type")?;
        if let Some(t) = &provider_type {
            if !PROVIDER_TYPES.contains(&t.as_str()) {
                let message = format!("Expected one of {}.", PROVIDER_TYPES.join(", "));
                return Err(invalid("type", message));
            }
        }
        let results = number("numberOfResults", DEFAULT_RESULTS, (1, MAX_RESULTS))?;
        let start_row = number("startRow", 0, (0, i64::from(u32::MAX)))?;
        Ok(Criteria {
            name: text("name")?.map(|n| name_pattern(&n)),
            provider_type,
            application_id: uuid("applicationId")?,
            tenant_id: uuid("tenantId")?,
            number_of_results: usize::try_from(results).unwrap_or(1),
            start_row: usize::try_from(start_row).unwrap_or(0),
            order: order_by(text("orderBy")?.as_deref())?,
        })
    }

    /// True when the provider `doc` meets every criterion.
    fn matches(&self, doc: &Value) -> bool {
        let field = |name: &str| doc.get(name).and_then(Value::as_str);
        self.name.as_ref().is_none_or(|pattern| {
            wildcard_match(pattern, &field("name").unwrap_or_default().to_lowercase())
        }) && self
            .provider_type
            .as_deref()
            .is_none_or(|t| field("type") == Some(t))
            && self.application_id.is_none_or(|app| {
                doc.pointer(&format!("/applicationConfiguration/{app}/enabled"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            })
            && self
                .tenant_id
                .is_none_or(|t| document_tenant(doc).is_none_or(|own| own == t))
    }

    /// `docs` in the requested order, ties by id ascending; each document's sort key is
    /// rendered once.
    fn sort(&self, docs: Vec<Value>) -> Vec<Value> {
        let (field, descending) = self.order;
        let text = |doc: &Value, name: &str| {
            let text = doc.get(name).and_then(Value::as_str).unwrap_or_default();
            match field {
                OrderField::Name => text.to_lowercase(),
                _ => text.to_string(),
            }
        };
        let key = |doc: &Value| -> (i64, String) {
            match field {
                OrderField::Enabled => (
                    i64::from(doc["enabled"].as_bool() == Some(true)),
                    String::new(),
                ),
                OrderField::InsertInstant => {
                    (doc["insertInstant"].as_i64().unwrap_or(0), String::new())
                }
                OrderField::Id => (0, text(doc, "id")),
                OrderField::Name => (0, text(doc, "name")),
                OrderField::Type => (0, text(doc, "type")),
            }
        };
        let mut keyed: Vec<((i64, String), String, Value)> = docs
            .into_iter()
            .map(|doc| {
                let id = doc["id"].as_str().unwrap_or_default().to_string();
                (key(&doc), id, doc)
            })
            .collect();
        keyed.sort_by(|a, b| {
            let ordered = a.0.cmp(&b.0);
            let ordered = if descending {
                ordered.reverse()
            } else {
                ordered
            };
            ordered.then_with(|| a.1.cmp(&b.1))
        });
        keyed.into_iter().map(|(_, _, doc)| doc).collect()
    }
}

/// A field error at `search.{name}`.
fn invalid(name: &str, message: impl Into<String>) -> ApiError {
    ApiError::field(&format!("search.{name}"), "invalid", message)
}

/// `orderBy` read: a field and an optional direction (`ASC` unless `DESC`); `name ASC` when
/// absent.
fn order_by(text: Option<&str>) -> Result<(OrderField, bool), ApiError> {
    let Some(text) = text else {
        return Ok((OrderField::Name, false));
    };
    let refused = || {
        invalid(
            "orderBy",
            "Expected enabled, id, insertInstant, name or type, then optionally ASC or DESC.",
        )
    };
    let mut words = text.split_whitespace();
    let field = match words
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "enabled" => OrderField::Enabled,
        "id" => OrderField::Id,
        "insertinstant" => OrderField::InsertInstant,
        "name" => OrderField::Name,
        "type" => OrderField::Type,
        _ => return Err(refused()),
    };
    let descending = match words.next().map(str::to_ascii_lowercase).as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(refused()),
    };
    if words.next().is_some() {
        return Err(refused());
    }
    Ok((field, descending))
}

/// A name pattern, lower-cased, as the pieces between its `*`s; without a `*`, `*value*`.
fn name_pattern(name: &str) -> Vec<String> {
    let lower = name.to_lowercase();
    let lower = if lower.contains('*') {
        lower
    } else {
        format!("*{lower}*")
    };
    lower.split('*').map(str::to_string).collect()
}

/// True when `text` matches `pieces` (see [`name_pattern`]): the first piece starts it, the
/// last ends it, and the ones between follow each other in order.
fn wildcard_match(pieces: &[String], text: &str) -> bool {
    // `name_pattern` gives at least two pieces (a pattern without `*` is wrapped in two).
    let [first, middle @ .., last] = pieces else {
        return false;
    };
    let Some(mut rest) = text.strip_prefix(first.as_str()) else {
        return false;
    };
    for piece in middle {
        match rest.find(piece.as_str()) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.ends_with(last.as_str())
}

/// `POST /api/identity-provider/search` or `GET` with query parameters (see the module).
pub async fn search(
    request: &PluginRequest,
    context: &Env<'_>,
) -> Result<PluginResponse, ApiError> {
    let grant = api_key(request, context)?;
    let members = SearchMembers::of(request)?;
    let criteria = Criteria::read(&|name| members.get(name))?;
    // Matched as the request may see them: an applicationId of another tenant finds nothing.
    let all = context.records.list_identity_providers().await?;
    let docs: Vec<Value> = visible_providers(&grant, all, context)
        .await?
        .into_iter()
        .filter(|d| criteria.matches(d))
        .collect();
    let docs = criteria.sort(docs);
    let total = docs.len();
    let page: Vec<Value> = docs
        .iter()
        .skip(criteria.start_row)
        .take(criteria.number_of_results)
        .map(redact)
        .collect();
    Ok(PluginResponse::json(
        200,
        &json!({ "identityProviders": page, "total": total }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn criteria(search: Value) -> Result<Criteria, ApiError> {
        Criteria::read(&|name| search.get(name).cloned())
    }

    #[test]
    fn names_match_case_insensitively_with_wildcards_or_anywhere_without() {
        let matches = |pattern: &str, name: &str| {
            wildcard_match(&name_pattern(pattern), &name.to_lowercase())
        };
        assert!(matches("corp", "Acme CORP SSO"));
        assert!(matches("LK*", "lkq partner"));
        assert!(!matches("LK*", "a lkq partner"));
        assert!(matches("*sso", "Corporate SSO"));
        assert!(!matches("*sso", "SSO corporate"));
        assert!(matches("a*c*e", "abcde"));
        assert!(!matches("a*c*e", "abcd"));
        assert!(matches("ab*ba", "aba ba"));
        assert!(!matches("ab*ba", "aba"), "the pieces may not overlap");
        assert!(matches("*", "anything"));
        assert!(matches("exact*", "exact"));
    }

    #[test]
    fn criteria_are_read_with_defaults_and_bad_ones_name_their_member() {
        let read = criteria(json!({})).expect("empty");
        assert_eq!((read.number_of_results, read.start_row), (25, 0));
        assert_eq!(read.order, (OrderField::Name, false));
        let read = criteria(
            json!({"numberOfResults": "3", "startRow": 2, "orderBy": "insertInstant desc",
                                   "type": "OpenIDConnect"}),
        )
        .expect("valid");
        assert_eq!((read.number_of_results, read.start_row), (3, 2));
        assert_eq!(read.order, (OrderField::InsertInstant, true));
        for (search, member) in [
            (json!({"numberOfResults": 0}), "search.numberOfResults"),
            (json!({"numberOfResults": 501}), "search.numberOfResults"),
            (json!({"startRow": -1}), "search.startRow"),
            (json!({"startRow": "x"}), "search.startRow"),
            (json!({"orderBy": "secret ASC"}), "search.orderBy"),
            (json!({"orderBy": "name sideways"}), "search.orderBy"),
            (json!({"orderBy": "name ASC DESC"}), "search.orderBy"),
            (json!({"type": "Kerberos"}), "search.type"),
            (
                json!({"applicationId": "not-a-uuid"}),
                "search.applicationId",
            ),
            (json!({"tenantId": 7}), "search.tenantId"),
            (json!({"name": ["x"]}), "search.name"),
        ] {
            let Err(ApiError::BadRequest(errors)) = criteria(search.clone()) else {
                panic!("{search} accepted");
            };
            let text = serde_json::to_string(&errors).expect("json");
            assert!(
                text.contains(&format!("[invalid]{member}")),
                "{search}: {text}"
            );
        }
    }

    #[test]
    fn providers_match_every_criterion_given() {
        let app = Uuid::new_v4();
        let tenant = Uuid::new_v4();
        let doc = json!({"id": Uuid::new_v4(), "name": "Corp SSO", "type": "OpenIDConnect",
                         "applicationConfiguration": {app.to_string(): {"enabled": true}}});
        let scoped = json!({"id": Uuid::new_v4(), "name": "Corp SSO", "type": "OpenIDConnect",
                            "tenantId": tenant,
                            "applicationConfiguration": {app.to_string(): {"enabled": false}}});
        let all = criteria(
            json!({"name": "corp", "type": "OpenIDConnect", "applicationId": app,
                                  "tenantId": tenant}),
        )
        .expect("valid");
        assert!(all.matches(&doc));
        assert!(!all.matches(&scoped), "not enabled for the application");
        let other_tenant = criteria(json!({"tenantId": Uuid::new_v4()})).expect("valid");
        assert!(
            other_tenant.matches(&doc),
            "a global provider serves every tenant"
        );
        assert!(!other_tenant.matches(&scoped));
        let jwt = criteria(json!({"type": "ExternalJWT"})).expect("valid");
        assert!(!jwt.matches(&doc));
    }
}
