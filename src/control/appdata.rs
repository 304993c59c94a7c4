//! Application data: small values a program publishes from any host (`nbwatch publish KEY
//! VALUE`, or a program through the API) and every host can read (`get`, `subscribe`).
//!
//! Each value is a key `app.<KEY>` in the publishing node's own gossiped state, so it reaches
//! every host like the node's metrics do, and two hosts publishing the same KEY never
//! overwrite each other: a reader sees one value per host. The value travels as JSON with
//! the time it was published (so a subscriber sees a re-publish of the same value) and, with
//! a TTL, when it expires. Readers hide expired values everywhere; the publishing node also
//! deletes its own when they expire (the control actor does that every tick).

use crate::gossip::MemberView;
use crate::keys::control::Stored;
use crate::keys::{APP_PREFIX, with_prefix};
use crate::types::Time;
use std::time::Duration;

/// The longest KEY, in bytes.
pub const MAX_KEY_LEN: usize = 128;
/// The longest VALUE, in bytes (with the key and the envelope it stays inside one gossip
/// entry, see [`crate::keys::MAX_ENTRY_LEN`]).
pub const MAX_VALUE_LEN: usize = 768;

/// Why a key or value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppDataError {
    #[error("the key is empty")]
    EmptyKey,
    #[error("the key is {0} bytes long; the limit is {MAX_KEY_LEN}")]
    KeyTooLong(usize),
    #[error("the key {key:?} has {ch:?} at byte {at}; keys are letters, digits and . _ - / : only")]
    BadKeyChar { key: String, ch: char, at: usize },
    #[error("the value is {0} bytes long; the limit is {MAX_VALUE_LEN}")]
    ValueTooLong(usize),
    #[error("the TTL must be more than zero")]
    ZeroTtl,
    #[error(
        "the TTL is longer than {}, the longest duration nbwatch accepts",
        crate::types::duration::MAX_TEXT
    )]
    LongTtl,
}

/// One value as `get` and `subscribe` show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub node: String,
    pub key: String,
    pub value: String,
    pub at: Time,
    pub expires: Option<Time>,
}

/// Checks a KEY as a user gives it (without the prefix).
pub fn check_key(key: &str) -> Result<(), AppDataError> {
    if key.is_empty() {
        return Err(AppDataError::EmptyKey);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(AppDataError::KeyTooLong(key.len()));
    }
    if let Some((at, ch)) = key
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || "._-/:".contains(*c)))
    {
        return Err(AppDataError::BadKeyChar {
            key: key.to_string(),
            ch,
            at,
        });
    }
    Ok(())
}

/// The gossip key and value that publish `value` under `key` at `now`, expiring after `ttl`.
pub fn encode(
    key: &str,
    value: &str,
    ttl: Option<Duration>,
    now: Time,
) -> Result<(String, String), AppDataError> {
    check_key(key)?;
    if value.len() > MAX_VALUE_LEN {
        return Err(AppDataError::ValueTooLong(value.len()));
    }
    if ttl == Some(Duration::ZERO) {
        return Err(AppDataError::ZeroTtl);
    }
    if ttl.is_some_and(|t| t > crate::types::duration::MAX) {
        return Err(AppDataError::LongTtl);
    }
    let stored = Stored {
        value: value.to_string(),
        at: now.as_millis(),
        expires: ttl.map(|t| (now + t).as_millis()),
    };
    let json = serde_json::to_string(&stored).expect("a string and numbers serialize");
    Ok((format!("{APP_PREFIX}{key}"), json))
}

/// Every live value in `views` whose KEY starts with `prefix`, as of `now`, with its times on
/// this host's clock: expired values and values that do not parse are left out. Sorted by key, then node.
pub fn entries(views: &[MemberView], prefix: &str, now: Time) -> Vec<Entry> {
    let mut out = Vec::new();
    let full = format!("{APP_PREFIX}{prefix}");
    for view in views {
        for (rest, raw) in with_prefix(&view.kv, &full) {
            let key = format!("{prefix}{rest}");
            let Ok(stored) = Stored::parse(raw) else {
                continue;
            };
            // Its times are by its publisher's clock: read them on ours.
            let expires = stored.expires.map(|x| view.local(Time::from_millis(x)));
            if expires.is_some_and(|x| x <= now) {
                continue;
            }
            out.push(Entry {
                node: view.name.to_string(),
                key,
                value: stored.value,
                at: view.local(Time::from_millis(stored.at)),
                expires,
            });
        }
    }
    out.sort_by(|a, b| (&a.key, &a.node).cmp(&(&b.key, &b.node)));
    out
}

