//! Wire shapes. Only this crate derives serde for the wire; domain and port types stay plain.

use halo_core::SeedReport;
use halo_domain::{DriftEntry, DriftReport};
use halo_ports::ChatSession;
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

#[derive(Deserialize, ToSchema)]
pub struct PhoneBody {
    /// E.164: `+` and 8 to 15 digits (spaces and hyphens are ignored).
    #[schema(
        pattern = r"^[ -]*\+(?:[ -]*[0-9]){8,15}[ -]*$",
        example = "+6281234567890"
    )]
    pub phone: String,
}

#[derive(Deserialize, ToSchema)]
pub struct VerifyBody {
    /// E.164: `+` and 8 to 15 digits (spaces and hyphens are ignored).
    #[schema(
        pattern = r"^[ -]*\+(?:[ -]*[0-9]){8,15}[ -]*$",
        example = "+6281234567890"
    )]
    pub phone: String,
    /// The code sent by SMS; surrounding whitespace is ignored. Any other string answers 401
    /// `INVALID_OTP`.
    #[schema(example = "000000")]
    pub code: String,
}

#[derive(Deserialize, ToSchema)]
pub struct RefreshBody {
    pub refresh_token: String,
}

/// At most this many characters in an operator's email (RFC 5321's limit on a path).
pub const MAX_EMAIL_CHARS: usize = 254;

#[derive(Deserialize, ToSchema)]
pub struct LoginBody {
    /// Compared without case and surrounding whitespace. No NUL character.
    #[schema(
        max_length = 254,
        pattern = r"^[^\x00]*$",
        example = "operator@halo.local"
    )]
    pub email: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

