//! The mirror as plain values: what Valkey should hold given the Postgres truth, and the
//! key-by-key difference between what it should hold and what it does hold (drift).

use crate::{IdleRank, MitraId};
use std::collections::{BTreeMap, BTreeSet};
use time::OffsetDateTime;

/// One mitra as Postgres knows it: the inputs of the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MitraTruth {
    pub id: MitraId,
    pub active: bool,
    pub online: bool,
    pub open_sessions: u32,
    /// `mitra_online_status.last_heartbeat_at`: pings answered from Postgres (Valkey down or
    /// distrusted) land here, so a seed must not leave an older value in the mirror.
    pub last_heartbeat: Option<OffsetDateTime>,
    /// The order number of the last recount (`capacity_seq`): the count read with it is at
    /// least as new as that recount's.
    pub capacity_seq: u64,
    /// `mitra_online_status.idle_rank`: its place in the offer order (SPEC §12.5), written by
    /// the online toggle and by every recount, so it is as new as `capacity_seq` says.
    pub idle_rank: IdleRank,
}

/// Every mitra as Postgres knows it, read in one statement, and when (the database's clock):
/// seeds are ordered by it, so an older read never overwrites a newer one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruthSnapshot {
    pub mitras: Vec<MitraTruth>,
    pub read_at: OffsetDateTime,
}

impl TruthSnapshot {
    /// The mirror this truth expects, stamped with when the truth was read.
    pub fn image(&self) -> MirrorImage {
        let mut image = MirrorImage::expected_from(&self.mitras);
        image.truth_read_at = Some(self.read_at);
        image
    }
}

/// The availability keys of the mirror, heartbeat values aside (they are liveness, not truth:
/// only their presence for online mitras is derivable).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorImage {
    /// `mitras:online`
    pub online: BTreeSet<MitraId>,
    /// `mitras:deactivated`
    pub deactivated: BTreeSet<MitraId>,
    /// `mitra:capacity:<id>`; a missing key reads as 0.
    pub capacity: BTreeMap<MitraId, u32>,
    /// ids that have a `mitra:heartbeat:<id>` key.
    pub heartbeat: BTreeSet<MitraId>,
    /// `mitras:idle_order`: the online, active mitras with their idle rank (SPEC §12.5).
    pub idle: BTreeMap<MitraId, IdleRank>,
    /// Set members or key suffixes that are not mitra ids at all (corruption).
    pub garbage: BTreeSet<String>,
    /// The newest heartbeat Postgres holds for mitras in `heartbeat`: a seed writes
    /// `max(value in Valkey, floor)`, so pings answered from Postgres during an outage count.
    /// Not part of the drift (heartbeat values are liveness, not truth).
    pub heartbeat_floor: BTreeMap<MitraId, OffsetDateTime>,
    /// The `capacity_seq` of every mitra: a seed writes a count (or deletes a capacity key)
    /// only over one of a lower or equal order number (recounts and seeds land in order).
    /// Not part of the drift.
    pub capacity_order: BTreeMap<MitraId, u64>,
    /// When the truth behind this image was read (`TruthSnapshot::read_at`); `None` for an
    /// image not made from a snapshot.
    pub truth_read_at: Option<OffsetDateTime>,
}

impl MirrorImage {
    /// What the mirror must hold for this truth. Capacity keys exist for online mitras and for
    /// any mitra holding sessions; heartbeat keys exist exactly for online, active mitras (so
    /// the heartbeat can refresh a key that exists without asking about either set).
    pub fn expected_from<'a>(truth: impl IntoIterator<Item = &'a MitraTruth>) -> Self {
        let mut image = Self::default();
        for m in truth {
            if m.online {
                image.online.insert(m.id);
                if m.active {
                    image.idle.insert(m.id, m.idle_rank);
                    image.heartbeat.insert(m.id);
                    if let Some(at) = m.last_heartbeat {
                        image.heartbeat_floor.insert(m.id, at);
                    }
                }
            }
            if !m.active {
                image.deactivated.insert(m.id);
            }
            if m.online || m.open_sessions > 0 {
                image.capacity.insert(m.id, m.open_sessions);
            }
            image.capacity_order.insert(m.id, m.capacity_seq);
        }
        image
    }

    /// Mitras with at least one open session (the seed event's `with_sessions`).
    pub fn with_sessions(&self) -> usize {
        self.capacity.values().filter(|&&n| n > 0).count()
    }

    /// Compares `self` (expected) with `actual`, key by key.
    pub fn drift_against(&self, actual: &MirrorImage) -> DriftReport {
        let mut report = DriftReport::default();
        diff_sets(&mut report, DriftKind::Online, &self.online, &actual.online);
        diff_sets(
            &mut report,
            DriftKind::Deactivated,
            &self.deactivated,
            &actual.deactivated,
        );
        diff_sets(
            &mut report,
            DriftKind::Heartbeat,
            &self.heartbeat,
            &actual.heartbeat,
        );
        diff_idle(&mut report, &self.idle, &actual.idle);
        let ids: BTreeSet<_> = self.capacity.keys().chain(actual.capacity.keys()).collect();
        for id in ids {
            let want = self.capacity.get(id).copied().unwrap_or(0);
            let have = actual.capacity.get(id).copied().unwrap_or(0);
            if want != have {
                report.different.push(DriftEntry {
                    kind: DriftKind::Capacity,
                    member: id.to_string(),
                    expected: Some(want),
                    actual: Some(have),
                });
            }
        }
        for g in &actual.garbage {
            report
                .extra
                .push(DriftEntry::member(DriftKind::Garbage, g.clone()));
        }
        report
    }
}

