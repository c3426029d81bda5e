use std::collections::VecDeque;
use std::f64::consts::TAU;

use ecg_types::Lead;

use crate::morphology::{
    lead_form, Channel, LeadForm, CHANNEL_I, CHANNEL_II, FWAVE_GAIN, NCHAN, NSRC,
};
use crate::noise::{ChannelNoise, MuscleFilter};
use crate::rhythm::{BeatScheduler, Physiology, PlanIndex, ScheduledBeat, Span};
use crate::{
    Beat, DeviceConfig, GroundTruth, LeadOffEpisode, LeadOffMode, Rhythm, RhythmEpisode, SimError,
};

/// Beats are scheduled this far (seconds) ahead of the sample being generated; no wave
/// starts more than 0.35 s before its beat's fiducial.
const LOOKAHEAD_S: f64 = 1.0;
/// AF f-waves fade in over this long (seconds) at the start of an episode.
const FWAVE_FADE_S: f64 = 0.2;
/// A pacemaker spike as the device draws it on every lead: one sample, then the
/// recharge on the next (mV).
const PACE_SPIKE_MV: f64 = 2.0;
const PACE_RECHARGE_MV: f64 = -0.3;

/// How an output lead is computed from the measured channels.
#[derive(Debug, Clone, Copy)]
enum OutForm {
    Measured(usize),
    Limb { a: f64, b: f64, i: usize, ii: usize },
}

/// A lead-off interval in samples.
#[derive(Debug, Clone)]
struct LeadOffSchedule {
    /// Which output leads (by index) it applies to.
    leads: Vec<bool>,
    start: u64,
    len: u64,
    period: Option<u64>,
    mode: LeadOffMode,
}

impl LeadOffSchedule {
    fn active(&self, n: u64) -> bool {
        if n < self.start {
            return false;
        }
        let d = n - self.start;
        match self.period {
            Some(p) => d % p < self.len,
            None => d < self.len,
        }
    }

    /// Whether any sample in `a..b` is inside an occurrence.
    fn overlaps(&self, a: u64, b: u64) -> bool {
        if b <= a || b <= self.start {
            return false;
        }
        let a = a.max(self.start);
        match self.period {
            None => a < self.start.saturating_add(self.len),
            Some(p) => {
                let k = (a - self.start) / p;
                let s = self.start + k * p;
                a < s.saturating_add(self.len) || s.saturating_add(p) < b
            }
        }
    }
}

/// A simulated ECG device: generates samples in millivolts, lead-major, and records
/// its ground truth as it goes. See the [crate docs](crate) for the model.
#[derive(Debug, Clone)]
pub struct Device {
    cfg: DeviceConfig,
    fs: f64,
    plan: PlanIndex,
    phys: Physiology,
    sched: BeatScheduler,
    /// Beats whose waves may still contribute, in fiducial order.
    beats: VecDeque<ScheduledBeat>,
    /// Scheduled beats not yet reached by the sample position.
    pending: VecDeque<Beat>,
    /// Pacemaker pulses of scheduled paced beats not yet reached, in order.
    pace_pending: VecDeque<u64>,
    /// Whether the last sample carried a pacemaker spike (the next one gets its
    /// recharge).
    spiked: bool,
    channels: Vec<(Channel, ChannelNoise)>,
    forms: Vec<OutForm>,
    src_mask: [bool; NSRC],
    lead_off: Vec<LeadOffSchedule>,
    lead_was_off: Vec<bool>,
    span: Span,
    episode_start: u64,
    fwave_phase: f64,
    pos: u64,
    truth: GroundTruth,
    vals: Vec<f64>,
    meas: Vec<f64>,
}

