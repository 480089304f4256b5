//! The session contract (`halo_fakes::auth_contract`, which `InMemoryAuth` passes too) against
//! `PgAuth`, one database per case.

use crate::fixture::{fixture, Fixture};
use async_trait::async_trait;
use halo_fakes::auth_contract::AuthBackdoor;
use halo_postgres::PgAuth;
use std::sync::Arc;
use uuid::Uuid;

pub struct Accounts(Fixture);

#[async_trait]
impl AuthBackdoor for Accounts {
    async fn mitra(&self) -> Uuid {
        self.0.mitra().await.uuid()
    }

    async fn deactivate(&self, mitra: Uuid) {
        let sql = "UPDATE mitras SET is_active = false WHERE id = $1";
        assert_eq!(self.0.pg.execute(sql, &[&mitra]).await.unwrap(), 1);
    }
}

async fn postgres() -> (Arc<PgAuth>, Accounts) {
    let f = fixture().await;
    (Arc::new(f.auth.clone()), Accounts(f))
}

halo_fakes::auth_contract!(postgres);
