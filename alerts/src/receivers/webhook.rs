//! Webhook receiver: the [`Notification`] as JSON, POSTed and signed.
//!
//! Each request carries
//!
//! - `Content-Type: application/json`
//! - `X-Cardiostream-Timestamp: <unix seconds>` (fresh for every attempt)
//! - `Idempotency-Key: <alert id>/<event>/<escalation level>` (the same for every
//!   attempt of one notification)
//! - `X-Cardiostream-Signature: sha256=<hex HMAC-SHA256 over
//!   "<timestamp>.<idempotency key>.<body>">`
//!
//! A receiver checks a request with [`verify_request`] (or [`verify_request_at`] with
//! its own tolerance, or the same few lines in its own language, `docs/receivers.md`):
//! the signature, which covers the timestamp and the idempotency key as well as the
//! body, and the timestamp's distance from its clock (at most
//! [`DEFAULT_TOLERANCE`]), so a captured notification neither verifies forever nor
//! passes as another one; and it drops repeated idempotency keys.

use std::fmt;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::http::{check_url, classify, client};
use super::{
    invalid, secret_from_env, unix_seconds, with_retries, Delivered, DeliveryError, Notification,
    ReceiverError, RetryPolicy, Secret,
};

/// Name of the timestamp header.
pub const TIMESTAMP_HEADER: &str = "X-Cardiostream-Timestamp";
/// Name of the signature header.
pub const SIGNATURE_HEADER: &str = "X-Cardiostream-Signature";
/// Name of the idempotency-key header.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// How far a request's timestamp may be from the receiver's clock, either way, for
/// [`verify_request`]: a captured request replayed later than this is refused.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Settings of a webhook receiver (`kind = "webhook"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST, `http://` or `https://`.
    pub url: String,
    /// Environment variable that holds the HMAC key (production).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The HMAC key inline (tests and demos only); exactly one of `secret_env` and
    /// `secret` must be set.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Timeout of one attempt (connect, send, response), in milliseconds.
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

pub(crate) fn default_timeout_ms() -> u64 {
    2000
}
pub(crate) fn default_max_attempts() -> u32 {
    5
}
pub(crate) fn default_backoff_ms() -> u64 {
    200
}
pub(crate) fn default_max_backoff_ms() -> u64 {
    10_000
}

pub(crate) struct Webhook {
    url: reqwest::Url,
    secret: Secret,
    client: reqwest::Client,
    retry: RetryPolicy,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("host", &self.url.host_str())
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    pub(crate) fn new(name: &str, c: &WebhookConfig) -> Result<Self, ReceiverError> {
        let url = check_url(name, "url", &c.url)?;
        let secret = match (&c.secret_env, &c.secret) {
            (Some(var), None) => secret_from_env(name, var, "the webhook HMAC key")?,
            (None, Some(s)) if !s.expose().is_empty() => s.clone(),
            (None, Some(_)) => return Err(invalid(name, "secret", "is empty")),
            (Some(_), Some(_)) => {
                return Err(invalid(
                    name,
                    "secret",
                    "set either secret_env or secret, not both",
                ))
            }
            (None, None) => {
                return Err(invalid(
                    name,
                    "secret_env",
                    "a webhook needs an HMAC key: set secret_env (or secret for tests)",
                ))
            }
        };
        Ok(Self {
            url,
            secret,
            client: client(name, c.timeout_ms)?,
            retry: RetryPolicy::new(name, c.max_attempts, c.backoff_ms, c.max_backoff_ms)?,
        })
    }

