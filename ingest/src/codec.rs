//! Wire format v1 for device gateways: protobuf (`cardiostream.wire.v1.Frame`, see
//! `proto/frame_v1.proto`) and an equivalent JSON form. Both decode to the same
//! validated [`Frame`]; every rule is documented in `docs/wire-format.md`.
//!
//! Decoding never panics: any byte string yields either a frame or a [`DecodeError`]
//! that names the offending field, and whose [`DecodeError::kind`] is a short, fixed
//! label for dead-letter headers and metrics.

use std::fmt;

use ecg_types::{
    DeviceId, DeviceTimeUs, Frame, Lead, NanovoltsPerCount, PatientId, PulseKind, PulseWave,
    SampleRate, StreamId,
};
use prost::Message;
use serde::{Deserialize, Serialize};

/// The only schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;
/// Largest encoded frame accepted, in bytes.
pub const MAX_FRAME_BYTES: usize = 4 << 20;
/// Most leads in one frame.
pub const MAX_LEADS: usize = 16;
/// Longest frame, in seconds of signal.
pub const MAX_FRAME_SECONDS: u32 = 10;
/// Largest absolute amplitude accepted on a connected lead, in millivolts.
pub const MAX_ABS_MV: f64 = 100.0;
/// Largest sequence number: 2^53 − 1, so the JSON form is exact in every language.
pub const MAX_SEQ: u64 = (1 << 53) - 1;
/// Earliest device time accepted: 2000-01-01T00:00:00Z, µs since the epoch.
pub const MIN_T0_US: i64 = 946_684_800_000_000;
/// Latest device time accepted: 2100-01-01T00:00:00Z, µs since the epoch.
pub const MAX_T0_US: i64 = 4_102_444_800_000_000;
/// Largest scale accepted: 1 mV per count.
pub const MAX_SCALE_NV: u32 = 1_000_000;
/// Most pulsatile waveforms in one frame.
pub const MAX_WAVEFORMS: usize = 4;
/// Lowest and highest rate of a pulsatile waveform (Hz).
pub const WAVEFORM_RATE_HZ: (u32, u32) = (10, 16_000);
/// Arterial pressure accepted, mmHg (beyond it the transducer is not on an artery).
pub const ABP_RANGE_MMHG: (f32, f32) = (-50.0, 400.0);
/// Counts per unit a frame's waveforms are encoded with: 1/1000 NU for the
/// plethysmogram, 1/100 mmHg for arterial pressure.
pub fn waveform_encoding_scale(kind: PulseKind) -> f32 {
    match kind {
        PulseKind::Pleth => 0.001,
        PulseKind::ArterialPressure => 0.01,
    }
}
/// Content type of the protobuf form (Kafka header `content-type`).
pub const CONTENT_TYPE_PROTOBUF: &str = "application/x-protobuf";
/// Content type of the JSON form (Kafka header `content-type`).
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// The protobuf messages, written with prost's derive so that no `protoc` is needed
/// at build time. `proto/frame_v1.proto` is the same schema for gateway engineers;
/// a test checks the two agree on field numbers.
pub mod pb {
    /// One block of samples of one stream.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Frame {
        /// Must be 1.
        #[prost(uint32, tag = "1")]
        pub schema_version: u32,
        /// Stream id (Kafka key).
        #[prost(string, tag = "2")]
        pub stream_id: ::prost::alloc::string::String,
        /// Device id.
        #[prost(string, tag = "3")]
        pub device_id: ::prost::alloc::string::String,
        /// Pseudonymous patient id.
        #[prost(string, tag = "4")]
        pub patient_id: ::prost::alloc::string::String,
        /// Per-stream sequence number.
        #[prost(uint64, tag = "5")]
        pub seq: u64,
        /// Device time of the first sample, µs since the Unix epoch.
        #[prost(int64, tag = "6")]
        pub t0_us: i64,
        /// Samples per second per lead.
        #[prost(uint32, tag = "7")]
        pub sample_rate_hz: u32,
        /// Nanovolts per count.
        #[prost(uint32, tag = "8")]
        pub scale_nv: u32,
        /// One entry per lead.
        #[prost(message, repeated, tag = "9")]
        pub channels: ::prost::alloc::vec::Vec<Channel>,
        /// Pulsatile waveforms over the same time span (optional; a v1 extension
        /// that readers without it skip).
        #[prost(message, repeated, tag = "10")]
        pub waveforms: ::prost::alloc::vec::Vec<Waveform>,
        /// Pacemaker pulses the device detected: sample offsets within the frame
        /// (optional; a v1 extension that readers without it skip).
        #[prost(uint32, repeated, tag = "11")]
        pub pace_pulses: ::prost::alloc::vec::Vec<u32>,
    }

    /// A pulsatile waveform (plethysmogram, arterial pressure).
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Waveform {
        /// IEEE 11073-10101 code of the waveform.
        #[prost(uint32, tag = "1")]
        pub code: u32,
        /// IEEE 11073-10101 unit code of the samples.
        #[prost(uint32, tag = "2")]
        pub unit: u32,
        /// Its own sampling rate (Hz).
        #[prost(uint32, tag = "3")]
        pub sample_rate_hz: u32,
        /// Units per count.
        #[prost(float, tag = "4")]
        pub scale: f32,
        /// Units at count 0.
        #[prost(float, tag = "5")]
        pub offset: f32,
        /// Integer samples (zig-zag varints, packed).
        #[prost(sint32, repeated, tag = "6")]
        pub samples: ::prost::alloc::vec::Vec<i32>,
    }

    /// The samples of one lead.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Channel {
        /// IEEE 11073-10102 lead number.
        #[prost(uint32, tag = "1")]
        pub lead: u32,
        /// Electrode detached.
        #[prost(bool, tag = "2")]
        pub lead_off: bool,
        /// Integer samples (zig-zag varints, packed).
        #[prost(sint32, repeated, tag = "3")]
        pub samples: ::prost::alloc::vec::Vec<i32>,
    }
}

