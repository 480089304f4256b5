//! Section T — bounded, fair offers (SPEC §12.5–§12.8): a round reaches at most
//! `blast_max_recipients` mitras, longest idle first; an unanswered round goes to the next
//! candidates; a mitra that lets too many offers expire in a row is set away; a request with
//! nobody available waits in line, and the oldest waiter gets the freed slot.

use crate::common::DEADLINE;
use halo_acceptance::{eventually, Customer, EventStream, Mitra, SseEvent, Stack, StackOptions};
use reqwest::Method;
use std::collections::BTreeSet;
use std::time::Duration;

/// Long enough for a live event to arrive (the pumps poll every second); quiet periods are
/// asserted with it.
const QUIET: Duration = Duration::from_millis(2500);

/// The shortest round an operator may set: every round test waits for it once.
const ROUND_SECONDS: u32 = 5;

async fn stream(stack: &Stack, role: &str, token: &str) -> EventStream {
    stack
        .events_on(0, role, token, None)
        .await
        .unwrap_or_else(|reply| panic!("{role} stream refused: {reply:?}"))
}

fn session_of(event: &SseEvent) -> &str {
    event.data["session_id"].as_str().expect("session_id")
}

async fn blast(stack: &Stack, customer: &Customer) -> (String, String) {
    let created = stack.blast(customer).await.expect(201);
    (
        created["session_id"]
            .as_str()
            .expect("session_id")
            .to_owned(),
        created["status"].as_str().expect("status").to_owned(),
    )
}

