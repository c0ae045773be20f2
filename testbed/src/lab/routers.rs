//! The lab's routers: FRR and BIRD started from the topology, and what they hold.

use super::*;

impl Lab {
    pub(super) fn start_frr(&mut self, r: &crate::topology::Router) -> anyhow::Result<()> {
        let dir = self.dir.join(&r.name);
        crate::frr::make_dir(&dir)?;
        let conf = crate::routers::frr_config(&self.topology, r);
        std::fs::write(dir.join("bgpd.conf"), conf)?;
        std::fs::write(dir.join("zebra.conf"), format!("hostname {}\n", r.name))?;
        // zebra first: bgpd connects to its socket.
        for (daemon, ready) in [("zebra", "zserv.api"), ("bgpd", "bgpd.vty")] {
            let what = format!("{}-{daemon}", r.name);
            self.start(&what, &r.name, crate::frr::daemon_args(daemon, &dir, true))?;
            let ready = dir.join(ready);
            if !netns::wait_for(Duration::from_secs(10), || ready.exists()) {
                bail!("{daemon} did not start: {}", self.read_log(&what));
            }
        }
        Ok(())
    }

    pub(super) fn start_bird(&mut self, r: &crate::topology::Router) -> anyhow::Result<()> {
        let dir = self.dir.join(&r.name);
        std::fs::create_dir_all(&dir)?;
        let conf = crate::routers::bird_config(&self.topology, r);
        std::fs::write(dir.join("bird.conf"), conf)?;
        let d = |f: &str| dir.join(f).display().to_string();
        self.start(
            &format!("{}-bird", r.name),
            &r.name,
            vec![
                "bird".into(),
                "-f".into(),
                "-c".into(),
                d("bird.conf"),
                "-s".into(),
                d("bird.ctl"),
                "-P".into(),
                d("bird.pid"),
            ],
        )?;
        let ctl = dir.join("bird.ctl");
        if !netns::wait_for(Duration::from_secs(10), || ctl.exists()) {
            bail!(
                "bird did not start: {}",
                self.read_log(&format!("{}-bird", r.name))
            );
        }
        Ok(())
    }

    /// `vtysh -c command` on an FRR router.
    pub fn vtysh(&self, router: &str, command: &str) -> anyhow::Result<String> {
        let dir = self.dir.join(router).display().to_string();
        netns::exec_ok(
            &self.ns(router),
            &["vtysh", "--vty_socket", &dir, "-c", command],
        )
    }

    /// `birdc command` on a BIRD router.
    pub fn birdc(&self, router: &str, command: &str) -> anyhow::Result<String> {
        let ctl = self.dir.join(router).join("bird.ctl").display().to_string();
        let mut args = vec!["birdc", "-s", &ctl];
        args.extend(command.split_whitespace());
        netns::exec_ok(&self.ns(router), &args)
    }

    /// The next hops `router` installed in its kernel for `prefix`.
    pub fn kernel_next_hops(&self, router: &str, prefix: &str) -> Vec<IpAddr> {
        netns::route_next_hops(&self.ns(router), prefix)
    }

    /// Next hops of the paths `router` (FRR) holds for `prefix`.
    pub fn frr_paths(&self, router: &str, prefix: &str) -> Vec<IpAddr> {
        let afi = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        let json: serde_json::Value = self
            .vtysh(router, &format!("show bgp {afi} unicast {prefix} json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(serde_json::Value::Null);
        let mut hops: Vec<IpAddr> = json["paths"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["peer"]["peerId"].as_str()?.parse().ok())
            .collect();
        hops.sort();
        hops
    }

    /// The BGP sessions (protocol names: the nodes) `router` (BIRD) has a route for `prefix`
    /// from.
    pub fn bird_paths(&self, router: &str, prefix: &str) -> Vec<String> {
        let out = self
            .birdc(router, &format!("show route for {prefix}"))
            .unwrap_or_default();
        let mut from: Vec<String> = out
            .lines()
            .filter_map(|l| l.split_once("unicast [")?.1.split_whitespace().next())
            .map(str::to_string)
            .collect();
        from.sort();
        from
    }
}
