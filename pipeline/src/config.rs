//! Settings of the stages.

use std::time::Duration;

use ecg_dsp::stream::DspConfig;
use serde::{Deserialize, Serialize};

/// Per-stream ordering, timing, warm-up and limits (`[pipeline.streams]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamSettings {
    /// Signal an analysis sees before its first window (s): filters settle and the
    /// QRS detector learns its thresholds. Also what a restart replays before the
    /// first unfinished window.
    pub warmup_s: f32,
    /// Frames that arrive ahead of a missing one wait until this much device time
    /// has piled up behind the gap (ms); then the missing frames are a signal gap.
    /// A new stream's first frames wait as long, so that a reordered start is sorted.
    pub reorder_horizon_ms: u32,
    /// ... and never longer than this much wall-clock time (ms), whatever their
    /// device times say: buffered frames hold back their partition's commits.
    pub reorder_wait_ms: u64,
    /// ... nor while they take more than this many bytes of samples: a stream past
    /// its budget stops waiting and the missing frames are a gap.
    pub max_reorder_bytes: usize,
    /// A frame whose device time is off the stream's sample count by more than this
    /// (ms) is a device-clock jump: the analysis restarts on the new clock. A frame
    /// ahead of the stream that far (plus 10 % of the distance) off the time its
    /// sequence number predicts is late or from the future: dead-lettered.
    pub clock_jump_ms: u32,
    /// A stream silent this long (s, wall clock) has its state dropped.
    pub idle_evict_s: f32,
    /// A stream silent this long (s, wall clock) no longer holds back its partition's
    /// committed offset for its unfinished window (it waits for frames that may never
    /// come). A model window it has cut and still holds keeps the hold until it is
    /// published: once the stream has been silent this long in its partition's live
    /// time (other streams' frames kept coming), or at eviction.
    pub commit_hold_s: f32,
    /// Most streams one pipeline instance holds; records of further new streams go to
    /// the dead-letter topic (`stream_limit`) until streams are evicted.
    pub max_streams: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            warmup_s: 5.0,
            reorder_horizon_ms: 2000,
            reorder_wait_ms: 10_000,
            max_reorder_bytes: 8 << 20,
            clock_jump_ms: 500,
            idle_evict_s: 300.0,
            commit_hold_s: 30.0,
            max_streams: 50_000,
        }
    }
}

impl StreamSettings {
    /// Checks every setting, naming the one at fault.
    ///
    /// # Errors
    /// A message naming the setting and its allowed range.
    pub fn validate(&self) -> Result<(), String> {
        let at = "pipeline.streams";
        if !(0.0..=120.0).contains(&self.warmup_s) {
            return Err(format!(
                "{at}.warmup_s {} is outside 0..=120",
                self.warmup_s
            ));
        }
        if self.reorder_horizon_ms > 600_000 {
            return Err(format!(
                "{at}.reorder_horizon_ms {} is above 600000",
                self.reorder_horizon_ms
            ));
        }
        if !(1..=3_600_000).contains(&self.reorder_wait_ms) {
            return Err(format!(
                "{at}.reorder_wait_ms {} is outside 1..=3600000",
                self.reorder_wait_ms
            ));
        }
        if self.max_reorder_bytes < 64 << 10 {
            return Err(format!(
                "{at}.max_reorder_bytes {} is below 65536",
                self.max_reorder_bytes
            ));
        }
        if self.clock_jump_ms == 0 {
            return Err(format!("{at}.clock_jump_ms must be above 0"));
        }
        if self.idle_evict_s.is_nan() || self.idle_evict_s < 1.0 {
            return Err(format!(
                "{at}.idle_evict_s {} is below 1",
                self.idle_evict_s
            ));
        }
        // A stream is evicted only after its reorder wait can have ended: else its
        // waiting frames would go with it.
        if self.reorder_wait_ms as f64 >= f64::from(self.idle_evict_s) * 1000.0 {
            return Err(format!(
                "{at}.reorder_wait_ms {} is not below idle_evict_s ({} s)",
                self.reorder_wait_ms, self.idle_evict_s
            ));
        }
        if !(self.commit_hold_s >= 1.0 && self.commit_hold_s <= self.idle_evict_s) {
            return Err(format!(
                "{at}.commit_hold_s {} is outside 1..=idle_evict_s ({})",
                self.commit_hold_s, self.idle_evict_s
            ));
        }
        if self.max_streams == 0 {
            return Err(format!("{at}.max_streams must be above 0"));
        }
        Ok(())
    }
}

