//! The lab's one description (`testbed/topology.yaml`): read, checked, and turned into hosts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use anyhow::{Context, bail};
use ferrolb_net::Prefix;
use serde::Deserialize;

/// The description shipped with the repository.
pub const BUILTIN: &str = include_str!("../topology.yaml");
/// The lab with a management link per node (`uplinks.yaml`).
pub const UPLINKS: &str = include_str!("../uplinks.yaml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub name: String,
    pub segments: BTreeMap<String, Segment>,
    pub nodes: Nodes,
    pub api: Api,
    pub routers: Vec<Router>,
    pub clients: Vec<Client>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    #[serde(deserialize_with = "prefix")]
    pub ipv4: Prefix,
    #[serde(deserialize_with = "prefix")]
    pub ipv6: Prefix,
}

/// A prefix read from its text (`192.0.2.0/24`).
fn prefix<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Prefix, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nodes {
    pub asn: u32,
    pub node_ports: NodePorts,
    pub hosts: Vec<Attachment>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodePorts {
    pub first: u16,
    pub count: u16,
}

impl NodePorts {
    pub fn ports(&self) -> impl Iterator<Item = u16> {
        self.first..self.first.saturating_add(self.count)
    }
}

/// A host on one segment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    pub name: String,
    pub segment: String,
    pub ipv4: IpAddr,
    pub ipv6: IpAddr,
    /// A node's second link, to its management network: its InternalIPs (the API, the
    /// speakers' gossip) are there, apart from the segment its addresses are announced on.
    #[serde(default)]
    pub mgmt: Option<Link>,
}

