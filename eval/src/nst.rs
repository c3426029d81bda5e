//! Noise-stress versions of WFDB records for the eval commands, made as PhysioNet's
//! `nst` makes them ([`ecg_dsp::noise_stress`]; the same recipe as the QRS tests'
//! `dsp/tests/common/nst.rs`):
//!
//! - `bw` (baseline wander) and `ma` (muscle artifact): the MIT-BIH Noise Stress Test
//!   Database records, both signals, calibrated by their own RMS (`sigamp -r`);
//! - `em` (electrode motion): nstdb's `em` record where the folder has it, as `bw` and
//!   `ma`; else (the shared copy lacks it) recovered as `118e00 − 118` (nstdb's 118e00
//!   is record 118 with `em` added at 0 dB by the standard protocol), whose RMS is by
//!   construction `noise_to_signal(0)` × the QRS amplitude of 118; it exists only in
//!   the standard protocol's noisy periods, which are the periods it is added in.
//!
//! Noise is added to every signal of the record (signal `i` gets noise signal `i mod`
//! the noise's signals), at the SNR given against the record's own QRS amplitude
//! (`sigamp -a` over its normal beats), with the standard protocol: clean until 5:00,
//! then two minutes with noise and two without, in turn. The noise sample added at
//! time `t` is the one the noise record holds at `t` (wrapping around its end).
//!
//! Two cases `nst` does not meet, so that any AF database can be stressed (the MIT-BIH
//! AF Database at 250 Hz, whose `.atr` holds rhythm annotations only; the Long-Term
//! AF Database at 128 Hz):
//! - a record at another sampling frequency than the noise (360 Hz) gets the noise
//!   resampled to its own (the DSP stage's polyphase resampler), at the level the
//!   noise's own RMS sets: what a recorder at that rate would see of the same noise;
//! - a record whose annotations hold no normal beat has its QRS amplitude measured at
//!   the beats the streaming detector finds in that signal.

use std::borrow::Cow;
use std::path::Path;

use anyhow::{bail, Context as _};
use ecg_dsp::noise_stress::{
    is_amplitude_beat, mix, noise_to_signal, qrs_amplitude, rms_amplitude, standard_protocol,
    LEARNING_S, PERIOD_S,
};
use ecg_ingest::wfdb::{self, Annotation, Record};

/// Noise types of the MIT-BIH Noise Stress Test Database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NoiseKind {
    /// Baseline wander.
    Bw,
    /// Muscle artifact.
    Ma,
    /// Electrode motion (nstdb's `em`, or recovered as 118e00 − 118).
    Em,
}

impl NoiseKind {
    /// The nstdb name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bw => "bw",
            Self::Ma => "ma",
            Self::Em => "em",
        }
    }
}

/// A noise record: digital samples per signal and their RMS amplitude (adu).
#[derive(Debug, Clone)]
pub struct Noise {
    /// Sampling frequency (Hz).
    pub fs: f64,
    /// Samples per signal (adu, ADC zero removed).
    pub signals: Vec<Vec<i32>>,
    /// RMS amplitude per signal (adu).
    pub rms: Vec<f64>,
    /// The noise exists only in the standard protocol's noisy periods (`em` recovered
    /// from 118e00): a record longer than it wraps around inside whole noisy/clean
    /// cycles after the learning period, so that noisy periods still get noise.
    pub noisy_periods_only: bool,
}

impl Noise {
    /// Whether this noise is at `fs` Hz already.
    pub fn is_at(&self, fs: f64) -> bool {
        (self.fs - fs).abs() <= 1e-6
    }

