//! What an implementation costs the nodes and the API server: its speakers' memory (resident,
//! the largest of the three) and CPU (seconds per minute, the mean of the three), its
//! controller's memory, and the requests its ServiceAccounts make per minute (kube-apiserver's
//! audit log). Measured over a minute idle (one Service), over a minute with 1,000 more
//! (IPv6 single-stack: the IPv4 documentation ranges hold too few cluster IPs and addresses),
//! and while 100 Services are created and deleted.

use std::collections::BTreeMap;

use super::*;
use ferrolb_testbed::memory::{self, Memory};

const WINDOW: Duration = Duration::from_secs(60);
const SCALE: usize = 1000;
const CHURN: usize = 100;

#[derive(Default)]
struct Usage {
    speaker_rss_mib: f64,
    speaker_cpu_per_min: f64,
    controller_rss_mib: Option<f64>,
    api_per_min: f64,
}

pub(super) struct Load {
    who: String,
    idle: Usage,
    scale: Usage,
    /// From creating the 1,000 Services to every one having an address in its status.
    assigned: Option<Duration>,
    /// Requests while 100 Services were created, given addresses and deleted, and how long
    /// that took.
    churn: (u64, Duration),
}

fn mib(pid: u32) -> f64 {
    memory::kib(Some(pid), Memory::Resident) as f64 / 1024.0
}

/// The implementation's requests in the audit log since `mark`.
fn requests(lab: &Lab, setting: Setting, mark: u64) -> u64 {
    let by_user: BTreeMap<String, u64> = lab.audit_log().since(mark).unwrap();
    setting.users().iter().filter_map(|u| by_user.get(u)).sum()
}

/// Memory, CPU and API requests over [`WINDOW`].
fn window(lab: &Lab, setting: Setting) -> Usage {
    let speakers: Vec<u32> = NODES
        .iter()
        .filter_map(|n| lab.pid(&setting.speaker(n)))
        .collect();
    let controllers: Vec<u32> = setting
        .controllers(lab)
        .iter()
        .filter_map(|c| lab.pid(c))
        .collect();
    let cpu = |pids: &[u32]| pids.iter().map(|p| memory::cpu_seconds(*p)).sum::<f64>();
    let before = cpu(&speakers);
    let mark = lab.audit_log().mark();
    let started = Instant::now();
    std::thread::sleep(WINDOW);
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let used = cpu(&speakers) - before;
    Usage {
        speaker_rss_mib: speakers.iter().map(|p| mib(*p)).fold(0.0, f64::max),
        speaker_cpu_per_min: used / speakers.len().max(1) as f64 / minutes,
        controller_rss_mib: (!controllers.is_empty())
            .then(|| controllers.iter().map(|p| mib(*p)).fold(0.0, f64::max)),
        api_per_min: requests(lab, setting, mark) as f64 / minutes,
    }
}

/// Waits, at most `limit`, until the implementation's API requests have stopped falling after a
/// burst of Services (the announcements made, the first reports written): two 2 s windows in a
/// row within a quarter of each other, or two apart at most.
fn wait_steady(lab: &Lab, setting: Setting, limit: Duration) -> bool {
    let log = lab.audit_log();
    let mut mark = log.mark();
    let mut previous: Option<u64> = None;
    wait_every(limit, Duration::from_secs(2), || {
        let count = requests(lab, setting, mark);
        mark = log.mark();
        let steady = previous.is_some_and(|p| p.abs_diff(count) <= 2 || p.abs_diff(count) * 4 <= p);
        previous = Some(count);
        steady
    })
}

