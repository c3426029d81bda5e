//! AF episodes: onset and offset with hysteresis over a stream's AF model windows.
//!
//! A continuous stream's AF windows (30 s every 10 s for the bundled model) overlap;
//! each window's call is attributed to its **centre segment** — the middle `hop` of
//! the window (10 s for the bundled model), so consecutive windows' segments tile
//! the stream's time without overlap and a call is never shifted towards either end.
//! The part of a window before its centre that no earlier window's segment holds
//! (the first `hop`s of a stream, or the time after a gap) belongs to that window
//! too: every instant goes to the nearest centre among the windows that cover it,
//! so the first 20 s of a stream that starts in AF are not lost to the grid.
//!
//! Two kinds of evidence decide a window, with hysteresis between them:
//!
//! - **onset evidence**: the model calls the window AF (its AF probability reaches the
//!   manifest's finding threshold) *and* the window's RR intervals are irregularly
//!   irregular (the DSP stage's RR rule, [`ecg_dsp::rhythm::rr_irregular_with`], on
//!   every beat detected in the window: the analyzer scores an AF model's window once
//!   the rhythm windows have covered it);
//! - **sustain evidence**: the RR intervals are irregular and the model's AF
//!   probability is at least `stay_probability` (below the finding threshold): inside
//!   an episode a window the model is unsure about does not end it, while a regular
//!   rhythm, or a window the model is sure is not AF, does. Inside an episode, the
//!   model's call alone is sustain evidence too: AF whose ventricular rhythm is made
//!   regular (paced beats between the conducted ones, as in MIT-BIH 217; a
//!   regularised response) keeps its fibrillatory waves, which the model reads and
//!   the RR intervals cannot show. An onset still needs both.
//!
//! The two sources fail differently: the waveform model calls AF on some regular
//! rhythms with frequent ectopy (MIT-BIH 215), which the RR rule rejects; the RR rule
//! calls AF on irregular non-AF rhythms (ectopy, noise-made beats), which the model
//! rejects; and inside an AF episode the model's probability dips on windows with
//! ventricular ectopy or flutter while the RR stays irregular. `require_rr_irregular
//! = false` and `stay_probability` at or above the threshold give the model's call
//! alone.
//!
//! Per stream a small state machine turns segment calls into episodes:
//!
//! - **onset** after `onset_windows` consecutive windows with onset evidence (any
//!   other scored window breaks the run, one with sustain evidence only, in the band
//!   between `stay_probability` and the threshold, too; windows the model could not
//!   score and signal gaps between them do not, unless the run's last window ended
//!   more than `max_gap_s` before): the episode starts at the first of their segments;
//! - **offset** after `offset_windows` consecutive windows without sustain evidence:
//!   the episode ends where the first of them begins, or, with `beat_offsets`, at the
//!   beat of that first window where its RR intervals turn regular ([`offset_in`]);
//! - windows the model could not score (indeterminate: most often the quality gate
//!   failed them; also a window the model rejected or failed on) say nothing about the
//!   rhythm, but where an offset's first window follows such windows, or a signal gap
//!   shorter than `max_gap_s`, straight after the episode's last AF segment, the AF
//!   ended somewhere in that stretch nobody read and the episode ends in its middle,
//!   the unbiased date of a change known only to lie in it, with or without
//!   `beat_offsets` (AF on both sides of the stretch bridges it, however long). The
//!   gate fails every window in which a failed rhythm window ends, so the first scored
//!   window after a failed stretch begins after it: its beats cannot show where in the
//!   stretch the AF stopped;
//! - a jump of more than `max_gap_s` between windows (a signal gap, an evicted stream)
//!   ends an open episode at its last AF segment;
//! - with `gated_windows` (default), the scorer also scores the windows the quality gate
//!   failed, for the tracker only: inside an open episode, the model's call on such a
//!   window (unless its top class is its noise class) counts as a scored window's
//!   ([`AfEpisodes::apply_gated`]); it never starts an episode, and the published
//!   finding stays indeterminate (the API's AF burden counts scored time only).
//!
//! Every AF finding of the tracked model then carries the state: `present` with the
//! episode's start while in an episode, `absent` outside one (its score unchanged), so
//! an alert follows the episode and a replay reproduces it from the same windows. The
//! finding whose window ends an episode carries the episode's end (`episode_end`),
//! which can lie in an earlier window's segment: the first window without sustain
//! evidence was still reported inside the episode.
//!
//! **Beat-level offsets.** A window's call covers its 10 s segment, but where in the
//! window the rhythm changed shows in its beats. Each pair of consecutive RR intervals
//! of the first window without sustain evidence is marked irregular when their
//! difference reaches the RR rule's own `min_nmad_drr` (0.08) times the window's
//! median RR, regular otherwise (with at least half of its marks irregular, a window
//! passes that index of the rule, before the rule leaves out the intervals around
//! premature beats). Counting an irregular mark +½ and a
//! regular one −½, the offset is where the running sum is highest — irregular marks
//! before it outweigh regular ones, and the other way after it: a change point with no
//! parameter of its own — at the middle beat of the last irregular-side mark, kept
//! within the window's start and its centre segment's end (at most 10 s before or
//! after the segment edge). It is not done for onsets: the same change point on the
//! first AF window of a run dated onsets worse on MIT-BIH (mean error 8.9 → 12.0 s,
//! clean), where non-AF irregular rhythms (ectopy) often lead into AF; after AF the
//! model, not the RR, is what usually ends the episode, and the RR of the window that
//! ends it shows where the irregularity stopped. Nor is it done when the last window
//! that held the episode did so by the model's call alone: its RR was regular already,
//! so the RR of the window after it cannot show where the AF stopped, and the offset
//! is the segment edge; nor after a stretch nobody read (above), where the AF stopped
//! before the window's beats begin.

use std::collections::HashMap;

use ecg_dsp::rhythm::{median, rr_irregular_with, IrregularityThresholds};
use ecg_types::{Condition, DeviceTimeUs, Finding, FindingStatus, StreamId};
use serde::{Deserialize, Serialize};

