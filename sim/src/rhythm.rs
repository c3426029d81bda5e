//! The rhythm plan in samples and the beat scheduler.

use std::f64::consts::TAU;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::morphology::{beat_waves, MorphologyScale, Wave};
use crate::{BeatKind, Rhythm, RhythmPlan};

/// RNG stream ids (ChaCha streams of the device seed).
pub(crate) const STREAM_PARAMS: u64 = 1;
pub(crate) const STREAM_BEATS: u64 = 2;

/// Probability that a sinus beat in [`Rhythm::Pvcs`] is followed by a PVC.
const PVC_PROBABILITY: f64 = 0.18;
/// Log-normal sigma of AF RR intervals (coefficient of variation ≈ 0.25).
const AF_RR_SIGMA: f64 = 0.25;
/// The rhythms (the first of [`Rhythm::ALL`]) whose base rates are drawn first, in
/// the order they always were; the rates of rhythms added since are drawn after every
/// other device parameter, so that old seeds give the devices they gave.
const RATES_DRAWN_FIRST: usize = 7;
/// How long (s) before a paced beat's QRS peak its pacemaker pulse comes.
const PACE_BEFORE_QRS_S: f64 = 0.06;

/// A segment of the plan in samples.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub(crate) rhythm: Rhythm,
    pub(crate) start: u64,
    /// Exclusive; `u64::MAX` for a segment that lasts forever.
    pub(crate) end: u64,
}

/// The rhythm plan compiled to sample counts.
#[derive(Debug, Clone)]
pub(crate) struct PlanIndex {
    rhythms: Vec<Rhythm>,
    /// Segment start offsets within one cycle.
    starts: Vec<u64>,
    /// Cycle length in samples, or `None` if the last segment lasts forever.
    period: Option<u64>,
    fs: f64,
}

impl PlanIndex {
    pub(crate) fn new(plan: &RhythmPlan, sample_rate: u32) -> Self {
        let fs = f64::from(sample_rate);
        match plan {
            RhythmPlan::Constant(r) => Self {
                rhythms: vec![*r],
                starts: vec![0],
                period: None,
                fs,
            },
            RhythmPlan::Schedule { segments, repeat } => {
                let mut rhythms = Vec::new();
                let mut starts = Vec::new();
                let mut at = 0u64;
                for s in segments {
                    // Validated: finite, positive, at least one sample, at most 1e7 s.
                    let len = ((s.seconds * fs).round() as u64).max(1);
                    if rhythms.last() != Some(&s.rhythm) {
                        rhythms.push(s.rhythm);
                        starts.push(at);
                    }
                    at = at.saturating_add(len);
                }
                if rhythms.is_empty() {
                    rhythms.push(Rhythm::Asystole);
                    starts.push(0);
                }
                Self {
                    rhythms,
                    starts,
                    period: (*repeat && at > 0).then_some(at),
                    fs,
                }
            }
        }
    }

    /// The segment containing `sample`.
    pub(crate) fn span_at(&self, sample: u64) -> Span {
        let (base, off) = match self.period {
            Some(p) => (sample - sample % p, sample % p),
            None => (0, sample),
        };
        let i = self.starts.partition_point(|&s| s <= off).saturating_sub(1);
        let start = base.saturating_add(self.starts[i]);
        let end = match self.starts.get(i + 1) {
            Some(&next) => base.saturating_add(next),
            None => match self.period {
                Some(p) => base.saturating_add(p),
                None => u64::MAX,
            },
        };
        Span {
            rhythm: self.rhythms[i],
            start,
            end,
        }
    }

    fn sample_of(&self, t: f64) -> u64 {
        // Saturating float-to-int cast; t is never negative.
        (t * self.fs).floor() as u64
    }

    fn span_at_time(&self, t: f64) -> Span {
        self.span_at(self.sample_of(t))
    }

