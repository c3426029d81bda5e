//! Model windows per model contract: lead selection / derivation into model order,
//! resampling to the model rate and fixed-length windows every hop.
//!
//! A [`Windower`] is configured by a [`WindowSpec`] (the model's side of the contract)
//! and the stream's source rate and lead list. It takes lead-major blocks of (raw)
//! millivolt samples at the source rate and emits [`ModelWindow`]s:
//!
//! - leads in the model's order; a lead the stream lacks is derived from I and II when
//!   it is a limb lead (III = II − I, aVR = −(I + II)/2, aVL = I − II/2,
//!   aVF = II − I/2), otherwise construction fails with [`WindowError::MissingLead`];
//! - resampled to `target_rate_hz` by [`crate::resample::Resampler`] (phase-compensated:
//!   target sample `j` is at source time `j · fs_source / fs_target`);
//! - window `w` covers target samples `[w·hop, w·hop + len)`, `len = round(window_s ·
//!   rate)`, `hop = round(hop_s · rate)`; it is emitted as soon as its last sample
//!   exists, never half-filled (the first window at stream start is emitted only once
//!   `len` samples exist);
//! - memory: a ring of exactly one window per lead, plus the resampler's short rings
//!   and two scratch blocks sized by the largest input block seen.
//!
//! Windows do not depend on how the input is split into blocks.

use ecg_types::Lead;
use serde::{Deserialize, Serialize};

use crate::resample::Resampler;

/// The DSP side of a model contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Window length (s).
    pub window_s: f32,
    /// Time between the starts of successive windows (s).
    pub hop_s: f32,
    /// The model's sampling rate (Hz).
    pub target_rate_hz: u32,
    /// The model's leads, in model order.
    pub leads: Vec<Lead>,
}

/// Why a [`Windower`] cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WindowError {
    /// The model needs a lead the stream neither has nor can derive.
    #[error("the stream has no lead {0} and cannot derive it")]
    MissingLead(Lead),
    /// A length, hop, rate or lead list is unusable.
    #[error("invalid window spec: {0}")]
    InvalidSpec(String),
}

/// One model window.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelWindow {
    /// Index of the first sample at the target rate (sample 0 = the stream's first
    /// source sample).
    pub start_sample: u64,
    /// Target rate (Hz).
    pub sample_rate_hz: u32,
    /// The stream's source rate (Hz).
    pub source_rate_hz: u32,
    /// Samples (mV), lead-major in model order: `leads × len`.
    pub samples_mv: Vec<f32>,
}

impl ModelWindow {
    /// Start in the source time base, as a (possibly fractional) source sample index:
    /// `start_sample · source_rate / target_rate`.
    pub fn source_start_sample(&self) -> f64 {
        self.start_sample as f64 * f64::from(self.source_rate_hz) / f64::from(self.sample_rate_hz)
    }

    /// Start in seconds since the stream's first sample.
    pub fn start_s(&self) -> f64 {
        self.start_sample as f64 / f64::from(self.sample_rate_hz)
    }
}

/// How one model lead is made from source leads: `wa · src[a] + wb · src[b]`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LeadMap {
    a: usize,
    wa: f32,
    b: usize,
    wb: f32,
}

/// Streaming per-stream windower; see the module documentation.
#[derive(Debug, Clone)]
pub struct Windower {
    spec: WindowSpec,
    source_rate: u32,
    n_src: usize,
    map: Vec<LeadMap>,
    resampler: Option<Resampler>,
    len: usize,
    hop: u64,
    /// `leads × len` ring, sample `t` of lead `l` at `l·len + t % len`.
    ring: Vec<f32>,
    produced: u64,
    next_end: u64,
    /// End of the first window.
    first_end: u64,
    selected: Vec<f32>,
    resampled: Vec<f32>,
}

