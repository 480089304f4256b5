//! The operators' use cases over the mitra directory: a page of mitras, one mitra, create, and
//! (de)activation. Rows come from Postgres, live state from the availability reads.

use crate::error::AvailabilityError;
use crate::Availability;
use halo_domain::{MitraId, MitraState, Phone};
use halo_ports::{AuthStore, EventLog, MitraDirectory, MitraRow, OnlineReason};
use std::sync::Arc;

/// A mitra's directory row with its live state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MitraView {
    pub row: MitraRow,
    pub live: MitraState,
}

/// One page of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MitraPage {
    pub mitras: Vec<MitraView>,
    /// Every mitra, not only this page's.
    pub total: u64,
}

pub struct MitraAdmin {
    directory: Arc<dyn MitraDirectory>,
    auth: Arc<dyn AuthStore>,
    availability: Arc<Availability>,
    /// Tells a deactivated mitra's open streams to end (`None`: they end at reconnect).
    events: Option<Arc<dyn EventLog>>,
}

impl MitraAdmin {
    pub fn new(
        directory: Arc<dyn MitraDirectory>,
        auth: Arc<dyn AuthStore>,
        availability: Arc<Availability>,
    ) -> Self {
        Self {
            directory,
            auth,
            availability,
            events: None,
        }
    }

    /// Deactivation also ends the mitra's open event streams, through the log (SPEC §3.6).
    pub fn with_event_log(mut self, events: Arc<dyn EventLog>) -> Self {
        self.events = Some(events);
        self
    }

    /// `limit` mitras from `offset`, oldest first, with the live state of the whole page in one
    /// mirror round trip (or one Postgres statement). A mitra deleted between the two reads is
    /// left out.
    pub async fn page(&self, offset: u32, limit: u32) -> Result<MitraPage, AvailabilityError> {
        let (rows, total) = self.directory.list_mitras(offset, limit).await?;
        let ids: Vec<MitraId> = rows.iter().map(|row| row.id).collect();
        let live = self.availability.mitra_statuses(&ids).await?;
        let mitras = rows
            .into_iter()
            .zip(live)
            .filter_map(|(row, live)| live.map(|live| MitraView { row, live }))
            .collect();
        Ok(MitraPage { mitras, total })
    }

    /// One mitra. `MitraNotFound` when unknown.
    pub async fn view(&self, id: MitraId) -> Result<MitraView, AvailabilityError> {
        let row = self
            .directory
            .mitra_row(id)
            .await?
            .ok_or(AvailabilityError::MitraNotFound)?;
        self.with_live_state(row).await
    }

    /// Creates a mitra (offline, active). `Conflict` when the phone is taken.
    pub async fn create(
        &self,
        phone: &Phone,
        display_name: &str,
    ) -> Result<MitraView, AvailabilityError> {
        let row = self
            .directory
            .create_mitra(phone.as_str(), display_name)
            .await?;
        self.with_live_state(row).await
    }

    /// Activates or deactivates a mitra; deactivation also revokes every refresh session (so
    /// its app cannot get a new access token) and sets it offline.
    pub async fn set_active(
        &self,
        id: MitraId,
        active: bool,
    ) -> Result<MitraView, AvailabilityError> {
        // SPEC §3.6's order: the flag, the sessions, then offline. A failure after the flag is
        // answered as an error, and a retry repeats every step (each is idempotent).
        self.availability.set_active_flag(id, active).await?;
        if !active {
            let revoked = self.auth.revoke_user_sessions(id.uuid()).await?;
            tracing::info!(mitra = %id, revoked, "revoked auth sessions of deactivated mitra");
            self.availability
                .set_offline(id, OnlineReason::Deactivated)
                .await?;
            self.end_streams(id).await;
        }
        self.view(id).await
    }

    /// `away{deactivated}` to the mitra: every instance ends its streams after it. Best
    /// effort: a stream left open is refused at its reconnect.
    async fn end_streams(&self, id: MitraId) {
        let Some(events) = &self.events else { return };
        if let Err(error) = events.append_away(id, OnlineReason::Deactivated).await {
            tracing::warn!(mitra = %id, error = %error, "deactivated mitra's streams not told to end");
        }
    }

    async fn with_live_state(&self, row: MitraRow) -> Result<MitraView, AvailabilityError> {
        let live = self.availability.mitra_status(row.id).await?;
        Ok(MitraView { row, live })
    }
}
