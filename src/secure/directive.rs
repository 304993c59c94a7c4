//! Which directives from other hosts this host obeys (SECURITY.md, "Command another host").
//!
//! A directive is obeyed only when it carries a seal ([`crate::secure::operator`]) that
//! verifies under one of the operator keys this host trusts (`control.operators`), and —
//! for commands, which act once — only when it is fresh by its issuer's own numbering:
//!
//! * never run twice: the numbers run are remembered per (operator, issuer), on disk, so a
//!   restart of this host does not forget them;
//! * not older than [`WINDOW`] behind the newest number this host has seen from that
//!   issuer: the numbers are the issuer's (at least its clock's milliseconds, and strictly
//!   increasing), so a command is compared only with its own issuer's other directives,
//!   never with this host's clock. A captured command replayed later is refused as soon as
//!   its issuer has issued anything newer that this host has seen.
//!
//! The rule is pure: the control actor feeds it what the view holds and saves the ledger.

use super::operator::{Directive, OperatorId, OperatorKey, Seal, Sequence};
use crate::statefile;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// How far (in the issuer's numbers: milliseconds of its clock, or more) behind its newest
/// a command may be and still run.
pub const WINDOW: u64 = 60_000;
/// The ledger's file in the data dir, and its format.
pub const LEDGER_FILE: &str = statefile::DIRECTIVES;
pub const LEDGER_FORMAT: u32 = 1;

/// Why a directive is not obeyed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "refused: not signed by an operator key (this host obeys only directives signed by a \
         key in its control.operators)"
    )]
    Unsigned,
    #[error(
        "refused: signed by operator key {0}, which this host does not trust (control.operators)"
    )]
    NotTrusted(String),
    #[error("refused: its signature does not verify")]
    BadSignature,
    #[error("refused: directive {0} of its issuer was run here already")]
    Replayed(u64),
    #[error("refused: directive {seq} is stale (its issuer's newest seen here is {newest})")]
    Stale { seq: u64, newest: u64 },
}

/// The operators this host trusts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trust {
    pub cluster: String,
    pub operators: Vec<OperatorId>,
}

impl Trust {
    /// The trusted operator who sealed `directive`, or why it is not obeyed.
    pub fn check(
        &self,
        directive: &Directive<'_>,
        seal: Option<&Seal>,
    ) -> Result<OperatorId, Refusal> {
        let seal = seal.ok_or(Refusal::Unsigned)?;
        let op = OperatorId::parse(&seal.op).map_err(|_| Refusal::BadSignature)?;
        if !self.operators.contains(&op) {
            return Err(Refusal::NotTrusted(seal.op.clone()));
        }
        seal.verify(directive).ok_or(Refusal::BadSignature)
    }
}

/// Per (operator, issuer): the newest number seen and the numbers run within [`WINDOW`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    issuers: BTreeMap<String, Seen>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Seen {
    newest: u64,
    run: BTreeSet<u64>,
}

fn who(op: &OperatorId, issuer: &str) -> String {
    format!("{op} {issuer}")
}

impl Ledger {
    /// Notes a verified directive seen from `issuer` (run here or not): it moves the newest.
    /// Says whether the ledger changed.
    pub fn saw(&mut self, op: &OperatorId, issuer: &str, seq: u64) -> bool {
        let seen = self.issuers.entry(who(op, issuer)).or_default();
        if seq <= seen.newest {
            return false;
        }
        seen.newest = seq;
        let floor = seq.saturating_sub(WINDOW);
        seen.run.retain(|&n| n >= floor);
        true
    }

    /// Whether a command numbered `seq` may run now.
    pub fn fresh(&self, op: &OperatorId, issuer: &str, seq: u64) -> Result<(), Refusal> {
        let Some(seen) = self.issuers.get(&who(op, issuer)) else {
            return Ok(());
        };
        if seen.run.contains(&seq) {
            return Err(Refusal::Replayed(seq));
        }
        if seq.saturating_add(WINDOW) < seen.newest {
            return Err(Refusal::Stale {
                seq,
                newest: seen.newest,
            });
        }
        Ok(())
    }

    /// Records that the command numbered `seq` ran (save the ledger before running it).
    pub fn ran(&mut self, op: &OperatorId, issuer: &str, seq: u64) {
        self.saw(op, issuer, seq);
        let seen = self.issuers.entry(who(op, issuer)).or_default();
        seen.run.insert(seq);
    }

    /// Reads the ledger of a data dir; `Ok(None)` when there is none yet.
    pub fn load(data_dir: &Path) -> Result<Option<Ledger>, statefile::StateFileError> {
        statefile::read_json(&data_dir.join(LEDGER_FILE), LEDGER_FORMAT, &[])
    }

    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        statefile::write_json(&data_dir.join(LEDGER_FILE), LEDGER_FORMAT, self)
    }
}

