//! The event log: the debug entries logins write ([`DebugLog`]) and the System API calls that
//! read them back, `POST /api/system/event-log/search` (also `GET` with query parameters) and
//! `GET /api/system/event-log/{eventLogId}` (an API key of no tenant: the log holds every
//! tenant's logins).
//!
//! Search criteria follow FusionAuth's `EventLogSearchCriteria`: `message` (case-insensitive
//! substring; `*` wildcards are ignored), `type` (`Debug`, `Information`, `Error`), `start`/`end`
//! (instants, inclusive), `numberOfResults` (default 25), `startRow`, `orderBy`
//! (`insertInstant ASC|DESC`, default newest first). At most the newest 10,000 entries are
//! searched.

use gatehouse_plugin_api::model::EventLog;
use gatehouse_plugin_api::{ApiError, PluginRequest, PluginResponse};
use serde_json::{json, Value};

use crate::common::{system_api_key, Env, SearchMembers};

/// How many of the newest entries a search looks at.
const SEARCH_WINDOW: u32 = 10_000;

/// Lines of one login's debug entry; written only when the provider has `debug: true`.
#[derive(Debug, Default)]
pub struct DebugLog {
    enabled: bool,
    lines: Vec<String>,
}

impl DebugLog {
    /// A log that records when `enabled`.
    pub fn new(enabled: bool) -> Self {
        DebugLog {
            enabled,
            lines: Vec::new(),
        }
    }

    /// Turns recording on or off (once the provider is known).
    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    /// Adds a line (never pass a token or secret).
    pub fn line(&mut self, text: impl Into<String>) {
        if self.enabled {
            self.lines.push(text.into());
        }
    }

    /// The entry's text, when anything was recorded.
    pub fn message(&self, heading: &str) -> Option<String> {
        (self.enabled && !self.lines.is_empty()).then(|| {
            let mut text = heading.to_string();
            for line in &self.lines {
                text.push_str("\n  - ");
                text.push_str(line);
            }
            text
        })
    }

    /// Writes the entry (type `Debug`); a store failure is ignored, as the login's outcome must
    /// not depend on its debug log.
    pub async fn flush(self, context: &Env<'_>, heading: &str) {
        if let Some(message) = self.message(heading) {
            let _ = context.records.add_event("Debug", &message).await;
        }
    }
}

/// Search criteria.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Criteria {
    /// Substring of the message.
    pub message: Option<String>,
    /// Event type.
    pub log_type: Option<String>,
    /// Earliest instant (ms).
    pub start: Option<i64>,
    /// Latest instant (ms).
    pub end: Option<i64>,
    /// Page size.
    pub number_of_results: usize,
    /// Offset.
    pub start_row: usize,
    /// Oldest first.
    pub ascending: bool,
}

impl Criteria {
    fn from_lookup(get: &dyn Fn(&str) -> Option<Value>) -> Result<Criteria, ApiError> {
        let text = |name: &str| {
            get(name)
                .and_then(|v| v.as_str().map(str::to_string))
                .filter(|s| !s.is_empty())
        };
        let number = |name: &str| -> Result<Option<i64>, ApiError> {
            match get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| bad(name)),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => s.parse().map(Some).map_err(|_| bad(name)),
                Some(_) => Err(bad(name)),
            }
        };
        let order = text("orderBy").unwrap_or_default().to_ascii_lowercase();
        Ok(Criteria {
            message: text("message")
                .map(|m| m.replace('*', "").to_lowercase())
                .filter(|m| !m.is_empty()),
            log_type: text("type"),
            start: number("start")?,
            end: number("end")?,
            number_of_results: number("numberOfResults")?.unwrap_or(25).clamp(1, 500) as usize,
            start_row: number("startRow")?.unwrap_or(0).max(0) as usize,
            ascending: order.ends_with("asc"),
        })
    }

    /// Applies the criteria: `(page, total matching)`.
    pub fn apply(&self, mut events: Vec<EventLog>) -> (Vec<EventLog>, usize) {
        events.retain(|e| {
            self.message
                .as_ref()
                .is_none_or(|m| e.message.to_lowercase().contains(m))
                && self
                    .log_type
                    .as_ref()
                    .is_none_or(|t| e.log_type.eq_ignore_ascii_case(t))
                && self.start.is_none_or(|s| e.insert_instant >= s)
                && self.end.is_none_or(|s| e.insert_instant <= s)
        });
        events.sort_by_key(|e| (e.insert_instant, e.id));
        if !self.ascending {
            events.reverse();
        }
        let total = events.len();
        let page = events
            .into_iter()
            .skip(self.start_row)
            .take(self.number_of_results)
            .collect();
        (page, total)
    }
}

