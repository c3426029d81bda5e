//! The MIT-BIH noise stress test as PhysioNet's `nst` runs it: calibrated amounts
//! of a noise record added to a clean record, in digital (ADC) units.
//!
//! - **Signal size** (`sigamp -a atr`): the peak-to-peak amplitude within ±50 ms of
//!   each of the first 300 *normal* beats (WFDB's `map1` class NORMAL: N, L, R, a,
//!   J, A, S, j, /, Q, B, e, n, f), the trimmed mean with the largest and smallest
//!   5 % left out ([`qrs_amplitude`]).
//! - **Noise size** (`sigamp -r`): the RMS (mean removed) of each of the first 300
//!   one-second windows of the noise signal, trimmed mean as above ([`rms_amplitude`]).
//! - **SNR**: `S / N` in dB with `S = A²/8` (the power of a sine of peak-to-peak `A`,
//!   the QRS amplitude) and `N` the noise's mean square, so the noise gain is
//!   `a = 10^(−SNR/20) · √2/4 · A / rms` ([`noise_gain`]).
//! - **Protocol** ([`standard_protocol`]): five noise-free minutes, then two-minute
//!   periods with and without noise in turn up to the end of the record.
//! - **Mixing** ([`mix`]): `out = clean + a · noise − z`, where the offset `z` is
//!   recomputed at every gain change so that the output has no step there; the
//!   output is truncated to integers as `nst` stores it.
//!
//! Each clean signal `i` is paired with noise signal `i mod (noise signals)`.

/// Seconds of the noise-free learning period of the standard protocol.
pub const LEARNING_S: f64 = 300.0;
/// Seconds of each noisy or clean period after it.
pub const PERIOD_S: f64 = 120.0;
/// At most this many measurements enter `sigamp`'s trimmed mean.
const NMAX: usize = 300;

/// True for the annotation codes that WFDB's `map1` maps to NORMAL (the beats whose
/// amplitude `sigamp -a` measures): 1–4, 7–9, 11–13, 25, 34, 35 and 38.
pub fn is_amplitude_beat(code: u8) -> bool {
    matches!(code, 1..=4 | 7..=9 | 11..=13 | 25 | 34 | 35 | 38)
}

fn trimmed_mean(mut v: Vec<f64>) -> Option<f64> {
    let n = v.len();
    let lo = n / 20;
    let hi = n - lo;
    if hi <= lo {
        return None;
    }
    v.sort_unstable_by(f64::total_cmp);
    Some(v[lo..hi].iter().sum::<f64>() / (hi - lo) as f64)
}

