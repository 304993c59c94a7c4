//! The asking side of back-fill (see [`crate::store::backfill`] for the format and the
//! serving side): a node that starts, that refuted a suspicion of itself, or that sees a peer
//! come back fetches what live peers recorded and hands each page to its StoreActor, waiting
//! until it is written before asking for the next.

use crate::actors::gossip::GossipMsg;
use crate::actors::store::StoreMsg;
use crate::gossip::Status;
use crate::secure::Gate;
use crate::store::backfill::{PAGE_PAUSE, PEERS, WAIT_FOR_PEERS};
use crate::store::record::Row;
use crate::task::{AbortOnDrop, Handle};
use crate::types::{Clock, NodeName, Time};
use crate::wire::{Frame, PageRequest};
use ractor::ActorRef;
use ractor::rpc::CallResult;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PAGE_TIMEOUT: Duration = Duration::from_secs(15);
const WRITE_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a back-fill from one peer stopped.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("no page within {0:?}")]
    NoPage(Duration),
    #[error(transparent)]
    Exchange(#[from] crate::wire::ExchangeError),
    #[error("the peer answered something else than a history page")]
    NotAPage,
    #[error("the peer cannot read its history: {0}")]
    PeerCannotRead(String),
    #[error("cannot write: {0}")]
    Write(crate::actors::store::WriteError),
    #[error("the store did not take the page")]
    StoreGone,
}

/// How the asking side reaches the others: the gossip actor (for the live peers) and the
/// gate of the gossip port.
#[derive(Clone)]
pub struct Peers {
    pub gossip: Handle<GossipMsg>,
    pub gate: Arc<Gate>,
}

/// What one back-fill fetched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    pub samples: usize,
    pub events: usize,
    pub pages: usize,
}

/// The asking side: waits for live peers, then fetches everything since `now - window` from
/// up to [`PEERS`] of them, handing each page to `store` and waiting until it is written.
pub async fn run(peers_of: Peers, store: ActorRef<StoreMsg>, clock: Clock, window: Duration) {
    let deadline = tokio::time::Instant::now() + WAIT_FOR_PEERS;
    let peers = loop {
        let peers = live_peers(&peers_of).await;
        if !peers.is_empty() {
            break peers;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::info!("no live peer to back-fill the history from");
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let since = Time(
        clock
            .now()
            .as_millis()
            .saturating_sub(window.as_millis() as u64),
    );
    from_some(&peers_of, &store, peers, since, clock.now()).await;
}

/// This node has just refuted a suspicion of itself: it was cut off or hung, perhaps too
/// briefly to suspect anyone itself, and the suspicions of it may be withdrawn before it hears
/// them. After `settle` (for the others to record what they saw), it fetches what up to
/// [`PEERS`] live peers recorded since `since`.
pub async fn after_refuting(
    peers_of: Peers,
    store: ActorRef<StoreMsg>,
    since: Time,
    settle: Duration,
) {
    tokio::time::sleep(settle).await;
    let views = members(&peers_of).await;
    let (peers, from) = (live(&views), widened(&views, since));
    from_some(&peers_of, &store, peers, from, since).await;
}

/// Fetches everything since `since` from up to [`PEERS`] of `peers`, picked at random.
async fn from_some(
    peers_of: &Peers,
    store: &ActorRef<StoreMsg>,
    mut peers: Vec<(String, SocketAddr)>,
    since: Time,
    seed: Time,
) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed.as_millis());
    peers.shuffle(&mut rng);
    for (name, addr) in peers.into_iter().take(PEERS) {
        match fetch(
            &peers_of.gate,
            &NodeName::from(name.as_str()),
            addr,
            since,
            store,
        )
        .await
        {
            Ok(f) => tracing::info!(
                peer = %name, samples = f.samples, events = f.events, pages = f.pages,
                since = %since, "history back-filled"
            ),
            Err(why) => tracing::warn!(peer = %name, reason = %why, "back-fill failed"),
        }
    }
}

/// The back-fills from peers that came back (after an outage, a suspicion of them by this
/// node, or a suspicion of this node by them), run one at a time by one task.
///
/// In a loaded cluster suspicions and refutations come in bursts, and a back-fill per event
/// would feed the load that caused them (each is a TCP exchange, pages read on the peer and
/// written here): requests for one peer merge into one (the earliest start wins), each waits
/// [`RETURN_SETTLE`] for the others that follow it, and the fetches run one after another.
/// A node then costs its peers at most one back-fill at a time, however many events it saw.
#[derive(Default)]
pub struct Returns {
    queue: Arc<Mutex<Queue>>,
    task: Option<AbortOnDrop<()>>,
}

#[derive(Default)]
struct Queue {
    /// Each waiting peer, and from when its history is wanted.
    wanted: BTreeMap<NodeName, Time>,
    /// Whether the task is at work (it stops, under the lock, when nothing is left).
    working: bool,
}

/// How long a back-fill from a returning peer waits before it starts, so the requests a burst
/// of events makes for the same peer become one.
pub const RETURN_SETTLE: Duration = Duration::from_secs(2);

