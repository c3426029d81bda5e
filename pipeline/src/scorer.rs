//! The scorer: model inputs in, model findings out, on a thread of its own.
//!
//! Inputs are scored per model in runs of at most `max_batch` windows (windows of
//! every stream in the epoch together: the batch wait is the batching wait). Faults
//! are classified by their retry hint ([`ecg_inference::Retry`]):
//!
//! - a **transient** ONNX Runtime failure is retried after a back-off that doubles up
//!   to `retry_max_ms`, for at most `retry_budget_s`; past that the scorer fails
//!   ([`ScoreError`]) and the pipeline stops before the epoch's offsets are stored,
//!   so a restart scores the windows again — a window is never given up on a
//!   transient fault;
//! - a **permanent** failure of a run is narrowed down to the windows at fault by
//!   scoring them one at a time: those that still fail become `indeterminate`
//!   findings with the reason, the others are scored. One bad window never fails its
//!   batch. A window that does not fit the model is rejected before the run
//!   ([`ecg_inference::Scored::Rejected`]).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use ecg_inference::{Model, ModelError, Retry, Scored};
use ecg_types::{Condition, Finding, FindingStatus, ModelInput, StreamId};

use ecg_dsp::IrregularityThresholds;

use crate::episodes::{AfEpisodes, EpisodeSettings};

use crate::analyzer::Scoring;
use crate::config::ScorerSettings;
use crate::events::{Event, ScoreOutcome, Sink};

/// What scores one model's inputs: an ONNX Runtime model, or (in tests) a wrapper
/// that injects faults around one.
pub trait Runner: Send + Sync + std::fmt::Debug {
    /// The model id (a metric label).
    fn id(&self) -> &str;
    /// Scores a batch in one run.
    ///
    /// # Errors
    /// When the run fails; [`ModelError::retry`] says whether to try again.
    fn run(&self, inputs: &[&ModelInput]) -> Result<Vec<Scored>, ModelError>;
    /// The findings one scored input yields.
    fn findings(&self, input: &ModelInput, scored: &Scored) -> Vec<Finding>;
    /// The index of the model's noise class (`~`) among its output labels, if it has
    /// one.
    fn noise_label(&self) -> Option<usize> {
        None
    }
    /// [`Self::run`], but the windows that failed the quality gate are scored too
    /// ([`Model::score_gated`]); by default they are not.
    ///
    /// # Errors
    /// As [`Self::run`].
    fn run_behind_gate(&self, inputs: &[&ModelInput]) -> Result<Vec<Scored>, ModelError> {
        self.run(inputs)
    }
}

impl Runner for Model {
    fn id(&self) -> &str {
        &self.manifest().id
    }

    fn run(&self, inputs: &[&ModelInput]) -> Result<Vec<Scored>, ModelError> {
        self.score(inputs)
    }

    fn findings(&self, input: &ModelInput, scored: &Scored) -> Vec<Finding> {
        Model::findings(self, input, scored)
    }

    fn noise_label(&self) -> Option<usize> {
        self.manifest().label_index("~")
    }

    fn run_behind_gate(&self, inputs: &[&ModelInput]) -> Result<Vec<Scored>, ModelError> {
        self.score_gated(inputs, false)
    }
}

/// The model's call on a window the gate failed, unless its top class is the model's
/// noise class (`noise`): no call then, nor for a window it could not score.
fn call_behind_gate(scored: Scored, noise: usize) -> Option<Scored> {
    let Scored::Probabilities(p) = &scored else {
        return None;
    };
    let top = p
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i);
    (top != Some(noise)).then_some(scored)
}

/// The scorer gave up on a transient fault that outlasted its retry budget.
#[derive(Debug, thiserror::Error)]
#[error("model {model} kept failing for {seconds:.1} s ({attempts} attempts): {last}")]
pub struct ScoreError {
    /// Model id.
    pub model: String,
    /// Seconds spent retrying.
    pub seconds: f64,
    /// Runs tried.
    pub attempts: u32,
    /// The last failure (in the message, so not also a `source` that a report of
    /// the error's chain would print again).
    pub last: ModelError,
}

