use std::fmt;
use std::str::FromStr;

use ecg_types::Lead;
use serde::{Deserialize, Serialize};

use crate::{DeviceConfig, LeadOffInterval, MainsFrequency, NoiseConfig, Rhythm, RhythmPlan};

/// A named patient for demos and end-to-end tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Normal sinus rhythm, 64–80 bpm, clean.
    NormalSinus,
    /// Sinus bradycardia, 46–48 bpm.
    Bradycardia,
    /// Sinus tachycardia, 121–124 bpm.
    Tachycardia,
    /// Atrial fibrillation, irregularly irregular at 92–112 bpm mean.
    AtrialFibrillation,
    /// Sinus rhythm with about 15 % PVCs.
    Pvcs,
    /// Sinus rhythm with a 6.5 s asystole from 12 s, recurring every 27 s
    /// (12–18.5 s, 39–45.5 s, …).
    Asystole,
    /// Ventricular tachycardia at 160–185 bpm.
    VentricularTachycardia,
    /// Ventricular pacing with capture at 100–120 bpm, every beat after a pacemaker
    /// pulse the frames flag (`pace`).
    VentricularPaced,
    /// Normal sinus rhythm with baseline wander (0.2 mV), bursty muscle noise
    /// (0.05 mV RMS), 60 Hz mains (0.1 mV) and occasional electrode motion (0.3 mV,
    /// 2/min).
    NoisyNormalSinus,
    /// Normal sinus rhythm with every lead off (flat, flagged) from 10 s for 8 s,
    /// recurring every 40 s.
    LeadOffNormalSinus,
}

impl Preset {
    /// The rhythm mix the benchmarks stream (`stages_bench`, `lethal_bench`), stream
    /// `i` getting `BENCH_MIX[i % 6]`.
    pub const BENCH_MIX: [Preset; 6] = [
        Preset::NormalSinus,
        Preset::NoisyNormalSinus,
        Preset::AtrialFibrillation,
        Preset::Pvcs,
        Preset::Tachycardia,
        Preset::Bradycardia,
    ];

    /// Every preset.
    pub fn all() -> &'static [Preset] {
        &[
            Preset::NormalSinus,
            Preset::Bradycardia,
            Preset::Tachycardia,
            Preset::AtrialFibrillation,
            Preset::Pvcs,
            Preset::Asystole,
            Preset::VentricularTachycardia,
            Preset::NoisyNormalSinus,
            Preset::LeadOffNormalSinus,
            Preset::VentricularPaced,
        ]
    }

    /// Stable snake_case name (also accepted by [`FromStr`]).
    pub fn name(self) -> &'static str {
        match self {
            Preset::NormalSinus => "normal_sinus",
            Preset::Bradycardia => "bradycardia",
            Preset::Tachycardia => "tachycardia",
            Preset::AtrialFibrillation => "atrial_fibrillation",
            Preset::Pvcs => "pvcs",
            Preset::Asystole => "asystole",
            Preset::VentricularTachycardia => "ventricular_tachycardia",
            Preset::NoisyNormalSinus => "noisy_normal_sinus",
            Preset::LeadOffNormalSinus => "lead_off_normal_sinus",
            Preset::VentricularPaced => "ventricular_paced",
        }
    }

    /// The device config for this preset. Invalid `sample_rate` or `leads` are not
    /// checked here; [`Device::new`](crate::Device::new) reports them.
    pub fn config(self, seed: u64, sample_rate: u32, leads: Vec<Lead>) -> DeviceConfig {
        let plan = |r| RhythmPlan::constant(r);
        let cfg = |p| DeviceConfig::new(seed, sample_rate, leads, p);
        match self {
            Preset::NormalSinus => cfg(plan(Rhythm::NormalSinus)),
            Preset::Bradycardia => cfg(plan(Rhythm::SinusBradycardia)),
            Preset::Tachycardia => cfg(plan(Rhythm::SinusTachycardia)),
            Preset::AtrialFibrillation => cfg(plan(Rhythm::AtrialFibrillation)),
            Preset::Pvcs => cfg(plan(Rhythm::Pvcs)),
            Preset::VentricularTachycardia => cfg(plan(Rhythm::VentricularTachycardia)),
            Preset::VentricularPaced => cfg(plan(Rhythm::VentricularPaced)),
            Preset::Asystole => cfg(RhythmPlan::schedule(
                vec![
                    (Rhythm::NormalSinus, 12.0),
                    (Rhythm::Asystole, 6.5),
                    (Rhythm::NormalSinus, 8.5),
                ],
                true,
            )),
            Preset::NoisyNormalSinus => cfg(plan(Rhythm::NormalSinus)).with_noise(NoiseConfig {
                baseline_wander_mv: 0.2,
                muscle_mv: 0.05,
                muscle_bursts: true,
                mains_mv: 0.1,
                mains_hz: MainsFrequency::Hz60,
                electrode_motion_mv: 0.3,
                electrode_motion_per_min: 2.0,
            }),
            Preset::LeadOffNormalSinus => cfg(plan(Rhythm::NormalSinus))
                .with_lead_off(LeadOffInterval::all_leads(10.0, 8.0).every(40.0)),
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A preset name that is not one of [`Preset::all`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown preset {0:?}")]
pub struct UnknownPreset(pub String);

impl FromStr for Preset {
    type Err = UnknownPreset;

    /// Parses a preset name case-insensitively, with `-` or `_` separators.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().replace('-', "_");
        Preset::all()
            .iter()
            .copied()
            .find(|p| p.name().eq_ignore_ascii_case(&t))
            .ok_or_else(|| UnknownPreset(s.to_owned()))
    }
}
