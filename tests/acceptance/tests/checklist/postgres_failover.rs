//! A Postgres failover under write traffic, as a managed Postgres does it: the primary dies
//! (`pg_ctl stop -m immediate`), its synchronous standby is promoted, and the endpoint the
//! services use (the [`PgProxy`](halo_acceptance::PgProxy)) is switched to it, as the DNS flip
//! of Cloud SQL or RDS does. Meanwhile mitras toggle and heartbeat and the operator creates
//! mitras. Proven: every write answered 2xx is on the new primary; requests caught in the
//! switch answer 503, never 500; the services recover without a restart and the mirror has no
//! drift after a reconciliation.

use crate::common::DEADLINE;
use halo_acceptance::{eventually, Mitra, Stack, StackOptions};
use halo_testkit::PgServer;
use reqwest::Method;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use uuid::Uuid;

const TOGGLERS: usize = 4;
/// How long a worker keeps trying for an acknowledgement before the test gives up on recovery.
const RECOVERY: Duration = Duration::from_secs(60);
const PAUSE: Duration = Duration::from_millis(20);
/// Acknowledged writes wanted before the kill and again after the switch.
const WRITES: usize = 30;

/// What the traffic saw: every status by route, and what was acknowledged.
#[derive(Default)]
struct Seen {
    statuses: Mutex<BTreeMap<(&'static str, u16), usize>>,
    /// Acknowledged toggles per mitra, in order (true = online).
    toggles: Mutex<BTreeMap<Uuid, Vec<bool>>>,
    created: Mutex<Vec<Uuid>>,
    /// Acknowledged writes (toggles, creations) before and after the switch.
    writes_before: AtomicUsize,
    writes_after: AtomicUsize,
    switched: AtomicBool,
    stop: AtomicBool,
}

impl Seen {
    fn record(&self, route: &'static str, status: u16) {
        *self
            .statuses
            .lock()
            .unwrap()
            .entry((route, status))
            .or_default() += 1;
        if (200..300).contains(&status) && route != "heartbeat" {
            if self.switched.load(Ordering::SeqCst) {
                self.writes_after.fetch_add(1, Ordering::SeqCst);
            } else {
                self.writes_before.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    fn count(&self, status: u16) -> usize {
        let statuses = self.statuses.lock().unwrap();
        statuses
            .iter()
            .filter(|((_, s), _)| *s == status)
            .map(|(_, n)| n)
            .sum()
    }
}

/// A mitra toggling online/offline. After a 503 the outcome is unknown (the commit may have
/// landed before the primary died), so the same toggle is sent again until acknowledged: a
/// retry of a toggle that landed changes nothing, so every acknowledged toggle is exactly one
/// transition in `mitra_online_logs`. Stops only right after an acknowledgement.
async fn toggler(stack: &Stack, mitra: &Mitra, seen: &Seen) {
    let deadline = tokio::time::Instant::now() + RECOVERY;
    let mut online = false;
    loop {
        let target = !online;
        let reply = stack.toggle(mitra, target).await;
        seen.record("toggle", reply.status);
        if (200..300).contains(&reply.status) {
            online = target;
            seen.toggles
                .lock()
                .unwrap()
                .entry(mitra.id)
                .or_default()
                .push(target);
            if seen.stop.load(Ordering::SeqCst) {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "toggles of {} not acknowledged again within {RECOVERY:?}",
            mitra.id
        );
        tokio::time::sleep(PAUSE).await;
    }
}

async fn heartbeater(stack: &Stack, mitras: &[Mitra], seen: &Seen) {
    while !seen.stop.load(Ordering::SeqCst) {
        for mitra in mitras {
            seen.record("heartbeat", stack.heartbeat(mitra).await.status);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// The control centre creates mitras; every 201 names one that must survive.
async fn operator(stack: &Stack, seen: &Seen) {
    while !seen.stop.load(Ordering::SeqCst) {
        let phone = format!("+62{:011}", Uuid::new_v4().as_u128() % 100_000_000_000);
        let body = json!({ "phone": phone, "display_name": "Failover Mitra" });
        let reply = stack.cc(Method::POST, "/internal/mitras", Some(body)).await;
        seen.record("create_mitra", reply.status);
        if reply.status == 201 {
            let id = reply.body["id"]
                .as_str()
                .expect("id")
                .parse()
                .expect("uuid");
            seen.created.lock().unwrap().push(id);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// Kills the primary once traffic runs, checks that a write in the gap answers 503, promotes
/// the standby, switches the endpoint, and stops the traffic once writes are acknowledged
/// again.
async fn fail_over(
    stack: &Stack,
    primary: &mut PgServer,
    standby: &PgServer,
    probe: &Mitra,
    seen: &Seen,
) {
    eventually(
        "writes acknowledged before the failover",
        DEADLINE,
        || async { seen.writes_before.load(Ordering::SeqCst) >= WRITES },
    )
    .await;
    let started = std::time::Instant::now();
    primary.kill().await;
    let killed = started.elapsed();
    let gap = stack.toggle(probe, true).await;
    seen.record("toggle", gap.status);
    assert_eq!(
        (gap.status, gap.code()),
        (503, "STORE_UNAVAILABLE"),
        "a write while the primary is gone"
    );
    standby.promote().await;
    let promoted = started.elapsed();
    seen.switched.store(true, Ordering::SeqCst);
    stack
        .proxy
        .as_ref()
        .expect("proxy")
        .switch_to(&standby.authority());
    eventually(
        "a write acknowledged after the switch",
        RECOVERY,
        || async { seen.writes_after.load(Ordering::SeqCst) >= 1 },
    )
    .await;
    let recovered = started.elapsed();
    eventually("writes acknowledged after the switch", RECOVERY, || async {
        seen.writes_after.load(Ordering::SeqCst) >= WRITES
    })
    .await;
    // For the report only (no assertion on time): how long each step took.
    eprintln!(
        "failover: killed after {killed:?}, promoted and switched after {promoted:?}, \
         first write acknowledged after {recovered:?}"
    );
    seen.stop.store(true, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_failover_loses_no_acknowledged_write_and_recovers_without_restart() {
    let mut primary = PgServer::init().await;
    // Synchronous replication: a commit is acknowledged to the service only once the standby
    // has it, so everything a client saw acknowledged survives the loss of the primary. With
    // asynchronous streaming the last commits before the kill could be missing on the standby.
    // `synchronous_commit` stays on (the default): off would acknowledge before even the
    // primary's WAL is written, and `-m immediate` would lose those commits.
    primary
        .set("synchronous_standby_names", "'standby'")
        .set("synchronous_commit", "on")
        .set("wal_level", "replica");
    primary.start().await;
    let mut standby = PgServer::standby_of(&primary, "standby").await;
    standby.start().await;
    let watcher = halo_testkit::connect(&primary.url("postgres", ""))
        .await
        .expect("primary");
    eventually("the standby streaming synchronously", DEADLINE, || async {
        watcher
            .query_opt(
                "SELECT 1 FROM pg_stat_replication WHERE application_name = 'standby' AND sync_state = 'sync'",
                &[],
            )
            .await
            .expect("pg_stat_replication")
            .is_some()
    })
    .await;
    drop(watcher);

    let options = StackOptions::default()
        .database(&primary.url("postgres", ""))
        .pg_proxy()
        .env("VALKEY_ONLINE_MIRROR_SWEEP_SECONDS", 2);
    let stack = Stack::with(options).await;
    let mut mitras = Vec::new();
    for _ in 0..TOGGLERS {
        mitras.push(stack.mitra().await);
    }
    let probe = stack.mitra().await;

    let seen = Seen::default();
    let togglers = futures_util::future::join_all(mitras.iter().map(|m| toggler(&stack, m, &seen)));
    tokio::join!(
        togglers,
        heartbeater(&stack, &mitras, &seen),
        operator(&stack, &seen),
        fail_over(&stack, &mut primary, &standby, &probe, &seen),
    );

    let statuses = seen.statuses.lock().unwrap().clone();
    eprintln!("failover traffic: {statuses:?}");
    for ((route, status), n) in &statuses {
        assert!(
            (200..300).contains(status) || *status == 503,
            "{n} {route} requests answered {status}: only 2xx or 503 are allowed"
        );
    }
    assert!(seen.count(503) >= 1);

    // Every acknowledged write is on the new primary.
    let new_primary = halo_testkit::connect(&standby.url("postgres", ""))
        .await
        .expect("new primary");
    let toggles = seen.toggles.lock().unwrap().clone();
    for (id, acked) in &toggles {
        let logged: Vec<bool> = new_primary
            .query(
                "SELECT status = 'online' FROM mitra_online_logs
                  WHERE mitra_id = $1 AND reason = 'manual' ORDER BY id",
                &[id],
            )
            .await
            .expect("logs")
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(&logged, acked, "toggles of {id} on the new primary");
        let online: bool = new_primary
            .query_one(
                "SELECT is_online FROM mitra_online_status WHERE mitra_id = $1",
                &[id],
            )
            .await
            .expect("status")
            .get(0);
        assert_eq!(Some(&online), acked.last(), "state of {id}");
    }
    let created = seen.created.lock().unwrap().clone();
    assert!(!created.is_empty());
    let found: i64 = new_primary
        .query_one(
            "SELECT count(*) FROM mitras WHERE id = ANY($1)",
            &[&created],
        )
        .await
        .expect("created mitras")
        .get(0);
    assert_eq!(
        found as usize,
        created.len(),
        "every mitra answered 201 exists"
    );
    let probe_logs: i64 = new_primary
        .query_one(
            "SELECT count(*) FROM mitra_online_logs WHERE mitra_id = $1",
            &[&probe.id],
        )
        .await
        .expect("probe logs")
        .get(0);
    assert_eq!(probe_logs, 0, "the write answered 503 left nothing");

    // Recovered without a restart: both services ready, writes work, no drift.
    for instance in [stack.public(), &stack.internal] {
        let ready = stack
            .http
            .call(Method::GET, &instance.url("/readyz"), None, None)
            .await;
        assert_eq!(ready.status, 200, "{:?} ready: {ready:?}", instance.kind);
    }
    stack.toggle(&probe, true).await.expect(200);
    stack
        .wait_in_sync(
            "no drift after a reconciliation on the new primary",
            DEADLINE,
        )
        .await;
}
