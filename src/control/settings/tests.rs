use super::*;
use crate::control::test_view;
use crate::gossip::Status;
use crate::secure::operator::OperatorKey;

const GOOD: &str = "[alerts]\nrepeat = \"1h\"\n";

fn me() -> NodeName {
    NodeName::from("n1")
}

fn trust(ops: &[&OperatorKey]) -> Trust {
    Trust {
        cluster: "c".into(),
        operators: ops.iter().map(|k| k.id()).collect(),
    }
}

/// A member whose state publishes `doc`.
fn publishing(name: &str, doc: &Published) -> MemberView {
    let (entries, _) = doc.entries(0);
    test_view(name, Status::Alive, entries)
}

fn doc(ms: u64, by: &str, text: &str) -> Published {
    Published {
        version: Version {
            ms,
            n: 0,
            by: NodeName::from(by),
        },
        at: ms,
        text: text.into(),
        seal: None,
    }
}

/// `key` signing as `issuer` would through its authority.
fn signer<'k>(
    key: &'k OperatorKey,
    issuer: &'k str,
) -> impl Fn(&str) -> Result<Seal, SealError> + 'k {
    move |content| {
        let directive = Directive {
            cluster: "c",
            issuer,
            key: KEY,
            content,
        };
        Ok(key.seal(&directive, 1))
    }
}

#[test]
fn the_newest_document_in_anyones_state_is_adopted_once() {
    let mut adopter = Adopter::new(None);
    let view = [
        publishing("n2", &doc(1_000, "n2", GOOD)),
        publishing("n3", &doc(2_000, "n3", "[alerts]\nflap_threshold = 7\n")),
        test_view("n4", Status::Alive, []),
    ];
    let step = adopter.step(&view, &trust(&[]));
    let adopted = step.adopt.expect("the newest");
    assert_eq!(adopted.doc.version.by, NodeName::from("n3"));
    assert_eq!(adopted.settings.alerts.flap_threshold, Some(7));
    assert!(step.refused.is_empty());
    // Seen again, or an older one: nothing to do.
    assert!(adopter.step(&view, &trust(&[])).adopt.is_none());
    assert!(adopter.step(&view[..1], &trust(&[])).adopt.is_none());
}

#[test]
fn a_bad_or_forged_document_is_refused_once_and_an_older_good_one_still_applies() {
    let op = OperatorKey::generate();
    let stranger = OperatorKey::generate();
    let mut forged = doc(3_000, "n3", GOOD);
    forged.seal = Some(
        signer(&stranger, "n3")(&Published::sealed_content(&forged.version, GOOD)).expect("sealed"),
    );
    let mut moved = doc(2_500, "n5", GOOD);
    // A seal made for another version does not cover this one.
    moved.seal = Some(
        signer(&op, "n5")(&Published::sealed_content(
            &doc(1, "n5", GOOD).version,
            GOOD,
        ))
        .expect("sealed"),
    );
    let view = [
        publishing("n2", &doc(1_000, "n2", GOOD)),
        publishing("n3", &forged),
        publishing("n4", &doc(2_000, "n4", "[gossip]\ninterval = \"1s\"\n")),
        publishing("n5", &moved),
    ];
    let mut adopter = Adopter::new(None);
    let step = adopter.step(&view, &trust(&[&op]));
    let refused: Vec<String> = step
        .refused
        .iter()
        .map(|(v, _, why)| format!("{v}: {why}"))
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(refused[0].contains("does not trust"), "{refused:?}");
    assert!(refused[1].contains("does not verify"), "{refused:?}");
    assert!(
        refused[2].contains("[gossip] is each host's own"),
        "{refused:?}"
    );
    assert_eq!(
        step.adopt.expect("the older good one").doc.version.ms,
        1_000
    );
    // Each refusal is said once.
    assert!(adopter.step(&view, &trust(&[&op])).refused.is_empty());
}

#[test]
fn a_command_line_needs_a_trusted_signature_and_a_name_does_not() {
    let op = OperatorKey::generate();
    let line = "[[alerts.sinks]]\ntype = \"exec\"\ncommand = [\"/bin/page\"]\n";
    let named = "[[alerts.sinks]]\ntype = \"exec\"\ncommand_name = \"page\"\n";
    let adopter = Adopter::new(None);
    let t = trust(&[&op]);
    // Without a key: refused before it spreads, with the way out.
    let err = adopter
        .prepare(line, &me(), 5, &t, None)
        .expect_err("unsigned");
    assert!(
        err.to_string().contains("exec sink 1 gives a command line"),
        "{err}"
    );
    assert!(adopter.prepare(named, &me(), 5, &t, None).is_ok());
    // Signed by a trusted key: applied, and known to be signed.
    let sign = signer(&op, "n1");
    let signed = adopter
        .prepare(line, &me(), 5, &t, Some(&sign))
        .expect("signed");
    assert_eq!(signed.signed_by, Some(op.id()));
    let mut other = Adopter::new(None);
    let view = [publishing("n1", &signed.doc)];
    assert!(other.step(&view, &t).adopt.is_some());
    // A host that does not trust that key refuses it; one whose seal was stripped too.
    let mut wary = Adopter::new(None);
    let step = wary.step(&view, &trust(&[]));
    assert!(step.adopt.is_none());
    assert!(matches!(
        step.refused[0].2,
        Refused::Seal(Refusal::NotTrusted(_))
    ));
    let mut stripped = signed.doc.clone();
    stripped.seal = None;
    let step = Adopter::new(None).step(&[publishing("n1", &stripped)], &t);
    assert!(matches!(step.refused[0].2, Refused::CommandLines(_)));
}

#[test]
fn a_push_goes_past_every_version_seen_even_from_a_clock_ahead() {
    let mut adopter = Adopter::new(None);
    // Another host whose clock is an hour ahead pushed a document this host refuses.
    let ahead = doc(3_600_000 + 10, "n9", "[nodes]\n");
    let step = adopter.step(&[publishing("n9", &ahead)], &trust(&[]));
    assert_eq!(step.refused.len(), 1);
    let pushed = adopter
        .prepare(GOOD, &me(), 10, &trust(&[]), None)
        .expect("pushed");
    assert!(pushed.doc.version > ahead.version);
    let pushed = adopter.adopt(pushed);
    assert_eq!(pushed.doc.version.ms, ahead.version.ms);
    // The next push from this host is newer still.
    let again = adopter
        .prepare(GOOD, &me(), 11, &trust(&[]), None)
        .expect("pushed");
    assert!(again.doc.version > pushed.doc.version);
    // A bad document is refused with every problem before it spreads.
    let err = adopter
        .prepare(
            "[alerts]\nrepeat = 3\nflap_window = \"x\"\n",
            &me(),
            12,
            &trust(&[]),
            None,
        )
        .expect_err("bad");
    let text = err.to_string();
    assert!(
        text.contains("alerts.repeat") && text.contains("alerts.flap_window"),
        "{text}"
    );
}

#[test]
fn the_applied_document_survives_a_restart_and_a_damaged_file_is_an_error() {
    let dir = tempfile::tempdir().expect("dir");
    assert_eq!(load(dir.path()).expect("none yet"), None);
    let d = doc(1_000, "n2", GOOD);
    save(dir.path(), &d).expect("saved");
    assert_eq!(load(dir.path()).expect("read"), Some(d));
    // Cut short by a crash mid-write of another program, or damaged: an error, not a panic
    // (the actor moves it aside and starts without it).
    let path = dir.path().join(FILE);
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, &text[..text.len() / 2]).expect("cut");
    assert!(load(dir.path()).is_err());
}
