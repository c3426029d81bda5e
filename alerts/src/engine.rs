//! The alert state machine for one alert-service instance.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::SystemTime;

use ecg_types::{Alert, AlertKind, AlertState, Condition, Finding, FindingStatus, StreamId};
use serde::Serialize;

use crate::rules::RuleSet;

/// How many finding keys are remembered for replay de-duplication.
const SEEN_KEYS: usize = 200_000;
/// How many resolved alerts are kept for the console.
const RESOLVED_KEPT: usize = 500;

#[derive(Debug, Default)]
struct Episode {
    present_run: u32,
    absent_run: u32,
    alert: Option<String>,
}

type EpisodeKey = (StreamId, Condition, bool);

/// Turns findings into alert state changes. Synchronous and deterministic: the same
/// findings in the same order give the same alerts, and a finding seen before (same
/// idempotency key, e.g. replayed after a pipeline restart) changes nothing.
#[derive(Debug)]
pub struct AlertEngine {
    rules: RuleSet,
    episodes: HashMap<EpisodeKey, Episode>,
    active: HashMap<String, Alert>,
    resolved: VecDeque<Alert>,
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
    lead_off: HashSet<StreamId>,
}

/// A snapshot for the console and API.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    /// Active alerts, highest priority first, then oldest first.
    pub active: Vec<Alert>,
    /// Recently resolved alerts, newest first.
    pub resolved: Vec<Alert>,
}

impl AlertEngine {
    /// An engine with the given rules.
    pub fn new(rules: RuleSet) -> Self {
        Self {
            rules,
            episodes: HashMap::new(),
            active: HashMap::new(),
            resolved: VecDeque::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            lead_off: HashSet::new(),
        }
    }

    /// Applies one finding; returns the alerts whose state changed.
    pub fn on_finding(&mut self, f: &Finding, now: SystemTime) -> Vec<Alert> {
        // Shadow models are recorded for comparison, never alerted.
        if f.shadow || !self.remember(&f.key) {
            return Vec::new();
        }
        if f.condition == Condition::LeadOff {
            match f.status {
                FindingStatus::Present => {
                    self.lead_off.insert(f.stream.clone());
                }
                FindingStatus::Absent => {
                    self.lead_off.remove(&f.stream);
                }
                FindingStatus::Indeterminate => {}
            }
        }
        let Some(rule) = self.rules.find(f.condition, f.decision_support).cloned() else {
            return Vec::new();
        };
        let inhibited = self.inhibited(&f.stream, f.condition);
        let key = (f.stream.clone(), f.condition, f.decision_support);
        let ep = self.episodes.entry(key).or_default();
        let mut changed = Vec::new();
        match f.status {
            FindingStatus::Present => {
                ep.absent_run = 0;
                ep.present_run = ep.present_run.saturating_add(1);
                if let Some(id) = &ep.alert {
                    if let Some(a) = self.active.get_mut(id) {
                        a.score = f.score.or(a.score);
                        a.value = f.value.or(a.value);
                    }
                } else if ep.present_run >= rule.fire_after && !inhibited {
                    let id = format!(
                        "{}/{}/{}/{}",
                        f.stream,
                        f.condition,
                        if f.decision_support { "ai" } else { "dsp" },
                        f.window_start.0
                    );
                    let alert = Alert {
                        id: id.clone(),
                        patient: f.patient.clone(),
                        stream: f.stream.clone(),
                        condition: f.condition,
                        priority: rule.priority,
                        kind: rule.kind,
                        state: AlertState::Firing,
                        time: now,
                        since: f.window_start,
                        source: f.source.clone(),
                        score: f.score,
                        value: f.value,
                        decision_support: f.decision_support,
                        summary: summary(f, rule.kind),
                    };
                    ep.alert = Some(id.clone());
                    self.active.insert(id, alert.clone());
                    changed.push(alert);
                }
            }
            FindingStatus::Absent => {
                ep.present_run = 0;
                ep.absent_run = ep.absent_run.saturating_add(1);
                if ep.absent_run >= rule.resolve_after {
                    if let Some(id) = ep.alert.take() {
                        if let Some(mut a) = self.active.remove(&id) {
                            a.state = AlertState::Resolved;
                            a.time = now;
                            changed.push(a.clone());
                            self.resolved.push_front(a);
                            self.resolved.truncate(RESOLVED_KEPT);
                        }
                    }
                }
            }
            FindingStatus::Indeterminate => {}
        }
        changed
    }

    /// Marks alerts as delivered to their receivers (firing → notified).
    pub fn mark_notified(&mut self, ids: &[String], now: SystemTime) {
        for id in ids {
            if let Some(a) = self.active.get_mut(id) {
                if a.state == AlertState::Firing {
                    a.state = AlertState::Notified;
                    a.time = now;
                }
            }
        }
    }

