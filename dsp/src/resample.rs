//! Streaming rational-ratio polyphase resampling between device and model rates.
//!
//! `fs_out / fs_in = P / Q` in lowest terms. The anti-aliasing / anti-imaging filter is
//! a Kaiser-windowed-sinc low-pass designed at the up-sampled rate `P · fs_in` (see
//! [`crate::fir`]) with, in terms of `f_min = min(fs_in, fs_out)`:
//!
//! | | |
//! |---|---|
//! | pass-band edge | `0.4 · f_min` (0.8 × the lower Nyquist frequency) |
//! | pass-band ripple | ≤ ±0.01 dB (design ±0.005 dB) |
//! | −6 dB point | `0.45 · f_min` |
//! | stop-band edge | `0.5 · f_min` (the lower Nyquist frequency) |
//! | stop-band attenuation | ≥ 60 dB (designed for [`DESIGN_ATTEN_DB`] = 65 dB) |
//! | DC gain | exactly 1 (every polyphase branch is normalised to unit sum) |
//!
//! So a component above the output Nyquist frequency is attenuated by ≥ 60 dB before
//! it can alias. Taps per output sample: ≈ 40 × `fs_in / f_min` (≈ 40 when up-sampling,
//! 50 for 500 → 400 Hz, 160 for 1000 → 250 Hz).
//!
//! # Timing
//!
//! The resampler is **phase-compensated**: output sample `j` is the band-limited
//! estimate of the input at time `j / fs_out` in the input's own time base (input
//! sample `k` being at `k / fs_in`), i.e. output 0 coincides with input 0 and the
//! delay in output samples is **0**. The price is latency: output `j` is returned by
//! the call that delivers input sample `⌊(j·Q + D)/P⌋`, `D = (N − 1)/2` being the
//! prototype's delay at the up-sampled rate; [`Resampler::latency_in_samples`] gives
//! `D / P` (≈ 20 input samples when up-sampling). After `n` input samples exactly
//! [`Resampler::outputs_for`]`(n)` outputs have been returned, whatever the block
//! sizes. Before the first sample the input is taken as constant at its first value
//! (no start transient from a DC offset).
//!
//! Equal rates are a pass-through (no filtering).

use std::sync::Arc;

use crate::fir::{kaiser_beta, kaiser_len, kaiser_window};

/// Stop-band attenuation the prototype is designed for (dB); the stated guarantee is
/// 60 dB.
pub const DESIGN_ATTEN_DB: f64 = 65.0;
/// Pass-band edge as a fraction of `min(fs_in, fs_out)`.
pub const PASS_EDGE: f64 = 0.4;
/// Stop-band edge as a fraction of `min(fs_in, fs_out)`.
pub const STOP_EDGE: f64 = 0.5;

