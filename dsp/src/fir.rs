//! Linear-phase FIR filters designed at run time for any sampling rate (Kaiser-windowed
//! sinc), and [`FirFilter`], a streaming multi-channel FIR that runs short filters in
//! direct form and long ones by FFT overlap-save ([`rustfft`], planned once per filter,
//! buffers and scratch reused, no allocation after construction).
//!
//! # Design conventions
//!
//! - Frequencies are in Hz, the sampling rate `fs` in Hz.
//! - A cutoff is the **−6 dB point** (amplitude 0.5) of the windowed-sinc design; the
//!   transition band of width `transition_hz` is centred on it, so the pass-band edge
//!   is `cutoff ∓ transition_hz / 2` and the stop-band edge `cutoff ± transition_hz / 2`.
//! - `atten_db` sets both the stop-band attenuation (≥ `atten_db` beyond the stop-band
//!   edge) and the pass-band ripple (`±20·log10(1 + 10^(−atten_db/20))` dB, e.g.
//!   ±0.086 dB for 40 dB), as Kaiser's formulas give for one window:
//!   `β = 0.1102 (A − 8.7)` for A > 50, `0.5842 (A − 21)^0.4 + 0.07886 (A − 21)` for
//!   21 ≤ A ≤ 50, 0 below; length `N = ⌈(A − 7.95) / (2.285 · 2π Δf / fs)⌉ + 1`, rounded
//!   up to odd (type I: symmetric, any band type).
//! - Low-pass prototypes are normalised to a DC gain of exactly 1, so high-pass and
//!   band-pass designs reject DC exactly and band-stop designs pass it exactly.
//! - Every design is linear-phase with a group delay of `(N − 1) / 2` samples
//!   ([`group_delay`]): the output at index `n` describes the input at `n − (N − 1)/2`.
//!   [`FirFilter`] can drop those samples for you ([`FirFilter::with_options`]), so
//!   its output index equals the input index.
//!
//! # Presets
//!
//! [`presets`] holds the ECG filters of issue 3 (baseline removal, mains notch,
//! monitoring and diagnostic band-passes); `docs/dsp.md` lists their lengths, delays
//! and measured responses.

use std::f64::consts::PI;
use std::fmt;
use std::sync::Arc;

use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};

/// Filters of at most this many taps run in direct form under [`Engine::Auto`]; longer
/// ones by FFT overlap-save.
pub const DIRECT_MAX_TAPS: usize = 64;

/// The pass and stop bands of a design (cutoffs at −6 dB, Hz).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Band {
    /// Passes `[0, cutoff_hz)`.
    LowPass {
        /// −6 dB frequency (Hz).
        cutoff_hz: f64,
    },
    /// Passes `(cutoff_hz, fs/2]`.
    HighPass {
        /// −6 dB frequency (Hz).
        cutoff_hz: f64,
    },
    /// Passes `(low_hz, high_hz)`.
    BandPass {
        /// Lower −6 dB frequency (Hz).
        low_hz: f64,
        /// Upper −6 dB frequency (Hz).
        high_hz: f64,
    },
    /// Rejects `(low_hz, high_hz)`.
    BandStop {
        /// Lower −6 dB frequency (Hz).
        low_hz: f64,
        /// Upper −6 dB frequency (Hz).
        high_hz: f64,
    },
}

/// A Kaiser-windowed-sinc FIR specification; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FirSpec {
    /// Band type and cutoffs.
    pub band: Band,
    /// Width of each transition band (Hz), centred on the cutoffs.
    pub transition_hz: f64,
    /// Stop-band attenuation (dB, positive); also sets the pass-band ripple.
    pub atten_db: f64,
}

/// A specification that cannot be designed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FirError {
    /// A cutoff, transition or attenuation is out of range for the sampling rate.
    #[error("invalid fir specification: {0}")]
    InvalidSpec(String),
}

