//! Pulse detection on a plethysmogram or arterial-pressure waveform, with the
//! per-pulse measures the alarm decisions use as evidence.
//!
//! The waveform is averaged down to about 50 Hz, low-passed at 8 Hz, and its slope
//! sum function (Zong et al. 2003: the sum of rising slopes over 125 ms) peaks once
//! per upstroke. A peak above 35 % of the median of the last eight pulse peaks (and
//! 200 ms clear of a larger one) is a pulse; its amplitude is the rise from the foot
//! before it to the top after it. A channel's reference amplitude is the median of its
//! recent pulses of plausible size, so a pulse that shrinks to a ripple (no output)
//! no longer counts as a pulse at decision time even when the detector's own
//! threshold has adapted to it.

use ecg_types::PulseKind;

use super::ring::{median_small, History, Ring};
use crate::filter::{Biquad, BUTTERWORTH_Q};

/// Rate the pulse waveform is averaged down to (Hz, approximately).
const PULSE_HZ: f64 = 50.0;
const NBUF: usize = 8;
/// A slope-sum peak above this fraction of the recent pulse peaks is a pulse.
const TH_FRAC: f32 = 0.35;
/// Pulse data may run this far (s) ahead of the ECG without losing history.
pub(crate) const LOOKAHEAD_S: f32 = 10.0;
/// Pulses whose amplitude is below this fraction of the reference are not used to
/// update it.
const REF_MIN: f32 = 0.3;

/// One detected pulse.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Pulse {
    /// ECG sample index of the upstroke (slope-sum peak).
    pub(crate) t: u64,
    /// Foot-to-top amplitude (channel units).
    pub(crate) amp: f32,
    /// Reference amplitude of the channel when the pulse was found (NaN while fewer
    /// than 8 pulses are known).
    pub(crate) reference: f32,
    /// Rise time foot to top (s).
    pub(crate) rise_s: f32,
}

/// Signal statistics of one tick of a pulse channel.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct PulseTick {
    pub(crate) tick: u64,
    pub(crate) n: u16,
    /// Samples missing or stuck (identical raw values for 200 ms or more).
    pub(crate) bad: u16,
    pub(crate) min: f32,
    pub(crate) max: f32,
}

/// One pulse channel's state.
#[derive(Debug, Clone)]
pub(crate) struct PulseChannel {
    pub(crate) kind: PulseKind,
    /// Smallest amplitude of a pulse (channel units).
    floor: f32,
    /// Share of recent ECG beats followed by a pulse at the usual delay, and of pulses
    /// preceded by a beat (exponential average over ticks with beats).
    pub(crate) coupling: f32,
    pub(crate) coupling_updates: u32,
    /// Recent beat-to-pulse delays (s).
    delays: [f32; 16],
    delays_n: usize,
    delays_pos: usize,
    fs: f64,
    ecg_fs: f64,
    d: usize,
    fp: f32,
    tick: u64,
    // Input side.
    acc: f32,
    acc_n: usize,
    acc_bad: bool,
    last_raw: f32,
    run: u32,
    stuck_run: u32,
    started: bool,
    /// Input samples pushed so far.
    pub(crate) pushed: u64,
    // Working side.
    k: u64,
    lp: Biquad,
    x: History,
    slopes: Vec<f32>,
    slope_pos: usize,
    ssf: f32,
    x_prev: f32,
    ssf_prev: f32,
    cand: Option<(u64, f32)>,
    r: u64,
    warmup: u64,
    warm_max: f32,
    relearn: u64,
    spk: [f32; NBUF],
    spk_pos: usize,
    last_pulse: Option<(u64, f32)>,
    refs: [f32; 16],
    refs_n: usize,
    refs_pos: usize,
    pub(crate) pulses: Ring<Pulse>,
    pub(crate) ticks: Ring<PulseTick>,
    cur: PulseTick,
}

