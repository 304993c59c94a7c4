//! `probe.<name>`: a host probe's last result, `"<health>@<since> <label>=<value><unit>;<warn>;
//! <crit>;<min>;<max> ..."` — the health word and when the probe came to it (ms since the
//! epoch, by the host's clock: the same incident id on every host, see `alert::incident`),
//! then its perfdata in Nagios syntax, in base units.
//!
//! **Base units.** A plugin's unit is turned into the base unit it scales: `us`, `µs` and `ms`
//! into seconds (`250ms` is `0.25s`); `KB`, `MB`, `GB`, `TB` (and `KiB` ... `TiB`) into bytes,
//! counted in 1024s as `check_disk` counts them (`3MB` is `3145728B`); `%` stays a percentage
//! (0 to 100); `c` (a counter), no unit and any other unit stay as given. Thresholds (ranges
//! such as `10:20`, `@10:20`, `~:5`) and bounds are scaled with their value.
//!
//! **Full precision.** Values are written as the shortest decimal that reads back as the same
//! number (`time=0.000103s` stays `0.000103`); trailing empty fields are left out.
//!
//! A build before base units read only `label=<number>` items: it skips items with a unit or
//! thresholds, until it is upgraded too.

use super::MAX_ENTRY_LEN;
use serde_json::{Map, Number, Value, json};

/// Longest perfdata label announced (longer ones are cut).
pub const MAX_LABEL: usize = 64;

/// One perfdata item, in base units.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Item {
    pub label: String,
    pub value: f64,
    /// `s`, `B`, `%`, `c`, empty, or a unit nbwatch does not scale.
    pub unit: String,
    /// Threshold ranges, as in Nagios (`10:20`, `@10:20`, `~:5`, `10`).
    pub warn: Option<String>,
    pub crit: Option<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// How a value in some unit becomes one in its base unit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scale {
    /// Divided: `250ms` is 250 / 1000 (a division by a power of ten is exact where a
    /// multiplication by 0.001 is not: 9 × 0.001 is 0.009000000000000001).
    Down(f64),
    /// Multiplied (powers of 1024 are exact).
    Up(f64),
}

impl Scale {
    pub fn apply(self, v: f64) -> f64 {
        match self {
            Scale::Down(d) => v / d,
            Scale::Up(m) => v * m,
        }
    }
}

/// How to scale `unit` to its base unit, and that unit.
pub fn base_unit(unit: &str) -> (Scale, &str) {
    const K: f64 = 1024.0;
    match unit {
        "us" | "µs" => (Scale::Down(1e6), "s"),
        "ms" => (Scale::Down(1e3), "s"),
        "KB" | "KiB" => (Scale::Up(K), "B"),
        "MB" | "MiB" => (Scale::Up(K * K), "B"),
        "GB" | "GiB" => (Scale::Up(K * K * K), "B"),
        "TB" | "TiB" => (Scale::Up(K * K * K * K), "B"),
        other => (Scale::Up(1.0), other),
    }
}

/// `range` with each number scaled; `None` if it is not a range.
fn scale_range(range: &str, factor: Scale) -> Option<String> {
    let (at, body) = match range.strip_prefix('@') {
        Some(rest) => ("@", rest),
        None => ("", range),
    };
    let side = |s: &str| -> Option<String> {
        match s {
            "" | "~" => Some(s.to_string()),
            n => Some(number(
                factor.apply(n.parse::<f64>().ok().filter(|v| v.is_finite())?),
            )),
        }
    };
    let scaled = match body.split_once(':') {
        Some((lo, hi)) => format!("{}:{}", side(lo)?, side(hi)?),
        None if body.is_empty() => return None,
        None => side(body)?,
    };
    Some(format!("{at}{scaled}"))
}

impl Item {
    /// This item (as a plugin wrote it: thresholds and bounds in its unit) in base units; a
    /// threshold that is not a range is left out.
    pub fn in_base_units(&self) -> Item {
        let (factor, base) = base_unit(&self.unit);
        Item {
            label: self.label.clone(),
            value: factor.apply(self.value),
            unit: base.to_string(),
            warn: (self.warn.as_deref()).and_then(|w| scale_range(w, factor)),
            crit: (self.crit.as_deref()).and_then(|c| scale_range(c, factor)),
            min: self.min.map(|m| factor.apply(m)),
            max: self.max.map(|m| factor.apply(m)),
        }
    }

