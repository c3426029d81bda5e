//! Receivers against real peers on 127.0.0.1: an axum HTTP server that checks webhook
//! signatures and records FHIR resources, and tokio MLLP listeners that parse the
//! `ORU^R40` and answer with an ACK of their choosing (or not at all).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use ecg_alerts::receivers::fhir::FhirConfig;
use ecg_alerts::receivers::hl7::Hl7Config;
use ecg_alerts::receivers::webhook::WebhookConfig;
use ecg_alerts::receivers::{
    verify_signature, FhirVersion, Notification, NotificationEvent, Receiver, ReceiverConfig,
    ReceiverError, Secret,
};
use ecg_types::{
    system_time_from_us, Alert, AlertKind, AlertState, Condition, DeviceTimeUs, FindingSource,
    PatientId, Priority, StreamId,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SECRET: &str = "test-hmac-key";

fn asystole() -> Notification {
    Notification {
        alert: Alert {
            id: "bed-12/asystole/dsp/1700000000000000".into(),
            patient: PatientId::new("p-7f3a").unwrap(),
            stream: StreamId::new("bed-12").unwrap(),
            condition: Condition::Asystole,
            priority: Priority::High,
            kind: AlertKind::Physiological,
            state: AlertState::Firing,
            time: system_time_from_us(1_700_000_004_500_000),
            since: DeviceTimeUs(1_700_000_000_000_000),
            source: FindingSource::Detector {
                name: "rhythm".into(),
            },
            score: None,
            value: Some(4.5),
            decision_support: false,
            summary: "asystole, 4.5 s without a beat | check leads & patient".into(),
        },
        event: NotificationEvent::Fired,
        team: "cardiology".into(),
        unit: Some("ward-3".into()),
        recipient: None,
        escalation_level: 0,
        console_url: Some("http://console.example.org/alerts/1".into()),
        sequence: 0,
    }
}

fn ai_af_escalated() -> Notification {
    Notification {
        alert: Alert {
            id: "wear-9/atrial_fibrillation/ai/1700000000000000".into(),
            patient: PatientId::new("p-0c11").unwrap(),
            stream: StreamId::new("wear-9").unwrap(),
            condition: Condition::AtrialFibrillation,
            priority: Priority::Medium,
            kind: AlertKind::AiScreening,
            state: AlertState::Escalated,
            time: system_time_from_us(1_700_000_600_000_000),
            since: DeviceTimeUs(1_700_000_000_000_000),
            source: FindingSource::Model {
                id: "af-rr".into(),
                version: "1.0.0".into(),
            },
            score: Some(0.93),
            value: Some(0.21),
            decision_support: true,
            summary: "possible atrial fibrillation, score 0.93".into(),
        },
        event: NotificationEvent::Escalated,
        team: "cardiology".into(),
        unit: None,
        recipient: Some("dr-lee".into()),
        escalation_level: 1,
        console_url: None,
        sequence: 0,
    }
}

// ---------------------------------------------------------------- HTTP peer

#[derive(Debug, Clone)]
struct Request {
    path: String,
    headers: HeaderMap,
    body: Bytes,
    signature_ok: bool,
}

#[derive(Debug, Default)]
struct Peer {
    /// Statuses to answer with, in order; 200 (webhook) or 201 (FHIR) once used up.
    script: Mutex<VecDeque<u16>>,
    ok: u16,
    seen: Mutex<Vec<Request>>,
}

impl Peer {
    fn seen(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

async fn http_peer(script: &[u16], ok: u16) -> (String, Arc<Peer>) {
    let peer = Arc::new(Peer {
        script: Mutex::new(script.iter().copied().collect()),
        ok,
        seen: Mutex::default(),
    });
    let st = peer.clone();
    let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let st = st.clone();
        async move { answer(&st, uri, headers, body) }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), peer)
}

fn answer(peer: &Peer, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let signature_ok = verify_signature(
        SECRET.as_bytes(),
        &header("x-cardiostream-timestamp"),
        &header("idempotency-key"),
        &body,
        &header("x-cardiostream-signature"),
    );
    peer.seen.lock().unwrap().push(Request {
        path: uri.path().to_owned(),
        headers: headers.clone(),
        body,
        signature_ok,
    });
    let status = peer.script.lock().unwrap().pop_front().unwrap_or(peer.ok);
    let status = StatusCode::from_u16(status).unwrap();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return (status, [("retry-after", "0")]).into_response();
    }
    status.into_response()
}

