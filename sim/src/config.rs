use std::fmt;

use ecg_types::Lead;
use serde::{Deserialize, Serialize};

use crate::SimError;

/// Lowest sample rate the simulator accepts (Hz).
pub const MIN_SAMPLE_RATE: u32 = 125;
/// Highest sample rate the simulator accepts (Hz).
pub const MAX_SAMPLE_RATE: u32 = 1000;
/// Most leads one device can have.
pub const MAX_LEADS: usize = 12;
/// Longest rhythm segment or lead-off time accepted, in seconds (about 115 days).
pub const MAX_SECONDS: f64 = 1.0e7;
/// Default level of a saturated lead, in millivolts (see [`LeadOffMode::Saturated`]).
pub const DEFAULT_RAIL_MV: f32 = 5.0;

/// A cardiac rhythm the device can produce.
///
/// Sinus-type rhythms get heart-rate variability (respiratory sinus arrhythmia and a
/// Mayer wave plus a little jitter). Each beating rhythm's base rate is drawn once per
/// device from the seed, uniformly within [`Rhythm::base_rate_bpm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rhythm {
    /// Normal sinus rhythm, 64–80 bpm base rate, P wave before every QRS.
    NormalSinus,
    /// Sinus bradycardia, 46–48 bpm (below the 50 bpm bradycardia call, clear of the
    /// extreme-bradycardia alarm's 40 bpm and its tolerance).
    SinusBradycardia,
    /// Sinus tachycardia, 121–124 bpm (reduced variability): above the 120 bpm
    /// tachycardia call, below the extreme-tachycardia alarm (140 bpm less its 10 %
    /// tolerance, 126).
    SinusTachycardia,
    /// Atrial fibrillation: no P waves, fibrillatory f-waves (4–9 Hz, 0.05–0.1 mV) on
    /// the baseline, irregularly irregular ventricular response (92–112 bpm mean, RR
    /// log-normally distributed with a coefficient of variation of about 0.25).
    AtrialFibrillation,
    /// Normal sinus rhythm with frequent premature ventricular contractions: after a
    /// sinus beat, with probability 0.18, a wide bizarre QRS without P wave follows at
    /// 55–65 % of the sinus RR, then a fully compensatory pause (the next sinus beat
    /// comes two sinus RRs after the last one). About 15 % of beats are PVCs.
    Pvcs,
    /// Asystole: no beats at all (a flat line apart from noise) for as long as the
    /// segment lasts. Put it in a [`RhythmPlan::schedule`] between beating segments to
    /// get recurring asystole episodes; as a constant plan the device never beats.
    Asystole,
    /// Monomorphic ventricular tachycardia: wide QRS at 160–185 bpm, no P waves.
    VentricularTachycardia,
    /// Ventricular pacing with capture at a rate-responsive pacemaker's exercise rate,
    /// 100–120 bpm, metronomic: before every beat a pacemaker pulse (a 2 mV one-sample
    /// spike on every lead, 60 ms before the QRS peak, in
    /// [`GroundTruth::pace`](crate::GroundTruth::pace) and in
    /// [`FrameSource`](crate::FrameSource) frames' `pace`), then a wide QRS without a P
    /// wave. Beats like these at this rate are what a monitor that does not know of
    /// the pacemaker takes for ventricular tachycardia.
    VentricularPaced,
}

impl Rhythm {
    /// Every rhythm.
    pub const ALL: [Rhythm; 8] = [
        Rhythm::NormalSinus,
        Rhythm::SinusBradycardia,
        Rhythm::SinusTachycardia,
        Rhythm::AtrialFibrillation,
        Rhythm::Pvcs,
        Rhythm::Asystole,
        Rhythm::VentricularTachycardia,
        Rhythm::VentricularPaced,
    ];