/// The JSON form: the same fields as protobuf, leads by name (`"II"`) or lead number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonFrame {
    /// Must be 1.
    pub schema_version: u32,
    /// Stream id.
    pub stream_id: String,
    /// Device id.
    pub device_id: String,
    /// Pseudonymous patient id.
    pub patient_id: String,
    /// Per-stream sequence number.
    pub seq: u64,
    /// Device time of the first sample, µs since the Unix epoch.
    pub t0_us: i64,
    /// Samples per second per lead.
    pub sample_rate_hz: u32,
    /// Nanovolts per count.
    pub scale_nv: u32,
    /// One entry per lead.
    pub channels: Vec<JsonChannel>,
    /// Pulsatile waveforms over the same time span (optional).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waveforms: Vec<JsonWaveform>,
    /// Pacemaker pulses the device detected: sample offsets within the frame
    /// (optional).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pace_pulses: Vec<u32>,
}

/// A pulsatile waveform in the JSON form (the protobuf fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonWaveform {
    /// IEEE 11073-10101 code: 150452 plethysmogram, 150036 arterial pressure.
    pub code: u32,
    /// IEEE 11073-10101 unit code: 512 (dimensionless) or 3872 (mmHg).
    pub unit: u32,
    /// Its own sampling rate (Hz).
    pub sample_rate_hz: u32,
    /// Units per count.
    pub scale: f32,
    /// Units at count 0.
    #[serde(default)]
    pub offset: f32,
    /// Integer samples.
    pub samples: Vec<i32>,
}

/// One lead in the JSON form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonChannel {
    /// Lead name (`"II"`, `"aVF"`, `"MDC_ECG_LEAD_V1"`) or IEEE 11073 lead number.
    pub lead: JsonLead,
    /// Electrode detached.
    #[serde(default)]
    pub lead_off: bool,
    /// Integer samples.
    pub samples: Vec<i32>,
}

/// A lead as JSON gives it: a name or a number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JsonLead {
    /// IEEE 11073-10102 lead number.
    Code(u32),
    /// Lead name.
    Name(String),
}

/// Which field of a frame is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `schema_version`
    SchemaVersion,
    /// `stream_id`
    StreamId,
    /// `device_id`
    DeviceId,
    /// `patient_id`
    PatientId,
    /// `seq`
    Seq,
    /// `t0_us`
    T0Us,
    /// `sample_rate_hz`
    SampleRateHz,
    /// `scale_nv`
    ScaleNv,
    /// `channels`
    Channels,
    /// `channels[].lead`
    Lead,
    /// `channels[].samples`
    Samples,
    /// `waveforms[]`
    Waveforms,
    /// `pace_pulses`
    PacePulses,
}

