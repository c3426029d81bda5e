//! Escalation: the open alerts whose next step (notification, escalation, repeat) is due.

use super::{record, AlertRecord, Args, Result, Store, ALERT_COLUMNS};

impl Store {
    /// Open alerts whose next step is due at `now_ms`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn due(&self, now_ms: i64, limit: i64) -> Result<Vec<AlertRecord>> {
        let mut q = Args::default();
        let now = q.bind(now_ms);
        let limit = q.bind(limit);
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE due_ms IS NOT NULL AND due_ms <= {now} ORDER BY due_ms LIMIT {limit}"
        );
        let rows = sqlx::query_with(&sql, q.args).fetch_all(&self.pool).await?;
        rows.iter().map(record).collect()
    }
}