/// How the scorer treats failing ONNX Runtime runs (`[pipeline.scorer]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScorerSettings {
    /// Most windows per ONNX Runtime run (configured as `pipeline.model_max_batch`).
    #[serde(skip)]
    pub max_batch: usize,
    /// First back-off after a transient failure (ms); it doubles per retry.
    pub retry_initial_ms: u64,
    /// Longest back-off between retries (ms).
    pub retry_max_ms: u64,
    /// Longest time one run is retried (s). Past it the pipeline stops with an error
    /// before the windows' offsets are committed, so a restart scores them again:
    /// a window is never given up on a transient fault.
    pub retry_budget_s: f32,
}

impl Default for ScorerSettings {
    fn default() -> Self {
        Self {
            max_batch: 64,
            retry_initial_ms: 10,
            retry_max_ms: 2_000,
            retry_budget_s: 60.0,
        }
    }
}

impl ScorerSettings {
    /// The back-off before retry `attempt` (1 for the first).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ms = self
            .retry_initial_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(20))
            .min(self.retry_max_ms);
        Duration::from_millis(ms)
    }
}

/// Settings of the pipeline deployable.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Kafka connection settings (bootstrap servers, security).
    pub connection: rdkafka::ClientConfig,
    /// Consumer group id.
    pub group_id: String,
    /// Topic of incoming frames.
    pub frames_topic: String,
    /// Topic of findings.
    pub findings_topic: String,
    /// Dead-letter topic for records that cannot be processed.
    pub dlq_topic: String,
    /// Most messages per batch (epoch).
    pub batch_max: usize,
    /// Longest wait to fill a batch.
    pub batch_wait: Duration,
    /// Batches that may wait in each queue between stages (and be in flight to the
    /// broker) before consumption pauses.
    pub channel_batches: usize,
    /// Threads the analyzer stage's streams are split over (by a hash of the stream
    /// id); one is a single analyzer thread.
    pub analyzer_threads: usize,
    /// DSP settings.
    pub dsp: DspConfig,
    /// Seconds between model windows of one stream (models without their own hop).
    pub model_hop_s: f32,
    /// Sequencing, warm-up, eviction and limits.
    pub streams: StreamSettings,
    /// Batching and retries of model scoring.
    pub scorer: ScorerSettings,
    /// Evidence and hysteresis of AF episodes.
    pub af_episodes: crate::episodes::EpisodeSettings,
}

impl PipelineConfig {
    /// Defaults for a given cluster connection.
    pub fn new(connection: rdkafka::ClientConfig) -> Self {
        Self {
            connection,
            group_id: "cardiostream-pipeline".into(),
            frames_topic: "ecg.frames.v1".into(),
            findings_topic: "ecg.findings.v1".into(),
            dlq_topic: "ecg.frames.dlq".into(),
            batch_max: 512,
            batch_wait: Duration::from_millis(20),
            channel_batches: 16,
            analyzer_threads: 1,
            dsp: DspConfig::default(),
            model_hop_s: 10.0,
            streams: StreamSettings::default(),
            scorer: ScorerSettings::default(),
            af_episodes: crate::episodes::EpisodeSettings::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_setting() {
        assert_eq!(StreamSettings::default().validate(), Ok(()));
        let bad = StreamSettings {
            commit_hold_s: 500.0,
            ..StreamSettings::default()
        };
        let e = bad.validate().unwrap_err();
        assert!(e.contains("pipeline.streams.commit_hold_s"), "{e}");
        let bad = StreamSettings {
            max_streams: 0,
            ..StreamSettings::default()
        };
        assert!(bad.validate().unwrap_err().contains("max_streams"));
        let bad = StreamSettings {
            idle_evict_s: 10.0,
            commit_hold_s: 5.0,
            ..StreamSettings::default()
        };
        assert!(bad.validate().unwrap_err().contains("reorder_wait_ms"));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let s = ScorerSettings::default();
        assert_eq!(s.backoff(1), Duration::from_millis(10));
        assert_eq!(s.backoff(2), Duration::from_millis(20));
        assert_eq!(s.backoff(8), Duration::from_millis(1280));
        assert_eq!(s.backoff(9), Duration::from_millis(2000));
        assert_eq!(s.backoff(60), Duration::from_millis(2000));
    }
}
