//! The compact form of a verified token that the verified-token cache keeps and the proxy's
//! hot path reads: the parsed times and ids, interned roles, key id, issuer and audience, and
//! the claims the configuration names already rendered — the identity headers' values and the
//! results of the routes' exact-match claim checks. The full claim map is not kept: paths that
//! need it (the REST API's validate, plugins) decode it again from the token they hold (see
//! [`crate::auth::tokens::Tokens::verify_bytes`]).
//!
//! What is rendered is fixed by a [`ClaimPlan`] made from the configuration's routes when the
//! token service is built; a reload builds a new service with a new plan and an empty cache,
//! so a value rendered for an old configuration is never served.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use gatehouse_plugin_api::claim_headers::Rendered;
use gatehouse_plugin_api::{ClaimHeader, VerifiedClaims};
use serde_json::Value;
use uuid::Uuid;

use crate::auth::issuers::policy::{audiences_of, claim_at, same_value};

/// The claims the configuration reads from a token on the hot path: the claims of every
/// route's identity headers (forward-auth answers carry the same), and every route's
/// exact-match claim checks.
#[derive(Debug, Default, PartialEq)]
pub struct ClaimPlan {
    headers: Vec<String>,
    checks: Vec<(String, Value)>,
}

impl ClaimPlan {
    /// The plan of these header claims and claim checks (a configuration's routes give them:
    /// see [`crate::server`]), each claim and check once, in their first order.
    pub fn new(
        headers: impl IntoIterator<Item = String>,
        checks: impl IntoIterator<Item = (String, Value)>,
    ) -> Self {
        let mut plan = ClaimPlan::default();
        for claim in headers {
            if !plan.headers.contains(&claim) {
                plan.headers.push(claim);
            }
        }
        for check in checks {
            if !plan.checks.contains(&check) {
                plan.checks.push(check);
            }
        }
        plan
    }

    /// A plan of these header claims and claim checks (for tests and tools).
    pub fn of(headers: &[&str], checks: &[(&str, Value)]) -> Self {
        ClaimPlan {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            checks: checks
                .iter()
                .map(|(path, wanted)| (path.to_string(), wanted.clone()))
                .collect(),
        }
    }
}

/// What the time and revocation checks read of a verified token, in either form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts<'a> {
    /// `exp`, seconds.
    pub exp: i64,
    /// `nbf`, seconds, when present.
    pub not_before: Option<i64>,
    /// `iat`, seconds (0 when absent).
    pub iat: i64,
    /// `sub` as a UUID.
    pub subject: Option<Uuid>,
    /// `applicationId`.
    pub application_id: Option<Uuid>,
    /// `sid`.
    pub session_id: Option<Uuid>,
    /// The application ids `aud` names (empty without `aud`): a token names its application
    /// there too (the gateway's own token for an application the user is not registered to
    /// has no `applicationId`), so revoking the application's tokens covers them.
    pub audience: &'a [Uuid],
}

impl Facts<'_> {
    /// The facts of a token's full claims.
    pub fn of(claims: &VerifiedClaims) -> Facts<'_> {
        Facts {
            exp: claims.exp,
            not_before: claims.not_before,
            iat: claims.iat,
            subject: claims.subject,
            application_id: claims.application_id,
            session_id: claims.session_id,
            audience: claims.audience.as_deref().unwrap_or_default(),
        }
    }
}

/// What many tokens share: the plan they were rendered under, the key that verified them,
/// their issuer, roles and audiences, and the outcomes of the plan's claim checks. Interned
/// (see [`Interner`]), so an entry holds one thin pointer to it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Shape {
    /// The plan, compared and hashed by its address (one plan per token service).
    plan: PlanRef,
    /// `kid` of the key that verified the token.
    key_id: Arc<str>,
    /// `iss`, when a string.
    issuer: Option<Arc<str>>,
    /// The roles, as the policy reads them.
    roles: Arc<[Arc<str>]>,
    /// The application ids `aud` names; `None` without `aud`.
    audience: Option<Arc<[Uuid]>>,
    /// The strings `aud` names (a route's `audiences` compare them).
    audience_texts: Arc<[Arc<str>]>,
    /// The outcome of each of the plan's claim checks, in its order.
    checks: Box<[bool]>,
}

