use serde::{Deserialize, Serialize};

use crate::Frame;

/// Where a record sits in its source topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    /// Partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
}

/// One consumed message, as the source hands it to the sequencer: the bytes as they
/// came (a dead letter is published with exactly these) and where they came from.
/// The source → sequencer hop.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// The message key (the stream id, when the gateway follows the wire format).
    pub key: Option<Vec<u8>>,
    /// The `content-type` header, if any.
    pub content_type: Option<String>,
    /// Source topic.
    pub topic: String,
    /// Source position.
    pub position: Position,
    /// When the message was produced (its Kafka timestamp), µs since the epoch, if
    /// known: a window this frame completes closed then.
    pub timestamp_us: Option<i64>,
}

/// A record that cannot be processed, bound for the dead-letter topic unchanged
/// (payload, key and content type) with the reason in headers.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The original record.
    pub record: SourceRecord,
    /// Short error kind (`DecodeError::kind`, or a sequencing policy such as `late`).
    pub kind: &'static str,
    /// The full error message.
    pub reason: String,
}

/// Why the analysis of a stream starts afresh at a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Restart {
    /// Frames before this one never came (a signal gap): the first window after it
    /// says the gap is over.
    AfterGap,
    /// The device clock jumped: the frame's time is off the stream's sample count.
    ClockJump,
}

/// A validated frame released by the sequencer in stream order (duplicates dropped,
/// reordering undone), with its source position. The sequencer → analyzer hop.
#[derive(Debug, Clone, PartialEq)]
pub struct SequencedFrame {
    /// The frame.
    pub frame: Frame,
    /// Where it was read.
    pub position: Position,
    /// When a window this frame completes closed: the record's Kafka timestamp, or
    /// when the sequencer took its batch (µs since the epoch).
    pub closed_us: i64,
    /// Set when the stream's analysis must start afresh at this frame.
    pub restart: Option<Restart>,
}
