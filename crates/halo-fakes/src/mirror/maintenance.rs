//! The seed (`swap_seed.lua`), the drift report's read, the generation marker, and the sweeps'
//! fence (`fence_stale.lua`) and restore (`restore_online.lua`).

use super::{stored, InMemoryMirror, State};
use async_trait::async_trait;
use halo_domain::{IdleRank, MirrorImage, MitraId};
use halo_ports::{MirrorError, MirrorMaintenance, SeedWrite};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use time::OffsetDateTime;

#[async_trait]
impl MirrorMaintenance for InMemoryMirror {
    async fn ping(&self) -> Result<(), MirrorError> {
        self.enter("ping").map(drop)
    }

    async fn write_token(&self) -> Result<u64, MirrorError> {
        Ok(self.enter("write_token")?.write_token)
    }

    async fn replace_all(
        &self,
        image: &MirrorImage,
        token: u64,
        now: OffsetDateTime,
    ) -> Result<SeedWrite, MirrorError> {
        let mut s = self.enter("replace_all")?;
        let read_at = stored(image.truth_read_at.unwrap_or(now));
        if s.seeded_at.is_some_and(|last| last > read_at) {
            return Ok(SeedWrite::Superseded);
        }
        // The token went back: the store lost its data since the seed read it.
        if s.write_token < token {
            return Ok(SeedWrite::Raced);
        }
        swap_in(&mut s, image, token, stored(now));
        s.seeded_at = Some(read_at);
        s.journal.retain(|_, written| *written > token);
        s.snapshot = None;
        s.seeded = true;
        Ok(SeedWrite::Applied)
    }

    async fn read_image(&self) -> Result<MirrorImage, MirrorError> {
        let s = self.enter("read_image")?;
        Ok(MirrorImage {
            online: s.online.clone(),
            deactivated: s.deactivated.clone(),
            capacity: s.capacity.clone(),
            heartbeat: s.heartbeat.keys().copied().collect(),
            idle: s.idle.clone(),
            ..MirrorImage::default()
        })
    }

    async fn is_seeded(&self) -> Result<bool, MirrorError> {
        Ok(self.enter("is_seeded")?.seeded)
    }

    fn connection_drops(&self) -> u64 {
        self.inner.drops.load(Ordering::SeqCst)
    }

    async fn fence_stale(
        &self,
        ids: &[MitraId],
        cutoff: OffsetDateTime,
    ) -> Result<Vec<MitraId>, MirrorError> {
        if ids.is_empty() {
            self.count("fence_stale");
            return Ok(Vec::new());
        }
        let mut s = self.enter("fence_stale")?;
        let cutoff = stored(cutoff);
        let mut fenced = Vec::new();
        for id in ids {
            let stale = s.heartbeat.get(id).is_none_or(|at| *at < cutoff);
            if stale && s.online.remove(id) {
                s.idle.remove(id);
                s.heartbeat.remove(id);
                fenced.push(*id);
            }
        }
        if !fenced.is_empty() {
            s.touch(fenced.iter().copied());
        }
        Ok(fenced)
    }

    async fn restore_online(
        &self,
        beats: &[(MitraId, OffsetDateTime)],
        token: u64,
    ) -> Result<(), MirrorError> {
        if beats.is_empty() {
            self.count("restore_online");
            return Ok(());
        }
        let mut s = self.enter("restore_online")?;
        let mut restored = Vec::new();
        for (id, at) in beats {
            let written_since = s.journal.get(id).is_some_and(|written| *written > token);
            if written_since || s.deactivated.contains(id) {
                continue;
            }
            s.online.insert(*id);
            // The rank of its newest count; a mitra never counted ranks as idle since `at`.
            let rank = s.idle_rank.get(id).copied();
            s.idle
                .insert(*id, rank.unwrap_or_else(|| IdleRank::new(*at, 0.0)));
            let at = stored(*at);
            let newest = s.heartbeat.get(id).map_or(at, |live| at.max(*live));
            s.heartbeat.insert(*id, newest);
            restored.push(*id);
        }
        if !restored.is_empty() {
            s.touch(restored);
        }
        Ok(())
    }

