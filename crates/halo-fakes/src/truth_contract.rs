//! The truth contract: what every adapter of `AvailabilityTruth`, `SettingsStore` and
//! `MitraDirectory` does, as the ports document it, checked through the ports. Each case takes
//! a fresh, empty store (its settings as migrated) and a `TruthBackdoor` for what other stores
//! write into the same tables; `truth_contract!` turns every case into a `#[tokio::test]` of the
//! calling test binary, so `InMemoryTruth` (this crate's tests) and `PgTruth` (halo-postgres',
//! on a real Postgres) answer the same cases and the fake cannot drift from the real thing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step panics the test

use crate::contract::kept;
use async_trait::async_trait;
use halo_domain::{
    AppSettings, IdleRank, MitraId, MitraState, SettingError, SettingKey, TIE_BREAK_SPAN,
};
use halo_ports::{
    AvailabilityTruth, MitraDirectory, MitraFlags, OnlineReason, SettingsStore, TruthError,
};
use std::collections::BTreeSet;
use time::{Duration, OffsetDateTime};

/// The three ports over one store (Postgres: one database).
pub trait TruthStore: AvailabilityTruth + SettingsStore + MitraDirectory {}

impl<T: AvailabilityTruth + SettingsStore + MitraDirectory> TruthStore for T {}

/// What a case does to the store behind the ports' back.
#[async_trait]
pub trait TruthBackdoor: Send + Sync {
    /// Makes `open` the mitra's count of slot-holding sessions, as the chat store's
    /// transitions would (SPEC §3.7: `pending_payment` and `active` hold a slot).
    async fn set_open_sessions(&self, id: MitraId, open: u32);
    /// A session of the mitra that started (accepted or paid) and ended at `at`, as the chat
    /// store's transitions would leave it (the mitra's latest session end, if none is later).
    async fn set_session_activity(&self, id: MitraId, at: OffsetDateTime);
    /// Writes (`Some`) or clears (`None`) the mitra's `last_heartbeat_at`.
    async fn set_heartbeat(&self, id: MitraId, at: Option<OffsetDateTime>);
    /// The mitra's audit rows (`mitra_online_logs`), oldest first: (online, reason).
    async fn online_log(&self, id: MitraId) -> Vec<(bool, OnlineReason)>;
    /// From now on the store does not answer (Postgres gone, or its pool closed).
    async fn go_down(&self);
}

/// One `#[tokio::test]` per contract case, each on a store and backdoor from `$setup` (an async
/// fn returning `(Arc<store>, backdoor)`: the backdoor may hold the store too, and owns whatever
/// must outlive the case).
#[macro_export]
macro_rules! truth_contract {
    ($setup:path) => {
        $crate::contract_tests!(truth_contract, $setup, |store| &*store;
            set_online_audits_each_transition_and_stamps_going_online,
            writes_to_an_unknown_mitra_are_not_found,
            the_sweep_takes_offline_only_online_mitras_with_a_stale_heartbeat,
            deactivation_changes_the_active_flag_only,
            the_heartbeat_fallback_records_online_active_mitras_once_a_second,
            recounts_are_ordered_per_mitra_and_around_a_snapshot,
            states_answer_each_known_mitra_once,
            the_snapshot_holds_every_mitra_and_when_it_was_read,
            heartbeats_are_copied_only_forward,
            settings_change_with_one_audit_row_per_changed_key,
            the_directory_creates_lists_and_reads_mitras,
            a_store_that_does_not_answer_is_unavailable,
            idle_ranks_move_when_a_mitra_becomes_idle,
            coming_online_draws_a_random_tie_break,
            the_offer_fallback_walks_the_idle_order_through_the_rules,
        );
    };
}

/// A valid phone number, one for each `n`.
pub fn phone(n: u32) -> String {
    format!("+6281{n:08}")
}

/// A new mitra through the directory: offline, active, no heartbeat, no sessions.
pub async fn mitra<T: TruthStore>(t: &T, n: u32) -> MitraId {
    t.create_mitra(&phone(n), &format!("Mitra {n}"))
        .await
        .unwrap()
        .id
}

/// A new mitra, set online through the port (which stamps its heartbeat).
pub async fn online_mitra<T: TruthStore>(t: &T, n: u32) -> MitraId {
    let id = mitra(t, n).await;
    assert!(t.set_online(id, true, OnlineReason::Manual).await.unwrap());
    id
}

