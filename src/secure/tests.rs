use super::frame::{self, For, Kind, OVERHEAD, OpenError, Origin};
use super::replay::{Replay, WINDOW};
use super::*;
use proptest::prelude::*;

fn addr() -> SocketAddr {
    "127.0.0.1:1".parse().unwrap()
}

fn key(b: u8) -> Key {
    Key::from_bytes([b; keyring::KEY_LEN])
}

fn origin(seq: u64) -> Origin {
    Origin {
        sender: 7,
        session: 100,
        seq,
    }
}

#[test]
fn a_sealed_frame_opens_with_the_same_key_and_cluster() {
    let ring = Keyring::single(key(1));
    let sealed = frame::seal(
        ring.primary(),
        "home",
        Kind::Datagram,
        frame::To::Node("me"),
        &[],
        origin(1),
        [9; 24],
        b"hello",
    );
    assert_eq!(sealed.len(), OVERHEAD + 5);
    let opened = frame::open(&ring, "home", Kind::Datagram, "me", &[], &sealed).unwrap();
    assert_eq!(opened.payload, b"hello");
    assert_eq!(opened.origin, origin(1));
    assert_eq!(opened.key, key(1).id());
}

#[test]
fn a_frame_does_not_open_with_another_key_cluster_kind_or_binding() {
    let ring = Keyring::single(key(1));
    let sealed = frame::seal(
        ring.primary(),
        "home",
        Kind::Request,
        frame::To::Node("me"),
        b"",
        origin(1),
        [9; 24],
        b"x",
    );
    let other = Keyring::single(key(2));
    assert_eq!(
        frame::open(&other, "home", Kind::Request, "me", &[], &sealed),
        Err(OpenError::UnknownKey(key(1).id()))
    );
    assert_eq!(
        frame::open(&ring, "work", Kind::Request, "me", &[], &sealed),
        Err(OpenError::Forged)
    );
    assert_eq!(
        frame::open(&ring, "home", Kind::Datagram, "me", &[], &sealed),
        Err(OpenError::Forged)
    );
    assert_eq!(
        frame::open(&ring, "home", Kind::Request, "me", b"bound", &sealed),
        Err(OpenError::Forged)
    );
}

#[test]
fn a_key_with_the_same_id_but_other_bytes_is_still_refused() {
    // An attacker who forges the key id field gets no further than the tag.
    let ring = Keyring::single(key(1));
    let mut sealed = frame::seal(
        &key(2),
        "c",
        Kind::Datagram,
        frame::To::Node("me"),
        &[],
        origin(1),
        [0; 24],
        b"x",
    );
    sealed[4..8].copy_from_slice(&key(1).id().0.to_be_bytes());
    assert_eq!(
        frame::open(&ring, "c", Kind::Datagram, "me", &[], &sealed),
        Err(OpenError::Forged)
    );
}

#[test]
fn every_flipped_bit_is_detected() {
    let ring = Keyring::single(key(3));
    let sealed = frame::seal(
        ring.primary(),
        "c",
        Kind::Datagram,
        frame::To::Node("me"),
        &[],
        origin(1),
        [5; 24],
        b"payload",
    );
    for i in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x01;
        assert!(
            frame::open(&ring, "c", Kind::Datagram, "me", &[], &bad).is_err(),
            "bit in byte {i}"
        );
    }
    assert_eq!(
        frame::open(
            &ring,
            "c",
            Kind::Datagram,
            "me",
            &[],
            &sealed[..OVERHEAD - 1]
        ),
        Err(OpenError::TooShort(OVERHEAD - 1))
    );
}

#[test]
fn key_ids_are_stable_and_differ_between_keys() {
    assert_eq!(key(1).id(), Key::parse(&key(1).encode()).unwrap().id());
    assert_ne!(key(1).id(), key(2).id());
    assert_eq!(format!("{:?}", key(1)), format!("Key({})", key(1).id()));
    let id = key(1).id();
    assert_eq!(id.to_string().parse::<KeyId>(), Ok(id));
    assert!("xyz".parse::<KeyId>().is_err());
}