    /// Stable snake_case name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Rhythm::NormalSinus => "normal_sinus",
            Rhythm::SinusBradycardia => "sinus_bradycardia",
            Rhythm::SinusTachycardia => "sinus_tachycardia",
            Rhythm::AtrialFibrillation => "atrial_fibrillation",
            Rhythm::Pvcs => "pvcs",
            Rhythm::Asystole => "asystole",
            Rhythm::VentricularTachycardia => "ventricular_tachycardia",
            Rhythm::VentricularPaced => "ventricular_paced",
        }
    }

    /// The range (bpm) the device's base rate for this rhythm is drawn from, or `None`
    /// for [`Rhythm::Asystole`]. For atrial fibrillation it is the mean ventricular rate.
    /// Measured mean rates stay within a few bpm of the base rate.
    pub fn base_rate_bpm(self) -> Option<(f64, f64)> {
        match self {
            Rhythm::NormalSinus | Rhythm::Pvcs => Some((64.0, 80.0)),
            Rhythm::SinusBradycardia => Some((46.0, 48.0)),
            Rhythm::SinusTachycardia => Some((121.0, 124.0)),
            Rhythm::AtrialFibrillation => Some((92.0, 112.0)),
            Rhythm::VentricularTachycardia => Some((160.0, 185.0)),
            Rhythm::VentricularPaced => Some((100.0, 120.0)),
            Rhythm::Asystole => None,
        }
    }

    /// Whether the rhythm has beats.
    pub fn has_beats(self) -> bool {
        self != Rhythm::Asystole
    }
}

impl fmt::Display for Rhythm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One segment of a [`RhythmPlan::Schedule`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// The rhythm during the segment.
    pub rhythm: Rhythm,
    /// How long it lasts, in seconds (rounded to whole samples).
    pub seconds: f64,
}

/// Which rhythm the device produces when.
///
/// Segment boundaries are rounded to whole samples. A beat is never placed inside an
/// [`Rhythm::Asystole`] segment; the first beat after one has its R peak 0.3–0.4 s
/// after the segment ends, so its P wave starts after the segment too. Beats keep their
/// own morphology (the T wave of the last beat before a segment boundary may run past
/// it). A non-repeating schedule keeps its last rhythm forever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RhythmPlan {
    /// One rhythm forever.
    Constant(Rhythm),
    /// Segments played in order, optionally repeating from the first.
    Schedule {
        /// The segments, in order.
        segments: Vec<Segment>,
        /// Whether to start over after the last segment (otherwise the last rhythm
        /// continues forever).
        repeat: bool,
    },
}

impl RhythmPlan {
    /// One rhythm forever.
    pub fn constant(rhythm: Rhythm) -> Self {
        RhythmPlan::Constant(rhythm)
    }

    /// A schedule of `(rhythm, seconds)` segments, optionally repeating.
    pub fn schedule(segments: Vec<(Rhythm, f64)>, repeat: bool) -> Self {
        RhythmPlan::Schedule {
            segments: segments
                .into_iter()
                .map(|(rhythm, seconds)| Segment { rhythm, seconds })
                .collect(),
            repeat,
        }
    }

    pub(crate) fn validate(&self, sample_rate: u32) -> Result<(), SimError> {
        let RhythmPlan::Schedule { segments, .. } = self else {
            return Ok(());
        };
        if segments.is_empty() {
            return Err(SimError::EmptySchedule);
        }
        for (index, s) in segments.iter().enumerate() {
            let ok = s.seconds.is_finite()
                && s.seconds > 0.0
                && s.seconds <= MAX_SECONDS
                && (s.seconds * f64::from(sample_rate)).round() >= 1.0;
            if !ok {
                return Err(SimError::SegmentDuration {
                    index,
                    seconds: s.seconds,
                });
            }
        }
        Ok(())
    }
}

/// Mains (power-line) frequency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum MainsFrequency {
    /// 50 Hz (Europe, most of Asia and Africa).
    #[default]
    #[serde(rename = "50")]
    Hz50,
    /// 60 Hz (the Americas, parts of Asia).
    #[serde(rename = "60")]
    Hz60,
}

impl MainsFrequency {
    /// The frequency in hertz.
    pub fn hz(self) -> u32 {
        match self {
            MainsFrequency::Hz50 => 50,
            MainsFrequency::Hz60 => 60,
        }
    }
}

