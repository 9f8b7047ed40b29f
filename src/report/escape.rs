//! Strings from the wire (close reasons, paths, headers) are attacker-controlled: before they reach a
//! terminal, every control character (C0, DEL, C1, and so ANSI escape sequences) and bidirectional
//! override is shown as an escape instead of being interpreted.

use std::borrow::Cow;

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// Escapes for a terminal: `\n`, `\t`, `\r`, `\\` and `\u{..}` for the rest.
pub fn terminal(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| needs_escape(c) || c == '\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Shortens to at most `max` characters, marking the cut.
pub fn clip(s: &str, max: usize) -> Cow<'_, str> {
    if s.chars().count() <= max {
        Cow::Borrowed(s)
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        Cow::Owned(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_and_control_characters_are_neutralised() {
        assert_eq!(terminal("plain"), "plain");
        assert_eq!(terminal("\x1b[31mred\x1b[0m"), "\\u{1b}[31mred\\u{1b}[0m");
        assert_eq!(terminal("a\nb\\c"), "a\\nb\\\\c");
        assert_eq!(terminal("\u{202e}evil"), "\\u{202e}evil");
        assert_eq!(terminal("\u{9b}2J"), "\\u{9b}2J");
    }

    #[test]
    fn clip_marks_the_cut() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }
}
