//! What every scenario checks afterwards, and the figures it reports.
//!
//! * every live host that can see a failed host records its `node_down`, with `last_heard`
//!   within [`LAST_HEARD_SLACK`] of the moment the fault was injected (the truth);
//! * exactly one alert per incident per side of a partition, never zero;
//! * after a heal, every host's history holds the same incidents;
//! * no service process outlives its daemon.

use crate::harness::{Net, Side, ms, wall_ms};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// How far `last_heard` may be from the truth: the heartbeat is in 100 ms steps and sent with
/// each gossip round (1 s), and a datagram's arrival also counts.
pub const LAST_HEARD_SLACK: u64 = 2_000;

/// A failure as one side saw it: the incident id and how long until every observer had
/// recorded it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub id: String,
    pub detection_ms: u64,
}

/// Waits until every host of `observers` has recorded `subject` down in its history, at or
/// after `truth` (ms), and checks `last_heard` against it and that everyone names the same
/// incident.
pub fn wait_down_recorded(net: &Net, subject: usize, observers: &[usize], truth: u64) -> Seen {
    wait_down_recorded_by_clocks(net, subject, observers, truth, |_| 0)
}

/// [`wait_down_recorded`] where host `i`'s wall clock reads `skew(i)` ms off the truth: each
/// observer's record must be right by its own clock.
pub fn wait_down_recorded_by_clocks(
    net: &Net,
    subject: usize,
    observers: &[usize],
    truth: u64,
    skew: impl Fn(usize) -> i64,
) -> Seen {
    let on = |i: usize| truth.saturating_add_signed(skew(i));
    let name = net.hosts[subject].name.clone();
    let mut found: BTreeMap<usize, Value> = BTreeMap::new();
    net.wait_until(
        &format!("{observers:?} record {name} down (fault at {truth})"),
        || {
            for &i in observers {
                if found.contains_key(&i) {
                    continue;
                }
                let event = net.events(i).and_then(|list| {
                    list.into_iter().find(|e| {
                        e["kind"] == "node_down"
                            && e["node"] == name.as_str()
                            && ms(e, "at").is_some_and(|at| at >= on(i))
                    })
                });
                if let Some(e) = event {
                    found.insert(i, e);
                }
            }
            found.len() == observers.len()
        },
    );
    let mut ids = BTreeSet::new();
    let mut detection_ms = 0;
    for (i, e) in &found {
        let heard = ms(e, "last_heard").unwrap_or(0);
        assert!(
            heard.abs_diff(on(*i)) <= LAST_HEARD_SLACK,
            "n{i} recorded {name} last heard {} ms from the truth by its clock: {e}",
            heard as i64 - on(*i) as i64
        );
        ids.insert(format!("node_down:{name}:{}", e["incarnation"]));
        detection_ms = detection_ms.max(ms(e, "at").unwrap_or(0).saturating_sub(on(*i)));
    }
    assert_eq!(
        ids.len(),
        1,
        "observers disagree on the incident: {found:#?}"
    );
    Seen {
        id: ids.into_iter().next().unwrap_or_default(),
        detection_ms,
    }
}

/// Waits until incident `id` (or, if it ends with `:`, an incident whose id starts with it)
/// has been alerted by a host of `side`, and checks that it was once.
pub fn wait_alerted_once(net: &Net, id: &str, side: &[usize]) {
    let names: BTreeSet<String> = side.iter().map(|i| net.hosts[*i].name.clone()).collect();
    let wanted = |other: &str| {
        if id.ends_with(':') {
            other.starts_with(id)
        } else {
            other == id
        }
    };
    let from_side = |alerts: &BTreeMap<String, Vec<Value>>| -> Vec<Value> {
        alerts
            .iter()
            .filter(|(other, _)| wanted(other))
            .flat_map(|(_, list)| list)
            .filter(|a| a["sent_by"].as_str().is_some_and(|s| names.contains(s)))
            .cloned()
            .collect()
    };
    net.wait_until(&format!("{id} is alerted by one of {names:?}"), || {
        !from_side(&net.alerts()).is_empty()
    });
    let sent = from_side(&net.alerts());
    assert_eq!(
        sent.len(),
        1,
        "{id} alerted more than once by {names:?}: {sent:#?}"
    );
}

/// No incident was alerted twice by one side (`sides` partition every host that ever ran).
/// Returns how many alerts were sent.
pub fn check_no_duplicate_alert(net: &Net, sides: &[Side]) -> usize {
    check_no_duplicate_alert_by(net, |_| sides)
}

/// [`check_no_duplicate_alert`] with the sides of each incident (by id) of their own.
pub fn check_no_duplicate_alert_by<'a>(net: &Net, sides_of: impl Fn(&str) -> &'a [Side]) -> usize {
    let alerts = net.alerts();
    for (id, list) in &alerts {
        for side in sides_of(id) {
            let names: BTreeSet<&str> = side.iter().map(|i| net.hosts[*i].name.as_str()).collect();
            let n = list
                .iter()
                .filter(|a| a["sent_by"].as_str().is_some_and(|s| names.contains(s)))
                .count();
            assert!(n <= 1, "{id} sent {n} times by {names:?}: {list:#?}");
        }
    }
    alerts.values().map(Vec::len).sum()
}

