//! Lethal-arrhythmia alarms (IEC 60601-2-27): asystole, extreme bradycardia, extreme
//! tachycardia, ventricular tachycardia and ventricular flutter/fibrillation, from
//! every ECG lead of a stream and, where the stream has them, its plethysmogram and
//! arterial-pressure waveforms.
//!
//! PLACEHOLDER: the method is described in the docs once tuned.

mod lead;
mod pulse;
mod ring;
pub mod score;
mod spectrum;

use ecg_types::{Condition, FindingStatus, PulseKind};
use serde::{Deserialize, Serialize};

use lead::{Beat, LeadFront, LeadParams};
use pulse::PulseChannel;
use spectrum::{SpectralFeatures, Spectrum};

/// A beat counts when its slope is at least this share of its lead's beat level ...
const CREDIBLE_SLOPE: f32 = 0.4;
/// ... or its correlation with the lead's dominant beat at least this.
const CREDIBLE_CORR: f32 = 0.8;
/// A smaller peak counts as a missed low-amplitude beat when it correlates this well
/// with its lead's dominant beat ...
const LOW_AMP_CORR: f32 = 0.85;
/// ... and its slope is at least this share of the lead's beat level.
const LOW_AMP_SLOPE: f32 = 0.3;

/// Leads whose quality is listed one by one in [`Evidence::lead_quality`].
pub const EVIDENCE_LEADS: usize = 16;

/// The five conditions, in the order of [`LethalAssessment::calls`].
pub const LETHAL_CONDITIONS: [Condition; 5] = [
    Condition::Asystole,
    Condition::ExtremeBradycardia,
    Condition::ExtremeTachycardia,
    Condition::VentricularTachycardia,
    Condition::VentricularFibrillation,
];

/// Configuration of [`LethalDetector`]. The defaults are the PhysioNet/CinC Challenge
/// 2015 alarm definitions and the thresholds tuned on its records
/// (`docs/accuracy-alarms.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LethalConfig {
    /// Time between two assessments (s); each assessment calls all five conditions.
    pub tick_s: f32,
    /// Asystole: no QRS complex for at least this long (s).
    pub asystole_s: f32,
    /// Extreme bradycardia: heart rate below this (bpm) ...
    pub brady_bpm: f32,
    /// ... over this many consecutive beats.
    pub brady_beats: usize,
    /// Extreme tachycardia: heart rate above this (bpm) ...
    pub tachy_bpm: f32,
    /// ... over this many consecutive beats.
    pub tachy_beats: usize,
    /// Ventricular tachycardia: this many consecutive ventricular beats or more ...
    pub vt_beats: usize,
    /// ... at a rate above this (bpm).
    pub vt_bpm: f32,
    /// Ventricular flutter/fibrillation: a fibrillatory, flutter or oscillatory
    /// waveform for at least this long (s).
    pub vf_s: f32,
    /// Tolerance of the rate limits (share): a rate within it of a limit counts as past
    /// it (extreme bradycardia below `brady_bpm × (1 + rate_tolerance)`, extreme
    /// tachycardia and ventricular tachycardia above their limits × (1 −
    /// rate_tolerance)). Monitors average heart rate in their own ways, and at the
    /// limit a missed alarm costs more than a false one.
    pub rate_tolerance: f32,
    /// A lead votes when its signal quality (0 unusable … 1 clean) over the call's
    /// window is at least this.
    pub min_lead_quality: f32,
    /// A beat is ventricular when its correlation with its lead's dominant beat is
    /// below this ...
    pub vt_max_corr: f32,
    /// ... or its QRS is at least this many times as wide as the dominant beat's.
    pub vt_min_width_ratio: f32,
    /// Flutter/fibrillation: the dominant frequency of the ECG lies in this range (Hz;
    /// 150–600 per minute by default).
    pub vf_min_hz: f32,
    /// Upper end of the flutter/fibrillation range (Hz).
    pub vf_max_hz: f32,
    /// Flutter/fibrillation: smallest share of the ECG's power within ±35 % of the
    /// dominant frequency.
    pub vf_min_concentration: f32,
    /// Flutter/fibrillation: largest share of the ECG's power above 12 Hz (QRS
    /// complexes put much of theirs there).
    pub vf_max_high_frac: f32,
    /// Use the pulse channels (plethysmogram, arterial pressure) as evidence.
    pub use_pulse: bool,
    /// A pulse counts as evidence of output when its amplitude is at least this share
    /// of its channel's recent median pulse.
    pub pulse_min_amplitude: f32,
    /// Smallest plethysmogram pulse (normalised units): below it is a ripple, not a pulse.
    pub pleth_floor_nu: f32,
    /// Smallest arterial pulse pressure (mmHg).
    pub abp_floor_mmhg: f32,
}

impl Default for LethalConfig {
    fn default() -> Self {
        Self {
            tick_s: 0.5,
            asystole_s: 4.0,
            brady_bpm: 40.0,
            brady_beats: 5,
            tachy_bpm: 140.0,
            tachy_beats: 17,
            vt_beats: 5,
            vt_bpm: 100.0,
            vf_s: 4.0,
            rate_tolerance: 0.1,
            min_lead_quality: 0.5,
            vt_max_corr: 0.8,
            vt_min_width_ratio: 1.5,
            vf_min_hz: 2.5,
            vf_max_hz: 10.0,
            vf_min_concentration: 0.4,
            vf_max_high_frac: 0.1,
            use_pulse: true,
            pulse_min_amplitude: 0.3,
            pleth_floor_nu: 0.02,
            abp_floor_mmhg: 5.0,
        }
    }
}

/// What suppressed a candidate alarm: the ECG alone met the condition's criterion,
/// other evidence argued against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Suppression {
    /// A pulse channel showed pulses of normal size through the event.
    PulsePresent,
    /// The pulse rate contradicts the ECG rate of the event.
    PulseRateDisagrees,
    /// A pulse channel beat on through the event with the rhythm and size it had
    /// before: the ECG event did not reach the heart's output (an artefact).
    PulseUnperturbed,
    /// A usable lead showed low-amplitude complexes shaped like its usual beats where
    /// the detector found none.
    LowAmplitudeBeats,
    /// A usable lead showed the patient's usual beats through the event.
    NormalBeatsOnUsableLead,
    /// Only leads judged unusable (noise, artefact) met the criterion.
    PoorSignal,
}

