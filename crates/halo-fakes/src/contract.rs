//! The mirror contract: what every mirror adapter does, as the ports document it, checked
//! through the ports. Each case takes a fresh, empty mirror and a `Backdoor` to its store;
//! `mirror_contract!` turns every case into a `#[tokio::test]` of the calling test binary, so
//! `InMemoryMirror` (this crate's tests) and `ValkeyMirror` (halo-valkey's, on a real
//! valkey-server) answer the same cases and the fake cannot drift from the real thing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step panics the test

use async_trait::async_trait;
use halo_domain::{AvailabilityRules, Beacon, IdleRank, MirrorImage, MitraId, MitraTruth};
use halo_ports::{
    AvailabilityMirror, BeaconClaim, CapacityCount, HeartbeatOutcome, MirrorError,
    MirrorMaintenance, RateCounter, SeedWrite,
};
use std::collections::BTreeSet;
use std::time::Duration;
use time::OffsetDateTime;

/// What a case does to the store behind the port's back.
#[async_trait]
pub trait Backdoor: Send + Sync {
    /// Writes (`Some`) or deletes (`None`) a mitra's heartbeat key: an old value, a lost key.
    async fn put_heartbeat(&self, id: MitraId, at: Option<OffsetDateTime>);
    /// Hands the beacon's recompute lock to `owner`, without a TTL (a caller that took it over
    /// after the first owner's lock expired).
    async fn put_beacon_lock(&self, owner: &str);
    /// Every key gone, the generation marker and the write token with them (`FLUSHALL`).
    async fn flush(&self);
    /// Lets `by` pass for the store's TTLs (a sleep, or a manual clock moved).
    async fn let_time_pass(&self, by: Duration);
}

/// One `#[tokio::test]` per contract case, each on a mirror and backdoor from `$setup` (an
/// async fn returning `(mirror, backdoor)`; the backdoor owns whatever must outlive the case).
#[macro_export]
macro_rules! mirror_contract {
    ($setup:path) => {
        $crate::contract_tests!(contract, $setup, |mirror| &mirror;
            reads_of_an_unseeded_mirror_say_so,
            the_seed_reads_back_as_seeded,
            heartbeats_refresh_online_active_mitras_and_never_create_a_key,
            mitra_states_answer_in_the_order_asked,
            capacity_counts_land_in_order,
            the_write_token_moves_with_every_toggle,
            a_beacon_store_releases_only_its_own_lock,
            beacon_snapshots_and_leases_expire,
            rate_windows_count_and_start_over,
            the_fence_spares_a_mitra_that_pinged_since,
            a_restore_skips_a_mitra_written_since_the_token,
            seeds_are_ordered_by_when_their_truth_was_read,
            a_recount_during_a_seed_keeps_only_its_count,
            a_seed_keeps_what_was_written_after_its_token,
            a_flush_unseeds_and_races_the_seed_that_read_the_token_before,
            offers_walk_the_idle_order_through_the_rules,
            a_long_walk_passes_over_the_unavailable_and_the_excluded,
            idle_ranks_land_in_the_order_of_their_counts,
        );
    };
}

/// What the contract macros share: one `#[tokio::test]` per case of `$suite` (a module of this
/// crate), on the store and backdoor `$setup` made for it; `|store| <expr>` borrows the store
/// for the case (`&*store` when it comes in an `Arc` that the backdoor shares).
#[doc(hidden)]
#[macro_export]
macro_rules! contract_tests {
    ($suite:ident, $setup:path, |$store:ident| $borrow:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let ($store, backdoor) = $setup().await;
                $crate::$suite::$case($borrow, &backdoor).await;
            }
        )*
    };
}

pub fn id(n: u128) -> MitraId {
    MitraId::new(uuid::Uuid::from_u128(n))
}

/// An idle rank `ms` milliseconds after a fixed instant (tie-break ½).
pub fn rank(ms: i64) -> IdleRank {
    let base = time::macros::datetime!(2026-01-01 00:00 UTC);
    IdleRank::new(base + time::Duration::milliseconds(ms), 0.5)
}