impl Field {
    /// The field's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Field::SchemaVersion => "schema_version",
            Field::StreamId => "stream_id",
            Field::DeviceId => "device_id",
            Field::PatientId => "patient_id",
            Field::Seq => "seq",
            Field::T0Us => "t0_us",
            Field::SampleRateHz => "sample_rate_hz",
            Field::ScaleNv => "scale_nv",
            Field::Channels => "channels",
            Field::Lead => "channels.lead",
            Field::Samples => "channels.samples",
            Field::Waveforms => "waveforms",
            Field::PacePulses => "pace_pulses",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why bytes are not a valid frame. Messages are lowercase and name the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Larger than [`MAX_FRAME_BYTES`].
    #[error("frame is {0} bytes, more than the {MAX_FRAME_BYTES} allowed")]
    TooLarge(usize),
    /// The `content-type` header names an encoding this build does not read.
    #[error("unsupported content type {0:?}")]
    UnsupportedContentType(String),
    /// Not a protobuf message of this schema.
    #[error("undecodable protobuf: {0}")]
    Protobuf(String),
    /// Not JSON of this schema.
    #[error("undecodable json: {0}")]
    Json(String),
    /// A schema version other than [`SCHEMA_VERSION`].
    #[error("unsupported schema_version {0} (this build reads {SCHEMA_VERSION})")]
    UnsupportedVersion(u32),
    /// A field that decoded but breaks a rule.
    #[error("field {field} {problem}")]
    Invalid {
        /// The field.
        field: Field,
        /// What is wrong with it.
        problem: String,
    },
}

impl DecodeError {
    /// A short fixed label for dead-letter headers and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::TooLarge(_) => "too_large",
            DecodeError::UnsupportedContentType(_) => "unsupported_content_type",
            DecodeError::Protobuf(_) | DecodeError::Json(_) => "undecodable",
            DecodeError::UnsupportedVersion(_) => "unsupported_version",
            DecodeError::Invalid { field, .. } => match field {
                Field::SchemaVersion => "missing_schema_version",
                Field::StreamId | Field::DeviceId | Field::PatientId => "bad_id",
                Field::Seq => "bad_sequence",
                Field::T0Us => "bad_device_time",
                Field::SampleRateHz => "bad_sample_rate",
                Field::ScaleNv => "bad_scale",
                Field::Channels => "bad_lead_count",
                Field::Lead => "bad_lead",
                Field::Samples => "bad_samples",
                Field::Waveforms => "bad_waveform",
                Field::PacePulses => "bad_pace_pulses",
            },
        }
    }

    /// Every label [`kind`](Self::kind) can return, for pre-registering metrics.
    pub const KINDS: [&'static str; 15] = [
        "too_large",
        "unsupported_content_type",
        "undecodable",
        "unsupported_version",
        "missing_schema_version",
        "bad_id",
        "bad_sequence",
        "bad_device_time",
        "bad_sample_rate",
        "bad_scale",
        "bad_lead_count",
        "bad_lead",
        "bad_samples",
        "bad_waveform",
        "bad_pace_pulses",
    ];
}

fn invalid(field: Field, problem: impl Into<String>) -> DecodeError {
    DecodeError::Invalid {
        field,
        problem: problem.into(),
    }
}

/// The encoding of a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `cardiostream.wire.v1.Frame` protobuf.
    Protobuf,
    /// The JSON form.
    Json,
}

impl Encoding {
    /// Chooses the encoding from a `content-type` header, or, without one, from the
    /// first non-blank byte (`{` means JSON).
    ///
    /// # Errors
    /// [`DecodeError::UnsupportedContentType`] for any other content type.
    pub fn detect(content_type: Option<&str>, bytes: &[u8]) -> Result<Encoding, DecodeError> {
        match content_type.map(|c| c.split(';').next().unwrap_or("").trim()) {
            Some(CONTENT_TYPE_JSON) => Ok(Encoding::Json),
            Some(
                CONTENT_TYPE_PROTOBUF | "application/protobuf" | "application/vnd.google.protobuf",
            ) => Ok(Encoding::Protobuf),
            Some(other) => Err(DecodeError::UnsupportedContentType(other.to_owned())),
            None => {
                let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
                Ok(if first == Some(&b'{') {
                    Encoding::Json
                } else {
                    Encoding::Protobuf
                })
            }
        }
    }

    /// The `content-type` header value for this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => CONTENT_TYPE_PROTOBUF,
            Encoding::Json => CONTENT_TYPE_JSON,
        }
    }
}

/// Decodes and validates one frame.
///
/// # Errors
/// A [`DecodeError`] naming the first rule the payload breaks.
pub fn decode(bytes: &[u8], content_type: Option<&str>) -> Result<Frame, DecodeError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    match Encoding::detect(content_type, bytes)? {
        Encoding::Protobuf => match parse_pb(bytes)? {
            Some(parts) => validate_parts(parts),
            // Groups and other rarities: prost's generated decoder.
            None => validate(
                pb::Frame::decode(bytes).map_err(|e| DecodeError::Protobuf(e.to_string()))?,
            ),
        },
        Encoding::Json => {
            let j: JsonFrame =
                serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string()))?;
            validate(json_to_pb(j)?)
        }
    }
}

