//! Wire format v1: round trips, every validation rule, and fuzzing.
#![allow(clippy::unwrap_used)]

use ecg_ingest::codec::{self, pb, DecodeError, Encoding, Field};
use ecg_types::{
    DeviceId, DeviceTimeUs, Frame, Lead, NanovoltsPerCount, PatientId, SampleRate, StreamId,
};
use proptest::prelude::*;
use prost::Message;

type Mutation = Box<dyn Fn(&mut pb::Frame)>;

fn frame() -> Frame {
    Frame {
        stream: StreamId::new("bed-7.ecg").unwrap(),
        device: DeviceId::new("dev-001").unwrap(),
        patient: PatientId::new("pt-4f2a").unwrap(),
        seq: 42,
        t0: DeviceTimeUs(1_763_000_000_000_000),
        sample_rate: SampleRate(250),
        scale: NanovoltsPerCount(1000),
        leads: vec![Lead::I, Lead::II, Lead::V1],
        lead_off: vec![false, true, false],
        samples: (0..750).map(|i| (i * 37 % 2001) - 1000).collect(),
        pulses: Vec::new(),
        pace: Vec::new(),
    }
}

fn pb_frame() -> pb::Frame {
    codec::to_pb(&frame())
}

fn err_of(m: pb::Frame) -> DecodeError {
    codec::decode(&m.encode_to_vec(), None).unwrap_err()
}

fn field_of(e: &DecodeError) -> Field {
    match e {
        DecodeError::Invalid { field, .. } => *field,
        other => panic!("expected an invalid-field error, got {other:?}"),
    }
}

#[test]
fn protobuf_round_trip() {
    let f = frame();
    let bytes = codec::encode(&f, Encoding::Protobuf);
    assert_eq!(codec::decode(&bytes, None).unwrap(), f);
    assert_eq!(
        codec::decode(&bytes, Some("application/x-protobuf")).unwrap(),
        f
    );
}

#[test]
fn json_round_trip_and_same_frame_as_protobuf() {
    let f = frame();
    let bytes = codec::encode(&f, Encoding::Json);
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(text.contains("\"lead\":\"V1\""), "{text}");
    assert_eq!(codec::decode(&bytes, None).unwrap(), f);
    assert_eq!(
        codec::decode(&bytes, Some("application/json; charset=utf-8")).unwrap(),
        f
    );
}

#[test]
fn json_accepts_lead_numbers_and_rejects_unknown_fields() {
    let json = r#"{"schema_version":1,"stream_id":"s","device_id":"d","patient_id":"p","seq":0,
        "t0_us":1763000000000000,"sample_rate_hz":500,"scale_nv":1000,
        "channels":[{"lead":64,"samples":[1,2,3]}]}"#;
    let f = codec::decode(json.as_bytes(), None).unwrap();
    assert_eq!(f.leads, vec![Lead::AVF]);
    assert_eq!(f.lead_off, vec![false]);
    let typo = json.replace("sample_rate_hz", "sample_rate");
    let e = codec::decode(typo.as_bytes(), None).unwrap_err();
    assert_eq!(e.kind(), "undecodable");
    assert!(e.to_string().contains("sample_rate"), "{e}");
    let bad_lead = json.replace("64", "\"V13\"");
    assert_eq!(
        field_of(&codec::decode(bad_lead.as_bytes(), None).unwrap_err()),
        Field::Lead
    );
}

