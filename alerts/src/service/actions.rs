//! Actions: what clinicians see and do through the API — lists, detail with the
//! audit trail, acknowledge, resolve, escalate, silences.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ecg_types::{AlertState, Priority};

use super::{secs_ms, state_conflict, ActionError, AlertService, Caller, OPEN, UNACKED};
use crate::receivers::NotificationEvent;
use crate::store::{
    ms, AlertRecord, AuditEntry, Change, DeliveryRecord, Silence, SilenceMatchers, StoreError,
    Verdict,
};
use crate::text::{self, MAX_COMMENT_BYTES, MAX_MATCHER_BYTES, MAX_NOTE_BYTES};

impl AlertService {
    /// A patient's AF burden ([`crate::burden`]), for a caller whose team looks after
    /// one of the patient's streams or sees one of the patient's alerts (or `*`).
    ///
    /// # Errors
    /// Not found (nothing counted for the patient), forbidden, store errors.
    pub async fn af_burden(
        &self,
        caller: &Caller,
        patient: &str,
    ) -> Result<crate::burden::PatientBurden, ActionError> {
        let b = self
            .store
            .af_burden(patient)
            .await?
            .ok_or(ActionError::NotFound)?;
        let sees = caller.team == "*"
            || b.streams
                .iter()
                .any(|s| self.cfg.assign(s, patient).0 == caller.team)
            || self.store.team_sees_patient(&caller.team, patient).await?;
        if !sees {
            return Err(ActionError::Forbidden);
        }
        Ok(b)
    }

    /// Alerts the caller sees.
    ///
    /// # Errors
    /// Store errors.
    pub async fn list(
        &self,
        caller: &Caller,
        states: &[AlertState],
        priority: Option<Priority>,
        limit: i64,
    ) -> Result<Vec<AlertRecord>, StoreError> {
        self.store
            .list(states, priority, caller.team_filter(), limit)
            .await
    }