fn webhook(url: &str, max_attempts: u32) -> Receiver {
    let cfg = ReceiverConfig::Webhook(WebhookConfig {
        url: url.into(),
        secret_env: None,
        secret: Some(Secret::new(SECRET)),
        timeout_ms: 1000,
        max_attempts,
        backoff_ms: 10,
        max_backoff_ms: 40,
    });
    Receiver::new("pager-hook", &cfg).unwrap()
}

#[tokio::test]
async fn webhook_retries_503_and_delivers_signed_json() {
    let (base, peer) = http_peer(&[503, 503], 200).await;
    let r = webhook(&format!("{base}/hooks/cardiostream"), 5);
    assert_eq!(r.kind(), "webhook");
    assert_eq!(r.name(), "pager-hook");
    let n = asystole();
    let d = r.deliver(&n).await.unwrap();
    assert_eq!(d.attempts, 3);
    let seen = peer.seen();
    assert_eq!(seen.len(), 3);
    for req in &seen {
        assert_eq!(req.path, "/hooks/cardiostream");
        assert!(req.signature_ok, "bad signature: {:?}", req.headers);
        assert_eq!(req.headers["content-type"], "application/json");
        assert_eq!(
            req.headers["idempotency-key"],
            "bed-12/asystole/dsp/1700000000000000/fired/0"
        );
        let ts: u64 = req.headers["x-cardiostream-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(ts > 1_700_000_000);
        // The body is the documented shape and round-trips to the notification.
        let back: Notification = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(back, n);
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["event"], "fired");
        assert_eq!(v["team"], "cardiology");
        assert_eq!(v["unit"], "ward-3");
        assert_eq!(v["escalation_level"], 0);
        assert_eq!(v["alert"]["patient"], "p-7f3a");
        assert_eq!(v["alert"]["priority"], "high");
    }
    // A signature does not verify with another key or a tampered body.
    let req = &seen[0];
    let ts = req.headers["x-cardiostream-timestamp"].to_str().unwrap();
    let key = req.headers["idempotency-key"].to_str().unwrap();
    let sig = req.headers["x-cardiostream-signature"].to_str().unwrap();
    assert!(!verify_signature(b"other-key", ts, key, &req.body, sig));
    let mut tampered = req.body.to_vec();
    tampered[10] ^= 1;
    assert!(!verify_signature(
        SECRET.as_bytes(),
        ts,
        key,
        &tampered,
        sig
    ));
}

#[tokio::test]
async fn webhook_retries_429() {
    let (base, peer) = http_peer(&[429], 200).await;
    let d = webhook(&base, 5).deliver(&asystole()).await.unwrap();
    assert_eq!(d.attempts, 2);
    assert_eq!(peer.seen().len(), 2);
}

#[tokio::test]
async fn webhook_400_fails_at_once() {
    let (base, peer) = http_peer(&[400], 200).await;
    let e = webhook(&base, 5).deliver(&asystole()).await.unwrap_err();
    assert_eq!(e.attempts, 1);
    assert!(!e.retryable);
    assert!(e.message.contains("pager-hook"), "{e}");
    assert!(e.message.contains("400"), "{e}");
    // Nothing from the alert but its id ever goes into an error.
    assert!(!e.to_string().contains("p-7f3a"), "{e}");
    assert_eq!(peer.seen().len(), 1);
}

