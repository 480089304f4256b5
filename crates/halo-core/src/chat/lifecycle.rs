//! The session transitions the apps and operators ask for: blast, targeted request, accept,
//! reject, end, extend, reroute, and the reads around them.

use super::{Blast, Chat};
use crate::error::{AvailabilityError, ChatError};
use halo_domain::{MitraId, SessionStatus};
use halo_ports::{
    AcceptOutcome, BlastOutcome, ChatSession, Party, RerouteOutcome, TargetOutcome, WhenNobody,
};
use std::collections::BTreeSet;
use uuid::Uuid;

impl Chat {
    /// Offers the request to the first `blast_max_recipients` candidates (SPEC §12.5). Nobody
    /// available → the session is recorded as `failed` and the error carries it; or, with
    /// `queue_when_unavailable`, it waits in line (so does every request while others wait:
    /// the line is first come, first served).
    pub async fn blast(&self, customer: Uuid, minutes: u32) -> Result<Blast, ChatError> {
        let settings = self.availability.settings().get();
        let queueing = settings.queue_when_unavailable();
        let line_ahead = queueing && !self.store.queued(1).await?.is_empty();
        let mitras = if line_ahead {
            Vec::new()
        } else {
            let limit = settings.blast_max_recipients() as usize;
            self.availability
                .offer_candidates(limit, &BTreeSet::new())
                .await?
        };
        let nobody = if queueing {
            WhenNobody::Queue
        } else {
            WhenNobody::Fail
        };
        let session = match self
            .store
            .create_blast(customer, minutes, &mitras, self.open_limit(), nobody)
            .await?
        {
            BlastOutcome::Created(session) => {
                self.announce();
                session
            }
            BlastOutcome::OpenRequest(session) => {
                return Err(ChatError::OpenRequestExists { session })
            }
        };
        if session.status == SessionStatus::Queued {
            // Capacity may be free right now (the line ahead just left it): offer it at once,
            // and answer what the request is after that.
            self.offer_freed_capacity().await;
            let now = self.store.session(session.id).await?.unwrap_or(session);
            return Ok(Blast {
                session: now,
                notified: 0,
            });
        }
        if mitras.is_empty() {
            return Err(ChatError::NoBestieAvailable {
                session: Box::new(session),
            });
        }
        Ok(Blast {
            session,
            notified: mitras.len(),
        })
    }

    /// "Chat again" with one mitra: must be available; holds its slot until paid.
    pub async fn request_mitra(
        &self,
        customer: Uuid,
        mitra: MitraId,
        minutes: u32,
    ) -> Result<ChatSession, ChatError> {
        if !self.availability.is_mitra_available(mitra).await? {
            return Err(ChatError::BestieUnavailable);
        }
        match self
            .store
            .create_targeted(
                customer,
                mitra,
                minutes,
                self.max_customers(),
                self.open_limit(),
            )
            .await?
        {
            TargetOutcome::Created(session) => {
                self.announce();
                self.recount(Some(mitra)).await;
                Ok(session)
            }
            TargetOutcome::AtCapacity | TargetOutcome::Inactive => {
                Err(ChatError::BestieUnavailable)
            }
            TargetOutcome::OpenRequest(session) => Err(ChatError::OpenRequestExists { session }),
        }
    }

    /// First accept wins; never beyond `max_customers_per_mitra`; never by a deactivated mitra
    /// (checked in Postgres under the mitra's lock, so no mirror read is needed here). The
    /// winner's retry (its answer lost on a flaky network) answers the session it won.
    pub async fn accept(&self, id: Uuid, mitra: MitraId) -> Result<ChatSession, ChatError> {
        let outcome = self
            .store
            .accept(id, mitra, self.max_customers(), self.timeouts())
            .await?;
        match outcome {
            AcceptOutcome::Accepted(session) => {
                self.announce();
                self.recount(Some(mitra)).await;
                Ok(session)
            }
            AcceptOutcome::Taken => match self.store.session(id).await? {
                Some(won) if won.mitra_id == Some(mitra) && won.accepted_at.is_some() => Ok(won),
                _ => Err(ChatError::RequestTaken),
            },
            AcceptOutcome::AtCapacity => Err(ChatError::AtCapacity),
            AcceptOutcome::NotOffered => Err(ChatError::NotFound),
            AcceptOutcome::Inactive => Err(AvailabilityError::Deactivated.into()),
        }
    }