impl FirSpec {
    /// Number of taps (odd) of the design at `fs` Hz.
    pub fn num_taps(&self, fs: f64) -> usize {
        kaiser_len(self.design_atten_db(), self.transition_hz, fs)
    }

    /// Attenuation the Kaiser window is designed for: `atten_db` plus a 2 dB margin
    /// (Kaiser's length formula is an estimate), plus 6 dB more for band-pass and
    /// band-stop, whose two edges' ripples can add up.
    pub fn design_atten_db(&self) -> f64 {
        match self.band {
            Band::LowPass { .. } | Band::HighPass { .. } => self.atten_db + 2.0,
            Band::BandPass { .. } | Band::BandStop { .. } => self.atten_db + 8.0,
        }
    }

    /// Pass-band ripple (± dB) implied by `atten_db`.
    pub fn passband_ripple_db(&self) -> f64 {
        20.0 * (1.0 + 10f64.powf(-self.atten_db / 20.0)).log10()
    }

    /// Designs the taps (`f64`, symmetric, odd length) at `fs` Hz.
    ///
    /// # Errors
    /// [`FirError::InvalidSpec`] when a band edge (cutoff ± transition/2) falls outside
    /// `[0, fs/2]`, cutoffs are not increasing, or the transition or attenuation is not
    /// positive and finite.
    pub fn design(&self, fs: f64) -> Result<Vec<f64>, FirError> {
        let bad = |m: String| Err(FirError::InvalidSpec(m));
        let (tw, a) = (self.transition_hz, self.atten_db);
        if !(fs.is_finite() && fs > 0.0) {
            return bad(format!("sampling rate {fs} Hz is not positive"));
        }
        if !(tw.is_finite() && tw > 0.0 && a.is_finite() && a > 0.0) {
            return bad(format!(
                "transition {tw} Hz and attenuation {a} dB must be positive"
            ));
        }
        let cutoffs: Vec<f64> = match self.band {
            Band::LowPass { cutoff_hz } | Band::HighPass { cutoff_hz } => vec![cutoff_hz],
            Band::BandPass { low_hz, high_hz } | Band::BandStop { low_hz, high_hz } => {
                if low_hz.partial_cmp(&high_hz) != Some(std::cmp::Ordering::Less) {
                    return bad(format!("low cutoff {low_hz} Hz is not below {high_hz} Hz"));
                }
                vec![low_hz, high_hz]
            }
        };
        let eps = 1e-9 * fs;
        for &c in &cutoffs {
            if !(c - 0.5 * tw >= -eps && c + 0.5 * tw <= 0.5 * fs + eps) {
                return bad(format!(
                    "band edges {} and {} Hz of cutoff {c} Hz are not within 0 and {} Hz",
                    c - 0.5 * tw,
                    c + 0.5 * tw,
                    0.5 * fs
                ));
            }
        }
        let n = self.num_taps(fs);
        let w = kaiser_window(n, kaiser_beta(self.design_atten_db()));
        let lp = |fc: f64| low_pass_prototype(fc / fs, &w);
        let delta = |mut h: Vec<f64>| {
            for v in &mut h {
                *v = -*v;
            }
            h[(n - 1) / 2] += 1.0;
            h
        };
        let h = match self.band {
            Band::LowPass { cutoff_hz } => lp(cutoff_hz),
            Band::HighPass { cutoff_hz } => delta(lp(cutoff_hz)),
            Band::BandPass { low_hz, high_hz } => sub(&lp(high_hz), &lp(low_hz)),
            Band::BandStop { low_hz, high_hz } => delta(sub(&lp(high_hz), &lp(low_hz))),
        };
        Ok(h)
    }
}

