//! The smoke list: the five-minute happy path after a deploy.

use crate::common::DEADLINE;
use halo_acceptance::Stack;
use serde_json::json;

#[tokio::test]
async fn smoke_seed_logged_on_startup() {
    let stack = Stack::start().await;
    for instance in [stack.public(), &stack.internal] {
        let seeds = instance.events("mirror.seed");
        assert_eq!(seeds.len(), 1);
        assert_eq!(seeds[0]["reason"], "startup");
    }
}

#[tokio::test]
async fn smoke_toggle_online_appears_in_set() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    assert!(stack
        .vk_members("mitras:online")
        .await
        .contains(&mitra.id.to_string()));
}

#[tokio::test]
async fn smoke_customer_sees_availability() {
    let stack = Stack::start().await;
    assert_eq!(stack.beacon(0).await["available"], false);
    stack.online_mitra().await;
    stack.bust_snapshot().await;
    // Eventually: the event pump's look at the beacon (SPEC §12.9) may hold the recompute
    // lock at this moment, and the poll then answers the last beacon for up to a TTL.
    halo_acceptance::eventually("the beacon counts the mitra", DEADLINE, || async {
        stack.beacon(0).await == json!({ "available": true, "count": 1 })
    })
    .await;
}

/// "Chat again": the customer requests this mitra, pays, the chat is active.
async fn paid_chat(stack: &Stack) -> (halo_acceptance::Mitra, String) {
    let mitra = stack.online_mitra().await;
    let customer = stack.customer().await;
    let request = stack.request_mitra(&customer, &mitra).await.expect(201);
    let session = request["session_id"].as_str().unwrap().to_owned();
    let paid = stack.pay(&customer, &session).await.expect(200);
    assert_eq!(paid["status"], "active");
    (mitra, session)
}

#[tokio::test]
async fn smoke_paid_chat_increments_capacity() {
    let stack = Stack::start().await;
    let (mitra, _) = paid_chat(&stack).await;
    assert_eq!(stack.capacity_key(mitra.id).await.as_deref(), Some("1"));
    let blasted = stack.online_mitra().await;
    stack.start_chat(&blasted).await;
    assert_eq!(stack.capacity_key(blasted.id).await.as_deref(), Some("1"));
}

#[tokio::test]
async fn smoke_chat_end_decrements_capacity() {
    let stack = Stack::start().await;
    let (mitra, session) = paid_chat(&stack).await;
    stack.end_chat(&mitra, session.parse().unwrap()).await;
    assert_eq!(stack.capacity_key(mitra.id).await.as_deref(), Some("0"));
}

#[tokio::test]
async fn smoke_toggle_offline_removes_from_set() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    stack.toggle(&mitra, false).await.expect(200);
    assert!(!stack.vk_is_member("mitras:online", mitra.id).await);
}
