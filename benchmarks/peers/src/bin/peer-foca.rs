//! One foca cluster member per process, driven by a single-task tokio UDP
//! loop (foca is sans-IO), following foca's `foca_insecure_udp_agent`
//! example: `AccumulatingRuntime`, a timer queue that delivers timers in
//! order, postcard codec, and `Config::new_lan(cluster_size)` (the
//! memberlist-derived LAN defaults; the example uses it too).
//!
//! Liveness only: foca carries no key/values here, so `--metrics-interval`
//! is accepted and reported as n/a.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use foca::{AccumulatingRuntime, Config, Foca, OwnedNotification, PostcardCodec, Timer};
use peerbench::{PeerArgs, SendCounters, emit_membership, emit_note};
use rand::rngs::StdRng;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// Identity: a name for reporting, the address, and a bump so a member that
/// was declared down can `renew` itself (as in foca's example).
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
struct Id {
    name: String,
    addr: SocketAddr,
    bump: u64,
}

impl foca::Identity for Id {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            bump: self.bump.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.bump > adversary.bump
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = PeerArgs::parse()?;
    if !args.metrics_interval.is_zero() {
        emit_note("metrics n/a: foca peer carries liveness only");
    }
    let identity = Id {
        name: args.name.clone(),
        addr: args.listen,
        bump: peerbench::now_ms(),
    };
    let cluster_size = NonZeroU32::new(args.cluster_size.max(1)).unwrap_or(NonZeroU32::MIN);
    let config = Config::new_lan(cluster_size);
    let mut recv_buf = vec![0u8; config.max_packet_size.get()];
    let rng: StdRng = rand::make_rng();
    let mut foca = Foca::new(identity, config, rng, PostcardCodec);
    let socket = UdpSocket::bind(args.listen).await?;
    let counters = Arc::new(SendCounters::default());
    let mut runtime = AccumulatingRuntime::new();
    // Timers keyed by (deadline, sequence) so equal deadlines keep submission order.
    let mut timers: BTreeMap<(Instant, u64), Timer<Id>> = BTreeMap::new();
    let mut seq = 0u64;

    for seed in &args.seeds {
        foca.announce(seed_id(*seed), &mut runtime)?;
    }

    let mut stats_tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        // Drain everything foca asked for.
        while let Some((dst, data)) = runtime.to_send() {
            send(&socket, &counters, dst.addr, data).await;
        }
        let now = Instant::now();
        while let Some((delay, timer)) = runtime.to_schedule() {
            seq += 1;
            timers.insert((now + delay, seq), timer);
        }
        while let Some(notification) = runtime.to_notify() {
            match notification {
                OwnedNotification::MemberUp(id) => emit_membership("up", &id.name),
                OwnedNotification::MemberDown(id) => emit_membership("down", &id.name),
                _ => {}
            }
        }

        let next_deadline = timers.keys().next().map(|(at, _)| *at);
        let sleep = async {
            match next_deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = socket.recv_from(&mut recv_buf) => {
                if let Ok((len, _from)) = received {
                    // foca tolerates junk; errors are per-datagram and ignorable.
                    let _ = foca.handle_data(&recv_buf[..len], &mut runtime);
                }
            }
            () = sleep => {
                let now = Instant::now();
                while let Some(entry) = timers.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    let timer = entry.remove();
                    let _ = foca.handle_timer(timer, &mut runtime);
                }
            }
            _ = stats_tick.tick() => {
                counters.emit();
                // A seed that was not bound yet drops our first announce and
                // foca's periodic announce is 30 s away: retry while alone.
                if foca.num_members() == 0 {
                    for seed in &args.seeds {
                        let _ = foca.announce(seed_id(*seed), &mut runtime);
                    }
                }
            }
        }
    }
}

/// Announce target: foca only needs the address; the name is learnt later.
fn seed_id(addr: SocketAddr) -> Id {
    Id {
        name: String::new(),
        addr,
        bump: 0,
    }
}

async fn send(socket: &UdpSocket, counters: &SendCounters, to: SocketAddr, data: Bytes) {
    if socket.send_to(&data, to).await.is_ok() {
        counters.record(data.len());
    }
}
