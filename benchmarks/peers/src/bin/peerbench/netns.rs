//! `--loss P`: every member alone in a network namespace of its own, all of them joined by a
//! bridge in one more namespace, and nftables in each member's namespace dropping P % of what
//! arrives — that loss on every link, for every system alike. Nothing is added to the
//! machine's own namespace; every namespace is removed when the run ends.
//!
//! Member `k` (in the order made) is `10.99.<k / 250>.<k % 250 + 1>/16`, gossiping on port
//! 7946. An nbwatch node's API stays on loopback, as its secure defaults want, on port
//! `20000 + k` (unique, so that an address names one namespace); the driver reaches it from a
//! thread that entered the node's namespace (`setns(2)` acts on the calling thread only).

use anyhow::Context;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Mutex;

/// Prefix of every namespace a run makes (then the driver's pid).
const PREFIX: &str = "pbns";

pub struct Netns {
    base: String,
    hub: String,
    loss_percent: u32,
    made: Mutex<Vec<(String, [SocketAddr; 2])>>,
    /// Set once the loss is on: a namespace made later gets its rule at once.
    lossy: std::sync::atomic::AtomicBool,
    /// The [`RAISED`] limits this run raised, with their values before it, put back at the end.
    raised: Vec<(&'static str, String)>,
    /// Namespaces made ahead ([`Netns::prepare`]), handed out first by [`Netns::make`].
    ready: Mutex<std::collections::VecDeque<Slot>>,
}

/// Kernel limits shared by every namespace that a real host would not share, raised for the
/// run (never lowered) and put back after it:
///
/// - Every packet between two members crosses two veth pairs, and each crossing queues it on
///   a CPU's input backlog (`net.core.netdev_max_backlog`, 1000 by default). A real host has
///   its own backlog per CPU for its own traffic; here a hundred hosts share two CPUs', and a
///   burst of datagrams overflows them (drops in `/proc/net/softnet_stat`): loss the run did
///   not ask for.
/// - The ARP table's limits (`net.ipv4.neigh.default.gc_thresh1..3`, 128/512/1024 by default)
///   count the entries of all namespaces together. N members that all talk to each other need
///   N(N-1) entries — 4,032 at N = 64 — and past the hard limit the kernel evicts entries as
///   fast as it makes them ("neighbor table overflow"): sends to a peer whose address is being
///   resolved again wait in its queue, charged to the sender's socket, until the socket's
///   buffer is full and every send fails (UDP `SndbufErrors`). A real host keeps an entry for
///   each of its own N-1 peers. Sized here for 128 members.
const RAISED: [(&str, u64); 4] = [
    ("/proc/sys/net/core/netdev_max_backlog", 100_000),
    ("/proc/sys/net/ipv4/neigh/default/gc_thresh1", 16_384),
    ("/proc/sys/net/ipv4/neigh/default/gc_thresh2", 32_768),
    ("/proc/sys/net/ipv4/neigh/default/gc_thresh3", 32_768),
];

/// A member's namespace and addresses.
pub struct Slot {
    pub gossip: SocketAddr,
    pub api: SocketAddr,
}

/// Namespace by member address (gossip and API), for every `Netns` of this process.
static BY_ADDR: Mutex<Option<HashMap<SocketAddr, String>>> = Mutex::new(None);

thread_local! {
    /// The namespace this thread entered, if any.
    static CURRENT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Removes the namespaces of earlier runs whose driver is gone.
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            kill_all_in(name);
            let _ = ip(&["netns", "del", name]);
        }
    }
}

fn kill_all_in(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
}

impl Netns {
    pub fn new(loss_percent: u32) -> anyhow::Result<Netns> {
        anyhow::ensure!(loss_percent < 100, "--loss is a percentage under 100");
        sweep_stale();
        let base = format!("{PREFIX}{}", std::process::id());
        let hub = format!("{base}hub");
        let mut raised = Vec::new();
        for (file, value) in RAISED {
            let before =
                std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
            if before.trim().parse::<u64>().is_ok_and(|b| b < value) {
                std::fs::write(file, value.to_string())
                    .with_context(|| format!("writing {file}"))?;
                raised.push((file, before.trim().to_string()));
            }
        }
        // Made before the hub, so an error from here on puts the limits back (`Drop`).
        let netns = Netns {
            base,
            hub,
            loss_percent,
            made: Mutex::new(Vec::new()),
            lossy: Default::default(),
            raised,
            ready: Default::default(),
        };
        ip(&["netns", "add", &netns.hub])?;
        ip(&["-n", &netns.hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &netns.hub, "link", "set", "br0", "up"])?;
        Ok(netns)
    }

    /// Makes `n` namespaces now, before any member starts: making one takes eight `ip`
    /// processes, and making them while the first members already gossip would load the CPUs
    /// those members need (at 48 members it made their answers late enough to be suspected).
    pub fn prepare(&self, n: usize) -> anyhow::Result<()> {
        for _ in 0..n {
            let slot = self.make_new()?;
            (self.ready.lock().map_err(|_| anyhow::anyhow!("poisoned"))?).push_back(slot);
        }
        Ok(())
    }

    /// A namespace for a member: one made ahead, else a new one.
    pub fn make(&self) -> anyhow::Result<Slot> {
        if let Some(slot) =
            (self.ready.lock().map_err(|_| anyhow::anyhow!("poisoned"))?).pop_front()
        {
            return Ok(slot);
        }
        self.make_new()
    }

