//! Ingest: how frames get into cardiostream.
//!
//! - [`codec`]: wire format v1 (protobuf and JSON) with full validation;
//! - [`wfdb`]: PhysioNet WFDB records and annotations, for replay and evaluation;
//! - [`replay`]: WFDB records replayed as device streams (wire-format frames);
//! - [`kafka`]: Kafka client settings, the dead-letter producer and header helpers.

pub mod codec;
pub mod kafka;
pub mod replay;
pub mod wfdb;
