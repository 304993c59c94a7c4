//! Who owns a key, decided on this host from its view alone (`nbwatch owner`): rendezvous
//! (highest-random-weight) hashing over the live members, weighted by each one's gossiped
//! `node.weight` (default 1).
//!
//! Each live member gets the score `weight / -ln(u)`, where `u` in (0, 1) comes from the
//! SHA-256 of the member's name and the key; the `replicas` highest scores own the key. The
//! hash is the same on every host and every build, so every host with the same view names the
//! same owners; a member's share of the keys is its share of the total weight; and when a
//! member dies only the keys it owned move (each to the next in its own order), since the
//! others' scores do not change.

use crate::gossip::{MemberView, Status};
use crate::keys::WEIGHT_KEY;

/// The weight of a member that announces none, or an unreadable one.
pub const DEFAULT_WEIGHT: f64 = 1.0;

/// An owner of a key, and its score (higher first).
#[derive(Clone, Debug, PartialEq)]
pub struct Owner {
    pub node: String,
    pub addr: std::net::SocketAddr,
    pub weight: f64,
}

/// A member's announced weight (positive and finite), else [`DEFAULT_WEIGHT`].
pub fn weight(m: &MemberView) -> f64 {
    m.kv.get(WEIGHT_KEY)
        .and_then(|w| w.parse::<f64>().ok())
        .filter(|w| w.is_finite() && *w > 0.0)
        .unwrap_or(DEFAULT_WEIGHT)
}

/// The `replicas` live members that own `key`, the first one first.
pub fn owners(views: &[MemberView], key: &str, replicas: usize) -> Vec<Owner> {
    let mut scored: Vec<(f64, &MemberView)> = views
        .iter()
        .filter(|m| m.status == Status::Alive)
        .map(|m| (score(m.name.as_str(), key, weight(m)), m))
        .collect();
    scored.sort_by(|(a, ma), (b, mb)| {
        b.partial_cmp(a)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| ma.name.cmp(&mb.name))
    });
    scored
        .into_iter()
        .take(replicas)
        .map(|(_, m)| Owner {
            node: m.name.to_string(),
            addr: m.addr,
            weight: weight(m),
        })
        .collect()
}

/// The rendezvous score of `node` for `key`: `weight / -ln(u)` with `u` in (0, 1) from the
/// SHA-256 of the node's name, a zero byte and the key.
pub fn score(node: &str, key: &str, weight: f64) -> f64 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(node.as_bytes());
    ctx.update(&[0]);
    ctx.update(key.as_bytes());
    let digest = ctx.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    // 53 bits, shifted off zero: u in (0, 1).
    let u = ((u64::from_be_bytes(first) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    weight / -u.ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::test_view;

    fn member(name: &str, weight: Option<&str>) -> MemberView {
        let kv = weight.map(|w| (WEIGHT_KEY.to_string(), w.to_string()));
        test_view(name, Status::Alive, kv)
    }

    #[test]
    fn the_score_is_fixed_by_name_and_key_so_every_host_agrees() {
        // The hash is SHA-256: these values hold on every host and every build.
        let s = score("nas", "user:42", 1.0);
        assert!((s - score("nas", "user:42", 1.0)).abs() < f64::EPSILON);
        assert!((score("nas", "user:42", 2.0) - 2.0 * s).abs() < 1e-9);
        let views = vec![member("a", None), member("b", None), member("c", None)];
        let mut reversed = views.clone();
        reversed.reverse();
        for k in 0..100 {
            let key = format!("k{k}");
            assert_eq!(owners(&views, &key, 2), owners(&reversed, &key, 2));
        }
    }

    #[test]
    fn weights_that_do_not_parse_count_as_one_and_down_members_own_nothing() {
        assert_eq!(weight(&member("a", Some("2.5"))), 2.5);
        for bad in ["0", "-1", "NaN", "inf", "lots"] {
            assert_eq!(weight(&member("a", Some(bad))), DEFAULT_WEIGHT, "{bad}");
        }
        let mut down = member("b", None);
        down.status = Status::Down;
        let views = vec![member("a", None), down];
        for k in 0..50 {
            let o = owners(&views, &format!("k{k}"), 2);
            assert_eq!(o.iter().map(|o| o.node.as_str()).collect::<Vec<_>>(), ["a"]);
        }
    }
}
