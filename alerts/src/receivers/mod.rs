//! Receivers: where notifications about alerts go after routing.
//!
//! The alert core decides *what* to tell *whom* (one [`Notification`] per alert,
//! event and receiver); a [`Receiver`] built from a [`ReceiverConfig`] delivers it:
//!
//! - [`webhook`]: JSON over HTTP(S) POST, HMAC-SHA256 signed ([`verify_signature`]);
//! - [`fhir`]: a FHIR R4 (or R5) `Communication` with contained `DetectedIssue` and
//!   `Observation` resources, POSTed to a FHIR server;
//! - [`hl7`]: an HL7 v2.6 `ORU^R40` (IHE PCD-04 Report Alert) over MLLP/TCP.
//!
//! [`Receiver::deliver`] retries transient failures (connect errors, timeouts, HTTP 5xx
//! and 429, HL7 AR/CR and missing ACKs) with exponential backoff and jitter, up to the
//! receiver's `max_attempts`; permanent failures (other HTTP 4xx, HL7 AE/CE) fail at
//! once. Nothing but the pseudonymous patient id, the alert's fields and its one-line
//! summary leaves through a receiver, and nothing is logged at info level beyond the
//! receiver name, alert id and outcome. `docs/receivers.md` is the user guide.

pub mod fhir;
pub mod hl7;
pub mod webhook;

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ecg_types::Alert;
use serde::{Deserialize, Serialize};

pub use fhir::FhirVersion;
pub use webhook::{sign, verify_request, verify_request_at, verify_signature, VerifyError};

/// What happened to an alert that a receiver is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationEvent {
    /// The alert was raised.
    Fired,
    /// The alert is still active and not acknowledged: a reminder.
    Repeat,
    /// Not acknowledged in time: passed to the next level of the escalation chain.
    Escalated,
    /// A clinician took the alert.
    Acknowledged,
    /// The condition cleared or a clinician resolved the alert.
    Resolved,
}

impl NotificationEvent {
    /// Stable snake_case name, as in JSON and in the `Idempotency-Key`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationEvent::Fired => "fired",
            NotificationEvent::Repeat => "repeat",
            NotificationEvent::Escalated => "escalated",
            NotificationEvent::Acknowledged => "acknowledged",
            NotificationEvent::Resolved => "resolved",
        }
    }
}

impl NotificationEvent {
    /// The event and sequence of an event key made by [`Notification::event_key`]
    /// (`fired`, `repeat-1795421400`, …); unknown names read as `Fired`.
    pub fn from_key(key: &str) -> (Self, u32) {
        let (name, sequence) = match key.split_once('-') {
            Some((name, n)) => (name, n.parse().unwrap_or(0)),
            None => (key, 0),
        };
        let event = match name {
            "repeat" => NotificationEvent::Repeat,
            "escalated" => NotificationEvent::Escalated,
            "acknowledged" => NotificationEvent::Acknowledged,
            "resolved" => NotificationEvent::Resolved,
            _ => NotificationEvent::Fired,
        };
        (event, sequence)
    }
}

impl fmt::Display for NotificationEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing to tell one receiver about one alert.
///
/// Its JSON form is the webhook payload (documented in `docs/receivers.md`); fields
/// are only ever added to it, never renamed or removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The alert after the change, with its pseudonymous patient id.
    pub alert: Alert,
    /// What happened.
    pub event: NotificationEvent,
    /// Care team the alert is routed to.
    pub team: String,
    /// Care unit or ward, e.g. `ward-3`.
    pub unit: Option<String>,
    /// The on-call member an escalation step notifies (its team's rotation), e.g.
    /// `dr-lee`; `None` at level 0 (the route's receivers, not a person) and where
    /// the step's team has no rotation.
    pub recipient: Option<String>,
    /// 0 for the first notification, 1 for the first escalation, and so on.
    pub escalation_level: u32,
    /// Link to the alert in the care-team console.
    pub console_url: Option<String>,
    /// Tells repeats of one event apart: a repeat's scheduled time in seconds since
    /// the epoch, the same on every instance; 0 for every other event. Part of the
    /// idempotency key (`repeat-<sequence>`).
    #[serde(default)]
    pub sequence: u32,
}