/// A recount's result, its idle rank `seq` milliseconds after `rank`'s instant.
pub fn count(open: u32, seq: u64) -> CapacityCount {
    count_at(open, seq, rank(i64::try_from(seq).unwrap()))
}

pub fn count_at(open: u32, seq: u64, idle_rank: IdleRank) -> CapacityCount {
    CapacityCount {
        open,
        seq,
        idle_rank,
    }
}

/// The rules the offer cases read: 90 s freshness, 3 customers per mitra.
pub fn rules() -> AvailabilityRules {
    AvailabilityRules {
        stale_after: time::Duration::seconds(90),
        max_customers: 3,
    }
}

/// Mitras 1..=6 online except 5, 2 and 6 deactivated (6 also online: the image allows it),
/// 3 with open sessions. Idle the longest: 6, then 5, 4, 3, 2, 1 (`rank(1000 × (7 − n))`).
pub fn truth() -> Vec<MitraTruth> {
    (1..=6)
        .map(|n| MitraTruth {
            last_heartbeat: None,
            capacity_seq: 0,
            id: id(n),
            active: n != 2 && n != 6,
            online: n != 5,
            open_sessions: if n == 3 { 2 } else { 0 },
            idle_rank: rank(1000 * (7 - i64::try_from(n).unwrap())),
        })
        .collect()
}

/// `truth()` with mitra 6 deactivated but still in the online set (drift the seed keeps).
pub fn image() -> MirrorImage {
    let mut image = MirrorImage::expected_from(&truth());
    image.online.insert(id(6));
    image
}

/// Seeds `image()` with heartbeats stamped `now`.
pub async fn seed<M: MirrorMaintenance + ?Sized>(m: &M, now: OffsetDateTime) {
    let token = m.write_token().await.unwrap();
    assert_eq!(
        m.replace_all(&image(), token, now).await.unwrap(),
        SeedWrite::Applied
    );
}

/// A time as the mirror keeps it: microseconds.
pub fn kept(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(at.nanosecond() / 1_000 * 1_000)
        .unwrap()
}

async fn has_heartbeat<M: AvailabilityMirror>(m: &M, n: u128) -> bool {
    m.read_image().await.unwrap().heartbeat.contains(&id(n))
}

fn unseeded<T: std::fmt::Debug>(result: Result<T, MirrorError>) -> bool {
    matches!(result, Err(MirrorError::Unseeded))
}

/// The seven reads about availability other than the heartbeat, each answering "unseeded"
/// (an adapter counts their round trips: one each).
pub async fn unseeded_reads<M: AvailabilityMirror>(m: &M) {
    assert!(unseeded(m.is_deactivated(id(1)).await));
    assert!(unseeded(m.mitra_states(&[id(1)]).await));
    assert!(unseeded(m.candidate_states().await));
    let now = OffsetDateTime::now_utc();
    let none = BTreeSet::new();
    assert!(unseeded(m.offer_candidates(5, &none, now, rules()).await));
    assert!(unseeded(m.online_heartbeats().await));
    assert!(unseeded(m.online_count().await));
    assert!(unseeded(m.claim_beacon(Duration::from_secs(1)).await));
}

/// Every read about availability says "unseeded" until a seed wrote the generation marker.
pub async fn reads_of_an_unseeded_mirror_say_so<M: AvailabilityMirror, B: Backdoor>(m: &M, _: &B) {
    assert!(!m.is_seeded().await.unwrap());
    unseeded_reads(m).await;
    // No key, and no generation marker behind it.
    assert!(unseeded(
        m.heartbeat(id(1), OffsetDateTime::now_utc()).await
    ));
    seed(m, OffsetDateTime::now_utc()).await;
    assert!(m.is_seeded().await.unwrap());
    assert!(!m.is_deactivated(id(1)).await.unwrap());
}

