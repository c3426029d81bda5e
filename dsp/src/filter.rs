//! Biquad IIR filters designed at run time (RBJ audio-EQ cookbook, i.e. bilinear
//! transform with pre-warping) and the monitor-grade cascade [`MonitorFilter`].
//!
//! Coefficients and state are `f64` so that very low corner frequencies (0.5 Hz at
//! 1 kHz) stay accurate; samples are `f32` millivolts.

use std::f64::consts::PI;

/// Butterworth quality factor of a second-order section.
pub const BUTTERWORTH_Q: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// Quality factors of the two sections of a fourth-order Butterworth filter.
pub const BUTTERWORTH4_Q: [f64; 2] = [0.541_196_100_146_197, 1.306_562_964_876_376_7];

/// One second-order IIR section, transposed direct form II.
#[derive(Debug, Clone, PartialEq)]
pub struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
    s: [f64; 2],
}

impl Biquad {
    fn normalised(b: [f64; 3], a0: f64, a1: f64, a2: f64) -> Self {
        Self {
            b: [b[0] / a0, b[1] / a0, b[2] / a0],
            a: [a1 / a0, a2 / a0],
            s: [0.0; 2],
        }
    }

    fn parts(f0: f64, fs: f64, q: f64) -> (f64, f64) {
        let w0 = 2.0 * PI * f0 / fs;
        (w0.cos(), w0.sin() / (2.0 * q))
    }

    /// Second-order low-pass with corner `f0` Hz (−3 dB when `q` is [`BUTTERWORTH_Q`]).
    pub fn low_pass(f0: f64, fs: f64, q: f64) -> Self {
        let (c, al) = Self::parts(f0, fs, q);
        Self::normalised(
            [(1.0 - c) / 2.0, 1.0 - c, (1.0 - c) / 2.0],
            1.0 + al,
            -2.0 * c,
            1.0 - al,
        )
    }

    /// Second-order high-pass with corner `f0` Hz.
    pub fn high_pass(f0: f64, fs: f64, q: f64) -> Self {
        let (c, al) = Self::parts(f0, fs, q);
        Self::normalised(
            [(1.0 + c) / 2.0, -(1.0 + c), (1.0 + c) / 2.0],
            1.0 + al,
            -2.0 * c,
            1.0 - al,
        )
    }

    /// Notch at `f0` Hz with bandwidth `f0 / q`.
    pub fn notch(f0: f64, fs: f64, q: f64) -> Self {
        let (c, al) = Self::parts(f0, fs, q);
        Self::normalised([1.0, -2.0 * c, 1.0], 1.0 + al, -2.0 * c, 1.0 - al)
    }

    /// Filters one sample.
    #[inline]
    pub fn step(&mut self, x: f64) -> f64 {
        let y = self.b[0] * x + self.s[0];
        self.s[0] = self.b[1] * x - self.a[0] * y + self.s[1];
        self.s[1] = self.b[2] * x - self.a[1] * y;
        y
    }

    /// Sets the state to the steady state for a constant input `x` (avoids the start
    /// transient of a signal with a DC offset) and returns the steady output
    /// `x × DC gain` (0 for a section without a finite DC gain).
    pub fn settle(&mut self, x: f64) -> f64 {
        let den = 1.0 + self.a[0] + self.a[1];
        let y = if den.abs() > 1e-12 {
            x * (self.b[0] + self.b[1] + self.b[2]) / den
        } else {
            0.0
        };
        self.s[1] = self.b[2] * x - self.a[1] * y;
        self.s[0] = self.b[1] * x - self.a[0] * y + self.s[1];
        y
    }

    /// Magnitude of the frequency response at `f` Hz.
    pub fn magnitude(&self, f: f64, fs: f64) -> f64 {
        let w = 2.0 * PI * f / fs;
        let (c1, s1, c2, s2) = (w.cos(), w.sin(), (2.0 * w).cos(), (2.0 * w).sin());
        let nr = self.b[0] + self.b[1] * c1 + self.b[2] * c2;
        let ni = -(self.b[1] * s1 + self.b[2] * s2);
        let dr = 1.0 + self.a[0] * c1 + self.a[1] * c2;
        let di = -(self.a[0] * s1 + self.a[1] * s2);
        ((nr * nr + ni * ni) / (dr * dr + di * di)).sqrt()
    }
}