/// Evidence and hysteresis of AF episodes (`[pipeline.af_episodes]`); see the module
/// documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EpisodeSettings {
    /// Consecutive windows with onset evidence that start an episode.
    pub onset_windows: u32,
    /// Consecutive windows without sustain evidence that end it.
    pub offset_windows: u32,
    /// A longer jump between windows (s) ends an open episode; a longer stretch of
    /// unscored windows or gap after an onset run's last window breaks the run.
    pub max_gap_s: f32,
    /// Onset evidence needs the window's RR intervals irregularly irregular by the
    /// DSP stage's RR rule (`[pipeline.dsp.af]`, the one the rhythm calls use); so
    /// does sustain evidence, except that inside an open episode a window the model
    /// calls AF sustains it whatever the RR. Off, the model's probability alone
    /// decides.
    pub require_rr_irregular: bool,
    /// Lowest AF probability that keeps an open episode going (with irregular RR).
    /// The default 0.1 is a round value below the 5th percentile (0.14) of af-cnn
    /// 1.0.0's AF probability on the AF windows of its validation part (CinC 2017,
    /// never its held-out part): 97 % of those windows reach it, 3.4 % of the
    /// normal-rhythm ones do (`docs/accuracy-af.md` §4). With af-cnn 1.1.0 the same
    /// windows give 0.17, 97 % and 2.4 %; with 1.2.0 (trained on those records) its
    /// out-of-fold windows give 0.084, 94 % and 3.5 % (`models/af-cnn/alldata.py
    /// stay`), with 1.3.0 (its stacker cross-fitted) 0.042, 91 % and 1.4 %
    /// (`models/af-cnn/atrial_oof.py stay`): the rule would lower it, not raise it,
    /// and the value stands.
    pub stay_probability: f32,
    /// Date an offset at the beat where the RR intervals of the first window without
    /// sustain evidence turn regular ([`offset_in`]), instead of at that window's
    /// segment start (either way, an offset after a stretch nobody read is dated in
    /// the middle of that stretch: see the module documentation).
    pub beat_offsets: bool,
    /// Windows the quality gate failed are also scored, for the tracker only: where
    /// the model's top class is not its noise class `~`, its call counts inside an
    /// open episode (sustaining it, or towards its offset) as a scored window's does;
    /// it never starts one, and the published finding stays indeterminate
    /// ([`AfEpisodes::apply_gated`]). Off, such windows say nothing.
    pub gated_windows: bool,
    /// Judge RR irregularity (onset and sustain evidence) on the window's
    /// normal-to-normal intervals: those between two consecutive beats neither of
    /// which the DSP stage's PVC classifier called a PVC with a wide QRS
    /// ([`nn_intervals`]; `ModelInput::wide_pvc`). AF is a
    /// rhythm of the conducted beats; ventricular beats (PVCs, couplets, runs) come on
    /// their own clock and make frequent ectopy look irregularly irregular. Off, every
    /// interval is read. Either way the ectopic-pair removal of the RR rule applies.
    /// Off by default: it did not pass its checks (`docs/accuracy-af.md`,
    /// "Normal-to-normal intervals for the tracker's RR rule"; the third, with wide
    /// PVCs only, lowered error time in 10 of 20 runs where 14 were asked).
    pub nn_intervals: bool,
}

impl Default for EpisodeSettings {
    fn default() -> Self {
        Self {
            onset_windows: 2,
            offset_windows: 2,
            max_gap_s: 60.0,
            require_rr_irregular: true,
            stay_probability: 0.1,
            beat_offsets: true,
            gated_windows: true,
            nn_intervals: false,
        }
    }
}

impl EpisodeSettings {
    /// Checks the values, naming the setting (`pipeline.af_episodes.…`) at fault.
    ///
    /// # Errors
    /// A message naming the first setting out of range.
    pub fn validate(&self) -> Result<(), String> {
        let at = "pipeline.af_episodes";
        if self.onset_windows == 0 || self.offset_windows == 0 {
            return Err(format!(
                "{at}.onset_windows and offset_windows must be above 0 ({}, {})",
                self.onset_windows, self.offset_windows
            ));
        }
        if self.max_gap_s.is_nan() || self.max_gap_s <= 0.0 {
            return Err(format!("{at}.max_gap_s {} must be above 0", self.max_gap_s));
        }
        if !(0.0..=1.0).contains(&self.stay_probability) {
            return Err(format!(
                "{at}.stay_probability {} is outside 0..=1",
                self.stay_probability
            ));
        }
        Ok(())
    }
}

/// The centre segment of the window `[start, end)` of a model whose windows come
/// every `hop_us`: its middle `hop_us` (the whole window if shorter).
pub fn centre_segment(start: i64, end: i64, hop_us: i64) -> (i64, i64) {
    let len = hop_us.max(1).min(end - start);
    let mid = start + (end - start) / 2;
    (mid - len / 2, mid - len / 2 + len)
}

/// The irregularity marks of a window's beats ([`offset_in`]): for each pair of
/// consecutive RR intervals, its middle beat's time and +½ (their difference at least
/// `min_ratio` × the median RR) or −½. Empty with fewer than three beats.
fn marks(beats_s: &[f32], min_ratio: f32) -> Vec<(f32, f32)> {
    if beats_s.len() < 3 {
        return Vec::new();
    }
    let rr: Vec<f32> = beats_s.windows(2).map(|w| w[1] - w[0]).collect();
    let median = median(&rr);
    rr.windows(2)
        .zip(&beats_s[1..])
        .map(|(d, &t)| {
            let irregular = (d[1] - d[0]).abs() >= min_ratio * median;
            (t, if irregular { 0.5 } else { -0.5 })
        })
        .collect()
}

/// Where the RR intervals of a window turn regular: seconds from the window's start
/// (`beats_s`, the window's beats from its start) to the middle beat of the last mark
/// before the highest running sum of its irregularity marks (irregular +½, regular
/// −½, a mark irregular when consecutive RR intervals differ by at least `min_ratio`
/// × the median RR); 0 when the sum is highest before the first mark (regular from
/// the start), `None` with fewer than three beats.
pub fn offset_in(beats_s: &[f32], min_ratio: f32) -> Option<f32> {
    let marks = marks(beats_s, min_ratio);
    let (mut sum, mut high, mut at) = (0.0f32, 0.0f32, 0usize);
    for (k, (_, m)) in marks.iter().enumerate() {
        sum += m;
        if sum > high {
            high = sum;
            at = k + 1;
        }
    }
    match at {
        _ if marks.is_empty() => None,
        0 => Some(0.0),
        k => Some(marks[k - 1].0),
    }
}

