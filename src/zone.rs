//! A zone's summary, made from the same view of the zone as its leader (see
//! `gossip::core::zones` for how summaries travel between zones and into each zone).
//!
//! The summary counts the zone's members by status, names the first few that are down with
//! when they were last heard, names the leader, counts open incidents (members down, services
//! failed), and aggregates every metric of the host sample over the live members (min, mean,
//! max, count), so another zone sees a zone's health without its members' states.

use crate::election;
use crate::gossip::{MemberView, Status};
use crate::keys::sample::parse_sample;
use crate::keys::zone::SUMMARY_DOWN;
use crate::keys::{METRICS_KEY, SERVICE_PREFIX, ServiceState, with_prefix};
use crate::types::Time;
use crate::wire::{Beat, ZoneSummary};
use std::collections::BTreeMap;

/// The summary of the zone whose members (itself included) are `views`, as seen at `now`.
/// Its zone, version and representatives are the gossip core's to fill in.
pub fn summarize(views: &[MemberView], now: Time) -> ZoneSummary {
    let count = |s: Status| views.iter().filter(|v| v.status == s).count() as u32;
    let mut down: Vec<&MemberView> = views.iter().filter(|v| v.status == Status::Down).collect();
    down.sort_by(|a, b| a.name.cmp(&b.name));
    let failed: usize = (views.iter())
        .filter(|v| election::is_live(v))
        .map(|v| {
            with_prefix(&v.kv, SERVICE_PREFIX)
                .filter(|(name, value)| {
                    crate::keys::from_gossip(name, value)
                        .is_some_and(|s| s.state == ServiceState::Failed)
                })
                .count()
        })
        .sum();
    let mut metrics: BTreeMap<&'static str, (f32, f32, f32, u32)> = BTreeMap::new();
    for v in views.iter().filter(|v| election::is_live(v)) {
        let Some(sample) = v.kv.get(METRICS_KEY) else {
            continue;
        };
        for (name, value) in parse_sample(sample, now).0 {
            let value = value as f32;
            let m = metrics
                .entry(name)
                .or_insert((f32::INFINITY, 0.0, f32::NEG_INFINITY, 0));
            m.0 = m.0.min(value);
            m.1 += value;
            m.2 = m.2.max(value);
            m.3 += 1;
        }
    }
    let down_count = down.len() as u32;
    ZoneSummary {
        zone: String::new(),
        version: 0,
        reps: Vec::new(),
        total: (views.iter().filter(|v| v.status != Status::Left)).count() as u32,
        up: count(Status::Alive),
        suspect: count(Status::Suspect),
        down: down_count,
        down_names: (down.into_iter().take(SUMMARY_DOWN))
            .map(|v| (v.name.clone(), Beat::at(v.last_heard)))
            .collect(),
        leader: election::leader(views),
        incidents: down_count + failed as u32,
        metrics: (metrics.into_iter())
            .map(|(name, (min, sum, max, n))| {
                (
                    name.to_string(),
                    round(min),
                    round(sum / n as f32),
                    round(max),
                    n,
                )
            })
            .collect(),
    }
}

/// Three significant decimals are plenty for a zone's aggregate, and keep it short.
fn round(v: f32) -> f32 {
    (v * 1000.0).round() / 1000.0
}
