//! Where windows sit in device time: the one definition of the window grids, and
//! with it of the idempotency keys.
//!
//! A stream's rhythm windows end at `phase + k · hop` of device time, its windows of
//! model `i` at `phase_i + k · hop_i`; the phases come from a stable hash of the
//! stream id ([`Phases`]). Because they depend on nothing but the stream id and the
//! configuration, an analysis rebuilt from any later frame — after a crash, a
//! rebalance or a gap — cuts the same windows under the same keys. Conversions
//! between sample indices and device time go through [`ecg_types::Timebase`] (one
//! rounding rule, to the nearest, everywhere).

use ecg_types::seconds_to_us;

/// Granularity of the rhythm-grid phase (µs): 50 slots in a 5 s hop.
pub const PHASE_STEP_US: i64 = 100_000;

/// Instants `phase + k · step` of device time (µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// Offset of the grid, `0 ≤ phase < step`.
    pub phase_us: i64,
    /// Distance between grid lines (> 0).
    pub step_us: i64,
}

impl Grid {
    /// The grid of lines `phase + k · step` (`step` at least 1 µs).
    pub fn new(phase_us: i64, step_us: i64) -> Self {
        let step_us = step_us.max(1);
        Self {
            phase_us: phase_us.rem_euclid(step_us),
            step_us,
        }
    }

    /// The first grid line at or after `t`.
    pub fn ceil(&self, t: i64) -> i64 {
        let r = (t - self.phase_us).rem_euclid(self.step_us);
        if r == 0 {
            t
        } else {
            t + self.step_us - r
        }
    }

    /// The grid line nearest to `t` (half-way rounds up).
    pub fn snap(&self, t: i64) -> i64 {
        let x = t - self.phase_us + self.step_us / 2;
        x.div_euclid(self.step_us) * self.step_us + self.phase_us
    }

    /// Whether `t` is a grid line.
    pub fn contains(&self, t: i64) -> bool {
        (t - self.phase_us).rem_euclid(self.step_us) == 0
    }
}

/// One model's window length and cadence (µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelTiming {
    /// Window length.
    pub len_us: i64,
    /// Time between window ends.
    pub hop_us: i64,
}

impl ModelTiming {
    /// From seconds.
    pub fn from_seconds(window_s: f32, hop_s: f32) -> Self {
        Self {
            len_us: seconds_to_us(f64::from(window_s)),
            hop_us: seconds_to_us(f64::from(hop_s)).max(1),
        }
    }
}

/// Where one stream's window grids sit in device time, from a stable hash of its id.
///
/// Were every stream's windows on one grid (multiples of the hop since the epoch),
/// all of a process's streams would close a rhythm window in the same instant every
/// hop, and every model window in the same instant every model hop: the analyzer
/// would get a burst of N windows at once, and the findings of the last of them would
/// wait behind all the others. Offsetting each stream's grids spreads those closes
/// evenly over the hop; because the offsets depend on nothing but the stream id
/// (FNV-1a, stable across processes and versions, unlike the std hasher), a replay in
/// any process after any restart cuts the same windows under the same idempotency
/// keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phases {
    /// Rhythm windows end on this grid (phase a multiple of [`PHASE_STEP_US`]).
    pub rhythm: Grid,
    /// Per model (in the analyzer's order), the grid its windows end on: the rhythm
    /// phase plus a multiple of the rhythm hop, so that a model window ends where a
    /// rhythm window does.
    pub models: Vec<Grid>,
}

