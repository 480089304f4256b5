//! Section S — the apps' event streams (SPEC §9): offers pushed to mitra streams held by
//! another instance, withdrawals after the accept, `Last-Event-ID` resumes, streams that keep
//! working from Postgres while Valkey is down, refused tokens, and abruptly dropped streams.

use crate::common::DEADLINE;
use halo_acceptance::{eventually, EventStream, Mitra, SseEvent, Stack, StackOptions};
use reqwest::Method;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

/// Long enough for a live event to arrive (the pumps poll every second even without the
/// Valkey signal); quiet periods are asserted with it.
const QUIET: Duration = Duration::from_millis(2500);

async fn mitra_stream(stack: &Stack, i: usize, mitra: &Mitra, last: Option<&str>) -> EventStream {
    stack
        .events_on(i, "mitra", &mitra.token, last)
        .await
        .unwrap_or_else(|reply| panic!("mitra stream refused: {reply:?}"))
}

fn session_of(event: &SseEvent) -> &str {
    event.data["session_id"].as_str().expect("session_id")
}

fn ids(events: &[SseEvent]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e.id.parse().expect("numeric id"))
        .collect()
}

/// A blast of a new customer on public-api `i`; returns the session id.
async fn blast_on(stack: &Stack, i: usize) -> String {
    let customer = stack.customer().await;
    let reply = stack
        .app_on(
            i,
            Method::POST,
            "/api/client/chat/requests",
            &customer.token,
            Some(json!({ "minutes": 15 })),
        )
        .await
        .expect(201);
    reply["session_id"].as_str().expect("session_id").to_owned()
}

#[tokio::test]
async fn s_offer_pushed_across_instances_and_withdrawn_from_the_losers() {
    let stack = Stack::with(StackOptions::default().publics(2)).await;
    let mitras = [
        stack.online_mitra().await,
        stack.online_mitra().await,
        stack.online_mitra().await,
    ];
    let mut streams = Vec::new();
    for mitra in &mitras {
        streams.push(mitra_stream(&stack, 1, mitra, None).await);
    }
    let customer = stack.customer().await;
    let mut client = stack
        .events_on(1, "client", &customer.token, None)
        .await
        .expect("client stream");
    // The blast on instance 0; the streams are held by instance 1.
    let created = stack.blast(&customer).await.expect(201);
    let session = created["session_id"].as_str().unwrap().to_owned();
    for stream in &mut streams {
        let offer = stream.next().await;
        assert_eq!(offer.event, "offer");
        assert_eq!(session_of(&offer), session);
        assert_eq!(offer.data["minutes"], 15);
        assert!(offer.data["expires_at"].is_string());
    }
    let searching = client.next_session().await;
    assert_eq!(
        (searching.event.as_str(), searching.data["status"].as_str()),
        ("session", Some("searching"))
    );
    stack.accept(&mitras[0], &session).await.expect(200);
    let won = streams[0].next().await;
    assert_eq!(
        (won.event.as_str(), won.data["status"].as_str()),
        ("session", Some("active"))
    );
    assert!(won.data["ends_at"].is_string());
    for stream in &mut streams[1..] {
        let withdrawn = stream.next().await;
        assert_eq!(withdrawn.event, "offer_withdrawn");
        assert_eq!(session_of(&withdrawn), session);
        assert_eq!(withdrawn.data["reason"], "taken");
    }
    let accepted = client.next_session().await;
    assert_eq!(accepted.data["status"], "active");
    assert_eq!(accepted.data["mitra_id"], mitras[0].id.to_string());
    // Nothing else was said to anyone.
    for stream in &mut streams {
        assert_eq!(stream.drain(QUIET).await, vec![]);
    }
}

#[tokio::test]
async fn s_last_event_id_resume_loses_nothing_and_repeats_nothing() {
    let stack = Stack::with(StackOptions::default().publics(2)).await;
    let mitra = stack.online_mitra().await;
    let mut stream = mitra_stream(&stack, 0, &mitra, None).await;
    let first = blast_on(&stack, 0).await;
    let offer = stream.next().await;
    assert_eq!(session_of(&offer), first);
    drop(stream);
    // While the app is away: two more blasts, and the first customer... cancels nothing; the
    // second blast's customer cancels it.
    let customer = stack.customer().await;
    let second = stack.blast(&customer).await.expect(201)["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let third = blast_on(&stack, 1).await;
    stack
        .app(
            Method::POST,
            &format!("/api/client/chat/sessions/{second}/end"),
            &customer.token,
            None,
        )
        .await
        .expect(200);
    // Resumed on the other instance: exactly what it missed, in order.
    let mut resumed = mitra_stream(&stack, 1, &mitra, Some(&offer.id)).await;
    let missed = [
        resumed.next().await,
        resumed.next().await,
        resumed.next().await,
    ];
    let seen: Vec<(&str, &str)> = missed
        .iter()
        .map(|e| (e.event.as_str(), session_of(e)))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("offer", second.as_str()),
            ("offer", third.as_str()),
            ("offer_withdrawn", second.as_str()),
        ]
    );
    assert_eq!(missed[2].data["reason"], "cancelled");
    let missed_ids = ids(&missed);
    assert!(missed_ids.windows(2).all(|w| w[0] < w[1]));
    assert!(missed_ids[0] > offer.id.parse::<i64>().unwrap());
    // Then live, once each.
    let fourth = blast_on(&stack, 0).await;
    let live = resumed.next().await;
    assert_eq!(
        (live.event.as_str(), session_of(&live)),
        ("offer", fourth.as_str())
    );
    assert_eq!(resumed.drain(QUIET).await, vec![], "no duplicate");
    // Without Last-Event-ID: the current state, one offer per open offer, one id for all.
    let mut fresh = mitra_stream(&stack, 1, &mitra, None).await;
    let state = [fresh.next().await, fresh.next().await, fresh.next().await];
    let open: BTreeSet<&str> = state.iter().map(session_of).collect();
    assert_eq!(
        open,
        BTreeSet::from([first.as_str(), third.as_str(), fourth.as_str()])
    );
    assert!(state
        .iter()
        .all(|e| e.event == "offer" && e.id == state[0].id));
    assert_eq!(state[0].id, live.id, "the state is as of the last event");
    assert_eq!(fresh.drain(QUIET).await, vec![]);
}