/// Mitras online one after another, so the first is the longest idle.
async fn online_in_order(stack: &Stack, n: usize) -> Vec<Mitra> {
    let mut mitras = Vec::new();
    for _ in 0..n {
        mitras.push(stack.online_mitra().await);
        // Not a wait for a condition: the idle rank is the online time in milliseconds (ties
        // broken at random, SPEC §12.5), so the next one must come online a little later.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    mitras
}

#[tokio::test]
async fn t_a_round_reaches_the_longest_idle_then_the_next_candidates() {
    let stack = Stack::start().await;
    stack.set_config("blast_max_recipients", 2).await;
    stack
        .set_config("offer_timeout_seconds", ROUND_SECONDS)
        .await;
    let online = online_in_order(&stack, 4).await;
    // The longest idle takes a chat and ends it: it is now the shortest idle.
    let chat = stack.start_chat(&online[0]).await;
    stack.end_chat(&online[0], chat).await;
    let mitras = [&online[1], &online[2], &online[3], &online[0]];
    let mut streams = Vec::new();
    for mitra in mitras {
        streams.push(stream(&stack, "mitra", &mitra.token).await);
    }
    let customer = stack.customer().await;
    let created = stack.blast(&customer).await.expect(201);
    assert_eq!(created["notified"], 2, "bounded by blast_max_recipients");
    let session = created["session_id"].as_str().unwrap().to_owned();

    // Round one: the two longest idle (the chat moved the first one online to the back).
    for stream in &mut streams[..2] {
        let offer = stream.next().await;
        assert_eq!(
            (offer.event.as_str(), session_of(&offer)),
            ("offer", session.as_str())
        );
    }
    for stream in &mut streams[2..] {
        assert_eq!(stream.drain(QUIET).await, vec![], "not in the first round");
    }

    // The round ends unanswered: withdrawn from the first two, offered to the other two.
    for stream in &mut streams[..2] {
        let withdrawn = stream.next().await;
        assert_eq!(withdrawn.event, "offer_withdrawn");
        assert_eq!(withdrawn.data["reason"], "expired");
    }
    for stream in &mut streams[2..] {
        let offer = stream.next().await;
        assert_eq!(
            (offer.event.as_str(), session_of(&offer)),
            ("offer", session.as_str())
        );
    }
    let late = stack.accept(mitras[0], &session).await;
    assert_eq!(
        late.status, 404,
        "an expired round's offer is gone: {late:?}"
    );
    let won = stack.accept(mitras[2], &session).await.expect(200);
    assert_eq!(won["status"], "active");
    let lost = streams[3].next().await;
    assert_eq!(
        (lost.event.as_str(), lost.data["reason"].as_str()),
        ("offer_withdrawn", Some("taken"))
    );
    // Nobody of round one is offered it again, nor told anything more.
    for stream in &mut streams[..2] {
        assert_eq!(stream.drain(QUIET).await, vec![]);
    }
}

#[tokio::test]
async fn t_a_mitra_that_misses_offers_in_a_row_is_set_away() {
    let stack = Stack::start().await;
    stack.set_config("missed_offers_before_away", 2).await;
    stack
        .set_config("blast_timeout_seconds", ROUND_SECONDS)
        .await;
    stack
        .set_config("offer_timeout_seconds", ROUND_SECONDS)
        .await;
    let careless = stack.online_mitra().await;
    let answering = stack.online_mitra().await;
    let mut careless_stream = stream(&stack, "mitra", &careless.token).await;
    let mut answering_stream = stream(&stack, "mitra", &answering.token).await;

    // Two requests at once; `answering` rejects the first, lets the second expire.
    let (first, _) = blast(&stack, &stack.customer().await).await;
    let (second, _) = blast(&stack, &stack.customer().await).await;
    let reject = format!("/api/mitra/chat/requests/{first}/reject");
    let rejected = stack
        .app(Method::POST, &reject, &answering.token, None)
        .await;
    assert!(rejected.status < 300, "reject: {rejected:?}");

    let away = loop {
        let event = careless_stream.next().await;
        if event.event == "away" {
            break event;
        }
        assert!(
            ["offer", "offer_withdrawn"].contains(&event.event.as_str()),
            "{event:?}"
        );
    };
    assert_eq!(away.data["reason"], "missed_offers");
    eventually("careless mitra offline in Postgres", DEADLINE, || async {
        !stack.pg_is_online(careless.id).await
    })
    .await;
    let logged = stack
        .pg_count(
            "SELECT count(*) FROM mitra_online_logs
              WHERE mitra_id = $1 AND status = 'offline' AND reason = 'missed_offers'",
            careless.id,
        )
        .await;
    assert_eq!(logged, 1);
    // One miss after an answer is not two in a row.
    let seen: BTreeSet<String> = answering_stream
        .drain(QUIET)
        .await
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert!(!seen.contains("away"), "{seen:?}");
    assert!(stack.pg_is_online(answering.id).await);
    for session in [first, second] {
        assert_eq!(
            stack.session_status(session.parse().unwrap()).await,
            "failed"
        );
    }
}

#[tokio::test]
async fn t_the_line_moves_and_the_oldest_waiter_gets_the_freed_slot() {
    let stack = Stack::start().await;
    stack.set_config("max_customers_per_mitra", 1).await;
    stack.set_config("queue_when_unavailable", 1).await;
    let mitra = stack.online_mitra().await;
    let mut mitra_stream = stream(&stack, "mitra", &mitra.token).await;
    let busy = stack.start_chat(&mitra).await;
    // Its offer and session events so far are not what this test is about.
    mitra_stream.drain(QUIET).await;

    let (oldest, newest) = (stack.customer().await, stack.customer().await);
    let mut oldest_stream = stream(&stack, "client", &oldest.token).await;
    let mut newest_stream = stream(&stack, "client", &newest.token).await;
    let (first, status) = blast(&stack, &oldest).await;
    assert_eq!(status, "queued", "nobody available: it waits");
    let (second, status) = blast(&stack, &newest).await;
    assert_eq!(status, "queued");
    let place = oldest_stream.next_session().await;
    assert_eq!(
        (
            session_of(&place),
            place.data["status"].as_str(),
            place.data["queue_position"].as_u64()
        ),
        (first.as_str(), Some("queued"), Some(1))
    );
    let place = newest_stream.next_session().await;
    assert_eq!(
        (session_of(&place), place.data["queue_position"].as_u64()),
        (second.as_str(), Some(2))
    );

    // The slot frees: the oldest waiter is offered it, the other moves up.
    stack.end_chat(&mitra, busy).await;
    let offer = loop {
        let event = mitra_stream.next().await;
        if event.event == "offer" {
            break event;
        }
    };
    assert_eq!(session_of(&offer), first, "the oldest waiter first");
    let searching = oldest_stream.next_session().await;
    assert_eq!(searching.data["status"], "searching");
    let moved = newest_stream.next_session().await;
    assert_eq!(
        (
            moved.data["status"].as_str(),
            moved.data["queue_position"].as_u64()
        ),
        (Some("queued"), Some(1))
    );
    assert!(moved.data["estimated_wait_seconds"].is_u64(), "{moved:?}");
    stack.accept(&mitra, &first).await.expect(200);
    assert_eq!(oldest_stream.next_session().await.data["status"], "active");
    // The other still waits (the only mitra is busy again), and is offered nothing yet.
    assert_eq!(
        stack.session_status(second.parse().unwrap()).await,
        "queued"
    );
    let quiet: Vec<SseEvent> = mitra_stream
        .drain(QUIET)
        .await
        .into_iter()
        .filter(|e| e.event == "offer")
        .collect();
    assert_eq!(quiet, vec![]);
}

/// The events a customer stream gets over `wait` while apps poll the beacon on both
/// instances every 200 ms (the event follows the beacon the apps read, SPEC §12.9).
async fn while_polling(stack: &Stack, client: &mut EventStream, wait: Duration) -> Vec<SseEvent> {
    let end = tokio::time::Instant::now() + wait;
    let mut events = Vec::new();
    while tokio::time::Instant::now() < end {
        stack.beacon(0).await;
        stack.beacon(1).await;
        while let Some(event) = client.next_within(Duration::from_millis(200)).await {
            events.push(event);
        }
    }
    events
}

#[tokio::test]
async fn t_customers_are_told_when_anyone_becomes_available_once() {
    let stack = Stack::with(StackOptions::default().publics(2)).await;
    stack.set_config("beacon_cache_ttl_seconds", 1).await;
    let customer = stack.customer().await;
    let mut client = stream(&stack, "client", &customer.token).await;
    let availability = |events: &[SseEvent]| -> Vec<(bool, u64)> {
        events
            .iter()
            .filter(|e| e.event == "availability")
            .map(|e| {
                let available = e.data["available"].as_bool().expect("available");
                (available, e.data["count"].as_u64().expect("count"))
            })
            .collect()
    };
    let window = Duration::from_secs(4);
    // Nobody online: the first word is "nobody".
    assert_eq!(
        availability(&while_polling(&stack, &mut client, window).await),
        vec![(false, 0)]
    );
    // Both instances see the change; the log keeps it once. A second mitra changes nothing.
    let mitra = stack.online_mitra().await;
    assert_eq!(
        availability(&while_polling(&stack, &mut client, window).await),
        vec![(true, 1)]
    );
    let second = stack.online_mitra().await;
    assert_eq!(
        availability(&while_polling(&stack, &mut client, window).await),
        vec![]
    );
    stack.toggle(&mitra, false).await.expect(200);
    stack.toggle(&second, false).await.expect(200);
    assert_eq!(
        availability(&while_polling(&stack, &mut client, window).await),
        vec![(false, 0)]
    );
}
