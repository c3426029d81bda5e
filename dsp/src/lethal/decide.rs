//! The decisions of [`LethalDetector`]: lead quality, beat fusion over the leads,
//! pulse evidence, and the five calls of each assessment.

use ecg_types::{Condition, FindingStatus};

use super::lead::{Beat, LeadFront, Tick};
use super::pulse::PulseChannel;
use super::ring::median_small;
use super::spectrum::SpectralFeatures;
use super::{Evidence, LethalAssessment, LethalCall, LethalDetector, PulseEvidence, Suppression};
use super::{EVIDENCE_LEADS, MAX_VOTING_LEADS};

/// A beat counts when its slope is at least this share of its lead's beat level ...
const CREDIBLE_SLOPE: f32 = 0.4;
/// ... or its correlation with the lead's dominant beat at least this.
const CREDIBLE_CORR: f32 = 0.8;
/// A smaller peak counts as a missed low-amplitude beat when it correlates this well
/// with its lead's dominant beat ...
const LOW_AMP_CORR: f32 = 0.85;
/// ... and its slope is at least this share of the lead's beat level.
const LOW_AMP_SLOPE: f32 = 0.3;
/// Beats of different leads this close (s) are one beat.
const FUSE_TOL_S: f32 = 0.1;
/// A paced run's pulse-to-beat delays vary by at most this much (s): capture comes at
/// a fixed latency, a pulse that merely falls before a beat does not.
const PACED_LATENCY_SPREAD_S: f32 = 0.06;
/// A paced run has at most this many reported pulses per beat (atrial and
/// ventricular); more is a train of false detections, or a device this rule does not
/// know (three-chamber pacing reported as three pulses keeps its runs raised).
const PACED_MAX_PULSES_PER_BEAT: usize = 2;
/// Flutter/fibrillation is ruled out by this many organised QRS complexes in its
/// window on a usable lead.
const VF_BREAKING_BEATS: usize = 1;
/// Extreme bradycardia: a fused beat this soon (s) after the one before is the same
/// beat counted twice.
const BRADY_REFRACTORY_S: f32 = 0.3;
/// History the calls look back over (s).
const HORIZON_S: f32 = 16.0;
/// Extreme tachycardia: when at least this many leads found beats in the window, a
/// fused beat that one lead alone found, shaped unlike both that lead's dominant beat
/// and its beat before, does not count toward the rate (a T wave, a spike or an
/// artefact on that lead: one lead cannot raise the alarm). A true QRS that the other
/// leads missed keeps its lead's shape and counts. With fewer leads finding beats, one lead against one cannot
/// tell which is right, and every beat counts.
const TACHY_SINGLE_LEAD_FROM: u32 = 3;

/// What the pulse channels say about a ventricular run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PulseVerdict {
    /// A trusted channel beat on through it as before: not a ventricular run.
    Unperturbed,
    /// A trusted channel kept its rhythm so far but has not shown enough pulses since
    /// the run began to decide.
    Pending,
    /// No trusted channel beat on as before (or none is there).
    Changed,
}

/// A beat of the fused (all-lead) sequence.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Fused {
    pub(super) t: u64,
    /// Leads that found it (usable at the time).
    votes: u32,
    /// Best quality among them, all-round and shape-free.
    q: f32,
    q_shape_free: f32,
    /// A lead that found it saw a complex shaped like its dominant beat or like its
    /// beat before.
    alike: bool,
    /// Summed shape-free quality of the usable leads calling it ventricular, and of
    /// all usable leads judging it.
    v_weight: f32,
    v_total: f32,
}

impl Fused {
    fn ventricular(&self) -> bool {
        self.v_total > 0.0 && self.v_weight >= 0.5 * self.v_total
    }
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
    /// A regular train of pulses.
    regular: bool,
}

impl PulseWindow {
    /// Evidence a decision may rely on: a valid channel that followed the ECG, or whose
    /// pulses are too regular to be artefact.
    fn trusted(&self) -> bool {
        self.valid && (self.coupled || self.regular)
    }
}

fn q_all(s: &Tick) -> f32 {
    s.q
}

fn q_shape_free(s: &Tick) -> f32 {
    s.q_shape_free
}

fn q_valid(s: &Tick) -> f32 {
    s.q_valid
}

fn bit(l: usize) -> u32 {
    if l < MAX_VOTING_LEADS {
        1 << l
    } else {
        0
    }
}

impl LethalDetector {
    pub(super) fn secs(&self, s: f32) -> u64 {
        (s * self.fs).round().max(0.0) as u64
    }

    // ---------------------------------------------------------------- quality

    /// Per-lead quality over `[a, e)` into `self.quality`.
    fn set_quality(&mut self, a: u64, e: u64, which: impl Fn(&Tick) -> f32 + Copy) {
        let (t0, t1) = (a / self.tick, e.div_ceil(self.tick));
        for (q, lead) in self.quality.iter_mut().zip(&self.leads) {
            *q = lead.quality(t0, t1, which);
        }
    }

