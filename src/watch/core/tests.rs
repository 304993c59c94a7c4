use super::*;

fn t(ms: u64) -> Time {
    Time(1_000_000 + ms)
}

/// The watcher's decisions in order: its probes and its verdicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Ping,
    PingIndirect,
    Suspect,
    Clear,
}

fn verdicts(out: &[Output]) -> Vec<Step> {
    out.iter()
        .filter_map(|o| match o {
            Output::Probe(Probe::Direct) => Some(Step::Ping),
            Output::Probe(Probe::Indirect) => Some(Step::PingIndirect),
            Output::Verdict(Verdict::Suspect) => Some(Step::Suspect),
            Output::Verdict(Verdict::Clear) => Some(Step::Clear),
            Output::WakeAt { .. } => None,
        })
        .collect()
}

/// A watcher with its timers, driven as the daemon drives it: every `WakeAt` is a delayed
/// `Wake` carrying its token, delivered once it is due.
struct Driven {
    w: PeerWatch,
    timers: Vec<(Time, TimerToken)>,
}

impl Driven {
    fn handle(&mut self, now: Time, input: Input) -> Vec<Output> {
        let out = self.w.handle(now, input);
        self.keep(&out);
        out
    }

    fn keep(&mut self, out: &[Output]) {
        for o in out {
            if let Output::WakeAt { at, token } = o {
                self.timers.push((*at, *token));
            }
        }
    }

    /// Delivers every timer due by `now`, oldest first.
    fn wake(&mut self, now: Time) -> Vec<Output> {
        let mut out = Vec::new();
        self.timers.sort_by_key(|(at, _)| *at);
        while let Some(&(at, token)) = self.timers.first()
            && at <= now
        {
            self.timers.remove(0);
            out.extend(self.handle(now, Input::Wake(token)));
        }
        out
    }

    fn phase(&self) -> Phase {
        self.w.phase()
    }
}

/// Feeds regular heartbeats every `every` ms up to `until`, returning the watcher.
fn steady(every: u64, until: u64) -> Driven {
    let mut w = PeerWatch::new(t(0), Settings::default());
    let out = w.start(t(0));
    let mut d = Driven {
        w,
        timers: Vec::new(),
    };
    d.keep(&out);
    let mut now = 0;
    while now + every <= until {
        now += every;
        d.handle(t(now), Input::Alive(Evidence::Relayed));
        // Timers fire as they would in the daemon: the one armed at start is due by now.
        d.wake(t(now));
    }
    d
}

/// Runs the watcher's own timers from `from` until `to` (looking every 10 ms), collecting
/// verdicts.
fn run_timers(w: &mut Driven, from: u64, to: u64) -> Vec<(u64, Step)> {
    let mut seen = Vec::new();
    let mut now = from;
    while now <= to {
        for v in verdicts(&w.wake(t(now))) {
            seen.push((now, v));
        }
        now += 10;
    }
    seen
}

#[test]
fn a_peer_that_keeps_talking_is_never_probed() {
    let mut w = steady(1000, 10_000);
    let seen = run_timers(&mut w, 10_000, 10_900);
    assert!(seen.is_empty(), "{seen:?}");
}

#[test]
fn silence_leads_to_a_direct_ping_then_indirect_probes_then_suspicion() {
    let mut w = steady(1000, 10_000);
    let seen = run_timers(&mut w, 10_000, 20_000);
    let kinds: Vec<_> = seen.iter().map(|(_, v)| *v).collect();
    assert_eq!(kinds, vec![Step::Ping, Step::PingIndirect, Step::Suspect]);
    let (ping_at, _) = seen[0];
    let (ind_at, _) = seen[1];
    let (sus_at, _) = seen[2];
    assert!(ping_at > 11_000, "pinged too early at {ping_at}");
    assert!(ping_at < 12_000, "pinged too late at {ping_at}");
    assert_eq!(ind_at - ping_at, 200);
    assert_eq!(sus_at - ind_at, 350);
}

#[test]
fn an_answer_to_the_probe_ends_it_without_suspicion() {
    let mut w = steady(1000, 10_000);
    let seen = run_timers(&mut w, 10_000, 11_700);
    assert_eq!(
        seen.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
        vec![Step::Ping]
    );
    let out = w.handle(t(11_720), Input::Alive(Evidence::Answered));
    assert!(verdicts(&out).is_empty());
    assert_eq!(w.phase(), Phase::Watching);
}

#[test]
fn a_relayed_heartbeat_does_not_end_a_probe() {
    let mut w = steady(1000, 10_000);
    let _ = run_timers(&mut w, 10_000, 11_700);
    w.handle(t(11_750), Input::Alive(Evidence::Relayed));
    assert!(matches!(
        w.phase(),
        Phase::Direct { .. } | Phase::Indirect { .. }
    ));
}

#[test]
fn an_unanswered_exchange_goes_straight_to_indirect_probes() {
    let mut w = steady(1000, 10_000);
    let out = w.handle(t(10_100), Input::Unanswered);
    assert_eq!(verdicts(&out), vec![Step::PingIndirect]);
    // Whichever timer is armed first, the suspicion comes when the indirect stage times out.
    let seen = run_timers(&mut w, 10_110, 10_600);
    assert_eq!(seen, vec![(10_450, Step::Suspect)]);
}

