//! Application data from a Rust program: publish this host's values and read every host's,
//! through the local daemon's API (see [`crate::control::appdata`] for how they travel); and
//! the local decisions made from the gossiped view: which hosts to send work to
//! ([`App::pick`], `control::pick`) and which hosts own a key ([`App::owners`],
//! `control::owner`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), nbwatch::cli::client::ClientError> {
//! use nbwatch::cli::app::App;
//! use std::time::Duration;
//! let app = App::new("127.0.0.1:7711".parse().unwrap());
//! app.publish("mythtv/recordings_pending", "3", Some(Duration::from_secs(60))).await?;
//! for value in app.list("mythtv/").await? {
//!     println!("{} says {} = {}", value.node, value.key, value.value);
//! }
//! # Ok(()) }
//! ```

use super::client::{Client, ClientError};
use super::query::{encode, with_query};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// One host's value of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppValue {
    pub node: String,
    pub key: String,
    pub value: String,
    /// RFC 3339, when it was published.
    pub at: String,
    /// RFC 3339, when it expires, if it has a TTL.
    pub expires: Option<String>,
}

impl AppValue {
    fn from_json(v: &Value) -> Option<AppValue> {
        Some(AppValue {
            node: v["node"].as_str()?.to_string(),
            key: v["key"].as_str()?.to_string(),
            value: v["value"].as_str()?.to_string(),
            at: v["at"].as_str()?.to_string(),
            expires: v["expires"].as_str().map(str::to_string),
        })
    }
}

/// A host to send work to, and its score (the metric's value; lower was better).
#[derive(Clone, Debug, PartialEq)]
pub struct Picked {
    pub node: String,
    /// Its gossip address.
    pub addr: String,
    pub score: f64,
}

/// An owner of a key (the first owns it first), with its weight.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyOwner {
    pub node: String,
    /// Its gossip address.
    pub addr: String,
    pub weight: f64,
}

/// The local daemon's application data and decisions.
#[derive(Clone, Debug)]
pub struct App {
    client: Client,
}

/// A client the command line already made (with its address and token).
impl From<Client> for App {
    fn from(client: Client) -> App {
        App { client }
    }
}

fn key_path(key: &str) -> String {
    // Keys may hold '/', which stays a path separator; everything else is encoded.
    let parts: Vec<String> = key.split('/').map(encode).collect();
    format!("/api/v1/kv/{}", parts.join("/"))
}

fn values(v: Value) -> Vec<AppValue> {
    v.as_array()
        .map(|a| a.iter().filter_map(AppValue::from_json).collect())
        .unwrap_or_default()
}

impl App {
    pub fn new(addr: SocketAddr) -> App {
        App::from(Client::new(addr))
    }

    /// The API token sent with changes (when the daemon requires one).
    pub fn with_token(self, token: impl Into<String>) -> App {
        App::from(self.client.with_token(token))
    }

    /// Publishes `value` under `key` from this host; with a `ttl` it expires everywhere.
    pub async fn publish(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<Value, ClientError> {
        let mut body = json!({ "value": value });
        if let Some(ttl) = ttl {
            body["ttl"] = json!(format!("{}ms", ttl.as_millis()));
        }
        self.client.post(&key_path(key), &body).await
    }

    /// Withdraws this host's value of `key`.
    pub async fn withdraw(&self, key: &str) -> Result<Value, ClientError> {
        self.client.delete(&key_path(key)).await
    }

    /// Every host's value of `key` (an error with status 404 if no host publishes it).
    pub async fn get(&self, key: &str) -> Result<Vec<AppValue>, ClientError> {
        Ok(values(self.client.get(&key_path(key)).await?))
    }

    /// Every host's values whose key starts with `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<AppValue>, ClientError> {
        let path = with_query("/api/v1/kv", &[("prefix", Some(prefix.to_string()))]);
        Ok(values(self.client.get(&path).await?))
    }

