//! The mirror contract against `InMemoryMirror`, its TTLs on a manual clock.

use async_trait::async_trait;
use halo_domain::MitraId;
use halo_fakes::contract::Backdoor;
use halo_fakes::{InMemoryMirror, ManualClock};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

struct Store {
    mirror: InMemoryMirror,
    clock: Arc<ManualClock>,
}

#[async_trait]
impl Backdoor for Store {
    async fn put_heartbeat(&self, id: MitraId, at: Option<OffsetDateTime>) {
        self.mirror.put_heartbeat(id, at);
    }

    async fn put_beacon_lock(&self, owner: &str) {
        self.mirror.put_beacon_lock(owner);
    }

    async fn flush(&self) {
        self.mirror.flush();
    }

    async fn let_time_pass(&self, by: Duration) {
        self.clock.advance(by);
    }
}

async fn in_memory() -> (InMemoryMirror, Store) {
    let clock = Arc::new(ManualClock::default());
    let mirror = InMemoryMirror::with_clock(clock.clone());
    let store = Store {
        mirror: mirror.clone(),
        clock,
    };
    (mirror, store)
}

halo_fakes::mirror_contract!(in_memory);
