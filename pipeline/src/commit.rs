//! Which offsets are safe to commit: checkpoints that travel with the work, and a
//! tracker that commits them in order once everything they cover is published.
//!
//! The source numbers its batches (epochs). Each epoch's [`Checkpoint`] travels
//! in-band with the epoch's work through the stages; every stateful stage adds what
//! it still holds when the epoch leaves it — the sequencer the frames waiting in
//! reorder buffers, the analyzer the frames a rebuild of its unfinished windows
//! would need — as the lowest offset per partition it needs ([`Checkpoint::hold`]).
//! An epoch's work reaches the publisher in parts (the analyzer's findings and dead
//! letters directly, the scorer's findings later); the [`CommitTracker`] stores an
//! epoch's offsets once every part of it and of every earlier epoch has been
//! acknowledged by the broker. This is Arroyo's checkpoint-barrier scheme, reduced
//! to one in-order stream of epochs: a replay from a committed offset re-emits at
//! most work already published (under the same idempotency keys) and loses none.

use std::collections::{BTreeMap, HashMap};

/// A stage that may hold back commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Holder {
    /// Frames waiting in reorder buffers.
    Sequencer,
    /// Frames a rebuild of unfinished windows needs.
    Analyzer,
}

/// What an epoch may commit once all of it is published.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    /// The epoch (the source's batch number).
    pub epoch: u64,
    /// Per partition read up to this epoch, one past the highest offset read.
    pub high: BTreeMap<i32, i64>,
    /// Per holder, per partition, the lowest offset it still needs.
    pub holds: BTreeMap<Holder, BTreeMap<i32, i64>>,
    /// Partitions revoked (or lost) at this epoch: their state is gone and nothing
    /// more of them may be stored.
    pub revoked: Vec<i32>,
}

impl Checkpoint {
    /// A checkpoint for `epoch`.
    pub fn new(epoch: u64) -> Self {
        Self {
            epoch,
            ..Self::default()
        }
    }

    /// Records that `holder` still needs `offset` of `partition` (the lowest such
    /// offset is kept).
    pub fn hold(&mut self, holder: Holder, partition: i32, offset: i64) {
        let o = self
            .holds
            .entry(holder)
            .or_default()
            .entry(partition)
            .or_insert(offset);
        *o = (*o).min(offset);
    }

    /// Takes every hold of `part`, the checkpoint of another part of this epoch's
    /// work (an analyzer shard's): the lowest offset per holder and partition is kept.
    pub fn hold_all(&mut self, part: Checkpoint) {
        for (holder, held) in part.holds {
            for (partition, offset) in held {
                self.hold(holder, partition, offset);
            }
        }
    }

    /// Per partition read, the next offset safe to commit: one past the highest read,
    /// unless a holder needs an earlier one.
    pub fn safe_offsets(&self) -> Vec<(i32, i64)> {
        self.high
            .iter()
            .map(|(&p, &high)| {
                let held = self.holds.values().filter_map(|h| h.get(&p).copied()).min();
                (p, held.map_or(high, |h| h.min(high)))
            })
            .collect()
    }
}

/// The parts an epoch's work reaches the publisher in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// The analyzer's findings, dead letters and statuses, with the checkpoint.
    Direct,
    /// The scorer's findings.
    Scored,
}

#[derive(Debug, Default)]
struct Pending {
    direct: bool,
    scored: bool,
    checkpoint: Option<Checkpoint>,
}

/// What to do once an epoch is wholly published, in epoch order.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// The epoch.
    pub epoch: u64,
    /// Offsets to store (only those that move forward).
    pub offsets: Vec<(i32, i64)>,
    /// Partitions revoked at this epoch.
    pub revoked: Vec<i32>,
}

/// Commits epochs in order once both parts of each are acknowledged.
#[derive(Debug, Default)]
pub struct CommitTracker {
    /// The next epoch to commit.
    next: u64,
    pending: BTreeMap<u64, Pending>,
    /// Per partition, the offset last stored.
    stored: HashMap<i32, i64>,
}

impl CommitTracker {
    /// A tracker whose first epoch is `first`.
    pub fn starting_at(first: u64) -> Self {
        Self {
            next: first,
            ..Self::default()
        }
    }

    /// Records the checkpoint of an epoch (it comes with the direct part).
    pub fn checkpoint(&mut self, cp: Checkpoint) {
        let epoch = cp.epoch;
        self.pending.entry(epoch).or_default().checkpoint = Some(cp);
    }