/// A [`ClaimPlan`] compared and hashed by address: two shapes are one only under one plan.
#[derive(Debug, Clone)]
struct PlanRef(Arc<ClaimPlan>);

impl PartialEq for PlanRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for PlanRef {}

impl Hash for PlanRef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.0), state);
    }
}

/// `nbf` of a token without one. A token whose `nbf` is this very second (the start of time)
/// gets the same verdict from the time check as one without `nbf` (see
/// [`crate::auth::tokens`]' `check_times_with`), so the two need not be told apart.
const NO_NOT_BEFORE: i64 = i64::MIN;

/// A UUID claim kept inline: its 16 bytes, present when its bit is set in
/// [`CachedToken::present`].
type RawId = [u8; 16];

/// The bits of [`CachedToken::present`].
const HAS_APPLICATION: u8 = 1;
const HAS_TENANT: u8 = 2;
const HAS_SESSION: u8 = 4;

/// A verified token as the cache keeps it (see the module's documentation): times and ids
/// inline, what many tokens share behind one interned pointer, the rendered header values in
/// one slice. 136 bytes, so with its `Arc`'s counts one allocation of mimalloc's 160-byte
/// class.
#[derive(Debug)]
pub struct CachedToken {
    /// `exp`, seconds.
    pub exp: i64,
    /// `iat`, seconds (0 when absent).
    pub iat: i64,
    /// `nbf`, seconds, or [`NO_NOT_BEFORE`].
    not_before: i64,
    /// `sub` as a UUID, when it is one.
    pub subject: Option<Uuid>,
    /// Which of the ids below are present (`HAS_*` bits).
    present: u8,
    /// The bytes this entry holds beyond its struct and its slice of header values that no
    /// interner holds: its own shape, header values and `sub` text (see
    /// [`CachedToken::estimated_bytes`]). In what would be padding.
    own_bytes: u32,
    /// `applicationId`, `tid`, `sid`, in that order.
    ids: [RawId; 3],
    shape: Arc<Shape>,
    /// The rendered header value of each of the plan's header claims, in its order.
    headers: Box<[Rendered]>,
    /// `sub` when it is a string but not a UUID in its canonical form, lowercase and
    /// hyphenated (the access log shows it).
    subject_text: Option<Box<str>>,
}

