//! HL7 v2 receiver: each notification as an `ORU^R40` (IHE PCD-04 Report Alert),
//! HL7 v2.6, sent over MLLP to an alert manager or interface engine.
//!
//! Message layout ([`oru_r40`], details in `docs/receivers.md`):
//!
//! ```text
//! MSH|^~\&|CARDIOSTREAM|<facility>|<receiving app>|<receiving facility>|<now>||ORU^R40^ORU_R40|<control id>|P|2.6|||AL|NE||UNICODE UTF-8
//! PID|||<pseudonymous id>^^^CARDIOSTREAM^PI
//! PV1||U|<unit>
//! OBR|1|<alert id>^CARDIOSTREAM|<alert id>^CARDIOSTREAM|196616^MDC_EVT_ALARM^MDC|||<alert start>[|<end>]
//! OBX|1|CWE|196616^MDC_EVT_ALARM^MDC|1.0.0.1|<condition>^<text>^99CDS|||<PH|PM|PL>~<SP|ST|SA>|||F|||<change time>|||<source>
//! OBX|2|ST|68480^MDC_ATTR_ALERT_SOURCE^MDC|1.0.0.2|<detector:… or model:…>||||||F
//! OBX|3|ST|68481^MDC_ATTR_EVENT_PHASE^MDC|1.0.0.3|start|continue|escalate|update|end||||||F
//! OBX|4|ST|68482^MDC_ATTR_ALARM_STATE^MDC|1.0.0.4|active|inactive||||||F
//! OBX|5|ST|68483^MDC_ATTR_ALARM_INACTIVATION_STATE^MDC|1.0.0.5|enabled|alert-acknowledged||||||F
//! OBX|6|ST|68484^MDC_ATTR_ALARM_PRIORITY^MDC|1.0.0.6|PH|PM|PL||||||F
//! OBX|7|ST|68485^MDC_ATTR_ALERT_TYPE^MDC|1.0.0.7|SP|ST|SA||||||F
//! OBX|…|NM|<value code>|…|<value>|<UCUM unit>          where the alert has a value
//! OBX|…|NM|<condition>-score^model score^99CDS|…|<score>|1^^UCUM   where it has a score
//! OBX|…|ST|alert-text^alert text^99CDS|…|<summary>
//! OBX|…|ST|decision-support^decision support^99CDS|…|AI decision support, not a diagnosis
//! ```
//!
//! Framing is MLLP (`0x0B` message `0x1C 0x0D`); each attempt opens a new connection,
//! sends the message and waits for the ACK: `AA`/`CA` with `MSA-2` equal to the control
//! id is success; `AE`/`CE` fail at once (the message itself is in error); `AR`/`CR`,
//! an ACK for another control id, a closed connection or no ACK within
//! `ack_timeout_ms` are retried. Retries resend the same message and control id, so
//! the receiver can drop duplicates.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use ecg_types::{system_time_from_us, AlertKind, AlertState, Priority};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::fhir::{condition_text, text_with_note, value_meaning};
use super::webhook::{default_backoff_ms, default_max_attempts, default_max_backoff_ms};
use super::{
    clamp_time, invalid, with_retries, Attempt, Delivered, DeliveryError, Notification,
    NotificationEvent, ReceiverError, RetryPolicy,
};

/// MLLP start block.
pub const MLLP_START: u8 = 0x0b;
/// MLLP end block (followed by [`MLLP_CR`]).
pub const MLLP_END: u8 = 0x1c;
/// Carriage return ending an MLLP frame and every HL7 segment.
pub const MLLP_CR: u8 = 0x0d;
/// `MSH-3`, the sending application.
pub const SENDING_APPLICATION: &str = "CARDIOSTREAM";
/// Local coding system of cardiostream's codes in `OBX-3`/`OBX-5`.
pub const LOCAL_CODING_SYSTEM: &str = "99CDS";

/// Largest ACK frame read, in bytes.
const MAX_ACK_BYTES: usize = 1 << 20;
/// Longest error text from an ACK put into a message.
const MAX_ERROR_TEXT: usize = 200;

/// Settings of an HL7 v2 MLLP receiver (`kind = "hl7-mllp"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hl7Config {
    /// `host:port` of the MLLP listener.
    pub addr: String,
    /// `MSH-4`, the sending facility.
    pub sending_facility: String,
    /// `MSH-5`, the receiving application.
    pub receiving_application: String,
    /// `MSH-6`, the receiving facility, if the receiver wants one.
    #[serde(default)]
    pub receiving_facility: Option<String>,
    /// Time allowed for one attempt (connect, send, ACK), in milliseconds.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
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

