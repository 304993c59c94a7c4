//! `ExportActor`: sends this host's own samples and events to `store.remote_write` by
//! Prometheus' remote-write protocol (see [`crate::export`] for what is sent and why nothing
//! is lost). Every [`EVERY`] it reads what follows its cursor in the history (at most
//! [`BATCH`] samples, each at least [`SETTLE`] old, since the store writes in batches), posts it
//! on a task of its own, and moves the cursor once the receiver accepted it; a full batch is
//! followed at once by the next. A failure waits 1 s, then twice as long each time, up to
//! [`MAX_WAIT`], and sends the same batch again.

use crate::export::remote_write;
use crate::sinks::SinkError;
use crate::sinks::formats::Request;
use crate::statefile;
use crate::store::query::{ExportCursor, Owned};
use crate::task::{AbortOnDrop, ticker};
use crate::types::{Clock, NodeName};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often the history is looked at for what to send.
pub const EVERY: Duration = Duration::from_secs(5);
/// Samples per request, at most (and as many events).
pub const BATCH: usize = 5_000;
/// A sample is sent once it is this old: the store may still be writing younger ones.
pub const SETTLE: Duration = Duration::from_secs(5);
/// The longest wait between two tries of a refused or failed batch.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// Without a cursor (the first export from this data dir), it starts this far back.
pub const FIRST_LOOK: Duration = Duration::from_secs(600);

pub struct ExportArgs {
    pub me: NodeName,
    pub data_dir: PathBuf,
    /// The receiver, e.g. `http://prometheus:9090/api/v1/write`.
    pub url: String,
    pub clock: Clock,
}

pub enum ExportMsg {
    Tick,
    /// A batch went out (or there was none): where the cursor would move, how it went, and
    /// whether the batch was full (then another follows at once).
    Sent {
        cursor: ExportCursor,
        samples: usize,
        result: Result<(), String>,
        permanent: bool,
        full: bool,
    },
}

pub struct ExportState {
    args: ExportArgs,
    cursor: ExportCursor,
    busy: bool,
    wait: Duration,
    next_try: Instant,
    _ticker: AbortOnDrop<()>,
}

pub struct ExportActor;

fn cursor_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join(statefile::EXPORT_CURSOR)
}

/// The cursor of an earlier life; without one, [`FIRST_LOOK`] back from now. A file that
/// cannot be read is moved aside (samples after now minus [`FIRST_LOOK`] are sent again; a
/// receiver takes a sample it has as the same one).
fn load_cursor(data_dir: &std::path::Path, clock: Clock) -> ExportCursor {
    let fresh = || ExportCursor {
        at: clock
            .now()
            .as_millis()
            .saturating_sub(FIRST_LOOK.as_millis() as u64) as i64,
        metric: String::new(),
        event: 0,
    };
    let path = cursor_path(data_dir);
    match statefile::read_json(&path, statefile::EXPORT_CURSOR_FORMAT, &[]) {
        Ok(Some(cursor)) => cursor,
        Ok(None) => fresh(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read where the export stands; starting from the last minutes");
            let _ = statefile::move_aside(&path);
            fresh()
        }
    }
}

impl Actor for ExportActor {
    type Msg = ExportMsg;
    type State = ExportState;
    type Arguments = ExportArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ExportMsg>,
        args: ExportArgs,
    ) -> Result<ExportState, ActorProcessingErr> {
        let cursor = load_cursor(&args.data_dir, args.clock);
        tracing::info!(url = %args.url, "exporting this host's samples and events by remote write");
        let ticker = ticker(myself, args.clock, EVERY, || ExportMsg::Tick);
        Ok(ExportState {
            args,
            cursor,
            busy: false,
            wait: Duration::from_secs(1),
            next_try: Instant::now(),
            _ticker: ticker,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ExportMsg>,
        msg: ExportMsg,
        state: &mut ExportState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ExportMsg::Tick => {
                if !state.busy && Instant::now() >= state.next_try {
                    state.busy = true;
                    state.send_next(myself);
                }
            }
            ExportMsg::Sent {
                cursor,
                samples,
                result,
                permanent,
                full,
            } => {
                state.busy = false;
                match result {
                    Ok(()) => {
                        state.wait = Duration::from_secs(1);
                        state.advance(cursor);
                        if full {
                            let _ = myself.cast(ExportMsg::Tick);
                        }
                    }
                    Err(why) if permanent => {
                        tracing::warn!(error = %why, samples, "the receiver refused a batch for good; it is skipped");
                        state.advance(cursor);
                    }
                    Err(why) => {
                        tracing::warn!(error = %why, samples, retry_in = ?state.wait, "remote write failed; the batch is kept");
                        state.next_try = Instant::now() + state.wait;
                        state.wait = (state.wait * 2).min(MAX_WAIT);
                    }
                }
            }
        }
        Ok(())
    }
}

