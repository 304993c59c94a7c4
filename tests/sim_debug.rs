use nbwatch::gossip::core::Settings;
use nbwatch::sim::Sim;
use std::time::Duration;

#[test]
fn debug_propagation() {
    let mut sim = Sim::cluster(3, 128, Settings::default());
    sim.run_for(Duration::from_secs(10));
    sim.trace_prefix = Some("app.".into());
    let at = sim.now;
    let _ = sim.nodes[5].core.set(at, "app.x", Some("1".into()));
    sim.run_for(Duration::from_secs(4));
    let mut t: Vec<u64> = sim
        .nodes
        .iter()
        .filter_map(|n| {
            n.traced
                .values()
                .next()
                .map(|x| x.since(at).as_millis() as u64)
        })
        .collect();
    t.sort();
    eprintln!("{} got it; times {:?}", t.len(), t);
}
