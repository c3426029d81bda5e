//! Messages that cross cardiostream's stage boundaries.
//!
//! The flow is `Frame` (device → ingest) → `Window` (dsp → inference) →
//! `Finding` (dsp/inference → alerts) → `Alert` (alerts → care teams). Every type that
//! travels between stages lives here so that each stage depends only on this crate,
//! never on another stage.
//!
//! Units are explicit: sample rates in hertz ([`SampleRate`]), amplitudes in
//! nanovolts per count on the wire ([`NanovoltsPerCount`]) and millivolts inside the
//! pipeline, times in microseconds since the Unix epoch of the device clock
//! ([`DeviceTimeUs`]).

mod alert;
mod finding;
mod frame;
mod ids;
mod lead;
mod pulse;
mod units;
mod window;

pub use alert::{system_time_from_us, Alert, AlertKind, AlertState, Priority};
pub use finding::{Condition, Finding, FindingSource, FindingStatus, Strip};
pub use frame::Frame;
pub use ids::{DeviceId, IdError, PatientId, StreamId, MAX_ID_LEN};
pub use lead::{Lead, UnknownLead};
pub use pulse::PulseKind;
pub use units::{DeviceTimeUs, NanovoltsPerCount, SampleRate};
pub use window::Window;
