use super::verdict::lifeguard_timeout;
use super::*;
use crate::sim::Sim;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn core(name: &str, port: u16) -> Core {
    Core::new(
        NodeName::from(name),
        addr(port),
        Incarnation(1),
        vec![],
        Settings::default(),
        7,
    )
}

const T0: Time = Time(1_800_000_000_000);

#[test]
fn the_suspicion_timeout_shrinks_from_max_to_min_as_witnesses_accumulate() {
    let s = Settings::default();
    assert_eq!(lifeguard_timeout(&s, 3, 1), s.suspicion_max);
    let two = lifeguard_timeout(&s, 3, 2);
    assert!(two < s.suspicion_max && two > s.suspicion_min, "{two:?}");
    assert_eq!(lifeguard_timeout(&s, 3, 3), s.suspicion_min);
    assert_eq!(lifeguard_timeout(&s, 3, 9), s.suspicion_min);
    // Where only two witnesses can exist, two is everything we can expect.
    assert_eq!(lifeguard_timeout(&s, 2, 2), s.suspicion_min);
    assert_eq!(lifeguard_timeout(&s, 1, 1), s.suspicion_min);
}

#[test]
fn protocol_keys_empty_keys_and_oversized_entries_are_refused() {
    let mut c = core("a", 1);
    assert_eq!(c.set(T0, "", Some("x".into())), Err(KvError::EmptyKey));
    assert!(matches!(
        c.set(T0, "sus.b", Some("1:2".into())),
        Err(KvError::Reserved(_))
    ));
    assert!(matches!(
        c.set(T0, "left", Some("1".into())),
        Err(KvError::Reserved(_))
    ));
    assert!(matches!(
        c.set(T0, "app.big", Some("x".repeat(MAX_ENTRY_LEN))),
        Err(KvError::TooLarge { .. })
    ));
    assert!(c.set(T0, "app.ok", Some("x".into())).is_ok());
    assert_eq!(c.value(&NodeName::from("a"), "app.ok"), Some("x"));
}

#[test]
fn a_write_is_an_event_and_an_unchanged_write_is_not() {
    let mut c = core("a", 1);
    let out = c.set(T0, "app.k", Some("1".into())).unwrap();
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Event(ClusterEvent::StateChanged { .. })))
    );
    assert!(c.set(T0, "app.k", Some("1".into())).unwrap().is_empty());
}

#[test]
fn garbage_is_counted_and_answered_with_nothing() {
    let mut c = core("a", 1);
    c.handle(T0, Input::Tick);
    for bytes in [
        b"GET / HTTP/1.1".to_vec(),
        b"NBW\x01\xff\xff".to_vec(),
        vec![0u8; 1500],
    ] {
        let out = c.handle(
            T0,
            Input::Datagram {
                from: addr(9),
                bytes,
            },
        );
        assert!(
            out.iter().all(|o| !matches!(o, Output::Send { .. })),
            "{out:?}"
        );
    }
    let st = c.stats();
    assert_eq!(
        (
            st.dropped_foreign,
            st.dropped_malformed,
            st.dropped_oversized
        ),
        (1, 1, 1)
    );
}

#[test]
fn a_seed_refuses_a_joiner_with_its_own_name() {
    let mut c = core("a", 1);
    match c.answer_join(T0, &NodeName::from("a"), Incarnation(1), addr(2)) {
        Frame::JoinRejected { reason } => assert!(reason.contains("taken"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_seed_gives_a_joiner_the_state_of_every_node() {
    let mut c = core("a", 1);
    c.set(T0, "app.k", Some("v".into())).unwrap();
    match c.answer_join(T0, &NodeName::from("b"), Incarnation(1), addr(2)) {
        Frame::JoinAccepted { members } => {
            assert_eq!(members.len(), 1);
            let keys: Vec<&str> = members[0].entries.iter().map(|e| e.key.as_str()).collect();
            assert_eq!(
                keys,
                vec!["wire", "app.k"],
                "the wire version it speaks, then its data"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_node_that_hears_of_a_later_life_of_itself_refutes_with_a_higher_incarnation() {
    let mut a = core("a", 1);
    a.handle(T0, Input::Tick);
    // b believes a is at incarnation 5 (say, from before a lost its data dir).
    let mut ghost = NodeState::new(Incarnation(5), addr(1));
    ghost.write("x", Some("1".into()));
    let delta = ghost.delta(&NodeName::from("a"), Version(0), 1000);
    let bytes = wire::encode(&Envelope {
        from: NodeName::from("b"),
        incarnation: Incarnation(1),
        beat: Beat::at(T0),
        msg: Message::Ack {
            deltas: vec![delta],
        },
    })
    .unwrap();
    let out = a.handle(
        T0,
        Input::Datagram {
            from: addr(2),
            bytes,
        },
    );
    assert!(
        out.contains(&Output::IncarnationChanged(Incarnation(6))),
        "{out:?}"
    );
    assert_eq!(a.incarnation(), Incarnation(6));
}

#[test]
fn a_single_witness_never_makes_a_node_down() {
    let mut sim = Sim::cluster(11, 6, Settings::default());
    // Node 1 and node 4 cannot reach each other at all; everyone else reaches both.
    sim.partition(&[1], &[4]);
    sim.run_for(Duration::from_secs(60));
    for i in 0..6 {
        assert!(
            sim.down_events(i).is_empty(),
            "n{i} went down: {:?}",
            sim.down_events(i)
        );
    }
}

#[test]
fn with_no_other_live_member_one_witness_is_enough() {
    let mut sim = Sim::cluster(12, 2, Settings::default());
    sim.crash(1);
    let ok = sim.run_until(sim.now + Duration::from_secs(10), |s| {
        s.all_see(1, Status::Down, None)
    });
    assert!(ok, "the lone survivor did not declare its peer down");
}

#[test]
fn down_comes_with_the_witnesses_and_a_last_heard_before_the_crash() {
    let mut sim = Sim::cluster(13, 8, Settings::default());
    sim.run_for(Duration::from_secs(5));
    let crashed_at = sim.now;
    sim.crash(3);
    let ok = sim.run_until(sim.now + Duration::from_secs(10), |s| {
        s.all_see(3, Status::Down, None)
    });
    assert!(ok);
    for (i, n) in sim.nodes.iter().enumerate() {
        for (_, e) in &n.events {
            if let ClusterEvent::NodeDown {
                node,
                witnesses,
                last_heard,
                ..
            } = e
                && node.as_str() == "n3"
            {
                assert!(witnesses.len() >= 2, "n{i}: {witnesses:?}");
                assert!(*last_heard <= crashed_at);
            }
        }
    }
}
