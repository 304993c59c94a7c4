//! The value of `unheard`: the live peers its author has not heard from directly of late
//! (see `gossip::core::reach`), space-separated, with `+<k>` at the end when `k` more did not
//! fit. Empty: it hears every live peer directly. Absent: a build before this key.

/// Room for the names, so the entry always fits `MAX_ENTRY_LEN` with room to spare.
pub const MAX_LEN: usize = 900;

/// The value for `unheard` (sorted by the caller).
pub fn encode<S: AsRef<str>>(unheard: &[S]) -> String {
    let mut out = String::new();
    for (i, name) in unheard.iter().enumerate() {
        let name = name.as_ref();
        // Keep room for the count of those left out.
        if out.len() + 1 + name.len() > MAX_LEN - 8 {
            out.push_str(&format!(" +{}", unheard.len() - i));
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(name);
    }
    out.trim_start().to_string()
}

/// The names, and how many more were left out.
pub fn decode(value: &str) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut more = 0;
    for word in value.split_whitespace() {
        match word.strip_prefix('+').and_then(|k| k.parse::<usize>().ok()) {
            Some(k) => more += k,
            None => names.push(word.to_string()),
        }
    }
    (names, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_too_many_are_counted() {
        assert_eq!(encode::<&str>(&[]), "");
        assert_eq!(decode(""), (vec![], 0));
        assert_eq!(
            decode(&encode(&["a", "b"])),
            (vec!["a".into(), "b".into()], 0)
        );
        let many: Vec<String> = (0..500).map(|i| format!("host{i:03}")).collect();
        let value = encode(&many);
        assert!(value.len() <= MAX_LEN, "{}", value.len());
        let (names, more) = decode(&value);
        assert_eq!(names.len() + more, 500);
        assert_eq!(names[..], many[..names.len()]);
    }
}
