//! Alerts: from findings to alerts that care teams act on (`docs/alerts.md`).
//!
//! - [`engine::AlertEngine`], the synchronous core: rules decide which findings
//!   become alerts and at what priority, alerts are grouped per stream and condition
//!   (one alert per episode), rhythm alarms are inhibited by technical conditions and
//!   asystole inhibits bradycardia, and an alert resolves once the condition has been
//!   absent on good signal for the rule's number of windows;
//! - [`service::AlertService`]: the life of an alert — routing tree, group wait,
//!   silences, acknowledgement, escalation along on-call chains, repeats, verdicts —
//!   kept in the [`store::Store`] (SQLite or PostgreSQL) so that several instances
//!   share it and never notify twice;
//! - [`receivers`]: signed webhooks, FHIR, HL7 v2 over MLLP;
//! - [`kafka`]: the service on Kafka — findings in, alert state changes out, the
//!   due-work ticker (the alerts deployable's core);
//! - [`api`]: the HTTP API with team-scoped tokens, and the care-team console;
//! - [`server`]: the HTTP/1.1 server they (and every process's `/metrics`) run on,
//!   with its connection limits.

pub mod api;
pub mod burden;
pub mod config;
pub mod engine;
pub mod kafka;
pub mod receivers;
pub mod rules;
pub mod server;
pub mod service;
pub mod store;
pub mod text;

pub use engine::{AlertEngine, AlertView};
pub use rules::{Rule, RuleSet};
