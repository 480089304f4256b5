//! Offer rounds, missed offers, the waiting line and the availability event in the store (SPEC
//! §12.6–§12.9): a round moves once however many callers try, withdraws what it expired, and
//! never offers a session twice to one mitra; misses count only against idle online mitras;
//! the line leaves oldest first and tells the others their place; one availability change is
//! logged once.

use crate::fixture::{fixture, Fixture, NO_LIMIT, T};
use halo_domain::{MitraId, SessionStatus};
use halo_ports::{
    AcceptOutcome, AppEvent, BlastOutcome, ChatStore, DueRound, EventLog, OnlineReason, Timeouts,
    WhenNobody, WithdrawReason,
};
use time::Duration;
use uuid::Uuid;

/// Rounds of 10 s within a blast of 10 min.
const ROUNDS: Timeouts = Timeouts {
    offer: Duration::seconds(10),
    ..T
};

async fn set_online(f: &Fixture, mitras: &[MitraId]) {
    let ids: Vec<Uuid> = mitras.iter().map(|m| m.uuid()).collect();
    f.pg.execute(
        "UPDATE mitra_online_status SET is_online = true WHERE mitra_id = ANY($1)",
        &[&ids],
    )
    .await
    .expect("online");
}

/// The round of `session` as the sweep would find it once due.
async fn due(f: &Fixture, session: Uuid) -> DueRound {
    f.pg.execute(
        "UPDATE chat_sessions SET next_round_at = now() - interval '1 second' WHERE id = $1",
        &[&session],
    )
    .await
    .expect("make due");
    let rounds = f.chat.due_rounds(100).await.expect("due_rounds");
    rounds
        .into_iter()
        .find(|r| r.session == session)
        .expect("the round is due")
}

/// The events appended after `after`.
async fn events_after(f: &Fixture, after: i64) -> Vec<AppEvent> {
    let batch = f.events.read_after(after, 100).await.expect("read_after");
    batch.events.into_iter().map(|e| e.event).collect()
}

async fn missed(f: &Fixture, mitra: MitraId) -> i64 {
    let n: i32 =
        f.pg.query_one(
            "SELECT missed_offers FROM mitras WHERE id = $1",
            &[&mitra.uuid()],
        )
        .await
        .expect("missed")
        .get(0);
    i64::from(n)
}

#[tokio::test]
async fn a_round_moves_once_and_never_reoffers_a_mitra() {
    let f = fixture().await;
    let mitras = f.mitras(3).await;
    set_online(&f, &mitras).await;
    let customer = f.customer().await;
    let BlastOutcome::Created(session) = f
        .chat
        .create_blast(customer, 10, &mitras[..1], NO_LIMIT, WhenNobody::Fail)
        .await
        .unwrap()
    else {
        panic!("refused")
    };
    let head = f.events.head().await.unwrap();
    let round = due(&f, session.id).await;
    assert_eq!((round.round, round.offered.clone()), (1, vec![mitras[0]]));

    // Two callers try the same round: one moves it.
    let (a, b) = tokio::join!(
        f.chat.next_round(&round, &mitras[1..2], ROUNDS, Some(3)),
        f.chat.next_round(&round, &mitras[1..2], ROUNDS, Some(3)),
    );
    let moved = [a.unwrap(), b.unwrap()];
    assert_eq!(moved.iter().filter(|m| m.is_some()).count(), 1);

    let events: Vec<AppEvent> = events_after(&f, head).await;
    assert!(events.contains(&AppEvent::OfferWithdrawn {
        session_id: session.id,
        reason: WithdrawReason::Expired,
    }));
    let offers = events
        .iter()
        .filter(|e| matches!(e, AppEvent::Offer { .. }))
        .count();
    assert_eq!(
        offers, 1,
        "one offer event for the one new mitra: {events:?}"
    );
    assert_eq!(
        missed(&f, mitras[0]).await,
        1,
        "an idle online mitra missed it"
    );

    // The expired offer cannot be accepted; the new one can.
    assert_eq!(
        f.chat.accept(session.id, mitras[0], 3, T).await.unwrap(),
        AcceptOutcome::NotOffered
    );
    // The next round does not offer the session to the first two again.
    let round = due(&f, session.id).await;
    assert_eq!(round.round, 2);
    f.chat
        .next_round(&round, &mitras[..2], ROUNDS, None)
        .await
        .unwrap()
        .expect("moved");
    let offered = f
        .count(
            "SELECT count(*) FROM chat_request_notifications WHERE session_id = $1",
            &[&session.id],
        )
        .await;
    assert_eq!(offered, 2, "no second offer to a mitra of an earlier round");
}

