//! What a config would expose to the network: plaintext gossip or the API off loopback. One
//! function decides it, for `check-config` (through the config's validation) and for the
//! node's start alike, so the two never disagree.

use super::{ApiConfig, GossipConfig};
use std::net::{IpAddr, SocketAddr};

/// A listen address the config may not use as it stands.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Exposure {
    #[error(
        "api.listen {0} is not a loopback address and nbwatch's API has no TLS: the token and \
         every answer would cross the network in clear. Keep the API on 127.0.0.1 (reach it \
         over ssh), or set api.insecure = true to accept that"
    )]
    OpenApi(SocketAddr),
    #[error(
        "gossip.listen {0} is not a loopback address and there is no gossip.key_file: anyone \
         on the network could read the cluster, join it, accuse its members and command it. \
         Create a key with `nbwatch keygen --out FILE` and set gossip.key_file = \"FILE\" on \
         every node, or set gossip.insecure = true to run plaintext on purpose"
    )]
    PlaintextGossip(SocketAddr),
}

impl Exposure {
    /// The config key at fault.
    pub fn key(&self) -> &'static str {
        match self {
            Exposure::OpenApi(_) => "api.listen",
            Exposure::PlaintextGossip(_) => "gossip.listen",
        }
    }
}

/// True for 127.0.0.0/8, `::1`, and their IPv4-mapped forms (`::ffff:127.0.0.1`), which
/// reach the same loopback interface: std's `Ipv6Addr::is_loopback` says false for those.
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// What `api` and `gossip` would expose, in the order the start checks it.
pub fn exposure(api: &ApiConfig, gossip: &GossipConfig) -> Vec<Exposure> {
    let mut out = Vec::new();
    if !is_loopback(api.listen.ip()) && !api.insecure {
        out.push(Exposure::OpenApi(api.listen));
    }
    if gossip.key_file.is_none() && !is_loopback(gossip.listen.ip()) && !gossip.insecure {
        out.push(Exposure::PlaintextGossip(gossip.listen));
    }
    out
}
