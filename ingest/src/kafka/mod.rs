//! Kafka client settings and header conventions shared by every cardiostream
//! consumer and producer.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message, ToBytes};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

mod settings;
pub use settings::{KafkaSettings, SecurityProtocol};

/// Header carrying a payload's encoding (`application/x-protobuf`, `application/json`).
pub const CONTENT_TYPE: &str = "content-type";
/// Dead-letter header: the short error kind (`DecodeError::kind`).
pub const DLQ_ERROR_KIND: &str = "error.kind";
/// Dead-letter header: the full error message, naming the field.
pub const DLQ_ERROR_MESSAGE: &str = "error.message";
/// Dead-letter header: topic the frame was read from.
pub const DLQ_SOURCE_TOPIC: &str = "source.topic";
/// Dead-letter header: partition the frame was read from.
pub const DLQ_SOURCE_PARTITION: &str = "source.partition";
/// Dead-letter header: offset the frame was read from.
pub const DLQ_SOURCE_OFFSET: &str = "source.offset";

/// Connection settings for a cluster reachable in plaintext at `bootstrap_servers`
/// (the deployables build theirs, security included, from their configuration).
pub fn connection(bootstrap_servers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap_servers);
    c
}

/// Settings of an at-least-once consumer in `group_id`: offsets are stored by the
/// application only after everything a message contributed to has been published
/// (`enable.auto.offset.store = false`) and committed in the background; a new group
/// starts from the earliest offset.
pub fn consumer_config(connection: &ClientConfig, group_id: &str) -> ClientConfig {
    let mut c = connection.clone();
    c.set("group.id", group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    c
}

/// Settings of a producer that waits at most `linger_ms` to batch records.
pub fn producer_config(connection: &ClientConfig, linger_ms: u32) -> ClientConfig {
    let mut c = connection.clone();
    c.set("linger.ms", linger_ms.to_string());
    c
}

/// Enqueues a record, waiting while librdkafka's queue is full; the returned future
/// resolves when the broker acknowledges (or finally refuses) the record.
///
/// # Errors
/// Any production error other than a full queue.
pub async fn enqueue<K, P>(
    producer: &FutureProducer,
    mut record: FutureRecord<'_, K, P>,
) -> Result<DeliveryFuture, KafkaError>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// The value of a message's `content-type` header, if it has one.
pub fn content_type<M: Message>(m: &M) -> Option<String> {
    m.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key.eq_ignore_ascii_case(CONTENT_TYPE))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

/// What `Debug` shows instead of a secret.
pub const REDACTED: &str = "**redacted**";

/// True for librdkafka properties whose values are secrets: passwords, secrets,
/// tokens, inline PEM keys and certificates, OAuth and JAAS configurations.
pub fn is_secret_property(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        ".pem",
        "oauthbearer.config",
        "jaas",
    ]
    .iter()
    .any(|w| k.contains(w))
}

/// Properties for `Debug`, secret values ([`is_secret_property`]) redacted.
pub struct Properties<'a>(pub Vec<(&'a str, &'a str)>);

impl std::fmt::Debug for Properties<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.0
                    .iter()
                    .map(|(k, v)| (*k, if is_secret_property(k) { REDACTED } else { *v })),
            )
            .finish()
    }
}

/// A librdkafka configuration for `Debug` output: every property, secrets redacted.
pub struct RedactedClient<'a>(pub &'a ClientConfig);

impl std::fmt::Debug for RedactedClient<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Properties(self.0.config_map().into_iter().collect()).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

    #[test]
    fn at_least_once_settings() {
        let c = consumer_config(&connection("b:9092"), "g");
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("group.id"), Some("g"));
        assert_eq!(c.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(
            producer_config(&connection("b:9092"), 5).get("linger.ms"),
            Some("5")
        );
    }

    #[test]
    fn reads_content_type_case_insensitively() {
        let h = OwnedHeaders::new().insert(Header {
            key: "Content-Type",
            value: Some("application/json"),
        });
        let m = OwnedMessage::new(
            None,
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            0,
            Some(h),
        );
        assert_eq!(content_type(&m).as_deref(), Some("application/json"));
        let bare = OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, 0, None);
        assert_eq!(content_type(&bare), None);
    }
}
