//! Free text people type (notes, silence comments and matchers) before it is stored
//! and shown: bounded in length, and with control characters and bidirectional
//! formatting characters neutralised, so that what a reviewer reads in the audit
//! trail is what was typed (a right-to-left override can make "checked, fine" show
//! as something else; an escape sequence can rewrite a terminal).

/// Longest note with an acknowledgement, escalation or resolution, in bytes.
pub const MAX_NOTE_BYTES: usize = 2000;
/// Longest silence comment, in bytes.
pub const MAX_COMMENT_BYTES: usize = 2000;
/// Longest silence matcher value (a patient or stream id), in bytes.
pub const MAX_MATCHER_BYTES: usize = 256;

/// What replaces a neutralised character: visible, so a reader sees that something
/// was there.
pub const REPLACEMENT: char = '\u{FFFD}';

/// True for the characters that [`neutralise`] replaces: control characters (C0 but
/// line feed, DEL, C1) and the Unicode bidirectional formatting characters (ALM,
/// LRM, RLM, LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI).
pub fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with line breaks normalised to `\n`, tabs to spaces and every other
/// [`is_unsafe`] character replaced by [`REPLACEMENT`].
pub fn neutralise(s: &str) -> String {
    let s = s.replace("\r\n", "\n").replace('\r', "\n");
    s.chars()
        .map(|c| match c {
            '\t' => ' ',
            c if is_unsafe(c) => REPLACEMENT,
            c => c,
        })
        .collect()
}

/// `Err` naming `field` when `s` is longer than `max` bytes.
///
/// # Errors
/// The message for the caller.
pub fn check_len(field: &str, s: &str, max: usize) -> Result<(), String> {
    if s.len() > max {
        Err(format!("{field} is longer than {max} bytes"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutralises_controls_and_bidi_but_keeps_text_and_line_breaks() {
        assert_eq!(neutralise("checked, fine"), "checked, fine");
        assert_eq!(neutralise("ünï 5 % ± µ — 心"), "ünï 5 % ± µ — 心");
        assert_eq!(neutralise("a\r\nb\rc\nd\te"), "a\nb\nc\nd e");
        assert_eq!(neutralise("x\u{202E}y\u{202C}"), "x\u{FFFD}y\u{FFFD}");
        assert_eq!(
            neutralise("\u{1b}[2J\u{7}\u{0}\u{7f}\u{85}"),
            "\u{FFFD}[2J\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}"
        );
        for c in [
            '\u{061C}', '\u{200E}', '\u{200F}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
        ] {
            assert_eq!(neutralise(&c.to_string()), "\u{FFFD}", "{:04x}", c as u32);
        }
        assert!(!neutralise("\u{202A}\u{202B}\u{202D}")
            .chars()
            .any(is_unsafe));
    }

    #[test]
    fn lengths_are_bytes() {
        assert!(check_len("note", &"é".repeat(1000), MAX_NOTE_BYTES).is_ok());
        let e = check_len("note", &"é".repeat(1001), MAX_NOTE_BYTES).unwrap_err();
        assert_eq!(e, "note is longer than 2000 bytes");
    }
}
