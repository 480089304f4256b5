//! The session contract against `InMemoryAuth` (halo-postgres runs it against `PgAuth`), the
//! mitras' activity read from an `InMemoryTruth`.

use async_trait::async_trait;
use halo_domain::MitraId;
use halo_fakes::auth_contract::AuthBackdoor;
use halo_fakes::{InMemoryAuth, InMemoryTruth, ManualClock};
use halo_ports::AvailabilityTruth;
use std::sync::Arc;
use uuid::Uuid;

struct Accounts(Arc<InMemoryTruth>);

#[async_trait]
impl AuthBackdoor for Accounts {
    async fn mitra(&self) -> Uuid {
        self.0.add_mitra().uuid()
    }

    async fn deactivate(&self, mitra: Uuid) {
        self.0.set_active(MitraId::new(mitra), false).await.unwrap();
    }
}

async fn in_memory() -> (Arc<InMemoryAuth>, Accounts) {
    let clock = Arc::new(ManualClock::default());
    let truth = Arc::new(InMemoryTruth::new(clock.clone()));
    let auth = Arc::new(InMemoryAuth::new(clock, truth.clone()));
    (auth, Accounts(truth))
}

halo_fakes::auth_contract!(in_memory);