/// The keys a seed leaves, read back key by key and through the bulk reads.
pub async fn the_seed_reads_back_as_seeded<M: AvailabilityMirror, B: Backdoor>(m: &M, _: &B) {
    let now = OffsetDateTime::now_utc();
    seed(m, now).await;
    let (expected, actual) = (image(), m.read_image().await.unwrap());
    assert_eq!(actual.online, expected.online);
    assert_eq!(actual.deactivated, expected.deactivated);
    assert_eq!(actual.heartbeat, expected.heartbeat);
    assert_eq!(actual.capacity, expected.capacity);
    assert_eq!(
        actual.idle, expected.idle,
        "the online mitras at their ranks"
    );
    assert!(actual.garbage.is_empty());
    assert_eq!(m.online_count().await.unwrap(), 5);

    let mut candidates = m.candidate_states().await.unwrap();
    candidates.sort_by_key(|(id, _)| *id);
    let ids: Vec<MitraId> = candidates.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [id(1), id(3), id(4)], "online, active");
    assert!(candidates.iter().all(|(_, s)| s.online && s.active));
    assert_eq!(candidates[0].1.last_heartbeat, Some(kept(now)));
    assert_eq!(candidates[1].1.open_sessions, 2);

    let mut heartbeats = m.online_heartbeats().await.unwrap();
    heartbeats.sort_by_key(|(id, _)| *id);
    let expected = [(1, true), (2, false), (3, true), (4, true), (6, false)];
    let expected: Vec<_> = expected
        .iter()
        .map(|(n, beat)| (id(*n), beat.then_some(kept(now))))
        .collect();
    assert_eq!(
        heartbeats, expected,
        "every online member, deactivated ones without a key"
    );
}

/// Every outcome of a ping, and what it leaves: a heartbeat key exists exactly while its mitra
/// is online and active, and a ping never creates one for any other.
pub async fn heartbeats_refresh_online_active_mitras_and_never_create_a_key<
    M: AvailabilityMirror,
    B: Backdoor,
>(
    m: &M,
    backdoor: &B,
) {
    seed(m, OffsetDateTime::now_utc() - time::Duration::minutes(5)).await;
    let later = OffsetDateTime::now_utc();
    let ping = |n| m.heartbeat(id(n), later);

    // 1: online and active.
    assert_eq!(ping(1).await.unwrap(), HeartbeatOutcome::Recorded);
    let state = m.mitra_state(id(1)).await.unwrap();
    assert_eq!(state.last_heartbeat, Some(kept(later)));

    // 2: deactivated while online (drift the seed keeps): seeded without a key, refused.
    assert!(!has_heartbeat(m, 2).await, "no key for a deactivated mitra");
    assert_eq!(ping(2).await.unwrap(), HeartbeatOutcome::Deactivated);
    assert!(!has_heartbeat(m, 2).await);

    // 5: offline: nothing recorded, no key created.
    assert_eq!(ping(5).await.unwrap(), HeartbeatOutcome::Offline);
    assert!(
        !has_heartbeat(m, 5).await,
        "an offline mitra's ping creates no key"
    );

    // 3: online, but its key was lost (evicted, flushed mid-seed): recorded again.
    backdoor.put_heartbeat(id(3), None).await;
    assert_eq!(ping(3).await.unwrap(), HeartbeatOutcome::Recorded);
    assert!(has_heartbeat(m, 3).await);

    // 4: deactivated while online: the deactivation drops the key, the next ping is refused.
    m.set_deactivated(id(4), true).await.unwrap();
    assert!(!has_heartbeat(m, 4).await);
    assert_eq!(ping(4).await.unwrap(), HeartbeatOutcome::Deactivated);
    // A toggle to online that raced the deactivation: online again, still no key.
    m.mark_online(id(4), later, count(0, 1)).await.unwrap();
    assert!(!has_heartbeat(m, 4).await, "no key for a deactivated mitra");
    assert_eq!(ping(4).await.unwrap(), HeartbeatOutcome::Deactivated);
    // Reactivated and toggled online: recorded again.
    m.set_deactivated(id(4), false).await.unwrap();
    m.mark_online(id(4), later, count(0, 1)).await.unwrap();
    assert_eq!(ping(4).await.unwrap(), HeartbeatOutcome::Recorded);
}

