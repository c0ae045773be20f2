//! The owner of an L2 address loses its switch port (carrier gone, the node untouched),
//! its speaker is killed, or its gossip alone is dropped, while a client asks every 10 ms;
//! beside it, keepalived (VRRP) protects another address on the same nodes, with the same
//! node as master, and meets the same link and process events.

use super::*;
use ferrolb_testbed::probe::{Probe, Prober, longest_silence, lost_until_moved, moved_after};

const VRRP_VIP: &str = "192.0.2.250";
const FERROLB_VIP: &str = "192.0.2.200";

fn keepalived_config(node: &str, priority: u8, advert: &str) -> String {
    format!(
        "global_defs {{\n  router_id {node}\n  vrrp_version 3\n  script_user root\n}}\nvrrp_instance lab {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority {priority}\n  advert_int {advert}\n  virtual_ipaddress {{\n    {VRRP_VIP}/24\n  }}\n}}\n"
    )
}

fn answered_by(lab: &Lab, target: SocketAddr) -> Option<String> {
    answered_from(&lab.ns("client-lan"), target)
}

/// `failover N` runs ferrolb at its defaults beside keepalived at 1 s adverts, and ferrolb
/// at 10 ms probes beside keepalived at 10 ms adverts; `failover N PROBE_MS SUSPECT_MS
/// ADVERT` runs one pairing.
pub fn run(rounds: usize, args: &[String]) {
    if let [probe, suspect, advert] = args {
        let flags = [
            "--probe-period".to_string(),
            format!("{probe}ms"),
            "--suspect-to-down".to_string(),
            format!("{suspect}ms"),
        ]
        .to_vec();
        let name = format!("probe {probe} ms, suspect {suspect} ms");
        one(rounds, &name, flags, advert);
        return;
    }
    one(
        rounds,
        "defaults (probe 100 ms, suspect 60 ms)",
        Vec::new(),
        "1",
    );
    one(
        rounds,
        "fast (probe 10 ms, suspect 10 ms)",
        ["--probe-period", "10ms", "--suspect-to-down", "10ms"]
            .map(String::from)
            .to_vec(),
        "0.01",
    );
}

fn start_keepalived(lab: &mut Lab, node: &str, priority: u8, advert: &str) {
    let conf = lab.dir.join(format!("keepalived-{node}.conf"));
    std::fs::write(&conf, keepalived_config(node, priority, advert)).unwrap();
    let pid = |f: &str| {
        lab.dir
            .join(format!("{f}-{node}.pid"))
            .display()
            .to_string()
    };
    let args = vec![
        "keepalived".into(),
        "-n".into(),
        "-l".into(),
        "-D".into(),
        "-P".into(),
        "-f".into(),
        conf.display().to_string(),
        "-p".into(),
        pid("keepalived"),
        "-r".into(),
        pid("vrrp"),
        "-c".into(),
        pid("checkers"),
    ];
    lab.start(&format!("keepalived-{node}"), node, args)
        .unwrap();
}

/// Failover (event → first answer by another node) and failback (the longest time
/// unanswered in `settle` after the fault ended), per implementation.
fn report(
    log: &[Probe],
    event: &str,
    names: &[String],
    at: &[(Instant, Instant)],
    owner: &str,
    settle: Duration,
    failover: bool,
) {
    for (i, name) in names.iter().enumerate() {
        if failover {
            let gaps: Vec<Duration> = at
                .iter()
                .filter_map(|(e, _)| moved_after(log, i, *e, owner))
                .collect();
            let lost: usize = at
                .iter()
                .map(|(e, _)| lost_until_moved(log, i, *e, owner))
                .sum();
            assert_eq!(gaps.len(), at.len(), "{name}: every {event} recovered");
            println!(
                "{event}, {name}: failover (event → first answer by the next node) {} ; probes unanswered {lost}",
                percentiles(gaps)
            );
        } else {
            let during: Vec<Duration> = at
                .iter()
                .map(|(e, end)| longest_silence(log, i, *e, *end))
                .collect();
            println!(
                "{event}, {name}: longest silence during the fault {}",
                percentiles(during)
            );
        }
        let back: Vec<Duration> = at
            .iter()
            .map(|(_, end)| longest_silence(log, i, *end, *end + settle))
            .collect();
        println!(
            "{event}, {name}: failback (longest silence in {settle:?} after the fault ended) {}",
            percentiles(back)
        );
    }
}