/// An id no store knows.
pub fn unknown() -> MitraId {
    MitraId::new(uuid::Uuid::new_v4())
}

/// The wall clock `ago` in the past, as Postgres keeps times (microseconds).
pub fn ago(ago: Duration) -> OffsetDateTime {
    kept(OffsetDateTime::now_utc() - ago)
}

/// The mitra's state as the truth reads it.
pub async fn state<T: TruthStore>(t: &T, id: MitraId) -> MitraState {
    let mut states = t.mitra_states(&[id]).await.unwrap();
    assert_eq!(states.len(), 1, "{id} is known");
    states.remove(0).1
}

async fn heartbeat<T: TruthStore>(t: &T, id: MitraId) -> Option<OffsetDateTime> {
    state(t, id).await.last_heartbeat
}

fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}

fn not_found<T: std::fmt::Debug>(result: Result<T, TruthError>) -> bool {
    matches!(result, Err(TruthError::MitraNotFound))
}

fn unavailable<T: std::fmt::Debug>(result: Result<T, TruthError>) -> bool {
    matches!(result, Err(TruthError::Unavailable(_)))
}

/// `set_online` says whether the flag moved, writes one audit row per real transition, and
/// stamps the heartbeat when going (or staying) online, never when going offline.
pub async fn set_online_audits_each_transition_and_stamps_going_online<
    T: TruthStore,
    B: TruthBackdoor,
>(
    t: &T,
    b: &B,
) {
    use OnlineReason::{Manual, Operator};
    let id = mitra(t, 1).await;
    let old = ago(Duration::hours(1));
    b.set_heartbeat(id, Some(old)).await;
    assert!(
        t.set_online(id, true, Manual).await.unwrap(),
        "offline → online"
    );
    assert!(heartbeat(t, id).await > Some(old), "going online stamps it");

    b.set_heartbeat(id, Some(old)).await;
    assert!(
        !t.set_online(id, true, Manual).await.unwrap(),
        "already online"
    );
    assert!(
        heartbeat(t, id).await > Some(old),
        "toggling online again stamps it"
    );

    b.set_heartbeat(id, Some(old)).await;
    assert!(
        t.set_online(id, false, Operator).await.unwrap(),
        "online → offline"
    );
    assert_eq!(heartbeat(t, id).await, Some(old), "going offline leaves it");
    assert!(
        !t.set_online(id, false, Manual).await.unwrap(),
        "already offline"
    );

    assert_eq!(b.online_log(id).await, [(true, Manual), (false, Operator)]);
    let flags = t.mitra_flags(id).await.unwrap();
    assert_eq!(
        flags,
        Some(MitraFlags {
            active: true,
            online: false
        })
    );
}

/// The writes that name a mitra answer `MitraNotFound` for an unknown one; the reads leave it
/// out (or answer `None`), and the batch writes skip it.
pub async fn writes_to_an_unknown_mitra_are_not_found<T: TruthStore, B: TruthBackdoor>(
    t: &T,
    b: &B,
) {
    let nobody = unknown();
    let now = ago(Duration::ZERO);
    assert!(not_found(
        t.set_online(nobody, true, OnlineReason::Manual).await
    ));
    assert!(not_found(
        t.set_online(nobody, false, OnlineReason::Manual).await
    ));
    assert!(not_found(t.set_active(nobody, false).await));
    assert!(not_found(t.count_open_sessions(nobody).await));
    assert_eq!(t.heartbeat_fallback(nobody, now).await.unwrap(), None);
    assert_eq!(t.mitra_flags(nobody).await.unwrap(), None);
    assert_eq!(t.mitra_row(nobody).await.unwrap(), None);
    assert!(t.mitra_states(&[nobody]).await.unwrap().is_empty());
    let sweep = t
        .set_offline_many(&[nobody], OnlineReason::AutoOffline, now)
        .await
        .unwrap();
    assert_eq!(sweep, halo_ports::OfflineSweep::default());
    assert_eq!(t.record_heartbeats(&[(nobody, now)]).await.unwrap(), 0);
    assert!(b.online_log(nobody).await.is_empty());
}

/// The auto-offline sweep's guarded update: offline only those online with a heartbeat missing
/// or before the cutoff (at the cutoff is fresh), once each however often listed, one audit row
/// each; it says what it did with every known id.
pub async fn the_sweep_takes_offline_only_online_mitras_with_a_stale_heartbeat<
    T: TruthStore,
    B: TruthBackdoor,
