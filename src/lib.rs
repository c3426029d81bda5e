//! The `cardiostream` binary's library: topology wiring of the stages.
//!
//! - [`pipeline`]: Kafka frames → decode → DSP → models → findings (the pipeline deployable);
//! - [`alerting`]: Kafka findings → alert engine → receivers (the alerts deployable);
//! - [`http`]: `/metrics`, the JSON API and the console;
//! - [`devices`]: simulated and recorded devices publishing frames to Kafka;
//! - [`demo`]: all of it in one process on an in-process Kafka cluster;
//! - [`eval`]: offline tools on annotated records;
//! - [`telemetry`]: the Prometheus metrics.

pub mod alerting;
pub mod demo;
pub mod devices;
pub mod eval;
pub mod http;
pub mod pipeline;
pub mod telemetry;
