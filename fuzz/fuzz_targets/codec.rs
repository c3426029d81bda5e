//! Wire format v1 frame decoder (`ecg_ingest::codec::decode`), protobuf and JSON.
//! The first byte picks the `content-type` header (none, protobuf, JSON, JSON with a
//! charset, an unsupported one); the rest is the Kafka record's value. A frame that
//! decodes must re-encode, in both encodings, to bytes that decode to the same frame.
//! As protobuf, the decoder (its own pass over the bytes, with a fast path for packed
//! samples) must also agree with prost's decoding of the generated message followed by
//! the same validation: the same frame, or an error of the same kind.
#![no_main]

use ecg_ingest::codec::{self, pb, Encoding, CONTENT_TYPE_JSON, CONTENT_TYPE_PROTOBUF};
use libfuzzer_sys::fuzz_target;
use prost::Message;

const CONTENT_TYPES: [Option<&str>; 5] = [
    None,
    Some(CONTENT_TYPE_PROTOBUF),
    Some(CONTENT_TYPE_JSON),
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    let ct = CONTENT_TYPES[usize::from(sel) % CONTENT_TYPES.len()];
    let decoded = codec::decode(bytes, ct);
    if ct == Some(CONTENT_TYPE_PROTOBUF) {
        let reference = pb::Frame::decode(bytes)
            .map_err(|_| "undecodable")
            .and_then(|m| codec::validate(m).map_err(|e| e.kind()));
        match (&decoded, &reference) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "decoder and prost disagree"),
            (Err(got), Err(want)) => assert_eq!(got.kind(), *want, "different errors"),
            _ => panic!("decoder {decoded:?} but prost and validation {reference:?}"),
        }
    }
    if let Ok(frame) = decoded {
        for enc in [Encoding::Protobuf, Encoding::Json] {
            let again = codec::encode(&frame, enc);
            let back = codec::decode(&again, Some(enc.content_type()))
                .expect("a decoded frame re-encodes to a valid frame");
            assert_eq!(back, frame, "{enc:?} round trip changed the frame");
        }
    }
});
