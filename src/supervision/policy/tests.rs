use super::*;
use RestartType::{Permanent, Temporary, Transient};

const T0: Time = Time(1_800_000_000_000);

fn at(ms: u64) -> Time {
    Time(T0.0 + ms)
}

fn policy(strategy: Strategy, children: &[RestartType]) -> Policy {
    Policy {
        strategy,
        intensity: 3,
        period: Duration::from_secs(60),
        children: children.to_vec(),
        backoff: None,
    }
}

fn restart(stop: &[usize], start: &[usize], remove: &[usize]) -> Decision {
    Decision::Restart {
        stop: stop.to_vec(),
        start: start.to_vec(),
        remove: remove.to_vec(),
        after: Duration::ZERO,
    }
}

#[test]
fn each_strategy_restarts_the_children_otp_says_in_the_order_otp_says() {
    use Strategy::*;
    let kinds = [Permanent, Permanent, Permanent, Permanent];
    let table: &[(Strategy, usize, Decision)] = &[
        (OneForOne, 1, restart(&[], &[1], &[])),
        (OneForAll, 1, restart(&[3, 2, 0], &[0, 1, 2, 3], &[])),
        (RestForOne, 1, restart(&[3, 2], &[1, 2, 3], &[])),
        (RestForOne, 3, restart(&[], &[3], &[])),
        (RestForOne, 0, restart(&[3, 2, 1], &[0, 1, 2, 3], &[])),
    ];
    for (strategy, child, expected) in table {
        let p = policy(*strategy, &kinds);
        let (d, _) = p.decide(at(0), *child, Exit::Abnormal, &History::new(4));
        assert_eq!(&d, expected, "{strategy:?}, child {child} exits");
    }
}

#[test]
fn restart_types_decide_whether_an_exit_is_restarted() {
    let table: &[(RestartType, Exit, bool)] = &[
        (Permanent, Exit::Normal, true),
        (Permanent, Exit::Abnormal, true),
        (Transient, Exit::Normal, false),
        (Transient, Exit::Abnormal, true),
        (Temporary, Exit::Normal, false),
        (Temporary, Exit::Abnormal, false),
    ];
    for (kind, exit, restarted) in table {
        let p = policy(Strategy::OneForOne, &[*kind]);
        let (d, h) = p.decide(at(0), 0, *exit, &History::new(1));
        assert_eq!(
            matches!(d, Decision::Restart { .. }),
            *restarted,
            "{kind:?} after {exit:?}"
        );
        assert_eq!(
            h.is_removed(0),
            *kind == Temporary,
            "{kind:?} after {exit:?}"
        );
    }
}

#[test]
fn a_temporary_sibling_caught_in_a_group_restart_is_stopped_and_not_started_again() {
    let p = policy(Strategy::OneForAll, &[Permanent, Temporary, Permanent]);
    let (d, h) = p.decide(at(0), 0, Exit::Abnormal, &History::new(3));
    assert_eq!(d, restart(&[2, 1], &[0, 2], &[1]));
    assert!(h.is_removed(1));
    // Next time it is no longer part of the group.
    let (d, _) = p.decide(at(10), 2, Exit::Abnormal, &h);
    assert_eq!(d, restart(&[0], &[0, 2], &[]));
}

#[test]
fn more_than_intensity_restarts_within_the_period_give_up_and_stop_everyone_in_reverse() {
    let p = policy(Strategy::OneForOne, &[Permanent, Permanent, Permanent]);
    let mut h = History::new(3);
    for i in 0..3 {
        let (d, next) = p.decide(at(i * 1000), 1, Exit::Abnormal, &h);
        assert!(matches!(d, Decision::Restart { .. }), "restart {i}");
        h = next;
    }
    let (d, _) = p.decide(at(3000), 1, Exit::Abnormal, &h);
    assert_eq!(d, Decision::GiveUp { stop: vec![2, 0] });
}