    async fn online_heartbeats(
        &self,
    ) -> Result<Vec<(MitraId, Option<OffsetDateTime>)>, MirrorError> {
        let s = self.enter("online_heartbeats")?;
        s.ensure_seeded()?;
        Ok(s.online
            .iter()
            .map(|id| (*id, s.heartbeat.get(id).copied()))
            .collect())
    }
}

/// What a mitra written since the seed's token holds: its memberships and its place in the
/// idle order.
type Kept = (bool, bool, Option<IdleRank>);

/// The swap itself: the image's sets and keys, except what the mitras written since `token`
/// hold (their set memberships, idle order place and heartbeat); capacity and idle ranks by
/// order number instead.
fn swap_in(s: &mut State, image: &MirrorImage, token: u64, now: OffsetDateTime) {
    let kept: BTreeMap<MitraId, Kept> = s
        .journal
        .iter()
        .filter(|(_, written)| **written > token)
        .map(|(id, _)| {
            let live = (
                s.online.contains(id),
                s.deactivated.contains(id),
                s.idle.get(id).copied(),
            );
            (*id, live)
        })
        .collect();
    // What exists now but is not in the image, decided before anything is written.
    let doomed_capacity: Vec<MitraId> = s
        .capacity
        .keys()
        .filter(|id| !image.capacity.contains_key(id))
        .copied()
        .collect();
    let doomed_heartbeat: Vec<MitraId> = s
        .heartbeat
        .keys()
        .filter(|id| !image.heartbeat.contains(id) && !kept.contains_key(id))
        .copied()
        .collect();

    s.online.clone_from(&image.online);
    s.deactivated.clone_from(&image.deactivated);
    s.idle.clone_from(&image.idle);
    for (id, (online, deactivated, idle)) in &kept {
        for (set, member) in [(&mut s.online, *online), (&mut s.deactivated, *deactivated)] {
            if member {
                set.insert(*id);
            } else {
                set.remove(id);
            }
        }
        match idle {
            Some(rank) => s.idle.insert(*id, *rank),
            None => s.idle.remove(id),
        };
    }
    for (id, open) in &image.capacity {
        let seq = image.capacity_order.get(id).copied().unwrap_or(0);
        let rank = image.idle.get(id).copied();
        if s.capacity_order.get(id).is_none_or(|held| seq >= *held) {
            s.capacity.insert(*id, *open);
            s.capacity_order.insert(*id, seq);
            if let Some(rank) = rank {
                s.idle_rank.insert(*id, rank);
                if kept.contains_key(id) && s.idle.contains_key(id) {
                    s.idle.insert(*id, rank);
                }
            }
        } else if rank.is_some() && !kept.contains_key(id) {
            // A newer recount landed since the truth was read: its rank stays.
            if let Some(live) = s.idle_rank.get(id).copied() {
                s.idle.insert(*id, live);
            }
        }
    }
    for id in image.heartbeat.iter().filter(|id| !kept.contains_key(id)) {
        let floor = image.heartbeat_floor.get(id).copied().map(stored);
        let live = s.heartbeat.get(id).copied();
        let newest = match (live, floor) {
            (None, _) => now,
            (Some(live), Some(floor)) => live.max(floor),
            (Some(live), None) => live,
        };
        s.heartbeat.insert(*id, newest);
    }
    for id in doomed_capacity {
        let wanted = match image.capacity_order.get(&id) {
            Some(seq) => s.capacity_order.get(&id).is_none_or(|held| seq >= held),
            None => !kept.contains_key(&id),
        };
        if wanted {
            s.capacity.remove(&id);
        }
    }
    for id in doomed_heartbeat {
        s.heartbeat.remove(&id);
    }
}