/// A streaming multi-channel rational resampler; see the module documentation.
#[derive(Debug, Clone)]
pub struct Resampler {
    fs_in: u32,
    fs_out: u32,
    p: u64,
    q: u64,
    /// Taps per branch.
    k: usize,
    /// `p` branches of `k` taps, each in chronological order (oldest sample first).
    branches: Arc<[f32]>,
    /// Prototype delay at the up-sampled rate.
    d: u64,
    channels: usize,
    /// Per channel a doubled ring of `2k` samples.
    hist: Vec<f32>,
    pos: usize,
    started: bool,
    n_in: u64,
    n_out: u64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Resampler {
    /// A resampler from `fs_in` to `fs_out` Hz for `channels` channels.
    ///
    /// # Panics
    /// If a rate or `channels` is 0.
    pub fn new(fs_in: u32, fs_out: u32, channels: usize) -> Self {
        assert!(fs_in > 0 && fs_out > 0, "sampling rates must be positive");
        assert!(channels > 0, "a resampler needs at least one channel");
        let g = gcd(u64::from(fs_in), u64::from(fs_out));
        let (p, q) = (u64::from(fs_out) / g, u64::from(fs_in) / g);
        let (k, branches, d) = if p == 1 && q == 1 {
            (1, vec![1.0f32].into(), 0)
        } else {
            let proto = prototype(fs_in, fs_out);
            let pu = p as usize;
            let k = proto.len().div_ceil(pu);
            let mut b = vec![0.0f32; pu * k];
            for phi in 0..pu {
                // Chronological index i multiplies x[kmax − (k − 1 − i)], i.e. tap
                // phi + (k − 1 − i)·p.
                let mut row = vec![0.0f64; k];
                for (i, r) in row.iter_mut().enumerate() {
                    let t = phi + (k - 1 - i) * pu;
                    *r = proto.get(t).copied().unwrap_or(0.0);
                }
                let s: f64 = row.iter().sum();
                for (dst, r) in b[phi * k..(phi + 1) * k].iter_mut().zip(&row) {
                    *dst = (r / s) as f32;
                }
            }
            (k, b.into(), (proto.len() as u64 - 1) / 2)
        };
        Self {
            fs_in,
            fs_out,
            p,
            q,
            k,
            branches,
            d,
            channels,
            hist: vec![0.0; channels * 2 * k],
            pos: 0,
            started: false,
            n_in: 0,
            n_out: 0,
        }
    }

    /// Input rate (Hz).
    pub fn fs_in(&self) -> u32 {
        self.fs_in
    }

    /// Output rate (Hz).
    pub fn fs_out(&self) -> u32 {
        self.fs_out
    }

    /// `(P, Q)`: up-sampling and down-sampling factors in lowest terms.
    pub fn ratio(&self) -> (u64, u64) {
        (self.p, self.q)
    }

    /// Taps per output sample (per channel).
    pub fn taps_per_output(&self) -> usize {
        self.k
    }

    /// Length of the prototype low-pass at the up-sampled rate (`P · k` after padding).
    pub fn prototype_len(&self) -> usize {
        self.k * self.p as usize
    }

    /// Delay in output samples: 0 (output `j` is at time `j / fs_out` in the input
    /// time base).
    pub fn delay_out_samples(&self) -> f64 {
        0.0
    }

    /// Latency in input samples: output `j` (at input time `j·Q/P`) needs input up to
    /// `(j·Q + D)/P`, i.e. `D / P` samples later.
    pub fn latency_in_samples(&self) -> f64 {
        self.d as f64 / self.p as f64
    }

    /// Outputs (per channel) returned once `n_in` input samples have been pushed:
    /// `⌊(n·P − 1 − D)/Q⌋ + 1`, or 0 when `n·P ≤ D`.
    pub fn outputs_for(&self, n_in: u64) -> u64 {
        let last = (n_in * self.p).checked_sub(1 + self.d);
        last.map_or(0, |v| v / self.q + 1)
    }

    /// Input sample index (fractional) at the time of output sample `j`.
    pub fn output_to_input_time(&self, j: u64) -> f64 {
        j as f64 * self.q as f64 / self.p as f64
    }

    /// Input samples per channel consumed so far.
    pub fn samples_in(&self) -> u64 {
        self.n_in
    }

    /// Output samples per channel returned so far.
    pub fn samples_out(&self) -> u64 {
        self.n_out
    }

    /// Bytes of per-instance state (ring buffers), excluding the shared branch taps.
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.hist.len() * 4
    }

    /// Bytes of the polyphase taps shared by clones.
    pub fn shared_bytes(&self) -> usize {
        self.branches.len() * 4
    }

    /// The polyphase branch for phase `phi` (`< P`), chronological order (oldest
    /// sample first), unit sum.
    ///
    /// # Panics
    /// If `phi ≥ P`.
    pub fn branch(&self, phi: usize) -> &[f32] {
        &self.branches[phi * self.k..(phi + 1) * self.k]
    }