impl Suppression {
    /// Stable snake_case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Suppression::PulsePresent => "pulse_present",
            Suppression::PulseRateDisagrees => "pulse_rate_disagrees",
            Suppression::PulseUnperturbed => "pulse_unperturbed",
            Suppression::LowAmplitudeBeats => "low_amplitude_beats",
            Suppression::NormalBeatsOnUsableLead => "normal_beats_on_usable_lead",
            Suppression::PoorSignal => "poor_signal",
        }
    }
}

/// The pulse evidence of a call: the best pulse channel over the call's window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PulseEvidence {
    /// Index of the channel among the stream's pulse channels.
    pub channel: u8,
    /// Plethysmogram or arterial pressure.
    pub kind: PulseKind,
    /// Whether the channel's signal was usable (present, not stuck, pulses learned,
    /// following the ECG's beats).
    pub usable: bool,
    /// Share of recent ECG beats followed by a pulse at the usual delay (and of pulses
    /// preceded by a beat), 0–1.
    pub coupling: f32,
    /// The window's pulses form a regular train of steady size.
    pub regular: bool,
    /// Pulses of normal size in the window.
    pub pulses: u16,
    /// Pulse rate from them (bpm).
    pub rate_bpm: Option<f32>,
    /// Median amplitude of the window's pulses over the channel's reference.
    pub amplitude_ratio: Option<f32>,
}

/// Why a call came out as it did: which leads voted, their quality, the pulse, the
/// measured values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Evidence {
    /// Leads usable over the call's window (bit `i` = ECG lead `i` of the stream).
    pub leads_usable: u32,
    /// Usable leads whose own beats or waveform met the condition's criterion.
    pub leads_for: u32,
    /// Signal quality of each lead over the call's window, 0 (unusable) … 1 (clean);
    /// the first [`EVIDENCE_LEADS`] leads.
    pub lead_quality: [f32; EVIDENCE_LEADS],
    /// Heart rate of the fused beats over the call's window (bpm).
    pub heart_rate_bpm: Option<f32>,
    /// Ventricular beats in the run (ventricular tachycardia).
    pub ventricular_beats: Option<u16>,
    /// Ventricular tachycardia: median correlation of each beat of the run with the
    /// one before, on the most consistent usable lead.
    pub run_consistency: Option<f32>,
    /// Ventricular tachycardia: coefficient of variation of the run's RR intervals.
    pub run_rr_cv: Option<f32>,
    /// Dominant frequency of the ECG (Hz; flutter/fibrillation).
    pub dominant_hz: Option<f32>,
    /// The pulse channel judged, if the stream has one.
    pub pulse: Option<PulseEvidence>,
    /// Set when the ECG met the criterion but other evidence suppressed the alarm.
    pub suppressed_by: Option<Suppression>,
}

/// One condition's call in one assessment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LethalCall {
    /// One of [`LETHAL_CONDITIONS`].
    pub condition: Condition,
    /// Present (alarm now), Absent (assessed on usable signal, not there) or
    /// Indeterminate (no usable channel).
    pub status: FindingStatus,
    /// Start of the event (Present, or a suppressed candidate) or of the window
    /// assessed (ECG sample index).
    pub start_sample: u64,
    /// Asystole: pause (s); bradycardia, tachycardia, VT: rate (bpm); VF: dominant
    /// frequency (Hz).
    pub value: Option<f32>,
    /// What raised or suppressed it.
    pub evidence: Evidence,
}

/// The five calls of one tick.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LethalAssessment {
    /// The analysis ends here (exclusive, ECG sample index); a multiple of the tick.
    pub end_sample: u64,
    /// One per condition, in the order of [`LETHAL_CONDITIONS`].
    pub calls: [LethalCall; 5],
}

impl LethalAssessment {
    /// The call for `c`, if it is one of the five.
    pub fn call(&self, c: Condition) -> Option<&LethalCall> {
        self.calls.iter().find(|x| x.condition == c)
    }
}

/// One detection of one lead, for display and diagnosis.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// ECG sample of the complex (its steepest slope).
    pub sample: u64,
    /// Passed the lead's detection threshold (a beat); otherwise a smaller peak.
    pub beat: bool,
    /// Its slope over the lead's current beat level.
    pub slope_ratio: f32,
    /// Peak-to-peak amplitude (mV).
    pub amplitude_mv: f32,
    /// QRS width estimate (s).
    pub width_s: f32,
    /// Correlation with the lead's dominant beat, once one is established.
    pub template_corr: Option<f32>,
}

/// What one pulse channel shows over a window.
#[derive(Debug, Clone, Copy, Default)]
struct PulseWindow {
    /// Signal present, not stuck, pulses learned.
    valid: bool,
    /// The channel has followed the ECG's beats recently.
    coupled: bool,
    coupling: f32,
    /// Pulses of normal size.
    count: u16,
    /// Longest interval without one (edges included, ECG samples).
    max_gap: u64,
    rate_bpm: Option<f32>,
    amplitude_ratio: Option<f32>,
    /// A regular train of steady pulses.
    regular: bool,
}

impl PulseWindow {
    /// Evidence a decision may rely on: a valid channel that followed the ECG, or whose
    /// pulses are too regular and steady to be artefact.
    fn trusted(&self) -> bool {
        self.valid && (self.coupled || self.regular)
    }
}

/// A beat of the fused (all-lead) sequence.
#[derive(Debug, Clone, Copy, Default)]
struct Fused {
    t: u64,
    /// Leads that found it.
    votes: u32,
    /// Summed quality of those leads.
    weight: f32,
    /// Summed quality of those leads that call it ventricular.
    v_weight: f32,
}

/// The streaming lethal-arrhythmia detector of one stream. See the module docs.
#[derive(Debug)]
pub struct LethalDetector {
    cfg: LethalConfig,
    p: LeadParams,
    leads: Vec<LeadFront>,
    pulses: Vec<PulseChannel>,
    spectrum: Spectrum,
    fs: f32,
    tick: u64,
    latency: u64,
    /// ECG samples pushed.
    n: u64,
    /// End of the next assessment.
    next_end: u64,
    // Scratch, allocated once.
    merged: Vec<(u64, usize, Beat)>,
    fused: Vec<Fused>,
    quality: Vec<f32>,
    times: Vec<u64>,
}