#[tokio::test]
async fn webhook_unreachable_gives_up_after_max_attempts() {
    let port = free_port().await;
    let started = std::time::Instant::now();
    let e = webhook(&format!("http://127.0.0.1:{port}/hook"), 3)
        .deliver(&asystole())
        .await
        .unwrap_err();
    assert_eq!(e.attempts, 3);
    assert!(e.retryable);
    assert!(e.message.contains("pager-hook"), "{e}");
    assert!(e.message.contains("connect"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn receiver_new_gives_clear_errors() {
    let hook = |url: &str, secret_env: Option<&str>| {
        ReceiverConfig::Webhook(WebhookConfig {
            url: url.into(),
            secret_env: secret_env.map(str::to_owned),
            secret: if secret_env.is_some() {
                None
            } else {
                Some(Secret::new(SECRET))
            },
            timeout_ms: 1000,
            max_attempts: 3,
            backoff_ms: 10,
            max_backoff_ms: 40,
        })
    };
    let e = Receiver::new(
        "w",
        &hook("http://h/x", Some("CARDIOSTREAM_TEST_UNSET_SECRET")),
    )
    .unwrap_err();
    assert!(matches!(e, ReceiverError::MissingEnv { .. }));
    assert!(
        e.to_string().contains("CARDIOSTREAM_TEST_UNSET_SECRET"),
        "{e}"
    );
    let e = Receiver::new("w", &hook("mailto:ops@example.org", None)).unwrap_err();
    assert!(e.to_string().contains("url"), "{e}");
    let hl7 = ReceiverConfig::Hl7Mllp(Hl7Config {
        addr: "acm.example.org".into(),
        sending_facility: "HOSP".into(),
        receiving_application: "ACM".into(),
        receiving_facility: None,
        ack_timeout_ms: 100,
        max_attempts: 1,
        backoff_ms: 1,
        max_backoff_ms: 1,
    });
    let e = Receiver::new("acm", &hl7).unwrap_err();
    assert!(e.to_string().contains("addr"), "{e}");
    assert!(e.to_string().contains("host:port"), "{e}");
}

// ---------------------------------------------------------------- FHIR

#[tokio::test]
async fn fhir_posts_an_r4_communication() {
    let (base, peer) = http_peer(&[502], 201).await;
    let cfg = ReceiverConfig::Fhir(FhirConfig {
        base_url: format!("{base}/fhir/"),
        fhir_version: FhirVersion::R4,
        bearer_token_env: None,
        timeout_ms: 1000,
        max_attempts: 3,
        backoff_ms: 10,
        max_backoff_ms: 40,
    });
    let r = Receiver::new("ehr", &cfg).unwrap();
    assert_eq!(r.kind(), "fhir");
    let d = r.deliver(&ai_af_escalated()).await.unwrap();
    assert_eq!(d.attempts, 2);
    let seen = peer.seen();
    let req = &seen[1];
    assert_eq!(req.path, "/fhir/Communication");
    assert_eq!(req.headers["content-type"], "application/fhir+json");
    assert_eq!(
        req.headers["if-none-exist"],
        "identifier=urn%3Acardiostream%3Anotification|\
         wear-9%2Fatrial_fibrillation%2Fai%2F1700000000000000%2Fescalated%2F1"
    );
    assert!(req.headers.get("x-cardiostream-signature").is_none());
    let c: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(c["resourceType"], "Communication");
    assert_eq!(c["status"], "in-progress");
    assert_eq!(c["priority"], "asap");
    assert_eq!(c["category"][0]["coding"][0]["code"], "alert");
    assert_eq!(c["subject"]["reference"], "Patient/p-0c11");
    assert_eq!(c["identifier"][0]["value"], ai_af_escalated().alert.id);
    assert_eq!(c["topic"]["coding"][0]["code"], "escalated");
    assert_eq!(c["recipient"][1]["display"], "dr-lee");
    assert!(c["sent"].as_str().unwrap().ends_with('Z'));
    let text = c["payload"][0]["contentString"].as_str().unwrap();
    assert!(text.starts_with("possible atrial fibrillation"), "{text}");
    assert!(text.contains("decision support, not a diagnosis"), "{text}");

    // Contained resources: ids unique, every reference "#id" resolves to one of them.
    let contained = c["contained"].as_array().unwrap();
    let ids: Vec<&str> = contained
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["issue", "value", "score"]);
    let issue = &contained[0];
    assert_eq!(issue["resourceType"], "DetectedIssue");
    assert_eq!(issue["code"]["coding"][0]["code"], "atrial_fibrillation");
    assert_eq!(issue["severity"], "moderate");
    assert_eq!(issue["status"], "preliminary");
    assert_eq!(issue["patient"]["reference"], "Patient/p-0c11");
    assert!(issue["detail"]
        .as_str()
        .unwrap()
        .contains("not a diagnosis"));
    for (i, id) in [(1, "value"), (2, "score")] {
        let o = &contained[i];
        assert_eq!(o["resourceType"], "Observation");
        assert_eq!(o["id"], id);
        assert_eq!(o["subject"]["reference"], "Patient/p-0c11");
        assert!(o["valueQuantity"]["value"].is_number());
        assert_eq!(o["valueQuantity"]["system"], "http://unitsofmeasure.org");
    }
    assert_eq!(contained[2]["valueQuantity"]["value"], 0.93);
    let mut refs: Vec<&str> = c["about"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reference"].as_str().unwrap())
        .collect();
    assert_eq!(refs, ["#issue", "#value", "#score"]);
    refs.extend(
        issue["evidence"][0]["detail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["reference"].as_str().unwrap()),
    );
    for r in refs {
        assert!(ids.contains(&r.trim_start_matches('#')), "dangling {r}");
    }
    // Nothing beyond the pseudonymous id and the alert: no stream, no names.
    let s = String::from_utf8_lossy(&req.body);
    assert!(!s.contains("wear-9\""), "{s}");
}

// ---------------------------------------------------------------- HL7 MLLP

#[derive(Debug, Clone, Copy)]
enum AckMode {
    Accept,
    Error,
    RejectFirst,
    Silent,
}

/// An MLLP listener that records each message and answers as told.
async fn mllp_peer(mode: AckMode) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let rec = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let rec = rec.clone();
            tokio::spawn(async move {
                let Some(msg) = read_frame(&mut sock).await else {
                    return;
                };
                let nth = {
                    let mut r = rec.lock().unwrap();
                    r.push(msg.clone());
                    r.len()
                };
                let control_id = field(&msg, "MSH", 10).to_owned();
                let ack = match mode {
                    AckMode::Silent => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    AckMode::Accept => format!("MSA|AA|{control_id}"),
                    AckMode::RejectFirst if nth == 1 => {
                        format!("MSA|AR|{control_id}|busy")
                    }
                    AckMode::RejectFirst => format!("MSA|AA|{control_id}"),
                    AckMode::Error => format!(
                        "MSA|AE|{control_id}|unknown patient\rERR||PID^1^3|204^Unknown key identifier^HL70357|E"
                    ),
                };
                let ack = format!(
                    "MSH|^~\\&|ACM|HOSP|CARDIOSTREAM|HOSP|20240101120000||ACK^R40^ACK|A{nth}|P|2.6\r{ack}\r"
                );
                let mut framed = vec![0x0b];
                framed.extend_from_slice(ack.as_bytes());
                framed.extend_from_slice(&[0x1c, 0x0d]);
                sock.write_all(&framed).await.unwrap();
            });
        }
    });
    (addr, seen)
}