/// The gossip keys of this node's own values that have expired by `now`.
pub fn expired(me: &MemberView, now: Time) -> Vec<String> {
    with_prefix(&me.kv, APP_PREFIX)
        .filter(|(_, raw)| {
            Stored::parse(raw)
                .ok()
                .and_then(|s| s.expires)
                .is_some_and(|x| x <= now.as_millis())
        })
        .map(|(key, _)| format!("{APP_PREFIX}{key}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::Status;

    fn view(name: &str, kv: &[(String, String)]) -> MemberView {
        crate::control::test_view(name, Status::Alive, kv.iter().cloned())
    }

    #[test]
    fn keys_and_values_past_the_limits_are_refused_saying_why() {
        let now = Time(1_000);
        assert_eq!(encode("", "v", None, now), Err(AppDataError::EmptyKey));
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert_eq!(
            encode(&long, "v", None, now),
            Err(AppDataError::KeyTooLong(129))
        );
        let err = encode("queue depth", "v", None, now).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the key \"queue depth\" has ' ' at byte 5; keys are letters, digits and . _ - / : only"
        );
        let big = "v".repeat(MAX_VALUE_LEN + 1);
        assert_eq!(
            encode("k", &big, None, now),
            Err(AppDataError::ValueTooLong(769))
        );
        assert_eq!(
            encode("k", "v", Some(Duration::ZERO), now),
            Err(AppDataError::ZeroTtl)
        );
        // The largest allowed entry fits a gossip entry.
        let (k, v) = encode(
            &"k".repeat(MAX_KEY_LEN),
            &"\u{7f}".repeat(MAX_VALUE_LEN),
            Some(Duration::from_secs(1)),
            Time(u64::MAX / 2),
        )
        .unwrap();
        assert!(
            k.len() + v.len() <= crate::keys::MAX_ENTRY_LEN,
            "{}",
            k.len() + v.len()
        );
    }

    #[test]
    fn every_hosts_value_is_read_and_expired_ones_are_hidden() {
        let now = Time(10_000);
        let (k1, v1) = encode("mythtv/pending", "3", None, now).unwrap();
        let (k2, v2) = encode("mythtv/pending", "5", Some(Duration::from_secs(5)), now).unwrap();
        let (k3, v3) = encode("other", "x", None, now).unwrap();
        let views = [
            view("b", &[(k2.clone(), v2), (k3, v3)]),
            view("a", &[(k1, v1), ("app.bad".into(), "not json".into())]),
        ];
        let got = entries(&views, "mythtv/", now);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].node.as_str(), got[0].value.as_str()), ("a", "3"));
        assert_eq!((got[1].node.as_str(), got[1].value.as_str()), ("b", "5"));
        assert_eq!(got[1].expires, Some(Time(15_000)));
        let later = Time(15_000);
        let got = entries(&views, "mythtv/", later);
        assert_eq!(got.len(), 1);
        assert_eq!(expired(&views[0], later), vec![k2]);
        assert!(expired(&views[1], later).is_empty());
        assert_eq!(entries(&views, "", now).len(), 3);
    }

    #[test]
    fn a_ttl_set_by_a_host_whose_clock_is_an_hour_ahead_runs_on_the_readers_clock() {
        const HOUR: u64 = 3_600_000;
        let ours = Time(1_800_000_000_000);
        let (k, v) = encode(
            "job",
            "7",
            Some(Duration::from_secs(30)),
            Time(ours.0 + HOUR),
        )
        .unwrap();
        let mut ahead = view("ahead", &[(k, v)]);
        // Before its offset is known the value already looks an hour from expiring...
        assert_eq!(
            entries(&[ahead.clone()], "", ours)[0].expires,
            Some(Time(ours.0 + HOUR + 30_000))
        );
        // ...and once it is, it expires 30 s from now by our clock, not never or at once.
        ahead.clock_offset = Some(HOUR as i64);
        let got = entries(&[ahead.clone()], "", ours);
        assert_eq!(
            (got[0].at, got[0].expires),
            (ours, Some(Time(ours.0 + 30_000)))
        );
        assert!(entries(&[ahead], "", Time(ours.0 + 30_000)).is_empty());
    }
}