/// `count` IPv6 Services in namespace `namespace`, each with an endpoint on every node;
/// kube-vip's with addresses from `first` on (it has no pool of its own).
pub(super) fn services(setting: Setting, namespace: &str, count: usize, first: u32) -> String {
    let mut yaml = String::new();
    for i in 0..count {
        let annotation = match setting.who {
            Who::Ferrolb => "ferrolb.io/address-pool: scale".to_string(),
            Who::MetalLb => String::new(),
            Who::KubeVip => format!(
                "kube-vip.io/loadbalancerIPs: \"2001:db8:1000::{:x}\"",
                first + i as u32
            ),
        };
        yaml += &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: {namespace}, annotations: {{{annotation}}}}}\nspec: {{type: LoadBalancer, ipFamilies: [IPv6], ipFamilyPolicy: SingleStack, ports: [{{port: 80}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s{i}-1, namespace: {namespace}, labels: {{kubernetes.io/service-name: s{i}}}}}\naddressType: IPv6\nports: [{{port: 8080, protocol: TCP}}]\nendpoints:\n- {{addresses: [\"2001:db8:fe::1\"], conditions: {{ready: true}}, nodeName: n1}}\n- {{addresses: [\"2001:db8:fe::2\"], conditions: {{ready: true}}, nodeName: n2}}\n- {{addresses: [\"2001:db8:fe::3\"], conditions: {{ready: true}}, nodeName: n3}}\n---\n"
        );
    }
    yaml
}

/// How many Services in `namespace` have an address in their status.
fn assigned(lab: &Lab, namespace: &str) -> usize {
    lab.kubectl(&[
        "get",
        "services",
        "-n",
        namespace,
        "-o",
        "jsonpath={range .items[*]}{.status.loadBalancer.ingress[0].ip}{\"\\n\"}{end}",
    ])
    .map_or(0, |out| {
        out.lines().filter(|l| !l.trim().is_empty()).count()
    })
}

/// Creates `count` Services in `namespace` (kubectl, one request each: about a minute per
/// thousand objects here); how long from the last one created until all have addresses
/// (None: not within `limit`).
fn create_all(
    lab: &Lab,
    setting: Setting,
    namespace: &str,
    count: usize,
    first: u32,
    limit: Duration,
) -> Option<Duration> {
    let file = lab.dir.join(format!("{namespace}.yaml"));
    std::fs::write(&file, services(setting, namespace, count, first)).unwrap();
    // Left from another implementation's turn, or new.
    let _ = lab.kubectl(&["create", "namespace", namespace]);
    lab.kubectl(&["create", "-f", &file.display().to_string()])
        .unwrap();
    let started = Instant::now();
    wait_every(limit, Duration::from_millis(500), || {
        assigned(lab, namespace) == count
    })
    .then(|| started.elapsed())
}

/// Deletes every Service and EndpointSlice in `namespace`; returns once none is left.
pub(super) fn delete_all(lab: &Lab, namespace: &str) {
    lab.kubectl(&[
        "delete",
        "services,endpointslices",
        "--all",
        "-n",
        namespace,
        "--wait=false",
    ])
    .unwrap();
    // kubectl's own wait follows each object in turn, minutes for a thousand.
    let gone = wait_every(Duration::from_secs(300), Duration::from_secs(1), || {
        lab.kubectl(&["get", "services", "-n", namespace, "-o", "name"])
            .is_ok_and(|out| out.trim().is_empty())
    });
    assert!(gone, "Services left in {namespace}");
}

pub(super) fn measure(lab: &Lab, setting: Setting) -> Load {
    let idle = window(lab, setting);
    let assigned = create_all(lab, setting, "scale", SCALE, 1, Duration::from_secs(300));
    if !wait_steady(lab, setting, Duration::from_secs(120)) {
        eprintln!(
            "{}: its API requests still falling after 120 s",
            setting.label
        );
    }
    let scale = window(lab, setting);
    let mark = lab.audit_log().mark();
    let started = Instant::now();
    let churned = create_all(
        lab,
        setting,
        "churn",
        CHURN,
        SCALE as u32 + 1,
        Duration::from_secs(120),
    );
    delete_all(lab, "churn");
    let took = started.elapsed();
    let churn = (requests(lab, setting, mark), took);
    if churned.is_none() {
        eprintln!(
            "{}: not every churned Service got an address",
            setting.label
        );
    }
    delete_all(lab, "scale");
    Load {
        who: setting.label.to_string(),
        idle,
        scale,
        assigned,
        churn,
    }
}

pub(super) fn print(rows: &[Load]) {
    println!(
        "Load, over a minute each: speaker memory (largest of 3, resident) and CPU (mean, seconds per minute), controller memory, API requests per minute by the implementation's ServiceAccounts:"
    );
    println!(
        "| implementation | speaker RSS idle / 1,000 Services | speaker CPU s/min idle / 1,000 | controller RSS idle / 1,000 | API req/min idle / 1,000 | 1,000 Services addressed, after the last was created | 100 Services created and deleted: requests (per min) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for l in rows {
        let controller = |u: &Usage| {
            u.controller_rss_mib
                .map_or("none".to_string(), |m| format!("{m:.1} MiB"))
        };
        let (count, took) = l.churn;
        println!(
            "| {} | {:.1} / {:.1} MiB | {:.2} / {:.2} | {} / {} | {:.0} / {:.0} | {} | {count} in {:.0} s ({:.0}/min) |",
            l.who,
            l.idle.speaker_rss_mib,
            l.scale.speaker_rss_mib,
            l.idle.speaker_cpu_per_min,
            l.scale.speaker_cpu_per_min,
            controller(&l.idle),
            controller(&l.scale),
            l.idle.api_per_min,
            l.scale.api_per_min,
            l.assigned
                .map_or("not within 300 s".to_string(), |d| format!(
                    "{:.1} s",
                    d.as_secs_f64()
                )),
            took.as_secs_f64(),
            count as f64 / took.as_secs_f64() * 60.0
        );
    }
}
