//! Spectral measures of a lead's last few seconds, for ventricular flutter and
//! fibrillation (after Barro et al. 1989 and the spectral algorithm compared by
//! Amann et al. 2005): flutter and fibrillation put most of the ECG's power in a
//! narrow band around one dominant frequency between about 2.5 and 10 Hz, while a
//! rhythm of QRS complexes spreads it over many harmonics of the heart rate and up to
//! 20 Hz and more.

use std::sync::Arc;

use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};

use super::ring::History;

/// Spectral measures of one lead over one window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct SpectralFeatures {
    /// Frequency of the largest power between 1 and 12 Hz.
    pub(crate) dominant_hz: f32,
    /// Share of the 0.5–25 Hz power within ±35 % of the dominant frequency.
    pub(crate) concentration: f32,
    /// Share of the 0.5–25 Hz power above 12 Hz.
    pub(crate) high_frac: f32,
    /// Root-mean-square amplitude of the window (mV).
    pub(crate) rms_mv: f32,
}

/// A planned FFT and its buffers, shared by every lead of a stream.
pub(crate) struct Spectrum {
    fft: Arc<dyn Fft<f32>>,
    buf: Vec<Complex32>,
    scratch: Vec<Complex32>,
    window: Vec<f32>,
    power: Vec<f32>,
    /// Samples analysed.
    pub(crate) n_win: usize,
    fv: f32,
}

impl std::fmt::Debug for Spectrum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spectrum")
            .field("n_fft", &self.buf.len())
            .field("n_win", &self.n_win)
            .field("fv", &self.fv)
            .finish()
    }
}

impl Spectrum {
    /// For windows of `win_s` seconds of a history at `fv` Hz.
    pub(crate) fn new(fv: f32, win_s: f32) -> Self {
        let n_win = ((win_s * fv).round() as usize).max(8);
        let n_fft = n_win.next_power_of_two();
        let fft = FftPlanner::<f32>::new().plan_fft_forward(n_fft);
        let scratch = vec![Complex32::default(); fft.get_inplace_scratch_len()];
        let window = (0..n_win)
            .map(|i| {
                0.54 - 0.46 * (2.0 * std::f32::consts::PI * i as f32 / (n_win - 1) as f32).cos()
            })
            .collect();
        Self {
            fft,
            buf: vec![Complex32::default(); n_fft],
            scratch,
            window,
            power: vec![0.0; n_fft / 2 + 1],
            n_win,
            fv,
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        (self.buf.capacity() + self.scratch.capacity()) * 8
            + (self.window.capacity() + self.power.capacity()) * 4
    }

    /// Analyses samples `[j0, j0 + n_win)` of `h`.
    pub(crate) fn analyse(&mut self, h: &History, j0: u64) -> SpectralFeatures {
        let n = self.n_win;
        let mut mean = 0.0f32;
        for i in 0..n {
            mean += h.at(j0 + i as u64);
        }
        mean /= n as f32;
        let mut ss = 0.0f32;
        for (i, c) in self.buf.iter_mut().enumerate() {
            *c = if i < n {
                let v = h.at(j0 + i as u64) - mean;
                ss += v * v;
                Complex32::new(v * self.window[i], 0.0)
            } else {
                Complex32::default()
            };
        }
        self.fft
            .process_with_scratch(&mut self.buf, &mut self.scratch);
        let n_fft = self.buf.len();
        let df = self.fv / n_fft as f32;
        for (p, c) in self.power.iter_mut().zip(&self.buf) {
            *p = c.norm_sqr();
        }
        let bin = |f: f32| ((f / df).round() as usize).min(self.power.len() - 1);
        let band = |p: &[f32], a: f32, b: f32| -> f32 {
            let (i0, i1) = (bin(a), bin(b));
            if i1 < i0 {
                0.0
            } else {
                p[i0..=i1].iter().sum()
            }
        };
        let top = 25.0f32.min(0.5 * self.fv);
        let total = band(&self.power, 0.5, top).max(1e-12);
        let (mut best, mut kbest) = (0.0f32, bin(1.0));
        for k in bin(1.0)..=bin(12.0) {
            if self.power[k] > best {
                best = self.power[k];
                kbest = k;
            }
        }
        let dom = kbest as f32 * df;
        SpectralFeatures {
            dominant_hz: dom,
            concentration: band(&self.power, 0.65 * dom, 1.35 * dom) / total,
            high_frac: band(&self.power, 12.0, top) / total,
            rms_mv: (ss / n as f32).sqrt(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history_of(f: impl Fn(f32) -> f32, fv: f32, secs: f32) -> History {
        let n = (fv * secs) as usize;
        let mut h = History::new(n);
        for i in 0..n {
            h.push(f(i as f32 / fv));
        }
        h
    }

    #[test]
    fn a_sinusoid_is_concentrated() {
        let fv = 62.5;
        let h = history_of(|t| (2.0 * std::f32::consts::PI * 5.0 * t).sin(), fv, 4.0);
        let mut s = Spectrum::new(fv, 4.0);
        let f = s.analyse(&h, 0);
        assert!((f.dominant_hz - 5.0).abs() < 0.3, "{f:?}");
        assert!(f.concentration > 0.9, "{f:?}");
        assert!(f.high_frac < 0.01, "{f:?}");
        assert!(
            (f.rms_mv - std::f32::consts::FRAC_1_SQRT_2).abs() < 0.05,
            "{f:?}"
        );
    }

    #[test]
    fn a_spike_train_is_spread() {
        // Narrow 1 mV spikes at 75 per minute: power over many harmonics.
        let fv = 62.5;
        let h = history_of(
            |t| {
                let ph = (t * 1.25).fract();
                if ph < 0.03 {
                    1.0
                } else {
                    0.0
                }
            },
            fv,
            4.0,
        );
        let mut s = Spectrum::new(fv, 4.0);
        let f = s.analyse(&h, 0);
        assert!(f.concentration < 0.3, "{f:?}");
        assert!(f.high_frac > 0.2, "{f:?}");
    }
}
