//! Beat templates: each beat is a sum of Gaussian waves, each with an amplitude per
//! source lead (I, II, V1–V6) and a centre and width that may scale with the RR interval.

use ecg_types::Lead;

use crate::BeatKind;

/// Number of source leads whose clean signal is synthesised directly.
pub(crate) const NSRC: usize = 8;
/// Source indices.
pub(crate) const SRC_I: usize = 0;
pub(crate) const SRC_II: usize = 1;
const SRC_V1: usize = 2;
const SRC_V5: usize = 6;
const SRC_V6: usize = 7;

/// Physically measured channels, each with its own noise: I, II, V1–V6, V7, V3R, V4R,
/// CC5, CM5 and the unspecified lead. The index is also the noise stream id, so a
/// channel's noise does not depend on which other leads the device has.
pub(crate) const NCHAN: usize = 14;

/// A measured channel: which source it copies and with what gain.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Channel {
    pub(crate) id: usize,
    pub(crate) src: usize,
    pub(crate) gain: f32,
}

/// How an output lead is formed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LeadForm {
    /// Directly measured channel.
    Measured(Channel),
    /// `a * I + b * II` (III, aVR, aVL, aVF), using the noisy measured I and II.
    Limb { a: f32, b: f32 },
}

/// How `lead` is produced. Leads without their own template copy a nearby lead:
/// V7 ≈ 0.8 × V6, V3R ≈ 0.9 × V1, V4R ≈ 0.8 × V1, CC5 ≈ 1.1 × V5, CM5 ≈ 1.2 × V5,
/// unspecified ≈ 0.9 × II.
pub(crate) fn lead_form(lead: Lead) -> LeadForm {
    let m = |id, src, gain| LeadForm::Measured(Channel { id, src, gain });
    match lead {
        Lead::I => m(0, SRC_I, 1.0),
        Lead::II => m(1, SRC_II, 1.0),
        Lead::V1 => m(2, SRC_V1, 1.0),
        Lead::V2 => m(3, SRC_V1 + 1, 1.0),
        Lead::V3 => m(4, SRC_V1 + 2, 1.0),
        Lead::V4 => m(5, SRC_V1 + 3, 1.0),
        Lead::V5 => m(6, SRC_V5, 1.0),
        Lead::V6 => m(7, SRC_V6, 1.0),
        Lead::V7 => m(8, SRC_V6, 0.8),
        Lead::V3R => m(9, SRC_V1, 0.9),
        Lead::V4R => m(10, SRC_V1, 0.8),
        Lead::CC5 => m(11, SRC_V5, 1.1),
        Lead::CM5 => m(12, SRC_V5, 1.2),
        Lead::Unspecified => m(13, SRC_II, 0.9),
        // Einthoven / Goldberger: III = II − I, aVR = −(I + II)/2,
        // aVL = I − II/2, aVF = II − I/2.
        Lead::III => LeadForm::Limb { a: -1.0, b: 1.0 },
        Lead::AVR => LeadForm::Limb { a: -0.5, b: -0.5 },
        Lead::AVL => LeadForm::Limb { a: 1.0, b: -0.5 },
        Lead::AVF => LeadForm::Limb { a: -0.5, b: 1.0 },
    }
}

/// The measured channels for lead I and II (used by derived limb leads).
pub(crate) const CHANNEL_I: Channel = Channel {
    id: 0,
    src: SRC_I,
    gain: 1.0,
};
pub(crate) const CHANNEL_II: Channel = Channel {
    id: 1,
    src: SRC_II,
    gain: 1.0,
};

