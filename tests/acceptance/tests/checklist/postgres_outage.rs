//! A Postgres outage (SPEC §3.1, §4.1; beyond the checklist): Postgres is reached
//! through a proxy the test cuts. Heartbeats of online mitras keep working from Valkey, writes
//! answer 503 with a code and leave nothing half-written, recovery needs nobody.

use crate::common::DEADLINE;
use halo_acceptance::{eventually, Stack, StackOptions};
use reqwest::Method;

async fn behind_proxy() -> Stack {
    Stack::with(StackOptions::default().pg_proxy()).await
}

fn cut(stack: &Stack) {
    stack.proxy.as_ref().expect("proxy").cut();
}

fn restore(stack: &Stack) {
    stack.proxy.as_ref().expect("proxy").restore();
}

#[tokio::test]
async fn pg_outage_heartbeats_and_reads_keep_working_from_valkey() {
    let stack = behind_proxy().await;
    let mitra = stack.online_mitra().await;
    let inactive = stack.online_mitra().await;
    stack.set_active(&inactive, false).await.expect(200);
    let beacon = stack.beacon(0).await;
    cut(&stack);
    for _ in 0..3 {
        let ack = stack.heartbeat(&mitra).await.expect(200);
        assert_eq!(ack["is_online"], true);
    }
    let refused = stack.heartbeat(&inactive).await;
    assert_eq!((refused.status, refused.code()), (403, "ACCOUNT_INACTIVE"));
    assert_eq!(stack.beacon(0).await, beacon);
}

#[tokio::test]
async fn pg_outage_writes_answer_503_and_leave_nothing_half_written() {
    let stack = behind_proxy().await;
    let mitra = stack.mitra().await;
    cut(&stack);
    let reply = stack.toggle(&mitra, true).await;
    assert_eq!((reply.status, reply.code()), (503, "STORE_UNAVAILABLE"));
    assert!(
        !stack.vk_is_member("mitras:online", mitra.id).await,
        "mirror untouched"
    );
    restore(&stack);
    assert!(!stack.pg_is_online(mitra.id).await);
    let audit = stack
        .pg_count(
            "SELECT count(*) FROM mitra_online_logs WHERE mitra_id = $1",
            mitra.id,
        )
        .await;
    assert_eq!(audit, 0);
    stack
        .wait_in_sync("no drift after the outage", DEADLINE)
        .await;
}

#[tokio::test]
async fn pg_outage_recovers_automatically() {
    let stack = behind_proxy().await;
    let mitra = stack.mitra().await;
    cut(&stack);
    let ready = stack.app(Method::GET, "/readyz", "", None).await;
    assert_eq!(
        (ready.status, ready.body["status"].as_str()),
        (503, Some("not_ready"))
    );
    restore(&stack);
    eventually("readiness back", DEADLINE, || async {
        stack.app(Method::GET, "/readyz", "", None).await.status == 200
    })
    .await;
    stack.toggle(&mitra, true).await.expect(200);
    assert!(stack.pg_is_online(mitra.id).await);
    assert!(stack.vk_is_member("mitras:online", mitra.id).await);
    stack.wait_in_sync("no drift", DEADLINE).await;
}
