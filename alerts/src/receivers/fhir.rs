//! FHIR receiver: each notification as a `Communication`, POSTed to
//! `{base_url}/Communication`.
//!
//! The resource (built by [`communication`], mapping in `docs/receivers.md`):
//!
//! - `identifier`: the alert id (`urn:cardiostream:alert`) and the notification's
//!   idempotency key (`urn:cardiostream:notification`); the POST is a conditional
//!   create on the latter (`If-None-Exist`), so a retried POST does not duplicate it;
//! - `status` `in-progress` while the alert is open (fired, repeat, escalated),
//!   `completed` once it is acknowledged or resolved; `category` `alert`;
//!   `priority` high → `stat`, medium → `asap`, low → `routine`;
//! - `subject` `Patient/<pseudonymous id>`, `sent`, `recipient` (care team and unit,
//!   on-call person), `payload` (the summary, with "decision support, not a diagnosis"
//!   for AI findings, and the console link);
//! - `contained`: a `DetectedIssue` (`#issue`: condition code, severity, detail) and,
//!   where the alert has a measured value or a model score, an `Observation` each
//!   (`#value`, `#score`, `valueQuantity`); `about` references them.
//!
//! R5 differs only where R5 does: `payload.contentCodeableConcept` instead of
//! `contentString`, `DetectedIssue.subject` instead of `patient`.

use std::fmt;
use std::time::SystemTime;

use ecg_types::{system_time_from_us, AlertKind, Condition, Priority};
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{check_url, classify, client};
use super::webhook::{
    default_backoff_ms, default_max_attempts, default_max_backoff_ms, default_timeout_ms,
};
use super::{
    clamp_time, secret_from_env, with_retries, Delivered, DeliveryError, Notification,
    NotificationEvent, ReceiverError, RetryPolicy, Secret,
};

/// FHIR media type.
pub const FHIR_JSON: &str = "application/fhir+json";
/// Identifier system of alert ids.
pub const ALERT_ID_SYSTEM: &str = "urn:cardiostream:alert";
/// Identifier system of notification idempotency keys.
pub const NOTIFICATION_ID_SYSTEM: &str = "urn:cardiostream:notification";
/// Code system of cardiostream's conditions (`Condition` names in snake_case).
pub const CONDITION_SYSTEM: &str = "urn:cardiostream:condition";
/// Code system of notification events (`fired`, `repeat`, …).
pub const EVENT_SYSTEM: &str = "urn:cardiostream:notification-event";

const UCUM: &str = "http://unitsofmeasure.org";
const LOINC: &str = "http://loinc.org";

/// Which FHIR release the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FhirVersion {
    /// FHIR R4 (4.0.1).
    #[default]
    R4,
    /// FHIR R5 (5.0.0).
    R5,
}

/// Settings of a FHIR receiver (`kind = "fhir"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirConfig {
    /// The server's base URL; resources are POSTed to `{base_url}/Communication`.
    pub base_url: String,
    /// `r4` (default) or `r5`.
    #[serde(default)]
    pub fhir_version: FhirVersion,
    /// Environment variable holding a bearer token for `Authorization`, if the server
    /// wants one.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// Timeout of one attempt, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts before giving up, the first included.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Pause after the first failed attempt, doubled after each further failure.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Longest pause between attempts.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

pub(crate) struct Fhir {
    endpoint: reqwest::Url,
    version: FhirVersion,
    token: Option<Secret>,
    client: reqwest::Client,
    retry: RetryPolicy,
}

impl fmt::Debug for Fhir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fhir")
            .field("host", &self.endpoint.host_str())
            .field("version", &self.version)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Fhir {
    pub(crate) fn new(name: &str, c: &FhirConfig) -> Result<Self, ReceiverError> {
        let base = check_url(name, "base_url", &c.base_url)?;
        let mut endpoint = base.clone();
        let path = format!("{}/Communication", base.path().trim_end_matches('/'));
        endpoint.set_path(&path);
        let token = match &c.bearer_token_env {
            Some(var) => Some(secret_from_env(name, var, "the FHIR bearer token")?),
            None => None,
        };
        Ok(Self {
            endpoint,
            version: c.fhir_version,
            token,
            client: client(name, c.timeout_ms)?,
            retry: RetryPolicy::new(name, c.max_attempts, c.backoff_ms, c.max_backoff_ms)?,
        })
    }

    pub(crate) async fn deliver(
        &self,
        name: &str,
        n: &Notification,
    ) -> Result<Delivered, DeliveryError> {
        let resource = communication(n, self.version, SystemTime::now());
        let body = serde_json::to_vec(&resource).map_err(|e| DeliveryError {
            attempts: 0,
            message: format!("receiver {name:?}: cannot encode resource: {e}"),
            retryable: false,
        })?;
        let if_none_exist = format!(
            "identifier={}|{}",
            percent_encode(NOTIFICATION_ID_SYSTEM),
            percent_encode(&n.idempotency_key())
        );
        with_retries(name, &self.retry, |_| {
            let mut req = self
                .client
                .post(self.endpoint.clone())
                .header(reqwest::header::CONTENT_TYPE, FHIR_JSON)
                .header(reqwest::header::ACCEPT, FHIR_JSON)
                .header("If-None-Exist", if_none_exist.clone())
                .header("Prefer", "return=minimal")
                .body(body.clone());
            if let Some(t) = &self.token {
                req = req.bearer_auth(t.expose());
            }
            async move { classify(req.send().await) }
        })
        .await
    }
}

