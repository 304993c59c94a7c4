//! The socket of discovery (`gossip.discover`, see [`crate::discover`]): one UDP socket on the
//! beacon port, in the multicast group (on the interface of the gossip address) or allowed to
//! broadcast. Beacons go out with a TTL of 1, so a router never forwards them; everything is
//! sealed by the gate for anyone of the cluster.

use crate::config::{Discover, DiscoverMode};
use crate::discover::{Action, Beacon, Discovery};
use crate::secure::Gate;
use crate::types::{Clock, NodeName};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::UdpSocket;

/// How often a lone node looks whether a beacon is due.
const POLL: Duration = Duration::from_millis(200);

/// The beacon socket for `spec`, on the interface of `gossip` (its IPv4 address; any
/// interface when it listens on all of them).
pub fn bind(spec: &Discover, gossip: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    let iface = match gossip.ip() {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    };
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, spec.address.port())).into())?;
    match (spec.mode, spec.address.ip()) {
        (DiscoverMode::Multicast, IpAddr::V4(group)) => {
            socket.join_multicast_v4(&group, &iface)?;
            socket.set_multicast_if_v4(&iface)?;
            socket.set_multicast_ttl_v4(1)?;
            // Several nodes of one host hear each other too.
            socket.set_multicast_loop_v4(true)?;
        }
        _ => {
            socket.set_broadcast(true)?;
            socket.set_ttl_v4(1)?;
        }
    }
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// What discovery runs with.
pub struct Seeker {
    pub spec: Discover,
    pub me: NodeName,
    /// This node's gossip address, given to those who seek.
    pub gossip: SocketAddr,
    pub gate: Arc<Gate>,
    pub clock: Clock,
    /// True while this node knows no live member.
    pub alone: Arc<AtomicBool>,
}

/// Runs discovery until the task is aborted: seeks while `alone`, answers seeks, and calls
/// `found` with the gossip address of every member that answered.
pub async fn run(socket: UdpSocket, seeker: Seeker, found: impl Fn(SocketAddr) + Send) {
    let Seeker {
        spec,
        me,
        gossip,
        gate,
        clock,
        alone,
    } = seeker;
    let mut core = Discovery::new(me, gossip);
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            _ = poll.tick() => {
                if let Some(beacon) = core.poll(clock.now(), alone.load(Ordering::Relaxed)) {
                    send(&socket, &gate, spec.address, &beacon).await;
                }
            }
            received = socket.recv_from(&mut buf) => {
                let (n, from) = match received {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(error = %e, "receiving a beacon failed");
                        continue;
                    }
                };
                // Another cluster's beacon (another key or name) does not open: ignored.
                let Some(beacon) = gate.open_beacon(from, &buf[..n]).and_then(|b| Beacon::decode(&b)) else {
                    continue;
                };
                match core.receive(clock.now(), from, beacon) {
                    Action::Answer { to, beacon } => send(&socket, &gate, to, &beacon).await,
                    Action::Join(seed) => found(seed),
                    Action::Nothing => {}
                }
            }
        }
    }
}

async fn send(socket: &UdpSocket, gate: &Gate, to: SocketAddr, beacon: &Beacon) {
    let sealed = gate.seal_beacon(&beacon.encode());
    if let Err(e) = socket.send_to(&sealed, to).await {
        tracing::debug!(%to, error = %e, "sending a beacon failed");
    }
}