fn default_ack_timeout_ms() -> u64 {
    5000
}

pub(crate) struct Hl7 {
    cfg: Hl7Config,
    ack_timeout: Duration,
    retry: RetryPolicy,
}

impl fmt::Debug for Hl7 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hl7")
            .field("addr", &self.cfg.addr)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Hl7 {
    pub(crate) fn new(name: &str, c: &Hl7Config) -> Result<Self, ReceiverError> {
        check_addr(name, &c.addr)?;
        if c.sending_facility.trim().is_empty() {
            return Err(invalid(name, "sending_facility", "is empty"));
        }
        if c.receiving_application.trim().is_empty() {
            return Err(invalid(name, "receiving_application", "is empty"));
        }
        if c.ack_timeout_ms == 0 {
            return Err(invalid(name, "ack_timeout_ms", "must be at least 1"));
        }
        Ok(Self {
            cfg: c.clone(),
            ack_timeout: Duration::from_millis(c.ack_timeout_ms),
            retry: RetryPolicy::new(name, c.max_attempts, c.backoff_ms, c.max_backoff_ms)?,
        })
    }

    pub(crate) async fn deliver(
        &self,
        name: &str,
        n: &Notification,
    ) -> Result<Delivered, DeliveryError> {
        let control_id = control_id();
        let frame = mllp_frame(oru_r40(n, &self.cfg, &control_id, SystemTime::now()).as_bytes());
        let ms = self.ack_timeout.as_millis();
        with_retries(name, &self.retry, |_| {
            let frame = &frame;
            let control_id = &control_id;
            async move {
                match tokio::time::timeout(self.ack_timeout, exchange(&self.cfg.addr, frame)).await
                {
                    Err(_) => Attempt::Retry(format!("no ack within {ms} ms"), None),
                    Ok(Err(e)) => Attempt::Retry(e, None),
                    Ok(Ok(ack)) => judge_ack(&ack, control_id),
                }
            }
        })
        .await
    }
}