/// The states of a page of mitras come back in the order asked, unknown ids included.
pub async fn mitra_states_answer_in_the_order_asked<M: AvailabilityMirror, B: Backdoor>(
    m: &M,
    _: &B,
) {
    seed(m, OffsetDateTime::now_utc()).await;
    let states = m.mitra_states(&[id(5), id(3), id(2), id(9)]).await.unwrap();
    let flags: Vec<_> = states.iter().map(|s| (s.online, s.active)).collect();
    assert_eq!(
        flags,
        [(false, true), (true, true), (true, false), (false, true)]
    );
    assert_eq!(states[1].open_sessions, 2);
    assert_eq!(
        (states[3].last_heartbeat, states[3].open_sessions),
        (None, 0)
    );
    assert!(m.mitra_states(&[]).await.unwrap().is_empty());
}

/// Two recounts racing: whichever write lands last, the count taken later stays.
pub async fn capacity_counts_land_in_order<M: AvailabilityMirror, B: Backdoor>(m: &M, _: &B) {
    seed(m, OffsetDateTime::now_utc()).await;
    let open = || async { m.mitra_state(id(1)).await.unwrap().open_sessions };
    m.set_capacity(id(1), count(0, 7)).await.unwrap();
    m.set_capacity(id(1), count(1, 6)).await.unwrap();
    assert_eq!(
        open().await,
        0,
        "the older count (6) landed last and was refused"
    );
    m.mark_online(id(1), OffsetDateTime::now_utc(), count(2, 5))
        .await
        .unwrap();
    assert_eq!(
        open().await,
        0,
        "a toggle's older count does not overwrite either"
    );
    m.set_capacity(id(1), count(3, 8)).await.unwrap();
    assert_eq!(open().await, 3);
}

/// A seed reads the token before the truth: every toggle and deactivation moves it.
pub async fn the_write_token_moves_with_every_toggle<M: AvailabilityMirror, B: Backdoor>(
    m: &M,
    _: &B,
) {
    seed(m, OffsetDateTime::now_utc()).await;
    let mut last = m.write_token().await.unwrap();
    for step in 0..3 {
        match step {
            0 => {
                m.mark_online(id(5), OffsetDateTime::now_utc(), count(0, 1))
                    .await
            }
            1 => m.set_deactivated(id(5), true).await,
            _ => m.mark_offline(&[id(5)]).await,
        }
        .unwrap();
        let token = m.write_token().await.unwrap();
        assert_ne!(token, last, "step {step}");
        last = token;
    }
}

/// A recompute slower than its lock's TTL: the next owner's lock survives the slow one's store.
pub async fn a_beacon_store_releases_only_its_own_lock<M: AvailabilityMirror, B: Backdoor>(
    m: &M,
    backdoor: &B,
) {
    seed(m, OffsetDateTime::now_utc()).await;
    let BeaconClaim::Compute(slow) = m.claim_beacon(Duration::from_secs(60)).await.unwrap() else {
        panic!("an empty snapshot is ours to compute");
    };
    backdoor.put_beacon_lock("next-owner").await;
    let stored = Beacon::from_count(1);
    m.store_beacon(
        stored,
        OffsetDateTime::now_utc(),
        Duration::from_secs(10),
        &slow,
    )
    .await
    .unwrap();
    let claim = m.claim_beacon(Duration::from_secs(1)).await.unwrap();
    assert_eq!(claim, BeaconClaim::Cached(stored));
    m.bust_beacon().await.unwrap();
    let claim = m.claim_beacon(Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        claim,
        BeaconClaim::Busy,
        "the next owner still holds the lock"
    );
}

