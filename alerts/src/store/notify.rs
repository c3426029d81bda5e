//! Notify: one delivery row per notification and receiver — inserted to claim it
//! (its primary key is the idempotency key), updated with the outcome, taken over
//! when its instance died.

use std::time::SystemTime;

use sqlx::Row as _;

use super::{ms, DeliveryKey, DeliveryRecord, Result, Store};

impl Store {
    /// Claims one notification; true if this instance is the one to send it.
    ///
    /// # Errors
    /// Database errors.
    pub async fn claim(
        &self,
        key: &DeliveryKey<'_>,
        kind: &str,
        instance: &str,
        now: SystemTime,
    ) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO deliveries (alert_id, event, level, receiver, kind, instance, claimed_ms, attempts) VALUES ($1, $2, $3, $4, $5, $6, $7, 0) ON CONFLICT DO NOTHING",
        )
        .bind(key.alert.to_owned())
        .bind(key.event.to_owned())
        .bind(key.level)
        .bind(key.receiver.to_owned())
        .bind(kind.to_owned())
        .bind(instance.to_owned())
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Records the outcome of a claimed notification.
    ///
    /// # Errors
    /// Database errors.
    pub async fn delivered(
        &self,
        key: &DeliveryKey<'_>,
        ok: bool,
        attempts: u32,
        error: Option<&str>,
        now: SystemTime,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE deliveries SET done_ms = $1, ok = $2, attempts = $3, error = $4 WHERE alert_id = $5 AND event = $6 AND level = $7 AND receiver = $8",
        )
        .bind(ms(now))
        .bind(i64::from(ok))
        .bind(i64::from(attempts))
        .bind(error.map(str::to_owned))
        .bind(key.alert.to_owned())
        .bind(key.event.to_owned())
        .bind(key.level)
        .bind(key.receiver.to_owned())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The notifications of an alert, in claim order.
    ///
    /// # Errors
    /// Database errors.
    pub async fn deliveries(&self, id: &str) -> Result<Vec<DeliveryRecord>> {
        let rows = sqlx::query(
            "SELECT receiver, kind, event, level, claimed_ms, done_ms, ok, attempts, error FROM deliveries WHERE alert_id = $1 ORDER BY claimed_ms, level, receiver",
        )
        .bind(id.to_owned())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryRecord {
                    receiver: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    event: r.try_get(2)?,
                    level: r.try_get(3)?,
                    claimed_ms: r.try_get(4)?,
                    done_ms: r.try_get(5)?,
                    ok: r.try_get::<Option<i64>, _>(6)?.map(|v| v != 0),
                    attempts: r.try_get(7)?,
                    error: r.try_get(8)?,
                })
            })
            .collect()
    }

    /// Claimed notifications unfinished since before `claimed_before_ms`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn stale_deliveries(
        &self,
        claimed_before_ms: i64,
        limit: i64,
    ) -> Result<Vec<(String, DeliveryRecord)>> {
        let rows = sqlx::query(
            "SELECT alert_id, receiver, kind, event, level, claimed_ms, attempts FROM deliveries WHERE done_ms IS NULL AND claimed_ms < $1 ORDER BY claimed_ms LIMIT $2",
        )
        .bind(claimed_before_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    DeliveryRecord {
                        receiver: r.try_get(1)?,
                        kind: r.try_get(2)?,
                        event: r.try_get(3)?,
                        level: r.try_get(4)?,
                        claimed_ms: r.try_get(5)?,
                        done_ms: None,
                        ok: None,
                        attempts: r.try_get(6)?,
                        error: None,
                    },
                ))
            })
            .collect()
    }

    /// Takes over a stale claim; true if this instance got it.
    ///
    /// # Errors
    /// Database errors.
    pub async fn reclaim(
        &self,
        alert: &str,
        d: &DeliveryRecord,
        instance: &str,
        now: SystemTime,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE deliveries SET claimed_ms = $1, instance = $2 WHERE alert_id = $3 AND event = $4 AND level = $5 AND receiver = $6 AND claimed_ms = $7 AND done_ms IS NULL",
        )
        .bind(ms(now))
        .bind(instance.to_owned())
        .bind(alert.to_owned())
        .bind(d.event.clone())
        .bind(d.level)
        .bind(d.receiver.clone())
        .bind(d.claimed_ms)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }
}