/// Reads one MLLP frame, independently of the receiver's own framing code.
async fn read_frame(sock: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if sock.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
        if buf.ends_with(&[0x1c, 0x0d]) {
            assert_eq!(buf[0], 0x0b, "frame must start with VT");
            return Some(String::from_utf8(buf[1..buf.len() - 2].to_vec()).unwrap());
        }
    }
}

fn segments(msg: &str) -> Vec<Vec<&str>> {
    msg.split('\r')
        .filter(|s| !s.is_empty())
        .map(|s| s.split('|').collect())
        .collect()
}

/// Field `n` of the first segment `seg` (HL7 numbering: for MSH, MSH-1 is the `|`).
fn field<'a>(msg: &'a str, seg: &str, n: usize) -> &'a str {
    let s = msg
        .split('\r')
        .find(|s| s.starts_with(seg))
        .unwrap_or_else(|| panic!("no {seg} segment"));
    let i = if seg == "MSH" { n - 1 } else { n };
    s.split('|').nth(i).unwrap_or("")
}

fn hl7(addr: &str, ack_timeout_ms: u64, max_attempts: u32) -> Receiver {
    let cfg = ReceiverConfig::Hl7Mllp(Hl7Config {
        addr: addr.into(),
        sending_facility: "GENERAL^HOSP".into(),
        receiving_application: "ACM".into(),
        receiving_facility: Some("HOSP".into()),
        ack_timeout_ms,
        max_attempts,
        backoff_ms: 10,
        max_backoff_ms: 40,
    });
    Receiver::new("pcd-acm", &cfg).unwrap()
}