fn sub(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

/// Windowed-sinc low-pass at normalised cutoff `fc` (cycles/sample), DC gain 1.
fn low_pass_prototype(fc: f64, w: &[f64]) -> Vec<f64> {
    let m = (w.len() - 1) as f64 / 2.0;
    let mut h: Vec<f64> = w
        .iter()
        .enumerate()
        .map(|(i, wi)| {
            let t = i as f64 - m;
            let s = if t == 0.0 {
                2.0 * fc
            } else {
                (2.0 * PI * fc * t).sin() / (PI * t)
            };
            s * wi
        })
        .collect();
    let sum: f64 = h.iter().sum();
    if sum.abs() > 1e-300 {
        for v in &mut h {
            *v /= sum;
        }
    }
    h
}

/// Kaiser's β for a stop-band attenuation of `atten_db` dB.
pub fn kaiser_beta(atten_db: f64) -> f64 {
    if atten_db > 50.0 {
        0.1102 * (atten_db - 8.7)
    } else if atten_db >= 21.0 {
        0.5842 * (atten_db - 21.0).powf(0.4) + 0.07886 * (atten_db - 21.0)
    } else {
        0.0
    }
}

/// Kaiser's length estimate for `atten_db` dB and a `transition_hz` transition at
/// `fs` Hz, rounded up to an odd number (at least 3).
pub fn kaiser_len(atten_db: f64, transition_hz: f64, fs: f64) -> usize {
    let dw = 2.0 * PI * transition_hz / fs;
    let n = ((atten_db - 7.95) / (2.285 * dw)).ceil().max(2.0) as usize + 1;
    n | 1
}

/// The Kaiser window of `len` points and shape `beta` (peak 1 at the centre).
pub fn kaiser_window(len: usize, beta: f64) -> Vec<f64> {
    if len <= 1 {
        return vec![1.0; len];
    }
    let m = (len - 1) as f64;
    let i0b = bessel_i0(beta);
    (0..len)
        .map(|i| {
            let r = 2.0 * i as f64 / m - 1.0;
            bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / i0b
        })
        .collect()
}

/// Modified Bessel function of the first kind, order 0 (power series).
fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term, q) = (1.0, 1.0, x * x / 4.0);
    for k in 1..500 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < 1e-17 * sum {
            break;
        }
    }
    sum
}

/// Group delay (samples) of a linear-phase filter of `num_taps` taps: `(N − 1) / 2`.
pub fn group_delay(num_taps: usize) -> f64 {
    num_taps.saturating_sub(1) as f64 / 2.0
}

/// Magnitude |H(f)| (linear) of `taps` at `f` Hz (direct evaluation, `f64`).
pub fn magnitude(taps: &[f64], f: f64, fs: f64) -> f64 {
    let w = 2.0 * PI * f / fs;
    // Chebyshev-style recurrences for cos(kw), sin(kw).
    let (c1, s1) = (w.cos(), w.sin());
    let (mut c, mut s) = (1.0f64, 0.0f64);
    let (mut re, mut im) = (0.0, 0.0);
    for (k, &h) in taps.iter().enumerate() {
        re += h * c;
        im -= h * s;
        let (cn, sn) = (c * c1 - s * s1, s * c1 + c * s1);
        (c, s) = (cn, sn);
        // Re-anchor every 1024 taps to bound the rounding drift.
        if k % 1024 == 1023 {
            let a = w * (k + 1) as f64;
            (c, s) = (a.cos(), a.sin());
        }
    }
    (re * re + im * im).sqrt()
}

/// Magnitude of `taps` at `f` Hz, in dB.
pub fn magnitude_db(taps: &[f64], f: f64, fs: f64) -> f64 {
    20.0 * magnitude(taps, f, fs).max(1e-300).log10()
}

/// Full linear convolution of two tap sets (cascading two filters into one; the group
/// delays add).
pub fn convolve(a: &[f64], b: &[f64]) -> Vec<f64> {
    if a.is_empty() || b.is_empty() {
        return Vec::new();
    }
    let mut y = vec![0.0; a.len() + b.len() - 1];
    for (i, &x) in a.iter().enumerate() {
        for (j, &h) in b.iter().enumerate() {
            y[i + j] += x * h;
        }
    }
    y
}