    /// This noise at `fs` Hz: itself at its own rate, else resampled (the DSP stage's
    /// polyphase resampler) at the level its own RMS sets. A run over records at one
    /// rate resamples it once and passes that on.
    ///
    /// # Errors
    /// When either rate is not a whole number of hertz where they differ.
    pub fn at_rate(&self, fs: f64) -> anyhow::Result<Cow<'_, Noise>> {
        if self.is_at(fs) {
            return Ok(Cow::Borrowed(self));
        }
        let hz = |fs: f64| {
            (fs > 0.0 && (fs - fs.round()).abs() < 1e-6 && fs <= f64::from(u32::MAX))
                .then(|| fs.round() as u32)
        };
        let (Some(from), Some(to)) = (hz(self.fs), hz(fs)) else {
            bail!(
                "{} Hz, the noise {} Hz: resampling needs whole hertz",
                fs,
                self.fs
            );
        };
        let signals = self
            .signals
            .iter()
            .map(|s| {
                let x: Vec<f32> = s.iter().map(|&v| v as f32).collect();
                ecg_dsp::resample::resample_offline(from, to, &x)
                    .into_iter()
                    .map(|v| v.round() as i32)
                    .collect()
            })
            .collect();
        Ok(Cow::Owned(Noise {
            fs,
            signals,
            rms: self.rms.clone(),
            noisy_periods_only: self.noisy_periods_only,
        }))
    }
}

fn amplitude_beats(ann: &[Annotation]) -> Vec<u64> {
    ann.iter()
        .filter(|a| is_amplitude_beat(a.code))
        .map(|a| a.sample)
        .collect()
}

/// Loads `bw`, `ma` or `em` from `nstdb`; without an `em` record there, recovers `em`
/// from `nstdb`'s 118e00 and MIT-BIH record 118 (with its `.atr`), from `mitdb` or,
/// when it is not there (a folder of other records), from `mitdb` beside `nstdb`.
///
/// # Errors
/// When a record is missing or unreadable.
pub fn load_noise(nstdb: &Path, mitdb: &Path, kind: NoiseKind) -> anyhow::Result<Noise> {
    let read = |p: &Path| wfdb::read_record(p).with_context(|| format!("reading {}", p.display()));
    if kind == NoiseKind::Em && !nstdb.join("em.hea").exists() {
        let e00 = read(&nstdb.join("118e00"))?;
        // MIT-BIH 118 is the record 118e00 was made from: same rate, same length. A
        // record 118 of another database (the Long-Term AF Database has one) is not.
        let mut found = None;
        for dir in [mitdb.to_path_buf(), nstdb.join("..").join("mitdb")] {
            if !dir.join("118.hea").exists() {
                continue;
            }
            let r = read(&dir.join("118"))?;
            if (r.fs - e00.fs).abs() < 1e-6 && r.n_samples == e00.n_samples {
                found = Some((dir, r));
                break;
            }
        }
        let (mitdb, clean) = found.context(
            "em: nstdb holds no `em` record, and recovering it as 118e00 − 118 needs \
             MIT-BIH record 118 (the 360 Hz record 118e00 was made from) in --db or in \
             mitdb beside nstdb",
        )?;
        let atr = mitdb.join("118.atr");
        let ann =
            wfdb::read_annotations(&atr).with_context(|| format!("reading {}", atr.display()))?;
        let normal = amplitude_beats(&ann);
        let mut signals = Vec::new();
        let mut rms = Vec::new();
        for (i, (a, b)) in e00.samples.iter().zip(&clean.samples).enumerate() {
            let (za, zb) = (e00.signals[i].adc_zero, clean.signals[i].adc_zero);
            let b0: Vec<i32> = b.iter().map(|&v| v - zb).collect();
            signals.push(a.iter().zip(&b0).map(|(&a, &b)| a - za - b).collect());
            let amp = qrs_amplitude(&b0, clean.fs, &normal).context("118: no normal beats")?;
            rms.push(noise_to_signal(0.0) * amp);
        }
        return Ok(Noise {
            fs: e00.fs,
            signals,
            rms,
            noisy_periods_only: true,
        });
    }
    let rec = read(&nstdb.join(kind.name()))?;
    let mut signals = Vec::new();
    let mut rms = Vec::new();
    for (s, info) in rec.samples.iter().zip(&rec.signals) {
        let d: Vec<i32> = s.iter().map(|&v| v - info.adc_zero).collect();
        rms.push(rms_amplitude(&d, rec.fs).with_context(|| format!("{}: too short", kind.name()))?);
        signals.push(d);
    }
    Ok(Noise {
        fs: rec.fs,
        signals,
        rms,
        noisy_periods_only: false,
    })
}