#[test]
fn keygen_keys_are_random_and_32_bytes() {
    let (a, b) = (Key::generate(), Key::generate());
    assert_ne!(a, b);
    assert_eq!(a.encode().len(), 44);
}

#[test]
fn bad_key_files_name_the_file_and_line() {
    let path = std::path::Path::new("/etc/k");
    let e = Keyring::parse(path, "# comment\n\nnot-a-key\n").unwrap_err();
    assert_eq!(e.to_string().split(": ").next(), Some("/etc/k:3"));
    let short = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [1u8; 16]);
    let e = Keyring::parse(path, &short).unwrap_err().to_string();
    assert!(e.contains("/etc/k:1") && e.contains("16 bytes"), "{e}");
    assert!(matches!(
        Keyring::parse(path, "# none\n"),
        Err(KeyError::Empty(_))
    ));
}

#[test]
fn the_keyring_rotates_and_saves_primary_first_at_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.key");
    let mut ring = Keyring::single(key(1));
    ring.install(key(2)).unwrap();
    assert_eq!(ring.primary().id(), key(1).id());
    assert!(matches!(
        ring.remove(key(1).id()),
        Err(KeyError::Primary(_))
    ));
    ring.use_key(key(2).id()).unwrap();
    ring.remove(key(1).id()).unwrap();
    assert!(matches!(
        ring.use_key(key(1).id()),
        Err(KeyError::Unknown(_))
    ));
    ring.install(key(3)).unwrap();
    ring.save(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let back = Keyring::load(&path).unwrap();
    assert_eq!(back.ids(), vec![key(2).id(), key(3).id()]);
}

