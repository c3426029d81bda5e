//! The alert service: findings in, alerts through their life.
//!
//! ```text
//! finding ─► engine (rules, hysteresis, grouping, inhibition)
//!              │ fired / cleared
//!              ▼
//!           store (one row per alert; every transition audited)
//!              │ silences · routing tree · group wait (high priority: none)
//!              ▼
//!           notifications, claimed in the store, then delivered by receivers
//!              │
//!   tick ────► group wait over → notify · not acknowledged in time → escalate
//!              along the route's chain (on-call of the next team) → repeat
//! ```
//!
//! Every instance runs the same service against one store. A transition is a
//! conditional update, so of several instances exactly one takes it; a
//! notification is claimed by inserting its delivery row before it is sent, so no
//! alert is notified twice for the same event, and a claim whose instance died
//! before finishing is taken over after [`DELIVERY_LEASE`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use ecg_types::{Alert, AlertState, Finding, FindingSource, PatientId, Priority};
use ecg_types::{DeviceTimeUs, StreamId};

use crate::config::{Facts, ServiceConfig};
use crate::engine::AlertEngine;
use crate::receivers::{Notification, NotificationEvent, Receiver};
use crate::store::{
    ms, AlertRecord, AuditEntry, Change, DeliveryKey, DeliveryRecord, PrecisionRow, Silence,
    SilenceMatchers, Store, StoreError, Verdict,
};

/// How long a claimed notification may stay unfinished before another instance
/// takes it over (its instance is presumed dead).
pub const DELIVERY_LEASE: Duration = Duration::from_secs(30);

const OPEN: &[AlertState] = &[
    AlertState::Firing,
    AlertState::Notified,
    AlertState::Escalated,
    AlertState::Acknowledged,
];
const UNACKED: &[AlertState] = &[
    AlertState::Firing,
    AlertState::Notified,
    AlertState::Escalated,
];

/// What the service tells the process around it: metrics and the Kafka topic of
/// alert state changes.
pub trait Hooks: Send + Sync + fmt::Debug {
    /// An alert changed state (as published on `ecg.alerts.v1`).
    fn alert(&self, _alert: &Alert) {}
    /// A notification was delivered or failed; `since_finding` is the time from the
    /// finding's consumption, for notifications a finding caused.
    fn delivery(&self, _kind: &str, _ok: bool, _since_finding: Option<Duration>) {}
    /// An alert was acknowledged this long after its first notification.
    fn acknowledged(&self, _priority: Priority, _after: Duration) {}
    /// Verdict counts, refreshed from the store.
    fn precision(&self, _rows: &[PrecisionRow]) {}
}

/// Hooks that do nothing.
#[derive(Debug, Default)]
pub struct NoHooks;
impl Hooks for NoHooks {}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// No such alert (or not visible).
    #[error("no such alert")]
    NotFound,
    /// Another team's alert.
    #[error("this alert belongs to another team")]
    Forbidden,
    /// Not possible in the alert's state.
    #[error("{0}")]
    Conflict(String),
    /// A bad request.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why the service could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The config.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A receiver.
    #[error(transparent)]
    Receiver(#[from] crate::receivers::ReceiverError),
}

/// Who is asking: a token's team and actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Team, or `*` for all.
    pub team: String,
    /// Actor for the audit trail.
    pub actor: String,
}

impl Caller {
    /// True if the caller sees alerts visible to these teams.
    pub fn sees(&self, a: &AlertRecord) -> bool {
        self.team == "*" || a.visible_to.contains(&self.team)
    }

    fn team_filter(&self) -> Option<&str> {
        (self.team != "*").then_some(self.team.as_str())
    }
}

/// The service.
#[derive(Debug)]
pub struct AlertService {
    cfg: ServiceConfig,
    store: Store,
    engine: Mutex<AlertEngine>,
    receivers: HashMap<String, Arc<Receiver>>,
    instance: String,
    hooks: Arc<dyn Hooks>,
    last_precision: Mutex<Option<Instant>>,
    stopping: std::sync::atomic::AtomicBool,
}

