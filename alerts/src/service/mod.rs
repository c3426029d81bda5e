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
//!
//! The service is split by what it does: `intake` (findings → stored alerts),
//! `notify` (claims and deliveries), `escalation` (the ticker: group waits,
//! escalations, repeats) and `actions` (what clinicians do through the API).

mod actions;
mod escalation;
mod intake;
mod notify;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use ecg_types::{Alert, AlertState, PatientId, Priority};
use ecg_types::{DeviceTimeUs, StreamId};

use crate::config::ServiceConfig;
use crate::engine::AlertEngine;
use crate::receivers::Receiver;
use crate::store::{AlertRecord, PrecisionRow, Store, StoreError};

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

/// What the service tells the process around it (its metrics); alert state changes
/// for the alerts topic go to the queue of [`AlertService::with_changes`].
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
    /// A finding older than the staleness horizon was applied (recorded, not paged).
    fn stale_finding(&self) {}
    /// The retention pruned the store.
    fn pruned(&self, _pruned: &crate::store::Pruned) {}
    /// What became of a finding read from the findings topic.
    fn finding(&self, _outcome: FindingOutcome) {}
}

/// What became of a finding read from the findings topic (`crate::kafka`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingOutcome {
    /// Applied: everything it decided is in the store, its offset may be stored.
    Applied,
    /// Not a finding (skipped, its offset stored).
    Undecodable,
    /// The store was unavailable: it is tried again.
    Retried,
}

impl FindingOutcome {
    /// Every outcome, for metrics that exist from start-up.
    pub const ALL: [FindingOutcome; 3] = [Self::Applied, Self::Undecodable, Self::Retried];

    /// Its metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Undecodable => "undecodable",
            Self::Retried => "retried",
        }
    }
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
    /// Where every alert state change is also sent (the alerts topic's publisher).
    changes: Option<tokio::sync::mpsc::UnboundedSender<Alert>>,
    last_precision: Mutex<Option<Instant>>,
    stopping: std::sync::atomic::AtomicBool,
    /// Alerts this instance recorded from stale findings and has not paged: a current
    /// finding of their episode pages them.
    held: Mutex<std::collections::HashSet<String>>,
    last_retention: Mutex<Option<Instant>>,
    /// AF burden as counted here, by (patient, stream) ([`crate::burden`]).
    burden: Mutex<HashMap<(String, String), crate::burden::Counted>>,
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
            changes: None,
            last_precision: Mutex::new(None),
            stopping: std::sync::atomic::AtomicBool::new(false),
            held: Mutex::default(),
            last_retention: Mutex::new(None),
            burden: Mutex::default(),
        })
    }

    /// Also sends every alert state change to `changes` (what [`Hooks::alert`] hears).
    #[must_use]
    pub fn with_changes(mut self, changes: tokio::sync::mpsc::UnboundedSender<Alert>) -> Self {
        self.changes = Some(changes);
        self
    }

    /// The hooks the service tells what it does.
    pub fn hooks(&self) -> &dyn Hooks {
        self.hooks.as_ref()
    }

    /// An alert changed state: the hooks hear it and the changes queue gets it.
    fn changed(&self, alert: Alert) {
        self.hooks.alert(&alert);
        if let Some(tx) = &self.changes {
            let _ = tx.send(alert);
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The config.
    pub fn config(&self) -> &ServiceConfig {
        &self.cfg
    }

    /// Stops retrying store writes (shutdown): a finding whose alert changes could
    /// not be stored then fails, and its offset is not stored.
    pub fn stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
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