impl CachedToken {
    /// What the time and revocation checks read.
    pub fn facts(&self) -> Facts<'_> {
        Facts {
            exp: self.exp,
            not_before: self.not_before(),
            iat: self.iat,
            subject: self.subject,
            application_id: self.application_id(),
            session_id: self.session_id(),
            audience: self.shape.audience.as_deref().unwrap_or_default(),
        }
    }

    /// The id of bit `bit` (slot `slot` of `ids`), when present.
    fn id(&self, bit: u8, slot: usize) -> Option<Uuid> {
        (self.present & bit != 0).then(|| Uuid::from_bytes(self.ids[slot]))
    }

    /// `nbf`, seconds, when present.
    pub fn not_before(&self) -> Option<i64> {
        (self.not_before != NO_NOT_BEFORE).then_some(self.not_before)
    }

    /// `applicationId`, when present and a UUID.
    pub fn application_id(&self) -> Option<Uuid> {
        self.id(HAS_APPLICATION, 0)
    }

    /// `tid`, when present and a UUID.
    pub fn tenant_id(&self) -> Option<Uuid> {
        self.id(HAS_TENANT, 1)
    }

    /// `sid`, when present and a UUID.
    pub fn session_id(&self) -> Option<Uuid> {
        self.id(HAS_SESSION, 2)
    }

    /// `kid` of the key that verified the token.
    pub fn key_id(&self) -> &str {
        &self.shape.key_id
    }

    /// `iss`, when a string.
    pub fn issuer(&self) -> Option<&str> {
        self.shape.issuer.as_deref()
    }

    /// The roles, as the policy reads them.
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.shape.roles.iter().map(|r| &**r)
    }

    /// True when the token may be used for `application`: its `aud`, when present, names it.
    pub fn audience_allows(&self, application: Uuid) -> bool {
        self.shape
            .audience
            .as_ref()
            .is_none_or(|audience| audience.contains(&application))
    }

    /// The strings `aud` names.
    pub fn audiences(&self) -> impl Iterator<Item = &str> {
        self.shape.audience_texts.iter().map(|a| &**a)
    }

    /// `sub` for the access log: the UUID, or the text of a string that is not one.
    pub fn subject_text(&self) -> Option<&str> {
        self.subject_text.as_deref()
    }

    /// Claim `name` as a header value, rendered when the token was verified. A claim the plan
    /// does not name is unrepresentable (refused rather than silently left out).
    pub fn header_value(&self, name: &str) -> ClaimHeader<'_> {
        let slot = self.shape.plan.0.headers.iter().position(|h| h == name);
        match slot.and_then(|i| self.headers.get(i)) {
            Some(Rendered::Absent) => ClaimHeader::Absent,
            Some(Rendered::Value(value)) => ClaimHeader::Value(value),
            Some(Rendered::Unrepresentable) | None => ClaimHeader::Unrepresentable,
        }
    }

    /// Whether the claim at `path` has exactly the value `wanted`, as checked when the token
    /// was verified; false for a check the plan does not name.
    pub fn claim_matches(&self, path: &str, wanted: &Value) -> bool {
        self.shape
            .plan
            .0
            .checks
            .iter()
            .position(|(p, w)| p == path && w == wanted)
            .and_then(|i| self.shape.checks.get(i).copied())
            .unwrap_or(false)
    }

    /// Roughly what this entry costs in memory (bytes), on the high side so the byte bound
    /// holds: the struct with its `Arc`'s counts rounded up to a multiple of 32 (the
    /// allocator's size classes are no coarser here), its slice of header values, what it
    /// holds that no interner holds (a value, a shape, a `sub` text the interner is full for,
    /// each counted with its allocations' headers: see [`value_bytes`], [`shape_bytes`]),
    /// and 96 for the cache's own bookkeeping (its slot, table and ghost entries). What an
    /// interner holds is bounded by its [`INTERNED`] entries, not by the cache.
    pub fn estimated_bytes(&self) -> u64 {
        let size = (std::mem::size_of::<CachedToken>() + 16).next_multiple_of(32)
            + self.headers.len() * std::mem::size_of::<Rendered>()
            + self.own_bytes as usize
            + 96;
        size as u64
    }
}

/// What a header value of its own costs besides its place in the slice: its buffer (up to 16
/// bytes of rounding) and the shared header its first clone allocates (32).
fn value_bytes(value: &http::HeaderValue) -> usize {
    value.len() + 48
}

/// What a shape of its own costs: itself and its `Arc`'s counts, and its strings and lists
/// counted as if none were shared (32 bytes per string for its counts and rounding, 16 per
/// list).
fn shape_bytes(shape: &Shape) -> usize {
    let text = |t: &Arc<str>| 32 + t.len();
    let texts = |list: &[Arc<str>]| 16 + list.iter().map(|t| 16 + text(t)).sum::<usize>();
    std::mem::size_of::<Shape>()
        + 16
        + text(&shape.key_id)
        + shape.issuer.as_ref().map_or(0, text)
        + texts(&shape.roles)
        + texts(&shape.audience_texts)
        + shape.audience.as_ref().map_or(0, |a| 16 + a.len() * 16)
        + shape.checks.len()
}

/// The rendered values of one header slot, by their bytes.
type ValuesOfSlot = HashMap<Box<[u8]>, http::HeaderValue>;

/// The most distinct values one interner keeps; past it, values are allocated per entry.
const INTERNED: usize = 4096;

/// The largest shape (bytes, as [`shape_bytes`] counts them) the interner keeps, so that the
/// shapes it holds outside the cache's byte bound stay within [`INTERNED`] times this (4 MiB);
/// a larger one (a token with hundreds of roles) is its entry's own and weighs in its estimate.
const LARGEST_SHARED_SHAPE: usize = 1024;

