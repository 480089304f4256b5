//! `PgChat` one call at a time: blasts, targeted requests, payment, accept and reject, ending
//! by either party, extension, reroute and the open-request list.

use crate::fixture::{created, fixture, now, NO_LIMIT, T};
use halo_domain::{MitraId, SessionStatus};
use halo_ports::{
    AcceptOutcome, ChatStore, Party, RerouteOutcome, TargetOutcome, TruthError, WhenNobody,
};
use time::Duration;
use uuid::Uuid;

const MAX: u32 = 3;

#[tokio::test]
async fn a_blast_reaches_each_mitra_once() {
    let f = fixture().await;
    let mitras = f.mitras(3).await;
    let customer = f.customer().await;
    let notify = [mitras[0], mitras[1], mitras[2], mitras[0]];
    let session = created(
        f.chat
            .create_blast(customer, 15, &notify, NO_LIMIT, WhenNobody::Fail)
            .await
            .unwrap(),
    );
    assert_eq!(session.status, SessionStatus::Searching);
    assert_eq!(session.customer_id, customer);
    assert_eq!(session.mitra_id, None);
    assert_eq!(session.minutes, 15);
    assert_eq!(
        (
            session.accepted_at,
            session.ends_at,
            session.ended_at,
            &session.end_reason
        ),
        (None, None, None, &None)
    );
    assert_eq!(
        f.count(
            "SELECT count(*) FROM chat_request_notifications WHERE session_id = $1 AND response IS NULL",
            &[&session.id]
        )
        .await,
        3
    );
    for mitra in mitras {
        assert_eq!(
            f.chat.open_requests(mitra, T).await.unwrap(),
            vec![session.clone()]
        );
    }
    assert_eq!(f.chat.session(session.id).await.unwrap(), Some(session));
    assert_eq!(f.chat.session(Uuid::new_v4()).await.unwrap(), None);
}

#[tokio::test]
async fn a_blast_nobody_can_take_fails_at_once() {
    let f = fixture().await;
    let customer = f.customer().await;
    let session = created(
        f.chat
            .create_blast(customer, 10, &[], NO_LIMIT, WhenNobody::Fail)
            .await
            .unwrap(),
    );
    assert_eq!(session.status, SessionStatus::Failed);
    assert_eq!(session.end_reason.as_deref(), Some("no_bestie_available"));
    assert!(session.ended_at.is_some());
    assert_eq!(
        f.count("SELECT count(*) FROM chat_request_notifications", &[])
            .await,
        0
    );
}

#[tokio::test]
async fn a_blast_to_an_unknown_mitra_is_refused() {
    let f = fixture().await;
    let customer = f.customer().await;
    let refused = f
        .chat
        .create_blast(
            customer,
            10,
            &[MitraId::new(Uuid::new_v4())],
            NO_LIMIT,
            WhenNobody::Fail,
        )
        .await;
    assert!(
        matches!(refused, Err(TruthError::MitraNotFound)),
        "{refused:?}"
    );
    assert_eq!(f.count("SELECT count(*) FROM chat_sessions", &[]).await, 0);
}

#[tokio::test]
async fn targeted_requests_hold_slots_up_to_capacity() {
    let f = fixture().await;
    let mitra = f.mitra().await;
    let customer = f.customer().await;
    for _ in 0..2 {
        let TargetOutcome::Created(session) = f
            .chat
            .create_targeted(customer, mitra, 20, 2, NO_LIMIT)
            .await
            .unwrap()
        else {
            panic!("under capacity");
        };
        assert_eq!(session.status, SessionStatus::PendingPayment);
        assert_eq!(session.mitra_id, Some(mitra));
        assert_eq!(session.ends_at, None);
    }
    assert_eq!(
        f.chat
            .create_targeted(customer, mitra, 20, 2, NO_LIMIT)
            .await
            .unwrap(),
        TargetOutcome::AtCapacity
    );
    assert!(matches!(
        f.chat
            .create_targeted(customer, MitraId::new(Uuid::new_v4()), 20, 2, NO_LIMIT)
            .await,
        Err(TruthError::MitraNotFound)
    ));
}

