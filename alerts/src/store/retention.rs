//! Retention: resolved alerts, with their audit trail and deliveries, and silences
//! that ended, deleted once older than the retention (`alerts.retention`).

use sqlx::Row as _;

use super::{Args, Result, Store};

/// What one pruning deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Resolved alerts.
    pub alerts: u64,
    /// Their audit entries.
    pub audit: u64,
    /// Their deliveries.
    pub deliveries: u64,
    /// Silences that had ended.
    pub silences: u64,
}

impl Pruned {
    /// What was deleted, by kind (the metric's label).
    pub fn by_kind(&self) -> [(&'static str, u64); 4] {
        [
            ("alerts", self.alerts),
            ("audit", self.audit),
            ("deliveries", self.deliveries),
            ("silences", self.silences),
        ]
    }

    /// True when nothing was deleted.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl Store {
    /// Deletes the resolved alerts last changed before `before_ms`, with their audit
    /// entries and deliveries, `batch` alerts per transaction (so that no transaction
    /// holds the store for long), and the silences that ended before `before_ms`.
    /// Open alerts are never deleted, however old. Safe to run on several instances
    /// at once: each deletes what is still there.
    ///
    /// # Errors
    /// Database errors (what earlier batches deleted stays deleted).
    pub async fn prune(&self, before_ms: i64, batch: i64) -> Result<Pruned> {
        let mut p = Pruned::default();
        let batch = batch.max(1);
        loop {
            let mut tx = self.begin().await?;
            let ids: Vec<String> = sqlx::query(
                "SELECT id FROM alerts WHERE state = $1 AND updated_ms < $2 ORDER BY updated_ms LIMIT $3",
            )
            .bind("resolved".to_owned())
            .bind(before_ms)
            .bind(batch)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<std::result::Result<_, _>>()?;
            if ids.is_empty() {
                tx.commit().await?;
                break;
            }
            let delete = |sql: &str| {
                let mut q = Args::default();
                let list = ids
                    .iter()
                    .map(|id| q.bind(id.clone()))
                    .collect::<Vec<_>>()
                    .join(", ");
                (sql.replace("{ids}", &list), q)
            };
            let (sql, q) = delete("DELETE FROM deliveries WHERE alert_id IN ({ids})");
            p.deliveries += sqlx::query_with(&sql, q.args)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let (sql, q) = delete("DELETE FROM audit WHERE alert_id IN ({ids})");
            p.audit += sqlx::query_with(&sql, q.args)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let (sql, q) = delete("DELETE FROM alerts WHERE state = 'resolved' AND id IN ({ids})");
            p.alerts += sqlx::query_with(&sql, q.args)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            if i64::try_from(ids.len()).unwrap_or(i64::MAX) < batch {
                break;
            }
        }
        p.silences = sqlx::query("DELETE FROM silences WHERE ends_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(p)
    }
}
