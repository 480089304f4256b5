//! The app-event log: which events each chat transition appends (in its own transaction), the
//! order guarantee under concurrent commits, the first state of a stream, resumes and pruning.

use crate::fixture::{fixture, fixture_with_pool, Fixture, NO_LIMIT, T};
use halo_domain::{MitraId, SessionStatus};
use halo_ports::{
    AppEvent, Audience, AudienceKind, ChatStore, EventLog, LoggedEvent, Party, SessionView,
    WhenNobody, WithdrawReason,
};
use std::collections::BTreeSet;
use std::time::Duration;
use uuid::Uuid;

const MAX: u32 = 3;

async fn all_events(f: &Fixture) -> Vec<LoggedEvent> {
    f.events.read_after(0, 10_000).await.unwrap().events
}

/// The events after `after`, as (audience, recipients, event).
async fn since(f: &Fixture, after: i64) -> Vec<(AudienceKind, Vec<Uuid>, AppEvent)> {
    f.events
        .read_after(after, 10_000)
        .await
        .unwrap()
        .events
        .into_iter()
        .map(|e| (e.audience, e.recipients, e.event))
        .collect()
}

fn sorted(mitras: &[MitraId]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = mitras.iter().map(|m| m.uuid()).collect();
    ids.sort();
    ids
}

fn session(
    id: Uuid,
    status: SessionStatus,
    mitra: Option<MitraId>,
    ends_at: Option<time::OffsetDateTime>,
) -> AppEvent {
    AppEvent::Session {
        session_id: id,
        status: SessionView::Is(status),
        mitra_id: mitra,
        ends_at,
        queue: None,
    }
}

#[tokio::test]
async fn a_blast_offers_and_the_accept_withdraws_from_the_others() {
    let f = fixture().await;
    let mitras = f.mitras(4).await;
    let blast = f.blast(&mitras, 15).await;
    let events = since(&f, 0).await;
    assert_eq!(
        events,
        vec![
            (
                AudienceKind::Customer,
                vec![blast.customer_id],
                session(blast.id, SessionStatus::Searching, None, None)
            ),
            (
                AudienceKind::Mitra,
                sorted(&mitras),
                AppEvent::Offer {
                    session_id: blast.id,
                    minutes: 15,
                    expires_at: blast.created_at + T.blast,
                }
            ),
        ]
    );
    let head = f.events.head().await.unwrap();
    // One mitra rejects: it is not told the offer was taken.
    assert!(f.chat.reject(blast.id, mitras[3]).await.unwrap());
    assert_eq!(
        f.events.head().await.unwrap(),
        head,
        "a rejection appends nothing"
    );
    let accepted = match f.chat.accept(blast.id, mitras[0], MAX, T).await.unwrap() {
        halo_ports::AcceptOutcome::Accepted(session) => session,
        other => panic!("accept refused: {other:?}"),
    };
    let active = session(
        blast.id,
        SessionStatus::Active,
        Some(mitras[0]),
        accepted.ends_at,
    );
    assert_eq!(
        since(&f, head).await,
        vec![
            (
                AudienceKind::Customer,
                vec![blast.customer_id],
                active.clone()
            ),
            (AudienceKind::Mitra, vec![mitras[0].uuid()], active),
            (
                AudienceKind::Mitra,
                sorted(&mitras[1..3]),
                AppEvent::OfferWithdrawn {
                    session_id: blast.id,
                    reason: WithdrawReason::Taken,
                }
            ),
        ]
    );
    // A later transition of the active session withdraws nothing again.
    let head = f.events.head().await.unwrap();
    let ended = f
        .chat
        .end(blast.id, Party::Mitra(mitras[0]), "ended_by_mitra")
        .await
        .unwrap()
        .unwrap();
    let over = session(
        blast.id,
        SessionStatus::Ended,
        Some(mitras[0]),
        ended.ends_at,
    );
    assert_eq!(
        since(&f, head).await,
        vec![
            (
                AudienceKind::Customer,
                vec![blast.customer_id],
                over.clone()
            ),
            (AudienceKind::Mitra, vec![mitras[0].uuid()], over),
        ]
    );
}

#[tokio::test]
async fn a_cancelled_or_expired_blast_withdraws_its_offers() {
    let f = fixture().await;
    let mitras = f.mitras(2).await;
    let cancelled = f.blast(&mitras, 10).await;
    let head = f.events.head().await.unwrap();
    f.chat
        .end(
            cancelled.id,
            Party::Customer(cancelled.customer_id),
            "ended_by_customer",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        since(&f, head).await,
        vec![
            (
                AudienceKind::Customer,
                vec![cancelled.customer_id],
                session(cancelled.id, SessionStatus::Cancelled, None, None)
            ),
            (
                AudienceKind::Mitra,
                sorted(&mitras),
                AppEvent::OfferWithdrawn {
                    session_id: cancelled.id,
                    reason: WithdrawReason::Cancelled,
                }
            ),
        ]
    );
    let expired = f.blast(&mitras, 10).await;
    let head = f.events.head().await.unwrap();
    f.set_created_at(
        &[expired.id],
        crate::fixture::now() - time::Duration::hours(1),
    )
    .await;
    let now = f.chat.database_now().await.unwrap();
    let moved = f.chat.expire_due(now, T, None, 100).await.unwrap().sessions;
    assert_eq!(moved.len(), 1);
    assert_eq!(
        since(&f, head).await,
        vec![
            (
                AudienceKind::Customer,
                vec![expired.customer_id],
                session(expired.id, SessionStatus::Failed, None, None)
            ),
            (
                AudienceKind::Mitra,
                sorted(&mitras),
                AppEvent::OfferWithdrawn {
                    session_id: expired.id,
                    reason: WithdrawReason::Expired,
                }
            ),
        ]
    );
}

