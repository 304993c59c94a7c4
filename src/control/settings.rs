//! Cluster settings spread by gossip: which settings document this host applies.
//!
//! Any host can push a document (`nbwatch cluster-config push`); it is checked there as every
//! host will check it, given a [`Version`] newer than every one its author has seen, signed
//! when the author holds an operator key, saved, and published in the author's gossiped state
//! ([`crate::keys::settings`]). Every host that sees a newer version in anyone's state checks
//! it in turn and, if it passes, saves it in its data dir, applies it and publishes it as its
//! own, so the newest document reaches a new host from anyone. A restarted host applies the
//! saved one before it has heard anyone.
//!
//! A document is refused, and the refusal logged once per version, when
//!
//! * it does not read ([`ClusterSettings::parse`]): a build that does not know a key refuses
//!   the document rather than apply part of it;
//! * it carries a seal that does not verify under an operator key this host trusts
//!   (`control.operators`): a forged or foreign signature;
//! * it gives an exec sink a command line and no trusted operator signed it: settings must not
//!   become a way to run commands on every host (SECURITY.md, "Cluster settings").
//!
//! The rule is pure: the control actor feeds it the view, saves and publishes what it adopts.

use crate::config::ConfigErrors;
use crate::config::cluster::ClusterSettings;
use crate::gossip::MemberView;
use crate::keys::settings::{KEY, Published, Version};
use crate::secure::directive::{Refusal, SealError, Trust};
use crate::secure::operator::{Directive, OperatorId, Seal};
use crate::statefile;
use crate::types::NodeName;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

/// The applied document's file in the data dir, and its format.
pub const FILE: &str = statefile::CLUSTER_SETTINGS;
pub const FORMAT: u32 = statefile::CLUSTER_SETTINGS_FORMAT;
/// The most refused versions remembered (each is logged once).
const REMEMBER_REFUSED: usize = 64;

/// A document this host checked and applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub doc: Published,
    pub settings: ClusterSettings,
    /// The operator whose key signed it, when one did.
    pub signed_by: Option<OperatorId>,
}

/// Why a document is not applied here.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{0}")]
    Problems(ConfigErrors),
    #[error("its signature is not obeyed here: {0}")]
    Seal(Refusal),
    #[error(
        "exec sink{} {} give{} a command line, which only a document signed by an operator key \
         every host trusts may do; name a command each host declares in [alerts.commands] \
         with command_name instead, or push from a host with an operator key",
        plural(.0.len()), numbers(.0), if .0.len() == 1 { "s" } else { "" }
    )]
    CommandLines(Vec<usize>),
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// 1-based numbers of 0-based places: `1, 3`.
fn numbers(places: &[usize]) -> String {
    let n: Vec<String> = places.iter().map(|i| (i + 1).to_string()).collect();
    n.join(", ")
}

