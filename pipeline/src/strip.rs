//! The rhythm strip behind a finding: the last seconds of a stream's first lead,
//! reduced to at most 250 Hz (box-averaged) and kept raw as microvolts, so that a
//! present finding can carry the ECG a clinician checks it against; for a lethal
//! alarm also the other leads and the pulse channels (kept shorter and at ≤ 125 Hz).
//! The pacemaker pulses the device reported go with the strip as marks
//! (`Strip::pace_us`): a spike of a millisecond or two does not survive the strip's
//! rate and filter, and a clinician reading a paced rhythm needs to see where they were.
//!
//! A strip shows what a monitor shows: the raw signal run through the monitor filter
//! ([`ecg_dsp::MonitorFilter`]: baseline wander, mains notch, 40 Hz low-pass) at the
//! strip's rate when the strip is cut, the filter settled on the kept signal before
//! the strip starts. Strips are cut only for present findings, so the per-sample cost
//! stays that of the box average.

use std::collections::VecDeque;

use ecg_dsp::pace::RecentPulses;
use ecg_dsp::MonitorFilter;
use ecg_types::{Lead, PulseKind, Strip, Trace};

/// Seconds of signal a strip shows (a standard rhythm strip).
pub(crate) const STRIP_S: f64 = 10.0;
/// Seconds of kept signal the display filter runs over before a strip starts.
const SETTLE_S: f64 = 5.0;
/// Seconds kept of the first lead: the longest model window (30 s) plus slack, so
/// that model findings scored at the end of a batch still find their signal.
const KEEP_S: f64 = 40.0;
/// Seconds kept of the other leads and of pulses: they only go with lethal alarms,
/// published as they happen (the strip plus the display filter's settling).
const KEEP_EXTRA_S: f64 = STRIP_S + SETTLE_S + 1.0;
/// Highest rate kept of the first lead: enough to draw at 25 mm/s.
const MAX_RATE_HZ: u32 = 250;
/// Highest rate kept of the other leads and of pulses (memory: a 12-lead stream keeps
/// 11 more traces).
const MAX_EXTRA_RATE_HZ: u32 = 125;

/// Most pacemaker pulses a strip buffer keeps, per second of the signal it keeps (a
/// bound on the total): beyond any pacing mode (a biventricular pacer at 180 bpm gives
/// 9 per second), and a bound on memory for a stream that flags nonsense.
const MAX_PACE_PER_S: usize = 12;

/// What a trace shows, which decides how it is kept and drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Signal {
    /// An ECG lead (mV in, µV kept, monitor-filtered when cut).
    Ecg(Lead),
    /// A pulsatile waveform (its unit in, hundredths kept, unfiltered).
    Pulse(PulseKind),
}

impl Signal {
    /// Stored counts per input unit.
    fn counts_per_unit(self) -> f32 {
        match self {
            Signal::Ecg(_) => 1000.0,
            Signal::Pulse(_) => 100.0,
        }
    }
}

/// A ring buffer of one signal, box-averaged to a display rate.
#[derive(Debug)]
pub(crate) struct StripBuffer {
    signal: Signal,
    mains_hz: f32,
    /// Native samples per kept sample.
    decim: u64,
    rate_hz: u32,
    acc: f32,
    acc_n: u64,
    buf: VecDeque<i16>,
    cap: usize,
    /// Kept-sample index one past the last in `buf`.
    end: u64,
    /// Native sample indices of the pacemaker pulses the device reported, as long as
    /// the signal they fall in is kept: the latest [`MAX_PACE_PER_S`] times the kept
    /// seconds of them at most.
    pace: RecentPulses,
}

impl StripBuffer {
    /// The first lead's buffer for a stream sampled at `fs_hz` in a region with
    /// `mains_hz` mains (0: no notch).
    pub(crate) fn new(lead: Lead, fs_hz: u32, mains_hz: f32) -> Self {
        Self::with_limits(Signal::Ecg(lead), fs_hz, mains_hz, MAX_RATE_HZ, KEEP_S)
    }

    /// A buffer of another lead or a pulse: lower rate, shorter memory.
    pub(crate) fn extra(signal: Signal, fs_hz: u32, mains_hz: f32) -> Self {
        Self::with_limits(signal, fs_hz, mains_hz, MAX_EXTRA_RATE_HZ, KEEP_EXTRA_S)
    }

