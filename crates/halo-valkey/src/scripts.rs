//! The Lua scripts, loaded once per process (EVALSHA, with EVAL on a server that lost them).

use redis::Script;
use std::sync::LazyLock;

pub static HEARTBEAT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/heartbeat.lua")));
pub static MARK_ONLINE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/mark_online.lua")));
pub static CANDIDATES: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/candidates.lua")));
pub static ONLINE_HEARTBEATS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/online_heartbeats.lua")));
pub static CLAIM_BEACON: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/claim_beacon.lua")));
pub static SWAP_SEED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/swap_seed.lua")));
