//! Create → first answered request, L2 (the client on the nodes' segment) or BGP (behind FRR):
//! a Service is created (its EndpointSlice already there) and the client, its neighbour entry
//! for the address flushed, tries a new connection every 2 ms until one is answered; then the Service goes and the address falls silent before the
//! next. Each implementation gets the same address for all of them, the one its `web` Service
//! holds outside this part.

use super::*;

/// Forgets the client's link-layer address for `ip`: the next connection must ask who has it.
fn flush_neighbour(lab: &Lab, client: &str, ip: IpAddr) {
    let _ = netns::ip(&[
        "-n",
        &lab.ns(client),
        "neigh",
        "flush",
        "to",
        &ip.to_string(),
    ]);
}

/// Deletes Service `name` and its slice; returns once the client gets no answer at `target`.
fn delete_and_wait_silent(lab: &Lab, client: &str, name: &str, target: SocketAddr) {
    lab.kubectl(&["delete", "service", "-n", "bench", name, "--wait=true"])
        .unwrap();
    let _ = lab.kubectl(&[
        "delete",
        "endpointslice",
        "-n",
        "bench",
        &format!("{name}-1"),
    ]);
    let silent = wait_for(Duration::from_secs(60), || {
        flush_neighbour(lab, client, target.ip());
        answered_from(&lab.ns(client), target).is_none()
    });
    assert!(silent, "{target} still answered after {name} went");
}

pub(super) fn first_answers(lab: &Lab, setting: Setting, n: usize) -> (String, Vec<Duration>) {
    let ip = setting.vip();
    let target = setting.target();
    let client = setting.client();
    delete_and_wait_silent(lab, client, "web", target);
    let mut samples = Vec::new();
    for i in 0..n {
        let name = format!("create-{i}");
        let yaml = setting.service(&name, ip);
        let (service, slice) = yaml.split_once("---\n").unwrap();
        lab.apply(&format!("{name}-slice"), slice).unwrap();
        let body: serde_json::Value = serde_yaml::from_str(service).unwrap();
        flush_neighbour(lab, client, ip);
        let first = first_answer(&lab.ns(client), target, Duration::from_secs(60));
        let created = Instant::now();
        assert_eq!(
            post(lab, "/api/v1/namespaces/bench/services", body.to_string()),
            201
        );
        let Some(at) = first.join().unwrap() else {
            panic!("{}: {name} ({ip}) never answered", setting.label);
        };
        samples.push(at - created);
        delete_and_wait_silent(lab, client, &name, target);
    }
    lab.apply("web", &setting.service("web", ip)).unwrap();
    (setting.label.to_string(), samples)
}

pub(super) fn print(rows: &[(String, Vec<Duration>)], n: usize) {
    println!(
        "Create → first answered request, {n} Services one after another (a new connection every 2 ms):"
    );
    println!("| implementation | p50 / p99 / max |");
    println!("|---|---|");
    for (who, samples) in rows {
        println!("| {who} | {} |", spread(samples));
    }
}
