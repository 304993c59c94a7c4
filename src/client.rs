//! The CLI side of the HTTP API: fetch JSON from the daemon on loopback and print it for people.
//!
//! The client is a small HTTP/1.1 implementation over a `TcpStream` instead of a full HTTP
//! client crate: it only ever talks to our own daemon, one request per connection
//! (`Connection: close`), and that needs a few dozen lines, not a TLS-capable dependency tree.

pub mod app;
mod http;
pub mod query;
pub mod status;
mod table;

pub use http::{ClientError, MAX_RESPONSE_BYTES, delete_json, explain, get_json, post_json};
pub use table::{
    event_line, format_age, render_all_services, render_app_values, render_events, render_history,
    render_members, render_services, render_table,
};

#[cfg(test)]
mod tests;
