//! The owner of an L2 address loses carrier on its announcing link while its management link
//! (API, gossip) lives on: how long a client on the announcing segment waits, how long the
//! address stays away once the link is back (the hold-down), and what the way back costs.

use super::*;
use ferrolb_testbed::uplink::cut_owner_uplink;

pub fn run(rounds: usize) {
    let api = ferrolb_testbed::Api::from_env().expect("FERROLB_LAB_API");
    let lab = lab_of(Topology::uplinks(), api, Vec::new(), Vec::new());
    lab.apply(
        "web",
        &service("web", "l2", "192.0.2.200".parse().unwrap(), 30080),
    )
    .unwrap();
    let target = SocketAddr::new("192.0.2.200".parse().unwrap(), 80);
    let outage = Duration::from_secs(2);
    let cuts = cut_owner_uplink(&lab, target, rounds, outage).expect("cuts");
    println!(
        "announcing link of {} down {outage:?}, {rounds} times, probes every 10 ms:",
        cuts.owner
    );
    println!(
        "  gap (port down → first answer by another node): {}; probes unanswered {}",
        percentiles(cuts.gaps.clone()),
        cuts.lost
    );
    println!(
        "  address back on the owner after the port came up: {}",
        percentiles(cuts.returns)
    );
    println!(
        "  failback: longest silence from the port coming up until a second after the return: {}",
        percentiles(cuts.failback_silences)
    );
    println!(
        "  the owner declared down by another speaker: {} times",
        cuts.declared_down
    );
    for (i, (gap, at)) in cuts.gaps.iter().zip(&cuts.cut_at).enumerate() {
        let at = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        println!("  cut {i} at {:.3} (unix): gap {gap:?}", at.as_secs_f64());
    }
    // The speakers' logs, kept for reading a slow cut against its time.
    let keep = std::path::Path::new("/tmp/ferrolb-uplink-bench");
    let _ = std::fs::create_dir_all(keep);
    for node in lab.topology.node_names() {
        let name = format!("speaker-{node}");
        let _ = std::fs::copy(lab.log(&name), keep.join(format!("{name}.log")));
    }
}