impl LethalDetector {
    /// A detector for a stream of `n_ecg_leads` ECG leads at `ecg_fs` Hz and the given
    /// pulse channels (kind and rate in Hz).
    pub fn new(
        cfg: &LethalConfig,
        ecg_fs: u32,
        n_ecg_leads: usize,
        pulses: &[(PulseKind, u32)],
    ) -> Self {
        let fs = ecg_fs.max(1);
        let tick = ((cfg.tick_s.max(0.05) * fs as f32).round() as u64).max(1);
        let history_s = 17.0f32.max(cfg.asystole_s + 2.0);
        let p = LeadParams::new(fs, tick, cfg.vf_s + 2.0);
        let leads = (0..n_ecg_leads)
            .map(|_| LeadFront::new(&p, history_s))
            .collect::<Vec<_>>();
        let pulses: Vec<PulseChannel> = pulses
            .iter()
            .map(|&(k, r)| {
                let floor = match k {
                    PulseKind::Pleth => cfg.pleth_floor_nu,
                    PulseKind::ArterialPressure => cfg.abp_floor_mmhg,
                };
                PulseChannel::new(k, r, fs, tick, history_s, floor)
            })
            .collect();
        let pulse_lat = pulses
            .iter()
            .map(PulseChannel::latency_ecg_samples)
            .max()
            .unwrap_or(0);
        let latency = p.beat_latency().max(pulse_lat) + 1;
        let spectrum = Spectrum::new(p.fv, cfg.vf_s);
        let cap: usize = leads.iter().map(|l| l.beats.len().max(128)).sum();
        Self {
            cfg: cfg.clone(),
            p,
            leads,
            pulses,
            spectrum,
            fs: fs as f32,
            tick,
            latency,
            n: 0,
            next_end: tick,
            merged: Vec::with_capacity(cap),
            fused: Vec::with_capacity(cap),
            quality: vec![0.0; n_ecg_leads],
            times: Vec::with_capacity(cap),
        }
    }

    /// Samples of pulse channel `channel` (physical units) covering the same device
    /// time as the ECG samples pushed next: push a frame's pulse data before its ECG.
    /// Unknown channels are ignored.
    pub fn push_pulse(&mut self, channel: usize, samples: &[f32]) {
        if let Some(c) = self.pulses.get_mut(channel) {
            c.push(samples);
        }
    }

    /// Pushes an ECG block, lead-major (`n_ecg_leads` × `n`, mV), with a lead-off
    /// flag per lead, and appends one assessment per tick it completes.
    pub fn push_ecg(&mut self, ecg_mv: &[f32], lead_off: &[bool], out: &mut Vec<LethalAssessment>) {
        let nl = self.leads.len();
        if nl == 0 {
            // No ECG lead: time still passes, every call is indeterminate.
            return;
        }
        let n = ecg_mv.len() / nl;
        let mut i = 0;
        while i < n {
            let due = self.next_end + self.latency;
            let m = ((due - self.n) as usize).min(n - i);
            for (l, lead) in self.leads.iter_mut().enumerate() {
                let off = lead_off.get(l).copied().unwrap_or(false);
                lead.push(&self.p, &ecg_mv[l * n + i..l * n + i + m], off);
            }
            self.n += m as u64;
            i += m;
            if self.n == due {
                let a = self.assess(self.next_end);
                out.push(a);
                self.next_end += self.tick;
            }
        }
    }

    /// Fixed decision latency (ECG samples): the assessment ending at sample `E` is
    /// appended by the `push_ecg` call that delivers sample `E + latency − 1`.
    pub fn latency_samples(&self) -> usize {
        self.latency as usize
    }

