//! Concurrent callers on the slot-taking transitions: one blast accepted by many mitras at
//! once, and one mitra accepting many blasts (and targeted requests) at once.

use crate::fixture::{fixture_with_pool, Fixture, NO_LIMIT, T};
use halo_domain::MitraId;
use halo_ports::{AcceptOutcome, ChatStore, RerouteOutcome, TargetOutcome};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::Barrier;
use uuid::Uuid;

/// Runs every job on its own task, all released at the same moment; results in job order.
async fn all_at_once<T, F, Fut>(jobs: Vec<F>) -> Vec<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(jobs.len()));
    let tasks: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                job().await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.expect("task"));
    }
    results
}

async fn open_sessions(f: &Fixture, mitra: MitraId) -> i64 {
    f.count(
        "SELECT count(*) FROM chat_sessions WHERE mitra_id = $1 AND status IN ('active', 'pending_payment')",
        &[&mitra.uuid()],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_mitras_accepting_one_blast_make_one_winner() {
    let f = Arc::new(fixture_with_pool(50).await);
    let mitras = f.mitras(50).await;
    let blast = f.blast(&mitras, 15).await;
    let jobs = mitras
        .iter()
        .map(|&mitra| {
            let f = Arc::clone(&f);
            move || async move { f.chat.accept(blast.id, mitra, 3, T).await.expect("accept") }
        })
        .collect();
    let outcomes = all_at_once(jobs).await;

    let winners: Vec<_> = outcomes
        .iter()
        .zip(&mitras)
        .filter_map(|(outcome, mitra)| match outcome {
            AcceptOutcome::Accepted(session) => Some((session, *mitra)),
            _ => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let taken = outcomes
        .iter()
        .filter(|o| **o == AcceptOutcome::Taken)
        .count();
    assert_eq!(taken, 49, "{outcomes:?}");

    let (session, winner) = winners[0];
    assert_eq!(session.mitra_id, Some(winner));
    assert_eq!(
        f.chat.session(blast.id).await.unwrap().as_ref(),
        Some(session)
    );
    assert_eq!(
        f.count(
            "SELECT count(*) FROM chat_request_notifications WHERE response = 'accepted'",
            &[]
        )
        .await,
        1
    );
    assert_eq!(f.chat.count_active().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_mitra_accepting_many_blasts_stays_within_capacity() {
    const MAX: u32 = 2;
    let f = Arc::new(fixture_with_pool(12).await);
    let mitra = f.mitra().await;
    for round in 0..5 {
        let mut blasts = Vec::new();
        for _ in 0..12 {
            blasts.push(f.blast(&[mitra], 10).await.id);
        }
        let jobs = blasts
            .iter()
            .map(|&id| {
                let f = Arc::clone(&f);
                move || async move { f.chat.accept(id, mitra, MAX, T).await.expect("accept") }
            })
            .collect();
        let outcomes = all_at_once(jobs).await;
        let accepted = outcomes
            .iter()
            .filter(|o| matches!(o, AcceptOutcome::Accepted(_)))
            .count();
        let refused = outcomes
            .iter()
            .filter(|o| **o == AcceptOutcome::AtCapacity)
            .count();
        assert_eq!((accepted, refused), (2, 10), "round {round}: {outcomes:?}");
        assert_eq!(open_sessions(&f, mitra).await, 2, "round {round}");
        // Free the slots for the next round.
        f.pg.execute(
            "UPDATE chat_sessions SET status = 'ended' WHERE status = 'active'",
            &[],
        )
        .await
        .unwrap();
    }
}

/// One slot-taking call of the mixed race.
#[derive(Debug, Clone, Copy)]
enum Claim {
    Accept(Uuid),
    Target(Uuid),
    /// Moves an active session of another mitra here.
    Reroute(Uuid),
}

/// Whether the call took one of the mitra's slots.
async fn claim(f: &Fixture, mitra: MitraId, max: u32, how: Claim) -> bool {
    match how {
        Claim::Accept(blast) => match f.chat.accept(blast, mitra, max, T).await.expect("accept") {
            AcceptOutcome::Accepted(_) => true,
            AcceptOutcome::AtCapacity => false,
            other => panic!("unexpected {other:?}"),
        },
        Claim::Target(customer) => matches!(
            f.chat
                .create_targeted(customer, mitra, 10, max, NO_LIMIT)
                .await
                .expect("targeted"),
            TargetOutcome::Created(_)
        ),
        Claim::Reroute(session) => matches!(
            f.chat
                .reroute(session, mitra, Some(max))
                .await
                .expect("reroute"),
            RerouteOutcome::Moved { .. }
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accepts_targeted_requests_and_reroutes_share_one_capacity() {
    const MAX: u32 = 3;
    let f = Arc::new(fixture_with_pool(16).await);
    let mitra = f.mitra().await;
    let elsewhere = f.mitra().await;
    let mut claims = Vec::new();
    for _ in 0..6 {
        claims.push(Claim::Accept(f.blast(&[mitra], 10).await.id));
        claims.push(Claim::Target(f.customer().await));
        claims.push(Claim::Reroute(f.active(elsewhere, 10).await.id));
    }
    let jobs = claims
        .iter()
        .map(|&how| {
            let f = Arc::clone(&f);
            move || async move { claim(&f, mitra, MAX, how).await }
        })
        .collect();
    let outcomes = all_at_once(jobs).await;
    let slots = outcomes.iter().filter(|took| **took).count();
    assert_eq!(slots, 3, "{claims:?} → {outcomes:?}");
    assert_eq!(open_sessions(&f, mitra).await, 3);
}
