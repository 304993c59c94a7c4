//! One chitchat cluster member per process.
//!
//! Settings are chitchat's own defaults where it has them
//! (`FailureDetectorConfig::default()`: phi 8, window 1000, max interval 10 s,
//! initial interval 5 s, dead grace 24 h) and, where `ChitchatConfig` has no
//! public `Default`, the values of its (test-only) `Default` impl:
//! gossip every 1 s, protocol V0, tombstone grace 15 min.
//! Bytes are counted by wrapping chitchat's own `UdpTransport` in a
//! `Transport` that adds up `SendOutcome::num_bytes_sent`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpTransport};
use chitchat::{
    ChitchatConfig, ChitchatEnvelope, ChitchatId, FailureDetectorConfig, ProtocolVersion,
    spawn_chitchat,
};
use peerbench::{PeerArgs, SendCounters, emit_membership, host_metrics, now_ms};

struct CountingTransport(Arc<SendCounters>);

struct CountingSocket {
    inner: Box<dyn Socket>,
    counters: Arc<SendCounters>,
}

#[async_trait]
impl Transport for CountingTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let inner = UdpTransport.open(listen_addr).await?;
        Ok(Box::new(CountingSocket {
            inner,
            counters: self.0.clone(),
        }))
    }
}

#[async_trait]
impl Socket for CountingSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.inner.local_addr()
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let outcome = self.inner.send(to, envelope).await?;
        self.counters.record(outcome.num_bytes_sent);
        Ok(outcome)
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        self.inner.recv().await
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = PeerArgs::parse()?;
    let counters = Arc::new(SendCounters::default());
    let config = ChitchatConfig {
        chitchat_id: ChitchatId::new(args.name.clone(), now_ms(), args.listen),
        cluster_id: "peerbench".to_string(),
        gossip_interval: Duration::from_secs(1),
        listen_addr: args.listen,
        seed_nodes: args.seeds.iter().map(ToString::to_string).collect(),
        failure_detector_config: FailureDetectorConfig::default(),
        marked_for_deletion_grace_period: Duration::from_secs(15 * 60),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: ProtocolVersion::V0,
    };
    let handle = spawn_chitchat(config, Vec::new(), &CountingTransport(counters.clone())).await?;
    let chitchat = handle.chitchat();

    // Membership: diff successive values of the live-nodes watcher.
    let mut watcher = chitchat.lock().await.live_nodes_watcher();
    let me = args.name.clone();
    tokio::spawn(async move {
        let mut live: BTreeSet<String> = BTreeSet::new();
        loop {
            let now: BTreeSet<String> = watcher
                .borrow_and_update()
                .keys()
                .map(|id| id.node_id.to_string())
                .filter(|n| *n != me)
                .collect();
            for gone in live.difference(&now) {
                emit_membership("down", gone);
            }
            for came in now.difference(&live) {
                emit_membership("up", came);
            }
            live = now;
            if watcher.changed().await.is_err() {
                return;
            }
        }
    });

    if !args.metrics_interval.is_zero() {
        let chitchat = chitchat.clone();
        let every = args.metrics_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let metrics = host_metrics();
                let mut guard = chitchat.lock().await;
                let state = guard.self_node_state();
                for (k, v) in metrics {
                    state.set(k, v);
                }
            }
        });
    }

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        counters.emit();
    }
}
