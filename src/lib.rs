//! # nbwatch — a neighbourhood watch for computers
//!
//! Every host runs the same daemon; there is no master. Hosts gossip heartbeats and metrics,
//! detect failures with independent witnesses, and (in later subsystems) record history, elect
//! one alerting leader per partition and supervise local services.
//!
//! ## Architecture tour
//!
//! Each subsystem is a sans-IO core (`handle(now, input) -> outputs`, no clock, seeded
//! randomness) wrapped by a thin ractor actor that owns the sockets and timers:
//!
//! * [`wire`] — the datagram and TCP frame format (MessagePack, ≤ 1400-byte datagrams).
//! * [`secure`] — sealing of all gossip (XChaCha20-Poly1305, keyring, replay window).
//! * [`gossip`] — membership and versioned per-node key/value state (Scuttlebutt), and the
//!   cluster's verdict on each node from gossiped suspicions.
//! * [`watch`] — per-peer failure detection (phi accrual, direct and indirect probes).
//! * [`sim`] — a seeded, in-process simulator that drives the real cores in virtual time.
//! * [`node`] — the actor tree of a running daemon; [`api`] — its HTTP API; [`cli`] — the
//!   `nbwatch` command line (the daemon and the client commands), the top layer.
//! * [`text`] — strings from elsewhere made safe for a terminal.
//! * [`config`] — the typed configuration; [`probe`] — host metrics and host probes.
//! * [`supervision`] — Erlang-style supervision trees of local services.
//! * [`election`] — the leader of this node's view; [`alert`] — the gossiped alert log that
//!   sends one alert per incident per partition side.

pub mod actors;
pub mod alert;
pub mod api;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod discover;
pub mod election;
pub mod events;
pub mod export;
pub mod gossip;
pub mod graph;
pub mod keys;
pub mod lograte;
pub mod node;
pub mod notify;
pub mod probe;
pub mod secure;
pub mod sim;
pub mod sinks;
pub mod statefile;
pub mod store;
pub mod supervision;
pub mod task;
pub mod text;
pub mod tls;
pub mod transport;
pub mod types;
pub mod watch;
pub mod wire;
pub mod zone;