impl Device {
    /// Builds a device after validating `cfg`.
    ///
    /// # Errors
    /// Returns a [`SimError`] if the config is invalid (sample rate outside 125–1000 Hz,
    /// no or more than 12 leads, a duplicate lead, a bad rhythm segment, noise setting or
    /// lead-off interval).
    pub fn new(cfg: DeviceConfig) -> Result<Device, SimError> {
        cfg.validate()?;
        let fs = f64::from(cfg.sample_rate);
        let plan = PlanIndex::new(&cfg.plan, cfg.sample_rate);
        let phys = Physiology::new(cfg.seed);
        let sched = BeatScheduler::new(cfg.seed, cfg.sample_rate);
        let filter = MuscleFilter::new(cfg.sample_rate);

        let mut channels: Vec<(Channel, ChannelNoise)> = Vec::new();
        let chan_index = |c: Channel, channels: &mut Vec<(Channel, ChannelNoise)>| {
            if let Some(i) = channels.iter().position(|(x, _)| x.id == c.id) {
                return i;
            }
            let noise = ChannelNoise::new(
                &cfg.noise,
                cfg.seed,
                c.id,
                cfg.sample_rate,
                phys.resp_hz,
                filter,
            );
            channels.push((c, noise));
            channels.len() - 1
        };
        let mut forms = Vec::with_capacity(cfg.leads.len());
        for &lead in &cfg.leads {
            forms.push(match lead_form(lead) {
                LeadForm::Measured(c) => OutForm::Measured(chan_index(c, &mut channels)),
                LeadForm::Limb { a, b } => OutForm::Limb {
                    a: f64::from(a),
                    b: f64::from(b),
                    i: chan_index(CHANNEL_I, &mut channels),
                    ii: chan_index(CHANNEL_II, &mut channels),
                },
            });
        }
        debug_assert!(channels.iter().all(|(c, _)| c.id < NCHAN));
        let mut src_mask = [false; NSRC];
        for (c, _) in &channels {
            src_mask[c.src] = true;
        }

        let to_samples = |s: f64| (s * fs).round() as u64;
        let lead_off = cfg
            .lead_off
            .iter()
            .map(|lo| LeadOffSchedule {
                leads: cfg
                    .leads
                    .iter()
                    .map(|&l| lo.lead.is_none_or(|x| x == l))
                    .collect(),
                start: to_samples(lo.start_s),
                len: to_samples(lo.duration_s).max(1),
                period: lo.period_s.map(to_samples),
                mode: lo.mode,
            })
            .collect();

        let n_leads = cfg.leads.len();
        let n_chan = channels.len();
        let span = plan.span_at(0);
        Ok(Device {
            fs,
            plan,
            phys,
            sched,
            beats: VecDeque::new(),
            pending: VecDeque::new(),
            pace_pending: VecDeque::new(),
            spiked: false,
            channels,
            forms,
            src_mask,
            lead_off,
            lead_was_off: vec![false; n_leads],
            span,
            episode_start: 0,
            fwave_phase: 0.0,
            pos: 0,
            truth: GroundTruth::new(cfg.sample_rate),
            vals: vec![0.0; n_leads],
            meas: vec![0.0; n_chan],
            cfg,
        })
    }

    /// Appends the next `n` samples per lead, lead-major (lead `l`'s samples are
    /// `out[old_len + l * n .. old_len + (l + 1) * n]`), in millivolts.
    ///
    /// The samples do not depend on how the stream is cut into calls.
    pub fn generate(&mut self, n: usize, out: &mut Vec<f32>) {
        let n_leads = self.forms.len();
        let base = out.len();
        out.resize(base + n * n_leads, 0.0);
        for i in 0..n {
            self.step();
            for (l, v) in self.vals.iter().enumerate() {
                out[base + l * n + i] = *v as f32;
            }
        }
    }

    /// Samples generated so far per lead.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Ground truth for every sample generated so far.
    pub fn truth(&self) -> &GroundTruth {
        &self.truth
    }

    /// Drops ground truth before `sample` (beats before it, episodes that ended at or
    /// before it) to bound memory in long runs; the episode in progress is always kept.
    pub fn forget_truth_before(&mut self, sample: u64) {
        self.truth
            .forget_before(sample.min(self.pos.saturating_sub(1)));
    }

    /// The config the device was built from.
    pub fn config(&self) -> &DeviceConfig {
        &self.cfg
    }

    /// Sample rate in hertz.
    pub fn sample_rate(&self) -> u32 {
        self.cfg.sample_rate
    }

    /// The leads, in output order.
    pub fn leads(&self) -> &[Lead] {
        &self.cfg.leads
    }

    /// Whether lead number `lead_index` (in output order) is scheduled to be off at
    /// any sample in `start..end`. Out-of-range indices are never off.
    pub fn lead_off_in(&self, lead_index: usize, start: u64, end: u64) -> bool {
        self.lead_off
            .iter()
            .any(|s| s.leads.get(lead_index).copied().unwrap_or(false) && s.overlaps(start, end))
    }

    /// The rhythm scheduled at `sample` (whether or not it has been generated yet).
    pub fn rhythm_at(&self, sample: u64) -> Rhythm {
        self.plan.span_at(sample).rhythm
    }