/// Runs `x` through the sections of `chain` in order, in `f64` throughout.
#[inline]
pub fn run_chain(chain: &mut [Biquad], x: f64) -> f64 {
    chain.iter_mut().fold(x, |v, s| s.step(v))
}

/// Settles every section of `chain` to the steady state of a constant input `x`
/// ([`Biquad::settle`]); returns the chain's steady output.
pub fn settle_chain(chain: &mut [Biquad], x: f64) -> f64 {
    chain.iter_mut().fold(x, |v, s| s.settle(v))
}

/// A cascade of biquads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cascade {
    sections: Vec<Biquad>,
    started: bool,
}

impl Cascade {
    /// A cascade of these sections, in order.
    pub fn new(sections: Vec<Biquad>) -> Self {
        Self {
            sections,
            started: false,
        }
    }

    /// Filters one sample; the first sample settles the state (no start transient).
    #[inline]
    pub fn step(&mut self, x: f32) -> f32 {
        let mut v = f64::from(x);
        self.settle_once(v);
        for s in &mut self.sections {
            v = s.step(v);
        }
        v as f32
    }

    /// On the first sample only: settles every section to it ([`settle_chain`]).
    #[inline]
    fn settle_once(&mut self, x0: f64) {
        if !self.started {
            self.started = true;
            settle_chain(&mut self.sections, x0);
        }
    }

    /// Filters `x` in place.
    pub fn process(&mut self, x: &mut [f32]) {
        for v in x {
            *v = self.step(*v);
        }
    }

    /// Filters `x` in place exactly as [`Cascade::step`] sample by sample, in `f64`
    /// throughout: `x` holds the inputs widened from `f32` and gets the outputs before
    /// their narrowing to `f32`. Section after section over the whole slice, so that
    /// each section's coefficients and state stay in registers.
    pub fn process_wide(&mut self, x: &mut [f64]) {
        let Some(&x0) = x.first() else {
            return;
        };
        self.settle_once(x0);
        let mut pairs = self.sections.chunks_exact_mut(2);
        for pair in &mut pairs {
            if let [first, second] = pair {
                run_pair(first, second, x);
            }
        }
        for s in pairs.into_remainder() {
            let mut sec = s.clone();
            for v in x.iter_mut() {
                *v = sec.step(*v);
            }
            *s = sec;
        }
    }

    /// Magnitude response at `f` Hz.
    pub fn magnitude(&self, f: f64, fs: f64) -> f64 {
        self.sections.iter().map(|s| s.magnitude(f, fs)).product()
    }
}

/// Runs `first` and then `second` over `x` in place, exactly as a pass of
/// [`Biquad::step`] of each would, in one pass: at each step `first` takes sample `i`
/// while `second` takes `first`'s output for sample `i − 1`, as the two lanes of the
/// same arithmetic (which the compiler does as one vector of two).
fn run_pair(first: &mut Biquad, second: &mut Biquad, x: &mut [f64]) {
    let n = x.len();
    if n == 0 {
        return;
    }
    let lanes = |f: fn(&Biquad) -> f64| [f(first), f(second)];
    let (b0, b1, b2) = (lanes(|s| s.b[0]), lanes(|s| s.b[1]), lanes(|s| s.b[2]));
    let (a0, a1) = (lanes(|s| s.a[0]), lanes(|s| s.a[1]));
    let (mut s0, mut s1) = (lanes(|s| s.s[0]), lanes(|s| s.s[1]));
    // Biquad::step in lane `l`.
    let mut step = |l: usize, v: f64| {
        let y = b0[l] * v + s0[l];
        s0[l] = b1[l] * v - a0[l] * y + s1[l];
        s1[l] = b2[l] * v - a1[l] * y;
        y
    };
    // `first`'s output for the sample before, which `second` takes next.
    let mut carry = step(0, x[0]);
    for i in 1..n {
        let v = [x[i], carry];
        let y = [step(0, v[0]), step(1, v[1])];
        x[i - 1] = y[1];
        carry = y[0];
    }
    x[n - 1] = step(1, carry);
    first.s = [s0[0], s1[0]];
    second.s = [s0[1], s1[1]];
}