/// Why a push was not made.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0}")]
    Refused(#[from] Refused),
    #[error("cannot sign it: {0}")]
    Seal(#[from] SealError),
    #[error("cannot save it in the data dir: {0}")]
    Save(#[from] std::io::Error),
}

/// Checks `doc` as this host would apply it.
pub fn check(doc: &Published, trust: &Trust) -> Result<Applied, Refused> {
    let settings = ClusterSettings::parse(&doc.text).map_err(Refused::Problems)?;
    let signed_by = match &doc.seal {
        None => None,
        Some(seal) => {
            let content = Published::sealed_content(&doc.version, &doc.text);
            let directive = Directive {
                cluster: &trust.cluster,
                issuer: doc.version.by.as_str(),
                key: KEY,
                content: &content,
            };
            Some(trust.check(&directive, Some(seal)).map_err(Refused::Seal)?)
        }
    };
    let lines = settings.command_lines();
    if signed_by.is_none() && !lines.is_empty() {
        return Err(Refused::CommandLines(lines));
    }
    Ok(Applied {
        doc: doc.clone(),
        settings,
        signed_by,
    })
}

/// Seals a document's content ([`Published::sealed_content`]) with this host's operator key.
pub type Signer<'a> = dyn Fn(&str) -> Result<Seal, SealError> + 'a;

/// What a look at the view decided.
#[derive(Debug, Default)]
pub struct Step {
    /// A newer document to save, publish and apply.
    pub adopt: Option<Arc<Applied>>,
    /// Newer documents refused, each once: its version, the member it was read from and why.
    pub refused: Vec<(Version, NodeName, Refused)>,
}

/// The document this host applies, and what it has seen.
#[derive(Debug, Default)]
pub struct Adopter {
    applied: Option<Arc<Applied>>,
    /// The newest version seen anywhere, applied or not: a push goes past it.
    seen: Option<Version>,
    refused: BTreeSet<Version>,
}

impl Adopter {
    pub fn new(applied: Option<Applied>) -> Adopter {
        let applied = applied.map(Arc::new);
        Adopter {
            seen: applied.as_ref().map(|a| a.doc.version.clone()),
            applied,
            refused: BTreeSet::new(),
        }
    }

    pub fn applied(&self) -> Option<&Arc<Applied>> {
        self.applied.as_ref()
    }

    fn version(&self) -> Option<&Version> {
        self.applied.as_ref().map(|a| &a.doc.version)
    }

    /// Looks in the other members' states for a document newer than the applied one; the
    /// newest that passes [`check`] is adopted, the newer ones that do not are refused.
    pub fn step(&mut self, view: &[MemberView], trust: &Trust) -> Step {
        let mut newer: Vec<(Version, &MemberView)> = (view.iter())
            .filter(|m| !m.is_self)
            .filter_map(|m| Some((Published::version_in(&m.kv)?, m)))
            .collect();
        newer.sort_by(|a, b| b.0.cmp(&a.0));
        if let Some((newest, _)) = newer.first()
            && Some(newest) > self.seen.as_ref()
        {
            self.seen = Some(newest.clone());
        }
        let mut step = Step::default();
        for (version, member) in newer {
            if Some(&version) <= self.version() {
                break;
            }
            if self.refused.contains(&version) {
                continue;
            }
            // A document still arriving is read at a later look.
            let Some(Ok(doc)) = Published::read(&member.kv) else {
                continue;
            };
            match check(&doc, trust) {
                Ok(applied) => {
                    let applied = Arc::new(applied);
                    self.applied = Some(applied.clone());
                    step.adopt = Some(applied);
                    break;
                }
                Err(why) => {
                    self.refuse(&version);
                    step.refused.push((version, member.name.clone(), why));
                }
            }
        }
        step
    }

    fn refuse(&mut self, version: &Version) {
        self.refused.insert(version.clone());
        while self.refused.len() > REMEMBER_REFUSED {
            self.refused.pop_first();
        }
    }

    /// The document `me` pushes with `text` at `now_ms` (its wall clock): checked as every
    /// host will check it, versioned past every version seen, and sealed by `sign` when this
    /// host can sign. Not yet adopted: save it, then [`Adopter::adopt`] it.
    pub fn prepare(
        &self,
        text: &str,
        me: &NodeName,
        now_ms: u64,
        trust: &Trust,
        sign: Option<&Signer<'_>>,
    ) -> Result<Applied, PushError> {
        let settings = ClusterSettings::parse(text).map_err(Refused::Problems)?;
        let version = Version::next(self.seen.as_ref(), now_ms, me);
        let seal = match sign {
            Some(sign) => Some(sign(&Published::sealed_content(&version, text))?),
            None => None,
        };
        let lines = settings.command_lines();
        if seal.is_none() && !lines.is_empty() {
            return Err(Refused::CommandLines(lines).into());
        }
        let doc = Published {
            version,
            at: now_ms,
            text: text.to_string(),
            seal,
        };
        Ok(check(&doc, trust)?)
    }

    /// Applies a document this host pushed (and saved).
    pub fn adopt(&mut self, applied: Applied) -> Arc<Applied> {
        let applied = Arc::new(applied);
        if Some(&applied.doc.version) > self.seen.as_ref() {
            self.seen = Some(applied.doc.version.clone());
        }
        self.applied = Some(applied.clone());
        applied
    }
}

/// The document a data dir holds; `Ok(None)` when none was ever applied.
pub fn load(data_dir: &Path) -> Result<Option<Published>, statefile::StateFileError> {
    statefile::read_json(&data_dir.join(FILE), FORMAT, &[])
}

/// Saves the applied document (atomically: a crash leaves the old one or the new one).
pub fn save(data_dir: &Path, doc: &Published) -> std::io::Result<()> {
    statefile::write_json(&data_dir.join(FILE), FORMAT, doc)
}

#[cfg(test)]
mod tests;