#[test]
fn restarts_older_than_the_period_no_longer_count() {
    let p = policy(Strategy::OneForOne, &[Permanent]);
    let mut h = History::new(1);
    for ms in [0, 10_000, 20_000, 61_000, 72_000, 83_000] {
        let (d, next) = p.decide(at(ms), 0, Exit::Abnormal, &h);
        assert!(matches!(d, Decision::Restart { .. }), "at {ms} ms");
        h = next;
    }
}

#[test]
fn an_intensity_of_zero_gives_up_at_the_first_exit_that_needs_a_restart() {
    let mut p = policy(Strategy::OneForOne, &[Permanent, Transient]);
    p.intensity = 0;
    let (d, _) = p.decide(at(0), 1, Exit::Normal, &History::new(2));
    assert_eq!(d, Decision::Leave { remove: vec![] });
    let (d, _) = p.decide(at(0), 1, Exit::Abnormal, &History::new(2));
    assert_eq!(d, Decision::GiveUp { stop: vec![0] });
}

#[test]
fn backoff_doubles_up_to_its_cap_and_resets_after_a_stable_run() {
    let mut p = policy(Strategy::OneForOne, &[Permanent]);
    p.intensity = 100;
    p.backoff = Some(Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(500),
        reset_after: Duration::from_secs(10),
    });
    let mut h = History::new(1).started(0, at(0));
    let mut delays = Vec::new();
    let mut now = 0;
    for _ in 0..6 {
        now += 1000;
        let (d, next) = p.decide(at(now), 0, Exit::Abnormal, &h);
        let Decision::Restart { after, .. } = d else {
            panic!("{d:?}")
        };
        delays.push(after.as_millis() as u64);
        h = next.started(0, at(now));
    }
    assert_eq!(delays, [0, 100, 200, 400, 500, 500]);
    // It then runs for a minute: the next restart is immediate again.
    let (d, _) = p.decide(at(now + 60_000), 0, Exit::Abnormal, &h);
    let Decision::Restart { after, .. } = d else {
        panic!("{d:?}")
    };
    assert_eq!(after, Duration::ZERO);
}

#[test]
fn without_backoff_restarts_are_immediate() {
    let p = policy(Strategy::OneForOne, &[Permanent]);
    let mut h = History::new(1);
    for ms in [0, 10, 20] {
        let (d, next) = p.decide(at(ms), 0, Exit::Abnormal, &h);
        let Decision::Restart { after, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(after, Duration::ZERO);
        h = next;
    }
}

#[test]
fn a_history_made_for_fewer_children_is_not_a_panic() {
    let p = policy(Strategy::OneForAll, &[Permanent, Permanent, Temporary]);
    let (d, _) = p.decide(at(0), 2, Exit::Normal, &History::default());
    assert_eq!(d, Decision::Leave { remove: vec![2] });
}

#[test]
fn an_unknown_child_changes_nothing() {
    let p = policy(Strategy::OneForAll, &[Permanent]);
    let h = History::new(1);
    let (d, after) = p.decide(at(0), 7, Exit::Abnormal, &h);
    assert_eq!(d, Decision::Leave { remove: vec![] });
    assert_eq!(after, h);
}

#[test]
fn intensity_allows_restarts_within_it_and_refuses_the_next_one() {
    let t0 = Time(1_000_000);
    let s = |n: u64| t0 + Duration::from_secs(n);
    let mut budget = Intensity::new(3, Duration::from_secs(10));
    for i in 0..3 {
        assert!(budget.allow(s(i)), "restart {i}");
    }
    assert!(!budget.allow(s(5)));
}

#[test]
fn intensity_forgets_restarts_older_than_its_period() {
    let t0 = Time(1_000_000);
    let s = |n: u64| t0 + Duration::from_secs(n);
    let mut budget = Intensity::new(2, Duration::from_secs(10));
    assert!(budget.allow(t0));
    assert!(budget.allow(s(1)));
    assert!(!budget.allow(s(9)));
    assert!(budget.allow(s(10)));
    assert!(!budget.allow(s(10)));
    assert!(budget.allow(s(30)));
}
