//! The instances' meeting point: the beacon snapshot and its recompute lock, leases, and the
//! config invalidation channel.

use super::{format_time, millis, ValkeyMirror};
use crate::scripts;
use async_trait::async_trait;
use halo_domain::Beacon;
use halo_ports::{BeaconClaim, BeaconLock, MirrorCoordination, MirrorError};
use redis::Cmd;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;

/// The JSON of `availability:snapshot` (SPEC §2.2).
#[derive(Serialize, Deserialize)]
struct SnapshotJson {
    available: bool,
    count: u32,
    computed_at: String,
}

#[async_trait]
impl MirrorCoordination for ValkeyMirror {
    async fn claim_beacon(&self, lock_ttl: Duration) -> Result<BeaconClaim, MirrorError> {
        // Nearly every poll finds the snapshot: a plain MGET costs the server a fraction of a
        // script call. Only a miss runs the script, which reads again and claims the lock.
        let read = Cmd::mget(&[self.keys.snapshot(), self.keys.generation()]);
        let (cached, generation): (Option<String>, Option<String>) =
            self.call("claim_beacon", &read).await?;
        let reply = match (cached, generation) {
            (_, None) => return Err(MirrorError::Unseeded),
            (Some(json), Some(_)) => json,
            (None, Some(_)) => {
                let owner = uuid::Uuid::new_v4().simple().to_string();
                let mut invocation = scripts::CLAIM_BEACON.prepare_invoke();
                invocation
                    .key(self.keys.snapshot())
                    .key(self.keys.snapshot_lock())
                    .key(self.keys.generation())
                    .arg(&owner)
                    .arg(millis(lock_ttl));
                let reply: String = self.call("claim_beacon", &invocation).await?;
                if reply == "compute" {
                    return Ok(BeaconClaim::Compute(BeaconLock(owner)));
                }
                reply
            }
        };
        match reply.as_str() {
            "unseeded" => Err(MirrorError::Unseeded),
            "busy" => Ok(BeaconClaim::Busy),
            json => {
                let snapshot: SnapshotJson = serde_json::from_str(json)
                    .map_err(|e| MirrorError::Corrupt(format!("availability snapshot: {e}")))?;
                Ok(BeaconClaim::Cached(Beacon::from_count(
                    snapshot.count as usize,
                )))
            }
        }
    }

    async fn store_beacon(
        &self,
        beacon: Beacon,
        computed_at: OffsetDateTime,
        ttl: Duration,
        lock: &BeaconLock,
    ) -> Result<(), MirrorError> {
        let json = serde_json::to_string(&SnapshotJson {
            available: beacon.available(),
            count: beacon.count,
            computed_at: format_time(computed_at),
        })
        .map_err(|e| MirrorError::Corrupt(e.to_string()))?;
        let mut invocation = scripts::STORE_BEACON.prepare_invoke();
        invocation
            .key(self.keys.snapshot())
            .key(self.keys.snapshot_lock())
            .arg(json)
            .arg(millis(ttl))
            .arg(&lock.0);
        self.call::<i64>("store_beacon", &invocation)
            .await
            .map(drop)
    }

    async fn bust_beacon(&self) -> Result<(), MirrorError> {
        self.call("bust_beacon", &Cmd::del(self.keys.snapshot()))
            .await
    }

    async fn try_lease(&self, name: &str, ttl: Duration) -> Result<bool, MirrorError> {
        let cmd = redis::cmd("SET")
            .arg(self.keys.lease(name))
            .arg(uuid::Uuid::new_v4().simple().to_string())
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .to_owned();
        let reply: Option<String> = self.call("try_lease", &cmd).await?;
        Ok(reply.is_some())
    }

    async fn publish_config_invalidate(&self) -> Result<(), MirrorError> {
        // A cluster's subscribers listen on the sharded channel (see `pubsub`).
        let command = if self.conn.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        let request = redis::cmd(command)
            .arg(self.keys.config_channel())
            .arg("1")
            .to_owned();
        self.call::<()>("publish_config_invalidate", &request).await
    }
}
