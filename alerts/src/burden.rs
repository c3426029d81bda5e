//! AF burden: the share of a patient's monitored time spent in atrial fibrillation.
//!
//! Counted from the AF findings of non-shadow sources: a window whose status is
//! present or absent is monitored time (present: in AF), an indeterminate one is not
//! counted at all. Windows overlap (a 30 s window every 5 s), so each stream keeps
//! where counting has reached ([`StreamBurden::counted_end_us`]) and a window adds
//! only its part beyond that; a time gap between windows is not monitored. Findings
//! of a stream arrive in order, so a replayed or duplicate finding (same key, same
//! window) adds nothing. A patient's burden is the sum over their streams
//! ([`PatientBurden`]).
//!
//! The service counts in memory ([`Counted`]) and stores the totals
//! ([`crate::store::Store::save_af_stream`]) when a stream is first counted, every
//! [`STORE_EVERY_US`] of device time, from the tick once they are [`STORE_AFTER`] old,
//! and on [`crate::service::AlertService::flush_af_burden`] (shutdown): a write per
//! AF finding would cost the alert path a store round trip each. A crash loses what
//! was counted since the last store (at most about a minute of a stream's time).
//!
//! Decision support: the burden is only as good as the AF calls it is made of.

use ecg_types::{Condition, Finding, FindingStatus};
use serde::Serialize;

/// Whether a finding counts towards AF burden: an AF finding from a source that is
/// not in shadow mode, present or absent.
pub fn counts(f: &Finding) -> bool {
    f.condition == Condition::AtrialFibrillation
        && !f.shadow
        && matches!(f.status, FindingStatus::Present | FindingStatus::Absent)
        && f.window_end.0 > f.window_start.0
}

/// One stream's running totals, in µs of device time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamBurden {
    /// Time in AF.
    pub af_us: i64,
    /// Monitored time (present or absent).
    pub monitored_us: i64,
    /// Device time up to which the stream's time is counted.
    pub counted_end_us: i64,
    /// Start of the first window counted.
    pub since_us: i64,
}

impl StreamBurden {
    /// Adds what `f` covers beyond what is counted; false when it adds nothing (not
    /// an AF finding that [`counts`], or a window already counted: an overlap
    /// entirely inside it, a duplicate, a replay).
    pub fn add(&mut self, f: &Finding) -> bool {
        if !counts(f) {
            return false;
        }
        let fresh = self.monitored_us == 0 && self.counted_end_us == 0;
        let from = if fresh {
            f.window_start.0
        } else {
            f.window_start.0.max(self.counted_end_us)
        };
        let end = f.window_end.0;
        if end <= from {
            return false;
        }
        if fresh {
            self.since_us = f.window_start.0;
        }
        let span = end - from;
        self.monitored_us += span;
        if f.status == FindingStatus::Present {
            self.af_us += span;
        }
        self.counted_end_us = end;
        true
    }
}

/// A patient's AF burden: the sum over their streams.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatientBurden {
    /// The pseudonymous patient.
    pub patient: String,
    /// Time in AF, µs.
    pub af_us: i64,
    /// Monitored time, µs.
    pub monitored_us: i64,
    /// Start of the first window counted (device time, µs since the epoch).
    pub since_us: Option<i64>,
    /// The streams counted.
    pub streams: Vec<String>,
}

impl PatientBurden {
    /// Time in AF over monitored time (0–1), `None` before any monitored time.
    pub fn burden(&self) -> Option<f64> {
        (self.monitored_us > 0).then(|| self.af_us as f64 / self.monitored_us as f64)
    }
}

/// A stream's totals as this instance counts them, and as last stored.
#[derive(Debug, Clone, Default)]
pub struct Counted {
    /// What the store holds, as far as this instance knows (`None`: no row).
    pub stored: Option<StreamBurden>,
    /// The totals with every finding this instance counted.
    pub current: StreamBurden,
    /// Since when `current` is ahead of `stored`.
    pub dirty_since: Option<std::time::Instant>,
}

impl Counted {
    /// Starts from what the store holds.
    pub fn new(stored: Option<StreamBurden>) -> Self {
        Self {
            stored,
            current: stored.unwrap_or_default(),
            dirty_since: None,
        }
    }

    /// Counts `f` ([`StreamBurden::add`]); true when the totals should be stored now:
    /// the stream's first counted window, or [`STORE_EVERY_US`] of device time
    /// counted since they were last stored.
    pub fn add(&mut self, f: &Finding) -> bool {
        if !self.current.add(f) {
            return false;
        }
        self.dirty_since.get_or_insert_with(std::time::Instant::now);
        self.stored.is_none_or(|s| {
            self.current.counted_end_us.saturating_sub(s.counted_end_us) >= STORE_EVERY_US
        })
    }
}