    /// The active alert of the episode a finding belongs to (stream, condition,
    /// AI or not), if one is firing.
    pub fn active_alert(
        &self,
        stream: &StreamId,
        condition: Condition,
        decision_support: bool,
    ) -> Option<&Alert> {
        self.episodes
            .get(&(stream.clone(), condition, decision_support))
            .and_then(|e| e.alert.as_ref())
            .and_then(|id| self.active.get(id))
    }

    /// Active and recently resolved alerts.
    pub fn view(&self) -> AlertView {
        let mut active: Vec<Alert> = self.active.values().cloned().collect();
        active.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.since.cmp(&b.since)));
        AlertView {
            active,
            resolved: self.resolved.iter().cloned().collect(),
        }
    }

    fn inhibited(&self, stream: &StreamId, condition: Condition) -> bool {
        if condition.is_technical() {
            return false;
        }
        if self.lead_off.contains(stream) {
            return true;
        }
        condition == Condition::Bradycardia
            && self.active.values().any(|a| {
                &a.stream == stream && matches!(a.condition, Condition::Asystole | Condition::Pause)
            })
    }

    /// Records a key; false if it was seen before.
    fn remember(&mut self, key: &str) -> bool {
        if self.seen.contains(key) {
            return false;
        }
        self.seen.insert(key.to_owned());
        self.seen_order.push_back(key.to_owned());
        if self.seen_order.len() > SEEN_KEYS {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

fn summary(f: &Finding, kind: AlertKind) -> String {
    let what = match f.condition {
        Condition::Bradycardia => "bradycardia",
        Condition::Tachycardia => "tachycardia",
        Condition::Pause => "pause",
        Condition::Asystole => "asystole",
        Condition::AtrialFibrillation => "possible atrial fibrillation",
        Condition::VentricularTachycardia => "possible ventricular tachycardia",
        Condition::VentricularFibrillation => "possible ventricular flutter/fibrillation",
        Condition::ExtremeBradycardia => "extreme bradycardia",
        Condition::ExtremeTachycardia => "extreme tachycardia",
        Condition::FrequentPvcs => "frequent PVCs",
        Condition::LeadOff => "lead off",
        Condition::SignalGap => "signal gap",
        Condition::ClockJump => "device clock jump",
        Condition::PoorSignal => "poor signal",
        Condition::LowEjectionFraction => "low ejection fraction screen positive",
    };
    let mut s = what.to_owned();
    match f.condition {
        Condition::Bradycardia
        | Condition::Tachycardia
        | Condition::ExtremeBradycardia
        | Condition::ExtremeTachycardia
        | Condition::VentricularTachycardia => {
            if let Some(v) = f.value {
                s.push_str(&format!(", {v:.0} bpm"));
            }
        }
        Condition::Pause | Condition::Asystole => {
            if let Some(v) = f.value {
                s.push_str(&format!(", {v:.1} s without a beat"));
            }
        }
        _ => {}
    }
    if let Some(p) = f.score {
        s.push_str(&format!(", score {p:.2}"));
    }
    // The evidence's first clause: which leads raised it, or what suppressed it.
    if let Some(r) = f.reason.as_deref().and_then(|r| r.split(';').next()) {
        if !r.is_empty() {
            s.push_str("; ");
            s.push_str(r.trim());
        }
    }
    if kind == AlertKind::AiScreening || f.decision_support {
        s.push_str(" (AI decision support, not a diagnosis)");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecg_types::{DeviceTimeUs, FindingSource, PatientId, Priority};

    fn finding(stream: &str, c: Condition, status: FindingStatus, t: i64) -> Finding {
        let stream = StreamId::new(stream).unwrap();
        let source = FindingSource::Detector {
            name: "rhythm".into(),
        };
        Finding {
            key: Finding::make_key(&stream, &source, c, DeviceTimeUs(t)),
            stream,
            patient: PatientId::new("p1").unwrap(),
            source,
            condition: c,
            status,
            window_start: DeviceTimeUs(t),
            window_end: DeviceTimeUs(t + 10),
            score: None,
            value: Some(45.0),
            decision_support: false,
            shadow: false,
            strip: None,
            reason: None,
            episode_start: None,
            episode_end: None,
        }
    }

    #[test]
    fn fires_after_hysteresis_groups_and_resolves() {
        let mut e = AlertEngine::new(RuleSet::default());
        let now = SystemTime::now();
        use Condition::Bradycardia as B;
        use FindingStatus::*;
        assert!(e.on_finding(&finding("s", B, Present, 0), now).is_empty());
        let fired = e.on_finding(&finding("s", B, Present, 1), now);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].state, AlertState::Firing);
        assert_eq!(fired[0].priority, Priority::Medium);
        // More windows of the same episode: no new alert.
        assert!(e.on_finding(&finding("s", B, Present, 2), now).is_empty());
        assert!(e
            .on_finding(&finding("s", B, Indeterminate, 3), now)
            .is_empty());
        assert!(e.on_finding(&finding("s", B, Absent, 4), now).is_empty());
        let resolved = e.on_finding(&finding("s", B, Absent, 5), now);
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].state, AlertState::Resolved);
        assert_eq!(resolved[0].id, fired[0].id);
        assert!(e.view().active.is_empty());
        assert_eq!(e.view().resolved.len(), 1);
    }

    #[test]
    fn a_lethal_alarm_fires_at_once_and_its_summary_names_the_evidence() {
        let mut e = AlertEngine::new(RuleSet::default());
        let mut f = finding(
            "s",
            Condition::VentricularTachycardia,
            FindingStatus::Present,
            0,
        );
        f.value = Some(172.4);
        f.reason = Some(
            "raised by 2 of 3 usable lead(s): II, V1; lead quality I 0.31, II 0.97, V1 0.95; \
             heart rate 172 bpm"
                .into(),
        );
        let fired = e.on_finding(&f, SystemTime::now());
        assert_eq!(fired.len(), 1, "fire_after 1 for the lethal set");
        assert_eq!(fired[0].priority, Priority::High);
        assert_eq!(
            fired[0].summary,
            "possible ventricular tachycardia, 172 bpm; raised by 2 of 3 usable lead(s): II, V1"
        );
    }

    #[test]
    fn shadow_findings_never_alert() {
        let mut e = AlertEngine::new(RuleSet::default());
        let now = SystemTime::now();
        for t in 0..5 {
            let mut f = finding("s", Condition::Asystole, FindingStatus::Present, t);
            f.shadow = true;
            assert!(e.on_finding(&f, now).is_empty());
        }
        assert!(e.view().active.is_empty());
        // The same finding from an active source fires at once.
        let f = finding("s", Condition::Asystole, FindingStatus::Present, 9);
        assert_eq!(e.on_finding(&f, now).len(), 1);
    }

    #[test]
    fn replayed_findings_change_nothing() {
        let mut e = AlertEngine::new(RuleSet::default());
        let now = SystemTime::now();
        let f = finding("s", Condition::Asystole, FindingStatus::Present, 7);
        assert_eq!(e.on_finding(&f, now).len(), 1);
        let g = finding("s", Condition::Asystole, FindingStatus::Absent, 8);
        e.on_finding(&g, now);
        // A replay of the first finding is recognised by its key.
        assert!(e.on_finding(&f, now).is_empty());
        assert_eq!(e.view().active.len(), 1);
    }

    #[test]
    fn lead_off_inhibits_rhythm_and_asystole_inhibits_bradycardia() {
        let mut e = AlertEngine::new(RuleSet::default());
        let now = SystemTime::now();
        use FindingStatus::*;
        let off = e.on_finding(&finding("s", Condition::LeadOff, Present, 0), now);
        assert_eq!(off[0].kind, AlertKind::Technical);
        assert!(e
            .on_finding(&finding("s", Condition::Asystole, Present, 1), now)
            .is_empty());
        e.on_finding(&finding("s", Condition::LeadOff, Absent, 2), now);
        assert_eq!(
            e.on_finding(&finding("s", Condition::Asystole, Present, 3), now)
                .len(),
            1
        );
        e.on_finding(&finding("s", Condition::Bradycardia, Present, 4), now);
        assert!(e
            .on_finding(&finding("s", Condition::Bradycardia, Present, 5), now)
            .is_empty());
        // Another stream is not inhibited.
        e.on_finding(&finding("t", Condition::Bradycardia, Present, 4), now);
        assert_eq!(
            e.on_finding(&finding("t", Condition::Bradycardia, Present, 5), now)
                .len(),
            1
        );
    }

    #[test]
    fn ai_findings_are_screening_notifications() {
        let mut e = AlertEngine::new(RuleSet::default());
        let mut f = finding(
            "s",
            Condition::AtrialFibrillation,
            FindingStatus::Present,
            0,
        );
        f.decision_support = true;
        f.score = Some(0.93);
        let a = e.on_finding(&f, SystemTime::now());
        assert_eq!(a[0].kind, AlertKind::AiScreening);
        assert!(
            a[0].summary.contains("decision support"),
            "{}",
            a[0].summary
        );
    }
}