impl From<halo_auth::TokenPair> for Tokens {
    fn from(pair: halo_auth::TokenPair) -> Self {
        Self {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            expires_in: pair.expires_in,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub role: &'static str,
    pub display_name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    #[serde(flatten)]
    pub tokens: Tokens,
    pub user: User,
}

#[derive(Serialize, ToSchema)]
pub struct Ok {
    pub ok: bool,
}

pub const OK: Ok = Ok { ok: true };

#[derive(Serialize, ToSchema)]
pub struct MitraStatus {
    pub is_online: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_heartbeat_at: Option<OffsetDateTime>,
    pub active_sessions: u32,
    pub max_customers: u32,
}

#[derive(Serialize, ToSchema)]
pub struct Online {
    pub is_online: bool,
}

#[derive(Serialize, ToSchema)]
pub struct HeartbeatAck {
    pub ok: bool,
    pub is_online: bool,
    pub interval_seconds: u32,
}

#[derive(Serialize, ToSchema)]
pub struct Availability {
    pub available: bool,
    pub count: u32,
}

/// An integer as JSON Schema reads one: `15` and `15.0` alike. Integers beyond `i64` saturate,
/// so the range check that follows refuses them with its own message.
pub fn whole_number(number: &serde_json::Number) -> Option<i64> {
    if let Some(n) = number.as_i64() {
        return Some(n);
    }
    if number.as_u64().is_some() {
        return Some(i64::MAX);
    }
    // `as` saturates: a float beyond i64 lands on a bound the range check refuses.
    number
        .as_f64()
        .filter(|f| f.is_finite() && f.fract() == 0.0)
        .map(|f| f as i64)
}

/// `whole_number` for serde: anything that is not an integer is a deserialization error (422).
fn integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    whole_number(&number)
        .ok_or_else(|| serde::de::Error::custom(format!("expected an integer, got {number}")))
}

// `minutes` arrives as any JSON integer so an out-of-range value gets a clear 422 naming the
// range, not a deserialization error.
#[derive(Deserialize, ToSchema)]
pub struct ChatRequestBody {
    /// Minutes bought: 1 to 240.
    #[serde(deserialize_with = "integer")]
    #[schema(minimum = 1, maximum = 240, example = 15)]
    pub minutes: i64,
    /// A targeted request ("chat again") to this mitra instead of a blast to every available one.
    pub mitra_id: Option<Uuid>,
}

#[derive(Deserialize, ToSchema)]
pub struct MinutesBody {
    /// Minutes added: 1 to 240.
    #[serde(deserialize_with = "integer")]
    #[schema(minimum = 1, maximum = 240, example = 15)]
    pub minutes: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ChatRequestCreated {
    pub session_id: Uuid,
    pub status: &'static str,
    pub notified: usize,
}

#[derive(Serialize, ToSchema)]
pub struct Session {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub mitra_id: Option<Uuid>,
    pub status: &'static str,
    pub minutes: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub accepted_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ends_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    pub end_reason: Option<String>,
}

impl From<ChatSession> for Session {
    fn from(s: ChatSession) -> Self {
        Self {
            id: s.id,
            customer_id: s.customer_id,
            mitra_id: s.mitra_id.map(|m| m.uuid()),
            status: s.status.as_str(),
            minutes: s.minutes,
            created_at: s.created_at,
            accepted_at: s.accepted_at,
            ends_at: s.ends_at,
            ended_at: s.ended_at,
            end_reason: s.end_reason,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Requests {
    pub requests: Vec<Session>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// 1-based page number (default 1; 0 reads as 1).
    #[param(value_type = Option<u64>, minimum = 0, maximum = 4294967295.0)]
    pub page: Option<u32>,
    /// Mitras per page (default 20), clamped to 1..=100.
    #[param(value_type = Option<u64>, minimum = 0, maximum = 4294967295.0)]
    pub per_page: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct MitraView {
    pub id: Uuid,
    pub phone: String,
    pub display_name: String,
    pub is_active: bool,
    pub deactivated: bool,
    pub is_online: bool,
    pub heartbeat_age_seconds: Option<i64>,
    pub active_sessions: u32,
}

#[derive(Serialize, ToSchema)]
pub struct MitraList {
    pub mitras: Vec<MitraView>,
    pub page: u32,
    pub per_page: u32,
    pub total: u64,
}

/// At most this many characters in a display name.
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;

#[derive(Deserialize, ToSchema)]
pub struct NewMitra {
    /// E.164: `+` and 8 to 15 digits (spaces and hyphens are ignored).
    #[schema(
        pattern = r"^[ -]*\+(?:[ -]*[0-9]){8,15}[ -]*$",
        example = "+6281234567890"
    )]
    pub phone: String,
    /// 1 to 100 characters, not only whitespace, no control character (U+0000–U+001F,
    /// U+007F–U+009F); stored without its surrounding whitespace. The pattern spells out the
    /// whitespace `char::is_whitespace` knows, so every regex dialect reads it alike.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$",
        example = "Sari"
    )]
    pub display_name: String,
}

#[derive(Deserialize, ToSchema)]
pub struct MitraPatch {
    pub is_active: bool,
}

#[derive(Deserialize, ToSchema)]
pub struct RerouteBody {
    pub mitra_id: Uuid,
    /// Move the session even when the target mitra is not available (it must be active).
    #[serde(default)]
    #[schema(default = false)]
    pub force: bool,
}

#[derive(Serialize, ToSchema)]
pub struct DashboardStats {
    pub online_mitras: u64,
    pub available_mitras: usize,
    pub active_sessions: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Drift {
    pub in_sync: bool,
    pub missing: Vec<DriftItem>,
    pub extra: Vec<DriftItem>,
    pub different: Vec<DriftItem>,
}

#[derive(Serialize, ToSchema)]
pub struct DriftItem {
    pub kind: &'static str,
    pub member: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<u32>,
}

fn items(entries: Vec<DriftEntry>) -> Vec<DriftItem> {
    entries
        .into_iter()
        .map(|e| DriftItem {
            kind: e.kind.as_str(),
            member: e.member,
            expected: e.expected,
            actual: e.actual,
        })
        .collect()
}

impl From<DriftReport> for Drift {
    fn from(r: DriftReport) -> Self {
        Self {
            in_sync: r.is_empty(),
            missing: items(r.missing),
            extra: items(r.extra),
            different: items(r.different),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Seeded {
    pub online: usize,
    pub deactivated: usize,
    pub with_sessions: usize,
}

impl From<SeedReport> for Seeded {
    fn from(r: SeedReport) -> Self {
        Self {
            online: r.online,
            deactivated: r.deactivated,
            with_sessions: r.with_sessions,
        }
    }
}

/// Which app an auth route serves: `mitra` or `client` (customers).
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AppKind {
    Mitra,
    Client,
}

impl AppKind {
    pub const fn role(self) -> halo_domain::Role {
        match self {
            Self::Mitra => halo_domain::Role::Mitra,
            Self::Client => halo_domain::Role::Customer,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Providers {
    pub providers: Vec<&'static str>,
}

#[derive(Serialize, ToSchema)]
pub struct WhoAmI {
    pub user_id: Uuid,
    pub role: &'static str,
}

/// Every error: `{"error":{"code":"UPPER_SNAKE","message":"..."}}`. Its schema, with the codes
/// of each status, is written by `openapi.rs`.
#[derive(Serialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize)]
pub struct ErrorDetail {
    pub code: &'static str,
    pub message: String,
    /// With `OPEN_REQUEST_EXISTS`: the customer's open request (resume or cancel it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_session_id: Option<Uuid>,
}

/// `app_config` as the control centre reads it (and, every field optional, changes it).
#[derive(Serialize, ToSchema)]
pub struct Settings {
    pub max_customers_per_mitra: u32,
    pub stale_after_seconds: u32,
    pub beacon_cache_ttl_seconds: u32,
    pub blast_timeout_seconds: u32,
    pub payment_timeout_seconds: u32,
    pub heartbeat_interval_seconds: u32,
    pub max_open_requests_per_customer: u32,
    pub blast_max_recipients: u32,
    pub offer_timeout_seconds: u32,
    pub missed_offers_before_away: u32,
    /// 0 or 1.
    pub queue_when_unavailable: u32,
    pub queue_max_wait_seconds: u32,
}

impl From<halo_domain::AppSettings> for Settings {
    fn from(s: halo_domain::AppSettings) -> Self {
        use halo_domain::SettingKey as K;
        Self {
            max_customers_per_mitra: s.get(K::MaxCustomersPerMitra),
            stale_after_seconds: s.get(K::StaleAfterSeconds),
            beacon_cache_ttl_seconds: s.get(K::BeaconCacheTtlSeconds),
            blast_timeout_seconds: s.get(K::BlastTimeoutSeconds),
            payment_timeout_seconds: s.get(K::PaymentTimeoutSeconds),
            heartbeat_interval_seconds: s.get(K::HeartbeatIntervalSeconds),
            max_open_requests_per_customer: s.get(K::MaxOpenRequestsPerCustomer),
            blast_max_recipients: s.get(K::BlastMaxRecipients),
            offer_timeout_seconds: s.get(K::OfferTimeoutSeconds),
            missed_offers_before_away: s.get(K::MissedOffersBeforeAway),
            queue_when_unavailable: s.get(K::QueueWhenUnavailable),
            queue_max_wait_seconds: s.get(K::QueueMaxWaitSeconds),
        }
    }
}

/// `GET /internal/config/history?limit=N`: the newest N changes (default 50, at most 500).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// One audited settings change: who changed which key from what to what, when.
#[derive(Serialize, ToSchema)]
pub struct SettingChange {
    pub key: String,
    pub old_value: i64,
    pub new_value: i64,
    /// The operator; `null` for a change made outside the control centre.
    pub changed_by: Option<uuid::Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub changed_at: time::OffsetDateTime,
}

impl From<halo_ports::SettingChange> for SettingChange {
    fn from(c: halo_ports::SettingChange) -> Self {
        Self {
            key: c.key,
            old_value: c.old,
            new_value: c.new,
            changed_by: c.changed_by,
            changed_at: c.changed_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SettingsHistory {
    pub changes: Vec<SettingChange>,
}

// The handler reads the body as a map, so that an unknown key is a 422 naming it; this is its
// documented shape. The ranges are `SettingKey::range` (a unit test holds them equal);
// `minProperties` is set in `openapi.rs` (utoipa 5.5 writes `min_properties` as `maxProperties`).
/// Any non-empty subset of the settings, each an integer in its range. After the change
/// `stale_after_seconds` must still be at least twice `heartbeat_interval_seconds` (422
/// `VALIDATION_FAILED` otherwise).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "documentation schema only")]
pub struct SettingsPatch {
    #[schema(minimum = 1, maximum = 50, nullable = false)]
    pub max_customers_per_mitra: Option<u32>,
    #[schema(minimum = 5, maximum = 3600, nullable = false)]
    pub stale_after_seconds: Option<u32>,
    #[schema(minimum = 1, maximum = 300, nullable = false)]
    pub beacon_cache_ttl_seconds: Option<u32>,
    #[schema(minimum = 5, maximum = 3600, nullable = false)]
    pub blast_timeout_seconds: Option<u32>,
    #[schema(minimum = 5, maximum = 86400, nullable = false)]
    pub payment_timeout_seconds: Option<u32>,
    #[schema(minimum = 5, maximum = 600, nullable = false)]
    pub heartbeat_interval_seconds: Option<u32>,
    #[schema(minimum = 1, maximum = 10, nullable = false)]
    pub max_open_requests_per_customer: Option<u32>,
    #[schema(minimum = 1, maximum = 10000, nullable = false)]
    pub blast_max_recipients: Option<u32>,
    /// 0: one round, as long as the blast.
    #[schema(minimum = 0, maximum = 3600, nullable = false)]
    pub offer_timeout_seconds: Option<u32>,
    #[schema(minimum = 0, maximum = 100, nullable = false)]
    pub missed_offers_before_away: Option<u32>,
    #[schema(minimum = 0, maximum = 1, nullable = false)]
    pub queue_when_unavailable: Option<u32>,
    #[schema(minimum = 30, maximum = 86400, nullable = false)]
    pub queue_max_wait_seconds: Option<u32>,
}

/// `event: offer` on a mitra's stream: a blast reached it.
#[derive(Serialize, ToSchema)]
pub struct OfferEvent {
    pub session_id: Uuid,
    pub minutes: u32,
    /// Accepting after this is refused (the blast timeout).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

/// `event: offer_withdrawn` on a mitra's stream: the offer is no longer open.
#[derive(Serialize, ToSchema)]
pub struct OfferWithdrawnEvent {
    pub session_id: Uuid,
    #[schema(pattern = "^(taken|expired|cancelled)$")]
    pub reason: &'static str,
}

/// `event: session` on a mitra's stream: one of its sessions changed (`reassigned`: an
/// operator moved it to another mitra).
#[derive(Serialize, ToSchema)]
pub struct MitraSessionEvent {
    pub session_id: Uuid,
    #[schema(pattern = "^(pending_payment|active|ended|cancelled|reassigned)$")]
    pub status: &'static str,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<OffsetDateTime>,
}

/// `event: session` on a customer's stream: its request or session changed.
#[derive(Serialize, ToSchema)]
pub struct ClientSessionEvent {
    pub session_id: Uuid,
    #[schema(pattern = "^(queued|searching|pending_payment|active|ended|failed|cancelled)$")]
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mitra_id: Option<Uuid>,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<OffsetDateTime>,
    /// While `queued`: 1 = the next request to be offered.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub queue_position: Option<u32>,
    /// While `queued`: a moving average of recent waits in line (absent before anyone
    /// waited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_wait_seconds: Option<u32>,
}

/// `event: away` on a mitra's stream: the system set it offline — it let
/// `missed_offers_before_away` offers in a row expire (`missed_offers`), or an operator
/// deactivated it (`deactivated`: the stream ends after this event).
#[derive(Serialize, ToSchema)]
pub struct AwayEvent {
    #[schema(pattern = "^(missed_offers|deactivated)$")]
    pub reason: &'static str,
}

/// The `data:` of a mitra stream's events, by `event:` name.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum MitraEvent {
    Offer(OfferEvent),
    OfferWithdrawn(OfferWithdrawnEvent),
    Session(MitraSessionEvent),
    Away(AwayEvent),
}

/// `event: availability` on a customer's stream: the number of available mitras went from
/// zero to non-zero or back (the count it was seen with; the beacon has the live one).
#[derive(Serialize, ToSchema)]
pub struct AvailabilityEvent {
    pub available: bool,
    pub count: u32,
}

/// The `data:` of a customer stream's events, by `event:` name.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ClientEvent {
    Session(ClientSessionEvent),
    Availability(AvailabilityEvent),
}