/// ECG filter presets of issue 3, designed at run time for any rate. Each returns a
/// [`FirSpec`]; call [`FirSpec::design`] for the taps. All use 40 dB attenuation
/// (pass-band ripple ±0.086 dB).
pub mod presets {
    use super::{Band, FirSpec};

    /// Stop-band attenuation of every preset (dB).
    pub const ATTEN_DB: f64 = 40.0;

    /// Baseline-wander removal: high-pass, −6 dB at 0.5 Hz, transition 0.2–0.8 Hz
    /// (≥ 40 dB below 0.2 Hz, within ±0.086 dB above 0.8 Hz). About 3.96·fs taps,
    /// i.e. a group delay of ≈ 1.98 s at any rate (1979 taps, 989 samples at 500 Hz).
    pub fn baseline_removal() -> FirSpec {
        FirSpec {
            band: Band::HighPass { cutoff_hz: 0.5 },
            transition_hz: 0.6,
            atten_db: ATTEN_DB,
        }
    }

    /// Mains notch (band-stop) at `mains_hz` (50 or 60): −6 dB at `mains ± 3` Hz,
    /// ≥ 40 dB within `mains ± 1` Hz, pass-band within ±0.086 dB outside `mains ± 5` Hz.
    /// About 0.70·fs taps (351 at 500 Hz, delay 175 samples). `None` when `mains + 5` Hz is not below
    /// Nyquist (the mains is then outside the recorded band) or `mains_hz` ≤ 5.
    pub fn mains_notch(mains_hz: f64, fs: f64) -> Option<FirSpec> {
        (mains_hz > 5.0 && mains_hz + 5.0 < 0.5 * fs).then_some(FirSpec {
            band: Band::BandStop {
                low_hz: mains_hz - 3.0,
                high_hz: mains_hz + 3.0,
            },
            transition_hz: 4.0,
            atten_db: ATTEN_DB,
        })
    }

    /// Upper cutoff actually used for a nominal `high_hz` at `fs`: at most 0.4·fs
    /// (so 100 Hz at 250 Hz, 144 Hz at 360 Hz for the diagnostic band).
    pub fn clamp_high(high_hz: f64, fs: f64) -> f64 {
        high_hz.min(0.4 * fs)
    }

    /// Monitoring band-pass 0.5–40 Hz: −6 dB at 0.5 Hz and at 40 Hz (clamped to
    /// 0.4·fs), both transitions 0.6 Hz wide (so it includes [`baseline_removal`]).
    /// About 4.65·fs taps (2327 at 500 Hz, delay 1163 samples = 2.33 s); longer than
    /// [`baseline_removal`] because two edges' errors add (see [`FirSpec::design_atten_db`]).
    pub fn monitoring(fs: f64) -> FirSpec {
        FirSpec {
            band: Band::BandPass {
                low_hz: 0.5,
                high_hz: clamp_high(40.0, fs),
            },
            transition_hz: 0.6,
            atten_db: ATTEN_DB,
        }
    }

    /// Diagnostic band-pass 0.05–150 Hz: −6 dB at 0.05 Hz (DC is the stop-band edge,
    /// ≥ 40 dB; flat within ±0.086 dB from 0.1 Hz) and at 150 Hz clamped to 0.4·fs,
    /// transitions 0.1 Hz wide. Long: about 27.9·fs taps (13,949 at 500 Hz, group
    /// delay 13.9 s); meant for diagnostic (offline or high-latency) analysis, not the
    /// per-stream monitoring chain.
    pub fn diagnostic(fs: f64) -> FirSpec {
        FirSpec {
            band: Band::BandPass {
                low_hz: 0.05,
                high_hz: clamp_high(150.0, fs),
            },
            transition_hz: 0.1,
            atten_db: ATTEN_DB,
        }
    }
}