/// One recompute per TTL, one lease holder per TTL; both free again once their TTL passed.
pub async fn beacon_snapshots_and_leases_expire<M: AvailabilityMirror, B: Backdoor>(
    m: &M,
    backdoor: &B,
) {
    let ttl = Duration::from_millis(400);
    let expired = Duration::from_millis(600);
    seed(m, OffsetDateTime::now_utc()).await;
    let BeaconClaim::Compute(lock) = m.claim_beacon(ttl).await.unwrap() else {
        panic!("an empty snapshot is ours to compute");
    };
    assert_eq!(m.claim_beacon(ttl).await.unwrap(), BeaconClaim::Busy);
    let beacon = Beacon::from_count(2);
    m.store_beacon(beacon, OffsetDateTime::now_utc(), ttl, &lock)
        .await
        .unwrap();
    assert_eq!(
        m.claim_beacon(ttl).await.unwrap(),
        BeaconClaim::Cached(beacon)
    );
    assert!(m.try_lease("sweep", ttl).await.unwrap());
    assert!(!m.try_lease("sweep", ttl).await.unwrap(), "held");
    assert!(
        m.try_lease("seed", ttl).await.unwrap(),
        "one lease per name"
    );

    backdoor.let_time_pass(expired).await;
    let claim = m.claim_beacon(ttl).await.unwrap();
    assert!(
        matches!(claim, BeaconClaim::Compute(_)),
        "expired snapshot: {claim:?}"
    );
    assert!(m.try_lease("sweep", ttl).await.unwrap(), "expired lease");
}

/// A window counts from its first hit and starts over once it expired.
pub async fn rate_windows_count_and_start_over<M: RateCounter, B: Backdoor>(m: &M, backdoor: &B) {
    let window = Duration::from_millis(400);
    let (first, left) = m.hit("otp:x", window).await.unwrap();
    let (second, _) = m.hit("otp:x", window).await.unwrap();
    let (other, _) = m.hit("otp:y", window).await.unwrap();
    assert_eq!((first, second, other), (1, 2, 1));
    assert!(left > Duration::ZERO && left <= window, "{left:?}");
    backdoor.let_time_pass(Duration::from_millis(600)).await;
    assert_eq!(m.hit("otp:x", window).await.unwrap().0, 1);
}

/// The sweep's fence drops only mitras whose heartbeat is still missing or before the cutoff;
/// a restore puts one back with Postgres' fresher heartbeat.
pub async fn the_fence_spares_a_mitra_that_pinged_since<M: AvailabilityMirror, B: Backdoor>(
    m: &M,
    backdoor: &B,
) {
    let now = OffsetDateTime::now_utc();
    seed(m, now).await;
    let cutoff = now - time::Duration::seconds(30);
    m.heartbeat(id(1), now).await.unwrap();
    let long_ago = time::macros::datetime!(2020-01-01 00:00 UTC);
    backdoor.put_heartbeat(id(3), Some(long_ago)).await;
    backdoor.put_heartbeat(id(4), None).await;
    let fenced = m.fence_stale(&[id(1), id(3), id(4)], cutoff).await.unwrap();
    assert_eq!(fenced, [id(3), id(4)]);
    let after = m.read_image().await.unwrap();
    assert!(after.online.contains(&id(1)));
    assert!(!after.online.contains(&id(3)));
    assert!(!after.heartbeat.contains(&id(3)), "fenced with its key");
    assert!(m.fence_stale(&[], cutoff).await.unwrap().is_empty());

    let token = m.write_token().await.unwrap();
    m.restore_online(&[(id(3), now)], token).await.unwrap();
    let state = m.mitra_state(id(3)).await.unwrap();
    assert!(state.online);
    assert_eq!(state.last_heartbeat, Some(kept(now)));
}

/// The sweep's restore does not undo an offline toggle that landed after it read the token,
/// nor bring back a deactivated mitra, and keeps the newer of two heartbeats.
pub async fn a_restore_skips_a_mitra_written_since_the_token<M: AvailabilityMirror, B: Backdoor>(
    m: &M,
    _: &B,
) {
    let now = OffsetDateTime::now_utc();
    seed(m, now).await;
    let token = m.write_token().await.unwrap();
    m.mark_offline(&[id(1)]).await.unwrap();
    let older = now - time::Duration::minutes(1);
    let beats = [(id(1), now), (id(3), older), (id(2), now)];
    m.restore_online(&beats, token).await.unwrap();
    let states = m.mitra_states(&[id(1), id(3), id(2)]).await.unwrap();
    assert!(!states[0].online, "written since the token");
    assert!(states[1].online);
    assert_eq!(
        states[1].last_heartbeat,
        Some(kept(now)),
        "the newer one stays"
    );
    assert_eq!(states[2].last_heartbeat, None, "deactivated: no key");
}