/// The RR intervals `rr_s` (s; `rr_s[i]` between beats `i` and `i + 1`) neither of
/// whose beats is flagged in `pvc` (one flag per beat: called a PVC). `rr_s` as it is
/// when the lengths do not pair up.
pub fn nn_intervals(rr_s: &[f32], pvc: &[bool]) -> Vec<f32> {
    if pvc.len() != rr_s.len() + 1 {
        return rr_s.to_vec();
    }
    rr_s.iter()
        .zip(pvc.windows(2))
        .filter(|(_, w)| !w[0] && !w[1])
        .map(|(&r, _)| r)
        .collect()
}

/// One stream's state.
#[derive(Debug, Clone, Default)]
struct State {
    /// Start of the open episode.
    open: Option<i64>,
    /// End of the last AF segment of the open episode.
    last_af_end: i64,
    /// Run of consecutive AF windows not yet an episode: its first segment's start,
    /// its length, its last segment's end.
    run: Option<(i64, u32, i64)>,
    /// Run of non-AF windows inside an episode: where the episode would end (the first
    /// one's segment start, the beat where that window turns regular, or the middle
    /// of the unread stretch before it), its length.
    quiet: Option<(i64, u32)>,
    /// The last window that sustained the open episode did so by the model's call
    /// alone, its RR regular: the RR of the window after it cannot date the offset.
    held_by_call: bool,
    /// End of the last window's segment.
    last_end: Option<i64>,
}

/// An episode that ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Episode {
    /// Start (device µs).
    pub start: i64,
    /// End (device µs).
    pub end: i64,
}

/// The per-stream episode trackers of one model.
#[derive(Debug, Default)]
pub struct AfEpisodes {
    settings: EpisodeSettings,
    /// The DSP stage's RR rule.
    rr_rule: IrregularityThresholds,
    hop_us: i64,
    streams: HashMap<StreamId, State>,
}

impl AfEpisodes {
    /// Trackers for a model whose windows come every `hop_us`, judging RR
    /// irregularity by `rr_rule` (the DSP stage's, `DspConfig::af`).
    pub fn new(settings: EpisodeSettings, rr_rule: IrregularityThresholds, hop_us: i64) -> Self {
        Self {
            settings,
            rr_rule,
            hop_us: hop_us.max(1),
            streams: HashMap::new(),
        }
    }

    /// The centre segment of the window `[start, end)` ([`centre_segment`]).
    pub fn segment(&self, start: i64, end: i64) -> (i64, i64) {
        centre_segment(start, end, self.hop_us)
    }

    /// Forgets a stream (evicted).
    pub fn forget(&mut self, stream: &StreamId) {
        self.streams.remove(stream);
    }

    /// Streams with episode state.
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// Takes a window's AF finding (its status is the model's call, its score the AF
    /// probability), the RR intervals (s) of the beats detected in the window and
    /// those beats' times (s from the window's start), rewrites the finding to the
    /// episode state, and returns the episode it closed, if any (also on the finding,
    /// `episode_end`).
    pub fn apply(&mut self, f: &mut Finding, rr_s: &[f32], beats_s: &[f32]) -> Option<Episode> {
        self.apply_beats(f, rr_s, beats_s, &[])
    }

    /// [`Self::apply`] with, for each of the window's beats, whether the DSP stage's
    /// PVC classifier called it a PVC (`ModelInput::wide_pvc`): with
    /// [`EpisodeSettings::nn_intervals`] the RR rule reads the intervals between the
    /// other beats. With no PVC in the window that is `rr_s`.
    pub fn apply_beats(
        &mut self,
        f: &mut Finding,
        rr_s: &[f32],
        beats_s: &[f32],
        wide_pvc: &[bool],
    ) -> Option<Episode> {
        if f.condition != Condition::AtrialFibrillation {
            return None;
        }
        let nn;
        let rr_s = if self.settings.nn_intervals && wide_pvc.contains(&true) {
            nn = nn_intervals(rr_s, wide_pvc);
            &nn[..]
        } else {
            rr_s
        };
        let closed = self.track(f, rr_s, beats_s);
        f.episode_end = closed.map(|e| DeviceTimeUs(e.end));
        closed
    }

    /// The model's call on a window the quality gate failed (`call`: present or absent
    /// by the model's threshold, with its score; the published finding stays
    /// indeterminate). Inside an open episode it counts as a scored window (it sustains
    /// the episode, or counts towards its offset); outside one it is an unscored
    /// window, since an onset needs windows the gate passed. Returns the episode it
    /// closed. Needs [`EpisodeSettings::gated_windows`].
    pub fn apply_gated(
        &mut self,
        call: &mut Finding,
        rr_s: &[f32],
        beats_s: &[f32],
        wide_pvc: &[bool],
    ) -> Option<Episode> {
        let open = self
            .streams
            .get(&call.stream)
            .is_some_and(|st| st.open.is_some());
        if !(open && self.settings.gated_windows) {
            call.status = FindingStatus::Indeterminate;
            call.score = None;
        }
        self.apply_beats(call, rr_s, beats_s, wide_pvc)
    }

    /// Whether windows the gate failed are scored for the tracker
    /// ([`EpisodeSettings::gated_windows`]).
    pub fn reads_gated_windows(&self) -> bool {
        self.settings.gated_windows
    }