/// Device time counted after which a stream's totals are stored on the finding's
/// path; otherwise the service's tick stores them ([`STORE_AFTER`]).
pub const STORE_EVERY_US: i64 = 60_000_000;

/// Wall time after which the tick stores totals that changed.
pub const STORE_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;
    use ecg_types::{DeviceTimeUs, FindingSource, PatientId, StreamId};

    const S: i64 = 1_000_000;

    fn af(status: FindingStatus, start_s: i64) -> Finding {
        Finding::new(
            StreamId::new("icu-1").unwrap(),
            PatientId::new("p-1").unwrap(),
            FindingSource::Model {
                id: "af-cnn".into(),
                version: "1.0.0".into(),
            },
            Condition::AtrialFibrillation,
            status,
            DeviceTimeUs(1_000 * S + start_s * S),
            DeviceTimeUs(1_000 * S + (start_s + 30) * S),
        )
    }

    #[test]
    fn overlapping_windows_count_each_second_once() {
        let mut b = StreamBurden::default();
        // 30 s windows every 5 s: the first counts 30 s, each next one 5 s.
        for (i, t) in (0..60).step_by(5).enumerate() {
            let st = if i < 4 {
                FindingStatus::Present
            } else {
                FindingStatus::Absent
            };
            assert!(b.add(&af(st, t)));
        }
        // 0..85 s monitored; in AF: 0..30 then 30..35, 35..40, 40..45 (windows 1-3).
        assert_eq!(b.monitored_us, 85 * S);
        assert_eq!(b.af_us, 45 * S);
        assert_eq!(b.since_us, 1_000 * S);
        assert_eq!(b.counted_end_us, 1_085 * S);
    }

    #[test]
    fn indeterminate_windows_and_gaps_are_not_monitored() {
        let mut b = StreamBurden::default();
        assert!(!b.add(&af(FindingStatus::Indeterminate, 0)));
        assert_eq!(b, StreamBurden::default());
        assert!(b.add(&af(FindingStatus::Present, 5)));
        assert!(!b.add(&af(FindingStatus::Indeterminate, 10)));
        // 15..45 after counting reached 35: 10 s more.
        assert!(b.add(&af(FindingStatus::Absent, 15)));
        assert_eq!((b.af_us, b.monitored_us), (30 * S, 40 * S));
        // A gap (signal lost from 45 s to 100 s) is not monitored time.
        assert!(b.add(&af(FindingStatus::Absent, 100)));
        assert_eq!((b.af_us, b.monitored_us), (30 * S, 70 * S));
        assert_eq!(b.since_us, 1_005 * S);
    }

    #[test]
    fn shadow_findings_other_conditions_and_duplicates_add_nothing() {
        let mut b = StreamBurden::default();
        assert!(!b.add(&af(FindingStatus::Present, 0).with_shadow(true)));
        let mut other = af(FindingStatus::Present, 0);
        other.condition = Condition::Tachycardia;
        assert!(!b.add(&other));
        assert_eq!(b, StreamBurden::default());
        let f = af(FindingStatus::Present, 0);
        assert!(b.add(&f));
        let once = b;
        assert!(!b.add(&f), "a duplicate (same key) adds nothing");
        assert!(
            !b.add(&af(FindingStatus::Absent, 0)),
            "nor a replayed window"
        );
        assert_eq!(b, once);
    }

    #[test]
    fn totals_are_due_for_the_store_at_first_then_every_minute() {
        let mut c = Counted::new(None);
        assert!(c.add(&af(FindingStatus::Present, 0)), "a new stream");
        c.stored = Some(c.current);
        c.dirty_since = None;
        for t in 1..12 {
            assert!(!c.add(&af(FindingStatus::Present, t * 5)));
            assert!(c.dirty_since.is_some());
        }
        // 30 + 11 × 5 = 85 s counted, 55 s since stored; the next window makes 60.
        assert!(c.add(&af(FindingStatus::Absent, 60)));
        assert!(!c.add(&af(FindingStatus::Absent, 60)), "a duplicate");
        let resumed = Counted::new(c.stored);
        assert_eq!(resumed.current, c.stored.unwrap());
    }

    #[test]
    fn burden_is_af_over_monitored() {
        let p = PatientBurden {
            patient: "p-1".into(),
            af_us: 15 * S,
            monitored_us: 60 * S,
            since_us: Some(0),
            streams: vec!["icu-1".into()],
        };
        assert_eq!(p.burden(), Some(0.25));
        let none = PatientBurden {
            monitored_us: 0,
            af_us: 0,
            ..p
        };
        assert_eq!(none.burden(), None);
    }
}