#[test]
fn a_suspicion_heard_is_verified_only_when_asked() {
    let mut w = steady(1000, 10_000);
    assert!(verdicts(&w.handle(t(10_100), Input::SuspicionHeard { verify: false })).is_empty());
    assert_eq!(
        verdicts(&w.handle(t(10_100), Input::SuspicionHeard { verify: true })),
        vec![Step::PingIndirect]
    );
}

#[test]
fn a_suspected_peer_that_answers_is_cleared() {
    let mut w = steady(1000, 10_000);
    w.handle(t(10_100), Input::Unanswered);
    w.wake(t(10_450));
    assert_eq!(w.phase(), Phase::Suspecting);
    let out = w.handle(t(12_000), Input::Alive(Evidence::Direct));
    assert_eq!(verdicts(&out), vec![Step::Clear]);
    assert_eq!(w.phase(), Phase::Watching);
}

#[test]
fn stale_wakes_are_ignored() {
    let mut w = steady(1000, 10_000);
    // A token never armed, and the token of a timer that already fired, change nothing.
    let out = w.handle(t(10_050), Input::Wake(TimerToken(0)));
    assert!(out.is_empty(), "{out:?}");
    let out = w.handle(t(10_050), Input::Wake(TimerToken(1)));
    assert!(out.is_empty(), "{out:?}");
    // Nor does the armed timer delivered before it is due.
    let (_, armed) = *w.timers.last().expect("a timer is armed");
    let out = w.handle(t(10_050), Input::Wake(armed));
    assert!(verdicts(&out).is_empty(), "{out:?}");
}

#[test]
fn a_new_life_forgets_the_old_suspicion() {
    let mut w = steady(1000, 10_000);
    w.handle(t(10_100), Input::Unanswered);
    w.wake(t(10_450));
    w.handle(t(11_000), Input::Reset);
    assert_eq!(w.phase(), Phase::Watching);
}

#[test]
fn a_late_node_waits_its_patience_times_longer_before_it_suspects_even_mid_probe() {
    // Healthy: the indirect stage started at 10_100 ends in a suspicion at 10_450.
    let mut w = steady(1000, 10_000);
    w.w.set_patience(3);
    w.handle(t(10_100), Input::Unanswered);
    let seen = run_timers(&mut w, 10_110, 11_500);
    assert_eq!(seen, vec![(10_100 + 3 * 350, Step::Suspect)]);
    // The node finds itself late in the middle of a probe: the probe under way waits longer.
    let mut w = steady(1000, 10_000);
    w.handle(t(10_100), Input::Unanswered);
    assert!(run_timers(&mut w, 10_110, 10_300).is_empty());
    w.w.set_patience(2);
    let seen = run_timers(&mut w, 10_310, 11_000);
    assert_eq!(seen, vec![(10_100 + 2 * 350, Step::Suspect)]);
    // And once healthy again, a probe times out as before.
    let mut w = steady(1000, 10_000);
    w.w.set_patience(4);
    w.w.set_patience(1);
    w.handle(t(10_100), Input::Unanswered);
    assert_eq!(
        run_timers(&mut w, 10_110, 10_600),
        vec![(10_450, Step::Suspect)]
    );
}

#[test]
fn a_report_probes_at_once_and_an_answer_ends_it_without_suspicion() {
    let mut w = steady(1000, 10_000);
    let out = w.handle(t(10_050), Input::Reported);
    assert_eq!(verdicts(&out), vec![Step::Ping]);
    // A second report while the probe is under way adds nothing.
    assert!(verdicts(&w.handle(t(10_060), Input::Reported)).is_empty());
    assert!(verdicts(&w.handle(t(10_100), Input::Alive(Evidence::Answered))).is_empty());
    assert_eq!(w.phase(), Phase::Watching);
    let seen = run_timers(&mut w, 10_100, 10_900);
    assert!(seen.is_empty(), "{seen:?}");
}

#[test]
fn a_report_about_a_silent_peer_suspects_it_a_probe_cycle_after_the_report() {
    let mut w = steady(1000, 10_000);
    w.handle(t(10_100), Input::Reported);
    let seen = run_timers(&mut w, 10_100, 11_000);
    // Without the report the first ping would come after 11,000 (the test above).
    assert_eq!(
        seen,
        vec![(10_300, Step::PingIndirect), (10_650, Step::Suspect)]
    );
}

#[test]
fn a_watcher_with_nothing_amiss_wakes_on_the_grid_and_a_probe_keeps_its_exact_deadlines() {
    let mut w = steady(1000, 10_000);
    let grid = Settings::default().wake_grid.as_millis() as u64;
    assert!(
        w.timers.iter().all(|(at, _)| at.0 % grid == 0),
        "{:?}",
        w.timers
    );
    // Silence: the ping starts on the grid, its timeouts run from it to the millisecond.
    let seen = run_timers(&mut w, 10_000, 20_000);
    let (ping_at, _) = seen[0];
    assert_eq!(t(ping_at).0 % grid, 0, "{seen:?}");
    assert_eq!(seen[1].0 - ping_at, 200);
    assert_eq!(seen[2].0 - seen[1].0, 350);
}