/// How a [`FirFilter`] convolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Direct form up to [`DIRECT_MAX_TAPS`] taps, FFT overlap-save beyond.
    Auto,
    /// Direct form (one output per input, `N` multiply-adds per sample).
    Direct,
    /// FFT overlap-save with transforms of `fft_len` points (0: the next power of two
    /// ≥ 1.5·N, at least 64 — a compromise between speed, which grows with
    /// `fft_len / N`, and per-channel memory, `fft_len` samples). Outputs come in blocks
    /// of `fft_len − N + 1` samples per channel.
    Fft {
        /// Transform length (≥ the number of taps), 0 for the default.
        fft_len: usize,
    },
}

#[derive(Debug, Clone)]
struct DirectState {
    /// Taps reversed, `f32`.
    taps_rev: Arc<[f32]>,
    /// Per channel a doubled ring of `2N` samples.
    hist: Vec<f32>,
    pos: usize,
}

#[derive(Clone)]
struct FftState {
    m: usize,
    /// New samples per transform: `m − N + 1`.
    l: usize,
    fwd: Arc<dyn Fft<f32>>,
    inv: Arc<dyn Fft<f32>>,
    /// Kernel spectrum, with the 1/m inverse-transform normalisation folded in.
    kernel: Arc<[Complex32]>,
    /// Per channel `m` samples: `N − 1` of history then up to `l` pending.
    input: Vec<f32>,
    fill: usize,
    work: Vec<Complex32>,
    scratch: Vec<Complex32>,
}

impl fmt::Debug for FftState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FftState")
            .field("m", &self.m)
            .field("l", &self.l)
            .field("fill", &self.fill)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Direct(DirectState),
    Fft(FftState),
}

/// A streaming, multi-channel linear-phase FIR filter (`f32` samples, e.g. mV).
///
/// Input and output blocks are **lead-major** (`channels × n`: all of channel 0, then
/// channel 1, …). [`FirFilter::process`] appends the outputs that became complete:
/// the direct engine returns one output per input, the FFT engine whole blocks of
/// [`FirFilter::block_len`] samples per channel; either way the concatenated output
/// does not depend on how the input was split (bit for bit).
///
/// Before the first sample each channel's history is filled with that first sample
/// (as if it had been constant forever), so a DC offset causes no start transient.
///
/// Output sample `k` (per channel, counted from the first output) is the causal
/// convolution `y[k] = Σ h[i] x[k − i]`, which describes input sample
/// `k − group_delay` ([`FirFilter::group_delay_samples`]); with `compensate_delay`
/// ([`FirFilter::with_options`]) the first `(N − 1)/2` outputs are dropped and output
/// `k` describes input sample `k`.
#[derive(Debug, Clone)]
pub struct FirFilter {
    num_taps: usize,
    channels: usize,
    kind: Kind,
    started: bool,
    /// Outputs still to drop for delay compensation.
    skip: usize,
    compensate: bool,
    n_in: u64,
    n_out: u64,
}

impl FirFilter {
    /// A filter with these taps on `channels` channels, engine [`Engine::Auto`], causal
    /// output (not delay-compensated).
    ///
    /// # Panics
    /// If `taps` is empty or `channels` is 0.
    pub fn new(taps: &[f64], channels: usize) -> Self {
        Self::with_options(taps, channels, Engine::Auto, false)
    }

