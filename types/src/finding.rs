use std::fmt;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::{DeviceTimeUs, PatientId, StreamId};

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Heart rate below the bradycardia threshold.
    Bradycardia,
    /// Heart rate above the tachycardia threshold.
    Tachycardia,
    /// No beat for longer than the pause threshold.
    Pause,
    /// No beat for longer than the asystole threshold.
    Asystole,
    /// Atrial fibrillation (irregularly irregular rhythm).
    AtrialFibrillation,
    /// Ventricular tachycardia: a run of ventricular beats at a high rate (lethal
    /// arrhythmia, IEC 60601-2-27).
    VentricularTachycardia,
    /// Ventricular flutter or fibrillation: a fibrillatory, flutter or oscillatory
    /// waveform (lethal arrhythmia, IEC 60601-2-27).
    VentricularFibrillation,
    /// Extreme bradycardia: a heart rate below the extreme-low limit over several
    /// consecutive beats (lethal arrhythmia, IEC 60601-2-27).
    ExtremeBradycardia,
    /// Extreme tachycardia: a heart rate above the extreme-high limit over many
    /// consecutive beats (lethal arrhythmia, IEC 60601-2-27).
    ExtremeTachycardia,
    /// Frequent premature ventricular contractions.
    FrequentPvcs,
    /// One or more electrodes detached.
    LeadOff,
    /// Samples missing from the stream.
    SignalGap,
    /// The device clock jumped: frame times disagree with the sample count.
    ClockJump,
    /// Signal too noisy to analyse.
    PoorSignal,
    /// AI screen for low left-ventricular ejection fraction.
    LowEjectionFraction,
}

impl Condition {
    /// Stable snake_case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Bradycardia => "bradycardia",
            Condition::Tachycardia => "tachycardia",
            Condition::Pause => "pause",
            Condition::Asystole => "asystole",
            Condition::AtrialFibrillation => "atrial_fibrillation",
            Condition::VentricularTachycardia => "ventricular_tachycardia",
            Condition::VentricularFibrillation => "ventricular_fibrillation",
            Condition::ExtremeBradycardia => "extreme_bradycardia",
            Condition::ExtremeTachycardia => "extreme_tachycardia",
            Condition::FrequentPvcs => "frequent_pvcs",
            Condition::LeadOff => "lead_off",
            Condition::SignalGap => "signal_gap",
            Condition::ClockJump => "clock_jump",
            Condition::PoorSignal => "poor_signal",
            Condition::LowEjectionFraction => "low_ejection_fraction",
        }
    }

    /// The lethal arrhythmias of IEC 60601-2-27: asystole, extreme bradycardia,
    /// extreme tachycardia, ventricular tachycardia and ventricular flutter/fibrillation.
    pub fn is_lethal(self) -> bool {
        matches!(
            self,
            Condition::Asystole
                | Condition::ExtremeBradycardia
                | Condition::ExtremeTachycardia
                | Condition::VentricularTachycardia
                | Condition::VentricularFibrillation
        )
    }

    /// Technical conditions are about the signal, not the patient.
    pub fn is_technical(self) -> bool {
        matches!(
            self,
            Condition::LeadOff
                | Condition::SignalGap
                | Condition::ClockJump
                | Condition::PoorSignal
        )
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the condition was found in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingStatus {
    /// The condition is present.
    Present,
    /// The condition was looked for on good signal and is absent (lets alerts resolve).
    Absent,
    /// The signal was not good enough to decide.
    Indeterminate,
}

impl FindingStatus {
    /// Stable snake_case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingStatus::Present => "present",
            FindingStatus::Absent => "absent",
            FindingStatus::Indeterminate => "indeterminate",
        }
    }
}

/// Who produced a finding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FindingSource {
    /// A DSP detector (rule-based, e.g. heart-rate thresholds).
    Detector {
        /// Detector name, e.g. `rhythm`.
        name: String,
    },
    /// An AI model scored by the inference stage.
    Model {
        /// Model id from its manifest.
        id: String,
        /// Model version from its manifest.
        version: String,
    },
}

impl FindingSource {
    /// `detector:NAME` or `model:ID@VERSION`.
    pub fn label(&self) -> String {
        let mut label = String::new();
        self.push_label(&mut label);
        label
    }

    /// Appends [`FindingSource::label`] to `out`.
    fn push_label(&self, out: &mut String) {
        match self {
            FindingSource::Detector { name } => {
                out.push_str("detector:");
                out.push_str(name);
            }
            FindingSource::Model { id, version } => {
                out.push_str("model:");
                out.push_str(id);
                out.push('@');
                out.push_str(version);
            }
        }
    }
}

/// One conclusion about one window of one stream, published to `ecg.findings.v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Idempotency key `stream/source/condition/window-start-µs`: a replayed window
    /// yields a finding with the same key.
    pub key: String,
    /// The stream.
    pub stream: StreamId,
    /// The pseudonymous patient.
    pub patient: PatientId,
    /// Detector or model.
    pub source: FindingSource,
    /// What it is about.
    pub condition: Condition,
    /// Present, absent or indeterminate.
    pub status: FindingStatus,
    /// Device time of the start of the window it covers.
    pub window_start: DeviceTimeUs,
    /// Device time of the end of that window.
    pub window_end: DeviceTimeUs,
    /// Model probability (0–1), if a model produced it.
    pub score: Option<f32>,
    /// A measured value that goes with it, e.g. heart rate in bpm or pause length in s.
    pub value: Option<f32>,
    /// Findings from AI models are decision support for clinicians, not diagnoses.
    pub decision_support: bool,
    /// From a model in shadow mode: recorded for comparison, never alerted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
    /// The ECG behind a present finding, for the care-team console (absent on
    /// absent/indeterminate findings and on technical ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip: Option<Box<Strip>>,
    /// Why, in words: what an indeterminate finding could not decide on (poor signal,
    /// a model that failed on the window), or the evidence behind a present one.
    /// Never carries sample data or identifiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For an episode condition (atrial fibrillation) while an episode is open: when
    /// it began (device time), so every finding of the episode dates its onset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub episode_start: Option<DeviceTimeUs>,
    /// For an episode condition, on the finding whose window ends an episode (its
    /// status absent): when that episode ended (device time), which can be inside an
    /// earlier window than this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub episode_end: Option<DeviceTimeUs>,
}

