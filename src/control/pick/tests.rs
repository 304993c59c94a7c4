use super::*;
use crate::control::test_view;
use crate::keys::sample::encode_sample;
use rand::SeedableRng;
use rand::rngs::SmallRng;

const NOW: Time = Time(1_800_000_000_000);

fn host(name: &str, load1: f64, cpus: Option<u32>, at: Time) -> MemberView {
    let mut kv = vec![(
        METRICS_KEY.to_string(),
        encode_sample([load1, 0.0, 0.0, 10.0, 40.0, 0.0, 50.0], at),
    )];
    if let Some(c) = cpus {
        kv.push((CPUS_KEY.to_string(), c.to_string()));
    }
    test_view(name, Status::Alive, kv)
}

#[test]
fn the_default_score_is_the_load_per_core_and_any_gossiped_metric_can_be_named() {
    let m = host("a", 3.0, Some(4), NOW);
    assert_eq!(score(&m, LOAD_PER_CORE, NOW), Some((0.75, false)));
    assert_eq!(score(&m, "mem_used_pct", NOW), Some((40.0, false)));
    assert_eq!(
        score(&host("b", 3.0, None, NOW), LOAD_PER_CORE, NOW),
        Some((3.0, false))
    );
    assert_eq!(score(&m, "no_such_metric", NOW), None);
    let old = host("c", 0.0, None, Time(NOW.0 - 61_000));
    assert_eq!(score(&old, "load1", NOW), Some((0.0, true)));
}

#[test]
fn only_live_hosts_with_the_metric_and_not_excluded_are_candidates() {
    let mut down = host("down", 0.0, None, NOW);
    down.status = Status::Down;
    let bare = test_view("bare", Status::Alive, Vec::new());
    let views = vec![
        host("a", 1.0, None, NOW),
        host("b", 2.0, None, NOW),
        down,
        bare,
    ];
    let c = candidates(&views, LOAD_PER_CORE, &["b".to_string()], NOW);
    assert_eq!(c.iter().map(|c| c.node.as_str()).collect::<Vec<_>>(), ["a"]);
}

#[test]
fn two_choices_never_take_the_worse_of_the_pair_and_a_stale_sample_loses() {
    let views = vec![
        host("idle-but-silent", 0.0, None, Time(NOW.0 - 120_000)),
        host("busy", 5.0, None, NOW),
    ];
    let mut rng = SmallRng::seed_from_u64(7);
    for _ in 0..50 {
        let c = candidates(&views, LOAD_PER_CORE, &[], NOW);
        let got = pick(c, 1, &mut rng);
        assert_eq!(got[0].node, "busy");
    }
    // K larger than the candidates: each once.
    let c = candidates(&views, LOAD_PER_CORE, &[], NOW);
    assert_eq!(pick(c, 5, &mut rng).len(), 2);
    let c = candidates(&views, LOAD_PER_CORE, &[], NOW);
    assert_eq!(minimum(c, 1)[0].node, "busy");
}