    fn with_limits(signal: Signal, fs_hz: u32, mains_hz: f32, max_rate: u32, keep_s: f64) -> Self {
        let decim = u64::from(fs_hz.div_ceil(max_rate).max(1));
        let rate_hz = (u64::from(fs_hz) / decim) as u32;
        let cap = (keep_s * f64::from(rate_hz)) as usize;
        Self {
            signal,
            mains_hz,
            decim,
            rate_hz,
            acc: 0.0,
            acc_n: 0,
            buf: VecDeque::with_capacity(cap),
            cap,
            end: 0,
            pace: RecentPulses::new(MAX_PACE_PER_S * cap / rate_hz.max(1) as usize),
        }
    }

    /// Records pacemaker pulses at these native sample indices (in order, at or after
    /// any recorded before), to be marked on the strips that span them; forgets those
    /// whose signal is no longer kept.
    pub(crate) fn mark_pace(&mut self, at: &[u64]) {
        let kept_from = (self.end - self.buf.len() as u64) * self.decim;
        self.pace.push(at, kept_from);
    }

    /// Appends native samples (mV for ECG, the pulse's unit otherwise).
    pub(crate) fn push(&mut self, x: &[f32]) {
        let k = self.signal.counts_per_unit();
        // The box open from the last call, sample by sample.
        let mut i = 0;
        while self.acc_n != 0 && i < x.len() {
            self.step(x[i], k);
            i += 1;
        }
        // Whole boxes in bulk: the same sums in the same order, and the ring made
        // room for them once instead of per kept sample.
        let d = self.decim as usize;
        let whole = (x.len() - i) / d * d;
        let n = whole / d;
        if n > 0 {
            let keep = n.min(self.cap);
            let excess = (self.buf.len() + keep).saturating_sub(self.cap);
            self.buf.drain(..excess);
            // Kept samples computed into a stack buffer, by a loop specialised to the
            // usual box sizes (a constant divisor, no ring bookkeeping per sample),
            // then copied into the ring.
            let mut tmp = [0i16; 128];
            for part in x[i + (n - keep) * d..i + whole].chunks(tmp.len() * d) {
                let out = &mut tmp[..part.len() / d];
                match d {
                    1 => box_means(part, 1, k, out),
                    2 => box_means(part, 2, k, out),
                    4 => box_means(part, 4, k, out),
                    _ => box_means(part, d, k, out),
                }
                self.buf.extend(out.iter());
            }
            self.end += n as u64;
            i += whole;
        }
        for &v in &x[i..] {
            self.step(v, k);
        }
    }

    /// One native sample into the open box.
    fn step(&mut self, v: f32, k: f32) {
        self.acc += if v.is_finite() { v } else { 0.0 };
        self.acc_n += 1;
        if self.acc_n == self.decim {
            let c = kept(self.acc, self.decim, k);
            if self.buf.len() == self.cap {
                self.buf.pop_front();
            }
            self.buf.push_back(c);
            self.end += 1;
            self.acc = 0.0;
            self.acc_n = 0;
        }
    }

    /// The kept samples of the `STRIP_S` seconds ending at native sample
    /// `end_sample` (clipped to what is kept), display-filtered for ECG, in the
    /// buffer's counts; with the kept index of the first.
    fn cut(&self, end_sample: u64) -> Option<(u64, Vec<i32>)> {
        let end = (end_sample / self.decim).min(self.end);
        let first_kept = self.end - self.buf.len() as u64;
        let want = (STRIP_S * f64::from(self.rate_hz)) as u64;
        let start = end.saturating_sub(want).max(first_kept);
        if end <= start {
            return None;
        }
        let from = (start - first_kept) as usize;
        let to = (end - first_kept) as usize;
        if let Signal::Pulse(_) = self.signal {
            return Some((
                start,
                self.buf.range(from..to).map(|&v| i32::from(v)).collect(),
            ));
        }
        // The monitor filter from up to `SETTLE_S` before the strip, so it has
        // settled by the strip's start (a 0.5 Hz high-pass settles in about 1 s).
        let mains = if f64::from(self.mains_hz) < 0.45 * f64::from(self.rate_hz) {
            f64::from(self.mains_hz)
        } else {
            0.0
        };
        let mut filter = MonitorFilter::with_mains(f64::from(self.rate_hz), mains);
        let settle_from = from.saturating_sub((SETTLE_S * f64::from(self.rate_hz)) as usize);
        // Filtered as `filter.step` sample by sample, section by section.
        let mut wide: Vec<f64> = self
            .buf
            .range(settle_from..to)
            .map(|&v| f64::from(f32::from(v) / 1000.0))
            .collect();
        filter.process_wide(&mut wide);
        Some((start, shown_counts(&wide[from - settle_from..])))
    }

