//! Pacemaker pulse blanking: the ECG after each pacemaker pulse the device reported
//! (wire format v1 `pace_pulses`) is held at its value just before the pulse on
//! every lead, then eased back to the signal (time constant [`FADE_S`]), before any
//! beat detector sees it.
//!
//! A pacemaker pulse lasts 0.1–2 ms, but its artefact in a recorded ECG — the pulse as
//! the device's filters spread it, the electrode's recharge, a pace marker the monitor
//! draws — is a sharp deflection of up to several millivolts, steeper than any QRS
//! complex. A beat detector counts it as a beat. When the pacemaker fails to capture
//! (its pulses no longer start a heartbeat) the ventricles may stand still while the
//! pulses go on: counted as beats, they hide the asystole. IEC 60601-2-27 therefore
//! requires a monitor's heart-rate meter to reject pacemaker pulses. Monitors detect
//! them in hardware at high sampling rates and report them with the waveform; at
//! the 125–1000 Hz a gateway streams, a band-limited pulse (a main lobe two or three
//! samples wide with side lobes) has the shape of a narrow QRS notch, so the pipeline
//! takes the device's word for where they are rather than guessing from the shape.
//!
//! The hold covers the pulse and most of its recharge: [`BLANK_S`] rounded to whole
//! samples, and the first sample after it is still the held value, where the return
//! starts (9 samples, 36 ms, at 250 Hz; 16, 32 ms, at 500 Hz). The return eases the
//! jump from the held value to the signal out with a 30 ms time constant instead of
//! leaving a step (a step is steep enough to be taken for a beat). A captured beat
//! keeps all but its start and is still detected. When the pulse falls on the R wave
//! of a beat of the patient's own (pseudofusion), the R wave is lost, and what is left
//! of the complex is at a tipping point: the T wave can pass for a second beat, and
//! the outcome changes with a sample more or less of hold. Longer holds (40–50 ms)
//! made such complexes two "beats" in synthetic tests, shorter ones (20–25 ms) left
//! enough of a long recharge to count (`pipeline/tests/lethal.rs`,
//! `docs/accuracy-alarms.md`). The device's flag is taken to be the pulse's first
//! sample: a flag one sample late holds the artefact's first sample instead of the
//! signal before it. The hold applies to the beat detectors, the lethal-arrhythmia
//! detector and the models alike; the strips keep the waveform as recorded.

use std::collections::VecDeque;

/// How long each lead is held after a pacemaker pulse (s), rounded to whole samples;
/// the sample after the hold is held too, the return starts there.
pub const BLANK_S: f64 = 0.03;
/// Time constant of the return from the held value to the signal (s).
pub const FADE_S: f64 = 0.03;
/// A correction below this (mV) has faded out.
const FADED: f32 = 1e-4;

/// The recent pacemaker pulses of a stream, as sample indices in increasing order, for
/// a consumer that looks back a bounded time: at most `most` of them, the latest, and
/// none older than the consumer still needs. Only the latest `most` of a block are
/// copied, so a block that flags every sample costs no more memory than a pacemaker.
#[derive(Debug, Clone)]
pub struct RecentPulses {
    at: VecDeque<u64>,
    most: usize,
}

impl RecentPulses {
    /// Memory for at most `most` pulses.
    pub fn new(most: usize) -> Self {
        Self {
            at: VecDeque::new(),
            most,
        }
    }

    /// Appends `at` (increasing, after any pushed before), then forgets the pulses
    /// before `keep_from` and all but the latest `most`.
    pub fn push(&mut self, at: &[u64], keep_from: u64) {
        self.at.extend(&at[at.len().saturating_sub(self.most)..]);
        while self.at.front().is_some_and(|&t| t < keep_from) || self.at.len() > self.most {
            self.at.pop_front();
        }
    }

    /// No pulse remembered.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// Pulses remembered.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Pulses the memory holds room for (its memory in `u64`s).
    pub fn capacity(&self) -> usize {
        self.at.capacity()
    }