/// Additive noise, per lead, all off by default. Amplitudes are in millivolts.
///
/// Each independently measured lead (I, II and every chest or other lead) gets its own
/// realisation; III, aVR, aVL and aVF are derived from I and II after noise is added,
/// so Einthoven's law holds for the noisy signal too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NoiseConfig {
    /// Baseline wander: peak amplitude of the respiratory component (at the device's
    /// breathing rate, 0.2–0.3 Hz); a random slow drift (below ~0.05 Hz) of half this
    /// standard deviation is added.
    pub baseline_wander_mv: f64,
    /// Muscle artifact (EMG): RMS of Gaussian noise band-limited to 20–100 Hz (upper edge
    /// capped at 0.42 × the sample rate), at its loudest.
    pub muscle_mv: f64,
    /// Whether muscle noise comes in bursts (0.4–1.5 s, about every 4 s, 20 % level
    /// between them) rather than continuously.
    pub muscle_bursts: bool,
    /// Mains interference: peak amplitude of the fundamental (a 10 % third harmonic is
    /// added when it is below the Nyquist frequency).
    pub mains_mv: f64,
    /// Mains frequency.
    pub mains_hz: MainsFrequency,
    /// Electrode motion: typical size of a transient (a baseline step that rises in
    /// ~40 ms and decays over ~1 s), drawn between 0.5 and 1.5 × this, either sign.
    pub electrode_motion_mv: f64,
    /// Mean number of electrode-motion transients per minute per lead (Poisson).
    pub electrode_motion_per_min: f64,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        Self {
            baseline_wander_mv: 0.0,
            muscle_mv: 0.0,
            muscle_bursts: false,
            mains_mv: 0.0,
            mains_hz: MainsFrequency::Hz50,
            electrode_motion_mv: 0.0,
            electrode_motion_per_min: 3.0,
        }
    }
}

impl NoiseConfig {
    /// No noise at all (the default).
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether every noise source is off.
    pub fn is_silent(&self) -> bool {
        self.baseline_wander_mv == 0.0
            && self.muscle_mv == 0.0
            && self.mains_mv == 0.0
            && (self.electrode_motion_mv == 0.0 || self.electrode_motion_per_min == 0.0)
    }

    fn validate(&self) -> Result<(), SimError> {
        let check = |field: &'static str, value: f64, max: f64| {
            if value.is_finite() && (0.0..=max).contains(&value) {
                Ok(())
            } else {
                Err(SimError::Noise { field, value })
            }
        };
        check("baseline_wander_mv", self.baseline_wander_mv, 10.0)?;
        check("muscle_mv", self.muscle_mv, 10.0)?;
        check("mains_mv", self.mains_mv, 10.0)?;
        check("electrode_motion_mv", self.electrode_motion_mv, 10.0)?;
        check(
            "electrode_motion_per_min",
            self.electrode_motion_per_min,
            600.0,
        )
    }
}

/// What a lead reads while its electrode is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadOffMode {
    /// Exactly 0 mV.
    #[default]
    Flat,
    /// Pinned at the positive rail, [`DeviceConfig::rail_mv`].
    Saturated,
}

/// A scheduled interval during which a lead (or every lead) is off: it reads flat or
/// saturated and its lead-off flag is set in [`FrameSource`](crate::FrameSource) frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadOffInterval {
    /// The lead (must be one of the device's leads), or `None` for every lead.
    pub lead: Option<Lead>,
    /// Start, in seconds from the first sample (rounded to whole samples).
    pub start_s: f64,
    /// Duration in seconds (rounded to whole samples, at least one).
    pub duration_s: f64,
    /// If set, the interval recurs every `period_s` seconds (must exceed the duration).
    pub period_s: Option<f64>,
    /// What the lead reads meanwhile.
    pub mode: LeadOffMode,
}

impl LeadOffInterval {
    /// `lead` reads flat from `start_s` for `duration_s` seconds, once.
    pub fn new(lead: Lead, start_s: f64, duration_s: f64) -> Self {
        Self {
            lead: Some(lead),
            start_s,
            duration_s,
            period_s: None,
            mode: LeadOffMode::Flat,
        }
    }

    /// Every lead reads flat from `start_s` for `duration_s` seconds, once.
    pub fn all_leads(start_s: f64, duration_s: f64) -> Self {
        Self {
            lead: None,
            ..Self::new(Lead::II, start_s, duration_s)
        }
    }

