//! Section H — the heartbeat mirror copies Valkey heartbeats to Postgres in one UNNEST
//! statement per cycle, and skips while Valkey is down.

use crate::common::{heartbeat_at, pg_heartbeat_at, DEADLINE};
use halo_acceptance::{eventually, Mitra, Stack, StackOptions};

fn fast_mirror() -> StackOptions {
    StackOptions::default().env("HEARTBEAT_MIRROR_INTERVAL_SECONDS", 1)
}

async fn heartbeating(stack: &Stack, n: usize) -> Vec<Mitra> {
    let mut mitras = Vec::new();
    for _ in 0..n {
        let mitra = stack.online_mitra().await;
        stack.heartbeat(&mitra).await.expect(200);
        mitras.push(mitra);
    }
    mitras
}

/// Over every instance: (cycles done, record_heartbeats statements).
async fn cycles(stack: &Stack) -> (u64, u64) {
    let mut totals = (0, 0);
    for instance in stack.publics.iter().chain([&stack.internal]) {
        let metrics = instance.metrics().await;
        totals.0 += metrics.sweeps("heartbeat_mirror", "done");
        totals.1 += metrics.pg("record_heartbeats");
    }
    totals
}

#[tokio::test]
async fn h_one_unnest_update_per_cycle() {
    let stack = Stack::with(fast_mirror()).await;
    heartbeating(&stack, 3).await;
    let unnest = "%UNNEST%";
    let (calls, start) = (stack.statement_calls(unnest).await, cycles(&stack).await);
    eventually("three mirror cycles", DEADLINE, || async {
        cycles(&stack).await.0 >= start.0 + 3
    })
    .await;
    let end = cycles(&stack).await;
    let statements = stack.statement_calls(unnest).await - calls;
    assert_eq!(end.1 - start.1, end.0 - start.0, "one statement per cycle");
    // pg_stat_statements may count one more cycle that finished after the scrape.
    let done = i64::try_from(end.0 - start.0).unwrap();
    assert!(
        (done..=done + 1).contains(&statements),
        "{statements} for {done}"
    );
}

#[tokio::test]
async fn h_postgres_timestamps_from_last_cycle() {
    let stack = Stack::with(fast_mirror()).await;
    let mitras = heartbeating(&stack, 3).await;
    for mitra in &mitras {
        let valkey = heartbeat_at(&stack, mitra.id).await;
        eventually(
            "last_heartbeat_at = the Valkey heartbeat",
            DEADLINE,
            || async { pg_heartbeat_at(&stack, mitra.id).await == valkey },
        )
        .await;
    }
}

#[tokio::test]
async fn h_postgres_never_ahead_of_valkey_and_catches_up() {
    let stack = Stack::with(fast_mirror()).await;
    let mitra = stack.online_mitra().await;
    for _ in 0..5 {
        stack.heartbeat(&mitra).await.expect(200);
        let valkey = heartbeat_at(&stack, mitra.id).await.unwrap();
        let pg = pg_heartbeat_at(&stack, mitra.id).await.unwrap();
        assert!(pg <= valkey, "Postgres {pg} ahead of Valkey {valkey}");
        eventually("Postgres to catch up within a cycle", DEADLINE, || async {
            pg_heartbeat_at(&stack, mitra.id).await == Some(valkey)
        })
        .await;
    }
}

async fn outage(stack: &mut Stack) {
    stack.valkey.kill().await;
    let skipped = stack
        .public()
        .metrics()
        .await
        .sweeps("heartbeat_mirror", "skipped")
        + stack
            .internal
            .metrics()
            .await
            .sweeps("heartbeat_mirror", "skipped");
    eventually("three skipped mirror cycles", DEADLINE, || async {
        stack
            .public()
            .metrics()
            .await
            .sweeps("heartbeat_mirror", "skipped")
            + stack
                .internal
                .metrics()
                .await
                .sweeps("heartbeat_mirror", "skipped")
            >= skipped + 3
    })
    .await;
}

#[tokio::test]
async fn h_mirror_skips_on_valkey_error() {
    let mut stack = Stack::with(fast_mirror()).await;
    heartbeating(&stack, 1).await;
    outage(&mut stack).await;
    let logged = stack
        .publics
        .iter()
        .chain([&stack.internal])
        .flat_map(|i| i.events("sweep.skipped"))
        .filter(|e| e["sweep"] == "heartbeat_mirror")
        .count();
    assert!(logged >= 3);
}

#[tokio::test]
async fn h_last_heartbeat_does_not_advance_during_outage() {
    let mut stack = Stack::with(fast_mirror()).await;
    let mitra = heartbeating(&stack, 1).await.remove(0);
    let valkey = heartbeat_at(&stack, mitra.id).await;
    eventually("the mirror to catch up", DEADLINE, || async {
        pg_heartbeat_at(&stack, mitra.id).await == valkey
    })
    .await;
    outage(&mut stack).await;
    assert_eq!(pg_heartbeat_at(&stack, mitra.id).await, valkey);
}