    /// [`Self::apply`] but for `episode_end`: the state machine on one AF finding.
    fn track(&mut self, f: &mut Finding, rr_s: &[f32], beats_s: &[f32]) -> Option<Episode> {
        let (centre_start, seg_end) = self.segment(f.window_start.0, f.window_end.0);
        let s = &self.settings;
        let st = self.streams.entry(f.stream.clone()).or_default();
        // The window's segment: its centre, and before it whatever of the window no
        // earlier window's segment holds (the stream's first window, the first after
        // a gap): each instant goes to the nearest centre of the windows that cover it.
        let seg_start = st
            .last_end
            .map_or(f.window_start.0, |last| last.max(f.window_start.0))
            .min(centre_start);
        // Where in the window its RR intervals turn regular, as device time within the
        // window's start and its centre segment's end.
        let at_beat = |x: Option<f32>, edge: i64| -> i64 {
            match x {
                // max then min, not clamp: no panic on a window whose segment ends
                // before its start (none the pipeline builds).
                Some(x) if s.beat_offsets => (f.window_start.0
                    + (f64::from(x) * 1e6).round() as i64)
                    .max(f.window_start.0)
                    .min(seg_end),
                _ => edge,
            }
        };
        let min_ratio = self.rr_rule.min_nmad_drr;
        let mut closed = None;
        let max_gap_us = (f64::from(s.max_gap_s) * 1e6) as i64;
        // A jump in time longer than `max_gap_s` ends what was open.
        if let Some(last) = st.last_end {
            if centre_start - last > max_gap_us {
                if let Some(start) = st.open.take() {
                    closed = Some(Episode {
                        start,
                        end: st.last_af_end,
                    });
                }
                st.run = None;
                st.quiet = None;
            }
        }
        st.last_end = Some(seg_end);
        // A window the model could not score says nothing about the rhythm. An onset
        // run's AF calls must follow each other with nothing read between them, but
        // windows nobody could read (or a signal gap) between two calls do not break
        // it unless they last longer than `max_gap_s`, as a gap that long ends an
        // episode: an AF call, an hour of unreadable signal and another call open no
        // episode dated from before that hour.
        if f.status == FindingStatus::Indeterminate {
            return closed;
        }
        if st
            .run
            .is_some_and(|(_, _, end)| seg_start - end > max_gap_us)
        {
            st.run = None;
        }
        // What the window says: sustain evidence, and onset evidence (the model's
        // call on top of it).
        let called = f.status == FindingStatus::Present;
        let likely = called || f.score.is_some_and(|p| p >= s.stay_probability);
        let irregular = !s.require_rr_irregular || rr_irregular_with(rr_s, &self.rr_rule);
        let onset = called && irregular;
        // Inside an episode the model's own call keeps it going, whatever the RR
        // intervals say: a ventricular rhythm made regular under AF (pacing, a
        // regularised response) leaves the fibrillation in the waveform.
        let sustain = likely && (irregular || (called && st.open.is_some()));
        match st.open {
            Some(_) if sustain => {
                st.quiet = None;
                st.last_af_end = seg_end;
                st.held_by_call = !irregular;
            }
            Some(start) => {
                // After a window held by the model's call alone the RR was regular
                // already, so where it "turns regular" says nothing: no beat to date
                // the offset by, it is the segment edge. After windows the model could
                // not score (or a short gap), the AF ended somewhere in that stretch:
                // in its middle.
                let (end, n) = match st.quiet {
                    Some((end, n)) => (end, n + 1),
                    None if seg_start > st.last_af_end => {
                        (st.last_af_end + (seg_start - st.last_af_end) / 2, 1)
                    }
                    None => {
                        let dated = !st.held_by_call;
                        let x = dated.then(|| offset_in(beats_s, min_ratio)).flatten();
                        (at_beat(x, seg_start), 1)
                    }
                };
                st.quiet = Some((end, n));
                if n >= s.offset_windows.max(1) {
                    st.open = None;
                    st.quiet = None;
                    closed = Some(Episode {
                        start,
                        end: end.max(start),
                    });
                }
            }
            None if onset => {
                let (start, n) = st
                    .run
                    .map_or((seg_start, 1), |(start, n, _)| (start, n + 1));
                st.run = Some((start, n, seg_end));
                if n >= s.onset_windows.max(1) {
                    st.open = Some(start);
                    st.last_af_end = seg_end;
                    st.held_by_call = false;
                    st.run = None;
                }
            }
            // Any other window, one in the band between `stay_probability` and the
            // threshold too, breaks the run: a rhythm whose windows sit in the band
            // (frequent ectopy with irregular RR) would otherwise open an episode on
            // any two AF calls, however far apart.
            None => st.run = None,
        }
        // The finding says what the episode state is.
        match st.open {
            Some(start) => {
                f.status = FindingStatus::Present;
                f.episode_start = Some(DeviceTimeUs(start));
            }
            None => {
                f.status = FindingStatus::Absent;
                f.episode_start = None;
            }
        }
        closed
    }

    /// Where each open episode would end if its stream stopped now, per stream: its
    /// start, and `Some(end)` — the offset already dated when a window without sustain
    /// evidence has come since its last AF segment (the first of the two an offset
    /// needs), or that segment's end when only windows the model could not score
    /// came after it — or `None` when the stream's last window sustained it: nothing
    /// after that window says the AF stopped, so it runs to the stream's end.
    pub fn at_stop(&self) -> impl Iterator<Item = (&StreamId, i64, Option<i64>)> {
        self.streams.iter().filter_map(|(id, st)| {
            st.open.map(|start| {
                let end = match st.quiet {
                    Some((end, _)) => Some(end),
                    None if st.last_end == Some(st.last_af_end) => None,
                    None => Some(st.last_af_end),
                };
                (id, start, end)
            })
        })
    }