    /// `label=<value><unit>;warn;crit;min;max`, without trailing empty fields.
    fn encode(&self, label: &str) -> String {
        let mut fields = vec![
            self.warn.clone().unwrap_or_default(),
            self.crit.clone().unwrap_or_default(),
            self.min.map(number).unwrap_or_default(),
            self.max.map(number).unwrap_or_default(),
        ];
        while fields.last().is_some_and(String::is_empty) {
            fields.pop();
        }
        let mut item = format!("{label}={}{}", number(self.value), self.unit);
        for f in fields {
            item.push(';');
            item.push_str(&f);
        }
        item
    }

    /// An item of [`Item::encode`]; `None` if it does not read.
    fn decode(item: &str) -> Option<Item> {
        let (label, data) = item.split_once('=')?;
        if label.is_empty() {
            return None;
        }
        let mut fields = data.split(';');
        let value_and_unit = fields.next()?;
        let end = value_and_unit
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '-' | '+' | '.')))
            .unwrap_or(value_and_unit.len());
        let (n, unit) = value_and_unit.split_at(end);
        let value = n.parse::<f64>().ok().filter(|v| v.is_finite())?;
        let text = |f: Option<&str>| f.filter(|s| !s.is_empty()).map(str::to_string);
        let num = |f: Option<&str>| {
            f.and_then(|s| s.parse::<f64>().ok())
                .filter(|v| v.is_finite())
        };
        Some(Item {
            label: label.to_string(),
            value,
            unit: unit.to_string(),
            warn: text(fields.next()),
            crit: text(fields.next()),
            min: num(fields.next()),
            max: num(fields.next()),
        })
    }
}

/// The shortest decimal that reads back as `v` (0 for what is not finite).
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return "0".to_string();
    }
    let s = format!("{v}");
    if s == "-0" { "0".to_string() } else { s }
}

