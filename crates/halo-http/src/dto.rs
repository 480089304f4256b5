//! Wire shapes. Only this crate derives serde for the wire; domain and port types stay plain.

use halo_core::SeedReport;
use halo_domain::{DriftEntry, DriftReport};
use halo_ports::ChatSession;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

#[derive(Deserialize, ToSchema)]
pub struct PhoneBody {
    pub phone: String,
}

#[derive(Deserialize, ToSchema)]
pub struct VerifyBody {
    pub phone: String,
    pub code: String,
}

#[derive(Deserialize, ToSchema)]
pub struct RefreshBody {
    pub refresh_token: String,
}

#[derive(Deserialize, ToSchema)]
pub struct LoginBody {
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

/// `minutes` arrives as any JSON integer so an out-of-range value gets a clear 422, not a
/// deserialization error.
#[derive(Deserialize, ToSchema)]
pub struct ChatRequestBody {
    pub minutes: i64,
    pub mitra_id: Option<Uuid>,
}

#[derive(Deserialize, ToSchema)]
pub struct MinutesBody {
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
    pub page: Option<u32>,
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

#[derive(Deserialize, ToSchema)]
pub struct NewMitra {
    pub phone: String,
    pub display_name: String,
}

#[derive(Deserialize, ToSchema)]
pub struct MitraPatch {
    pub is_active: bool,
}

#[derive(Deserialize, ToSchema)]
pub struct RerouteBody {
    pub mitra_id: Uuid,
    #[serde(default)]
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

/// Every error: `{"error":{"code":"UPPER_SNAKE","message":"..."}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
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

/// The documented shape of `PATCH /internal/config`: any subset of the settings. The handler
/// reads the body as a map so that an unknown key is a 422 naming it.
#[derive(ToSchema)]
#[allow(dead_code, reason = "documentation schema only")]
pub struct SettingsPatch {
    pub max_customers_per_mitra: Option<u32>,
    pub stale_after_seconds: Option<u32>,
    pub beacon_cache_ttl_seconds: Option<u32>,
    pub blast_timeout_seconds: Option<u32>,
    pub payment_timeout_seconds: Option<u32>,
    pub heartbeat_interval_seconds: Option<u32>,
    pub max_open_requests_per_customer: Option<u32>,
}
