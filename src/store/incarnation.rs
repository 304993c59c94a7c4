//! The node's incarnation survives restarts in `data_dir/incarnation`, so a restarted daemon
//! comes back with a higher one and its new life wins over the old one in everyone's view.
//!
//! Written as tmp + rename so a crash mid-write never leaves a truncated number behind. When the
//! data dir cannot be written, the Unix time in seconds is used instead: it only grows, so it
//! is still higher than any earlier life (unless the clock was set back).

use crate::types::Incarnation;
use std::io;
use std::path::{Path, PathBuf};

use crate::statefile::{INCARNATION as FILE, INCARNATION_FORMAT, header, text_format};

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// The incarnation of a new life: the stored one plus one (missing: 1), stored back.
pub(crate) fn next(data_dir: &Path) -> Incarnation {
    match read_and_bump(data_dir) {
        Ok(inc) => inc,
        Err(e) => {
            let fallback = Incarnation(unix_seconds());
            tracing::warn!(
                data_dir = %data_dir.display(), error = %e, incarnation = %fallback,
                "cannot keep the incarnation in the data dir; using the Unix time instead"
            );
            fallback
        }
    }
}

fn read_and_bump(data_dir: &Path) -> io::Result<Incarnation> {
    std::fs::create_dir_all(data_dir)?;
    let invalid = |why: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {why}", path(data_dir).display()),
        )
    };
    let stored = match std::fs::read_to_string(path(data_dir)) {
        Ok(text) => {
            let (format, body) =
                text_format("incarnation", &text).map_err(|e| invalid(e.to_string()))?;
            if format > INCARNATION_FORMAT {
                return Err(invalid(format!(
                    "format {format} is newer than this nbwatch reads ({INCARNATION_FORMAT})"
                )));
            }
            body.trim()
                .parse::<u64>()
                .map_err(|e| invalid(format!("holds {:?}: {e}", body.trim())))?
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    let next = Incarnation(stored.saturating_add(1));
    save(data_dir, next)?;
    Ok(next)
}

/// Stores `inc` (after a refutation raised it).
pub(crate) fn save(data_dir: &Path, inc: Incarnation) -> io::Result<()> {
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    // Format 1 is the bare number every build has written; later formats name themselves.
    let head = match INCARNATION_FORMAT {
        1 => String::new(),
        n => header("incarnation", n),
    };
    std::fs::write(&tmp, format!("{head}{}\n", inc.0))?;
    std::fs::rename(&tmp, path(data_dir))
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_life_gets_a_higher_incarnation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("a/b");
        assert_eq!(next(&data), Incarnation(1));
        assert_eq!(next(&data), Incarnation(2));
        save(&data, Incarnation(7)).expect("save");
        assert_eq!(next(&data), Incarnation(8));
    }

    #[test]
    fn an_unwritable_data_dir_falls_back_to_the_unix_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").expect("write");
        let inc = next(&file.join("data"));
        assert!(inc.0 > 1_700_000_000, "{inc}");
    }

    #[test]
    fn a_corrupt_file_falls_back_to_the_unix_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE), "garbage").expect("write");
        assert!(next(dir.path()).0 > 1_700_000_000);
    }

    #[test]
    fn a_file_in_a_newer_format_is_not_misread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let newer = format!("{}41\n", header("incarnation", INCARNATION_FORMAT + 1));
        std::fs::write(dir.path().join(FILE), newer).expect("write");
        let err = read_and_bump(dir.path()).expect_err("refused");
        assert!(err.to_string().contains("newer"), "{err}");
        // The start refuses it before this (statefile::check_data_dir); were it reached, the
        // Unix time still makes the new life the highest.
        assert!(next(dir.path()).0 > 1_700_000_000);
    }
}