    /// The episodes still open, per stream (start, end of the last AF segment).
    pub fn open(&self) -> impl Iterator<Item = (&StreamId, Episode)> {
        self.streams.iter().filter_map(|(id, st)| {
            st.open.map(|start| {
                (
                    id,
                    Episode {
                        start,
                        end: st.last_af_end,
                    },
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecg_types::{FindingSource, PatientId};

    fn window(k: i64, status: FindingStatus) -> Finding {
        // 30 s windows every 10 s: window k covers [10k, 10k + 30) s, centre [10k+10, 10k+20).
        Finding::new(
            StreamId::new("s").unwrap_or_else(|_| unreachable!()),
            PatientId::new("p").unwrap_or_else(|_| unreachable!()),
            FindingSource::Model {
                id: "af".into(),
                version: "1".into(),
            },
            Condition::AtrialFibrillation,
            status,
            DeviceTimeUs(k * 10_000_000),
            DeviceTimeUs(k * 10_000_000 + 30_000_000),
        )
    }

    /// Trackers of 10 s hops with the DSP stage's default RR rule.
    fn tracker(settings: EpisodeSettings) -> AfEpisodes {
        AfEpisodes::new(settings, IrregularityThresholds::default(), 10_000_000)
    }

    /// A window as the model scored it: probability `p` against the threshold 0.4.
    fn scored(k: i64, p: f32) -> Finding {
        let status = if p >= 0.4 {
            FindingStatus::Present
        } else {
            FindingStatus::Absent
        };
        window(k, status).with_score(Some(p))
    }

    /// 30 s of irregularly irregular RR intervals (0.45–1.05 s, a fixed LCG).
    fn irregular() -> Vec<f32> {
        let mut x = 12_345u32;
        let mut rr = Vec::new();
        while rr.iter().sum::<f32>() < 30.0 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            rr.push(0.45 + 0.6 * ((x >> 16) % 1000) as f32 / 1000.0);
        }
        rr
    }

    /// 30 s of a regular rhythm at 75 bpm with an isolated premature beat.
    fn regular() -> Vec<f32> {
        let mut rr = vec![0.8f32; 37];
        rr[10] = 0.5;
        rr[11] = 1.1;
        rr
    }

    #[test]
    fn nn_intervals_leave_out_the_intervals_at_pvcs() {
        let beats = [0.0f32, 0.8, 1.2, 2.4, 3.2, 3.6, 3.9, 5.2];
        let rr: Vec<f32> = beats.windows(2).map(|w| w[1] - w[0]).collect();
        // PVCs at 1.2, 3.6 and 3.9 s.
        let pvc = [false, false, true, false, false, true, true, false];
        assert_eq!(nn_intervals(&rr, &pvc), vec![rr[0], rr[3]]);
        assert_eq!(nn_intervals(&rr, &[false; 8]), rr);
        assert_eq!(nn_intervals(&rr, &[]), rr, "no flags: every interval");
    }

    /// Sinus rhythm (0.76–0.84 s) with frequent ventricular ectopy: PVCs with a
    /// compensatory pause and couplets (a fixed LCG). Irregular by the RR rule over
    /// every interval, regular over the intervals between the normal beats: with
    /// `nn_intervals` the model's AF calls on it open no episode.
    #[test]
    fn ventricular_ectopy_opens_no_episode_on_normal_to_normal_intervals() {
        let mut x = 2u32;
        let mut rnd = || {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            ((x >> 16) % 1000) as f32 / 1000.0
        };
        let (mut beats, mut pvcs) = (vec![0.0f32], vec![false]);
        while let Some(&t) = beats.last().filter(|&&t| t < 29.0) {
            let nn = 0.76 + 0.08 * rnd();
            let u = rnd();
            if u < 0.3 {
                let c = 0.38 + 0.2 * rnd();
                beats.extend([t + c, t + 2.0 * nn]);
                pvcs.extend([true, false]);
            } else if u < 0.45 {
                let (c, d) = (0.38 + 0.1 * rnd(), 0.35 + 0.15 * rnd());
                let pause = 0.9 + 0.3 * rnd();
                beats.extend([t + c, t + c + d, t + c + d + pause]);
                pvcs.extend([true, true, false]);
            } else {
                beats.push(t + nn);
                pvcs.push(false);
            }
        }
        let rr: Vec<f32> = beats.windows(2).map(|w| w[1] - w[0]).collect();
        let t = IrregularityThresholds::default();
        assert!(rr_irregular_with(&rr, &t), "irregular over every interval");
        assert!(!rr_irregular_with(&nn_intervals(&rr, &pvcs), &t));
        for nn in [false, true] {
            let mut tr = tracker(EpisodeSettings {
                nn_intervals: nn,
                ..EpisodeSettings::default()
            });
            let mut opened = false;
            for k in 0..6 {
                let mut f = scored(k, 0.7);
                tr.apply_beats(&mut f, &rr, &beats, &pvcs);
                opened |= f.status == FindingStatus::Present;
            }
            assert_eq!(opened, !nn, "nn_intervals {nn}");
        }
    }

    #[test]
    fn the_test_rhythms_are_what_the_rr_rule_says() {
        let t = IrregularityThresholds::default();
        assert!(rr_irregular_with(&irregular(), &t));
        assert!(!rr_irregular_with(&regular(), &t));
    }

    #[test]
    fn onset_and_offset_need_two_windows_and_date_the_episode() {
        use FindingStatus::*;
        let mut t = tracker(EpisodeSettings::default());
        let calls = [
            Absent,
            Present,
            Absent, // a single AF window: no episode
            Present,
            Present,
            Indeterminate,
            Present, // onset at window 3
            Absent,
            Present, // one quiet window: still AF
            Absent,
            Absent, // offset at window 9
            Absent,
        ];
        let mut closed = Vec::new();
        let mut states = Vec::new();
        for (k, c) in calls.into_iter().enumerate() {
            let mut f = window(k as i64, c);
            if let Some(e) = t.apply(&mut f, &irregular(), &[]) {
                closed.push(e);
            }
            states.push((f.status, f.episode_start.map(|d| d.0)));
        }
        assert_eq!(states[1], (Absent, None), "one window is not an episode");
        assert_eq!(states[3], (Absent, None), "the first of two");
        // Window 3's centre segment starts at 40 s.
        assert_eq!(states[4], (Present, Some(40_000_000)));
        assert_eq!(states[5].0, Indeterminate);
        assert_eq!(states[7], (Present, Some(40_000_000)), "one quiet window");
        assert_eq!(states[10], (Absent, None));
        // Ends where the first of the two quiet windows' segments starts: 100 s.
        assert_eq!(
            closed,
            vec![Episode {
                start: 40_000_000,
                end: 100_000_000
            }]
        );
    }

    #[test]
    fn a_regular_rhythm_the_model_calls_af_starts_no_episode() {
        let mut t = tracker(EpisodeSettings::default());
        for k in 0..10 {
            let mut f = scored(k, 0.9);
            assert!(t.apply(&mut f, &regular(), &[]).is_none());
            assert_eq!((f.status, f.episode_start), (FindingStatus::Absent, None));
            assert_eq!(f.score, Some(0.9), "the model's score is kept");
        }
        // Without the RR rule, the model's call alone opens it.
        let alone = EpisodeSettings {
            require_rr_irregular: false,
            stay_probability: 0.4,
            ..EpisodeSettings::default()
        };
        let mut t = tracker(alone);
        t.apply(&mut scored(0, 0.9), &regular(), &[]);
        let mut f = scored(1, 0.9);
        t.apply(&mut f, &regular(), &[]);
        assert_eq!(f.status, FindingStatus::Present);
    }

    #[test]
    fn an_episode_holds_while_the_rr_is_irregular_and_the_model_not_sure_it_is_not_af() {
        let mut t = tracker(EpisodeSettings::default());
        let mut run = |k: i64, p: f32, rr: &[f32]| {
            let mut f = scored(k, p);
            let closed = t.apply(&mut f, rr, &[]);
            (f.status, closed)
        };
        use FindingStatus::*;
        // Below the threshold but irregular: no onset.
        assert_eq!(run(0, 0.3, &irregular()), (Absent, None));
        assert_eq!(run(1, 0.3, &irregular()), (Absent, None));
        // A window in the band between two AF calls breaks the run...
        assert_eq!(run(2, 0.8, &irregular()).0, Absent);
        assert_eq!(run(3, 0.2, &irregular()).0, Absent);
        assert_eq!(run(4, 0.8, &irregular()).0, Absent);
        // ...and two consecutive windows called AF with irregular RR open the
        // episode, from window 4's segment (50 s).
        assert_eq!(run(5, 0.8, &irregular()).0, Present);
        // The model's probability dips to 0.15, the RR stays irregular: it holds.
        for k in 6..9 {
            assert_eq!(run(k, 0.15, &irregular()), (Present, None));
        }
        // A regular rhythm the model still calls AF holds it (AF under paced or
        // regularised ventricular beats; flutter with fixed conduction, which EC57
        // counts with AF)...
        assert_eq!(run(9, 0.9, &regular()), (Present, None));
        // ...but a regular one it is unsure about is quiet, as is a window the model
        // rules out (p < 0.1) whatever the RR.
        assert_eq!(run(10, 0.3, &regular()), (Present, None));
        assert_eq!(
            run(11, 0.8, &irregular()),
            (Present, None),
            "quiet run broken"
        );
        assert_eq!(run(12, 0.05, &irregular()), (Present, None));
        let (status, closed) = run(13, 0.3, &regular());
        assert_eq!(status, Absent);
        // Ends where window 12's segment starts.
        assert_eq!(
            closed,
            Some(Episode {
                start: 50_000_000,
                end: 130_000_000
            })
        );
    }

    #[test]
    fn a_jump_in_time_closes_the_episode_at_its_last_af_segment() {
        let mut t = tracker(EpisodeSettings::default());
        for k in 0..4 {
            assert!(t
                .apply(&mut window(k, FindingStatus::Present), &irregular(), &[])
                .is_none());
        }
        let mut later = window(100, FindingStatus::Absent);
        let e = t
            .apply(&mut later, &irregular(), &[])
            .expect("closed by the gap");
        // From the stream's first window's start (its lead-in is its own).
        assert_eq!((e.start, e.end), (0, 50_000_000));
        assert_eq!(t.open().count(), 0);
    }

    /// The finding after a jump carries the end of the episode the jump closed, also
    /// when the model could not score it.
    #[test]
    fn an_indeterminate_window_after_a_jump_carries_the_closed_episodes_end() {
        let mut t = tracker(EpisodeSettings::default());
        for k in 0..4 {
            t.apply(&mut window(k, FindingStatus::Present), &irregular(), &[]);
        }
        let mut later = window(100, FindingStatus::Indeterminate);
        let e = t
            .apply(&mut later, &irregular(), &[])
            .expect("closed by the gap");
        assert_eq!(later.episode_end, Some(DeviceTimeUs(e.end)));
        assert_eq!(later.status, FindingStatus::Indeterminate);
        assert_eq!(t.open().count(), 0);
    }

    /// Feeds windows `(k, call)`, their RR irregular, to a tracker with the default
    /// settings: the episodes they closed, and each finding's status and episode start.
    fn feed(windows: &[(i64, FindingStatus)]) -> (Vec<Episode>, Vec<(FindingStatus, Option<i64>)>) {
        let mut t = tracker(EpisodeSettings::default());
        let mut closed = Vec::new();
        let mut states = Vec::new();
        for &(k, c) in windows {
            let mut f = window(k, c);
            closed.extend(t.apply(&mut f, &irregular(), &[]));
            states.push((f.status, f.episode_start.map(|d| d.0)));
        }
        (closed, states)
    }

    /// An episode from `start_s` to `end_s` (s).
    fn ep(start_s: i64, end_s: i64) -> Episode {
        Episode {
            start: start_s * 1_000_000,
            end: end_s * 1_000_000,
        }
    }

    /// AF, then windows the model could not score (unreadable signal), then no AF:
    /// the AF ended somewhere in the unreadable stretch, dated at its middle; AF on
    /// both sides of the stretch bridges it.
    #[test]
    fn an_offset_after_unscored_windows_is_dated_in_their_middle() {
        use FindingStatus::*;
        // Windows 0-3 AF (their segments end at 50 s), then `before`, six unscored
        // windows, `after`, one after the other.
        let closed = |before: &[FindingStatus], after: &[FindingStatus]| {
            let calls: Vec<(i64, FindingStatus)> = [Present; 4]
                .iter()
                .chain(before)
                .chain(&[Indeterminate; 6])
                .chain(after)
                .enumerate()
                .map(|(k, &c)| (k as i64, c))
                .collect();
            feed(&calls).0
        };
        // Unscored segments 50-110 s, then no AF: ends at 80 s, not where window 10's
        // segment starts (110 s).
        assert_eq!(closed(&[], &[Absent; 2]), vec![ep(0, 80)]);
        // AF again after the stretch: one episode through it.
        assert_eq!(closed(&[], &[Present, Absent, Absent]), vec![ep(0, 120)]);
        // A quiet window before the stretch dates the offset as before: at its
        // segment start (50 s), whatever follows.
        assert_eq!(closed(&[Absent], &[Absent]), vec![ep(0, 50)]);
    }

    /// A signal gap shorter than `max_gap_s` is time nobody read as well: an episode
    /// whose first quiet window comes after it ends in its middle.
    #[test]
    fn an_offset_after_a_short_gap_is_dated_in_its_middle() {
        use FindingStatus::*;
        // Windows 0-3 AF (segments to 50 s), nothing for 40 s, windows 8-9 quiet: the
        // first window after the gap holds its lead-in, so its segment starts at its
        // own start, 80 s; the episode ends at 65 s.
        let calls = [
            (0, Present),
            (1, Present),
            (2, Present),
            (3, Present),
            (8, Absent),
            (9, Absent),
        ];
        assert_eq!(feed(&calls).0, vec![ep(0, 65)]);
    }

    /// An onset needs consecutive AF calls, but windows the model could not score, or
    /// a gap in the windows, between two calls break the run only when longer than
    /// `max_gap_s`.
    #[test]
    fn unread_stretches_and_gaps_break_an_onset_run_only_past_max_gap() {
        use FindingStatus::*;
        // One unscored window, or a one-window gap, between two AF calls: an episode
        // from the first call's segment (the stream's first window: from 0 s).
        let (_, s) = feed(&[(0, Present), (1, Indeterminate), (2, Present)]);
        assert_eq!(
            s[2],
            (Present, Some(0)),
            "a short unread stretch kept the run"
        );
        let (_, s) = feed(&[(0, Present), (2, Present)]);
        assert_eq!(s[1], (Present, Some(0)), "a short gap kept the run");
        // 80 s unread after the first call's segment (ending at 20 s): longer than
        // max_gap_s (60 s), so the run starts again at window 9 (its segment from 100 s,
        // where the unread windows' segments end).
        let mut w = vec![(0, Present)];
        w.extend((1..=8).map(|k| (k, Indeterminate)));
        w.extend([(9, Present), (10, Present)]);
        let (_, s) = feed(&w);
        assert_eq!(
            s[9],
            (Absent, None),
            "the long unread stretch broke the run"
        );
        assert_eq!(s[10], (Present, Some(100_000_000)));
        // The same as a gap: window 9 is the first after it and holds its lead-in.
        let (_, s) = feed(&[(0, Present), (9, Present), (10, Present)]);
        assert_eq!(s[1], (Absent, None), "the long gap broke the run");
        assert_eq!(s[2], (Present, Some(90_000_000)));
    }

    #[test]
    fn a_gated_windows_call_counts_inside_an_episode_and_never_starts_one() {
        use FindingStatus::*;
        let (af, reg) = (irregular(), regular());
        let mut t = tracker(EpisodeSettings::default());
        let gated = |t: &mut AfEpisodes, k: i64, c: FindingStatus, rr: &[f32]| {
            let mut f = window(k, c);
            let closed = t.apply_gated(&mut f, rr, &[], &[]);
            (f.status, closed)
        };
        // Two AF calls on gated windows: no episode (an onset needs windows the gate
        // passed), and they do not start a run either.
        assert_eq!(gated(&mut t, 0, Present, &af).0, Indeterminate);
        assert_eq!(gated(&mut t, 1, Present, &af).0, Indeterminate);
        assert!(t.apply(&mut window(2, Present), &af, &[]).is_none());
        assert_eq!(t.at_stop().count(), 0, "one passed window opened nothing");
        let mut f = window(3, Present);
        t.apply(&mut f, &af, &[]);
        assert_eq!(f.episode_start, Some(DeviceTimeUs(30_000_000)));
        // Inside the episode a gated AF call sustains it; two gated calls without AF
        // end it, at the first one's segment.
        assert_eq!(gated(&mut t, 4, Present, &af), (Present, None));
        assert_eq!(gated(&mut t, 5, Absent, &reg), (Present, None));
        let (_, closed) = gated(&mut t, 6, Absent, &reg);
        assert_eq!(closed, Some(ep(30, 60)));
        // Off, a gated window says nothing.
        let mut t = tracker(EpisodeSettings {
            gated_windows: false,
            ..EpisodeSettings::default()
        });
        t.apply(&mut window(0, Present), &af, &[]);
        t.apply(&mut window(1, Present), &af, &[]);
        assert_eq!(gated(&mut t, 2, Absent, &reg).0, Indeterminate);
        assert_eq!(gated(&mut t, 3, Absent, &reg).0, Indeterminate);
        assert_eq!(t.at_stop().count(), 1, "still open");
    }

    #[test]
    fn at_a_stop_an_open_episode_ends_where_its_last_windows_say() {
        use FindingStatus::*;
        let at_stop = |windows: &[(i64, FindingStatus, &[f32])]| {
            let mut t = tracker(EpisodeSettings::default());
            for &(k, c, rr) in windows {
                t.apply(&mut window(k, c), rr, &[]);
            }
            t.at_stop().map(|(_, s, e)| (s, e)).collect::<Vec<_>>()
        };
        let (af, reg) = (irregular(), regular());
        // The last window sustained the episode: it runs to the stream's end.
        let w = [(0, Present, &af[..]), (1, Present, &af), (2, Present, &af)];
        assert_eq!(at_stop(&w), [(0, None)]);
        // One window without AF evidence since (an offset needs two): the offset it
        // dated, its segment start (no beats given).
        let w = [(0, Present, &af[..]), (1, Present, &af), (2, Absent, &reg)];
        assert_eq!(at_stop(&w), [(0, Some(30_000_000))]);
        // Only unread windows since: the last AF segment's end.
        let w = [
            (0, Present, &af[..]),
            (1, Present, &af),
            (2, Indeterminate, &af),
        ];
        assert_eq!(at_stop(&w), [(0, Some(30_000_000))]);
        // No episode open: nothing.
        assert!(at_stop(&[(0, Present, &af[..])]).is_empty());
    }

    #[test]
    fn a_window_holds_the_lead_in_no_earlier_window_holds() {
        let mut t = tracker(EpisodeSettings::default());
        // A stream that starts in AF: the episode starts with its first window (0 s),
        // not with that window's centre (10 s).
        let mut f = window(0, FindingStatus::Present);
        t.apply(&mut f, &irregular(), &[]);
        let mut f = window(1, FindingStatus::Present);
        t.apply(&mut f, &irregular(), &[]);
        assert_eq!(f.episode_start, Some(DeviceTimeUs(0)));
        // Windows in a row hold their centres only: an onset at window 11 starts
        // at its centre (120 s), as the windows before it held up to there.
        let mut t = tracker(EpisodeSettings::default());
        for k in 0..11 {
            t.apply(&mut window(k, FindingStatus::Absent), &irregular(), &[]);
        }
        t.apply(&mut window(11, FindingStatus::Present), &irregular(), &[]);
        let mut f = window(12, FindingStatus::Present);
        t.apply(&mut f, &irregular(), &[]);
        assert_eq!(f.episode_start, Some(DeviceTimeUs(120_000_000)));
        // After a signal gap (windows 15..19 missing; the segments held reach 160 s),
        // the first window back holds its lead-in too: from its start (200 s).
        t.apply(&mut window(13, FindingStatus::Absent), &irregular(), &[]);
        t.apply(&mut window(14, FindingStatus::Absent), &irregular(), &[]);
        t.apply(&mut window(20, FindingStatus::Present), &irregular(), &[]);
        let mut f = window(21, FindingStatus::Present);
        t.apply(&mut f, &irregular(), &[]);
        assert_eq!(f.episode_start, Some(DeviceTimeUs(200_000_000)));
    }

    /// Beat times (s from the window's start) of these RR intervals, from `first`.
    fn beats_of(first: f32, rr: &[f32]) -> Vec<f32> {
        let mut t = first;
        let mut beats = vec![t];
        for r in rr {
            t += r;
            beats.push(t);
        }
        beats
    }

    /// 30 s of beats irregular for their first 4.95 s, then regular at 0.8 s.
    fn af_then_regular() -> Vec<f32> {
        let mut rr = vec![0.5, 1.0, 0.6, 1.1, 0.7, 1.05];
        rr.extend(std::iter::repeat_n(0.8, 31));
        beats_of(0.0, &rr)
    }

    #[test]
    fn the_offset_is_where_the_rr_turns_regular() {
        let min_ratio = IrregularityThresholds::default().min_nmad_drr;
        // Irregular marks up to the beat at 4.95 s, regular after it.
        let at = offset_in(&af_then_regular(), min_ratio).expect("enough beats");
        assert!((at - 4.95).abs() < 1e-4, "{at}");
        // Regular from the start: the window's start.
        assert_eq!(offset_in(&beats_of(0.3, &[0.8; 36]), min_ratio), Some(0.0));
        // Irregular throughout: the middle beat of the last mark.
        let irr = beats_of(0.2, &irregular());
        let at = offset_in(&irr, min_ratio).expect("enough beats");
        assert!((at - irr[irr.len() - 2]).abs() < 1e-4, "{at}");
        // A regular stretch inside AF does not end it when more AF follows: the
        // highest running sum is after the last irregular stretch.
        let mut rr = irregular()[..10].to_vec();
        rr.extend([0.8; 3]);
        rr.extend(&irregular()[..12]);
        rr.extend([0.8; 8]);
        let beats = beats_of(0.0, &rr);
        let at = offset_in(&beats, min_ratio).expect("enough beats");
        let last_irregular = beats[10 + 3 + 12];
        assert!((at - last_irregular).abs() < 1e-4, "{at} {last_irregular}");
        // Too few beats say nothing.
        assert_eq!(offset_in(&[1.0, 2.0], min_ratio), None);
        assert_eq!(offset_in(&[], min_ratio), None);
    }

    #[test]
    fn an_episode_ends_at_the_beat_where_the_rr_turns_regular() {
        let run = |settings: EpisodeSettings| {
            let mut t = tracker(settings);
            let irr = beats_of(0.1, &irregular());
            // Windows 0..3 AF (the episode opens at window 1, from 0 s).
            for k in 0..4 {
                let mut f = window(k, FindingStatus::Present);
                assert!(t.apply(&mut f, &irregular(), &irr).is_none());
                assert_eq!(f.episode_end, None);
            }
            // Window 4 ([40, 70) s) turns regular 4.95 s in; windows 4 and 5 are
            // quiet (the model rules AF out).
            let quiet = af_then_regular();
            let rr: Vec<f32> = quiet.windows(2).map(|w| w[1] - w[0]).collect();
            let mut f = scored(4, 0.02);
            assert!(t.apply(&mut f, &rr, &quiet).is_none());
            assert_eq!(
                (f.status, f.episode_end),
                (FindingStatus::Present, None),
                "one quiet window"
            );
            let mut f = scored(5, 0.02);
            let e = t.apply(&mut f, &rr, &quiet).expect("closed");
            assert_eq!(f.status, FindingStatus::Absent);
            assert_eq!(f.episode_end, Some(DeviceTimeUs(e.end)));
            assert_eq!(f.episode_start, None);
            e
        };
        let e = run(EpisodeSettings::default());
        assert_eq!(e.start, 0);
        assert!((e.end - 44_950_000).abs() <= 10, "{}", e.end);
        // Without beat offsets, at the first quiet window's segment start (50 s).
        let e = run(EpisodeSettings {
            beat_offsets: false,
            ..EpisodeSettings::default()
        });
        assert_eq!((e.start, e.end), (0, 50_000_000));
    }

    #[test]
    fn after_a_window_held_by_the_models_call_the_offset_is_the_segment_edge() {
        let mut t = tracker(EpisodeSettings::default());
        let irr = beats_of(0.1, &irregular());
        // Windows 0..2 AF with irregular RR (the episode opens at window 1, from 0 s).
        for k in 0..3 {
            assert!(t.apply(&mut scored(k, 0.9), &irregular(), &irr).is_none());
        }
        // Window 3: regular RR, but the model calls AF: it holds, up to its segment's
        // end (50 s).
        let reg = beats_of(0.4, &regular());
        let mut f = scored(3, 0.9);
        assert!(t.apply(&mut f, &regular(), &reg).is_none());
        assert_eq!(f.status, FindingStatus::Present);
        // Windows 4 and 5 are quiet, their RR regular from the first beat: the beats
        // would date the end at window 4's start (40 s), inside the segment window 3
        // held; the end is that segment's edge instead.
        assert!(t.apply(&mut scored(4, 0.02), &regular(), &reg).is_none());
        let e = t
            .apply(&mut scored(5, 0.02), &regular(), &reg)
            .expect("closed");
        assert_eq!((e.start, e.end), (0, 50_000_000));
        // Held by irregular RR instead, the same quiet windows date it by their beats.
        let mut t = tracker(EpisodeSettings::default());
        for k in 0..4 {
            assert!(t.apply(&mut scored(k, 0.9), &irregular(), &irr).is_none());
        }
        assert!(t.apply(&mut scored(4, 0.02), &regular(), &reg).is_none());
        let e = t
            .apply(&mut scored(5, 0.02), &regular(), &reg)
            .expect("closed");
        assert!(e.end < 50_000_000, "{}", e.end);
    }

    #[test]
    fn a_beat_offset_stays_between_the_quiet_windows_start_and_centre_end() {
        let mut t = tracker(EpisodeSettings::default());
        let irr = beats_of(0.1, &irregular());
        for k in 0..3 {
            t.apply(&mut window(k, FindingStatus::Present), &irregular(), &irr);
        }
        // The quiet windows' beats are irregular throughout (the model rules AF out):
        // the offset is the quiet window's centre end at most (50 s), not its last
        // beat (near 60 s).
        let mut f = scored(3, 0.02);
        t.apply(&mut f, &irregular(), &irr);
        let mut f = scored(4, 0.02);
        let e = t.apply(&mut f, &irregular(), &irr).expect("closed");
        assert_eq!((e.start, e.end), (0, 50_000_000));
        // Regular from the quiet window's first beat: its start (30 s), 10 s before
        // its segment.
        let mut t = tracker(EpisodeSettings::default());
        for k in 0..3 {
            t.apply(&mut window(k, FindingStatus::Present), &irregular(), &irr);
        }
        let regular_beats = beats_of(0.3, &[0.8; 36]);
        let rr = [0.8f32; 36];
        t.apply(&mut scored(3, 0.02), &rr, &regular_beats);
        let e = t
            .apply(&mut scored(4, 0.02), &rr, &regular_beats)
            .expect("closed");
        assert_eq!((e.start, e.end), (0, 30_000_000));
    }
}