const LANES: usize = 4;
const MAX_SECTIONS: usize = 8;

/// Runs `LANES` cascades with identical coefficients over their lanes, the lanes
/// stepped together (vectorisable); every lane's arithmetic is exactly
/// [`Cascade::step`]'s. Falls back to [`Cascade::process`] when the designs differ.
fn run_lanes(cas: &mut [&mut Cascade; LANES], x: &mut [&mut [f32]; LANES]) {
    let n = x[0].len();
    if n == 0 {
        return;
    }
    let mut from = 0;
    if cas.iter().any(|c| !c.started) {
        for (c, x) in cas.iter_mut().zip(x.iter_mut()) {
            x[0] = c.step(x[0]);
        }
        from = 1;
    }
    let secs = &cas[0].sections;
    let ns = secs.len();
    let same = ns <= MAX_SECTIONS
        && x.iter().all(|l| l.len() == n)
        && cas.iter().all(|c| {
            c.sections.len() == ns
                && c.sections
                    .iter()
                    .zip(secs)
                    .all(|(a, b)| a.b == b.b && a.a == b.a)
        });
    if !same {
        for (c, x) in cas.iter_mut().zip(x.iter_mut()) {
            c.process(&mut x[from..]);
        }
        return;
    }
    let mut coef = [[0.0f64; 5]; MAX_SECTIONS];
    let mut s0 = [[0.0f64; LANES]; MAX_SECTIONS];
    let mut s1 = [[0.0f64; LANES]; MAX_SECTIONS];
    for (k, sec) in secs.iter().enumerate() {
        coef[k] = [sec.b[0], sec.b[1], sec.b[2], sec.a[0], sec.a[1]];
    }
    for (j, c) in cas.iter().enumerate() {
        for (k, sec) in c.sections.iter().enumerate() {
            s0[k][j] = sec.s[0];
            s1[k][j] = sec.s[1];
        }
    }
    let coef = &coef[..ns];
    for i in from..n {
        let mut v = [0.0f64; LANES];
        for (v, x) in v.iter_mut().zip(x.iter()) {
            *v = f64::from(x[i]);
        }
        for (k, &[b0, b1, b2, a0, a1]) in coef.iter().enumerate() {
            let (s0, s1) = (&mut s0[k], &mut s1[k]);
            for j in 0..LANES {
                let y = b0 * v[j] + s0[j];
                s0[j] = b1 * v[j] - a0 * y + s1[j];
                s1[j] = b2 * v[j] - a1 * y;
                v[j] = y;
            }
        }
        for (v, x) in v.iter().zip(x.iter_mut()) {
            x[i] = *v as f32;
        }
    }
    for (j, c) in cas.iter_mut().enumerate() {
        for (k, sec) in c.sections.iter_mut().enumerate() {
            sec.s = [s0[k][j], s1[k][j]];
        }
    }
}

/// Default baseline-wander high-pass corner (Hz).
pub const HIGH_PASS_HZ: f64 = 0.5;
/// Default low-pass corner (Hz).
pub const LOW_PASS_HZ: f64 = 40.0;
/// Quality factor of the mains notch (bandwidth = mains / Q).
pub const NOTCH_Q: f64 = 5.0;

/// Monitor-bandwidth filter: second-order Butterworth high-pass at 0.5 Hz (baseline
/// wander), a notch at the mains frequency (50 Hz by default; skipped when at or
/// above Nyquist or 0), and a fourth-order Butterworth low-pass at 40 Hz (clamped
/// to 0.45 × fs). Passband 1–30 Hz flat within 1 dB; the first sample settles the
/// state so a DC offset causes no start transient.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorFilter {
    fs: f64,
    cascade: Cascade,
}