#[tokio::test]
async fn hl7_sends_oru_r40_and_accepts_aa() {
    let (addr, seen) = mllp_peer(AckMode::Accept).await;
    let r = hl7(&addr, 1000, 3);
    assert_eq!(r.kind(), "hl7_mllp");
    let d = r.deliver(&asystole()).await.unwrap();
    assert_eq!(d.attempts, 1);
    let msg = seen.lock().unwrap()[0].clone();
    let segs = segments(&msg);
    let names: Vec<&str> = segs.iter().map(|s| s[0]).collect();
    assert_eq!(&names[..4], ["MSH", "PID", "PV1", "OBR"]);
    assert!(names[4..].iter().all(|n| *n == "OBX"), "{names:?}");

    assert_eq!(field(&msg, "MSH", 2), "^~\\&");
    assert_eq!(field(&msg, "MSH", 3), "CARDIOSTREAM");
    assert_eq!(field(&msg, "MSH", 4), "GENERAL\\S\\HOSP");
    assert_eq!(field(&msg, "MSH", 5), "ACM");
    assert_eq!(field(&msg, "MSH", 6), "HOSP");
    assert!(field(&msg, "MSH", 7).ends_with("+0000"));
    assert_eq!(field(&msg, "MSH", 9), "ORU^R40^ORU_R40");
    assert!(!field(&msg, "MSH", 10).is_empty());
    assert_eq!(field(&msg, "MSH", 11), "P");
    assert_eq!(field(&msg, "MSH", 12), "2.6");

    assert_eq!(field(&msg, "PID", 3), "p-7f3a^^^CARDIOSTREAM^PI");
    assert_eq!(
        field(&msg, "PID", 5),
        "p-7f3a^^^^^^S",
        "a pseudonym, no patient name"
    );
    assert_eq!(field(&msg, "PV1", 3), "ward-3");
    assert_eq!(
        field(&msg, "OBR", 3),
        "bed-12/asystole/dsp/1700000000000000^CARDIOSTREAM"
    );
    assert_eq!(field(&msg, "OBR", 4), "196616^MDC_EVT_ALARM^MDC");
    assert_eq!(field(&msg, "OBR", 7), "20231114221320.000+0000");

    let obx: Vec<&Vec<&str>> = segs.iter().filter(|s| s[0] == "OBX").collect();
    let by_code = |code: &str| -> &Vec<&str> {
        obx.iter()
            .find(|s| s[3].starts_with(code))
            .unwrap_or_else(|| panic!("no OBX {code} in {msg}"))
    };
    for (i, s) in obx.iter().enumerate() {
        assert_eq!(s[1], (i + 1).to_string(), "OBX-1 set ids in order");
    }
    let alarm = by_code("196616^MDC_EVT_ALARM");
    assert_eq!(alarm[5], "asystole^asystole^99CDS");
    assert_eq!(alarm[8], "PH~SP");
    assert_eq!(by_code("68481^MDC_ATTR_EVENT_PHASE")[5], "start");
    assert_eq!(by_code("68482^MDC_ATTR_ALARM_STATE")[5], "active");
    assert_eq!(by_code("68484^MDC_ATTR_ALARM_PRIORITY")[5], "PH");
    assert_eq!(by_code("68485^MDC_ATTR_ALERT_TYPE")[5], "SP");
    let value = by_code("asystole-value");
    assert_eq!((value[2], value[5], value[6]), ("NM", "4.5", "s^^UCUM"));
    // Text fields escaped: '|' and '&' from the summary never split a field.
    assert_eq!(
        by_code("alert-text")[5],
        "asystole, 4.5 s without a beat \\F\\ check leads \\T\\ patient"
    );
    assert!(!msg.contains("decision-support"));
}

