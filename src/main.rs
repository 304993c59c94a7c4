//! `nbwatch`: the daemon (`run`) and the client commands that talk to it over its HTTP API.
//! Everything but reading the arguments lives in [`nbwatch::cli`].
//!
//! Exit codes: 0 ok, 1 error (a config problem, a fatal error of the daemon, a daemon that
//! cannot be reached), 2 usage (clap's own), 3 `status` found something that needs a person.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    nbwatch::cli::run(nbwatch::cli::Cli::parse())
}