/// Encodes a frame in the given encoding.
pub fn encode(frame: &Frame, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => to_pb(frame).encode_to_vec(),
        Encoding::Json => {
            let j = to_json(frame);
            // Serialising plain strings and integers cannot fail.
            serde_json::to_vec(&j).unwrap_or_default()
        }
    }
}

/// The protobuf message of a frame.
pub fn to_pb(frame: &Frame) -> pb::Frame {
    let n = frame.samples_per_lead();
    pb::Frame {
        schema_version: SCHEMA_VERSION,
        stream_id: frame.stream.to_string(),
        device_id: frame.device.to_string(),
        patient_id: frame.patient.to_string(),
        seq: frame.seq,
        t0_us: frame.t0.0,
        sample_rate_hz: frame.sample_rate.0,
        scale_nv: frame.scale.0,
        channels: frame
            .leads
            .iter()
            .enumerate()
            .map(|(i, l)| pb::Channel {
                lead: u32::from(l.mdc_code()),
                lead_off: frame.lead_off.get(i).copied().unwrap_or(false),
                samples: frame.samples[i * n..(i + 1) * n].to_vec(),
            })
            .collect(),
        waveforms: frame
            .pulses
            .iter()
            .map(|p| {
                let scale = waveform_encoding_scale(p.kind);
                pb::Waveform {
                    code: p.kind.mdc_code(),
                    unit: p.kind.mdc_unit(),
                    sample_rate_hz: p.sample_rate.0,
                    scale,
                    offset: 0.0,
                    samples: p
                        .samples
                        .iter()
                        .map(|&v| {
                            (f64::from(v) / f64::from(scale))
                                .round()
                                .clamp(f64::from(i32::MIN), f64::from(i32::MAX))
                                as i32
                        })
                        .collect(),
                }
            })
            .collect(),
        pace_pulses: frame.pace.clone(),
    }
}

/// The JSON form of a frame.
pub fn to_json(frame: &Frame) -> JsonFrame {
    let m = to_pb(frame);
    JsonFrame {
        schema_version: m.schema_version,
        stream_id: m.stream_id,
        device_id: m.device_id,
        patient_id: m.patient_id,
        seq: m.seq,
        t0_us: m.t0_us,
        sample_rate_hz: m.sample_rate_hz,
        scale_nv: m.scale_nv,
        channels: m
            .channels
            .into_iter()
            .zip(&frame.leads)
            .map(|(c, l)| JsonChannel {
                lead: JsonLead::Name(l.name().to_owned()),
                lead_off: c.lead_off,
                samples: c.samples,
            })
            .collect(),
        waveforms: m
            .waveforms
            .into_iter()
            .map(|w| JsonWaveform {
                code: w.code,
                unit: w.unit,
                sample_rate_hz: w.sample_rate_hz,
                scale: w.scale,
                offset: w.offset,
                samples: w.samples,
            })
            .collect(),
        pace_pulses: m.pace_pulses,
    }
}