#[tokio::test]
async fn targeted_pay_extend_and_reroute_tell_both_parties() {
    let f = fixture().await;
    let mitras = f.mitras(2).await;
    let head = f.events.head().await.unwrap();
    let pending = f.targeted(mitras[0], 10).await;
    let paid = f
        .chat
        .pay(pending.id, pending.customer_id, T, "test-charge")
        .await
        .unwrap()
        .unwrap();
    let extended = f
        .chat
        .extend(pending.id, pending.customer_id, 5)
        .await
        .unwrap()
        .unwrap();
    let moved = match f.chat.reroute(pending.id, mitras[1], None).await.unwrap() {
        halo_ports::RerouteOutcome::Moved { session, .. } => session,
        other => panic!("reroute refused: {other:?}"),
    };
    let to_both = |status, mitra: MitraId, ends_at| {
        let event = session(pending.id, status, Some(mitra), ends_at);
        vec![
            (
                AudienceKind::Customer,
                vec![pending.customer_id],
                event.clone(),
            ),
            (AudienceKind::Mitra, vec![mitra.uuid()], event),
        ]
    };
    let mut expected = to_both(SessionStatus::PendingPayment, mitras[0], None);
    expected.extend(to_both(SessionStatus::Active, mitras[0], paid.ends_at));
    expected.extend(to_both(SessionStatus::Active, mitras[0], extended.ends_at));
    expected.extend(to_both(SessionStatus::Active, mitras[1], moved.ends_at));
    expected.push((
        AudienceKind::Mitra,
        vec![mitras[0].uuid()],
        AppEvent::Session {
            session_id: pending.id,
            status: SessionView::Reassigned,
            mitra_id: Some(mitras[1]),
            ends_at: moved.ends_at,
            queue: None,
        },
    ));
    assert_eq!(since(&f, head).await, expected);
}

#[tokio::test]
async fn a_refused_transition_appends_nothing() {
    let f = fixture().await;
    let mitras = f.mitras(2).await;
    let blast = f.blast(&mitras, 10).await;
    f.chat.accept(blast.id, mitras[0], MAX, T).await.unwrap();
    let head = f.events.head().await.unwrap();
    // Taken, not offered, not the party's session: nothing changed, nothing is told.
    f.chat.accept(blast.id, mitras[1], MAX, T).await.unwrap();
    f.chat
        .accept(Uuid::new_v4(), mitras[1], MAX, T)
        .await
        .unwrap();
    assert_eq!(
        f.chat
            .end(blast.id, Party::Mitra(mitras[1]), "ended_by_mitra")
            .await
            .unwrap(),
        None
    );
    assert_eq!(f.events.head().await.unwrap(), head);
}

