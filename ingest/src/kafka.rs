//! Kafka helpers.