fn json_to_pb(j: JsonFrame) -> Result<pb::Frame, DecodeError> {
    let channels = j
        .channels
        .into_iter()
        .map(|c| {
            let lead = match c.lead {
                JsonLead::Code(code) => code,
                JsonLead::Name(name) => name
                    .parse::<Lead>()
                    .map_err(|e| invalid(Field::Lead, e.to_string()))?
                    .mdc_code()
                    .into(),
            };
            Ok(pb::Channel {
                lead,
                lead_off: c.lead_off,
                samples: c.samples,
            })
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    Ok(pb::Frame {
        schema_version: j.schema_version,
        stream_id: j.stream_id,
        device_id: j.device_id,
        patient_id: j.patient_id,
        seq: j.seq,
        t0_us: j.t0_us,
        sample_rate_hz: j.sample_rate_hz,
        scale_nv: j.scale_nv,
        channels,
        waveforms: j
            .waveforms
            .into_iter()
            .map(|w| pb::Waveform {
                code: w.code,
                unit: w.unit,
                sample_rate_hz: w.sample_rate_hz,
                scale: w.scale,
                offset: w.offset,
                samples: w.samples,
            })
            .collect(),
        pace_pulses: j.pace_pulses,
    })
}

/// Applies every rule of wire format v1 to a decoded message.
///
/// # Errors
/// A [`DecodeError`] naming the first rule the message breaks.
pub fn validate(mut m: pb::Frame) -> Result<Frame, DecodeError> {
    let channels = std::mem::take(&mut m.channels);
    let mut samples = Vec::with_capacity(channels.iter().map(|c| c.samples.len()).sum());
    let channels = channels
        .into_iter()
        .map(|c| {
            let start = samples.len();
            samples.extend_from_slice(&c.samples);
            ChannelPart {
                lead: c.lead,
                lead_off: c.lead_off,
                start,
                len: c.samples.len(),
            }
        })
        .collect();
    validate_parts(Parts {
        header: m,
        channels,
        samples,
    })
}

/// A decoded frame message: its header fields and waveforms (`header.channels`
/// unused), its channels, and the samples of every channel in one lead-major vector.
#[derive(Debug, Default)]
struct Parts {
    header: pb::Frame,
    channels: Vec<ChannelPart>,
    samples: Vec<i32>,
}

#[derive(Debug)]
struct ChannelPart {
    lead: u32,
    lead_off: bool,
    start: usize,
    len: usize,
}

fn pb_err(what: &str) -> DecodeError {
    DecodeError::Protobuf(what.to_owned())
}

fn varint(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    prost::encoding::decode_varint(buf).map_err(|e| DecodeError::Protobuf(e.to_string()))
}

/// The next length-delimited field's bytes.
fn delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let len = usize::try_from(varint(buf)?).map_err(|_| pb_err("length overflows"))?;
    if len > buf.len() {
        return Err(pb_err(
            "buffer underflow: a length-delimited field runs past the end",
        ));
    }
    let (field, rest) = buf.split_at(len);
    *buf = rest;
    Ok(field)
}

/// A field key: (tag, wire type), or `None` for keys the fast path leaves to prost
/// (out of range, or a group).
fn field_key(buf: &mut &[u8]) -> Result<Option<(u64, u64)>, DecodeError> {
    let key = varint(buf)?;
    let (tag, wt) = (key >> 3, key & 7);
    if key > u64::from(u32::MAX) || tag == 0 || wt == 3 || wt == 4 {
        return Ok(None);
    }
    Ok(Some((tag, wt)))
}

fn skip(buf: &mut &[u8], wire_type: u64) -> Result<(), DecodeError> {
    let n = match wire_type {
        0 => {
            varint(buf)?;
            return Ok(());
        }
        1 => 8,
        2 => {
            delimited(buf)?;
            return Ok(());
        }
        5 => 4,
        w => return Err(pb_err(&format!("invalid or unsupported wire type {w}"))),
    };
    if buf.len() < n {
        return Err(pb_err("buffer underflow"));
    }
    *buf = &buf[n..];
    Ok(())
}

fn string(buf: &mut &[u8]) -> Result<String, DecodeError> {
    let b = delimited(buf)?;
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| pb_err("invalid string value: data is not UTF-8 encoded"))
}

/// Packed zig-zag varints; one- and two-byte values (most ECG counts) without the
/// general varint loop. Same result as prost's `sint32` decoding.
///
/// Eight bytes at a time: eight one-byte values (a trace near its baseline), four
/// two-byte ones (a steeper stretch), or any mix of one- and two-byte values (no two
/// continuation bytes in a row), taken in one pass over the eight bytes up to the
/// last value that ends inside them. Longer values, and the last few bytes, take the
/// general path.
fn packed_sint32(mut b: &[u8], out: &mut Vec<i32>) -> Result<(), DecodeError> {
    while let Some((eight, after)) = b.split_first_chunk::<8>() {
        let word = u64::from_le_bytes(*eight);
        let continues = word & 0x8080_8080_8080_8080;
        if continues == 0 {
            // Zig-zag in the word's eight byte lanes (each value fits an `i8`), then
            // widened, into one copy without a length check per value.
            let half = (word >> 1) & 0x7f7f_7f7f_7f7f_7f7f;
            let sign = (word & 0x0101_0101_0101_0101) * 0xff;
            let lanes = (half ^ sign).to_le_bytes();
            let mut v = [0i32; 8];
            for (d, &x) in v.iter_mut().zip(&lanes) {
                *d = i32::from(x as i8);
            }
            out.extend_from_slice(&v);
            b = after;
            continue;
        }
        // Every even byte continues, every odd one ends a value: four 14-bit values
        // in the word's 16-bit lanes, zig-zagged there (each fits an `i16`).
        if continues == 0x0080_0080_0080_0080 {
            let z = (word & 0x007f_007f_007f_007f) | ((word >> 1) & 0x3f80_3f80_3f80_3f80);
            let half = (z >> 1) & 0x7fff_7fff_7fff_7fff;
            let sign = (z & 0x0001_0001_0001_0001) * 0xffff;
            let lanes = (half ^ sign).to_le_bytes();
            let mut v = [0i32; 4];
            for (d, p) in v.iter_mut().zip(lanes.chunks_exact(2)) {
                *d = i32::from(i16::from_le_bytes([p[0], p[1]]));
            }
            out.extend_from_slice(&v);
            b = after;
            continue;
        }
        if continues & (continues << 8) != 0 {
            // A value of three bytes or more starts in these eight: the general path
            // up to and including it.
            let long = (continues & (continues << 8)).trailing_zeros() as usize / 8 - 1;
            let mut i = 0;
            while i < long {
                let lo = eight[i];
                let two = usize::from(lo >> 7);
                let hi = if two == 1 { eight[i + 1] } else { 0 };
                out.push(zigzag32(u64::from(lo & 0x7f) | (u64::from(hi) << 7)));
                i += 1 + two;
            }
            b = &b[i..];
            out.push(zigzag32(varint(&mut b)?));
            continue;
        }
        // One- and two-byte values; a value whose first byte is the eighth is left
        // for the next round.
        let end = 8 - (continues >> 63) as usize;
        let mut i = 0;
        while i < end {
            let lo = u32::from(eight[i]);
            let two = lo >> 7;
            let hi = u32::from(eight[(i + 1) & 7]) * two;
            out.push(zigzag_u32((lo & 0x7f) | (hi << 7)));
            i += 1 + two as usize;
        }
        b = &b[i..];
    }
    while let [first, rest @ ..] = b {
        if *first < 0x80 {
            out.push(zigzag32(u64::from(*first)));
            b = rest;
        } else if let [second, rest2 @ ..] = rest {
            if *second < 0x80 {
                out.push(zigzag32(
                    u64::from(first & 0x7f) | (u64::from(*second) << 7),
                ));
                b = rest2;
            } else {
                out.push(zigzag32(varint(&mut b)?));
            }
        } else {
            out.push(zigzag32(varint(&mut b)?));
        }
    }
    Ok(())
}