/// The `Communication` resource for a notification, as JSON.
///
/// `sent` is the time of sending (`now`); the contained resources carry the alert's
/// own times (`identifiedDateTime`/`effectiveDateTime` from the alert's start).
pub fn communication(n: &Notification, version: FhirVersion, now: SystemTime) -> Value {
    let a = &n.alert;
    let patient = json!({ "reference": format!("Patient/{}", a.patient) });
    let started = instant(system_time_from_us(a.since.0));
    let record_status = if a.decision_support {
        "preliminary"
    } else {
        "final"
    };
    let source = json!({ "display": a.source.label() });

    let mut contained = Vec::new();
    let mut evidence = Vec::new();
    let mut about = vec![json!({ "reference": "#issue" })];
    if let Some(v) = a.value {
        let (text, unit, code, loinc) = value_meaning(a.condition);
        let mut coding = vec![
            json!({ "system": CONDITION_SYSTEM, "code": format!("{}-value", a.condition), "display": text }),
        ];
        if let Some(l) = loinc {
            coding.insert(0, json!({ "system": LOINC, "code": l, "display": text }));
        }
        contained.push(observation(
            "value",
            json!({ "coding": coding, "text": text }),
            json!({ "value": round(v), "unit": unit, "system": UCUM, "code": code }),
            record_status,
            &patient,
            &started,
            &source,
            a.decision_support,
        ));
        evidence.push(json!({ "reference": "#value" }));
        about.push(json!({ "reference": "#value" }));
    }
    if let Some(s) = a.score {
        let text = format!("model score for {}", condition_text(a.condition));
        contained.push(observation(
            "score",
            json!({
                "coding": [{ "system": CONDITION_SYSTEM, "code": format!("{}-score", a.condition), "display": text }],
                "text": text,
            }),
            json!({ "value": round(s), "unit": "probability", "system": UCUM, "code": "1" }),
            record_status,
            &patient,
            &started,
            &source,
            a.decision_support,
        ));
        evidence.push(json!({ "reference": "#score" }));
        about.push(json!({ "reference": "#score" }));
    }

    let mut issue = json!({
        "resourceType": "DetectedIssue",
        "id": "issue",
        "identifier": [{ "system": ALERT_ID_SYSTEM, "value": a.id }],
        "status": record_status,
        "code": {
            "coding": [{
                "system": CONDITION_SYSTEM,
                "code": a.condition.as_str(),
                "display": condition_text(a.condition),
            }],
            "text": condition_text(a.condition),
        },
        "severity": match a.priority {
            Priority::High => "high",
            Priority::Medium => "moderate",
            Priority::Low => "low",
        },
        "identifiedDateTime": started,
        "author": source,
        "detail": text_with_note(&a.summary, a.decision_support),
    });
    let subject_key = match version {
        FhirVersion::R4 => "patient",
        FhirVersion::R5 => "subject",
    };
    issue[subject_key] = patient.clone();
    if !evidence.is_empty() {
        issue["evidence"] = json!([{ "detail": evidence }]);
    }
    contained.insert(0, issue);

    let text = text_with_note(&a.summary, a.decision_support);
    let mut payload = vec![match version {
        FhirVersion::R4 => json!({ "contentString": text }),
        FhirVersion::R5 => json!({ "contentCodeableConcept": { "text": text } }),
    }];
    if let Some(url) = &n.console_url {
        payload.push(json!({
            "contentAttachment": { "contentType": "text/html", "url": url, "title": "alert in the care-team console" }
        }));
    }

    let team = match &n.unit {
        Some(u) => format!("{}, {u}", n.team),
        None => n.team.clone(),
    };
    let mut recipient = vec![json!({ "type": "CareTeam", "display": team })];
    if let Some(r) = &n.recipient {
        recipient.push(json!({
            "type": "Practitioner",
            "identifier": { "system": "urn:cardiostream:on-call", "value": r },
            "display": r,
        }));
    }

    let status = match n.event {
        NotificationEvent::Fired | NotificationEvent::Repeat | NotificationEvent::Escalated => {
            "in-progress"
        }
        NotificationEvent::Acknowledged | NotificationEvent::Resolved => "completed",
    };
    let event_text = match (n.event, n.escalation_level) {
        (NotificationEvent::Escalated, l) => format!("alert escalated (level {l})"),
        (e, _) => format!("alert {e}"),
    };
    let kind = match a.kind {
        AlertKind::Physiological => "physiological",
        AlertKind::Technical => "technical",
        AlertKind::AiScreening => "AI screening (decision support)",
    };

    json!({
        "resourceType": "Communication",
        "contained": contained,
        "identifier": [
            { "system": ALERT_ID_SYSTEM, "value": a.id },
            { "system": NOTIFICATION_ID_SYSTEM, "value": n.idempotency_key() },
        ],
        "status": status,
        "category": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/communication-category",
                "code": "alert",
                "display": "Alert",
            }],
            "text": format!("{kind} alert"),
        }],
        "priority": match a.priority {
            Priority::High => "stat",
            Priority::Medium => "asap",
            Priority::Low => "routine",
        },
        "subject": patient,
        "topic": {
            "coding": [{ "system": EVENT_SYSTEM, "code": n.event.as_str() }],
            "text": event_text,
        },
        "about": about,
        "sent": instant(now),
        "recipient": recipient,
        "sender": { "type": "Device", "display": "cardiostream alert service" },
        "payload": payload,
    })
}