// Amplitudes in mV per source lead: I, II, V1, V2, V3, V4, V5, V6.
// Sinus beat: septal q, tall R in II/V4–V5, rS in V1, R progression across V1–V6.
const P_AMP: [f32; NSRC] = [0.08, 0.15, 0.06, 0.08, 0.08, 0.08, 0.08, 0.07];
const Q_AMP: [f32; NSRC] = [-0.06, -0.05, 0.15, 0.10, 0.0, -0.05, -0.08, -0.08];
const R_AMP: [f32; NSRC] = [0.70, 1.20, -0.25, 0.25, 0.60, 1.30, 1.20, 0.90];
const S_AMP: [f32; NSRC] = [-0.10, -0.20, -0.75, -1.00, -0.70, -0.40, -0.20, -0.10];
const T_AMP: [f32; NSRC] = [0.20, 0.30, 0.10, 0.45, 0.45, 0.40, 0.30, 0.25];
// Ventricular beat (right-ventricular focus, LBBB-like, superior axis): wide main
// deflection, an opposite terminal component and a discordant T wave.
const VMAIN_AMP: [f32; NSRC] = [1.00, -1.20, -1.20, -1.40, -0.80, 0.60, 1.20, 1.30];
const VTERM_AMP: [f32; NSRC] = [-0.25, 0.35, 0.25, 0.25, 0.30, -0.25, -0.25, -0.25];
const VT_T_AMP: [f32; NSRC] = [-0.35, 0.45, 0.40, 0.50, 0.30, -0.20, -0.35, -0.40];
/// Relative f-wave amplitude per source lead during atrial fibrillation (largest in
/// V1 and the inferior leads).
pub(crate) const FWAVE_GAIN: [f32; NSRC] = [0.45, 1.0, 1.3, 0.9, 0.6, 0.45, 0.4, 0.35];

/// Gaussians are cut off this many standard deviations from their centre.
const SUPPORT_SIGMAS: f64 = 5.0;

/// One Gaussian wave of a scheduled beat, in absolute stream time (seconds).
#[derive(Debug, Clone)]
pub(crate) struct Wave {
    mu: f64,
    k: f64,
    pub(crate) lo: f64,
    pub(crate) hi: f64,
    amps: [f32; NSRC],
}

impl Wave {
    fn new(mu: f64, sigma: f64, amps: [f32; NSRC], scale: f32) -> Self {
        Self {
            mu,
            k: 1.0 / (2.0 * sigma * sigma),
            lo: mu - SUPPORT_SIGMAS * sigma,
            hi: mu + SUPPORT_SIGMAS * sigma,
            amps: amps.map(|a| a * scale),
        }
    }

    /// Adds this wave's value at time `t` to `acc` for the sources in `mask`.
    #[inline]
    pub(crate) fn add(&self, t: f64, mask: &[bool; NSRC], acc: &mut [f64; NSRC]) {
        if t < self.lo || t > self.hi {
            return;
        }
        let d = t - self.mu;
        let g = (-d * d * self.k).exp();
        for s in 0..NSRC {
            if mask[s] {
                acc[s] += f64::from(self.amps[s]) * g;
            }
        }
    }
}

/// Per-device morphology variation, drawn from the seed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MorphologyScale {
    pub(crate) p: f32,
    pub(crate) qrs: f32,
    pub(crate) t: f32,
}

/// The waves of one beat with its fiducial at `t_r` seconds. `rr` is the preceding RR
/// interval (seconds), which sets P and T timing; `qrs_mod` is the respiratory
/// modulation of QRS amplitude.
pub(crate) fn beat_waves(
    kind: BeatKind,
    t_r: f64,
    rr: f64,
    sc: MorphologyScale,
    qrs_mod: f32,
) -> Vec<Wave> {
    let rr = rr.clamp(0.25, 2.0);
    let sq = rr.sqrt();
    let qrs = sc.qrs * qrs_mod;
    match kind {
        BeatKind::Normal | BeatKind::AfConducted => {
            let mut w = Vec::with_capacity(5);
            if kind == BeatKind::Normal {
                // PR shortens a little at high rates.
                w.push(Wave::new(t_r - 0.16 * rr.powf(0.25), 0.022, P_AMP, sc.p));
            }
            w.push(Wave::new(t_r - 0.028, 0.010, Q_AMP, qrs));
            w.push(Wave::new(t_r, 0.012, R_AMP, qrs));
            w.push(Wave::new(t_r + 0.028, 0.012, S_AMP, qrs));
            // Bazett-like: QT (and the T wave) scale with sqrt(RR).
            w.push(Wave::new(t_r + 0.27 * sq, 0.05 * sq, T_AMP, sc.t));
            w
        }
        BeatKind::Pvc | BeatKind::Ventricular | BeatKind::Paced => vec![
            Wave::new(t_r, 0.028, VMAIN_AMP, qrs),
            Wave::new(t_r + 0.05, 0.03, VTERM_AMP, qrs),
            Wave::new(t_r + 0.30 * sq.max(0.55), 0.07 * sq, VT_T_AMP, sc.t),
        ],
    }
}
