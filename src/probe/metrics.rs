//! Host metrics: what this machine announces about itself through gossip every
//! `metrics.interval`, and how the API turns those announcements back into numbers.
//!
//! Values are rounded to what a person reads (loads to 2 decimals, percentages to 1) and printed
//! without trailing zeros, to keep datagrams small. The packed `sys` value ends with the
//! sample's origin time: every host records every sample in its history (see `store`) with the
//! time it was taken, and the pair (origin, origin time) identifies the sample on every host,
//! so a sample delivered twice, or fetched again by back-fill, is still one row. The time
//! travels as 4 base-36 digits, deciseconds modulo 36⁴ (about 46 hours), and the receiver takes
//! the time nearest to its own clock with those digits: 5 bytes instead of 14, which keeps
//! 128 hosts announcing every 5 s under 4 KB/s per host, and exact as long as a sample arrives
//! within 23 hours of being taken (back-fill moves resolved times, not tokens). The price is
//! that `sys` changes with every sample even on a quiet host. A value without the time (an
//! older nbwatch) still parses; its samples are recorded at the time they arrive. The host announces `sys.boot`, not its uptime,
//! so that key does not change; readers derive uptime from it.
//!
//! Disk usage is measured with `statvfs` on the data directory itself (or its nearest existing
//! parent) rather than by matching it against sysinfo's disk list: that list leaves out tmpfs,
//! NFS and CIFS mounts, so a data dir on one of them would be attributed to `/`. The percentage
//! is computed as `df` does (reserved blocks count as neither used nor available), so it matches
//! what an operator sees when checking by hand.

use crate::keys::sample::encode_sample;
use crate::keys::{BOOT_KEY, METRICS_KEY};
use crate::types::Time;
use std::path::{Path, PathBuf};
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, System};

/// Why metrics cannot be sampled on this host.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot read system information: {0}")]
    System(#[source] sysinfo::Error),
    #[error("no existing directory at or above the data dir {}", .0.display())]
    NoDataDir(PathBuf),
    #[error("cannot read file system usage of {}: {source}", .path.display())]
    Statvfs {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

/// One sample of this host's vital signs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostMetrics {
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    /// Average over all CPUs since the previous sample.
    pub cpu_pct: f64,
    pub mem_used_pct: f64,
    /// 0 when the host has no swap.
    pub swap_used_pct: f64,
    /// The file system holding the data dir, as `df` reports it.
    pub disk_used_pct: f64,
    pub uptime_s: u64,
    /// Seconds since the Unix epoch.
    pub boot_time: u64,
    /// When the sample was taken (the origin time announced with it); `Time::ZERO`: unknown,
    /// and then it is not announced.
    pub at: Time,
}

/// Samples host metrics. Keeps a `System` between samples because CPU usage is the difference
/// between two refreshes.
pub struct Sampler {
    system: System,
    /// The data dir or its nearest existing ancestor (the data dir may be created later).
    disk_path: PathBuf,
    data_dir: PathBuf,
}

impl Sampler {
    /// Checks that every source works on this host, so a broken one is reported at start and not
    /// as silent zeros later, and takes the first CPU reading.
    pub fn new(data_dir: &Path) -> Result<Sampler, ProbeError> {
        let mut system = System::new().map_err(ProbeError::System)?;
        System::load_average().map_err(ProbeError::System)?;
        System::boot_time().map_err(ProbeError::System)?;
        system.refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage());
        let disk_path = existing_ancestor(data_dir)?;
        disk_used_pct(&disk_path)?;
        Ok(Sampler {
            system,
            disk_path,
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// Reads the current values. Refreshes only CPU usage and memory; load, uptime and disk are
    /// single system calls. A source that fails now (it worked in `new`) reads as 0.
    pub fn sample(&mut self) -> HostMetrics {
        self.system
            .refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage());
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram().with_swap());
        let load = System::load_average().unwrap_or_default();
        // Once the data dir exists, measure it rather than the parent we started from: it may be
        // a mount point of its own by now.
        if self.disk_path != self.data_dir && self.data_dir.is_dir() {
            self.disk_path = self.data_dir.clone();
        }
        HostMetrics {
            load1: load.one,
            load5: load.five,
            load15: load.fifteen,
            cpu_pct: f64::from(self.system.global_cpu_usage()).clamp(0.0, 100.0),
            mem_used_pct: percent(self.system.used_memory(), self.system.total_memory()),
            swap_used_pct: percent(self.system.used_swap(), self.system.total_swap()),
            disk_used_pct: disk_used_pct(&self.disk_path).unwrap_or(0.0),
            uptime_s: System::uptime().unwrap_or(0),
            boot_time: System::boot_time().unwrap_or(0),
            at: Time::ZERO,
        }
    }
}

fn percent(used: u64, total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    (used as f64 / total as f64 * 100.0).clamp(0.0, 100.0)
}

/// `path` if it is an existing directory, else its nearest existing ancestor, canonicalized.
fn existing_ancestor(path: &Path) -> Result<PathBuf, ProbeError> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|_| ProbeError::NoDataDir(path.to_path_buf()))?
            .join(path)
    };
    absolute
        .ancestors()
        .find(|p| p.is_dir())
        .and_then(|p| p.canonicalize().ok())
        .ok_or_else(|| ProbeError::NoDataDir(path.to_path_buf()))
}

