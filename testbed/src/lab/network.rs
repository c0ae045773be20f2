//! The lab's network: namespaces, bridges, links, addresses and routes built from the
//! topology, and the faults tests cause in it (a switch port down, gossip blocked).

use super::*;

impl Lab {
    pub(super) fn build(&mut self) -> anyhow::Result<()> {
        let hosts = self.topology.hosts();
        let sw = self.ns("sw");
        self.record_ns(&sw)?;
        let segments: Vec<String> = self.topology.segments.keys().cloned().collect();
        for i in 0..segments.len() {
            let br = format!("br{i}");
            netns::ip(&["-n", &sw, "link", "add", &br, "type", "bridge"])?;
            netns::ip(&["-n", &sw, "link", "set", &br, "up"])?;
        }
        for (h, host) in hosts.iter().enumerate() {
            let ns = self.ns(&host.name);
            self.record_ns(&ns)?;
            netns::ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            for (i, link) in host.links.iter().enumerate() {
                let seg = segments
                    .iter()
                    .position(|s| *s == link.segment)
                    .context("segment")?;
                let port = format!("h{h}l{i}");
                let dev = format!("eth{i}");
                netns::ip(&[
                    "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", &dev, "netns",
                    &ns,
                ])?;
                netns::ip(&[
                    "-n",
                    &sw,
                    "link",
                    "set",
                    &port,
                    "master",
                    &format!("br{seg}"),
                ])?;
                netns::ip(&["-n", &sw, "link", "set", &port, "up"])?;
                netns::ip(&[
                    "-n",
                    &ns,
                    "link",
                    "set",
                    &dev,
                    "address",
                    &format_mac(host_mac(h, i)),
                ])?;
                let seg = &self.topology.segments[&link.segment];
                let (len4, len6) = (seg.ipv4.len(), seg.ipv6.len());
                netns::ip(&[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{}/{len4}", link.ipv4),
                    "dev",
                    &dev,
                ])?;
                netns::ip(&[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{}/{len6}", link.ipv6),
                    "dev",
                    &dev,
                    "nodad",
                ])?;
                netns::ip(&["-n", &ns, "link", "set", &dev, "up"])?;
            }
            self.routes(host)?;
        }
        Ok(())
    }

    /// Routes and forwarding per role.
    pub(super) fn routes(&self, host: &Host) -> anyhow::Result<()> {
        let ns = self.ns(&host.name);
        let route = |net: &str, via: IpAddr| -> anyhow::Result<()> {
            netns::ip(&["-n", &ns, "route", "add", net, "via", &via.to_string()])
        };
        // Both families of each segment, through the router's address on this host's segment.
        let segment_routes = |routes: Vec<(String, &crate::topology::Link)>| -> anyhow::Result<()> {
            for (segment, via) in routes {
                let s = &self.topology.segments[&segment];
                route(&s.ipv4.to_string(), via.ipv4)?;
                route(&s.ipv6.to_string(), via.ipv6)?;
            }
            Ok(())
        };
        match host.role {
            Role::Client => {
                let c = self
                    .topology
                    .clients
                    .iter()
                    .find(|c| c.name == host.name)
                    .context("client")?;
                let gw = self
                    .topology
                    .router_on(&c.gateway, &c.segment)
                    .context("gateway")?;
                route("default", gw.ipv4)?;
                netns::ip(&[
                    "-n",
                    &ns,
                    "-6",
                    "route",
                    "add",
                    "default",
                    "via",
                    &gw.ipv6.to_string(),
                ])?;
            }
            Role::Node | Role::Api => {
                segment_routes(self.topology.routes_from(&host.links[0].segment))?;
            }
            Role::Router(_) => {
                netns::sysctl(&ns, "net.ipv4.ip_forward", "1")?;
                netns::sysctl(&ns, "net.ipv6.conf.all.forwarding", "1")?;
                segment_routes(self.topology.router_routes(&host.name))?;
            }
        }
        Ok(())
    }

    /// The MAC of `host`'s first interface (set when the lab is built).
    pub fn mac(&self, host: &str) -> Option<String> {
        let h = self.host_index(host).ok()?;
        Some(format_mac(host_mac(h, 0)))
    }

    /// Where `host` is in the topology's host list: its switch ports and MACs are numbered so.
    pub(crate) fn host_index(&self, host: &str) -> anyhow::Result<usize> {
        self.topology
            .hosts()
            .iter()
            .position(|x| x.name == host)
            .with_context(|| format!("no host {host}"))
    }

    /// Takes `host`'s switch port down or up, as a pulled cable or a failed switch port does:
    /// the host's own interface stays administratively up and loses carrier, and keeps its
    /// addresses and routes (a cut inside the host would remove them).
    pub fn set_switch_port(&self, host: &str, up: bool) -> anyhow::Result<()> {
        self.set_switch_port_of(host, 0, up)
    }