>(
    t: &T,
    b: &B,
) {
    use OnlineReason::{AutoOffline, Manual};
    let cutoff = ago(Duration::seconds(90));
    let stale = online_mitra(t, 1).await;
    let silent = online_mitra(t, 2).await;
    let fresh = online_mitra(t, 3).await;
    let offline = mitra(t, 4).await;
    b.set_heartbeat(stale, Some(cutoff - Duration::microseconds(1)))
        .await;
    b.set_heartbeat(silent, None).await;
    b.set_heartbeat(fresh, Some(cutoff)).await;
    b.set_heartbeat(offline, Some(cutoff - Duration::hours(1)))
        .await;

    let ids = [stale, silent, fresh, offline, unknown(), stale];
    let sweep = t.set_offline_many(&ids, AutoOffline, cutoff).await.unwrap();
    assert_eq!(sorted(sweep.changed), sorted(vec![stale, silent]));
    assert_eq!(sweep.already_offline, [offline]);
    assert_eq!(
        sweep.fresh,
        [(fresh, cutoff)],
        "a heartbeat at the cutoff is fresh"
    );

    assert!(!state(t, stale).await.online && !state(t, silent).await.online);
    assert!(state(t, fresh).await.online);
    assert_eq!(
        b.online_log(stale).await,
        [(true, Manual), (false, AutoOffline)]
    );
    assert_eq!(b.online_log(fresh).await, [(true, Manual)]);
    assert!(b.online_log(offline).await.is_empty());
    let nothing = t.set_offline_many(&[], AutoOffline, cutoff).await.unwrap();
    assert_eq!(nothing, halo_ports::OfflineSweep::default());
}

/// `set_active` moves `is_active` and nothing else: going offline is the caller's next step
/// (SPEC §3.6), and no audit row is written for it.
pub async fn deactivation_changes_the_active_flag_only<T: TruthStore, B: TruthBackdoor>(
    t: &T,
    b: &B,
) {
    let id = online_mitra(t, 1).await;
    t.set_active(id, false).await.unwrap();
    let flags = t.mitra_flags(id).await.unwrap();
    assert_eq!(
        flags,
        Some(MitraFlags {
            active: false,
            online: true
        })
    );
    assert!(
        t.candidate_states().await.unwrap().is_empty(),
        "not a candidate"
    );
    assert_eq!(t.count_online().await.unwrap(), 1, "still is_online");
    assert!(!t.mitra_row(id).await.unwrap().unwrap().active);
    t.set_active(id, true).await.unwrap();
    assert!(t.mitra_flags(id).await.unwrap().unwrap().active);
    assert_eq!(b.online_log(id).await, [(true, OnlineReason::Manual)]);
}

/// The fallback heartbeat records a ping only for an online, active mitra, and only when it is
/// more than a second newer than the stored one; its answer's `online` says whether the ping
/// counts (see the port).
pub async fn the_heartbeat_fallback_records_online_active_mitras_once_a_second<
    T: TruthStore,
    B: TruthBackdoor,
>(
    t: &T,
    b: &B,
) {
    let online = online_mitra(t, 1).await;
    let offline = mitra(t, 2).await;
    let deactivated = online_mitra(t, 3).await;
    t.set_active(deactivated, false).await.unwrap();
    let base = ago(Duration::seconds(10));
    for id in [online, offline, deactivated] {
        b.set_heartbeat(id, Some(base)).await;
    }
    let flags = |active, counts| {
        Some(MitraFlags {
            active,
            online: counts,
        })
    };

    for within in [
        Duration::ZERO,
        Duration::milliseconds(500),
        Duration::SECOND,
    ] {
        let answer = t.heartbeat_fallback(online, base + within).await.unwrap();
        assert_eq!(answer, flags(true, true), "{within} after the stored one");
        assert_eq!(heartbeat(t, online).await, Some(base), "not written");
    }
    let later = base + Duration::SECOND + Duration::microseconds(1);
    let answer = t.heartbeat_fallback(online, later).await.unwrap();
    assert_eq!(answer, flags(true, true));
    assert_eq!(
        heartbeat(t, online).await,
        Some(later),
        "more than a second newer"
    );
    let answer = t.heartbeat_fallback(online, base).await.unwrap();
    assert_eq!(answer, flags(true, true), "an older ping still counts");
    assert_eq!(heartbeat(t, online).await, Some(later), "never backwards");

    let ping = base + Duration::seconds(5);
    let answer = t.heartbeat_fallback(offline, ping).await.unwrap();
    assert_eq!(answer, flags(true, false));
    assert_eq!(
        heartbeat(t, offline).await,
        Some(base),
        "offline: not written"
    );
    let answer = t.heartbeat_fallback(deactivated, ping).await.unwrap();
    assert_eq!(
        answer,
        flags(false, false),
        "a deactivated mitra's ping does not count"
    );
    assert_eq!(heartbeat(t, deactivated).await, Some(base), "not written");
}

