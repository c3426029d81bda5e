//! A deterministic synthetic ECG device that knows its ground truth.
//!
//! [`Device`] produces multi-lead ECG realistic enough to exercise QRS detection and
//! rhythm analysis, and records what it did ([`GroundTruth`]: every beat's fiducial
//! sample and kind, the rhythm episodes, the lead-off intervals) so tests can score
//! the pipeline against it. [`FrameSource`] wraps a device as a gateway would and
//! emits wire-ready [`ecg_types::Frame`]s; [`Preset`] names ready-made patients.
//!
//! # What is modelled
//! - **Morphology.** Each beat is a sum of Gaussian waves (P, Q, R, S, T for sinus
//!   beats; a wide main deflection, a terminal component and a discordant T for
//!   ventricular beats), each with an amplitude per source lead from a table for I, II
//!   and V1–V6 (septal q waves, rS in V1, R-wave progression, R ≈ 1.05–1.4 mV in II).
//!   III, aVR, aVL and aVF are derived from I and II (III = II − I,
//!   aVR = −(I + II)/2, aVL = I − II/2, aVF = II − I/2), after noise, so Einthoven's
//!   and Goldberger's relations hold exactly. Other leads copy a nearby lead: V7 ≈ V6,
//!   V3R/V4R ≈ V1, CC5/CM5 ≈ V5, unspecified ≈ II (scaled, with their own noise).
//!   P–R shortens slightly and the T wave moves and widens with √RR (Bazett-like).
//!   P, QRS and T sizes vary by ±15 % between devices; QRS amplitude breathes ±5 %.
//! - **Rhythm.** See [`Rhythm`] and [`RhythmPlan`]: sinus rhythms with heart-rate
//!   variability (respiratory sinus arrhythmia at the device's breathing rate,
//!   0.2–0.3 Hz, ±4 %; a Mayer wave at 0.08–0.12 Hz, ±2.5 %; 1 % random jitter),
//!   atrial fibrillation (log-normal RR, no P waves, 4.6–7.6 Hz f-waves), frequent
//!   PVCs with compensatory pauses, asystole, ventricular tachycardia and ventricular
//!   pacing (a pacemaker spike on every lead before each wide beat, flagged in the
//!   frames' `pace` as a monitor's pace detection does).
//! - **Noise** ([`NoiseConfig`], off by default): baseline wander, EMG-like muscle
//!   noise (optionally in bursts), 50/60 Hz mains, electrode-motion transients.
//! - **Lead-off** ([`LeadOffInterval`]): scheduled intervals where a lead reads 0 mV
//!   or the positive rail and is flagged in frames.
//!
//! # Units
//! Samples from [`Device::generate`] are millivolts (`f32`), lead-major per call.
//! Times in configs are seconds; ground truth is in sample indices per lead counted
//! from the device's first sample (divide by the sample rate for seconds). Frames
//! carry integer counts at the chosen nanovolts per count and device time in µs.
//!
//! # Determinism
//! Everything random is drawn from ChaCha8 streams of the config's seed (one stream
//! for device parameters, one for the beat sequence, one per lead and noise source),
//! and the signal is computed sample by sample from a beat schedule, so:
//! - the same [`DeviceConfig`] gives bit-identical samples and ground truth on every
//!   run on the same build, however the stream is cut into `generate` calls;
//! - a lead's signal does not depend on which other leads the device has, and turning
//!   one noise source on does not change the beats or the other noise sources.
//!
//! # Example
//! ```
//! use ecg_sim::{Device, DeviceConfig, Rhythm, RhythmPlan};
//! use ecg_types::Lead;
//!
//! let cfg = DeviceConfig::new(7, 250, vec![Lead::II], RhythmPlan::constant(Rhythm::NormalSinus));
//! let mut dev = Device::new(cfg).expect("valid config");
//! let mut mv = Vec::new();
//! dev.generate(250 * 10, &mut mv); // 10 s of lead II
//! let hr = dev.truth().mean_hr_bpm(0, dev.position()).expect("beats");
//! assert!((60.0..90.0).contains(&hr));
//! ```

mod config;
mod device;
mod error;
mod frames;
mod morphology;
mod noise;
mod preset;
mod rhythm;
mod truth;

pub use config::{
    DeviceConfig, LeadOffInterval, LeadOffMode, MainsFrequency, NoiseConfig, Rhythm, RhythmPlan,
    Segment, DEFAULT_RAIL_MV, MAX_LEADS, MAX_SAMPLE_RATE, MAX_SECONDS, MIN_SAMPLE_RATE,
};
pub use device::Device;
pub use error::SimError;
pub use frames::FrameSource;
pub use preset::{Preset, UnknownPreset};
pub use truth::{Beat, BeatKind, GroundTruth, LeadOffEpisode, RhythmEpisode};