/// What a node obeys and what it can sign: made once at start, shared by the API (which
/// seals what it issues to other hosts) and the cores that obey (control, alerts).
#[derive(Debug, Default)]
pub struct Authority {
    pub trust: Trust,
    issuer: String,
    signer: Option<(OperatorKey, std::sync::Mutex<Sequence>)>,
}

/// Why a directive could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "this node has no operator key (control.operator_key_file), and other hosts obey only \
         directives signed by one: make a key with `nbwatch keygen --operator --out FILE`, \
         set control.operator_key_file here and list its public key in control.operators on \
         every host"
    )]
    NoKey,
    #[error(transparent)]
    Sequence(#[from] super::operator::OperatorError),
}

impl Authority {
    /// `signer`: this node's operator key, if it has one; its sequence numbers are kept in
    /// `data_dir`.
    pub fn new(
        trust: Trust,
        issuer: &str,
        signer: Option<OperatorKey>,
        data_dir: &Path,
    ) -> Authority {
        Authority {
            trust,
            issuer: issuer.to_string(),
            signer: signer.map(|k| (k, std::sync::Mutex::new(Sequence::open(data_dir)))),
        }
    }

    /// Whether this node holds an operator key to seal with.
    pub fn can_seal(&self) -> bool {
        self.signer.is_some()
    }

    /// Seals the directive at gossip `key` with `content`, issued by this node.
    pub fn seal(&self, key: &str, content: &str, now_ms: u64) -> Result<Seal, SealError> {
        let (op, seq) = self.signer.as_ref().ok_or(SealError::NoKey)?;
        let seq = seq
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .next(now_ms)?;
        let directive = Directive {
            cluster: &self.trust.cluster,
            issuer: &self.issuer,
            key,
            content,
        };
        Ok(op.seal(&directive, seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directive(content: &str) -> Directive<'_> {
        Directive {
            cluster: "c",
            issuer: "a",
            key: "cmd.a-1",
            content,
        }
    }

    #[test]
    fn only_a_trusted_operators_valid_seal_is_obeyed() {
        let op = OperatorKey::generate();
        let other = OperatorKey::generate();
        let trust = Trust {
            cluster: "c".into(),
            operators: vec![op.id()],
        };
        let d = directive("b\ndb\nstop");
        let seal = op.seal(&d, 7);
        assert_eq!(trust.check(&d, Some(&seal)), Ok(op.id()));
        assert_eq!(trust.check(&d, None), Err(Refusal::Unsigned));
        let stranger = other.seal(&d, 7);
        assert!(matches!(
            trust.check(&d, Some(&stranger)),
            Err(Refusal::NotTrusted(_))
        ));
        // Moved to other content, another key, another issuer or cluster, another number:
        // the signature no longer verifies.
        let moved = [
            directive("b\ndb\nstart"),
            Directive {
                key: "cmd.a-2",
                ..d
            },
            Directive { issuer: "x", ..d },
            Directive { cluster: "k", ..d },
        ];
        for m in &moved {
            assert_eq!(
                trust.check(m, Some(&seal)),
                Err(Refusal::BadSignature),
                "{m:?}"
            );
        }
        let renumbered = Seal {
            seq: 8,
            ..seal.clone()
        };
        assert_eq!(
            trust.check(&d, Some(&renumbered)),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            Trust::default().check(&d, Some(&seal)),
            Err(Refusal::NotTrusted(op.id().encode()))
        );
    }

    #[test]
    fn a_command_runs_once_and_not_when_its_issuer_has_moved_on_past_the_window() {
        let op = OperatorKey::generate().id();
        let mut ledger = Ledger::default();
        assert_eq!(ledger.fresh(&op, "a", 1_000), Ok(()));
        ledger.ran(&op, "a", 1_000);
        assert_eq!(ledger.fresh(&op, "a", 1_000), Err(Refusal::Replayed(1_000)));
        // Out of order within the window: both run.
        ledger.saw(&op, "a", 30_000);
        assert_eq!(ledger.fresh(&op, "a", 20_000), Ok(()));
        // The issuer moved on: an old, never-run command of its is stale.
        ledger.saw(&op, "a", 200_000);
        assert_eq!(
            ledger.fresh(&op, "a", 20_000),
            Err(Refusal::Stale {
                seq: 20_000,
                newest: 200_000
            })
        );
        // Other issuers and operators are apart.
        assert_eq!(ledger.fresh(&op, "b", 1_000), Ok(()));
        // The ledger survives a restart.
        let dir = tempfile::tempdir().expect("dir");
        ledger.save(dir.path()).expect("save");
        let back = Ledger::load(dir.path()).expect("load").expect("a ledger");
        assert_eq!(back, ledger);
        assert!(
            Ledger::load(&dir.path().join("none"))
                .expect("no file")
                .is_none()
        );
    }
}