/// What the scorer made of one epoch's inputs.
#[derive(Debug, Default)]
pub struct ScoredBatch {
    /// Model findings.
    pub findings: Vec<Finding>,
    /// Per finding, when its window closed (µs since the epoch).
    pub closed_us: Vec<i64>,
}

/// The scorer stage; see the module documentation.
#[derive(Debug)]
pub struct Scorer {
    runners: Vec<Arc<dyn Runner>>,
    settings: ScorerSettings,
    telemetry: Sink,
    /// Per model that raises AF findings (active or shadow), its episode trackers.
    episodes: Vec<Option<Mutex<AfEpisodes>>>,
}

impl Scorer {
    /// A scorer of `models` (in the analyzer's order), tracking AF episodes with
    /// `episodes` and the DSP stage's RR rule `rr_rule` (`DspConfig::af`): see
    /// [`Self::with_episodes`].
    pub fn new(
        models: &Arc<Vec<Model>>,
        settings: ScorerSettings,
        episodes: &EpisodeSettings,
        rr_rule: &IrregularityThresholds,
        telemetry: Sink,
    ) -> Self {
        let runners = (0..models.len())
            .map(|i| Arc::new(ModelAt(models.clone(), i)) as Arc<dyn Runner>)
            .collect();
        Self::with_runners(runners, settings, telemetry).with_episodes(models, episodes, rr_rule)
    }

    /// This scorer tracking AF episodes ([`crate::episodes`]) with these settings on
    /// every model that raises AF findings: shadow models too, so that their findings
    /// are what they would publish if active and `model compare` sets like against
    /// like. `rr_rule` is the DSP stage's RR rule (`DspConfig::af`).
    #[must_use]
    pub fn with_episodes(
        mut self,
        models: &[Model],
        settings: &EpisodeSettings,
        rr_rule: &IrregularityThresholds,
    ) -> Self {
        self.episodes = models
            .iter()
            .map(|m| {
                let man = m.manifest();
                man.raises(Condition::AtrialFibrillation).then(|| {
                    let hop_s = man.hop_s.unwrap_or(man.window_s);
                    Mutex::new(AfEpisodes::new(
                        settings.clone(),
                        *rr_rule,
                        ecg_types::seconds_to_us(f64::from(hop_s)),
                    ))
                })
            })
            .collect();
        self
    }

    /// Scores one epoch's inputs ([`Scorer::score`]), then forgets the AF episode
    /// state of the streams the sequencer evicted in it: their last held windows are
    /// among the inputs, and their findings still belong to the episode.
    ///
    /// # Errors
    /// [`ScoreError`] when a transient fault outlasts the retry budget (nothing is
    /// forgotten then: the epoch is scored again after a restart).
    pub fn score_epoch(
        &self,
        items: Vec<Scoring>,
        evicted: &[StreamId],
    ) -> Result<ScoredBatch, ScoreError> {
        let scored = self.score(items)?;
        self.forget(evicted);
        Ok(scored)
    }

    /// Forgets the episode state of streams the sequencer evicted.
    fn forget(&self, streams: &[StreamId]) {
        for t in self.episodes.iter().flatten() {
            let mut t = t.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for s in streams {
                t.forget(s);
            }
        }
    }

    /// Streams with AF episode state, summed over the models that track episodes.
    pub fn episode_streams(&self) -> usize {
        self.episodes
            .iter()
            .flatten()
            .map(|t| {
                t.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .streams()
            })
            .sum()
    }