#[test]
fn every_rule_names_its_field() {
    let cases: Vec<(&str, Mutation, Field)> = vec![
        (
            "version missing",
            Box::new(|m| m.schema_version = 0),
            Field::SchemaVersion,
        ),
        (
            "empty stream",
            Box::new(|m| m.stream_id.clear()),
            Field::StreamId,
        ),
        (
            "bad device",
            Box::new(|m| m.device_id = "a/b".into()),
            Field::DeviceId,
        ),
        (
            "long patient",
            Box::new(|m| m.patient_id = "p".repeat(200)),
            Field::PatientId,
        ),
        ("huge seq", Box::new(|m| m.seq = 1 << 60), Field::Seq),
        ("time zero", Box::new(|m| m.t0_us = 0), Field::T0Us),
        (
            "time far future",
            Box::new(|m| m.t0_us = i64::MAX),
            Field::T0Us,
        ),
        (
            "rate low",
            Box::new(|m| m.sample_rate_hz = 10),
            Field::SampleRateHz,
        ),
        (
            "rate high",
            Box::new(|m| m.sample_rate_hz = 100_000),
            Field::SampleRateHz,
        ),
        ("scale zero", Box::new(|m| m.scale_nv = 0), Field::ScaleNv),
        (
            "scale huge",
            Box::new(|m| m.scale_nv = 2_000_000),
            Field::ScaleNv,
        ),
        (
            "no channels",
            Box::new(|m| m.channels.clear()),
            Field::Channels,
        ),
        (
            "17 channels",
            Box::new(|m| {
                let c = m.channels[0].clone();
                m.channels = vec![c; 17];
            }),
            Field::Channels,
        ),
        (
            "unknown lead",
            Box::new(|m| m.channels[0].lead = 999),
            Field::Lead,
        ),
        (
            "duplicate lead",
            Box::new(|m| m.channels[1].lead = m.channels[0].lead),
            Field::Lead,
        ),
        (
            "ragged",
            Box::new(|m| {
                m.channels[2].samples.pop();
            }),
            Field::Samples,
        ),
        (
            "empty samples",
            Box::new(|m| m.channels.iter_mut().for_each(|c| c.samples.clear())),
            Field::Samples,
        ),
        (
            "too long",
            Box::new(|m| {
                m.channels
                    .iter_mut()
                    .for_each(|c| c.samples = vec![0; 2501])
            }),
            Field::Samples,
        ),
        (
            "absurd amplitude",
            Box::new(|m| m.channels[0].samples[5] = 200_000),
            Field::Samples,
        ),
    ];
    for (name, mutate, field) in cases {
        let mut m = pb_frame();
        mutate(&mut m);
        let e = err_of(m);
        assert_eq!(field_of(&e), field, "{name}: {e}");
        assert!(
            e.to_string().contains(field.name()),
            "{name}: message {e} does not name the field"
        );
        assert_ne!(e.kind(), "undecodable");
        assert!(DecodeError::KINDS.contains(&e.kind()));
    }
}

#[test]
fn lead_off_channel_may_rail() {
    let mut m = pb_frame();
    m.channels[1].samples[0] = i32::MAX; // lead II is flagged off
    assert!(codec::decode(&m.encode_to_vec(), None).is_ok());
}

/// The ±100 mV bound on the counts, at its edge: the largest count within it passes,
/// the next one either way is named, for scales that make the bound a whole count
/// and a fraction of one.
#[test]
fn sample_bound_at_its_edge() {
    for (scale, edge) in [
        (1000u32, 100_000i32),
        (3, 33_333_333),
        (7, 14_285_714),
        (1, 100_000_000),
    ] {
        for (v, ok) in [
            (edge, true),
            (-edge, true),
            (edge + 1, false),
            (-edge - 1, false),
        ] {
            let mut m = pb_frame();
            m.scale_nv = scale;
            m.channels[0].samples[3] = v;
            let got = codec::decode(&m.encode_to_vec(), None);
            assert_eq!(got.is_ok(), ok, "scale {scale}, count {v}");
            if let Err(e) = got {
                assert_eq!(field_of(&e), Field::Samples);
                assert!(e.to_string().contains(&format!("holds {v} counts")), "{e}");
            }
        }
    }
}

#[test]
fn other_errors() {
    let mut m = pb_frame();
    m.schema_version = 2;
    assert_eq!(err_of(m), DecodeError::UnsupportedVersion(2));
    assert_eq!(
        codec::decode(b"\xff\xff\xff", None).unwrap_err().kind(),
        "undecodable"
    );
    assert_eq!(
        codec::decode(b"{not json", None).unwrap_err().kind(),
        "undecodable"
    );
    assert_eq!(
        codec::decode(b"x", Some("text/csv")).unwrap_err(),
        DecodeError::UnsupportedContentType("text/csv".into())
    );
    let big = vec![0u8; codec::MAX_FRAME_BYTES + 1];
    assert_eq!(codec::decode(&big, None).unwrap_err().kind(), "too_large");
}