    pub async fn reject(&self, id: Uuid, mitra: MitraId) -> Result<(), ChatError> {
        if self.store.reject(id, mitra).await? {
            Ok(())
        } else {
            Err(ChatError::NotFound)
        }
    }

    /// Either party ends the session. A retry of an end that succeeded answers the ended
    /// session again.
    pub async fn end(&self, id: Uuid, by: Party) -> Result<ChatSession, ChatError> {
        let reason = match by {
            Party::Customer(_) => "ended_by_customer",
            Party::Mitra(_) => "ended_by_mitra",
        };
        let current = self.owned(id, by).await?;
        if current.end_reason.as_deref() == Some(reason) {
            return Ok(current);
        }
        let Some(ended) = self.store.end(id, by, reason).await? else {
            // Ended by this party's twin request meanwhile: the same answer.
            let now = self.owned(id, by).await?;
            if now.end_reason.as_deref() == Some(reason) {
                return Ok(now);
            }
            return Err(ChatError::InvalidState(now.status));
        };
        self.announce();
        self.recount(ended.mitra_id).await;
        if ended.mitra_id.is_some() {
            self.offer_freed_capacity().await;
        }
        Ok(ended)
    }

    /// Adds minutes to an active session, only while its mitra is reachable.
    pub async fn extend(
        &self,
        id: Uuid,
        customer: Uuid,
        minutes: u32,
    ) -> Result<ChatSession, ChatError> {
        let session = self.owned(id, Party::Customer(customer)).await?;
        if session.status != SessionStatus::Active {
            return Err(ChatError::InvalidState(session.status));
        }
        let mitra = session
            .mitra_id
            .ok_or(ChatError::InvalidState(session.status))?;
        if !self.availability.is_mitra_reachable(mitra).await? {
            return Err(ChatError::BestieUnreachable);
        }
        let extended = self
            .store
            .extend(id, customer, minutes)
            .await?
            .ok_or(ChatError::InvalidState(SessionStatus::Ended))?;
        self.announce();
        Ok(extended)
    }

    /// Operator: move an active session to `to` (which must be available unless forced).
    pub async fn reroute(
        &self,
        id: Uuid,
        to: MitraId,
        force: bool,
    ) -> Result<ChatSession, ChatError> {
        if !force && !self.availability.is_mitra_available(to).await? {
            return Err(ChatError::BestieUnavailable);
        }
        let session = self.store.session(id).await?.ok_or(ChatError::NotFound)?;
        // Under the target's lock: never a deactivated target, and (unless forced) never past
        // its capacity, whatever accepted meanwhile.
        let capacity = (!force).then(|| self.max_customers());
        match self.store.reroute(id, to, capacity).await? {
            RerouteOutcome::Moved { session, from } => {
                self.announce();
                self.recount(from).await;
                self.recount(Some(to)).await;
                Ok(session)
            }
            RerouteOutcome::NotActive => Err(ChatError::InvalidState(session.status)),
            RerouteOutcome::Refused => Err(ChatError::BestieUnavailable),
        }
    }

    /// The session, if `party` takes part in it (others get NotFound: no id probing).
    pub async fn owned(&self, id: Uuid, party: Party) -> Result<ChatSession, ChatError> {
        let session = self.store.session(id).await?.ok_or(ChatError::NotFound)?;
        let allowed = match party {
            Party::Customer(customer) => session.customer_id == customer,
            Party::Mitra(mitra) => session.mitra_id == Some(mitra),
        };
        if allowed {
            Ok(session)
        } else {
            Err(ChatError::NotFound)
        }
    }

    pub async fn open_requests(&self, mitra: MitraId) -> Result<Vec<ChatSession>, ChatError> {
        Ok(self.store.open_requests(mitra, self.timeouts()).await?)
    }

    pub async fn active_sessions(&self) -> Result<u64, ChatError> {
        Ok(self.store.count_active().await?)
    }
}
