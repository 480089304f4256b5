//! `AuthStore` over a deadpool pool: every call is one named, prepared statement, so each
//! check-and-change (consuming a code, rotating a refresh token) is atomic on its own.

use crate::auth_queries as q;
use crate::db::{column, first_row, Db};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use halo_domain::{Phone, Role};
use halo_metrics::Metrics;
use halo_ports::{AuthStore, OtpCheck, Rotation, SessionRef, TruthError, UserRecord};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

#[derive(Clone)]
pub struct PgAuth {
    db: Db,
}

impl PgAuth {
    pub fn new(pool: Pool, metrics: Metrics) -> Self {
        Self {
            db: Db::new(pool, metrics),
        }
    }
}

fn user_row(row: &Row, active: bool) -> Result<UserRecord, TruthError> {
    Ok(UserRecord {
        id: column(row, "id")?,
        display_name: column(row, "display_name")?,
        active,
    })
}

#[async_trait]
impl AuthStore for PgAuth {
    async fn save_otp(
        &self,
        phone: &Phone,
        role: Role,
        code_hash: &str,
        expires_at: OffsetDateTime,
    ) -> Result<(), TruthError> {
        self.db
            .query(
                &q::SAVE_OTP,
                &[&phone.as_str(), &role.as_str(), &code_hash, &expires_at],
            )
            .await
            .map(|_| ())
    }

    async fn check_otp(
        &self,
        phone: &Phone,
        role: Role,
        code_hash: &str,
        max_attempts: u32,
        now: OffsetDateTime,
    ) -> Result<OtpCheck, TruthError> {
        let max_attempts = i32::try_from(max_attempts).unwrap_or(i32::MAX);
        let rows = self
            .db
            .query(
                &q::CHECK_OTP,
                &[
                    &phone.as_str(),
                    &role.as_str(),
                    &code_hash,
                    &max_attempts,
                    &now,
                ],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(OtpCheck::Missing);
        };
        match column::<&str>(row, "verdict")? {
            "valid" => Ok(OtpCheck::Valid),
            "wrong" => Ok(OtpCheck::Wrong),
            "expired" => Ok(OtpCheck::Expired),
            "too_many" => Ok(OtpCheck::TooManyAttempts),
            other => Err(TruthError::Query(
                format!("check_otp returned verdict {other:?}").into(),
            )),
        }
    }

    async fn customer_by_phone_or_create(&self, phone: &Phone) -> Result<UserRecord, TruthError> {
        let rows = self
            .db
            .query(&q::CUSTOMER_BY_PHONE_OR_CREATE, &[&phone.as_str()])
            .await?;
        user_row(&first_row(rows, &q::CUSTOMER_BY_PHONE_OR_CREATE)?, true)
    }

    async fn mitra_by_phone(&self, phone: &Phone) -> Result<Option<UserRecord>, TruthError> {
        let rows = self
            .db
            .query(&q::MITRA_BY_PHONE, &[&phone.as_str()])
            .await?;
        rows.first()
            .map(|row| user_row(row, column(row, "is_active")?))
            .transpose()
    }

    async fn operator_by_email(&self, email: &str) -> Result<Option<(Uuid, String)>, TruthError> {
        let rows = self.db.query(&q::OPERATOR_BY_EMAIL, &[&email]).await?;
        rows.first()
            .map(|row| Ok((column(row, "id")?, column(row, "password_hash")?)))
            .transpose()
    }

    async fn create_session(
        &self,
        user_id: Uuid,
        role: Role,
        refresh_hash: &str,
        expires_at: OffsetDateTime,
    ) -> Result<Uuid, TruthError> {
        let rows = self
            .db
            .query(
                &q::CREATE_SESSION,
                &[&user_id, &role.as_str(), &refresh_hash, &expires_at],
            )
            .await?;
        column(&first_row(rows, &q::CREATE_SESSION)?, "id")
    }

    async fn rotate_session(
        &self,
        old_hash: &str,
        role: Role,
        new_hash: &str,
        expires_at: OffsetDateTime,
    ) -> Result<Rotation, TruthError> {
        let rows = self
            .db
            .query(
                &q::ROTATE_SESSION,
                &[&old_hash, &role.as_str(), &new_hash, &expires_at],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(Rotation::Refused);
        };
        let session = SessionRef {
            sid: column(row, "id")?,
            user_id: column(row, "user_id")?,
            role: column::<&str>(row, "role")?
                .parse::<Role>()
                .map_err(|e| TruthError::Query(Box::new(e)))?,
        };
        Ok(if column(row, "reused")? {
            Rotation::Reused(session)
        } else {
            Rotation::Rotated(session)
        })
    }

    async fn database_now(&self) -> Result<OffsetDateTime, TruthError> {
        let row = self
            .db
            .query_one(&crate::queries::DATABASE_NOW, &[])
            .await?;
        column(&row, "now")
    }

    async fn revoke_session(&self, sid: Uuid, user_id: Uuid) -> Result<bool, TruthError> {
        let rows = self.db.query(&q::REVOKE_SESSION, &[&sid, &user_id]).await?;
        Ok(!rows.is_empty())
    }

    async fn revoke_user_sessions(&self, user_id: Uuid) -> Result<u64, TruthError> {
        self.db.execute(&q::REVOKE_USER_SESSIONS, &[&user_id]).await
    }
}