impl Phases {
    /// The grids of `stream` for a rhythm hop and the models' timings.
    pub fn of(stream: &str, rhythm_hop_us: i64, timings: &[ModelTiming]) -> Self {
        let h = stream.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        let hop = rhythm_hop_us.max(1);
        let sub_slots = (hop / PHASE_STEP_US).max(1) as u64;
        let rhythm_us = (h % sub_slots) as i64 * PHASE_STEP_US.min(hop);
        // The remaining bits pick the slot within each model's cadence.
        let rest = h / sub_slots;
        let models = timings
            .iter()
            .map(|t| {
                let slots = (t.hop_us / hop).max(1) as u64;
                Grid::new(rhythm_us + (rest % slots) as i64 * hop, t.hop_us)
            })
            .collect();
        Self {
            rhythm: Grid::new(rhythm_us, hop),
            models,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many streams share the busiest slot, and how many slots are used.
    fn spread(values: &[i64]) -> (usize, usize) {
        let mut count = std::collections::BTreeMap::new();
        for v in values {
            *count.entry(*v).or_insert(0usize) += 1;
        }
        (count.values().copied().max().unwrap_or(0), count.len())
    }

    #[test]
    fn stream_phases_spread_over_the_hops_and_are_stable() {
        let rhythm = 5_000_000;
        let timings = [
            ModelTiming {
                len_us: 30_000_000,
                hop_us: 10_000_000,
            },
            ModelTiming {
                len_us: 10_000_000,
                hop_us: 300_000_000,
            },
        ];
        let phases: Vec<Phases> = (0..1000)
            .map(|i| Phases::of(&format!("bed-{i:04}.ecg"), rhythm, &timings))
            .collect();
        for p in &phases {
            assert!((0..rhythm).contains(&p.rhythm.phase_us));
            assert_eq!(p.rhythm.phase_us % PHASE_STEP_US, 0);
            for (m, t) in p.models.iter().zip(&timings) {
                assert!((0..t.hop_us).contains(&m.phase_us));
                assert_eq!(m.step_us, t.hop_us);
                assert_eq!(
                    (m.phase_us - p.rhythm.phase_us) % rhythm,
                    0,
                    "model windows end where rhythm windows do"
                );
            }
        }
        // Rhythm windows: 1,000 streams over 50 slots of 100 ms (20 each on average).
        let (busiest, used) = spread(&phases.iter().map(|p| p.rhythm.phase_us).collect::<Vec<_>>());
        assert_eq!(used, 50);
        assert!(busiest <= 40, "no slot takes ~2x its share: {busiest}");
        // af-rr (10 s): 100 slots; ecg12 (300 s): 3,000 slots, 1,000 streams.
        for (m, slots) in [(0, 100), (1, 3000)] {
            let (busiest, used) = spread(
                &phases
                    .iter()
                    .map(|p| p.models[m].phase_us)
                    .collect::<Vec<_>>(),
            );
            let share = 1000 / slots.min(1000);
            assert!(used >= slots.min(1000) / 2, "model {m}: {used} slots used");
            assert!(
                busiest <= (share * 3).max(5),
                "model {m}: busiest slot {busiest}"
            );
        }
        // Stable: a function of the stream id only.
        assert_eq!(Phases::of("bed-0001.ecg", rhythm, &timings), phases[1]);
        let one = Phases::of(
            "x",
            rhythm,
            &[ModelTiming {
                len_us: 1,
                hop_us: rhythm,
            }],
        );
        assert_eq!(one.models, vec![one.rhythm], "one slot: the rhythm grid");
    }

    #[test]
    fn grid_arithmetic() {
        let g = Grid::new(0, 5);
        assert_eq!(g.ceil(10), 10);
        assert_eq!(g.ceil(11), 15);
        assert_eq!(g.ceil(-3), 0);
        assert_eq!(g.snap(12), 10);
        assert_eq!(g.snap(13), 15);
        let g = Grid::new(0, 5_000_000);
        assert_eq!(g.snap(1_800_000_004_999_999), 1_800_000_005_000_000);
        let g = Grid::new(300, 1000);
        assert_eq!(g.ceil(301), 1300);
        assert_eq!(g.ceil(300), 300);
        assert_eq!(g.snap(799), 300);
        assert_eq!(g.snap(800), 1300);
        assert!(g.contains(-700));
        assert!(!g.contains(0));
        assert_eq!(Grid::new(-1, 10).phase_us, 9);
    }
}
