//! The shell of the cluster settings rule ([`crate::control::settings`]), run by the control
//! actor on its tick: it loads the saved document at start, saves and publishes what the rule
//! adopts, makes pushes from this node's API, and hands the applied document to its readers
//! (the alert actor, the API) through a watch channel that outlives the actors.

use crate::actors::gossip::GossipMsg;
use crate::control::settings::{self, Adopter, Applied, PushError, Signer};
use crate::election::ViewSnapshot;
use crate::keys::settings::{KEY, Published, Version};
use crate::secure::directive::{Authority, SealError};
use crate::secure::operator::Seal;
use crate::task::Handle;
use crate::types::NodeName;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The document this node applies, if any.
pub type AppliedSettings = watch::Receiver<Option<Arc<Applied>>>;
pub type SettingsSender = Arc<watch::Sender<Option<Arc<Applied>>>>;

pub fn channel() -> (SettingsSender, AppliedSettings) {
    let (tx, rx) = watch::channel(None);
    (Arc::new(tx), rx)
}

/// How long the shell waits for its own state to show a document it published before it
/// publishes it again (the gossip actor may have been restarted and lost it).
const REPUBLISH_AFTER: Duration = Duration::from_secs(5);

pub struct SettingsShell {
    me: NodeName,
    adopter: Adopter,
    applied: SettingsSender,
    authority: Arc<Authority>,
    data_dir: PathBuf,
    gossip: Handle<GossipMsg>,
    /// What was last published, how many parts it had, and when.
    published: Option<(Version, u32, Instant)>,
    /// The view last looked at: an unchanged one has nothing new (the control actor ticks
    /// every 200 ms, and reading every member's header each time is work for nothing).
    looked: Option<Arc<ViewSnapshot>>,
}

impl SettingsShell {
    /// Applies the document saved in `data_dir`, before this node has heard anyone.
    pub fn start(
        me: NodeName,
        authority: Arc<Authority>,
        data_dir: PathBuf,
        gossip: Handle<GossipMsg>,
        applied: SettingsSender,
    ) -> SettingsShell {
        let saved = settings::load(&data_dir).unwrap_or_else(|e| {
            let aside = crate::statefile::move_aside(&data_dir.join(settings::FILE));
            tracing::error!(
                error = %e, moved_to = ?aside.as_ref().ok(),
                "cannot read the saved cluster settings; starting without them until a host \
                 that has them is heard"
            );
            None
        });
        let checked = saved.and_then(|doc| match settings::check(&doc, &authority.trust) {
            Ok(a) => {
                tracing::info!(version = %a.doc.version, "applying the saved cluster settings");
                Some(a)
            }
            Err(why) => {
                tracing::warn!(version = %doc.version, why = %why, "the saved cluster settings are not applied here any more");
                None
            }
        });
        let adopter = Adopter::new(checked);
        applied.send_replace(adopter.applied().cloned());
        let mut shell = SettingsShell {
            me,
            adopter,
            applied,
            authority,
            data_dir,
            gossip,
            published: None,
            looked: None,
        };
        if let Some(a) = shell.adopter.applied().cloned() {
            shell.publish(&a, 0);
        }
        shell
    }

    /// Looks at the view: adopts a newer document, and publishes the applied one again if
    /// this node's state lost it.
    pub fn step(&mut self, view: &Arc<ViewSnapshot>) {
        if self.looked.as_ref().is_some_and(|v| Arc::ptr_eq(v, view)) {
            return;
        }
        self.looked = Some(view.clone());
        let step = self.adopter.step(&view.members, &self.authority.trust);
        for (version, from, why) in step.refused {
            tracing::warn!(%version, from = %from, why = %why, "refused cluster settings");
        }
        if let Some(a) = step.adopt {
            if let Err(e) = settings::save(&self.data_dir, &a.doc) {
                tracing::warn!(error = %e, "cannot save the cluster settings: applied, but a restart before they are heard again starts with the older ones");
            }
            tracing::info!(version = %a.doc.version, signed_by = ?a.signed_by.map(|o| o.encode()), "applying new cluster settings");
            self.applied.send_replace(Some(a.clone()));
            let had = view.me().map_or(0, |m| Published::parts_in(&m.kv));
            self.publish(&a, had);
            return;
        }
        let (Some(a), Some(me)) = (self.adopter.applied().cloned(), view.me()) else {
            return;
        };
        let shown = Published::version_in(&me.kv);
        let due = self
            .published
            .as_ref()
            .is_none_or(|(v, _, at)| *v != a.doc.version || at.elapsed() >= REPUBLISH_AFTER);
        if shown.as_ref() != Some(&a.doc.version) && due {
            self.publish(&a, Published::parts_in(&me.kv));
        }
    }

    /// Pushes a new document from this node (`now_ms`: its wall clock).
    pub fn push(&mut self, text: &str, now_ms: u64) -> Result<Arc<Applied>, PushError> {
        let authority = self.authority.clone();
        let sign = move |content: &str| -> Result<Seal, SealError> {
            authority.seal(KEY, content, now_ms)
        };
        let sign = (self.authority.can_seal()).then_some(&sign as &Signer<'_>);
        let applied = self
            .adopter
            .prepare(text, &self.me, now_ms, &self.authority.trust, sign)?;
        settings::save(&self.data_dir, &applied.doc)?;
        let a = self.adopter.adopt(applied);
        tracing::info!(version = %a.doc.version, signed_by = ?a.signed_by.map(|o| o.encode()), "pushed new cluster settings");
        self.applied.send_replace(Some(a.clone()));
        let had = self.published.as_ref().map_or(0, |(_, parts, _)| *parts);
        self.publish(&a, had);
        Ok(a)
    }

    /// Puts the document in this node's state (parts first, then the header), and deletes the
    /// parts beyond its own that the state may hold (`had` of them).
    fn publish(&mut self, a: &Applied, had: u32) {
        let had = had.max(self.published.as_ref().map_or(0, |(_, p, _)| *p));
        let (entries, stale) = a.doc.entries(had);
        let parts = entries.len() as u32 - 1;
        for (key, value) in entries {
            self.gossip.cast(GossipMsg::Put {
                key,
                value: Some(value),
            });
        }
        for key in stale {
            self.gossip.cast(GossipMsg::Put { key, value: None });
        }
        self.published = Some((a.doc.version.clone(), parts, Instant::now()));
    }
}
