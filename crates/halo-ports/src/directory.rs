//! The operators' mitra directory: create, list and read the Postgres rows (live state comes
//! from the availability use cases).

use crate::TruthError;
use async_trait::async_trait;
use halo_domain::MitraId;
use time::OffsetDateTime;

/// One row of the operators' mitra list (Postgres columns; live state comes from the mirror).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MitraRow {
    pub id: MitraId,
    pub phone: String,
    pub display_name: String,
    pub active: bool,
    pub online: bool,
    pub created_at: OffsetDateTime,
}

/// # Errors
/// Every method returns `TruthError::Unavailable` when Postgres does not answer.
#[async_trait]
pub trait MitraDirectory: Send + Sync + 'static {
    /// Creates a mitra (offline, active). `Conflict` when the phone is taken.
    async fn create_mitra(&self, phone: &str, display_name: &str) -> Result<MitraRow, TruthError>;

    /// A page of mitras, oldest first, and the total count.
    async fn list_mitras(
        &self,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<MitraRow>, u64), TruthError>;

    /// One mitra's row. `None` when unknown.
    async fn mitra_row(&self, id: MitraId) -> Result<Option<MitraRow>, TruthError>;
}