impl Windower {
    /// A windower for a stream at `source_rate_hz` with `source_leads` (block order).
    ///
    /// # Errors
    /// [`WindowError::MissingLead`] for a model lead the stream neither has nor can
    /// derive; [`WindowError::InvalidSpec`] for a zero rate, an empty lead list, or a
    /// window or hop shorter than one target sample.
    pub fn new(
        spec: &WindowSpec,
        source_rate_hz: u32,
        source_leads: &[Lead],
    ) -> Result<Self, WindowError> {
        let bad = |m: String| Err(WindowError::InvalidSpec(m));
        if source_rate_hz == 0 || spec.target_rate_hz == 0 {
            return bad("sampling rates must be positive".into());
        }
        if spec.leads.is_empty() || source_leads.is_empty() {
            return bad("lead lists must not be empty".into());
        }
        let rate = f64::from(spec.target_rate_hz);
        let len = (f64::from(spec.window_s) * rate).round();
        let hop = (f64::from(spec.hop_s) * rate).round();
        if !(len >= 1.0 && hop >= 1.0 && len.is_finite() && hop.is_finite()) {
            return bad(format!(
                "window {} s and hop {} s must each hold at least one sample at {} Hz",
                spec.window_s, spec.hop_s, spec.target_rate_hz
            ));
        }
        let len = len as usize;
        let find = |l: Lead| source_leads.iter().position(|&s| s == l);
        let mut map = Vec::with_capacity(spec.leads.len());
        for &lead in &spec.leads {
            let m = if let Some(i) = find(lead) {
                LeadMap {
                    a: i,
                    wa: 1.0,
                    b: i,
                    wb: 0.0,
                }
            } else {
                let (i, ii) = match (find(Lead::I), find(Lead::II)) {
                    (Some(i), Some(ii)) => (i, ii),
                    _ => return Err(WindowError::MissingLead(lead)),
                };
                let (wa, wb) = match lead {
                    Lead::III => (-1.0, 1.0),
                    Lead::AVR => (-0.5, -0.5),
                    Lead::AVL => (1.0, -0.5),
                    Lead::AVF => (-0.5, 1.0),
                    _ => return Err(WindowError::MissingLead(lead)),
                };
                LeadMap {
                    a: i,
                    wa,
                    b: ii,
                    wb,
                }
            };
            map.push(m);
        }
        let n_model = map.len();
        let resampler = (source_rate_hz != spec.target_rate_hz)
            .then(|| Resampler::new(source_rate_hz, spec.target_rate_hz, n_model));
        Ok(Self {
            spec: spec.clone(),
            source_rate: source_rate_hz,
            n_src: source_leads.len(),
            map,
            resampler,
            len,
            hop: hop as u64,
            ring: vec![0.0; n_model * len],
            produced: 0,
            next_end: len as u64,
            first_end: len as u64,
            selected: Vec::new(),
            resampled: Vec::new(),
        })
    }

    /// The same, with its first window ending at target sample `end` (exclusive; at
    /// least one window length) instead of one window length after the first sample:
    /// windows then end at `end + k · hop`. Call before pushing samples. The pipeline
    /// feeds a windower from a stream's first sample and puts its windows on the
    /// stream's grid of device time this way.
    #[must_use]
    pub fn with_first_end(mut self, end: u64) -> Self {
        debug_assert_eq!(
            self.produced, 0,
            "first window moved after samples were pushed"
        );
        self.next_end = end.max(self.len as u64);
        self.first_end = self.next_end;
        self
    }

    /// End (exclusive target sample) of the next window to be emitted.
    pub fn next_end(&self) -> u64 {
        self.next_end
    }

    /// Ends a stream offline: flushes the resampler (as if the last sample of
    /// `last_block_mv`, the block pushed last, were held for the resampler's
    /// latency), then, when no window has been emitted at all (a record shorter than
    /// a window), emits the one window starting at target sample 0 with the samples
    /// that exist, zero-padded at the end. The pipeline never calls it: it emits no
    /// padded window.
    pub fn finish(&mut self, last_block_mv: &[f32], out: &mut Vec<ModelWindow>) {
        let emitted_any = self.next_end > self.first_end;
        let n_last = last_block_mv.len() / self.n_src.max(1);
        if let (Some(r), true) = (&self.resampler, n_last > 0) {
            let hold_n = r.latency_in_samples().ceil() as usize + 1;
            let mut hold = Vec::with_capacity(self.n_src * hold_n);
            for l in 0..self.n_src {
                let v = last_block_mv[l * n_last + n_last - 1];
                hold.extend(std::iter::repeat_n(v, hold_n));
            }
            self.push(&hold, out);
        }
        if !emitted_any && self.next_end == self.first_end && self.produced < self.len as u64 {
            let n_model = self.map.len();
            let have = self.produced as usize;
            let mut samples = vec![0.0f32; n_model * self.len];
            for l in 0..n_model {
                samples[l * self.len..l * self.len + have]
                    .copy_from_slice(&self.ring[l * self.len..l * self.len + have]);
            }
            out.push(ModelWindow {
                start_sample: 0,
                sample_rate_hz: self.spec.target_rate_hz,
                source_rate_hz: self.source_rate,
                samples_mv: samples,
            });
        }
    }

