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
                vec!["wire", "unheard", "app.k"],
                "the wire version it speaks, whom it does not hear, then its data"
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

/// A datagram `from` sends to `to_core`, at T0.
fn datagram(c: &mut Core, from: &str, port: u16, msg: Message) -> Vec<Output> {
    let bytes = wire::encode(&Envelope {
        from: NodeName::from(from),
        incarnation: Incarnation(1),
        beat: Beat::at(T0),
        msg,
    })
    .unwrap();
    c.handle(
        T0,
        Input::Datagram {
            from: addr(port),
            bytes,
        },
    )
}

fn answered_b(out: &[Output]) -> bool {
    out.iter().any(|o| {
        matches!(o, Output::Watch { peer, input: watch::Input::Alive(watch::Evidence::Answered) } if peer.as_str() == "b")
    })
}

#[test]
fn a_ping_ack_counts_only_as_the_answer_to_a_probe_actually_sent() {
    let mut a = core("a", 1);
    a.handle(T0, Input::Tick);
    for (name, port) in [("b", 2), ("c", 3)] {
        let mut state = NodeState::new(Incarnation(1), addr(port));
        state.write("x", Some("1".into()));
        let delta = state.delta(&NodeName::from(name), Version(0), 1000);
        datagram(
            &mut a,
            name,
            port,
            Message::Ack {
                deltas: vec![delta],
            },
        );
    }
    assert_eq!(a.live_contacts().len(), 2, "b and c are members");
    // An ack to a ping nobody sent: nothing.
    let out = datagram(&mut a, "b", 2, Message::PingAck { seq: 5 });
    assert!(!answered_b(&out), "{out:?}");
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::ProbeAnswered { .. })),
        "{out:?}"
    );
    // An ack numbered as a watcher's probe goes to the watcher with its number, which
    // takes it only if it sent that probe (`watch::Prober::sent`).
    let seq = 5 | watch::probe::WATCHER_SEQ;
    let out = datagram(&mut a, "b", 2, Message::PingAck { seq });
    assert!(!answered_b(&out), "{out:?}");
    assert!(
        out.contains(&Output::ProbeAnswered {
            peer: NodeName::from("b"),
            seq
        }),
        "{out:?}"
    );
    // A ping relayed for c: b's ack is answered to c, and is an answer here too.
    let out = datagram(
        &mut a,
        "c",
        3,
        Message::PingReq {
            seq: 77,
            target: NodeName::from("b"),
            target_addr: addr(2),
        },
    );
    let relayed = out
        .iter()
        .find_map(|o| match o {
            Output::Send { to, name, bytes } if *to == addr(2) && name.as_str() == "b" => {
                match wire::decode(bytes).map(|e| e.msg) {
                    Ok(Message::Ping { seq }) => Some(seq),
                    _ => None,
                }
            }
            _ => None,
        })
        .expect("a pings b for c, sealed for b by name");
    // The same number from someone other than the target is no answer.
    let out = datagram(&mut a, "c", 3, Message::PingAck { seq: relayed });
    assert!(
        !out.iter().any(|o| matches!(o, Output::Send { .. })),
        "{out:?}"
    );
    let out = datagram(&mut a, "b", 2, Message::PingAck { seq: relayed });
    assert!(answered_b(&out), "{out:?}");
    let to_c = out.iter().find_map(|o| match o {
        Output::Send { to, name, bytes } if *to == addr(3) && name.as_str() == "c" => {
            wire::decode(bytes).ok().map(|e| e.msg)
        }
        _ => None,
    });
    assert!(
        matches!(to_c, Some(Message::IndirectAck { seq: 77, .. })),
        "{to_c:?}"
    );
    // Replayed: the relay is done, so nothing again.
    let out = datagram(&mut a, "b", 2, Message::PingAck { seq: relayed });
    assert!(
        !answered_b(&out) && !out.iter().any(|o| matches!(o, Output::Send { .. })),
        "{out:?}"
    );
}

#[test]
fn a_lone_node_joins_through_a_discovered_member_and_never_through_itself() {
    let mut c = core("a", 1);
    c.handle(T0, Input::Tick);
    let out = c.handle(T0, Input::Discovered { seed: addr(2) });
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Join { seed, .. } if *seed == addr(2))),
        "{out:?}"
    );
    // Its own address is never a seed.
    let mut c = core("a", 1);
    c.handle(T0, Input::Tick);
    let out = c.handle(T0, Input::Discovered { seed: addr(1) });
    assert!(
        !out.iter().any(|o| matches!(o, Output::Join { .. })),
        "{out:?}"
    );
}

/// A tick at any time before the core's next deadline has nothing to do.
fn idle_until_due(c: &mut Core, now: Time) {
    let due = c.next_deadline();
    assert!(due > now, "due {due:?} is not after {now:?}");
    let out = c.handle(now, Input::Tick);
    assert!(out.is_empty(), "a tick before the deadline did {out:?}");
    assert_eq!(c.next_deadline(), due);
}

