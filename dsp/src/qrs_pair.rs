//! Beats of two leads: the streaming QRS detector on each, following the cleaner one.
//!
//! Electrode motion and muscle noise rarely disturb two leads alike: with the noise
//! stress test's electrode-motion noise at 6 dB, lead 1 of MIT-BIH gives more true and
//! fewer false beats than lead 0, although lead 0 is the better lead in clean signal
//! (`docs/accuracy-qrs.md`, "Two leads"). [`PairedQrs`] runs a [`QrsDetector`] on each
//! lead and keeps lead 0's beats except where lead 0 is noisy and lead 1 clearly
//! cleaner, where it takes lead 1's. "Noisy" is each detector's own
//! [`QrsDetector::noise_ratio`] (median rejected peak over median QRS peak) as it
//! stood when the beat came out:
//!
//! - a lead-0 beat is kept unless its ratio `r0` is at least [`NOISY`] and the nearest
//!   lead-1 beat's ratio is below [`MARGIN`] × `r0`;
//! - a lead-1 beat is added when the nearest lead-0 beat's ratio `r0` is at least
//!   [`NOISY`] and its own is below [`MARGIN`] × `r0`, unless a kept lead-0 beat lies
//!   within the match window (150 ms) of it.
//!
//! So in clean signal, where lead 0's ratio stays below [`NOISY`], the beats are lead
//! 0's exactly. "Nearest" looks at the other lead's beats from [`LOOK_S`] before the
//! beat to 150 ms after it; without one there, lead 0 stands (a lead that found no
//! beat for that long is no evidence: lead 1 flat, or lead 0 silent, whose pauses are
//! the pause events' and the quality gate's business, not lead 1's). A beat is
//! decided once both leads' beats are final up to 300 ms after it (a kept lead-0 beat
//! up to 150 ms after a lead-1 beat is judged by lead-1 beats up to 150 ms after
//! itself). The pair's latency is therefore the detector's plus 300 ms, and the beats
//! do not depend on how the samples are cut into blocks.
//!
//! While lead 1 is flagged off (any sample within the match window of a beat), lead 0
//! stands and lead 1's beats are never added.
//!
//! The two values were chosen on the tuning half of the noise mixtures in an offline
//! study (`tools/qrs_two_lead.py`, whose `cleaner` rule this is), not re-chosen here.

use std::collections::VecDeque;

use crate::qrs::QrsDetector;

/// Lead 0's noise ratio from which lead 1 may be preferred.
pub const NOISY: f32 = 0.25;
/// Lead 1 is preferred when its noise ratio is below this fraction of lead 0's.
pub const MARGIN: f32 = 0.8;
/// Match window (s): beats of the two leads this close are the same beat.
const MATCH_S: f64 = 0.150;
/// How far back (s) the other lead's nearest beat is looked for.
pub const LOOK_S: f64 = 2.0;
/// Span (s) over which the two leads' beat counts are compared.
const COUNT_S: f64 = 10.0;
/// Lead 1 is not preferred while it has fewer than `COUNT_NUM / COUNT_DEN` of lead
/// 0's beats over the last [`COUNT_S`].
const COUNT_NUM: usize = 4;
const COUNT_DEN: usize = 5;

/// Two leads' streaming QRS detectors and the rule that follows the cleaner lead.
/// See the module documentation.
#[derive(Debug, Clone)]
pub struct PairedQrs {
    det: [QrsDetector; 2],
    /// Each lead's beats that are still needed, with the noise ratio at output.
    beats: [VecDeque<(u64, f32)>; 2],
    /// Per lead, the index in `beats` of the first beat not yet decided.
    undecided: [usize; 2],
    /// Match window (samples).
    win: u64,
    /// Beat-count span (samples).
    span: u64,
    /// How far back the nearest beat is looked for (samples).
    look: u64,
    /// Intervals `[start, end)` of samples where lead 1 was flagged off, still needed.
    off1: VecDeque<(u64, u64)>,
    scratch: Vec<u64>,
}

/// Lead 0's beat stands as it is: lead 0 quiet, or lead 1 not clearly cleaner.
fn lead0_trusted(r0: f32, r1: f32) -> bool {
    r0 < NOISY || r1 >= MARGIN * r0
}