    /// [`Self::set_switch_port`] of the host's link number `link` (0: its first).
    pub fn set_switch_port_of(&self, host: &str, link: usize, up: bool) -> anyhow::Result<()> {
        let h = self.host_index(host)?;
        let state = if up { "up" } else { "down" };
        netns::ip(&[
            "-n",
            &self.ns("sw"),
            "link",
            "set",
            &format!("h{h}l{link}"),
            state,
        ])
    }

    /// Drops (or lets through again) the speakers' gossip to and from `host`, and nothing
    /// else: its LAN, ARP and API traffic go on.
    pub fn set_gossip_blocked(&self, host: &str, blocked: bool) -> anyhow::Result<()> {
        const TABLE: &str = "ftb_gossip_cut";
        let ns = self.ns(host);
        if blocked {
            let rules = format!(
                "table inet {TABLE} {{\n chain input {{ type filter hook input priority -10; udp dport {GOSSIP_PORT} drop; }}\n chain output {{ type filter hook output priority -10; udp dport {GOSSIP_PORT} drop; }}\n}}\n"
            );
            let file = self.dir.join(format!("{TABLE}-{host}.nft"));
            std::fs::write(&file, rules)?;
            netns::exec_ok(&ns, &["nft", "-f", &file.display().to_string()])?;
        } else {
            netns::exec_ok(&ns, &["nft", "delete", "table", "inet", TABLE])?;
        }
        Ok(())
    }

    /// Drops (or lets through again) the gossip between `host` and the hosts at `peers` only:
    /// one side of a partition, which may leave `host` talking to others.
    pub fn set_gossip_cut(&self, host: &str, peers: &[IpAddr], cut: bool) -> anyhow::Result<()> {
        const TABLE: &str = "ftb_gossip_split";
        let ns = self.ns(host);
        if !cut {
            netns::exec_ok(&ns, &["nft", "delete", "table", "inet", TABLE])?;
            return Ok(());
        }
        let mut input = String::new();
        let mut output = String::new();
        for p in peers {
            let family = if p.is_ipv4() { "ip" } else { "ip6" };
            input.push_str(&format!(
                "  {family} saddr {p} udp dport {GOSSIP_PORT} drop\n"
            ));
            output.push_str(&format!(
                "  {family} daddr {p} udp dport {GOSSIP_PORT} drop\n"
            ));
        }
        let rules = format!(
            "table inet {TABLE} {{\n chain input {{ type filter hook input priority -10;\n{input} }}\n chain output {{ type filter hook output priority -10;\n{output} }}\n}}\n"
        );
        let file = self.dir.join(format!("{TABLE}-{host}.nft"));
        std::fs::write(&file, rules)?;
        netns::exec_ok(&ns, &["nft", "-f", &file.display().to_string()])?;
        Ok(())
    }

    /// POSTs `body` to fake-apiserver's knob `/fake/<knob>` (a path with its query), from the
    /// API host: its fault injection, dropped watches, compaction, restart.
    pub fn fake_knob(&self, knob: &str, body: &str) -> anyhow::Result<String> {
        let api = &self.topology.api;
        let addr = std::net::SocketAddr::new(api.ipv4, api.port);
        let path = format!("/fake/{knob}");
        let body = body.to_string();
        let answer = netns::in_ns(&self.ns(&api.name), move || {
            crate::client::http_post(addr, &path, &body)
        })?;
        match answer {
            Some((200, text)) => Ok(text),
            Some((code, text)) => bail!("/fake/{knob}: {code} {text}"),
            None => bail!("/fake/{knob}: no answer"),
        }
    }

    /// The MACs that answer one ARP request for `target` from `client`, within `listen`.
    pub fn arp_answerers(
        &self,
        client: &str,
        target: std::net::Ipv4Addr,
        listen: Duration,
    ) -> anyhow::Result<std::collections::BTreeSet<String>> {
        let h = self.host_index(client)?;
        let host = &self.topology.hosts()[h];
        let IpAddr::V4(ip) = host.links[0].ipv4 else {
            anyhow::bail!("{client} has no IPv4 address");
        };
        let mac = host_mac(h, 0);
        netns::in_ns(&self.ns(client), move || {
            crate::arp::answerers("eth0", mac, ip, target, listen)
        })?
    }

    /// The MAC `client`'s neighbour table holds for `addr` (a usable entry only).
    pub fn client_neighbour(&self, client: &str, addr: IpAddr) -> Option<String> {
        netns::neighbour(&self.ns(client), &addr.to_string())
    }
}
