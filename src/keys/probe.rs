//! `probe.<name>`: a host probe's last result, `"<health> <label>=<value> ..."` — the health
//! word, then its perfdata, values with at most 3 decimals.

use super::MAX_ENTRY_LEN;
use super::sample::format_trimmed;
use serde_json::{Map, Number, Value};

/// Longest perfdata label announced (longer ones are cut).
pub const MAX_LABEL: usize = 64;

/// The value announcing a probe's `health` word and `perfdata` under `key`: labels without
/// spaces or `=` (replaced by `_`) and cut to [`MAX_LABEL`] bytes; items that would make key
/// and value exceed one gossip entry ([`MAX_ENTRY_LEN`]) are left out.
pub fn encode<'a>(
    key: &str,
    health: &str,
    perfdata: impl IntoIterator<Item = (&'a str, f64)>,
) -> String {
    let budget = MAX_ENTRY_LEN.saturating_sub(key.len());
    let mut value = health.to_string();
    for (label, number) in perfdata {
        let mut label: String = label
            .chars()
            .map(|c| {
                if c.is_whitespace() || c == '=' {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        if label.len() > MAX_LABEL {
            let mut cut = MAX_LABEL;
            while !label.is_char_boundary(cut) {
                cut -= 1;
            }
            label.truncate(cut);
        }
        let item = format!(" {label}={}", format_trimmed(number, 3));
        if value.len() + item.len() <= budget {
            value.push_str(&item);
        }
    }
    value
}

/// Adds the perfdata of one `probe.<name>` announcement to a `metrics` object, as
/// `"<name>.<label>": value`. Items that do not parse are skipped.
pub fn add_metrics(name: &str, value: &str, out: &mut Map<String, Value>) {
    if name.is_empty() {
        return;
    }
    // The first word is the health.
    for item in value.split_whitespace().skip(1) {
        let Some((label, number)) = item.split_once('=') else {
            continue;
        };
        if label.is_empty() {
            continue;
        }
        if let Some(n) = number.parse::<f64>().ok().and_then(Number::from_f64) {
            out.insert(format!("{name}.{label}"), Value::Number(n));
        }
    }
}
