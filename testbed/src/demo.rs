//! The demo: `examples/lab/` applied to a running lab, then, for each Service, its address,
//! the nodes announcing it and how, and what a client got through it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use crate::lab::Lab;
use crate::netns;

/// One line of the demo's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub service: String,
    pub address: IpAddr,
    pub port: u16,
    /// "n1 (L2)", "n1, n2, n3 (BGP)".
    pub announced: String,
    pub client: String,
    /// What the client got: the node's listener names itself and the client it saw.
    pub answer: Option<String>,
}

/// The Services of `namespace`: (name, addresses, first port).
fn services(lab: &Lab, namespace: &str) -> anyhow::Result<Vec<(String, Vec<IpAddr>, u16)>> {
    let out = lab.kubectl(&["get", "services", "-n", namespace, "-o", "json"])?;
    let list: Value = serde_json::from_str(&out)?;
    let mut found = Vec::new();
    for s in list["items"].as_array().cloned().unwrap_or_default() {
        let name = s["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ips: Vec<IpAddr> = s["status"]["loadBalancer"]["ingress"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["ip"].as_str()?.parse().ok())
            .collect();
        let port = s["spec"]["ports"][0]["port"].as_u64().unwrap_or(80) as u16;
        found.push((name, ips, port));
    }
    Ok(found)
}

/// Per Service name, how each node announces it, from the speakers' own reports.
fn announcements(lab: &Lab, namespace: &str) -> BTreeMap<String, Vec<String>> {
    let mut by_service: BTreeMap<String, BTreeMap<&'static str, Vec<String>>> = BTreeMap::new();
    for (plural, how) in [("servicel2statuses", "L2"), ("servicebgpstatuses", "BGP")] {
        let Ok(out) = lab.kubectl(&["get", plural, "-n", "ferrolb-system", "-o", "json"]) else {
            continue;
        };
        let Ok(list) = serde_json::from_str::<Value>(&out) else {
            continue;
        };
        for r in list["items"].as_array().cloned().unwrap_or_default() {
            let st = &r["status"];
            if st["serviceNamespace"].as_str() != Some(namespace) {
                continue;
            }
            let service = st["serviceName"].as_str().unwrap_or_default().to_string();
            let node = st["node"].as_str().unwrap_or_default().to_string();
            by_service
                .entry(service)
                .or_default()
                .entry(how)
                .or_default()
                .push(node);
        }
    }
    by_service
        .into_iter()
        .map(|(s, modes)| {
            let text = modes
                .into_iter()
                .map(|(how, mut nodes)| {
                    nodes.sort();
                    format!("{} ({how})", nodes.join(", "))
                })
                .collect();
            (s, text)
        })
        .collect()
}

/// The clients that should reach `address`: the one on the nodes' segment for an address of
/// that segment (L2), the ones behind the routers otherwise (BGP).
fn clients_for(lab: &Lab, address: IpAddr) -> Vec<String> {
    let t = &lab.topology;
    let lan = &t.segments[&t.nodes.hosts[0].segment];
    let segment = if address.is_ipv4() {
        lan.ipv4
    } else {
        lan.ipv6
    };
    let on_lan = segment.contains_address(address);
    t.clients
        .iter()
        .filter(|c| (c.segment == t.nodes.hosts[0].segment) == on_lan)
        .map(|c| c.name.clone())
        .collect()
}

/// GETs `/` from `client`'s namespace until answered or `limit` passes.
pub fn ask(lab: &Lab, client: &str, address: IpAddr, port: u16, limit: Duration) -> Option<String> {
    let ns = lab.ns(client);
    let deadline = Instant::now() + limit;
    loop {
        let target = SocketAddr::new(address, port);
        let answer = netns::in_ns(&ns, move || crate::client::http_get(target, "/"))
            .ok()
            .flatten()
            .filter(|(code, _)| *code == 200)
            .map(|(_, body)| body.trim().to_string());
        if answer.is_some() || Instant::now() >= deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Applies `examples` (a directory of manifests) and waits until every Service in
/// `namespace` shows addresses; then asks each from its clients.
pub fn run(lab: &Lab, examples: &Path, namespace: &str) -> anyhow::Result<Vec<Row>> {
    lab.kubectl(&["apply", "-f", &examples.display().to_string()])
        .context("applying the examples")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let services = loop {
        let s = services(lab, namespace)?;
        if (!s.is_empty() && s.iter().all(|(_, ips, _)| !ips.is_empty()))
            || Instant::now() >= deadline
        {
            break s;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut rows = Vec::new();
    // Reports are written off the announcing path; give them a moment to show every node.
    std::thread::sleep(Duration::from_secs(2));
    for (name, ips, port) in services {
        for address in ips {
            for client in clients_for(lab, address) {
                let answer = ask(lab, &client, address, port, Duration::from_secs(20));
                rows.push(Row {
                    service: name.clone(),
                    address,
                    port,
                    announced: String::new(),
                    client,
                    answer,
                });
            }
        }
    }
    let announced = announcements(lab, namespace);
    for r in &mut rows {
        r.announced = announced
            .get(&r.service)
            .map(|a| a.join(" + "))
            .unwrap_or_else(|| "nobody".into());
    }
    Ok(rows)
}

/// The table as printed.
pub fn table(rows: &[Row]) -> String {
    let mut lines = vec![[
        "SERVICE".to_string(),
        "ADDRESS".into(),
        "ANNOUNCED BY".into(),
        "CLIENT".into(),
        "ANSWER (node, client seen)".into(),
    ]];
    for r in rows {
        let address = match r.address {
            IpAddr::V6(a) => format!("[{a}]:{}", r.port),
            IpAddr::V4(a) => format!("{a}:{}", r.port),
        };
        lines.push([
            r.service.clone(),
            address,
            r.announced.clone(),
            r.client.clone(),
            r.answer.clone().unwrap_or_else(|| "(no answer)".into()),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    lines
        .iter()
        .map(|l| {
            l.iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}
