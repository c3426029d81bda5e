//! The rhythm strip behind a finding: the last seconds of a stream's first lead,
//! reduced to at most 250 Hz (box-averaged) and kept raw as microvolts, so that a
//! present finding can carry the ECG a clinician checks it against.
//!
//! A strip shows what a monitor shows: the raw signal run through the monitor filter
//! ([`ecg_dsp::MonitorFilter`]: baseline wander, mains notch, 40 Hz low-pass) at the
//! strip's rate when the strip is cut, the filter settled on the kept signal before
//! the strip starts. Strips are cut only for present findings, so the per-sample cost
//! stays that of the box average.

use std::collections::VecDeque;

use ecg_dsp::MonitorFilter;
use ecg_types::{Lead, Strip};

/// Seconds of signal a strip shows (a standard rhythm strip).
pub(crate) const STRIP_S: f64 = 10.0;
/// Seconds of kept signal the display filter runs over before a strip starts.
const SETTLE_S: f64 = 5.0;
/// Seconds kept: the longest model window (30 s) plus slack, so that model findings
/// scored at the end of a batch still find their signal.
const KEEP_S: f64 = 40.0;
/// Highest rate kept: enough to draw at 25 mm/s.
const MAX_RATE_HZ: u32 = 250;

/// A ring buffer of one lead.
#[derive(Debug)]
pub(crate) struct StripBuffer {
    lead: Lead,
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
}

impl StripBuffer {
    /// A buffer for a stream sampled at `fs_hz` in a region with `mains_hz` mains
    /// (0: no notch).
    pub(crate) fn new(lead: Lead, fs_hz: u32, mains_hz: f32) -> Self {
        let decim = u64::from(fs_hz.div_ceil(MAX_RATE_HZ).max(1));
        let rate_hz = (fs_hz as u64 / decim) as u32;
        let cap = (KEEP_S * f64::from(rate_hz)) as usize;
        Self {
            lead,
            mains_hz,
            decim,
            rate_hz,
            acc: 0.0,
            acc_n: 0,
            buf: VecDeque::with_capacity(cap),
            cap,
            end: 0,
        }
    }

    /// Appends native samples of the lead, in mV.
    pub(crate) fn push(&mut self, mv: &[f32]) {
        for &v in mv {
            self.acc += v;
            self.acc_n += 1;
            if self.acc_n == self.decim {
                let uv = (self.acc / self.decim as f32 * 1000.0).round();
                let uv = uv.clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16;
                if self.buf.len() == self.cap {
                    self.buf.pop_front();
                }
                self.buf.push_back(uv);
                self.end += 1;
                self.acc = 0.0;
                self.acc_n = 0;
            }
        }
    }

    /// The strip of `STRIP_S` seconds ending at native sample `end_sample` (clipped to
    /// what is kept); `time_of` maps a native sample index to device time.
    pub(crate) fn strip(&self, end_sample: u64, time_of: impl Fn(u64) -> i64) -> Option<Strip> {
        let end = (end_sample / self.decim).min(self.end);
        let first_kept = self.end - self.buf.len() as u64;
        let want = (STRIP_S * f64::from(self.rate_hz)) as u64;
        let start = end.saturating_sub(want).max(first_kept);
        if end <= start {
            return None;
        }
        let from = (start - first_kept) as usize;
        let to = (end - first_kept) as usize;
        // The monitor filter from up to `SETTLE_S` before the strip, so it has
        // settled by the strip's start (a 0.5 Hz high-pass settles in about 1 s).
        let mains = if f64::from(self.mains_hz) < 0.45 * f64::from(self.rate_hz) {
            f64::from(self.mains_hz)
        } else {
            0.0
        };
        let mut filter = MonitorFilter::with_mains(f64::from(self.rate_hz), mains);
        let settle_from = from.saturating_sub((SETTLE_S * f64::from(self.rate_hz)) as usize);
        let mut samples_uv = Vec::with_capacity(to - from);
        for (i, &v) in self.buf.range(settle_from..to).enumerate() {
            let y = filter.step(f32::from(v) / 1000.0);
            if settle_from + i >= from {
                samples_uv.push((y * 1000.0).round() as i32);
            }
        }
        Some(Strip {
            lead: self.lead,
            sample_rate_hz: self.rate_hz,
            start_us: time_of(start * self.decim),
            samples_uv,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
