//! The curve-length QRS detector: a second, independent beat detector whose
//! agreement with the main one ([`crate::qrs::QrsDetector`]) is the bSQI signal
//! quality index ([`crate::quality`]). It works on a different feature (the curve
//! length of the 5–15 Hz band rather than the integrated absolute slope of a
//! 5–15 Hz band-pass) with its own
//! thresholds, so that the two disagree on noise more than on ECG.

use std::collections::VecDeque;

/// A simple, independent streaming beat detector for bSQI: the curve length of the
/// 5–15 Hz band over 130 ms, an adaptive threshold at `0.35 ×` the running level of
/// recent beat peaks (decaying after 1.5 s without a beat), a 250 ms refractory
/// period, and T-wave rejection (until 360 ms after a beat, a peak must reach 0.6
/// times the beat's). The first second only sets the level (no beats). Beats are reported at most
/// [`CurveLengthDetector::latency_samples`] after they occur (≈0.5 s), in increasing order.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveLengthDetector {
    fs: f64,
    n: u64,
    prev: f32,
    ring: VecDeque<f32>,
    sum: f64,
    w: usize,
    level: f32,
    in_peak: bool,
    peak_v: f32,
    peak_t: u64,
    last_beat: Option<u64>,
    refractory: u64,
    t_wave: u64,
    last_peak: f32,
    since_beat: u64,
    decay_after: u64,
    decay: f32,
    max_hold: u64,
    learn: u64,
}

impl CurveLengthDetector {
    /// A detector for `fs` Hz, fed with the 5–15 Hz band ([`crate::quality::QualitySample::qrs`]).
    pub fn new(fs: f64) -> Self {
        let fs = crate::usable_rate(fs);
        let s = |sec: f64| (sec * fs).round().max(1.0) as u64;
        Self {
            fs,
            n: 0,
            prev: 0.0,
            ring: VecDeque::new(),
            sum: 0.0,
            w: s(0.13) as usize,
            level: 0.0,
            in_peak: false,
            peak_v: 0.0,
            peak_t: 0,
            last_beat: None,
            refractory: s(0.25),
            t_wave: s(0.36),
            last_peak: 0.0,
            since_beat: 0,
            decay_after: s(1.5),
            // Level halves every second once beats stop.
            decay: (0.5f64.powf(1.0 / fs)) as f32,
            max_hold: s(0.3),
            learn: s(1.0),
        }
    }

    /// Upper bound of the delay between a beat and the sample whose push reports it.
    pub fn latency_samples(&self) -> usize {
        (self.max_hold + self.w as u64 + 2) as usize
    }

    /// Sampling rate (Hz).
    pub fn fs(&self) -> f64 {
        self.fs
    }

    /// Samples at the start that only set the threshold (no beats are reported).
    pub fn learning_samples(&self) -> u64 {
        self.learn
    }

    /// Feeds one sample of the 5–15 Hz band; appends a beat (sample index) if one
    /// is decided.
    pub fn step(&mut self, qrs: f32, out: &mut Vec<u64>) {
        let d = if self.n == 0 {
            0.0
        } else {
            (qrs - self.prev).abs()
        };
        self.prev = qrs;
        self.ring.push_back(d);
        self.sum += f64::from(d);
        if self.ring.len() > self.w {
            if let Some(old) = self.ring.pop_front() {
                self.sum -= f64::from(old);
            }
        }
        let v = self.sum.max(0.0) as f32;
        let t = self.n;
        self.n += 1;
        self.since_beat += 1;
        if self.since_beat > self.decay_after {
            self.level *= self.decay;
        }
        if t < self.learn {
            // Learning: the level starts at the largest value of the first second.
            self.level = self.level.max(v);
            return;
        }
        let thr = 0.35 * self.level;
        if self.in_peak {
            if v > self.peak_v {
                self.peak_v = v;
                self.peak_t = t;
            }
            if v < 0.5 * self.peak_v || t - self.peak_t >= self.max_hold {
                self.in_peak = false;
                // The curve length trails the wave by half its window.
                let beat = self.peak_t.saturating_sub(self.w as u64 / 2);
                // Refractory 250 ms; until 360 ms only a peak at least 0.6 times
                // the last beat's (else a T wave).
                let ok = self.last_beat.is_none_or(|b| {
                    beat >= b + self.refractory
                        && (beat >= b + self.t_wave || self.peak_v >= 0.6 * self.last_peak)
                });
                if ok {
                    self.level = if self.level <= 0.0 {
                        self.peak_v
                    } else {
                        0.8 * self.level + 0.2 * self.peak_v
                    };
                    self.last_beat = Some(beat);
                    self.last_peak = self.peak_v;
                    self.since_beat = 0;
                    out.push(beat);
                }
            }
        } else if v > thr && v > 1e-4 {
            self.in_peak = true;
            self.peak_v = v;
            self.peak_t = t;
        }
    }
}

impl CurveLengthDetector {
    /// Heap and inline bytes of this state.
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.ring.capacity() * std::mem::size_of::<f32>()
    }
}