    /// Positions of the first pulse at or after `from` and of the first at or after
    /// `to` (never before the first).
    fn bounds(&self, from: u64, to: u64) -> (usize, usize) {
        let a = self.at.partition_point(|&p| p < from);
        (a, self.at.partition_point(|&p| p < to).max(a))
    }

    /// The pulses in `[from, to)`, in order.
    pub fn range(&self, from: u64, to: u64) -> impl Iterator<Item = u64> + '_ {
        let (a, b) = self.bounds(from, to);
        self.at.range(a..b).copied()
    }

    /// How many pulses lie in `[from, to)`.
    pub fn count_in(&self, from: u64, to: u64) -> usize {
        let (a, b) = self.bounds(from, to);
        b - a
    }

    /// The latest pulse at or before sample `t`.
    pub fn last_at_or_before(&self, t: u64) -> Option<u64> {
        let k = self.at.partition_point(|&p| p <= t);
        k.checked_sub(1).map(|k| self.at[k])
    }
}

/// Pacemaker pulse blanking for one stream's leads; see the module documentation.
#[derive(Debug, Clone)]
pub struct PaceBlanker {
    /// Samples held after a pulse.
    blank: u64,
    /// Samples seen so far.
    n: u64,
    /// Hold until this sample (exclusive).
    until: u64,
    /// A hold is on (or ends at the next sample outside it).
    holding: bool,
    /// Per-sample decay of the correction after a hold.
    fade: f32,
    leads: Vec<LeadState>,
}

/// One lead's blanking state.
#[derive(Debug, Clone, Copy, Default)]
struct LeadState {
    /// The value held: the lead's last output before the hold.
    hold: f32,
    /// `hold` is a sample of the lead's (not a start-up guess).
    known: bool,
    /// The correction after a hold: the step from the held value to the signal at
    /// its first finite sample after the hold, fading out, so that no step remains.
    offset: f32,
    /// The hold ended; the correction is taken at the next finite sample.
    release: bool,
}

impl PaceBlanker {
    /// A blanker for `n_leads` leads sampled at `fs` Hz.
    pub fn new(fs: f64, n_leads: usize) -> Self {
        let fs = crate::usable_rate(fs);
        Self {
            blank: ((BLANK_S * fs).round() as u64).max(1),
            n: 0,
            until: 0,
            holding: false,
            fade: (-1.0 / (FADE_S * fs)).exp() as f32,
            leads: vec![LeadState::default(); n_leads],
        }
    }

    /// Samples held after each pulse.
    pub fn blank_samples(&self) -> u64 {
        self.blank
    }

