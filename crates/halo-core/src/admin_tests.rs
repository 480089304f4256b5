//! `MitraAdmin::set_active` over in-memory stores (halo-fakes) behind one gate: the order of
//! a deactivation (SPEC §3.6: the flag, the mirror, the sessions, then offline), and what each
//! step's failure leaves: never a session a deactivated mitra can refresh.

use crate::{Availability, AvailabilityError, AvailabilityStores, MitraAdmin};
use crate::{SeedReason, SettingsCache};
use halo_domain::{AppSettings, MitraId, Role};
use halo_fakes::{Gate, Gated, InMemoryAuth, InMemoryMirror, InMemoryTruth, ManualClock};
use halo_metrics::Metrics;
use halo_ports::{AuthStore, Clock, OnlineReason, Rotation};
use std::sync::Arc;

/// The steps of a (de)activation that the gate journals, in SPEC §3.6's order.
const STEPS: [&str; 5] = [
    "truth.set_active",
    "mirror.set_deactivated",
    "auth.revoke_user_sessions",
    "truth.set_online",
    "mirror.mark_offline",
];

struct Rig {
    clock: Arc<ManualClock>,
    gate: Arc<Gate>,
    truth: Arc<InMemoryTruth>,
    auth: Arc<InMemoryAuth>,
    av: Arc<Availability>,
    admin: MitraAdmin,
}

/// The truth, the mirror and the sessions behind one gate; seeded as the services are.
async fn rig() -> Rig {
    let clock = Arc::new(ManualClock::default());
    let gate = Gate::new();
    let truth = Arc::new(InMemoryTruth::new(clock.clone()));
    let mirror = Arc::new(InMemoryMirror::with_clock(clock.clone()));
    let auth = Arc::new(InMemoryAuth::new(clock.clone(), truth.clone()));
    let stores = AvailabilityStores {
        truth: Arc::new(Gated::new(truth.clone(), gate.clone())),
        settings: truth.clone(),
        mirror: Arc::new(Gated::new(mirror, gate.clone())),
        clock: clock.clone(),
    };
    let settings = SettingsCache::new(AppSettings::default());
    let av = Arc::new(Availability::new(stores, settings, Metrics::new()));
    av.seed_from_postgres(SeedReason::Startup)
        .await
        .expect("seed");
    let gated_auth = Arc::new(Gated::new(auth.clone(), gate.clone()));
    let admin = MitraAdmin::new(truth.clone(), gated_auth, av.clone());
    Rig {
        clock,
        gate,
        truth,
        auth,
        av,
        admin,
    }
}

impl Rig {
    /// An online mitra logged in on two devices (refresh tokens `<id>-1`, `<id>-2`).
    async fn online_mitra_with_sessions(&self) -> MitraId {
        let id = self.truth.add_mitra();
        self.av.set_online(id).await.expect("online");
        let expires = self.clock.now() + time::Duration::hours(1);
        for device in 1..=2 {
            let hash = format!("{id}-{device}");
            self.auth
                .create_session(id.uuid(), Role::Mitra, &hash, expires)
                .await
                .expect("session");
        }
        id
    }

    /// The (de)activation steps the gate saw since `from` calls, in order.
    fn steps_since(&self, from: usize) -> Vec<&'static str> {
        let journal = self.gate.journal();
        let since = journal.get(from..).unwrap_or_default();
        since
            .iter()
            .copied()
            .filter(|call| STEPS.contains(call))
            .collect()
    }

    /// Whether the mitra's app could refresh its access token with its first device's token.
    async fn refreshes(&self, id: MitraId) -> bool {
        let expires = self.clock.now() + time::Duration::hours(1);
        let (old, new) = (format!("{id}-1"), format!("{id}-1-next"));
        let rotation = self.auth.rotate_session(&old, Role::Mitra, &new, expires);
        matches!(rotation.await.expect("rotate"), Rotation::Rotated(_))
    }

    fn stored(&self, id: MitraId) -> (bool, bool) {
        let state = self.truth.state_of(id).expect("known");
        (state.active, state.online)
    }
}

fn unavailable<T: std::fmt::Debug>(result: Result<T, AvailabilityError>) -> bool {
    matches!(result, Err(AvailabilityError::StoreUnavailable(_)))
}

#[tokio::test]
async fn deactivation_sets_the_flag_then_revokes_the_sessions_then_sets_offline() {
    let r = rig().await;
    let id = r.online_mitra_with_sessions().await;
    let from = r.gate.journal().len();
    let view = r.admin.set_active(id, false).await.unwrap();
    assert_eq!(r.steps_since(from), STEPS);
    assert!(!view.row.active && !view.live.online, "{view:?}");
    assert_eq!(r.stored(id), (false, false));
    assert_eq!(r.auth.live_sessions(id.uuid()), 0);
    let audit = r.truth.online_log().pop();
    assert_eq!(audit, Some((id, false, OnlineReason::Deactivated)));
    assert!(matches!(
        r.av.heartbeat(id).await,
        Err(AvailabilityError::Deactivated)
    ));
}

/// A deactivation while the gate fails `call`: the operator is told the store did not answer;
/// then the steps it took, what Postgres holds (`active`, `online`), the mitra's live sessions
/// and whether its app can still refresh a token; and the operator's retry finishes the job.
async fn check_failing(
    call: &'static str,
    steps: &[&str],
    stored: (bool, bool),
    live: usize,
    refreshes: bool,
) {
    let r = rig().await;
    let id = r.online_mitra_with_sessions().await;
    r.gate.close_call(call);
    let from = r.gate.journal().len();
    let answer = r.admin.set_active(id, false).await;
    assert!(unavailable(answer), "{call} failed");
    assert_eq!(r.steps_since(from), steps, "{call} failed");
    assert_eq!(r.stored(id), stored, "{call} failed: (active, online)");
    assert_eq!(r.auth.live_sessions(id.uuid()), live, "{call} failed");
    assert_eq!(r.refreshes(id).await, refreshes, "{call} failed");

    r.gate.open();
    r.admin.set_active(id, false).await.expect("the retry");
    assert_eq!(r.stored(id), (false, false), "after the retry");
    assert_eq!(r.auth.live_sessions(id.uuid()), 0, "after the retry");
}

/// Still active: its sessions may live.
#[tokio::test]
async fn a_flag_that_fails_stops_before_the_sessions() {
    check_failing("truth.set_active", &STEPS[..1], (true, true), 2, true).await;
}

/// Not revoked, but the flag came first: they cannot refresh.
#[tokio::test]
async fn a_revocation_that_fails_leaves_no_session_that_refreshes() {
    check_failing(
        "auth.revoke_user_sessions",
        &STEPS[..3],
        (false, true),
        2,
        false,
    )
    .await;
}

/// Still online in Postgres, its sessions revoked before.
#[tokio::test]
async fn going_offline_that_fails_leaves_the_sessions_revoked() {
    check_failing("truth.set_online", &STEPS[..4], (false, true), 0, false).await;
}

#[tokio::test]
async fn reactivation_clears_the_flag_only() {
    let r = rig().await;
    let id = r.online_mitra_with_sessions().await;
    r.admin.set_active(id, false).await.unwrap();
    let from = r.gate.journal().len();
    let view = r.admin.set_active(id, true).await.unwrap();
    assert_eq!(r.steps_since(from), STEPS[..2]);
    assert!(
        view.row.active && !view.live.online,
        "logs in and toggles online again"
    );
    r.av.ensure_active(id).await.unwrap();
}
