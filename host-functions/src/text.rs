//! Guest-supplied text as messages carry it: bounded, so a name or an
//! answer the guest chose cannot make a log line or a CNI error huge.

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn clip(mut s: String, max: usize) -> String {
    s.truncate(boundary(&s, max));
    s
}

/// The most of a value a guest chose (a name, an address, a key) that a
/// message quotes.
const QUOTED_BYTES: usize = 64;

/// `s` as a message quotes a value the guest chose: its first
/// [`QUOTED_BYTES`] bytes.
pub fn quoted(s: &str) -> &str {
    head(s, QUOTED_BYTES)
}

/// A parser's message about text a guest or a config chose, cut to 256
/// bytes: serde's messages quote the offending value whole ("invalid
/// type: string \"...\"").
pub fn parser_message(e: impl std::fmt::Display) -> String {
    clip(e.to_string(), 256)
}

/// The first `max` bytes of `s` (at a character boundary).
pub fn head(s: &str, max: usize) -> &str {
    &s[..boundary(s, max)]
}

fn boundary(s: &str, max: usize) -> usize {
    let mut at = max.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_a_character_boundary() {
        assert_eq!(clip("abcdef".into(), 3), "abc");
        assert_eq!(clip("ab".into(), 3), "ab");
        assert_eq!(head("aé", 2), "a");
        assert_eq!(head("aé", 3), "aé");
    }
}
