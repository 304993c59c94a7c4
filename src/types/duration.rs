//! Durations as people write them (`"500ms"`, `"2h"`, `"7d"`, humantime's form), parsed in
//! one place with one ceiling: the CLI, the API and the config all come through [`parse`].
//!
//! Why a ceiling: a duration becomes a time (`now + ttl`, `now + for`) that is gossiped to
//! every node and formatted by every handler; `--for 9000y` once made a time no RFC 3339
//! formatter can write. [`MAX`], 100 years, is far beyond any silence, TTL, retention or
//! timeout anyone means, and `now + MAX` stays below [`super::Time::MAX`] until the year 9899.

use std::time::Duration;

/// The longest duration accepted anywhere: 100 years of 365.25 days (humantime's year).
pub const MAX: Duration = Duration::from_secs(100 * 31_557_600);
/// [`MAX`] as people write it.
pub const MAX_TEXT: &str = "100y";

/// Why a duration string is refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DurationError {
    #[error("\"{text}\" is not a duration ({reason}); write it like 500ms, 30s, 2h or 7d")]
    Unparsable {
        text: String,
        reason: humantime::DurationError,
    },
    #[error("\"{text}\" is longer than {MAX_TEXT}, the longest duration nbwatch accepts")]
    TooLong { text: String },
}

/// Parses `text` (surrounding white space ignored); at most [`MAX`].
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let d = humantime::parse_duration(text.trim()).map_err(|reason| DurationError::Unparsable {
        text: text.to_string(),
        reason,
    })?;
    if d > MAX {
        return Err(DurationError::TooLong {
            text: text.to_string(),
        });
    }
    Ok(d)
}

/// `d` as [`parse`] reads it back (`"1h 30m"`); total for every `Duration`.
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
