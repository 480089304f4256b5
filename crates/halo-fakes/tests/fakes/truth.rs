//! The truth contract against `InMemoryTruth` (the same cases halo-postgres runs against
//! `PgTruth` on a real Postgres), its times on a manual clock.

use async_trait::async_trait;
use halo_domain::MitraId;
use halo_fakes::truth_contract::TruthBackdoor;
use halo_fakes::{InMemoryTruth, ManualClock};
use halo_ports::OnlineReason;
use std::sync::Arc;
use time::OffsetDateTime;

struct Tables(Arc<InMemoryTruth>);

#[async_trait]
impl TruthBackdoor for Tables {
    async fn set_open_sessions(&self, id: MitraId, open: u32) {
        self.0.set_open_sessions(id, open);
    }

    async fn set_session_activity(&self, id: MitraId, at: OffsetDateTime) {
        self.0.set_session_activity(id, at);
    }

    async fn set_heartbeat(&self, id: MitraId, at: Option<OffsetDateTime>) {
        self.0.set_heartbeat(id, at);
    }

    async fn online_log(&self, id: MitraId) -> Vec<(bool, OnlineReason)> {
        let rows = self.0.online_log().into_iter();
        rows.filter(|(of, _, _)| *of == id)
            .map(|(_, online, reason)| (online, reason))
            .collect()
    }

    async fn go_down(&self) {
        self.0.go_down();
    }
}

async fn in_memory() -> (Arc<InMemoryTruth>, Tables) {
    let truth = Arc::new(InMemoryTruth::new(Arc::new(ManualClock::default())));
    (truth.clone(), Tables(truth))
}

halo_fakes::truth_contract!(in_memory);
