//! Service commands across hosts: `nbwatch restart mythbox:mythbackend` from any node.
//!
//! The issuing node writes the command as `cmd.<id>` in its own gossiped state, addressed to
//! the target node. The target's control actor sees it in its view, runs it once through its
//! own supervisor (only on a service its trees declare: there is no remote execution of
//! anything else) and answers with `res.<id>` in its state; the issuer waits for that answer
//! and then deletes the command. A command is run at most once: the target remembers the ids
//! it started, and its answer, in its own state, says it was done after a restart of its
//! control actor. A command older than [`MAX_AGE`] (an issuer that died while waiting, a
//! target that comes back much later) is not run.

use crate::gossip::MemberView;
use crate::keys::control::{Answer, RemoteCommand};
use crate::keys::{COMMAND_PREFIX, Command, RESULT_PREFIX, with_prefix};
use crate::types::Time;
use std::time::Duration;

/// A command not run within this long of being issued is dropped.
pub const MAX_AGE: Duration = Duration::from_secs(60);
/// An answer stays in the target's state this long (the issuer has stopped waiting by then).
pub const RESULT_KEEP: Duration = Duration::from_secs(120);

/// A command this node should run: its id, who issued it and what, and its seal (checked
/// by the caller against what this node trusts: `secure::directive`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub id: String,
    pub from: String,
    pub service: String,
    pub command: Command,
    /// What the seal covers besides the gossip key (`cmd.<id>`).
    pub content: String,
    pub seal: Option<crate::secure::operator::Seal>,
}

pub fn parse_action(action: &str) -> Option<Command> {
    match action {
        "start" => Some(Command::Start),
        "stop" => Some(Command::Stop),
        "restart" => Some(Command::Restart),
        _ => None,
    }
}

/// A fresh command id: the issuer's name keeps ids of different issuers apart; the wall
/// clock's nanoseconds and a counter keep those of one issuer apart, also across restarts.
pub fn new_id(issuer: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{issuer}-{:x}", nanos ^ n.rotate_right(16))
}

/// The gossip key and value of a command.
pub fn encode(id: &str, cmd: &RemoteCommand) -> (String, String) {
    (
        format!("{COMMAND_PREFIX}{id}"),
        serde_json::to_string(cmd).expect("strings and a number serialize"),
    )
}

pub fn encode_answer(id: &str, answer: &Answer) -> (String, String) {
    (
        format!("{RESULT_PREFIX}{id}"),
        serde_json::to_string(answer).expect("a bool, a string and a number serialize"),
    )
}

/// The answer to command `id` in `target`'s state, if there is one yet.
pub fn answer_of(target: &MemberView, id: &str) -> Option<Answer> {
    let raw = target.kv.get(&format!("{RESULT_PREFIX}{id}"))?;
    Answer::parse(raw).ok()
}

/// The commands addressed to `me` in the live members' states that it has not answered and
/// does not run already (`running`). Whether one is fresh is not judged by comparing clocks
/// (hosts may be an hour apart) but by its issuer's sequence number (`secure::directive`);
/// an issuer deletes its command once answered, or after 2 × [`MAX_AGE`] by its own clock.
pub fn pending(
    views: &[MemberView],
    me: &MemberView,
    running: &dyn Fn(&str) -> bool,
) -> Vec<Pending> {
    let mut out = Vec::new();
    for view in views.iter().filter(|v| crate::election::is_live(v)) {
        for (id, raw) in with_prefix(&view.kv, COMMAND_PREFIX) {
            let Ok(cmd) = RemoteCommand::parse(raw) else {
                continue;
            };
            if cmd.to != me.name.as_str()
                || me.kv.contains_key(&format!("{RESULT_PREFIX}{id}"))
                || running(id)
            {
                continue;
            }
            let Some(command) = parse_action(&cmd.action) else {
                continue;
            };
            out.push(Pending {
                id: id.to_string(),
                from: view.name.to_string(),
                content: cmd.content(),
                service: cmd.service,
                command,
                seal: cmd.seal,
            });
        }
    }
    out
}

/// This node's answers older than [`RESULT_KEEP`] by `now` (to delete).
pub fn old_answers(me: &MemberView, now: Time) -> Vec<String> {
    with_prefix(&me.kv, RESULT_PREFIX)
        .filter(|(_, raw)| {
            Answer::parse(raw)
                .map(|a| now.as_millis().saturating_sub(a.at) > RESULT_KEEP.as_millis() as u64)
                .unwrap_or(true)
        })
        .map(|(id, _)| format!("{RESULT_PREFIX}{id}"))
        .collect()
}

/// This node's commands older than [`MAX_AGE`] by `now` whose issuer stopped waiting (to
/// delete: an API call that was cut off never deleted its command).
pub fn old_commands(me: &MemberView, now: Time) -> Vec<String> {
    with_prefix(&me.kv, COMMAND_PREFIX)
        .filter(|(_, raw)| {
            RemoteCommand::parse(raw)
                .map(|c| now.as_millis().saturating_sub(c.at) > 2 * MAX_AGE.as_millis() as u64)
                .unwrap_or(true)
        })
        .map(|(id, _)| format!("{COMMAND_PREFIX}{id}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::Status;

    fn view(name: &str, status: Status, kv: Vec<(String, String)>) -> MemberView {
        crate::control::test_view(name, status, kv)
    }

    fn cmd(to: &str, action: &str, at: u64) -> RemoteCommand {
        RemoteCommand {
            to: to.into(),
            service: "db".into(),
            action: action.into(),
            at,
            seal: None,
        }
    }

    #[test]
    fn a_command_is_offered_once_only_to_its_target_while_its_issuer_is_live() {
        let now = Time(100_000);
        let issuer = view(
            "a",
            Status::Alive,
            vec![
                encode("a-1", &cmd("b", "restart", 99_000)),
                encode("a-2", &cmd("c", "restart", 99_000)),
                encode("a-3", &cmd("b", "explode", 99_000)),
                encode("a-4", &cmd("b", "stop", 10_000)),
                encode("a-5", &cmd("b", "start", 99_500)),
            ],
        );
        let answered = encode_answer(
            "a-5",
            &Answer {
                ok: true,
                message: "started".into(),
                at: 99_600,
            },
        );
        let me = view("b", Status::Alive, vec![answered]);
        let views = vec![issuer.clone(), me.clone()];
        let got = pending(&views, &me, &|_| false);
        let offered = |id: &str, command| Pending {
            id: id.into(),
            from: "a".into(),
            service: "db".into(),
            command,
            content: format!("b\ndb\n{}", command.as_str()),
            seal: None,
        };
        // a-4 is old by the target's clock: it is still offered (its seal's number decides).
        assert_eq!(
            got,
            vec![
                offered("a-1", Command::Restart),
                offered("a-4", Command::Stop)
            ]
        );
        assert!(pending(&views, &me, &|id| id == "a-1" || id == "a-4").is_empty());
        // A down issuer's commands are not run.
        let down = vec![
            view(
                "a",
                Status::Down,
                issuer.kv.as_ref().clone().into_iter().collect(),
            ),
            me.clone(),
        ];
        assert!(pending(&down, &me, &|_| false).is_empty());
        assert_eq!(answer_of(&me, "a-5").map(|a| a.ok), Some(true));
        assert_eq!(
            old_answers(&me, Time(99_600 + 121_000)),
            vec!["res.a-5".to_string()]
        );
        assert!(old_answers(&me, now).is_empty());
    }
}
