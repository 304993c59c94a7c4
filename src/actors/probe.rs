//! `HostProbeActor`: samples this host's metrics every `metrics.interval` and writes them into
//! this node's gossiped state through the gossip actor. A sample whose figures stayed within
//! the dead-band of the last one announced is kept back, up to six intervals and 30 s
//! (`HostMetrics::moved_from`, `metrics::keep_alive`), so a quiet host costs little on the
//! wire.
//!
//! It also announces `node.priority` once at start: the leader is the live member with the
//! lowest `(priority, name)`, and every node must see everyone's priority to agree on it; and
//! `node.weight` (its share of the keys `nbwatch owner` places), `sys.cpus` (for the load
//! per core `nbwatch pick` ranks hosts by) and `mac`, this host's MAC address (for the magic
//! packet that wakes it, see `probe::mac`).
//!
//! Host probes (plugins, see [`crate::probe::plugins`]) each run on a task of their own, every
//! `interval` of their own, so a slow plugin delays neither the others nor the metrics; the
//! task hands the outcome to the actor, which announces it as `probe.<name>`.

use crate::actors::gossip::GossipMsg;
use crate::keys::{CPUS_KEY, MAC_KEY, PRIORITY_KEY, SCRAPE_KEY, WEIGHT_KEY};
use crate::probe::metrics::{Announcer, Sampler};
use crate::probe::plugins::{self, HostProbeSpec};
use crate::statefile;
use crate::supervision::health::{self, Outcome};
use crate::supervision::spec::ProbeTarget;
use crate::task::{AbortOnDrop, Handle, ticker};
use crate::types::Clock;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::path::PathBuf;
use std::time::Duration;

/// How long a write may wait for the gossip actor.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

pub enum ProbeMsg {
    Sample,
    /// A host probe finished: announce `outcome` under `key`.
    Probed {
        key: String,
        outcome: Outcome,
    },
}

pub struct ProbeArgs {
    /// Zero: announce no metrics and run no host probes (the priority is still announced).
    pub interval: Duration,
    pub data_dir: PathBuf,
    pub priority: i64,
    /// `node.weight`.
    pub weight: f64,
    /// Host probes to run, each on its own interval.
    pub plugins: Vec<HostProbeSpec>,
    pub gossip: Handle<GossipMsg>,
    /// Stamps each sample with its origin time.
    pub clock: Clock,
    /// The address the node advertises: its interface's MAC address is announced.
    pub advertise: std::net::IpAddr,
    /// Where its read-only listener is reached, announced when it has one.
    pub scrape: Option<std::net::SocketAddr>,
}

pub struct ProbeState {
    sampler: Option<Sampler>,
    /// Which samples are worth sending to every host.
    announcer: Announcer,
    /// The origin of the announcer's clock.
    started: std::time::Instant,
    gossip: Handle<GossipMsg>,
    clock: Clock,
    /// Each host probe's last health and since when it holds, kept in the data dir.
    healths: Healths,
    data_dir: PathBuf,
    _ticker: Option<AbortOnDrop<()>>,
    _plugins: Vec<AbortOnDrop<()>>,
}

pub struct HostProbeActor;

