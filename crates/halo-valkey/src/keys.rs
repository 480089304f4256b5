//! Key names. They are part of the public keyspace (SPEC §2.2; runbooks use them);
//! `VALKEY_KEY_PREFIX` is prepended to every key and channel.

use halo_domain::MitraId;

pub const ONLINE: &str = "mitras:online";
pub const DEACTIVATED: &str = "mitras:deactivated";
/// The online mitras by idle rank, longest idle first (SPEC §12.5).
pub const IDLE_ORDER: &str = "mitras:idle_order";
pub const CAPACITY: &str = "mitra:capacity:";
pub const HEARTBEAT: &str = "mitra:heartbeat:";
pub const SNAPSHOT: &str = "availability:snapshot";
pub const CONFIG_CHANNEL: &str = "config:invalidate";
/// "The app-event log grew": wakes every instance's event pump (see `events`).
pub const EVENTS_CHANNEL: &str = "events:appended";

#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn online(&self) -> String {
        self.key(ONLINE)
    }

    pub fn deactivated(&self) -> String {
        self.key(DEACTIVATED)
    }

    pub fn idle_order(&self) -> String {
        self.key(IDLE_ORDER)
    }

    /// Mitra id -> the idle rank read with the count `capacity_order` holds (the rank a mitra
    /// takes in the idle order when it comes online after a newer recount landed).
    pub fn idle_rank(&self) -> String {
        self.key("mirror:idle_rank")
    }

    pub fn capacity(&self, id: MitraId) -> String {
        format!("{}{CAPACITY}{id}", self.prefix)
    }

    pub fn heartbeat(&self, id: MitraId) -> String {
        format!("{}{HEARTBEAT}{id}", self.prefix)
    }

    pub fn snapshot(&self) -> String {
        self.key(SNAPSHOT)
    }

    /// Held by the one caller recomputing the beacon.
    pub fn snapshot_lock(&self) -> String {
        self.key("availability:snapshot:lock")
    }

    /// Bumped by every mirror write, so a seed can tell whether it raced one.
    pub fn write_token(&self) -> String {
        self.key("mirror:writes")
    }

    /// Mitra id -> the write token of the last mirror write that touched it (see the seed).
    pub fn journal(&self) -> String {
        self.key("mirror:journal")
    }

    /// Mitra id -> the order number of the capacity count the mirror holds.
    pub fn capacity_order(&self) -> String {
        self.key("mirror:capacity_order")
    }

    /// When the truth of the last applied seed was read (database clock): an older seed is
    /// refused.
    pub fn seeded_at(&self) -> String {
        self.key("mirror:seeded_at")
    }

    /// Written last by every seed: its absence means the mirror was flushed.
    pub fn generation(&self) -> String {
        self.key("mirror:generation")
    }

    pub fn staging(&self, nonce: &str, set: &str) -> String {
        self.key(&format!("mirror:staging:{nonce}:{set}"))
    }

    /// One abuse-limit window (`bucket` = action and who it counts).
    pub fn rate_window(&self, bucket: &str) -> String {
        self.key(&format!("ratelimit:{bucket}"))
    }

    pub fn lease(&self, name: &str) -> String {
        self.key(&format!("lease:{name}"))
    }

    pub fn config_channel(&self) -> String {
        self.key(CONFIG_CHANNEL)
    }

    pub fn events_channel(&self) -> String {
        self.key(EVENTS_CHANNEL)
    }

    /// The `SORT … GET` patterns of the heartbeat and capacity keys (`<prefix>mitra:…:*`), or
    /// `None` when the prefix holds a `*`: the server substitutes the first `*` of a pattern and
    /// has no escape for it.
    pub fn sort_patterns(&self) -> Option<(String, String)> {
        if self.prefix.contains('*') {
            return None;
        }
        Some((
            format!("{}{HEARTBEAT}*", self.prefix),
            format!("{}{CAPACITY}*", self.prefix),
        ))
    }

    /// A SCAN pattern for keys starting with `name`, the prefix escaped.
    pub fn scan_pattern(&self, name: &str) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() + name.len() + 1);
        for c in self.prefix.chars().chain(name.chars()) {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        pattern
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn spec_key_names_with_and_without_prefix() {
        let id = MitraId::new(Uuid::from_u128(7));
        let plain = Keys::new("");
        assert_eq!(plain.online(), "mitras:online");
        assert_eq!(plain.deactivated(), "mitras:deactivated");
        assert_eq!(plain.idle_order(), "mitras:idle_order");
        assert_eq!(plain.idle_rank(), "mirror:idle_rank");
        assert_eq!(plain.capacity(id), format!("mitra:capacity:{id}"));
        assert_eq!(plain.heartbeat(id), format!("mitra:heartbeat:{id}"));
        assert_eq!(plain.snapshot(), "availability:snapshot");
        assert_eq!(plain.config_channel(), "config:invalidate");
        let prefixed = Keys::new("t1:");
        assert_eq!(prefixed.online(), "t1:mitras:online");
        assert_eq!(prefixed.config_channel(), "t1:config:invalidate");
        assert_eq!(plain.events_channel(), "events:appended");
    }

    #[test]
    fn sort_patterns_only_without_a_star_in_the_prefix() {
        assert_eq!(
            Keys::new("t1:").sort_patterns(),
            Some((
                "t1:mitra:heartbeat:*".to_owned(),
                "t1:mitra:capacity:*".to_owned()
            ))
        );
        assert_eq!(Keys::new("a*b:").sort_patterns(), None);
    }

    #[test]
    fn scan_patterns_escape_the_prefix() {
        assert_eq!(
            Keys::new("a*[").scan_pattern("mitra:capacity:"),
            "a\\*\\[mitra:capacity:*"
        );
    }
}
