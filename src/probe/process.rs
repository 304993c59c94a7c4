//! The daemon's own figures, as every Prometheus client library exports them (`process_*`):
//! CPU seconds, resident and virtual memory, open and allowed file descriptors, threads and
//! the start time. Read from `/proc/self` at each scrape: a few small files, no state.

use std::path::Path;

/// One reading of this process.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessFigures {
    /// User and system CPU time since the process started.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    /// Seconds since the Unix epoch.
    pub start_time_seconds: f64,
    pub open_fds: u64,
    /// The soft limit on open files; `None` when unlimited.
    pub max_fds: Option<u64>,
    pub threads: u64,
}

/// Why the figures cannot be read (not Linux, or `/proc` is not mounted).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: unexpected contents")]
    Parse { path: String },
    #[error("cannot read the system's {0}")]
    Sysconf(&'static str),
}

impl ProcessFigures {
    /// This process now, from `/proc/self`. The kernel gives the start time in clock ticks
    /// since boot; the boot time places it.
    pub fn read() -> Result<ProcessFigures, ProcessError> {
        let boot_time =
            sysinfo::System::boot_time().map_err(|_| ProcessError::Sysconf("boot time"))?;
        read_from(Path::new("/proc/self"), boot_time)
    }
}

fn read_from(dir: &Path, boot_time: u64) -> Result<ProcessFigures, ProcessError> {
    use nix::unistd::{SysconfVar, sysconf};
    let ticks = sysconf(SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .ok_or(ProcessError::Sysconf("clock ticks per second"))? as f64;
    let page = sysconf(SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .filter(|p| *p > 0)
        .ok_or(ProcessError::Sysconf("page size"))? as u64;
    let stat_path = dir.join("stat");
    let stat = read(&stat_path)?;
    let fields = StatFields::parse(&stat).ok_or_else(|| ProcessError::Parse {
        path: stat_path.display().to_string(),
    })?;
    let fd_dir = dir.join("fd");
    let open_fds = std::fs::read_dir(&fd_dir)
        .map_err(|source| ProcessError::Read {
            path: fd_dir.display().to_string(),
            source,
        })?
        .count() as u64;
    let limits_path = dir.join("limits");
    let max_fds = open_files_limit(&read(&limits_path)?).ok_or_else(|| ProcessError::Parse {
        path: limits_path.display().to_string(),
    })?;
    Ok(ProcessFigures {
        cpu_seconds: (fields.utime + fields.stime) as f64 / ticks,
        resident_bytes: fields.rss_pages.saturating_mul(page),
        virtual_bytes: fields.vsize,
        start_time_seconds: boot_time as f64 + fields.starttime as f64 / ticks,
        open_fds,
        max_fds,
        threads: fields.threads,
    })
}

fn read(path: &Path) -> Result<String, ProcessError> {
    std::fs::read_to_string(path).map_err(|source| ProcessError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The fields of `/proc/<pid>/stat` used here (proc(5): utime is field 14, stime 15,
/// num_threads 20, starttime 22, vsize 23, rss 24).
#[derive(Debug, PartialEq)]
struct StatFields {
    utime: u64,
    stime: u64,
    threads: u64,
    starttime: u64,
    vsize: u64,
    rss_pages: u64,
}

impl StatFields {
    /// The command name (field 2) is in parentheses and may hold spaces and parentheses, so
    /// the fields are counted from after its last `)`, where field 3 starts.
    fn parse(stat: &str) -> Option<StatFields> {
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let at = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(StatFields {
            utime: at(14)?,
            stime: at(15)?,
            threads: at(20)?,
            starttime: at(22)?,
            vsize: at(23)?,
            rss_pages: at(24)?,
        })
    }
}

/// The soft limit of the "Max open files" line of `/proc/<pid>/limits`: `Some(None)` when it
/// is unlimited, `None` when there is no such line.
fn open_files_limit(limits: &str) -> Option<Option<u64>> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .strip_prefix("Max open files")?
        .split_whitespace()
        .next()?;
    match soft {
        "unlimited" => Some(None),
        n => n.parse().ok().map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis_of_the_name() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 7 0 \
                    12345 104857600 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        assert_eq!(
            StatFields::parse(stat),
            Some(StatFields {
                utime: 250,
                stime: 50,
                threads: 7,
                starttime: 12345,
                vsize: 104_857_600,
                rss_pages: 2048,
            })
        );
        assert_eq!(StatFields::parse("4242 (cut"), None);
        assert_eq!(StatFields::parse("4242 (x) S 1 2"), None);
    }

    #[test]
    fn the_open_files_limit_is_the_soft_one() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(open_files_limit(limits), Some(Some(1024)));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(open_files_limit(unlimited), Some(None));
        assert_eq!(open_files_limit("Max processes 10 10 processes\n"), None);
    }

    #[test]
    fn this_process_reads_as_itself() {
        let me = ProcessFigures::read().expect("read /proc/self");
        assert!(me.resident_bytes > 0, "{me:?}");
        assert!(me.virtual_bytes >= me.resident_bytes, "{me:?}");
        assert!(me.open_fds >= 3, "{me:?}");
        assert!(me.threads >= 1, "{me:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        // Started within the last hour, and not in the future (ticks round down).
        assert!(
            me.start_time_seconds <= now + 1.0 && me.start_time_seconds > now - 3600.0,
            "{me:?} now {now}"
        );
    }
}
