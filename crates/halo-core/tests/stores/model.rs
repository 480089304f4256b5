//! A model-based test: random sequences of operations with randomly injected Valkey failures.
//! At no point may a read call an offline or deactivated mitra available or reachable; after
//! the failures stop, the watcher's probe and one reconciliation leave no drift.

use crate::fixture::{insert_mitra, instance_with_mirror, mirror as valkey_mirror};
use halo_core::{MirrorWatch, SweepOutcome};
use halo_domain::MitraId;
use halo_fakes::{Gate, Gated};
use halo_metrics::Metrics;
use halo_ports::OnlineReason;
use halo_testkit::{test_database, ValkeyServer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

const MITRAS: usize = 6;
const STEPS: usize = 60;

#[tokio::test]
async fn model_random_operations_with_injected_failures_never_show_unavailable_mitras() {
    let db = test_database().await;
    let valkey = ValkeyServer::start().await;
    let pg = db.client().await;
    // The real Valkey mirror behind a gate that fails every call as if Valkey were down.
    let gate = Gate::new();
    let mirror = Gated::new(valkey_mirror(&valkey.url(), &Metrics::new()), gate.clone());
    let (av, _) = instance_with_mirror(&db, Arc::new(mirror)).await;
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
            gate.set_closed(rng.random_bool(0.3));
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
        gate.open();
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