/// Two seeds read the same write token (no write journaled between them, as during an
/// outage): the one whose truth was read later wins whichever swaps last.
pub async fn seeds_are_ordered_by_when_their_truth_was_read<M: AvailabilityMirror, B: Backdoor>(
    m: &M,
    _: &B,
) {
    let token = m.write_token().await.unwrap();
    let now = OffsetDateTime::now_utc();
    let image = |deactivated: bool, read_at: OffsetDateTime| {
        let mut rows = truth();
        rows[0].active = !deactivated;
        let mut image = MirrorImage::expected_from(&rows);
        image.truth_read_at = Some(read_at);
        image
    };
    let newer = image(true, now);
    let older = image(false, now - time::Duration::seconds(1));
    let applied = m.replace_all(&newer, token, now).await.unwrap();
    assert_eq!(applied, SeedWrite::Applied);
    let refused = m.replace_all(&older, token, now).await.unwrap();
    assert_eq!(refused, SeedWrite::Superseded);
    assert!(m.is_deactivated(id(1)).await.unwrap());
}

/// A recount landing during a seed is ordered by its number and does not make the seed keep
/// the mitra's (maybe flushed) set memberships.
pub async fn a_recount_during_a_seed_keeps_only_its_count<M: AvailabilityMirror, B: Backdoor>(
    m: &M,
    _: &B,
) {
    let token = m.write_token().await.unwrap();
    m.set_capacity(id(1), count(2, 9)).await.unwrap();
    m.set_capacity(id(4), count(1, 2)).await.unwrap();
    let mut rows = truth();
    rows[0].capacity_seq = 8;
    rows[0].open_sessions = 1;
    rows[3].capacity_seq = 3;
    let image = MirrorImage::expected_from(&rows);
    m.replace_all(&image, token, OffsetDateTime::now_utc())
        .await
        .unwrap();
    let state = m.mitra_state(id(1)).await.unwrap();
    assert!(state.online, "membership from the image");
    assert_eq!(state.open_sessions, 2, "the newer count (9 > 8) stays");
    let idle = m.read_image().await.unwrap().idle;
    assert_eq!(
        idle.get(&id(1)),
        Some(&rank(9)),
        "and so does its idle rank"
    );
    assert_eq!(
        idle.get(&id(4)),
        Some(&rows[3].idle_rank),
        "the image's (3 > 2)"
    );
    assert_eq!(m.mitra_state(id(4)).await.unwrap().open_sessions, 0);
}

/// Writes that land after a seed read its token are newer than its image: their mitras keep
/// their live memberships and heartbeat; the next seed, with a later token, replaces them.
pub async fn a_seed_keeps_what_was_written_after_its_token<M: AvailabilityMirror, B: Backdoor>(
    m: &M,
    _: &B,
) {
    seed(m, OffsetDateTime::now_utc()).await;
    let token = m.write_token().await.unwrap();
    let toggled = OffsetDateTime::now_utc();
    m.mark_online(id(5), toggled, count(1, 1)).await.unwrap();
    m.set_deactivated(id(1), true).await.unwrap();
    let applied = m
        .replace_all(&image(), token, OffsetDateTime::now_utc())
        .await;
    assert_eq!(applied.unwrap(), SeedWrite::Applied);
    let states = m.mitra_states(&[id(5), id(1), id(3)]).await.unwrap();
    assert!(states[0].online, "toggled online after the token");
    assert_eq!(states[0].last_heartbeat, Some(kept(toggled)));
    assert_eq!(states[0].open_sessions, 1);
    assert!(
        !states[1].online && !states[1].active,
        "deactivated after the token"
    );
    assert_eq!(states[1].last_heartbeat, None);
    assert!(states[2].online, "untouched: from the image");
    let idle = m.read_image().await.unwrap().idle;
    assert_eq!(
        idle.get(&id(5)),
        Some(&rank(1)),
        "in the idle order at its count's rank"
    );
    assert_eq!(
        idle.get(&id(1)),
        None,
        "deactivated after the token: out of the order"
    );

    seed(m, OffsetDateTime::now_utc()).await;
    let states = m.mitra_states(&[id(5), id(1)]).await.unwrap();
    assert!(!states[0].online, "a later seed's image wins");
    assert!(states[1].online && states[1].active);
    assert_eq!(m.read_image().await.unwrap().idle, image().idle);
}

