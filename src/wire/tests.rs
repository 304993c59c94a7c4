use super::*;
use proptest::prelude::*;

fn name() -> impl Strategy<Value = NodeName> {
    "[a-z0-9.-]{1,40}".prop_map(NodeName)
}

fn addr() -> impl Strategy<Value = SocketAddr> {
    (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port)))
}

fn kv() -> impl Strategy<Value = KvEntry> {
    (
        "[a-z.]{1,20}",
        any::<u64>(),
        proptest::option::of(".{0,40}"),
    )
        .prop_map(|(key, v, value)| KvEntry {
            key,
            version: Version(v),
            value,
        })
}

fn delta() -> impl Strategy<Value = NodeDelta> {
    (
        name(),
        any::<u64>(),
        addr(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        proptest::collection::vec(kv(), 0..4),
    )
        .prop_map(|(node, inc, addr, beat, from, to, entries)| NodeDelta {
            node,
            incarnation: Incarnation(inc),
            addr,
            beat: Beat(beat),
            from: Version(from),
            to: Version(to),
            entries,
        })
}

fn digest_entry() -> impl Strategy<Value = DigestEntry> {
    (name(), any::<u64>(), any::<i64>(), any::<u64>())
        .prop_map(|(n, i, b, v)| DigestEntry(n, Incarnation(i), BeatAge(b), Version(v)))
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            proptest::collection::vec(digest_entry(), 0..8),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(digest, complete, news)| Message::Syn {
                digest,
                complete,
                news
            }),
        (
            proptest::collection::vec((name(), any::<u64>(), any::<u64>()), 0..4),
            proptest::collection::vec(delta(), 0..3),
            proptest::collection::vec((name(), any::<u64>(), any::<i64>()), 0..4)
        )
            .prop_map(|(w, deltas, b)| Message::SynAck {
                wants: w
                    .into_iter()
                    .map(|(n, i, v)| Want(n, Incarnation(i), Version(v)))
                    .collect(),
                deltas,
                beats: b
                    .into_iter()
                    .map(|(n, i, x)| BeatNews(n, Incarnation(i), BeatAge(x)))
                    .collect(),
            }),
        proptest::collection::vec(delta(), 0..3).prop_map(|deltas| Message::Ack { deltas }),
        any::<u32>().prop_map(|seq| Message::Ping { seq }),
        any::<u32>().prop_map(|seq| Message::PingAck { seq }),
        (any::<u32>(), name(), addr()).prop_map(|(seq, target, target_addr)| Message::PingReq {
            seq,
            target,
            target_addr
        }),
        (any::<u32>(), name(), any::<u64>(), any::<u64>()).prop_map(|(seq, target, i, b)| {
            Message::IndirectAck {
                seq,
                target,
                incarnation: Incarnation(i),
                beat: Beat(b),
            }
        }),
    ]
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (name(), any::<u64>(), any::<u64>(), message()).prop_map(|(from, i, b, msg)| Envelope {
        from,
        incarnation: Incarnation(i),
        beat: Beat(b),
        msg,
    })
}

proptest! {
    #[test]
    fn every_envelope_that_fits_survives_a_round_trip(env in envelope()) {
        match encode(&env) {
            Ok(bytes) => {
                prop_assert!(bytes.len() <= MAX_DATAGRAM);
                prop_assert_eq!(decode(&bytes).unwrap(), env);
            }
            Err(EncodeError::TooLarge(n)) => prop_assert!(n > MAX_DATAGRAM),
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = decode(&bytes);
        let _ = decode_frame(&bytes);
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_magic_never_panic(body in proptest::collection::vec(any::<u8>(), 0..1396)) {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(body);
        let _ = decode(&bytes);
    }

    #[test]
    fn every_truncation_of_a_valid_datagram_is_rejected(env in envelope(), cut in 0usize..2000) {
        if let Ok(bytes) = encode(&env) {
            let cut = cut % bytes.len();
            prop_assert!(decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn the_computed_digest_entry_size_is_the_encoded_size(e in digest_entry()) {
        prop_assert_eq!(digest_entry_len(&e), encoded_len(&e));
    }

    #[test]
    fn frames_survive_a_round_trip(members in proptest::collection::vec(delta(), 0..5)) {
        let frame = Frame::JoinAccepted { members };
        let bytes = encode_frame(&frame).unwrap();
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        prop_assert_eq!(len, bytes.len() - 4);
        prop_assert_eq!(decode_frame(&bytes[4..]).unwrap(), frame);
    }
}

#[test]
fn a_foreign_datagram_is_recognised_as_foreign() {
    assert_eq!(decode(b"GET / HTTP/1.1\r\n"), Err(DecodeError::Foreign));
    assert_eq!(decode(b""), Err(DecodeError::Foreign));
}

#[test]
fn a_newer_protocol_version_is_reported_as_such() {
    assert_eq!(decode(b"NBW\x07rest"), Err(DecodeError::Version(7)));
}

#[test]
fn an_oversized_datagram_is_refused_before_parsing() {
    assert_eq!(
        decode(&[0u8; MAX_DATAGRAM + 1]),
        Err(DecodeError::Oversized(MAX_DATAGRAM + 1))
    );
}

#[test]
fn trailing_bytes_after_a_message_are_refused() {
    let env = Envelope {
        from: NodeName::from("a"),
        incarnation: Incarnation(1),
        beat: Beat(5),
        msg: Message::Ping { seq: 3 },
    };
    let mut bytes = encode(&env).unwrap();
    bytes.push(0xc0);
    assert_eq!(decode(&bytes), Err(DecodeError::Trailing(1)));
}

proptest! {
    #[test]
    fn a_beat_survives_the_trip_through_an_age(reference in any::<u64>(), beat in any::<u64>()) {
        let (r, b) = (Beat(reference >> 1), Beat(beat >> 1));
        prop_assert_eq!(BeatAge::between(r, b).beat(r), b);
    }
}

/// A zone digest that lists every zone its sender knows says so; one that does not is written
/// as wire version 5 wrote it (no such field), and a reader of version 5 skips the field.
#[test]
fn a_complete_zone_digest_says_so_and_an_incomplete_one_is_written_as_before() {
    let zones = |complete| Envelope {
        from: NodeName::from("attic-1"),
        incarnation: Incarnation(2),
        beat: Beat(53_000_000),
        msg: Message::Zones {
            zone: "attic".into(),
            digest: vec![ZoneDigest("cellar".into(), 9, BeatAge(4))],
            summaries: vec![],
            suspects: vec![],
            reply: true,
            complete,
        },
    };
    for complete in [false, true] {
        let bytes = encode(&zones(complete)).unwrap();
        assert_eq!(decode(&bytes), Ok(zones(complete)));
    }
    let (short, long) = (
        encode(&zones(false)).unwrap(),
        encode(&zones(true)).unwrap(),
    );
    assert_eq!(
        long.len(),
        short.len() + 1,
        "one more element, a MessagePack `true`"
    );
}
