//! `Gate` and `Gated`: any port, an in-memory fake or a real adapter, behind a switch a test
//! flips. A closed gate fails every call, or only the calls it names, as the port's
//! `Unavailable` (the store did not answer) without passing it on; and it journals every call
//! it saw, in order, so ports that share one gate show the order of their calls.
//!
//! `Gated<P>` implements the mirror's three parts, `AvailabilityTruth` and `AuthStore` for any
//! `P` that does. A call is named `"<port>.<method>"`: `mirror.heartbeat`, `truth.set_active`,
//! `auth.revoke_user_sessions`.

use async_trait::async_trait;
use halo_domain::{
    AvailabilityRules, Beacon, MirrorImage, MitraId, MitraState, Phone, Role, TruthSnapshot,
};
use halo_ports::{
    AuthStore, AvailabilityTruth, BeaconClaim, BeaconLock, BoxError, CapacityCount,
    HeartbeatOutcome, MirrorCoordination, MirrorError, MirrorHotPath, MirrorMaintenance,
    MitraFlags, OfflineSweep, OnlineReason, OtpCheck, Rotation, SeedWrite, TruthError, UserRecord,
};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// The switch, shared by every `Gated` port of a test that should fail together.
#[derive(Debug, Default)]
pub struct Gate {
    closed: AtomicBool,
    /// Calls that fail while the gate as a whole is open.
    closed_calls: Mutex<BTreeSet<&'static str>>,
    journal: Mutex<Vec<&'static str>>,
}

impl Gate {
    /// An open gate.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Every call fails from now on.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Every call goes through again, the ones closed by name too.
    pub fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
        lock(&self.closed_calls).clear();
    }

    /// `close` when `closed`, else `open`.
    pub fn set_closed(&self, closed: bool) {
        if closed {
            self.close();
        } else {
            self.open();
        }
    }

    /// From now on the calls named `call` (`"truth.set_online"`) fail; the others go through.
    pub fn close_call(&self, call: &'static str) {
        lock(&self.closed_calls).insert(call);
    }

    /// Every call the gate saw so far, passed or failed, in order.
    pub fn journal(&self) -> Vec<&'static str> {
        lock(&self.journal).clone()
    }

    /// Journals `call`; fails it when the gate is closed or it is closed by name.
    fn pass(&self, call: &'static str) -> Result<(), BoxError> {
        lock(&self.journal).push(call);
        if self.closed.load(Ordering::SeqCst) || lock(&self.closed_calls).contains(call) {
            return Err(format!("closed by the test's gate ({call})").into());
        }
        Ok(())
    }
}

/// A test that panicked while holding a lock leaves the data as it was: keep using it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `inner` behind `gate`: each call asks the gate first, then goes to `inner`.
pub struct Gated<P: ?Sized> {
    gate: Arc<Gate>,
    inner: Arc<P>,
}

impl<P: ?Sized> Gated<P> {
    pub fn new(inner: Arc<P>, gate: Arc<Gate>) -> Self {
        Self { gate, inner }
    }
}

/// `impl $port for Gated<P>` over any `P: $port`: every listed method asks the gate (as
/// `"$label.<method>"`, failing as `$error::Unavailable`) and then forwards to `P`; the tokens
/// after the list are items written out (methods the gate does not stand in front of).
macro_rules! gated {
    ($port:ident as $label:literal, $error:ident {
        $(fn $method:ident(&self $(, $arg:ident: $ty:ty)*) -> $ok:ty;)*
    } $($rest:tt)*) => {
        #[async_trait]
        impl<P: $port + ?Sized> $port for Gated<P> {
            $(
                async fn $method(&self $(, $arg: $ty)*) -> Result<$ok, $error> {
                    let call = concat!($label, ".", stringify!($method));
                    self.gate.pass(call).map_err($error::Unavailable)?;
                    self.inner.$method($($arg),*).await
                }
            )*
            $($rest)*
        }
    };
}