    /// A new namespace on the bridge, with the loss rule once it is on: the member's addresses.
    fn make_new(&self) -> anyhow::Result<Slot> {
        let mut made = self.made.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let k = made.len();
        let ns = format!("{}m{k}", self.base);
        let addr = IpAddr::V4(Ipv4Addr::new(10, 99, (k / 250) as u8, (k % 250 + 1) as u8));
        let slot = Slot {
            gossip: (addr, 7946).into(),
            api: (Ipv4Addr::LOCALHOST, 20_000 + k as u16).into(),
        };
        ip(&["netns", "add", &ns])?;
        // Removed at the end even if the rest fails.
        made.push((ns.clone(), [slot.gossip, slot.api]));
        let (a, b) = (format!("pa{k}"), format!("pb{k}"));
        ip(&[
            "-n", &ns, "link", "add", &a, "type", "veth", "peer", "name", &b, "netns", &self.hub,
        ])?;
        ip(&["-n", &ns, "link", "set", &a, "name", "eth0"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/16"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&["-n", &self.hub, "link", "set", &b, "master", "br0"])?;
        ip(&["-n", &self.hub, "link", "set", &b, "up"])?;
        if self.lossy.load(std::sync::atomic::Ordering::Relaxed) {
            self.lose_in(&ns)?;
        }
        let mut by = BY_ADDR.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let by = by.get_or_insert_with(HashMap::new);
        by.insert(slot.gossip, ns.clone());
        by.insert(slot.api, ns);
        Ok(slot)
    }

    /// Turns the loss on in every namespace made so far and in those made from now on (the
    /// cluster forms without it: what is measured is detection under loss, not 64 daemons
    /// starting at once on two cores under loss).
    pub fn start_loss(&self) -> anyhow::Result<()> {
        self.lossy.store(true, std::sync::atomic::Ordering::Relaxed);
        let made = self.made.lock().map(|m| m.clone()).unwrap_or_default();
        for (ns, _) in made {
            self.lose_in(&ns)?;
        }
        Ok(())
    }

    /// The loss rule in namespace `ns`.
    fn lose_in(&self, ns: &str) -> anyhow::Result<()> {
        if self.loss_percent > 0 {
            // Dropped as it arrives, not as it leaves: a drop in the output hook fails the
            // sender's call (EPERM: a TCP connect gives up at once instead of retrying), while
            // a packet lost on the wire is silent.
            let rules = format!(
                "table inet pbloss {{ chain in {{ type filter hook input priority 0; \
                 iifname \"eth0\" counter; \
                 iifname \"eth0\" numgen random mod 100 < {} counter drop; }}; }}",
                self.loss_percent
            );
            let out = Command::new("ip")
                .args(["netns", "exec", ns, "nft", &rules])
                .output()?;
            anyhow::ensure!(
                out.status.success(),
                "nft in {ns}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// What the loss rules did so far, over every namespace: packets arrived, packets dropped
    /// (read from the rules' counters).
    pub fn dropped(&self) -> (u64, u64) {
        let made = self.made.lock().map(|m| m.clone()).unwrap_or_default();
        let (mut sent, mut dropped) = (0, 0);
        for (ns, _) in made {
            let Ok(out) = Command::new("ip")
                .args([
                    "netns", "exec", &ns, "nft", "list", "table", "inet", "pbloss",
                ])
                .output()
            else {
                continue;
            };
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let Some(rest) = line.split("counter packets ").nth(1) else {
                    continue;
                };
                let n: u64 = (rest.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                if line.contains("drop") {
                    dropped += n;
                } else {
                    sent += n;
                }
            }
        }
        (sent, dropped)
    }

    /// The namespace of a member's gossip or API address.
    pub fn ns_of(addr: SocketAddr) -> Option<String> {
        BY_ADDR.lock().ok()?.as_ref()?.get(&addr).cloned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let made = self.made.lock().map(|m| m.clone()).unwrap_or_default();
        for (ns, addrs) in made {
            kill_all_in(&ns);
            let _ = ip(&["netns", "del", &ns]);
            if let Ok(mut by) = BY_ADDR.lock()
                && let Some(by) = by.as_mut()
            {
                for a in addrs {
                    by.remove(&a);
                }
            }
        }
        let _ = ip(&["netns", "del", &self.hub]);
        for (file, before) in &self.raised {
            let _ = std::fs::write(file, before);
        }
    }
}

/// Moves the calling thread into namespace `ns` (for good).
pub fn enter(ns: &str) -> anyhow::Result<()> {
    let file = std::fs::File::open(format!("/run/netns/{ns}"))?;
    // SAFETY: setns on a namespace file descriptor this thread holds open; it changes only
    // this thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    anyhow::ensure!(rc == 0, "setns {ns}: {}", std::io::Error::last_os_error());
    CURRENT.with(|c| *c.borrow_mut() = Some(ns.to_string()));
    Ok(())
}

/// Runs `f` where address `addr` can be reached: here, or on a thread inside its member's
/// namespace.
pub fn reach<T: Send>(addr: SocketAddr, f: impl FnOnce() -> T + Send) -> T {
    let Some(ns) = Netns::ns_of(addr) else {
        return f();
    };
    if CURRENT.with(|c| c.borrow().as_deref() == Some(ns.as_str())) {
        return f();
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            if let Err(e) = enter(&ns) {
                eprintln!("# {e}");
            }
            f()
        })
        .join()
        .expect("a thread inside a namespace panicked")
    })
}
