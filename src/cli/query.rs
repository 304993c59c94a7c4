//! Query strings for the history endpoints: values percent-encoded. (Durations are checked
//! before anything is sent, by `types::duration::parse` as clap's value parser.)

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
    fn values_are_percent_encoded_and_absent_ones_left_out() {
        assert_eq!(
            with_query("/x", &[("node", Some("a b/ü".into())), ("since", None)]),
            "/x?node=a%20b%2F%C3%BC"
        );
        assert_eq!(with_query("/x", &[("since", None)]), "/x");
    }
}