#[test]
fn proto_file_matches_prost_messages() {
    let proto = include_str!("../proto/frame_v1.proto");
    let expected = [
        ("uint32 schema_version", 1),
        ("string stream_id", 2),
        ("string device_id", 3),
        ("string patient_id", 4),
        ("uint64 seq", 5),
        ("int64 t0_us", 6),
        ("uint32 sample_rate_hz", 7),
        ("uint32 scale_nv", 8),
        ("repeated Channel channels", 9),
        ("uint32 lead", 1),
        ("bool lead_off", 2),
        ("repeated sint32 samples", 3),
        ("repeated Waveform waveforms", 10),
        ("uint32 code", 1),
        ("uint32 unit", 2),
        ("uint32 sample_rate_hz", 3),
        ("float scale", 4),
        ("float offset", 5),
        ("repeated sint32 samples", 6),
        ("repeated uint32 pace_pulses", 11),
    ];
    for (decl, tag) in expected {
        assert!(
            proto.contains(&format!("{decl} = {tag};")),
            "proto lacks `{decl} = {tag}`"
        );
    }
    // The prost message writes those tags: decode a hand-built message.
    let hand = [
        0x08, 0x01, // schema_version = 1
        0x28, 0x07, // seq = 7
        0x38, 0xFA, 0x01, // sample_rate_hz = 250
        0x4A, 0x06, 0x08, 0x02, 0x1A, 0x02, 0x01,
        0x02, // channels { lead = 2, samples = [-1, 1] }
    ];
    let m = pb::Frame::decode(&hand[..]).unwrap();
    assert_eq!((m.schema_version, m.seq, m.sample_rate_hz), (1, 7, 250));
    assert_eq!(m.channels[0].lead, 2);
    assert_eq!(m.channels[0].samples, vec![-1, 1]);
}

proptest! {
    /// Packed samples of every length in bytes, mixed in runs and alone (the fast
    /// path takes eight bytes of one- or two-byte values at once): what prost reads.
    #[test]
    fn packed_samples_of_any_size_decode_as_prost_does(
        runs in proptest::collection::vec(
            (prop_oneof![-64i32..64, -8192i32..8192, -100_000i32..100_000, any::<i32>()], 1usize..20),
            1..12,
        ),
        leads in 1usize..4,
    ) {
        let samples: Vec<i32> = runs
            .iter()
            .enumerate()
            .flat_map(|(r, &(v, len))| (0..len).map(move |i| v.wrapping_add((i as i32 - 3) * (r as i32 % 5))))
            .collect();
        let mut m = valid_pb();
        m.scale_nv = 1;
        m.channels.truncate(leads);
        for c in &mut m.channels {
            c.samples = samples.clone();
        }
        let bytes = m.encode_to_vec();
        prop_assert_eq!(fast(&bytes), reference(&bytes));
    }

    /// Values of one, two and more bytes in any order, so that every mix of them
    /// within eight bytes (and a long value at every position) meets the fast path;
    /// all within the ±100 mV bound at 1 nV, so that every frame decodes.
    #[test]
    fn packed_samples_of_mixed_sizes_decode_as_prost_does(
        samples in proptest::collection::vec(
            prop_oneof![8 => -64i32..64, 8 => -8192i32..8192, 1 => -1_048_576i32..1_048_576, 1 => -100_000_000i32..100_000_000],
            1..80,
        ),
    ) {
        let mut m = valid_pb();
        m.scale_nv = 1;
        m.channels.truncate(1);
        m.channels[0].samples = samples;
        let bytes = m.encode_to_vec();
        let got = fast(&bytes);
        prop_assert!(got.is_ok(), "{got:?}");
        prop_assert_eq!(got, reference(&bytes));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec::decode(&bytes, None);
        let _ = codec::decode(&bytes, Some("application/json"));
    }

    #[test]
    fn arbitrary_fields_decode_or_name_an_error(
        version in prop_oneof![Just(1u32), any::<u32>()],
        stream in "[a-z0-9/ ]{0,10}",
        seq in any::<u64>(),
        t0 in prop_oneof![Just(1_763_000_000_000_000i64), any::<i64>()],
        rate in prop_oneof![Just(250u32), 0u32..20_000],
        scale in prop_oneof![Just(1000u32), any::<u32>()],
        leads in proptest::collection::vec(0u32..70, 0..18),
        n in 0usize..40,
        amp in any::<i32>(),
        off in any::<bool>(),
    ) {
        let m = pb::Frame {
            schema_version: version,
            stream_id: stream,
            device_id: "d".into(),
            patient_id: "p".into(),
            seq,
            t0_us: t0,
            sample_rate_hz: rate,
            scale_nv: scale,
            channels: leads.iter().map(|&l| pb::Channel { lead: l, lead_off: off, samples: vec![amp; n] }).collect(),
            waveforms: Vec::new(),
            pace_pulses: Vec::new(),
        };
        for enc in [Encoding::Protobuf, Encoding::Json] {
            let bytes = match enc {
                Encoding::Protobuf => m.encode_to_vec(),
                Encoding::Json => serde_json::to_vec(&serde_json::json!({
                    "schema_version": m.schema_version, "stream_id": m.stream_id, "device_id": m.device_id,
                    "patient_id": m.patient_id, "seq": m.seq, "t0_us": m.t0_us,
                    "sample_rate_hz": m.sample_rate_hz, "scale_nv": m.scale_nv,
                    "channels": m.channels.iter().map(|c| serde_json::json!({"lead": c.lead, "lead_off": c.lead_off, "samples": c.samples})).collect::<Vec<_>>(),
                })).unwrap(),
            };
            match codec::decode(&bytes, None) {
                Ok(f) => {
                    // A valid frame survives a round trip in both encodings.
                    prop_assert_eq!(&codec::decode(&codec::encode(&f, Encoding::Protobuf), None).unwrap(), &f);
                    prop_assert_eq!(&codec::decode(&codec::encode(&f, Encoding::Json), None).unwrap(), &f);
                }
                Err(e) => prop_assert!(DecodeError::KINDS.contains(&e.kind()), "{e}"),
            }
        }
    }
}

