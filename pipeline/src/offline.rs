//! The stages composed on the calling thread, without Kafka: sequencer → analyzer →
//! scorer, one epoch per call. Tests, benchmarks and `cardiostream eval` run records
//! through exactly the per-stream code the pipeline runs this way; the deployable
//! runs the same stages on threads of their own ([`crate::run`]).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ecg_dsp::stream::DspConfig;
use ecg_inference::Model;
use ecg_ingest::codec::{self, Encoding, CONTENT_TYPE_PROTOBUF};
use ecg_types::{DeadLetter, Finding, Frame, Position, SourceRecord, StreamId};

use crate::analyzer::{Analyzer, StreamStatus};
use crate::commit::Checkpoint;
use crate::config::{ScorerSettings, StreamSettings};
use crate::episodes::EpisodeSettings;
use crate::events::Sink;
use crate::scorer::{ScoreError, Scorer};
use crate::sequencer::Sequencer;

/// What one epoch produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Findings to publish: continuity, rhythm, then model findings.
    pub findings: Vec<Finding>,
    /// Per finding (same order), when its window closed, µs since the epoch.
    pub closed_us: Vec<i64>,
    /// Records to dead-letter.
    pub dead_letters: Vec<DeadLetter>,
    /// Updated stream statuses.
    pub statuses: Vec<StreamStatus>,
    /// Per partition, the next offset that is safe to commit once the findings and
    /// dead letters above are published.
    pub offsets: Vec<(i32, i64)>,
}

/// A frame as a gateway following the wire format sends it (protobuf, keyed by its
/// stream id), read at `offset` of partition 0 of a topic named `frames`: what tests
/// and `eval` feed [`Processor::process`] when they replay signals.
pub fn frame_record(f: &Frame, offset: i64) -> SourceRecord {
    SourceRecord {
        payload: codec::encode(f, Encoding::Protobuf),
        key: Some(f.stream.as_str().as_bytes().to_vec()),
        content_type: Some(CONTENT_TYPE_PROTOBUF.into()),
        topic: "frames".into(),
        position: Position {
            partition: 0,
            offset,
        },
        timestamp_us: None,
    }
}

/// Now, µs since the Unix epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// The offline scorer: the pipeline's, with its default episode settings and the RR
/// rule of the DSP configuration the analyzer runs (one rule for the rhythm calls
/// and the AF episodes).
fn offline_scorer(
    models: &Arc<Vec<Model>>,
    settings: &ScorerSettings,
    dsp: &DspConfig,
    telemetry: &Sink,
) -> Scorer {
    Scorer::new(
        models,
        settings.clone(),
        &EpisodeSettings::default(),
        &dsp.af,
        telemetry.clone(),
    )
}

/// Sequencer, analyzer and scorer on one thread.
#[derive(Debug)]
pub struct Processor {
    sequencer: Sequencer,
    analyzer: Analyzer,
    scorer: Scorer,
    epoch: u64,
    dsp: DspConfig,
    model_hop_s: f32,
    models: Arc<Vec<Model>>,
    scorer_settings: ScorerSettings,
    telemetry: Sink,
}

impl Processor {
    /// The stages with default stream and scorer settings.
    pub fn new(dsp: DspConfig, model_hop_s: f32, models: Arc<Vec<Model>>, telemetry: Sink) -> Self {
        Self::with_settings(
            dsp,
            model_hop_s,
            models,
            StreamSettings::default(),
            ScorerSettings::default(),
            telemetry,
        )
    }

    /// The stages with these settings.
    pub fn with_settings(
        dsp: DspConfig,
        model_hop_s: f32,
        models: Arc<Vec<Model>>,
        streams: StreamSettings,
        scorer: ScorerSettings,
        telemetry: Sink,
    ) -> Self {
        Self {
            sequencer: Sequencer::new(streams.clone(), telemetry.clone()),
            scorer: offline_scorer(&models, &scorer, &dsp, &telemetry),
            analyzer: Analyzer::new(
                dsp.clone(),
                model_hop_s,
                models.clone(),
                streams,
                telemetry.clone(),
            ),
            epoch: 0,
            dsp,
            model_hop_s,
            models,
            scorer_settings: scorer,
            telemetry,
        }
    }

