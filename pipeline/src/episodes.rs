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
//!   rhythm, or a window the model is sure is not AF, does.
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
//! - **onset** after `onset_windows` windows with onset evidence, consecutive but
//!   for windows with sustain evidence only (the band between `stay_probability` and
//!   the threshold), which neither count nor break the run: the episode starts at the
//!   first of their segments;
//! - **offset** after `offset_windows` consecutive windows without sustain evidence:
//!   the episode ends where the first of them begins;
//! - windows the model could not score (indeterminate) change nothing; a jump of more
//!   than `max_gap_s` between windows (a signal gap, an evicted stream) ends an open
//!   episode at its last AF segment.
//!
//! Every AF finding of the tracked model then carries the state: `present` with the
//! episode's start while in an episode, `absent` outside one (its score unchanged), so
//! an alert follows the episode and a replay reproduces it from the same windows.

use std::collections::HashMap;

use ecg_dsp::rhythm::{rr_irregular_with, IrregularityThresholds};
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
    /// A longer jump between windows (s) ends an open episode.
    pub max_gap_s: f32,
    /// Onset and sustain evidence both need the window's RR intervals irregularly
    /// irregular by the DSP stage's RR rule (`[pipeline.dsp.af]`, the one the
    /// rhythm calls use); off, the model's probability alone decides.
    pub require_rr_irregular: bool,
    /// Lowest AF probability that keeps an open episode going (with irregular RR).
    /// The default 0.1 is a round value below the 5th percentile (0.14) of the
    /// bundled af-cnn's AF probability on the AF windows of its validation part
    /// (CinC 2017, never its held-out part): 97 % of those windows reach it, 3.4 %
    /// of the normal-rhythm ones do (`docs/accuracy-af.md` §4). With af-cnn 1.1.0
    /// the same windows give 0.17, 97 % and 2.4 %: the value stands.
    pub stay_probability: f32,
}

