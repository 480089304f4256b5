//! A model-based test: random sequences of operations with randomly injected Valkey failures.
//! At no point may a read call an offline or deactivated mitra available or reachable; after
//! the failures stop, the watcher's probe and one reconciliation leave no drift.

use crate::fixture::{insert_mitra, instance_with_mirror, mirror as valkey_mirror};
use async_trait::async_trait;
use halo_core::{MirrorWatch, SweepOutcome};
use halo_domain::{Beacon, MirrorImage, MitraId, MitraState};
use halo_metrics::Metrics;
use halo_ports::{
    BeaconClaim, BeaconLock, CapacityCount, HeartbeatOutcome, MirrorCoordination, MirrorError,
    MirrorHotPath, MirrorMaintenance, OnlineReason, SeedWrite,
};
use halo_testkit::{test_database, ValkeyServer};
use halo_valkey::ValkeyMirror;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// The real Valkey mirror behind a switch that makes every call fail as if Valkey were down.
struct FlakyMirror {
    inner: Arc<ValkeyMirror>,
    down: AtomicBool,
}

impl FlakyMirror {
    fn gate(&self) -> Result<(), MirrorError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(MirrorError::Unavailable("injected failure".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl MirrorHotPath for FlakyMirror {
    async fn heartbeat(
        &self,
        id: MitraId,
        at: OffsetDateTime,
    ) -> Result<HeartbeatOutcome, MirrorError> {
        self.gate()?;
        self.inner.heartbeat(id, at).await
    }
    async fn mark_online(
        &self,
        id: MitraId,
        at: OffsetDateTime,
        capacity: CapacityCount,
    ) -> Result<(), MirrorError> {
        self.gate()?;
        self.inner.mark_online(id, at, capacity).await
    }
    async fn mark_offline(&self, ids: &[MitraId]) -> Result<(), MirrorError> {
        self.gate()?;
        self.inner.mark_offline(ids).await
    }
    async fn set_deactivated(&self, id: MitraId, deactivated: bool) -> Result<(), MirrorError> {
        self.gate()?;
        self.inner.set_deactivated(id, deactivated).await
    }
    async fn set_capacity(&self, id: MitraId, capacity: CapacityCount) -> Result<(), MirrorError> {
        self.gate()?;
        self.inner.set_capacity(id, capacity).await
    }
    async fn is_deactivated(&self, id: MitraId) -> Result<bool, MirrorError> {
        self.gate()?;
        self.inner.is_deactivated(id).await
    }
    async fn mitra_states(&self, ids: &[MitraId]) -> Result<Vec<MitraState>, MirrorError> {
        self.gate()?;
        self.inner.mitra_states(ids).await
    }
    async fn candidate_states(&self) -> Result<Vec<(MitraId, MitraState)>, MirrorError> {
        self.gate()?;
        self.inner.candidate_states().await
    }
    async fn online_count(&self) -> Result<u64, MirrorError> {
        self.gate()?;
        self.inner.online_count().await
    }
}

#[async_trait]
impl MirrorCoordination for FlakyMirror {
    async fn claim_beacon(&self, lock_ttl: Duration) -> Result<BeaconClaim, MirrorError> {
        self.gate()?;
        self.inner.claim_beacon(lock_ttl).await
    }
    async fn store_beacon(
        &self,
        beacon: Beacon,
        at: OffsetDateTime,
        ttl: Duration,
        lock: &BeaconLock,
    ) -> Result<(), MirrorError> {
        self.gate()?;
        self.inner.store_beacon(beacon, at, ttl, lock).await
    }
    async fn bust_beacon(&self) -> Result<(), MirrorError> {
        self.gate()?;
        self.inner.bust_beacon().await
    }
    async fn try_lease(&self, name: &str, ttl: Duration) -> Result<bool, MirrorError> {
        self.gate()?;
        self.inner.try_lease(name, ttl).await
    }
    async fn publish_config_invalidate(&self) -> Result<(), MirrorError> {
        self.gate()?;
        self.inner.publish_config_invalidate().await
    }
}

#[async_trait]
impl MirrorMaintenance for FlakyMirror {
    async fn ping(&self) -> Result<(), MirrorError> {
        self.gate()?;
        self.inner.ping().await
    }
    async fn write_token(&self) -> Result<u64, MirrorError> {
        self.gate()?;
        self.inner.write_token().await
    }
    async fn replace_all(
        &self,
        image: &MirrorImage,
        token: u64,
        now: OffsetDateTime,
    ) -> Result<SeedWrite, MirrorError> {
        self.gate()?;
        self.inner.replace_all(image, token, now).await
    }
    async fn read_image(&self) -> Result<MirrorImage, MirrorError> {
        self.gate()?;
        self.inner.read_image().await
    }
    async fn is_seeded(&self) -> Result<bool, MirrorError> {
        self.gate()?;
        self.inner.is_seeded().await
    }
    async fn fence_stale(
        &self,
        ids: &[MitraId],
        cutoff: OffsetDateTime,
    ) -> Result<Vec<MitraId>, MirrorError> {
        self.gate()?;
        self.inner.fence_stale(ids, cutoff).await
    }
    async fn restore_online(
        &self,
        beats: &[(MitraId, OffsetDateTime)],
        token: u64,
    ) -> Result<(), MirrorError> {
        self.gate()?;
        self.inner.restore_online(beats, token).await
    }
    async fn online_heartbeats(
        &self,
    ) -> Result<Vec<(MitraId, Option<OffsetDateTime>)>, MirrorError> {
        self.gate()?;
        self.inner.online_heartbeats().await
    }
}

const MITRAS: usize = 6;
const STEPS: usize = 60;

#[tokio::test]
async fn model_random_operations_with_injected_failures_never_show_unavailable_mitras() {
    let db = test_database().await;
    let valkey = ValkeyServer::start().await;
    let pg = db.client().await;
    let flaky = Arc::new(FlakyMirror {
        inner: valkey_mirror(&valkey.url(), &Metrics::new()),
        down: AtomicBool::new(false),
    });
    let (av, _) = instance_with_mirror(&db, flaky.clone()).await;
    let mut ids = Vec::new();
    for _ in 0..MITRAS {
        ids.push(insert_mitra(&pg).await);
    }
    let customer: uuid::Uuid = pg
        .query_one(
            "INSERT INTO customers (phone) VALUES ('+6299') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    for seed in 0..4_u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut watch = MirrorWatch::default();
        for step in 0..STEPS {
            flaky.down.store(rng.random_bool(0.3), Ordering::SeqCst);
            let id = ids[rng.random_range(0..MITRAS)];
            let op = rng.random_range(0..8);
            let result = match op {
                0 | 1 => av.set_online(id).await.map(|_| ()),
                2 => av.set_offline(id, OnlineReason::Manual).await,
                3 => av.update_mitra_status(id, false).await,
                4 => av.update_mitra_status(id, true).await,
                5 => {
                    pg.execute(
                        "INSERT INTO chat_sessions (customer_id, mitra_id, status, minutes) VALUES ($1, $2, 'active', 10)",
                        &[&customer, &id.uuid()],
                    )
                    .await
                    .unwrap();
                    av.recompute_capacity_for_mitra(id).await.map(|_| ())
                }
                6 => {
                    // Mirror or Postgres, trusted or not: the answer is the truth's.
                    let outcome = av.heartbeat(id).await;
                    let (active, online) = pg_flags(&pg, id).await;
                    match &outcome {
                        Ok(ack) => assert!(
                            active && ack.online == online,
                            "seed {seed} step {step}: heartbeat said online={} for active={active} online={online}",
                            ack.online
                        ),
                        Err(_) => assert!(!active, "seed {seed} step {step}: active mitra refused"),
                    }
                    outcome.map(|_| ())
                }
                _ => {
                    watch.tick(&av).await;
                    Ok(())
                }
            };
            // Deactivated mitras are refused; nothing else may fail (Postgres is up).
            if let Err(error) = result {
                assert!(
                    matches!(error, halo_core::AvailabilityError::Deactivated),
                    "seed {seed} step {step} op {op}: {error}"
                );
            }
            check_invariant(&av, &pg, &ids, seed, step).await;
        }
        flaky.down.store(false, Ordering::SeqCst);
        // While the breaker is open only the watcher's probe reaches Valkey: it ends the outage.
        watch.tick(&av).await;
        assert!(matches!(
            av.reconciliation_tick(None).await,
            SweepOutcome::Done { .. }
        ));
        let drift = av.drift_report().await.unwrap();
        assert!(
            drift.is_empty(),
            "seed {seed}: drift after reconciliation {drift:?}"
        );
        assert!(av.mirror_trusted());
    }
}

async fn check_invariant(
    av: &halo_core::Availability,
    pg: &tokio_postgres::Client,
    ids: &[MitraId],
    seed: u64,
    step: usize,
) {
    let available = av.find_available_mitras().await.unwrap();
    for id in ids {
        let (active, online) = pg_flags(pg, *id).await;
        if !(active && online) {
            assert!(
                !available.contains(id),
                "seed {seed} step {step}: {id} available but active={active} online={online}"
            );
            assert!(
                !av.is_mitra_reachable(*id).await.unwrap(),
                "seed {seed} step {step}: {id} reachable"
            );
        }
    }
}

/// `(is_active, is_online)` in Postgres.
async fn pg_flags(pg: &tokio_postgres::Client, id: MitraId) -> (bool, bool) {
    let row = pg
        .query_one(
            "SELECT m.is_active, s.is_online FROM mitras m JOIN mitra_online_status s ON s.mitra_id = m.id WHERE m.id = $1",
            &[&id.uuid()],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}
