//! Intake: a finding through the engine into the store, and the first
//! notification of an alert that needs no group wait.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ecg_types::{Alert, AlertState, Finding, FindingSource, Priority};

use super::{next_wait, secs_ms, AlertService, OPEN};
use crate::config::Facts;
use crate::receivers::NotificationEvent;
use crate::store::{ms, AlertRecord, Change, StoreError};

impl AlertService {
    /// Applies one finding. Everything it decides is in the store (alerts, audit,
    /// claimed notifications) when this returns: the finding's offset may be stored
    /// then. Deliveries run on spawned tasks. While the store is unavailable it
    /// retries, with backoff, until the store takes the change or [`Self::stop`].
    ///
    /// # Errors
    /// Store errors after [`Self::stop`].
    pub async fn on_finding(
        self: &Arc<Self>,
        f: &Finding,
        consumed: Instant,
    ) -> Result<(), StoreError> {
        let now = SystemTime::now();
        let changed = self
            .engine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .on_finding(f, now);
        for alert in changed {
            // The engine has moved on: this change must reach the store, or the alert
            // would be lost (a replay of the finding changes nothing in the engine).
            // Every step is idempotent, so it is retried until the store takes it.
            let mut backoff = Duration::from_millis(100);
            loop {
                let r = match alert.state {
                    AlertState::Firing => self.fire(&alert, f, now, consumed).await,
                    AlertState::Resolved => self.clear(&alert, now, consumed).await,
                    _ => Ok(()),
                };
                match r {
                    Ok(()) => break,
                    Err(e) if self.stopping.load(std::sync::atomic::Ordering::Relaxed) => {
                        return Err(e)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "alert store unavailable; retrying the alert change");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
        Ok(())
    }

    /// The engine cleared an alert's condition.
    async fn clear(
        self: &Arc<Self>,
        alert: &Alert,
        now: SystemTime,
        consumed: Instant,
    ) -> Result<(), StoreError> {
        let c = Change {
            from: OPEN,
            state: Some(AlertState::Resolved),
            due: Some(None),
            actor: "engine",
            action: "resolved",
            note: Some("condition cleared"),
            ..Change::default()
        };
        if let Some(rec) = self.store.change(&alert.id, &c, now).await? {
            self.after_close(&rec, NotificationEvent::Resolved, now, Some(consumed))
                .await?;
        }
        Ok(())
    }

    async fn fire(
        self: &Arc<Self>,
        alert: &Alert,
        f: &Finding,
        now: SystemTime,
        consumed: Instant,
    ) -> Result<(), StoreError> {
        let (team, unit) = self
            .cfg
            .assign(alert.stream.as_str(), alert.patient.as_str());
        let facts = Facts {
            team,
            unit,
            priority: alert.priority,
            kind: alert.kind,
            condition: alert.condition,
        };
        let plan = self.cfg.route.plan(&facts);
        let now_ms = ms(now);
        let mut rec = AlertRecord {
            id: alert.id.clone(),
            patient: alert.patient.to_string(),
            stream: alert.stream.to_string(),
            condition: alert.condition,
            priority: alert.priority,
            kind: alert.kind,
            state: AlertState::Firing,
            team: team.to_owned(),
            unit: unit.map(str::to_owned),
            visible_to: vec![team.to_owned()],
            rule: format!(
                "{}/{}",
                alert.condition,
                if alert.decision_support { "ai" } else { "dsp" }
            ),
            model: match &alert.source {
                FindingSource::Model { id, version } => Some(format!("{id}@{version}")),
                FindingSource::Detector { .. } => None,
            },
            source: alert.source.clone(),
            summary: alert.summary.clone(),
            score: alert.score.map(f64::from),
            value: alert.value.map(f64::from),
            decision_support: alert.decision_support,
            since_us: alert.since.0,
            fired_ms: now_ms,
            updated_ms: now_ms,
            notified_ms: None,
            acked_ms: None,
            acked_by: None,
            verdict: None,
            level: 0,
            due_ms: None,
            silenced: false,
            plan,
            strip: f.strip.as_deref().cloned(),
        };
        rec.silenced = self
            .store
            .silences(now_ms)
            .await?
            .iter()
            .any(|s| (s.team == "*" || s.team == rec.team) && s.matchers.matches(&rec));
        let wait = rec.priority != Priority::High && rec.plan.group_wait_s > 0;
        let notify_now = !rec.silenced && !wait;
        if !rec.silenced && wait {
            rec.due_ms = Some(now_ms + secs_ms(rec.plan.group_wait_s));
        }
        if notify_now {
            // No wait: inserted as notified (one transaction), first escalation due.
            rec.state = AlertState::Notified;
            rec.notified_ms = Some(now_ms);
            rec.due_ms = Some(now_ms + secs_ms(next_wait(&rec, 0)));
        }
        if !self.store.insert(&rec, now).await? {
            // A replayed finding, or another instance was first. Should the instance
            // that inserted it have died before claiming its notifications, they are
            // still free to claim; otherwise the claims below do nothing.
            if notify_now {
                if let Some(existing) = self.store.get(&rec.id).await? {
                    if existing.state == AlertState::Notified && existing.level == 0 {
                        self.notify(
                            &existing,
                            NotificationEvent::Fired,
                            0,
                            0,
                            now,
                            Some(consumed),
                        )
                        .await?;
                    }
                }
            }
            return Ok(());
        }
        if notify_now {
            let fired = AlertRecord {
                state: AlertState::Firing,
                ..rec.clone()
            };
            self.hooks.alert(&self.to_alert(&fired, now));
            self.hooks.alert(&self.to_alert(&rec, now));
            self.notify(&rec, NotificationEvent::Fired, 0, 0, now, Some(consumed))
                .await?;
        } else {
            self.hooks.alert(&self.to_alert(&rec, now));
        }
        Ok(())
    }
}