#[tokio::test]
async fn hl7_marks_decision_support_and_escalation() {
    let (addr, seen) = mllp_peer(AckMode::Accept).await;
    hl7(&addr, 1000, 3)
        .deliver(&ai_af_escalated())
        .await
        .unwrap();
    let msg = seen.lock().unwrap()[0].clone();
    let segs = segments(&msg);
    let obx = |code: &str| {
        segs.iter()
            .find(|s| s[0] == "OBX" && s[3].starts_with(code))
            .unwrap_or_else(|| panic!("no OBX {code}"))
            .clone()
    };
    assert_eq!(obx("196616")[8], "PM~SA");
    assert_eq!(obx("68481")[5], "escalate");
    assert_eq!(obx("68484")[5], "PM");
    assert_eq!(obx("atrial_fibrillation-score")[5], "0.93");
    assert_eq!(
        obx("decision-support")[5],
        "AI decision support, not a diagnosis"
    );
    assert_eq!(field(&msg, "PV1", 3), "");
}

#[tokio::test]
async fn hl7_ae_is_a_delivery_error_naming_the_error() {
    let (addr, seen) = mllp_peer(AckMode::Error).await;
    let e = hl7(&addr, 1000, 3).deliver(&asystole()).await.unwrap_err();
    assert_eq!(e.attempts, 1);
    assert!(!e.retryable);
    assert!(e.message.contains("pcd-acm"), "{e}");
    assert!(e.message.contains("AE"), "{e}");
    assert!(e.message.contains("unknown patient"), "{e}");
    assert!(e.message.contains("Unknown key identifier"), "{e}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn hl7_ar_is_retried_with_the_same_message() {
    let (addr, seen) = mllp_peer(AckMode::RejectFirst).await;
    let d = hl7(&addr, 1000, 3).deliver(&asystole()).await.unwrap();
    assert_eq!(d.attempts, 2);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], seen[1], "a retry resends the same message");
}