fn diff_sets(
    report: &mut DriftReport,
    kind: DriftKind,
    expected: &BTreeSet<MitraId>,
    actual: &BTreeSet<MitraId>,
) {
    for id in expected.difference(actual) {
        report
            .missing
            .push(DriftEntry::member(kind, id.to_string()));
    }
    for id in actual.difference(expected) {
        report.extra.push(DriftEntry::member(kind, id.to_string()));
    }
}

/// The idle order holds exactly the online, active mitras, each at the rank Postgres holds.
fn diff_idle(
    report: &mut DriftReport,
    expected: &BTreeMap<MitraId, IdleRank>,
    actual: &BTreeMap<MitraId, IdleRank>,
) {
    let (want, have): (BTreeSet<MitraId>, BTreeSet<MitraId>) = (
        expected.keys().copied().collect(),
        actual.keys().copied().collect(),
    );
    diff_sets(report, DriftKind::Idle, &want, &have);
    for (id, rank) in expected {
        if actual.get(id).is_some_and(|held| held != rank) {
            report
                .different
                .push(DriftEntry::member(DriftKind::Idle, id.to_string()));
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriftKind {
    Online,
    Deactivated,
    Capacity,
    Heartbeat,
    /// `mitras:idle_order`: a member missing or extra, or at another rank (no values shown).
    Idle,
    Garbage,
}

impl DriftKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Deactivated => "deactivated",
            Self::Capacity => "capacity",
            Self::Heartbeat => "heartbeat",
            Self::Idle => "idle",
            Self::Garbage => "garbage",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriftEntry {
    pub kind: DriftKind,
    /// The mitra id (or the raw garbage string).
    pub member: String,
    pub expected: Option<u32>,
    pub actual: Option<u32>,
}

impl DriftEntry {
    fn member(kind: DriftKind, member: String) -> Self {
        Self {
            kind,
            member,
            expected: None,
            actual: None,
        }
    }
}

/// Key-by-key difference between the mirror and the truth.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriftReport {
    /// In Postgres, absent from Valkey.
    pub missing: Vec<DriftEntry>,
    /// In Valkey, absent from Postgres.
    pub extra: Vec<DriftEntry>,
    /// In both, with different values.
    pub different: Vec<DriftEntry>,
}

impl DriftReport {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.different.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn id(n: u128) -> MitraId {
        MitraId::new(Uuid::from_u128(n))
    }

    fn truth(n: u128, active: bool, online: bool, open: u32) -> MitraTruth {
        MitraTruth {
            id: id(n),
            active,
            online,
            open_sessions: open,
            last_heartbeat: None,
            capacity_seq: 0,
            idle_rank: rank(n),
        }
    }

    fn rank(n: u128) -> IdleRank {
        let at = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(i64::try_from(n).unwrap());
        IdleRank::new(at, 0.5)
    }

    #[test]
    fn expected_image_follows_the_columns() {
        let rows = [
            truth(1, true, true, 0),
            truth(2, true, false, 2),
            truth(3, false, false, 0),
            truth(4, true, false, 0),
            truth(5, false, true, 0),
        ];
        let image = MirrorImage::expected_from(&rows);
        assert_eq!(image.online, [id(1), id(5)].into());
        assert_eq!(image.heartbeat, [id(1)].into(), "online and active only");
        assert_eq!(image.deactivated, [id(3), id(5)].into());
        assert_eq!(image.capacity, [(id(1), 0), (id(2), 2), (id(5), 0)].into());
        assert_eq!(
            image.idle,
            [(id(1), rank(1))].into(),
            "the online, active mitras"
        );
        assert_eq!(image.with_sessions(), 1);
        assert!(
            image.heartbeat_floor.is_empty(),
            "no heartbeat in postgres yet"
        );
    }

    #[test]
    fn with_sessions_counts_mitras_not_sessions() {
        let rows = [
            truth(1, true, true, 2),
            truth(2, true, false, 1),
            truth(3, true, true, 0),
        ];
        assert_eq!(MirrorImage::expected_from(&rows).with_sessions(), 2);
        assert_eq!(MirrorImage::default().with_sessions(), 0);
    }

    #[test]
    fn a_snapshot_expects_its_mitras_stamped_with_its_read_time() {
        let read_at = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(42);
        let snapshot = TruthSnapshot {
            mitras: vec![truth(1, true, true, 2), truth(2, false, false, 0)],
            read_at,
        };
        let image = snapshot.image();
        assert_eq!(image.truth_read_at, Some(read_at));
        let unstamped = MirrorImage {
            truth_read_at: None,
            ..image
        };
        assert_eq!(unstamped, MirrorImage::expected_from(&snapshot.mitras));
    }

    #[test]
    fn heartbeat_floor_only_for_mitras_with_a_key() {
        let at = OffsetDateTime::UNIX_EPOCH;
        let with_beat = |mut t: MitraTruth| {
            t.last_heartbeat = Some(at);
            t
        };
        let rows = [
            with_beat(truth(1, true, true, 0)),
            with_beat(truth(2, true, false, 0)),
            with_beat(truth(3, false, true, 0)),
        ];
        let image = MirrorImage::expected_from(&rows);
        assert_eq!(image.heartbeat_floor, [(id(1), at)].into());
    }

    #[test]
    fn identical_images_have_no_drift() {
        let image = MirrorImage::expected_from(&[truth(1, true, true, 1)]);
        assert!(image.drift_against(&image.clone()).is_empty());
    }

    #[test]
    fn drift_names_missing_extra_and_different() {
        let expected =
            MirrorImage::expected_from(&[truth(1, true, true, 0), truth(2, true, true, 1)]);
        let mut actual = expected.clone();
        actual.online.remove(&id(2));
        actual.online.insert(id(999));
        actual.capacity.insert(id(1), 99);
        actual.garbage.insert("not-an-id".into());

        let report = expected.drift_against(&actual);
        assert_eq!(
            report.missing,
            vec![DriftEntry::member(DriftKind::Online, id(2).to_string())]
        );
        assert_eq!(
            report.extra,
            vec![
                DriftEntry::member(DriftKind::Online, id(999).to_string()),
                DriftEntry::member(DriftKind::Garbage, "not-an-id".into()),
            ]
        );
        assert_eq!(
            report.different,
            vec![DriftEntry {
                kind: DriftKind::Capacity,
                member: id(1).to_string(),
                expected: Some(0),
                actual: Some(99)
            }]
        );
    }

    #[test]
    fn one_drifted_key_of_any_sort_is_drift() {
        let expected = MirrorImage::expected_from(&[truth(1, true, true, 1)]);
        let drift = |change: fn(&mut MirrorImage)| {
            let mut actual = expected.clone();
            change(&mut actual);
            expected.drift_against(&actual)
        };
        let missing = drift(|a| a.online.clear());
        let extra = drift(|a| {
            a.garbage.insert("junk".into());
        });
        let different = drift(|a| {
            a.capacity.insert(id(1), 3);
        });
        for (report, lists) in [
            (missing, [1, 0, 0]),
            (extra, [0, 1, 0]),
            (different, [0, 0, 1]),
        ] {
            let got = [
                report.missing.len(),
                report.extra.len(),
                report.different.len(),
            ];
            assert_eq!(got, lists, "{report:?}");
            assert!(!report.is_empty(), "{report:?}");
        }
    }

    #[test]
    fn drift_kinds_are_named_as_the_api_shows_them() {
        use DriftKind::*;
        for (kind, name) in [
            (Online, "online"),
            (Deactivated, "deactivated"),
            (Capacity, "capacity"),
            (Heartbeat, "heartbeat"),
            (Idle, "idle"),
            (Garbage, "garbage"),
        ] {
            assert_eq!(kind.as_str(), name);
        }
    }

    #[test]
    fn the_idle_order_drifts_by_member_and_by_rank() {
        let expected =
            MirrorImage::expected_from(&[truth(1, true, true, 0), truth(2, true, true, 0)]);
        let mut actual = expected.clone();
        actual.idle.remove(&id(1));
        actual.idle.insert(id(2), rank(7));
        actual.idle.insert(id(9), rank(9));
        let report = expected.drift_against(&actual);
        let idle = |entries: &[DriftEntry]| -> Vec<String> {
            entries
                .iter()
                .filter(|e| e.kind == DriftKind::Idle)
                .map(|e| e.member.clone())
                .collect()
        };
        assert_eq!(idle(&report.missing), [id(1).to_string()]);
        assert_eq!(idle(&report.extra), [id(9).to_string()]);
        assert_eq!(idle(&report.different), [id(2).to_string()]);
    }

    #[test]
    fn a_zero_capacity_key_equals_a_missing_one() {
        let expected = MirrorImage::expected_from(&[truth(1, true, false, 0)]);
        let mut actual = expected.clone();
        actual.capacity.insert(id(1), 0);
        assert!(expected.drift_against(&actual).is_empty());
    }
}
