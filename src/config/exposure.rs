//! What a config would expose to the network: the API off loopback without TLS. One function decides it,
//! for `check-config` (through the config's validation) and for the node's start alike, so the
//! two never disagree. Gossip has no such rule: it is sealed unless `gossip.insecure = true`
//! asks for plaintext, on any address (see `Config::gossip_key`).

use super::ApiConfig;
use std::net::{IpAddr, SocketAddr};

/// A listen address the config may not use as it stands.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Exposure {
    #[error(
        "api.listen {0} is not a loopback address and the API has no TLS: the token and every \
         answer would cross the network in clear. Keep the API on 127.0.0.1 (reach it over \
         ssh, or read from another machine through metrics.listen), give it a certificate \
         (api.tls_cert, api.tls_key), or set api.insecure = true to accept that"
    )]
    OpenApi(SocketAddr),
}

impl Exposure {
    /// The config key at fault.
    pub fn key(&self) -> &'static str {
        match self {
            Exposure::OpenApi(_) => "api.listen",
        }
    }
}

/// True for 127.0.0.0/8, `::1`, and their IPv4-mapped forms (`::ffff:127.0.0.1`), which
/// reach the same loopback interface: std's `Ipv6Addr::is_loopback` says false for those.
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// What `api` would expose.
pub fn exposure(api: &ApiConfig) -> Vec<Exposure> {
    let mut out = Vec::new();
    if !is_loopback(api.listen.ip()) && !api.insecure && api.tls.is_none() {
        out.push(Exposure::OpenApi(api.listen));
    }
    out
}
