//! Intake: a finding through the engine into the store, and the first
//! notification of an alert that needs no group wait.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use std::collections::{HashMap, HashSet};

use ecg_types::{
    system_time_from_us, Alert, AlertState, Finding, FindingSource, FindingStatus, Priority,
};

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
    /// A finding whose window ended more than `stale_after_s` ago is **stale**: its
    /// alert changes are recorded like any other, but an alert it fires is not
    /// notified (audit action `stale`). Its episode is paged when a current finding
    /// shows the condition still present; a resolution is still sent to whoever was
    /// notified of the alert, so no receiver keeps an alarm open.
    ///
    /// # Errors
    /// Store errors after [`Self::stop`].
    pub async fn on_finding(
        self: &Arc<Self>,
        f: &Finding,
        consumed: Instant,
    ) -> Result<(), StoreError> {
        let now = SystemTime::now();
        let stale = self.staleness(f, now);
        if stale.is_some() {
            self.hooks.stale_finding();
        }
        let (changed, continuing) = {
            let mut engine = self
                .engine
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let changed = engine.on_finding(f, now);
            // A current finding of an episode whose alert was recorded while stale.
            let continuing = (stale.is_none() && f.status == FindingStatus::Present)
                .then(|| engine.active_alert(&f.stream, f.condition, f.decision_support))
                .flatten()
                .map(|a| a.id.clone())
                .filter(|id| self.held().contains(id));
            (changed, continuing)
        };
        let mut steps: Vec<Step> = changed.into_iter().map(Step::Change).collect();
        steps.extend(continuing.map(Step::Page));
        for step in steps {
            // The engine has moved on: this change must reach the store, or the alert
            // would be lost (a replay of the finding changes nothing in the engine).
            // Every step is idempotent, so it is retried until the store takes it.
            let mut backoff = Duration::from_millis(100);
            loop {
                let r = match &step {
                    Step::Change(alert) => match alert.state {
                        AlertState::Firing => self.fire(alert, f, now, consumed, stale).await,
                        AlertState::Resolved => self.clear(alert, now, consumed).await,
                        _ => Ok(()),
                    },
                    Step::Page(id) => self.page_held(id, now, consumed).await,
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
        // AF burden: every AF finding of a non-shadow source, alert or not.
        if crate::burden::counts(f) {
            let mut backoff = Duration::from_millis(100);
            loop {
                match self.count_af(f, now).await {
                    Ok(()) => break,
                    Err(e) if self.stopping.load(std::sync::atomic::Ordering::Relaxed) => {
                        return Err(e)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "alert store unavailable; retrying the AF burden");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
        Ok(())
    }

    fn burden(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String), crate::burden::Counted>> {
        self.burden
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts an AF finding into its stream's totals ([`crate::burden::Counted`]),
    /// read from the store the first time this instance sees the stream, and stores
    /// them when they are due.
    async fn count_af(&self, f: &Finding, now: SystemTime) -> Result<(), StoreError> {
        let key = (f.patient.to_string(), f.stream.to_string());
        if !self.burden().contains_key(&key) {
            let stored = self.store.af_stream(&key.0, &key.1).await?;
            self.burden()
                .entry(key.clone())
                .or_insert_with(|| crate::burden::Counted::new(stored));
        }
        let due = self.burden().get_mut(&key).is_some_and(|c| c.add(f));
        if due {
            self.store_af(&key, now).await?;
        }
        Ok(())
    }

    /// Stores a stream's counted totals if they are ahead of the store's. When
    /// another instance wrote first, the totals that reach further win.
    pub(super) async fn store_af(
        &self,
        key: &(String, String),
        now: SystemTime,
    ) -> Result<(), StoreError> {
        for _ in 0..4 {
            let Some((before, after)) = self
                .burden()
                .get(key)
                .filter(|c| c.dirty_since.is_some())
                .map(|c| (c.stored, c.current))
            else {
                return Ok(());
            };
            if self
                .store
                .save_af_stream(&key.0, &key.1, before.as_ref(), &after, now)
                .await?
            {
                if let Some(c) = self.burden().get_mut(key) {
                    c.stored = Some(after);
                    if c.current == after {
                        c.dirty_since = None;
                    }
                }
                return Ok(());
            }
            let row = self.store.af_stream(&key.0, &key.1).await?;
            if let Some(c) = self.burden().get_mut(key) {
                c.stored = row;
                if let Some(r) = row.filter(|r| r.counted_end_us >= c.current.counted_end_us) {
                    c.current = r;
                    c.dirty_since = None;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Stores every stream's AF burden totals that changed (at shutdown, and for
    /// tests); the tick stores those older than [`crate::burden::STORE_AFTER`].
    ///
    /// # Errors
    /// Store errors.
    pub async fn flush_af_burden(&self) -> Result<(), StoreError> {
        self.store_af_older_than(Duration::ZERO, SystemTime::now())
            .await
    }

    pub(super) async fn store_af_older_than(
        &self,
        age: Duration,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let keys: Vec<(String, String)> = self
            .burden()
            .iter()
            .filter(|(_, c)| c.dirty_since.is_some_and(|t| t.elapsed() >= age))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.store_af(&k, now).await?;
        }
        Ok(())
    }

    /// How long ago the finding's window ended, if more than `stale_after_s`.
    fn staleness(&self, f: &Finding, now: SystemTime) -> Option<Duration> {
        let end = system_time_from_us(f.window_end.0);
        let age = now.duration_since(end).ok()?;
        (age > Duration::from_secs(self.cfg.stale_after_s)).then_some(age)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Pages an alert recorded from stale findings whose condition a current finding
    /// shows still present: as if it fired now (group wait, or at once for high
    /// priority), unless it was silenced, notified or changed meanwhile.
    async fn page_held(
        self: &Arc<Self>,
        id: &str,
        now: SystemTime,
        consumed: Instant,
    ) -> Result<(), StoreError> {
        let Some(rec) = self.store.get(id).await? else {
            self.held().remove(id);
            return Ok(());
        };
        let pageable = rec.state == AlertState::Firing
            && rec.notified_ms.is_none()
            && rec.due_ms.is_none()
            && !rec.silenced;
        if pageable {
            const NOTE: &str = "condition still present on a current finding";
            if rec.priority != Priority::High && rec.plan.group_wait_s > 0 {
                let c = Change {
                    from: &[AlertState::Firing],
                    expect_due: Some(None),
                    due: Some(Some(ms(now) + secs_ms(rec.plan.group_wait_s))),
                    actor: "engine",
                    action: "current",
                    note: Some(NOTE),
                    ..Change::default()
                };
                self.store.change(id, &c, now).await?;
            } else {
                self.store
                    .note(id, "engine", "current", Some(NOTE), now)
                    .await?;
                self.first_notification(&rec, now, Some(consumed)).await?;
            }
        }
        self.held().remove(id);
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
        self.held().remove(&alert.id);
        Ok(())
    }

    async fn fire(
        self: &Arc<Self>,
        alert: &Alert,
        f: &Finding,
        now: SystemTime,
        consumed: Instant,
        stale: Option<Duration>,
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
        if let Some(age) = stale {
            // Recorded, never notified: no due time, so the ticker leaves it alone.
            let note = format!(
                "finding's window ended {} s ago, more than stale_after_s = {}: recorded, not notified",
                age.as_secs(),
                self.cfg.stale_after_s
            );
            self.held().insert(rec.id.clone());
            if self
                .store
                .insert_noted(&rec, now, "stale", Some(&note))
                .await?
            {
                self.changed(self.to_alert(&rec, now));
            }
            return Ok(());
        }
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
            self.changed(self.to_alert(&fired, now));
            self.changed(self.to_alert(&rec, now));
            self.notify(&rec, NotificationEvent::Fired, 0, 0, now, Some(consumed))
                .await?;
        } else {
            self.changed(self.to_alert(&rec, now));
        }
        Ok(())
    }
}

/// One thing a finding makes the service do.
enum Step {
    /// Store an alert change of the engine.
    Change(Alert),
    /// Page an alert recorded from stale findings (its condition is current).
    Page(String),
}
