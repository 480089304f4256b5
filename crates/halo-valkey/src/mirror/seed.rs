//! The mirror's upkeep: the seed (staged sets swapped in by one script), the drift report's
//! read of every key, the health probe (generation marker, change of primary), and the sweeps'
//! fence and restore.

use super::request_policy::{classify, refuses_command};
use super::{format_time, ValkeyMirror};
use crate::{replies, scripts};
use async_trait::async_trait;
use halo_domain::{IdleRank, MirrorImage, MitraId};
use halo_ports::{MirrorError, MirrorMaintenance, SeedWrite};
use redis::{Cmd, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use time::OffsetDateTime;

/// Members staged per SADD, so one huge command never blocks the server for long.
const STAGING_CHUNK: usize = 5_000;
const SCAN_COUNT: usize = 1_000;

impl ValkeyMirror {
    async fn scan_keys(&self, name: &str) -> Result<Vec<String>, MirrorError> {
        let pattern = self.keys.scan_pattern(name);
        let mut cursor: u64 = 0;
        let mut found = Vec::new();
        loop {
            // The keyed `EXISTS` routes the pipeline to the node that holds the mirror's slot
            // on a cluster (a lone SCAN would go to any node).
            let mut pipe = redis::pipe();
            pipe.exists(self.keys.generation())
                .ignore()
                .cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let ((next, keys),): ((u64, Vec<String>),) = self.call("scan", &pipe).await?;
            found.extend(keys);
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
    }

    /// `(id, suffix)` for every key `<prefix><name><suffix>`.
    fn suffixes<'a>(
        &self,
        name: &str,
        keys: &'a [String],
    ) -> impl Iterator<Item = (&'a String, &'a str)> {
        let head = format!("{}{name}", self.keys.prefix());
        keys.iter()
            .filter_map(move |k| k.strip_prefix(head.as_str()).map(|s| (k, s)))
    }

    /// Remembers the primary's `run_id`; a different one than before counts as a drop.
    fn note_primary(&self, run_id: Option<&str>) {
        let Some(run_id) = run_id else { return };
        let Ok(mut primary) = self.primary.lock() else {
            return;
        };
        match primary.as_deref() {
            Some(known) if known == run_id => {}
            Some(known) => {
                tracing::warn!(
                    before = known,
                    now = run_id,
                    "the valkey primary changed; reseeding"
                );
                self.conn.note_drop();
                *primary = Some(run_id.to_owned());
            }
            None => *primary = Some(run_id.to_owned()),
        }
    }

    async fn stage_set(&self, key: &str, members: &BTreeSet<MitraId>) -> Result<(), MirrorError> {
        let members: Vec<String> = members.iter().map(ToString::to_string).collect();
        for chunk in members.chunks(STAGING_CHUNK) {
            let mut pipe = redis::pipe();
            pipe.sadd(key, chunk).ignore().expire(key, 120).ignore();
            self.call::<()>("seed_stage", &pipe).await?;
        }
        Ok(())
    }

    /// The idle order staged like the sets: the image's ranks, a chunk per `ZADD`.
    async fn stage_order(
        &self,
        key: &str,
        members: &BTreeMap<MitraId, IdleRank>,
    ) -> Result<(), MirrorError> {
        let members: Vec<(f64, String)> = members
            .iter()
            .map(|(id, rank)| (rank.value(), id.to_string()))
            .collect();
        for chunk in members.chunks(STAGING_CHUNK) {
            let mut pipe = redis::pipe();
            pipe.zadd_multiple(key, chunk)
                .ignore()
                .expire(key, 120)
                .ignore();
            self.call::<()>("seed_stage", &pipe).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl MirrorMaintenance for ValkeyMirror {
    async fn ping(&self) -> Result<(), MirrorError> {
        self.call::<String>("ping", &redis::cmd("PING"))
            .await
            .map(|_| ())
    }

    async fn write_token(&self) -> Result<u64, MirrorError> {
        let token: Option<u64> = self
            .call("write_token", &Cmd::get(self.keys.write_token()))
            .await?;
        Ok(token.unwrap_or(0))
    }

    async fn replace_all(
        &self,
        image: &MirrorImage,
        token: u64,
        now: OffsetDateTime,
    ) -> Result<SeedWrite, MirrorError> {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let staged_online = self.keys.staging(&nonce, "online");
        let staged_deactivated = self.keys.staging(&nonce, "deactivated");
        let staged_idle = self.keys.staging(&nonce, "idle_order");
        self.stage_set(&staged_online, &image.online).await?;
        self.stage_set(&staged_deactivated, &image.deactivated)
            .await?;
        self.stage_order(&staged_idle, &image.idle).await?;

        // Per-mitra keys that exist now but must not after the swap; a capacity key goes with
        // the order number of its mitra's count (see `swap_seed.lua`).
        let order = |id: MitraId| {
            image
                .capacity_order
                .get(&id)
                .map(ToString::to_string)
                .unwrap_or_default()
        };
        let mut doomed: Vec<(String, String)> = Vec::new();
        let capacity_keys = self.scan_keys(crate::keys::CAPACITY).await?;
        for (key, suffix) in self.suffixes(crate::keys::CAPACITY, &capacity_keys) {
            match suffix.parse::<MitraId>() {
                Ok(id) if image.capacity.contains_key(&id) => {}
                Ok(id) => doomed.push((key.clone(), order(id))),
                Err(_) => doomed.push((key.clone(), String::new())),
            }
        }
        let heartbeat_keys = self.scan_keys(crate::keys::HEARTBEAT).await?;
        for (key, suffix) in self.suffixes(crate::keys::HEARTBEAT, &heartbeat_keys) {
            let wanted = suffix
                .parse::<MitraId>()
                .is_ok_and(|id| image.heartbeat.contains(&id));
            if !wanted {
                doomed.push((key.clone(), String::new()));
            }
        }

        let mut invocation = self.writing(&scripts::SWAP_SEED);
        invocation
            .key(self.keys.online())
            .key(self.keys.deactivated())
            .key(&staged_online)
            .key(&staged_deactivated)
            .key(self.keys.generation())
            .key(self.keys.snapshot())
            .key(self.keys.seeded_at())
            .key(self.keys.capacity_order())
            .key(self.keys.idle_order())
            .key(&staged_idle)
            .key(self.keys.idle_rank())
            .arg(token.to_string())
            .arg(self.keys.prefix())
            .arg(&nonce)
            .arg(format_time(now))
            .arg(image.online.len())
            .arg(image.deactivated.len())
            .arg(image.idle.len())
            .arg(image.capacity.len());
        for (id, open) in &image.capacity {
            let seq = image.capacity_order.get(id).copied().unwrap_or(0);
            let rank = image
                .idle
                .get(id)
                .map(|rank| rank.value().to_string())
                .unwrap_or_default();
            invocation.arg(id.to_string()).arg(*open).arg(seq).arg(rank);
        }
        invocation.arg(image.heartbeat.len());
        for id in &image.heartbeat {
            let floor = image
                .heartbeat_floor
                .get(id)
                .map(|at| format_time(*at))
                .unwrap_or_default();
            invocation.arg(id.to_string()).arg(floor);
        }
        invocation.arg(doomed.len());
        for (key, seq) in &doomed {
            invocation.arg(key).arg(seq);
        }
        invocation.arg(format_time(image.truth_read_at.unwrap_or(now)));
        let applied: i64 = self.call("seed_swap", &invocation).await?;
        Ok(match applied {
            1 => SeedWrite::Applied,
            2 => SeedWrite::Superseded,
            _ => SeedWrite::Raced,
        })
    }

    async fn read_image(&self) -> Result<MirrorImage, MirrorError> {
        let mut image = MirrorImage::default();
        let mut sets = redis::pipe();
        sets.smembers(self.keys.online())
            .smembers(self.keys.deactivated());
        let (online, deactivated): (Vec<String>, Vec<String>) =
            self.call("read_sets", &sets).await?;
        for (members, target) in [
            (online, &mut image.online),
            (deactivated, &mut image.deactivated),
        ] {
            for member in members {
                match member.parse::<MitraId>() {
                    Ok(id) => {
                        target.insert(id);
                    }
                    Err(_) => {
                        image.garbage.insert(member);
                    }
                }
            }
        }
        let order: Vec<Value> = self
            .call(
                "read_idle_order",
                &Cmd::zrange_withscores(self.keys.idle_order(), 0, -1),
            )
            .await?;
        for (member, score) in replies::scored_members(order) {
            match (replies::mitra_id(&member), replies::idle_rank(&score)) {
                (Some(id), Some(rank)) => {
                    image.idle.insert(id, rank);
                }
                _ => {
                    image.garbage.insert(replies::text(&member));
                }
            }
        }
        let heartbeat_keys = self.scan_keys(crate::keys::HEARTBEAT).await?;
        for (key, suffix) in self.suffixes(crate::keys::HEARTBEAT, &heartbeat_keys) {
            match suffix.parse::<MitraId>() {
                Ok(id) => {
                    image.heartbeat.insert(id);
                }
                Err(_) => {
                    image.garbage.insert(key.clone());
                }
            }
        }
        let capacity_keys = self.scan_keys(crate::keys::CAPACITY).await?;
        if !capacity_keys.is_empty() {
            let values: Vec<Option<String>> = self
                .call("read_capacities", &Cmd::mget(&capacity_keys))
                .await?;
            for ((key, suffix), value) in self
                .suffixes(crate::keys::CAPACITY, &capacity_keys)
                .zip(values)
            {
                match (
                    suffix.parse::<MitraId>(),
                    value.as_deref().map(str::parse::<u32>),
                ) {
                    (Ok(id), Some(Ok(n))) => {
                        image.capacity.insert(id, n);
                    }
                    (_, None) => {} // deleted between SCAN and MGET
                    _ => {
                        image.garbage.insert(key.clone());
                    }
                }
            }
        }
        Ok(image)
    }

    /// Also notes a change of primary as a dropped connection: a promoted replica (or a
    /// cluster failover the client followed by itself) answers with data that may be a little
    /// older, so the watcher reseeds, as after a reconnect.
    async fn is_seeded(&self) -> Result<bool, MirrorError> {
        if self.info_refused.load(Ordering::Relaxed) {
            return self
                .call("is_seeded", &Cmd::exists(self.keys.generation()))
                .await;
        }
        let mut pipe = redis::pipe();
        pipe.exists(self.keys.generation())
            .cmd("INFO")
            .arg("server");
        match self.call_raw::<(bool, String)>("is_seeded", &pipe).await? {
            Ok((seeded, info)) => {
                self.note_primary(replies::info_field(&info, "run_id"));
                Ok(seeded)
            }
            Err(error) if refuses_command(&error) => {
                tracing::warn!(%error, "valkey refuses INFO; a failover is then noticed only by its dropped connections");
                self.info_refused.store(true, Ordering::Relaxed);
                self.call("is_seeded", &Cmd::exists(self.keys.generation()))
                    .await
            }
            Err(error) => Err(classify(error)),
        }
    }

    fn connection_drops(&self) -> u64 {
        self.conn.drops()
    }

    async fn fence_stale(
        &self,
        ids: &[MitraId],
        cutoff: OffsetDateTime,
    ) -> Result<Vec<MitraId>, MirrorError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.writing(&scripts::FENCE_STALE);
        invocation
            .key(self.keys.online())
            .key(self.keys.idle_order())
            .arg(format_time(cutoff));
        for id in ids {
            invocation.key(self.keys.heartbeat(*id)).arg(id.to_string());
        }
        let fenced: Vec<Value> = self.call("fence_stale", &invocation).await?;
        Ok(fenced.iter().filter_map(replies::mitra_id).collect())
    }

    async fn restore_online(
        &self,
        beats: &[(MitraId, OffsetDateTime)],
        token: u64,
    ) -> Result<(), MirrorError> {
        if beats.is_empty() {
            return Ok(());
        }
        let mut invocation = self.writing(&scripts::RESTORE_ONLINE);
        invocation
            .key(self.keys.online())
            .key(self.keys.deactivated())
            .key(self.keys.idle_order())
            .key(self.keys.idle_rank())
            .arg(token);
        for (id, at) in beats {
            // The rank for a mitra the mirror never counted: idle since that heartbeat.
            let unknown = IdleRank::new(*at, 0.0);
            invocation
                .key(self.keys.heartbeat(*id))
                .arg(id.to_string())
                .arg(format_time(*at))
                .arg(unknown.value());
        }
        self.call::<i64>("restore_online", &invocation)
            .await
            .map(drop)
    }

    async fn online_heartbeats(
        &self,
    ) -> Result<Vec<(MitraId, Option<OffsetDateTime>)>, MirrorError> {
        self.online_heartbeat_records().await
    }
}
