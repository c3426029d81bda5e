use ecg_types::Lead;
use serde::{Deserialize, Serialize};

use crate::Rhythm;

/// What kind of beat a [`Beat`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BeatKind {
    /// A sinus beat: P wave, narrow QRS, T wave.
    Normal,
    /// A premature ventricular contraction: early, wide, no P wave, discordant T.
    Pvc,
    /// A beat of ventricular tachycardia: wide, no P wave.
    Ventricular,
    /// A narrow beat conducted during atrial fibrillation (no P wave).
    AfConducted,
    /// A ventricular-paced beat: a pacemaker pulse, then a wide QRS without a P wave.
    Paced,
}

/// One beat the device produced.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Beat {
    /// Sample index (per lead, from the first sample) of the QRS fiducial point: the
    /// peak of the main QRS deflection (the R peak of a normal beat in lead II).
    pub sample: u64,
    /// The beat's kind.
    pub kind: BeatKind,
    /// The rhythm in force when it happened.
    pub rhythm: Rhythm,
}

/// A stretch of one rhythm, `start..end` in samples (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RhythmEpisode {
    /// The rhythm.
    pub rhythm: Rhythm,
    /// First sample.
    pub start: u64,
    /// One past the last sample generated so far in it.
    pub end: u64,
}

/// A stretch during which one lead was off, `start..end` in samples (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadOffEpisode {
    /// The lead.
    pub lead: Lead,
    /// First sample.
    pub start: u64,
    /// One past the last sample generated so far in it.
    pub end: u64,
}

/// What the device actually did, accumulated as samples are generated: every item
/// refers only to samples already generated, and an episode still in progress ends at
/// the current position (its `end` grows with later calls).
///
/// Beats and rhythm episodes are physiological truth: they are recorded whether or not
/// the beat is visible (a lead may be off, or buried in noise, at the time).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GroundTruth {
    /// Sample rate, to turn sample indices into seconds.
    pub sample_rate: u32,
    /// Beats in order of their fiducial sample.
    pub beats: Vec<Beat>,
    /// Rhythm episodes in order; consecutive episodes have different rhythms and
    /// together cover every sample generated.
    pub episodes: Vec<RhythmEpisode>,
    /// Lead-off episodes in order of start (per lead, non-overlapping).
    pub lead_off: Vec<LeadOffEpisode>,
    /// Samples at which a pacemaker pulse was delivered (and its spike drawn on every
    /// lead), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pace: Vec<u64>,
}

impl GroundTruth {
    pub(crate) fn new(sample_rate: u32) -> Self {
        Self {
            sample_rate,
            ..Self::default()
        }
    }

    /// Beats whose fiducial sample is in `start..end`.
    pub fn beats_in(&self, start: u64, end: u64) -> &[Beat] {
        let a = self.beats.partition_point(|b| b.sample < start);
        let b = self.beats.partition_point(|b| b.sample < end);
        &self.beats[a..b.max(a)]
    }

    /// Pacemaker pulses at samples in `start..end`.
    pub fn pace_in(&self, start: u64, end: u64) -> &[u64] {
        let a = self.pace.partition_point(|&p| p < start);
        let b = self.pace.partition_point(|&p| p < end);
        &self.pace[a..b.max(a)]
    }

    /// RR intervals in seconds between consecutive beats whose fiducials are both in
    /// `start..end`.
    pub fn rr_intervals_s(&self, start: u64, end: u64) -> Vec<f64> {
        let fs = f64::from(self.sample_rate.max(1));
        self.beats_in(start, end)
            .windows(2)
            .map(|w| (w[1].sample - w[0].sample) as f64 / fs)
            .collect()
    }

    /// Mean heart rate (60 / mean RR) over beats in `start..end`, or `None` with fewer
    /// than two beats.
    pub fn mean_hr_bpm(&self, start: u64, end: u64) -> Option<f64> {
        let rr = self.rr_intervals_s(start, end);
        if rr.is_empty() {
            return None;
        }
        let mean = rr.iter().sum::<f64>() / rr.len() as f64;
        Some(60.0 / mean)
    }

    /// The rhythm in force at `sample`, if it has been generated.
    pub fn rhythm_at(&self, sample: u64) -> Option<Rhythm> {
        let i = self.episodes.partition_point(|e| e.end <= sample);
        self.episodes
            .get(i)
            .filter(|e| e.start <= sample)
            .map(|e| e.rhythm)
    }

    /// Episodes of `rhythm`.
    pub fn episodes_of(&self, rhythm: Rhythm) -> impl Iterator<Item = &RhythmEpisode> + '_ {
        self.episodes.iter().filter(move |e| e.rhythm == rhythm)
    }

    /// Whether `lead` was off at `sample`.
    pub fn lead_off_at(&self, lead: Lead, sample: u64) -> bool {
        self.lead_off
            .iter()
            .any(|e| e.lead == lead && e.start <= sample && sample < e.end)
    }

    /// Drops beats before `sample` and episodes that ended at or before it, to bound
    /// memory in long runs.
    pub(crate) fn forget_before(&mut self, sample: u64) {
        let a = self.beats.partition_point(|b| b.sample < sample);
        self.beats.drain(..a);
        let p = self.pace.partition_point(|&p| p < sample);
        self.pace.drain(..p);
        self.episodes.retain(|e| e.end > sample);
        self.lead_off.retain(|e| e.end > sample);
    }
}
