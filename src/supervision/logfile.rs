//! A service's log file, rotated by size: `<name>.log` grows to `max_bytes`, then becomes
//! `<name>.log.1` (the older ones shift up to `.keep`, the oldest is deleted) and a new
//! `<name>.log` starts. A write is never split across two files, so a line is only cut when
//! one write alone is bigger than the limit.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where service logs go and how big they may grow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub keep: u32,
}

pub const DEFAULT_LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
pub const DEFAULT_LOG_KEEP: u32 = 3;

impl LogSettings {
    pub fn new(dir: PathBuf) -> LogSettings {
        LogSettings {
            dir,
            max_bytes: DEFAULT_LOG_MAX_BYTES,
            keep: DEFAULT_LOG_KEEP,
        }
    }
}

#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: u32,
}

impl RotatingLog {
    /// Opens (appending) or creates `path` and its folder.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<RotatingLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingLog {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes: max_bytes.max(1),
            keep,
        })
    }

    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + bytes.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn numbered(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            self.file.set_len(0)?;
        } else {
            let _ = std::fs::remove_file(self.numbered(self.keep));
            for n in (1..self.keep).rev() {
                let from = self.numbered(n);
                if from.exists() {
                    std::fs::rename(&from, self.numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.numbered(1))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: PathBuf) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn rotates_by_size_and_keeps_only_the_newest_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("svc.log");
        let mut log = RotatingLog::open(&path, 10, 2).expect("open");
        for line in [
            "aaaa\n", "bbbb\n", "cccc\n", "dddd\n", "eeee\n", "ffff\n", "gggg\n",
        ] {
            log.write(line.as_bytes()).expect("write");
        }
        assert_eq!(read(path.clone()), "gggg\n");
        assert_eq!(read(dir.path().join("svc.log.1")), "eeee\nffff\n");
        assert_eq!(read(dir.path().join("svc.log.2")), "cccc\ndddd\n");
        assert!(!dir.path().join("svc.log.3").exists());
    }

    #[test]
    fn a_reopened_log_counts_what_it_already_holds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("svc.log");
        std::fs::write(&path, "123456789\n").expect("write");
        let mut log = RotatingLog::open(&path, 12, 1).expect("open");
        log.write(b"abc\n").expect("write");
        assert_eq!(read(path), "abc\n");
        assert_eq!(read(dir.path().join("svc.log.1")), "123456789\n");
    }

    #[test]
    fn keep_zero_truncates_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("svc.log");
        let mut log = RotatingLog::open(&path, 5, 0).expect("open");
        log.write(b"1234\n").expect("write");
        log.write(b"5678\n").expect("write");
        assert_eq!(read(path), "5678\n");
        assert!(!dir.path().join("svc.log.1").exists());
    }
}
