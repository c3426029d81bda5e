//! Streaming ECG signal processing for cardiostream: a pure, synchronous library.
//!
//! - [`filter`]: run-time designed biquad filters (baseline high-pass, mains notch,
//!   low-pass) and the [`filter::MonitorFilter`] cascade;
//! - [`curve_length`]: the second, curve-length beat detector behind the bSQI
//!   signal-quality index;
//! - [`qrs`]: a streaming QRS detector with a fixed, stated latency;
//! - [`qrs_pair`]: that detector on two leads, following the cleaner one in noise;
//! - [`lethal`]: the lethal-arrhythmia alarms of IEC 60601-2-27 from every ECG lead
//!   (aVR, aVL and aVF through I, II and III when a stream has them:
//!   [`lethal::analysed_leads`]) and the pulse waveforms ([`lethal::LethalDetector`]);
//! - [`noise_stress`]: the MIT-BIH noise stress test's noise calibration and
//!   mixing (PhysioNet `nst`), for evaluations;
//! - [`rhythm`]: RR-interval statistics and atrial-fibrillation features;
//! - [`stream`]: [`stream::StreamDsp`], the per-stream state tying them together and
//!   emitting rhythm windows and pause events.
//!
//! Every stage works sample by sample, so outputs do not depend on how the input is
//! split into blocks.

pub mod atrial;
pub mod curve_length;
pub mod filter;
pub mod fir;
pub mod lethal;
pub mod noise_stress;
pub mod pace;
pub mod qrs;
pub mod qrs_pair;
pub mod quality;
pub mod resample;
pub mod rhythm;
pub mod score;
pub mod stream;
pub mod window;

pub use filter::MonitorFilter;
pub use lethal::{analysed_leads, LethalAssessment, LethalCall, LethalConfig, LethalDetector};
pub use qrs::QrsDetector;
pub use qrs_pair::PairedQrs;
pub use rhythm::{af_features, rr_irregular, IrregularityThresholds, AF_FEATURES};
pub use stream::{DspConfig, DspEvent, RhythmWindow, StreamDsp};

/// The sample rate `fs` (Hz) for the stages that cannot refuse one: itself when
/// positive and finite, else 250 Hz (a stage built on a nonsense rate stays usable
/// instead of dividing by zero).
pub(crate) fn usable_rate(fs: f64) -> f64 {
    if fs.is_finite() && fs > 0.0 {
        fs
    } else {
        250.0
    }
}