fn zigzag32(v: u64) -> i32 {
    zigzag_u32(v as u32)
}

#[inline(always)]
fn zigzag_u32(v: u32) -> i32 {
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

/// Decodes the protobuf form of wire format v1 (what `pb::Frame::decode` accepts,
/// packed or unpacked samples, unknown fields skipped), reading every channel's
/// samples straight into one vector: no per-lead growth, no second copy. `None` when
/// the bytes hold something only prost's decoder handles (groups, odd keys).
fn parse_pb(bytes: &[u8]) -> Result<Option<Parts>, DecodeError> {
    let mut buf = bytes;
    let mut p = Parts {
        // Every sample takes at least one byte.
        samples: Vec::with_capacity(bytes.len().min(MAX_FRAME_BYTES)),
        ..Parts::default()
    };
    let wrong = |tag: u64| pb_err(&format!("invalid wire type for field {tag} of Frame"));
    while !buf.is_empty() {
        let Some((tag, wt)) = field_key(&mut buf)? else {
            return Ok(None);
        };
        match (tag, wt) {
            (1, 0) => p.header.schema_version = varint(&mut buf)? as u32,
            (2, 2) => p.header.stream_id = string(&mut buf)?,
            (3, 2) => p.header.device_id = string(&mut buf)?,
            (4, 2) => p.header.patient_id = string(&mut buf)?,
            (5, 0) => p.header.seq = varint(&mut buf)?,
            (6, 0) => p.header.t0_us = varint(&mut buf)? as i64,
            (7, 0) => p.header.sample_rate_hz = varint(&mut buf)? as u32,
            (8, 0) => p.header.scale_nv = varint(&mut buf)? as u32,
            (9, 2) => {
                let mut ch = delimited(&mut buf)?;
                let start = p.samples.len();
                let (mut lead, mut lead_off) = (0u32, false);
                while !ch.is_empty() {
                    let Some((tag, wt)) = field_key(&mut ch)? else {
                        return Ok(None);
                    };
                    match (tag, wt) {
                        (1, 0) => lead = varint(&mut ch)? as u32,
                        (2, 0) => lead_off = varint(&mut ch)? != 0,
                        (3, 2) => packed_sint32(delimited(&mut ch)?, &mut p.samples)?,
                        (3, 0) => p.samples.push(zigzag32(varint(&mut ch)?)),
                        (1..=3, _) => {
                            return Err(pb_err(&format!(
                                "invalid wire type for field {tag} of Channel"
                            )))
                        }
                        (_, wt) => skip(&mut ch, wt)?,
                    }
                }
                p.channels.push(ChannelPart {
                    lead,
                    lead_off,
                    start,
                    len: p.samples.len() - start,
                });
            }
            (10, 2) => {
                let w = pb::Waveform::decode(delimited(&mut buf)?)
                    .map_err(|e| DecodeError::Protobuf(e.to_string()))?;
                p.header.waveforms.push(w);
            }
            (11, 2) => {
                let mut packed = delimited(&mut buf)?;
                while !packed.is_empty() {
                    p.header.pace_pulses.push(varint(&mut packed)? as u32);
                }
            }
            (11, 0) => p.header.pace_pulses.push(varint(&mut buf)? as u32),
            (1..=11, _) => return Err(wrong(tag)),
            (_, wt) => skip(&mut buf, wt)?,
        }
    }
    Ok(Some(p))
}

/// Applies every rule of wire format v1.
fn validate_parts(parts: Parts) -> Result<Frame, DecodeError> {
    let Parts {
        header: mut m,
        channels,
        samples,
    } = parts;
    let (waveforms, ecg_rate) = (std::mem::take(&mut m.waveforms), m.sample_rate_hz);
    match m.schema_version {
        SCHEMA_VERSION => {}
        0 => return Err(invalid(Field::SchemaVersion, "is missing (must be 1)")),
        v => return Err(DecodeError::UnsupportedVersion(v)),
    }
    let stream = StreamId::new(m.stream_id).map_err(|e| invalid(Field::StreamId, e.to_string()))?;
    let device = DeviceId::new(m.device_id).map_err(|e| invalid(Field::DeviceId, e.to_string()))?;
    let patient =
        PatientId::new(m.patient_id).map_err(|e| invalid(Field::PatientId, e.to_string()))?;
    if m.seq > MAX_SEQ {
        return Err(invalid(Field::Seq, format!("is {}, above 2^53-1", m.seq)));
    }
    if !(MIN_T0_US..MAX_T0_US).contains(&m.t0_us) {
        return Err(invalid(
            Field::T0Us,
            format!("is {}, outside years 2000 to 2099", m.t0_us),
        ));
    }
    if !(SampleRate::MIN..=SampleRate::MAX).contains(&m.sample_rate_hz) {
        return Err(invalid(
            Field::SampleRateHz,
            format!(
                "is {} Hz, outside {}..={} Hz",
                m.sample_rate_hz,
                SampleRate::MIN,
                SampleRate::MAX
            ),
        ));
    }
    if !(1..=MAX_SCALE_NV).contains(&m.scale_nv) {
        return Err(invalid(
            Field::ScaleNv,
            format!("is {} nV per count, outside 1..={MAX_SCALE_NV}", m.scale_nv),
        ));
    }
    let nlead = channels.len();
    if !(1..=MAX_LEADS).contains(&nlead) {
        return Err(invalid(
            Field::Channels,
            format!("has {nlead} leads, outside 1..={MAX_LEADS}"),
        ));
    }
    let n = channels[0].len;
    let max_n = (m.sample_rate_hz * MAX_FRAME_SECONDS) as usize;
    if n == 0 || n > max_n {
        return Err(invalid(
            Field::Samples,
            format!("has {n} samples per lead, outside 1..={max_n} ({MAX_FRAME_SECONDS} s)"),
        ));
    }
    let max_count = MAX_ABS_MV * 1e6 / f64::from(m.scale_nv);
    // The same bound on the integer counts (a count `c` is beyond it exactly when
    // `|c| > floor(max_count)`), checked without a conversion or an exit per sample;
    // `None` when every `i32` count is within it (a bound beyond `i32::MAX`).
    let max_abs_count = i32::try_from(max_count.floor() as i64).ok();
    let mut leads = Vec::with_capacity(nlead);
    let mut lead_off = Vec::with_capacity(nlead);
    for (i, c) in channels.iter().enumerate() {
        let c_samples = &samples[c.start..c.start + c.len];
        let lead = Lead::from_mdc_code(c.lead).ok_or_else(|| {
            invalid(
                Field::Lead,
                format!("{} (channel {i}) is not a known lead number", c.lead),
            )
        })?;
        if leads.contains(&lead) {
            return Err(invalid(Field::Lead, format!("{lead} appears twice")));
        }
        if c.len != n {
            return Err(invalid(
                Field::Samples,
                format!(
                    "lead {lead} has {} samples, lead {} has {n}",
                    c.len,
                    leads.first().copied().unwrap_or(lead)
                ),
            ));
        }
        let beyond = |lim: i32| {
            c_samples
                .iter()
                .fold(false, |b, &s| b | (s > lim) | (s < -lim))
        };
        if !c.lead_off && max_abs_count.is_some_and(beyond) {
            if let Some(bad) = c_samples.iter().find(|&&s| f64::from(s).abs() > max_count) {
                return Err(invalid(
                    Field::Samples,
                    format!(
                        "lead {lead} holds {bad} counts = {:.1} mV, beyond ±{MAX_ABS_MV} mV",
                        f64::from(*bad) * f64::from(m.scale_nv) * 1e-6
                    ),
                ));
            }
        }
        leads.push(lead);
        lead_off.push(c.lead_off);
    }
    let pulses = validate_waveforms(&waveforms, ecg_rate, n)?;
    let pace = std::mem::take(&mut m.pace_pulses);
    if let Some(w) = pace.windows(2).find(|w| w[1] <= w[0]) {
        return Err(invalid(
            Field::PacePulses,
            format!("must increase ({} then {})", w[0], w[1]),
        ));
    }
    if let Some(&p) = pace.last().filter(|&&p| p as usize >= n) {
        return Err(invalid(
            Field::PacePulses,
            format!("offset {p} is beyond the frame's {n} samples per lead"),
        ));
    }
    Ok(Frame {
        stream,
        device,
        patient,
        seq: m.seq,
        t0: DeviceTimeUs(m.t0_us),
        sample_rate: SampleRate(m.sample_rate_hz),
        scale: NanovoltsPerCount(m.scale_nv),
        leads,
        lead_off,
        samples,
        pulses,
        pace,
    })
}

/// The frame's pulsatile waveforms, checked: a known code with its unit, a rate in
/// range, a finite positive scale, exactly as many samples as the ECG's duration
/// holds at the waveform's rate, each kind at most once, arterial pressure within
/// [`ABP_RANGE_MMHG`].
fn validate_waveforms(
    waveforms: &[pb::Waveform],
    ecg_rate_hz: u32,
    n_ecg: usize,
) -> Result<Vec<PulseWave>, DecodeError> {
    let bad = |problem: String| invalid(Field::Waveforms, problem);
    if waveforms.len() > MAX_WAVEFORMS {
        return Err(bad(format!(
            "has {} waveforms, more than {MAX_WAVEFORMS}",
            waveforms.len()
        )));
    }
    let mut out: Vec<PulseWave> = Vec::with_capacity(waveforms.len());
    for (i, w) in waveforms.iter().enumerate() {
        let kind = PulseKind::from_mdc_code(w.code).ok_or_else(|| {
            bad(format!(
                "[{i}] code {} is not a supported waveform (150452 plethysmogram, 150036 arterial pressure)",
                w.code
            ))
        })?;
        if out.iter().any(|p| p.kind == kind) {
            return Err(bad(format!("[{i}] {kind} appears twice")));
        }
        if w.unit != kind.mdc_unit() {
            return Err(bad(format!(
                "[{i}] {kind} has unit code {}, expected {} ({})",
                w.unit,
                kind.mdc_unit(),
                kind.unit()
            )));
        }
        let (lo, hi) = WAVEFORM_RATE_HZ;
        if !(lo..=hi).contains(&w.sample_rate_hz) {
            return Err(bad(format!(
                "[{i}] {kind} is at {} Hz, outside {lo}..={hi} Hz",
                w.sample_rate_hz
            )));
        }
        if !(w.scale.is_finite() && w.scale > 0.0 && w.offset.is_finite()) {
            return Err(bad(format!(
                "[{i}] {kind} has scale {} and offset {}: the scale must be finite and positive, the offset finite",
                w.scale, w.offset
            )));
        }
        let span = n_ecg as u64 * u64::from(w.sample_rate_hz);
        let ecg_rate = u64::from(ecg_rate_hz.max(1));
        let want = span / ecg_rate;
        if !span.is_multiple_of(ecg_rate) || w.samples.len() as u64 != want {
            return Err(bad(format!(
                "[{i}] {kind} has {} samples; {n_ecg} ECG samples at {} Hz span {:.4} s, which must hold a whole number of samples at {} Hz",
                w.samples.len(),
                ecg_rate_hz,
                n_ecg as f64 / ecg_rate as f64,
                w.sample_rate_hz
            )));
        }
        let samples: Vec<f32> = w
            .samples
            .iter()
            .map(|&c| (f64::from(c) * f64::from(w.scale) + f64::from(w.offset)) as f32)
            .collect();
        if let Some(v) = samples.iter().find(|v| !v.is_finite()) {
            return Err(bad(format!("[{i}] {kind} holds {v}")));
        }
        if kind == PulseKind::ArterialPressure {
            let (lo, hi) = ABP_RANGE_MMHG;
            if let Some(v) = samples.iter().find(|&&v| !(lo..=hi).contains(&v)) {
                return Err(bad(format!(
                    "[{i}] arterial pressure {v:.1} mmHg is outside {lo}..={hi} mmHg"
                )));
            }
        }
        out.push(PulseWave {
            kind,
            sample_rate: SampleRate(w.sample_rate_hz),
            samples,
        });
    }
    Ok(out)
}