#[allow(clippy::too_many_arguments)]
fn observation(
    id: &str,
    code: Value,
    quantity: Value,
    status: &str,
    patient: &Value,
    effective: &str,
    source: &Value,
    decision_support: bool,
) -> Value {
    let mut o = json!({
        "resourceType": "Observation",
        "id": id,
        "status": status,
        "code": code,
        "subject": patient,
        "effectiveDateTime": effective,
        "valueQuantity": quantity,
        "device": source,
    });
    if decision_support {
        o["note"] = json!([{ "text": "AI decision support, not a diagnosis" }]);
    }
    o
}

/// What an alert's `value` measures, per condition: text, UCUM unit (display and
/// code) and a LOINC code where one fits.
pub(crate) fn value_meaning(
    c: Condition,
) -> (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
) {
    match c {
        Condition::Bradycardia
        | Condition::Tachycardia
        | Condition::VentricularTachycardia
        | Condition::ExtremeBradycardia
        | Condition::ExtremeTachycardia => ("Heart rate", "beats/min", "/min", Some("8867-4")),
        Condition::VentricularFibrillation => ("Dominant frequency", "Hz", "Hz", None),
        Condition::Pause | Condition::Asystole => ("Longest RR interval", "s", "s", None),
        Condition::SignalGap => ("Signal gap length", "s", "s", None),
        Condition::ClockJump => ("Device clock jump", "s", "s", None),
        Condition::FrequentPvcs => ("PVCs per minute", "/min", "/min", None),
        Condition::AtrialFibrillation => ("RR irregularity", "1", "1", None),
        Condition::LeadOff | Condition::PoorSignal | Condition::LowEjectionFraction => {
            ("Measured value", "1", "1", None)
        }
    }
}

/// Human-readable condition name.
pub(crate) fn condition_text(c: Condition) -> &'static str {
    match c {
        Condition::Bradycardia => "bradycardia",
        Condition::Tachycardia => "tachycardia",
        Condition::Pause => "pause",
        Condition::Asystole => "asystole",
        Condition::AtrialFibrillation => "atrial fibrillation",
        Condition::VentricularTachycardia => "ventricular tachycardia",
        Condition::VentricularFibrillation => "ventricular flutter/fibrillation",
        Condition::ExtremeBradycardia => "extreme bradycardia",
        Condition::ExtremeTachycardia => "extreme tachycardia",
        Condition::FrequentPvcs => "frequent PVCs",
        Condition::LeadOff => "lead off",
        Condition::SignalGap => "signal gap",
        Condition::ClockJump => "device clock jump",
        Condition::PoorSignal => "poor signal",
        Condition::LowEjectionFraction => "low ejection fraction screen",
    }
}