impl Notification {
    /// `<alert id>/<event>/<escalation level>` (`<event>-<sequence>` for repeats):
    /// the same for every retry of one notification, different for the next event,
    /// repeat or escalation of the same alert.
    pub fn idempotency_key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.alert.id,
            self.event_key(),
            self.escalation_level
        )
    }

    /// The event part of the idempotency key.
    pub fn event_key(&self) -> String {
        if self.sequence == 0 {
            self.event.as_str().to_owned()
        } else {
            format!("{}-{}", self.event.as_str(), self.sequence)
        }
    }
}

/// A secret from the configuration; never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(**redacted**)")
    }
}

/// Settings of one receiver, tagged by `kind` (`webhook`, `fhir` or `hl7-mllp`).
///
/// ```toml
/// kind = "webhook"
/// url = "https://pager.example.org/hooks/cardiostream"
/// secret_env = "CARDIOSTREAM_WEBHOOK_SECRET"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind")]
pub enum ReceiverConfig {
    /// Signed JSON over HTTP(S).
    #[serde(rename = "webhook")]
    Webhook(webhook::WebhookConfig),
    /// FHIR `Communication` resources.
    #[serde(rename = "fhir")]
    Fhir(fhir::FhirConfig),
    /// HL7 v2.6 `ORU^R40` over MLLP.
    #[serde(rename = "hl7-mllp")]
    Hl7Mllp(hl7::Hl7Config),
}

/// Why a receiver could not be built from its settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiverError {
    /// The environment variable that should hold a secret is not set.
    #[error(
        "receiver {receiver:?}: environment variable {var} ({what}) is not set or not unicode"
    )]
    MissingEnv {
        /// Receiver name.
        receiver: String,
        /// The variable.
        var: String,
        /// What it should hold.
        what: &'static str,
    },
    /// A setting is missing, contradicts another or is out of range.
    #[error("receiver {receiver:?}: {setting}: {reason}")]
    Invalid {
        /// Receiver name.
        receiver: String,
        /// The setting at fault.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built (e.g. unreadable system certificates).
    #[error("receiver {receiver:?}: http client: {reason}")]
    Client {
        /// Receiver name.
        receiver: String,
        /// The cause.
        reason: String,
    },
}

/// A notification was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Attempts it took, 1 if the first succeeded.
    pub attempts: u32,
    /// Time from the first attempt to the acknowledgement, backoff included.
    pub elapsed: Duration,
}

/// A notification could not be delivered.
///
/// The message names the receiver and the cause (an HTTP status, a connect error,
/// an HL7 ACK code and its text), never anything from the alert beyond its id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (after {attempts} attempt{})", if *attempts == 1 { "" } else { "s" })]
pub struct DeliveryError {
    /// Attempts made.
    pub attempts: u32,
    /// Receiver and cause of the last failure.
    pub message: String,
    /// True when the last failure was transient (the receiver was unreachable, busy or
    /// timed out), so a later delivery may succeed; false when the receiver refused
    /// the notification itself (HTTP 4xx other than 429, HL7 AE/CE).
    pub retryable: bool,
}

/// One receiver, ready to deliver.
#[derive(Debug)]
pub struct Receiver {
    name: String,
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Webhook(webhook::Webhook),
    Fhir(fhir::Fhir),
    Hl7(hl7::Hl7),
}

