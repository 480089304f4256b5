//! Money: paying a targeted request (outbox row → charge → start, or refund), refunds, and the
//! outbox sweep that settles what a crash left unsettled (SPEC §9.3). `DevPayments` is the
//! development provider.

use super::{Chat, TIMER_BATCH};
use crate::error::ChatError;
use halo_domain::SessionStatus;
use halo_ports::{ChargeKey, ChatSession, Party, PaymentError, PaymentProvider};
use uuid::Uuid;

/// A payment unsettled for this long is the sweep's (a pay in flight settles it sooner).
const UNSETTLED_AFTER: time::Duration = time::Duration::seconds(30);

impl Chat {
    /// Pays a targeted request. A retry of a pay that succeeded (its answer lost) answers the
    /// active session again, and charges nothing.
    pub async fn pay(&self, id: Uuid, customer: Uuid) -> Result<ChatSession, ChatError> {
        let session = self.owned(id, Party::Customer(customer)).await?;
        if session.status == SessionStatus::Active && session.mitra_id.is_some() {
            return Ok(session);
        }
        if session.status != SessionStatus::PendingPayment {
            return Err(ChatError::InvalidState(session.status));
        }
        // The outbox row first: with Postgres down nothing is charged; after a charge every
        // way out settles it (captured with the session, or refunded), and a row left
        // unsettled (a crash) is settled by the timer sweep. The attempt makes the provider's
        // idempotency key: a doubled or retried request charges once.
        let key = ChargeKey {
            session: id,
            attempt: self.store.start_payment(id, customer).await?,
        };
        let reference = self
            .payments
            .charge(key, customer, session.minutes)
            .await
            .map_err(ChatError::Payment)?;
        self.payment_event("charged");
        match self
            .store
            .pay(id, customer, self.timeouts(), &reference)
            .await
        {
            Ok(Some(paid)) => {
                self.announce();
                tracing::info!(session = %id, reference, "payment captured");
                self.payment_event("captured");
                self.recount(paid.mitra_id).await;
                Ok(paid)
            }
            Ok(None) => {
                // Cancelled by the payment timer (or paid by a twin request) meanwhile.
                let now = self.owned(id, Party::Customer(customer)).await?;
                if now.status == SessionStatus::Active {
                    return Ok(now);
                }
                self.refund(key).await;
                Err(ChatError::InvalidState(now.status))
            }
            Err(error) => {
                // Charged, and the session did not start: give the money back now; if that
                // fails too, the outbox row stays for the sweep.
                tracing::error!(session = %id, error = %error, "the session did not start after its charge; refunding");
                self.refund(key).await;
                Err(error.into())
            }
        }
    }

    /// Gives back the charge of `key` and settles its outbox row; a failure of either leaves
    /// the row unsettled for the sweep (`settle_payments`), never money without a record.
    async fn refund(&self, key: ChargeKey) {
        if let Err(error) = self.payments.refund(key).await {
            tracing::error!(session = %key.session, error = %error, "refund failed; the payment sweep retries");
            return;
        }
        self.payment_event("refunded");
        tracing::info!(session = %key.session, attempt = key.attempt, "payment refunded: the session did not start");
        if let Err(error) = self.store.record_refund(key.session, key.attempt).await {
            tracing::error!(session = %key.session, error = %error, "refund not recorded; the payment sweep settles it");
        }
    }

    fn payment_event(&self, event: &'static str) {
        self.availability.metrics().payment_event(event);
    }

    /// The outbox sweep: payments started long enough ago, never settled, whose session no
    /// longer awaits payment (the process died between the charge and the start, or a refund
    /// failed) are refunded. Returns how many it settled.
    pub async fn settle_payments(&self) -> Result<usize, ChatError> {
        let unsettled = self
            .store
            .unsettled_payments(UNSETTLED_AFTER, TIMER_BATCH)
            .await?;
        for payment in &unsettled {
            self.refund(ChargeKey {
                session: payment.session,
                attempt: payment.attempt,
            })
            .await;
        }
        Ok(unsettled.len())
    }
}

/// Development payments: always succeed; idempotent per key like a real provider (a second
/// charge with the same key returns the first one's reference, a refund gives back the charge
/// of its key once).
#[derive(Debug, Default)]
pub struct DevPayments {
    charges: std::sync::Mutex<std::collections::HashMap<String, (String, bool)>>,
}

#[async_trait::async_trait]
impl PaymentProvider for DevPayments {
    async fn charge(
        &self,
        key: ChargeKey,
        _customer: Uuid,
        minutes: u32,
    ) -> Result<String, PaymentError> {
        let mut charges = self
            .charges
            .lock()
            .map_err(|_| PaymentError("dev provider poisoned".into()))?;
        let (reference, _) = charges
            .entry(key.to_string())
            .or_insert_with(|| (format!("dev-{key}-{minutes}m"), false));
        Ok(reference.clone())
    }

    async fn refund(&self, key: ChargeKey) -> Result<(), PaymentError> {
        let mut charges = self
            .charges
            .lock()
            .map_err(|_| PaymentError("dev provider poisoned".into()))?;
        if let Some((reference, refunded)) = charges.get_mut(&key.to_string()) {
            if !*refunded {
                *refunded = true;
                tracing::info!(%key, reference = reference.as_str(), "dev refund");
            }
        }
        Ok(())
    }
}