/// The `node_down` incidents (`node_down:<node>:<incarnation>`) in host `i`'s history
/// recorded at or after `since` (ms), and the number of its event rows.
pub fn downs(net: &Net, i: usize, since: u64) -> Option<(BTreeSet<String>, usize)> {
    let events = net.events(i)?;
    let ids = events
        .iter()
        .filter(|e| e["kind"] == "node_down" && ms(e, "at").is_some_and(|at| at >= since))
        .map(|e| {
            format!(
                "node_down:{}:{}",
                e["node"].as_str().unwrap_or(""),
                e["incarnation"]
            )
        })
        .collect();
    Some((ids, events.len()))
}

/// Waits until the history of every host of `hosts` holds exactly the `node_down` incidents
/// `expected` since `since`; returns the number of event rows compared.
pub fn wait_same_incidents(
    net: &Net,
    hosts: &[usize],
    since: u64,
    expected: &BTreeSet<String>,
) -> usize {
    let mut rows = 0;
    let mut last: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        net.wait_until("every history holds the same incidents", || {
            rows = 0;
            for &i in hosts {
                let Some((ids, n)) = downs(net, i, since) else {
                    return false;
                };
                rows += n;
                last.insert(net.hosts[i].name.clone(), ids);
            }
            last.values().all(|ids| ids == expected)
        })
    }));
    if waited.is_err() {
        panic!("histories differ; expected {expected:#?}, found {last:#?}");
    }
    rows
}

/// No host of `hosts` recorded a `node_down` at or after `since`. Returns the number of
/// `node_suspect` events they recorded meanwhile (suspicions that were refuted).
pub fn check_no_down(net: &Net, hosts: &[usize], since: u64) -> usize {
    check_no_down_by_clocks(net, hosts, since, |_| 0)
}

/// [`check_no_down`] where host `i`'s wall clock reads `skew(i)` ms off the truth.
pub fn check_no_down_by_clocks(
    net: &Net,
    hosts: &[usize],
    since: u64,
    skew: impl Fn(usize) -> i64,
) -> usize {
    let mut suspicions = 0;
    for &i in hosts {
        let since = since.saturating_add_signed(skew(i));
        let events = net
            .events(i)
            .unwrap_or_else(|| panic!("n{i} does not answer"));
        let recent: Vec<&Value> = events
            .iter()
            .filter(|e| ms(e, "at").is_some_and(|at| at >= since))
            .collect();
        let downs: Vec<&&Value> = recent.iter().filter(|e| e["kind"] == "node_down").collect();
        assert!(downs.is_empty(), "n{i} recorded a false down: {downs:#?}");
        suspicions += recent
            .iter()
            .filter(|e| e["kind"] == "node_suspect")
            .count();
    }
    suspicions
}

/// One scenario's figures, printed as one `REPORT` line (BENCHMARKS.md is copied from them).
#[derive(Debug, Default)]
pub struct Report {
    pub scenario: &'static str,
    pub hosts: usize,
    /// Per incident: fault -> every observer has recorded it, ms.
    pub detection_ms: Vec<u64>,
    pub alerts: usize,
    pub false_downs: usize,
    pub suspicions: usize,
    pub rows_compared: usize,
    pub started: u64,
}

impl Report {
    pub fn new(scenario: &'static str, net: &Net) -> Report {
        Report {
            scenario,
            hosts: net.len(),
            started: wall_ms(),
            ..Report::default()
        }
    }

    pub fn print(&self) {
        let mut d = self.detection_ms.clone();
        d.sort_unstable();
        let show =
            |v: Option<&u64>| v.map_or("-".to_string(), |v| format!("{:.1}", *v as f64 / 1000.0));
        println!(
            "REPORT scenario={} hosts={} incidents={} detection_s_min={} detection_s_max={} \
             alerts={} false_downs={} suspicions={} rows_compared={} duration_s={:.0}",
            self.scenario,
            self.hosts,
            d.len(),
            show(d.first()),
            show(d.last()),
            self.alerts,
            self.false_downs,
            self.suspicions,
            self.rows_compared,
            (wall_ms() - self.started) as f64 / 1000.0,
        );
    }
}

/// Waits until an incident whose id starts with `prefix` and is not in `known` (the ids
/// alerted before) has been alerted by a host of `side`, checks that it is the only such
/// incident and was sent once, and returns its id. For a host that fails again and again,
/// where a prefix alone names every one of its outages.
pub fn wait_new_alert_once(
    net: &Net,
    prefix: &str,
    side: &[usize],
    known: &BTreeSet<String>,
) -> String {
    let names: BTreeSet<String> = side.iter().map(|i| net.hosts[*i].name.clone()).collect();
    let new = |alerts: BTreeMap<String, Vec<Value>>| -> BTreeMap<String, Vec<Value>> {
        alerts
            .into_iter()
            .filter(|(id, _)| id.starts_with(prefix) && !known.contains(id))
            .map(|(id, list)| {
                let by_side = list
                    .into_iter()
                    .filter(|a| a["sent_by"].as_str().is_some_and(|s| names.contains(s)))
                    .collect::<Vec<_>>();
                (id, by_side)
            })
            .filter(|(_, list)| !list.is_empty())
            .collect()
    };
    net.wait_until(
        &format!("a new {prefix} incident is alerted by one of {names:?}"),
        || !new(net.alerts()).is_empty(),
    );
    let sent = new(net.alerts());
    assert_eq!(
        sent.len(),
        1,
        "more than one new {prefix} incident alerted: {sent:#?}"
    );
    let (id, list) = sent.into_iter().next().unwrap_or_default();
    assert_eq!(
        list.len(),
        1,
        "{id} alerted more than once by {names:?}: {list:#?}"
    );
    id
}
