//! Writing text as a JSON string, byte for byte as serde_json writes it, for the one string on
//! the request path that is long: a tool result's text, which is the API's whole JSON body.
//!
//! Why not serde_json's writer: it looks every byte up in a table and writes through
//! `io::Write`, with a `memcpy` call for each run between escapes; this copies and tests eight
//! bytes at a time for the three kinds that need an escape (`"`, `\` and control characters),
//! straight into the reply being built.

/// Eight lanes of 0x01 and of 0x80: a byte value broadcast to a word is `ONES * value`.
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Appends `text` to `out` as a JSON string, quotes included.
///
/// Each step copies eight bytes whole (one store, where copying the run up to the next escape
/// was a `memcpy` call: a JSON body has a `"` about every eight bytes), then takes back the
/// bytes from the first one that needs an escape and writes the escape instead.
pub fn push(out: &mut String, text: &str) {
    let input = text.as_bytes();
    let mut bytes = std::mem::take(out).into_bytes();
    bytes.reserve(text.len() + text.len() / 4 + 2);
    bytes.push(b'"');
    let mut at = 0;
    while let Some(chunk) = input.get(at..at + 8) {
        let word: [u8; 8] = chunk.try_into().unwrap_or_default();
        bytes.extend_from_slice(&word);
        let flagged = needs_escape(u64::from_le_bytes(word));
        if flagged == 0 {
            at += 8;
            continue;
        }
        // Little-endian: the lowest flagged lane is the first such byte of the eight.
        let lane = (flagged.trailing_zeros() / 8) as usize;
        bytes.truncate(bytes.len() - 8 + lane);
        push_escape(&mut bytes, word[lane]);
        at += lane + 1;
    }
    for &byte in &input[at..] {
        if byte < 0x20 || byte == b'"' || byte == b'\\' {
            push_escape(&mut bytes, byte);
        } else {
            bytes.push(byte);
        }
    }
    bytes.push(b'"');
    // Valid: `out` was, `text` is, every cut is before an ASCII byte and every escape is ASCII.
    *out = match String::from_utf8(bytes) {
        Ok(valid) => valid,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    };
}

/// The high bit of each lane whose byte is below 0x20, `"` or `\`. A lane above a flagged one
/// may be flagged falsely (the subtraction's borrow), never one below it: the lowest flag is
/// always a true one, which is all `push` reads.
fn needs_escape(word: u64) -> u64 {
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let quote = quote.wrapping_sub(ONES) & !quote;
    let backslash = backslash.wrapping_sub(ONES) & !backslash;
    (control | quote | backslash) & HIGHS
}

#[inline(always)]
fn push_escape(out: &mut Vec<u8>, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = match byte {
        b'"' => b'"',
        b'\\' => b'\\',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        0x08 => b'b',
        0x0c => b'f',
        _ => {
            let unicode = [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ];
            out.extend_from_slice(&unicode);
            return;
        }
    };
    out.extend_from_slice(&[b'\\', short]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(text: &str) -> String {
        let mut out = String::new();
        push(&mut out, text);
        out
    }

    fn check(text: &str) {
        assert_eq!(
            quoted(text),
            serde_json::to_string(text).unwrap(),
            "text {text:?}"
        );
    }

    #[test]
    fn every_ascii_byte_is_written_as_serde_json_writes_it() {
        for byte in 0u8..=0x7f {
            let one = char::from(byte).to_string();
            check(&one);
            // At every lane of a word and in the tail after it.
            for before in 0..17 {
                check(&format!(
                    "{}{one}{}",
                    "a".repeat(before),
                    "b".repeat(16 - before)
                ));
            }
        }
    }

    #[test]
    fn mixed_text_at_every_length_and_alignment_matches_serde_json() {
        // Non-ASCII lanes (high bit set) must never be flagged, nor hide a flag below them.
        let pieces = [
            "a", "\"", "\\", "\n", "\u{1}", "\u{1f}", " ", "~", "\u{7f}", "é", "€", "😀", "/",
            "\u{80}", "\u{ffff}", "\t", "!", "#", "[", "]", "{", "}", ":",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..4_000 {
            let mut text = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut bits = state;
            for _ in 0..(state % 40) {
                text.push_str(pieces[(bits % pieces.len() as u64) as usize]);
                bits = bits.rotate_right(5) ^ state;
            }
            check(&text);
        }
    }

    #[test]
    fn a_json_body_round_trips() {
        let body =
            r#"{"id":"tsk_1","title":"Torque \"the\" bolts\\","steps":["a\nb","c\td"],"n":1}"#;
        let text: String = serde_json::from_str(&quoted(body)).unwrap();
        assert_eq!(text, body);
        check(body);
        check("");
        let mut out = String::from("é:");
        push(&mut out, "x\"");
        assert_eq!(out, "é:\"x\\\"\"");
    }
}
