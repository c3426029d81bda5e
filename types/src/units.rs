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

    /// Duration of `n` samples in microseconds.
    pub fn samples_to_us(self, n: u64) -> i64 {
        // u128 keeps long streams exact; the result fits i64 for any realistic stream.
        i64::try_from(u128::from(n) * 1_000_000 / u128::from(self.0.max(1))).unwrap_or(i64::MAX)
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
        assert!((NanovoltsPerCount(5000).to_mv(200) - 1.0).abs() < 1e-6);
        assert_eq!(DeviceTimeUs(10).plus_us(5), DeviceTimeUs(15));
    }
}