    /// The same interval, recurring every `period_s` seconds.
    pub fn every(mut self, period_s: f64) -> Self {
        self.period_s = Some(period_s);
        self
    }

    /// The same interval, reading `mode` meanwhile.
    pub fn with_mode(mut self, mode: LeadOffMode) -> Self {
        self.mode = mode;
        self
    }

    fn validate(&self, index: usize, leads: &[Lead], sample_rate: u32) -> Result<(), SimError> {
        let err = |reason| Err(SimError::LeadOff { index, reason });
        if let Some(l) = self.lead {
            if !leads.contains(&l) {
                return err("lead is not one of the device's leads");
            }
        }
        if !(self.start_s.is_finite() && (0.0..=MAX_SECONDS).contains(&self.start_s)) {
            return err("start must be finite and within 0..=1e7 s");
        }
        if !(self.duration_s.is_finite()
            && self.duration_s > 0.0
            && self.duration_s <= MAX_SECONDS
            && (self.duration_s * f64::from(sample_rate)).round() >= 1.0)
        {
            return err("duration must be finite, at least one sample and at most 1e7 s");
        }
        if let Some(p) = self.period_s {
            let fs = f64::from(sample_rate);
            if !(p.is_finite()
                && p <= MAX_SECONDS
                && (p * fs).round() > (self.duration_s * fs).round())
            {
                return err("period must be finite, at most 1e7 s and longer than the duration");
            }
        }
        Ok(())
    }
}

/// Everything that defines a simulated device. The same config (including the seed)
/// always produces bit-identical samples and ground truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceConfig {
    /// Seed of every random choice the device makes.
    pub seed: u64,
    /// Sample rate in hertz, [`MIN_SAMPLE_RATE`]..=[`MAX_SAMPLE_RATE`].
    pub sample_rate: u32,
    /// The leads, in output order (1 to [`MAX_LEADS`], no duplicates).
    pub leads: Vec<Lead>,
    /// The rhythm over time.
    pub plan: RhythmPlan,
    /// Additive noise.
    #[serde(default)]
    pub noise: NoiseConfig,
    /// Scheduled lead-off intervals.
    #[serde(default)]
    pub lead_off: Vec<LeadOffInterval>,
    /// Level of a lead that is off in [`LeadOffMode::Saturated`] mode, in millivolts.
    #[serde(default = "default_rail")]
    pub rail_mv: f32,
}

fn default_rail() -> f32 {
    DEFAULT_RAIL_MV
}

impl DeviceConfig {
    /// A device with no noise and no lead-off.
    pub fn new(seed: u64, sample_rate: u32, leads: Vec<Lead>, plan: RhythmPlan) -> Self {
        Self {
            seed,
            sample_rate,
            leads,
            plan,
            noise: NoiseConfig::default(),
            lead_off: Vec::new(),
            rail_mv: DEFAULT_RAIL_MV,
        }
    }

    /// The same config with `noise`.
    pub fn with_noise(mut self, noise: NoiseConfig) -> Self {
        self.noise = noise;
        self
    }

    /// The same config with one more lead-off interval.
    pub fn with_lead_off(mut self, interval: LeadOffInterval) -> Self {
        self.lead_off.push(interval);
        self
    }

    /// Checks the config without building a device.
    ///
    /// # Errors
    /// Returns the first problem found as a [`SimError`].
    pub fn validate(&self) -> Result<(), SimError> {
        if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&self.sample_rate) {
            return Err(SimError::SampleRate(self.sample_rate));
        }
        if self.leads.is_empty() {
            return Err(SimError::NoLeads);
        }
        if self.leads.len() > MAX_LEADS {
            return Err(SimError::TooManyLeads(self.leads.len()));
        }
        for (i, l) in self.leads.iter().enumerate() {
            if self.leads[..i].contains(l) {
                return Err(SimError::DuplicateLead(*l));
            }
        }
        self.plan.validate(self.sample_rate)?;
        self.noise.validate()?;
        for (index, lo) in self.lead_off.iter().enumerate() {
            lo.validate(index, &self.leads, self.sample_rate)?;
        }
        if !(self.rail_mv.is_finite() && self.rail_mv > 0.0) {
            return Err(SimError::Rail(self.rail_mv));
        }
        Ok(())
    }
}
