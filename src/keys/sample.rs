//! The codecs of a host's figures in gossip: the packed metrics sample (`sys`) with its
//! origin time, the boot time (`sys.boot`), and a host probe's perfdata (`probe.<name>`).
//! The host probe writes them; the history, the API and the CLI read them, all through here.

use super::{BOOT_KEY, METRICS_KEY, PROBE_PREFIX, ValueError, time};
use crate::types::Time;
use serde_json::{Map, Number, Value};

/// `v` with `decimals` decimals, without trailing zeros: `0.5`, `41`, `12.3`. Non-finite values
/// print as `0` so that every string we announce parses back.
pub fn format_trimmed(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "0".to_string();
    }
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        let trimmed = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(trimmed);
    }
    if s == "-0" {
        s = "0".to_string();
    }
    s
}

/// Keys of the float metrics and the decimals they are announced with.
const FLOAT_KEYS: [(&str, usize); 7] = [
    ("load1", 2),
    ("load5", 2),
    ("load15", 2),
    ("cpu_pct", 1),
    ("mem_used_pct", 1),
    ("swap_used_pct", 1),
    ("disk_used_pct", 1),
];

/// The packed `sys` value of one sample: the seven float metrics in the order of
/// [`FLOAT_KEYS`], then the origin time as [`origin_token`] (left out when `at` is zero).
pub fn encode_sample(values: [f64; 7], at: Time) -> String {
    let mut packed: Vec<String> = FLOAT_KEYS
        .iter()
        .zip(values)
        .map(|((_, decimals), v)| format_trimmed(v, *decimals))
        .collect();
    if at != Time::ZERO {
        packed.push(origin_token(at));
    }
    packed.join(" ")
}

/// The alphabet of origin tokens: 64 symbols, none of them white space or a JSON escape.
const TOKEN_ALPHABET: &[u8; 64] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_";
/// The resolution of an origin token.
const TOKEN_UNIT_MS: u64 = 250;
/// Quarter-seconds modulo this travel as the origin time (3 base-64 digits, about 18.2 hours:
/// a token resolves correctly when it arrives less than 9.1 hours from when it was made).
const ORIGIN_MODULUS: u64 = 64 * 64 * 64;
/// The older token: 4 base-36 digits of deciseconds, still read from older nodes.
const OLD_UNIT_MS: u64 = 100;
const OLD_MODULUS: u64 = 36 * 36 * 36 * 36;

/// The origin time as it travels: 3 base-64 digits of quarter-seconds modulo
/// [`ORIGIN_MODULUS`]. Every host receives every host's sample, so each byte here costs
/// N bytes per interval on every host; a quarter second is finer than any sample interval.
pub fn origin_token(at: Time) -> String {
    let mut v = (at.as_millis() / TOKEN_UNIT_MS) % ORIGIN_MODULUS;
    let mut digits = [b'0'; 3];
    for d in digits.iter_mut().rev() {
        *d = TOKEN_ALPHABET[(v % 64) as usize];
        v /= 64;
    }
    String::from_utf8_lossy(&digits).into_owned()
}

/// The time nearest to `received` whose token is `token` (`None` if it is not a token). Reads
/// the current 3-digit tokens and the 4-digit ones of older nodes.
pub fn resolve_origin(token: &str, received: Time) -> Option<Time> {
    let (value, unit, modulus) = match token.len() {
        3 => {
            let mut v = 0u64;
            for b in token.bytes() {
                let digit = TOKEN_ALPHABET.iter().position(|&a| a == b)?;
                v = v * 64 + digit as u64;
            }
            (v, TOKEN_UNIT_MS, ORIGIN_MODULUS)
        }
        4 => (
            u64::from_str_radix(token, 36).ok()? % OLD_MODULUS,
            OLD_UNIT_MS,
            OLD_MODULUS,
        ),
        _ => return None,
    };
    let now = received.as_millis() / unit;
    let behind = (now + modulus - value) % modulus;
    let units = if behind <= modulus / 2 {
        now.checked_sub(behind)?
    } else {
        now + (modulus - behind)
    };
    Some(Time::from_millis(units * unit))
}