    /// Resamples a lead-major block (`channels × n` input samples) and appends the
    /// outputs it completes, lead-major (`channels × m`,
    /// `m = outputs_for(n_in + n) − outputs_for(n_in)`), to `out`. Non-finite inputs
    /// are treated as 0. Allocation-free when `out` has capacity.
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
        let k = self.k;
        if !self.started {
            self.started = true;
            for c in 0..ch {
                let x0 = finite(input[c * n]);
                self.hist[c * 2 * k..(c + 1) * 2 * k].fill(x0);
            }
        }
        let count = (self.outputs_for(self.n_in + n as u64) - self.n_out) as usize;
        let base = out.len();
        out.resize(base + ch * count, 0.0);
        let dst = &mut out[base..];
        let (p, q, d) = (self.p, self.q, self.d);
        // Output j's position on the upsampled grid is t = j·q + d: its newest input
        // sample is t / p and its branch t % p. Both are carried from output to output
        // (t grows by q) instead of divided out per input sample.
        let (q_div, q_rem) = (q / p, (q % p) as usize);
        let pos0 = self.pos;
        let mut pos_end = pos0;
        for c in 0..ch {
            let hist = &mut self.hist[c * 2 * k..(c + 1) * 2 * k];
            let x = &input[c * n..(c + 1) * n];
            let mut pos = pos0;
            let t = self.n_out * q + d;
            let (mut newest, mut phi) = (t / p, (t % p) as usize);
            let mut o = c * count;
            let mut i = 0;
            while i < n {
                // The inputs up to the next output's newest (never one already in:
                // every output whose newest has come was returned), or to the block's
                // end, into the ring in runs: each sample at `pos` and `pos + k`.
                let due = newest - self.n_in;
                let end = if due < n as u64 { due as usize + 1 } else { n };
                while i < end {
                    let m = (end - i).min(k - pos);
                    let (ring, mirror) = hist.split_at_mut(k);
                    for ((a, b), &v) in ring[pos..pos + m]
                        .iter_mut()
                        .zip(&mut mirror[pos..pos + m])
                        .zip(&x[i..i + m])
                    {
                        let v = finite(v);
                        *a = v;
                        *b = v;
                    }
                    pos = if pos + m == k { 0 } else { pos + m };
                    i += m;
                }
                // Every output whose newest input sample is the last one written.
                while newest + 1 == self.n_in + i as u64 {
                    dst[o] = crate::fir::dot(
                        &hist[pos..pos + k],
                        &self.branches[phi * k..(phi + 1) * k],
                    );
                    o += 1;
                    newest += q_div;
                    phi += q_rem;
                    if phi >= p as usize {
                        phi -= p as usize;
                        newest += 1;
                    }
                }
            }
            pos_end = pos;
        }
        self.pos = pos_end;
        self.n_in += n as u64;
        self.n_out += count as u64;
    }
}

/// The prototype low-pass at `P · fs_in` (`f64`, odd length, unit DC gain before the
/// polyphase split).
fn prototype(fs_in: u32, fs_out: u32) -> Vec<f64> {
    let g = gcd(u64::from(fs_in), u64::from(fs_out));
    let p = u64::from(fs_out) / g;
    let fs_up = f64::from(fs_in) * p as f64;
    let fmin = f64::from(fs_in.min(fs_out));
    let tw = (STOP_EDGE - PASS_EDGE) * fmin;
    let fc = 0.5 * (STOP_EDGE + PASS_EDGE) * fmin / fs_up;
    let n = kaiser_len(DESIGN_ATTEN_DB, tw, fs_up);
    let w = kaiser_window(n, kaiser_beta(DESIGN_ATTEN_DB));
    let m = (n - 1) as f64 / 2.0;
    w.iter()
        .enumerate()
        .map(|(i, wi)| {
            let t = i as f64 - m;
            let s = if t == 0.0 {
                2.0 * fc
            } else {
                (2.0 * std::f64::consts::PI * fc * t).sin() / (std::f64::consts::PI * t)
            };
            s * wi
        })
        .collect()
}

/// Offline reference: resamples a whole single-channel signal by the same polyphase
/// branches with a naive `f64` sum over input indices (input before sample 0 taken as
/// `x[0]`), returning exactly the outputs the streaming resampler returns for it.
pub fn resample_offline(fs_in: u32, fs_out: u32, x: &[f32]) -> Vec<f32> {
    let r = Resampler::new(fs_in, fs_out, 1);
    let (p, q, d, k) = (r.p, r.q, r.d, r.k as i64);
    let n_out = r.outputs_for(x.len() as u64);
    let x0 = x.first().copied().unwrap_or(0.0);
    (0..n_out)
        .map(|j| {
            let t = j * q + d;
            let (kmax, phi) = ((t / p) as i64, (t % p) as usize);
            let b = r.branch(phi);
            let mut acc = 0.0f64;
            for (i, &h) in b.iter().enumerate() {
                let idx = kmax - (k - 1 - i as i64);
                let v = if idx < 0 { x0 } else { x[idx as usize] };
                acc += f64::from(h) * f64::from(finite(v));
            }
            acc as f32
        })
        .collect()
}

#[inline]
fn finite(x: f32) -> f32 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}
