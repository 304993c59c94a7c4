//! The systemd notification protocol (`sd_notify(3)`), for a unit with `Type=notify`: the
//! daemon says `READY=1` once its sockets are bound and its actors run, `RELOADING=1` (with
//! `MONOTONIC_USEC`) and `READY=1` again around a reload of its trees, `STOPPING=1` when it
//! starts to leave, and `WATCHDOG=1` every half `WATCHDOG_USEC` while it answers itself.
//!
//! A datagram to the socket `NOTIFY_SOCKET` names (a path, or `@name` in the abstract
//! namespace) is the whole protocol, so it is written here rather than linked from
//! libsystemd. Without `NOTIFY_SOCKET` (not started by systemd, or a test) every call does
//! nothing. The supervised services do not inherit these variables (see
//! `supervision::process`): a service that said `READY=1` would speak for the daemon.
//!
//! Notification is best effort, as in libsystemd: a failed send is logged once and the
//! daemon goes on.

use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The variables systemd passes to a notifying service; removed from its children's
/// environment.
pub const VARIABLES: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Where notifications go, and the watchdog's period, as the environment gave them.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<String>,
    watchdog: Option<Duration>,
    warned: AtomicBool,
}

/// This process's notifier, read from the environment once.
pub fn notifier() -> &'static Notifier {
    static NOTIFIER: OnceLock<Notifier> = OnceLock::new();
    NOTIFIER.get_or_init(|| {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Notifier::new(
            var("NOTIFY_SOCKET"),
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
            std::process::id(),
        )
    })
}

impl Notifier {
    /// From the variables' values: the watchdog is this process's when `WATCHDOG_PID` is
    /// absent or names `pid`, and pinged every half `WATCHDOG_USEC`.
    pub fn new(
        socket: Option<String>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        pid: u32,
    ) -> Notifier {
        let ours = watchdog_pid.is_none_or(|p| p.trim().parse::<u32>().ok() == Some(pid));
        let watchdog = (watchdog_usec)
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|u| *u > 0 && ours && socket.is_some())
            .map(|u| Duration::from_micros(u) / 2);
        Notifier {
            socket,
            watchdog,
            warned: AtomicBool::new(false),
        }
    }

    /// How often to say `WATCHDOG=1`, when systemd watches this process.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// Before a reload; `READY=1` follows when it is done.
    pub fn reloading(&self) {
        let usec = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
            .unwrap_or(0);
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading the supervision trees"
        ));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=leaving the cluster and stopping the services");
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    fn send(&self, message: &str) {
        let Some(socket) = &self.socket else {
            return;
        };
        if let Err(e) = send_to(socket, message.as_bytes())
            && !self.warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(socket = %socket, error = %e, "cannot notify systemd");
        }
    }
}

fn send_to(socket: &str, message: &[u8]) -> std::io::Result<usize> {
    let datagram = UnixDatagram::unbound()?;
    match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            datagram.send_to_addr(message, &addr)
        }
        None => datagram.send_to(message, socket),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_pinged_every_half_period_and_only_for_its_own_pid() {
        let socket = || Some("/run/x".to_string());
        let n = Notifier::new(socket(), Some("30000000"), None, 7);
        assert_eq!(n.watchdog_every(), Some(Duration::from_secs(15)));
        let n = Notifier::new(socket(), Some("30000000"), Some("7"), 7);
        assert_eq!(n.watchdog_every(), Some(Duration::from_secs(15)));
        assert_eq!(
            Notifier::new(socket(), Some("30000000"), Some("8"), 7).watchdog_every(),
            None
        );
        assert_eq!(
            Notifier::new(socket(), Some("0"), None, 7).watchdog_every(),
            None
        );
        assert_eq!(
            Notifier::new(None, Some("30000000"), None, 7).watchdog_every(),
            None
        );
    }

    #[test]
    fn messages_reach_a_path_and_an_abstract_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier::new(Some(path.display().to_string()), None, None, 1);
        n.ready("up");
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=up");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("nbwatch-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract name");
        let server = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        Notifier::new(Some(format!("@{name}")), None, None, 1).reloading();
        let len = server.recv(&mut buf).expect("recv");
        let text = String::from_utf8_lossy(&buf[..len]);
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");
        let usec: u64 = (text.lines().nth(1))
            .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
            .and_then(|u| u.parse().ok())
            .expect("a number");
        assert!(usec > 0);
    }
}
