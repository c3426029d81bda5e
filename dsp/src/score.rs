//! Beat-by-beat scoring of a detector against reference beats, after ANSI/AAMI EC57
//! and PhysioNet `bxb`: each reference beat matches at most one detection within a
//! tolerance window; sensitivity Se = TP/(TP+FN), positive predictivity
//! +P = TP/(TP+FP).

/// True positives, false negatives, false positives.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BeatCounts {
    /// Reference beats matched by a detection.
    pub tp: usize,
    /// Reference beats without a detection.
    pub fn_: usize,
    /// Detections without a reference beat.
    pub fp: usize,
}

impl BeatCounts {
    /// Adds another record's counts (gross statistics).
    pub fn add(&mut self, o: BeatCounts) {
        self.tp += o.tp;
        self.fn_ += o.fn_;
        self.fp += o.fp;
    }

    /// Sensitivity, percent (100 when there is no reference beat).
    pub fn se(&self) -> f64 {
        if self.tp + self.fn_ == 0 {
            100.0
        } else {
            100.0 * self.tp as f64 / (self.tp + self.fn_) as f64
        }
    }

    /// Positive predictivity, percent (100 when there is no detection).
    pub fn pp(&self) -> f64 {
        if self.tp + self.fp == 0 {
            100.0
        } else {
            100.0 * self.tp as f64 / (self.tp + self.fp) as f64
        }
    }
}

/// Matches sorted sample indices: each reference beat matches at most one detection
/// within `tolerance` samples, greedily in time order (a detection gives way to the
/// next one when that one is closer to the reference beat).
pub fn match_beats(reference: &[u64], detected: &[u64], tolerance: u64) -> BeatCounts {
    let (mut i, mut j) = (0, 0);
    let mut c = BeatCounts::default();
    while i < reference.len() && j < detected.len() {
        let (r, d) = (reference[i], detected[j]);
        if d + tolerance < r {
            c.fp += 1;
            j += 1;
        } else if r + tolerance < d {
            c.fn_ += 1;
            i += 1;
        } else if j + 1 < detected.len() && detected[j + 1].abs_diff(r) < d.abs_diff(r) {
            c.fp += 1;
            j += 1;
        } else {
            c.tp += 1;
            i += 1;
            j += 1;
        }
    }
    c.fn_ += reference.len() - i;
    c.fp += detected.len() - j;
    c
}

/// `v` without the samples inside any of the inclusive `episodes` (e.g. ventricular
/// flutter, which EC57 leaves out of QRS scoring).
pub fn outside(v: &[u64], episodes: &[(u64, u64)]) -> Vec<u64> {
    v.iter()
        .copied()
        .filter(|b| !episodes.iter().any(|&(s, e)| (s..=e).contains(b)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_within_the_window_only() {
        let c = match_beats(&[100, 200, 300], &[104, 260, 301, 400], 10);
        assert_eq!(
            c,
            BeatCounts {
                tp: 2,
                fn_: 1,
                fp: 2
            }
        );
        assert!((c.se() - 200.0 / 3.0).abs() < 1e-9);
        assert!((c.pp() - 50.0).abs() < 1e-9);
        // The closer of two detections takes the beat.
        let c = match_beats(&[100], &[95, 99], 10);
        assert_eq!(
            c,
            BeatCounts {
                tp: 1,
                fn_: 0,
                fp: 1
            }
        );
        assert_eq!(outside(&[1, 5, 9], &[(4, 6)]), vec![1, 9]);
    }
}