    /// A filter with an explicit engine; with `compensate_delay` the first
    /// `⌊(N − 1)/2⌋` outputs are dropped so that output index = input index (exact for
    /// the odd-length designs of this module).
    ///
    /// # Panics
    /// If `taps` is empty, `channels` is 0, or an FFT length is given that is smaller
    /// than the number of taps.
    pub fn with_options(
        taps: &[f64],
        channels: usize,
        engine: Engine,
        compensate_delay: bool,
    ) -> Self {
        assert!(!taps.is_empty(), "a fir filter needs at least one tap");
        assert!(channels > 0, "a fir filter needs at least one channel");
        let n = taps.len();
        let engine = match engine {
            Engine::Auto if n <= DIRECT_MAX_TAPS => Engine::Direct,
            Engine::Auto => Engine::Fft { fft_len: 0 },
            e => e,
        };
        let kind = match engine {
            Engine::Fft { fft_len } => {
                let m = if fft_len == 0 {
                    (n + n / 2).next_power_of_two().max(64)
                } else {
                    fft_len
                };
                assert!(m >= n, "fft length {m} is smaller than the {n} taps");
                let mut planner = FftPlanner::<f32>::new();
                let fwd = planner.plan_fft_forward(m);
                let inv = planner.plan_fft_inverse(m);
                let scratch_len = fwd
                    .get_inplace_scratch_len()
                    .max(inv.get_inplace_scratch_len());
                let mut scratch = vec![Complex32::default(); scratch_len];
                let mut kernel = vec![Complex32::default(); m];
                for (k, &h) in kernel.iter_mut().zip(taps) {
                    *k = Complex32::new((h / m as f64) as f32, 0.0);
                }
                fwd.process_with_scratch(&mut kernel, &mut scratch);
                FftState {
                    m,
                    l: m - n + 1,
                    fwd,
                    inv,
                    kernel: kernel.into(),
                    input: vec![0.0; channels * m],
                    fill: 0,
                    work: vec![Complex32::default(); m],
                    scratch,
                }
                .into()
            }
            _ => DirectState {
                taps_rev: taps.iter().rev().map(|&h| h as f32).collect(),
                hist: vec![0.0; channels * 2 * n],
                pos: 0,
            }
            .into(),
        };
        Self {
            num_taps: n,
            channels,
            kind,
            started: false,
            skip: if compensate_delay { (n - 1) / 2 } else { 0 },
            compensate: compensate_delay,
            n_in: 0,
            n_out: 0,
        }
    }

