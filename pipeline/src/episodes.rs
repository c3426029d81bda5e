//! AF episodes: onset and offset with hysteresis over a stream's AF model windows.
//!
//! A continuous stream's AF windows (30 s every 10 s for the bundled model) overlap;
//! each window's call is attributed to its **centre segment** — the middle `hop` of
//! the window (10 s for the bundled model), so consecutive windows' segments tile
//! the stream's time without overlap and a call is never shifted towards either end.
//!
//! Per stream a small state machine turns segment calls into episodes:
//!
//! - **onset** after `onset_windows` consecutive AF windows: the episode starts at
//!   the first of their segments;
//! - **offset** after `offset_windows` consecutive non-AF windows: the episode ends
//!   where the first of them begins;
//! - windows the model could not score (indeterminate) change nothing; a jump of more
//!   than `max_gap_s` between windows (a signal gap, an evicted stream) ends an open
//!   episode at its last AF segment.
//!
//! Every AF finding of the tracked model then carries the state: `present` with the
//! episode's start while in an episode, `absent` outside one (its score unchanged), so
//! an alert follows the episode and a replay reproduces it from the same windows.
//!
//! A window is an AF window when the model's AF probability reaches the manifest's
//! finding threshold.

use std::collections::HashMap;

use ecg_types::{Condition, DeviceTimeUs, Finding, FindingStatus, StreamId};
use serde::{Deserialize, Serialize};

/// Hysteresis of AF episodes (`[pipeline.af_episodes]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EpisodeSettings {
    /// Consecutive AF windows that start an episode.
    pub onset_windows: u32,
    /// Consecutive non-AF windows that end it.
    pub offset_windows: u32,
    /// A longer jump between windows (s) ends an open episode.
    pub max_gap_s: f32,
}

impl Default for EpisodeSettings {
    fn default() -> Self {
        Self {
            onset_windows: 2,
            offset_windows: 2,
            max_gap_s: 60.0,
        }
    }
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
    hop_us: i64,
    streams: HashMap<StreamId, State>,
}

impl AfEpisodes {
    /// Trackers for a model whose windows come every `hop_us`.
    pub fn new(settings: EpisodeSettings, hop_us: i64) -> Self {
        Self {
            settings,
            hop_us: hop_us.max(1),
            streams: HashMap::new(),
        }
    }

    /// The centre segment of the window `[start, end)`.
    pub fn segment(&self, start: i64, end: i64) -> (i64, i64) {
        let mid = start + (end - start) / 2;
        let half = self.hop_us.min(end - start) / 2;
        (mid - half, mid - half + self.hop_us.min(end - start))
    }

    /// Forgets a stream (evicted).
    pub fn forget(&mut self, stream: &StreamId) {
        self.streams.remove(stream);
    }

    /// Takes a window's AF finding (its status is the model's call), rewrites it to
    /// the episode state, and returns the episode it closed, if any.
    pub fn apply(&mut self, f: &mut Finding) -> Option<Episode> {
        if f.condition != Condition::AtrialFibrillation {
            return None;
        }
        let (seg_start, seg_end) = self.segment(f.window_start.0, f.window_end.0);
        let s = &self.settings;
        let st = self.streams.entry(f.stream.clone()).or_default();
        let mut closed = None;
        // A jump in time ends what was open.
        if let Some(last) = st.last_end {
            if seg_start - last > (f64::from(s.max_gap_s) * 1e6) as i64 {
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
        match f.status {
            FindingStatus::Indeterminate => {}
            FindingStatus::Present => {
                st.quiet_start = None;
                st.quiet = 0;
                if st.open.is_some() {
                    st.last_af_end = seg_end;
                } else {
                    let start = *st.run_start.get_or_insert(seg_start);
                    st.run += 1;
                    if st.run >= s.onset_windows.max(1) {
                        st.open = Some(start);
                        st.last_af_end = seg_end;
                        st.run_start = None;
                        st.run = 0;
                    }
                }
            }
            FindingStatus::Absent => {
                st.run_start = None;
                st.run = 0;
                if let Some(start) = st.open {
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
            }
        }
        // The finding says what the episode state is.
        if f.status != FindingStatus::Indeterminate {
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

    #[test]
    fn onset_and_offset_need_two_windows_and_date_the_episode() {
        use FindingStatus::*;
        let mut t = AfEpisodes::new(EpisodeSettings::default(), 10_000_000);
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
            if let Some(e) = t.apply(&mut f) {
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
    fn a_jump_in_time_closes_the_episode_at_its_last_af_segment() {
        let mut t = AfEpisodes::new(EpisodeSettings::default(), 10_000_000);
        for k in 0..4 {
            assert!(t.apply(&mut window(k, FindingStatus::Present)).is_none());
        }
        let mut later = window(100, FindingStatus::Absent);
        let e = t.apply(&mut later).expect("closed by the gap");
        assert_eq!((e.start, e.end), (10_000_000, 50_000_000));
        assert_eq!(t.open().count(), 0);
    }
}
