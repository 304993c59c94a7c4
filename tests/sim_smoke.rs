use nbwatch::gossip::core::{Settings, Status};
use nbwatch::sim::Sim;
use std::time::Duration;

#[test]
fn explore() {
    for n in [3usize, 16, 64] {
        let seed = 7;
        let t0 = std::time::Instant::now();
        let mut sim = Sim::cluster(seed, n, Settings::default());
        println!(
            "n={n} converged at {:?} (wall {:?})",
            sim.now.since(nbwatch::sim::EPOCH),
            t0.elapsed()
        );
        sim.run_for(Duration::from_secs(10));
        let b0 = sim.bytes_sent();
        sim.run_for(Duration::from_secs(10));
        let b1 = sim.bytes_sent();
        let per: f64 = b0
            .iter()
            .zip(&b1)
            .map(|(a, b)| (b - a) as f64 / 10.0)
            .sum::<f64>()
            / n as f64;
        println!("  bytes/s per node {per:.0}");
        let downs_before: usize = (0..n).map(|i| sim.down_events(i).len()).sum();
        println!("  false downs so far {downs_before}");
        let victim = n - 1;
        let killed = sim.now;
        sim.crash(victim);
        let ok = sim.run_until(sim.now + Duration::from_secs(30), |s| {
            s.all_see(victim, Status::Down, None)
        });
        println!("  detection ok={ok} after {:?}", sim.now.since(killed));
        for (i, at, inc, lh) in sim.down_events(victim).iter().take(3) {
            println!(
                "   by n{i} at +{:?} inc {inc:?} last_heard {:?} before kill",
                at.since(killed),
                killed.since(*lh)
            );
        }
    }
}
