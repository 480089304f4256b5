//! The Lua scripts, loaded once per process (EVALSHA, with EVAL on a server that lost them).
//! Every script that writes mirror data starts with `journal.lua` (the write token and the
//! journal a seed reads, and the timestamp form string comparison relies on).

use redis::Script;
use std::sync::LazyLock;

macro_rules! writing_script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/journal.lua"),
                include_str!($file)
            ))
        })
    };
}

macro_rules! reading_script {
    ($file:literal) => {
        LazyLock::new(|| Script::new(include_str!($file)))
    };
}

pub static HEARTBEAT: LazyLock<Script> = writing_script!("lua/heartbeat.lua");
pub static MARK_ONLINE: LazyLock<Script> = writing_script!("lua/mark_online.lua");
pub static MARK_OFFLINE: LazyLock<Script> = writing_script!("lua/mark_offline.lua");
pub static SET_DEACTIVATED: LazyLock<Script> = writing_script!("lua/set_deactivated.lua");
pub static SET_CAPACITY: LazyLock<Script> = writing_script!("lua/set_capacity.lua");
pub static FENCE_STALE: LazyLock<Script> = writing_script!("lua/fence_stale.lua");
pub static RESTORE_ONLINE: LazyLock<Script> = writing_script!("lua/restore_online.lua");
pub static SWAP_SEED: LazyLock<Script> = writing_script!("lua/swap_seed.lua");
pub static CANDIDATES: LazyLock<Script> = reading_script!("lua/candidates.lua");
pub static ONLINE_HEARTBEATS: LazyLock<Script> = reading_script!("lua/online_heartbeats.lua");
pub static OFFER_WALK: LazyLock<Script> = reading_script!("lua/offer_walk.lua");
pub static CLAIM_BEACON: LazyLock<Script> = reading_script!("lua/claim_beacon.lua");
pub static STORE_BEACON: LazyLock<Script> = reading_script!("lua/store_beacon.lua");