/// What prost's generated decoder and `codec::validate` make of protobuf bytes: the
/// reference the hand-written fast path of `codec::decode` must agree with.
fn reference(bytes: &[u8]) -> Result<ecg_types::Frame, &'static str> {
    pb::Frame::decode(bytes)
        .map_err(|_| "undecodable")
        .and_then(|m| codec::validate(m).map_err(|e| e.kind()))
}

fn fast(bytes: &[u8]) -> Result<ecg_types::Frame, &'static str> {
    codec::decode(bytes, Some(codec::CONTENT_TYPE_PROTOBUF)).map_err(|e| e.kind())
}

/// A valid 3-lead frame's message.
fn valid_pb() -> pb::Frame {
    pb::Frame {
        schema_version: 1,
        stream_id: "s".into(),
        device_id: "d".into(),
        patient_id: "p".into(),
        seq: 7,
        t0_us: 1_763_000_000_000_000,
        sample_rate_hz: 250,
        scale_nv: 1000,
        channels: [1u32, 2, 61]
            .iter()
            .enumerate()
            .map(|(i, &l)| pb::Channel {
                lead: l,
                lead_off: false,
                samples: (0..50).map(|k| (k * 37 - 900) * (i as i32 + 1)).collect(),
            })
            .collect(),
        waveforms: Vec::new(),
        pace_pulses: Vec::new(),
    }
}

/// [`valid_pb`] with the optional parts: a plethysmogram at half the ECG's rate and
/// three pacemaker pulses.
fn valid_pb_with_pulses_and_pace() -> pb::Frame {
    pb::Frame {
        waveforms: vec![pb::Waveform {
            code: 150_452,
            unit: 512,
            sample_rate_hz: 125,
            scale: 0.001,
            offset: 0.0,
            samples: (0..25).map(|k| 1500 + k * 13).collect(),
        }],
        pace_pulses: vec![3, 20, 41],
        ..valid_pb()
    }
}

#[test]
fn fast_path_reads_unpacked_samples_and_skips_unknown_fields() {
    let m = valid_pb();
    let want = reference(&m.encode_to_vec()).unwrap();
    // The same message with samples unpacked (one varint field per sample) and an
    // unknown field of each wire type in the frame and in a channel.
    let mut b = Vec::new();
    let key = |b: &mut Vec<u8>, tag: u32, wt: u32| {
        prost::encoding::encode_varint(u64::from(tag << 3 | wt), b)
    };
    key(&mut b, 1, 0);
    prost::encoding::encode_varint(1, &mut b);
    for (tag, v) in [(2u32, "s"), (3, "d"), (4, "p")] {
        prost::encoding::string::encode(tag, &v.to_owned(), &mut b);
    }
    prost::encoding::uint64::encode(5, &7, &mut b);
    prost::encoding::int64::encode(6, &m.t0_us, &mut b);
    prost::encoding::uint32::encode(7, &250, &mut b);
    prost::encoding::uint32::encode(8, &1000, &mut b);
    prost::encoding::fixed64::encode(20, &99, &mut b);
    prost::encoding::fixed32::encode(21, &99, &mut b);
    prost::encoding::string::encode(22, &"x".to_owned(), &mut b);
    prost::encoding::uint32::encode(23, &5, &mut b);
    for c in &m.channels {
        let mut cb = Vec::new();
        prost::encoding::uint32::encode(1, &c.lead, &mut cb);
        prost::encoding::string::encode(9, &"unknown".to_owned(), &mut cb);
        for s in &c.samples {
            prost::encoding::sint32::encode(3, s, &mut cb);
        }
        prost::encoding::message::encode(9, &RawBytes(cb), &mut b);
    }
    assert_eq!(reference(&b), Ok(want.clone()), "prost reads it");
    assert_eq!(fast(&b), Ok(want));
}