    /// The recent detections of ECG lead `lead` (about the last 17 s), oldest first:
    /// beats and the sub-threshold peaks the decisions also look at.
    pub fn lead_detections(&self, lead: usize) -> impl Iterator<Item = Detection> + '_ {
        self.leads.get(lead).into_iter().flat_map(|l| {
            l.beats.iter().map(|b| Detection {
                sample: b.t,
                beat: b.beat,
                slope_ratio: if b.level > 0.0 { b.e / b.level } else { 0.0 },
                amplitude_mv: b.amp,
                width_s: b.width,
                template_corr: b.corr.is_finite().then_some(b.corr),
            })
        })
    }

    /// The dominant beat of ECG lead `lead` once learned: QRS width estimate (s) and
    /// peak-to-peak amplitude (mV).
    pub fn lead_template(&self, lead: usize) -> Option<(f32, f32)> {
        self.leads.get(lead).and_then(LeadFront::template_shape)
    }

    /// The recent pulses of pulse channel `channel` (about the last 17 s), oldest first:
    /// ECG sample of the upstroke and amplitude in the channel's units.
    pub fn pulse_detections(&self, channel: usize) -> impl Iterator<Item = (u64, f32)> + '_ {
        self.pulses
            .get(channel)
            .into_iter()
            .flat_map(|c| c.pulses.iter().map(|p| (p.t, p.amp)))
    }

    /// Coupling of pulse channel `channel` with the ECG (0–1) and its median
    /// beat-to-pulse delay (s), for diagnosis.
    pub fn pulse_coupling(&self, channel: usize) -> Option<(f32, Option<f32>)> {
        self.pulses
            .get(channel)
            .map(|c| (c.coupling, c.median_delay()))
    }

    /// ECG samples between assessments.
    pub fn tick_samples(&self) -> usize {
        self.tick as usize
    }

    /// Bytes of state held for this stream (structure and heap, excluding code and the
    /// FFT plan's shared twiddles).
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.p.taps.capacity() * 4
            + self
                .leads
                .iter()
                .map(|l| std::mem::size_of::<LeadFront>() + l.heap_bytes())
                .sum::<usize>()
            + self
                .pulses
                .iter()
                .map(|c| std::mem::size_of::<PulseChannel>() + c.heap_bytes())
                .sum::<usize>()
            + self.spectrum.heap_bytes()
            + self.merged.capacity() * std::mem::size_of::<(u64, usize, Beat)>()
            + self.fused.capacity() * std::mem::size_of::<Fused>()
            + self.quality.capacity() * 4
            + self.times.capacity() * 8
    }

    fn secs(&self, s: f32) -> u64 {
        (s * self.fs).round().max(0.0) as u64
    }

    // ---------------------------------------------------------------- quality

    /// Quality (0–1) of lead `l` over `[a, e)`.
    fn lead_quality(&self, l: usize, a: u64, e: u64) -> f32 {
        let lead = &self.leads[l];
        let (t0, t1) = (a / self.tick, e.div_ceil(self.tick));
        let level = lead
            .beats
            .iter()
            .rev()
            .filter(|b| b.beat)
            .take(8)
            .map(|b| b.amp)
            .fold((0.0f32, 0usize), |(s, n), v| (s + v, n + 1));
        let ref_amp = match (lead.template_shape(), level) {
            (Some((_, amp)), _) => amp,
            (None, (s, n)) if n > 0 => s / n as f32,
            _ => 0.0,
        };
        let mut n = 0usize;
        let mut bad = 0.0f32;
        let mut worst_art = 0.0f32;
        let mut noise = 0.0f32;
        for s in lead.ticks.iter().filter(|s| s.tick >= t0 && s.tick < t1) {
            n += 1;
            bad += s.bad_frac();
            if ref_amp > 0.0 {
                worst_art = worst_art.max(s.range() / ref_amp);
            }
            let lvl = lead
                .beats
                .iter()
                .rev()
                .find(|b| b.beat)
                .map_or(0.0, |b| b.level);
            if lvl > 0.0 {
                noise += (s.e_min / lvl).min(1.0);
            }
        }
        if n == 0 {
            return 0.0;
        }
        let bad = bad / n as f32 + lead.clipped_frac(t0, t1);
        let noise = noise / n as f32;
        let q_bad = 1.0 - ramp(bad, 0.05, 0.3);
        let q_noise = 1.0 - ramp(noise, 0.15, 0.4);
        let q_art = if ref_amp > 0.0 {
            1.0 - ramp(worst_art, 5.0, 10.0)
        } else {
            0.5
        };
        q_bad * q_noise.min(q_art)
    }

    // ---------------------------------------------------------------- fusion

    /// Fuses the beats of the usable leads in `[a, e)` into `self.fused`.
    fn fuse(&mut self, a: u64, e: u64, min_q: f32) {
        self.merged.clear();
        for (l, lead) in self.leads.iter().enumerate() {
            if self.quality[l] < min_q {
                continue;
            }
            for b in lead.beats.iter().filter(|b| b.beat && b.t >= a && b.t < e) {
                // A beat accepted under the relaxed threshold after a long interval
                // must look like a QRS: steep, or shaped like the lead's usual beat.
                let steep = b.level > 0.0 && b.e >= CREDIBLE_SLOPE * b.level;
                if steep || b.corr >= CREDIBLE_CORR {
                    self.merged.push((b.t, l, b));
                }
            }
        }
        self.merged.sort_unstable_by_key(|m| m.0);
        self.fused.clear();
        let tol = self.secs(0.1);
        let vcfg = (self.cfg.vt_max_corr, self.cfg.vt_min_width_ratio);
        for &(t, l, b) in &self.merged {
            let q = self.quality[l];
            let shape = self.leads[l].template_shape();
            let v = is_ventricular(&b, shape, vcfg);
            match self.fused.last_mut() {
                Some(f) if t <= f.t + tol && f.votes & (1 << l.min(31)) == 0 => {
                    f.votes |= 1 << l.min(31);
                    f.weight += q;
                    if v {
                        f.v_weight += q;
                    }
                }
                _ => self.fused.push(Fused {
                    t,
                    votes: 1 << l.min(31),
                    weight: q,
                    v_weight: if v { q } else { 0.0 },
                }),
            }
        }
    }

    /// Re-votes the ventricular class of every fused beat over all usable leads with a
    /// learned dominant beat, each lead judging the complex it shows at that time: a
    /// beat or a smaller peak, or none (a complex that vanished from a lead where the
    /// dominant beat is plain has changed its axis).
    fn vote_ventricular(&mut self, min_q: f32) {
        let tol = self.secs(0.1);
        let vcfg = (self.cfg.vt_max_corr, self.cfg.vt_min_width_ratio);
        for f in &mut self.fused {
            f.v_weight = 0.0;
            f.weight = 0.0;
        }
        for (l, lead) in self.leads.iter().enumerate() {
            let q = self.quality[l];
            let Some(shape) = lead.template_shape() else {
                continue;
            };
            if q < min_q {
                continue;
            }
            let mut j = 0usize;
            let n = lead.beats.len();
            for f in &mut self.fused {
                while j < n && lead.beats.get(j).t + tol < f.t {
                    j += 1;
                }
                // Nearest peak within the tolerance.
                let mut best: Option<Beat> = None;
                let mut k = j;
                while k < n && lead.beats.get(k).t <= f.t + tol {
                    let b = lead.beats.get(k);
                    if best.is_none_or(|x: Beat| b.t.abs_diff(f.t) < x.t.abs_diff(f.t)) {
                        best = Some(b);
                    }
                    k += 1;
                }
                let v = best.is_none_or(|b| is_ventricular(&b, Some(shape), vcfg));
                f.weight += q;
                if v {
                    f.v_weight += q;
                }
            }
        }
    }

    fn base_evidence(&self, min_q: f32) -> Evidence {
        let mut ev = Evidence::default();
        for (l, &q) in self.quality.iter().enumerate() {
            if l < EVIDENCE_LEADS {
                ev.lead_quality[l] = q;
            }
            if q >= min_q && l < 32 {
                ev.leads_usable |= 1 << l;
            }
        }
        ev
    }

    // ---------------------------------------------------------------- pulses

    /// What pulse channel `i` shows over `[a, e)`.
    fn pulse_window(&self, i: usize, a: u64, e: u64) -> PulseWindow {
        let c = &self.pulses[i];
        let bad = pulse_bad_frac(c, a, e, self.tick);
        let reference = c.reference();
        let valid = bad < 0.2 && reference.is_some() && c.covered_until() >= e;
        let rf = reference.unwrap_or(f32::INFINITY);
        let mut w = PulseWindow {
            valid,
            coupled: c.coupled(),
            coupling: c.coupling,
            ..PulseWindow::default()
        };
        let mut prev = a;
        let mut first = None;
        let (mut imin, mut imax) = (u64::MAX, 0u64);
        let mut ratios = [0.0f32; 16];
        for pl in c.pulses.iter().filter(|pl| pl.t >= a && pl.t < e) {
            let r = pl.amp / rf;
            if r < self.cfg.pulse_min_amplitude {
                continue;
            }
            if (w.count as usize) < ratios.len() {
                ratios[w.count as usize] = r;
            }
            if first.is_some() {
                imin = imin.min(pl.t - prev);
                imax = imax.max(pl.t - prev);
            }
            w.max_gap = w.max_gap.max(pl.t - prev);
            first.get_or_insert(pl.t);
            prev = pl.t;
            w.count += 1;
        }
        w.max_gap = w.max_gap.max(e - prev);
        if let Some(f) = first {
            if w.count >= 2 && prev > f {
                w.rate_bpm = Some(60.0 * f32::from(w.count - 1) / ((prev - f) as f32 / self.fs));
            }
            w.amplitude_ratio = Some(ring::median_small(&ratios[..(w.count as usize).min(16)]));
        }
        // A regular train: intervals within a factor 1.5 of each other (amplitudes may
        // alternate, as in pulsus alternans or bigeminy).
        w.regular = w.count >= 3 && imax as f32 <= 1.5 * imin as f32;
        w
    }

    /// Pulse evidence of the best pulse channel over `[a, e)`.
    fn pulse_evidence(&self, a: u64, e: u64) -> Option<PulseEvidence> {
        if !self.cfg.use_pulse {
            return None;
        }
        let mut best: Option<(f32, PulseEvidence)> = None;
        for (i, c) in self.pulses.iter().enumerate() {
            let w = self.pulse_window(i, a, e);
            let usable = w.trusted();
            let pe = PulseEvidence {
                channel: i.min(255) as u8,
                kind: c.kind,
                usable,
                coupling: w.coupling,
                regular: w.regular,
                pulses: w.count,
                rate_bpm: w.rate_bpm,
                amplitude_ratio: w.amplitude_ratio,
            };
            let score =
                f32::from(u8::from(usable)) * 2.0 + f32::from(u8::from(w.valid)) + w.coupling;
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, pe));
            }
        }
        best.map(|(_, p)| p)
    }

    /// Whether a trusted pulse channel shows pulses of normal size through `[a, e)`:
    /// at least two, no gap (edges included) over 2.5 s.
    fn pulse_through(&self, a: u64, e: u64) -> bool {
        if !self.cfg.use_pulse {
            return false;
        }
        let max_gap = self.secs(2.5);
        (0..self.pulses.len()).any(|i| {
            let w = self.pulse_window(i, a, e);
            w.trusted() && w.count >= 2 && w.max_gap <= max_gap
        })
    }

    // ---------------------------------------------------------------- assessment

    fn assess(&mut self, e: u64) -> LethalAssessment {
        let tick_start = e.saturating_sub(self.tick);
        self.update_coupling(e);
        let calls = [
            self.asystole(e, tick_start),
            self.brady(e, tick_start),
            self.tachy(e, tick_start),
            self.vt(e, tick_start),
            self.vf(e),
        ];
        LethalAssessment {
            end_sample: e,
            calls,
        }
    }

    /// Beat-to-pulse coupling of every pulse channel, from the fused beats of
    /// `[e − 3 s, e − 2 s)` (their pulses, up to 1 s later, are all known by now).
    fn update_coupling(&mut self, e: u64) {
        if self.pulses.is_empty() || e < self.secs(6.0) {
            return;
        }
        let (b0, b1) = (e - self.secs(3.0), e - self.secs(2.0));
        self.set_quality(e - self.secs(6.0), b1);
        self.fuse(
            b0 - self.secs(1.0),
            e - self.secs(1.0),
            self.cfg.min_lead_quality.max(0.7),
        );
        let mut beats = [0u64; 32];
        let mut n = 0;
        for f in &self.fused {
            if n < beats.len() {
                beats[n] = f.t;
                n += 1;
            }
        }
        let min_amp = self.cfg.pulse_min_amplitude;
        for c in &mut self.pulses {
            c.update_coupling(&beats[..n], b0, b1, min_amp);
        }
    }

    fn set_quality(&mut self, a: u64, e: u64) {
        for l in 0..self.leads.len() {
            self.quality[l] = self.lead_quality(l, a, e);
        }
    }

    fn call(
        condition: Condition,
        status: FindingStatus,
        start: u64,
        value: Option<f32>,
        ev: Evidence,
    ) -> LethalCall {
        LethalCall {
            condition,
            status,
            start_sample: start,
            value,
            evidence: ev,
        }
    }

    fn asystole(&mut self, e: u64, tick_start: u64) -> LethalCall {
        let c = Condition::Asystole;
        let win = self.secs(self.cfg.asystole_s);
        let horizon = self.secs(16.0).max(win + self.tick);
        let a = e.saturating_sub(horizon);
        let min_q = self.cfg.min_lead_quality;
        // Quality over the last asystole window decides which leads vote.
        self.set_quality(e.saturating_sub(win), e);
        self.fuse(a, e, min_q);
        let mut ev = self.base_evidence(min_q);
        if ev.leads_usable == 0 {
            return Self::call(
                c,
                FindingStatus::Indeterminate,
                e.saturating_sub(win),
                None,
                ev,
            );
        }
        // Longest beat-free gap ending in this tick (or still open at e).
        let mut gap: Option<(u64, u64)> = None;
        let mut prev = a;
        for f in &self.fused {
            if f.t > tick_start && f.t - prev >= win && f.t <= e {
                gap = Some((prev, f.t));
            }
            prev = f.t;
        }
        if e - prev >= win && e > prev {
            gap = Some((prev, e));
        }
        if prev == a && self.fused.is_empty() && e < horizon {
            // Not enough history yet to call a pause.
            gap = gap.filter(|&(s, _)| s > 0);
        }
        let Some((g0, g1)) = gap else {
            return Self::call(c, FindingStatus::Absent, e.saturating_sub(win), None, ev);
        };
        ev.leads_for = ev.leads_usable;
        ev.pulse = self.pulse_evidence(g0, g1);
        let value = Some((g1 - g0) as f32 / self.fs);
        let mut ts = std::mem::take(&mut self.times);
        let added = self.with_low_amplitude(g0, g1, min_q, &mut ts);
        let max_gap = ts
            .iter()
            .chain(std::iter::once(&g1))
            .fold((g0, 0u64), |(p, m), &t| (t, m.max(t - p)))
            .1;
        self.times = ts;
        if added > 0 && max_gap < win {
            ev.suppressed_by = Some(Suppression::LowAmplitudeBeats);
            return Self::call(c, FindingStatus::Absent, g0, value, ev);
        }
        // Pulses now: over the last asystole window of the pause.
        if self.pulse_through(g1.saturating_sub(win).max(g0 + self.secs(0.3)), g1) {
            ev.suppressed_by = Some(Suppression::PulsePresent);
            return Self::call(c, FindingStatus::Absent, g0, value, ev);
        }
        Self::call(c, FindingStatus::Present, g0, value, ev)
    }

    /// The fused beats of `[s0, s1]` together with the smaller peaks of usable leads
    /// shaped like their lead's dominant beat (missed low-amplitude beats), sorted, in
    /// `out`; returns how many such peaks were added.
    fn with_low_amplitude(&self, s0: u64, s1: u64, min_q: f32, out: &mut Vec<u64>) -> usize {
        out.clear();
        out.extend(
            self.fused
                .iter()
                .map(|f| f.t)
                .filter(|&t| t >= s0 && t <= s1),
        );
        let tol = self.secs(0.15);
        let mut added = 0;
        for (l, lead) in self.leads.iter().enumerate() {
            if self.quality[l] < min_q || lead.template_shape().is_none() {
                continue;
            }
            for b in lead
                .beats
                .iter()
                .filter(|b| !b.beat && b.t > s0 && b.t < s1)
            {
                if b.corr >= LOW_AMP_CORR
                    && b.level > 0.0
                    && b.e >= LOW_AMP_SLOPE * b.level
                    && !out.iter().any(|&t| t.abs_diff(b.t) <= tol)
                {
                    out.push(b.t);
                    added += 1;
                }
            }
        }
        out.sort_unstable();
        added
    }

    fn brady(&mut self, e: u64, tick_start: u64) -> LethalCall {
        let c = Condition::ExtremeBradycardia;
        let nb = self.cfg.brady_beats.max(2);
        let horizon = self.secs(16.0);
        let a = e.saturating_sub(horizon);
        let min_q = self.cfg.min_lead_quality;
        self.set_quality(e.saturating_sub(self.secs(8.0)), e);
        self.fuse(a, e, min_q);
        let mut ev = self.base_evidence(min_q);
        if ev.leads_usable == 0 {
            return Self::call(c, FindingStatus::Indeterminate, a, None, ev);
        }
        let brady_bpm = self.cfg.brady_bpm * (1.0 + self.cfg.rate_tolerance);
        let max_span = (nb - 1) as f32 * 60.0 / brady_bpm * self.fs;
        let mut found: Option<(u64, u64, f32)> = None;
        let f = &self.fused;
        for j in (nb - 1)..f.len() {
            if f[j].t <= tick_start || f[j].t > e {
                continue;
            }
            let span = (f[j].t - f[j + 1 - nb].t) as f32;
            if span > max_span {
                let hr = 60.0 * (nb - 1) as f32 / (span / self.fs);
                found = Some((f[j + 1 - nb].t, f[j].t, hr));
            }
        }
        // An ongoing pause counts as the last interval.
        if f.len() >= nb - 1 && found.is_none() {
            let first = f[f.len() + 1 - nb].t;
            let span = (e - first) as f32;
            if span > max_span && first >= a && !f.is_empty() {
                let hr = 60.0 * (nb - 1) as f32 / (span / self.fs);
                found = Some((first, e, hr));
            }
        }
        let Some((s0, s1, hr)) = found else {
            let hr = fused_rate(&self.fused, self.fs);
            ev.heart_rate_bpm = hr;
            return Self::call(c, FindingStatus::Absent, a, hr, ev);
        };
        ev.leads_for = ev.leads_usable;
        ev.heart_rate_bpm = Some(hr);
        ev.pulse = self.pulse_evidence(s0, s1);
        let mut ts = std::mem::take(&mut self.times);
        let added = self.with_low_amplitude(s0, s1, min_q, &mut ts);
        let hr_with = if ts.len() >= 2 && s1 > s0 {
            60.0 * (ts.len() - 1) as f32 / ((s1 - s0) as f32 / self.fs)
        } else {
            0.0
        };
        self.times = ts;
        if added > 0 && hr_with >= self.cfg.brady_bpm {
            ev.suppressed_by = Some(Suppression::LowAmplitudeBeats);
            return Self::call(c, FindingStatus::Absent, s0, Some(hr), ev);
        }
        if let Some(pe) = ev.pulse {
            if pe.usable
                && pe.rate_bpm.is_some_and(|r| r >= 1.25 * self.cfg.brady_bpm)
                && pe.pulses as usize >= nb
            {
                ev.suppressed_by = Some(Suppression::PulseRateDisagrees);
                return Self::call(c, FindingStatus::Absent, s0, Some(hr), ev);
            }
        }
        Self::call(c, FindingStatus::Present, s0, Some(hr), ev)
    }

    fn tachy(&mut self, e: u64, tick_start: u64) -> LethalCall {
        let c = Condition::ExtremeTachycardia;
        let nb = self.cfg.tachy_beats.max(2);
        let horizon = self.secs(16.0);
        let a = e.saturating_sub(horizon);
        let min_q = self.cfg.min_lead_quality;
        self.set_quality(e.saturating_sub(self.secs(8.0)), e);
        self.fuse(a, e, min_q);
        let mut ev = self.base_evidence(min_q);
        if ev.leads_usable == 0 {
            return Self::call(c, FindingStatus::Indeterminate, a, None, ev);
        }
        let max_rr = 60.0 / (self.cfg.tachy_bpm * (1.0 - self.cfg.rate_tolerance)) * self.fs;
        let mut found: Option<(u64, u64, f32)> = None;
        let f = &self.fused;
        let mut rr = [0.0f32; 64];
        for j in (nb - 1)..f.len() {
            if f[j].t <= tick_start || f[j].t > e {
                continue;
            }
            // Median RR of the window: one missed or extra beat does not decide.
            let i0 = j + 1 - nb;
            let m = (nb - 1).min(rr.len());
            for (k, r) in rr[..m].iter_mut().enumerate() {
                *r = (f[i0 + k + 1].t - f[i0 + k].t) as f32;
            }
            let med = median_any(&mut rr[..m]);
            if med < max_rr {
                found = Some((f[i0].t, f[j].t, 60.0 * self.fs / med));
            }
        }
        let Some((s0, _s1, hr)) = found else {
            let hr = fused_rate(&self.fused, self.fs);
            ev.heart_rate_bpm = hr;
            return Self::call(c, FindingStatus::Absent, a, hr, ev);
        };
        ev.leads_for = ev.leads_usable;
        ev.heart_rate_bpm = Some(hr);
        ev.pulse = self.pulse_evidence(s0, e);
        Self::call(c, FindingStatus::Present, s0, Some(hr), ev)
    }

    fn vt(&mut self, e: u64, tick_start: u64) -> LethalCall {
        let c = Condition::VentricularTachycardia;
        let nb = self.cfg.vt_beats.max(2);
        let horizon = self.secs(10.0);
        let a = e.saturating_sub(horizon);
        let min_q = self.cfg.min_lead_quality;
        self.set_quality(e.saturating_sub(self.secs(6.0)), e);
        self.fuse(a, e, min_q);
        self.vote_ventricular(min_q);
        let mut ev = self.base_evidence(min_q);
        if ev.leads_usable == 0 {
            return Self::call(c, FindingStatus::Indeterminate, a, None, ev);
        }
        let max_rr = 60.0 / (self.cfg.vt_bpm * (1.0 - self.cfg.rate_tolerance)) * self.fs;
        // Runs of ventricular fused beats.
        let mut found: Option<(usize, usize, f32)> = None;
        let f = &self.fused;
        let mut run_start = 0usize;
        let mut run_len = 0usize;
        for j in 0..f.len() {
            let v = f[j].v_weight >= 0.5 * f[j].weight && f[j].weight > 0.0;
            if v {
                if run_len == 0 {
                    run_start = j;
                }
                run_len += 1;
            } else {
                run_len = 0;
            }
            if run_len >= nb && f[j].t > tick_start && f[j].t <= e {
                let i0 = j + 1 - nb;
                let span = (f[j].t - f[i0].t) as f32;
                if span < (nb - 1) as f32 * max_rr {
                    let hr = 60.0 * (nb - 1) as f32 / (span / self.fs);
                    found = Some((run_start, j, hr));
                }
            }
        }
        let Some((i0, i1, hr)) = found else {
            ev.heart_rate_bpm = fused_rate(&self.fused, self.fs);
            return Self::call(c, FindingStatus::Absent, a, None, ev);
        };
        let (s0, s1) = (self.fused[i0].t, self.fused[i1].t);
        let mut leads_for = 0u32;
        for fb in &self.fused[i0..=i1] {
            leads_for |= fb.votes;
        }
        ev.leads_for = leads_for & ev.leads_usable;
        ev.heart_rate_bpm = Some(hr);
        ev.ventricular_beats = Some((i1 + 1 - i0).min(u16::MAX as usize) as u16);
        let (cons, cv) = self.run_shape(i0, i1, min_q);
        ev.run_consistency = cons;
        ev.run_rr_cv = cv;
        ev.pulse = self.pulse_evidence(s0, s1 + self.secs(0.5));
        if self.pulse_unperturbed(s0, s1, e) {
            ev.suppressed_by = Some(Suppression::PulseUnperturbed);
            return Self::call(c, FindingStatus::Absent, s0, Some(hr), ev);
        }
        Self::call(c, FindingStatus::Present, s0, Some(hr), ev)
    }

    /// Beat-to-beat consistency of a run of fused beats (the best usable lead's median
    /// correlation of each beat with the one before) and the spread of its RR
    /// intervals (coefficient of variation).
    fn run_shape(&self, i0: usize, i1: usize, min_q: f32) -> (Option<f32>, Option<f32>) {
        let (s0, s1) = (self.fused[i0].t, self.fused[i1].t);
        let tol = self.secs(0.1);
        let mut best: Option<f32> = None;
        for (l, lead) in self.leads.iter().enumerate() {
            if self.quality[l] < min_q {
                continue;
            }
            let mut v = [0.0f32; 16];
            let mut n = 0;
            for b in lead
                .beats
                .iter()
                .filter(|b| b.beat && b.t + tol >= s0 && b.t <= s1 + tol)
            {
                if b.corr_prev.is_finite() && n < v.len() {
                    v[n] = b.corr_prev;
                    n += 1;
                }
            }
            if n >= 2 {
                let m = ring::median_small(&v[..n]);
                best = Some(best.map_or(m, |x: f32| x.max(m)));
            }
        }
        let n = i1 - i0;
        let cv = (n >= 2).then(|| {
            let mut s = 0.0f32;
            let mut ss = 0.0f32;
            for k in i0..i1 {
                let r = (self.fused[k + 1].t - self.fused[k].t) as f32;
                s += r;
                ss += r * r;
            }
            let m = s / n as f32;
            ((ss / n as f32 - m * m).max(0.0)).sqrt() / m
        });
        (best, cv)
    }

    /// Whether a trusted pulse channel beat on through `[s0, s1]` exactly as before
    /// it: every pulse interval from the last pulse before the event to the first after
    /// it within ±25 % of the median interval of the 8 s before, every pulse at least
    /// 70 % of the median amplitude before. A ventricular run changes the filling and
    /// timing of the beats it replaces; an artefact on the ECG does not touch the pulse.
    fn pulse_unperturbed(&self, s0: u64, s1: u64, e: u64) -> bool {
        if !self.cfg.use_pulse {
            return false;
        }
        let pre0 = s0.saturating_sub(self.secs(8.0));
        (0..self.pulses.len()).any(|i| {
            let c = &self.pulses[i];
            let pw = self.pulse_window(i, pre0, s0);
            if !pw.trusted() {
                return false;
            }
            let d = self.secs(c.median_delay().unwrap_or(0.2).max(0.0));
            let (p0, p1) = (pre0 + d, s0 + d);
            let mut iv = [0.0f32; 16];
            let mut am = [0.0f32; 16];
            let (mut ni, mut na) = (0usize, 0usize);
            let mut prev: Option<u64> = None;
            for pl in c.pulses.iter().filter(|pl| pl.t >= p0 && pl.t < p1) {
                if let Some(q) = prev {
                    if ni < iv.len() {
                        iv[ni] = (pl.t - q) as f32;
                        ni += 1;
                    }
                }
                if na < am.len() {
                    am[na] = pl.amp;
                    na += 1;
                }
                prev = Some(pl.t);
            }
            if ni < 3 {
                return false;
            }
            let (mi, ma) = (ring::median_small(&iv[..ni]), ring::median_small(&am[..na]));
            let Some(mut prev) = prev else {
                return false;
            };
            // Through the event and up to the first pulse after it, as far as the
            // pulses are known (up to the assessment's end).
            let end = (s1 + d + (1.5 * mi) as u64).min(e);
            let mut n = 0;
            for pl in c.pulses.iter().filter(|pl| pl.t >= p1 && pl.t <= end) {
                let r = (pl.t - prev) as f32 / mi;
                if !(0.85..=1.18).contains(&r) || pl.amp < 0.7 * ma {
                    return false;
                }
                prev = pl.t;
                n += 1;
                if pl.t > s1 + d {
                    break;
                }
            }
            n >= 2 && (prev > s1 + d || e - prev <= (1.2 * mi) as u64)
        })
    }

    fn vf(&mut self, e: u64) -> LethalCall {
        let c = Condition::VentricularFibrillation;
        let win = self.secs(self.cfg.vf_s);
        let a = e.saturating_sub(win);
        let min_q = self.cfg.min_lead_quality;
        // Flutter/fibrillation is itself "noisy": only missing, stuck or lead-off
        // signal makes a lead unusable here.
        let (t0, t1) = (a / self.tick, e.div_ceil(self.tick));
        for l in 0..self.leads.len() {
            let lead = &self.leads[l];
            let mut n = 0;
            let mut bad = 0.0;
            for s in lead.ticks.iter().filter(|s| s.tick >= t0 && s.tick < t1) {
                n += 1;
                bad += s.bad_frac();
            }
            let bad = if n == 0 { 1.0 } else { bad / n as f32 } + lead.clipped_frac(t0, t1);
            self.quality[l] = if n == 0 {
                0.0
            } else {
                1.0 - ramp(bad, 0.05, 0.3)
            };
        }
        let mut ev = self.base_evidence(min_q);
        if ev.leads_usable == 0 || e < win + self.latency {
            let status = if ev.leads_usable == 0 {
                FindingStatus::Indeterminate
            } else {
                FindingStatus::Absent
            };
            return Self::call(c, status, a, None, ev);
        }
        let mut w_for = 0.0f32;
        let mut w_all = 0.0f32;
        let mut dom = 0.0f32;
        let mut best_w = 0.0f32;
        for l in 0..self.leads.len() {
            let q = self.quality[l];
            if q < min_q {
                continue;
            }
            let feats = self.spectral(l, a);
            w_all += q;
            if self.vf_like(&feats) {
                w_for += q;
                if l < 32 {
                    ev.leads_for |= 1 << l;
                }
                if q > best_w {
                    best_w = q;
                    dom = feats.dominant_hz;
                }
            }
        }
        if w_for <= 0.0 || w_for < 0.5 * w_all {
            return Self::call(c, FindingStatus::Absent, a, None, ev);
        }
        ev.dominant_hz = Some(dom);
        ev.pulse = self.pulse_evidence(a, e);
        if self.pulse_through(a, e) {
            ev.suppressed_by = Some(Suppression::PulsePresent);
            return Self::call(c, FindingStatus::Absent, a, Some(dom), ev);
        }
        Self::call(c, FindingStatus::Present, a, Some(dom), ev)
    }

    fn spectral(&mut self, l: usize, a: u64) -> SpectralFeatures {
        let h = self.leads[l].vf_history();
        // First history sample at or after ECG time a.
        let fv = self.p.fv as f64;
        let n_hist = h.count();
        let mut j0 = ((a as f64 / self.fs as f64) * fv).floor() as u64;
        while j0 + 1 < n_hist && LeadFront::vf_time(&self.p, j0) < a as i64 {
            j0 += 1;
        }
        while j0 > 0 && LeadFront::vf_time(&self.p, j0 - 1) >= a as i64 {
            j0 -= 1;
        }
        self.spectrum.analyse(h, j0)
    }

    fn vf_like(&self, f: &SpectralFeatures) -> bool {
        f.dominant_hz >= self.cfg.vf_min_hz
            && f.dominant_hz <= self.cfg.vf_max_hz
            && f.concentration >= self.cfg.vf_min_concentration
            && f.high_frac <= self.cfg.vf_max_high_frac
            && f.rms_mv >= 0.03
    }
}

