//! Text that came from elsewhere (another host's gossip, a user of the API), made safe to put
//! on a terminal.
//!
//! Kv values, silence reasons, service and node names travel through gossip and the API as
//! they were written. Printed raw, an ESC starts a terminal control sequence (clear the
//! screen, retitle the window, fake a line of output), a CR overwrites the line it is on and
//! an LF starts a fake one; bidirectional overrides reorder what is shown ("Trojan Source",
//! CVE-2021-42574). The CLI's tables and lines for people therefore pass every such string
//! through [`visible`], which writes these characters as escapes instead: `\n`, `\r`, `\t`,
//! `\x1b` for the other C0 controls and DEL, `\u{85}` for C1 controls and invisible format
//! characters. JSON output needs none of this: JSON escapes control characters itself, and
//! scripts get the exact string.
//!
//! The escapes are for reading, not for parsing back: a backslash is shown as it is, so a
//! value that shows `\n` may hold a line feed or the two characters; `--json` tells.
//!
//! Names that become file names (services) or that every host shows (trees) are refused at
//! config load when [`needs_escape`] holds for one of their characters.

use std::borrow::Cow;
use std::fmt::Write;

/// True for a character a terminal would act on or not show: the C0 and C1 controls, DEL,
/// the bidirectional marks, embeddings, overrides and isolates, and the line and paragraph
/// separators.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with every character of [`needs_escape`] written as a visible escape; `s` itself
/// (borrowed) when it has none.
pub fn visible(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && needs_escape(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_shown_unchanged_and_not_copied() {
        for s in ["mythbox", "häus 1.5 GiB", "a\\nb", ""] {
            assert!(matches!(visible(s), Cow::Borrowed(b) if b == s), "{s:?}");
        }
    }

    #[test]
    fn terminal_controls_are_shown_as_escapes() {
        let cases = [
            ("\x1b[2Jgone", "\\x1b[2Jgone"),
            ("ok\rFAKE", "ok\\rFAKE"),
            ("line\nnbwatch: fake", "line\\nnbwatch: fake"),
            ("a\tb", "a\\tb"),
            ("bell\x07del\x7f nul\0", "bell\\x07del\\x7f nul\\x00"),
            ("c1\u{9b}31m", "c1\\u{9b}31m"),
            ("abc\u{202e}fed", "abc\\u{202e}fed"),
            ("iso\u{2066}late\u{2069}", "iso\\u{2066}late\\u{2069}"),
            ("sep\u{2028}arated", "sep\\u{2028}arated"),
        ];
        for (raw, shown) in cases {
            assert_eq!(visible(raw), shown, "{raw:?}");
        }
    }

    #[test]
    fn what_visible_shows_holds_nothing_a_terminal_acts_on() {
        // Every character below U+0100 and the format characters, one string.
        let all: String = (0u32..0x100)
            .chain(0x2000..0x2070)
            .filter_map(char::from_u32)
            .collect();
        let shown = visible(&all);
        assert!(!shown.chars().any(needs_escape), "{shown:?}");
        assert_eq!(
            visible(&shown),
            shown,
            "escaping twice changes nothing more"
        );
    }
}