    /// One alert with its audit trail and deliveries.
    ///
    /// # Errors
    /// Not found, forbidden, store errors.
    pub async fn detail(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(AlertRecord, Vec<AuditEntry>, Vec<DeliveryRecord>), ActionError> {
        let rec = self.visible(caller, id).await?;
        let audit = self.store.audit(id).await?;
        let deliveries = self.store.deliveries(id).await?;
        Ok((rec, audit, deliveries))
    }

    async fn visible(&self, caller: &Caller, id: &str) -> Result<AlertRecord, ActionError> {
        let rec = self.store.get(id).await?.ok_or(ActionError::NotFound)?;
        if !caller.sees(&rec) {
            return Err(ActionError::Forbidden);
        }
        Ok(rec)
    }

    /// A change a caller asks for on an alert it sees; a conflict when the alert is
    /// not in a state the change starts from.
    async fn change_by(
        &self,
        caller: &Caller,
        id: &str,
        c: &Change<'_>,
        now: SystemTime,
    ) -> Result<AlertRecord, ActionError> {
        let rec = self.visible(caller, id).await?;
        self.store
            .change(id, c, now)
            .await?
            .ok_or_else(|| state_conflict(&rec, c.action))
    }

    /// A clinician acknowledges an alert, optionally with a verdict.
    ///
    /// # Errors
    /// Not found, forbidden, not open, store errors.
    pub async fn acknowledge(
        self: &Arc<Self>,
        caller: &Caller,
        id: &str,
        verdict: Option<Verdict>,
        note: Option<&str>,
    ) -> Result<AlertRecord, ActionError> {
        let note = note_text(note)?;
        let note = note.as_deref();
        let now = SystemTime::now();
        let c = Change {
            from: UNACKED,
            state: Some(AlertState::Acknowledged),
            due: Some(None),
            acked_by: Some(&caller.actor),
            verdict,
            actor: &caller.actor,
            action: "acknowledged",
            note,
            ..Change::default()
        };
        let after = self.change_by(caller, id, &c, now).await?;
        let since = after.notified_ms.unwrap_or(after.fired_ms);
        self.hooks.acknowledged(
            after.priority,
            Duration::from_millis(u64::try_from(ms(now) - since).unwrap_or(0)),
        );
        self.after_close(&after, NotificationEvent::Acknowledged, now, None)
            .await?;
        Ok(after)
    }

    /// A clinician resolves an alert, optionally with a verdict.
    ///
    /// # Errors
    /// Not found, forbidden, already resolved, store errors.
    pub async fn resolve(
        self: &Arc<Self>,
        caller: &Caller,
        id: &str,
        verdict: Option<Verdict>,
        note: Option<&str>,
    ) -> Result<AlertRecord, ActionError> {
        let note = note_text(note)?;
        let note = note.as_deref();
        let now = SystemTime::now();
        let c = Change {
            from: OPEN,
            state: Some(AlertState::Resolved),
            due: Some(None),
            verdict,
            actor: &caller.actor,
            action: "resolved",
            note,
            ..Change::default()
        };
        let after = self.change_by(caller, id, &c, now).await?;
        self.after_close(&after, NotificationEvent::Resolved, now, None)
            .await?;
        Ok(after)
    }

    /// A clinician escalates an alert to the next step of its chain now.
    ///
    /// # Errors
    /// Not found, forbidden, closed, no further step, store errors.
    pub async fn escalate(
        self: &Arc<Self>,
        caller: &Caller,
        id: &str,
        note: Option<&str>,
    ) -> Result<AlertRecord, ActionError> {
        let note = note_text(note)?;
        let note = note.as_deref();
        let rec = self.visible(caller, id).await?;
        let next = usize::try_from(rec.level).unwrap_or(usize::MAX);
        if next >= rec.plan.escalation.len() {
            return Err(ActionError::Conflict(format!(
                "no further escalation step (level {} of {})",
                rec.level,
                rec.plan.escalation.len()
            )));
        }
        self.escalate_step(&rec, OPEN, None, &caller.actor, note, SystemTime::now())
            .await?
            .ok_or_else(|| state_conflict(&rec, "escalated"))
    }

    /// Adds a silence for the caller's team (a `*` caller may silence every team).
    ///
    /// # Errors
    /// Invalid duration or an empty matcher set, store errors.
    pub async fn silence(
        &self,
        caller: &Caller,
        matchers: SilenceMatchers,
        duration_s: u64,
        comment: &str,
    ) -> Result<Silence, ActionError> {
        if duration_s == 0 || duration_s > self.cfg.max_silence_s {
            return Err(ActionError::Invalid(format!(
                "duration_s must be 1..={}",
                self.cfg.max_silence_s
            )));
        }
        if matchers.is_empty() {
            return Err(ActionError::Invalid(
                "a silence needs at least one matcher (patient, stream, condition, priority)"
                    .into(),
            ));
        }
        if comment.trim().is_empty() {
            return Err(ActionError::Invalid("a silence needs a comment".into()));
        }
        text::check_len("comment", comment, MAX_COMMENT_BYTES).map_err(ActionError::Invalid)?;
        let mut matchers = matchers;
        for (name, v) in [
            ("matchers.patient", &mut matchers.patient),
            ("matchers.stream", &mut matchers.stream),
        ] {
            if let Some(v) = v {
                text::check_len(name, v, MAX_MATCHER_BYTES).map_err(ActionError::Invalid)?;
                *v = text::neutralise(v);
            }
        }
        let now = ms(SystemTime::now());
        let s = Silence {
            id: format!("{:016x}", rand::random::<u64>()),
            team: caller.team.clone(),
            matchers,
            starts_ms: now,
            ends_ms: now + secs_ms(duration_s),
            created_by: caller.actor.clone(),
            comment: text::neutralise(comment),
        };
        self.store.add_silence(&s).await?;
        tracing::info!(silence = %s.id, actor = %caller.actor, duration_s, "silence added");
        Ok(s)
    }
}

/// A note as stored: at most [`MAX_NOTE_BYTES`], neutralised ([`text::neutralise`]).
fn note_text(note: Option<&str>) -> Result<Option<String>, ActionError> {
    note.map(|n| {
        text::check_len("note", n, MAX_NOTE_BYTES).map_err(ActionError::Invalid)?;
        Ok(text::neutralise(n))
    })
    .transpose()
}