/// Each recount of a mitra is numbered after the one before, and a snapshot's number sits
/// between the counts taken before and after it: the mirror keeps the newest count (SPEC §3.1).
pub async fn recounts_are_ordered_per_mitra_and_around_a_snapshot<
    T: TruthStore,
    B: TruthBackdoor,
>(
    t: &T,
    b: &B,
) {
    let id = mitra(t, 1).await;
    let other = mitra(t, 2).await;
    b.set_open_sessions(id, 2).await;
    let first = t.count_open_sessions(id).await.unwrap();
    assert_eq!(first.open, 2);
    let snapshot = t.mirror_truth().await.unwrap();
    let seq_of = |id| {
        snapshot
            .mitras
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.capacity_seq)
    };
    let in_snapshot = seq_of(id).unwrap();
    assert!(
        first.seq <= in_snapshot,
        "{first:?} then a snapshot at {in_snapshot}"
    );

    b.set_open_sessions(id, 1).await;
    assert_eq!(t.count_open_sessions(other).await.unwrap().open, 0);
    let second = t.count_open_sessions(id).await.unwrap();
    assert_eq!(second.open, 1);
    assert!(
        second.seq > in_snapshot,
        "a count after the snapshot is newer"
    );
    let third = t.count_open_sessions(id).await.unwrap();
    assert!(third.seq > second.seq);
}

/// The states of the mitras asked for, each known one once whatever the order or repeats;
/// `candidate_states` holds the online, active ones; `count_online` every online one.
pub async fn states_answer_each_known_mitra_once<T: TruthStore, B: TruthBackdoor>(t: &T, b: &B) {
    let available = online_mitra(t, 1).await;
    let deactivated = online_mitra(t, 2).await;
    t.set_active(deactivated, false).await.unwrap();
    let offline = mitra(t, 3).await;
    let beat = ago(Duration::seconds(5));
    b.set_heartbeat(available, Some(beat)).await;
    b.set_heartbeat(deactivated, Some(beat)).await;
    b.set_open_sessions(available, 2).await;
    let expected = |online, active, last_heartbeat, open_sessions| MitraState {
        online,
        active,
        last_heartbeat,
        open_sessions,
    };

    let asked = [offline, available, unknown(), available, deactivated];
    let mut states = t.mitra_states(&asked).await.unwrap();
    states.sort_by_key(|(id, _)| *id);
    let mut want = vec![
        (available, expected(true, true, Some(beat), 2)),
        (deactivated, expected(true, false, Some(beat), 0)),
        (offline, expected(false, true, None, 0)),
    ];
    want.sort_by_key(|(id, _)| *id);
    assert_eq!(states, want);
    assert!(t.mitra_states(&[]).await.unwrap().is_empty());
    let candidates = t.candidate_states().await.unwrap();
    assert_eq!(
        candidates,
        [(available, expected(true, true, Some(beat), 2))]
    );
    assert_eq!(t.count_online().await.unwrap(), 2);
}

/// The seed's read: every mitra with its flags, count and heartbeat, and when it was read (the
/// store's clock), also when there is no mitra at all.
pub async fn the_snapshot_holds_every_mitra_and_when_it_was_read<
    T: TruthStore,
    B: TruthBackdoor,
