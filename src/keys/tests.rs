//! Every time-carrying value another node can gossip: its codec refuses a time no formatter
//! can write, and whatever gets past the codecs (or is read without [`check`]) never panics a
//! reader or a JSON renderer.

use super::*;
use crate::gossip::{MemberView, Status};
use proptest::prelude::*;

/// The key and value of each time-carrying kind of entry, with `ms` as its time.
fn timed_entries(ms: u64) -> Vec<(String, String)> {
    vec![
        (
            format!("{SILENCE_PREFIX}n1"),
            format!(r#"{{"until":{ms},"reason":"r"}}"#),
        ),
        (
            format!("{APP_PREFIX}k"),
            format!(r#"{{"v":"3","t":1000,"x":{ms}}}"#),
        ),
        (format!("{APP_PREFIX}t"), format!(r#"{{"v":"3","t":{ms}}}"#)),
        (
            format!("{COMMAND_PREFIX}n2-1"),
            format!(r#"{{"to":"n1","service":"s","action":"stop","at":{ms}}}"#),
        ),
        (
            format!("{RESULT_PREFIX}n1-1"),
            format!(r#"{{"ok":true,"message":"m","at":{ms}}}"#),
        ),
        (
            format!("{ALERT_PREFIX}node_down:n1:1"),
            format!(r#"{{"st":"sent","at":{ms},"summary":{{"summary":"s"}}}}"#),
        ),
        (
            format!("{ALERT_PREFIX}node_down:n2:1"),
            format!(
                r#"{{"st":"waiting","at":1000,"inc":{{"kind":"node_down","node":"n2","since":{ms},"summary":"s"}}}}"#
            ),
        ),
        (
            format!("{SERVICE_PREFIX}db"),
            format!(r#"{{"tree":"t","state":"failed","restarts":1,"health":"ok","since":{ms}}}"#),
        ),
        (format!("{TEST_PREFIX}{ms}"), "1".to_string()),
        (format!("{SUSPECT_PREFIX}n1"), format!("1:{ms}")),
        (BOOT_KEY.to_string(), ms.div_ceil(1000).to_string()),
    ]
}

/// The operator the readers below trust, so a silence reaches the renderers.
static OPERATOR: std::sync::LazyLock<crate::secure::operator::OperatorKey> =
    std::sync::LazyLock::new(crate::secure::operator::OperatorKey::generate);

fn trust() -> crate::secure::directive::Trust {
    crate::secure::directive::Trust {
        cluster: "nbwatch".into(),
        operators: vec![OPERATOR.id()],
    }
}

/// `entries` from `issuer`, with its silence sealed by [`OPERATOR`]: an unsealed silence is
/// never read past the seal check, and the readers should see the far-future time.
fn sealed(issuer: &str, entries: Vec<(String, String)>) -> Vec<(String, String)> {
    use crate::alert::incident::Silence;
    entries
        .into_iter()
        .map(
            |(key, value)| match crate::keys::alert::SilenceValue::parse(&value) {
                Ok(v) if key.starts_with(SILENCE_PREFIX) => {
                    let mut silence = Silence {
                        target: key[SILENCE_PREFIX.len()..].to_string(),
                        by: issuer.into(),
                        until: v.until,
                        reason: v.reason,
                        seal: None,
                    };
                    let content = silence.content();
                    let seal = OPERATOR.seal(&silence.directive("nbwatch", &key, &content), 1);
                    silence.seal = Some(seal);
                    (key, silence.value())
                }
                _ => (key, value),
            },
        )
        .collect()
}

fn view(name: &str, kv: Vec<(String, String)>) -> MemberView {
    crate::control::test_view(name, Status::Alive, kv)
}

#[test]
fn a_silence_set_on_a_host_whose_clock_is_an_hour_ahead_ends_by_the_readers_clock() {
    const HOUR: u64 = 3_600_000;
    let ends = 1_795_000_000_000 + HOUR;
    let entries = sealed(
        "n2",
        vec![(
            format!("{SILENCE_PREFIX}n1"),
            format!(r#"{{"until":{ends},"reason":"r"}}"#),
        )],
    );
    let mut issuer = view("n2", entries);
    issuer.clock_offset = Some(HOUR as i64);
    let read = crate::alert::incident::silences(&[issuer], &trust());
    // Its seal still holds (it covers the time as written) and it ends when it was meant to,
    // on this host's clock.
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].until, Time(1_795_000_000_000));
}

#[test]
fn a_far_future_time_in_any_codec_is_refused_and_a_near_one_passes() {
    let far = Time::MAX.0 + 1;
    for (key, value) in timed_entries(far) {
        let e = check(&key, &value).expect_err(&key);
        assert!(
            matches!(e, ValueError::Time { .. }) && e.to_string().contains("9999"),
            "{key}: {e}"
        );
    }
    for (key, value) in timed_entries(1_795_000_000_000) {
        assert_eq!(check(&key, &value), Ok(()), "{key} = {value}");
    }
    // What does not parse passes (a newer shape); readers skip it as before.
    assert_eq!(check("silence.n1", "not json"), Ok(()));
    assert_eq!(check("app.k", r#"{"v":1}"#), Ok(()));
}

proptest! {
    #[test]
    fn any_gossiped_time_is_refused_past_the_bound_and_never_panics_a_reader(
        ms in prop_oneof![any::<u64>(), 0..=Time::MAX.0, Time::MAX.0 - 5..=Time::MAX.0 + 5],
        now in 0..=Time::MAX.0,
        offset in prop_oneof![Just(None), any::<i64>().prop_map(Some)],
    ) {
        let entries = timed_entries(ms);
        for (key, value) in &entries {
            let refused = check(key, value).is_err();
            // The boot time is whole seconds: its bound is the last whole second.
            let bound = if key == BOOT_KEY { Time::MAX.0 - 999 } else { Time::MAX.0 };
            prop_assert_eq!(refused, ms > bound, "{} = {}", key, value);
        }
        // Readers and renderers of every one, unchecked, at any `now`.
        let mut views = vec![view("n2", sealed("n2", entries))];
        // Its times are read on our clock, whatever it says the offset of its clock is.
        views[0].clock_offset = offset;
        let now = Time(now);
        let _ = crate::api::json::silences(&views, &trust(), now);
        let _ = crate::api::json::alerts(&views);
        let _ = crate::api::json::open_incidents(&views, now);
        let _ = crate::api::json::members(&views, None, now);
        let _ = crate::api::json::cluster_services(&views, &"n1".into(), &[]);
        for e in crate::control::appdata::entries(&views, "", now) {
            let _ = (e.at.to_rfc3339(), e.expires.map(Time::to_rfc3339));
        }
        let _ = crate::control::appdata::expired(&views[0], now);
        let _ = crate::control::remote::old_answers(&views[0], now);
        let _ = crate::control::remote::old_commands(&views[0], now);
        let read = crate::alert::incident::silences(&views, &trust());
        // Its codec refuses a time past the bound, so that silence is skipped; the rest is read.
        prop_assert_eq!(read.len(), usize::from(ms <= Time::MAX.0), "the sealed silence");
        for s in read {
            let _ = s.until.to_rfc3339();
        }
    }

    #[test]
    fn any_key_and_value_can_be_checked(key in any::<String>(), value in any::<String>()) {
        let _ = check(&key, &value);
    }
}

#[test]
fn a_held_incident_travels_whole_and_an_entry_that_holds_nothing_is_refused() {
    use alert::{AlertEntry, Held, Stage};
    let held = Held {
        kind: "node_down".into(),
        node: "n3".into(),
        service: None,
        since: 1_700_000_000_000,
        observers: (0..20).map(|i| format!("n{i}")).collect(),
        summary: "é".repeat(400),
    }
    .bounded();
    assert_eq!(held.observers.len(), Held::MAX_OBSERVERS);
    assert!(held.summary.len() <= Held::MAX_SUMMARY + '…'.len_utf8());
    let entry = AlertEntry {
        stage: Stage::Failed,
        at: Time(5),
        sinks: vec![],
        summary: None,
        held: Some(held),
        since: None,
    };
    let value = entry.encode();
    assert!(format!("{ALERT_PREFIX}node_down:n3:1{value}").len() <= MAX_ENTRY_LEN);
    assert_eq!(AlertEntry::parse(&value), Ok(entry));
    assert!(AlertEntry::parse(r#"{"st":"waiting","at":5}"#).is_err());
    // A sent entry of a firing incident carries when the problem began.
    let sent = AlertEntry {
        stage: Stage::Sent,
        at: Time(9_000),
        sinks: vec![],
        summary: Some("a stopped".into()),
        held: None,
        since: Some(Time(4_000)),
    };
    assert_eq!(AlertEntry::parse(&sent.encode()), Ok(sent));
    assert!(AlertEntry::parse(r#"{"st":"sent","at":5,"sn":"x"}"#).is_err());
    assert!(Stage::Waiting < Stage::Claim && Stage::Failed < Stage::Sent);
}
