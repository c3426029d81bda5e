use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{Condition, DeviceTimeUs, FindingSource, PatientId, StreamId};

/// Alarm priority, as IEC 60601-1-8 grades alarm conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Immediate response required (e.g. asystole).
    High,
    /// Prompt response required (e.g. atrial fibrillation).
    Medium,
    /// Awareness (e.g. a technical condition, an AI screening notification).
    Low,
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// About the patient's physiology.
    Physiological,
    /// About the equipment or the signal.
    Technical,
    /// An AI screening result: decision support, not a diagnosis.
    AiScreening,
}

impl Priority {
    /// The name used in JSON, metric labels and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
        }
    }
}

impl AlertKind {
    /// The name used in JSON, metric labels and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Physiological => "physiological",
            AlertKind::Technical => "technical",
            AlertKind::AiScreening => "ai_screening",
        }
    }
}

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Raised, not yet delivered.
    Firing,
    /// Delivered to its receivers.
    Notified,
    /// A clinician took it.
    Acknowledged,
    /// Not acknowledged in time; passed up the escalation chain.
    Escalated,
    /// The condition cleared or a clinician resolved it.
    Resolved,
}

impl AlertState {
    /// The name used in JSON, metric labels and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Notified => "notified",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Escalated => "escalated",
            AlertState::Resolved => "resolved",
        }
    }
}

/// An alert for a care team, as the alert service emits it on every state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable id of the alert: the same patient, stream and condition episode keep it.
    pub id: String,
    /// Pseudonymous patient.
    pub patient: PatientId,
    /// The stream that raised it.
    pub stream: StreamId,
    /// The condition.
    pub condition: Condition,
    /// Priority.
    pub priority: Priority,
    /// Physiological, technical or AI screening.
    pub kind: AlertKind,
    /// State after this change.
    pub state: AlertState,
    /// Wall-clock time of this state change, RFC 3339 UTC.
    #[serde(with = "rfc3339")]
    pub time: SystemTime,
    /// Device time of the start of the first window that raised it.
    pub since: DeviceTimeUs,
    /// Who produced the finding behind it.
    pub source: FindingSource,
    /// Model score, where a model produced it.
    pub score: Option<f32>,
    /// Measured value (heart rate, pause length), where there is one.
    pub value: Option<f32>,
    /// True when it comes from an AI model: decision support, not a diagnosis.
    pub decision_support: bool,
    /// One human-readable line.
    pub summary: String,
}

mod rfc3339 {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*t))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&s).map_err(serde::de::Error::custom)
    }
}

/// Converts device microseconds since the epoch to a `SystemTime`.
pub fn system_time_from_us(us: i64) -> SystemTime {
    if us >= 0 {
        UNIX_EPOCH + Duration::from_micros(us.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_micros(us.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_str_is_the_json_name() {
        let json = |v: serde_json::Value| v.as_str().unwrap().to_owned();
        for p in [Priority::High, Priority::Medium, Priority::Low] {
            assert_eq!(json(serde_json::to_value(p).unwrap()), p.as_str());
        }
        for k in [
            AlertKind::Physiological,
            AlertKind::Technical,
            AlertKind::AiScreening,
        ] {
            assert_eq!(json(serde_json::to_value(k).unwrap()), k.as_str());
        }
        for st in [
            AlertState::Firing,
            AlertState::Notified,
            AlertState::Acknowledged,
            AlertState::Escalated,
            AlertState::Resolved,
        ] {
            assert_eq!(json(serde_json::to_value(st).unwrap()), st.as_str());
        }
    }

    #[test]
    fn alert_json_has_contract_fields() {
        let a = Alert {
            id: "a1".into(),
            patient: PatientId::new("p1").unwrap(),
            stream: StreamId::new("s1").unwrap(),
            condition: Condition::AtrialFibrillation,
            priority: Priority::Medium,
            kind: AlertKind::Physiological,
            state: AlertState::Firing,
            time: system_time_from_us(1_700_000_000_000_000),
            since: DeviceTimeUs(1_700_000_000_000_000),
            source: FindingSource::Detector {
                name: "rhythm".into(),
            },
            score: None,
            value: Some(112.0),
            decision_support: false,
            summary: "AF".into(),
        };
        let v: serde_json::Value = serde_json::to_value(&a).unwrap();
        assert_eq!(v["patient"], "p1");
        assert_eq!(v["condition"], "atrial_fibrillation");
        assert_eq!(v["priority"], "medium");
        assert_eq!(v["state"], "firing");
        assert_eq!(v["time"], "2023-11-14T22:13:20.000Z");
        let back: Alert = serde_json::from_value(v).unwrap();
        assert_eq!(back, a);
    }
}
