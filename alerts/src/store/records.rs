//! What the store keeps: alerts, audit entries, deliveries, silences, verdicts,
//! and the keys and changes the other modules take.

use ecg_types::{AlertKind, AlertState, Condition, FindingSource, Priority, Strip};
use serde::{Deserialize, Serialize};

use crate::config::Plan;

/// A clinician's verdict on an alert: the feedback that measures a rule's or a
/// model's precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A true alarm.
    Confirmed,
    /// A false alarm.
    FalseAlarm,
    /// Could not tell.
    NotSure,
}

impl Verdict {
    /// The name used in JSON, metric labels and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Confirmed => "confirmed",
            Verdict::FalseAlarm => "false_alarm",
            Verdict::NotSure => "not_sure",
        }
    }
}

/// One alert as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRecord {
    /// Stable id (stream/condition/origin/first window start).
    pub id: String,
    /// Pseudonymous patient.
    pub patient: String,
    /// Stream.
    pub stream: String,
    /// Condition.
    pub condition: Condition,
    /// Priority.
    pub priority: Priority,
    /// Kind.
    pub kind: AlertKind,
    /// State.
    pub state: AlertState,
    /// Owning care team.
    pub team: String,
    /// Care unit.
    pub unit: Option<String>,
    /// Teams that see it (the owner and the teams it was escalated to).
    pub visible_to: Vec<String>,
    /// The rule that raised it (`condition/dsp` or `condition/ai`).
    pub rule: String,
    /// `id@version` of the model behind it, if any.
    pub model: Option<String>,
    /// Detector or model.
    pub source: FindingSource,
    /// One line for people.
    pub summary: String,
    /// Model score.
    pub score: Option<f64>,
    /// Measured value.
    pub value: Option<f64>,
    /// From an AI model: decision support.
    pub decision_support: bool,
    /// Device time of the first window.
    pub since_us: i64,
    /// When it fired (ms since the epoch).
    pub fired_ms: i64,
    /// Last change.
    pub updated_ms: i64,
    /// First notification.
    pub notified_ms: Option<i64>,
    /// Acknowledgement time.
    pub acked_ms: Option<i64>,
    /// Who acknowledged it.
    pub acked_by: Option<String>,
    /// The clinician's verdict.
    pub verdict: Option<Verdict>,
    /// Escalation level (0: first notification's receivers).
    pub level: i64,
    /// When the next notification, escalation or repeat is due.
    pub due_ms: Option<i64>,
    /// Matched a silence when it fired: recorded, not notified.
    pub silenced: bool,
    /// Routing decision.
    pub plan: Plan,
    /// The ECG behind it.
    pub strip: Option<Strip>,
}

/// One audit entry: who did what to an alert, when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Time, µs since the epoch.
    pub at_us: i64,
    /// Who: `engine`, `escalation`, or the token's actor.
    pub actor: String,
    /// What: fired, notified, acknowledged, escalated, resolved, repeat, silenced, …
    pub action: String,
    /// State before.
    pub from: Option<String>,
    /// State after.
    pub to: Option<String>,
    /// Verdict given with it.
    pub verdict: Option<Verdict>,
    /// Free text.
    pub note: Option<String>,
}

/// One notification to one receiver.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryRecord {
    /// Receiver name.
    pub receiver: String,
    /// Receiver kind.
    pub kind: String,
    /// Event (fired, escalated, repeat, resolved, …).
    pub event: String,
    /// Escalation level.
    pub level: i64,
    /// Claimed at, ms.
    pub claimed_ms: i64,
    /// Finished at, ms.
    pub done_ms: Option<i64>,
    /// Outcome, once finished.
    pub ok: Option<bool>,
    /// Attempts made.
    pub attempts: i64,
    /// Last error.
    pub error: Option<String>,
}

/// A silence: alerts of `team` matching `matchers` fire without notifications
/// until `ends_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// Id.
    pub id: String,
    /// Team it applies within.
    pub team: String,
    /// What it matches.
    pub matchers: SilenceMatchers,
    /// Start, ms.
    pub starts_ms: i64,
    /// End, ms.
    pub ends_ms: i64,
    /// Who made it.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

/// Matchers of a silence; every one given must equal the alert's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceMatchers {
    /// Pseudonymous patient.
    #[serde(default)]
    pub patient: Option<String>,
    /// Stream.
    #[serde(default)]
    pub stream: Option<String>,
    /// Condition.
    #[serde(default)]
    pub condition: Option<Condition>,
    /// Priority.
    #[serde(default)]
    pub priority: Option<Priority>,
}

impl SilenceMatchers {
    /// True when every matcher given equals the alert's.
    pub fn matches(&self, a: &AlertRecord) -> bool {
        self.patient.as_deref().is_none_or(|p| p == a.patient)
            && self.stream.as_deref().is_none_or(|s| s == a.stream)
            && self.condition.is_none_or(|c| c == a.condition)
            && self.priority.is_none_or(|p| p == a.priority)
    }

    /// True when nothing is matched on (a silence of everything).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Verdict counts of one rule and model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrecisionRow {
    /// Rule.
    pub rule: String,
    /// Model `id@version`, if the rule's alerts come from a model.
    pub model: Option<String>,
    /// Confirmed alerts.
    pub confirmed: i64,
    /// False alarms.
    pub false_alarm: i64,
    /// Not sure.
    pub not_sure: i64,
    /// confirmed / (confirmed + false alarm), if any of either.
    pub precision: Option<f64>,
}

/// The idempotency key of one notification: alert, event, escalation level, receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryKey<'a> {
    /// Alert id.
    pub alert: &'a str,
    /// Event (`fired`, `escalated`, `repeat-…`, `acknowledged`, `resolved`).
    pub event: &'a str,
    /// Escalation level.
    pub level: i64,
    /// Receiver name.
    pub receiver: &'a str,
}

/// A conditional change of one alert.
#[derive(Debug, Clone, Default)]
pub struct Change<'a> {
    /// Only from these states (any if empty).
    pub from: &'a [AlertState],
    /// Only if the level is this.
    pub expect_level: Option<i64>,
    /// Only if the due time is this (`Some(None)`: only if nothing is due).
    pub expect_due: Option<Option<i64>>,
    /// New state.
    pub state: Option<AlertState>,
    /// New level.
    pub level: Option<i64>,
    /// New due time.
    pub due: Option<Option<i64>>,
    /// Set the first-notification time if unset.
    pub notified: bool,
    /// Acknowledged by.
    pub acked_by: Option<&'a str>,
    /// Verdict.
    pub verdict: Option<Verdict>,
    /// Another team that now sees it.
    pub add_team: Option<&'a str>,
    /// Audit: actor.
    pub actor: &'a str,
    /// Audit: action.
    pub action: &'a str,
    /// Audit: note.
    pub note: Option<&'a str>,
}