    /// Number of taps `N`.
    pub fn num_taps(&self) -> usize {
        self.num_taps
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Group delay of the causal output, `(N − 1)/2` samples (0 when delay-compensated).
    pub fn group_delay_samples(&self) -> f64 {
        if self.compensate {
            group_delay(self.num_taps) - ((self.num_taps - 1) / 2) as f64
        } else {
            group_delay(self.num_taps)
        }
    }

    /// Whether the FFT overlap-save engine is used.
    pub fn is_fft(&self) -> bool {
        matches!(self.kind, Kind::Fft(_))
    }

    /// Samples per channel that complete at once: 1 for direct form, `fft_len − N + 1`
    /// for FFT overlap-save.
    pub fn block_len(&self) -> usize {
        match &self.kind {
            Kind::Direct(_) => 1,
            Kind::Fft(s) => s.l,
        }
    }

    /// Worst-case delay (samples) from an input sample's arrival until the output that
    /// describes it is returned: group delay plus `block_len − 1` (whether compensated
    /// or not; compensation only re-indexes).
    pub fn latency_samples(&self) -> usize {
        (self.num_taps - 1) / 2 + self.block_len() - 1
    }

    /// Input samples per channel consumed so far.
    pub fn samples_in(&self) -> u64 {
        self.n_in
    }

    /// Output samples per channel returned so far.
    pub fn samples_out(&self) -> u64 {
        self.n_out
    }

    /// Bytes of per-stream state that must persist between calls (the per-channel
    /// histories and pending input), excluding the transform work buffers
    /// ([`FirFilter::scratch_bytes`]) and the taps / kernel spectrum shared by clones
    /// ([`FirFilter::shared_bytes`]).
    pub fn state_bytes(&self) -> usize {
        let own = std::mem::size_of::<Self>();
        own + match &self.kind {
            Kind::Direct(s) => s.hist.len() * 4,
            Kind::Fft(s) => s.input.len() * 4,
        }
    }

    /// Bytes of transform work buffers and scratch: contents do not persist between
    /// calls (they could be shared by every stream a thread serves).
    pub fn scratch_bytes(&self) -> usize {
        match &self.kind {
            Kind::Direct(_) => 0,
            Kind::Fft(s) => (s.work.len() + s.scratch.len()) * 8,
        }
    }

    /// Bytes shared between clones (taps or kernel spectrum; FFT twiddles not counted).
    pub fn shared_bytes(&self) -> usize {
        match &self.kind {
            Kind::Direct(s) => s.taps_rev.len() * 4,
            Kind::Fft(s) => s.kernel.len() * 8,
        }
    }

    /// Filters a lead-major block (`channels × n` samples) and appends the outputs that
    /// became complete, lead-major (`channels × k`, with `k` the same for every
    /// channel), to `out`. Non-finite inputs are treated as 0.
    ///
    /// # Panics
    /// If `input.len()` is not a multiple of the channel count.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        let ch = self.channels;
        assert!(
            input.len().is_multiple_of(ch),
            "block of {} samples is not a multiple of {ch} channels",
            input.len()
        );
        let n = input.len() / ch;
        if n == 0 {
            return;
        }
        let nt = self.num_taps;
        if !self.started {
            self.started = true;
            for c in 0..ch {
                let x0 = finite(input[c * n]);
                match &mut self.kind {
                    Kind::Direct(s) => s.hist[c * 2 * nt..(c + 1) * 2 * nt].fill(x0),
                    Kind::Fft(s) => s.input[c * s.m..c * s.m + nt - 1].fill(x0),
                }
            }
        }
        let produced = match &self.kind {
            Kind::Direct(_) => n,
            Kind::Fft(s) => (s.fill + n) / s.l * s.l,
        };
        let skip = self.skip.min(produced);
        let count = produced - skip;
        let base = out.len();
        out.resize(base + ch * count, 0.0);
        let dst = &mut out[base..];
        match &mut self.kind {
            Kind::Direct(s) => {
                let pos0 = s.pos;
                for c in 0..ch {
                    let hist = &mut s.hist[c * 2 * nt..(c + 1) * 2 * nt];
                    let mut pos = pos0;
                    for (j, &x) in input[c * n..(c + 1) * n].iter().enumerate() {
                        let x = finite(x);
                        hist[pos] = x;
                        hist[pos + nt] = x;
                        pos = if pos + 1 == nt { 0 } else { pos + 1 };
                        if j >= skip {
                            dst[c * count + j - skip] = dot(&hist[pos..pos + nt], &s.taps_rev);
                        }
                    }
                    s.pos = pos;
                }
            }
            Kind::Fft(s) => {
                let mut consumed = 0;
                let mut emitted = 0;
                while consumed < n {
                    let take = (s.l - s.fill).min(n - consumed);
                    for c in 0..ch {
                        let at = c * s.m + nt - 1 + s.fill;
                        for (d, &x) in s.input[at..at + take]
                            .iter_mut()
                            .zip(&input[c * n + consumed..c * n + consumed + take])
                        {
                            *d = finite(x);
                        }
                    }
                    s.fill += take;
                    consumed += take;
                    if s.fill == s.l {
                        s.run_block(ch, nt, emitted, skip, count, dst);
                        emitted += s.l;
                        s.fill = 0;
                    }
                }
            }
        }
        self.skip -= skip;
        self.n_in += n as u64;
        self.n_out += count as u64;
    }
}

impl From<DirectState> for Kind {
    fn from(s: DirectState) -> Self {
        Kind::Direct(s)
    }
}

impl From<FftState> for Kind {
    fn from(s: FftState) -> Self {
        Kind::Fft(s)
    }
}

