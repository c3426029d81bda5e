//! The `cardiostream` binary's library: topology wiring of the stages.
//!
//! - [`pipeline`]: Kafka frames → decode → DSP → models → findings (the pipeline deployable);
//! - [`alerting`]: Kafka findings → alert engine → receivers (the alerts deployable);
//! - [`config`]: layered configuration of the deployables;
//! - [`http`]: `/metrics`, the JSON API and the console;
//! - [`devices`]: simulated and recorded devices publishing frames to Kafka;
//! - [`deployables`]: `cardiostream pipeline` and `cardiostream alerts` on a real cluster;
//! - [`demo`]: all of it in one process on an in-process Kafka cluster;
//! - [`eval`]: offline tools on annotated records;
//! - [`telemetry`]: the Prometheus metrics.

pub mod alerting;
pub mod config;
pub mod demo;
pub mod deployables;
pub mod devices;
pub mod eval;
pub mod http;
pub mod pipeline;
pub mod telemetry;
