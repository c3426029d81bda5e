//! The `cardiostream` binary's library: the CLI's wiring of the deployables. The
//! stages themselves live in the `ecg-pipeline` crate (source → sequencer → analyzer
//! → scorer → publisher), the alert service in `ecg-alerts` and the offline
//! evaluation tools (`cardiostream eval …`, `cardiostream model compare`) in `ecg-eval`.
//!
//! - [`config`]: layered configuration of the deployables;
//! - [`http`]: `/metrics`, the JSON API and the console;
//! - [`devices`]: simulated and recorded devices publishing frames to Kafka;
//! - [`deployables`]: `cardiostream pipeline` and `cardiostream alerts` on a real cluster;
//! - [`demo`]: all of it in one process on an in-process Kafka cluster;
//! - [`telemetry`]: the Prometheus metrics.

pub mod config;
pub mod demo;
pub mod deployables;
pub mod devices;
pub mod http;
pub mod telemetry;