    /// `count` live hosts to send work to, least loaded by `by` (`None`: the load per core;
    /// any gossiped metric or probe perfdata `<probe>.<label>`), none of `exclude`: the power
    /// of two choices, so many programs picking at once spread their work.
    pub async fn pick(
        &self,
        count: usize,
        by: Option<&str>,
        exclude: &[String],
    ) -> Result<Vec<Picked>, ClientError> {
        let path = with_query(
            "/api/v1/pick",
            &[
                ("count", Some(count.to_string())),
                ("by", by.map(str::to_string)),
                ("exclude", (!exclude.is_empty()).then(|| exclude.join(","))),
            ],
        );
        let answer = self.client.get(&path).await?;
        Ok(answer
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| {
                        Some(Picked {
                            node: p["node"].as_str()?.to_string(),
                            addr: p["addr"].as_str()?.to_string(),
                            score: p["score"].as_f64()?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The `replicas` live hosts that own `key` by weighted rendezvous hashing: every host
    /// with the same view names the same ones.
    pub async fn owners(&self, key: &str, replicas: usize) -> Result<Vec<KeyOwner>, ClientError> {
        let parts: Vec<String> = key.split('/').map(encode).collect();
        let path = with_query(
            &format!("/api/v1/owner/{}", parts.join("/")),
            &[("replicas", Some(replicas.to_string()))],
        );
        let answer = self.client.get(&path).await?;
        Ok(answer["owners"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|o| {
                        Some(KeyOwner {
                            node: o["node"].as_str()?.to_string(),
                            addr: o["addr"].as_str()?.to_string(),
                            weight: o["weight"].as_f64()?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Tells this host that the application could not reach `node`: it probes it at once (a
    /// report is evidence, never a verdict). Returns how many reports it has counted.
    pub async fn unreachable(&self, node: &str, reason: &str) -> Result<u64, ClientError> {
        let path = format!("/api/v1/reachability/{}", encode(node));
        let answer = self
            .client
            .post(&path, &serde_json::json!({ "reason": reason }))
            .await?;
        Ok(answer["reports"].as_u64().unwrap_or(0))
    }

    /// The cluster settings document the daemon applies, as `GET /api/v1/cluster-config`
    /// gives it (`version` null when none was ever pushed).
    pub async fn cluster_config(&self) -> Result<Value, ClientError> {
        self.client.get("/api/v1/cluster-config").await
    }

    /// Pushes a cluster settings document (TOML) from the daemon's host; every host applies
    /// it as gossip spreads it. A bad document is refused with every problem.
    pub async fn push_cluster_config(&self, content: &str) -> Result<Value, ClientError> {
        (self.client)
            .post("/api/v1/cluster-config", &json!({ "content": content }))
            .await
    }

    /// Follows the values under `prefix`: each call of [`Subscription::changes`] returns
    /// what was published, re-published or withdrawn since the previous call.
    pub fn subscribe(&self, prefix: &str) -> Subscription {
        Subscription {
            app: self.clone(),
            prefix: prefix.to_string(),
            seen: None,
        }
    }
}

/// A change seen by a [`Subscription`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// New or re-published.
    Set(AppValue),
    /// Withdrawn or expired: (node, key).
    Gone { node: String, key: String },
}

pub struct Subscription {
    app: App,
    prefix: String,
    /// (node, key) → when published; `None` before the first look.
    seen: Option<HashMap<(String, String), String>>,
}

impl Subscription {
    /// The changes since the last call (on the first call: every current value, as `Set`).
    pub async fn changes(&mut self) -> Result<Vec<Change>, ClientError> {
        let now = self.app.list(&self.prefix).await?;
        let mut seen = self.seen.take().unwrap_or_default();
        let mut out = Vec::new();
        let mut current = HashMap::new();
        for v in now {
            let id = (v.node.clone(), v.key.clone());
            if seen.get(&id) != Some(&v.at) {
                out.push(Change::Set(v.clone()));
            }
            current.insert(id, v.at);
        }
        seen.retain(|id, _| !current.contains_key(id));
        let mut gone: Vec<_> = seen.into_keys().collect();
        gone.sort();
        out.extend(
            gone.into_iter()
                .map(|(node, key)| Change::Gone { node, key }),
        );
        self.seen = Some(current);
        Ok(out)
    }
}