>(
    t: &T,
    b: &B,
) {
    let near_now =
        |at: OffsetDateTime| (OffsetDateTime::now_utc() - at).abs() < Duration::minutes(1);
    let empty = t.mirror_truth().await.unwrap();
    assert!(empty.mitras.is_empty());
    assert!(near_now(empty.read_at), "{}", empty.read_at);

    let busy = online_mitra(t, 1).await;
    let gone = mitra(t, 2).await;
    t.set_active(gone, false).await.unwrap();
    let beat = ago(Duration::seconds(5));
    b.set_heartbeat(busy, Some(beat)).await;
    b.set_open_sessions(busy, 1).await;
    let snapshot = t.mirror_truth().await.unwrap();
    let mut rows: Vec<_> = snapshot
        .mitras
        .iter()
        .map(|m| (m.id, m.active, m.online, m.open_sessions, m.last_heartbeat))
        .collect();
    rows.sort();
    let want = sorted(vec![
        (busy, true, true, 1, Some(beat)),
        (gone, false, false, 0, None),
    ]);
    assert_eq!(rows, want);
    assert!(snapshot.read_at >= empty.read_at);
    assert!(near_now(snapshot.read_at), "{}", snapshot.read_at);
}

/// The heartbeat mirror's copy moves each known mitra's heartbeat forward only, and counts the
/// rows it moved.
pub async fn heartbeats_are_copied_only_forward<T: TruthStore, B: TruthBackdoor>(t: &T, b: &B) {
    let pinged = online_mitra(t, 1).await;
    let silent = online_mitra(t, 2).await;
    let beat = ago(Duration::seconds(30));
    b.set_heartbeat(pinged, Some(beat)).await;
    b.set_heartbeat(silent, None).await;
    let newer = beat + Duration::seconds(10);
    let beats = [(pinged, newer), (silent, beat), (unknown(), newer)];
    assert_eq!(t.record_heartbeats(&beats).await.unwrap(), 2);
    assert_eq!(heartbeat(t, pinged).await, Some(newer));
    assert_eq!(heartbeat(t, silent).await, Some(beat));
    let older = [(pinged, beat), (silent, beat)];
    assert_eq!(
        t.record_heartbeats(&older).await.unwrap(),
        0,
        "older or equal"
    );
    assert_eq!(heartbeat(t, pinged).await, Some(newer), "never backwards");
    assert_eq!(t.record_heartbeats(&[]).await.unwrap(), 0);
}

/// Settings start at the defaults; a change is validated against the stored values of the
/// other keys, writes only the keys it changes, one audit row each (newest first in the
/// history); an invalid one writes nothing (SPEC §5.2).
pub async fn settings_change_with_one_audit_row_per_changed_key<T: TruthStore, B: TruthBackdoor>(
    t: &T,
    _: &B,
) {
    use SettingKey::{
        BeaconCacheTtlSeconds, HeartbeatIntervalSeconds, MaxCustomersPerMitra, StaleAfterSeconds,
    };
    assert_eq!(t.load_settings().await.unwrap(), AppSettings::default());
    assert!(t.settings_history(10).await.unwrap().is_empty());
    let (first_by, second_by) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
    let unchanged = i64::from(BeaconCacheTtlSeconds.default_value());
    let changes = [
        (MaxCustomersPerMitra, 5),
        (BeaconCacheTtlSeconds, unchanged),
    ];
    let next = t
        .change_settings(&changes, first_by)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.max_customers_per_mitra(), 5);
    let next = t
        .change_settings(&[(HeartbeatIntervalSeconds, 20)], second_by)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.load_settings().await.unwrap(), next);

    let history = t.settings_history(10).await.unwrap();
    let rows: Vec<_> = history
        .iter()
        .map(|c| (c.key.as_str(), c.old, c.new, c.changed_by))
        .collect();
    assert_eq!(
        rows,
        [
            ("heartbeat_interval_seconds", 30, 20, Some(second_by)),
            ("max_customers_per_mitra", 3, 5, Some(first_by)),
        ],
        "changed keys only, newest first"
    );
    assert!(history[0].changed_at >= history[1].changed_at);
    assert_eq!(t.settings_history(1).await.unwrap(), history[..1]);

    let out_of_range = t.change_settings(&[(MaxCustomersPerMitra, 0)], first_by);
    assert!(matches!(
        out_of_range.await.unwrap(),
        Err(SettingError::OutOfRange {
            key: MaxCustomersPerMitra,
            ..
        })
    ));
    // Valid alone, not with the stored interval (20 s): stale-after must be at least twice it.
    let without_slack = t.change_settings(&[(StaleAfterSeconds, 30)], first_by);
    assert_eq!(
        without_slack.await.unwrap(),
        Err(SettingError::StaleWithoutSlack {
            stale: 30,
            interval: 20
        })
    );
    assert_eq!(t.load_settings().await.unwrap(), next, "nothing written");
    assert_eq!(t.settings_history(10).await.unwrap(), history);
}