/// `sigamp -a`: the trimmed mean (5 % cut at each end) of the peak-to-peak amplitude
/// of `x` within ±50 ms of each of the first 300 `beats` (sample indices of normal
/// beats, [`is_amplitude_beat`]) whose window lies inside the signal.
pub fn qrs_amplitude(x: &[i32], fs: f64, beats: &[u64]) -> Option<f64> {
    let d = (0.05 * fs).round() as usize;
    let amps: Vec<f64> = beats
        .iter()
        .filter_map(|&b| {
            let b = usize::try_from(b).ok()?;
            let w = x.get(b.checked_sub(d)?..=b + d)?;
            let (lo, hi) = w
                .iter()
                .fold((i32::MAX, i32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            Some(f64::from(hi) - f64::from(lo))
        })
        .take(NMAX)
        .collect();
    trimmed_mean(amps)
}

/// `sigamp -r`: the trimmed mean (5 % cut at each end) of the RMS amplitude of each
/// of the first 300 consecutive one-second windows of `x` (each window's mean
/// removed, the difference truncated to an integer as `sigamp` does).
pub fn rms_amplitude(x: &[i32], fs: f64) -> Option<f64> {
    let w = (fs.round() as usize).max(1);
    let amps: Vec<f64> = x
        .chunks_exact(w)
        .take(NMAX)
        .map(|c| {
            let mean = c.iter().map(|&v| f64::from(v)).sum::<f64>() / w as f64;
            let ss: f64 = c
                .iter()
                .map(|&v| {
                    let d = (f64::from(v) - mean).trunc();
                    d * d
                })
                .sum();
            (ss / w as f64).sqrt()
        })
        .collect();
    trimmed_mean(amps)
}

/// Ratio of the noise's RMS to the QRS peak-to-peak amplitude at `snr_db`:
/// `10^(−snr/20) · √2 / 4`.
pub fn noise_to_signal(snr_db: f64) -> f64 {
    10f64.powf(-snr_db / 20.0) * std::f64::consts::SQRT_2 / 4.0
}

/// The gain applied to a noise signal of RMS `noise_rms` for a clean signal of QRS
/// amplitude `qrs_amp` (same units) to obtain `snr_db`.
pub fn noise_gain(snr_db: f64, qrs_amp: f64, noise_rms: f64) -> f64 {
    noise_to_signal(snr_db) * qrs_amp / noise_rms
}

/// The standard protocol for a record of `n` samples at `fs` Hz: the samples at which
/// the noise is switched on (`true`) or off (`false`) — on at 5:00, off at 7:00, on
/// at 9:00, … — ending with an "off" at `n`.
pub fn standard_protocol(n: usize, fs: f64) -> Vec<(usize, bool)> {
    let t0 = (LEARNING_S * fs).round() as usize;
    let dt = ((PERIOD_S * fs).round() as usize).max(1);
    let mut p = Vec::new();
    let mut on = false;
    let mut t = t0;
    while t < n {
        on = !on;
        p.push((t, on));
        t += dt;
    }
    p.push((n, false));
    p
}

/// The noisy spans `[start, end)` of a protocol.
pub fn noisy_spans(protocol: &[(usize, bool)]) -> Vec<(usize, usize)> {
    protocol
        .windows(2)
        .filter(|w| w[0].1)
        .map(|w| (w[0].0, w[1].0))
        .collect()
}

/// `nst`'s mixing of one signal: `clean` plus `gain ·` the noise sample at the same
/// time (`noise(t)`) during the protocol's noisy periods, with the offset
/// recomputed at every switch so the output is continuous; the output has
/// `min(clean.len(), last protocol time)` samples, truncated toward zero like `nst`'s.
pub fn mix(
    clean: &[i32],
    noise: impl Fn(usize) -> i32,
    gain: f64,
    protocol: &[(usize, bool)],
) -> Vec<i32> {
    let mut out = Vec::with_capacity(clean.len());
    let (mut t, mut g, mut z) = (0usize, 0.0f64, 0.0f64);
    let (mut vin, mut vn, mut vout) = (0.0f64, 0.0f64, 0.0f64);
    for &(until, on) in protocol {
        while t < until.min(clean.len()) {
            vin = f64::from(clean[t]);
            vn = f64::from(noise(t));
            vout = (vin + g * vn - z).trunc();
            out.push(vout as i32);
            t += 1;
        }
        g = if on { gain } else { 0.0 };
        z = (vin + g * vn - vout).trunc();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_alternates_after_five_minutes() {
        let p = standard_protocol(650_000, 360.0);
        assert_eq!(p[0], (108_000, true));
        assert_eq!(p[1], (151_200, false));
        assert_eq!(p.last(), Some(&(650_000, false)));
        let spans = noisy_spans(&p);
        assert_eq!(spans.len(), 7);
        assert_eq!(spans[6], (626_400, 650_000));
    }

    #[test]
    fn snr_definition() {
        // 0 dB: noise RMS = A·√2/4, i.e. the power of a sine of peak-to-peak A.
        assert!((noise_to_signal(0.0) - 2f64.sqrt() / 4.0).abs() < 1e-12);
        assert!((noise_to_signal(6.0) / noise_to_signal(12.0) - 10f64.powf(0.3)).abs() < 1e-9);
        // A sine of amplitude 1 (RMS 1/√2) mixed to 0 dB against a QRS of
        // peak-to-peak 2 gets gain 1.
        assert!((noise_gain(0.0, 2.0, 0.5f64.sqrt()) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn mix_is_continuous_and_adds_scaled_noise() {
        let clean: Vec<i32> = (0..1000).map(|i| (i % 50) * 3).collect();
        let noise = |t: usize| if t.is_multiple_of(2) { 40 } else { -40 };
        let p = vec![(300, true), (600, false), (1000, false)];
        let y = mix(&clean, noise, 0.5, &p);
        assert_eq!(y.len(), 1000);
        assert_eq!(&y[..300], &clean[..300]);
        // Inside the noisy period the difference alternates by 2 · 0.5 · 40.
        for t in 301..599 {
            let d = (y[t] - clean[t]) - (y[t - 1] - clean[t - 1]);
            assert_eq!(d.abs(), 40, "{t}");
        }
        // After it, a constant offset: the one the noise had reached (no step).
        let off = y[600] - clean[600];
        assert_eq!(off, y[599] - clean[599]);
        assert!(y[600..]
            .iter()
            .zip(&clean[600..])
            .all(|(a, b)| a - b == off));
        // When it starts, the added part moves only by the noise's own increment.
        assert_eq!((y[300] - clean[300] - (y[299] - clean[299])).abs(), 40);
    }

    #[test]
    fn amplitudes() {
        let fs = 100.0;
        // Square wave of ±10: RMS 10 in every 1 s window.
        let x: Vec<i32> = (0..3000)
            .map(|i| if i % 2 == 0 { 10 } else { -10 })
            .collect();
        assert!((rms_amplitude(&x, fs).expect("windows") - 10.0).abs() < 1e-9);
        // Spikes of 100 on a flat line at the beats.
        let mut y = vec![0i32; 3000];
        let beats: Vec<u64> = (1..29).map(|k| k * 100).collect();
        for &b in &beats {
            y[b as usize] = 100;
        }
        assert_eq!(qrs_amplitude(&y, fs, &beats), Some(100.0));
    }
}
