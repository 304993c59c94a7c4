//! Query strings for the history endpoints: durations checked before anything is sent, and
//! values percent-encoded.

use std::time::Duration;

/// A `--since` that is not a duration, and how to write one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("\"{text}\" is not a duration ({reason}); write it like 30s, 15m, 2h or 7d")]
pub struct BadDuration {
    text: String,
    reason: humantime::DurationError,
}

/// Parses a `--since` duration ("90s", "2h", "7d"), saying what is wrong with a bad one.
pub fn parse_duration(text: &str) -> Result<Duration, BadDuration> {
    humantime::parse_duration(text.trim()).map_err(|reason| BadDuration {
        text: text.to_string(),
        reason,
    })
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `path?k=v&...` of the pairs whose value is present.
pub fn with_query(path: &str, pairs: &[(&str, Option<String>)]) -> String {
    let query: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_duration_says_how_to_write_one() {
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        let e = parse_duration("yesterday").expect_err("bad").to_string();
        assert!(e.contains("\"yesterday\"") && e.contains("2h"), "{e}");
    }

    #[test]
    fn values_are_percent_encoded_and_absent_ones_left_out() {
        assert_eq!(
            with_query("/x", &[("node", Some("a b/ü".into())), ("since", None)]),
            "/x?node=a%20b%2F%C3%BC"
        );
        assert_eq!(with_query("/x", &[("since", None)]), "/x");
    }
}