/// A short excerpt of one lead behind a finding: what a monitor prints as a rhythm strip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Strip {
    /// The lead shown.
    pub lead: crate::Lead,
    /// Sample rate of `samples_uv` (the stream's rate, reduced to at most 250 Hz).
    pub sample_rate_hz: u32,
    /// Device time of the first sample.
    pub start_us: i64,
    /// Samples in microvolts.
    pub samples_uv: Vec<i32>,
    /// Further traces over the same time behind the finding: for a lethal-arrhythmia
    /// alarm, every other ECG lead its detector used and the stream's pulse channels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<Trace>,
    /// Device times of the pacemaker pulses the device reported within the strip's
    /// span (wire format `pace_pulses`), in order: a monitor marks them on the strip,
    /// as the short spikes themselves do not survive the strip's rate and filter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pace_us: Vec<i64>,
}

/// One more trace of a strip: an ECG lead or a pulsatile waveform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// What it shows: a lead name (`V1`, `aVF`, `unspecified`) or a pulse kind
    /// (`pleth`, `arterial_pressure`).
    pub label: String,
    /// Unit of `values × scale`: `uV` for ECG leads, `NU` or `mmHg` for pulses.
    pub unit: String,
    /// Units per count of `values`.
    pub scale: f32,
    /// Rate of `values` (at most 250 Hz).
    pub sample_rate_hz: u32,
    /// Device time of the first value.
    pub start_us: i64,
    /// The samples, in counts of `scale`.
    pub values: Vec<i32>,
}

impl Finding {
    /// A finding about the window `[window_start, window_end)` of `stream`, its
    /// idempotency key derived from stream, source, condition and window start
    /// ([`Finding::make_key`]). Model findings are decision support; no score, value,
    /// strip or reason yet (see the `with_*` methods).
    pub fn new(
        stream: StreamId,
        patient: PatientId,
        source: FindingSource,
        condition: Condition,
        status: FindingStatus,
        window_start: DeviceTimeUs,
        window_end: DeviceTimeUs,
    ) -> Finding {
        Finding {
            key: Finding::make_key(&stream, &source, condition, window_start),
            decision_support: matches!(source, FindingSource::Model { .. }),
            stream,
            patient,
            source,
            condition,
            status,
            window_start,
            window_end,
            score: None,
            value: None,
            shadow: false,
            strip: None,
            reason: None,
            episode_start: None,
            episode_end: None,
        }
    }

    /// The same with this measured value.
    #[must_use]
    pub fn with_value(mut self, value: Option<f32>) -> Finding {
        self.value = value;
        self
    }

    /// The same with this model probability.
    #[must_use]
    pub fn with_score(mut self, score: Option<f32>) -> Finding {
        self.score = score;
        self
    }

    /// The same with this reason.
    #[must_use]
    pub fn with_reason(mut self, reason: impl Into<String>) -> Finding {
        self.reason = Some(reason.into());
        self
    }

    /// The same, from a model in shadow mode when `shadow`.
    #[must_use]
    pub fn with_shadow(mut self, shadow: bool) -> Finding {
        self.shadow = shadow;
        self
    }

    /// Builds the idempotency key for a finding.
    pub fn make_key(
        stream: &StreamId,
        source: &FindingSource,
        condition: Condition,
        window_start: DeviceTimeUs,
    ) -> String {
        // `{stream}/{label}/{condition}/{start}`, put together piece by piece (every
        // finding has one; `format!` takes several times the instructions).
        let mut key = String::with_capacity(stream.as_str().len() + 64);
        key.push_str(stream.as_str());
        key.push('/');
        source.push_label(&mut key);
        key.push('/');
        key.push_str(condition.as_str());
        key.push('/');
        // Writing to a `String` cannot fail.
        let _ = write!(key, "{}", window_start.0);
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stream_label_condition_start() {
        let stream = StreamId::new("bed-7.ecg").unwrap();
        let sources = [
            FindingSource::Detector {
                name: "rhythm".into(),
            },
            FindingSource::Model {
                id: "af-cnn".into(),
                version: "1.1.0".into(),
            },
        ];
        for source in &sources {
            for condition in [Condition::AtrialFibrillation, Condition::Pause] {
                for start in [0, 1_800_000_000_000_000, -5, i64::MIN, i64::MAX] {
                    assert_eq!(
                        Finding::make_key(&stream, source, condition, DeviceTimeUs(start)),
                        format!("{stream}/{}/{condition}/{start}", source.label())
                    );
                }
            }
        }
        assert_eq!(sources[0].label(), "detector:rhythm");
        assert_eq!(sources[1].label(), "model:af-cnn@1.1.0");
    }
}