impl Returns {
    /// Asks for what `peer` recorded since `since`; merged with a request for it that waits.
    pub fn want(
        &mut self,
        peers_of: &Peers,
        store: &ActorRef<StoreMsg>,
        peer: &NodeName,
        since: Time,
    ) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue
            .wanted
            .entry(peer.clone())
            .and_modify(|t| *t = (*t).min(since))
            .or_insert(since);
        if queue.working {
            return;
        }
        queue.working = true;
        drop(queue);
        let (queue, peers_of, store) = (self.queue.clone(), peers_of.clone(), store.clone());
        self.task = Some(AbortOnDrop(tokio::spawn(async move {
            // A fetch that panicked must not leave the queue marked at work forever.
            let _reset = ResetOnPanic(queue.clone());
            loop {
                tokio::time::sleep(RETURN_SETTLE).await;
                let next = {
                    let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                    let next = q.wanted.pop_first();
                    q.working = next.is_some();
                    next
                };
                let Some((peer, since)) = next else { return };
                from_returning(&peers_of, &store, &peer, since).await;
            }
        })));
    }
}

/// Clears [`Queue::working`] if the task unwinds, so the next request starts a new one.
struct ResetOnPanic(Arc<Mutex<Queue>>);

impl Drop for ResetOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
            q.working = false;
        }
    }
}

/// Back-fills from `peer`, which has just come back, everything it recorded since `since`.
async fn from_returning(
    peers_of: &Peers,
    store: &ActorRef<StoreMsg>,
    peer: &NodeName,
    since: Time,
) {
    let views = members(peers_of).await;
    let since = widened(&views, since);
    let Some(addr) = live(&views)
        .into_iter()
        .find(|(name, _)| name.as_str() == peer.as_str())
        .map(|(_, addr)| addr)
    else {
        return;
    };
    match fetch(&peers_of.gate, peer, addr, since, store).await {
        Ok(f) => tracing::info!(
            peer = %peer, samples = f.samples, events = f.events, pages = f.pages,
            since = %since, "history back-filled from a returning peer"
        ),
        Err(why) => {
            tracing::warn!(peer = %peer, reason = %why, "back-fill from a returning peer failed")
        }
    }
}

async fn live_peers(peers_of: &Peers) -> Vec<(String, SocketAddr)> {
    live(&members(peers_of).await)
}

/// The live peers of a view, by name and address.
fn live(views: &[crate::gossip::MemberView]) -> Vec<(String, SocketAddr)> {
    views
        .iter()
        .filter(|m| !m.is_self && m.status == Status::Alive)
        .map(|m| (m.name.0.clone(), m.addr))
        .collect()
}

async fn members(peers_of: &Peers) -> Vec<crate::gossip::MemberView> {
    peers_of
        .gossip
        .call(GossipMsg::Members, Some(Duration::from_secs(2)))
        .await
        .unwrap_or_default()
}

/// `since` less the largest offset of a member's clock from ours past the tolerance: a
/// peer's history keeps samples at their origin's clock and its own events at its clock, so
/// asking from our `since` as it is would miss the rows of a host whose clock is behind.
fn widened(views: &[crate::gossip::MemberView], since: Time) -> Time {
    let skew = views
        .iter()
        .filter_map(|m| m.clock_offset)
        .map(i64::unsigned_abs)
        .filter(|o| *o > crate::gossip::core::clock::TOLERANCE.as_millis() as u64)
        .max()
        .unwrap_or(0);
    Time(since.as_millis().saturating_sub(skew))
}

/// Fetches every page of the history of node `name`, at `peer`, since `since` into `store`.
/// The requests are sealed for that node by name, so no other node answers them.
pub async fn fetch(
    gate: &Gate,
    name: &NodeName,
    peer: SocketAddr,
    since: Time,
    store: &ActorRef<StoreMsg>,
) -> Result<Fetched, BackfillError> {
    let mut request = PageRequest {
        since,
        samples_after: None,
        events_after: None,
    };
    let (mut samples_done, mut events_done) = (false, false);
    let mut fetched = Fetched::default();
    while !(samples_done && events_done) {
        let frame = Frame::HistoryRequest(request.clone());
        let answer = tokio::time::timeout(
            PAGE_TIMEOUT,
            crate::transport::ask(gate, peer, Some(name), &frame),
        )
        .await
        .map_err(|_| BackfillError::NoPage(PAGE_TIMEOUT))??;
        let Frame::HistoryPage(page) = answer else {
            return Err(BackfillError::NotAPage);
        };
        if let Some(why) = page.error {
            return Err(BackfillError::PeerCannotRead(why));
        }
        fetched.pages += 1;
        fetched.samples += page.samples.len();
        fetched.events += page.events.len();
        let mut rows: Vec<Row> = Vec::with_capacity(page.samples.len() + page.events.len());
        if !samples_done {
            rows.extend(page.samples.into_iter().map(Row::Sample));
        }
        if !events_done {
            rows.extend(page.events.into_iter().map(Row::Event));
        }
        match store
            .call(|reply| StoreMsg::Backfill(rows, reply), Some(WRITE_TIMEOUT))
            .await
        {
            Ok(CallResult::Success(Ok(()))) => {}
            Ok(CallResult::Success(Err(why))) => return Err(BackfillError::Write(why)),
            _ => return Err(BackfillError::StoreGone),
        }
        samples_done = samples_done || page.samples_next.is_none();
        events_done = events_done || page.events_next.is_none();
        // Once a kind is done, ask from past its end so it stays empty.
        request.samples_after = page.samples_next.or(Some((i64::MAX, i64::MAX)));
        request.events_after = page.events_next.or(Some(i64::MAX));
        if !(samples_done && events_done) {
            tokio::time::sleep(PAGE_PAUSE).await;
        }
    }
    Ok(fetched)
}
