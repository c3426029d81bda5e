use ecg_types::Lead;

/// Why a [`DeviceConfig`](crate::DeviceConfig) cannot be simulated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// The sample rate is outside [`MIN_SAMPLE_RATE`](crate::MIN_SAMPLE_RATE)..=[`MAX_SAMPLE_RATE`](crate::MAX_SAMPLE_RATE).
    #[error("sample rate {0} Hz is outside {min}..={max} Hz", min = crate::MIN_SAMPLE_RATE, max = crate::MAX_SAMPLE_RATE)]
    SampleRate(u32),
    /// No leads were requested.
    #[error("no leads requested")]
    NoLeads,
    /// More than [`MAX_LEADS`](crate::MAX_LEADS) leads were requested.
    #[error("{0} leads requested, at most {max} are supported", max = crate::MAX_LEADS)]
    TooManyLeads(usize),
    /// A lead appears twice in the lead list.
    #[error("lead {0} is listed twice")]
    DuplicateLead(Lead),
    /// A rhythm schedule has no segments.
    #[error("rhythm schedule has no segments")]
    EmptySchedule,
    /// A rhythm segment's duration is not finite, not positive, too long, or shorter
    /// than one sample.
    #[error("rhythm segment {index} has an invalid duration of {seconds} s")]
    SegmentDuration {
        /// Index of the segment in the schedule.
        index: usize,
        /// The offending duration.
        seconds: f64,
    },
    /// A noise setting is negative, not finite or implausibly large.
    #[error("noise setting {field} = {value} is out of range")]
    Noise {
        /// The [`NoiseConfig`](crate::NoiseConfig) field.
        field: &'static str,
        /// The offending value.
        value: f64,
    },
    /// A lead-off interval is malformed.
    #[error("lead-off interval {index}: {reason}")]
    LeadOff {
        /// Index of the interval in `DeviceConfig::lead_off`.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The saturation rail is not a positive finite voltage.
    #[error("rail of {0} mV is not a positive finite voltage")]
    Rail(f32),
}
