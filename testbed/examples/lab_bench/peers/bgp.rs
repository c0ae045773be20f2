//! BGP: each implementation peers from every node with the lab's FRR (AS 64500) and BIRD (AS
//! 64501), hold time 9 s (the lab routers have no BFD: every implementation meets the hold
//! timer). Create → first answered request through FRR (IPv4, one Service after another); a
//! node's switch port down → its path gone at FRR and at BIRD; 1,000 IPv6 single-stack
//! Services → a route for each at both routers.

use super::*;

const NODE_LOST_EVENTS: usize = 3;
const SCALE: usize = 1000;

/// A time at FRR and at BIRD (None: not within the limit).
type AtRouters = (Option<Duration>, Option<Duration>);

pub(super) struct Bgp {
    who: String,
    creates: Vec<Duration>,
    /// From the cut to the node's path gone, at FRR and at BIRD.
    withdrawn: Vec<AtRouters>,
    /// From creating 1,000 IPv6 Services to a route for each at FRR and at BIRD; `Err`: why
    /// not measured.
    scale: Result<AtRouters, String>,
}

/// BIRD holds back a neighbour whose session failed (its error wait, 60 s doubling to 300 s,
/// refusing connections meanwhile); each implementation, and each event, starts with none.
fn clear_bird_error_waits(lab: &Lab) {
    lab.birdc("bird", "restart all").unwrap();
}

pub(super) fn measure(lab: &mut Lab, setting: Setting, events: usize) -> Bgp {
    clear_bird_error_waits(lab);
    let (_, creates) = create::first_answers(lab, setting, events);
    let withdrawn = (0..NODE_LOST_EVENTS)
        .map(|_| node_lost(lab, setting))
        .collect();
    let scale = match setting.who {
        Who::MetalLb => Err(
            "cannot: native BGP advertises IPv4 only (an IPv6 pool with a BGPAdvertisement is refused)"
                .into(),
        ),
        _ => Ok(routes_for_all(lab, setting)),
    };
    Bgp {
        who: setting.label.to_string(),
        creates,
        withdrawn,
        scale,
    }
}

/// Whether each router has a path for `prefix` from `node` (FRR names a path by the peer's
/// address, BIRD by its protocol, named after the node).
fn paths_from(lab: &Lab, prefix: &str, node: &str) -> (bool, bool) {
    let address = lab.node_ipv4(node).unwrap();
    let at_frr = lab.frr_paths("frr", prefix).contains(&address);
    let at_bird = lab
        .bird_paths("bird", prefix)
        .iter()
        .any(|from| from == node);
    (at_frr, at_bird)
}

/// n1's switch port down while the Service `web` is advertised by every node: how long until
/// each router has dropped n1's path. The port comes back and every path returns before the
/// next event.
fn node_lost(lab: &mut Lab, setting: Setting) -> AtRouters {
    let prefix = format!("{}/32", setting.vip());
    let everyone: Vec<IpAddr> = NODES.iter().map(|n| lab.node_ipv4(n).unwrap()).collect();
    assert!(
        wait_every(Duration::from_secs(180), Duration::from_millis(200), || {
            lab.frr_paths("frr", &prefix) == everyone && lab.bird_paths("bird", &prefix).len() == 3
        }),
        "{}: not every node's path for {prefix} at both routers",
        setting.label
    );
    let cut = Instant::now();
    lab.set_switch_port("n1", false).unwrap();
    let (mut frr, mut bird) = (None, None);
    wait_every(Duration::from_secs(60), Duration::from_millis(50), || {
        let (at_frr, at_bird) = paths_from(lab, &prefix, "n1");
        if !at_frr && frr.is_none() {
            frr = Some(cut.elapsed());
        }
        if !at_bird && bird.is_none() {
            bird = Some(cut.elapsed());
        }
        frr.is_some() && bird.is_some()
    });
    lab.set_switch_port("n1", true).unwrap();
    clear_bird_error_waits(lab);
    (frr, bird)
}

/// How many of the 1,000 Services' prefixes each router has a route for.
fn prefixes_at(lab: &Lab) -> (usize, usize) {
    let frr: serde_json::Value = lab
        .vtysh(
            "frr",
            &format!("show bgp ipv6 unicast {SCALE_RANGE} longer-prefixes json"),
        )
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let at_frr = frr["routes"].as_object().map_or(0, |r| r.len());
    let bird = lab
        .birdc(
            "bird",
            &format!("show route where net ~ [ {SCALE_RANGE}+ ] primary count"),
        )
        .unwrap_or_default();
    // "1000 of 3002 routes for 1002 networks in table master6" (after master4's line): the
    // primary routes that matched, one per network, of all routes and networks in the table.
    let at_bird = bird
        .lines()
        .find(|l| l.contains("in table master6"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (at_frr, at_bird)
}

fn routes_for_all(lab: &Lab, setting: Setting) -> AtRouters {
    let file = lab.dir.join("bgp-scale.yaml");
    std::fs::write(&file, load::services(setting, "bgpscale", SCALE, 1)).unwrap();
    let _ = lab.kubectl(&["create", "namespace", "bgpscale"]);
    lab.kubectl(&["create", "-f", &file.display().to_string()])
        .unwrap();
    // From the last one created (kubectl takes about a minute per thousand objects).
    let started = Instant::now();
    let (mut frr, mut bird) = (None, None);
    wait_every(Duration::from_secs(300), Duration::from_secs(1), || {
        let (at_frr, at_bird) = prefixes_at(lab);
        if at_frr >= SCALE && frr.is_none() {
            frr = Some(started.elapsed());
        }
        if at_bird >= SCALE && bird.is_none() {
            bird = Some(started.elapsed());
        }
        frr.is_some() && bird.is_some()
    });
    if frr.is_none() || bird.is_none() {
        eprintln!(
            "{}: routes at FRR / BIRD after 300 s: {:?}",
            setting.label,
            prefixes_at(lab)
        );
    }
    load::delete_all(lab, "bgpscale");
    (frr, bird)
}

pub(super) fn print(rows: &[Bgp], n: usize) {
    let secs = |d: &Option<Duration>| {
        d.map_or("not within the limit".to_string(), |d| {
            format!("{:.1} s", d.as_secs_f64())
        })
    };
    println!(
        "BGP to FRR and BIRD (hold 9 s): create → first answer through FRR ({n} Services), n1's switch port down → its path gone ({NODE_LOST_EVENTS} events), 1,000 IPv6 Services → a route for each:"
    );
    println!(
        "| implementation | create → first answer p50 / p99 / max | n1 lost → withdrawn at FRR | at BIRD | 1,000 IPv6 Services → every route at FRR / BIRD |"
    );
    println!("|---|---|---|---|---|");
    for row in rows {
        let list = |pick: fn(&AtRouters) -> Option<Duration>| {
            row.withdrawn
                .iter()
                .map(|w| secs(&pick(w)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let scale = match &row.scale {
            Ok((frr, bird)) => format!("{} / {}", secs(frr), secs(bird)),
            Err(why) => why.clone(),
        };
        println!(
            "| {} | {} | {} | {} | {scale} |",
            row.who,
            spread(&row.creates),
            list(|w| w.0),
            list(|w| w.1)
        );
    }
}
