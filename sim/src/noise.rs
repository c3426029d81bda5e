//! Per-channel additive noise, generated sample by sample from per-source RNG streams.

use std::f64::consts::{PI, TAU};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::NoiseConfig;

/// First ChaCha stream id used for noise; each channel has four (one per source).
const STREAM_NOISE_BASE: u64 = 16;

fn stream(seed: u64, channel: usize, kind: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(STREAM_NOISE_BASE + channel as u64 * 4 + kind);
    rng
}

fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// Exponentially distributed gap of mean `mean` samples, at least one sample.
fn exp_gap(rng: &mut ChaCha8Rng, mean: f64) -> u64 {
    let u: f64 = rng.random();
    ((-(1.0 - u).ln() * mean).round() as u64).max(1)
}

/// A second-order section (RBJ cookbook), transposed direct form II.
#[derive(Debug, Clone, Copy)]
struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
    z: [f64; 2],
}

impl Biquad {
    fn design(fs: f64, f0: f64, highpass: bool) -> Self {
        let w0 = TAU * f0 / fs;
        let (sn, cs) = w0.sin_cos();
        let alpha = sn / (2.0 * std::f64::consts::FRAC_1_SQRT_2);
        let a0 = 1.0 + alpha;
        let b = if highpass {
            [(1.0 + cs) / 2.0, -(1.0 + cs), (1.0 + cs) / 2.0]
        } else {
            [(1.0 - cs) / 2.0, 1.0 - cs, (1.0 - cs) / 2.0]
        };
        Self {
            b: b.map(|x| x / a0),
            a: [-2.0 * cs / a0, (1.0 - alpha) / a0],
            z: [0.0; 2],
        }
    }

    #[inline]
    fn step(&mut self, x: f64) -> f64 {
        let y = self.b[0] * x + self.z[0];
        self.z[0] = self.b[1] * x - self.a[0] * y + self.z[1];
        self.z[1] = self.b[2] * x - self.a[1] * y;
        y
    }
}

/// The EMG band-pass (20 Hz high-pass, 100 Hz or 0.42 fs low-pass) and the gain that
/// makes unit-variance white noise come out at unit variance.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MuscleFilter {
    hp: Biquad,
    lp: Biquad,
    norm: f64,
}

impl MuscleFilter {
    pub(crate) fn new(sample_rate: u32) -> Self {
        let fs = f64::from(sample_rate);
        let hp = Biquad::design(fs, 20.0, true);
        let lp = Biquad::design(fs, 100.0_f64.min(0.42 * fs), false);
        // Noise power gain = energy of the impulse response (it has decayed after 1 s).
        let (mut h, mut l) = (hp, lp);
        let mut energy = 0.0;
        for i in 0..sample_rate {
            let y = l.step(h.step(if i == 0 { 1.0 } else { 0.0 }));
            energy += y * y;
        }
        Self {
            hp,
            lp,
            norm: 1.0 / energy.max(1e-12).sqrt(),
        }
    }
}

#[derive(Debug, Clone)]
struct Wander {
    amp: f64,
    gain: f64,
    phase: f64,
    w: f64,
    alpha: f64,
    norm: f64,
    y: f64,
    rng: ChaCha8Rng,
}

impl Wander {
    fn sample(&mut self, n: u64) -> f64 {
        let x: f64 = self.rng.sample(StandardNormal);
        self.y += self.alpha * (x * self.norm - self.y);
        self.amp * (self.gain * (self.w * n as f64 + self.phase).sin() + 0.5 * self.y)
    }
}

#[derive(Debug, Clone)]
struct Bursts {
    start: u64,
    end: u64,
    ramp: f64,
    fs: f64,
}

impl Bursts {
    /// Envelope in 0.2..=1.
    fn level(&mut self, n: u64, rng: &mut ChaCha8Rng) -> f64 {
        while n >= self.end {
            self.start = self.end + exp_gap(rng, 3.0 * self.fs);
            self.end = self.start + (uniform(rng, 0.4, 1.5) * self.fs) as u64;
        }
        if n < self.start {
            return 0.2;
        }
        let into = (n - self.start) as f64;
        let left = (self.end - n) as f64;
        let w = (into.min(left) / self.ramp).min(1.0);
        0.2 + 0.8 * (0.5 - 0.5 * (PI * w).cos())
    }
}

#[derive(Debug, Clone)]
struct Muscle {
    amp: f64,
    filter: MuscleFilter,
    bursts: Option<Bursts>,
    rng: ChaCha8Rng,
}

impl Muscle {
    fn sample(&mut self, n: u64) -> f64 {
        let x: f64 = self.rng.sample(StandardNormal);
        let y = self.filter.lp.step(self.filter.hp.step(x)) * self.filter.norm;
        let env = match &mut self.bursts {
            Some(b) => b.level(n, &mut self.rng),
            None => 1.0,
        };
        self.amp * env * y
    }
}

#[derive(Debug, Clone)]
struct Mains {
    amp: f64,
    f: u64,
    fs: u64,
    phase: f64,
    third: bool,
}

