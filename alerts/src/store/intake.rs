//! Intake: a new alert row with its first audit entries, in one transaction.

use std::time::SystemTime;

use ecg_types::AlertState;

use super::{audit, to_json, visible, AlertRecord, Args, Result, Store, ALERT_COLUMNS};

impl Store {
    /// Inserts a new alert with its `fired` audit entry (and `notified`, when it is
    /// inserted as notified: no group wait); false (and nothing written) if an alert
    /// with its id exists — a replayed finding or another instance.
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert(&self, a: &AlertRecord, now: SystemTime) -> Result<bool> {
        let action = if a.silenced { "silenced" } else { "fired" };
        self.insert_noted(a, now, action, None).await
    }

    /// [`Store::insert`] with the first audit entry's action and note given (e.g.
    /// `stale`: recorded from a finding older than the staleness horizon).
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert_noted(
        &self,
        a: &AlertRecord,
        now: SystemTime,
        action: &str,
        note: Option<&str>,
    ) -> Result<bool> {
        let mut q = Args::default();
        let values = [
            q.bind(a.id.clone()),
            q.bind(a.patient.clone()),
            q.bind(a.stream.clone()),
            q.bind(a.condition.as_str().to_owned()),
            q.bind(a.priority.as_str().to_owned()),
            q.bind(a.kind.as_str().to_owned()),
            q.bind(a.state.as_str().to_owned()),
            q.bind(a.team.clone()),
            q.bind(a.unit.clone()),
            q.bind(visible(&a.visible_to)),
            q.bind(a.rule.clone()),
            q.bind(a.model.clone()),
            q.bind(to_json(&a.source)),
            q.bind(a.summary.clone()),
            q.bind_f64(a.score),
            q.bind_f64(a.value),
            q.bind(i64::from(a.decision_support)),
            q.bind(a.since_us),
            q.bind(a.fired_ms),
            q.bind(a.updated_ms),
            q.bind(a.notified_ms),
            q.bind(a.acked_ms),
            q.bind(a.acked_by.clone()),
            q.bind(a.verdict.map(|v| v.as_str().to_owned())),
            q.bind(a.level),
            q.bind(a.due_ms),
            q.bind(i64::from(a.silenced)),
            q.bind(to_json(&a.plan)),
            q.bind(a.strip.as_ref().map(to_json)),
        ]
        .join(", ");
        let sql = format!(
            "INSERT INTO alerts ({ALERT_COLUMNS}) VALUES ({values}) ON CONFLICT (id) DO NOTHING"
        );
        let mut tx = self.begin().await?;
        let inserted = sqlx::query_with(&sql, q.args)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if inserted {
            let first = if a.state == AlertState::Notified {
                AlertState::Firing
            } else {
                a.state
            };
            audit(
                &mut tx,
                &a.id,
                now,
                "engine",
                action,
                None,
                Some(first),
                None,
                note,
            )
            .await?;
            if a.state == AlertState::Notified {
                // Notified in the same transaction (no group wait): both entries.
                audit(
                    &mut tx,
                    &a.id,
                    now,
                    "engine",
                    "notified",
                    Some(AlertState::Firing),
                    Some(AlertState::Notified),
                    None,
                    None,
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(inserted)
    }
}