/// The beat of `beats` nearest to `t` among those in `[t - look, t + win]` (`None`
/// without such a beat): its time and noise ratio.
fn nearest(beats: &VecDeque<(u64, f32)>, t: u64, win: u64, look: u64) -> Option<(u64, f32)> {
    let start = beats.partition_point(|b| b.0 + look < t);
    let end = beats.partition_point(|b| b.0 <= t + win);
    let i = beats.partition_point(|b| b.0 < t).clamp(start, end);
    let after = (i < end).then(|| beats[i]);
    let before = (i > start).then(|| beats[i - 1]);
    match (before, after) {
        (Some(b), Some(a)) => Some(if t - b.0 <= a.0 - t { b } else { a }),
        (b, a) => b.or(a),
    }
}

impl PairedQrs {
    /// Detectors for two leads at `fs` Hz.
    pub fn new(fs: f64) -> Self {
        let win = (MATCH_S * fs).round() as u64;
        Self {
            det: [QrsDetector::new(fs), QrsDetector::new(fs)],
            beats: [VecDeque::new(), VecDeque::new()],
            undecided: [0; 2],
            win,
            span: (COUNT_S * fs).round() as u64,
            look: (LOOK_S * fs).round() as u64,
            off1: VecDeque::new(),
            scratch: Vec::new(),
        }
    }

    /// Fixed upper bound of the delay between a beat and its output: the detector's
    /// latency plus twice the match window.
    pub fn latency_samples(&self) -> usize {
        self.det[0].latency_samples() + 2 * self.win as usize
    }

    /// Samples per lead pushed so far.
    pub fn samples_seen(&self) -> u64 {
        self.det[0].samples_seen()
    }

