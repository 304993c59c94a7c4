//! Publish this program's own status through nbwatch and read every host's.
//!
//! A program on any host (a recorder with recordings pending, a queue with a depth) publishes
//! a value under a key of its choosing; every host's daemon gossips it, so the same program on
//! every host reads the value of every other, with no server in between. With a TTL the
//! value disappears everywhere if the program stops renewing it.
//!
//! ```text
//! nbwatch run &                                     # a daemon on this host
//! cargo run --example appdata -- --key recorder/pending --every 5s --count 3
//! ```
//!
//! The daemon's API is taken from `NBWATCH_API` (else `127.0.0.1:7711`).

use nbwatch::cli::app::{App, Change};

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let key = arg(&args, "--key").unwrap_or_else(|| "example/queue_depth".into());
    let every = humantime::parse_duration(&arg(&args, "--every").unwrap_or_else(|| "5s".into()))?;
    let count: u32 = arg(&args, "--count")
        .unwrap_or_else(|| "3".into())
        .parse()?;
    let api = std::env::var("NBWATCH_API").unwrap_or_else(|_| "127.0.0.1:7711".into());
    let app = App::new(api.parse()?);
    // Everyone's values under the key's folder, as they change.
    let prefix = key
        .rsplit_once('/')
        .map_or("", |(folder, _)| folder)
        .to_string();
    let mut changes = app.subscribe(&prefix);
    for round in 0..count {
        // This program's own figure: here, a made-up queue depth.
        let depth = (round * 7 + 3) % 10;
        app.publish(&key, &depth.to_string(), Some(every * 3))
            .await?;
        println!(
            "published {key} = {depth} (expires in {})",
            humantime::format_duration(every * 3)
        );
        for change in changes.changes().await? {
            match change {
                Change::Set(v) => println!("  {} says {} = {}", v.node, v.key, v.value),
                Change::Gone { node, key } => println!("  {node} no longer says {key}"),
            }
        }
        tokio::time::sleep(every).await;
    }
    app.withdraw(&key).await?;
    println!("withdrew {key}");
    Ok(())
}