/// The metrics of a packed `sys` value (see [`METRICS_KEY`]) by name, and its origin time if
/// the announcement carries one (resolved against `received`, when it arrived here). Fields
/// that do not parse are left out.
pub fn parse_sample(value: &str, received: Time) -> (Vec<(&'static str, f64)>, Option<Time>) {
    let mut fields = value.split_whitespace();
    let mut metrics = Vec::with_capacity(FLOAT_KEYS.len());
    for (name, _) in FLOAT_KEYS {
        let Some(field) = fields.next() else {
            return (metrics, None);
        };
        if let Ok(v) = field.parse::<f64>()
            && v.is_finite()
        {
            metrics.push((name, v));
        }
    }
    let at = fields.next().and_then(|t| resolve_origin(t, received));
    (metrics, at)
}

/// The boot time of a `sys.boot` value (Unix seconds).
pub fn parse_boot(value: &str) -> Result<Time, ValueError> {
    let secs = value
        .trim()
        .parse::<u64>()
        .map_err(|e| ValueError::Malformed(e.to_string()))?;
    time("boot time", secs.saturating_mul(1000))
}

/// The names of the metrics a `sys` announcement carries, in order.
pub fn sample_metric_names() -> impl Iterator<Item = &'static str> {
    FLOAT_KEYS.iter().map(|(name, _)| *name)
}

/// The `metrics` object of `members --json` from a node's gossip keys: each metric of the
/// packed sample as a JSON number, plus `uptime_s` derived from the boot time and `now`, plus
/// `<probe>.<label>` for each perfdata item of a host probe (`probe.<probe>` keys, see
/// `probe::plugins`). Other keys, and values that do not parse, are left out.
pub fn metrics_from_kv<'a>(
    kv: impl Iterator<Item = (&'a str, &'a str)>,
    now: Time,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in kv {
        if key == BOOT_KEY {
            if let Ok(boot) = parse_boot(value) {
                let uptime = now.since(boot).as_secs();
                out.insert("uptime_s".to_string(), Value::from(uptime));
            }
        } else if key == METRICS_KEY {
            for ((name, _), field) in FLOAT_KEYS.iter().zip(value.split_whitespace()) {
                if let Some(n) = field.parse::<f64>().ok().and_then(Number::from_f64) {
                    out.insert(name.to_string(), Value::Number(n));
                }
            }
        } else if let Some(probe) = key.strip_prefix(PROBE_PREFIX) {
            super::probe::add_metrics(probe, value, &mut out);
        }
    }
    out
}

/// How each metric of the `sys` sample is named and scaled outside: in `/metrics` and in what
/// `store.remote_write` exports, the same names (node_exporter's under the `nbwatch_` prefix)
/// and base units (percentages as ratios). (metric in the `sys` sample, series name, divisor
/// to its base unit, help).
pub const HOST_SERIES: [(&str, &str, f64, &str); 7] = [
    (
        "load1",
        "nbwatch_node_load1",
        1.0,
        "1-minute load average of each live member.",
    ),
    (
        "load5",
        "nbwatch_node_load5",
        1.0,
        "5-minute load average of each live member.",
    ),
    (
        "load15",
        "nbwatch_node_load15",
        1.0,
        "15-minute load average of each live member.",
    ),
    (
        "cpu_pct",
        "nbwatch_node_cpu_busy_ratio",
        100.0,
        "Share of CPU time busy (0-1, all CPUs) between a member's last two samples.",
    ),
    (
        "mem_used_pct",
        "nbwatch_node_memory_used_ratio",
        100.0,
        "Share of each live member's memory in use (0-1).",
    ),
    (
        "swap_used_pct",
        "nbwatch_node_swap_used_ratio",
        100.0,
        "Share of each live member's swap in use (0-1; 0 without swap).",
    ),
    (
        "disk_used_pct",
        "nbwatch_node_filesystem_used_ratio",
        100.0,
        "Share of the file system holding each live member's data dir in use (0-1, as df counts).",
    ),
];