impl Receiver {
    /// Builds a receiver: reads secrets from the environment, checks URLs and
    /// addresses and builds the HTTP client.
    ///
    /// # Errors
    /// A [`ReceiverError`] naming the receiver and the setting at fault: a secret
    /// environment variable that is not set, a URL that does not parse or is not
    /// `http`/`https`, an address that is not `host:port`, zero attempts or timeout.
    pub fn new(name: &str, cfg: &ReceiverConfig) -> Result<Self, ReceiverError> {
        if name.is_empty() {
            return Err(ReceiverError::Invalid {
                receiver: String::new(),
                setting: "name",
                reason: "is empty".into(),
            });
        }
        let inner = match cfg {
            ReceiverConfig::Webhook(c) => Inner::Webhook(webhook::Webhook::new(name, c)?),
            ReceiverConfig::Fhir(c) => Inner::Fhir(fhir::Fhir::new(name, c)?),
            ReceiverConfig::Hl7Mllp(c) => Inner::Hl7(hl7::Hl7::new(name, c)?),
        };
        Ok(Self {
            name: name.to_owned(),
            inner,
        })
    }

    /// The receiver's name from the configuration.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `webhook`, `fhir` or `hl7_mllp`: a metric label.
    pub fn kind(&self) -> &'static str {
        match self.inner {
            Inner::Webhook(_) => "webhook",
            Inner::Fhir(_) => "fhir",
            Inner::Hl7(_) => "hl7_mllp",
        }
    }

    /// Delivers one notification, retrying transient failures with backoff.
    ///
    /// # Errors
    /// A [`DeliveryError`] after a permanent failure or when `max_attempts` attempts
    /// all failed.
    pub async fn deliver(&self, n: &Notification) -> Result<Delivered, DeliveryError> {
        let result = match &self.inner {
            Inner::Webhook(w) => w.deliver(&self.name, n).await,
            Inner::Fhir(f) => f.deliver(&self.name, n).await,
            Inner::Hl7(h) => h.deliver(&self.name, n).await,
        };
        match &result {
            // Alert ids name the stream: at debug only.
            Ok(d) => {
                tracing::debug!(receiver = %self.name, alert = %n.alert.id, attempts = d.attempts, "notification delivered");
                tracing::info!(
                    receiver = %self.name,
                    event = n.event.as_str(),
                    outcome = "delivered",
                    attempts = d.attempts,
                    "notification delivered"
                );
            }
            Err(e) => {
                tracing::debug!(receiver = %self.name, alert = %n.alert.id, "notification not delivered");
                tracing::warn!(
                    receiver = %self.name,
                    event = n.event.as_str(),
                    outcome = "failed",
                    attempts = e.attempts,
                    error = %e.message,
                    "notification not delivered"
                );
            }
        }
        result
    }
}

/// Retry settings shared by every kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Duration,
    pub(crate) max_backoff: Duration,
}

impl RetryPolicy {
    pub(crate) fn new(
        receiver: &str,
        max_attempts: u32,
        backoff_ms: u64,
        max_backoff_ms: u64,
    ) -> Result<Self, ReceiverError> {
        if max_attempts == 0 {
            return Err(invalid(receiver, "max_attempts", "must be at least 1"));
        }
        if max_backoff_ms < backoff_ms {
            return Err(invalid(
                receiver,
                "max_backoff_ms",
                format!("{max_backoff_ms} is less than backoff_ms {backoff_ms}"),
            ));
        }
        Ok(Self {
            max_attempts,
            backoff: Duration::from_millis(backoff_ms),
            max_backoff: Duration::from_millis(max_backoff_ms),
        })
    }

    /// The pause after the `failures`-th failed attempt (1-based): `backoff` doubled
    /// per failure, capped at `max_backoff`, then drawn uniformly from its upper half
    /// so that receivers recovering from an outage are not hit in lockstep. A
    /// `Retry-After` hint from the receiver raises it, up to `max_backoff`.
    pub(crate) fn delay(&self, failures: u32, hint: Option<Duration>) -> Duration {
        let doubled = self
            .backoff
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        let capped = doubled.min(self.max_backoff);
        let half = capped / 2;
        let jittered = half + capped.saturating_sub(half).mul_f64(rand::random::<f64>());
        match hint {
            Some(h) => jittered.max(h.min(self.max_backoff)),
            None => jittered,
        }
    }
}