/// The summary, with the decision-support note appended where it applies and the
/// summary does not already say it.
pub(crate) fn text_with_note(summary: &str, decision_support: bool) -> String {
    if decision_support && !summary.contains("not a diagnosis") {
        format!("{summary} (AI decision support, not a diagnosis)")
    } else {
        summary.to_owned()
    }
}

fn instant(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(clamp_time(t)).to_string()
}

/// f32 to f64 at the precision an f32 carries (0.93f32 stays 0.93, not 0.9300000071).
fn round(v: f32) -> f64 {
    let s = format!("{v}");
    s.parse().unwrap_or(f64::from(v))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecg_types::{Alert, AlertState, DeviceTimeUs, FindingSource, PatientId, StreamId};

    fn note(decision_support: bool) -> Notification {
        Notification {
            alert: Alert {
                id: "s1/atrial_fibrillation/ai/1700000000000000".into(),
                patient: PatientId::new("p-7f3a").unwrap(),
                stream: StreamId::new("s1").unwrap(),
                condition: Condition::AtrialFibrillation,
                priority: Priority::Low,
                kind: AlertKind::AiScreening,
                state: AlertState::Firing,
                time: system_time_from_us(1_700_000_030_000_000),
                since: DeviceTimeUs(1_700_000_000_000_000),
                source: FindingSource::Model {
                    id: "af-rr".into(),
                    version: "1".into(),
                },
                score: Some(0.93),
                value: None,
                decision_support,
                summary: "possible atrial fibrillation, score 0.93".into(),
            },
            event: NotificationEvent::Fired,
            team: "cardiology".into(),
            unit: Some("ward-3".into()),
            recipient: None,
            escalation_level: 0,
            console_url: None,
            sequence: 0,
        }
    }

    #[test]
    fn r4_communication_maps_the_alert() {
        let c = communication(&note(true), FhirVersion::R4, system_time_from_us(0));
        assert_eq!(c["resourceType"], "Communication");
        assert_eq!(c["priority"], "routine");
        assert_eq!(c["status"], "in-progress");
        assert_eq!(c["sent"], "1970-01-01T00:00:00.000Z");
        assert_eq!(c["subject"]["reference"], "Patient/p-7f3a");
        assert_eq!(
            c["payload"][0]["contentString"],
            "possible atrial fibrillation, score 0.93 (AI decision support, not a diagnosis)"
        );
        let issue = &c["contained"][0];
        assert_eq!(issue["resourceType"], "DetectedIssue");
        assert_eq!(issue["patient"]["reference"], "Patient/p-7f3a");
        assert_eq!(issue["severity"], "low");
        assert_eq!(issue["status"], "preliminary");
        assert_eq!(issue["identifiedDateTime"], "2023-11-14T22:13:20.000Z");
        let score = &c["contained"][1];
        assert_eq!(score["id"], "score");
        assert_eq!(score["valueQuantity"]["value"], 0.93);
        assert_eq!(issue["evidence"][0]["detail"][0]["reference"], "#score");
        let about: Vec<&str> = c["about"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["reference"].as_str().unwrap())
            .collect();
        assert_eq!(about, ["#issue", "#score"]);
        assert_eq!(c["recipient"][0]["display"], "cardiology, ward-3");
    }

    #[test]
    fn r5_uses_r5_element_names() {
        let c = communication(&note(false), FhirVersion::R5, SystemTime::now());
        assert_eq!(
            c["payload"][0]["contentCodeableConcept"]["text"],
            "possible atrial fibrillation, score 0.93"
        );
        assert!(c["payload"][0].get("contentString").is_none());
        assert_eq!(c["contained"][0]["subject"]["reference"], "Patient/p-7f3a");
        assert!(c["contained"][0].get("patient").is_none());
    }

    #[test]
    fn endpoint_and_conditional_create_key() {
        let cfg = FhirConfig {
            base_url: "http://fhir.example.org/r4/".into(),
            fhir_version: FhirVersion::R4,
            bearer_token_env: None,
            timeout_ms: 1000,
            max_attempts: 1,
            backoff_ms: 1,
            max_backoff_ms: 1,
        };
        let f = Fhir::new("f", &cfg).unwrap();
        assert_eq!(
            f.endpoint.as_str(),
            "http://fhir.example.org/r4/Communication"
        );
        assert_eq!(percent_encode("a/b|c d"), "a%2Fb%7Cc%20d");
    }
}
