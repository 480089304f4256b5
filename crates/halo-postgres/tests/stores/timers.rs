//! The timer sweep: each kind of due session with its reason, the limit, sessions not yet due
//! left alone, and several sweepers at once claiming every due session exactly once.

use crate::fixture::{fixture, fixture_with_pool, now, Fixture};
use halo_domain::SessionStatus;
use halo_ports::ChatStore;
use std::collections::HashSet;
use std::sync::Arc;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

const BLAST: Duration = Duration::seconds(60);
const PAYMENT: Duration = Duration::seconds(300);

/// One sweep with these timeouts (missed offers never send anyone away): what it moved.
async fn sweep(f: &Fixture, at: OffsetDateTime, limit: u32) -> Vec<halo_ports::ChatSession> {
    let timeouts = halo_ports::Timeouts {
        blast: BLAST,
        payment: PAYMENT,
        offer: BLAST,
        queue: Duration::minutes(10),
    };
    f.chat
        .expire_due(at, timeouts, None, limit)
        .await
        .expect("expire_due")
        .sessions
}

/// `per_kind` sessions of each of the three kinds due at `at`, and as many due a second later;
/// returns (due, not due) ids, each as `[active, pending, searching]` triples.
async fn sessions(f: &Fixture, per_kind: usize, at: OffsetDateTime) -> (Vec<Uuid>, Vec<Uuid>) {
    let mitras = f.mitras(per_kind * 2).await;
    let mut due = Vec::new();
    let mut early = Vec::new();
    for (i, mitra) in mitras.iter().enumerate() {
        let active = f.active(*mitra, 10).await.id;
        let pending = f.targeted(*mitra, 10).await.id;
        let searching = f.blast(&[*mitra], 10).await.id;
        if i % 2 == 0 {
            f.set_ends_at(&[active], at).await; // due exactly at ends_at
            f.set_created_at(&[searching], at - BLAST).await;
            f.set_created_at(&[pending], at - PAYMENT - Duration::seconds(5))
                .await;
            due.extend([active, pending, searching]);
        } else {
            f.set_ends_at(&[active], at + Duration::seconds(1)).await;
            f.set_created_at(&[searching], at - BLAST + Duration::seconds(1))
                .await;
            f.set_created_at(&[pending], at - PAYMENT + Duration::seconds(1))
                .await;
            early.extend([active, pending, searching]);
        }
    }
    (due, early)
}

#[tokio::test]
async fn each_timer_ends_its_kind_with_its_reason() {
    let f = fixture().await;
    let at = now();
    let (due, early) = sessions(&f, 1, at).await;
    let mut swept = sweep(&f, at, 100).await;
    swept.sort_by_key(|s| s.id);
    let mut expected = due.clone();
    expected.sort();
    assert_eq!(swept.iter().map(|s| s.id).collect::<Vec<_>>(), expected);

    let outcome = |id: Uuid| {
        let s = swept.iter().find(|s| s.id == id).unwrap();
        assert_eq!(s.ended_at, Some(at));
        (s.status, s.end_reason.as_deref())
    };
    let [active, pending, searching] = [due[0], due[1], due[2]];
    assert_eq!(outcome(active), (SessionStatus::Ended, Some("expired")));
    assert_eq!(
        outcome(pending),
        (SessionStatus::Cancelled, Some("payment_timeout"))
    );
    assert_eq!(
        outcome(searching),
        (SessionStatus::Failed, Some("blast_timeout"))
    );
    for (id, status) in early.iter().zip(["active", "pending_payment", "searching"]) {
        assert_eq!(
            f.status_of(*id).await,
            (status.to_owned(), None),
            "not due yet"
        );
    }
    assert_eq!(sweep(&f, at, 100).await, vec![], "each timer fires once");
    // A second later the rest are due.
    let later = sweep(&f, at + Duration::seconds(1), 100).await;
    assert_eq!(later.len(), 3);
}

#[tokio::test]
async fn a_sweep_takes_at_most_its_limit() {
    let f = fixture().await;
    let at = now();
    let (due, _) = sessions(&f, 3, at).await;
    assert_eq!(due.len(), 9);
    let mut seen = HashSet::new();
    for expected in [4, 4, 1, 0] {
        let swept = sweep(&f, at, 4).await;
        assert_eq!(swept.len(), expected);
        for s in swept {
            assert!(seen.insert(s.id));
        }
    }
    assert_eq!(seen, due.into_iter().collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sweepers_claim_each_due_session_once() {
    let f = Arc::new(fixture_with_pool(8).await);
    let at = now();
    let (due, early) = sessions(&f, 40, at).await;
    assert_eq!(due.len(), 120);

    let sweepers: Vec<_> = (0..4)
        .map(|_| {
            let f = Arc::clone(&f);
            tokio::spawn(async move {
                let mut claimed = Vec::new();
                loop {
                    let batch = sweep(&f, at, 7).await;
                    if batch.is_empty() {
                        return claimed;
                    }
                    claimed.extend(batch.into_iter().map(|s| s.id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for sweeper in sweepers {
        all.extend(sweeper.await.unwrap());
    }
    let unique: HashSet<Uuid> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "a session was swept twice");
    assert_eq!(unique, due.iter().copied().collect());
    assert_eq!(
        f.count(
            "SELECT count(*) FROM chat_sessions WHERE id = ANY($1) AND ended_at IS NULL",
            &[&early]
        )
        .await,
        i64::try_from(early.len()).unwrap(),
        "sessions not yet due were left alone"
    );
    assert_eq!(sweep(&f, at, 7).await, vec![]);
}