fn pulse_bad_frac(c: &PulseChannel, a: u64, e: u64, tick: u64) -> f32 {
    let (t0, t1) = (a / tick, e.div_ceil(tick));
    let mut n = 0usize;
    let mut bad = 0.0f32;
    for s in c.ticks.iter().filter(|s| s.tick >= t0 && s.tick < t1) {
        n += 1;
        bad += f32::from(s.bad) / f32::from(s.n.max(1));
    }
    if n == 0 {
        1.0
    } else {
        bad / n as f32
    }
}

fn is_ventricular(b: &Beat, shape: Option<(f32, f32)>, (max_corr, wr): (f32, f32)) -> bool {
    let Some((w, _)) = shape else {
        // No dominant beat learned yet: only a clearly wide complex.
        return b.width >= 0.12;
    };
    let corr = if b.corr.is_finite() { b.corr } else { 1.0 };
    corr < max_corr || b.width >= wr * w
}

/// Median of a slice (sorted in place); 0 when empty.
fn median_any(v: &mut [f32]) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable_by(f32::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn fused_rate(f: &[Fused], fs: f32) -> Option<f32> {
    if f.len() < 2 {
        return None;
    }
    let span = (f[f.len() - 1].t - f[0].t) as f32 / fs;
    (span > 0.0).then(|| 60.0 * (f.len() - 1) as f32 / span)
}

/// 0 at or below `lo`, 1 at or above `hi`, linear between.
fn ramp(x: f32, lo: f32, hi: f32) -> f32 {
    ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
}