impl Attachment {
    /// The node's InternalIPs: on its management link when it has one.
    pub fn internal(&self) -> (IpAddr, IpAddr) {
        match &self.mgmt {
            Some(m) => (m.ipv4, m.ipv6),
            None => (self.ipv4, self.ipv6),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    pub name: String,
    pub segment: String,
    pub ipv4: IpAddr,
    pub ipv6: IpAddr,
    pub port: u16,
    pub controllers: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Daemon {
    Frr,
    Bird,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Router {
    pub name: String,
    pub daemon: Daemon,
    pub asn: u32,
    pub links: Vec<Link>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub segment: String,
    pub ipv4: IpAddr,
    pub ipv6: IpAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Client {
    pub name: String,
    pub segment: String,
    pub ipv4: IpAddr,
    pub ipv6: IpAddr,
    /// The router this client sends everything else to.
    pub gateway: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Node,
    Api,
    Router(Daemon),
    Client,
}

/// One machine of the lab, whatever its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub role: Role,
    pub links: Vec<HostLink>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLink {
    pub segment: String,
    pub ipv4: IpAddr,
    pub ipv6: IpAddr,
}

impl Topology {
    /// The Kubernetes nodes' names, in the description's order.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.hosts.iter().map(|n| n.name.clone()).collect()
    }

    pub fn parse(text: &str) -> anyhow::Result<Topology> {
        let t: Topology = serde_yaml::from_str(text).context("topology")?;
        t.check()?;
        Ok(t)
    }

    pub fn builtin() -> Topology {
        Topology::parse(BUILTIN).expect("the shipped topology is valid (tested)")
    }

    /// Nodes with two links: announcements on one, the API and gossip on the other.
    pub fn uplinks() -> Topology {
        Topology::parse(UPLINKS).expect("the shipped topology is valid (tested)")
    }

    /// Every host: nodes, the API host, routers, clients, in that order.
    pub fn hosts(&self) -> Vec<Host> {
        let one = |a: &str, segment: &str, ipv4, ipv6, role| Host {
            name: a.to_string(),
            role,
            links: vec![HostLink {
                segment: segment.to_string(),
                ipv4,
                ipv6,
            }],
        };
        let mut hosts: Vec<Host> = self
            .nodes
            .hosts
            .iter()
            .map(|n| {
                let mut host = one(&n.name, &n.segment, n.ipv4, n.ipv6, Role::Node);
                host.links.extend(n.mgmt.iter().map(|m| HostLink {
                    segment: m.segment.clone(),
                    ipv4: m.ipv4,
                    ipv6: m.ipv6,
                }));
                host
            })
            .collect();
        hosts.push(one(
            &self.api.name,
            &self.api.segment,
            self.api.ipv4,
            self.api.ipv6,
            Role::Api,
        ));
        hosts.extend(self.routers.iter().map(|r| {
            Host {
                name: r.name.clone(),
                role: Role::Router(r.daemon),
                links: r
                    .links
                    .iter()
                    .map(|l| HostLink {
                        segment: l.segment.clone(),
                        ipv4: l.ipv4,
                        ipv6: l.ipv6,
                    })
                    .collect(),
            }
        }));
        hosts.extend(
            self.clients
                .iter()
                .map(|c| one(&c.name, &c.segment, c.ipv4, c.ipv6, Role::Client)),
        );
        hosts
    }

    pub fn router(&self, name: &str) -> Option<&Router> {
        self.routers.iter().find(|r| r.name == name)
    }

    /// A router's addresses on `segment`.
    pub fn router_on(&self, router: &str, segment: &str) -> Option<&Link> {
        self.router(router)?
            .links
            .iter()
            .find(|l| l.segment == segment)
    }

    /// The segments (other than `on`) each router leads to, with its addresses on `on`: the
    /// routes a host on `on` needs to reach the clients behind the routers.
    pub fn routes_from(&self, on: &str) -> Vec<(String, &Link)> {
        let mut routes = Vec::new();
        for r in &self.routers {
            let Some(via) = r.links.iter().find(|l| l.segment == on) else {
                continue;
            };
            for l in r.links.iter().filter(|l| l.segment != on) {
                routes.push((l.segment.clone(), via));
            }
        }
        routes
    }

    /// The other routers' segments a router is not on, each through a segment both are on:
    /// the static routes that let clients behind different routers reach each other.
    pub fn router_routes(&self, router: &str) -> Vec<(String, &Link)> {
        let Some(me) = self.router(router) else {
            return Vec::new();
        };
        let mine: Vec<&str> = me.links.iter().map(|l| l.segment.as_str()).collect();
        let mut routes = Vec::new();
        for other in self.routers.iter().filter(|r| r.name != router) {
            let Some(via) = other
                .links
                .iter()
                .find(|l| mine.contains(&l.segment.as_str()))
            else {
                continue;
            };
            for l in other
                .links
                .iter()
                .filter(|l| !mine.contains(&l.segment.as_str()))
            {
                routes.push((l.segment.clone(), via));
            }
        }
        routes
    }

    fn check(&self) -> anyhow::Result<()> {
        for (name, s) in &self.segments {
            if !s.ipv4.is_ipv4() || s.ipv6.is_ipv4() {
                bail!("segment {name}: ipv4 and ipv6 must be of their family");
            }
        }
        let mut names = BTreeSet::new();
        let mut addresses = BTreeSet::new();
        for host in self.hosts() {
            if !names.insert(host.name.clone()) {
                bail!("host name {} used twice", host.name);
            }
            if host.name.len() > 11
                || !host
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                bail!(
                    "host name {:?}: up to 11 letters, digits and dashes",
                    host.name
                );
            }
            for l in &host.links {
                let Some(segment) = self.segments.get(&l.segment) else {
                    bail!("{}: no segment {}", host.name, l.segment);
                };
                for (a, p) in [(l.ipv4, segment.ipv4), (l.ipv6, segment.ipv6)] {
                    if !p.contains_address(a) {
                        bail!("{}: {a} is not in segment {}", host.name, l.segment);
                    }
                    if !addresses.insert(a) {
                        bail!("{}: address {a} used twice", host.name);
                    }
                }
            }
        }
        for c in &self.clients {
            if self.router_on(&c.gateway, &c.segment).is_none() {
                bail!(
                    "client {}: gateway {} is not on segment {}",
                    c.name,
                    c.gateway,
                    c.segment
                );
            }
        }
        if self.api.controllers == 0 {
            bail!("api: at least one controller");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uplinks_topology_is_valid_and_its_nodes_have_two_links() {
        let t = Topology::uplinks();
        let hosts = t.hosts();
        let n1 = hosts.iter().find(|h| h.name == "n1").unwrap();
        assert_eq!(n1.links.len(), 2);
        assert_ne!(n1.links[0].segment, n1.links[1].segment);
        assert_eq!(t.nodes.hosts[0].internal().0, n1.links[1].ipv4);
        assert_eq!(t.api.segment, n1.links[1].segment);
    }

    #[test]
    fn the_shipped_topology_is_valid() {
        let t = Topology::builtin();
        assert_eq!(t.nodes.hosts.len(), 3);
        assert_eq!(t.hosts().len(), 3 + 1 + 2 + 3);
        // A node reaches the clients behind both routers.
        let routes: Vec<String> = t.routes_from("lan").into_iter().map(|(s, _)| s).collect();
        assert_eq!(routes, ["edge-frr", "edge-bird"]);
    }

    #[test]
    fn mistakes_are_named() {
        let bad = BUILTIN.replace("ipv4: 192.0.2.12,", "ipv4: 198.51.100.12,");
        let e = Topology::parse(&bad).unwrap_err();
        assert!(
            format!("{e:#}").contains("198.51.100.12 is not in segment lan"),
            "{e:#}"
        );
        let bad = BUILTIN.replace("gateway: bird", "gateway: frr");
        let e = Topology::parse(&bad).unwrap_err();
        assert!(
            format!("{e:#}").contains("gateway frr is not on segment edge-bird"),
            "{e:#}"
        );
        let bad = BUILTIN.replace("name: n3,", "name: n1,");
        assert!(format!("{:#}", Topology::parse(&bad).unwrap_err()).contains("used twice"));
        let bad = BUILTIN.replace("asn: 64512", "asn: 64512\n  color: red");
        assert!(Topology::parse(&bad).is_err());
    }
}