/// Used share of the file system holding `path`, as `df` computes it.
fn disk_used_pct(path: &Path) -> Result<f64, ProbeError> {
    let stat = nix::sys::statvfs::statvfs(path).map_err(|source| ProbeError::Statvfs {
        path: path.to_path_buf(),
        source,
    })?;
    // `fsblkcnt_t` is u64 on 64-bit Linux but u32 on some 32-bit targets.
    #[allow(clippy::useless_conversion)]
    let (blocks, free, avail) = (
        u64::from(stat.blocks()),
        u64::from(stat.blocks_free()),
        u64::from(stat.blocks_available()),
    );
    let used = blocks.saturating_sub(free);
    Ok(percent(used, used.saturating_add(avail)))
}

/// The longest a host keeps its sample to itself while its figures stay within the dead-band
/// ([`HostMetrics::moved_from`]), so a quiet host is still seen fresh (`control::pick` calls
/// a sample older than a minute stale): six intervals, at most 30 s.
pub const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a sample within the dead-band may be kept back at `interval`.
pub fn keep_alive(interval: std::time::Duration) -> std::time::Duration {
    (interval * 6).min(KEEP_ALIVE).max(interval)
}

/// Which samples a host announces: one that left the dead-band of the last one announced
/// ([`HostMetrics::moved_from`]), or any once the last is [`keep_alive`] old. The daemon's
/// probe actor and the simulator decide with this one rule.
#[derive(Debug)]
pub struct Announcer {
    keep_alive: std::time::Duration,
    last: Option<(HostMetrics, std::time::Duration)>,
}

impl Announcer {
    pub fn new(interval: std::time::Duration) -> Announcer {
        Announcer {
            keep_alive: keep_alive(interval),
            last: None,
        }
    }

    /// Whether `m`, taken at `now` (any monotonic clock, the same at every call), is to be
    /// announced; if so it becomes the last one announced.
    pub fn offer(&mut self, m: &HostMetrics, now: std::time::Duration) -> bool {
        if let Some((last, at)) = &self.last
            && now.saturating_sub(*at) < self.keep_alive
            && !m.moved_from(last)
        {
            return false;
        }
        self.last = Some((m.clone(), now));
        true
    }
}