    /// Blanks one block in place: `samples` lead-major (`n_leads` × `n`), `pace` the
    /// block's pulses as sample offsets within it (increasing, as the wire format
    /// requires; offsets past the block are ignored). Appends the absolute sample
    /// index (counted from the first block) of each pulse taken to `out`.
    ///
    /// Held samples take the lead's last value before the pulse (non-finite ones stay
    /// as they are); after the hold the lead returns to its signal with a correction
    /// that starts at the step between them and fades with [`FADE_S`]. A lead with no
    /// sample before its first pulse (a stream that starts on one) holds the first
    /// finite value the block has after the hold.
    pub fn apply(&mut self, samples: &mut [f32], pace: &[u32], out: &mut Vec<u64>) {
        let nl = self.leads.len();
        if nl == 0 {
            return;
        }
        let n = samples.len() / nl;
        let mut next = pace
            .iter()
            .copied()
            .filter(|&p| (p as usize) < n)
            .peekable();
        let busy = self.holding || self.leads.iter().any(|l| l.release || l.offset != 0.0);
        if next.peek().is_none() && !busy {
            // No pulse in or reaching into this block: only the values to hold.
            for (l, st) in self.leads.iter_mut().enumerate() {
                if let Some(&v) = samples[l * n..(l + 1) * n]
                    .iter()
                    .rev()
                    .find(|v| v.is_finite())
                {
                    st.hold = v;
                    st.known = true;
                }
            }
            self.n += n as u64;
            return;
        }
        for t in 0..n {
            let at = self.n + t as u64;
            while next.peek().is_some_and(|&p| p as usize <= t) {
                next.next();
                if !self.holding {
                    for (l, st) in self.leads.iter_mut().enumerate() {
                        if !st.known {
                            let lead = &samples[l * n..(l + 1) * n];
                            let after = (t + self.blank as usize).min(n);
                            st.hold = lead[after..]
                                .iter()
                                .chain(lead[..after].iter().rev())
                                .copied()
                                .find(|v| v.is_finite())
                                .unwrap_or(0.0);
                        }
                        st.release = false;
                    }
                }
                self.until = self.until.max(at + self.blank);
                self.holding = true;
                out.push(at);
            }
            let held = at < self.until;
            if !held && self.holding {
                self.holding = false;
                for st in &mut self.leads {
                    st.release = true;
                }
            }
            for (l, st) in self.leads.iter_mut().enumerate() {
                let v = &mut samples[l * n + t];
                if !v.is_finite() {
                    continue;
                }
                if held {
                    *v = st.hold;
                    st.offset = 0.0;
                    continue;
                }
                if st.release {
                    st.offset = *v - st.hold;
                    st.release = false;
                }
                if st.offset != 0.0 {
                    *v -= st.offset;
                    st.offset *= self.fade;
                    if st.offset.abs() < FADED {
                        st.offset = 0.0;
                    }
                }
                st.hold = *v;
                st.known = true;
            }
        }
        self.n += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_pulses_keep_the_latest_and_answer_by_range() {
        let mut r = RecentPulses::new(4);
        assert!(r.is_empty());
        assert_eq!(r.last_at_or_before(10), None);
        r.push(&[10, 20, 30], 0);
        assert_eq!(r.last_at_or_before(9), None);
        assert_eq!(r.last_at_or_before(10), Some(10));
        assert_eq!(r.last_at_or_before(29), Some(20));
        assert_eq!(r.count_in(10, 30), 2);
        assert_eq!(r.count_in(30, 10), 0);
        assert_eq!(r.range(11, 31).collect::<Vec<_>>(), [20, 30]);
        // Older than needed: forgotten; more than the most: the latest kept.
        r.push(&[40, 50], 15);
        assert_eq!(r.range(0, u64::MAX).collect::<Vec<_>>(), [20, 30, 40, 50]);
        r.push(&(60..100_000).collect::<Vec<u64>>(), 0);
        assert_eq!(
            r.range(0, u64::MAX).collect::<Vec<_>>(),
            [99_996, 99_997, 99_998, 99_999]
        );
        assert!(r.capacity() <= 16, "{}", r.capacity());
    }

    #[test]
    fn each_lead_holds_its_value_before_the_pulse_then_returns_without_a_step() {
        let fs = 250.0;
        // Two leads, 1 s: a ramp on each; pulses at 100 and 245 (the 8-sample hold,
        // 30 ms, reaches 3 samples into the next block).
        let mut x: Vec<f32> = (0..250)
            .map(|i| i as f32)
            .chain((0..250).map(|i| -(i as f32)))
            .collect();
        let orig = x.clone();
        let mut b = PaceBlanker::new(fs, 2);
        let mut at = Vec::new();
        b.apply(&mut x, &[100, 245, 999], &mut at);
        assert_eq!(at, vec![100, 245]);
        let fade = (-1.0f32 / 7.5).exp();
        for (l, sign) in [(0usize, 1.0f32), (1, -1.0)] {
            let lead = &x[l * 250..(l + 1) * 250];
            assert_eq!(&lead[..100], &orig[l * 250..l * 250 + 100]);
            assert!(lead[100..108].iter().all(|&v| v == sign * 99.0), "lead {l}");
            // Back to the signal without a step: the first sample after the hold is
            // still the held value, the correction then fades (time constant 30 ms).
            let step = sign * (108.0 - 99.0);
            for k in 0..30 {
                let want = orig[l * 250 + 108 + k] - step * fade.powi(k as i32);
                assert!(
                    (lead[108 + k] - want).abs() < 1e-3,
                    "lead {l} +{k}: {}",
                    lead[108 + k]
                );
            }
            assert!(lead[245..].iter().all(|&v| v == sign * 244.0), "lead {l}");
        }
        // The next block: held for the rest of the 8 samples, then back to it.
        let mut y: Vec<f32> = vec![5.0; 500];
        b.apply(&mut y, &[], &mut at);
        assert!(y[..3].iter().all(|&v| v == 244.0));
        assert!((y[3] - 244.0).abs() < 1e-3, "no step: {}", y[3]);
        assert!((y[249] - 5.0).abs() < 1e-3);
        assert!(y[250..253].iter().all(|&v| v == -244.0));
        assert!((y[253] + 244.0).abs() < 1e-3, "no step: {}", y[253]);
        assert!((y[499] - 5.0).abs() < 1e-3);
    }

    #[test]
    fn without_pulses_nothing_changes() {
        let mut b = PaceBlanker::new(500.0, 3);
        let mut at = Vec::new();
        for k in 0..5 {
            let x: Vec<f32> = (0..300).map(|i| ((i + k) as f32 * 0.1).sin()).collect();
            let mut y = x.clone();
            b.apply(&mut y, &[], &mut at);
            assert_eq!(x, y);
        }
        assert!(at.is_empty());
    }

    #[test]
    fn missing_samples_stay_missing_and_a_first_pulse_holds_the_next_value() {
        let mut b = PaceBlanker::new(250.0, 1);
        let mut x = vec![1.0, 2.0, f32::NAN, 4.0, f32::NAN, 6.0];
        let mut at = Vec::new();
        b.apply(&mut x, &[3], &mut at);
        assert_eq!(x[3], 2.0, "the last finite value before the pulse is held");
        assert!(x[4].is_nan(), "a missing sample is not made up");
        assert_eq!(x[5], 2.0);
        // A stream whose first sample is a pulse: no value before it, so it holds the
        // first one after the hold, and returns without a step.
        let mut b = PaceBlanker::new(250.0, 1);
        let mut y: Vec<f32> = (0..20).map(|i| 3.0 + i as f32 * 0.01).collect();
        let orig = y.clone();
        b.apply(&mut y, &[0], &mut at);
        let h = b.blank_samples() as usize;
        assert!(y[..=h].iter().all(|&v| v == orig[h]), "{y:?}");
        assert!((y[h + 1] - orig[h + 1]).abs() < 1e-6);
    }

    #[test]
    fn a_block_in_pieces_gives_the_same_output() {
        let x: Vec<f32> = (0..1000).map(|i| ((i as f32) * 0.037).sin()).collect();
        let pulses = [37u32, 300, 305, 640, 998];
        let whole = {
            let mut b = PaceBlanker::new(360.0, 1);
            let mut y = x.clone();
            b.apply(&mut y, &pulses, &mut Vec::new());
            y
        };
        for piece in [1usize, 7, 100, 333] {
            let mut b = PaceBlanker::new(360.0, 1);
            let mut out = Vec::new();
            for (k, chunk) in x.chunks(piece).enumerate() {
                let from = (k * piece) as u32;
                let p: Vec<u32> = pulses
                    .iter()
                    .filter(|&&p| p >= from && p < from + chunk.len() as u32)
                    .map(|p| p - from)
                    .collect();
                let mut c = chunk.to_vec();
                b.apply(&mut c, &p, &mut Vec::new());
                out.extend(c);
            }
            assert_eq!(out, whole, "pieces of {piece}");
        }
    }
}