#[tokio::test]
async fn misses_count_only_against_idle_online_mitras_and_send_away() {
    let f = fixture().await;
    let mitras = f.mitras(3).await; // [idle online, busy online, offline]
    set_online(&f, &mitras[..2]).await;
    f.active(mitras[1], 10).await;
    let customer = f.customer().await;
    let BlastOutcome::Created(session) = f
        .chat
        .create_blast(customer, 10, &mitras, NO_LIMIT, WhenNobody::Fail)
        .await
        .unwrap()
    else {
        panic!("refused")
    };
    let round = due(&f, session.id).await;
    let moved = f
        .chat
        .next_round(&round, &[], ROUNDS, Some(1))
        .await
        .unwrap()
        .expect("moved");
    assert_eq!(moved.away, vec![mitras[0]], "only the idle online mitra");
    assert_eq!(missed(&f, mitras[0]).await, 0, "its count restarts");
    assert_eq!(missed(&f, mitras[1]).await, 0, "busy: not a miss");
    assert_eq!(missed(&f, mitras[2]).await, 0, "offline: not a miss");

    // An answer restarts the count.
    f.pg.execute(
        "UPDATE mitras SET missed_offers = 2 WHERE id = $1",
        &[&mitras[0].uuid()],
    )
    .await
    .unwrap();
    let other = f.blast(&mitras[..1], 10).await;
    assert!(f.chat.reject(other.id, mitras[0]).await.unwrap());
    assert_eq!(missed(&f, mitras[0]).await, 0);
}

#[tokio::test]
async fn the_line_leaves_oldest_first_and_tells_the_rest_their_place() {
    let f = fixture().await;
    let mitra = f.mitra().await;
    let mut queued = Vec::new();
    for _ in 0..3 {
        let customer = f.customer().await;
        let BlastOutcome::Created(session) = f
            .chat
            .create_blast(customer, 10, &[], NO_LIMIT, WhenNobody::Queue)
            .await
            .unwrap()
        else {
            panic!("refused")
        };
        assert_eq!(session.status, SessionStatus::Queued);
        queued.push(session.id);
    }
    assert_eq!(f.chat.queued(10).await.unwrap(), queued, "oldest first");
    let head = f.events.head().await.unwrap();
    let started = f
        .chat
        .dispatch(&[(queued[0], vec![mitra])], ROUNDS)
        .await
        .unwrap();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].status, SessionStatus::Searching);
    assert_eq!(f.chat.queued(10).await.unwrap(), queued[1..].to_vec());
    assert_eq!(
        f.chat.mitras_with_open_offers(T).await.unwrap(),
        vec![mitra]
    );
    let places: Vec<(Uuid, u32)> = events_after(&f, head)
        .await
        .into_iter()
        .filter_map(|event| match event {
            AppEvent::Session {
                session_id,
                queue: Some(place),
                ..
            } => Some((session_id, place.position)),
            _ => None,
        })
        .collect();
    assert_eq!(places, vec![(queued[1], 1), (queued[2], 2)]);
    // A second dispatch of the same request changes nothing.
    assert_eq!(
        f.chat
            .dispatch(&[(queued[0], vec![mitra])], ROUNDS)
            .await
            .unwrap(),
        vec![]
    );
}

#[tokio::test]
async fn one_availability_change_is_logged_once() {
    let f = fixture().await;
    assert!(f.events.append_availability(0).await.unwrap());
    assert!(
        !f.events.append_availability(0).await.unwrap(),
        "same: none"
    );
    let (a, b) = tokio::join!(
        f.events.append_availability(3),
        f.events.append_availability(4)
    );
    assert_eq!(
        [a.unwrap(), b.unwrap()].iter().filter(|x| **x).count(),
        1,
        "two instances seeing one change"
    );
    let mitra = f.mitra().await;
    f.events
        .append_away(mitra, OnlineReason::Deactivated)
        .await
        .unwrap();
    let kinds: Vec<AppEvent> = events_after(&f, 0).await;
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert!(matches!(
        kinds[2],
        AppEvent::Away {
            reason: OnlineReason::Deactivated
        }
    ));
}