    /// The strip of `STRIP_S` seconds ending at native sample `end_sample` (clipped to
    /// what is kept); `time_of` maps a native sample index to device time.
    pub(crate) fn strip(&self, end_sample: u64, time_of: impl Fn(u64) -> i64) -> Option<Strip> {
        let (start, samples_uv) = self.cut(end_sample)?;
        let lead = match self.signal {
            Signal::Ecg(l) => l,
            Signal::Pulse(_) => Lead::Unspecified,
        };
        // The pulses within the kept samples shown, each at its own native sample.
        let (from, to) = (
            start * self.decim,
            (start + samples_uv.len() as u64) * self.decim,
        );
        let pace_us = self.pace.range(from, to).map(&time_of).collect();
        Some(Strip {
            lead,
            sample_rate_hz: self.rate_hz,
            start_us: time_of(start * self.decim),
            samples_uv,
            more: Vec::new(),
            pace_us,
        })
    }

    /// The same span as a further trace of a strip.
    pub(crate) fn trace(&self, end_sample: u64, time_of: impl Fn(u64) -> i64) -> Option<Trace> {
        let (start, values) = self.cut(end_sample)?;
        let (label, unit) = match self.signal {
            Signal::Ecg(l) => (l.name().to_owned(), "uV".to_owned()),
            Signal::Pulse(k) => (k.as_str().to_owned(), k.unit().to_owned()),
        };
        Some(Trace {
            label,
            unit,
            // µV per count for ECG (kept in µV), the unit per count for pulses.
            scale: match self.signal {
                Signal::Ecg(_) => 1.0,
                Signal::Pulse(_) => 1.0 / self.signal.counts_per_unit(),
            },
            sample_rate_hz: self.rate_hz,
            start_us: time_of(start * self.decim),
            values,
        })
    }
}

/// The sum of a box's samples, non-finite ones as 0, in order from 0.
fn box_sum(g: &[f32]) -> f32 {
    g.iter()
        .fold(0.0f32, |a, &v| a + if v.is_finite() { v } else { 0.0 })
}

/// The kept samples of whole boxes of `d` samples each: `kept(box_sum(box), d, k)`.
/// Inlined into every call, so a call with a constant `d` gets a loop with a constant
/// box size, whose boxes (the rounding free of branches) are computed side by side.
#[inline(always)]
fn box_means(x: &[f32], d: usize, k: f32, out: &mut [i16]) {
    for (o, g) in out.iter_mut().zip(x.chunks_exact(d)) {
        *o = kept(box_sum(g), d as u64, k);
    }
}

/// The kept sample of a box: the mean of its `decim` samples (summed to `acc`) in
/// stored counts (`k` per unit).
#[inline(always)]
fn kept(acc: f32, decim: u64, k: f32) -> i16 {
    round_to_i16(acc / decim as f32 * k)
}

/// `x.round()` (half away from zero) saturated to `i16`, NaN as 0: exactly
/// `x.round().clamp(-32768.0, 32767.0) as i16`, without the software rounding
/// routine `f32::round` becomes on the x86-64 baseline (every strip sample of every
/// lead passes here): [`round_below_2_22`] of `x` clamped (`max` and `min` never
/// return NaN, so NaN is made 0 first).
#[inline(always)]
fn round_to_i16(x: f32) -> i16 {
    let x = if x.is_nan() { 0.0 } else { x };
    round_below_2_22(x.max(f32::from(i16::MIN)).min(f32::from(i16::MAX))) as i16
}

/// The kept counts of a cut's filtered span (`f64` mV, as `MonitorFilter::step`
/// leaves them before their narrowing): `round_to_i32(y as f32 * 1000.0)` of each.
/// The display filter's output is far below 2^22 µV, and then every sample is
/// rounded by [`round_below_2_22`], which the compiler does four at a time;
/// otherwise sample by sample.
fn shown_counts(wide: &[f64]) -> Vec<i32> {
    let uv = |y: f64| y as f32 * 1000.0;
    let beyond = wide
        .iter()
        .fold(false, |b, &y| b | (uv(y).abs() >= 4_194_304.0));
    if beyond {
        wide.iter().map(|&y| round_to_i32(uv(y))).collect()
    } else {
        wide.iter().map(|&y| round_below_2_22(uv(y))).collect()
    }
}