impl Default for EpisodeSettings {
    fn default() -> Self {
        Self {
            onset_windows: 2,
            offset_windows: 2,
            max_gap_s: 60.0,
            require_rr_irregular: true,
            stay_probability: 0.1,
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

/// One stream's state.
#[derive(Debug, Clone, Default)]
struct State {
    /// Start of the open episode.
    open: Option<i64>,
    /// End of the last AF segment of the open episode.
    last_af_end: i64,
    /// Run of AF windows not yet an episode: its first segment's start, its length.
    run_start: Option<i64>,
    run: u32,
    /// Run of non-AF windows inside an episode: the first one's segment start.
    quiet_start: Option<i64>,
    quiet: u32,
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
    /// probability) and the RR intervals (s) of the beats detected in the window,
    /// rewrites the finding to the episode state, and returns the episode it closed,
    /// if any.
    pub fn apply(&mut self, f: &mut Finding, rr_s: &[f32]) -> Option<Episode> {
        if f.condition != Condition::AtrialFibrillation {
            return None;
        }
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
        let mut closed = None;
        // A jump in time ends what was open.
        if let Some(last) = st.last_end {
            if centre_start - last > (f64::from(s.max_gap_s) * 1e6) as i64 {
                if let Some(start) = st.open.take() {
                    closed = Some(Episode {
                        start,
                        end: st.last_af_end,
                    });
                }
                st.run_start = None;
                st.run = 0;
                st.quiet_start = None;
                st.quiet = 0;
            }
        }
        st.last_end = Some(seg_end);
        // A window the model could not score says nothing.
        if f.status == FindingStatus::Indeterminate {
            return closed;
        }
        // What the window says: sustain evidence, and onset evidence (the model's
        // call on top of it).
        let called = f.status == FindingStatus::Present;
        let likely = called || f.score.is_some_and(|p| p >= s.stay_probability);
        let sustain = likely && (!s.require_rr_irregular || rr_irregular_with(rr_s, &self.rr_rule));
        let onset = called && sustain;
        match st.open {
            Some(_) if sustain => {
                st.quiet_start = None;
                st.quiet = 0;
                st.last_af_end = seg_end;
            }
            Some(start) => {
                let quiet_start = *st.quiet_start.get_or_insert(seg_start);
                st.quiet += 1;
                if st.quiet >= s.offset_windows.max(1) {
                    st.open = None;
                    st.quiet_start = None;
                    st.quiet = 0;
                    closed = Some(Episode {
                        start,
                        end: quiet_start.max(start),
                    });
                }
            }
            None if onset => {
                let start = *st.run_start.get_or_insert(seg_start);
                st.run += 1;
                if st.run >= s.onset_windows.max(1) {
                    st.open = Some(start);
                    st.last_af_end = seg_end;
                    st.run_start = None;
                    st.run = 0;
                }
            }
            None if !sustain => {
                st.run_start = None;
                st.run = 0;
            }
            // A window with sustain evidence only (in the band between
            // `stay_probability` and the threshold) neither counts towards an onset
            // nor breaks the run: it is as unsure as the band says.
            None => {}
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
            if let Some(e) = t.apply(&mut f, &irregular()) {
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
            assert!(t.apply(&mut f, &regular()).is_none());
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
        t.apply(&mut scored(0, 0.9), &regular());
        let mut f = scored(1, 0.9);
        t.apply(&mut f, &regular());
        assert_eq!(f.status, FindingStatus::Present);
    }

    #[test]
    fn an_episode_holds_while_the_rr_is_irregular_and_the_model_not_sure_it_is_not_af() {
        let mut t = tracker(EpisodeSettings::default());
        let mut run = |k: i64, p: f32, rr: &[f32]| {
            let mut f = scored(k, p);
            let closed = t.apply(&mut f, rr);
            (f.status, closed)
        };
        use FindingStatus::*;
        // Below the threshold but irregular: no onset.
        assert_eq!(run(0, 0.3, &irregular()), (Absent, None));
        assert_eq!(run(1, 0.3, &irregular()), (Absent, None));
        // Onset: two windows called AF with irregular RR (from window 2's segment,
        // 30 s); a window in the band between them neither counts nor breaks the run.
        assert_eq!(run(2, 0.8, &irregular()).0, Absent);
        assert_eq!(run(3, 0.2, &irregular()).0, Absent);
        assert_eq!(run(4, 0.8, &irregular()).0, Present);
        // The model's probability dips to 0.15, the RR stays irregular: it holds.
        for k in 5..8 {
            assert_eq!(run(k, 0.15, &irregular()), (Present, None));
        }
        // A regular rhythm the model still calls AF (flutter with fixed conduction,
        // say) counts as quiet, as does a window the model rules out (p < 0.1).
        assert_eq!(run(8, 0.9, &regular()), (Present, None));
        assert_eq!(
            run(9, 0.8, &irregular()),
            (Present, None),
            "quiet run broken"
        );
        assert_eq!(run(10, 0.05, &irregular()), (Present, None));
        let (status, closed) = run(11, 0.9, &regular());
        assert_eq!(status, Absent);
        assert_eq!(
            closed,
            Some(Episode {
                start: 30_000_000,
                end: 110_000_000
            })
        );
    }

    #[test]
    fn a_jump_in_time_closes_the_episode_at_its_last_af_segment() {
        let mut t = tracker(EpisodeSettings::default());
        for k in 0..4 {
            assert!(t
                .apply(&mut window(k, FindingStatus::Present), &irregular())
                .is_none());
        }
        let mut later = window(100, FindingStatus::Absent);
        let e = t
            .apply(&mut later, &irregular())
            .expect("closed by the gap");
        // From the stream's first window's start (its lead-in is its own).
        assert_eq!((e.start, e.end), (0, 50_000_000));
        assert_eq!(t.open().count(), 0);
    }

    #[test]
    fn a_window_holds_the_lead_in_no_earlier_window_holds() {
        let mut t = tracker(EpisodeSettings::default());
        // A stream that starts in AF: the episode starts with its first window (0 s),
        // not with that window's centre (10 s).
        let mut f = window(0, FindingStatus::Present);
        t.apply(&mut f, &irregular());
        let mut f = window(1, FindingStatus::Present);
        t.apply(&mut f, &irregular());
        assert_eq!(f.episode_start, Some(DeviceTimeUs(0)));
        // Windows in a row hold their centres only: an onset at window 11 starts
        // at its centre (120 s), as the windows before it held up to there.
        let mut t = tracker(EpisodeSettings::default());
        for k in 0..11 {
            t.apply(&mut window(k, FindingStatus::Absent), &irregular());
        }
        t.apply(&mut window(11, FindingStatus::Present), &irregular());
        let mut f = window(12, FindingStatus::Present);
        t.apply(&mut f, &irregular());
        assert_eq!(f.episode_start, Some(DeviceTimeUs(120_000_000)));
        // After a signal gap (windows 15..19 missing; the segments held reach 160 s),
        // the first window back holds its lead-in too: from its start (200 s).
        t.apply(&mut window(13, FindingStatus::Absent), &irregular());
        t.apply(&mut window(14, FindingStatus::Absent), &irregular());
        t.apply(&mut window(20, FindingStatus::Present), &irregular());
        let mut f = window(21, FindingStatus::Present);
        t.apply(&mut f, &irregular());
        assert_eq!(f.episode_start, Some(DeviceTimeUs(200_000_000)));
    }
}