impl Actor for HostProbeActor {
    type Msg = ProbeMsg;
    type State = ProbeState;
    type Arguments = ProbeArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ProbeMsg>,
        args: ProbeArgs,
    ) -> Result<ProbeState, ActorProcessingErr> {
        let sampler = if args.interval.is_zero() {
            None
        } else {
            match Sampler::new(&args.data_dir) {
                Ok(sampler) => Some(sampler),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot sample host metrics; not announcing them");
                    None
                }
            }
        };
        let ticker = sampler.as_ref().map(|_| {
            ticker(myself.clone(), args.clock, args.interval, || {
                ProbeMsg::Sample
            })
        });
        let plugins = if args.interval.is_zero() {
            Vec::new()
        } else {
            args.plugins
                .into_iter()
                .map(|spec| AbortOnDrop(tokio::spawn(run_plugin(spec, myself.clone()))))
                .collect()
        };
        let state = ProbeState {
            sampler,
            announcer: Announcer::new(args.interval),
            started: std::time::Instant::now(),
            gossip: args.gossip,
            clock: args.clock,
            healths: load_healths(&args.data_dir),
            data_dir: args.data_dir.clone(),
            _ticker: ticker,
            _plugins: plugins,
        };
        state.write(PRIORITY_KEY, args.priority.to_string()).await;
        state.write(WEIGHT_KEY, args.weight.to_string()).await;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        state.write(CPUS_KEY, cpus.to_string()).await;
        if let Some(scrape) = args.scrape {
            state.write(SCRAPE_KEY, scrape.to_string()).await;
        }
        match crate::probe::mac::for_address(args.advertise) {
            Some(mac) => state.write(MAC_KEY, mac).await,
            None => tracing::debug!(address = %args.advertise, "no MAC address to announce"),
        }
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<ProbeMsg>,
        msg: ProbeMsg,
        state: &mut ProbeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ProbeMsg::Sample => {
                let Some(sampler) = state.sampler.as_mut() else {
                    return Ok(());
                };
                let mut metrics = sampler.sample();
                metrics.at = state.clock.now();
                // Within the dead-band and recent: not worth sending to every host.
                if !state.announcer.offer(&metrics, state.started.elapsed()) {
                    return Ok(());
                }
                for (key, value) in metrics.to_kv() {
                    state.write(&key, value).await;
                }
            }
            ProbeMsg::Probed { key, outcome } => {
                if outcome.health != health::Health::Ok {
                    tracing::debug!(%key, health = outcome.health.as_str(), message = %outcome.message, "host probe");
                }
                // When the probe came to this health: the start of an incident it may open.
                let now = state.clock.now();
                let health = outcome.health.as_str().to_string();
                let since = match state.healths.probes.get(&key) {
                    Some((h, since)) if *h == health => crate::types::Time(*since),
                    _ => now,
                };
                if state.healths.probes.get(&key) != Some(&(health.clone(), since.0)) {
                    state.healths.probes.insert(key.clone(), (health, since.0));
                    let path = state.data_dir.join(statefile::PROBE_HEALTH);
                    if let Err(e) =
                        statefile::write_json(&path, statefile::PROBE_HEALTH_FORMAT, &state.healths)
                    {
                        tracing::warn!(file = %path.display(), error = %e, "cannot keep the probes' health: a restart makes a probe still critical a new incident");
                    }
                }
                let value = plugins::announcement(&key, &outcome, Some(since));
                state.write(&key, value).await;
            }
        }
        Ok(())
    }
}

/// The probes' health and since when it holds (ms), by key (`probe-health.json`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Healths {
    probes: std::collections::BTreeMap<String, (String, u64)>,
}

/// What an earlier life kept; a file that cannot be read is moved aside and forgotten.
fn load_healths(data_dir: &std::path::Path) -> Healths {
    let path = data_dir.join(statefile::PROBE_HEALTH);
    match statefile::read_json(&path, statefile::PROBE_HEALTH_FORMAT, &[]) {
        Ok(read) => read.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read the probes' health; starting without it");
            let _ = statefile::move_aside(&path);
            Healths::default()
        }
    }
}

/// Runs one host probe every `spec.interval` (the first time at once) until the actor is gone
/// or the task is aborted. A run that overstays the interval delays the next one.
async fn run_plugin(spec: HostProbeSpec, actor: ActorRef<ProbeMsg>) {
    let key = spec.key();
    let target = ProbeTarget::Exec(spec.command);
    let mut interval = tokio::time::interval(spec.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let outcome = health::check(&target, spec.timeout).await;
        let key = key.clone();
        if actor.cast(ProbeMsg::Probed { key, outcome }).is_err() {
            return;
        }
    }
}

impl ProbeState {
    async fn write(&self, key: &str, value: String) {
        let key_owned = key.to_string();
        let result = self
            .gossip
            .call(
                |reply| GossipMsg::Set {
                    key: key_owned,
                    value: Some(value),
                    reply,
                },
                Some(WRITE_TIMEOUT),
            )
            .await;
        match result {
            Some(Ok(())) => {}
            Some(Err(e)) => tracing::warn!(%key, error = %e, "gossip refused a metric"),
            None => tracing::debug!(%key, "the gossip actor did not take a metric"),
        }
    }
}
