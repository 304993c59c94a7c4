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

use super::{StoreError, schema};
use crate::types::Time;
use crate::wire::{EventRow, Frame, Page, PageRequest, Sample};
use rusqlite::{Connection, params};
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

static SERVING: Semaphore = Semaphore::const_new(CONCURRENT_PAGES);

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
