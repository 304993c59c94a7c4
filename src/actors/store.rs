//! `StoreActor`: the single writer of the history database.
//!
//! Everything the node learns arrives as [`StoreMsg::Record`] (through the gossip shared
//! state's recorder) or as back-filled rows (see [`crate::store::backfill`]: started with the actor,
//! and again from each peer that comes back after being down, since it was last heard); the
//! actor turns it into rows and keeps them in a buffer that it writes, one transaction, every [`TICK`]. The database work runs on tokio's
//! blocking pool so the runtime's workers never wait on a disk.
//!
//! A database that cannot be opened or written (a full disk, a read-only or missing data dir,
//! a damaged file) never stops the node: the actor logs one clear line when writing starts to
//! fail and one when it resumes, keeps at most [`MAX_PENDING`] rows (dropping the oldest past
//! that, counted in the resume line), and tries again every [`RETRY`]. Gossip, failure
//! detection and supervision go on untouched, since nothing else waits on the store.

use crate::actors::backfill::{self, Peers};
use crate::config::StoreConfig;
use crate::events::{ClusterEvent, NodeEvent, RecordedEvent};
use crate::keys::SUSPECT_PREFIX;
use crate::store::StoreError;
use crate::store::record::{self, Row};
use crate::store::retention;
use crate::store::writer::Writer;
use crate::task::{AbortOnDrop, ticker};
use crate::types::{Clock, NodeName, Time};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

/// How often buffered rows are written: each write is a transaction, synced to disk, and at
/// 128 hosts with 5 s metrics a second holds about 25 samples.
pub const TICK: Duration = Duration::from_secs(1);
/// After a failed open or write, wait this long before the next attempt.
pub const RETRY: Duration = Duration::from_secs(5);
/// At most this many rows wait for the disk (about 20 MB); past it the oldest are dropped.
pub const MAX_PENDING: usize = 200_000;
/// At most this many rows go in one transaction.
pub const MAX_BATCH: usize = 20_000;
/// How often old samples are folded into rollups and expired data deleted.
pub const MAINTAIN_EVERY: Duration = Duration::from_secs(600);

/// Why the store did not (yet) write what it was given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Writing fails (a full disk, a read-only directory): why.
    #[error("{0}")]
    Failing(String),
    #[error("rows are still waiting")]
    Pending,
}

pub enum StoreMsg {
    /// An event this node saw (gossip or its own services).
    Record(RecordedEvent),
    /// Rows fetched from a peer by back-fill: answered once written (back-pressure).
    Backfill(Vec<Row>, RpcReplyPort<Result<(), WriteError>>),
    /// Write what is buffered (sent by the ticker every [`TICK`]).
    Tick,
    /// Write what is buffered now and answer once it is on disk (or why not).
    Flush(RpcReplyPort<Result<(), WriteError>>),
    /// This node raised its incarnation to refute a suspicion of itself (sent by the gossip
    /// actor): what the others recorded meanwhile is back-filled.
    Refuted,
}

pub struct StoreArgs {
    pub data_dir: PathBuf,
    pub me: NodeName,
    pub config: StoreConfig,
    pub clock: Clock,
    /// Where back-fill finds the gossip actor (for the live peers).
    pub peers: Peers,
}

pub struct StoreState {
    args: StoreArgs,
    writer: Option<Writer>,
    pending: VecDeque<Row>,
    /// Rows dropped since writing last worked.
    dropped: u64,
    /// Why writing fails, while it does.
    failing: Option<String>,
    next_attempt: Time,
    next_maintenance: Time,
    _ticker: AbortOnDrop<()>,
    _backfill: Option<AbortOnDrop<()>>,
    /// Peers this node saw go down, with their last-heard time: when one comes back (an
    /// outage over, a partition healed), what it recorded meanwhile is fetched from it.
    down: HashMap<NodeName, Time>,
    /// Peers this node suspected, since when: news from one (touch again) fetches what it
    /// recorded meanwhile, as for a returning down peer.
    suspected: HashMap<NodeName, Time>,
    /// Back-fills from returning peers, one at a time.
    returns: backfill::Returns,
    /// The back-fill after this node refuted, waiting or running, and where it starts: a
    /// refutation while it waits replaces it, keeping the earlier start.
    refuted: Option<(Time, AbortOnDrop<()>)>,
}

pub struct StoreActor;

