//! The one connection that writes: a batch of rows is one transaction, so a crash leaves every
//! batch either whole or absent, and with `synchronous=FULL` a batch whose `write` returned is
//! on disk.
//!
//! Inserts are `INSERT OR IGNORE` on the idempotency keys (see [`super::record`]): writing a
//! row twice, as gossip or back-fill may deliver it, leaves one row.

use super::StoreError;
use super::record::Row;
use super::schema;
use crate::wire::{EventRow, Sample};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::collections::HashMap;
use std::path::Path;

/// How many rows a write actually added (the rest were already there).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub samples: usize,
    pub events: usize,
}

pub struct Writer {
    conn: Connection,
    /// `(node, metric)` -> series id, as committed.
    series: HashMap<(String, String), i64>,
}

impl Writer {
    pub fn open(data_dir: &Path) -> Result<Writer, StoreError> {
        Ok(Writer {
            conn: schema::open_writer(data_dir)?,
            series: HashMap::new(),
        })
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn connection_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Writes `rows` in one transaction.
    pub fn write(&mut self, rows: &[Row]) -> Result<Written, StoreError> {
        let mut added = HashMap::new();
        let result = write_rows(&mut self.conn, &self.series, &mut added, rows);
        if result.is_ok() {
            self.series.extend(added);
        }
        result
    }
}

fn write_rows(
    conn: &mut Connection,
    known: &HashMap<(String, String), i64>,
    added: &mut HashMap<(String, String), i64>,
    rows: &[Row],
) -> Result<Written, StoreError> {
    let tx = conn.transaction()?;
    let mut written = Written::default();
    {
        let mut sample = tx.prepare_cached(
            "INSERT OR IGNORE INTO samples (series, at, value) VALUES (?1, ?2, ?3)",
        )?;
        let mut event = tx.prepare_cached(
            "INSERT OR IGNORE INTO events
                 (at, node, kind, ident, incarnation, last_heard, detail, json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for row in rows {
            match row {
                Row::Sample(s) => {
                    let id = series_id(&tx, known, added, s)?;
                    written.samples +=
                        sample.execute(params![id, s.at.as_millis() as i64, s.value])?;
                }
                Row::Event(e) => written.events += insert_event(&mut event, e)?,
            }
        }
    }
    tx.commit()?;
    Ok(written)
}

fn insert_event(stmt: &mut rusqlite::CachedStatement<'_>, e: &EventRow) -> rusqlite::Result<usize> {
    stmt.execute(params![
        e.at.as_millis() as i64,
        e.node,
        e.kind,
        e.ident,
        e.incarnation.map(|i| i as i64),
        e.last_heard.map(|t| t.as_millis() as i64),
        e.detail,
        e.json,
    ])
}

fn series_id(
    tx: &Transaction<'_>,
    known: &HashMap<(String, String), i64>,
    added: &mut HashMap<(String, String), i64>,
    s: &Sample,
) -> rusqlite::Result<i64> {
    let key = (s.node.clone(), s.metric.clone());
    if let Some(id) = known.get(&key).or_else(|| added.get(&key)) {
        return Ok(*id);
    }
    let existing = tx
        .prepare_cached("SELECT id FROM series WHERE node = ?1 AND metric = ?2")?
        .query_row(params![s.node, s.metric], |r| r.get(0))
        .optional()?;
    let id = match existing {
        Some(id) => id,
        None => {
            tx.prepare_cached("INSERT INTO series (node, metric) VALUES (?1, ?2)")?
                .execute(params![s.node, s.metric])?;
            tx.last_insert_rowid()
        }
    };
    added.insert(key, id);
    Ok(id)
}