/// A flush takes the generation marker and the write token: reads say "unseeded", and a seed
/// that read the token before the flush changes nothing (its image may miss what came since).
pub async fn a_flush_unseeds_and_races_the_seed_that_read_the_token_before<
    M: AvailabilityMirror,
    B: Backdoor,
>(
    m: &M,
    backdoor: &B,
) {
    seed(m, OffsetDateTime::now_utc()).await;
    m.mark_online(id(5), OffsetDateTime::now_utc(), count(1, 1))
        .await
        .unwrap();
    let token = m.write_token().await.unwrap();
    backdoor.flush().await;
    assert!(!m.is_seeded().await.unwrap());
    assert!(unseeded(m.candidate_states().await));
    let raced = m
        .replace_all(&image(), token, OffsetDateTime::now_utc())
        .await;
    assert_eq!(raced.unwrap(), SeedWrite::Raced);
    assert!(!m.is_seeded().await.unwrap(), "nothing changed");
    seed(m, OffsetDateTime::now_utc()).await;
    assert_eq!(m.online_count().await.unwrap(), 5);
}

/// An offer round's candidates: available mitras only, longest idle first, at most `limit`,
/// the excluded left out; every write that changes a mitra's place or availability shows.
pub async fn offers_walk_the_idle_order_through_the_rules<M: AvailabilityMirror, B: Backdoor>(
    m: &M,
    backdoor: &B,
) {
    let now = OffsetDateTime::now_utc();
    seed(m, now).await;
    let offer = |limit: usize, exclude: &[u128], rules: AvailabilityRules| {
        let exclude: BTreeSet<MitraId> = exclude.iter().map(|n| id(*n)).collect();
        async move {
            m.offer_candidates(limit, &exclude, now, rules)
                .await
                .unwrap()
        }
    };
    // Online and idle the longest first: 6 and 2 are deactivated, 5 offline.
    assert_eq!(offer(10, &[], rules()).await, [id(4), id(3), id(1)]);
    assert_eq!(offer(2, &[], rules()).await, [id(4), id(3)], "the limit");
    assert_eq!(offer(2, &[4], rules()).await, [id(3), id(1)], "excluded");
    assert!(offer(0, &[], rules()).await.is_empty());
    let two = AvailabilityRules {
        max_customers: 2,
        ..rules()
    };
    assert_eq!(
        offer(10, &[], two).await,
        [id(4), id(1)],
        "3 is at capacity"
    );
    let old = now - time::Duration::minutes(5);
    backdoor.put_heartbeat(id(4), Some(old)).await;
    assert_eq!(offer(10, &[], rules()).await, [id(3), id(1)], "4 is stale");
    m.heartbeat(id(4), now).await.unwrap();

    // Coming online goes to the back; a recount moves a mitra to its new rank.
    m.mark_online(id(5), now, count_at(0, 1, rank(10_000)))
        .await
        .unwrap();
    assert_eq!(offer(10, &[], rules()).await, [id(4), id(3), id(1), id(5)]);
    m.set_capacity(id(4), count_at(1, 1, rank(11_000)))
        .await
        .unwrap();
    assert_eq!(offer(10, &[], rules()).await, [id(3), id(1), id(5), id(4)]);
    m.mark_offline(&[id(3)]).await.unwrap();
    m.set_deactivated(id(1), true).await.unwrap();
    assert_eq!(offer(10, &[], rules()).await, [id(5), id(4)]);
}

/// A walk that passes over many mitras (at capacity, excluded) still finds the first
/// available ones in order, however many reads that takes.
pub async fn a_long_walk_passes_over_the_unavailable_and_the_excluded<
    M: AvailabilityMirror,
    B: Backdoor,
