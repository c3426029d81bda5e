//! AF burden totals ([`crate::burden`]): one row per patient and stream, changed
//! only from what was read (the totals as the guard), so that instances sharing the
//! store never overwrite each other unseen.

use std::time::SystemTime;

use sqlx::Row as _;

use super::{ms, Result, Store};
use crate::burden::{PatientBurden, StreamBurden};

impl Store {
    /// One stream's stored totals.
    ///
    /// # Errors
    /// Database errors.
    pub async fn af_stream(&self, patient: &str, stream: &str) -> Result<Option<StreamBurden>> {
        let row = sqlx::query(
            "SELECT af_us, monitored_us, counted_end_us, since_us FROM af_burden WHERE patient = $1 AND stream = $2",
        )
        .bind(patient.to_owned())
        .bind(stream.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match &row {
            Some(r) => Some(StreamBurden {
                af_us: r.try_get(0)?,
                monitored_us: r.try_get(1)?,
                counted_end_us: r.try_get(2)?,
                since_us: r.try_get(3)?,
            }),
            None => None,
        })
    }

    /// Stores a stream's totals `after` if the stored ones are still `before` (none:
    /// no row yet); false when they are not (another instance wrote first).
    ///
    /// # Errors
    /// Database errors.
    pub async fn save_af_stream(
        &self,
        patient: &str,
        stream: &str,
        before: Option<&StreamBurden>,
        after: &StreamBurden,
        now: SystemTime,
    ) -> Result<bool> {
        let done = match before {
            Some(b) => sqlx::query(
                "UPDATE af_burden SET af_us = $1, monitored_us = $2, counted_end_us = $3, since_us = $4, updated_ms = $5 \
                 WHERE patient = $6 AND stream = $7 AND counted_end_us = $8 AND monitored_us = $9 AND af_us = $10",
            )
            .bind(after.af_us)
            .bind(after.monitored_us)
            .bind(after.counted_end_us)
            .bind(after.since_us)
            .bind(ms(now))
            .bind(patient.to_owned())
            .bind(stream.to_owned())
            .bind(b.counted_end_us)
            .bind(b.monitored_us)
            .bind(b.af_us)
            .execute(&self.pool)
            .await?,
            None => sqlx::query(
                "INSERT INTO af_burden (patient, stream, af_us, monitored_us, counted_end_us, since_us, updated_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (patient, stream) DO NOTHING",
            )
            .bind(patient.to_owned())
            .bind(stream.to_owned())
            .bind(after.af_us)
            .bind(after.monitored_us)
            .bind(after.counted_end_us)
            .bind(after.since_us)
            .bind(ms(now))
            .execute(&self.pool)
            .await?,
        };
        Ok(done.rows_affected() == 1)
    }

    /// A patient's AF burden, summed over their streams; `None` when none of their
    /// AF findings was counted.
    ///
    /// # Errors
    /// Database errors.
    pub async fn af_burden(&self, patient: &str) -> Result<Option<PatientBurden>> {
        let rows = sqlx::query(
            "SELECT stream, af_us, monitored_us, since_us FROM af_burden WHERE patient = $1 ORDER BY stream",
        )
        .bind(patient.to_owned())
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut b = PatientBurden {
            patient: patient.to_owned(),
            af_us: 0,
            monitored_us: 0,
            since_us: None,
            streams: Vec::new(),
        };
        for r in &rows {
            b.streams.push(r.try_get(0)?);
            b.af_us += r.try_get::<i64, _>(1)?;
            b.monitored_us += r.try_get::<i64, _>(2)?;
            let since: i64 = r.try_get(3)?;
            b.since_us = Some(b.since_us.map_or(since, |s| s.min(since)));
        }
        Ok(Some(b))
    }

    /// Whether `team` sees an alert of `patient` (its own, or one escalated to it).
    ///
    /// # Errors
    /// Database errors.
    pub async fn team_sees_patient(&self, team: &str, patient: &str) -> Result<bool> {
        let find = if self.postgres { "strpos" } else { "instr" };
        let sql = format!(
            "SELECT COUNT(*) FROM alerts WHERE patient = $1 AND {find}(visible_to, $2) > 0"
        );
        let n: i64 = sqlx::query(&sql)
            .bind(patient.to_owned())
            .bind(format!(",{team},"))
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(n > 0)
    }
}