/// The outcome of one attempt.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Delivered and acknowledged.
    Done,
    /// Failed; worth trying again (after at least the hinted pause, if any).
    Retry(String, Option<Duration>),
    /// Failed; trying again would fail the same way.
    Fail(String),
}

/// Runs attempts until one succeeds, one fails permanently or the attempts run out.
pub(crate) async fn with_retries<F, Fut>(
    receiver: &str,
    policy: &RetryPolicy,
    mut attempt: F,
) -> Result<Delivered, DeliveryError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Attempt>,
{
    let start = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        match attempt(n).await {
            Attempt::Done => {
                return Ok(Delivered {
                    attempts: n,
                    elapsed: start.elapsed(),
                })
            }
            Attempt::Fail(cause) => {
                return Err(DeliveryError {
                    attempts: n,
                    message: format!("receiver {receiver:?}: {cause}"),
                    retryable: false,
                })
            }
            Attempt::Retry(cause, hint) => {
                if n >= policy.max_attempts {
                    return Err(DeliveryError {
                        attempts: n,
                        message: format!("receiver {receiver:?}: {cause}"),
                        retryable: true,
                    });
                }
                let pause = policy.delay(n, hint);
                tracing::debug!(
                    receiver,
                    attempt = n,
                    error = %cause,
                    pause_ms = pause.as_millis() as u64,
                    "delivery attempt failed; retrying"
                );
                tokio::time::sleep(pause).await;
            }
        }
    }
}

pub(crate) fn invalid(
    receiver: &str,
    setting: &'static str,
    reason: impl Into<String>,
) -> ReceiverError {
    ReceiverError::Invalid {
        receiver: receiver.to_owned(),
        setting,
        reason: reason.into(),
    }
}

/// Reads a secret from an environment variable.
pub(crate) fn secret_from_env(
    receiver: &str,
    var: &str,
    what: &'static str,
) -> Result<Secret, ReceiverError> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(Secret(v)),
        _ => Err(ReceiverError::MissingEnv {
            receiver: receiver.to_owned(),
            var: var.to_owned(),
            what,
        }),
    }
}

/// A time clamped to what RFC 3339 and HL7 timestamps can show (1970 to 9999).
pub(crate) fn clamp_time(t: SystemTime) -> SystemTime {
    // 9999-12-31T23:59:59Z
    let last = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
    t.clamp(UNIX_EPOCH, last)
}

/// Unix seconds of a time (0 before the epoch).
pub(crate) fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Shared pieces of the HTTP receivers.
pub(crate) mod http {
    use std::time::Duration;

    use super::{invalid, Attempt, ReceiverError};