    fn has_beats(&self) -> bool {
        self.rhythms.iter().any(|r| r.has_beats())
    }

    fn segment_count(&self) -> usize {
        self.rhythms.len()
    }
}

/// A beat ready to be rendered.
#[derive(Debug, Clone)]
pub(crate) struct ScheduledBeat {
    /// Fiducial sample.
    pub(crate) sample: u64,
    pub(crate) kind: BeatKind,
    pub(crate) rhythm: Rhythm,
    pub(crate) waves: Vec<Wave>,
    /// Time after which no wave contributes.
    pub(crate) end: f64,
    /// The sample of the pacemaker pulse that started it, for a paced beat.
    pub(crate) pace: Option<u64>,
}

/// Device-level physiological parameters drawn from the seed.
#[derive(Debug, Clone)]
pub(crate) struct Physiology {
    /// Base rate (bpm) per rhythm, indexed like [`Rhythm::ALL`].
    base_bpm: [f64; Rhythm::ALL.len()],
    /// Breathing frequency (Hz) and phase.
    pub(crate) resp_hz: f64,
    pub(crate) resp_phase: f64,
    mayer_hz: f64,
    mayer_phase: f64,
    pub(crate) morph: MorphologyScale,
    /// AF f-wave dominant frequency (Hz), amplitude (mV) and modulation phases.
    pub(crate) fwave_hz: f64,
    pub(crate) fwave_mv: f64,
    pub(crate) fwave_phases: [f64; 3],
}

impl Physiology {
    pub(crate) fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(STREAM_PARAMS);
        let mut base_bpm = [0.0; Rhythm::ALL.len()];
        // The rates of the rhythms added later are drawn after everything else, so that
        // a seed keeps giving the devices it gave before they existed.
        for (slot, r) in base_bpm.iter_mut().zip(&Rhythm::ALL[..RATES_DRAWN_FIRST]) {
            let (lo, hi) = r.base_rate_bpm().unwrap_or((60.0, 60.0));
            *slot = lo + (hi - lo) * rng.random::<f64>();
        }
        let mut uni = |lo: f64, hi: f64| lo + (hi - lo) * rng.random::<f64>();
        let resp_hz = uni(0.2, 0.3);
        let resp_phase = uni(0.0, TAU);
        let mayer_hz = uni(0.08, 0.12);
        let mayer_phase = uni(0.0, TAU);
        let morph = MorphologyScale {
            p: uni(0.85, 1.15) as f32,
            qrs: uni(0.92, 1.12) as f32,
            t: uni(0.85, 1.15) as f32,
        };
        let fwave_hz = uni(5.0, 7.0);
        let fwave_mv = uni(0.06, 0.09);
        let fwave_phases = [uni(0.0, TAU), uni(0.0, TAU), uni(0.0, TAU)];
        for (slot, r) in base_bpm.iter_mut().zip(Rhythm::ALL).skip(RATES_DRAWN_FIRST) {
            let (lo, hi) = r.base_rate_bpm().unwrap_or((60.0, 60.0));
            *slot = uni(lo, hi);
        }
        Self {
            base_bpm,
            resp_hz,
            resp_phase,
            mayer_hz,
            mayer_phase,
            morph,
            fwave_hz,
            fwave_mv,
            fwave_phases,
        }
    }

    fn base_rr(&self, r: Rhythm) -> f64 {
        let i = Rhythm::ALL.iter().position(|&x| x == r).unwrap_or(0);
        60.0 / self.base_bpm[i]
    }

    /// Respiratory phase at time `t`.
    pub(crate) fn resp(&self, t: f64) -> f64 {
        (TAU * self.resp_hz * t + self.resp_phase).sin()
    }
}

/// Generates beats one at a time, in order, from its own RNG stream.
#[derive(Debug, Clone)]
pub(crate) struct BeatScheduler {
    rng: ChaCha8Rng,
    last_t: Option<f64>,
    last_kind: BeatKind,
    /// Set when the next beat is a PVC.
    pvc_next: bool,
    /// After a PVC: time of the next sinus beat (compensatory pause).
    sinus_after_pvc: Option<f64>,
    done: bool,
    fs: f64,
}

