//! Alerts: from findings to alerts that care teams act on.
//!
//! [`engine::AlertEngine`] is the synchronous core: rules decide which findings
//! become alerts and at what priority, alerts are grouped per stream and condition
//! (one alert per episode, however many windows repeat it), rhythm alarms are
//! inhibited by technical conditions and asystole inhibits bradycardia, and an
//! alert resolves once the condition has been absent on good signal for the rule's
//! number of windows. Receivers and the HTTP console are wired by the binary.

pub mod engine;
pub mod rules;

pub use engine::{AlertEngine, AlertView};
pub use rules::{Rule, RuleSet};
