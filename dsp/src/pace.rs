//! Pacemaker pulse blanking: the ECG after each pacemaker pulse the device reported
//! (wire format v1 `pace_pulses`) is held at its value just before the pulse for
//! [`BLANK_S`] on every lead, then eased back to the signal (time constant
//! [`FADE_S`]), before any beat detector sees it.
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
//! The 30 ms hold covers the pulse and most of its recharge; the return eases the jump
//! from the held value to the signal out over 30 ms instead of leaving a step (a step
//! is steep enough to be taken for a beat). A captured beat keeps all but its first
//! 30 ms and is still detected; when the pulse falls on the R wave of a beat of the
//! patient's own (pseudofusion), the R wave is lost and the rest of the complex is the
//! beat. Longer holds (40–50 ms) made such complexes two "beats" in synthetic tests,
//! shorter ones (20–25 ms) left enough of a long recharge to count
//! (`pipeline/tests/lethal.rs`). The hold applies to the beat detectors, the
//! lethal-arrhythmia detector and the models alike; the strips keep the waveform as
//! recorded.

/// How long each lead is held after a pacemaker pulse (s).
pub const BLANK_S: f64 = 0.03;
/// Time constant of the return from the held value to the signal (s).
pub const FADE_S: f64 = 0.03;
/// A correction below this (mV) has faded out.
const FADED: f32 = 1e-4;

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
    /// Each lead's value held: its last sample before the hold.
    hold: Vec<f32>,
    /// Each lead's correction after a hold: the step from the held value to the signal
    /// at the hold's end, fading out (`fade` per sample), so that no step remains.
    offset: Vec<f32>,
    fade: f32,
    /// Pulses taken so far.
    pulses: u64,
}

impl PaceBlanker {
    /// A blanker for `n_leads` leads sampled at `fs` Hz.
    pub fn new(fs: f64, n_leads: usize) -> Self {
        let fs = if fs.is_finite() && fs > 0.0 {
            fs
        } else {
            250.0
        };
        Self {
            blank: ((BLANK_S * fs).round() as u64).max(1),
            n: 0,
            until: 0,
            holding: false,
            hold: vec![0.0; n_leads],
            offset: vec![0.0; n_leads],
            fade: (-1.0 / (FADE_S * fs)).exp() as f32,
            pulses: 0,
        }
    }

    /// Pacemaker pulses taken so far.
    pub fn pulses(&self) -> u64 {
        self.pulses
    }

    /// Blanks one block in place: `samples` lead-major (`n_leads` × `n`), `pace` the
    /// block's pulses as sample offsets within it (increasing; offsets past the block
    /// are ignored). Returns the absolute sample index (counted from the first block)
    /// of each pulse taken, in `out`.
    pub fn apply(&mut self, samples: &mut [f32], pace: &[u32], out: &mut Vec<u64>) {
        let nl = self.hold.len();
        if nl == 0 {
            return;
        }
        let n = samples.len() / nl;
        let mut next = pace
            .iter()
            .copied()
            .filter(|&p| (p as usize) < n)
            .peekable();
        let fading = self.offset.iter().any(|o| *o != 0.0);
        if next.peek().is_some() || self.holding || fading {
            for t in 0..n {
                let at = self.n + t as u64;
                while next.peek().is_some_and(|&p| p as usize == t) {
                    next.next();
                    self.until = self.until.max(at + self.blank);
                    self.holding = true;
                    self.pulses += 1;
                    out.push(at);
                }
                let held = at < self.until;
                let released = !held && self.holding;
                if released {
                    self.holding = false;
                }
                for (l, (h, o)) in self.hold.iter_mut().zip(&mut self.offset).enumerate() {
                    let v = &mut samples[l * n + t];
                    if held {
                        *v = *h;
                        *o = 0.0;
                        continue;
                    }
                    if !v.is_finite() {
                        continue;
                    }
                    if released {
                        *o = *v - *h;
                    }
                    if *o != 0.0 {
                        *v -= *o;
                        *o *= self.fade;
                        if o.abs() < FADED {
                            *o = 0.0;
                        }
                    }
                    *h = *v;
                }
            }
        } else {
            // No pulse in or reaching into this block: only the last values to hold.
            for (l, h) in self.hold.iter_mut().enumerate() {
                if let Some(&v) = samples[l * n..(l + 1) * n]
                    .iter()
                    .rev()
                    .find(|v| v.is_finite())
                {
                    *h = v;
                }
            }
        }
        self.n += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(b.pulses(), 2);
        let fade = (-1.0f32 / 7.5).exp();
        for (l, sign) in [(0usize, 1.0f32), (1, -1.0)] {
            let lead = &x[l * 250..(l + 1) * 250];
            assert_eq!(&lead[..100], &orig[l * 250..l * 250 + 100]);
            assert!(lead[100..108].iter().all(|&v| v == sign * 99.0), "lead {l}");
            // Back to the signal without a step: the jump of 9 fades out (30 ms).
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
    fn a_missing_sample_is_not_held() {
        let mut b = PaceBlanker::new(250.0, 1);
        let mut x = vec![1.0, 2.0, f32::NAN, 4.0];
        let mut at = Vec::new();
        b.apply(&mut x, &[3], &mut at);
        assert_eq!(x[3], 2.0, "the last finite value before the pulse is held");
    }
}