    /// Generates one sample per lead into `self.vals`.
    fn step(&mut self) {
        let n = self.pos;
        let t = n as f64 / self.fs;

        // Schedule beats far enough ahead, drop finished ones.
        while let Some(h) = self.sched.horizon() {
            if h >= t + LOOKAHEAD_S {
                break;
            }
            match self.sched.next_beat(&self.plan, &self.phys) {
                Some(b) => {
                    self.pace_pending.extend(b.pace);
                    self.pending.push_back(Beat {
                        sample: b.sample,
                        kind: b.kind,
                        rhythm: b.rhythm,
                    });
                    self.beats.push_back(b);
                }
                None => break,
            }
        }
        while self.beats.front().is_some_and(|b| b.end < t) {
            self.beats.pop_front();
        }
        while self.pending.front().is_some_and(|b| b.sample <= n) {
            if let Some(b) = self.pending.pop_front() {
                self.truth.beats.push(b);
            }
        }

        // Rhythm episodes.
        if n >= self.span.end || n < self.span.start {
            self.span = self.plan.span_at(n);
        }
        let rhythm = self.span.rhythm;
        match self.truth.episodes.last_mut() {
            Some(e) if e.rhythm == rhythm && e.end == n => e.end = n + 1,
            last => {
                if last.is_none_or(|e| e.rhythm != rhythm) {
                    self.episode_start = n;
                }
                self.truth.episodes.push(RhythmEpisode {
                    rhythm,
                    start: n,
                    end: n + 1,
                });
            }
        }

        // Clean signal of the source leads.
        let mut acc = [0.0f64; NSRC];
        for b in &self.beats {
            for w in &b.waves {
                w.add(t, &self.src_mask, &mut acc);
            }
        }

        // Atrial fibrillation f-waves.
        let ph = &self.phys;
        let f = ph.fwave_hz * (1.0 + 0.08 * (TAU * 0.13 * t + ph.fwave_phases[0]).sin());
        self.fwave_phase = (self.fwave_phase + TAU * f / self.fs).rem_euclid(TAU);
        if rhythm == Rhythm::AtrialFibrillation {
            let fade = ((n - self.episode_start) as f64 / (FWAVE_FADE_S * self.fs)).min(1.0);
            let amp = ph.fwave_mv * (1.0 + 0.3 * (TAU * 0.23 * t + ph.fwave_phases[1]).sin());
            let v = fade
                * amp
                * (self.fwave_phase.sin()
                    + 0.35 * (2.0 * self.fwave_phase + ph.fwave_phases[2]).sin());
            for (a, g) in acc.iter_mut().zip(FWAVE_GAIN) {
                *a += f64::from(g) * v;
            }
        }

        // A pacemaker pulse: a one-sample spike on every lead, then its recharge.
        while self.pace_pending.front().is_some_and(|&p| p < n) {
            self.pace_pending.pop_front();
        }
        let spike = if self.pace_pending.front() == Some(&n) {
            self.pace_pending.pop_front();
            self.truth.pace.push(n);
            self.spiked = true;
            PACE_SPIKE_MV
        } else if std::mem::take(&mut self.spiked) {
            PACE_RECHARGE_MV
        } else {
            0.0
        };

        // Measured channels with their noise, then output leads.
        for ((c, noise), m) in self.channels.iter_mut().zip(self.meas.iter_mut()) {
            *m = f64::from(c.gain) * acc[c.src] + noise.sample(n);
        }
        for (l, form) in self.forms.iter().enumerate() {
            let mut v = match *form {
                OutForm::Measured(i) => self.meas[i],
                OutForm::Limb { a, b, i, ii } => a * self.meas[i] + b * self.meas[ii],
            };
            // Only where there is a spike: adding 0.0 would turn a -0.0 sample into
            // +0.0, and the presets without pacing keep their samples bit for bit.
            if spike != 0.0 {
                v += spike;
            }
            let off = self
                .lead_off
                .iter()
                .find(|s| s.leads[l] && s.active(n))
                .map(|s| s.mode);
            if let Some(mode) = off {
                v = match mode {
                    LeadOffMode::Flat => 0.0,
                    LeadOffMode::Saturated => f64::from(self.cfg.rail_mv),
                };
                let lead = self.cfg.leads[l];
                let extended = self.lead_was_off[l]
                    && self
                        .truth
                        .lead_off
                        .iter_mut()
                        .rev()
                        .find(|e| e.lead == lead && e.end == n)
                        .map(|e| e.end = n + 1)
                        .is_some();
                if !extended {
                    self.truth.lead_off.push(LeadOffEpisode {
                        lead,
                        start: n,
                        end: n + 1,
                    });
                }
            }
            self.lead_was_off[l] = off.is_some();
            self.vals[l] = v;
        }
        self.pos += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lead_off_overlap_matches_brute_force() {
        for period in [None, Some(7), Some(10)] {
            let s = LeadOffSchedule {
                leads: vec![true],
                start: 5,
                len: 3,
                period,
                mode: LeadOffMode::Flat,
            };
            for a in 0..40 {
                for b in a..45 {
                    let brute = (a..b).any(|n| s.active(n));
                    assert_eq!(s.overlaps(a, b), brute, "{period:?} {a}..{b}");
                }
            }
        }
    }
}