#[tokio::test]
async fn hl7_without_ack_times_out_and_retries() {
    let (addr, seen) = mllp_peer(AckMode::Silent).await;
    let started = std::time::Instant::now();
    let e = hl7(&addr, 150, 3).deliver(&asystole()).await.unwrap_err();
    assert_eq!(e.attempts, 3);
    assert!(e.retryable);
    assert!(e.message.contains("no ack within 150 ms"), "{e}");
    // One connection per attempt.
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn hl7_unreachable_gives_up_after_max_attempts() {
    let port = free_port().await;
    let e = hl7(&format!("127.0.0.1:{port}"), 500, 2)
        .deliver(&asystole())
        .await
        .unwrap_err();
    assert_eq!(e.attempts, 2);
    assert!(e.message.contains("connect failed"), "{e}");
}

/// A port nothing listens on: bound, then released.
async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------- issue 15

/// Issue 15, item 6: a captured notification does not verify forever, and its
/// idempotency key cannot be changed to pass it off as another notification.
#[tokio::test]
async fn verify_request_refuses_old_timestamps_and_a_changed_idempotency_key() {
    use ecg_alerts::receivers::sign;
    use ecg_alerts::receivers::webhook::{verify_request, SIGNATURE_HEADER, TIMESTAMP_HEADER};
    let (base, peer) = http_peer(&[], 200).await;
    webhook(&base, 1).deliver(&asystole()).await.unwrap();
    let req = &peer.seen()[0];
    assert!(verify_request(SECRET.as_bytes(), &req.headers, &req.body));
    // The same signed request under another idempotency key: refused.
    let mut h = req.headers.clone();
    h.insert(
        "idempotency-key",
        "bed-12/asystole/dsp/1700000000000000/fired/1"
            .parse()
            .unwrap(),
    );
    assert!(!verify_request(SECRET.as_bytes(), &h, &req.body));
    // Correctly signed, but an hour old: refused; a minute old: accepted.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let key = req.headers["idempotency-key"].to_str().unwrap().to_owned();
    let signed_at = |ts: u64| {
        let mut h = req.headers.clone();
        let ts = ts.to_string();
        let sig = sign(SECRET.as_bytes(), &ts, &key, &req.body);
        h.insert(TIMESTAMP_HEADER, ts.parse().unwrap());
        h.insert(SIGNATURE_HEADER, sig.parse().unwrap());
        h
    };
    assert!(!verify_request(
        SECRET.as_bytes(),
        &signed_at(now - 3600),
        &req.body
    ));
    assert!(!verify_request(
        SECRET.as_bytes(),
        &signed_at(now + 3600),
        &req.body
    ));
    assert!(verify_request(
        SECRET.as_bytes(),
        &signed_at(now - 60),
        &req.body
    ));
}

/// Issue 15, item 7: strict HL7 validators require PID-5. It carries the
/// pseudonymous id again as a name of type `S` (HL7 table 0200: coded pseudo-name to
/// ensure anonymity), never a real name; and the alert's source is in the field
/// docs/receivers.md names for it.
#[tokio::test]
async fn hl7_pid_5_is_a_pseudonym_and_the_source_is_where_the_docs_say() {
    let (addr, seen) = mllp_peer(AckMode::Accept).await;
    hl7(&addr, 1000, 3).deliver(&asystole()).await.unwrap();
    let msg = seen.lock().unwrap()[0].clone();
    let pid5: Vec<&str> = field(&msg, "PID", 5).split('^').collect();
    assert_eq!(pid5.len(), 7, "XPN up to the name type: {pid5:?}");
    assert_eq!(pid5[0], "p-7f3a", "the pseudonymous id, as in PID-3");
    assert!(pid5[1..6].iter().all(|c| c.is_empty()), "{pid5:?}");
    assert_eq!(pid5[6], "S", "name type: coded pseudo-name");

    // Where the documented OBX of the alarm puts `<source>`, the message puts it.
    let docs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/receivers.md"),
    )
    .unwrap();
    let documented = docs
        .lines()
        .find(|l| l.starts_with("OBX|1|CWE|196616"))
        .expect("the documented alarm OBX");
    let at = documented
        .split('|')
        .position(|f| f.starts_with("<source>"))
        .expect("<source> in the documented OBX");
    let alarm: Vec<&str> = msg
        .split('\r')
        .find(|s| s.starts_with("OBX|1|"))
        .unwrap()
        .split('|')
        .collect();
    assert_eq!(
        at, 18,
        "OBX-18, equipment instance identifier: {documented}"
    );
    assert_eq!(alarm[at], "detector:rhythm^CARDIOSTREAM", "{msg}");
    assert_eq!(alarm[17], "", "OBX-17 (observation method) unused");
    // PID as documented.
    assert!(
        docs.contains("PID|||<pseudonymous id>^^^CARDIOSTREAM^PI||<pseudonymous id>^^^^^^S"),
        "docs/receivers.md shows PID-5"
    );
}

/// Issue 15, item 7: every field of the webhook body is in the documented example.
#[test]
fn the_documented_webhook_body_has_every_field() {
    let docs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/receivers.md"),
    )
    .unwrap();
    let start = docs.find("```json\n").expect("json example") + 8;
    let end = start + docs[start..].find("```").unwrap();
    let documented: Value = serde_json::from_str(&docs[start..end]).expect("valid json");
    let actual = serde_json::to_value(ai_af_escalated()).unwrap();
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&documented), keys(&actual));
    assert_eq!(keys(&documented["alert"]), keys(&actual["alert"]));
    for field in ["`sequence`", "`recipient`"] {
        let described = docs
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("- {field}")));
        assert!(described, "{field} is described under the example");
    }
}