    pub(crate) async fn deliver(
        &self,
        name: &str,
        n: &Notification,
    ) -> Result<Delivered, DeliveryError> {
        let body = serde_json::to_vec(n).map_err(|e| DeliveryError {
            attempts: 0,
            message: format!("receiver {name:?}: cannot encode notification: {e}"),
            retryable: false,
        })?;
        let key = n.idempotency_key();
        with_retries(name, &self.retry, |_| {
            let body = body.clone();
            let key = key.clone();
            async move {
                let ts = unix_seconds(SystemTime::now()).to_string();
                let sig = sign(self.secret.expose().as_bytes(), &ts, &key, &body);
                let req = self
                    .client
                    .post(self.url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(TIMESTAMP_HEADER, ts)
                    .header(SIGNATURE_HEADER, sig)
                    .header(IDEMPOTENCY_HEADER, key)
                    .body(body);
                classify(req.send().await)
            }
        })
        .await
    }
}

/// The signature header value: `sha256=` and the lowercase hex HMAC-SHA256, keyed
/// with `secret`, of `"<timestamp>.<idempotency key>.<body>"`.
pub fn sign(secret: &[u8], timestamp: &str, idempotency_key: &str, body: &[u8]) -> String {
    let tag = mac_of(secret, timestamp, idempotency_key, body)
        .finalize()
        .into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in tag {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// Checks an `X-Cardiostream-Signature` header against the timestamp, the
/// idempotency key and the body, in constant time. It does not look at the
/// timestamp's age: [`verify_request_at`] does.
///
/// ```
/// use ecg_alerts::receivers::{sign, verify_signature};
/// let body = br#"{"event":"fired"}"#;
/// let header = sign(b"key", "1700000000", "a/fired/0", body);
/// assert!(verify_signature(b"key", "1700000000", "a/fired/0", body, &header));
/// assert!(!verify_signature(b"key", "1700000001", "a/fired/0", body, &header));
/// assert!(!verify_signature(b"key", "1700000000", "a/fired/1", body, &header));
/// assert!(!verify_signature(b"other", "1700000000", "a/fired/0", body, &header));
/// ```
pub fn verify_signature(
    secret: &[u8],
    timestamp: &str,
    idempotency_key: &str,
    body: &[u8],
    header: &str,
) -> bool {
    let Some(hex) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Some(tag) = decode_hex(hex) else {
        return false;
    };
    mac_of(secret, timestamp, idempotency_key, body)
        .verify_slice(&tag)
        .is_ok()
}

/// Why a received request did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header is missing or not text.
    #[error("missing header {0}")]
    Missing(&'static str),
    /// The timestamp is not Unix seconds.
    #[error("timestamp is not unix seconds")]
    BadTimestamp,
    /// The timestamp is further than the tolerance from the receiver's clock.
    #[error("timestamp is {skew_s} s from this clock, more than the {tolerance_s} s allowed")]
    Stale {
        /// Distance from the receiver's clock, seconds.
        skew_s: u64,
        /// The tolerance, seconds.
        tolerance_s: u64,
    },
    /// The signature does not match (wrong key, or timestamp, key or body changed).
    #[error("signature does not verify")]
    Signature,
}

/// Checks a received request as a receiving endpoint should: the timestamp within
/// `tolerance` of `now` (either way), then the signature over the timestamp, the
/// `Idempotency-Key` and the raw body.
///
/// # Errors
/// The first check that failed.
pub fn verify_request_at(
    secret: &[u8],
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let h = |k: &'static str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .ok_or(VerifyError::Missing(k))
    };
    let ts = h(TIMESTAMP_HEADER)?;
    let key = h(IDEMPOTENCY_HEADER)?;
    let sig = h(SIGNATURE_HEADER)?;
    let t: u64 = ts.trim().parse().map_err(|_| VerifyError::BadTimestamp)?;
    let skew_s = unix_seconds(now).abs_diff(t);
    if skew_s > tolerance.as_secs() {
        return Err(VerifyError::Stale {
            skew_s,
            tolerance_s: tolerance.as_secs(),
        });
    }
    if verify_signature(secret, ts, key, body, sig) {
        Ok(())
    } else {
        Err(VerifyError::Signature)
    }
}

/// [`verify_request_at`] now, with [`DEFAULT_TOLERANCE`]: what a receiving endpoint
/// calls. False when a header is missing, the timestamp is more than 5 minutes off,
/// or the signature does not verify.
pub fn verify_request(secret: &[u8], headers: &reqwest::header::HeaderMap, body: &[u8]) -> bool {
    verify_request_at(secret, headers, body, SystemTime::now(), DEFAULT_TOLERANCE).is_ok()
}

fn mac_of(secret: &[u8], timestamp: &str, idempotency_key: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = mac(secret);
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(idempotency_key.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("hmac accepts keys of any length"),
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_key_and_body() {
        // The HMAC against RFC 4231 test case 2.
        let mut m = mac(b"Jefe");
        m.update(b"what do ya want for nothing?");
        let tag = m.finalize().into_bytes();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // "<ts>.<idempotency key>.<body>" is what is signed.
        let mut m = mac(b"Jefe");
        m.update(b"1700000000.a/fired/0.{}");
        let hex: String = m
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            sign(b"Jefe", "1700000000", "a/fired/0", b"{}"),
            format!("sha256={hex}")
        );
    }

    #[test]
    fn verify_rejects_tampering_and_garbage() {
        let k = "a/fired/0";
        let h = sign(b"k", "10", k, b"{}");
        assert!(h.starts_with("sha256=") && h.len() == 7 + 64);
        assert!(verify_signature(b"k", "10", k, b"{}", &h));
        assert!(verify_signature(
            b"k",
            "10",
            k,
            b"{}",
            &h.to_uppercase().replace("SHA256=", "sha256=")
        ));
        assert!(!verify_signature(b"k", "10", k, b"{ }", &h));
        assert!(!verify_signature(b"k", "11", k, b"{}", &h));
        assert!(!verify_signature(b"k", "10", "a/fired/1", b"{}", &h));
        assert!(!verify_signature(b"k", "10", k, b"{}", &h[7..]));
        assert!(!verify_signature(b"k", "10", k, b"{}", "sha256=zz"));
        assert!(!verify_signature(b"k", "10", k, b"{}", "sha256=abc"));
        assert!(!verify_signature(b"k", "10", k, b"{}", &h[..40]));
    }

    #[test]
    fn verify_request_checks_headers_age_and_signature() {
        let t0 = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut headers = reqwest::header::HeaderMap::new();
        let body = b"{}";
        let ok = VerifyError::Missing(TIMESTAMP_HEADER);
        assert_eq!(
            verify_request_at(b"k", &headers, body, t0, DEFAULT_TOLERANCE),
            Err(ok)
        );
        let set = |h: &mut reqwest::header::HeaderMap, k: &'static str, v: &str| {
            h.insert(k, v.parse().expect("header value"));
        };
        set(&mut headers, TIMESTAMP_HEADER, "1700000000");
        set(&mut headers, IDEMPOTENCY_HEADER, "a/fired/0");
        set(
            &mut headers,
            SIGNATURE_HEADER,
            &sign(b"k", "1700000000", "a/fired/0", body),
        );
        let at = |headers: &reqwest::header::HeaderMap, dt: i64| {
            let t = if dt >= 0 {
                t0 + Duration::from_secs(dt.unsigned_abs())
            } else {
                t0 - Duration::from_secs(dt.unsigned_abs())
            };
            verify_request_at(b"k", headers, body, t, DEFAULT_TOLERANCE)
        };
        assert_eq!(at(&headers, 0), Ok(()));
        assert_eq!(at(&headers, 300), Ok(()));
        assert_eq!(at(&headers, -300), Ok(()));
        assert_eq!(
            at(&headers, 301),
            Err(VerifyError::Stale {
                skew_s: 301,
                tolerance_s: 300
            })
        );
        assert!(matches!(
            at(&headers, -3600),
            Err(VerifyError::Stale { .. })
        ));
        // A tighter tolerance is the receiver's choice.
        assert!(verify_request_at(
            b"k",
            &headers,
            body,
            t0 + Duration::from_secs(31),
            Duration::from_secs(30)
        )
        .is_err());
        assert_eq!(
            verify_request_at(b"other", &headers, body, t0, DEFAULT_TOLERANCE),
            Err(VerifyError::Signature)
        );
        set(&mut headers, TIMESTAMP_HEADER, "soon");
        assert_eq!(at(&headers, 0), Err(VerifyError::BadTimestamp));
    }

    #[test]
    fn new_checks_url_and_secret() {
        let c = |url: &str| WebhookConfig {
            url: url.into(),
            secret_env: None,
            secret: Some(Secret::new("k")),
            timeout_ms: default_timeout_ms(),
            max_attempts: default_max_attempts(),
            backoff_ms: default_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
        };
        assert!(Webhook::new("w", &c("http://127.0.0.1:9/hook")).is_ok());
        assert!(Webhook::new("w", &c("https://pager.example.org/hook")).is_ok());
        let e = Webhook::new("w", &c("ftp://h/x")).unwrap_err().to_string();
        assert!(e.contains("\"w\"") && e.contains("ftp"), "{e}");
        let e = Webhook::new("w", &c("not a url")).unwrap_err().to_string();
        assert!(e.contains("url"), "{e}");
        let mut no_secret = c("http://h/");
        no_secret.secret = None;
        no_secret.secret_env = Some("CARDIOSTREAM_TEST_SURELY_UNSET_VAR".into());
        let e = Webhook::new("w", &no_secret).unwrap_err().to_string();
        assert!(e.contains("CARDIOSTREAM_TEST_SURELY_UNSET_VAR"), "{e}");
        no_secret.secret_env = None;
        assert!(Webhook::new("w", &no_secret).is_err());
    }
}