impl HostMetrics {
    /// Whether this sample moved far enough from `last` (the last one announced) to be
    /// announced: a load average by more than 0.05 and 10 %, CPU by more than 5 points,
    /// memory or swap by more than 1 point, disk by more than half a point. Every host
    /// sends its samples to every other, so a quiet host's unchanged figures are kept back
    /// until they move or [`KEEP_ALIVE`] has passed.
    pub fn moved_from(&self, last: &HostMetrics) -> bool {
        let load = |a: f64, b: f64| (a - b).abs() > 0.05_f64.max(0.1 * b.abs());
        let points = |a: f64, b: f64, band: f64| (a - b).abs() > band;
        load(self.load1, last.load1)
            || load(self.load5, last.load5)
            || load(self.load15, last.load15)
            || points(self.cpu_pct, last.cpu_pct, 5.0)
            || points(self.mem_used_pct, last.mem_used_pct, 1.0)
            || points(self.swap_used_pct, last.swap_used_pct, 1.0)
            || points(self.disk_used_pct, last.disk_used_pct, 0.5)
            || self.boot_time != last.boot_time
    }

    /// The gossip keys and values announcing this sample.
    pub fn to_kv(&self) -> Vec<(String, String)> {
        let values = [
            self.load1,
            self.load5,
            self.load15,
            self.cpu_pct,
            self.mem_used_pct,
            self.swap_used_pct,
            self.disk_used_pct,
        ];
        vec![
            (METRICS_KEY.to_string(), encode_sample(values, self.at)),
            (BOOT_KEY.to_string(), self.boot_time.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::sample::{
        format_trimmed, metrics_from_kv, origin_token, parse_sample, resolve_origin,
    };
    use serde_json::Value;

    #[test]
    fn the_announcer_keeps_back_a_quiet_sample_until_the_keep_alive_and_sends_a_moved_one() {
        use std::time::Duration;
        let s = |load1: f64| HostMetrics {
            load1,
            mem_used_pct: 40.0,
            ..HostMetrics::default()
        };
        let mut a = Announcer::new(Duration::from_secs(5));
        assert!(
            a.offer(&s(0.5), Duration::from_secs(0)),
            "the first is sent"
        );
        assert!(
            !a.offer(&s(0.52), Duration::from_secs(5)),
            "within the band"
        );
        assert!(
            !a.offer(&s(0.52), Duration::from_secs(29)),
            "still within the keep-alive"
        );
        assert!(
            a.offer(&s(0.52), Duration::from_secs(30)),
            "the keep-alive is due"
        );
        assert!(
            a.offer(&s(0.9), Duration::from_secs(35)),
            "moved beyond the band"
        );
        assert!(a.offer(&s(0.55), Duration::from_secs(36)), "and back");
        // The band is measured from the last one sent, not from the last one offered.
        let mut a = Announcer::new(Duration::from_secs(5));
        assert!(a.offer(&s(1.0), Duration::ZERO));
        assert!(!a.offer(&s(1.08), Duration::from_secs(5)));
        assert!(
            a.offer(&s(1.16), Duration::from_secs(10)),
            "0.16 from the last sent"
        );
    }

    #[test]
    fn a_sample_is_announced_again_only_once_a_figure_left_its_dead_band() {
        let last = HostMetrics {
            load1: 0.5,
            load5: 0.4,
            load15: 0.3,
            cpu_pct: 12.0,
            mem_used_pct: 40.0,
            swap_used_pct: 0.0,
            disk_used_pct: 63.2,
            uptime_s: 10,
            boot_time: 1_790_000_000,
            at: Time(1),
        };
        let quiet = HostMetrics {
            load1: 0.53,
            cpu_pct: 15.0,
            mem_used_pct: 40.9,
            uptime_s: 15,
            at: Time(2),
            ..last.clone()
        };
        assert!(!quiet.moved_from(&last));
        use std::time::Duration;
        assert_eq!(keep_alive(Duration::from_secs(5)), KEEP_ALIVE);
        assert_eq!(keep_alive(Duration::from_secs(1)), Duration::from_secs(6));
        assert_eq!(keep_alive(Duration::from_secs(60)), Duration::from_secs(60));
        for moved in [
            HostMetrics {
                load1: 0.6,
                ..quiet.clone()
            },
            HostMetrics {
                cpu_pct: 18.0,
                ..quiet.clone()
            },
            HostMetrics {
                mem_used_pct: 41.5,
                ..quiet.clone()
            },
            HostMetrics {
                disk_used_pct: 63.8,
                ..quiet.clone()
            },
            HostMetrics {
                boot_time: 1_790_000_100,
                ..quiet.clone()
            },
        ] {
            assert!(moved.moved_from(&last), "{moved:?}");
        }
    }

    #[test]
    fn sampling_this_machine_gives_plausible_values() {
        let dir = std::env::temp_dir();
        let mut sampler = Sampler::new(&dir).expect("sampler");
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let m = sampler.sample();
        for (name, pct) in [
            ("cpu", m.cpu_pct),
            ("mem", m.mem_used_pct),
            ("swap", m.swap_used_pct),
            ("disk", m.disk_used_pct),
        ] {
            assert!((0.0..=100.0).contains(&pct), "{name} = {pct}");
        }
        assert!(m.mem_used_pct > 0.0, "{m:?}");
        assert!(m.load1 >= 0.0 && m.load5 >= 0.0 && m.load15 >= 0.0, "{m:?}");
        let now_s = Time::wall_now().as_millis() / 1000;
        assert!(m.boot_time > 0 && m.boot_time <= now_s, "{m:?}");
        assert!(m.uptime_s <= now_s - m.boot_time + 5, "{m:?}");
    }

    #[test]
    fn a_data_dir_that_does_not_exist_yet_is_measured_at_its_nearest_parent() {
        let dir = std::env::temp_dir().join("nbwatch-metrics-test-missing/a/b");
        let mut sampler = Sampler::new(&dir).expect("sampler");
        let canonical_tmp = std::env::temp_dir().canonicalize().expect("tmp");
        assert_eq!(sampler.disk_path, canonical_tmp);
        let m = sampler.sample();
        assert!((0.0..=100.0).contains(&m.disk_used_pct), "{m:?}");
    }

    #[test]
    fn formatting_trims_trailing_zeros() {
        assert_eq!(format_trimmed(0.5, 2), "0.5");
        assert_eq!(format_trimmed(41.0, 1), "41");
        assert_eq!(format_trimmed(12.34, 1), "12.3");
        assert_eq!(format_trimmed(12.349, 2), "12.35");
        assert_eq!(format_trimmed(0.0, 2), "0");
        assert_eq!(format_trimmed(100.0, 1), "100");
        assert_eq!(format_trimmed(10.0, 0), "10");
        assert_eq!(format_trimmed(-0.001, 2), "0");
        assert_eq!(format_trimmed(f64::NAN, 1), "0");
    }

    #[test]
    fn unchanged_values_announce_identical_strings() {
        let a = HostMetrics {
            cpu_pct: 12.31,
            ..HostMetrics::default()
        };
        let b = HostMetrics {
            cpu_pct: 12.34,
            uptime_s: 99,
            ..HostMetrics::default()
        };
        assert_eq!(a.to_kv(), b.to_kv());
    }

    #[test]
    fn to_kv_and_metrics_from_kv_round_trip() {
        let m = HostMetrics {
            load1: 0.5,
            load5: 1.25,
            load15: 2.0,
            cpu_pct: 12.3,
            mem_used_pct: 41.0,
            swap_used_pct: 0.0,
            disk_used_pct: 87.6,
            uptime_s: 0,
            boot_time: 1_000,
            at: Time::from_millis(1_700_000_000_123),
        };
        let token = origin_token(m.at);
        let kv = m.to_kv();
        assert_eq!(
            kv,
            [
                (
                    "sys".to_string(),
                    format!("0.5 1.25 2 12.3 41 0 87.6 {token}")
                ),
                ("sys.boot".to_string(), "1000".to_string())
            ]
        );
        let now = Time::from_millis(4_600_500);
        let json = metrics_from_kv(kv.iter().map(|(k, v)| (k.as_str(), v.as_str())), now);
        let expected = serde_json::json!({
            "load1": 0.5, "load5": 1.25, "load15": 2.0, "cpu_pct": 12.3,
            "mem_used_pct": 41.0, "swap_used_pct": 0.0, "disk_used_pct": 87.6,
            "uptime_s": 3_600,
        });
        assert_eq!(Value::Object(json), expected);
    }

    #[test]
    fn garbage_values_and_foreign_keys_are_skipped() {
        let kv = [
            ("sys", "high NaN inf x 41"),
            ("sys.boot", "-5"),
            ("sys.unknown", "1"),
            ("app.load1", "3"),
            ("load1", "3"),
        ];
        let json = metrics_from_kv(kv.into_iter(), Time::from_millis(10_000));
        assert_eq!(
            Value::Object(json),
            serde_json::json!({ "mem_used_pct": 41.0 })
        );
    }

    #[test]
    fn a_sample_parses_with_its_origin_time_and_an_older_one_without() {
        let taken = Time::from_millis(1_700_000_000_123);
        let value = format!("0.5 1.25 2 12.3 41 0 87.6 {}", origin_token(taken));
        assert_eq!(value.len(), "0.5 1.25 2 12.3 41 0 87.6".len() + 4);
        // Received later (gossip, a slow relay), or on a host whose clock is ahead or behind.
        for delay_s in [0i64, 2, 3_600, 9 * 3_600, -3_600, -9 * 3_600] {
            let received = Time::from_millis((1_700_000_000_123 + delay_s * 1_000) as u64);
            let (metrics, at) = parse_sample(&value, received);
            assert_eq!(at, Some(Time::from_millis(1_700_000_000_000)), "{delay_s}");
            assert_eq!(metrics.len(), 7);
        }
        // Every token of a day round-trips to its quarter second.
        for k in 0..(86_400 * 4) {
            let t = Time::from_millis(1_700_000_000_000 + k * 250);
            assert_eq!(resolve_origin(&origin_token(t), t), Some(t));
        }
        // Older nodes' 4-digit decisecond tokens are still read.
        let old = format!("0.5 1.25 2 12.3 41 0 87.6 {}", {
            let mut v = (1_700_000_000_123u64 / 100) % (36 * 36 * 36 * 36);
            let mut d = [b'0'; 4];
            for c in d.iter_mut().rev() {
                *c = b"0123456789abcdefghijklmnopqrstuvwxyz"[(v % 36) as usize];
                v /= 36;
            }
            String::from_utf8(d.to_vec()).unwrap()
        });
        let received = Time::from_millis(1_700_000_000_123 + 20 * 3_600_000);
        assert_eq!(
            parse_sample(&old, received).1,
            Some(Time::from_millis(1_700_000_000_100))
        );
        assert_eq!(parse_sample("0 0 0 0 0 0 0 a b", taken).1, None);
        assert_eq!(parse_sample("0 0 0 0 0 0 0 a.b", taken).1, None);
        let (metrics, _) = parse_sample(&value, taken);
        assert_eq!(metrics.len(), 7);
        assert_eq!(metrics[0], ("load1", 0.5));
        assert_eq!(metrics[6], ("disk_used_pct", 87.6));
        let (metrics, at) = parse_sample("0.5 1.25 2 12.3 41 0 87.6", taken);
        assert_eq!((metrics.len(), at), (7, None));
        let (metrics, at) = parse_sample("x NaN 2 y 41 0 z -5", taken);
        assert_eq!(
            metrics,
            [
                ("load15", 2.0),
                ("mem_used_pct", 41.0),
                ("swap_used_pct", 0.0)
            ]
        );
        assert_eq!(at, None);
    }

    #[test]
    fn a_boot_time_in_the_future_gives_zero_uptime() {
        let json = metrics_from_kv([("sys.boot", "20")].into_iter(), Time::from_millis(10_000));
        assert_eq!(json.get("uptime_s"), Some(&Value::from(0)));
    }
}
