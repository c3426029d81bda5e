use serde::{Deserialize, Serialize};

use crate::{DeviceTimeUs, Lead, PatientId, SampleRate, StreamId};

/// A model-ready stretch of filtered signal cut by the DSP stage for one model
/// contract, with the beats found in it and the quality verdict that gates scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// The stream it was cut from.
    pub stream: StreamId,
    /// The pseudonymous patient.
    pub patient: PatientId,
    /// Device time of the first sample.
    pub start: DeviceTimeUs,
    /// Device time just after the last sample.
    pub end: DeviceTimeUs,
    /// Rate of `samples_mv` (the model's rate, after resampling).
    pub sample_rate: SampleRate,
    /// Leads in model order.
    pub leads: Vec<Lead>,
    /// Filtered samples in millivolts, lead-major.
    pub samples_mv: Vec<f32>,
    /// RR intervals (seconds) between consecutive beats detected in the window.
    pub rr_s: Vec<f32>,
    /// Per-window features for feature-based models (e.g. `af_rr_v1`), empty if none.
    pub features: Vec<f32>,
    /// Whether the signal is good enough to score; when it is not, the model stage
    /// reports "indeterminate" rather than a score.
    pub quality_ok: bool,
}