impl MonitorFilter {
    /// The monitor filter at sampling rate `fs` Hz with a 50 Hz notch.
    pub fn new(fs: f64) -> Self {
        Self::with_mains(fs, 50.0)
    }

    /// The monitor filter with a notch at `mains_hz` (0 for none).
    pub fn with_mains(fs: f64, mains_hz: f64) -> Self {
        let mut s = vec![Biquad::high_pass(HIGH_PASS_HZ, fs, BUTTERWORTH_Q)];
        if mains_hz > 0.0 && mains_hz < 0.5 * fs {
            s.push(Biquad::notch(mains_hz, fs, NOTCH_Q));
        }
        let lp = LOW_PASS_HZ.min(0.45 * fs);
        for q in BUTTERWORTH4_Q {
            s.push(Biquad::low_pass(lp, fs, q));
        }
        Self {
            fs,
            cascade: Cascade::new(s),
        }
    }

    /// Filters `x` (mV) in place.
    pub fn process(&mut self, x: &mut [f32]) {
        self.cascade.process(x);
    }

    /// Filters one sample.
    #[inline]
    pub fn step(&mut self, x: f32) -> f32 {
        self.cascade.step(x)
    }

    /// Filters `x` in place as [`MonitorFilter::step`] does sample by sample, but in
    /// `f64`: `x` holds the inputs widened from `f32`, and gets the outputs before
    /// their narrowing to `f32` (`y as f32` is what `step` returns). Section by
    /// section over the whole slice: fewer instructions than `step` per sample.
    pub fn process_wide(&mut self, x: &mut [f64]) {
        self.cascade.process_wide(x);
    }

    /// Filters a lead-major block in place: `filters.len()` leads of `per_lead`
    /// samples, lead `l` by `filters[l]`. The output is bit-identical to
    /// [`MonitorFilter::process`] on each lead; four leads are stepped together so
    /// that their recurrences overlap (a single cascade is latency-bound).
    pub fn process_leads(filters: &mut [MonitorFilter], block: &mut [f32], per_lead: usize) {
        if per_lead == 0 {
            return;
        }
        let mut fs = filters.chunks_exact_mut(LANES);
        let mut xs = block.chunks_exact_mut(LANES * per_lead);
        for (f, x) in (&mut fs).zip(&mut xs) {
            let (a, r) = x.split_at_mut(per_lead);
            let (b, r) = r.split_at_mut(per_lead);
            let (c, d) = r.split_at_mut(per_lead);
            if let [fa, fb, fc, fd] = f {
                let mut lanes = [a, b, c, d];
                let mut cas = [
                    &mut fa.cascade,
                    &mut fb.cascade,
                    &mut fc.cascade,
                    &mut fd.cascade,
                ];
                run_lanes(&mut cas, &mut lanes);
            }
        }
        let rest = xs.into_remainder();
        for (f, x) in fs
            .into_remainder()
            .iter_mut()
            .zip(rest.chunks_exact_mut(per_lead))
        {
            f.process(x);
        }
    }