    /// The contract.
    pub fn spec(&self) -> &WindowSpec {
        &self.spec
    }

    /// Samples per lead in a window.
    pub fn window_len(&self) -> usize {
        self.len
    }

    /// Hop in target samples.
    pub fn hop_len(&self) -> u64 {
        self.hop
    }

    /// Target-rate samples per lead produced so far.
    pub fn samples_produced(&self) -> u64 {
        self.produced
    }

    /// Latency of the resampling step in source samples (0 at equal rates): a window
    /// is emitted once this many source samples past its end have arrived.
    pub fn latency_source_samples(&self) -> f64 {
        self.resampler
            .as_ref()
            .map_or(0.0, Resampler::latency_in_samples)
    }

    /// Bytes of per-stream state: the window ring, the resampler rings and the scratch
    /// blocks (whose size follows the largest block pushed).
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.ring.len() * 4
            + (self.selected.capacity() + self.resampled.capacity()) * 4
            + self.map.len() * std::mem::size_of::<LeadMap>()
            + self.resampler.as_ref().map_or(0, Resampler::state_bytes)
    }

    /// Bytes of the window ring alone (`leads × len × 4`).
    pub fn window_bytes(&self) -> usize {
        self.ring.len() * 4
    }

    /// Feeds a lead-major block of samples (`source leads × n`, mV, source
    /// rate, source lead order) and appends the windows it completes to `out`.
    ///
    /// # Panics
    /// If `block_mv.len()` is not a multiple of the number of source leads.
    pub fn push(&mut self, block_mv: &[f32], out: &mut Vec<ModelWindow>) {
        assert!(
            block_mv.len().is_multiple_of(self.n_src),
            "block of {} samples is not a multiple of {} leads",
            block_mv.len(),
            self.n_src
        );
        let n = block_mv.len() / self.n_src;
        if n == 0 {
            return;
        }
        let n_model = self.map.len();
        let len = self.len as u64;
        if self.resampler.is_none()
            && self.produced >= len
            && self.produced + n as u64 + len <= self.next_end
        {
            // The block lies wholly before the next window (and past the first window
            // length, which `finish` may read): no window reads it.
            self.produced += n as u64;
            return;
        }
        self.selected.clear();
        self.selected.resize(n_model * n, 0.0);
        for (l, m) in self.map.iter().enumerate() {
            let a = &block_mv[m.a * n..(m.a + 1) * n];
            let b = &block_mv[m.b * n..(m.b + 1) * n];
            let dst = &mut self.selected[l * n..(l + 1) * n];
            if m.wb == 0.0 {
                dst.copy_from_slice(a);
            } else {
                for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
                    *d = m.wa * x + m.wb * y;
                }
            }
        }
        let data = match &mut self.resampler {
            Some(r) => {
                self.resampled.clear();
                r.process(&self.selected, &mut self.resampled);
                &self.resampled
            }
            None => &self.selected,
        };
        let count = data.len() / n_model;
        let mut i = 0;
        while i < count {
            // A run of samples up to the next window's end or the ring's wrap, copied
            // lead by lead; `next_end` is always ahead of `produced`.
            let slot = (self.produced % len) as usize;
            let run = (count - i)
                .min(self.len - slot)
                .min((self.next_end - self.produced) as usize);
            // Its samples before the next window's start are read by no window (nor,
            // past the first window length, by `finish`): not stored.
            let unread = if self.produced >= len {
                ((self.next_end - len).saturating_sub(self.produced) as usize).min(run)
            } else {
                0
            };
            for l in 0..n_model {
                let src = &data[l * count + i + unread..l * count + i + run];
                let at = l * self.len + slot;
                self.ring[at + unread..at + run].copy_from_slice(src);
            }
            i += run;
            self.produced += run as u64;
            if self.produced == self.next_end {
                let start = self.produced - len;
                let first = (start % len) as usize;
                let mut samples = Vec::with_capacity(n_model * self.len);
                for l in 0..n_model {
                    let lane = &self.ring[l * self.len..(l + 1) * self.len];
                    samples.extend_from_slice(&lane[first..]);
                    samples.extend_from_slice(&lane[..first]);
                }
                out.push(ModelWindow {
                    start_sample: start,
                    sample_rate_hz: self.spec.target_rate_hz,
                    source_rate_hz: self.source_rate,
                    samples_mv: samples,
                });
                self.next_end += self.hop;
            }
        }
    }
}
