use serde::{Deserialize, Serialize};

/// Sampling rate of a stream, in hertz (whole samples per second).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SampleRate(pub u32);

impl SampleRate {
    /// Lowest rate the pipeline accepts (Hz).
    pub const MIN: u32 = 50;
    /// Highest rate the pipeline accepts (Hz).
    pub const MAX: u32 = 16_000;

    /// The rate in hertz as a float, for filter design.
    pub fn hz(self) -> f64 {
        f64::from(self.0)
    }

    /// Duration of `n` samples in microseconds, rounded to the nearest microsecond.
    pub fn samples_to_us(self, n: u64) -> i64 {
        // u128 keeps long streams exact; the result fits i64 for any realistic stream.
        let rate = u128::from(self.0.max(1));
        i64::try_from((u128::from(n) * 1_000_000 + rate / 2) / rate).unwrap_or(i64::MAX)
    }

    /// Samples in `us` microseconds (negative: 0), rounded to the nearest sample.
    pub fn us_to_samples(self, us: i64) -> u64 {
        let us = u128::try_from(us).unwrap_or(0);
        u64::try_from((us * u128::from(self.0) + 500_000) / 1_000_000).unwrap_or(u64::MAX)
    }
}

/// Microseconds in `seconds`, rounded: the one conversion of configured durations.
pub fn seconds_to_us(seconds: f64) -> i64 {
    (seconds * 1e6).round() as i64
}

/// A stream's sample clock: the device time of its sample 0 and its rate. The one
/// conversion between sample indices and device time, rounding to the nearest
/// microsecond or sample in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timebase {
    /// Device time of sample 0.
    pub origin: DeviceTimeUs,
    /// Samples per second.
    pub rate: SampleRate,
}

impl Timebase {
    /// The clock whose sample 0 is at `origin`.
    pub fn new(origin: DeviceTimeUs, rate: SampleRate) -> Self {
        Self { origin, rate }
    }

    /// Device time (µs) of sample `n`.
    pub fn time_of(&self, n: u64) -> i64 {
        self.origin.0.saturating_add(self.rate.samples_to_us(n))
    }

    /// The sample nearest to device time `t_us` (0 for times before sample 0).
    pub fn sample_at(&self, t_us: i64) -> u64 {
        self.rate.us_to_samples(t_us.saturating_sub(self.origin.0))
    }
}

/// Amplitude resolution of integer samples: nanovolts per count (1 µV/count = 1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NanovoltsPerCount(pub u32);

impl NanovoltsPerCount {
    /// Converts a count to millivolts.
    pub fn to_mv(self, count: i32) -> f32 {
        (f64::from(count) * f64::from(self.0) * 1e-6) as f32
    }
}

/// Device clock time: microseconds since the Unix epoch, as the device reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeviceTimeUs(pub i64);

impl DeviceTimeUs {
    /// This time shifted by `us` microseconds.
    pub fn plus_us(self, us: i64) -> Self {
        Self(self.0.saturating_add(us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(SampleRate(250).samples_to_us(250), 1_000_000);
        assert_eq!(SampleRate(360).samples_to_us(36), 100_000);
        // One sample at 360 Hz is 2777.8 µs: rounded, not truncated.
        assert_eq!(SampleRate(360).samples_to_us(1), 2778);
        assert_eq!(SampleRate(360).us_to_samples(2777), 1);
        assert_eq!(SampleRate(360).us_to_samples(1388), 0);
        assert_eq!(SampleRate(360).us_to_samples(-5), 0);
        let tb = Timebase::new(DeviceTimeUs(1_000), SampleRate(250));
        assert_eq!(tb.time_of(250), 1_001_000);
        assert_eq!(tb.sample_at(1_001_000), 250);
        assert_eq!(
            tb.sample_at(1_002_001),
            250,
            "2 µs short of the next sample"
        );
        assert_eq!(tb.sample_at(0), 0);
        for n in [0u64, 1, 7, 359, 1_000_003] {
            let tb = Timebase::new(DeviceTimeUs(-77), SampleRate(360));
            assert_eq!(tb.sample_at(tb.time_of(n)), n, "round trip of sample {n}");
        }
        assert_eq!(seconds_to_us(0.1), 100_000);
        assert!((NanovoltsPerCount(5000).to_mv(200) - 1.0).abs() < 1e-6);
        assert_eq!(DeviceTimeUs(10).plus_us(5), DeviceTimeUs(15));
    }
}