gated!(MirrorHotPath as "mirror", MirrorError {
    fn heartbeat(&self, id: MitraId, at: OffsetDateTime) -> HeartbeatOutcome;
    fn mark_online(&self, id: MitraId, at: OffsetDateTime, capacity: CapacityCount) -> ();
    fn mark_offline(&self, ids: &[MitraId]) -> ();
    fn set_deactivated(&self, id: MitraId, deactivated: bool) -> ();
    fn set_capacity(&self, id: MitraId, capacity: CapacityCount) -> ();
    fn is_deactivated(&self, id: MitraId) -> bool;
    fn mitra_states(&self, ids: &[MitraId]) -> Vec<MitraState>;
    fn mitra_state(&self, id: MitraId) -> MitraState;
    fn candidate_states(&self) -> Vec<(MitraId, MitraState)>;
    fn offer_candidates(
        &self, limit: usize, exclude: &BTreeSet<MitraId>, now: OffsetDateTime,
        rules: AvailabilityRules
    ) -> Vec<MitraId>;
    fn online_count(&self) -> u64;
});

gated!(MirrorCoordination as "mirror", MirrorError {
    fn claim_beacon(&self, lock_ttl: Duration) -> BeaconClaim;
    fn store_beacon(
        &self, beacon: Beacon, at: OffsetDateTime, ttl: Duration, lock: &BeaconLock
    ) -> ();
    fn bust_beacon(&self) -> ();
    fn try_lease(&self, name: &str, ttl: Duration) -> bool;
    fn publish_config_invalidate(&self) -> ();
});

gated!(MirrorMaintenance as "mirror", MirrorError {
    fn ping(&self) -> ();
    fn write_token(&self) -> u64;
    fn replace_all(&self, image: &MirrorImage, token: u64, now: OffsetDateTime) -> SeedWrite;
    fn read_image(&self) -> MirrorImage;
    fn is_seeded(&self) -> bool;
    fn fence_stale(&self, ids: &[MitraId], cutoff: OffsetDateTime) -> Vec<MitraId>;
    fn restore_online(&self, beats: &[(MitraId, OffsetDateTime)], token: u64) -> ();
    fn online_heartbeats(&self) -> Vec<(MitraId, Option<OffsetDateTime>)>;
}
    fn connection_drops(&self) -> u64 {
        self.inner.connection_drops()
    }
);

gated!(AvailabilityTruth as "truth", TruthError {
    fn ping(&self) -> ();
    fn set_online(&self, id: MitraId, online: bool, reason: OnlineReason) -> bool;
    fn set_offline_many(
        &self, ids: &[MitraId], reason: OnlineReason, stale_before: OffsetDateTime
    ) -> OfflineSweep;
    fn set_active(&self, id: MitraId, active: bool) -> ();
    fn heartbeat_fallback(&self, id: MitraId, at: OffsetDateTime) -> Option<MitraFlags>;
    fn mitra_flags(&self, id: MitraId) -> Option<MitraFlags>;
    fn count_open_sessions(&self, id: MitraId) -> CapacityCount;
    fn mitra_states(&self, ids: &[MitraId]) -> Vec<(MitraId, MitraState)>;
    fn candidate_states(&self) -> Vec<(MitraId, MitraState)>;
    fn offer_candidates(
        &self, limit: usize, exclude: &BTreeSet<MitraId>, fresh_since: OffsetDateTime,
        max_customers: u32
    ) -> Vec<(MitraId, MitraState)>;
    fn count_online(&self) -> u64;
    fn mirror_truth(&self) -> TruthSnapshot;
    fn record_heartbeats(&self, beats: &[(MitraId, OffsetDateTime)]) -> u64;
});

gated!(AuthStore as "auth", TruthError {
    fn save_otp(
        &self, phone: &Phone, role: Role, code_hash: &str, expires_at: OffsetDateTime
    ) -> ();
    fn check_otp(
        &self, phone: &Phone, role: Role, code_hash: &str, max_attempts: u32, now: OffsetDateTime
    ) -> OtpCheck;
    fn customer_by_phone_or_create(&self, phone: &Phone) -> UserRecord;
    fn mitra_by_phone(&self, phone: &Phone) -> Option<UserRecord>;
    fn operator_by_email(&self, email: &str) -> Option<(Uuid, String)>;
    fn create_session(
        &self, user_id: Uuid, role: Role, refresh_hash: &str, expires_at: OffsetDateTime
    ) -> Uuid;
    fn rotate_session(
        &self, old_hash: &str, role: Role, new_hash: &str, expires_at: OffsetDateTime
    ) -> Rotation;
    fn database_now(&self) -> OffsetDateTime;
    fn revoke_session(&self, sid: Uuid, user_id: Uuid) -> bool;
    fn revoke_user_sessions(&self, user_id: Uuid) -> u64;
});
