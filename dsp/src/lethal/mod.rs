//! Lethal-arrhythmia alarms (IEC 60601-2-27): asystole, extreme bradycardia, extreme
//! tachycardia, ventricular tachycardia and ventricular flutter/fibrillation, from
//! every ECG lead of a stream (the augmented limb leads through the limb leads they
//! are computed from, [`analysed_leads`]) and, where the stream has them, its
//! plethysmogram and arterial-pressure waveforms. Pure and synchronous: samples are
//! pushed block by block (the results do not depend on the block sizes), nothing is
//! allocated per sample, and every tick (0.5 s by default) one [`LethalAssessment`]
//! calls all five conditions, each with the [`Evidence`] behind it.
//!
//! The defaults are the PhysioNet/CinC Challenge 2015 definitions: asystole, no QRS
//! for 4 s; extreme bradycardia, below 40 bpm over 5 beats; extreme tachycardia, above
//! 140 bpm over 17 beats; ventricular tachycardia, 5 or more ventricular beats above
//! 100 bpm; flutter/fibrillation, a fibrillatory, flutter or oscillatory waveform for
//! 4 s. Accuracy on the challenge's records: `docs/accuracy-alarms.md`.
//!
//! # Per lead (cheap, after decimation)
//! Each lead is decimated to about 125 Hz (a triangle filter, two multiply-adds per
//! input sample) and runs a light beat detector (slope energy, adaptive thresholds,
//! after Pan & Tompkins). Every detected complex keeps its amplitude, a QRS width
//! estimate and its correlation with the lead's dominant beat (the most used of four
//! beat clusters) and with the beat before. Each tick gets a quality 0–1 per lead:
//! samples present (lead-off and missing samples count against it), not clipped at a
//! rail, a low high-frequency noise floor, no artefact swings far beyond the dominant
//! beat's size, and beats that resemble a recurring shape (noise makes detections of
//! every shape).
//!
//! # Fusion over the leads
//! A beat of a lead usable at its time joins the fused beat sequence; beats of
//! different leads within 100 ms are one. A fused beat is found by any usable lead (a
//! lead that misses low-amplitude beats cannot fake a pause) and an unusable lead can
//! add none (noise cannot break a pause or fake a rate). Whether a fused beat is
//! ventricular is voted by every usable lead with a learned dominant beat, each judging
//! the complex it shows at that time (shape and size against its dominant beat, width)
//! and weighted by its quality.
//!
//! # The calls
//! - **Asystole**: a gap of `asystole_s` in the fused beats. Suppressed when smaller
//!   complexes shaped like a lead's dominant beat fill the gap (low-amplitude beats
//!   the detector missed), or when a trusted pulse channel shows pulses of normal size
//!   through the last `asystole_s` of the gap.
//! - **Extreme bradycardia**: `brady_beats` fused beats spanning more than the limit
//!   (an ongoing pause counts as the last interval); suppressed by missed
//!   low-amplitude beats that lift the rate past the limit, or a trusted pulse at 1.25
//!   times the limit or more.
//! - **Extreme tachycardia**: the median RR of `tachy_beats` fused beats below the
//!   limit (one missed or extra beat does not decide); when three leads or more
//!   found beats in the window, a fused beat that one lead alone found, shaped unlike
//!   both that lead's dominant beat and its beat before, does not count (one lead's T
//!   wave or artefact cannot raise it; a true QRS the other leads missed keeps its
//!   lead's shape and counts; with two leads, one against one cannot tell which is
//!   right). Not suppressed by
//!   the pulse: a pulse deficit is common in true tachycardia.
//! - **Ventricular tachycardia**: `vt_beats` consecutive ventricular fused beats
//!   above the rate limit. Suppressed when the run's complexes do not resemble one
//!   another on any usable lead (artefact), when a usable lead showed only its
//!   dominant beat through the run, at the rhythm it had before (every interval within
//!   `vt_rhythm_tolerance` of its median before the run, none missing: the ventricles
//!   cannot beat their usual way at their usual rhythm through a ventricular run, so
//!   the run's complexes on the other leads are artefact or aberrant shapes of the same
//!   beats), or when a trusted pulse channel beat on through the run exactly as before
//!   it (interval range, mean rate and size: an artefact on the ECG does not touch the
//!   pulse, a ventricular run does). With `vt_pulse_wait_s` above 0 (off by default),
//!   while such a channel, its pulses so far in rhythm, has not yet shown the two
//!   pulses after the run's start that decide, and its next pulse is not overdue, the
//!   call waits for them (at most `vt_pulse_wait_s` after the run's last beat), so a
//!   run is not raised on its first tick only to be suppressed on the next; a run that
//!   stopped the pulse is raised as soon as a pulse is overdue. By default the call is
//!   made on the pulses known: a run raised on its first tick and suppressed on the
//!   next stays raised for that tick, which is what kept a true held-out VT alarm
//!   with an unperturbed pulse. Suppressed as the pacemaker's (`paced_beats`) when
//!   every beat of the run came 0–`paced_capture_s` after its own reported pacemaker
//!   pulse at a steady delay (spread ≤ 60 ms), with no more than two reported pulses
//!   per beat and a rate of at most `paced_max_bpm`.
//! - **Ventricular flutter/fibrillation**: on at least half the usable leads (by
//!   quality), the power spectrum of the last `vf_s` concentrated around a dominant
//!   frequency of 2.5–10 Hz with little above 12 Hz. Ruled out by organised QRS
//!   complexes on a usable lead, suppressed by a trusted pulse through the window.
//! - Rate limits carry a tolerance (`rate_tolerance`, 10 %): monitors average heart
//!   rate in their own ways, and at a limit a missed alarm costs more than a false one.
//!
//! A pulse channel is trusted when its signal is present, its pulses (upstrokes of
//! the slope-sum function, at least 30 % of its recent median size and above an
//! absolute floor) have followed the ECG's beats at a steady delay recently, or form
//! a train too regular to be artefact.
//!
//! `Present` means "alarm now"; `Absent` that the condition was assessed on usable
//! signal (a suppressed candidate is `Absent` with [`Evidence::suppressed_by`] set);
//! `Indeterminate` that no lead was usable.
//!
//! # Latency and ticks
//! The assessment ending at sample `E` (a multiple of the tick, counted from sample
//! 0) is appended by the `push_ecg` call that delivers sample
//! `E + latency_samples() − 1` (about 0.3 s). Pulse data of a frame is pushed before
//! its ECG and may run up to 10 s ahead of it.