    fn base_evidence(&self) -> Evidence {
        let mut ev = Evidence::default();
        for (l, &q) in self.quality.iter().enumerate() {
            if l < EVIDENCE_LEADS {
                ev.lead_quality[l] = q;
            }
            if q >= self.cfg.min_lead_quality {
                ev.leads_usable |= bit(l);
            }
        }
        ev
    }

    // ---------------------------------------------------------------- fusion

    /// Adds the beats of `[fused_until, e)` to the fused sequence: a beat of a lead
    /// usable at its time (shape-free quality) that looks like a QRS; beats of
    /// different leads within 100 ms are one. Each new fused beat gets its ventricular
    /// vote over the usable leads.
    fn fuse_new(&mut self, e: u64) {
        let from = self.fused_until;
        let min_q = self.cfg.min_lead_quality;
        self.merged.clear();
        for (l, lead) in self.leads.iter().enumerate() {
            for b in lead.beats.iter().rev().take_while(|b| b.t >= from) {
                if !b.beat || b.t >= e {
                    continue;
                }
                // A beat accepted under the relaxed threshold after a long interval
                // must look like a QRS: steep, or shaped like the lead's usual beat.
                let steep = b.level > 0.0 && b.e >= CREDIBLE_SLOPE * b.level;
                if !(steep || b.corr >= CREDIBLE_CORR) {
                    continue;
                }
                let qs = lead.quality_at(b.t, self.tick, q_shape_free);
                if qs >= min_q {
                    let q = lead.quality_at(b.t, self.tick, q_all);
                    // Like the lead's dominant beat, or like its beat before (a new
                    // rhythm's beats before they become the dominant shape).
                    let alike = b.corr >= CREDIBLE_CORR || b.corr_prev >= CREDIBLE_CORR;
                    self.merged.push((b.t, l, q, qs, alike));
                }
            }
        }
        self.merged.sort_unstable_by_key(|m| m.0);
        let tol = self.secs(FUSE_TOL_S);
        for &(t, l, q, qs, alike) in &self.merged {
            let n = self.fused.len();
            let joins = n > 0 && {
                let f = self.fused.get(n - 1);
                t <= f.t + tol && f.votes & bit(l) == 0
            };
            if joins {
                let f = self.fused.get_mut(n - 1);
                f.votes |= bit(l);
                f.q = f.q.max(q);
                f.q_shape_free = f.q_shape_free.max(qs);
                f.alike |= alike;
            } else {
                self.fused.push(Fused {
                    t,
                    votes: bit(l),
                    q,
                    q_shape_free: qs,
                    alike,
                    ..Fused::default()
                });
            }
        }
        // Vote the new fused beats (and the one before them, which may have gained a
        // lead).
        let n = self.fused.len();
        let mut i = n;
        while i > 0 && self.fused.get(i - 1).t + tol >= from {
            i -= 1;
        }
        for j in i..n {
            let mut f = self.fused.get(j);
            self.vote_ventricular(&mut f);
            *self.fused.get_mut(j) = f;
        }
        self.fused_until = e;
    }

    /// The ventricular vote of a fused beat over the usable leads with a learned
    /// dominant beat, each lead judging the complex it shows at that time: a beat, a
    /// smaller peak, or none (a complex that vanished from a lead where the dominant
    /// beat is plain has changed its axis).
    fn vote_ventricular(&self, f: &mut Fused) {
        let tol = self.secs(FUSE_TOL_S);
        let shape_cfg = (self.cfg.vt_max_corr, self.cfg.vt_min_width_ratio);
        f.v_weight = 0.0;
        f.v_total = 0.0;
        for lead in &self.leads {
            let Some(shape) = lead.template_shape() else {
                continue;
            };
            let q = lead.quality_at(f.t, self.tick, q_shape_free);
            if q < self.cfg.min_lead_quality {
                continue;
            }
            let mut best: Option<Beat> = None;
            for b in lead.beats.iter().rev() {
                if b.t + tol < f.t {
                    break;
                }
                if b.t <= f.t + tol
                    && best.is_none_or(|x: Beat| b.t.abs_diff(f.t) < x.t.abs_diff(f.t))
                {
                    best = Some(b);
                }
            }
            f.v_total += q;
            if best.is_none_or(|b| is_ventricular(&b, shape, shape_cfg)) {
                f.v_weight += q;
            }
        }
    }