impl PulseChannel {
    pub(crate) fn new(
        kind: PulseKind,
        fs: u32,
        ecg_fs: u32,
        tick: u64,
        history_s: f32,
        floor: f32,
    ) -> Self {
        let fs_f = f64::from(fs.max(1));
        let d = ((fs_f / PULSE_HZ).round() as usize).max(1);
        let fp = fs_f / d as f64;
        let n = |s: f64| ((s * fp).round() as u64).max(1);
        Self {
            kind,
            floor,
            coupling: 0.5,
            coupling_updates: 0,
            delays: [0.0; 16],
            delays_n: 0,
            delays_pos: 0,
            fs: fs_f,
            ecg_fs: f64::from(ecg_fs.max(1)),
            d,
            fp: fp as f32,
            tick,
            acc: 0.0,
            acc_n: 0,
            acc_bad: false,
            last_raw: f32::NAN,
            run: 0,
            stuck_run: ((0.2 * fs_f).round() as u32).max(3),
            started: false,
            pushed: 0,
            k: 0,
            lp: Biquad::low_pass(8.0_f64.min(0.4 * fp), fp, BUTTERWORTH_Q),
            x: History::new((1.2 * fp) as usize),
            slopes: vec![0.0; n(0.125) as usize],
            slope_pos: 0,
            ssf: 0.0,
            x_prev: 0.0,
            ssf_prev: 0.0,
            cand: None,
            r: n(0.2),
            warmup: n(3.0),
            warm_max: 0.0,
            relearn: n(6.0),
            spk: [0.0; NBUF],
            spk_pos: 0,
            last_pulse: None,
            refs: [0.0; 16],
            refs_n: 0,
            refs_pos: 0,
            // The history plus pulse data pushed up to LOOKAHEAD_S ahead of the ECG, at
            // up to 4 pulses a second.
            pulses: Ring::new(((history_s + LOOKAHEAD_S) * 4.0).ceil() as usize + 8),
            ticks: Ring::new(
                (f64::from(history_s + LOOKAHEAD_S) * f64::from(ecg_fs) / tick.max(1) as f64).ceil()
                    as usize
                    + 4,
            ),
            cur: PulseTick {
                min: f32::INFINITY,
                max: f32::NEG_INFINITY,
                ..PulseTick::default()
            },
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.x.bytes() + self.slopes.capacity() * 4 + self.pulses.bytes() + self.ticks.bytes()
    }

    /// Delay (ECG samples) between a pulse's upstroke and the input sample at which it
    /// is stored, an upper bound.
    pub(crate) fn latency_ecg_samples(&self) -> u64 {
        let work = (self.r + 2) as f64 * self.d as f64 + self.d as f64 / 2.0;
        (work / self.fs * self.ecg_fs).ceil() as u64 + 1
    }

    /// ECG time covered by the samples pushed so far.
    pub(crate) fn covered_until(&self) -> u64 {
        (self.pushed as f64 / self.fs * self.ecg_fs) as u64
    }

    fn ecg_time(&self, k: u64) -> u64 {
        // Working sample k averages input samples [k d, (k+1) d); the low-pass adds
        // little delay at the upstroke frequencies, the slope sum half its window.
        let centre = (k as f64 + 0.5) * self.d as f64 - 0.5;
        (centre.max(0.0) / self.fs * self.ecg_fs) as u64
    }

    pub(crate) fn push(&mut self, x: &[f32]) {
        for &v in x {
            self.pushed += 1;
            let valid = v.is_finite();
            let v = if valid {
                v
            } else if self.last_raw.is_finite() {
                self.last_raw
            } else {
                0.0
            };
            if v == self.last_raw {
                self.run = self.run.saturating_add(1);
            } else {
                self.run = 0;
            }
            self.last_raw = v;
            if !valid || self.run + 1 >= self.stuck_run {
                self.acc_bad = true;
            }
            self.acc += v;
            self.acc_n += 1;
            if self.acc_n == self.d {
                let y = self.acc / self.d as f32;
                let bad = std::mem::take(&mut self.acc_bad);
                self.acc = 0.0;
                self.acc_n = 0;
                self.work(y, bad);
            }
        }
    }

    fn work(&mut self, y: f32, bad: bool) {
        let k = self.k;
        self.k += 1;
        if !self.started {
            self.started = true;
            self.lp.settle(f64::from(y));
            self.x_prev = y;
        }
        let xf = self.lp.step(f64::from(y)) as f32;
        self.x.push(xf);
        let up = (xf - self.x_prev).max(0.0);
        self.x_prev = xf;
        self.ssf += up - self.slopes[self.slope_pos];
        self.slopes[self.slope_pos] = up;
        self.slope_pos = (self.slope_pos + 1) % self.slopes.len();
        let ssf = self.ssf.max(0.0);

        let t = self.ecg_time(k);
        let tick = t / self.tick;
        if tick != self.cur.tick {
            if self.cur.n > 0 {
                self.ticks.push(self.cur);
            }
            self.cur = PulseTick {
                tick,
                min: f32::INFINITY,
                max: f32::NEG_INFINITY,
                ..PulseTick::default()
            };
        }
        self.cur.n = self.cur.n.saturating_add(1);
        if bad {
            self.cur.bad = self.cur.bad.saturating_add(1);
        }
        self.cur.min = self.cur.min.min(xf);
        self.cur.max = self.cur.max.max(xf);

        if k < self.warmup {
            self.warm_max = self.warm_max.max(ssf);
            if k + 1 == self.warmup {
                self.spk = [0.7 * self.warm_max; NBUF];
            }
        }
        if ssf > self.ssf_prev && self.cand.is_none_or(|(_, v)| ssf > v) {
            self.cand = Some((k, ssf));
        }
        self.ssf_prev = ssf;
        if let Some((kc, v)) = self.cand {
            if k >= kc + self.r {
                self.cand = None;
                if kc >= self.warmup {
                    self.peak(kc, v);
                }
            }
        }
        // No pulse for a while: let the threshold follow the recent slope sums down.
        let last = self
            .last_pulse
            .map_or(self.warmup, |(kp, _)| kp.max(self.warmup));
        if k > last + self.relearn && (k - last).is_multiple_of(self.relearn / 2) {
            for s in &mut self.spk {
                *s *= 0.5;
            }
        }
    }

    fn peak(&mut self, kc: u64, v: f32) {
        let level = median_small(&self.spk);
        if v < TH_FRAC * level || v <= 0.0 {
            return;
        }
        if let Some((kp, pv)) = self.last_pulse {
            // 250 ms refractory; a clearly smaller peak within 350 ms is a dicrotic wave.
            if kc < kp + (0.25 * self.fp) as u64
                || (kc < kp + (0.35 * self.fp) as u64 && v < 0.6 * pv)
            {
                return;
            }
        }
        // Foot: minimum in the 250 ms before the slope-sum peak; top: maximum from the
        // foot to 200 ms after the peak (the data available now).
        let back = (0.25 * self.fp) as u64 + self.slopes.len() as u64;
        let lo = kc.saturating_sub(back).max(self.x.first());
        let hi = (kc + self.r).min(self.x.count().saturating_sub(1));
        let (mut foot, mut kf) = (f32::INFINITY, lo);
        for j in lo..=kc {
            let a = self.x.at(j);
            if a < foot {
                foot = a;
                kf = j;
            }
        }
        let (mut top, mut kt) = (f32::NEG_INFINITY, kf);
        for j in kf..=hi {
            let a = self.x.at(j);
            if a > top {
                top = a;
                kt = j;
            }
        }
        let amp = (top - foot).max(0.0);
        if amp < self.floor {
            return;
        }
        self.spk[self.spk_pos] = v;
        self.spk_pos = (self.spk_pos + 1) % NBUF;
        self.last_pulse = Some((kc, v));
        let known = self.reference();
        let reference = known.unwrap_or(amp);
        if amp >= REF_MIN * reference {
            self.refs[self.refs_pos] = amp;
            self.refs_pos = (self.refs_pos + 1) % self.refs.len();
            self.refs_n += 1;
        }
        self.pulses.push(Pulse {
            t: self.ecg_time(kc),
            amp,
            reference: known.unwrap_or(f32::NAN),
            rise_s: (kt - kf) as f32 / self.fp,
        });
    }

    /// Updates the ECG coupling with the fused ECG beats `beats` (sorted, covering at
    /// least 1 s either side of `[b0, b1)`), whose pulses (up to 1 s later) have all
    /// been detected: the beats of `[b0, b1)` followed by a pulse at the usual delay,
    /// over those beats plus the pulses of the same stretch that no beat explains.
    /// Pulses below `min_amp` of the reference are ignored. The delay may be slightly
    /// negative: devices filter and time-stamp the ECG and the pulse waveforms
    /// differently.
    pub(crate) fn update_coupling(&mut self, beats: &[u64], b0: u64, b1: u64, min_amp: f32) {
        let fs = self.ecg_fs as f32;
        let med = self.median_delay();
        let (lo, hi) = (-0.25, 1.0);
        let tol = 0.15;
        // While the reference is unknown (NaN) every pulse counts.
        let major = |p: &Pulse| p.reference.is_nan() || p.amp >= min_amp * p.reference;
        let mut n_beats = 0usize;
        let mut matched = 0usize;
        for &t in beats.iter().filter(|&&t| t >= b0 && t < b1) {
            n_beats += 1;
            // The pulse closest to the usual delay (the first after the beat while the
            // delay is not yet known).
            let mut best: Option<f32> = None;
            for p in self.pulses.iter().filter(|p| major(p)) {
                let d = (p.t as f32 - t as f32) / fs;
                if d < lo || d > hi {
                    continue;
                }
                let better = match (best, med) {
                    (None, _) => true,
                    (Some(b), Some(m)) => (d - m).abs() < (b - m).abs(),
                    (Some(b), None) => d >= 0.0 && (b < 0.0 || d < b),
                };
                if better {
                    best = Some(d);
                }
            }
            if let Some(d) = best {
                if med.is_none_or(|m| (d - m).abs() <= tol) {
                    matched += 1;
                }
                self.delays[self.delays_pos] = d;
                self.delays_pos = (self.delays_pos + 1) % self.delays.len();
                self.delays_n += 1;
            }
        }
        if n_beats == 0 {
            return;
        }
        // Pulses of the stretch that no beat explains.
        let m = med.unwrap_or(0.2);
        let mut extra = 0usize;
        for p in self.pulses.iter().filter(|p| major(p)) {
            let src = p.t as f32 - m * fs;
            if src < b0 as f32 || src >= b1 as f32 {
                continue;
            }
            if !beats.iter().any(|&t| (src - t as f32).abs() <= tol * fs) {
                extra += 1;
            }
        }
        let score = matched as f32 / (n_beats + extra) as f32;
        self.coupling += 0.15 * (score - self.coupling);
        self.coupling_updates += 1;
    }

    /// Median beat-to-pulse delay (s), once five are known.
    pub(crate) fn median_delay(&self) -> Option<f32> {
        (self.delays_n >= 5)
            .then(|| median_small(&self.delays[..self.delays_n.min(self.delays.len())]))
    }

    /// Whether the channel's pulses have followed the ECG's beats recently.
    pub(crate) fn coupled(&self) -> bool {
        self.coupling_updates >= 5 && self.coupling >= 0.6
    }

    /// The reference amplitude as it was at ECG time `t` (that of the last pulse
    /// before `t`): pulses pushed ahead of the ECG must not change a decision about
    /// an earlier time.
    pub(crate) fn reference_at(&self, t: u64) -> Option<f32> {
        self.pulses
            .iter()
            .rev()
            .find(|p| p.t < t)
            .map(|p| p.reference)
            .filter(|r| r.is_finite())
    }

    /// Median amplitude of the channel's recent plausible pulses, once 8 are known.
    pub(crate) fn reference(&self) -> Option<f32> {
        (self.refs_n >= 8).then(|| median_small(&self.refs[..self.refs_n.min(self.refs.len())]))
    }
}