#[tokio::test]
async fn only_its_customer_pays_a_session() {
    let f = fixture().await;
    let mitra = f.mitra().await;
    let session = f.targeted(mitra, 30).await;
    assert_eq!(
        f.chat
            .pay(session.id, Uuid::new_v4(), T, "test-charge")
            .await
            .unwrap(),
        None
    );
    let before = now();
    let paid = f
        .chat
        .pay(session.id, session.customer_id, T, "test-charge")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(paid.status, SessionStatus::Active);
    let accepted = paid.accepted_at.unwrap();
    assert!(accepted >= before - Duration::seconds(1));
    assert_eq!(paid.ends_at, Some(accepted + Duration::minutes(30)));
    assert_eq!(
        f.chat
            .pay(session.id, session.customer_id, T, "test-charge")
            .await
            .unwrap(),
        None,
        "paid once"
    );
    let blast = f.blast(&[mitra], 5).await;
    assert_eq!(
        f.chat
            .pay(blast.id, blast.customer_id, T, "test-charge")
            .await
            .unwrap(),
        None,
        "a blast is not pending payment"
    );
}

#[tokio::test]
async fn the_first_accept_starts_the_session() {
    let f = fixture().await;
    let mitras = f.mitras(2).await;
    let blast = f.blast(&mitras, 25).await;
    let AcceptOutcome::Accepted(session) =
        f.chat.accept(blast.id, mitras[1], MAX, T).await.unwrap()
    else {
        panic!("first accept");
    };
    assert_eq!(session.status, SessionStatus::Active);
    assert_eq!(session.mitra_id, Some(mitras[1]));
    assert_eq!(
        session.ends_at,
        Some(session.accepted_at.unwrap() + Duration::minutes(25))
    );
    assert_eq!(
        f.chat.accept(blast.id, mitras[0], MAX, T).await.unwrap(),
        AcceptOutcome::Taken
    );
    assert_eq!(
        f.chat.accept(blast.id, mitras[1], MAX, T).await.unwrap(),
        AcceptOutcome::Taken,
        "accepting twice"
    );
    let response: Option<String> = f
        .pg
        .query_one(
            "SELECT response FROM chat_request_notifications WHERE session_id = $1 AND mitra_id = $2",
            &[&blast.id, &mitras[1].uuid()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(response.as_deref(), Some("accepted"));
}

#[tokio::test]
async fn a_blast_that_never_reached_the_mitra_is_not_offered() {
    let f = fixture().await;
    let mitras = f.mitras(2).await;
    let blast = f.blast(&mitras[..1], 10).await;
    assert_eq!(
        f.chat.accept(blast.id, mitras[1], MAX, T).await.unwrap(),
        AcceptOutcome::NotOffered
    );
    assert_eq!(
        f.chat
            .accept(blast.id, MitraId::new(Uuid::new_v4()), MAX, T)
            .await
            .unwrap(),
        AcceptOutcome::NotOffered
    );
    assert_eq!(
        f.chat
            .accept(Uuid::new_v4(), mitras[0], MAX, T)
            .await
            .unwrap(),
        AcceptOutcome::NotOffered
    );
    assert_eq!(f.status_of(blast.id).await.0, "searching");
}

#[tokio::test]
async fn a_mitra_at_capacity_cannot_accept() {
    let f = fixture().await;
    let mitra = f.mitra().await;
    f.targeted(mitra, 10).await;
    f.active(mitra, 10).await;
    let blast = f.blast(&[mitra], 10).await;
    assert_eq!(
        f.chat.accept(blast.id, mitra, 2, T).await.unwrap(),
        AcceptOutcome::AtCapacity
    );
    assert_eq!(f.status_of(blast.id).await.0, "searching");
    assert!(matches!(
        f.chat.accept(blast.id, mitra, 3, T).await.unwrap(),
        AcceptOutcome::Accepted(_)
    ));
}

#[tokio::test]
async fn a_rejection_is_recorded_only_where_the_blast_reached() {
    let f = fixture().await;
    let mitras = f.mitras(2).await;
    let blast = f.blast(&mitras[..1], 10).await;
    assert!(!f.chat.reject(blast.id, mitras[1]).await.unwrap());
    assert!(f.chat.reject(blast.id, mitras[0]).await.unwrap());
    assert!(
        f.chat.reject(blast.id, mitras[0]).await.unwrap(),
        "idempotent"
    );
    assert_eq!(f.chat.open_requests(mitras[0], T).await.unwrap(), vec![]);
    assert_eq!(f.status_of(blast.id).await.0, "searching");
}

#[tokio::test]
async fn open_requests_leave_out_answered_and_taken_blasts() {
    let f = fixture().await;
    let mitras = f.mitras(2).await;
    let (m1, m2) = (mitras[0], mitras[1]);
    let taken = f.blast(&[m1, m2], 10).await;
    let rejected = f.blast(&[m1, m2], 10).await;
    let older = f.blast(&[m1], 10).await;
    let newer = f.blast(&[m1], 10).await;
    let cancelled = f.blast(&[m1], 10).await;
    f.set_created_at(&[older.id], now() - Duration::seconds(30))
        .await;
    f.set_created_at(&[newer.id], now() - Duration::seconds(10))
        .await;
    assert!(f.chat.reject(rejected.id, m1).await.unwrap());
    assert!(matches!(
        f.chat.accept(taken.id, m2, MAX, T).await.unwrap(),
        AcceptOutcome::Accepted(_)
    ));
    f.chat
        .end(
            cancelled.id,
            Party::Customer(cancelled.customer_id),
            "customer",
        )
        .await
        .unwrap()
        .unwrap();

    let ids = |sessions: Vec<halo_ports::ChatSession>| {
        sessions.into_iter().map(|s| s.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(f.chat.open_requests(m1, T).await.unwrap()),
        vec![newer.id, older.id],
        "newest first"
    );
    assert_eq!(
        ids(f.chat.open_requests(m2, T).await.unwrap()),
        vec![rejected.id]
    );
}

#[tokio::test]
async fn each_party_ends_only_its_own_sessions() {
    let f = fixture().await;
    let mitras = f.mitras(2).await;
    let active = f.active(mitras[0], 10).await;
    let stranger = f.customer().await;
    assert_eq!(
        f.chat
            .end(active.id, Party::Customer(stranger), "customer")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        f.chat
            .end(active.id, Party::Mitra(mitras[1]), "mitra")
            .await
            .unwrap(),
        None
    );
    let ended = f
        .chat
        .end(active.id, Party::Mitra(mitras[0]), "mitra_ended")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.status, SessionStatus::Ended);
    assert_eq!(ended.end_reason.as_deref(), Some("mitra_ended"));
    assert!(ended.ended_at.is_some());
    assert_eq!(
        f.chat
            .end(active.id, Party::Customer(active.customer_id), "again")
            .await
            .unwrap(),
        None,
        "already ended"
    );

    let pending = f.targeted(mitras[0], 10).await;
    let cancelled = f
        .chat
        .end(
            pending.id,
            Party::Customer(pending.customer_id),
            "changed_mind",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cancelled.status, SessionStatus::Cancelled);

    let blast = f.blast(&mitras, 10).await;
    assert_eq!(
        f.chat
            .end(blast.id, Party::Mitra(mitras[0]), "mitra")
            .await
            .unwrap(),
        None,
        "a notified mitra is not a party of a blast"
    );
    let withdrawn = f
        .chat
        .end(blast.id, Party::Customer(blast.customer_id), "withdrawn")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(withdrawn.status, SessionStatus::Cancelled);
    assert_eq!(withdrawn.end_reason.as_deref(), Some("withdrawn"));
}

#[tokio::test]
async fn only_the_customer_extends_a_running_session() {
    let f = fixture().await;
    let mitra = f.mitra().await;
    let active = f.active(mitra, 10).await;
    assert_eq!(
        f.chat.extend(active.id, Uuid::new_v4(), 5).await.unwrap(),
        None
    );
    let extended = f
        .chat
        .extend(active.id, active.customer_id, 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(extended.minutes, 15);
    assert_eq!(
        extended.ends_at,
        Some(active.ends_at.unwrap() + Duration::minutes(5))
    );

    let pending = f.targeted(mitra, 10).await;
    assert_eq!(
        f.chat
            .extend(pending.id, pending.customer_id, 5)
            .await
            .unwrap(),
        None
    );

    f.set_ends_at(&[active.id], now() - Duration::seconds(1))
        .await;
    assert_eq!(
        f.chat
            .extend(active.id, active.customer_id, 5)
            .await
            .unwrap(),
        None,
        "time is up, even before the sweep ends it"
    );
}

#[tokio::test]
async fn reroute_moves_an_active_session_and_names_the_previous_mitra() {
    let f = fixture().await;
    let mitras = f.mitras(2).await;
    let active = f.active(mitras[0], 10).await;
    let RerouteOutcome::Moved {
        session: moved,
        from: previous,
    } = f
        .chat
        .reroute(active.id, mitras[1], Some(MAX))
        .await
        .unwrap()
    else {
        panic!("not moved")
    };
    assert_eq!(previous, Some(mitras[0]));
    assert_eq!(moved.mitra_id, Some(mitras[1]));
    assert_eq!(moved.status, SessionStatus::Active);
    assert_eq!(moved.ends_at, active.ends_at);

    let pending = f.targeted(mitras[0], 10).await;
    assert_eq!(
        f.chat.reroute(pending.id, mitras[1], None).await.unwrap(),
        RerouteOutcome::NotActive
    );
    assert!(matches!(
        f.chat
            .reroute(active.id, MitraId::new(Uuid::new_v4()), None)
            .await,
        Err(TruthError::MitraNotFound)
    ));
}

#[tokio::test]
async fn reroute_respects_the_targets_capacity_unless_forced_and_never_a_deactivated_target() {
    let f = fixture().await;
    let mitras = f.mitras(3).await;
    let session = f.active(mitras[0], 10).await;
    f.active(mitras[1], 10).await;
    assert_eq!(
        f.chat
            .reroute(session.id, mitras[1], Some(1))
            .await
            .unwrap(),
        RerouteOutcome::Refused,
        "the target is full"
    );
    assert!(matches!(
        f.chat.reroute(session.id, mitras[1], None).await.unwrap(),
        RerouteOutcome::Moved { .. }
    ));
    f.pg.execute(
        "UPDATE mitras SET is_active = false WHERE id = $1",
        &[&mitras[2].uuid()],
    )
    .await
    .unwrap();
    assert_eq!(
        f.chat.reroute(session.id, mitras[2], None).await.unwrap(),
        RerouteOutcome::Refused,
        "forced, but deactivated"
    );
}

#[tokio::test]
async fn a_deactivated_mitra_can_neither_accept_nor_be_targeted_whatever_the_mirror_says() {
    let f = fixture().await;
    let mitras = f.mitras(2).await;
    let blast = f.blast(&mitras, 10).await;
    f.pg.execute(
        "UPDATE mitras SET is_active = false WHERE id = $1",
        &[&mitras[0].uuid()],
    )
    .await
    .unwrap();
    assert_eq!(
        f.chat.accept(blast.id, mitras[0], MAX, T).await.unwrap(),
        AcceptOutcome::Inactive
    );
    let customer = f.customer().await;
    assert_eq!(
        f.chat
            .create_targeted(customer, mitras[0], 10, MAX, NO_LIMIT)
            .await
            .unwrap(),
        TargetOutcome::Inactive
    );
}

#[tokio::test]
async fn a_rejected_request_cannot_be_accepted_afterwards() {
    let f = fixture().await;
    let mitras = f.mitras(1).await;
    let blast = f.blast(&mitras, 10).await;
    assert!(f.chat.reject(blast.id, mitras[0]).await.unwrap());
    assert_eq!(
        f.chat.accept(blast.id, mitras[0], MAX, T).await.unwrap(),
        AcceptOutcome::NotOffered
    );
}

#[tokio::test]
async fn accept_pay_and_open_requests_honour_the_timeouts_before_the_timer_runs() {
    let f = fixture().await;
    let mitras = f.mitras(1).await;
    let blast = f.blast(&mitras, 10).await;
    let pending = f.targeted(mitras[0], 10).await;
    f.pg.execute(
        "UPDATE chat_sessions SET created_at = now() - interval '11 minutes'",
        &[],
    )
    .await
    .unwrap();
    f.pg.execute(
        "UPDATE chat_request_notifications SET created_at = now() - interval '11 minutes'",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(f.chat.open_requests(mitras[0], T).await.unwrap(), vec![]);
    assert_eq!(
        f.chat.accept(blast.id, mitras[0], MAX, T).await.unwrap(),
        AcceptOutcome::Taken,
        "past the blast timeout"
    );
    assert_eq!(
        f.chat
            .pay(pending.id, pending.customer_id, T, "test-charge")
            .await
            .unwrap(),
        None,
        "past the payment timeout"
    );
}

#[tokio::test]
async fn count_active_counts_only_active_sessions() {
    let f = fixture().await;
    let mitra = f.mitra().await;
    assert_eq!(f.chat.count_active().await.unwrap(), 0);
    f.active(mitra, 10).await;
    f.active(mitra, 10).await;
    f.targeted(mitra, 10).await;
    f.blast(&[mitra], 10).await;
    assert_eq!(f.chat.count_active().await.unwrap(), 2);
    assert!(f.metrics.pg_queries("count_active_sessions") >= 2);
}

#[tokio::test]
async fn an_unknown_customer_is_a_query_error() {
    let f = fixture().await;
    let mitra = f.mitra().await;
    let refused = f
        .chat
        .create_blast(Uuid::new_v4(), 10, &[mitra], NO_LIMIT, WhenNobody::Fail)
        .await;
    assert!(matches!(refused, Err(TruthError::Query(_))), "{refused:?}");
}