    /// The fused beats of `[a, e)` with `keep`, oldest first, into `self.window`.
    fn window(&mut self, a: u64, e: u64, keep: fn(&Fused, f32) -> bool) {
        self.window.clear();
        let min_q = self.cfg.min_lead_quality;
        let n = self.fused.len();
        let mut i = n;
        while i > 0 && self.fused.get(i - 1).t >= a {
            i -= 1;
        }
        for j in i..n {
            let f = self.fused.get(j);
            if f.t < e && keep(&f, min_q) {
                self.window.push(f);
            }
        }
    }

    // ---------------------------------------------------------------- pulses

    /// What pulse channel `i` shows over `[a, e)`.
    fn pulse_window(&self, i: usize, a: u64, e: u64) -> PulseWindow {
        let c = &self.pulses[i];
        let bad = pulse_bad_frac(c, a, e, self.tick);
        let reference = c.reference_at(e);
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
            w.amplitude_ratio = Some(median_small(&ratios[..(w.count as usize).min(16)]));
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

    /// Beat-to-pulse coupling of every pulse channel, from the fused beats of
    /// `[e − 3 s, e − 2 s)` (their pulses, up to 1 s later, are all known by now) of
    /// leads of good quality.
    fn update_coupling(&mut self, e: u64) {
        if self.pulses.is_empty() || e < self.secs(6.0) {
            return;
        }
        let (b0, b1) = (e - self.secs(3.0), e - self.secs(2.0));
        self.window(b0 - self.secs(1.0), e - self.secs(1.0), |f, q| {
            f.q >= q.max(0.7)
        });
        let mut beats = [0u64; 32];
        let mut n = 0;
        for f in &self.window {
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

    // ---------------------------------------------------------------- assessment

    pub(super) fn assess(&mut self, e: u64) -> LethalAssessment {
        let tick_start = e.saturating_sub(self.tick);
        self.fuse_new(e);
        self.update_coupling(e);
        let asystole = self.asystole(e, tick_start);
        // Bradycardia and tachycardia both judge the leads by their quality over the
        // last 8 s; it is set once, here, for the two.
        self.set_quality(e.saturating_sub(self.secs(8.0)), e, q_all);
        let mut calls = [
            asystole,
            self.brady(e, tick_start),
            self.tachy(e, tick_start),
            self.vt(e, tick_start),
            self.vf(e),
        ];
        if !self.pace.is_empty() {
            for c in &mut calls {
                let n = self.pace.count_in(c.start_sample, e);
                c.evidence.pace_pulses = (n > 0).then(|| n.min(usize::from(u16::MAX)) as u16);
            }
        }
        LethalAssessment {
            end_sample: e,
            calls,
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

    /// The start (no earlier than `a`) of the stretch ending at `e` through which some
    /// lead was connected at every tick: a stretch with every lead off or missing is no
    /// pause, and the beats on either side of it are no slow rhythm.
    fn connected_since(&self, a: u64, e: u64) -> u64 {
        let tick = self.tick.max(1);
        let mut t = e.saturating_sub(1) / tick * tick;
        while t >= a && t >= tick {
            if self.leads.iter().all(|l| l.off_at(t, tick)) {
                return (t + tick).clamp(a, e);
            }
            t -= tick;
        }
        a
    }

    fn asystole(&mut self, e: u64, tick_start: u64) -> LethalCall {
        let c = Condition::Asystole;
        // A pause within `asystole_tolerance` of the limit counts (monitors time
        // pauses from their own fiducials; at the limit a miss costs more).
        let win = self.secs(self.cfg.asystole_s * (1.0 - self.cfg.asystole_tolerance));
        let horizon = self.secs(HORIZON_S).max(win + self.tick);
        let a0 = e.saturating_sub(horizon);
        let a = self.connected_since(a0, e);
        // Quality over the last asystole window decides which leads vote.
        self.set_quality(e.saturating_sub(win), e, q_all);
        let mut ev = self.base_evidence();
        if ev.leads_usable == 0 {
            return Self::call(
                c,
                FindingStatus::Indeterminate,
                e.saturating_sub(win),
                None,
                ev,
            );
        }
        self.window(a, e, |f, q| f.q >= q);
        // The beat-free gap ending in this tick (or still open at e).
        let mut gap: Option<(u64, u64)> = None;
        let mut prev = a;
        for f in &self.window {
            if f.t > tick_start && f.t - prev >= win {
                gap = Some((prev, f.t));
            }
            prev = f.t;
        }
        if e - prev >= win {
            gap = Some((prev, e));
        }
        // Not enough history yet to call a pause; after leads were off, a pause must
        // start at a beat seen since.
        let gap = gap.filter(|&(s, _)| if a > a0 { s > a } else { s > 0 || e >= horizon });
        let Some((g0, g1)) = gap else {
            return Self::call(c, FindingStatus::Absent, e.saturating_sub(win), None, ev);
        };
        ev.leads_for = ev.leads_usable;
        ev.pulse = self.pulse_evidence(g0, g1);
        let value = Some((g1 - g0) as f32 / self.fs);
        let mut ts = std::mem::take(&mut self.times);
        let added = self.with_low_amplitude(g0, g1, &mut ts);
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

    /// The fused beats of `self.window` within `[s0, s1]` together with the smaller
    /// peaks of leads usable at their time that are shaped like their lead's dominant
    /// beat (missed low-amplitude beats), sorted, in `out`; returns how many such peaks
    /// were added.
    fn with_low_amplitude(&self, s0: u64, s1: u64, out: &mut Vec<u64>) -> usize {
        out.clear();
        out.extend(
            self.window
                .iter()
                .map(|f| f.t)
                .filter(|&t| t >= s0 && t <= s1),
        );
        let n_beats = out.len();
        let tol = self.secs(0.15);
        // A missed beat lies clear of the detected ones (a T wave does not).
        let clear = self.secs(0.5);
        let min_q = self.cfg.min_lead_quality;
        let mut added = 0;
        for lead in &self.leads {
            if lead.template_shape().is_none() {
                continue;
            }
            for b in lead.beats.iter().rev().take_while(|b| b.t > s0) {
                if b.beat
                    || b.t >= s1
                    || b.corr < LOW_AMP_CORR
                    || b.level <= 0.0
                    || b.e < LOW_AMP_SLOPE * b.level
                    || lead.quality_at(b.t, self.tick, q_all) < min_q
                    || out[..n_beats].iter().any(|&t| t.abs_diff(b.t) < clear)
                    || out.iter().any(|&t| t.abs_diff(b.t) <= tol)
                {
                    continue;
                }
                out.push(b.t);
                added += 1;
            }
        }
        out.sort_unstable();
        added
    }

    fn brady(&mut self, e: u64, tick_start: u64) -> LethalCall {
        let c = Condition::ExtremeBradycardia;
        let nb = self.cfg.brady_beats.max(2);
        let a = self.connected_since(e.saturating_sub(self.secs(HORIZON_S)), e);
        // The leads' quality over the last 8 s, set by `assess`.
        let mut ev = self.base_evidence();
        // A slow rate needs the full history: in a stream's first seconds the beat
        // detectors are still learning and may miss a beat, which halves the rate.
        if ev.leads_usable == 0 || e < self.secs(HORIZON_S) {
            return Self::call(c, FindingStatus::Indeterminate, a, None, ev);
        }
        self.window(a, e, |f, q| f.q >= q);
        // Two detections closer than the ventricles' refractory period are one beat
        // counted twice (a pacing spike and its complex, a tall T wave), not a beat
        // that could lift a slow rate: keep the first.
        let refr = self.secs(BRADY_REFRACTORY_S);
        let mut last: Option<u64> = None;
        self.window.retain(|f| {
            let keep = last.is_none_or(|l| f.t >= l + refr);
            if keep {
                last = Some(f.t);
            }
            keep
        });
        let brady_bpm = self.cfg.brady_bpm * (1.0 + self.cfg.rate_tolerance);
        let max_span = (nb - 1) as f32 * 60.0 / brady_bpm * self.fs;
        let mut found: Option<(u64, u64, f32)> = None;
        let f = &self.window;
        for j in (nb - 1)..f.len() {
            if f[j].t <= tick_start {
                continue;
            }
            let span = (f[j].t - f[j + 1 - nb].t) as f32;
            if span > max_span {
                let hr = 60.0 * (nb - 1) as f32 / (span / self.fs);
                found = Some((f[j + 1 - nb].t, f[j].t, hr));
            }
        }
        // An ongoing pause counts as the last interval.
        if found.is_none() && f.len() + 1 >= nb && !f.is_empty() {
            let first = f[f.len() + 1 - nb].t;
            let span = (e - first) as f32;
            if span > max_span {
                let hr = 60.0 * (nb - 1) as f32 / (span / self.fs);
                found = Some((first, e, hr));
            }
        }
        let Some((s0, s1, hr)) = found else {
            let hr = window_rate(&self.window, self.fs);
            ev.heart_rate_bpm = hr;
            return Self::call(c, FindingStatus::Absent, a, hr, ev);
        };
        ev.leads_for = ev.leads_usable;
        ev.heart_rate_bpm = Some(hr);
        ev.pulse = self.pulse_evidence(s0, s1);
        let mut ts = std::mem::take(&mut self.times);
        let added = self.with_low_amplitude(s0, s1, &mut ts);
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
        let a = e.saturating_sub(self.secs(HORIZON_S));
        // The leads' quality over the last 8 s, set by `assess`.
        let mut ev = self.base_evidence();
        if ev.leads_usable == 0 {
            return Self::call(c, FindingStatus::Indeterminate, a, None, ev);
        }
        self.window(a, e, |f, q| f.q >= q);
        let finding = self.window.iter().fold(0u32, |m, f| m | f.votes);
        if finding.count_ones() >= TACHY_SINGLE_LEAD_FROM {
            self.window.retain(|f| f.votes.count_ones() >= 2 || f.alike);
        }
        let max_rr = 60.0 / (self.cfg.tachy_bpm * (1.0 - self.cfg.rate_tolerance)) * self.fs;
        let mut found: Option<(u64, f32)> = None;
        let f = &self.window;
        let mut rr = [0.0f32; 64];
        for j in (nb - 1)..f.len() {
            if f[j].t <= tick_start {
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
                found = Some((f[i0].t, 60.0 * self.fs / med));
            }
        }
        let Some((s0, hr)) = found else {
            let hr = window_rate(&self.window, self.fs);
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
        let a = e.saturating_sub(self.secs(10.0));
        self.set_quality(e.saturating_sub(self.secs(6.0)), e, q_shape_free);
        let mut ev = self.base_evidence();
        if ev.leads_usable == 0 {
            return Self::call(c, FindingStatus::Indeterminate, a, None, ev);
        }
        self.window(a, e, |_, _| true);
        let max_rr = 60.0 / (self.cfg.vt_bpm * (1.0 - self.cfg.rate_tolerance)) * self.fs;
        // Runs of ventricular fused beats: one grown in this tick, or the one whose call
        // is waiting for the pulse (for up to `vt_pulse_wait_s` after its last beat).
        let wait = self.secs(self.cfg.vt_pulse_wait_s.max(0.0));
        let waiting = self.vt_waiting.take();
        let mut found: Option<(usize, usize, f32)> = None;
        let f = &self.window;
        let mut run_start = 0usize;
        let mut run_len = 0usize;
        for j in 0..f.len() {
            if f[j].ventricular() {
                if run_len == 0 {
                    run_start = j;
                }
                run_len += 1;
            } else {
                run_len = 0;
            }
            let fresh =
                f[j].t > tick_start || (waiting == Some(f[j].t) && f[j].t + wait > tick_start);
            if run_len >= nb && fresh {
                let i0 = j + 1 - nb;
                let span = (f[j].t - f[i0].t) as f32;
                if span < (nb - 1) as f32 * max_rr {
                    let hr = 60.0 * (nb - 1) as f32 / (span / self.fs);
                    found = Some((run_start, j, hr));
                }
            }
        }
        let Some((i0, i1, hr)) = found else {
            ev.heart_rate_bpm = window_rate(&self.window, self.fs);
            return Self::call(c, FindingStatus::Absent, a, None, ev);
        };
        let (s0, s1) = (self.window[i0].t, self.window[i1].t);
        let mut leads_for = 0u32;
        for fb in &self.window[i0..=i1] {
            leads_for |= fb.votes;
        }
        ev.leads_for = leads_for & ev.leads_usable;
        ev.heart_rate_bpm = Some(hr);
        ev.ventricular_beats = Some((i1 + 1 - i0).min(u16::MAX as usize) as u16);
        let (cons, cv) = self.run_shape(i0, i1);
        ev.run_consistency = cons;
        ev.run_rr_cv = cv;
        ev.pulse = self.pulse_evidence(s0, (s1 + self.secs(0.5)).min(e));
        if cons.is_some_and(|c| c < self.cfg.vt_min_consistency) {
            ev.suppressed_by = Some(Suppression::IncoherentComplexes);
            return Self::call(c, FindingStatus::Absent, s0, Some(hr), ev);
        }
        if self.run_paced(i0, i1, hr) {
            ev.suppressed_by = Some(Suppression::PacedBeats);
            return Self::call(c, FindingStatus::Absent, s0, Some(hr), ev);
        }
        if self.normal_rhythm_through(s0, s1, e) {
            ev.suppressed_by = Some(Suppression::NormalBeatsOnUsableLead);
            return Self::call(c, FindingStatus::Absent, s0, Some(hr), ev);
        }
        match self.pulse_verdict(s0, s1, e) {
            PulseVerdict::Unperturbed => {
                ev.suppressed_by = Some(Suppression::PulseUnperturbed);
                return Self::call(c, FindingStatus::Absent, s0, Some(hr), ev);
            }
            PulseVerdict::Pending if e < s1 + wait => {
                self.vt_waiting = Some(s1);
                ev.suppressed_by = Some(Suppression::AwaitingPulse);
                return Self::call(c, FindingStatus::Absent, s0, Some(hr), ev);
            }
            _ => {}
        }
        Self::call(c, FindingStatus::Present, s0, Some(hr), ev)
    }

    /// Whether the run `self.window[i0..=i1]` (at `hr` bpm) is the pacemaker's: at
    /// most `paced_max_bpm`, each beat 0–`paced_capture_s` after its own reported
    /// pulse (no pulse serving two beats), the delays within
    /// [`PACED_LATENCY_SPREAD_S`] of one another, and no more than
    /// [`PACED_MAX_PULSES_PER_BEAT`] reported pulses per beat over the run. A
    /// pacemaker that does not sense a true run fires at its own rate and drifts
    /// against it; a train of false pulse detections brings too many.
    fn run_paced(&self, i0: usize, i1: usize, hr: f32) -> bool {
        let cfg = &self.cfg;
        if self.pace.is_empty() || cfg.paced_capture_s <= 0.0 || hr > cfg.paced_max_bpm {
            return false;
        }
        let capture = self.secs(cfg.paced_capture_s);
        let run = &self.window[i0..=i1];
        let (mut lo, mut hi) = (u64::MAX, 0u64);
        let mut prev: Option<u64> = None;
        for f in run {
            let Some(p) = self.pace.last_at_or_before(f.t) else {
                return false;
            };
            let delay = f.t - p;
            if delay > capture || prev == Some(p) {
                return false;
            }
            lo = lo.min(delay);
            hi = hi.max(delay);
            prev = Some(p);
        }
        if hi - lo > self.secs(PACED_LATENCY_SPREAD_S) {
            return false;
        }
        let pulses = self
            .pace
            .count_in(run[0].t.saturating_sub(capture), run[run.len() - 1].t + 1);
        pulses <= PACED_MAX_PULSES_PER_BEAT * run.len()
    }

    /// Whether a usable lead showed the patient's dominant beat at the rhythm it had
    /// before, undisturbed, through the run `[s0, s1]`: every beat it detected from 8 s
    /// before the run up to the assessment's end `e` that falls in the run is shaped
    /// like its dominant beat (shape and size as in the vote's test; the width is not
    /// judged), and the intervals of these dominant beats from the last one before the
    /// run on stay within `vt_rhythm_tolerance` of their median before it, with none
    /// missing up to the run's end. The ventricles cannot beat in their usual way at their usual rhythm
    /// through a ventricular run: the run's complexes seen on the other leads are
    /// artefact or aberrant shapes of the same beats.
    fn normal_rhythm_through(&self, s0: u64, s1: u64, e: u64) -> bool {
        let r_tol = self.cfg.vt_rhythm_tolerance;
        if r_tol <= 0.0 {
            return false;
        }
        let tol = self.secs(FUSE_TOL_S);
        // The dominant beat by its shape and size alone: a single complex's width
        // estimate varies with noise on the baseline, and the rhythm test below is what
        // a ventricular run cannot pass.
        let shape_cfg = (self.cfg.vt_max_corr, f32::INFINITY);
        let pre0 = s0.saturating_sub(self.secs(8.0));
        let (r0, r1) = (s0.saturating_sub(tol), s1 + tol);
        self.leads.iter().enumerate().any(|(l, lead)| {
            if self.quality[l] < self.cfg.min_lead_quality {
                return false;
            }
            let Some(shape) = lead.template_shape() else {
                return false;
            };
            // The lead's dominant beats, newest first; any other beat in the run fails.
            let mut t = [0u64; 64];
            let mut n = 0usize;
            for b in lead.beats.iter().rev().take_while(|b| b.t >= pre0) {
                if !b.beat || b.t >= e {
                    continue;
                }
                if is_ventricular(&b, shape, shape_cfg) {
                    if b.t >= r0 && b.t <= r1 {
                        return false;
                    }
                    continue;
                }
                if n < t.len() {
                    t[n] = b.t;
                    n += 1;
                }
            }
            let t = &mut t[..n];
            t.reverse();
            // Rhythm before the run: median of at least three intervals.
            let k0 = t.iter().rposition(|&x| x < r0);
            let Some(k0) = k0 else {
                return false;
            };
            if k0 < 3 {
                return false;
            }
            let mut iv = [0.0f32; 16];
            let mut ni = 0usize;
            for k in (1..=k0).rev() {
                if ni < iv.len() {
                    iv[ni] = (t[k] - t[k - 1]) as f32;
                    ni += 1;
                }
            }
            let rr = median_small(&iv[..ni]);
            let (lo, hi) = ((1.0 - r_tol) * rr, (1.0 + r_tol) * rr);
            // Through the run: the same rhythm, none missing up to its end.
            for k in k0 + 1..t.len() {
                let d = (t[k] - t[k - 1]) as f32;
                if d < lo || d > hi {
                    return false;
                }
            }
            let last = t[t.len() - 1];
            last + hi as u64 >= r1.min(e)
        })
    }

    /// Beat-to-beat consistency of a run of fused beats in `self.window` (the best
    /// usable lead's median correlation of each beat with the one before) and the
    /// spread of its RR intervals (coefficient of variation).
    fn run_shape(&self, i0: usize, i1: usize) -> (Option<f32>, Option<f32>) {
        let (s0, s1) = (self.window[i0].t, self.window[i1].t);
        let tol = self.secs(FUSE_TOL_S);
        let mut best: Option<f32> = None;
        for (l, lead) in self.leads.iter().enumerate() {
            if self.quality[l] < self.cfg.min_lead_quality {
                continue;
            }
            let mut v = [0.0f32; 16];
            let mut n = 0;
            for b in lead
                .beats
                .iter()
                .rev()
                .take_while(|b| b.t + tol >= s0)
                .filter(|b| b.beat && b.t <= s1 + tol)
            {
                if b.corr_prev.is_finite() && n < v.len() {
                    v[n] = b.corr_prev;
                    n += 1;
                }
            }
            if n >= 2 {
                let m = median_small(&v[..n]);
                best = Some(best.map_or(m, |x: f32| x.max(m)));
            }
        }
        let n = i1 - i0;
        let cv = (n >= 2).then(|| {
            let (mut s, mut ss) = (0.0f32, 0.0f32);
            for k in i0..i1 {
                let r = (self.window[k + 1].t - self.window[k].t) as f32;
                s += r;
                ss += r * r;
            }
            let m = s / n as f32;
            (ss / n as f32 - m * m).max(0.0).sqrt() / m
        });
        (best, cv)
    }

    /// Whether a trusted pulse channel beat on through `[s0, s1]` as it did in the 8 s
    /// before: every pulse interval from the last pulse before the event to the first
    /// after it within the range of the intervals before (±10 %), their mean within
    /// 15 % of the mean before, the mean pulse size at least 80 % of the size before.
    /// A ventricular run changes the filling and timing of the beats it replaces; an
    /// artefact on the ECG does not touch the pulse. [`PulseVerdict::Pending`] when no
    /// channel beat on, but one whose pulses so far kept the rhythm has shown fewer
    /// than two since the event began and its next pulse is not yet overdue.
    fn pulse_verdict(&self, s0: u64, s1: u64, e: u64) -> PulseVerdict {
        if !self.cfg.use_pulse {
            return PulseVerdict::Changed;
        }
        let pre0 = s0.saturating_sub(self.secs(8.0));
        let mut verdict = PulseVerdict::Changed;
        for i in 0..self.pulses.len() {
            match self.channel_verdict(i, pre0, s0, s1, e) {
                PulseVerdict::Unperturbed => return PulseVerdict::Unperturbed,
                PulseVerdict::Pending => verdict = PulseVerdict::Pending,
                PulseVerdict::Changed => {}
            }
        }
        verdict
    }

    /// [`Self::pulse_verdict`] of pulse channel `i`, the rhythm before taken from
    /// `[pre0, s0)`.
    fn channel_verdict(&self, i: usize, pre0: u64, s0: u64, s1: u64, e: u64) -> PulseVerdict {
        use PulseVerdict::{Changed, Pending, Unperturbed};
        let c = &self.pulses[i];
        if !self.pulse_window(i, pre0, s0).trusted() {
            return Changed;
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
            return Changed;
        }
        // The rhythm before: its interval range and mean, its mean pulse size.
        let imin = iv[..ni].iter().copied().fold(f32::INFINITY, f32::min);
        let imax = iv[..ni].iter().copied().fold(0.0f32, f32::max);
        let imean = iv[..ni].iter().sum::<f32>() / ni as f32;
        let amean = am[..na].iter().sum::<f32>() / na as f32;
        let Some(mut prev) = prev else {
            return Changed;
        };
        // Through the event and up to the first pulse after it, as far as the
        // pulses are known (up to the assessment's end).
        let end = (s1 + d + (1.2 * imax) as u64).min(e);
        let (mut n, mut isum, mut asum) = (0usize, 0.0f32, 0.0f32);
        for pl in c.pulses.iter().filter(|pl| pl.t >= p1 && pl.t <= end) {
            let iv = (pl.t - prev) as f32;
            if iv < 0.9 * imin || iv > 1.1 * imax {
                return Changed;
            }
            isum += iv;
            asum += pl.amp;
            prev = pl.t;
            n += 1;
            if pl.t > s1 + d {
                break;
            }
        }
        let due = prev > s1 + d || e - prev <= (1.2 * imax) as u64;
        if n < 2 {
            // Not overdue yet: the pulses that would decide are still to come.
            return if due && prev <= s1 + d {
                Pending
            } else {
                Changed
            };
        }
        if !due {
            return Changed;
        }
        let (ie, ae) = (isum / n as f32, asum / n as f32);
        if (ie - imean).abs() <= 0.15 * imean && ae >= 0.8 * amean {
            Unperturbed
        } else {
            Changed
        }
    }

    fn vf(&mut self, e: u64) -> LethalCall {
        let c = Condition::VentricularFibrillation;
        let win = self.secs(self.cfg.vf_s);
        let a = e.saturating_sub(win);
        // Flutter/fibrillation is itself "noisy": only missing, lead-off or clipped
        // signal makes a lead unusable here.
        self.set_quality(a, e, q_valid);
        let mut ev = self.base_evidence();
        if ev.leads_usable == 0 || e < win + self.latency {
            let status = if ev.leads_usable == 0 {
                FindingStatus::Indeterminate
            } else {
                FindingStatus::Absent
            };
            return Self::call(c, status, a, None, ev);
        }
        let min_q = self.cfg.min_lead_quality;
        let mut w_for = 0.0f32;
        let mut w_all = 0.0f32;
        let mut dom = 0.0f32;
        let mut best_w = 0.0f32;
        let mut organised = 0usize;
        for l in 0..self.leads.len() {
            let q = self.quality[l];
            if q < min_q {
                continue;
            }
            w_all += q;
            // A lead showing organised QRS complexes is not fibrillating: no spectrum
            // needed.
            let org = organised_beats(&self.leads[l], a, e, self.fs);
            organised = organised.max(org);
            if org >= VF_BREAKING_BEATS {
                continue;
            }
            let feats = self.spectral(l, a);
            if self.vf_like(&feats) {
                w_for += q;
                ev.leads_for |= bit(l);
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
        if organised >= VF_BREAKING_BEATS {
            ev.suppressed_by = Some(Suppression::NormalBeatsOnUsableLead);
            return Self::call(c, FindingStatus::Absent, a, Some(dom), ev);
        }
        if self.pulse_through(a, e) {
            ev.suppressed_by = Some(Suppression::PulsePresent);
            return Self::call(c, FindingStatus::Absent, a, Some(dom), ev);
        }
        Self::call(c, FindingStatus::Present, a, Some(dom), ev)
    }

    fn spectral(&mut self, l: usize, a: u64) -> SpectralFeatures {
        let h = self.leads[l].vf_history();
        // First history sample at or after ECG time a.
        let fv = f64::from(self.p.fv);
        let n_hist = h.count();
        let mut j0 = ((a as f64 / f64::from(self.fs)) * fv).floor() as u64;
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

/// Complexes of `lead` in `[a, e)` shaped like the lead's dominant beat that stand out
/// of the waveform between them (at least twice the median of the lead's other peaks
/// there) and come at a rate an organised rhythm has (median interval at least 0.4 s,
/// 150 per minute): a QRS rhythm with flutter waves or artefact between its complexes,
/// not fibrillation, whose waves are all alike and come faster (even where they
/// resemble the dominant beat of a lead that has fibrillated from the start).
fn organised_beats(lead: &LeadFront, a: u64, e: u64, fs: f32) -> usize {
    if lead.template_shape().is_none() {
        return 0;
    }
    let mut others = [0.0f32; 16];
    let mut no = 0usize;
    lead.beats.scan_back(|b| {
        if b.t < a {
            return false;
        }
        if b.t < e && !b.beat && no < others.len() {
            others[no] = b.e;
            no += 1;
        }
        true
    });
    let floor = if no > 0 {
        2.0 * median_small(&others[..no])
    } else {
        0.0
    };
    let mut iv = [0.0f32; 16];
    let (mut n, mut ni) = (0usize, 0usize);
    let mut next: Option<u64> = None;
    lead.beats.scan_back(|b| {
        if b.t < a {
            return false;
        }
        let alike = b.corr >= 0.8; // false for NaN (no dominant beat yet)
        if b.t >= e || !b.beat || !alike || b.e < floor {
            return true;
        }
        if let Some(t) = next {
            if ni < iv.len() {
                iv[ni] = (t - b.t) as f32 / fs;
                ni += 1;
            }
        }
        next = Some(b.t);
        n += 1;
        true
    });
    if n >= 2 && median_small(&iv[..ni]) < 0.4 {
        return 0;
    }
    n
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

/// Whether a complex differs from its lead's dominant beat: its shape and size
/// (correlation scaled by the square root of the amplitude ratio) below `max_corr`,
/// or its QRS at least `width_ratio` times as wide.
fn is_ventricular(b: &Beat, (w, a): (f32, f32), (max_corr, width_ratio): (f32, f32)) -> bool {
    let corr = if b.corr.is_finite() { b.corr } else { 1.0 };
    let size = if a > 0.0 && b.amp > 0.0 {
        (b.amp / a).min(a / b.amp)
    } else {
        1.0
    };
    corr * size.sqrt() < max_corr || b.width >= width_ratio * w
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

fn window_rate(f: &[Fused], fs: f32) -> Option<f32> {
    if f.len() < 2 {
        return None;
    }
    let span = (f[f.len() - 1].t - f[0].t) as f32 / fs;
    (span > 0.0).then(|| 60.0 * (f.len() - 1) as f32 / span)
}