>(
    m: &M,
    _: &B,
) {
    // 1..=300 online, idle the longest in id order; the first 200 hold 3 sessions each.
    let rows: Vec<MitraTruth> = (1..=300u128)
        .map(|n| MitraTruth {
            id: id(n),
            active: true,
            online: true,
            open_sessions: if n <= 200 { 3 } else { 0 },
            last_heartbeat: None,
            capacity_seq: 1,
            idle_rank: rank(i64::try_from(n).unwrap()),
        })
        .collect();
    let now = OffsetDateTime::now_utc();
    let token = m.write_token().await.unwrap();
    let image = MirrorImage::expected_from(&rows);
    let applied = m.replace_all(&image, token, now).await.unwrap();
    assert_eq!(applied, SeedWrite::Applied);
    let ids = |range: std::ops::RangeInclusive<u128>| range.map(id).collect::<Vec<_>>();
    let none = BTreeSet::new();
    let found = m.offer_candidates(50, &none, now, rules()).await.unwrap();
    assert_eq!(found, ids(201..=250));
    let exclude: BTreeSet<MitraId> = ids(1..=210).into_iter().collect();
    let found = m
        .offer_candidates(50, &exclude, now, rules())
        .await
        .unwrap();
    assert_eq!(found, ids(211..=260), "the excluded are passed over too");
    let found = m.offer_candidates(500, &none, now, rules()).await.unwrap();
    assert_eq!(found, ids(201..=300), "all there are");
}

/// Idle ranks follow the order of their counts, like the counts: an older count that lands
/// last changes neither; a mitra leaves the order when it goes offline, is fenced or
/// deactivated, and comes back at the rank of its newest count.
pub async fn idle_ranks_land_in_the_order_of_their_counts<M: AvailabilityMirror, B: Backdoor>(
    m: &M,
    backdoor: &B,
) {
    let now = OffsetDateTime::now_utc();
    seed(m, now).await;
    let rank_of = |n: u128| async move { m.read_image().await.unwrap().idle.get(&id(n)).copied() };
    assert_eq!(rank_of(5).await, None, "offline: not in the order");
    // A recount (9) lands before the toggle's older count (8): the newer rank wins.
    m.set_capacity(id(5), count(0, 9)).await.unwrap();
    assert_eq!(
        rank_of(5).await,
        None,
        "a recount does not put a mitra online"
    );
    m.mark_online(id(5), now, count(0, 8)).await.unwrap();
    assert_eq!(rank_of(5).await, Some(rank(9)));
    m.set_capacity(id(5), count(1, 7)).await.unwrap();
    assert_eq!(rank_of(5).await, Some(rank(9)), "older: refused");
    m.set_capacity(id(5), count(1, 10)).await.unwrap();
    assert_eq!(rank_of(5).await, Some(rank(10)));

    m.mark_offline(&[id(5)]).await.unwrap();
    assert_eq!(rank_of(5).await, None);
    m.set_capacity(id(5), count(0, 11)).await.unwrap();
    m.mark_online(id(5), now, count(0, 12)).await.unwrap();
    assert_eq!(rank_of(5).await, Some(rank(12)));

    // Fenced by the sweep, put back by Postgres: at the rank it had.
    backdoor.put_heartbeat(id(5), None).await;
    let fenced = m.fence_stale(&[id(5)], now).await.unwrap();
    assert_eq!(fenced, [id(5)]);
    assert_eq!(rank_of(5).await, None, "fenced: out of the order");
    let token = m.write_token().await.unwrap();
    m.restore_online(&[(id(5), now)], token).await.unwrap();
    assert_eq!(rank_of(5).await, Some(rank(12)));
    m.set_deactivated(id(5), true).await.unwrap();
    assert_eq!(rank_of(5).await, None, "deactivated: out of the order");
    // A toggle that raced the deactivation: online, but a deactivated mitra is never in the
    // order; reactivated while online, it is back at the rank of its newest count.
    m.mark_online(id(5), now, count(0, 13)).await.unwrap();
    assert_eq!(rank_of(5).await, None);
    m.set_deactivated(id(5), false).await.unwrap();
    assert_eq!(rank_of(5).await, Some(rank(13)));
}