impl BeatScheduler {
    pub(crate) fn new(seed: u64, sample_rate: u32) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(STREAM_BEATS);
        Self {
            rng,
            last_t: None,
            last_kind: BeatKind::Normal,
            pvc_next: false,
            sinus_after_pvc: None,
            done: false,
            fs: f64::from(sample_rate),
        }
    }

    /// Time (s) of the last scheduled beat, if any; `None` also when no beat will
    /// ever come.
    pub(crate) fn horizon(&self) -> Option<f64> {
        if self.done {
            None
        } else {
            Some(self.last_t.unwrap_or(f64::NEG_INFINITY))
        }
    }

    fn normal(&mut self) -> f64 {
        self.rng.sample(StandardNormal)
    }

    fn sinus_rr(&mut self, phys: &Physiology, r: Rhythm, t: f64) -> f64 {
        let rr0 = phys.base_rr(r);
        // Variability shrinks at high rates.
        let s = if r == Rhythm::SinusTachycardia {
            0.4
        } else {
            1.0
        };
        let rsa = 0.04 * phys.resp(t);
        let mayer = 0.025 * (TAU * phys.mayer_hz * t + phys.mayer_phase).sin();
        let jitter = 0.01 * self.normal();
        rr0 * (1.0 + s * (rsa + mayer + jitter))
    }

    /// The interval from the beat at `lt` (in rhythm `r`) to the next one.
    fn interval(&mut self, phys: &Physiology, r: Rhythm, lt: f64) -> f64 {
        match r {
            Rhythm::NormalSinus
            | Rhythm::SinusBradycardia
            | Rhythm::SinusTachycardia
            | Rhythm::Asystole => self.sinus_rr(phys, r, lt),
            Rhythm::Pvcs => {
                if let Some(next) = self.sinus_after_pvc.take() {
                    return next - lt;
                }
                let rr = self.sinus_rr(phys, r, lt);
                let u: f64 = self.rng.random();
                if self.last_kind != BeatKind::Pvc && u < PVC_PROBABILITY {
                    let coupling = 0.55 + 0.1 * self.rng.random::<f64>();
                    self.pvc_next = true;
                    self.sinus_after_pvc = Some(lt + 2.0 * rr);
                    rr * coupling
                } else {
                    rr
                }
            }
            Rhythm::AtrialFibrillation => {
                let z = self.normal();
                let rr =
                    phys.base_rr(r) * (AF_RR_SIGMA * z - 0.5 * AF_RR_SIGMA * AF_RR_SIGMA).exp();
                rr.clamp(0.3, 2.0)
            }
            Rhythm::VentricularTachycardia => phys.base_rr(r) * (1.0 + 0.015 * self.normal()),
            // A pacemaker keeps its interval to the sample.
            Rhythm::VentricularPaced => phys.base_rr(r),
        }
    }

    /// Schedules the next beat, or `None` if the plan has no more beats.
    pub(crate) fn next_beat(
        &mut self,
        plan: &PlanIndex,
        phys: &Physiology,
    ) -> Option<ScheduledBeat> {
        if self.done {
            return None;
        }
        if !plan.has_beats() {
            self.done = true;
            return None;
        }
        let (mut t, rr) = match self.last_t {
            None => {
                // The first beat is never a PVC: there is no sinus beat before it.
                let r0 = plan.span_at(0).rhythm;
                let rr = match r0 {
                    Rhythm::Pvcs => self.sinus_rr(phys, r0, 0.0),
                    _ => self.interval(phys, r0, 0.0),
                };
                (0.3 + 0.5 * rr * self.rng.random::<f64>(), rr)
            }
            Some(lt) => {
                let r = plan.span_at_time(lt).rhythm;
                let rr = self.interval(phys, r, lt).clamp(0.2, 3.0);
                (lt + rr, rr)
            }
        };
        let mut rr = rr;
        // Skip over asystole: the next beat comes 0.3–0.4 s after it ends, so that
        // its P wave starts after the segment too.
        let mut span = plan.span_at_time(t);
        let mut hops = 0;
        while span.rhythm == Rhythm::Asystole {
            hops += 1;
            if span.end == u64::MAX || hops > plan.segment_count() + 1 {
                self.done = true;
                return None;
            }
            t = span.end as f64 / self.fs + 0.3 + 0.1 * self.rng.random::<f64>();
            rr = 1.0;
            self.pvc_next = false;
            self.sinus_after_pvc = None;
            span = plan.span_at_time(t);
        }
        let r = span.rhythm;
        let kind = match r {
            Rhythm::Pvcs if self.pvc_next => BeatKind::Pvc,
            Rhythm::AtrialFibrillation => BeatKind::AfConducted,
            Rhythm::VentricularTachycardia => BeatKind::Ventricular,
            Rhythm::VentricularPaced => BeatKind::Paced,
            _ => BeatKind::Normal,
        };
        self.pvc_next = false;
        if r != Rhythm::Pvcs {
            self.sinus_after_pvc = None;
        }
        self.last_t = Some(t);
        self.last_kind = kind;
        let qrs_mod = (1.0 + 0.05 * phys.resp(t + 1.3)) as f32;
        let waves = beat_waves(kind, t, rr, phys.morph, qrs_mod);
        let end = waves.iter().map(|w| w.hi).fold(t, f64::max);
        Some(ScheduledBeat {
            sample: (t * self.fs).round() as u64,
            kind,
            rhythm: r,
            waves,
            end,
            pace: (kind == BeatKind::Paced)
                .then(|| ((t - PACE_BEFORE_QRS_S).max(0.0) * self.fs).round() as u64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_spans_repeat_and_merge() {
        let plan = RhythmPlan::schedule(
            vec![
                (Rhythm::NormalSinus, 1.0),
                (Rhythm::NormalSinus, 1.0),
                (Rhythm::Asystole, 0.5),
            ],
            true,
        );
        let p = PlanIndex::new(&plan, 100);
        let s = p.span_at(0);
        assert_eq!((s.rhythm, s.start, s.end), (Rhythm::NormalSinus, 0, 200));
        let s = p.span_at(249);
        assert_eq!((s.rhythm, s.start, s.end), (Rhythm::Asystole, 200, 250));
        let s = p.span_at(250);
        assert_eq!((s.rhythm, s.start, s.end), (Rhythm::NormalSinus, 250, 450));
        let once = PlanIndex::new(&RhythmPlan::schedule(vec![(Rhythm::Pvcs, 1.0)], false), 100);
        assert_eq!(once.span_at(1_000_000).end, u64::MAX);
        let constant = PlanIndex::new(&RhythmPlan::constant(Rhythm::Asystole), 100);
        assert!(!constant.has_beats());
    }

    #[test]
    fn scheduler_skips_asystole_and_stops_when_no_beats_remain() {
        let fs = 250;
        let phys = Physiology::new(3);
        let plan = PlanIndex::new(
            &RhythmPlan::schedule(
                vec![(Rhythm::NormalSinus, 3.0), (Rhythm::Asystole, 5.0)],
                false,
            ),
            fs,
        );
        let mut s = BeatScheduler::new(3, fs);
        let mut n = 0;
        while let Some(b) = s.next_beat(&plan, &phys) {
            assert!(
                b.sample < 3 * 250 + 1,
                "beat at {} inside asystole",
                b.sample
            );
            n += 1;
            assert!(n < 100);
        }
        assert!(n >= 2);
        assert_eq!(s.horizon(), None);
    }
}
