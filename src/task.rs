//! Small pieces every actor shell uses and nothing else: helper tasks that die with their
//! owner ([`AbortOnDrop`]), tickers and alarms, and [`Handle`], the address of a sibling
//! actor that stays valid when that sibling is restarted.
//!
//! Why a handle and not an `ActorRef`: the node restarts a child that dies, and the new child
//! has a new ref. Each actor is given, at spawn, exactly the handles of the actors it sends
//! to; the node rebinds a handle when it respawns that actor, so senders reach the new one
//! without being told. There is no registry of every actor: a handle is typed by one
//! message type and names nothing else.

use crate::types::{Clock, Time};
use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A task that is aborted when this handle is dropped: actors keep their helper tasks (socket
/// readers, tickers, servers) in these, because a panicked or killed actor skips `post_stop`
/// but its state is still dropped.
#[derive(Debug)]
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Casts `msg()` to `actor` at once and then every `period` (a slow receiver delays the next
/// tick instead of bunching them) until the actor is gone or the returned handle is dropped.
/// After the first, the ticks fall on multiples of `period` of `clock`, so the node's tickers
/// and its watchers' wakes (see `watch::Settings::wake_grid`) share instants and the process
/// wakes once for all of them.
pub fn ticker<M: Message>(
    actor: ActorRef<M>,
    clock: Clock,
    period: Duration,
    msg: impl Fn() -> M + Send + 'static,
) -> AbortOnDrop<()> {
    let second = second_tick(clock.now(), period);
    AbortOnDrop(tokio::spawn(async move {
        if actor.cast(msg()).is_err() {
            return;
        }
        let mut interval = tokio::time::interval_at(clock.instant_at(second).into(), period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if actor.cast(msg()).is_err() {
                return;
            }
        }
    }))
}

/// Casts `msg()` to `actor` when `rx` sees a new value, until the actor or the sender is gone
/// or the returned [`OnChange`] is dropped. At most one such message waits in the actor's
/// mailbox: values that come while one waits are read by it (the actor reads the latest value
/// when it handles the message), so an actor slower than the changes never has a backlog of
/// them. The actor calls [`OnChange::seen`] when it handles the message, before it reads.
pub fn on_change<T: Send + Sync + 'static, M: Message>(
    mut rx: tokio::sync::watch::Receiver<T>,
    actor: ActorRef<M>,
    msg: impl Fn() -> M + Send + 'static,
) -> OnChange {
    let waiting = Arc::new(AtomicBool::new(false));
    let flag = waiting.clone();
    let task = AbortOnDrop(tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            if !flag.swap(true, Ordering::AcqRel) && actor.cast(msg()).is_err() {
                return;
            }
        }
    }));
    OnChange {
        waiting,
        _task: task,
    }
}

/// The task of [`on_change`], and whether its message waits in the actor's mailbox.
pub struct OnChange {
    waiting: Arc<AtomicBool>,
    _task: AbortOnDrop<()>,
}

impl OnChange {
    /// The actor is handling the message (or a tick that reads the same value): a change from
    /// now on casts a new one.
    pub fn seen(&self) {
        self.waiting.store(false, Ordering::Release);
    }
}

/// When a ticker started at `now` ticks the second time: on a multiple of `period`, at least
/// half a period after the first tick.
fn second_tick(now: Time, period: Duration) -> Time {
    (now + period / 2).on_grid(period)
}

/// The one timer of an actor that works by deadlines instead of a fixed tick: the actor
/// [`arm`](Alarm::arm)s it with its next deadline after each message it handles, and when that
/// time comes `msg(at)` is cast to it, with the time it was armed for (so the actor can tell
/// how late it runs). Nothing wakes while nothing is due; moving the deadline costs no task.
pub struct Alarm {
    armed: tokio::sync::watch::Sender<Option<Time>>,
    _task: AbortOnDrop<()>,
}