/// Shares the strings and lists many tokens repeat (key ids, issuers, roles, audiences, the
/// shapes made of them, and header values such as the roles'), up to [`INTERNED`] of each
/// kind.
#[derive(Default)]
pub struct Interner {
    strings: Mutex<HashSet<Arc<str>>>,
    lists: Mutex<HashSet<Arc<[Arc<str>]>>>,
    audiences: Mutex<HashSet<Arc<[Uuid]>>>,
    shapes: Mutex<HashSet<Arc<Shape>>>,
    /// Per header slot: rendered values by their bytes. A slot whose values are all distinct
    /// (a subject) fills up and then stops interning.
    values: Mutex<HashMap<usize, ValuesOfSlot>>,
}

/// `value` from `set`, or `value` added to it while it has room.
fn shared<T: Eq + Hash + ?Sized>(set: &Mutex<HashSet<Arc<T>>>, value: Arc<T>) -> Arc<T> {
    held(set, value).0
}

/// [`shared`], and whether `set` holds the value returned (false once the set is full).
fn held<T: Eq + Hash + ?Sized>(set: &Mutex<HashSet<Arc<T>>>, value: Arc<T>) -> (Arc<T>, bool) {
    let Ok(mut set) = set.lock() else {
        return (value, false);
    };
    if let Some(found) = set.get(&value) {
        return (found.clone(), true);
    }
    let room = set.len() < INTERNED;
    if room {
        set.insert(value.clone());
    }
    (value, room)
}

impl Interner {
    fn string(&self, text: &str) -> Arc<str> {
        shared(&self.strings, Arc::from(text))
    }

    fn list<'a>(&self, items: impl Iterator<Item = &'a str>) -> Arc<[Arc<str>]> {
        let items: Vec<Arc<str>> = items.map(|s| self.string(s)).collect();
        shared(&self.lists, Arc::from(items))
    }

    /// `value` of header slot `slot`, shared when it can be; and whether the interner holds
    /// it (false once the slot's values are full).
    fn value(&self, slot: usize, value: &http::HeaderValue) -> (http::HeaderValue, bool) {
        let Ok(mut values) = self.values.lock() else {
            return (value.clone(), false);
        };
        let values = values.entry(slot).or_default();
        if let Some(found) = values.get(value.as_bytes()) {
            return (found.clone(), true);
        }
        let room = values.len() < INTERNED;
        if room {
            values.insert(value.as_bytes().into(), value.clone());
        }
        (value.clone(), room)
    }

    /// The compact form of `claims` under `plan`: the plan's header claims rendered (as
    /// [`VerifiedClaims::header_value`] renders them) and its claim checks applied.
    pub fn compact(&self, claims: &VerifiedClaims, plan: &Arc<ClaimPlan>) -> CachedToken {
        let map = &claims.claims;
        // What this entry holds that no interner does (see `CachedToken::estimated_bytes`).
        let mut own_bytes = 0;
        let headers = plan
            .headers
            .iter()
            .enumerate()
            .map(|(slot, name)| match claims.header_value(name) {
                ClaimHeader::Absent => Rendered::Absent,
                ClaimHeader::Value(value) => {
                    let (value, held) = self.value(slot, value);
                    if !held {
                        own_bytes += value_bytes(&value);
                    }
                    Rendered::Value(value)
                }
                ClaimHeader::Unrepresentable => Rendered::Unrepresentable,
            })
            .collect();
        let checks = plan
            .checks
            .iter()
            .map(|(path, wanted)| claim_at(map, path).is_some_and(|c| same_value(c, wanted)))
            .collect();
        let shape = Shape {
            plan: PlanRef(plan.clone()),
            key_id: self.string(&claims.key_id),
            issuer: map
                .get("iss")
                .and_then(Value::as_str)
                .map(|i| self.string(i)),
            roles: self.list(claims.roles.iter().map(String::as_str)),
            audience: claims
                .audience
                .as_ref()
                .map(|a| shared(&self.audiences, Arc::from(a.as_slice()))),
            audience_texts: self.list(audiences_of(map)),
            checks,
        };
        let bytes = shape_bytes(&shape);
        let (shape, shape_held) = match bytes <= LARGEST_SHARED_SHAPE {
            true => held(&self.shapes, Arc::new(shape)),
            false => (Arc::new(shape), false),
        };
        if !shape_held {
            own_bytes += bytes;
        }
        let sub = map.get("sub").and_then(Value::as_str);
        // A UUID written in another form (braces, upper case, no hyphens, a URN) is kept as
        // written too: the access log shows what the token said, not its canonical form.
        let subject_text: Option<Box<str>> = sub
            .filter(|text| claims.subject.is_none_or(|uuid| !is_canonical(uuid, text)))
            .map(Box::from);
        own_bytes += subject_text.as_ref().map_or(0, |s| s.len() + 16);
        let ids = [claims.application_id, claims.tenant_id, claims.session_id];
        let present = [HAS_APPLICATION, HAS_TENANT, HAS_SESSION]
            .iter()
            .zip(&ids)
            .filter(|(_, id)| id.is_some())
            .fold(0, |bits, (bit, _)| bits | bit);
        CachedToken {
            exp: claims.exp,
            iat: claims.iat,
            not_before: claims.not_before.unwrap_or(NO_NOT_BEFORE),
            subject: claims.subject,
            present,
            ids: ids.map(|id| id.map_or([0; 16], Uuid::into_bytes)),
            own_bytes: u32::try_from(own_bytes).unwrap_or(u32::MAX),
            shape,
            headers,
            subject_text,
        }
    }
}

