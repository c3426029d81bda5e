//! The analyzer stage on several threads: streams split over analyzers by a hash of
//! their id, each epoch's frames analysed by every shard at once.
//!
//! A stream's state lives in one shard for the life of the process, and its frames
//! reach that shard in the order the sequencer put them in, so each stream's findings,
//! model inputs and held offsets are exactly those of a single analyzer; only the
//! interleaving of different streams' outputs within an epoch differs. Where the
//! analysis (the DSP and the lethal-arrhythmia detector on the stream's leads) is the
//! process's bottleneck, `analyzer_threads` lets one pipeline use more than one core
//! for it. The shards run as scoped threads per epoch: the calling thread takes the
//! first shard, so one shard runs as a single analyzer does.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use ecg_dsp::stream::DspConfig;
use ecg_inference::Model;
use ecg_types::{SequencedFrame, StreamId};

use crate::analyzer::{Analyzed, Analyzer};
use crate::commit::Checkpoint;
use crate::config::StreamSettings;
use crate::events::Sink;

/// Analyzers over disjoint sets of streams.
#[derive(Debug)]
pub struct Shards {
    shards: Vec<Analyzer>,
}

impl Shards {
    /// `threads` analyzers (at least one) with these settings.
    pub fn new(
        threads: usize,
        dsp: &DspConfig,
        model_hop_s: f32,
        models: &Arc<Vec<Model>>,
        settings: &StreamSettings,
        telemetry: &Sink,
    ) -> Self {
        let shards = (0..threads.max(1))
            .map(|_| {
                Analyzer::new(
                    dsp.clone(),
                    model_hop_s,
                    models.clone(),
                    settings.clone(),
                    telemetry.clone(),
                )
            })
            .collect();
        Self { shards }
    }

    /// How many analyzers.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Always false: there is at least one analyzer.
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// Streams with state, over every shard.
    pub fn streams(&self) -> usize {
        self.shards.iter().map(Analyzer::streams).sum()
    }

    /// Drops the state of streams on these partitions (revoked or lost).
    pub fn drop_partitions(&mut self, partitions: &[i32]) {
        for a in &mut self.shards {
            a.drop_partitions(partitions);
        }
    }

    /// Drops the state of streams the sequencer evicted; the waveform windows they
    /// still held come out first ([`Analyzer::drop_streams`]).
    pub fn drop_streams(&mut self, streams: &[StreamId]) -> Analyzed {
        let mut out = Analyzed::default();
        if streams.is_empty() {
            return out;
        }
        let mut parts: Vec<Vec<StreamId>> = self.shards.iter().map(|_| Vec::new()).collect();
        for s in streams {
            parts[self.shard_of(s)].push(s.clone());
        }
        for (a, part) in self.shards.iter_mut().zip(parts) {
            if !part.is_empty() {
                out.append(a.drop_streams(&part));
            }
        }
        out
    }

    /// The shard that holds `stream`.
    fn shard_of(&self, stream: &StreamId) -> usize {
        let mut h = DefaultHasher::new();
        stream.as_str().hash(&mut h);
        (h.finish() % self.shards.len() as u64) as usize
    }

    /// Analyses one epoch's frames, each shard its own streams' on a thread of its
    /// own (the first on the calling thread); adds what every shard still holds to
    /// `checkpoint`.
    ///
    /// # Panics
    /// When a shard's thread cannot be started or panicked (as the single analyzer
    /// would have panicked on the calling thread).
    #[allow(clippy::expect_used)]
    pub fn process(
        &mut self,
        frames: Vec<SequencedFrame>,
        checkpoint: &mut Checkpoint,
    ) -> Analyzed {
        if self.shards.len() == 1 {
            return self.shards[0].process(frames, checkpoint);
        }
        let mut parts: Vec<Vec<SequencedFrame>> = self.shards.iter().map(|_| Vec::new()).collect();
        for f in frames {
            let i = self.shard_of(&f.frame.stream);
            parts[i].push(f);
        }
        let epoch = checkpoint.epoch;
        let results: Vec<(Analyzed, Checkpoint)> = std::thread::scope(|s| {
            let mut work = self.shards.iter_mut().zip(parts);
            let first = work.next();
            let others: Vec<_> = work
                .enumerate()
                .map(|(i, (a, frames))| {
                    std::thread::Builder::new()
                        .name(format!("cardiostream-analyzer-{}", i + 1))
                        .spawn_scoped(s, move || {
                            let mut cp = Checkpoint::new(epoch);
                            let out = a.process(frames, &mut cp);
                            (out, cp)
                        })
                        .expect("starting an analyzer shard thread")
                })
                .collect();
            let mut results = Vec::with_capacity(others.len() + 1);
            if let Some((a, frames)) = first {
                let mut cp = Checkpoint::new(epoch);
                let out = a.process(frames, &mut cp);
                results.push((out, cp));
            }
            for h in others {
                results.push(h.join().expect("an analyzer shard panicked"));
            }
            results
        });
        let mut out = Analyzed::default();
        for (part, cp) in results {
            out.append(part);
            checkpoint.hold_all(cp);
        }
        out
    }
}