impl Alarm {
    pub fn new<M: Message>(
        actor: ActorRef<M>,
        clock: Clock,
        msg: impl Fn(Time) -> M + Send + 'static,
    ) -> Alarm {
        let (armed, mut deadline) = tokio::sync::watch::channel(None::<Time>);
        let task = tokio::spawn(async move {
            // The deadline last cast: the actor moves it on when it handles it, and until then
            // it is not cast again.
            let mut fired = None;
            loop {
                let at = *deadline.borrow_and_update();
                match at {
                    Some(at) if fired.is_none_or(|f| at > f) => {
                        let sleep = tokio::time::sleep_until(clock.instant_at(at).into());
                        tokio::select! {
                            () = sleep => {
                                if actor.cast(msg(at)).is_err() {
                                    return;
                                }
                                fired = Some(at);
                            }
                            changed = deadline.changed() => if changed.is_err() { return },
                        }
                    }
                    _ => {
                        if deadline.changed().await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Alarm {
            armed,
            _task: AbortOnDrop(task),
        }
    }

    /// Sets the deadline (a time already past: at once).
    pub fn arm(&self, at: Time) {
        self.armed.send_if_modified(|armed| {
            let moved = *armed != Some(at);
            *armed = Some(at);
            moved
        });
    }
}

/// The current ref of one sibling actor, or nothing while it is being restarted. A message
/// sent in that gap is lost, which the protocols tolerate (gossip repeats itself; watchers are
/// resynchronised; a caller gets an error and may retry).
pub struct Handle<M: Message> {
    current: Arc<RwLock<Option<ActorRef<M>>>>,
}

impl<M: Message> Clone for Handle<M> {
    fn clone(&self) -> Self {
        Handle {
            current: self.current.clone(),
        }
    }
}

impl<M: Message> Default for Handle<M> {
    fn default() -> Self {
        Handle {
            current: Arc::default(),
        }
    }
}

impl<M: Message> Handle<M> {
    /// A handle bound to nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds the handle to a (re)spawned actor, or unbinds it with `None`.
    pub fn bind(&self, actor: Option<ActorRef<M>>) {
        // A poisoned lock only means a writer panicked between two plain assignments: the
        // value is still a valid ref (or None), so go on with it.
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = actor;
    }

    /// The actor's current ref, if it is running.
    pub fn get(&self) -> Option<ActorRef<M>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sends without waiting; lost (logged at debug) while the actor is being restarted.
    pub fn cast(&self, msg: M) {
        if let Some(actor) = self.get()
            && actor.cast(msg).is_err()
        {
            tracing::debug!(
                actor = std::any::type_name::<M>(),
                "the actor is gone; message dropped"
            );
        }
    }

    /// Asks and waits at most `timeout`; `None` when the actor is not running or did not
    /// answer in time.
    pub async fn call<T: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<T>) -> M,
        timeout: Option<Duration>,
    ) -> Option<T> {
        let actor = self.get()?;
        match actor.call(msg, timeout).await {
            Ok(CallResult::Success(v)) => Some(v),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ractor::{Actor, ActorProcessingErr};
    use tokio::sync::mpsc;

    /// Passes every alarm it gets to the test.
    struct Recorder;

    impl Actor for Recorder {
        type Msg = Time;
        type State = mpsc::UnboundedSender<Time>;
        type Arguments = mpsc::UnboundedSender<Time>;

        async fn pre_start(
            &self,
            _myself: ActorRef<Time>,
            tx: Self::Arguments,
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok(tx)
        }

        async fn handle(
            &self,
            _myself: ActorRef<Time>,
            at: Time,
            tx: &mut Self::State,
        ) -> Result<(), ActorProcessingErr> {
            let _ = tx.send(at);
            Ok(())
        }
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<Time>) -> Option<Time> {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn an_alarm_fires_once_at_its_latest_deadline_and_again_only_when_moved_on() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (actor, handle) = Actor::spawn(None, Recorder, tx).await.unwrap();
        let clock = Clock::new();
        let alarm = Alarm::new(actor.clone(), clock, |at| at);
        // Moved earlier before it fires: it fires once, at the earlier time, not before it.
        let now = clock.now();
        alarm.arm(now + Duration::from_secs(30));
        alarm.arm(now + Duration::from_millis(40));
        let fired = next(&mut rx).await.expect("the alarm never fired");
        assert_eq!(fired, now + Duration::from_millis(40));
        assert!(clock.now() >= fired);
        // The same deadline again is not a new one.
        alarm.arm(fired);
        assert!(
            tokio::time::timeout(Duration::from_millis(150), rx.recv())
                .await
                .is_err(),
            "fired twice for one deadline"
        );
        // A deadline already past fires at once.
        let past = fired + Duration::from_millis(1);
        alarm.arm(past);
        assert_eq!(next(&mut rx).await, Some(past));
        actor.stop(None);
        handle.await.unwrap();
    }

    #[test]
    fn ticks_after_the_first_fall_on_multiples_of_the_period() {
        let period = Duration::from_millis(200);
        assert_eq!(second_tick(Time(1_000), period), Time(1_200));
        assert_eq!(second_tick(Time(1_099), period), Time(1_200));
        assert_eq!(second_tick(Time(1_100), period), Time(1_200));
        assert_eq!(second_tick(Time(1_101), period), Time(1_400));
    }

    #[tokio::test]
    async fn a_ticker_ticks_at_once_and_then_every_period() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (actor, handle) = Actor::spawn(None, Recorder, tx).await.unwrap();
        let clock = Clock::new();
        let started = clock.now();
        let _ticker = ticker(actor.clone(), clock, Duration::from_millis(20), move || {
            clock.now()
        });
        let mut ticks = Vec::new();
        for _ in 0..4 {
            ticks.push(next(&mut rx).await.expect("no tick"));
        }
        assert!(ticks.windows(2).all(|w| w[1] > w[0]), "{ticks:?}");
        assert!(
            ticks[3] >= second_tick(started, Duration::from_millis(20)) + Duration::from_millis(40)
        );
        actor.stop(None);
        handle.await.unwrap();
    }

    async fn nothing_within(rx: &mut mpsc::UnboundedReceiver<Time>, ms: u64) -> bool {
        tokio::time::timeout(Duration::from_millis(ms), rx.recv())
            .await
            .is_err()
    }

    #[tokio::test]
    async fn a_change_is_cast_once_until_the_actor_has_seen_it() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (actor, handle) = Actor::spawn(None, Recorder, tx).await.unwrap();
        let (values, watched) = tokio::sync::watch::channel(0u64);
        let on_view = on_change(watched, actor.clone(), || Time(7));
        assert!(nothing_within(&mut rx, 100).await, "cast before any change");
        values.send(1).unwrap();
        assert_eq!(next(&mut rx).await, Some(Time(7)));
        // The actor has not handled it yet: a burst of changes casts nothing more (the
        // message that waits reads the latest value).
        for v in 2..100 {
            values.send(v).unwrap();
            tokio::task::yield_now().await;
        }
        assert!(
            nothing_within(&mut rx, 100).await,
            "a second message while one waits"
        );
        // Handled: the next change is cast again, once.
        on_view.seen();
        assert!(nothing_within(&mut rx, 50).await, "cast without a change");
        values.send(100).unwrap();
        assert_eq!(next(&mut rx).await, Some(Time(7)));
        actor.stop(None);
        handle.await.unwrap();
    }
}