#[test]
fn a_core_ticked_only_at_its_deadlines_has_nothing_to_do_in_between_and_urgent_news_is_due_at_once()
{
    let mut sim = Sim::cluster(21, 5, Settings::default());
    let now = sim.now;
    let interval = Settings::default().interval;
    let c = &mut sim.nodes[0].core;
    idle_until_due(c, now);
    // A round is never further away than its interval.
    assert!(
        c.next_deadline() <= now + interval.mul_f64(1.1),
        "{:?}",
        c.next_deadline()
    );
    // At the deadline something is done, and the next one is later.
    let due = c.next_deadline();
    c.handle(due, Input::Tick);
    assert!(c.next_deadline() > due);
    // A suspicion of our own is urgent news: due at once, not at the next round.
    let later = Time(c.next_deadline().0 - 1);
    let peer = NodeName::from("n3");
    c.handle(
        later,
        Input::Verdict {
            peer,
            verdict: watch::Verdict::Suspect,
        },
    );
    assert!(c.next_deadline() <= later, "{:?}", c.next_deadline());
}

#[test]
fn a_suspicion_timeout_is_a_deadline_and_the_node_is_down_when_it_runs_out() {
    let mut sim = Sim::cluster(22, 6, Settings::default());
    sim.crash(5);
    let suspected = sim.run_until(sim.now + Duration::from_secs(10), |s| {
        s.nodes[0].core.status(&NodeName::from("n5")) == Some(Status::Suspect)
            && s.nodes[0].core.witnesses(&NodeName::from("n5")).len() >= 2
    });
    assert!(suspected, "n0 never had two witnesses against n5");
    let now = sim.now;
    let c = &mut sim.nodes[0].core;
    let due = c.next_deadline();
    assert!(
        due <= now + Settings::default().suspicion_max,
        "the verdict is not a deadline: {due:?}"
    );
    // Ticks before it leave n5 suspect; the ticks at the deadlines make it down.
    let mut at = now;
    for _ in 0..1000 {
        if c.status(&NodeName::from("n5")) != Some(Status::Suspect) {
            break;
        }
        assert!(at <= now + Settings::default().suspicion_max, "never down");
        at = c.next_deadline().max(at);
        c.handle(at, Input::Tick);
    }
    assert_eq!(c.status(&NodeName::from("n5")), Some(Status::Down));
}

#[test]
fn the_lean_profile_gossips_with_one_member_every_two_seconds() {
    use crate::config::Profile;
    let default = Settings::profile(Profile::Default, Profile::Default.interval());
    let lean = Settings::profile(Profile::Lean, Profile::Lean.interval());
    assert_eq!(
        (default.interval, default.fanout, default.digest_budget),
        (Duration::from_secs(1), 2, 120)
    );
    assert_eq!(
        (lean.interval, lean.fanout, lean.digest_budget),
        (Duration::from_secs(2), 1, 120)
    );
    assert_eq!(lean.watch.phi_threshold, default.watch.phi_threshold);
    assert_eq!(lean.watch.first_interval, Duration::from_secs(2));
}

#[test]
fn a_suspicion_the_peer_refutes_is_a_misjudgement_and_one_that_ended_in_a_down_is_not() {
    let mut sim = Sim::cluster(14, 6, Settings::default());
    sim.run_for(Duration::from_secs(5));
    // Node 1 is cut off for a moment: it suspects the others (one witness each, so none is
    // down) and they refute it once it hears them again.
    sim.partition(&[1], &[0, 2, 3, 4, 5]);
    sim.partition(&[0, 2, 3, 4, 5], &[1]);
    sim.run_for(Duration::from_secs(2));
    sim.heal();
    sim.run_for(Duration::from_secs(20));
    assert!(!sim.nodes[1].misjudged.is_empty(), "n1 misjudged nobody");
    for i in [0, 2, 3, 4, 5] {
        // The others saw n1 down (two witnesses and more): its refutation is a new life after
        // a down, not a misjudgement of theirs.
        let saw_down = sim.down_events(1).iter().any(|(by, ..)| *by == i);
        let misjudged = sim.nodes[i].misjudged.iter().any(|p| p.as_str() == "n1");
        assert!(
            saw_down && !misjudged,
            "n{i}: down {saw_down}, misjudged {misjudged}"
        );
    }
}

#[test]
fn a_cleared_suspicion_is_a_misjudgement_and_a_new_life_after_a_down_is_not() {
    let mut sim = Sim::cluster(15, 4, Settings::default());
    sim.run_for(Duration::from_secs(5));
    sim.crash(2);
    let ok = sim.run_until(sim.now + Duration::from_secs(10), |s| {
        s.all_see(2, Status::Down, None)
    });
    assert!(ok, "n2 was not seen down");
    sim.restart(2, 0);
    sim.run_for(Duration::from_secs(10));
    for i in [0, 1, 3] {
        assert!(
            sim.nodes[i].misjudged.is_empty(),
            "n{i}: {:?}",
            sim.nodes[i].misjudged
        );
    }
    // A watcher's own Clear of a suspicion it raised.
    let peer = sim.nodes[1].name.clone();
    let now = sim.now;
    let out = sim.nodes[0].core.handle(
        now,
        Input::Verdict {
            peer: peer.clone(),
            verdict: watch::Verdict::Suspect,
        },
    );
    assert!(!out.contains(&Output::Misjudged(peer.clone())));
    let out = sim.nodes[0].core.handle(
        now,
        Input::Verdict {
            peer: peer.clone(),
            verdict: watch::Verdict::Clear,
        },
    );
    assert!(out.contains(&Output::Misjudged(peer)), "{out:?}");
}
