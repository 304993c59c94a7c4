//! The history store (DESIGN §8): every host keeps the whole cluster's history in an SQLite
//! file in `data_dir` (`history.db`), written by one actor and readable by anyone.
//!
//! * [`schema`] — opening (WAL, `synchronous=FULL`) and the versioned schema with migrations.
//! * [`record`] — what an event becomes as rows, and the idempotency keys: a sample is
//!   (origin, metric, origin time), the origin time travelling inside the gossiped `sys` value;
//!   a membership event is (kind, node, incarnation).
//! * [`writer`] — one transaction per batch, `INSERT OR IGNORE` on those keys.
//! * [`actor`] — the `StoreActor`, the single writer: buffers what the node learns, writes it
//!   every tick, survives a full disk or a read-only directory by buffering a bounded amount
//!   and retrying, and folds old samples into rollups.
//! * [`retention`] — rollups and deletion, with `now` as an argument.
//! * [`query`] — `events` and `history` for the API and CLI.
//! * [`backfill`] — fetching what a node missed from its peers over the gossip TCP port.

pub mod backfill;
pub mod incarnation;
pub mod query;
pub mod record;
pub mod retention;
pub mod schema;
pub mod writer;

use std::path::{Path, PathBuf};

/// Why the store could not do something.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {}: {source}", .path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set the mode of {}: {source}", .path.display())]
    Mode {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the history database {}: {source}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("history database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "the history database has schema version {version}, newer than this nbwatch knows \
         ({known}); upgrade nbwatch or move the file away"
    )]
    TooNew { version: u32, known: u32 },
    #[error("the history database is damaged: {0}")]
    Corrupt(String),
    #[error("nothing is recorded of node \"{0}\" on this host")]
    UnknownNode(String),
    #[error(
        "node \"{node}\" has no metric \"{metric}\"; it has: {}",
        if known.is_empty() { "none".to_string() } else { known.join(", ") }
    )]
    UnknownMetric {
        node: String,
        metric: String,
        known: Vec<String>,
    },
    #[error("the history is not available: {0}")]
    Unavailable(String),
}

impl StoreError {
    fn open(path: &Path, source: rusqlite::Error) -> StoreError {
        StoreError::Open {
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests;
