use serde::{Deserialize, Serialize};

use crate::{
    DeviceId, DeviceTimeUs, Lead, NanovoltsPerCount, PatientId, PulseKind, SampleRate, StreamId,
};

/// A block of consecutive samples from one device stream, as validated by the ingest
/// codec. All leads share the sample clock; `samples` is lead-major: lead `l`'s samples
/// are `samples[l * n .. (l + 1) * n]` with `n = samples_per_lead()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// The stream (Kafka key).
    pub stream: StreamId,
    /// The device that recorded it.
    pub device: DeviceId,
    /// The pseudonymous patient.
    pub patient: PatientId,
    /// Per-stream sequence number, incremented by one per frame by the gateway.
    pub seq: u64,
    /// Device time of the first sample.
    pub t0: DeviceTimeUs,
    /// Sampling rate shared by all leads.
    pub sample_rate: SampleRate,
    /// Amplitude resolution of the integer samples.
    pub scale: NanovoltsPerCount,
    /// Leads in the order their samples appear.
    pub leads: Vec<Lead>,
    /// Per-lead lead-off flags (electrode detached), same order as `leads`.
    pub lead_off: Vec<bool>,
    /// Integer samples, lead-major.
    pub samples: Vec<i32>,
    /// Pulsatile waveforms recorded over the same time span (plethysmogram, arterial
    /// pressure), each at its own rate; empty for ECG-only devices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pulses: Vec<PulseWave>,
    /// Pacemaker pulses the device detected in this frame: sample offsets within it
    /// (0-based, per lead, increasing). The pipeline blanks the ECG there before it
    /// looks for beats, so that a pulse is never counted as one (IEC 60601-2-27).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pace: Vec<u32>,
}

/// A pulsatile waveform over a frame's time span, in its physical unit
/// ([`PulseKind::unit`]): `samples.len() / sample_rate` equals the ECG's duration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PulseWave {
    /// Plethysmogram or arterial pressure.
    pub kind: PulseKind,
    /// Its own sampling rate.
    pub sample_rate: SampleRate,
    /// Samples in the kind's unit (NU, mmHg).
    pub samples: Vec<f32>,
}

impl Frame {
    /// Samples per lead in this frame.
    pub fn samples_per_lead(&self) -> usize {
        self.samples
            .len()
            .checked_div(self.leads.len())
            .unwrap_or(0)
    }

    /// The samples of the `i`-th lead.
    ///
    /// # Panics
    /// Panics if `i >= self.leads.len()`.
    pub fn lead_samples(&self, i: usize) -> &[i32] {
        let n = self.samples_per_lead();
        &self.samples[i * n..(i + 1) * n]
    }

    /// Appends every sample, lead-major as carried, converted to millivolts by the
    /// frame's scale (what the DSP chain takes).
    pub fn extend_mv(&self, out: &mut Vec<f32>) {
        out.extend(self.samples.iter().map(|&c| self.scale.to_mv(c)));
    }

    /// Every sample in millivolts, lead-major as carried.
    pub fn samples_mv(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.samples.len());
        self.extend_mv(&mut out);
        out
    }

    /// Device time just after the last sample (start of the next frame).
    pub fn end(&self) -> DeviceTimeUs {
        self.t0.plus_us(
            self.sample_rate
                .samples_to_us(self.samples_per_lead() as u64),
        )
    }
}
