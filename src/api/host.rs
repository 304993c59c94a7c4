//! The API answers only requests addressed to it by a name it knows: the defence against DNS
//! rebinding.
//!
//! A web page on `evil.example` can make its own name resolve to 127.0.0.1 after the page has
//! loaded; the browser then sends the page's requests to the API and lets the page read the
//! answers, because to the browser it is still `evil.example` talking to itself. What gives it
//! away is the `Host` header: the browser sends the page's name, and a page cannot set it. So
//! one layer around the whole router (like the token's, [`super::token`]) accepts a request
//! only when its `Host` (or the authority of an absolute request target) names
//!
//! * an IP address that is loopback (`127.0.0.1`, `[::1]`, all of 127.0.0.0/8), or the API's
//!   own listen address, or any IP address when the API listens on all of them (`0.0.0.0`,
//!   `[::]`: then every address of the host is its own) — an address is never a rebound name;
//! * `localhost`;
//! * a name in `api.allowed_hosts` (a reverse proxy's or an ssh alias's name), compared
//!   without case and without a final dot.
//!
//! The port is not compared: a rebinding page forges the name, not the port, and an ssh tunnel
//! (`ssh -L 8000:127.0.0.1:7711`) reaches the API as `localhost:8000`. Anything else is answered
//! 421 Misdirected Request ("this server does not answer for that authority", RFC 9110
//! §15.5.20) with a JSON error, before the token check, so a rebinding page learns nothing.
//!
//! A request without any `Host` is let through: browsers always send one, so it cannot come
//! from a page; HTTP/1.0 tools that omit it keep working. The CLI sends the address it
//! connects to (`Host: 127.0.0.1:7711`).

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// The names and addresses this API answers for.
#[derive(Clone, Debug)]
pub struct Hosts {
    listen: SocketAddr,
    /// Lower case, without a final dot.
    names: Vec<String>,
}

/// The host part of an authority (`name`, `name:port`, `1.2.3.4:port`, `[::1]:port`).
#[derive(Debug, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// The host of `authority`, or `None` when it is not one (userinfo, spaces, a bad port, an
/// unbracketed IPv6 address).
fn host_of(authority: &str) -> Option<Host> {
    if authority.is_empty() || authority.contains(['@', ' ', '\t', '/']) {
        return None;
    }
    let port_ok = |port: &str| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = authority.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = ip.parse().ok()?;
        return match after.strip_prefix(':') {
            None if after.is_empty() => Some(Host::Ip(IpAddr::V6(ip))),
            Some(port) if port_ok(port) => Some(Host::Ip(IpAddr::V6(ip))),
            _ => None,
        };
    }
    let host = match authority.split_once(':') {
        Some((host, port)) if port_ok(port) => host,
        Some(_) => return None,
        None => authority,
    };
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Some(Host::Ip(IpAddr::V4(ip)));
    }
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    (!name.is_empty()).then_some(Host::Name(name))
}

impl Hosts {
    /// The API listening on `listen`, also answering for `allowed` (lower case, as the config
    /// makes them).
    pub fn new(listen: SocketAddr, allowed: &[String]) -> Hosts {
        Hosts {
            listen,
            names: allowed
                .iter()
                .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        }
    }

    /// True if a request whose `Host` is `authority` is for this API.
    pub fn accepts(&self, authority: &str) -> bool {
        match host_of(authority) {
            Some(Host::Ip(ip)) => {
                ip.is_loopback() || ip == self.listen.ip() || self.listen.ip().is_unspecified()
            }
            Some(Host::Name(name)) => name == "localhost" || self.names.contains(&name),
            None => false,
        }
    }
}

fn refuse(host: &str) -> Response {
    let body = serde_json::json!({
        "error": format!(
            "this API does not answer for host {host:?}: a web page may be trying to reach it \
             through DNS rebinding. Use the API's address (like 127.0.0.1:7711) or localhost, \
             or add the name to api.allowed_hosts"
        )
    });
    (StatusCode::MISDIRECTED_REQUEST, axum::Json(body)).into_response()
}

/// The layer: a request whose `Host` (every one of them) and absolute-form authority, where
/// present, name this API passes; anything else gets 421.
pub(super) async fn require(
    State(hosts): State<Arc<Hosts>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(authority) = request.uri().authority()
        && !hosts.accepts(authority.as_str())
    {
        return refuse(authority.as_str());
    }
    for value in request.headers().get_all(header::HOST) {
        let host = String::from_utf8_lossy(value.as_bytes());
        if !hosts.accepts(&host) {
            return refuse(&host);
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(listen: &str, allowed: &[&str]) -> Hosts {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        Hosts::new(listen.parse().expect("address"), &allowed)
    }

    #[test]
    fn loopback_addresses_localhost_and_the_listen_address_are_accepted_with_or_without_a_port() {
        let h = hosts("127.0.0.1:7711", &[]);
        for ok in [
            "127.0.0.1:7711",
            "127.0.0.1",
            "127.0.0.1:8000",
            "127.1.2.3",
            "localhost",
            "localhost:7711",
            "LocalHost.:7711",
            "[::1]",
            "[::1]:7711",
        ] {
            assert!(h.accepts(ok), "{ok}");
        }
        let lan = hosts("192.168.1.10:7711", &[]);
        assert!(lan.accepts("192.168.1.10:7711") && lan.accepts("192.168.1.10"));
        assert!(!lan.accepts("192.168.1.11:7711"));
        let any = hosts("0.0.0.0:7711", &[]);
        assert!(any.accepts("192.168.1.11:7711") && any.accepts("[fe80::1]:7711"));
    }

    #[test]
    fn any_other_name_is_refused_unless_it_is_allowed() {
        let h = hosts("127.0.0.1:7711", &["nbwatch.home.arpa"]);
        for bad in [
            "evil.example",
            "evil.example:7711",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "evil@127.0.0.1",
            "2130706433",
            "::1",
            "[::1",
            "127.0.0.1:x",
            "",
        ] {
            assert!(!h.accepts(bad), "{bad}");
        }
        let any = hosts("0.0.0.0:7711", &[]);
        assert!(
            !any.accepts("evil.example"),
            "listening everywhere is no licence for names"
        );
        for ok in ["nbwatch.home.arpa", "NBWATCH.home.arpa.:443"] {
            assert!(h.accepts(ok), "{ok}");
        }
    }
}