/// `rec` with `noise` added to every signal at `snr_db` by the standard protocol;
/// `ann` are the record's reference annotations (the normal beats set the signal
/// amplitude, as `sigamp -a` does).
///
/// A record at another sampling frequency gets the noise resampled to its own, and a
/// record whose annotations hold no normal beat has its QRS amplitude measured at the
/// beats the streaming detector finds (module documentation).
///
/// # Errors
/// When no beat can be found to measure the record's amplitude on, the noise has no
/// signal, or either sampling frequency is not a whole number of hertz where they
/// differ.
pub fn noisy_record(
    rec: &Record,
    ann: &[Annotation],
    noise: &Noise,
    snr_db: f64,
) -> anyhow::Result<Record> {
    noisy_record_at(rec, ann, noise, snr_db, 0)
}

/// [`noisy_record`] with other noise on the same record: the noise sample added at
/// time `t` is the one the noise record holds `offset_cycles` whole noisy/clean cycles
/// (4 min each) later, so that noise that exists only in the noisy periods (recovered
/// `em`) still lines up with them.
///
/// # Errors
/// As [`noisy_record`].
pub fn noisy_record_at(
    rec: &Record,
    ann: &[Annotation],
    noise: &Noise,
    snr_db: f64,
    offset_cycles: u32,
) -> anyhow::Result<Record> {
    if noise.signals.is_empty() {
        bail!("the noise record has no signal");
    }
    let noise = noise
        .at_rate(rec.fs)
        .with_context(|| format!("{}: the noise at {} Hz", rec.name, rec.fs))?;
    let noise_signals = &noise.signals;
    let mut beats = amplitude_beats(ann);
    if beats.is_empty() {
        // No normal beat annotated (the AF Database's `.atr` is rhythm only): the beats
        // the streaming detector finds in the first signal that has any, in the first
        // 20 minutes (the amplitude is measured on the first 300).
        let head = rec.n_samples.min((1200.0 * rec.fs) as usize);
        beats = (0..rec.signals.len())
            .map(|sig| {
                let mut mv = rec.physical(sig);
                mv.truncate(head);
                super::stream_beats(&mv, rec.fs.round() as u32, &Default::default())
            })
            .find(|b| !b.is_empty())
            .unwrap_or_default();
    }
    let protocol = standard_protocol(rec.n_samples, rec.fs);
    // Where a noise that exists only in the noisy periods wraps around: after the
    // learning period, by six whole noisy/clean cycles (24 min), as the protocol counts
    // them in samples.
    let learning = (LEARNING_S * rec.fs).round() as usize;
    let cycles = 12 * (PERIOD_S * rec.fs).round() as usize;
    let offset = 2 * offset_cycles as usize * (PERIOD_S * rec.fs).round() as usize;
    let mut out = rec.clone();
    for (sig, samples) in out.samples.iter_mut().enumerate() {
        let zero = rec.signals[sig].adc_zero;
        let clean: Vec<i32> = samples.iter().map(|&v| v - zero).collect();
        let amp = qrs_amplitude(&clean, rec.fs, &beats)
            .with_context(|| format!("{}: no beats to measure its QRS amplitude", rec.name))?;
        let k = sig % noise_signals.len();
        let ns = &noise_signals[k];
        if ns.is_empty() || noise.rms[k] <= 0.0 {
            bail!("noise signal {k} is empty or flat");
        }
        let n = ns.len();
        let in_cycles = noise.noisy_periods_only && cycles > 0 && learning + cycles <= n;
        let at = |t: usize| match t + offset {
            t if t < n => t,
            t if in_cycles => learning + (t - learning) % cycles,
            t => t % n,
        };
        let gain = noise_to_signal(snr_db) * amp / noise.rms[k];
        let mixed = mix(&clean, |t| ns[at(t)], gain, &protocol);
        *samples = mixed.into_iter().map(|v| v + zero).collect();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecg_dsp::noise_stress::noisy_spans;
    use ecg_ingest::wfdb::SignalInfo;
    use std::path::PathBuf;

    /// A one-signal record at `fs` Hz (ADC zero 1024) and its `N` beat annotations.
    fn record(fs: f64, clean: Vec<i32>, beats: &[u64]) -> (Record, Vec<Annotation>) {
        let info = SignalInfo {
            file_name: "x.dat".into(),
            format: 212,
            samples_per_frame: 1,
            skew: 0,
            byte_offset: 0,
            gain: 200.0,
            baseline: 1024,
            units: "mV".into(),
            adc_res: 11,
            adc_zero: 1024,
            init_value: 1024,
            checksum: None,
            block_size: 0,
            description: "MLII".into(),
        };
        let rec = Record {
            name: "t".into(),
            fs,
            n_samples: clean.len(),
            signals: vec![info],
            samples: vec![clean],
            comments: Vec::new(),
        };
        let ann = beats
            .iter()
            .map(|&sample| Annotation {
                sample,
                code: 1,
                symbol: 'N',
                subtype: 0,
                chan: 0,
                num: 0,
                aux: None,
            })
            .collect();
        (rec, ann)
    }

    /// A spike of `amp` adu every second, on ADC zero 1024, for `n` samples.
    fn spikes(fs: f64, n: usize, amp: i32) -> (Vec<i32>, Vec<u64>) {
        let every = fs as usize;
        let clean = (0..n)
            .map(|i| 1024 + if i % every == every / 2 { amp } else { 0 })
            .collect();
        let beats = (0..n / every)
            .map(|k| (k * every + every / 2) as u64)
            .collect();
        (clean, beats)
    }

    #[test]
    fn noise_is_added_only_after_the_learning_period() {
        let fs = 10.0;
        let n = 6000; // 10 min at 10 Hz
        let (clean, beats) = spikes(fs, n, 100);
        let (rec, ann) = record(fs, clean.clone(), &beats[..beats.len() - 1]);
        let noise = Noise {
            fs,
            signals: vec![(0..n).map(|i| if i % 2 == 0 { 10 } else { -10 }).collect()],
            rms: vec![10.0],
            noisy_periods_only: false,
        };
        let out = noisy_record(&rec, &ann, &noise, 0.0).expect("mixed");
        let s = &out.samples[0];
        assert_eq!(&s[..3000], &clean[..3000], "clean for the first 5 minutes");
        // 0 dB against a QRS of 100 adu: noise RMS 100·√2/4 ≈ 35.4 → ±35 steps.
        let d: Vec<i32> = (3001..4200)
            .map(|t| (s[t] - clean[t]) - (s[t - 1] - clean[t - 1]))
            .collect();
        assert!(d.iter().all(|v| (v.abs() - 70).abs() <= 1), "{:?}", &d[..4]);
        // 7:00–9:00: no noise, only the constant offset nst leaves (no step).
        let off = s[4200] - clean[4200];
        assert!((4200..5400).all(|t| s[t] - clean[t] == off));
    }

    /// Deterministic broadband noise (xorshift, uniform in ±1000 adu).
    fn broadband(n: usize) -> Vec<i32> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 2001) as i32 - 1000
            })
            .collect()
    }

    #[test]
    fn the_mix_reaches_the_requested_snr_in_the_noisy_periods_only() {
        let fs = 360.0;
        let n = (fs as usize) * 60 * 15; // 15 min: 3 noisy periods
        let amp = 1000;
        let (clean, beats) = spikes(fs, n, amp);
        let (rec, ann) = record(fs, clean.clone(), &beats[..beats.len() - 1]);
        let ns = broadband(n);
        let rms = rms_amplitude(&ns, fs).expect("rms");
        let noise = Noise {
            fs,
            signals: vec![ns],
            rms: vec![rms],
            noisy_periods_only: false,
        };
        let protocol = standard_protocol(n, fs);
        let noisy = noisy_spans(&protocol);
        assert_eq!(noisy.len(), 3);
        for snr in [12.0, 6.0, 0.0] {
            let out = noisy_record(&rec, &ann, &noise, snr).expect("mixed");
            assert_eq!(out.n_samples, n);
            let added: Vec<f64> = out.samples[0]
                .iter()
                .zip(&clean)
                .map(|(&a, &b)| f64::from(a - b))
                .collect();
            let mut quiet_from = 0;
            for &(a, b) in &noisy {
                // Before the period: a constant (the offset nst leaves), no noise.
                let q = &added[quiet_from..a];
                assert!(q.iter().all(|&v| v == q[0]), "{snr} dB: noise before {a}");
                // In it: S/N = (A²/8) / mean square of the added noise.
                let w = &added[a..b];
                let mean = w.iter().sum::<f64>() / w.len() as f64;
                let ms = w.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / w.len() as f64;
                let got = 10.0 * (f64::from(amp).powi(2) / 8.0 / ms).log10();
                assert!((got - snr).abs() < 0.1, "{snr} dB requested, {got:.3} dB");
                quiet_from = b;
            }
        }
    }

    #[test]
    fn noise_at_another_rate_is_resampled_to_the_records() {
        // A 250 Hz record, noise recorded at 360 Hz: a 5 Hz sine of 1000 adu plus a
        // 150 Hz one of 1000 adu, above the record's Nyquist frequency (125 Hz).
        let (clean, beats) = spikes(250.0, 250 * 60 * 8, 1000);
        let (rec, ann) = record(250.0, clean.clone(), &beats);
        let tone = |hz: f64, fs: f64, i: usize| {
            1000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / fs).sin()
        };
        let sine = |fs: f64, i: usize| tone(5.0, fs, i);
        let noise = Noise {
            fs: 360.0,
            signals: vec![(0..360 * 60 * 8)
                .map(|i| (tone(5.0, 360.0, i) + tone(150.0, 360.0, i)).round() as i32)
                .collect()],
            // Both tones: the level is set by the noise as recorded.
            rms: vec![1000.0],
            noisy_periods_only: false,
        };
        let out = noisy_record(&rec, &ann, &noise, 0.0).expect("mixed");
        // In the first noisy period (5:00-7:00) the added noise is the 5 Hz sine at
        // 250 Hz (the 150 Hz tone cannot pass), at the gain that brings the recorded
        // noise to 0 dB against the QRS amplitude (1000 adu): RMS 1000·√2/4 for all of
        // it, √½ of that for the half of its power that passes.
        let (a, b) = (250 * 310, 250 * 410);
        let added: Vec<f64> = (a..b)
            .map(|t| f64::from(out.samples[0][t] - clean[t]))
            .collect();
        let mean = added.iter().sum::<f64>() / added.len() as f64;
        let rms =
            (added.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / added.len() as f64).sqrt();
        assert!(
            (rms - 1000.0 * 2f64.sqrt() / 4.0 / 2f64.sqrt()).abs() < 5.0,
            "RMS {rms}"
        );
        // Its phase: correlation with the 5 Hz sine sampled at 250 Hz.
        let (mut xy, mut yy) = (0.0, 0.0);
        for (j, v) in added.iter().enumerate() {
            let y = sine(250.0, a + j);
            xy += (v - mean) * y;
            yy += y * y;
        }
        let r = xy / (yy.sqrt() * rms * (added.len() as f64).sqrt());
        assert!(r > 0.999, "correlation {r}");
    }

    #[test]
    fn noise_of_the_noisy_periods_only_wraps_in_whole_cycles() {
        // Recovered em: noise (±10 adu) only in its own noisy periods, 1,805.6 s long
        // at 10 Hz, as 118e00 − 118 is; a 3 h record at 10 Hz.
        let fs = 10.0;
        let n_noise = 18_056;
        let noisy_at = |t: usize| t >= 3000 && ((t - 3000) / 1200).is_multiple_of(2);
        let em: Vec<i32> = (0..n_noise)
            .map(|t| match (noisy_at(t), t % 2) {
                (false, _) => 0,
                (true, 0) => 10,
                (true, _) => -10,
            })
            .collect();
        let n = 108_000;
        let (clean, beats) = spikes(fs, n, 100);
        let (rec, ann) = record(fs, clean.clone(), &beats);
        let noise = Noise {
            fs,
            signals: vec![em],
            rms: vec![10.0],
            noisy_periods_only: true,
        };
        let out = noisy_record(&rec, &ann, &noise, 0.0).expect("mixed");
        // Every noisy period of the record, after the noise record's end too, has noise
        // from start to end (sample-to-sample steps), every quiet one none.
        for (a, b) in noisy_spans(&standard_protocol(n, fs)) {
            let steps = (a + 1..b)
                .filter(|&t| {
                    (out.samples[0][t] - clean[t]) != (out.samples[0][t - 1] - clean[t - 1])
                })
                .count();
            assert!(
                steps >= b - a - 2,
                "{a}..{b}: noise in {steps} of {} samples",
                b - a
            );
        }
    }

    #[test]
    fn an_offset_takes_the_noise_whole_cycles_later() {
        // Noise that counts its samples, at 10 Hz: the sample added at t is the noise's
        // sample at t + k·2,400 (k cycles of 4 min), wrapping as without an offset.
        let fs = 10.0;
        let n = 10_800;
        let (clean, beats) = spikes(fs, n, 100);
        let (rec, ann) = record(fs, clean.clone(), &beats);
        let noise = Noise {
            fs,
            signals: vec![(0..n as i32).collect()],
            rms: vec![1.0],
            noisy_periods_only: false,
        };
        // 0 dB against 100 adu: gain 100·√2/4 / 1 per noise step.
        let step = |out: &Record, t: usize| {
            f64::from((out.samples[0][t] - clean[t]) - (out.samples[0][t - 1] - clean[t - 1]))
        };
        let plain = noisy_record(&rec, &ann, &noise, 0.0).expect("mixed");
        let later = noisy_record_at(&rec, &ann, &noise, 0.0, 1).expect("mixed");
        let gain = 100.0 * 2f64.sqrt() / 4.0;
        // Inside a noisy period both add a ramp; where the offset one reaches the noise
        // record's end (10,800 − 2,400 = 8,400, inside the noisy 7,800–9,000) its ramp
        // falls back by 10,799 steps.
        assert!((step(&plain, 3500) - gain).abs() < 1.0);
        assert!((step(&later, 3500) - gain).abs() < 1.0);
        let wrap = step(&later, 8400);
        assert!((wrap + gain * 10_799.0).abs() < 2.0, "{wrap}");
        assert!((step(&plain, 8400) - gain).abs() < 1.0);
    }

    #[test]
    fn a_record_without_beat_annotations_is_measured_at_the_beats_found() {
        // Eight minutes of simulated sinus rhythm at 250 Hz, 200 adu/mV.
        let fs = 250u32;
        let cfg = ecg_sim::Preset::NormalSinus.config(3, fs, vec![ecg_types::Lead::II]);
        let mut dev = ecg_sim::Device::new(cfg).expect("device");
        let mut mv = Vec::new();
        dev.generate(fs as usize * 480, &mut mv);
        let clean: Vec<i32> = mv
            .iter()
            .map(|v| 1024 + (v * 200.0).round() as i32)
            .collect();
        let beats: Vec<u64> = dev.truth().beats.iter().map(|b| b.sample).collect();
        let (rec, ann) = record(f64::from(fs), clean.clone(), &beats);
        let noise = Noise {
            fs: f64::from(fs),
            signals: vec![broadband(fs as usize * 480)],
            rms: vec![577.0],
            noisy_periods_only: false,
        };
        let added_rms = |out: &Record| {
            let w: Vec<f64> = (fs as usize * 310..fs as usize * 410)
                .map(|t| f64::from(out.samples[0][t] - clean[t]))
                .collect();
            let m = w.iter().sum::<f64>() / w.len() as f64;
            (w.iter().map(|v| (v - m).powi(2)).sum::<f64>() / w.len() as f64).sqrt()
        };
        let annotated = added_rms(&noisy_record(&rec, &ann, &noise, 6.0).expect("annotated"));
        // Rhythm annotations only, as in the MIT-BIH AF Database.
        let rhythm = vec![Annotation {
            sample: 0,
            code: 28,
            symbol: '+',
            subtype: 0,
            chan: 0,
            num: 0,
            aux: Some("(N".into()),
        }];
        let found = added_rms(&noisy_record(&rec, &rhythm, &noise, 6.0).expect("detected"));
        assert!(
            (found / annotated - 1.0).abs() < 0.05,
            "noise RMS {found:.1} at detected beats, {annotated:.1} at annotated ones"
        );
        // A second, flat signal (a lead off) has no beats of its own: the first
        // signal's beats measure it, and the record is still mixed.
        let mut two = rec.clone();
        two.signals.push(two.signals[0].clone());
        two.samples.push(vec![1024; two.n_samples]);
        let mixed = noisy_record(&two, &rhythm, &noise, 6.0).expect("a flat second signal");
        assert_eq!(added_rms(&mixed), found);
    }

    fn data_dir() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("CARDIOSTREAM_DATA") {
            return Some(PathBuf::from(d));
        }
        let unpack = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/unpack");
        let out = std::process::Command::new(unpack).output().ok()?;
        let s = String::from_utf8_lossy(&out.stdout);
        let p = PathBuf::from(s.lines().last()?.trim());
        (out.status.success() && p.is_dir()).then_some(p)
    }

    /// `em` recovered from 118e00 and mixed into 118 at 12 dB reproduces nstdb's
    /// 118e12, which `nst` made from 118 and the original `em` (same protocol).
    #[test]
    fn em_at_12_db_into_118_reproduces_nstdb_118e12() {
        let Some(d) = data_dir().filter(|d| d.join("nstdb/118e12.hea").exists()) else {
            println!(
                "skipping: shared nstdb/mitdb not found (set CARDIOSTREAM_DATA or provide ../shared/data/unpack)"
            );
            return;
        };
        let (mitdb, nstdb) = (d.join("mitdb"), d.join("nstdb"));
        let em = load_noise(&nstdb, &mitdb, NoiseKind::Em).expect("em");
        let rec = wfdb::read_record(&mitdb.join("118")).expect("118");
        let ann = wfdb::read_annotations(&mitdb.join("118.atr")).expect("118.atr");
        let ours = noisy_record(&rec, &ann, &em, 12.0).expect("mixed");
        let e12 = wfdb::read_record(&nstdb.join("118e12")).expect("118e12");
        for sig in 0..2 {
            let (zo, z12) = (ours.signals[sig].adc_zero, e12.signals[sig].adc_zero);
            // The last sample is left out: 118.dat ends on an ADC-zero sample that
            // 118e00 and 118e12 do not reflect (nst's own reading of it).
            let n = e12.n_samples - 1;
            let worst = ours.samples[sig][..n]
                .iter()
                .zip(&e12.samples[sig][..n])
                .map(|(&a, &b)| ((a - zo) - (b - z12)).abs())
                .max()
                .unwrap_or(0);
            // Truncations (118e00's, scaled by 10^(−12/20), and the offsets both
            // mixes recompute at each switch) add up to a few adu, never more.
            assert!(worst <= 4, "signal {sig}: differs by up to {worst} adu");
        }
    }

    /// Where nstdb holds an `em` record (the full PhysioNet copy does), it is read
    /// as `bw` and `ma` are, without record 118: here `ma`'s files under its name.
    #[test]
    fn an_em_record_in_nstdb_is_read_as_it_is() {
        let Some(d) = data_dir().filter(|d| d.join("nstdb/ma.hea").exists()) else {
            println!(
                "skipping: shared nstdb not found (set CARDIOSTREAM_DATA or provide ../shared/data/unpack)"
            );
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let hea = std::fs::read_to_string(d.join("nstdb/ma.hea")).expect("ma.hea");
        let renamed: String = hea
            .lines()
            .map(|l| match l.strip_prefix("ma") {
                Some(rest) => format!("em{rest}\n"),
                None => format!("{l}\n"),
            })
            .collect();
        std::fs::write(dir.path().join("em.hea"), renamed).expect("em.hea");
        std::fs::copy(d.join("nstdb/ma.dat"), dir.path().join("em.dat")).expect("em.dat");
        let no_mitdb = dir.path().join("no-mitdb");
        let em = load_noise(dir.path(), &no_mitdb, NoiseKind::Em).expect("em from nstdb");
        let ma = load_noise(&d.join("nstdb"), &no_mitdb, NoiseKind::Ma).expect("ma");
        assert_eq!(em.signals, ma.signals);
        assert_eq!(em.rms, ma.rms);
        // Without it, recovering em needs record 118, and says so where it is missing.
        let nst = dir.path().join("nstdb");
        std::fs::create_dir(&nst).expect("nstdb");
        for f in ["118e00.hea", "118e00.dat"] {
            std::os::unix::fs::symlink(d.join("nstdb").join(f), nst.join(f)).expect("link");
        }
        let e = load_noise(&nst, &no_mitdb, NoiseKind::Em).unwrap_err();
        assert!(format!("{e:#}").contains("record 118"), "{e:#}");
        // With mitdb beside nstdb (the shared layout), 118 is found there, and it is
        // found there too when --db holds a record 118 of another rate (the Long-Term
        // AF Database has one): here MIT-BIH 118's header at 250 Hz.
        let from_mitdb =
            load_noise(&d.join("nstdb"), &d.join("mitdb"), NoiseKind::Em).expect("118");
        assert!(from_mitdb.noisy_periods_only);
        let em = load_noise(&d.join("nstdb"), &no_mitdb, NoiseKind::Em).expect("118 beside");
        assert_eq!(em.signals, from_mitdb.signals);
        let other = dir.path().join("other");
        std::fs::create_dir(&other).expect("other");
        let hea = std::fs::read_to_string(d.join("mitdb/118.hea")).expect("118.hea");
        let mut lines: Vec<String> = hea.lines().map(str::to_owned).collect();
        let first: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(first[2], "360", "{}", lines[0]);
        lines[0] = lines[0].replacen(" 360 ", " 250 ", 1);
        std::fs::write(other.join("118.hea"), lines.join("\n") + "\n").expect("118.hea");
        std::os::unix::fs::symlink(d.join("mitdb/118.dat"), other.join("118.dat")).expect("dat");
        let em = load_noise(&d.join("nstdb"), &other, NoiseKind::Em).expect("118 beside");
        assert_eq!(em.signals, from_mitdb.signals);
    }
}