    /// Marks a part of `epoch` acknowledged; returns the epochs that became wholly
    /// published, in order, with the offsets they let the consumer store.
    pub fn acknowledged(&mut self, epoch: u64, part: Part) -> Vec<Commit> {
        let p = self.pending.entry(epoch).or_default();
        match part {
            Part::Direct => p.direct = true,
            Part::Scored => p.scored = true,
        }
        let mut done = Vec::new();
        while let Some(p) = self.pending.get(&self.next) {
            if !(p.direct && p.scored && p.checkpoint.is_some()) {
                break;
            }
            let Some(Pending {
                checkpoint: Some(cp),
                ..
            }) = self.pending.remove(&self.next)
            else {
                break;
            };
            for r in &cp.revoked {
                self.stored.remove(r);
            }
            let mut offsets = Vec::new();
            for (part, o) in cp.safe_offsets() {
                if cp.revoked.contains(&part) {
                    continue;
                }
                if self.stored.get(&part).is_none_or(|&s| o > s) {
                    self.stored.insert(part, o);
                    offsets.push((part, o));
                }
            }
            done.push(Commit {
                epoch: cp.epoch,
                offsets,
                revoked: cp.revoked,
            });
            self.next += 1;
        }
        done
    }

    /// Epochs seen but not yet wholly published.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_s_holds_merge_keeping_the_lowest_offset() {
        let mut cp = Checkpoint::new(3);
        cp.hold(Holder::Analyzer, 0, 50);
        cp.hold(Holder::Sequencer, 1, 70);
        let mut part = Checkpoint::new(3);
        part.hold(Holder::Analyzer, 0, 40);
        part.hold(Holder::Analyzer, 1, 90);
        cp.hold_all(part);
        assert_eq!(cp.holds[&Holder::Analyzer][&0], 40);
        assert_eq!(cp.holds[&Holder::Analyzer][&1], 90);
        assert_eq!(cp.holds[&Holder::Sequencer][&1], 70);
        cp.high.insert(0, 100);
        cp.high.insert(1, 100);
        assert_eq!(cp.safe_offsets(), vec![(0, 40), (1, 70)]);
    }

    fn cp(epoch: u64, high: &[(i32, i64)]) -> Checkpoint {
        let mut c = Checkpoint::new(epoch);
        c.high = high.iter().copied().collect();
        c
    }

    #[test]
    fn the_lowest_hold_of_any_stage_bounds_the_commit() {
        let mut c = cp(0, &[(0, 100), (1, 50), (2, 7)]);
        c.hold(Holder::Sequencer, 0, 90);
        c.hold(Holder::Analyzer, 0, 60);
        c.hold(Holder::Analyzer, 0, 70);
        c.hold(Holder::Analyzer, 1, 80);
        assert_eq!(c.safe_offsets(), vec![(0, 60), (1, 50), (2, 7)]);
    }

    #[test]
    fn epochs_commit_in_order_once_both_parts_are_acknowledged() {
        let mut t = CommitTracker::default();
        t.checkpoint(cp(0, &[(0, 10)]));
        t.checkpoint(cp(1, &[(0, 20)]));
        // Epoch 1 is published first: nothing may be stored before epoch 0 is.
        assert!(t.acknowledged(1, Part::Direct).is_empty());
        assert!(t.acknowledged(1, Part::Scored).is_empty());
        assert!(t.acknowledged(0, Part::Direct).is_empty());
        let done = t.acknowledged(0, Part::Scored);
        assert_eq!(done.iter().map(|c| c.epoch).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(done[0].offsets, vec![(0, 10)]);
        assert_eq!(done[1].offsets, vec![(0, 20)]);
        // A held-back later epoch never moves the stored offset backwards.
        let mut c2 = cp(2, &[(0, 30)]);
        c2.hold(Holder::Analyzer, 0, 15);
        t.checkpoint(c2);
        t.acknowledged(2, Part::Scored);
        let done = t.acknowledged(2, Part::Direct);
        assert_eq!(done[0].offsets, vec![], "15 is behind the stored 20");
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn a_revoked_partition_is_forgotten_in_order() {
        let mut t = CommitTracker::default();
        t.checkpoint(cp(0, &[(0, 10), (1, 10)]));
        let mut r = cp(1, &[(1, 12)]);
        r.revoked = vec![0];
        t.checkpoint(r);
        t.acknowledged(0, Part::Direct);
        t.acknowledged(0, Part::Scored);
        t.acknowledged(1, Part::Direct);
        let done = t.acknowledged(1, Part::Scored);
        assert_eq!(done[0].revoked, vec![0]);
        assert_eq!(done[0].offsets, vec![(1, 12)]);
        // Reassigned later: a lower offset may be stored again.
        t.checkpoint(cp(2, &[(0, 5)]));
        t.acknowledged(2, Part::Direct);
        assert_eq!(t.acknowledged(2, Part::Scored)[0].offsets, vec![(0, 5)]);
    }
}
