//! Scenario helpers shared by the sections: the checklist's "world", mirror-vs-Postgres checks,
//! timestamps.

use halo_acceptance::Stack;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

/// Long enough for a slow CI machine; every wait polls, so a healthy run never waits this long.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The world of the seed checks: one mitra online with two open sessions (one active, one
/// holding a slot while awaiting payment), one online and idle, one deactivated, one offline.
pub async fn world(stack: &Stack) {
    let busy = stack.online_mitra().await;
    stack.start_chat(&busy).await;
    let customer = stack.customer().await;
    let held = stack.request_mitra(&customer, &busy).await.expect(201);
    assert_eq!(held["status"], "pending_payment");
    stack.online_mitra().await; // idle
    let deactivated = stack.online_mitra().await;
    stack.set_active(&deactivated, false).await.expect(200);
    stack.mitra().await; // offline
}

pub fn parse_time(raw: &str) -> OffsetDateTime {
    OffsetDateTime::parse(raw, &Rfc3339).unwrap_or_else(|e| panic!("{raw:?}: {e}"))
}

/// `mitra:heartbeat:<id>` as a time.
pub async fn heartbeat_at(stack: &Stack, id: Uuid) -> Option<OffsetDateTime> {
    stack.heartbeat_key(id).await.map(|raw| parse_time(&raw))
}

/// `mitra_online_status.last_heartbeat_at`.
pub async fn pg_heartbeat_at(stack: &Stack, id: Uuid) -> Option<OffsetDateTime> {
    stack
        .pg
        .query_one(
            "SELECT last_heartbeat_at FROM mitra_online_status WHERE mitra_id = $1",
            &[&id],
        )
        .await
        .expect("last_heartbeat_at")
        .get(0)
}

pub const PG_ONLINE: &str = "SELECT mitra_id FROM mitra_online_status WHERE is_online = true";
pub const PG_DEACTIVATED: &str = "SELECT id FROM mitras WHERE is_active = false";

/// The checklist's four structures against Postgres: online set, deactivated set, a heartbeat
/// for every online mitra, and every online mitra's capacity.
pub async fn assert_mirror_matches_postgres(stack: &Stack) {
    let online = stack.pg_ids(PG_ONLINE).await;
    assert_eq!(stack.vk_members("mitras:online").await, online);
    assert_eq!(
        stack.vk_members("mitras:deactivated").await,
        stack.pg_ids(PG_DEACTIVATED).await
    );
    for id in &online {
        let id: Uuid = id.parse().unwrap();
        assert!(stack.heartbeat_key(id).await.is_some(), "heartbeat of {id}");
        let open = stack.open_sessions(id).await;
        assert_eq!(
            stack.capacity_key(id).await,
            Some(open.to_string()),
            "capacity of {id}"
        );
    }
    assert_eq!(stack.drift().await["in_sync"], true);
}

/// Every `mirror.seed` event logged by the running processes of the stack. One instance's seed
/// serves all of them (the mirror is shared), so the checklist's "backend log" is all of them.
/// In time order, so later seeds come after the ones already seen.
pub fn seed_events(stack: &Stack) -> Vec<serde_json::Value> {
    let mut events: Vec<_> = stack
        .publics
        .iter()
        .chain([&stack.internal])
        .flat_map(|instance| instance.events("mirror.seed"))
        .collect();
    // Cloud Logging's JSON shape calls it `time` (the plain JSON formatter said `timestamp`).
    events.sort_by_key(|e| {
        e["time"]
            .as_str()
            .or_else(|| e["timestamp"].as_str())
            .map(parse_time)
    });
    events
}

/// Waits until the stack has logged more than `before` seeds; returns the new ones.
pub async fn wait_for_seed(stack: &Stack, before: usize) -> Vec<serde_json::Value> {
    halo_acceptance::eventually("another mirror.seed event", DEADLINE, || async {
        seed_events(stack).len() > before
    })
    .await;
    seed_events(stack).split_off(before)
}

/// Waits until public instance `i` applies `max_customers_per_mitra = expected` (the config
/// invalidation reached it; the 30 s reload would be far past `DEADLINE`).
pub async fn wait_max_customers_seen(
    stack: &Stack,
    i: usize,
    mitra: &halo_acceptance::Mitra,
    expected: u32,
) {
    halo_acceptance::eventually("the instance to see the new setting", DEADLINE, || async {
        let status = stack
            .app_on(
                i,
                reqwest::Method::GET,
                "/api/mitra/status",
                &mitra.token,
                None,
            )
            .await
            .expect(200);
        status["max_customers"] == expected
    })
    .await;
}
