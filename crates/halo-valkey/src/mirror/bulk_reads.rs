//! The bulk reads over the whole online set, each in one round trip: `SORT … BY nosort GET`
//! (native code) while the server accepts it, the Lua scripts when the key prefix holds a `*`
//! or the login may not SORT.

use super::request_policy::{classify, refused_by_server, Request};
use super::{ensure_seeded, ValkeyMirror};
use crate::{replies, scripts};
use halo_domain::MitraId;
use halo_ports::MirrorError;
use redis::{FromRedisValue, Value};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use time::OffsetDateTime;

impl ValkeyMirror {
    /// The SORT patterns while the server accepts them (see `sort_refused`).
    pub(super) fn sort_patterns(&self) -> Option<(String, String)> {
        if self.sort_refused.load(Ordering::Relaxed) {
            return None;
        }
        self.keys.sort_patterns()
    }

    /// An atomic pipeline of the generation marker and `SORT online BY nosort GET # GET …`, one
    /// `GET` per pattern: each member's per-mitra keys read inside the server.
    fn sort_get(&self, patterns: &[&str]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        let sort = pipe
            .atomic()
            .exists(self.keys.generation())
            .cmd("SORT")
            .arg(self.keys.online())
            .arg("BY")
            .arg("nosort")
            .arg("GET")
            .arg("#");
        for pattern in patterns {
            sort.arg("GET").arg(*pattern);
        }
        pipe
    }

    /// Runs a `SORT … GET` read; when the server refuses the command itself (not an outage),
    /// remembers it and answers `None` so the caller runs the Lua script instead.
    pub(super) async fn sorted_read<T: FromRedisValue + Send + 'static>(
        &self,
        op: &'static str,
        request: &impl Request,
    ) -> Result<Option<T>, MirrorError> {
        match self.call_raw(op, request).await? {
            Ok(value) => Ok(Some(value)),
            Err(error) if refused_by_server(&error) => {
                if !self.sort_refused.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %error,
                        "valkey refuses SORT … GET (ACL?); bulk reads use the Lua scripts from now on"
                    );
                }
                Ok(None)
            }
            Err(error) => Err(classify(error)),
        }
    }

    /// One round trip, atomic, no Lua: `SORT … BY nosort GET` reads every member's per-mitra
    /// keys inside the server (native code); `SINTER` names the members that are also
    /// deactivated (normally none), which the reply then leaves out: the same set as `SDIFF
    /// online deactivated`. `None` when the server refuses SORT (see `sorted_read`).
    async fn sorted_candidates(
        &self,
        heartbeat: String,
        capacity: String,
    ) -> Result<Option<(Value, HashSet<MitraId>)>, MirrorError> {
        let mut pipe = self.sort_get(&[&heartbeat, &capacity]);
        pipe.cmd("SINTER")
            .arg(self.keys.online())
            .arg(self.keys.deactivated());
        let Some((seeded, flat, excluded)) = self
            .sorted_read::<(bool, Value, Value)>("candidate_states", &pipe)
            .await?
        else {
            return Ok(None);
        };
        ensure_seeded(seeded)?;
        let excluded = replies::array(excluded)
            .map_err(MirrorError::Corrupt)?
            .iter()
            .filter_map(replies::mitra_id)
            .collect();
        Ok(Some((flat, excluded)))
    }

    /// The online, non-deactivated mitras with their heartbeat and open sessions (see
    /// `candidate_states`).
    pub(super) async fn candidate_records(
        &self,
    ) -> Result<Vec<(MitraId, Option<OffsetDateTime>, u32)>, MirrorError> {
        let sorted = match self.sort_patterns() {
            Some((heartbeat, capacity)) => self.sorted_candidates(heartbeat, capacity).await?,
            None => None,
        };
        let (flat, excluded) = match sorted {
            Some(found) => found,
            None => {
                // A key prefix with `*` cannot be a SORT pattern, and some ACLs refuse SORT …
                // GET: the Lua script reads the same records (deactivated ones left out).
                let mut invocation = scripts::CANDIDATES.prepare_invoke();
                invocation
                    .key(self.keys.online())
                    .key(self.keys.deactivated())
                    .key(self.keys.generation())
                    .arg(self.keys.prefix());
                let flat: Value = self.call("candidate_states", &invocation).await?;
                ensure_seeded(!matches!(flat, Value::Int(0)))?;
                (flat, HashSet::new())
            }
        };
        let flat = replies::array(flat).map_err(MirrorError::Corrupt)?;
        Ok(replies::candidates(&flat, &excluded))
    }

    /// Every member of the online set with its heartbeat (see `online_heartbeats`).
    pub(super) async fn online_heartbeat_records(
        &self,
    ) -> Result<Vec<(MitraId, Option<OffsetDateTime>)>, MirrorError> {
        let sorted = match self.sort_patterns() {
            Some((heartbeat, _)) => {
                let pipe = self.sort_get(&[&heartbeat]);
                self.sorted_read::<(bool, Value)>("online_heartbeats", &pipe)
                    .await?
            }
            None => None,
        };
        let flat = match sorted {
            Some((seeded, flat)) => {
                ensure_seeded(seeded)?;
                flat
            }
            None => {
                let mut invocation = scripts::ONLINE_HEARTBEATS.prepare_invoke();
                invocation
                    .key(self.keys.online())
                    .key(self.keys.generation())
                    .arg(self.keys.prefix());
                let flat: Value = self.call("online_heartbeats", &invocation).await?;
                ensure_seeded(!matches!(flat, Value::Int(0)))?;
                flat
            }
        };
        let flat = replies::array(flat).map_err(MirrorError::Corrupt)?;
        Ok(replies::heartbeats(&flat))
    }
}
