//! The rhythm strip behind a finding: the last seconds of a stream's first lead,
//! reduced to at most 250 Hz (box-averaged) and kept as microvolts, so that a present
//! finding can carry the ECG a clinician checks it against.

use std::collections::VecDeque;

use ecg_types::{Lead, Strip};

/// Seconds of signal a strip shows (a standard rhythm strip).
pub(crate) const STRIP_S: f64 = 10.0;
/// Seconds kept: the longest model window (30 s) plus slack, so that model findings
/// scored at the end of a batch still find their signal.
const KEEP_S: f64 = 40.0;
/// Highest rate kept: enough to draw at 25 mm/s.
const MAX_RATE_HZ: u32 = 250;

/// A ring buffer of one lead.
#[derive(Debug)]
pub(crate) struct StripBuffer {
    lead: Lead,
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
    /// A buffer for a stream sampled at `fs_hz`.
    pub(crate) fn new(lead: Lead, fs_hz: u32) -> Self {
        let decim = u64::from(fs_hz.div_ceil(MAX_RATE_HZ).max(1));
        let rate_hz = (fs_hz as u64 / decim) as u32;
        let cap = (KEEP_S * f64::from(rate_hz)) as usize;
        Self {
            lead,
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
        Some(Strip {
            lead: self.lead,
            sample_rate_hz: self.rate_hz,
            start_us: time_of(start * self.decim),
            samples_uv: self.buf.range(from..to).map(|&v| i32::from(v)).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimates_keeps_the_tail_and_maps_time() {
        // 500 Hz → 250 Hz; a ramp in mV.
        let mut b = StripBuffer::new(Lead::II, 500);
        let mv: Vec<f32> = (0..500 * 60).map(|i| (i % 1000) as f32 / 1000.0).collect();
        b.push(&mv);
        let s = b.strip(500 * 60, |n| n as i64 * 2000).expect("strip");
        assert_eq!(s.sample_rate_hz, 250);
        assert_eq!(s.samples_uv.len(), 2500, "10 s at 250 Hz");
        assert_eq!(s.start_us, (500 * 50) * 2000, "starts 10 s before the end");
        // Box average of samples 25000 and 25001: (0 + 0.001 mV) / 2 = 0.5 µV → 1 µV.
        assert_eq!(s.samples_uv[0], 1);
        // A strip ending 35 s back is clipped to the 40 s kept: its last 5 s remain.
        let old = b.strip(500 * 25, |n| n as i64).expect("strip");
        assert_eq!(old.samples_uv.len(), 1250);
        assert_eq!(old.start_us, 500 * 20);
        assert!(b.strip(500 * 15, |n| n as i64).is_none(), "older than kept");
    }

    #[test]
    fn low_rates_are_kept_as_they_are() {
        let mut b = StripBuffer::new(Lead::I, 128);
        b.push(&[1.0; 128 * 3]);
        let s = b.strip(128 * 3, |n| n as i64).expect("strip");
        assert_eq!(s.sample_rate_hz, 128);
        assert_eq!(s.samples_uv, vec![1000; 128 * 3]);
    }
}