/// Pre-encoded message bytes (for building test payloads field by field).
#[derive(Debug, Default, Clone, PartialEq)]
struct RawBytes(Vec<u8>);

impl prost::Message for RawBytes {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        buf.put_slice(&self.0);
    }
    fn merge_field(
        &mut self,
        _tag: u32,
        _wire_type: prost::encoding::WireType,
        _buf: &mut impl prost::bytes::Buf,
        _ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // Encode only: decoding reads nothing.
        Ok(())
    }
    fn encoded_len(&self) -> usize {
        self.0.len()
    }
    fn clear(&mut self) {
        self.0.clear();
    }
}

proptest! {
    /// On any bytes (valid frames, and valid frames with bytes flipped or cut) the fast
    /// path accepts exactly what prost + validate accept, with the same frame, and
    /// rejects the rest with the same error kind.
    #[test]
    fn fast_path_agrees_with_prost(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<usize>()),
        noise in proptest::collection::vec(any::<u8>(), 0..64),
        use_noise in any::<bool>(),
        optional_parts in any::<bool>(),
    ) {
        let mut b = if use_noise {
            noise
        } else if optional_parts {
            valid_pb_with_pulses_and_pace().encode_to_vec()
        } else {
            valid_pb().encode_to_vec()
        };
        for (at, v) in flips {
            if !b.is_empty() {
                let i = at % b.len();
                b[i] = v;
            }
        }
        if let Some(c) = cut {
            b.truncate(c % (b.len() + 1));
        }
        let (want, got) = (reference(&b), fast(&b));
        match (&want, &got) {
            (Ok(w), Ok(g)) => prop_assert_eq!(w, g),
            (Err(w), Err(g)) => prop_assert_eq!(w, g),
            _ => prop_assert!(false, "prost {want:?} vs fast {got:?} on {b:?}"),
        }
    }
}

/// A frame with pulsatile waveforms: the plethysmogram at 125 Hz and arterial pressure
/// at 250 Hz beside 250 Hz ECG.
fn frame_with_pulses() -> Frame {
    let mut f = frame();
    f.pulses = vec![
        ecg_types::PulseWave {
            kind: ecg_types::PulseKind::Pleth,
            sample_rate: SampleRate(125),
            samples: (0..125).map(|i| (i as f32 * 0.05).sin() * 2.0).collect(),
        },
        ecg_types::PulseWave {
            kind: ecg_types::PulseKind::ArterialPressure,
            sample_rate: SampleRate(250),
            samples: (0..250)
                .map(|i| 80.0 + 40.0 * (i as f32 * 0.025).sin())
                .collect(),
        },
    ];
    f
}

#[test]
fn pulsatile_waveforms_round_trip_in_both_encodings() {
    let f = frame_with_pulses();
    for enc in [Encoding::Protobuf, Encoding::Json] {
        let got = codec::decode(&codec::encode(&f, enc), None).unwrap();
        assert_eq!(got.samples, f.samples);
        assert_eq!(got.pulses.len(), 2, "{enc:?}");
        for (g, w) in got.pulses.iter().zip(&f.pulses) {
            assert_eq!((g.kind, g.sample_rate), (w.kind, w.sample_rate));
            let tol = codec::waveform_encoding_scale(w.kind) / 2.0 + 1e-4;
            for (a, b) in g.samples.iter().zip(&w.samples) {
                assert!((a - b).abs() <= tol, "{enc:?} {a} vs {b}");
            }
        }
    }
    // A reader that predates waveforms skips field 10: the same ECG frame.
    let mut old = codec::to_pb(&f);
    let bytes = old.encode_to_vec();
    old.waveforms.clear();
    let without = codec::decode(&old.encode_to_vec(), None).unwrap();
    let with = codec::decode(&bytes, None).unwrap();
    assert_eq!(with.samples, without.samples);
    assert!(without.pulses.is_empty());
}