#[tokio::test]
async fn s_streams_keep_working_from_postgres_while_valkey_is_down() {
    let mut stack = Stack::with(StackOptions::default().publics(2)).await;
    let mitra = stack.online_mitra().await;
    let mut stream = mitra_stream(&stack, 1, &mitra, None).await;
    let before = blast_on(&stack, 0).await;
    let mut received = vec![stream.next().await];
    stack.valkey.kill().await;
    let during = blast_on(&stack, 0).await;
    received.push(stream.next().await);
    stack.valkey.restart().await;
    // Back: the mirror is reseeded (the availability read of the next blast needs it) and
    // the signal flows again.
    eventually(
        "both instances trust the mirror again",
        DEADLINE,
        || async {
            stack.publics[0].metrics().await.mirror_state_is("trusted")
                && stack.publics[1].metrics().await.mirror_state_is("trusted")
        },
    )
    .await;
    let after = blast_on(&stack, 0).await;
    received.push(stream.next().await);
    received.extend(stream.drain(QUIET).await);
    let sessions: Vec<&str> = received.iter().map(session_of).collect();
    assert_eq!(
        sessions,
        vec![before.as_str(), during.as_str(), after.as_str()]
    );
    let ids = ids(&received);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "no duplicate: {ids:?}");
}

#[tokio::test]
async fn s_streams_refuse_wrong_role_invalid_and_revoked_tokens() {
    let stack = Stack::start().await;
    let mitra = stack.online_mitra().await;
    let customer = stack.customer().await;
    let refusal = |result: Result<EventStream, halo_acceptance::Reply>| match result {
        Ok(_) => panic!("the stream was opened"),
        Err(reply) => (reply.status, reply.code().to_owned()),
    };
    assert_eq!(
        refusal(stack.events_on(0, "mitra", &customer.token, None).await),
        (403, "FORBIDDEN".to_owned())
    );
    assert_eq!(
        refusal(stack.events_on(0, "client", &mitra.token, None).await),
        (403, "FORBIDDEN".to_owned())
    );
    assert_eq!(
        refusal(stack.events_on(0, "mitra", "not-a-token", None).await),
        (401, "UNAUTHORIZED".to_owned())
    );
    // Deactivation revokes the mitra's sessions: its stream is refused too.
    stack.set_active(&mitra, false).await.expect(200);
    assert_eq!(
        refusal(stack.events_on(0, "mitra", &mitra.token, None).await),
        (403, "ACCOUNT_INACTIVE".to_owned())
    );
}

#[tokio::test]
async fn s_a_deactivated_mitras_open_streams_are_told_and_ended() {
    // The operator's deactivation runs on internal-api; the streams are held by public-api 1.
    let stack = Stack::with(StackOptions::default().publics(2)).await;
    let mitra = stack.online_mitra().await;
    let mut streams = [
        mitra_stream(&stack, 0, &mitra, None).await,
        mitra_stream(&stack, 1, &mitra, None).await,
    ];
    stack.set_active(&mitra, false).await.expect(200);
    for stream in &mut streams {
        let away = stream.next().await;
        assert_eq!(
            (away.event.as_str(), away.data["reason"].as_str()),
            ("away", Some("deactivated"))
        );
        assert_eq!(stream.next_within(QUIET).await, None, "the stream ended");
    }
}

#[tokio::test]
async fn s_a_thousand_streams_dropped_abruptly_leave_the_gauge_at_zero() {
    // A server notices a client that went away when a write fails: ping often.
    let stack = Stack::with(StackOptions::default().env("SSE_PING_INTERVAL_MS", 300)).await;
    let mitra = stack.mitra().await;
    let mut streams = Vec::new();
    // Fifty at a time: each open reads Postgres through a pool of four.
    for _ in 0..20 {
        let batch = (0..50).map(|_| mitra_stream(&stack, 0, &mitra, None));
        streams.extend(futures_util::future::join_all(batch).await);
    }
    let open = || async {
        stack.publics[0]
            .metrics()
            .await
            .sum("halo_sse_streams_open", &[])
    };
    assert_eq!(open().await, 1000.0);
    drop(streams);
    eventually("every dropped stream is closed", DEADLINE, || async {
        open().await == 0.0
    })
    .await;
}
