use serde::{Deserialize, Serialize};

use crate::{DeviceTimeUs, Lead, PatientId, SampleRate, StreamId};

/// What a model scores: one window of one stream cut to a model's contract by the
/// analyzer's one model-input builder — the raw signal of the model's leads resampled
/// to its rate (models do their own filtering, in their graphs), or per-window
/// features — with the quality verdict that gates scoring. The analyzer → scorer hop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInput {
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
    /// Raw (unfiltered) samples in millivolts, lead-major, at `sample_rate`.
    pub samples_mv: Vec<f32>,
    /// RR intervals (seconds) between consecutive beats detected in the window.
    pub rr_s: Vec<f32>,
    /// Times (seconds from `start`) of the beats detected in the window, the ones
    /// `rr_s` lies between (empty when `rr_s` is): where in the window the rhythm
    /// changes, for the AF episode tracker's beat-level onsets and offsets.
    #[serde(default)]
    pub beats_s: Vec<f32>,
    /// For each of `beats_s`, whether the DSP stage's PVC classifier called it a
    /// premature ventricular beat with a wide QRS (ventricular by its shape): with
    /// `nn_intervals`, the AF episode tracker judges RR irregularity on the intervals
    /// between the other beats. As long as `beats_s` (empty with it). The classifier
    /// learns from the stream's history, so a window built from a later start
    /// (offline) can differ here.
    #[serde(default)]
    pub wide_pvc: Vec<bool>,
    /// Per-window features for feature-based models (e.g. `af_rr_v1`), empty if none.
    pub features: Vec<f32>,
    /// Whether the signal is good enough to score; when it is not, the model stage
    /// reports "indeterminate" rather than a score.
    pub quality_ok: bool,
}