/// True when `text` is `uuid` in its canonical form: lowercase and hyphenated.
fn is_canonical(uuid: Uuid, text: &str) -> bool {
    let mut buffer = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid.hyphenated().encode_lower(&mut buffer) == text
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    fn verified(claims: Value) -> VerifiedClaims {
        let Value::Object(map) = claims else {
            panic!("an object")
        };
        VerifiedClaims::from_claims(map, "k1".into()).expect("claims")
    }

    #[test]
    fn a_uuid_sub_in_another_form_is_kept_as_written() {
        let plan = Arc::new(ClaimPlan::of(&[], &[]));
        let interner = Interner::default();
        let sub = Uuid::new_v4();
        let upper = sub.to_string().to_uppercase();
        for written in [
            format!("{{{sub}}}"),
            upper,
            sub.simple().to_string(),
            sub.urn().to_string(),
        ] {
            let claims = json!({"exp": 100, "sub": written});
            let token = interner.compact(&verified(claims), &plan);
            // Revocations by user still cover it; the log shows what was written.
            assert_eq!(token.subject, Some(sub), "{written}");
            assert_eq!(token.subject_text(), Some(written.as_str()));
        }
        let claims = json!({"exp": 100, "sub": sub.to_string()});
        let token = interner.compact(&verified(claims), &plan);
        assert_eq!(token.subject_text(), None);
    }

    #[test]
    fn the_plan_is_rendered_and_checked_at_insert_and_nothing_else_is_kept() {
        let plan = Arc::new(ClaimPlan::of(
            &["sub", "roles", "email", "nested"],
            &[("org.tier", json!("gold")), ("level", json!(2))],
        ));
        let interner = Interner::default();
        let sub = Uuid::new_v4();
        let token = interner.compact(
            &verified(json!({
                "exp": 100, "iat": 50, "sub": sub, "iss": "acme.com", "aud": ["x", "y"],
                "roles": ["user", "admin"], "org": {"tier": "gold"}, "level": 2.0,
                "nested": {"a": 1}, "secret": "not kept"
            })),
            &plan,
        );
        let value = |text: &str| http::HeaderValue::from_str(text).expect("value");
        assert_eq!(
            token.header_value("sub"),
            ClaimHeader::Value(&value(&sub.to_string()))
        );
        assert_eq!(
            token.header_value("roles"),
            ClaimHeader::Value(&value("user,admin"))
        );
        assert_eq!(token.header_value("email"), ClaimHeader::Absent);
        assert_eq!(token.header_value("nested"), ClaimHeader::Absent);
        // Not in the plan: refused, never silently empty.
        assert_eq!(token.header_value("secret"), ClaimHeader::Unrepresentable);
        assert!(token.claim_matches("org.tier", &json!("gold")));
        assert!(token.claim_matches("level", &json!(2)));
        assert!(!token.claim_matches("org.tier", &json!("silver")));
        assert_eq!(token.audiences().collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(token.issuer(), Some("acme.com"));
        assert_eq!(token.subject, Some(sub));
        assert_eq!(token.subject_text(), None);
        assert!(
            token.estimated_bytes() < 1024,
            "{}",
            token.estimated_bytes()
        );
        // With its `Arc`'s counts, one allocation of the 160-byte class.
        assert!(std::mem::size_of::<CachedToken>() + 16 <= 160);
    }

    #[test]
    fn ids_and_times_read_back_as_the_full_claims_have_them() {
        let plan = Arc::new(ClaimPlan::of(&[], &[]));
        let interner = Interner::default();
        let (app, tenant, session) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let every = json!({"exp": 100, "iat": 5, "nbf": -7, "sub": "svc", "applicationId": app,
                           "tid": tenant, "sid": session});
        let partial = json!({"exp": 100, "applicationId": "not-a-uuid", "sid": session});
        for claims in [every, partial, json!({"exp": 1})] {
            let full = verified(claims);
            let token = interner.compact(&full, &plan);
            assert_eq!(token.facts(), Facts::of(&full));
            assert_eq!(token.tenant_id(), full.tenant_id);
            assert_eq!(token.application_id(), full.application_id);
            assert_eq!(token.not_before(), full.not_before);
        }
    }

    #[test]
    fn an_entry_weighs_what_no_interner_holds_for_it() {
        let plan = Arc::new(ClaimPlan::of(&["sub", "roles"], &[]));
        let interner = Interner::default();
        let token = |i: usize, role: &str| {
            let claims = json!({"exp": 100, "iss": "acme.com", "sub": Uuid::new_v4(),
                                "aud": "a", "roles": [role], "n": i});
            interner.compact(&verified(claims), &plan)
        };
        let first = token(0, "user");
        // Struct and `Arc` (160), two header slots (80), 96: the interner holds the rest.
        assert_eq!(first.estimated_bytes(), 160 + 80 + 96);
        // Fill the shapes (each with a role of its own) and the subject slot's values.
        for i in 1..=INTERNED {
            token(i, &format!("role-{i}"));
        }
        // Now the subject's value is the entry's own (36 + 48), the shape still shared.
        let shared = token(0, "user");
        assert!(Arc::ptr_eq(&shared.shape, &first.shape));
        assert_eq!(shared.estimated_bytes(), first.estimated_bytes() + 84);
        // A new shape is the entry's own too, and so is its roles' value.
        let own = token(0, "new-role");
        let extra = 84 + shape_bytes(&own.shape) as u64 + 8 + 48;
        assert_eq!(own.estimated_bytes(), first.estimated_bytes() + extra);
        // A large shape is never shared, so the cache's byte bound counts it.
        let roles: Vec<String> = (0..100).map(|i| format!("role-{i:05}")).collect();
        let claims = json!({"exp": 100, "roles": roles});
        let large = Interner::default().compact(&verified(claims), &plan);
        assert!(
            large.estimated_bytes() > 100 * 48,
            "{}",
            large.estimated_bytes()
        );
    }

    #[test]
    fn repeated_strings_and_lists_are_shared() {
        let plan = Arc::new(ClaimPlan::of(&["roles"], &[]));
        let interner = Interner::default();
        let claims = json!({"exp": 100, "iss": "acme.com", "roles": ["user"], "sub": "svc"});
        let a = interner.compact(&verified(claims.clone()), &plan);
        let b = interner.compact(&verified(claims), &plan);
        assert!(Arc::ptr_eq(&a.shape, &b.shape), "one shape");
        assert_eq!(a.roles().collect::<Vec<_>>(), ["user"]);
        assert_eq!(a.key_id(), "k1");
        assert_eq!(a.issuer(), Some("acme.com"));
        assert_eq!(a.subject_text(), Some("svc"));
        let (ClaimHeader::Value(x), ClaimHeader::Value(y)) =
            (a.header_value("roles"), b.header_value("roles"))
        else {
            panic!("values")
        };
        assert_eq!(x.as_bytes().as_ptr(), y.as_bytes().as_ptr(), "one copy");
    }
}