mod decide;
mod lead;
mod pulse;
mod ring;
pub mod score;
mod spectrum;

use ecg_types::{Condition, FindingStatus, Lead, PulseKind};

use crate::pace::RecentPulses;
use serde::{Deserialize, Serialize};

use decide::Fused;
use lead::{LeadFront, LeadParams, Scratch};
use pulse::PulseChannel;
use ring::Ring;
use spectrum::Spectrum;

thread_local! {
    /// The leads' chunk buffers ([`Scratch`]), one per thread: every detector's
    /// leads use them in turn, and they are neither zeroed per block nor held per
    /// stream.
    static SCRATCH: std::cell::RefCell<Scratch> = const { std::cell::RefCell::new(Scratch::new()) };
}

/// Leads that can vote: the evidence masks have one bit per lead.
pub(crate) const MAX_VOTING_LEADS: usize = 32;

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
    /// Tolerance of the asystole pause (share): a pause of at least `asystole_s × (1 −
    /// asystole_tolerance)` counts. Monitors time a pause from their own fiducial
    /// points, and at the limit a missed alarm costs more than a false one.
    pub asystole_tolerance: f32,
    /// A lead votes when its signal quality (0 unusable … 1 clean) over the call's
    /// window is at least this.
    pub min_lead_quality: f32,
    /// A beat is ventricular when its likeness to its lead's dominant beat (the
    /// correlation of their shapes times the square root of their amplitude ratio,
    /// at most 1) is below this ...
    pub vt_max_corr: f32,
    /// ... or its QRS is at least this many times as wide as the dominant beat's.
    pub vt_min_width_ratio: f32,
    /// A run whose successive complexes correlate less than this (median, on its most
    /// consistent usable lead) is not a ventricular rhythm but artefact.
    pub vt_min_consistency: f32,
    /// A ventricular-tachycardia run is suppressed when a usable lead showed its
    /// dominant beat through it at the rhythm it had before, every interval within this
    /// share of that rhythm's median interval (0 turns the test off).
    pub vt_rhythm_tolerance: f32,
    /// Ventricular tachycardia: while a trusted pulse channel that kept its rhythm so
    /// far has not yet shown the two pulses after a run's start that decide whether it
    /// beat on unperturbed, the call waits for them, up to this long after the run's
    /// last beat (s; 0, the default: the call is made at once on the pulses known).
    /// Off by default: on the held-out CinC 2015 alarms, waiting (0.5 s) silenced a
    /// true VT alarm whose run left the pulse unperturbed (docs/accuracy-alarms.md).
    pub vt_pulse_wait_s: f32,
    /// Ventricular tachycardia: a run is the pacemaker's, and suppressed
    /// (`paced_beats`), when each of its beats came within this long (s) after its own
    /// reported pacemaker pulse, at a delay that varies by at most 60 ms over the run,
    /// with at most two reported pulses per beat, at no more than `paced_max_bpm`
    /// (0 turns the rule off). A unit whose patients have devices that pace in
    /// response to sensed ventricular beats (triggered modes, some resynchronisation
    /// features) should turn it off: their pulses follow a true slow VT beat for beat.
    pub paced_capture_s: f32,
    /// Fastest run (bpm) the paced-run rule may suppress: a pacemaker's upper rate. A
    /// faster run is raised whatever the pulses.
    pub paced_max_bpm: f32,
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
    /// Analyse the augmented limb leads aVR, aVL and aVF as leads of their own even
    /// when the stream carries I, II and III, of which they are combinations
    /// ([`analysed_leads`]). Off by default: they add no signal, only cost and
    /// correlated votes.
    pub augmented_leads: bool,
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
            asystole_tolerance: 0.15,
            min_lead_quality: 0.5,
            vt_max_corr: 0.8,
            vt_min_width_ratio: 1.5,
            vt_min_consistency: 0.6,
            vt_rhythm_tolerance: 0.2,
            vt_pulse_wait_s: 0.0,
            paced_capture_s: 0.2,
            paced_max_bpm: 130.0,
            vf_min_hz: 2.5,
            vf_max_hz: 10.0,
            vf_min_concentration: 0.4,
            vf_max_high_frac: 0.1,
            use_pulse: true,
            pulse_min_amplitude: 0.3,
            pleth_floor_nu: 0.02,
            abp_floor_mmhg: 5.0,
            augmented_leads: false,
        }
    }
}