/// The value announcing a probe's `health` word and `items` under `key`: labels without
/// spaces, `=` or `;` (replaced by `_`) and cut to [`MAX_LABEL`] bytes; items that would make
/// key and value exceed one gossip entry ([`MAX_ENTRY_LEN`]) are left out.
pub fn encode(
    key: &str,
    health: &str,
    since: Option<crate::types::Time>,
    items: &[Item],
) -> String {
    let budget = MAX_ENTRY_LEN.saturating_sub(key.len());
    let mut value = match since {
        Some(t) => format!("{health}@{}", t.0),
        None => health.to_string(),
    };
    for it in items {
        let mut label: String = (it.label.chars())
            .map(|c| {
                if c.is_whitespace() || c == '=' || c == ';' {
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
        let item = format!(" {}", it.encode(&label));
        if value.len() + item.len() <= budget {
            value.push_str(&item);
        }
    }
    value
}

/// What an announcement says.
#[derive(Clone, Debug, PartialEq)]
pub struct Announced<'a> {
    pub health: &'a str,
    /// When the probe came to this health (absent from older builds' announcements).
    pub since: Option<crate::types::Time>,
    pub items: Vec<Item>,
}

/// An announcement; items that do not read are skipped.
pub fn decode(value: &str) -> Announced<'_> {
    let mut words = value.split_whitespace();
    let first = words.next().unwrap_or("unknown");
    let (health, since) = match first.split_once('@') {
        Some((h, t)) => (
            h,
            t.parse::<u64>()
                .ok()
                .and_then(|t| crate::types::Time::checked(t).ok()),
        ),
        None => (first, None),
    };
    Announced {
        health,
        since,
        items: words.filter_map(Item::decode).collect(),
    }
}

/// Adds the perfdata of one `probe.<name>` announcement to a `metrics` object, as
/// `"<name>.<label>": value` (in base units).
pub fn add_metrics(name: &str, value: &str, out: &mut Map<String, Value>) {
    if name.is_empty() {
        return;
    }
    for item in decode(value).items {
        if let Some(n) = Number::from_f64(item.value) {
            out.insert(format!("{name}.{}", item.label), Value::Number(n));
        }
    }
}

/// One announcement as JSON: `{"health", "since", "perfdata": {"<label>": {"value", "unit",
/// "warn", "crit", "min", "max"}}}`.
pub fn to_json(value: &str) -> Value {
    let Announced {
        health,
        since,
        items,
    } = decode(value);
    let perfdata: Map<String, Value> = (items.into_iter())
        .map(|i| {
            let v = json!({"value": i.value, "unit": i.unit, "warn": i.warn, "crit": i.crit,
                           "min": i.min, "max": i.max});
            (i.label, v)
        })
        .collect();
    json!({"health": health, "since": since.map(|t| t.to_rfc3339()), "perfdata": perfdata})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(
        label: &str,
        value: f64,
        unit: &str,
        t: [Option<&str>; 2],
        b: [Option<f64>; 2],
    ) -> Item {
        let raw = Item {
            label: label.to_string(),
            value,
            unit: unit.to_string(),
            warn: t[0].map(str::to_string),
            crit: t[1].map(str::to_string),
            min: b[0],
            max: b[1],
        };
        raw.in_base_units()
    }

    #[test]
    fn units_become_base_units_with_their_thresholds_and_bounds() {
        let table = [
            (
                item(
                    "time",
                    250.0,
                    "ms",
                    [Some("500"), Some("1000")],
                    [Some(0.0), None],
                ),
                "time=0.25s;0.5;1;0",
            ),
            (
                item("t", 0.000103, "s", [None, None], [None, None]),
                "t=0.000103s",
            ),
            (
                item(
                    "used",
                    3.0,
                    "MB",
                    [Some("10:20"), Some("@5:~")],
                    [None, Some(100.0)],
                ),
                "used=3145728B;10485760:20971520;@5242880:~;;104857600",
            ),
            (
                item(
                    "free",
                    42.5,
                    "%",
                    [Some("20:"), Some("~:10")],
                    [Some(0.0), Some(100.0)],
                ),
                "free=42.5%;20:;~:10;0;100",
            ),
            (item("rx", 12.0, "c", [None, None], [None, None]), "rx=12c"),
            (
                item("lat", 2.0, "us", [Some("bad"), None], [None, None]),
                "lat=0.000002s",
            ),
            (item("v", 3.3, "V", [None, None], [None, None]), "v=3.3V"),
            (
                item("big", 1.5, "TiB", [None, None], [None, None]),
                "big=1649267441664B",
            ),
        ];
        for (it, expected) in table {
            let value = encode("probe.x", "ok", None, std::slice::from_ref(&it));
            assert_eq!(value, format!("ok {expected}"));
            let read = decode(&value);
            assert_eq!((read.health, read.since), ("ok", None));
            let back = read.items;
            assert_eq!(back[0].value, it.value, "{expected}");
            assert_eq!(back[0].unit, it.unit, "{expected}");
            assert_eq!(
                (&back[0].warn, &back[0].crit),
                (&it.warn, &it.crit),
                "{expected}"
            );
            assert_eq!((back[0].min, back[0].max), (it.min, it.max), "{expected}");
        }
    }

    #[test]
    fn metrics_and_json_read_the_base_units_and_skip_what_does_not_read() {
        let value = "critical@1764900000000 time=0.25s;0.5;1 free=42.5% junk bad=x% n=7";
        let mut out = Map::new();
        add_metrics("web", value, &mut out);
        assert_eq!(
            Value::Object(out),
            json!({"web.time": 0.25, "web.free": 42.5, "web.n": 7.0})
        );
        let j = to_json(value);
        assert_eq!(j["health"], "critical");
        assert_eq!(j["since"], "2025-12-05T02:00:00.000Z");
        assert_eq!(j["perfdata"]["time"]["unit"], "s");
        assert_eq!(j["perfdata"]["time"]["crit"], "1");
        assert_eq!(j["perfdata"]["free"]["warn"], Value::Null);
    }
}
