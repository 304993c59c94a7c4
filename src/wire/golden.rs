//! Golden frames: one datagram of every message and one body of every TCP frame, as each wire
//! version wrote them, kept in `tests/fixtures/wire/v<N>/`. Every version this build still
//! reads must decode its files to exactly [`datagrams`] and [`frames`]: a change that breaks
//! reading what an older release sends fails here, not in a rolling upgrade.
//!
//! The files of a version are written once, by the release that introduced it
//! (`NBWATCH_WRITE_GOLDEN=1 cargo test --lib wire::golden`), and never rewritten after.

use super::*;
use std::path::PathBuf;

fn name(s: &str) -> NodeName {
    NodeName::from(s)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([192, 168, 1, 20], port))
}

fn delta() -> NodeDelta {
    NodeDelta {
        node: name("nas"),
        incarnation: Incarnation(3),
        addr: addr(7946),
        beat: Beat(53_000_123),
        from: Version(4),
        to: Version(6),
        entries: vec![
            KvEntry {
                key: "sys".into(),
                version: Version(5),
                value: Some("0.52 0.40 0.31 41.5 12.0 2 7".into()),
            },
            KvEntry {
                key: "app.gone".into(),
                version: Version(6),
                value: None,
            },
        ],
    }
}

/// One envelope of every message, under a file name.
pub(super) fn datagrams() -> Vec<(&'static str, Envelope)> {
    let env = |msg| Envelope {
        from: name("mythtv"),
        incarnation: Incarnation(7),
        beat: Beat(53_000_200),
        msg,
    };
    vec![
        (
            "syn",
            env(Message::Syn {
                digest: vec![
                    DigestEntry(name("nas"), Incarnation(3), BeatAge(12), Version(6)),
                    DigestEntry(name("desk"), Incarnation(1), BeatAge(-2), Version(40)),
                ],
                complete: true,
                news: false,
            }),
        ),
        (
            "synack",
            env(Message::SynAck {
                wants: vec![Want(name("desk"), Incarnation(1), Version(38))],
                deltas: vec![delta()],
                beats: vec![BeatNews(name("nas"), Incarnation(3), BeatAge(1))],
            }),
        ),
        (
            "ack",
            env(Message::Ack {
                deltas: vec![delta()],
            }),
        ),
        ("ping", env(Message::Ping { seq: 0x8000_0011 })),
        (
            "pingreq",
            env(Message::PingReq {
                seq: 17,
                target: name("nas"),
                target_addr: addr(7946),
            }),
        ),
        ("pingack", env(Message::PingAck { seq: 17 })),
        (
            "indirectack",
            env(Message::IndirectAck {
                seq: 17,
                target: name("nas"),
                incarnation: Incarnation(3),
                beat: Beat(53_000_190),
            }),
        ),
    ]
}

/// The datagrams of `version`: every message it has, under a file name.
pub(super) fn datagrams_in(version: u8) -> Vec<(&'static str, Envelope)> {
    let mut all = datagrams();
    if version >= ZONED {
        all.push((
            "zones",
            Envelope {
                from: name("mythtv"),
                incarnation: Incarnation(7),
                beat: Beat(53_000_200),
                msg: Message::Zones {
                    zone: "attic".into(),
                    digest: vec![ZoneDigest("cellar".into(), 45_000, BeatAge(3))],
                    summaries: vec![ZoneSummary {
                        zone: "cellar".into(),
                        version: 45_000,
                        reps: vec![(name("nas"), addr(7946))],
                        total: 3,
                        up: 2,
                        suspect: 0,
                        down: 1,
                        down_names: vec![(name("desk"), Beat(53_000_100))],
                        leader: Some(name("nas")),
                        incidents: 1,
                        metrics: vec![("load1".into(), 0.25, 0.5, 0.75, 2)],
                    }],
                    suspects: vec!["garden".into()],
                    reply: true,
                    complete: false,
                },
            },
        ));
    }
    all
}

