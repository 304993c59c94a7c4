//! Back-fill: a node that starts (newly joined, or back from an outage) fetches from live peers
//! the samples and events of the last `store.backfill` that it missed, so its record is as
//! complete as theirs.
//!
//! It goes over the gossip TCP port, sealed like all gossip (`secure::Gate`), one connection
//! per page: the asker sends a
//! [`PageRequest`] (`Frame::HistoryRequest`) with the cursors of the previous page and gets a
//! [`Page`] of at most [`SAMPLES_PER_PAGE`] samples and [`EVENTS_PER_PAGE`] events. The cursors
//! are the server's own row keys (series number and time; event id), so paging is exact even
//! while the server keeps writing. Both sides limit the rate: the server answers at most
//! [`CONCURRENT_PAGES`] requests at once (others wait), and the asker pauses [`PAGE_PAUSE`]
//! between pages and hands each page to its StoreActor and waits until it is written before
//! asking for the next, so back-fill never outruns the disk or fills the memory. The rows keep
//! their idempotency keys, so a page fetched twice, or from two peers, adds nothing twice.

use super::StoreMsg;
use super::record::{EventRow, Row, Sample};
use super::{StoreError, schema};
use crate::gossip::Status;
use crate::gossip::actor::GossipMsg;
use crate::node::directory::Directory;
use crate::types::{Clock, NodeName, Time};
use crate::wire::Frame;
use ractor::ActorRef;
use ractor::rpc::CallResult;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::Semaphore;

pub const SAMPLES_PER_PAGE: usize = 5_000;
pub const EVENTS_PER_PAGE: usize = 500;
/// Pages a node serves at once; further requests wait their turn.
pub const CONCURRENT_PAGES: usize = 2;
/// The asker's pause between two pages (with the page size: at most ~100,000 samples/s).
pub const PAGE_PAUSE: Duration = Duration::from_millis(50);
/// How many live peers a node back-fills from (each should hold the whole cluster's record).
pub const PEERS: usize = 2;
/// How long a starting node waits to see live peers before giving up on back-fill.
pub const WAIT_FOR_PEERS: Duration = Duration::from_secs(60);
const PAGE_TIMEOUT: Duration = Duration::from_secs(15);
const WRITE_TIMEOUT: Duration = Duration::from_secs(120);

static SERVING: Semaphore = Semaphore::const_new(CONCURRENT_PAGES);

/// "Rows since `since`, after these cursors" (`None`: from the start).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageRequest {
    pub since: Time,
    pub samples_after: Option<(i64, i64)>,
    pub events_after: Option<i64>,
}

/// One page; a `None` cursor means that kind of row is done.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Page {
    pub samples: Vec<Sample>,
    pub events: Vec<EventRow>,
    pub samples_next: Option<(i64, i64)>,
    pub events_next: Option<i64>,
    /// Why the server could not answer (then the rest is empty).
    pub error: Option<String>,
}

/// Answers one page request from the database in `data_dir` (an empty, final page if there
/// is none yet).
pub async fn serve(data_dir: PathBuf, request: PageRequest) -> Frame {
    let Ok(_permit) = SERVING.acquire().await else {
        return Frame::HistoryPage(Page::default());
    };
    let page = tokio::task::spawn_blocking(move || match schema::open_reader(&data_dir)? {
        None => Ok(Page::default()),
        Some(conn) => page(&conn, &request),
    })
    .await
    .map_err(|e| StoreError::Unavailable(e.to_string()))
    .and_then(|r| r);
    Frame::HistoryPage(page.unwrap_or_else(|e| Page {
        error: Some(e.to_string()),
        ..Page::default()
    }))
}