#[test]
fn a_keyring_in_a_newer_format_is_refused_and_the_current_one_is_read() {
    let path = std::path::Path::new("/etc/nbwatch/cluster.key");
    let current = format!(
        "{}{}\n",
        crate::statefile::header("keyring", crate::statefile::KEYRING_FORMAT),
        key(1).encode()
    );
    assert_eq!(
        Keyring::parse(path, &current).unwrap().ids(),
        vec![key(1).id()]
    );
    let newer = format!(
        "{}{}\n",
        crate::statefile::header("keyring", crate::statefile::KEYRING_FORMAT + 1),
        key(1).encode()
    );
    let err = Keyring::parse(path, &newer).unwrap_err();
    assert!(
        matches!(
            &err,
            KeyError::Format(crate::statefile::StateFileError::Newer { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("newer nbwatch"), "{err}");
}

#[test]
fn the_replay_window_accepts_each_number_once() {
    let mut r = Replay::default();
    assert!(r.accept(Kind::Datagram, origin(10)));
    assert!(!r.accept(Kind::Datagram, origin(10)), "a replay");
    assert!(r.accept(Kind::Datagram, origin(12)));
    assert!(r.accept(Kind::Datagram, origin(11)), "late but new");
    assert!(!r.accept(Kind::Datagram, origin(11)));
    assert!(
        r.accept(Kind::Request, origin(10)),
        "kinds have their own numbers"
    );
    assert!(r.accept(Kind::Datagram, origin(12 + WINDOW)));
    assert!(!r.accept(Kind::Datagram, origin(12)), "below the window");
    assert!(
        r.accept(Kind::Datagram, origin(13 + WINDOW - 1 - 64)),
        "inside the window"
    );
    assert!(!r.accept(Kind::Datagram, origin(13 + WINDOW - 1 - 64)));
    let older = Origin {
        session: 99,
        ..origin(1_000_000)
    };
    assert!(!r.accept(Kind::Datagram, older), "an older session");
    let newer = Origin {
        session: 101,
        ..origin(1)
    };
    assert!(r.accept(Kind::Datagram, newer), "a restarted sender");
    assert!(
        !r.accept(Kind::Datagram, origin(100_000)),
        "its old session is over"
    );
}

#[test]
fn the_replay_window_matches_a_set_of_seen_numbers() {
    // Against a plain model: fresh iff not seen and within WINDOW of the highest seen.
    let mut r = Replay::default();
    let mut seen = std::collections::BTreeSet::new();
    let mut x: u64 = 12345;
    for _ in 0..20_000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let top: u64 = seen.iter().next_back().copied().unwrap_or(0);
        let seq = (top + 40).saturating_sub((x >> 33) % 400).max(1);
        let fresh = !seen.contains(&seq) && (seen.is_empty() || seq + WINDOW > top);
        assert_eq!(
            r.accept(Kind::Datagram, origin(seq)),
            fresh,
            "seq {seq} top {top}"
        );
        if fresh {
            seen.insert(seq);
        }
    }
}

#[test]
fn the_gate_drops_replays_and_strangers_and_counts_them() {
    let ring = Keyring::single(key(1));
    let a = Gate::keyed("home", "a", ring.clone(), None);
    let b = Gate::keyed("home", "b", ring, None);
    let stranger = Gate::keyed("home", "x", Keyring::single(key(2)), None);
    let d = a.seal_datagram(To::Node("b"), b"NBW\x01...");
    assert_eq!(
        b.open_datagram(addr(), &d).as_deref(),
        Some(&b"NBW\x01..."[..])
    );
    assert_eq!(b.open_datagram(addr(), &d), None, "replayed");
    assert_eq!(
        b.open_datagram(addr(), &stranger.seal_datagram(To::Node("b"), b"hi")),
        None
    );
    assert_eq!(b.open_datagram(addr(), b"NBW\x01plaintext"), None);
    let s = b.stats();
    assert_eq!((s.opened, s.dropped_replay, s.dropped_auth), (1, 1, 2));
    assert!(s.encrypted);

    // A TCP exchange: the answer opens only for the request it answers.
    let (req, bind) = a.seal_request(To::Node("b"), b"request");
    let (body, server_bind) = b.open_request(addr(), &req).unwrap();
    assert_eq!(body, b"request");
    let answer = b.seal_answer(&server_bind, b"answer");
    assert_eq!(
        a.open_answer(addr(), &bind, &answer).as_deref(),
        Some(&b"answer"[..])
    );
    let (_, other_bind) = a.seal_request(To::Node("b"), b"another");
    assert_eq!(a.open_answer(addr(), &other_bind, &answer), None);
    assert_eq!(b.open_request(addr(), &req), None, "a replayed request");
}

#[test]
fn a_plaintext_gate_passes_bytes_through() {
    let g = Gate::plaintext();
    assert!(!g.is_encrypted());
    assert_eq!(g.seal_datagram(To::Anyone, b"abc"), b"abc");
    assert_eq!(
        g.open_datagram(addr(), b"abc").as_deref(),
        Some(&b"abc"[..])
    );
    assert!(g.install(key(1)).is_err());
}

#[test]
fn a_rotation_keeps_both_sides_talking_at_every_step() {
    let (k1, k2) = (key(1), key(2));
    let a = Gate::keyed("c", "a", Keyring::single(k1.clone()), None);
    let b = Gate::keyed("c", "b", Keyring::single(k1.clone()), None);
    let talk = |x: &Gate, y: &Gate| {
        let to = if std::ptr::eq(y, &a) { "a" } else { "b" };
        y.open_datagram(addr(), &x.seal_datagram(To::Node(to), b"m"))
            .is_some()
    };
    for step in 0..4 {
        match step {
            1 => {
                a.install(k2.clone()).unwrap();
                b.install(k2.clone()).unwrap();
            }
            2 => {
                a.use_key(k2.id()).unwrap();
                assert!(talk(&a, &b) && talk(&b, &a), "one node switched first");
                b.use_key(k2.id()).unwrap();
            }
            3 => {
                a.remove(k1.id()).unwrap();
                b.remove(k1.id()).unwrap();
            }
            _ => {}
        }
        assert!(talk(&a, &b) && talk(&b, &a), "after step {step}");
    }
    assert_eq!(a.key_ids(), vec![k2.id()]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Adversarial bytes never open and never panic, whatever their header claims.
    #[test]
    fn random_bytes_never_open(mut bytes in proptest::collection::vec(any::<u8>(), 0..1600), claim_key in any::<bool>()) {
        let ring = Keyring::single(key(1));
        if claim_key && bytes.len() >= 8 {
            bytes[..4].copy_from_slice(&frame::MAGIC);
            bytes[4..8].copy_from_slice(&key(1).id().0.to_be_bytes());
        }
        prop_assert!(frame::open(&ring, "c", Kind::Datagram, "me", &[], &bytes).is_err());
        let gate = Gate::keyed("c", "g", ring, None);
        prop_assert!(gate.open_datagram(addr(), &bytes).is_none());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// After decryption: whatever a key holder sealed opens unchanged, and the wire decoder
    /// takes it without panicking.
    #[test]
    fn sealed_random_payloads_open_unchanged_and_never_panic_the_decoder(
        payload in proptest::collection::vec(any::<u8>(), 0..1400),
        magic in any::<bool>(),
    ) {
        let ring = Keyring::single(key(4));
        let (a, b) = (Gate::keyed("c", "a", ring.clone(), None), Gate::keyed("c", "b", ring, None));
        let mut payload = payload;
        if magic {
            payload.splice(0..0, crate::wire::MAGIC);
        }
        let opened = b.open_datagram(addr(), &a.seal_datagram(To::Node("b"), &payload));
        prop_assert_eq!(opened.as_deref(), Some(&payload[..]));
        let _ = crate::wire::decode(&payload);
    }
}

#[test]
fn a_frame_opens_only_at_the_node_it_was_sealed_for_or_as_one_for_anyone() {
    let ring = Keyring::single(key(1));
    let seal = |to| {
        frame::seal(
            ring.primary(),
            "c",
            Kind::Datagram,
            to,
            &[],
            origin(1),
            [3; 24],
            b"x",
        )
    };
    let for_b = seal(frame::To::Node("b"));
    assert_eq!(
        frame::open(&ring, "c", Kind::Datagram, "b", &[], &for_b).map(|o| o.to),
        Ok(For::Me)
    );
    assert_eq!(
        frame::open(&ring, "c", Kind::Datagram, "c", &[], &for_b),
        Err(OpenError::Forged),
        "captured on its way to b, it does not open at c"
    );
    let anyone = seal(frame::To::Anyone);
    assert_eq!(
        frame::open(&ring, "c", Kind::Datagram, "c", &[], &anyone).map(|o| o.to),
        Ok(For::Anyone)
    );
    let previous = seal(frame::To::Previous);
    assert_eq!(&previous[..4], &frame::MAGIC_V1);
    assert_eq!(
        frame::open(&ring, "c", Kind::Datagram, "c", &[], &previous).map(|o| o.to),
        Ok(For::Previous)
    );
    // The version byte is authenticated: a frame for b relabelled as version 1 does not open.
    let mut relabelled = for_b.clone();
    relabelled[..4].copy_from_slice(&frame::MAGIC_V1);
    assert_eq!(
        frame::open(&ring, "c", Kind::Datagram, "b", &[], &relabelled),
        Err(OpenError::Forged)
    );
}

#[test]
fn the_gate_refuses_what_was_sealed_for_another_node_and_datagrams_for_anyone() {
    let ring = Keyring::single(key(1));
    let a = Gate::keyed("home", "a", ring.clone(), None);
    let b = Gate::keyed("home", "b", ring.clone(), None);
    let c = Gate::keyed("home", "c", ring, None);
    // A datagram a sent to b, replayed to c: not fresh at c by c's window, but refused
    // because it names b.
    let d = a.seal_datagram(To::Node("b"), b"ping");
    assert_eq!(c.open_datagram(addr(), &d), None);
    assert_eq!(b.open_datagram(addr(), &d).as_deref(), Some(&b"ping"[..]));
    // A datagram sealed for anyone is never taken.
    assert_eq!(
        c.open_datagram(addr(), &a.seal_datagram(To::Anyone, b"x")),
        None
    );
    assert_eq!(c.stats().dropped_auth, 2);
    // A request for b does not open at c; a first contact opens anywhere, flagged as such.
    let (req, _) = a.seal_request(To::Node("b"), b"history");
    assert_eq!(c.open_request(addr(), &req), None);
    let (_, bind) = b.open_request(addr(), &req).unwrap();
    assert!(!bind.to_anyone);
    let (join, join_bind) = a.seal_request(To::Anyone, b"join");
    let (_, server_bind) = c.open_request(addr(), &join).unwrap();
    assert!(server_bind.to_anyone);
    let answer = c.seal_answer(&server_bind, b"welcome");
    assert_eq!(
        a.open_answer(addr(), &join_bind, &answer).as_deref(),
        Some(&b"welcome"[..])
    );
    // A peer of the previous release: asked in version 1, answered in version 1.
    let (old, old_bind) = a.seal_request(To::Previous, b"join");
    let (_, server_bind) = c.open_request(addr(), &old).unwrap();
    let answer = c.seal_answer(&server_bind, b"welcome");
    assert_eq!(&answer[..4], &frame::MAGIC_V1);
    assert_eq!(
        a.open_answer(addr(), &old_bind, &answer).as_deref(),
        Some(&b"welcome"[..])
    );
}

#[test]
fn a_compact_frame_carries_its_origin_in_its_nonce_and_costs_48_bytes() {
    let ring = Keyring::single(key(1));
    let real = Origin {
        sender: frame::sender_id("a"),
        session: 1_796_310_000_123,
        seq: 41,
    };
    let seal = |to, origin, random: [u8; 24]| {
        frame::seal(
            ring.primary(),
            "home",
            Kind::Datagram,
            to,
            &[],
            origin,
            random,
            b"hello",
        )
    };
    let sealed = seal(frame::To::Compact("b"), real, [5; 24]);
    assert_eq!(&sealed[..4], &frame::MAGIC_V3);
    assert_eq!(sealed.len(), frame::COMPACT_OVERHEAD + 5);
    assert_eq!(frame::COMPACT_OVERHEAD, OVERHEAD - 24);
    let opened = frame::open(&ring, "home", Kind::Datagram, "b", &[], &sealed).unwrap();
    assert_eq!(
        (opened.payload.as_slice(), opened.origin),
        (&b"hello"[..], real)
    );
    assert_eq!(opened.to, For::Me);
    // The same origin sealed twice (a machine restored from a snapshot): other random bytes,
    // so another nonce.
    let again = seal(frame::To::Compact("b"), real, [6; 24]);
    assert_ne!(sealed[8..32], again[8..32]);
    // Only for the node it names; an altered nonce (another origin) does not open.
    assert_eq!(
        frame::open(&ring, "home", Kind::Datagram, "c", &[], &sealed),
        Err(OpenError::Forged)
    );
    let mut renumbered = sealed.clone();
    renumbered[21] ^= 1;
    assert_eq!(
        frame::open(&ring, "home", Kind::Datagram, "b", &[], &renumbered),
        Err(OpenError::Forged)
    );
    // Relabelled as another version, it does not open either.
    let mut relabelled = sealed.clone();
    relabelled[..4].copy_from_slice(&frame::MAGIC);
    assert!(frame::open(&ring, "home", Kind::Datagram, "b", &[], &relabelled).is_err());
    // An origin the nonce cannot hold goes in the named frame (version 2), which opens too.
    for origin in [
        Origin {
            seq: 1 << 32,
            ..real
        },
        Origin {
            session: 1 << 48,
            ..real
        },
    ] {
        let sealed = seal(frame::To::Compact("b"), origin, [5; 24]);
        assert_eq!(&sealed[..4], &frame::MAGIC);
        let opened = frame::open(&ring, "home", Kind::Datagram, "b", &[], &sealed).unwrap();
        assert_eq!(opened.origin, origin);
    }
}

#[test]
fn a_compact_datagram_replayed_is_refused_by_the_window() {
    let ring = Keyring::single(key(1));
    let a = Gate::keyed("home", "a", ring.clone(), None);
    let b = Gate::keyed("home", "b", ring, None);
    let d = a.seal_datagram(To::Compact("b"), b"ping");
    assert_eq!(&d[..4], &frame::MAGIC_V3);
    assert_eq!(b.open_datagram(addr(), &d).as_deref(), Some(&b"ping"[..]));
    assert_eq!(b.open_datagram(addr(), &d), None, "a replay");
    let next = a.seal_datagram(To::Compact("b"), b"pong");
    assert_eq!(
        b.open_datagram(addr(), &next).as_deref(),
        Some(&b"pong"[..])
    );
}