/// Create (offline, active; `Conflict` on a taken phone), a page oldest first with the total,
/// and one row with its current flags.
pub async fn the_directory_creates_lists_and_reads_mitras<T: TruthStore, B: TruthBackdoor>(
    t: &T,
    _: &B,
) {
    let mut rows = Vec::new();
    for n in 1..=3 {
        let name = format!("Mitra {n}");
        let row = t.create_mitra(&phone(n), &name).await.unwrap();
        assert_eq!(
            (row.phone.clone(), row.display_name.clone()),
            (phone(n), name)
        );
        assert!(row.active && !row.online, "{row:?}");
        rows.push(row);
    }
    let taken = t.create_mitra(&phone(2), "Another").await;
    assert!(matches!(taken, Err(TruthError::Conflict(_))), "{taken:?}");

    assert_eq!(t.list_mitras(0, 10).await.unwrap(), (rows.clone(), 3));
    assert_eq!(t.list_mitras(1, 1).await.unwrap(), (rows[1..2].to_vec(), 3));
    assert_eq!(t.list_mitras(5, 10).await.unwrap(), (Vec::new(), 3));

    let id = rows[0].id;
    assert_eq!(t.mitra_row(id).await.unwrap().as_ref(), Some(&rows[0]));
    t.set_online(id, true, OnlineReason::Manual).await.unwrap();
    t.set_active(id, false).await.unwrap();
    let row = t.mitra_row(id).await.unwrap().unwrap();
    assert!(row.online && !row.active, "{row:?}");
}

/// A store that does not answer fails every call as `Unavailable`, never as an answer.
pub async fn a_store_that_does_not_answer_is_unavailable<T: TruthStore, B: TruthBackdoor>(
    t: &T,
    b: &B,
) {
    let id = mitra(t, 1).await;
    let now = ago(Duration::ZERO);
    t.ping().await.unwrap();
    b.go_down().await;
    assert!(unavailable(t.ping().await));
    assert!(unavailable(
        t.set_online(id, true, OnlineReason::Manual).await
    ));
    let ids = [id];
    let sweep = t.set_offline_many(&ids, OnlineReason::AutoOffline, now);
    assert!(unavailable(sweep.await));
    assert!(unavailable(t.set_active(id, false).await));
    assert!(unavailable(t.heartbeat_fallback(id, now).await));
    assert!(unavailable(t.mitra_flags(id).await));
    assert!(unavailable(t.count_open_sessions(id).await));
    assert!(unavailable(t.mitra_states(&[id]).await));
    assert!(unavailable(t.candidate_states().await));
    let none = BTreeSet::new();
    assert!(unavailable(t.offer_candidates(1, &none, now, 3).await));
    assert!(unavailable(t.count_online().await));
    assert!(unavailable(t.mirror_truth().await));
    assert!(unavailable(t.record_heartbeats(&[(id, now)]).await));
    assert!(unavailable(t.load_settings().await));
    let change = [(SettingKey::MaxCustomersPerMitra, 4)];
    assert!(unavailable(
        t.change_settings(&change, uuid::Uuid::nil()).await
    ));
    assert!(unavailable(t.settings_history(1).await));
    assert!(unavailable(t.create_mitra(&phone(2), "Mitra 2").await));
    assert!(unavailable(t.list_mitras(0, 1).await));
    assert!(unavailable(t.mitra_row(id).await));
}