/// Pacemaker pulses (field 11, a v1 extension): they round-trip in both encodings and
/// in both protobuf forms (packed, the default, and one varint field per offset), the
/// fast path reads them as prost does, a frame without them has none, and offsets out
/// of order or beyond the frame are rejected naming the field.
#[test]
fn pace_pulses_round_trip_and_are_checked() {
    let mut f = frame();
    f.pace = vec![0, 3, 120, 249];
    for (enc, ct) in [
        (Encoding::Protobuf, codec::CONTENT_TYPE_PROTOBUF),
        (Encoding::Json, codec::CONTENT_TYPE_JSON),
    ] {
        let back = codec::decode(&codec::encode(&f, enc), Some(ct)).unwrap();
        assert_eq!(back, f, "{enc:?}");
    }
    let packed = codec::to_pb(&f).encode_to_vec();
    assert_eq!(fast(&packed), reference(&packed));
    // Unpacked: the frame without them, then a varint field 11 per offset.
    let mut unpacked = codec::to_pb(&frame()).encode_to_vec();
    for p in &f.pace {
        prost::encoding::uint32::encode(11, p, &mut unpacked);
    }
    assert_eq!(fast(&unpacked).unwrap().pace, f.pace);
    assert_eq!(fast(&unpacked), reference(&unpacked));
    assert!(
        codec::decode(&codec::encode(&frame(), Encoding::Protobuf), None)
            .unwrap()
            .pace
            .is_empty()
    );
    for (pace, problem) in [
        (vec![10, 10], "must increase (10 then 10)"),
        (vec![20, 10], "must increase (20 then 10)"),
        (
            vec![250],
            "offset 250 is beyond the frame's 250 samples per lead",
        ),
    ] {
        let mut m = pb_frame();
        m.pace_pulses = pace;
        let e = err_of(m);
        assert_eq!(field_of(&e), Field::PacePulses, "{e}");
        assert_eq!(e.kind(), "bad_pace_pulses", "{e}");
        assert!(e.to_string().contains(problem), "{e}");
    }
}

#[test]
fn bad_waveforms_are_rejected_naming_the_field() {
    type Edit = Box<dyn Fn(&mut pb::Waveform)>;
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|w| w.code = 150_000), "not a supported waveform"),
        (Box::new(|w| w.unit = 3872), "unit code 3872"),
        (Box::new(|w| w.sample_rate_hz = 5), "outside 10..=16000"),
        (
            Box::new(|w| w.scale = 0.0),
            "scale must be finite and positive",
        ),
        (
            Box::new(|w| w.scale = f32::NAN),
            "scale must be finite and positive",
        ),
        (
            Box::new(|w| w.samples.pop().map(|_| ()).unwrap_or(())),
            "has 124 samples",
        ),
        (Box::new(|w| w.sample_rate_hz = 100), "has 125 samples"),
        (
            Box::new(|w| w.sample_rate_hz = 333),
            "whole number of samples",
        ),
    ];
    for (edit, want) in cases {
        let mut m = codec::to_pb(&frame_with_pulses());
        edit(&mut m.waveforms[0]);
        let e = err_of(m);
        assert_eq!(e.kind(), "bad_waveform", "{e}");
        assert!(e.to_string().contains(want), "{e} lacks {want:?}");
        assert!(e.to_string().starts_with("field waveforms"), "{e}");
    }
    let mut m = codec::to_pb(&frame_with_pulses());
    m.waveforms[1].samples[7] = 50_000; // 500 mmHg
    assert!(err_of(m).to_string().contains("outside -50..=400 mmHg"));
    let mut m = codec::to_pb(&frame_with_pulses());
    let dup = m.waveforms[0].clone();
    m.waveforms.push(dup);
    assert!(err_of(m).to_string().contains("pleth appears twice"));
}

/// The JSON examples in docs/wire-format.md are valid frames as they stand.
#[test]
fn the_documented_json_examples_decode() {
    let doc = include_str!("../../docs/wire-format.md");
    let examples: Vec<&str> = doc
        .split("```json")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    assert_eq!(examples.len(), 3);
    let plain = codec::decode(examples[0].as_bytes(), Some(codec::CONTENT_TYPE_JSON)).unwrap();
    assert!(plain.pulses.is_empty());
    assert!(plain.pace.is_empty());
    let with = codec::decode(examples[1].as_bytes(), Some(codec::CONTENT_TYPE_JSON)).unwrap();
    assert_eq!(with.pulses.len(), 2);
    assert!((with.pulses[1].samples[0] - 81.2).abs() < 1e-3);
    let paced = codec::decode(examples[2].as_bytes(), Some(codec::CONTENT_TYPE_JSON)).unwrap();
    assert_eq!(paced.pace, vec![1]);
}