    /// The same (with no state yet), with these stream settings.
    #[must_use]
    pub fn with_stream_settings(self, streams: StreamSettings) -> Self {
        Self::with_settings(
            self.dsp,
            self.model_hop_s,
            self.models,
            streams,
            self.scorer_settings,
            self.telemetry,
        )
    }

    /// The same (with no state yet), with at most `max_batch` windows per ONNX
    /// Runtime run.
    #[must_use]
    pub fn with_max_batch(mut self, max_batch: usize) -> Self {
        self.scorer_settings.max_batch = max_batch.max(1);
        self.scorer = offline_scorer(
            &self.models,
            &self.scorer_settings,
            &self.dsp,
            &self.telemetry,
        );
        self
    }

    /// Streams with state.
    pub fn streams(&self) -> usize {
        self.analyzer.streams().max(self.sequencer.streams())
    }

    /// Where model `model`'s open AF episodes would end if their streams stopped now
    /// ([`Scorer::af_episodes_at_stop`]).
    pub fn af_episodes_at_stop(&self, model: usize) -> Vec<(StreamId, i64, Option<i64>)> {
        self.scorer.af_episodes_at_stop(model)
    }

    /// Streams with AF episode state in the scorer ([`Scorer::episode_streams`]).
    pub fn episode_streams(&self) -> usize {
        self.scorer.episode_streams()
    }

    /// Drops the state of streams on these partitions (revoked or lost).
    pub fn drop_partitions(&mut self, partitions: &[i32]) {
        self.sequencer.drop_partitions(partitions);
        self.analyzer.drop_partitions(partitions);
    }

    /// Every model window the streams still hold, scored: what the pipeline emits
    /// for a stream it evicts ([`Analyzer::release_held`]).
    /// A replayed record's stream stops at its end.
    ///
    /// # Errors
    /// [`ScoreError`] when scoring fails on a transient fault past its retry budget.
    pub fn release_held(&mut self) -> Result<Output, ScoreError> {
        let analyzed = self.analyzer.release_held();
        let scored = self.scorer.score(analyzed.inputs)?;
        Ok(Output {
            findings: scored.findings,
            closed_us: scored.closed_us,
            ..Output::default()
        })
    }

    /// Runs one epoch of records through the stages.
    ///
    /// # Panics
    /// When scoring fails on a transient fault past its retry budget (the deployable
    /// stops instead; see [`Processor::try_process`]).
    #[allow(clippy::expect_used)]
    pub fn process(&mut self, records: Vec<SourceRecord>) -> Output {
        self.try_process(records)
            .expect("scoring failed past its retry budget")
    }

    /// Runs one epoch of records through the stages.
    ///
    /// # Errors
    /// [`ScoreError`] when scoring fails on a transient fault past its retry budget.
    pub fn try_process(&mut self, records: Vec<SourceRecord>) -> Result<Output, ScoreError> {
        let mut cp = Checkpoint::new(self.epoch);
        self.epoch += 1;
        let seq = self.sequencer.process(records, now_us, &mut cp);
        let mut analyzed = self.analyzer.drop_streams(&seq.evicted);
        analyzed.append(self.analyzer.process(seq.frames, &mut cp));
        let scored = self.scorer.score_epoch(analyzed.inputs, &seq.evicted)?;
        let mut out = Output {
            dead_letters: seq.dead_letters,
            statuses: analyzed.statuses,
            offsets: cp.safe_offsets(),
            ..Output::default()
        };
        out.findings = seq.findings;
        out.closed_us = seq.closed_us;
        out.findings.extend(analyzed.findings);
        out.closed_us.extend(analyzed.closed_us);
        out.findings.extend(scored.findings);
        out.closed_us.extend(scored.closed_us);
        Ok(out)
    }
}