impl AlertService {
    /// A service over an open store.
    ///
    /// # Errors
    /// When the config is inconsistent or a receiver cannot be built.
    pub fn new(
        cfg: ServiceConfig,
        store: Store,
        instance: impl Into<String>,
        hooks: Arc<dyn Hooks>,
    ) -> Result<Self, BuildError> {
        cfg.validate()?;
        let mut receivers = HashMap::new();
        for r in &cfg.receivers {
            receivers.insert(r.name.clone(), Arc::new(Receiver::new(&r.name, &r.config)?));
        }
        let rules = cfg.rules.clone().unwrap_or_default();
        Ok(Self {
            cfg,
            store,
            engine: Mutex::new(AlertEngine::new(rules)),
            receivers,
            instance: instance.into(),
            hooks,
            last_precision: Mutex::new(None),
            stopping: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The config.
    pub fn config(&self) -> &ServiceConfig {
        &self.cfg
    }

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

    /// Stops retrying store writes (shutdown): a finding whose alert changes could
    /// not be stored then fails, and its offset is not stored.
    pub fn stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
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

    /// Notifies the first receivers and moves firing → notified with the first
    /// escalation (or repeat) due.
    async fn first_notification(
        self: &Arc<Self>,
        rec: &AlertRecord,
        now: SystemTime,
        consumed: Option<Instant>,
    ) -> Result<(), StoreError> {
        let c = Change {
            from: &[AlertState::Firing],
            expect_due: Some(rec.due_ms),
            state: Some(AlertState::Notified),
            due: Some(Some(ms(now) + secs_ms(next_wait(rec, 0)))),
            notified: true,
            actor: "engine",
            action: "notified",
            ..Change::default()
        };
        if let Some(after) = self.store.change(&rec.id, &c, now).await? {
            self.hooks.alert(&self.to_alert(&after, now));
            self.notify(&after, NotificationEvent::Fired, 0, 0, now, consumed)
                .await?;
        }
        Ok(())
    }

    /// Claims and sends one event to the receivers of one escalation level.
    async fn notify(
        self: &Arc<Self>,
        rec: &AlertRecord,
        event: NotificationEvent,
        sequence: u32,
        level: i64,
        now: SystemTime,
        consumed: Option<Instant>,
    ) -> Result<(), StoreError> {
        let (names, _) = self.level_targets(rec, level);
        let n = self.notification(rec, event, sequence, level, now);
        let event_key = n.event_key();
        for name in names {
            let Some(r) = self.receivers.get(&name).cloned() else {
                continue;
            };
            let key = DeliveryKey {
                alert: &rec.id,
                event: &event_key,
                level,
                receiver: &name,
            };
            if !self
                .store
                .claim(&key, r.kind(), &self.instance, now)
                .await?
            {
                continue;
            }
            self.spawn_delivery(r, n.clone(), event_key.clone(), level, consumed);
        }
        Ok(())
    }

    /// What the receivers of `level` are told about `rec`.
    fn notification(
        &self,
        rec: &AlertRecord,
        event: NotificationEvent,
        sequence: u32,
        level: i64,
        now: SystemTime,
    ) -> Notification {
        let (_, team) = self.level_targets(rec, level);
        Notification {
            alert: self.to_alert(rec, now),
            event,
            recipient: self.cfg.on_call(&team, now),
            team,
            unit: rec.unit.clone(),
            escalation_level: u32::try_from(level).unwrap_or(u32::MAX),
            console_url: self.cfg.console_url.as_ref().map(|u| {
                format!(
                    "{}/#alert={}",
                    u.trim_end_matches('/'),
                    rec.id.replace('/', "%2F")
                )
            }),
            sequence,
        }
    }

    /// Moves `rec` one step up its escalation chain (the step must exist) if it is
    /// still in one of `from` at its level and due time, tells that step's receivers,
    /// and returns it; `None` when someone else changed it first.
    async fn escalate_step(
        self: &Arc<Self>,
        rec: &AlertRecord,
        from: &[AlertState],
        expect_due: Option<Option<i64>>,
        actor: &str,
        note: Option<&str>,
        now: SystemTime,
    ) -> Result<Option<AlertRecord>, StoreError> {
        let next = usize::try_from(rec.level).unwrap_or(usize::MAX);
        let c = Change {
            from,
            expect_level: Some(rec.level),
            expect_due,
            state: Some(AlertState::Escalated),
            level: Some(rec.level + 1),
            due: Some(Some(ms(now) + secs_ms(next_wait(rec, rec.level + 1)))),
            add_team: rec
                .plan
                .escalation
                .get(next)
                .and_then(|s| s.team.as_deref()),
            actor,
            action: "escalated",
            note,
            ..Change::default()
        };
        let Some(after) = self.store.change(&rec.id, &c, now).await? else {
            return Ok(None);
        };
        self.hooks.alert(&self.to_alert(&after, now));
        self.notify(
            &after,
            NotificationEvent::Escalated,
            0,
            after.level,
            now,
            None,
        )
        .await?;
        Ok(Some(after))
    }

    fn spawn_delivery(
        self: &Arc<Self>,
        r: Arc<Receiver>,
        n: Notification,
        event_key: String,
        level: i64,
        consumed: Option<Instant>,
    ) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let (ok, attempts, error) = match r.deliver(&n).await {
                Ok(d) => (true, d.attempts, None),
                Err(e) => (false, e.attempts, Some(e.to_string())),
            };
            me.hooks
                .delivery(r.kind(), ok, consumed.map(|c| c.elapsed()));
            if let Err(e) = me
                .store
                .delivered(
                    &DeliveryKey {
                        alert: &n.alert.id,
                        event: &event_key,
                        level,
                        receiver: r.name(),
                    },
                    ok,
                    attempts,
                    error.as_deref(),
                    SystemTime::now(),
                )
                .await
            {
                tracing::warn!(error = %e, "recording a delivery failed");
            }
        });
    }