impl FftState {
    /// Convolves the full input buffers of all channels (two channels per complex
    /// transform: real and imaginary parts) and writes the `l` new outputs of each
    /// channel, produced-index `emitted ..`, minus the first `skip` of the call.
    fn run_block(
        &mut self,
        ch: usize,
        nt: usize,
        emitted: usize,
        skip: usize,
        count: usize,
        dst: &mut [f32],
    ) {
        let m = self.m;
        let mut c = 0;
        while c < ch {
            let pair = c + 1 < ch;
            let a = &self.input[c * m..(c + 1) * m];
            if pair {
                let b = &self.input[(c + 1) * m..(c + 2) * m];
                for ((w, &x), &y) in self.work.iter_mut().zip(a).zip(b) {
                    *w = Complex32::new(x, y);
                }
            } else {
                for (w, &x) in self.work.iter_mut().zip(a) {
                    *w = Complex32::new(x, 0.0);
                }
            }
            self.fwd
                .process_with_scratch(&mut self.work, &mut self.scratch);
            for (w, k) in self.work.iter_mut().zip(self.kernel.iter()) {
                *w *= *k;
            }
            self.inv
                .process_with_scratch(&mut self.work, &mut self.scratch);
            for (i, w) in self.work[nt - 1..].iter().enumerate() {
                let j = emitted + i;
                if j >= skip {
                    dst[c * count + j - skip] = w.re;
                    if pair {
                        dst[(c + 1) * count + j - skip] = w.im;
                    }
                }
            }
            c += if pair { 2 } else { 1 };
        }
        // Keep the last N − 1 samples as history.
        for c in 0..ch {
            self.input.copy_within(c * m + self.l..(c + 1) * m, c * m);
        }
    }
}

#[inline]
fn finite(x: f32) -> f32 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

/// Dot product with eight independent accumulators (vectorises well).
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    // The accumulators pass an optimisation barrier before they are summed: without
    // it the compiler lays them out for the pairwise sum below (even and odd lanes
    // apart) and shuffles every step of the loop into that layout, about twice the
    // loop's instructions. The values and their order are the same.
    let acc = std::hint::black_box(acc);
    let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_sums_eight_lanes_then_the_rest() {
        // The reference: lane k takes products k, k + 8, ... in order; the lanes are
        // summed pairwise, then the remainder in order.
        let reference = |a: &[f32], b: &[f32]| {
            let whole = a.len() / 8 * 8;
            let mut acc = [0.0f32; 8];
            for i in 0..whole {
                acc[i % 8] += a[i] * b[i];
            }
            let mut s =
                (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
            for i in whole..a.len() {
                s += a[i] * b[i];
            }
            s
        };
        let a: Vec<f32> = (0..203).map(|i| (i as f32 * 0.37).sin() * 1e3).collect();
        let b: Vec<f32> = (0..203).map(|i| (i as f32 * 0.11).cos() / 7.0).collect();
        for n in 0..a.len() {
            assert_eq!(
                dot(&a[..n], &b[..n]).to_bits(),
                reference(&a[..n], &b[..n]).to_bits(),
                "{n}"
            );
        }
    }

    #[test]
    fn kaiser_formulas() {
        assert!((kaiser_beta(60.0) - 5.653_26).abs() < 1e-4);
        assert!((kaiser_beta(40.0) - 3.395_321).abs() < 1e-4);
        assert_eq!(kaiser_beta(10.0), 0.0);
        assert_eq!(kaiser_len(40.0, 0.6, 500.0) % 2, 1);
        let w = kaiser_window(5, 0.0);
        assert!(w.iter().all(|&v| (v - 1.0).abs() < 1e-12));
        assert!((bessel_i0(1.0) - 1.266_065_877_752_008_4).abs() < 1e-12);
    }

    #[test]
    fn invalid_specs_are_errors() {
        let s = FirSpec {
            band: Band::LowPass { cutoff_hz: 240.0 },
            transition_hz: 40.0,
            atten_db: 40.0,
        };
        assert!(s.design(500.0).is_err());
        let s = FirSpec {
            band: Band::BandPass {
                low_hz: 10.0,
                high_hz: 5.0,
            },
            transition_hz: 1.0,
            atten_db: 40.0,
        };
        assert!(s.design(500.0).is_err());
    }
}
