//! Decide locally, from what gossip told this host: where to send the next jobs, and which
//! host owns a key — no server to ask, no round trip to another host.
//!
//! A job dispatcher on any host asks its own daemon for the least loaded live hosts (two
//! random choices each, so dispatchers on many hosts do not all pick the same idle one), and
//! a sharded service finds the hosts that own a user's data by rendezvous hashing (every host
//! with the same view gets the same answer, and when a host dies only its keys move).
//!
//! ```text
//! nbwatch run &                                     # a daemon on this host
//! cargo run --example decide -- --jobs 3 --key user:42 --replicas 2
//! ```
//!
//! The daemon's API is taken from `NBWATCH_API` (else `127.0.0.1:7711`).

use nbwatch::cli::app::App;

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let jobs: usize = arg(&args, "--jobs").unwrap_or_else(|| "3".into()).parse()?;
    let key = arg(&args, "--key").unwrap_or_else(|| "user:42".into());
    let replicas: usize = arg(&args, "--replicas")
        .unwrap_or_else(|| "2".into())
        .parse()?;
    let api = std::env::var("NBWATCH_API").unwrap_or_else(|_| "127.0.0.1:7711".into());
    let app = App::new(api.parse()?);
    // One pick per job, as a dispatcher would do when each job arrives.
    for job in 1..=jobs {
        match app.pick(1, None, &[]).await?.first() {
            Some(host) => println!(
                "job {job} -> {} ({}, load per core {:.2})",
                host.node, host.addr, host.score
            ),
            None => println!("job {job}: no live host reports its load yet"),
        }
    }
    let owners = app.owners(&key, replicas).await?;
    let names: Vec<&str> = owners.iter().map(|o| o.node.as_str()).collect();
    println!("{key} is owned by {}", names.join(", "));
    Ok(())
}