fn one(rounds: usize, ferrolb: &str, speaker_args: Vec<String>, advert: &str) {
    let mut lab = lab_with(speaker_args, vec![VRRP_VIP.parse().unwrap()]);
    lab.apply(
        "web",
        &service("web", "l2", FERROLB_VIP.parse().unwrap(), 30080),
    )
    .unwrap();
    let ferrolb_target = SocketAddr::new(FERROLB_VIP.parse().unwrap(), 80);
    let vrrp_target = SocketAddr::new(VRRP_VIP.parse().unwrap(), 30080);
    let mut owner = None;
    assert!(wait_for(Duration::from_secs(20), || {
        owner = answered_by(&lab, ferrolb_target);
        owner.is_some()
    }));
    let owner = owner.unwrap();
    // keepalived: the same node is master (highest priority), so one event hits both.
    let priority = |node: &str, i: usize| {
        if node == owner {
            200
        } else {
            100 - i as u8 * 10
        }
    };
    for (i, node) in ["n1", "n2", "n3"].iter().enumerate() {
        start_keepalived(&mut lab, node, priority(node, i), advert);
    }
    assert!(
        wait_for(Duration::from_secs(30), || answered_by(&lab, vrrp_target)
            .as_deref()
            == Some(&owner)),
        "keepalived master on {owner}"
    );

    // Probes every 10 ms, both addresses, each on a new connection.
    let prober = Prober::start(
        &lab.ns("client-lan"),
        vec![ferrolb_target, vrrp_target],
        Duration::from_millis(10),
        Duration::from_secs(3600),
    );
    let back_on_owner = |lab: &Lab| {
        wait_for(Duration::from_secs(30), || {
            answered_by(lab, ferrolb_target).as_deref() == Some(owner.as_str())
                && answered_by(lab, vrrp_target).as_deref() == Some(owner.as_str())
        })
    };
    let outage = Duration::from_secs(if advert == "1" { 6 } else { 3 });
    // Failback is read over this long after a fault ends.
    let settle = Duration::from_secs(5);
    // The owner's switch port goes down (carrier lost, the node untouched) and comes back.
    let mut cuts = Vec::new();
    for _ in 0..rounds {
        std::thread::sleep(Duration::from_millis(500));
        let at = Instant::now();
        lab.set_switch_port(&owner, false).unwrap();
        std::thread::sleep(outage);
        lab.set_switch_port(&owner, true).unwrap();
        cuts.push((at, Instant::now()));
        std::thread::sleep(settle);
        assert!(
            back_on_owner(&lab),
            "both back on {owner}? ferrolb's address answered by {:?}, keepalived's by {:?}",
            answered_by(&lab, ferrolb_target),
            answered_by(&lab, vrrp_target)
        );
    }
    // Only the owner's gossip is dropped; the LAN works (ferrolb only: VRRP has no gossip).
    let mut partitions = Vec::new();
    for _ in 0..rounds {
        std::thread::sleep(Duration::from_millis(500));
        let at = Instant::now();
        lab.set_gossip_blocked(&owner, true).unwrap();
        std::thread::sleep(Duration::from_secs(3));
        lab.set_gossip_blocked(&owner, false).unwrap();
        partitions.push((at, Instant::now()));
        std::thread::sleep(settle);
        assert!(back_on_owner(&lab), "back on {owner} after the partition");
    }
    // The owner's speaker and its keepalived are killed (the node itself stays up).
    let mut kills = Vec::new();
    let owner_index = ["n1", "n2", "n3"].iter().position(|n| *n == owner).unwrap();
    for _ in 0..rounds {
        std::thread::sleep(Duration::from_millis(500));
        let at = Instant::now();
        lab.signal(
            &format!("speaker-{owner}"),
            libc::SIGKILL,
            Duration::from_secs(2),
        );
        lab.signal(
            &format!("keepalived-{owner}"),
            libc::SIGKILL,
            Duration::from_secs(2),
        );
        // keepalived killed leaves its address on the interface; as a crash would, and
        // the node answers for it until the next master's announcements win the client.
        std::thread::sleep(outage);
        let _ = netns::exec(
            &lab.ns(&owner),
            &[
                "ip",
                "addr",
                "del",
                &format!("{VRRP_VIP}/24"),
                "dev",
                "eth0",
            ],
        );
        lab.start_speaker(&owner).unwrap();
        start_keepalived(&mut lab, &owner, priority(&owner, owner_index), advert);
        kills.push((at, Instant::now()));
        assert!(back_on_owner(&lab), "both back on {owner}");
    }
    let log = prober.finish();
    let names = [
        format!("ferrolb {ferrolb}"),
        format!("keepalived advert_int {advert} s"),
    ];
    report(
        &log,
        "switch port down",
        &names,
        &cuts,
        &owner,
        settle,
        true,
    );
    report(
        &log,
        "gossip partition 3 s",
        &names[..1],
        &partitions,
        &owner,
        settle,
        false,
    );
    report(&log, "process killed", &names, &kills, &owner, settle, true);
}
