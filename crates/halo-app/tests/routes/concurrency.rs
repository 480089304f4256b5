//! Concurrent accepts: one request is taken exactly once; one mitra never goes past
//! `max_customers_per_mitra` (serialized in Postgres).

use crate::harness::{code, Login, Stack};
use futures_util::future::join_all;

#[tokio::test]
async fn fifty_concurrent_accepts_of_one_request_make_exactly_one_winner() {
    let stack = Stack::start().await;
    let operator = stack.operator().await;
    let mut mitras: Vec<Login> = Vec::new();
    for n in 0..25 {
        mitras.push(
            stack
                .online_mitra(&operator, &format!("+6285000000{n:02}"))
                .await,
        );
    }
    let customer = stack.customer("+628500000100").await;
    let session = stack.blast(&customer).await;

    let attempts = mitras
        .iter()
        .chain(mitras.iter())
        .map(|m| stack.accept(m, session));
    let answers = join_all(attempts).await;
    assert_eq!(answers.len(), 50);
    // Every mitra tries twice: the winner's second try is a retry and answers the session it
    // won again (idempotent), so the 200s all name one mitra.
    let winners: std::collections::BTreeSet<String> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, reply)| reply["mitra_id"].to_string())
        .collect();
    assert_eq!(winners.len(), 1, "exactly one accept wins: {winners:?}");
    for (status, reply) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!((*status, code(reply)), (409, "REQUEST_TAKEN"));
    }
    let mut busy = 0;
    for mitra in &mitras {
        busy += stack.capacity(mitra).await;
    }
    assert_eq!(busy, 1);
    stack.stop().await;
}

#[tokio::test]
async fn concurrent_accepts_across_requests_never_exceed_capacity() {
    let stack = Stack::start().await;
    let operator = stack.operator().await;
    stack
        .set_config(&operator, "max_customers_per_mitra", 2)
        .await;
    let mitra = stack.online_mitra(&operator, "+628500000200").await;
    let mut sessions = Vec::new();
    for n in 0..10 {
        let customer = stack.customer(&format!("+6285000003{n:02}")).await;
        sessions.push(stack.blast(&customer).await);
    }
    let answers = join_all(sessions.iter().map(|s| stack.accept(&mitra, *s))).await;
    let won = answers.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(won, 2, "{answers:?}");
    for (status, reply) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!((*status, code(reply)), (409, "AT_CAPACITY"));
    }
    assert_eq!(stack.capacity(&mitra).await, 2);
    stack.stop().await;
}
