//! What the defaults need to know about this host: its name and an address others can reach.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::process::Command;

/// The host name from the kernel, else from `uname -n`; `None` if neither gives one.
pub(super) fn host_name() -> Option<String> {
    let non_empty = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    if let Some(name) = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(|s| non_empty(&s))
    {
        return Some(name);
    }
    let out = Command::new("uname").arg("-n").output().ok()?;
    if !out.status.success() {
        return None;
    }
    non_empty(&String::from_utf8_lossy(&out.stdout))
}

/// The source address of this host's default route, if it is a non-loopback IPv4. Connecting a
/// UDP socket only asks the kernel for a route: nothing is sent. The target is TEST-NET-1.
pub fn first_non_loopback_ipv4() -> Option<Ipv4Addr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    match socket.local_addr().ok()?.ip() {
        IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}