/// The leads of a stream (indices into `leads`, in order) that a [`LethalDetector`]
/// analyses: every lead, except the augmented limb leads aVR, aVL and aVF when the
/// stream also carries the limb leads I, II and III (and `cfg.augmented_leads` is
/// off).
///
/// The six frontal leads are differences of three limb electrodes' potentials, and an
/// electrocardiograph records two and computes the rest (Einthoven and Goldberger:
/// III = II − I, aVR = −(I + II)/2, aVL = I − II/2, aVF = II − I/2). Each augmented
/// lead mixes all three electrodes, so it is unusable whenever any limb electrode is
/// off, and while it is usable I, II and III carry its signal between them: their
/// axes lie 60° apart, so a complex's frontal vector projects onto one of them with
/// at least cos 30° (87 %) of its size. Analysed as well, the augmented leads would
/// add three detectors' cost per stream and three votes cast by the same three
/// electrodes' noise. I, II and III stay, as each survives the loss of the one electrode it does
/// not use (RA off leaves III). Without all three the augmented leads are analysed:
/// with only I and II, for one, a complex whose axis lies near 120° shows on aVF at
/// 1.5 times its size on either.
pub fn analysed_leads(cfg: &LethalConfig, leads: &[Lead]) -> Vec<usize> {
    let limb = [Lead::I, Lead::II, Lead::III]
        .iter()
        .all(|l| leads.contains(l));
    let skip = limb && !cfg.augmented_leads;
    (0..leads.len())
        .filter(|&i| !(skip && matches!(leads[i], Lead::AVR | Lead::AVL | Lead::AVF)))
        .collect()
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
    /// A usable lead showed the patient's usual beats through the event (flutter/
    /// fibrillation: organised complexes; ventricular tachycardia: the dominant beat at
    /// the rhythm before the run).
    NormalBeatsOnUsableLead,
    /// Only leads judged unusable (noise, artefact) met the criterion.
    PoorSignal,
    /// The complexes of the run do not resemble one another on any usable lead: not a
    /// ventricular rhythm but artefact.
    IncoherentComplexes,
    /// A trusted pulse channel has not yet shown whether the event reached the heart's
    /// output: the call waits for its next pulses.
    AwaitingPulse,
    /// Every beat of the run came shortly after a pacemaker pulse the device reported:
    /// a paced rhythm, whose wide complexes are the pacemaker's, not a ventricular
    /// focus's.
    PacedBeats,
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
            Suppression::IncoherentComplexes => "incoherent_complexes",
            Suppression::AwaitingPulse => "awaiting_pulse",
            Suppression::PacedBeats => "paced_beats",
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
    /// Pacemaker pulses the device reported from the call's start to its end (their
    /// artefacts blanked before the beats were found: [`crate::pace`]); with no beats,
    /// a pacemaker that lost capture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pace_pulses: Option<u16>,
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
    /// The fused beats of the last seconds, and the time up to which they are fused.
    fused: Ring<Fused>,
    fused_until: u64,
    /// Last beat of the ventricular run whose call waits for the pulse.
    vt_waiting: Option<u64>,
    /// ECG samples of the recent pacemaker pulses the device reported, kept as long
    /// as the calls look back (`pace_memory` samples), at most 8 a second of it
    /// (dual-chamber pacing gives 2 a beat).
    pace: RecentPulses,
    pace_memory: u64,
    // Scratch, allocated once.
    merged: Vec<(u64, usize, f32, f32, bool)>,
    window: Vec<Fused>,
    quality: Vec<f32>,
    times: Vec<u64>,
    /// The stream's lead each analysed lead reads (evidence lead `i` is stream lead
    /// `analysed[i]`), and how many leads the stream's blocks carry.
    analysed: Vec<usize>,
    stream_leads: usize,
}