    /// Heap and inline bytes of this state.
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.cascade.sections.capacity() * std::mem::size_of::<Biquad>()
    }

    /// Magnitude response at `f` Hz, in dB.
    pub fn magnitude_db(&self, f: f64) -> f64 {
        20.0 * self.cascade.magnitude(f, self.fs).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(x: f64) -> f64 {
        20.0 * x.log10()
    }

    #[test]
    fn sections_have_their_corners() {
        for fs in [125.0, 250.0, 360.0, 500.0, 1000.0] {
            let hp = Biquad::high_pass(0.5, fs, BUTTERWORTH_Q);
            assert!((db(hp.magnitude(0.5, fs)) + 3.01).abs() < 0.05, "{fs}");
            assert!(db(hp.magnitude(0.05, fs)) < -35.0);
            let lp = Biquad::low_pass(40.0, fs, BUTTERWORTH_Q);
            assert!((db(lp.magnitude(40.0, fs)) + 3.01).abs() < 0.05);
            let n = Biquad::notch(50.0, fs, NOTCH_Q);
            assert!(db(n.magnitude(50.0, fs)) < -60.0);
        }
    }

    #[test]
    fn monitor_filter_response() {
        for fs in [125.0, 250.0, 300.0, 360.0, 500.0, 1000.0] {
            for mains in [50.0, 60.0] {
                let f = MonitorFilter::with_mains(fs, mains);
                // -3 dB at the high-pass corner.
                assert!(
                    (f.magnitude_db(0.5) + 3.0).abs() < 0.3,
                    "{fs} {}",
                    f.magnitude_db(0.5)
                );
                // Flat within 1 dB over 1–30 Hz.
                for k in 0..=290 {
                    let fr = 1.0 + f64::from(k) * 0.1;
                    let m = f.magnitude_db(fr);
                    assert!(m.abs() < 1.0, "fs {fs} mains {mains}: {m} dB at {fr} Hz");
                }
                // Mains rejected by at least 30 dB (also ±0.2 Hz off).
                for d in [-0.2, 0.0, 0.2] {
                    assert!(f.magnitude_db(mains + d) < -30.0, "fs {fs} mains {mains}");
                }
                // -3 dB near 40 Hz (within the LP Butterworth plus notch skirt).
                if fs >= 250.0 {
                    let m = f.magnitude_db(40.0);
                    assert!(m < -3.0 && m > -12.0, "fs {fs}: {m} at 40 Hz");
                    assert!(f.magnitude_db(100.0) < -25.0);
                }
                assert!(f.magnitude_db(0.05) < -35.0);
            }
        }
        // Without a notch the -3 dB point is at 40 Hz.
        let f = MonitorFilter::with_mains(500.0, 0.0);
        assert!((f.magnitude_db(40.0) + 3.0).abs() < 0.2);
    }

    #[test]
    fn dc_offset_has_no_transient_and_is_removed() {
        let mut f = MonitorFilter::new(360.0);
        let mut x = vec![-1.5f32; 3600];
        f.process(&mut x);
        assert!(x.iter().all(|v| v.abs() < 1e-3), "{:?}", &x[..5]);
        // A sinusoid in the passband passes with its amplitude.
        let mut f = MonitorFilter::new(360.0);
        let mut s: Vec<f32> = (0..7200)
            .map(|i| (2.0 * std::f32::consts::PI * 10.0 * i as f32 / 360.0).sin())
            .collect();
        f.process(&mut s);
        let peak = s[3600..].iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!((peak - 1.0).abs() < 0.1, "{peak}");
    }

    #[test]
    fn process_wide_is_step_by_step() {
        // Rates with and without the notch, an offset, steps and a spike, fed in
        // slices of varied lengths (an empty one first: the first sample settles).
        for (fs, mains) in [(250.0, 50.0), (125.0, 60.0), (125.0, 0.0), (500.0, 50.0)] {
            let x: Vec<f32> = (0..4000)
                .map(|i| {
                    let t = i as f32 / fs as f32;
                    1.7 + (37.0 * t).sin() * 0.8
                        + if i % 700 < 30 { 2.5 } else { 0.0 }
                        + if i == 1234 { 40.0 } else { 0.0 }
                        + (i % 13) as f32 * 1e-3
                })
                .collect();
            let mut one = MonitorFilter::with_mains(fs, mains);
            let want: Vec<f32> = x.iter().map(|&v| one.step(v)).collect();
            let mut wide = MonitorFilter::with_mains(fs, mains);
            let mut got = Vec::new();
            let mut at = 0;
            for len in [0usize, 1, 2, 7, 500, 3, 1200].into_iter().cycle() {
                if at == x.len() {
                    break;
                }
                let len = len.min(x.len() - at);
                let mut w: Vec<f64> = x[at..at + len].iter().map(|&v| f64::from(v)).collect();
                wide.process_wide(&mut w);
                got.extend(w.iter().map(|&y| y as f32));
                at += len;
            }
            assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "fs {fs}, mains {mains}, sample {i}"
                );
            }
        }
    }
}