impl Actor for StoreActor {
    type Msg = StoreMsg;
    type State = StoreState;
    type Arguments = StoreArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<StoreMsg>,
        args: StoreArgs,
    ) -> Result<StoreState, ActorProcessingErr> {
        let backfill = (!args.config.backfill.is_zero()).then(|| {
            AbortOnDrop(tokio::spawn(backfill::run(
                args.peers.clone(),
                myself.clone(),
                args.clock,
                args.config.backfill,
            )))
        });
        let ticker = ticker(myself, args.clock, TICK, || StoreMsg::Tick);
        let now = args.clock.now();
        Ok(StoreState {
            args,
            writer: None,
            pending: VecDeque::new(),
            dropped: 0,
            failing: None,
            next_attempt: now,
            next_maintenance: now,
            _ticker: ticker,
            _backfill: backfill,
            down: HashMap::new(),
            suspected: HashMap::new(),
            returns: backfill::Returns::default(),
            refuted: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<StoreMsg>,
        msg: StoreMsg,
        state: &mut StoreState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            StoreMsg::Record(recorded) => {
                state.watch_returns(&myself, &recorded);
                let mut rows = Vec::new();
                record::rows(&recorded, &state.args.me, &mut rows);
                state.buffer(rows);
            }
            StoreMsg::Backfill(rows, reply) => {
                state.buffer(rows);
                state.flush(true).await;
                let _ = reply.send(match &state.failing {
                    None => Ok(()),
                    Some(why) => Err(WriteError::Failing(why.clone())),
                });
            }
            StoreMsg::Refuted => state.after_refuting(&myself),
            StoreMsg::Tick => {
                state.flush(false).await;
                state.maintain().await;
            }
            StoreMsg::Flush(reply) => {
                state.flush(true).await;
                let answer = match (&state.failing, state.pending.is_empty()) {
                    (None, true) => Ok(()),
                    (Some(why), _) => Err(WriteError::Failing(why.clone())),
                    (None, false) => Err(WriteError::Pending),
                };
                let _ = reply.send(answer);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<StoreMsg>,
        state: &mut StoreState,
    ) -> Result<(), ActorProcessingErr> {
        state.flush(true).await;
        Ok(())
    }
}

/// Runs `f` with the writer on the blocking pool and gives the writer back (an error if `f`
/// panicked; a later open replaces the writer).
async fn blocking<R: Send + 'static>(
    mut writer: Writer,
    f: impl FnOnce(&mut Writer) -> R + Send + 'static,
) -> Result<(Writer, R), StoreError> {
    tokio::task::spawn_blocking(move || {
        let result = f(&mut writer);
        (writer, result)
    })
    .await
    .map_err(|e| StoreError::Unavailable(format!("the writer task died: {e}")))
}

impl StoreState {
    fn buffer(&mut self, rows: Vec<Row>) {
        self.pending.extend(rows);
        let excess = self.pending.len().saturating_sub(MAX_PENDING);
        if excess > 0 {
            if self.dropped == 0 {
                tracing::warn!(
                    max = MAX_PENDING,
                    "the history buffer is full; dropping the oldest rows until the database \
                     can be written again"
                );
            }
            self.pending.drain(..excess);
            self.dropped += excess as u64;
        }
    }

    /// Writes the buffer in batches; `force` ignores the retry delay.
    async fn flush(&mut self, force: bool) {
        while !self.pending.is_empty() {
            let now = self.args.clock.now();
            if !force && now < self.next_attempt {
                return;
            }
            let Some(writer) = self.open() else {
                return;
            };
            let n = self.pending.len().min(MAX_BATCH);
            let batch: Vec<Row> = self.pending.drain(..n).collect();
            let result = blocking(writer, move |w| match w.write(&batch) {
                Ok(written) => Ok(written),
                Err(e) => Err((e, batch)),
            })
            .await;
            match result {
                Ok((writer, Ok(_))) => {
                    self.writer = Some(writer);
                    self.resumed();
                }
                Err(e) => {
                    self.failed(&e);
                    return;
                }
                Ok((_, Err((e, batch)))) => {
                    // Give the rows back, in order, for the next attempt; a fresh connection
                    // then (a full disk or a changed mount can leave this one unusable).
                    for row in batch.into_iter().rev() {
                        self.pending.push_front(row);
                    }
                    self.buffer(Vec::new());
                    self.writer = None;
                    self.failed(&e);
                    return;
                }
            }
        }
    }

    /// The writer, opening the database if needed; `None` (logged) if it cannot be opened.
    fn open(&mut self) -> Option<Writer> {
        if let Some(writer) = self.writer.take() {
            return Some(writer);
        }
        match Writer::open(&self.args.data_dir) {
            Ok(writer) => Some(writer),
            Err(e) => {
                self.failed(&e);
                None
            }
        }
    }

    fn failed(&mut self, e: &StoreError) {
        let why = e.to_string();
        if self.failing.is_none() {
            tracing::error!(
                data_dir = %self.args.data_dir.display(),
                error = %why,
                buffered = self.pending.len(),
                "cannot write the history database; gossip and supervision go on, up to {} \
                 rows are kept in memory and writing is retried every {}",
                MAX_PENDING,
                humantime::format_duration(RETRY),
            );
        } else {
            tracing::debug!(error = %why, "the history database still cannot be written");
        }
        self.failing = Some(why);
        self.next_attempt = self.args.clock.now() + RETRY;
    }

    fn resumed(&mut self) {
        if let Some(why) = self.failing.take() {
            tracing::info!(
                data_dir = %self.args.data_dir.display(),
                dropped = self.dropped,
                was = %why,
                "writing the history database again"
            );
        }
        self.dropped = 0;
    }

    async fn maintain(&mut self) {
        let now = self.args.clock.now();
        if now < self.next_maintenance || self.failing.is_some() {
            return;
        }
        self.next_maintenance = now + MAINTAIN_EVERY;
        let Some(writer) = self.open() else {
            return;
        };
        let (raw, rollup) = (
            self.args.config.raw_retention,
            self.args.config.rollup_retention,
        );
        let now_ms = now.as_millis() as i64;
        let result = blocking(writer, move |w| {
            retention::maintain(w.connection_mut(), now_ms, raw, rollup)
        })
        .await
        .and_then(|(writer, result)| {
            self.writer = Some(writer);
            result
        });
        match result {
            Ok(done) if done != retention::Maintained::default() => {
                tracing::info!(?done, "history retention applied");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot apply the history retention"),
        }
    }
}

/// How far before a returning peer's last-heard time its back-fill starts.
const RETURN_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);
/// How long after refuting a node waits before it back-fills, for its peers to record the
/// outage they saw (a `down` is declared up to a few seconds after the suspicion).
const REFUTED_SETTLE: std::time::Duration = std::time::Duration::from_secs(5);

impl StoreState {
    /// Remembers when peers went down; when one is back, back-fills from it what it recorded
    /// since then (at most `store.backfill`), so a partition that heals leaves no gap. A peer
    /// that suspected this node, or that this node suspected, is asked the same way once it is
    /// heard from again.
    fn watch_returns(&mut self, myself: &ActorRef<StoreMsg>, recorded: &RecordedEvent) {
        let NodeEvent::Cluster(event) = &recorded.event else {
            return;
        };
        match event {
            ClusterEvent::NodeDown {
                node, last_heard, ..
            } => {
                self.suspected.remove(node);
                self.down.entry(node.clone()).or_insert(*last_heard);
            }
            ClusterEvent::NodeUp { node, .. } => {
                if let Some(last_heard) = self.down.remove(node) {
                    self.fetch_from(myself, node, last_heard);
                }
            }
            // Only this node's own suspicion says its news from `node` may have stopped:
            // another's, while its news reaches us, costs us nothing to fill in.
            ClusterEvent::NodeSuspect { node, by, .. } if by.contains(&self.args.me) => {
                let now = self.args.clock.now();
                self.suspected.entry(node.clone()).or_insert(now);
            }
            // News from a peer we suspected: we are in touch again. We may have been the one
            // cut off (alone, we see nobody down, only suspects), so what it recorded
            // meanwhile is fetched from it.
            ClusterEvent::StateChanged { node, .. } if self.suspected.contains_key(node) => {
                if let Some(since) = self.suspected.remove(node) {
                    self.fetch_from(myself, node, since);
                }
            }
            // `node` suspected us: it could not reach us (we were cut off, alone or with a
            // side too small to see it down, or hung), and what it recorded meanwhile never
            // reached us. Now that its word does, so can its history.
            ClusterEvent::StateChanged {
                node,
                key,
                value: Some(value),
            } if key.strip_prefix(SUSPECT_PREFIX) == Some(self.args.me.as_str()) => {
                let heard = value
                    .split_once(':')
                    .and_then(|(_, heard)| heard.parse::<u64>().ok())
                    .map_or_else(|| self.args.clock.now(), Time);
                self.fetch_from(myself, node, heard);
            }
            _ => {}
        }
    }

    /// This node was doubted by its peers (cut off, or hung) and has just refuted it: after
    /// [`REFUTED_SETTLE`], it back-fills from live peers what they recorded since a margin
    /// before now.
    fn after_refuting(&mut self, myself: &ActorRef<StoreMsg>) {
        if self.args.config.backfill.is_zero() {
            return;
        }
        let now = self.args.clock.now();
        let mut since = Time(
            now.as_millis()
                .saturating_sub(RETURN_MARGIN.as_millis() as u64),
        );
        if let Some((earlier, task)) = self.refuted.take()
            && !task.0.is_finished()
        {
            since = since.min(earlier);
        }
        let (peers, store) = (self.args.peers.clone(), myself.clone());
        let task = AbortOnDrop(tokio::spawn(async move {
            backfill::after_refuting(peers, store, since, REFUTED_SETTLE).await;
        }));
        self.refuted = Some((since, task));
    }

    /// Back-fills from `peer` what it recorded since `last_heard` (less a margin, at most
    /// `store.backfill`).
    fn fetch_from(&mut self, myself: &ActorRef<StoreMsg>, peer: &NodeName, last_heard: Time) {
        let window = self.args.config.backfill;
        if window.is_zero() {
            return;
        }
        let now = self.args.clock.now();
        let oldest = Time(now.as_millis().saturating_sub(window.as_millis() as u64));
        let since = Time(
            last_heard
                .as_millis()
                .saturating_sub(RETURN_MARGIN.as_millis() as u64),
        )
        .max(oldest);
        self.returns.want(&self.args.peers, myself, peer, since);
    }
}