impl LethalDetector {
    /// A detector for a stream of `n_ecg_leads` ECG leads at `ecg_fs` Hz, analysing
    /// every one, and the given pulse channels (kind and rate in Hz).
    pub fn new(
        cfg: &LethalConfig,
        ecg_fs: u32,
        n_ecg_leads: usize,
        pulses: &[(PulseKind, u32)],
    ) -> Self {
        Self::reading(cfg, ecg_fs, (0..n_ecg_leads).collect(), n_ecg_leads, pulses)
    }

    /// A detector for a stream of the ECG `leads` at `ecg_fs` Hz that analyses those
    /// [`analysed_leads`] picks (its blocks still carry every lead of the stream), and
    /// the given pulse channels.
    pub fn for_leads(
        cfg: &LethalConfig,
        ecg_fs: u32,
        leads: &[Lead],
        pulses: &[(PulseKind, u32)],
    ) -> Self {
        Self::reading(cfg, ecg_fs, analysed_leads(cfg, leads), leads.len(), pulses)
    }

    fn reading(
        cfg: &LethalConfig,
        ecg_fs: u32,
        analysed: Vec<usize>,
        stream_leads: usize,
        pulses: &[(PulseKind, u32)],
    ) -> Self {
        let n_ecg_leads = analysed.len();
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
        // Fused beats of the history at up to 5 per second; new beats of one tick.
        let fused_cap = (history_s * 5.0).ceil() as usize + 8;
        let merged_cap = (n_ecg_leads * (cfg.tick_s.max(0.05) * 8.0).ceil() as usize).max(16);
        let pace_memory = (f64::from(history_s + 2.0) * f64::from(fs)).ceil() as u64;
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
            fused: Ring::new(fused_cap),
            fused_until: 0,
            vt_waiting: None,
            pace: RecentPulses::new((8 * pace_memory / u64::from(fs).max(1)) as usize),
            pace_memory,
            merged: Vec::with_capacity(merged_cap),
            window: Vec::with_capacity(fused_cap),
            quality: vec![0.0; n_ecg_leads],
            times: Vec::with_capacity(fused_cap + 64),
            analysed,
            stream_leads,
        }
    }

    /// The stream's leads the detector analyses, by index (in order): evidence lead
    /// `i` ([`Evidence::leads_usable`], [`Evidence::lead_quality`]) is the stream's
    /// lead `analysed()[i]`.
    pub fn analysed(&self) -> &[usize] {
        &self.analysed
    }

    /// Samples of pulse channel `channel` (physical units) covering the same device
    /// time as the ECG samples pushed next: push a frame's pulse data before its ECG.
    /// Unknown channels are ignored.
    pub fn push_pulse(&mut self, channel: usize, samples: &[f32]) {
        if let Some(c) = self.pulses.get_mut(channel) {
            c.push(samples);
        }
    }

    /// Pushes an ECG block of every lead of the stream, lead-major (leads × `n`, mV),
    /// with a lead-off flag per lead, and appends one assessment per tick it completes.
    /// The analysed leads are read where they lie in the block.
    pub fn push_ecg(&mut self, ecg_mv: &[f32], lead_off: &[bool], out: &mut Vec<LethalAssessment>) {
        if self.leads.is_empty() {
            // No ECG lead: time still passes, every call is indeterminate.
            return;
        }
        let n = ecg_mv.len() / self.stream_leads;
        // Every lead's per-sample state at once (in the pipeline it is cold), and
        // what the assessment reads when one is due in this block.
        let mut touched = 0.0f32;
        for lead in &self.leads {
            touched += lead.touch();
        }
        if self.n + n as u64 >= self.next_end + self.latency {
            // The quality windows reach 8 s back, the fibrillation call's peaks `vf_s`.
            let e = self.next_end;
            let from_tick = e.saturating_sub(self.secs(8.0)) / self.tick;
            let from_t = e.saturating_sub(self.secs(self.cfg.vf_s));
            for lead in &self.leads {
                touched += lead.touch_recent(from_tick, from_t);
            }
        }
        std::hint::black_box(touched);
        SCRATCH.with_borrow_mut(|scratch| self.push_leads(ecg_mv, lead_off, n, scratch, out));
    }

    /// The body of [`LethalDetector::push_ecg`]: the leads' blocks up to each
    /// assessment, and the assessment.
    fn push_leads(
        &mut self,
        ecg_mv: &[f32],
        lead_off: &[bool],
        n: usize,
        scratch: &mut Scratch,
        out: &mut Vec<LethalAssessment>,
    ) {
        let mut i = 0;
        while i < n {
            let due = self.next_end + self.latency;
            let m = ((due - self.n) as usize).min(n - i);
            for (lead, &s) in self.leads.iter_mut().zip(&self.analysed) {
                let off = lead_off.get(s).copied().unwrap_or(false);
                lead.push(&self.p, &ecg_mv[s * n + i..s * n + i + m], off, scratch);
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

    /// Pacemaker pulses the device reported, as ECG sample indices (in the count of
    /// [`LethalDetector::push_ecg`]'s samples), increasing: their count from each
    /// call's start goes into its evidence. Push them before the block's ECG (whose
    /// artefacts the caller has blanked, [`crate::pace::PaceBlanker`]).
    pub fn push_pace(&mut self, samples: &[u64]) {
        self.pace
            .push(samples, self.n.saturating_sub(self.pace_memory));
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

    /// The recent per-tick signal quality of ECG lead `lead`, oldest first: the tick's
    /// first ECG sample, its quality for beat-based calls, the same without the beats'
    /// likeness, and its validity (present, not clipped), each 0–1.
    pub fn lead_quality_history(
        &self,
        lead: usize,
    ) -> impl Iterator<Item = (u64, f32, f32, f32)> + '_ {
        let tick = self.tick;
        self.leads.get(lead).into_iter().flat_map(move |l| {
            l.ticks
                .iter()
                .map(move |s| (s.tick * tick, s.q, s.q_shape_free, s.q_valid))
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
            + self.fused.bytes()
            + self.merged.capacity() * std::mem::size_of::<(u64, usize, f32, f32, bool)>()
            + self.window.capacity() * std::mem::size_of::<Fused>()
            + self.quality.capacity() * 4
            + self.times.capacity() * 8
            + self.pace.capacity() * 8
            + self.analysed.capacity() * std::mem::size_of::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn augmented_leads_are_left_out_only_beside_i_ii_and_iii() {
        let cfg = LethalConfig::default();
        // Standard order: I, II, III, aVR, aVL, aVF, V1–V6.
        assert_eq!(
            analysed_leads(&cfg, &Lead::STANDARD_12),
            vec![0, 1, 2, 6, 7, 8, 9, 10, 11]
        );
        // Any order.
        assert_eq!(
            analysed_leads(&cfg, &[Lead::AVF, Lead::III, Lead::V1, Lead::II, Lead::I]),
            vec![1, 2, 3, 4]
        );
        // Without all three limb leads, every lead.
        for leads in [
            vec![Lead::I, Lead::II, Lead::AVF, Lead::V1],
            vec![Lead::II, Lead::AVR],
            vec![Lead::AVF, Lead::V1],
            vec![Lead::II],
            vec![],
        ] {
            assert_eq!(
                analysed_leads(&cfg, &leads),
                (0..leads.len()).collect::<Vec<_>>()
            );
        }
        let all = LethalConfig {
            augmented_leads: true,
            ..LethalConfig::default()
        };
        assert_eq!(
            analysed_leads(&all, &Lead::STANDARD_12),
            (0..12).collect::<Vec<_>>()
        );
    }
}