/// `x.round() as i32` (half away from zero) for `|x| < 2^22`, NaN as 0, without a
/// float-to-integer conversion: that one saturates, which the compiler does lane by
/// lane, where every step here is done for four values at once.
#[inline(always)]
fn round_below_2_22(x: f32) -> i32 {
    /// 1.5 × 2^23: added to a value in [0, 2^22), the sum's low mantissa bits hold
    /// the value rounded to a whole number (ties to even).
    const MAGIC: f32 = 12_582_912.0;
    let x = if x.is_nan() { 0.0 } else { x };
    let a = x.abs();
    let m = a + MAGIC;
    let even = m.to_bits() as i32 - MAGIC.to_bits() as i32;
    // `m - MAGIC` is `a` rounded (exact), `a` minus it too: a tie that went down to
    // even goes up instead, away from zero.
    let n = even + i32::from(a - (m - MAGIC) == 0.5);
    if x < 0.0 {
        -n
    } else {
        n
    }
}

/// `x.round() as i32` (half away from zero, saturated, NaN as 0), without the
/// software rounding routine `f32::round` is on the x86-64 baseline (every sample of a
/// cut strip passes here): below 2^23 in magnitude `x` minus its truncation is exact;
/// from there on `x` is a whole number already.
fn round_to_i32(x: f32) -> i32 {
    if x.abs() < 8_388_608.0 {
        let t = x as i32;
        let frac = x - t as f32;
        t + i32::from(frac >= 0.5) - i32::from(frac <= -0.5)
    } else {
        x as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_keep_what_sample_by_sample_keeps() {
        // Blocks of every size (shorter and longer than a box, than the whole ring),
        // with missing samples, at rates that box-average by 1, 2, 3 and 4.
        for fs in [125u32, 250, 500, 750, 1000] {
            for extra in [false, true] {
                let make = || {
                    if extra {
                        StripBuffer::extra(Signal::Ecg(Lead::V1), fs, 50.0)
                    } else {
                        StripBuffer::new(Lead::II, fs, 50.0)
                    }
                };
                let (mut blocks, mut one) = (make(), make());
                let k = one.signal.counts_per_unit();
                let mut x = 12_345u32;
                let mut t = 0usize;
                for round in 0..400 {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    let len = if round % 50 == 7 {
                        9_000 + (x >> 20) as usize % 4_000
                    } else {
                        (x >> 16) as usize % 23
                    };
                    let block: Vec<f32> = (0..len)
                        .map(|j| {
                            t += 1;
                            if (t + j).is_multiple_of(997) {
                                f32::NAN
                            } else if (t + j).is_multiple_of(1009) {
                                f32::INFINITY
                            } else if t.is_multiple_of(1013) {
                                // Beyond the kept range either way (saturated).
                                if j % 2 == 0 {
                                    3.0e30
                                } else {
                                    -40.0
                                }
                            } else {
                                ((t as f32) * 0.013).sin() * 1.7 + 0.001 * (j as f32)
                            }
                        })
                        .collect();
                    blocks.push(&block);
                    for &v in &block {
                        one.step(v, k);
                    }
                    assert_eq!(blocks.end, one.end, "fs {fs}, round {round}");
                    assert_eq!(blocks.acc_n, one.acc_n);
                    assert_eq!(blocks.acc.to_bits(), one.acc.to_bits());
                    assert!(blocks.buf == one.buf, "fs {fs}, round {round}");
                }
            }
        }
    }

    #[test]
    fn fast_rounding_equals_f32_round() {
        let reference = |x: f32| x.round().clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16;
        let mut edges = vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            0.499_999_97,
            -0.499_999_97,
            1.5,
            -1.5,
            2.5,
            32_766.5,
            32_767.0,
            32_767.5,
            -32_767.5,
            -32_768.0,
            -32_768.5,
            1e9,
            -1e9,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::EPSILON,
        ];
        // Every half step and its neighbours over the range, and a sweep of values.
        for i in -65_540..=65_540 {
            let h = i as f32 * 0.5;
            edges.extend([h, h.next_up(), h.next_down()]);
        }
        let mut x = -40_000.0f32;
        while x < 40_000.0 {
            edges.push(x);
            x += 0.013;
        }
        // And a sweep of bit patterns over the whole f32 range.
        edges.extend((0..u32::MAX).step_by(997).map(f32::from_bits));
        for &x in &edges {
            assert_eq!(round_to_i16(x), reference(x), "{x:?}");
        }
        // The i32 rounding of the cut: the same values, and 2^23 and 2^31 around.
        for i in -70i32..=70 {
            let p = 2.0f32.powi(i.abs() / 2 + 16) * if i < 0 { -1.0 } else { 1.0 };
            edges.extend([p, p.next_up(), p.next_down(), p + 0.5, p - 0.5]);
        }
        for &x in &edges {
            assert_eq!(round_to_i32(x), x.round() as i32, "{x:?}");
            if x.is_nan() || x.abs() < 4_194_304.0 {
                assert_eq!(round_below_2_22(x), x.round() as i32, "{x:?}");
            }
        }
        // A cut's counts, below 2^22 µV and beyond it.
        let mut wide: Vec<f64> = edges.iter().map(|&x| f64::from(x) / 1000.0).collect();
        wide.retain(|y| y.abs() < 4_000.0 || y.is_nan());
        let each = |w: &[f64]| -> Vec<i32> {
            w.iter().map(|&y| round_to_i32(y as f32 * 1000.0)).collect()
        };
        assert_eq!(shown_counts(&wide), each(&wide));
        wide.push(4_194.304);
        wide.push(-1e30);
        assert_eq!(shown_counts(&wide), each(&wide));
    }

    #[test]
    fn decimates_keeps_the_tail_and_maps_time() {
        // 500 Hz → 250 Hz; a ramp in mV.
        let mut b = StripBuffer::new(Lead::II, 500, 50.0);
        let mv: Vec<f32> = (0..500 * 60).map(|i| (i % 1000) as f32 / 1000.0).collect();
        b.push(&mv);
        let s = b.strip(500 * 60, |n| n as i64 * 2000).expect("strip");
        assert_eq!(s.sample_rate_hz, 250);
        assert_eq!(s.samples_uv.len(), 2500, "10 s at 250 Hz");
        assert_eq!(s.start_us, (500 * 50) * 2000, "starts 10 s before the end");
        // A strip ending 35 s back is clipped to the 40 s kept: its last 5 s remain.
        let old = b.strip(500 * 25, |n| n as i64).expect("strip");
        assert_eq!(old.samples_uv.len(), 1250);
        assert_eq!(old.start_us, 500 * 20);
        assert!(b.strip(500 * 15, |n| n as i64).is_none(), "older than kept");
    }

    #[test]
    fn pulse_traces_keep_their_unit_and_time_and_leads_go_at_125_hz() {
        // Arterial pressure at 250 Hz: 80–120 mmHg at 1 Hz, kept at 125 Hz, unfiltered.
        let mut b = StripBuffer::extra(Signal::Pulse(PulseKind::ArterialPressure), 250, 50.0);
        let tau = std::f32::consts::TAU;
        let abp: Vec<f32> = (0..250 * 20)
            .map(|i| 100.0 + 20.0 * (tau * i as f32 / 250.0).sin())
            .collect();
        b.push(&abp);
        let t = b.trace(250 * 20, |n| n as i64 * 4000).expect("trace");
        assert_eq!(
            (t.label.as_str(), t.unit.as_str()),
            ("arterial_pressure", "mmHg")
        );
        assert_eq!(t.sample_rate_hz, 125);
        assert_eq!(t.values.len(), 1250, "10 s at 125 Hz");
        assert_eq!(t.start_us, 250 * 10 * 4000, "starts 10 s before the end");
        let mmhg: Vec<f32> = t.values.iter().map(|&v| v as f32 * t.scale).collect();
        let (lo, hi) = mmhg
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        assert!(
            (79.0..82.0).contains(&lo) && (118.0..121.0).contains(&hi),
            "{lo}..{hi}"
        );
        // Only the last 16 s are kept.
        assert!(b.trace(250 * 3, |n| n as i64).is_none());
        // Another ECG lead: µV, display rate 125 Hz.
        let mut v1 = StripBuffer::extra(Signal::Ecg(Lead::V1), 500, 60.0);
        v1.push(&[0.0; 500 * 12]);
        let t = v1.trace(500 * 12, |n| n as i64).expect("trace");
        assert_eq!(
            (t.label.as_str(), t.unit.as_str(), t.scale),
            ("V1", "uV", 1.0)
        );
        assert_eq!(t.sample_rate_hz, 125);
        assert_eq!(t.values.len(), 1250);
    }

    #[test]
    fn low_rates_are_kept_as_they_are() {
        let mut b = StripBuffer::new(Lead::I, 128, 60.0);
        b.push(&[1.0; 128 * 3]);
        let s = b.strip(128 * 3, |n| n as i64).expect("strip");
        assert_eq!(s.sample_rate_hz, 128);
        assert_eq!(s.samples_uv.len(), 128 * 3);
    }

    #[test]
    fn strips_are_monitor_filtered_baseline_removed() {
        // A 1 Hz, 1 mV sine on a 2 mV offset drifting at 0.05 Hz by ±1 mV: what is
        // shown keeps the sine and loses the offset and most of the drift.
        let fs = 250.0f32;
        let mut b = StripBuffer::new(Lead::II, 250, 50.0);
        let tau = std::f32::consts::TAU;
        let mv: Vec<f32> = (0..250 * 40)
            .map(|i| {
                let t = i as f32 / fs;
                2.0 + (tau * 0.05 * t).sin() + (tau * t).sin()
            })
            .collect();
        b.push(&mv);
        let s = b.strip(250 * 40, |n| n as i64).expect("strip");
        let mean = s.samples_uv.iter().map(|&v| f64::from(v)).sum::<f64>() / 2500.0;
        let peak = s.samples_uv.iter().map(|v| v.abs()).max().unwrap_or(0);
        assert!(mean.abs() < 100.0, "offset removed: mean {mean} µV");
        assert!(
            (800..1300).contains(&peak),
            "the 1 Hz sine stays: peak {peak} µV"
        );
    }

    #[test]
    fn pacemaker_marks_go_with_the_strips_that_span_them() {
        // 500 Hz → 250 Hz kept, 40 s kept: pulses every 0.8 s from 0.1 s, marked at
        // their own native sample (time_of maps native samples to µs at 500 Hz).
        let mut b = StripBuffer::new(Lead::II, 500, 50.0);
        let time_of = |n: u64| (n * 2_000) as i64;
        let mut all = Vec::new();
        for s in 0..60u64 {
            b.push(&[0.5; 500]);
            let at: Vec<u64> = (0..)
                .map(|k| 50 + 400 * k)
                .skip_while(|&p| p < s * 500)
                .take_while(|&p| p < (s + 1) * 500)
                .collect();
            b.mark_pace(&at);
            all.extend(at);
        }
        // The strip of the 10 s ending at 30 s: the pulses in [20 s, 30 s).
        let s = b.strip(30 * 500, time_of).expect("strip");
        let want: Vec<i64> = all
            .iter()
            .filter(|&&p| (20 * 500..30 * 500).contains(&p))
            .map(|&p| time_of(p))
            .collect();
        assert_eq!(want.len(), 13);
        assert_eq!(s.pace_us, want);
        // Signal no longer kept: neither are its pulses.
        assert_eq!(b.pace.count_in(0, 20 * 500), 0);
        // A stream flagging every sample keeps at most 12 times the kept seconds, the
        // latest, in no more memory than that.
        let at: Vec<u64> = (60 * 500..70 * 500).collect();
        b.push(&[0.5; 5_000]);
        b.mark_pace(&at);
        assert_eq!(b.pace.len(), 12 * 40);
        assert_eq!(b.pace.last_at_or_before(u64::MAX), Some(70 * 500 - 1));
        assert!(b.pace.capacity() <= 2 * 12 * 40, "{}", b.pace.capacity());
        // A hostile frame: 160,000 pulses at once.
        let mut h = StripBuffer::new(Lead::II, 16_000, 50.0);
        h.push(&vec![0.5; 160_000]);
        h.mark_pace(&(0..160_000).collect::<Vec<u64>>());
        assert_eq!(h.pace.len(), 12 * 40);
        assert!(h.pace.capacity() <= 2 * 12 * 40, "{}", h.pace.capacity());
        // A strip without pulses has no marks.
        let mut quiet = StripBuffer::new(Lead::II, 250, 50.0);
        quiet.push(&[0.5; 2_500]);
        assert!(quiet
            .strip(2_500, |n| n as i64)
            .expect("strip")
            .pace_us
            .is_empty());
    }
}