    /// Heap and inline bytes of this state.
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self
                .det
                .iter()
                .map(|d| d.state_bytes() - std::mem::size_of::<QrsDetector>())
                .sum::<usize>()
            + self
                .beats
                .iter()
                .map(|b| b.capacity() * std::mem::size_of::<(u64, f32)>())
                .sum::<usize>()
            + self.off1.capacity() * std::mem::size_of::<(u64, u64)>()
            + self.scratch.capacity() * std::mem::size_of::<u64>()
    }

    /// Feeds one sample of each lead (raw, mV; `off1`: lead 1 flagged off) and
    /// appends the beats decided by it to `out`, in increasing order.
    pub fn step(&mut self, x0: f32, x1: f32, off1: bool, out: &mut Vec<u64>) {
        if off1 {
            let n = self.samples_seen();
            match self.off1.back_mut() {
                Some(r) if r.1 == n => r.1 = n + 1,
                _ => self.off1.push_back((n, n + 1)),
            }
        }
        for (lead, x) in [(0, x0), (1, x1)] {
            self.det[lead].push(&[x], &mut self.scratch);
            if !self.scratch.is_empty() {
                let r = self.det[lead].noise_ratio();
                self.beats[lead].extend(self.scratch.drain(..).map(|b| (b, r)));
            }
        }
        // Both leads' beats are final up to `samples_seen - 1 - detector latency`; a
        // beat two windows before that or earlier can be decided (checked per sample
        // against the first undecided beat only).
        let Some(until) = self
            .samples_seen()
            .checked_sub(self.latency_samples() as u64)
        else {
            return;
        };
        let due = |lead: usize| {
            self.beats[lead]
                .get(self.undecided[lead])
                .is_some_and(|b| b.0 < until)
        };
        if due(0) || due(1) {
            self.decide(until, out);
        }
    }

    /// Decides the beats before `until`.
    fn decide(&mut self, until: u64, out: &mut Vec<u64>) {
        let win = self.win;
        let first = out.len();
        for lead in 0..2 {
            while let Some(&(t, r)) = self.beats[lead].get(self.undecided[lead]) {
                if t >= until {
                    break;
                }
                let take = if lead == 0 {
                    self.keep0(t, r)
                } else {
                    self.add1(t, r)
                };
                if take {
                    out.push(t);
                }
                self.undecided[lead] += 1;
            }
        }
        out[first..].sort_unstable();
        // Forget what no later decision reads: a beat whose successor is at least a
        // window before the next beat to decide is never the nearest again, and one
        // older than the count span is not counted.
        let span = self.span;
        for (b, u) in self.beats.iter_mut().zip(&mut self.undecided) {
            while b.len() > 1 && b[1].0 + win <= until && b[0].0 + span < until {
                b.pop_front();
                *u -= 1;
            }
        }
        // Lead-off intervals are read within a window of beats at least `look` before
        // the next beat to decide.
        let keep = until.saturating_sub(self.look + win);
        while self.off1.front().is_some_and(|r| r.1 < keep) {
            self.off1.pop_front();
        }
    }

    /// Lead 1 was flagged off at some sample within the match window of `t`.
    fn lead1_off_near(&self, t: u64) -> bool {
        let (lo, hi) = (t.saturating_sub(self.win), t + self.win);
        self.off1.iter().any(|&(s, e)| s <= hi && e > lo)
    }

    /// Lead 0 stands as it is at `t`: by the noise ratios (see [`lead0_trusted`]), or
    /// because lead 1 found clearly fewer beats than lead 0 over the count span up to
    /// a window after `t` (a lead that misses beats is not the cleaner one: in
    /// ventricular bigeminy with large T waves lead 0's ratio rises while lead 1 may
    /// take one beat of each pair).
    fn lead0_stands(&self, t: u64, r0: f32, r1: f32) -> bool {
        if lead0_trusted(r0, r1) {
            return true;
        }
        let end = t + self.win;
        let count = |b: &VecDeque<(u64, f32)>| {
            b.partition_point(|x| x.0 <= end) - b.partition_point(|x| x.0 + self.span <= end)
        };
        COUNT_DEN * count(&self.beats[1]) < COUNT_NUM * count(&self.beats[0])
    }

    fn keep0(&self, t: u64, r0: f32) -> bool {
        if self.lead1_off_near(t) {
            return true;
        }
        nearest(&self.beats[1], t, self.win, self.look)
            .is_none_or(|(t1, r1)| self.lead1_off_near(t1) || self.lead0_stands(t, r0, r1))
    }

    fn add1(&self, t: u64, r1: f32) -> bool {
        if self.lead1_off_near(t) {
            return false;
        }
        let Some((_, r0)) = nearest(&self.beats[0], t, self.win, self.look) else {
            return false;
        };
        if self.lead0_stands(t, r0, r1) {
            return false;
        }
        let b = &self.beats[0];
        let (lo, hi) = (t.saturating_sub(self.win), t + self.win);
        let from = b.partition_point(|x| x.0 < lo);
        !b.range(from..)
            .take_while(|x| x.0 <= hi)
            .any(|&(b0, r)| self.keep0(b0, r))
    }

    /// Feeds a block of each lead (equal lengths; the shorter sets the count) and
    /// appends the decided beats to `out`.
    pub fn push(&mut self, x0: &[f32], x1: &[f32], off1: bool, out: &mut Vec<u64>) {
        for (&a, &b) in x0.iter().zip(x1) {
            self.step(a, b, off1, out);
        }
    }

    /// Marks the end of a recording at the samples pushed so far (see
    /// [`QrsDetector::finish`]): the samples pushed after it only flush the detectors.
    pub(crate) fn mark_end(&mut self) {
        for d in &mut self.det {
            d.mark_end();
        }
    }

    /// The last samples pushed, as the detectors took them, and whether lead 1 was
    /// flagged off then (0, 0 and not before any): what [`PairedQrs::finish`] repeats.
    /// The lead-off interval holding the last sample is never forgotten before a
    /// later one begins.
    pub(crate) fn last(&self) -> (f32, f32, bool) {
        let n = self.samples_seen();
        let off1 = n > 0 && self.off1.back().is_some_and(|r| r.1 == n);
        (self.det[0].last_sample(), self.det[1].last_sample(), off1)
    }

    /// Ends a recording: feeds the last samples pushed (0 before any) again for the
    /// latency, so that every beat of the recording is decided, and appends those
    /// beats to `out`, without searching back for a beat not yet due when the
    /// recording stopped ([`QrsDetector::finish`]). Beats at or after the recording's
    /// end are the caller's to drop.
    pub fn finish(&mut self, out: &mut Vec<u64>) {
        self.mark_end();
        let (x0, x1, off1) = self.last();
        for _ in 0..=self.latency_samples() {
            self.step(x0, x1, off1, out);
        }
    }
}
