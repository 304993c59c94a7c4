//! The database file: how it is opened (WAL, `synchronous=FULL`) and its versioned schema.
//!
//! The schema version is SQLite's `user_version`. [`MIGRATIONS`] holds one SQL script per
//! version; opening applies the missing ones in order, each in its own transaction, so a crash
//! in the middle of an upgrade leaves the file at the last complete version. A file written by
//! a newer nbwatch (a higher version than we know) is refused rather than guessed at.
//!
//! Times are integers, milliseconds since the Unix epoch (`datetime(at / 1000, 'unixepoch')`
//! in `sqlite3`). A metric series (`node`, `metric`) is named once in `series`; the sample and
//! rollup tables refer to it by number and are `WITHOUT ROWID` tables clustered on
//! `(series, at)`, which keeps a sample at about 20 bytes and makes "one node's metric over a
//! day" one range scan. `samples_v` and `events` are what a person queries (see the README).

use super::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// The database's name inside `data_dir`.
pub const FILE_NAME: &str = crate::statefile::HISTORY;
/// Its mode: the daemon's user reads and writes, the data dir's group reads.
pub const HISTORY_MODE: u32 = 0o640;

/// One script per schema version: `MIGRATIONS[i]` takes the file from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: samples, rollups, events.
    "CREATE TABLE series (
         id     INTEGER PRIMARY KEY,
         node   TEXT NOT NULL,
         metric TEXT NOT NULL,
         UNIQUE (node, metric)
     );
     CREATE TABLE samples (
         series INTEGER NOT NULL,
         at     INTEGER NOT NULL,
         value  REAL NOT NULL,
         PRIMARY KEY (series, at)
     ) WITHOUT ROWID;
     CREATE TABLE rollup_1m (
         series INTEGER NOT NULL,
         bucket INTEGER NOT NULL,
         n      INTEGER NOT NULL,
         min    REAL NOT NULL,
         avg    REAL NOT NULL,
         max    REAL NOT NULL,
         PRIMARY KEY (series, bucket)
     ) WITHOUT ROWID;
     CREATE TABLE rollup_1h (
         series INTEGER NOT NULL,
         bucket INTEGER NOT NULL,
         n      INTEGER NOT NULL,
         min    REAL NOT NULL,
         avg    REAL NOT NULL,
         max    REAL NOT NULL,
         PRIMARY KEY (series, bucket)
     ) WITHOUT ROWID;
     CREATE TABLE events (
         id          INTEGER PRIMARY KEY,
         at          INTEGER NOT NULL,
         node        TEXT NOT NULL,
         kind        TEXT NOT NULL,
         ident       TEXT NOT NULL UNIQUE,
         incarnation INTEGER,
         last_heard  INTEGER,
         detail      TEXT NOT NULL,
         json        TEXT NOT NULL
     );
     CREATE INDEX events_at ON events (at);
     CREATE INDEX events_node_at ON events (node, at);
     CREATE VIEW samples_v AS
         SELECT series.node, series.metric, samples.at, samples.value
         FROM samples JOIN series ON series.id = samples.series;",
];

/// The schema version this build writes.
pub fn current_version() -> u32 {
    MIGRATIONS.len() as u32
}

/// How long a connection waits for another one's lock (a reader checkpointing, a `sqlite3`
/// shell holding a write transaction) before giving up with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens (creating it and `data_dir` if needed) the database for writing and brings its schema
/// up to date.
pub fn open_writer(data_dir: &Path) -> Result<Connection, StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Dir {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let path = data_dir.join(FILE_NAME);
    let mut conn = Connection::open(&path).map_err(|e| StoreError::open(&path, e))?;
    // The daemon's user writes, its group may read (SECURITY.md); SQLite gives the -wal and
    // -shm files the database's mode.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(HISTORY_MODE)).map_err(
        |source| StoreError::Mode {
            path: path.clone(),
            source,
        },
    )?;
    configure(&conn).map_err(|e| StoreError::open(&path, e))?;
    migrate(&mut conn).map_err(|e| match e {
        StoreError::Sqlite(e) => StoreError::open(&path, e),
        other => other,
    })?;
    Ok(conn)
}

/// Opens the database read-only, for queries; `Ok(None)` when there is no database yet.
pub fn open_reader(data_dir: &Path) -> Result<Option<Connection>, StoreError> {
    let path = data_dir.join(FILE_NAME);
    if !path.exists() {
        return Ok(None);
    }
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::open(&path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| StoreError::open(&path, e))?;
    Ok(Some(conn))
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL: readers (the API, `sqlite3`) never block the writer. FULL: a commit is on disk
    // when it returns, also across power loss (NORMAL may lose the last commits).
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(%mode, "the history database cannot use WAL; using {mode}");
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    Ok(())
}

/// Applies the missing migrations, each in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = current_version();
    if version > known {
        return Err(StoreError::TooNew { version, known });
    }
    for (i, script) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(script)?;
        tx.pragma_update(None, "user_version", i as u32 + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "history database schema migrated");
    }
    Ok(())
}

/// `PRAGMA integrity_check`: `Ok(())` or every problem SQLite lists.
pub fn integrity_check(conn: &Connection) -> Result<(), StoreError> {
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if lines == ["ok"] {
        Ok(())
    } else {
        Err(StoreError::Corrupt(lines.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_gets_the_current_schema_in_wal_mode_with_full_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = open_writer(&dir.path().join("sub")).expect("open");
        let version: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, current_version());
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("sync");
        assert_eq!(sync, 2, "FULL");
        integrity_check(&conn).expect("integrity");
    }

    #[test]
    fn opening_again_keeps_the_data_and_migrates_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let conn = open_writer(dir.path()).expect("open");
            conn.execute(
                "INSERT INTO series (node, metric) VALUES ('a', 'load1')",
                [],
            )
            .expect("insert");
        }
        let conn = open_writer(dir.path()).expect("open again");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM series", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 1);
    }

    #[test]
    fn a_file_from_a_newer_nbwatch_is_refused_with_its_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let conn = open_writer(dir.path()).expect("open");
            conn.pragma_update(None, "user_version", 99).expect("bump");
        }
        let err = open_writer(dir.path()).expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("99") && text.contains("newer"), "{text}");
    }

    #[test]
    fn a_garbage_file_is_a_clear_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE_NAME), vec![0x42u8; 8192]).expect("write");
        let err = open_writer(dir.path()).expect_err("refused");
        assert!(err.to_string().contains(FILE_NAME), "{err}");
    }
}