/// One body of every TCP frame, under a file name.
pub(super) fn frames() -> Vec<(&'static str, Frame)> {
    vec![
        (
            "join-request",
            Frame::JoinRequest {
                name: name("desk"),
                incarnation: Incarnation(2),
                addr: addr(7947),
            },
        ),
        (
            "join-accepted",
            Frame::JoinAccepted {
                members: vec![delta()],
            },
        ),
        (
            "join-rejected",
            Frame::JoinRejected {
                reason: "the name desk is taken by the live node at 192.168.1.21:7946".into(),
            },
        ),
        (
            "history-request",
            Frame::HistoryRequest(PageRequest {
                since: Time(1_800_000_000_000),
                samples_after: Some((1_800_000_001_000, 42)),
                events_after: None,
            }),
        ),
        (
            "history-page",
            Frame::HistoryPage(Page {
                samples: vec![Sample {
                    node: "nas".into(),
                    metric: "load1".into(),
                    at: Time(1_800_000_002_000),
                    value: 0.52,
                }],
                events: vec![EventRow {
                    at: Time(1_800_000_003_000),
                    node: "nas".into(),
                    kind: "node_down".into(),
                    ident: "node_down/nas/3".into(),
                    incarnation: Some(3),
                    last_heard: Some(Time(1_800_000_002_500)),
                    detail: "witnesses: desk, mythtv".into(),
                    json: r#"{"kind":"node_down","node":"nas"}"#.into(),
                }],
                samples_next: Some((1_800_000_002_000, 43)),
                events_next: None,
                error: None,
            }),
        ),
    ]
}

fn dir(version: u8) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wire")
        .join(format!("v{version}"))
}

/// Writes this build's files, when asked to (once per new wire version).
#[test]
fn write_this_versions_files_when_asked() {
    if std::env::var_os("NBWATCH_WRITE_GOLDEN").is_none() {
        return;
    }
    let dir = dir(MAGIC[3]);
    std::fs::create_dir_all(&dir).unwrap();
    for (file, env) in datagrams_in(MAGIC[3]) {
        std::fs::write(dir.join(format!("{file}.bin")), encode(&env).unwrap()).unwrap();
    }
    for (file, frame) in frames() {
        std::fs::write(
            dir.join(format!("{file}.frame")),
            encode_frame_body(&frame).unwrap(),
        )
        .unwrap();
    }
}

/// Every version in the window reads every golden file of every version in the window...
#[test]
fn every_version_in_the_window_decodes_to_the_same_values() {
    for version in OLDEST..=VERSION {
        let dir = dir(version);
        for (file, env) in datagrams_in(version) {
            let path = dir.join(format!("{file}.bin"));
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            assert_eq!(version_of(&bytes), Some(version), "{path:?}");
            assert_eq!(decode(&bytes), Ok(env), "{path:?}");
        }
        for (file, frame) in frames() {
            let path = dir.join(format!("{file}.frame"));
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            assert_eq!(decode_frame(&bytes), Ok(frame), "{path:?}");
        }
    }
}

/// ...and speaking an older version gives, byte for byte, what that version wrote: an old
/// host gets exactly what it reads.
#[test]
fn speaking_an_older_version_writes_what_it_wrote() {
    for version in OLDEST..=VERSION {
        let dir = dir(version);
        for (file, env) in datagrams_in(version) {
            let want = std::fs::read(dir.join(format!("{file}.bin"))).unwrap();
            assert_eq!(
                restamp(encode(&env).unwrap(), version),
                want,
                "v{version} {file}"
            );
        }
        for (file, frame) in frames() {
            let want = std::fs::read(dir.join(format!("{file}.frame"))).unwrap();
            let body = encode_frame_body(&frame).unwrap();
            assert_eq!(restamp(body, version), want, "v{version} {file}");
        }
    }
}

#[test]
fn versions_outside_the_window_are_refused_with_the_window_named() {
    let (_, env) = datagrams().remove(0);
    for version in [0, OLDEST - 1, VERSION + 1, 0xff] {
        if speaks(version) {
            continue;
        }
        let mut bytes = encode(&env).unwrap();
        bytes[3] = version;
        let err = decode(&bytes).unwrap_err();
        assert_eq!(err, DecodeError::Version(version));
        assert!(
            err.to_string()
                .contains(&format!("reads {OLDEST} to {VERSION}")),
            "{err}"
        );
    }
}
