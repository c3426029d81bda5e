//! Messages that cross cardiostream's stage boundaries.
//!
//! The pipeline's hops, one message type each: [`SourceRecord`] (source → sequencer),
//! [`SequencedFrame`] (sequencer → analyzer, a validated [`Frame`] in stream order),
//! [`ModelInput`] (analyzer → scorer), [`Finding`] (analyzer and scorer → publisher →
//! alerts) and [`Alert`] (alerts → care teams); bad records leave as a
//! [`DeadLetter`]. Every type that travels between stages lives here so that each
//! stage depends only on this crate, never on another stage.
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
mod model_input;
mod pulse;
mod record;
mod units;

pub use alert::{system_time_from_us, Alert, AlertKind, AlertState, Priority};
pub use finding::{Condition, Finding, FindingSource, FindingStatus, Strip, Trace};
pub use frame::{Frame, PulseWave};
pub use ids::{DeviceId, IdError, PatientId, StreamId, MAX_ID_LEN};
pub use lead::{Lead, UnknownLead};
pub use model_input::ModelInput;
pub use pulse::PulseKind;
pub use record::{DeadLetter, Position, Restart, SequencedFrame, SourceRecord};
pub use units::{seconds_to_us, DeviceTimeUs, NanovoltsPerCount, SampleRate, Timebase};