impl Mains {
    fn sample(&self, n: u64) -> f64 {
        // Exact phase from integers, so long streams do not lose precision.
        let k = ((n % self.fs) * self.f) % self.fs;
        let th = TAU * k as f64 / self.fs as f64 + self.phase;
        let mut v = th.sin();
        if self.third {
            v += 0.1 * (3.0 * th).sin();
        }
        self.amp * v
    }
}

#[derive(Debug, Clone)]
struct Motion {
    amp: f64,
    mean_gap: f64,
    next: u64,
    rise: f64,
    decay: f64,
    events: Vec<(u64, f64)>,
    rng: ChaCha8Rng,
}

impl Motion {
    fn sample(&mut self, n: u64) -> f64 {
        while n >= self.next {
            let sign = if self.rng.random::<bool>() { 1.0 } else { -1.0 };
            let a = sign * self.amp * uniform(&mut self.rng, 0.5, 1.5);
            self.events.push((self.next, a));
            self.next += exp_gap(&mut self.rng, self.mean_gap);
        }
        let horizon = 10.0 * self.decay;
        self.events.retain(|&(s, _)| ((n - s) as f64) < horizon);
        self.events
            .iter()
            .map(|&(s, a)| {
                let dt = (n - s) as f64;
                a * (1.0 - (-dt / self.rise).exp()) * (-dt / self.decay).exp()
            })
            .sum()
    }
}

/// All noise of one measured channel.
#[derive(Debug, Clone)]
pub(crate) struct ChannelNoise {
    wander: Option<Wander>,
    muscle: Option<Muscle>,
    mains: Option<Mains>,
    motion: Option<Motion>,
}

impl ChannelNoise {
    pub(crate) fn new(
        cfg: &NoiseConfig,
        seed: u64,
        channel: usize,
        sample_rate: u32,
        resp_hz: f64,
        filter: MuscleFilter,
    ) -> Self {
        let fs = f64::from(sample_rate);
        let wander = (cfg.baseline_wander_mv > 0.0).then(|| {
            let mut rng = stream(seed, channel, 0);
            let alpha = 1.0 - (-TAU * 0.05 / fs).exp();
            Wander {
                amp: cfg.baseline_wander_mv,
                gain: uniform(&mut rng, 0.7, 1.0),
                phase: uniform(&mut rng, -0.4, 0.4),
                w: TAU * resp_hz / fs,
                alpha,
                norm: ((2.0 - alpha) / alpha).sqrt(),
                y: rng.sample(StandardNormal),
                rng,
            }
        });
        let muscle = (cfg.muscle_mv > 0.0).then(|| {
            let mut rng = stream(seed, channel, 1);
            let bursts = cfg.muscle_bursts.then(|| {
                let start = exp_gap(&mut rng, 2.0 * fs);
                Bursts {
                    start,
                    end: start + (uniform(&mut rng, 0.4, 1.5) * fs) as u64,
                    ramp: 0.05 * fs,
                    fs,
                }
            });
            Muscle {
                amp: cfg.muscle_mv,
                filter,
                bursts,
                rng,
            }
        });
        let mains = (cfg.mains_mv > 0.0).then(|| {
            let mut rng = stream(seed, channel, 2);
            let f = cfg.mains_hz.hz();
            Mains {
                amp: cfg.mains_mv * uniform(&mut rng, 0.6, 1.0),
                f: u64::from(f),
                fs: u64::from(sample_rate),
                phase: uniform(&mut rng, 0.0, 0.5),
                third: 6 * f < sample_rate,
            }
        });
        let motion =
            (cfg.electrode_motion_mv > 0.0 && cfg.electrode_motion_per_min > 0.0).then(|| {
                let mut rng = stream(seed, channel, 3);
                let mean_gap = 60.0 * fs / cfg.electrode_motion_per_min;
                Motion {
                    amp: cfg.electrode_motion_mv,
                    mean_gap,
                    next: exp_gap(&mut rng, mean_gap),
                    rise: 0.04 * fs,
                    decay: 1.0 * fs,
                    events: Vec::new(),
                    rng,
                }
            });
        Self {
            wander,
            muscle,
            mains,
            motion,
        }
    }

    /// Noise at sample `n` (called once per sample, in order).
    pub(crate) fn sample(&mut self, n: u64) -> f64 {
        let mut v = 0.0;
        if let Some(w) = &mut self.wander {
            v += w.sample(n);
        }
        if let Some(m) = &mut self.muscle {
            v += m.sample(n);
        }
        if let Some(m) = &self.mains {
            v += m.sample(n);
        }
        if let Some(m) = &mut self.motion {
            v += m.sample(n);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn muscle_filter_has_unit_noise_gain() {
        for fs in [125, 250, 500, 1000] {
            let mut f = MuscleFilter::new(fs);
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let n = 20_000;
            let mut e = 0.0;
            for _ in 0..n {
                let x: f64 = rng.sample(StandardNormal);
                let y = f.lp.step(f.hp.step(x)) * f.norm;
                e += y * y;
            }
            let rms = (e / f64::from(n)).sqrt();
            assert!((rms - 1.0).abs() < 0.05, "{fs} Hz: rms {rms}");
        }
    }
}