    /// Receivers and team of an escalation level.
    fn level_targets(&self, rec: &AlertRecord, level: i64) -> (Vec<String>, String) {
        if level <= 0 {
            return (rec.plan.receivers.clone(), rec.team.clone());
        }
        let step = usize::try_from(level - 1)
            .ok()
            .and_then(|i| rec.plan.escalation.get(i));
        match step {
            Some(s) => (
                s.receivers.clone(),
                s.team.clone().unwrap_or_else(|| rec.team.clone()),
            ),
            None => (rec.plan.receivers.clone(), rec.team.clone()),
        }
    }

    /// After an acknowledgement or resolution: tell every level notified so far.
    async fn after_close(
        self: &Arc<Self>,
        rec: &AlertRecord,
        event: NotificationEvent,
        now: SystemTime,
        consumed: Option<Instant>,
    ) -> Result<(), StoreError> {
        self.hooks.alert(&self.to_alert(rec, now));
        if rec.notified_ms.is_none() {
            return Ok(());
        }
        for level in 0..=rec.level {
            self.notify(rec, event, 0, level, now, consumed).await?;
        }
        Ok(())
    }

    /// Due work: group waits that ended, escalations, repeats, and notifications
    /// whose instance died. Run every `tick_ms` on every instance.
    ///
    /// # Errors
    /// Store errors.
    pub async fn tick(self: &Arc<Self>) -> Result<(), StoreError> {
        let now = SystemTime::now();
        let now_ms = ms(now);
        for rec in self.store.due(now_ms, 200).await? {
            match rec.state {
                AlertState::Firing => self.first_notification(&rec, now, None).await?,
                AlertState::Notified | AlertState::Escalated => {
                    let next = usize::try_from(rec.level).unwrap_or(usize::MAX);
                    if next < rec.plan.escalation.len() {
                        self.escalate_step(
                            &rec,
                            UNACKED,
                            Some(rec.due_ms),
                            "escalation",
                            Some("not acknowledged in time"),
                            now,
                        )
                        .await?;
                    } else {
                        let c = Change {
                            from: UNACKED,
                            expect_level: Some(rec.level),
                            expect_due: Some(rec.due_ms),
                            due: Some(Some(now_ms + secs_ms(rec.plan.repeat_interval_s))),
                            actor: "escalation",
                            action: "repeat",
                            ..Change::default()
                        };
                        if let Some(after) = self.store.change(&rec.id, &c, now).await? {
                            // The repeat's scheduled second tells it apart from the
                            // others, the same on every instance.
                            let seq = u32::try_from(rec.due_ms.unwrap_or(now_ms) / 1000)
                                .unwrap_or(u32::MAX);
                            self.notify(
                                &after,
                                NotificationEvent::Repeat,
                                seq,
                                after.level,
                                now,
                                None,
                            )
                            .await?;
                        }
                    }
                }
                _ => {
                    let c = Change {
                        expect_due: Some(rec.due_ms),
                        due: Some(None),
                        actor: "engine",
                        action: "cleared-due",
                        ..Change::default()
                    };
                    self.store.change(&rec.id, &c, now).await?;
                }
            }
        }
        self.retry_stale(now).await?;
        let refresh = {
            let mut last = self
                .last_precision
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if refresh {
            self.hooks.precision(&self.store.precision().await?);
        }
        Ok(())
    }

    async fn retry_stale(self: &Arc<Self>, now: SystemTime) -> Result<(), StoreError> {
        let stale = ms(now) - i64::try_from(DELIVERY_LEASE.as_millis()).unwrap_or(i64::MAX);
        for (alert_id, d) in self.store.stale_deliveries(stale, 50).await? {
            let Some(r) = self.receivers.get(&d.receiver).cloned() else {
                continue;
            };
            let Some(rec) = self.store.get(&alert_id).await? else {
                continue;
            };
            if !self
                .store
                .reclaim(&alert_id, &d, &self.instance, now)
                .await?
            {
                continue;
            }
            let (event, sequence) = NotificationEvent::from_key(&d.event);
            let n = self.notification(&rec, event, sequence, d.level, now);
            self.spawn_delivery(r, n, d.event.clone(), d.level, None);
        }
        Ok(())
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
        let now = ms(SystemTime::now());
        let s = Silence {
            id: format!("{:016x}", rand::random::<u64>()),
            team: caller.team.clone(),
            matchers,
            starts_ms: now,
            ends_ms: now + secs_ms(duration_s),
            created_by: caller.actor.clone(),
            comment: comment.to_owned(),
        };
        self.store.add_silence(&s).await?;
        tracing::info!(silence = %s.id, actor = %caller.actor, duration_s, "silence added");
        Ok(s)
    }

    /// The alert as published and sent to receivers.
    pub fn to_alert(&self, rec: &AlertRecord, now: SystemTime) -> Alert {
        Alert {
            id: rec.id.clone(),
            patient: PatientId::new(rec.patient.clone())
                .unwrap_or_else(|_| PatientId::new("unknown").expect("valid id")),
            stream: StreamId::new(rec.stream.clone())
                .unwrap_or_else(|_| StreamId::new("unknown").expect("valid id")),
            condition: rec.condition,
            priority: rec.priority,
            kind: rec.kind,
            state: rec.state,
            time: now,
            since: DeviceTimeUs(rec.since_us),
            source: rec.source.clone(),
            score: rec.score.map(|s| s as f32),
            value: rec.value.map(|v| v as f32),
            decision_support: rec.decision_support,
            summary: rec.summary.clone(),
        }
    }

    /// The in-memory engine (for the console's episode view and tests).
    pub fn engine(&self) -> &Mutex<AlertEngine> {
        &self.engine
    }
}

fn state_conflict(rec: &AlertRecord, wanted: &str) -> ActionError {
    ActionError::Conflict(format!(
        "alert is {} and cannot be {wanted}",
        rec.state.as_str()
    ))
}

/// Seconds until the step after `level` (the next escalation, or a repeat).
fn next_wait(rec: &AlertRecord, level: i64) -> u64 {
    usize::try_from(level)
        .ok()
        .and_then(|i| rec.plan.escalation.get(i))
        .map_or(rec.plan.repeat_interval_s, |s| s.after_s)
}

fn secs_ms(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
}