/// One attempt: connect, send the frame, read the ACK frame.
async fn exchange(addr: &str, frame: &[u8]) -> Result<Vec<u8>, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect failed: {e}"))?;
    stream
        .write_all(frame)
        .await
        .map_err(|e| format!("send failed: {e}"))?;
    stream
        .flush()
        .await
        .map_err(|e| format!("send failed: {e}"))?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((msg, _)) = mllp_unframe(&buf) {
            return Ok(msg.to_vec());
        }
        if buf.len() > MAX_ACK_BYTES {
            return Err(format!("ack longer than {MAX_ACK_BYTES} bytes"));
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading ack failed: {e}"))?;
        if n == 0 {
            return Err("connection closed before ack".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// What an ACK (an unframed MLLP message) means for the message with `control_id`:
/// `Ok(())` when it accepts it, `Err((retry, reason))` otherwise, `retry` telling
/// whether sending again may help. The receiver's own parser, public for the fuzzing
/// campaign (docs/fuzzing.md) and for peers' conformance tests.
///
/// # Errors
/// The ACK rejects the message, is for another control id or cannot be read.
pub fn ack_outcome(ack: &[u8], control_id: &str) -> Result<(), (bool, String)> {
    match judge_ack(ack, control_id) {
        Attempt::Done => Ok(()),
        Attempt::Retry(why, _) => Err((true, why)),
        Attempt::Fail(why) => Err((false, why)),
    }
}

/// Decides what an ACK means for the message with `control_id`.
fn judge_ack(ack: &[u8], control_id: &str) -> Attempt {
    let text = String::from_utf8_lossy(ack);
    let segments: Vec<&str> = text.split(['\r', '\n']).filter(|s| !s.is_empty()).collect();
    let sep = segments
        .iter()
        .find(|s| s.starts_with("MSH"))
        .and_then(|s| s.chars().nth(3))
        .unwrap_or('|');
    let fields = |name: &str| -> Option<Vec<&str>> {
        segments
            .iter()
            .find(|s| s.starts_with(name))
            .map(|s| s.split(sep).collect())
    };
    let Some(msa) = fields("MSA") else {
        return Attempt::Retry("ack without an MSA segment".into(), None);
    };
    let code = msa.get(1).copied().unwrap_or("").trim();
    let acked = msa.get(2).copied().unwrap_or("").trim();
    let detail = || {
        let mut t = msa.get(3).copied().unwrap_or("").trim().to_owned();
        if let Some(err) = fields("ERR") {
            // ERR-8 user message, ERR-7 diagnostics, ERR-3 error code (text, then code).
            let err_text = [8, 7]
                .iter()
                .filter_map(|&i| err.get(i).copied())
                .find(|s| !s.trim().is_empty())
                .map(str::to_owned)
                .or_else(|| {
                    err.get(3).map(|c| {
                        let parts: Vec<&str> = c.split('^').collect();
                        parts
                            .get(1)
                            .filter(|s| !s.is_empty())
                            .or(parts.first())
                            .copied()
                            .unwrap_or("")
                            .to_owned()
                    })
                })
                .unwrap_or_default();
            if !err_text.trim().is_empty() && !t.contains(err_text.trim()) {
                if !t.is_empty() {
                    t.push_str("; ");
                }
                t.push_str(err_text.trim());
            }
        }
        let t = unescape(&t);
        let t: String = t
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(MAX_ERROR_TEXT)
            .collect();
        if t.is_empty() {
            String::new()
        } else {
            format!(": {t}")
        }
    };
    match code {
        "AA" | "CA" if acked == control_id => Attempt::Done,
        "AA" | "CA" => Attempt::Retry(
            format!("ack is for control id {acked:?}, not {control_id:?}"),
            None,
        ),
        "AE" => Attempt::Fail(format!("application error (AE){}", detail())),
        "CE" => Attempt::Fail(format!("commit error (CE){}", detail())),
        "AR" => Attempt::Retry(format!("application reject (AR){}", detail()), None),
        "CR" => Attempt::Retry(format!("commit reject (CR){}", detail()), None),
        other => Attempt::Fail(format!("unknown ack code {other:?}{}", detail())),
    }
}

/// The `ORU^R40` message for a notification, segments ended by `\r`, unframed.
pub fn oru_r40(n: &Notification, cfg: &Hl7Config, control_id: &str, now: SystemTime) -> String {
    let a = &n.alert;
    let mut segs: Vec<String> = Vec::with_capacity(16);
    segs.push(
        [
            "MSH",
            "^~\\&",
            SENDING_APPLICATION,
            &escape(&cfg.sending_facility),
            &escape(&cfg.receiving_application),
            &escape(cfg.receiving_facility.as_deref().unwrap_or("")),
            &ts(now),
            "",
            "ORU^R40^ORU_R40",
            &escape(control_id),
            "P",
            "2.6",
            "",
            "",
            "AL",
            "NE",
            "",
            "UNICODE UTF-8",
        ]
        .join("|"),
    );
    segs.push(format!(
        "PID|||{}^^^{SENDING_APPLICATION}^PI",
        escape(a.patient.as_str())
    ));
    segs.push(format!(
        "PV1||U|{}",
        escape(n.unit.as_deref().unwrap_or(""))
    ));
    let id = escape(&a.id);
    let start = ts(system_time_from_us(a.since.0));
    let mut obr = format!(
        "OBR|1|{id}^{SENDING_APPLICATION}|{id}^{SENDING_APPLICATION}|196616^MDC_EVT_ALARM^MDC|||{start}"
    );
    if n.event == NotificationEvent::Resolved || a.state == AlertState::Resolved {
        obr.push('|');
        obr.push_str(&ts(a.time));
    }
    segs.push(obr);

    let priority = match a.priority {
        Priority::High => "PH",
        Priority::Medium => "PM",
        Priority::Low => "PL",
    };
    let alert_type = match a.kind {
        AlertKind::Physiological => "SP",
        AlertKind::Technical => "ST",
        AlertKind::AiScreening => "SA",
    };
    let phase = match n.event {
        NotificationEvent::Fired => "start",
        NotificationEvent::Repeat => "continue",
        NotificationEvent::Escalated => "escalate",
        NotificationEvent::Acknowledged => "update",
        NotificationEvent::Resolved => "end",
    };
    let alarm_state = if n.event == NotificationEvent::Resolved || a.state == AlertState::Resolved {
        "inactive"
    } else {
        "active"
    };
    let inactivation =
        if n.event == NotificationEvent::Acknowledged || a.state == AlertState::Acknowledged {
            "alert-acknowledged"
        } else {
            "enabled"
        };
    let status = "F";
    let mut obx = Obx::default();
    obx.push(Obx::row(
        "CWE",
        "196616^MDC_EVT_ALARM^MDC",
        &format!(
            "{}^{}^{LOCAL_CODING_SYSTEM}",
            escape(a.condition.as_str()),
            escape(condition_text(a.condition))
        ),
        "",
        &format!("{priority}~{alert_type}"),
        status,
        &ts(a.time),
        &escape(&a.source.label()),
    ));
    obx.push(Obx::st(
        "68480^MDC_ATTR_ALERT_SOURCE^MDC",
        &escape(&a.source.label()),
    ));
    obx.push(Obx::st("68481^MDC_ATTR_EVENT_PHASE^MDC", phase));
    obx.push(Obx::st("68482^MDC_ATTR_ALARM_STATE^MDC", alarm_state));
    obx.push(Obx::st(
        "68483^MDC_ATTR_ALARM_INACTIVATION_STATE^MDC",
        inactivation,
    ));
    obx.push(Obx::st("68484^MDC_ATTR_ALARM_PRIORITY^MDC", priority));
    obx.push(Obx::st("68485^MDC_ATTR_ALERT_TYPE^MDC", alert_type));
    if let Some(v) = a.value {
        let (text, _, ucum, loinc) = value_meaning(a.condition);
        let ident = match loinc {
            Some(l) => format!("{l}^{}^LN", escape(text)),
            None => format!(
                "{}-value^{}^{LOCAL_CODING_SYSTEM}",
                escape(a.condition.as_str()),
                escape(text)
            ),
        };
        obx.push(Obx::row(
            "NM",
            &ident,
            &format!("{v}"),
            &format!("{}^^UCUM", escape(ucum)),
            "",
            status,
            "",
            "",
        ));
    }
    if let Some(s) = a.score {
        obx.push(Obx::row(
            "NM",
            &format!(
                "{}-score^model score^{LOCAL_CODING_SYSTEM}",
                escape(a.condition.as_str())
            ),
            &format!("{s}"),
            "1^^UCUM",
            "",
            status,
            "",
            "",
        ));
    }
    obx.push(Obx::st(
        &format!("alert-text^alert text^{LOCAL_CODING_SYSTEM}"),
        &escape(&text_with_note(&a.summary, a.decision_support)),
    ));
    if a.decision_support {
        obx.push(Obx::st(
            &format!("decision-support^decision support^{LOCAL_CODING_SYSTEM}"),
            "AI decision support, not a diagnosis",
        ));
    }
    for (i, row) in obx.0.iter().enumerate() {
        let k = i + 1;
        let mut f: Vec<&str> = vec!["OBX"];
        let set = k.to_string();
        let sub = format!("1.0.0.{k}");
        f.push(&set);
        f.push(&row.vtype);
        f.push(&row.ident);
        f.push(&sub);
        f.push(&row.value);
        f.push(&row.units);
        f.push("");
        f.push(&row.flags);
        f.push("");
        f.push("");
        f.push(&row.status);
        f.push("");
        f.push("");
        f.push(&row.time);
        f.push("");
        f.push("");
        f.push("");
        f.push(&row.equipment);
        while f.last().is_some_and(|s| s.is_empty()) {
            f.pop();
        }
        segs.push(f.join("|"));
    }
    let mut out = segs.join("\r");
    out.push('\r');
    out
}

#[derive(Default)]
struct Obx(Vec<ObxRow>);

struct ObxRow {
    vtype: String,
    ident: String,
    value: String,
    units: String,
    flags: String,
    status: String,
    time: String,
    equipment: String,
}

impl Obx {
    fn push(&mut self, r: ObxRow) {
        self.0.push(r);
    }

    #[allow(clippy::too_many_arguments)]
    fn row(
        vtype: &str,
        ident: &str,
        value: &str,
        units: &str,
        flags: &str,
        status: &str,
        time: &str,
        equipment: &str,
    ) -> ObxRow {
        ObxRow {
            vtype: vtype.into(),
            ident: ident.into(),
            value: value.into(),
            units: units.into(),
            flags: flags.into(),
            status: status.into(),
            time: time.into(),
            equipment: equipment.into(),
        }
    }

    fn st(ident: &str, value: &str) -> ObxRow {
        Self::row("ST", ident, value, "", "", "F", "", "")
    }
}

/// Escapes text for an HL7 v2 field with the standard delimiters `|^~\&`:
/// `\` → `\E\`, `|` → `\F\`, `^` → `\S\`, `&` → `\T\`, `~` → `\R\`, and control
/// characters (CR, LF, …) → `\Xhh\`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\E\\"),
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '&' => out.push_str("\\T\\"),
            '~' => out.push_str("\\R\\"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\X{:02X}\\", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`escape`] (and leaves unknown escape sequences as they are).
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(j) = after.find('\\') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let seq = &after[..j];
        match seq {
            "E" => out.push('\\'),
            "F" => out.push('|'),
            "S" => out.push('^'),
            "T" => out.push('&'),
            "R" => out.push('~'),
            x if x.starts_with('X') && x.len() == 3 => match u8::from_str_radix(&x[1..], 16) {
                Ok(b) if b < 0x80 => out.push(char::from(b)),
                _ => {
                    out.push('\\');
                    out.push_str(seq);
                    out.push('\\');
                }
            },
            _ => {
                out.push('\\');
                out.push_str(seq);
                out.push('\\');
            }
        }
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    out
}

/// Wraps a message in an MLLP frame: `0x0B`, the message, `0x1C 0x0D`.
pub fn mllp_frame(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 3);
    out.push(MLLP_START);
    out.extend_from_slice(msg);
    out.push(MLLP_END);
    out.push(MLLP_CR);
    out
}

/// Finds the first complete MLLP frame in `buf`: the message inside it and how many
/// bytes of `buf` the frame used (bytes before the start block are skipped). `None`
/// until a whole frame has arrived.
pub fn mllp_unframe(buf: &[u8]) -> Option<(&[u8], usize)> {
    let start = buf.iter().position(|&b| b == MLLP_START)?;
    let body = &buf[start + 1..];
    let end = body.windows(2).position(|w| w == [MLLP_END, MLLP_CR])?;
    Some((&body[..end], start + 1 + end + 2))
}

/// An HL7 `DTM` in UTC: `YYYYMMDDHHMMSS.sss+0000`.
fn ts(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_millis(clamp_time(t)).to_string();
    // "2023-11-14T22:13:20.000Z"
    let digits: String = s[..19].chars().filter(char::is_ascii_digit).collect();
    format!("{digits}.{}+0000", &s[20..23])
}

/// A message control id unique per message: time in milliseconds, a per-process
/// random prefix and counter (`MSH-10`, at most 20 characters).
fn control_id() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    static PREFIX: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    let prefix = *PREFIX.get_or_init(rand::random::<u16>);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff;
    let ms = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{ms:X}{prefix:04X}{n:04X}")
}

fn check_addr(name: &str, addr: &str) -> Result<(), ReceiverError> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(invalid(name, "addr", format!("{addr:?} is not host:port")));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(invalid(name, "addr", format!("{addr:?} has no host")));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(invalid(
            name,
            "addr",
            format!("{addr:?}: port {port:?} is not 1-65535"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecg_types::{Alert, Condition, DeviceTimeUs, FindingSource, PatientId, StreamId};

    #[test]
    fn escape_covers_delimiters_and_control_characters() {
        assert_eq!(escape("plain text 1.0"), "plain text 1.0");
        assert_eq!(escape(r"a|b^c~d\e&f"), r"a\F\b\S\c\R\d\E\e\T\f");
        assert_eq!(escape("line\rnext\n"), r"line\X0D\next\X0A\");
        assert_eq!(escape("µ ± 5 %"), "µ ± 5 %");
        for s in [r"a|b^c~d\e&f", "x\ry", r"\E\ literally", "", "ünï"] {
            assert_eq!(unescape(&escape(s)), s);
        }
        // An escaped field never contains a delimiter or a segment end.
        let e = escape("|^~\\&\r\n");
        assert!(!e.contains(['|', '^', '~', '&', '\r', '\n']));
    }

    #[test]
    fn mllp_frames_and_unframes() {
        let f = mllp_frame(b"MSH|x\rPID|1\r");
        assert_eq!(f[0], 0x0b);
        assert_eq!(&f[f.len() - 2..], &[0x1c, 0x0d]);
        assert_eq!(mllp_unframe(&f), Some((&b"MSH|x\rPID|1\r"[..], f.len())));
        // Incomplete frames wait for more bytes.
        assert_eq!(mllp_unframe(&f[..f.len() - 1]), None);
        assert_eq!(mllp_unframe(b"MSH|no start"), None);
        // Noise before the start block is skipped; a second frame is left in the buffer.
        let mut two = b"\n\n".to_vec();
        two.extend_from_slice(&f);
        two.extend_from_slice(&mllp_frame(b"B"));
        let (m, used) = mllp_unframe(&two).unwrap();
        assert_eq!(m, b"MSH|x\rPID|1\r");
        assert_eq!(mllp_unframe(&two[used..]), Some((&b"B"[..], 4)));
    }

    #[test]
    fn ack_codes_decide_the_attempt() {
        let ack = |msa: &str| {
            format!("MSH|^~\\&|ACM|H|CARDIOSTREAM|F|20240101000000||ACK^R40^ACK|9|P|2.6\r{msa}\r")
        };
        assert!(matches!(
            judge_ack(ack("MSA|AA|C1").as_bytes(), "C1"),
            Attempt::Done
        ));
        assert!(matches!(
            judge_ack(ack("MSA|CA|C1").as_bytes(), "C1"),
            Attempt::Done
        ));
        assert!(matches!(
            judge_ack(ack("MSA|AA|C2").as_bytes(), "C1"),
            Attempt::Retry(..)
        ));
        let Attempt::Fail(m) = judge_ack(
            format!(
                "{}ERR||PID^1^3|101^Required field missing^HL70357|E\r",
                ack("MSA|AE|C1|bad PID")
            )
            .as_bytes(),
            "C1",
        ) else {
            panic!("AE must fail");
        };
        assert_eq!(m, "application error (AE): bad PID; Required field missing");
        assert!(matches!(
            judge_ack(ack("MSA|AR|C1").as_bytes(), "C1"),
            Attempt::Retry(..)
        ));
        assert!(matches!(
            judge_ack(b"MSH|^~\\&\r", "C1"),
            Attempt::Retry(..)
        ));
    }

    #[test]
    fn timestamps_control_ids_and_addresses() {
        assert_eq!(
            ts(system_time_from_us(1_700_000_000_123_000)),
            "20231114221320.123+0000"
        );
        let (a, b) = (control_id(), control_id());
        assert_ne!(a, b);
        assert!(a.len() <= 20, "{a}");
        assert!(check_addr("h", "127.0.0.1:2575").is_ok());
        assert!(check_addr("h", "[::1]:2575").is_ok());
        assert!(check_addr("h", "mllp.example.org:2575").is_ok());
        assert!(check_addr("h", "mllp.example.org").is_err());
        assert!(check_addr("h", ":2575").is_err());
        assert!(check_addr("h", "host:0").is_err());
        assert!(check_addr("h", "host:http").is_err());
    }

    #[test]
    fn message_escapes_text_fields() {
        let n = Notification {
            alert: Alert {
                id: "s1/bradycardia/dsp/0".into(),
                patient: PatientId::new("p1").unwrap(),
                stream: StreamId::new("s1").unwrap(),
                condition: Condition::Bradycardia,
                priority: Priority::Medium,
                kind: AlertKind::Physiological,
                state: AlertState::Firing,
                time: system_time_from_us(0),
                since: DeviceTimeUs(0),
                source: FindingSource::Detector {
                    name: "rhythm".into(),
                },
                score: None,
                value: Some(38.0),
                decision_support: false,
                summary: "bradycardia, 38 bpm | check leads & pads".into(),
            },
            event: NotificationEvent::Fired,
            team: "t".into(),
            unit: Some("ward^3".into()),
            recipient: None,
            escalation_level: 0,
            console_url: None,
            sequence: 0,
        };
        let cfg = Hl7Config {
            addr: "127.0.0.1:1".into(),
            sending_facility: "HOSP".into(),
            receiving_application: "ACM".into(),
            receiving_facility: None,
            ack_timeout_ms: 1,
            max_attempts: 1,
            backoff_ms: 1,
            max_backoff_ms: 1,
        };
        let m = oru_r40(&n, &cfg, "C1", system_time_from_us(0));
        let segs: Vec<&str> = m.split('\r').collect();
        assert!(segs[0].starts_with(
            "MSH|^~\\&|CARDIOSTREAM|HOSP|ACM||19700101000000.000+0000||ORU^R40^ORU_R40|C1|P|2.6"
        ));
        assert_eq!(segs[2], "PV1||U|ward\\S\\3");
        assert!(m.contains("|bradycardia, 38 bpm \\F\\ check leads \\T\\ pads|"));
        assert!(m.contains("OBX|8|NM|8867-4^Heart rate^LN|1.0.0.8|38|/min^^UCUM|||||F"));
        assert!(m.ends_with('\r'));
    }
}