    /// Checks a URL: it parses, is `http` or `https` and has a host. The URL itself
    /// never goes into an error message: it may carry a token.
    pub(crate) fn check_url(
        receiver: &str,
        setting: &'static str,
        url: &str,
    ) -> Result<reqwest::Url, ReceiverError> {
        let u = reqwest::Url::parse(url).map_err(|e| invalid(receiver, setting, e.to_string()))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(invalid(
                receiver,
                setting,
                format!("scheme {:?} is not http or https", u.scheme()),
            ));
        }
        if u.host_str().is_none_or(str::is_empty) {
            return Err(invalid(receiver, setting, "has no host"));
        }
        Ok(u)
    }

    /// An HTTP client with the receiver's timeout, no redirects (a redirected POST
    /// would lose its body or its signature) and rustls with the system's roots.
    pub(crate) fn client(
        receiver: &str,
        timeout_ms: u64,
    ) -> Result<reqwest::Client, ReceiverError> {
        if timeout_ms == 0 {
            return Err(invalid(receiver, "timeout_ms", "must be at least 1"));
        }
        let timeout = Duration::from_millis(timeout_ms);
        reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cardiostream/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ReceiverError::Client {
                receiver: receiver.to_owned(),
                reason: error_chain(&e),
            })
    }

    /// Classifies an HTTP exchange: 2xx done; 429 and 5xx retried (honouring a
    /// `Retry-After` in seconds); anything else fails at once. Transport errors
    /// (connect, timeout, reset) are retried. Response bodies are not read into
    /// messages: they may echo the notification.
    pub(crate) fn classify(result: Result<reqwest::Response, reqwest::Error>) -> Attempt {
        match result {
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    return Attempt::Done;
                }
                let what = format!("http status {status}");
                if status.as_u16() == 429 || status.is_server_error() {
                    let hint = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    Attempt::Retry(what, hint)
                } else {
                    Attempt::Fail(what)
                }
            }
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connect failed"
                } else {
                    "request failed"
                };
                Attempt::Retry(format!("{kind}: {}", error_chain(&e)), None)
            }
        }
    }

    /// An error and its causes, without the URL reqwest puts in its own message.
    pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
        let mut parts = Vec::new();
        let mut cur = e.source();
        while let Some(c) = cur {
            let s = c.to_string();
            if !parts.contains(&s) {
                parts.push(s);
            }
            cur = c.source();
        }
        if parts.is_empty() {
            "unknown cause".into()
        } else {
            parts.join(": ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_read_back() {
        use NotificationEvent::*;
        for (event, sequence) in [
            (Fired, 0),
            (Repeat, 1_795_421_400),
            (Escalated, 0),
            (Acknowledged, 0),
            (Resolved, 0),
        ] {
            let key = if sequence == 0 {
                event.as_str().to_owned()
            } else {
                format!("{}-{sequence}", event.as_str())
            };
            assert_eq!(
                NotificationEvent::from_key(&key),
                (event, sequence),
                "{key}"
            );
        }
    }

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let p = RetryPolicy::new("r", 5, 100, 350).unwrap();
        for _ in 0..50 {
            let d1 = p.delay(1, None);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d2 = p.delay(2, None);
            assert!(d2 >= Duration::from_millis(100) && d2 <= Duration::from_millis(200));
            let d9 = p.delay(9, None);
            assert!(d9 >= Duration::from_millis(175) && d9 <= Duration::from_millis(350));
            let hinted = p.delay(1, Some(Duration::from_secs(60)));
            assert_eq!(hinted, Duration::from_millis(350));
        }
        assert!(RetryPolicy::new("r", 0, 100, 350).is_err());
        assert!(RetryPolicy::new("r", 1, 100, 50).is_err());
    }

    #[test]
    fn config_is_tagged_by_kind_and_strict() {
        let cfg: ReceiverConfig =
            toml_like(r#"{"kind": "webhook", "url": "http://127.0.0.1:1/x", "secret": "k"}"#)
                .unwrap();
        let ReceiverConfig::Webhook(w) = &cfg else {
            panic!("not a webhook: {cfg:?}");
        };
        assert_eq!(w.timeout_ms, 2000);
        assert_eq!(w.max_attempts, 5);
        assert_eq!(w.backoff_ms, 200);
        assert!(!format!("{cfg:?}").contains("\"k\""));
        let err = toml_like::<ReceiverConfig>(
            r#"{"kind": "webhook", "url": "http://h/", "secret": "k", "retries": 3}"#,
        )
        .unwrap_err();
        assert!(err.contains("retries"), "{err}");
        let h: ReceiverConfig = toml_like(
            r#"{"kind": "hl7-mllp", "addr": "127.0.0.1:2575", "sending_facility": "F",
                "receiving_application": "ACM"}"#,
        )
        .unwrap();
        assert_eq!(Receiver::new("pcd", &h).unwrap().kind(), "hl7_mllp");
    }

    fn toml_like<T: for<'de> Deserialize<'de>>(json: &str) -> Result<T, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn idempotency_key_and_event_names() {
        assert_eq!(
            serde_json::to_value(NotificationEvent::Acknowledged).unwrap(),
            "acknowledged"
        );
        assert_eq!(NotificationEvent::Escalated.to_string(), "escalated");
    }
}