/// One page of `conn`'s rows for `request` (pure database work, tested on its own).
pub fn page(conn: &Connection, request: &PageRequest) -> Result<Page, StoreError> {
    let since = request.since.as_millis() as i64;
    let mut page = Page::default();
    if let Some((series, at)) = request.samples_after.or(Some((i64::MIN, i64::MIN))) {
        let mut stmt = conn.prepare_cached(
            "SELECT x.series, x.at, s.node, s.metric, x.value
             FROM samples x JOIN series s ON s.id = x.series
             WHERE (x.series, x.at) > (?1, ?2) AND x.at >= ?3
             ORDER BY x.series, x.at LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![series, at, since, SAMPLES_PER_PAGE as i64], |r| {
            Ok((
                (r.get::<_, i64>(0)?, r.get::<_, i64>(1)?),
                Sample {
                    node: r.get(2)?,
                    metric: r.get(3)?,
                    at: Time(r.get::<_, i64>(1)?.max(0) as u64),
                    value: r.get(4)?,
                },
            ))
        })?;
        for row in rows {
            let (key, sample) = row?;
            page.samples_next = Some(key);
            page.samples.push(sample);
        }
        if page.samples.len() < SAMPLES_PER_PAGE {
            page.samples_next = None;
        }
    }
    let after = request.events_after.unwrap_or(-1);
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, node, kind, ident, incarnation, last_heard, detail, json FROM events
         WHERE id > ?1 AND at >= ?2 ORDER BY id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![after, since, EVENTS_PER_PAGE as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            EventRow {
                at: Time(r.get::<_, i64>(1)?.max(0) as u64),
                node: r.get(2)?,
                kind: r.get(3)?,
                ident: r.get(4)?,
                incarnation: r.get::<_, Option<i64>>(5)?.map(|i| i.max(0) as u64),
                last_heard: r.get::<_, Option<i64>>(6)?.map(|t| Time(t.max(0) as u64)),
                detail: r.get(7)?,
                json: r.get(8)?,
            },
        ))
    })?;
    for row in rows {
        let (id, event) = row?;
        page.events_next = Some(id);
        page.events.push(event);
    }
    if page.events.len() < EVENTS_PER_PAGE {
        page.events_next = None;
    }
    Ok(page)
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
pub async fn run(directory: Directory, store: ActorRef<StoreMsg>, clock: Clock, window: Duration) {
    let deadline = tokio::time::Instant::now() + WAIT_FOR_PEERS;
    let peers = loop {
        let peers = live_peers(&directory).await;
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
    from_some(&directory, &store, peers, since, clock.now()).await;
}

/// This node has just refuted a suspicion of itself: it was cut off or hung, perhaps too
/// briefly to suspect anyone itself, and the suspicions of it may be withdrawn before it hears
/// them. After `settle` (for the others to record what they saw), it fetches what up to
/// [`PEERS`] live peers recorded since `since`.
pub async fn after_refuting(
    directory: Directory,
    store: ActorRef<StoreMsg>,
    since: Time,
    settle: Duration,
) {
    tokio::time::sleep(settle).await;
    let peers = live_peers(&directory).await;
    from_some(&directory, &store, peers, since, since).await;
}

/// Fetches everything since `since` from up to [`PEERS`] of `peers`, picked at random.
async fn from_some(
    directory: &Directory,
    store: &ActorRef<StoreMsg>,
    mut peers: Vec<(String, SocketAddr)>,
    since: Time,
    seed: Time,
) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed.as_millis());
    peers.shuffle(&mut rng);
    for (name, addr) in peers.into_iter().take(PEERS) {
        match fetch(directory.gate(), addr, since, store).await {
            Ok(f) => tracing::info!(
                peer = %name, samples = f.samples, events = f.events, pages = f.pages,
                since = %since, "history back-filled"
            ),
            Err(why) => tracing::warn!(peer = %name, reason = %why, "back-fill failed"),
        }
    }
}

/// Back-fills from `peer`, which has just come back, everything it recorded since `since`.
pub async fn from_returning(
    directory: Directory,
    store: ActorRef<StoreMsg>,
    peer: NodeName,
    since: Time,
) {
    let Some(addr) = live_peers(&directory)
        .await
        .into_iter()
        .find(|(name, _)| name.as_str() == peer.as_str())
        .map(|(_, addr)| addr)
    else {
        return;
    };
    match fetch(directory.gate(), addr, since, &store).await {
        Ok(f) => tracing::info!(
            peer = %peer, samples = f.samples, events = f.events, pages = f.pages,
            since = %since, "history back-filled from a returning peer"
        ),
        Err(why) => {
            tracing::warn!(peer = %peer, reason = %why, "back-fill from a returning peer failed")
        }
    }
}

async fn live_peers(directory: &Directory) -> Vec<(String, SocketAddr)> {
    let Some(gossip) = directory.gossip() else {
        return Vec::new();
    };
    match gossip
        .call(GossipMsg::Members, Some(Duration::from_secs(2)))
        .await
    {
        Ok(CallResult::Success(views)) => views
            .into_iter()
            .filter(|m| !m.is_self && m.status == Status::Alive)
            .map(|m| (m.name.0, m.addr))
            .collect(),
        _ => Vec::new(),
    }
}

/// Fetches every page of `peer`'s history since `since` into `store`.
pub async fn fetch(
    gate: &crate::secure::Gate,
    peer: SocketAddr,
    since: Time,
    store: &ActorRef<StoreMsg>,
) -> Result<Fetched, String> {
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
            crate::gossip::actor::net::ask(gate, peer, &frame),
        )
        .await
        .map_err(|_| format!("no page within {PAGE_TIMEOUT:?}"))??;
        let Frame::HistoryPage(page) = answer else {
            return Err("the peer answered something else than a history page".into());
        };
        if let Some(why) = page.error {
            return Err(format!("the peer cannot read its history: {why}"));
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
            Ok(CallResult::Success(Err(why))) => return Err(format!("cannot write: {why}")),
            _ => return Err("the store did not take the page".into()),
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