/// The out-of-order-commit case. A transaction that has taken its event number and not yet
/// committed (here: a raw client holding the order lock with its row inserted) must keep every
/// later transition from taking a number: otherwise a reader could see the later number, move
/// its cursor past it, and never read the earlier one when it commits.
#[tokio::test]
async fn an_uncommitted_event_holds_back_every_later_one() {
    let f = fixture().await;
    let mitras = f.mitras(1).await;
    let customer = f.customer().await;
    f.pg.batch_execute(
        "BEGIN;
         SELECT pg_advisory_xact_lock(hashtext('halo.app_events'), 0);
         INSERT INTO app_events (seq, audience, recipients, kind, session_id, status)
         VALUES (nextval('app_events_seq'), 'customer', ARRAY[gen_random_uuid()], 'session',
                 gen_random_uuid(), 'searching');",
    )
    .await
    .unwrap();
    let chat = f.chat.clone();
    let blast = tokio::spawn(async move {
        chat.create_blast(customer, 10, &mitras, NO_LIMIT, WhenNobody::Fail)
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !blast.is_finished(),
        "the later transition waits for the order lock"
    );
    assert!(all_events(&f).await.is_empty(), "nothing is visible yet");
    f.pg.batch_execute("COMMIT").await.unwrap();
    blast.await.unwrap();
    let events = all_events(&f).await;
    assert_eq!(events.len(), 3, "the held event, then the blast's two");
    assert_eq!(events[0].audience, AudienceKind::Customer);
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(matches!(
        events[0].event,
        AppEvent::Session { session_id, .. } if session_id != events[1].event.event_session()
    ));
}

trait SessionOf {
    fn event_session(&self) -> Uuid;
}

impl SessionOf for AppEvent {
    fn event_session(&self) -> Uuid {
        match self {
            AppEvent::Offer { session_id, .. }
            | AppEvent::OfferWithdrawn { session_id, .. }
            | AppEvent::Session { session_id, .. } => *session_id,
            AppEvent::Away { .. } | AppEvent::Availability { .. } => Uuid::nil(),
        }
    }
}

/// Many transitions commit concurrently while a reader follows the log with "after the last
/// seq seen": it ends up with every event exactly once, in seq order.
#[tokio::test]
async fn a_reader_following_the_log_under_concurrent_commits_misses_nothing() {
    let f = fixture_with_pool(8).await;
    let mitras = f.mitras(3).await;
    let mut customers = Vec::new();
    for _ in 0..60 {
        customers.push(f.customer().await);
    }
    let writers: Vec<_> = customers
        .into_iter()
        .map(|customer| {
            let (chat, mitras) = (f.chat.clone(), mitras.clone());
            tokio::spawn(async move {
                let blast = match chat
                    .create_blast(customer, 10, &mitras, NO_LIMIT, WhenNobody::Fail)
                    .await
                    .unwrap()
                {
                    halo_ports::BlastOutcome::Created(session) => session,
                    other => panic!("refused: {other:?}"),
                };
                chat.end(blast.id, Party::Customer(customer), "ended_by_customer")
                    .await
                    .unwrap();
            })
        })
        .collect();
    let mut seen = Vec::new();
    let mut cursor = 0;
    let done = async {
        for writer in writers {
            writer.await.unwrap();
        }
    };
    tokio::pin!(done);
    loop {
        let finished = tokio::select! {
            () = &mut done => true,
            () = tokio::time::sleep(Duration::from_millis(2)) => false,
        };
        for event in f.events.read_after(cursor, 7).await.unwrap().events {
            cursor = event.seq;
            seen.push(event.seq);
        }
        if finished {
            break;
        }
    }
    loop {
        let page = f.events.read_after(cursor, 1_000).await.unwrap().events;
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        seen.extend(page.iter().map(|e| e.seq));
    }
    let all: Vec<i64> = all_events(&f).await.iter().map(|e| e.seq).collect();
    assert_eq!(all.len(), 60 * 4, "two events per blast, two per cancel");
    assert_eq!(seen, all, "every event once, in order");
}

#[tokio::test]
async fn the_first_state_and_its_position_share_one_snapshot() {
    let f = fixture().await;
    let mitras = f.mitras(2).await;
    let blast = f.blast(&mitras, 10).await;
    let active = f.active(mitras[0], 10).await;
    let state = f.events.state(Audience::Mitra(mitras[0]), T).await.unwrap();
    assert_eq!(state.position, f.events.head().await.unwrap());
    assert_eq!(
        state.offers.iter().map(|(s, _)| s).collect::<Vec<_>>(),
        vec![&blast]
    );
    assert_eq!(
        state.offers[0].1,
        blast.created_at + T.offer,
        "the round's end"
    );
    assert_eq!(
        state.sessions.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![active.id]
    );
    let customer = f
        .events
        .state(Audience::Customer(blast.customer_id), T)
        .await
        .unwrap();
    assert_eq!(customer.offers, vec![]);
    assert_eq!(customer.sessions, vec![blast]);
    assert_eq!(
        f.events
            .state(Audience::Mitra(mitras[1]), T)
            .await
            .unwrap()
            .sessions,
        vec![]
    );
}

#[tokio::test]
async fn resumes_read_one_recipient_and_stop_where_pruning_cut() {
    let f = fixture().await;
    let mitras = f.mitras(2).await;
    assert!(
        !f.events.resumable(0).await.unwrap(),
        "an empty log resumes nothing"
    );
    let first = f.blast(&mitras[..1], 10).await;
    let second = f.blast(&mitras, 10).await;
    let mine = f
        .events
        .read_for(Audience::Mitra(mitras[1]), 0, 100)
        .await
        .unwrap();
    assert_eq!(mine.len(), 1, "only the second blast reached it");
    assert_eq!(mine[0].recipients, vec![mitras[1].uuid()]);
    assert_eq!(mine[0].event.event_session(), second.id);
    let head = f.events.head().await.unwrap();
    assert!(f.events.resumable(0).await.unwrap());
    assert!(f.events.resumable(head).await.unwrap());
    assert!(
        !f.events.resumable(head + 1).await.unwrap(),
        "beyond the log"
    );
    // The first blast's events are old: pruning takes them (a prefix), and a resume from
    // before them is no longer possible.
    f.pg.execute(
        "UPDATE app_events SET created_at = now() - interval '2 hours' WHERE session_id = $1",
        &[&first.id],
    )
    .await
    .unwrap();
    assert_eq!(
        f.events.prune(time::Duration::hours(1), 100).await.unwrap(),
        2
    );
    let left: BTreeSet<Uuid> = all_events(&f)
        .await
        .iter()
        .map(|e| e.event.event_session())
        .collect();
    assert_eq!(left, BTreeSet::from([second.id]));
    assert!(!f.events.resumable(0).await.unwrap());
    assert!(
        f.events.resumable(2).await.unwrap(),
        "right after the pruned prefix"
    );
}