    /// Where model `model`'s open AF episodes would end if their streams stopped now
    /// ([`AfEpisodes::at_stop`]): stream, start, `Some(end)` or `None` (through the
    /// stream's end). Empty for a model that tracks no episodes.
    pub fn af_episodes_at_stop(&self, model: usize) -> Vec<(StreamId, i64, Option<i64>)> {
        self.episodes
            .get(model)
            .and_then(Option::as_ref)
            .map(|t| {
                t.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .at_stop()
                    .map(|(s, start, end)| (s.clone(), start, end))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A scorer of these runners (index = [`Scoring::model`]).
    pub fn with_runners(
        runners: Vec<Arc<dyn Runner>>,
        settings: ScorerSettings,
        telemetry: Sink,
    ) -> Self {
        let episodes = runners.iter().map(|_| None).collect();
        Self {
            runners,
            settings,
            telemetry,
            episodes,
        }
    }

    /// Scores one epoch's inputs, model by model, in runs of at most `max_batch`.
    ///
    /// # Errors
    /// [`ScoreError`] when a transient fault outlasts the retry budget.
    pub fn score(&self, items: Vec<Scoring>) -> Result<ScoredBatch, ScoreError> {
        let mut out = ScoredBatch::default();
        let batch = self.settings.max_batch.max(1);
        for (m, runner) in self.runners.iter().enumerate() {
            let mine: Vec<&Scoring> = items.iter().filter(|s| s.model == m).collect();
            for chunk in mine.chunks(batch) {
                let inputs: Vec<&ModelInput> = chunk.iter().map(|s| &s.input).collect();
                let mut episodes = self
                    .episodes
                    .get(m)
                    .and_then(Option::as_ref)
                    .map(|t| t.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
                // For the episode tracker only (`EpisodeSettings::gated_windows`), the
                // windows the gate failed are scored in the same run, as if they had
                // passed; they are published indeterminate, and a call whose top class
                // is the model's noise class counts as no call.
                let noise = runner
                    .noise_label()
                    .filter(|_| episodes.as_ref().is_some_and(|t| t.reads_gated_windows()));
                let ran = self.run_chunk(runner.as_ref(), &inputs, noise.is_none())?;
                let (scored, calls): (Vec<Scored>, Vec<Option<Scored>>) = ran
                    .into_iter()
                    .zip(&inputs)
                    .map(|(s, w)| match noise {
                        Some(k) if !w.quality_ok => (Scored::Indeterminate, call_behind_gate(s, k)),
                        _ => (s, None),
                    })
                    .unzip();
                self.count(runner.id(), &scored);
                for ((item, s), call) in chunk.iter().zip(&scored).zip(&calls) {
                    let calls = call.as_ref().map(|c| runner.findings(&item.input, c));
                    for (i, mut f) in runner.findings(&item.input, s).into_iter().enumerate() {
                        if let Some(t) = episodes.as_mut() {
                            match calls.as_ref().and_then(|c| c.get(i)) {
                                Some(c) => {
                                    // The published finding stays indeterminate; it
                                    // carries the end of an episode the call closed.
                                    let mut c = c.clone();
                                    t.apply_gated(
                                        &mut c,
                                        &item.input.rr_s,
                                        &item.input.beats_s,
                                        &item.input.wide_pvc,
                                    );
                                    f.episode_end = c.episode_end;
                                }
                                None => {
                                    t.apply_beats(
                                        &mut f,
                                        &item.input.rr_s,
                                        &item.input.beats_s,
                                        &item.input.wide_pvc,
                                    );
                                }
                            }
                        }
                        if f.status == FindingStatus::Present {
                            f.strip.clone_from(&item.strip);
                        }
                        out.findings.push(f);
                        out.closed_us.push(item.closed_us);
                    }
                }
            }
        }
        Ok(out)
    }

    fn count(&self, model: &str, scored: &[Scored]) {
        let mut n = [0usize; 3];
        for s in scored {
            n[match s {
                Scored::Probabilities(_) => 0,
                Scored::Indeterminate => 1,
                Scored::Rejected(_) => 2,
            }] += 1;
        }
        for (outcome, count) in ScoreOutcome::ALL.into_iter().zip(n) {
            if count > 0 {
                self.telemetry.emit(&Event::WindowsScored {
                    model,
                    outcome,
                    count,
                });
            }
        }
    }

    /// One run with retries; a permanent failure narrowed down window by window. With
    /// `gate` false the windows that failed the quality gate are scored too
    /// ([`Runner::run_behind_gate`]).
    fn run_chunk(
        &self,
        runner: &dyn Runner,
        inputs: &[&ModelInput],
        gate: bool,
    ) -> Result<Vec<Scored>, ScoreError> {
        match self.run_retrying(runner, inputs, gate)? {
            Ok(scored) => Ok(scored),
            Err(e) if inputs.len() == 1 => {
                tracing::warn!(model = runner.id(), error = %e, "window failed permanently");
                Ok(vec![Scored::Rejected(e.to_string())])
            }
            Err(e) => {
                tracing::warn!(model = runner.id(), error = %e, windows = inputs.len(), "run failed permanently; scoring its windows one by one");
                inputs
                    .iter()
                    .map(|w| {
                        Ok(match self.run_retrying(runner, &[*w], gate)? {
                            Ok(mut s) if s.len() == 1 => s.remove(0),
                            Ok(s) => Scored::Rejected(format!(
                                "model returned {} results for one window",
                                s.len()
                            )),
                            Err(e) => Scored::Rejected(e.to_string()),
                        })
                    })
                    .collect()
            }
        }
    }

    /// Runs until success, a permanent failure (returned inside `Ok`), or a transient
    /// fault that outlasts the budget (`Err`).
    fn run_retrying(
        &self,
        runner: &dyn Runner,
        inputs: &[&ModelInput],
        gate: bool,
    ) -> Result<Result<Vec<Scored>, ModelError>, ScoreError> {
        let started = Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let t = Instant::now();
            let run = if gate {
                runner.run(inputs)
            } else {
                runner.run_behind_gate(inputs)
            };
            match run {
                Ok(scored) => {
                    let windows = scored
                        .iter()
                        .filter(|s| matches!(s, Scored::Probabilities(_)))
                        .count();
                    self.telemetry.emit(&Event::ModelRun {
                        model: runner.id(),
                        windows,
                        seconds: t.elapsed().as_secs_f64(),
                    });
                    return Ok(Ok(scored));
                }
                Err(e) if e.retry() == Retry::Transient => {
                    let spent = started.elapsed();
                    if spent.as_secs_f32() >= self.settings.retry_budget_s {
                        return Err(ScoreError {
                            model: runner.id().to_owned(),
                            seconds: spent.as_secs_f64(),
                            attempts,
                            last: e,
                        });
                    }
                    self.telemetry
                        .emit(&Event::ScoreRetry { model: runner.id() });
                    tracing::warn!(model = runner.id(), attempt = attempts, error = %e, "transient scoring failure; retrying");
                    std::thread::sleep(self.settings.backoff(attempts));
                }
                Err(e) => return Ok(Err(e)),
            }
        }
    }
}

/// Model `i` of a shared list, as a [`Runner`].
#[derive(Debug)]
struct ModelAt(Arc<Vec<Model>>, usize);

impl Runner for ModelAt {
    fn id(&self) -> &str {
        self.0[self.1].id()
    }

    fn run(&self, inputs: &[&ModelInput]) -> Result<Vec<Scored>, ModelError> {
        self.0[self.1].score(inputs)
    }

    fn findings(&self, input: &ModelInput, scored: &Scored) -> Vec<Finding> {
        self.0[self.1].findings(input, scored)
    }

    fn noise_label(&self) -> Option<usize> {
        Runner::noise_label(&self.0[self.1])
    }

    fn run_behind_gate(&self, inputs: &[&ModelInput]) -> Result<Vec<Scored>, ModelError> {
        self.0[self.1].score_gated(inputs, false)
    }
}