fn bad(name: &str) -> ApiError {
    ApiError::field(&format!("search.{name}"), "invalid", "Expected a number.")
}

/// `POST /api/system/event-log/search` (`{"search": {...}}`) or `GET` with query parameters.
pub async fn search(
    request: &PluginRequest,
    context: &Env<'_>,
) -> Result<PluginResponse, ApiError> {
    system_api_key(request, context)?;
    let members = SearchMembers::of(request)?;
    let criteria = Criteria::from_lookup(&|name| members.get(name))?;
    let events = context.records.list_events(SEARCH_WINDOW).await?;
    let (page, total) = criteria.apply(events);
    Ok(PluginResponse::json(
        200,
        &json!({ "eventLogs": page, "total": total }),
    ))
}

/// `GET /api/system/event-log/{eventLogId}`.
pub async fn retrieve(
    request: &PluginRequest,
    context: &Env<'_>,
) -> Result<PluginResponse, ApiError> {
    system_api_key(request, context)?;
    let raw = request.path_param("eventLogId").unwrap_or_default();
    let id: i64 = raw.parse().map_err(|_| {
        ApiError::field("eventLogId", "invalid", "The eventLogId must be a number.")
    })?;
    let event = context
        .records
        .list_events(SEARCH_WINDOW)
        .await?
        .into_iter()
        .find(|e| e.id == id)
        .ok_or(ApiError::NotFound)?;
    Ok(PluginResponse::json(200, &json!({ "eventLog": event })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, at: i64, message: &str, log_type: &str) -> EventLog {
        EventLog {
            id,
            insert_instant: at,
            message: message.into(),
            log_type: log_type.into(),
        }
    }

    #[test]
    fn criteria_filter_sort_and_page() {
        let events = vec![
            event(1, 100, "External JWT login A", "Debug"),
            event(2, 200, "something else", "Information"),
            event(3, 300, "external jwt login B", "Debug"),
        ];
        let c = Criteria::from_lookup(&|name| match name {
            "message" => Some(json!("*External JWT*")),
            "numberOfResults" => Some(json!("1")),
            _ => None,
        })
        .expect("criteria");
        let (page, total) = c.apply(events.clone());
        assert_eq!(total, 2);
        assert_eq!(page[0].id, 3);
        let c = Criteria::from_lookup(&|name| match name {
            "type" => Some(json!("debug")),
            "orderBy" => Some(json!("insertInstant ASC")),
            "start" => Some(json!(50)),
            "end" => Some(json!(250)),
            _ => None,
        })
        .expect("criteria");
        let (page, total) = c.apply(events);
        assert_eq!((total, page[0].id), (1, 1));
        assert!(Criteria::from_lookup(&|name| (name == "start").then(|| json!("x"))).is_err());
    }

    #[test]
    fn debug_logs_only_when_enabled() {
        let mut off = DebugLog::new(false);
        off.line("x");
        assert_eq!(off.message("h"), None);
        let mut on = DebugLog::new(true);
        assert_eq!(on.message("h"), None);
        on.line("one");
        on.line("two");
        assert_eq!(on.message("h").as_deref(), Some("h\n  - one\n  - two"));
    }
}
