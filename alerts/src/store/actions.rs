//! Actions: what the API reads and writes besides transitions — alert lists, the
//! audit trail, silences and verdict counts.

use ecg_types::{AlertState, Priority};
use sqlx::Row as _;

use super::{
    parse_enum, parse_json, record, to_json, AlertRecord, Args, AuditEntry, PrecisionRow, Result,
    Silence, Store, Verdict, ALERT_COLUMNS,
};

impl Store {
    /// Alerts in the given states (all if empty), of `priority` (any if `None`), that
    /// `team` sees (all if `None`), highest priority first, then oldest; at most `limit`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn list(
        &self,
        states: &[AlertState],
        priority: Option<Priority>,
        team: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AlertRecord>> {
        let mut q = Args::default();
        let mut wheres = Vec::new();
        if let Some(p) = priority {
            wheres.push(format!("priority = {}", q.bind(p.as_str().to_owned())));
        }
        if !states.is_empty() {
            let ps: Vec<String> = states
                .iter()
                .map(|s| q.bind(s.as_str().to_owned()))
                .collect();
            wheres.push(format!("state IN ({})", ps.join(", ")));
        }
        if let Some(t) = team {
            // An exact, case-sensitive substring test: `LIKE` would read `%` and `_`
            // in a team name as wildcards (and SQLite's is case-insensitive).
            let find = if self.postgres { "strpos" } else { "instr" };
            wheres.push(format!(
                "{find}(visible_to, {}) > 0",
                q.bind(format!(",{t},"))
            ));
        }
        let w = if wheres.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", wheres.join(" AND "))
        };
        let limit = q.bind(limit);
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts {w} ORDER BY CASE priority WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, fired_ms, id LIMIT {limit}"
        );
        let rows = sqlx::query_with(&sql, q.args).fetch_all(&self.pool).await?;
        rows.iter().map(record).collect()
    }

    /// The audit trail of an alert, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit(&self, id: &str) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT at_us, actor, action, from_state, to_state, verdict, note FROM audit WHERE alert_id = $1 ORDER BY at_us, id",
        )
        .bind(id.to_owned())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at_us: r.try_get(0)?,
                    actor: r.try_get(1)?,
                    action: r.try_get(2)?,
                    from: r.try_get(3)?,
                    to: r.try_get(4)?,
                    verdict: r
                        .try_get::<Option<String>, _>(5)?
                        .map(|v| parse_enum("audit.verdict", &v))
                        .transpose()?,
                    note: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// Adds a silence.
    ///
    /// # Errors
    /// Database errors.
    pub async fn add_silence(&self, s: &Silence) -> Result<()> {
        sqlx::query(
            "INSERT INTO silences (id, team, matchers, starts_ms, ends_ms, created_by, comment) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(s.id.clone())
        .bind(s.team.clone())
        .bind(to_json(&s.matchers))
        .bind(s.starts_ms)
        .bind(s.ends_ms)
        .bind(s.created_by.clone())
        .bind(s.comment.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Silences in force at `now_ms`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn silences(&self, now_ms: i64) -> Result<Vec<Silence>> {
        let rows = sqlx::query(
            "SELECT id, team, matchers, starts_ms, ends_ms, created_by, comment FROM silences WHERE starts_ms <= $1 AND ends_ms > $1 ORDER BY starts_ms",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Silence {
                    id: r.try_get(0)?,
                    team: r.try_get(1)?,
                    matchers: parse_json("silences.matchers", &r.try_get::<String, _>(2)?)?,
                    starts_ms: r.try_get(3)?,
                    ends_ms: r.try_get(4)?,
                    created_by: r.try_get(5)?,
                    comment: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// Verdict counts per rule and model.
    ///
    /// # Errors
    /// Database errors.
    pub async fn precision(&self) -> Result<Vec<PrecisionRow>> {
        let rows = sqlx::query(
            "SELECT rule, model, verdict, COUNT(*) FROM alerts WHERE verdict IS NOT NULL GROUP BY rule, model, verdict ORDER BY rule, model",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<PrecisionRow> = Vec::new();
        for r in &rows {
            let rule: String = r.try_get(0)?;
            let model: Option<String> = r.try_get(1)?;
            let verdict: Verdict = parse_enum("alerts.verdict", &r.try_get::<String, _>(2)?)?;
            let n: i64 = r.try_get(3)?;
            let row = match out.iter_mut().find(|p| p.rule == rule && p.model == model) {
                Some(p) => p,
                None => {
                    out.push(PrecisionRow {
                        rule,
                        model,
                        confirmed: 0,
                        false_alarm: 0,
                        not_sure: 0,
                        precision: None,
                    });
                    out.last_mut().expect("just pushed")
                }
            };
            match verdict {
                Verdict::Confirmed => row.confirmed += n,
                Verdict::FalseAlarm => row.false_alarm += n,
                Verdict::NotSure => row.not_sure += n,
            }
        }
        for p in &mut out {
            let judged = p.confirmed + p.false_alarm;
            p.precision = (judged > 0).then(|| p.confirmed as f64 / judged as f64);
        }
        Ok(out)
    }
}