impl ExportState {
    fn advance(&mut self, cursor: ExportCursor) {
        if cursor == self.cursor {
            return;
        }
        self.cursor = cursor;
        let path = cursor_path(&self.args.data_dir);
        if let Err(e) = statefile::write_json(&path, statefile::EXPORT_CURSOR_FORMAT, &self.cursor)
        {
            tracing::warn!(file = %path.display(), error = %e, "cannot save where the export stands");
        }
    }

    /// Reads the next batch and posts it on a task; the answer comes back as `Sent`.
    fn send_next(&self, myself: ActorRef<ExportMsg>) {
        let me = self.args.me.to_string();
        let dir = self.args.data_dir.clone();
        let cursor = self.cursor.clone();
        let url = self.args.url.clone();
        let until = self
            .args
            .clock
            .now()
            .as_millis()
            .saturating_sub(SETTLE.as_millis() as u64) as i64;
        tokio::spawn(async move {
            let read = {
                let (me, cursor) = (me.clone(), cursor.clone());
                tokio::task::spawn_blocking(move || -> Result<Owned, String> {
                    match crate::store::schema::open_reader(&dir).map_err(|e| e.to_string())? {
                        Some(conn) => crate::store::query::owned(&conn, &me, &cursor, until, BATCH)
                            .map_err(|e| e.to_string()),
                        None => Ok(Owned::default()),
                    }
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
            };
            let msg = match read {
                Ok(owned) => post(&url, &me, cursor, owned).await,
                Err(why) => ExportMsg::Sent {
                    cursor,
                    samples: 0,
                    result: Err(format!("cannot read the history: {why}")),
                    permanent: false,
                    full: false,
                },
            };
            let _ = myself.cast(msg);
        });
    }
}

/// Posts `owned` (nothing when it is empty) and says where the cursor goes if it was taken.
async fn post(url: &str, me: &str, cursor: ExportCursor, owned: Owned) -> ExportMsg {
    let full = owned.samples.len() >= BATCH || owned.events.len() >= BATCH;
    let mut next = cursor;
    if let Some((metric, at, _)) = owned.samples.last() {
        next.at = *at;
        next.metric = metric.clone();
    }
    if let Some((id, ..)) = owned.events.last() {
        next.event = *id;
    }
    let series = crate::export::series(me, &owned);
    let samples = crate::export::count(&series);
    if series.is_empty() {
        return ExportMsg::Sent {
            cursor: next,
            samples: 0,
            result: Ok(()),
            permanent: false,
            full,
        };
    }
    let request = Request {
        url: url.to_string(),
        content_type: "application/x-protobuf",
        headers: vec![
            ("Content-Encoding", "snappy".to_string()),
            ("X-Prometheus-Remote-Write-Version", "0.1.0".to_string()),
        ],
        body: remote_write::snappy(&remote_write::encode(&series)),
    };
    let sent = tokio::time::timeout(
        crate::sinks::ATTEMPT_TIMEOUT,
        crate::sinks::post(&request, url, None),
    )
    .await
    .unwrap_or(Err(SinkError::TimedOut(crate::sinks::ATTEMPT_TIMEOUT)));
    let permanent = sent.as_ref().is_err_and(SinkError::is_permanent);
    ExportMsg::Sent {
        cursor: next,
        samples,
        result: sent.map_err(|e| e.to_string()),
        permanent,
        full,
    }
}
