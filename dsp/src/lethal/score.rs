//! Scoring of alarm decisions the PhysioNet/CinC Challenge 2015 way, with bootstrap
//! confidence intervals: score = 100·(TP+TN)/(TP+TN+FP+5·FN), so suppressing a true
//! alarm costs five times as much as letting a false one through.

use serde::{Deserialize, Serialize};

/// One alarm: whether it was true (the experts' verdict) and whether it was raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmOutcome {
    /// The experts judged the alarm true.
    pub truth: bool,
    /// The detector raised it.
    pub raised: bool,
}

/// Confusion counts of a set of alarms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmCounts {
    /// True alarms raised.
    pub tp: usize,
    /// True alarms suppressed.
    pub fn_: usize,
    /// False alarms suppressed.
    pub tn: usize,
    /// False alarms raised.
    pub fp: usize,
}

impl AlarmCounts {
    /// Counts of `outcomes`.
    pub fn of(outcomes: &[AlarmOutcome]) -> Self {
        let mut c = Self::default();
        for o in outcomes {
            c.add(*o);
        }
        c
    }

    /// Adds one alarm.
    pub fn add(&mut self, o: AlarmOutcome) {
        match (o.truth, o.raised) {
            (true, true) => self.tp += 1,
            (true, false) => self.fn_ += 1,
            (false, false) => self.tn += 1,
            (false, true) => self.fp += 1,
        }
    }

    /// Number of alarms.
    pub fn total(&self) -> usize {
        self.tp + self.fn_ + self.tn + self.fp
    }

    /// Challenge score, 0–100 (NaN for no alarm).
    pub fn score(&self) -> f64 {
        let num = (self.tp + self.tn) as f64;
        let den = (self.tp + self.tn + self.fp + 5 * self.fn_) as f64;
        if den == 0.0 {
            f64::NAN
        } else {
            100.0 * num / den
        }
    }

    /// True-positive rate (share of true alarms raised; NaN without true alarms).
    pub fn tpr(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// True-negative rate (share of false alarms suppressed; NaN without false alarms).
    pub fn tnr(&self) -> f64 {
        ratio(self.tn, self.tn + self.fp)
    }

    /// The monitors' own baseline on the same alarms: every alarm raised.
    pub fn all_raised(&self) -> Self {
        Self {
            tp: self.tp + self.fn_,
            fn_: 0,
            tn: 0,
            fp: self.tn + self.fp,
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

/// A 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// 2.5th percentile.
    pub lo: f64,
    /// 97.5th percentile.
    pub hi: f64,
}

/// Bootstrap 95 % intervals of the score, TPR and TNR.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapCi {
    /// Challenge score.
    pub score: Interval,
    /// True-positive rate.
    pub tpr: Interval,
    /// True-negative rate.
    pub tnr: Interval,
}

/// Percentile bootstrap over alarms (`resamples` resamples with replacement, a fixed
/// `seed`, so the intervals are reproducible). Resamples without any true (false)
/// alarm are left out of the TPR (TNR) interval.
pub fn bootstrap(outcomes: &[AlarmOutcome], resamples: usize, seed: u64) -> BootstrapCi {
    let n = outcomes.len();
    let mut rng = SplitMix64(seed);
    let (mut s, mut tp, mut tn) = (Vec::new(), Vec::new(), Vec::new());
    if n > 0 {
        for _ in 0..resamples {
            let mut c = AlarmCounts::default();
            for _ in 0..n {
                c.add(outcomes[(rng.next() % n as u64) as usize]);
            }
            s.push(c.score());
            let (a, b) = (c.tpr(), c.tnr());
            if a.is_finite() {
                tp.push(a);
            }
            if b.is_finite() {
                tn.push(b);
            }
        }
    }
    BootstrapCi {
        score: percentiles(&mut s),
        tpr: percentiles(&mut tp),
        tnr: percentiles(&mut tn),
    }
}

fn percentiles(v: &mut [f64]) -> Interval {
    if v.is_empty() {
        return Interval {
            lo: f64::NAN,
            hi: f64::NAN,
        };
    }
    v.sort_unstable_by(f64::total_cmp);
    let at = |q: f64| v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
    Interval {
        lo: at(0.025),
        hi: at(0.975),
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): small, deterministic, good enough for
/// resampling.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(truth: bool, raised: bool) -> AlarmOutcome {
        AlarmOutcome { truth, raised }
    }

    #[test]
    fn challenge_score_weighs_misses_five_times() {
        let c = AlarmCounts::of(&[
            o(true, true),
            o(true, false),
            o(false, false),
            o(false, true),
        ]);
        assert_eq!((c.tp, c.fn_, c.tn, c.fp), (1, 1, 1, 1));
        assert!((c.score() - 100.0 * 2.0 / 8.0).abs() < 1e-9);
        assert_eq!(c.tpr(), 0.5);
        assert_eq!(c.tnr(), 0.5);
        let all = c.all_raised();
        assert_eq!((all.tp, all.fn_, all.tn, all.fp), (2, 0, 0, 2));
        assert!((all.score() - 50.0).abs() < 1e-9);
    }

    #[test]
    fn bootstrap_brackets_the_estimate_and_is_reproducible() {
        let mut v = Vec::new();
        for i in 0..100 {
            v.push(o(i % 3 == 0, i % 5 != 0));
        }
        let c = AlarmCounts::of(&v);
        let a = bootstrap(&v, 500, 7);
        let b = bootstrap(&v, 500, 7);
        assert_eq!(a, b);
        assert!(
            a.score.lo <= c.score() && c.score() <= a.score.hi,
            "{a:?} {}",
            c.score()
        );
        assert!(a.tpr.lo <= c.tpr() && c.tpr() <= a.tpr.hi);
        assert!(a.score.hi - a.score.lo > 1.0);
    }
}
