//! Noise-stress mixtures of the shared MIT-BIH records with the shared nstdb noise,
//! made as PhysioNet's `nst` makes them ([`ecg_dsp::noise_stress`]). Shared by the
//! QRS tests and by `examples/nst_records.rs`, which writes the same mixtures as
//! WFDB records for `cardiostream eval qrs` and NeuroKit2.
//!
//! - `bw` (baseline wander) and `ma` (muscle artifact): the nstdb noise records,
//!   both signals, calibrated by their own RMS (`sigamp -r`) as `nst` does.
//! - `em` (electrode motion): the original `em` record is not shared, so it is
//!   recovered as `118e00 − 118` (digital, both signals; `nst` made 118e00 by adding
//!   `em` to 118 at 0 dB with the standard protocol), whose RMS is by construction
//!   `noise_to_signal(0) × QRS amplitude of 118`: the gains below are then exactly
//!   those `nst -s SNR` would compute with the original `em`. It exists only in the
//!   standard protocol's noisy periods, so it can only be added at those times.
//!
//! Noise is added to every signal of the record (signal `i` gets noise signal `i`)
//! with the standard protocol (noise-free until 5:00, then two minutes with and two
//! without noise in turn). The tuning records get the noise sample recorded at the
//! same time (`nst`'s alignment). The held-out records get `bw`/`ma` **two minutes
//! later** (wrapping around the end), so that their noisy periods are made of the
//! noise the tuning records never saw (the tuning records use noise minutes 5–7,
//! 9–11, …; the held-out ones 7–9, 11–13, …, and 0:55–2:00 for the last period).
//! `em` cannot be shifted (it is zero outside 118e00's noisy periods): both halves
//! get the same `em` samples.
#![allow(dead_code)]

use std::path::Path;

use ecg_dsp::noise_stress::{
    is_amplitude_beat, mix, noise_to_signal, qrs_amplitude, rms_amplitude, standard_protocol,
};
use ecg_ingest::wfdb::{self, Annotation, Record};

/// Noise types.
pub(crate) const NOISES: [&str; 3] = ["bw", "ma", "em"];
/// SNRs (dB) of the mixtures scored.
pub(crate) const SNRS: [f64; 2] = [12.0, 6.0];
/// Noise time shift of the held-out records (s), `bw` and `ma`.
pub(crate) const HELD_OUT_SHIFT_S: f64 = 120.0;

/// A noise record: digital samples per signal and their RMS amplitude (adu).
pub(crate) struct Noise {
    pub name: String,
    pub fs: f64,
    pub signals: Vec<Vec<i32>>,
    pub rms: Vec<f64>,
    /// The noise can be shifted in time (false for `em`).
    pub shiftable: bool,
}

/// Loads `bw`, `ma` (from `nstdb`) or `em` (from `nstdb`'s 118e00 and `mitdb`'s 118).
pub(crate) fn load_noise(nstdb: &Path, mitdb: &Path, name: &str) -> Result<Noise, String> {
    let read = |p: &Path| wfdb::read_record(p).map_err(|e| e.to_string());
    if name == "em" {
        let e00 = read(&nstdb.join("118e00"))?;
        let clean = read(&mitdb.join("118"))?;
        let ann = wfdb::read_annotations(&mitdb.join("118.atr")).map_err(|e| e.to_string())?;
        let normal = amplitude_beats(&ann);
        let mut signals = Vec::new();
        let mut rms = Vec::new();
        for (i, (a, b)) in e00.samples.iter().zip(&clean.samples).enumerate() {
            let zero = clean.signals[i].adc_zero;
            signals.push(a.iter().zip(b).map(|(&a, &b)| a - (b - zero)).collect());
            let amp = qrs_amplitude(b, clean.fs, &normal).ok_or("118: no normal beats")?;
            rms.push(noise_to_signal(0.0) * amp);
        }
        return Ok(Noise {
            name: name.into(),
            fs: e00.fs,
            signals,
            rms,
            shiftable: false,
        });
    }
    let rec = read(&nstdb.join(name))?;
    let rms = rec
        .samples
        .iter()
        .map(|s| rms_amplitude(s, rec.fs).ok_or(format!("{name}: too short")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Noise {
        name: name.into(),
        fs: rec.fs,
        signals: rec.samples,
        rms,
        shiftable: true,
    })
}

/// The normal beats whose amplitude `sigamp -a` measures.
pub(crate) fn amplitude_beats(ann: &[Annotation]) -> Vec<u64> {
    ann.iter()
        .filter(|a| is_amplitude_beat(a.code))
        .map(|a| a.sample)
        .collect()
}

/// Signal `sig` of `rec` with `noise` added at `snr_db` (digital, the record's ADC
/// zero removed as `nst` does); `held_out` shifts `bw`/`ma` by two minutes.
pub(crate) fn mix_signal(
    rec: &Record,
    normal: &[u64],
    sig: usize,
    noise: &Noise,
    snr_db: f64,
    held_out: bool,
) -> Result<Vec<i32>, String> {
    let clean: Vec<i32> = rec.samples[sig]
        .iter()
        .map(|&v| v - rec.signals[sig].adc_zero)
        .collect();
    let amp = qrs_amplitude(&clean, rec.fs, normal).ok_or("no normal beats")?;
    let ns = &noise.signals[sig % noise.signals.len()];
    let gain = noise_to_signal(snr_db) * amp / noise.rms[sig % noise.rms.len()];
    let shift = if held_out && noise.shiftable {
        (HELD_OUT_SHIFT_S * noise.fs).round() as usize
    } else {
        0
    };
    let protocol = standard_protocol(clean.len(), rec.fs);
    Ok(mix(&clean, |t| ns[(t + shift) % ns.len()], gain, &protocol))
}

/// Physical values (mV) of a mixed signal of `rec`'s signal `sig`.
pub(crate) fn physical(rec: &Record, sig: usize, d: &[i32]) -> Vec<f32> {
    let info = &rec.signals[sig];
    let gain = if info.gain == 0.0 { 200.0 } else { info.gain };
    let base = f64::from(info.baseline - info.adc_zero);
    d.iter()
        .map(|&v| ((f64::from(v) - base) / gain) as f32)
        .collect()
}
