//! The HL7 receiver's side of MLLP (`ecg_alerts::receivers::hl7`): the frame finder
//! run over a byte stream the way the receiver reads a peer's answer, the ACK parser on
//! every message found, and the field escaping (escape/unescape round trip).
#![no_main]

use ecg_alerts::receivers::hl7;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Frames, one after the other, as a peer might send them.
    let mut rest = data;
    let mut frames = 0usize;
    while let Some((msg, used)) = hl7::mllp_unframe(rest) {
        assert!(used <= rest.len() && msg.len() + 3 <= used);
        // The ACK parser: against a control id taken from the input and a fixed one.
        let id = std::str::from_utf8(&rest[..used.min(8)]).unwrap_or("C1");
        let _ = hl7::ack_outcome(msg, id);
        let _ = hl7::ack_outcome(msg, "C1");
        rest = &rest[used..];
        frames += 1;
    }
    assert!(frames <= data.len() / 3);
    // The whole input as one unframed ACK, too.
    let _ = hl7::ack_outcome(data, "C1");
    // A framed message unframes to itself.
    let framed = hl7::mllp_frame(data);
    if !data.windows(2).any(|w| w == [0x1c, 0x0d]) {
        let (msg, used) = hl7::mllp_unframe(&framed).expect("a framed message unframes");
        assert_eq!((msg, used), (data, framed.len()));
    }
    // Escaping: unescape(escape(s)) == s, and the escaped text has no delimiter.
    let s = String::from_utf8_lossy(data);
    let e = hl7::escape(&s);
    assert!(!e.contains(['|', '^', '~', '&', '\r', '\n']));
    assert_eq!(hl7::unescape(&e), s);
    let _ = hl7::unescape(&s);
});