/// The idle rank (SPEC §12.5): coming online (offline -> online) makes a mitra idle since
/// then; a recount moves it to the latest start or end of its sessions when that is later, and
/// leaves it otherwise (the tie-break is drawn once per move); the snapshot holds the same.
pub async fn idle_ranks_move_when_a_mitra_becomes_idle<T: TruthStore, B: TruthBackdoor>(
    t: &T,
    b: &B,
) {
    let id = mitra(t, 1).await;
    let rank = || async { t.count_open_sessions(id).await.unwrap().idle_rank };
    b.set_session_activity(id, ago(Duration::minutes(10))).await;
    assert!(t.set_online(id, true, OnlineReason::Manual).await.unwrap());
    let online = rank().await;
    let near_now = (OffsetDateTime::now_utc() - online.since()).abs() < Duration::minutes(1);
    assert!(near_now, "idle since it came online: {:?}", online.since());
    assert!(!t.set_online(id, true, OnlineReason::Manual).await.unwrap());
    assert_eq!(
        rank().await,
        online,
        "online again: nothing moves, nor by a recount"
    );

    let ended = online.since() + Duration::seconds(30);
    b.set_session_activity(id, ended).await;
    let later = rank().await;
    assert_eq!(later.since(), ended, "a session that ended later");
    assert!(later > online);
    b.set_session_activity(id, ended - Duration::minutes(1))
        .await;
    assert_eq!(rank().await, later, "an older session changes nothing");

    let snapshot = t.mirror_truth().await.unwrap();
    let held = snapshot
        .mitras
        .iter()
        .find(|m| m.id == id)
        .map(|m| m.idle_rank);
    assert_eq!(held, Some(later), "the seed reads the same rank");
}

/// Mitras that come online at the same millisecond are ordered at random: every toggle draws
/// its own tie-break below `TIE_BREAK_SPAN`.
pub async fn coming_online_draws_a_random_tie_break<T: TruthStore, B: TruthBackdoor>(t: &T, _: &B) {
    let mut fractions = Vec::new();
    for n in 1..=12 {
        let id = online_mitra(t, n).await;
        let rank: IdleRank = t.count_open_sessions(id).await.unwrap().idle_rank;
        let fraction = rank.value() - rank.value().floor();
        assert!((0.0..TIE_BREAK_SPAN).contains(&fraction), "{fraction}");
        fractions.push(fraction);
    }
    fractions.sort_by(f64::total_cmp);
    fractions.dedup();
    assert_eq!(fractions.len(), 12, "drawn anew each time: {fractions:?}");
}

/// The offer round's fallback: online, active, fresh mitras under capacity, longest idle
/// first, at most `limit`, the excluded left out, each with its state.
pub async fn the_offer_fallback_walks_the_idle_order_through_the_rules<
    T: TruthStore,
    B: TruthBackdoor,
>(
    t: &T,
    b: &B,
) {
    // Six online mitras, idle since `base + (6 - n)` seconds: 6 the longest.
    let base = ago(Duration::ZERO) + Duration::minutes(1);
    let mut ids = Vec::new();
    for n in 1..=6u32 {
        let id = online_mitra(t, n).await;
        b.set_session_activity(id, base + Duration::seconds(i64::from(6 - n)))
            .await;
        t.count_open_sessions(id).await.unwrap();
        ids.push(id);
    }
    let [m1, m2, m3, m4, m5, m6] = ids[..] else {
        unreachable!("six mitras")
    };
    let fresh_since = ago(Duration::seconds(90));
    let offer = |limit: usize, exclude: &[MitraId], max_customers: u32| {
        let exclude: BTreeSet<MitraId> = exclude.iter().copied().collect();
        async move {
            t.offer_candidates(limit, &exclude, fresh_since, max_customers)
                .await
                .unwrap()
        }
    };
    let ids = |rows: Vec<(MitraId, MitraState)>| rows.into_iter().map(|(id, _)| id).collect();
    let all: Vec<MitraId> = ids(offer(10, &[], 3).await);
    assert_eq!(all, [m6, m5, m4, m3, m2, m1]);
    assert_eq!(ids(offer(2, &[], 3).await), vec![m6, m5], "the limit");
    assert_eq!(ids(offer(2, &[m6], 3).await), vec![m5, m4], "excluded");
    assert!(offer(0, &[], 3).await.is_empty());

    b.set_open_sessions(m5, 2).await;
    b.set_heartbeat(m4, Some(ago(Duration::minutes(2)))).await;
    t.set_active(m3, false).await.unwrap();
    t.set_online(m2, false, OnlineReason::Manual).await.unwrap();
    assert_eq!(ids(offer(10, &[], 2).await), vec![m6, m1], "5 at capacity");
    let rows = offer(10, &[], 3).await;
    assert_eq!(ids(rows.clone()), vec![m6, m5, m1]);
    let state = rows[1].1;
    assert!(state.online && state.active, "{state:?}");
    assert_eq!(state.open_sessions, 2);
}
