//! What users do meanwhile: Services created, deleted and changed (pool, traffic policy, port,
//! sharing key), endpoints moved between nodes. The model is pure; the runner applies its
//! manifests.

use super::schedule::Rng;

/// The namespace a chaos run's Services live in.
pub const NAMESPACE: &str = "chaos";
/// The lab's L2 pool holds 8 IPv4 addresses: leave room so every Service gets one.
const MAX_L2_ADDRESSES: usize = 6;
const MAX_SERVICES: usize = 10;
const MIN_SERVICES: usize = 4;

/// A Service as the runner wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChurnService {
    pub name: String,
    /// `l2` or `bgp`: the lab's pools.
    pub pool: &'static str,
    pub local: bool,
    pub port: u16,
    /// Fixed, in the range every node's listener answers.
    pub node_port: u16,
    pub endpoints: Vec<String>,
    pub sharing_key: Option<String>,
}

impl ChurnService {
    /// Its Service and EndpointSlice.
    pub fn manifest(&self) -> String {
        let mut annotations = format!("ferrolb.io/address-pool: {}", self.pool);
        if let Some(k) = &self.sharing_key {
            annotations.push_str(&format!(", ferrolb.io/allow-shared-ip: {k}"));
        }
        let endpoints: Vec<String> = self
            .endpoints
            .iter()
            .map(|n| {
                let i: u8 = n
                    .trim_start_matches(|c: char| !c.is_ascii_digit())
                    .parse()
                    .unwrap_or(0);
                format!(
                    "- {{addresses: [203.0.113.{}], conditions: {{ready: true}}, nodeName: {n}}}",
                    200 + i
                )
            })
            .collect();
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {NAMESPACE}, annotations: {{{annotations}}}}}\nspec: {{type: LoadBalancer, externalTrafficPolicy: {policy}, ports: [{{port: {port}, protocol: TCP, nodePort: {np}}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: {NAMESPACE}, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{port: 8080, protocol: TCP}}]\nendpoints:\n{eps}\n",
            name = self.name,
            policy = if self.local { "Local" } else { "Cluster" },
            port = self.port,
            np = self.node_port,
            eps = if endpoints.is_empty() {
                "[]".into()
            } else {
                endpoints.join("\n")
            },
        )
    }
}

/// One change to the Services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Applied: new Services (one, or a pair sharing an address).
    Create(Vec<ChurnService>),
    Delete(String),
    /// Applied: the Service with its new spec; `may_move` when the change may give it another
    /// address (its pool, its sharing key).
    Update {
        service: ChurnService,
        may_move: bool,
        what: String,
    },
}

/// The Services the run keeps, and the next change to them.
#[derive(Debug)]
pub struct Churn {
    pub services: Vec<ChurnService>,
    nodes: Vec<String>,
    next_name: u32,
    free_node_ports: Vec<u16>,
}

impl Churn {
    pub fn new(nodes: &[String]) -> Churn {
        Churn {
            services: Vec::new(),
            nodes: nodes.to_vec(),
            next_name: 1,
            // 30080-30099 are the examples'; the listener answers up to 30179.
            free_node_ports: (30100..30180).rev().collect(),
        }
    }

    /// L2 addresses the Services need (a sharing pair needs one).
    fn l2_addresses(&self) -> usize {
        let keys: std::collections::BTreeSet<&Option<String>> = self
            .services
            .iter()
            .filter(|s| s.pool == "l2" && s.sharing_key.is_some())
            .map(|s| &s.sharing_key)
            .collect();
        self.services
            .iter()
            .filter(|s| s.pool == "l2" && s.sharing_key.is_none())
            .count()
            + keys.len()
    }

    fn some_nodes(&self, rng: &mut Rng) -> Vec<String> {
        let mut picked: Vec<String> = self
            .nodes
            .iter()
            .filter(|_| rng.chance(0.5))
            .cloned()
            .collect();
        if picked.is_empty() {
            picked.push(rng.pick(&self.nodes).clone());
        }
        picked
    }

    fn new_service(&mut self, rng: &mut Rng, pool: &'static str, local: bool) -> ChurnService {
        let name = format!("svc-{}", self.next_name);
        self.next_name += 1;
        let node_port = self.free_node_ports.pop().unwrap_or(30179);
        ChurnService {
            name,
            pool,
            local,
            port: *rng.pick(&[80, 8080, 443]),
            node_port,
            endpoints: self.some_nodes(rng),
            sharing_key: None,
        }
    }

    /// The Services a run starts with: each pool with each traffic policy, and a pair sharing
    /// an L2 address.
    pub fn initial(&mut self, rng: &mut Rng) -> Vec<ChurnService> {
        let mut made = Vec::new();
        for (pool, local) in [("l2", false), ("l2", true), ("bgp", false), ("bgp", true)] {
            made.push(self.new_service(rng, pool, local));
        }
        made.extend(self.shared_pair(rng));
        self.services.extend(made.iter().cloned());
        made
    }

    fn shared_pair(&mut self, rng: &mut Rng) -> Vec<ChurnService> {
        let pool = if self.l2_addresses() < MAX_L2_ADDRESSES && rng.chance(0.5) {
            "l2"
        } else {
            "bgp"
        };
        let mut a = self.new_service(rng, pool, false);
        let mut b = self.new_service(rng, pool, false);
        let key = format!("share-{}", a.name);
        a.sharing_key = Some(key.clone());
        b.sharing_key = Some(key);
        a.port = 80;
        b.port = 81;
        vec![a, b]
    }

    /// The next change, already made to the model.
    pub fn next(&mut self, rng: &mut Rng) -> Change {
        let count = self.services.len();
        let roll = if count < MIN_SERVICES {
            0
        } else if count >= MAX_SERVICES {
            30 // a deletion
        } else {
            rng.below(100)
        };
        match roll {
            0..=24 => {
                let made = if rng.chance(0.2) {
                    self.shared_pair(rng)
                } else {
                    let pool = if self.l2_addresses() < MAX_L2_ADDRESSES && rng.chance(0.5) {
                        "l2"
                    } else {
                        "bgp"
                    };
                    let local = rng.chance(0.4);
                    vec![self.new_service(rng, pool, local)]
                };
                self.services.extend(made.iter().cloned());
                Change::Create(made)
            }
            25..=39 => {
                let gone = self.services.remove(rng.below(count));
                self.free_node_ports.push(gone.node_port);
                Change::Delete(gone.name)
            }
            40..=49 => self.update(rng, |s, churn| {
                if s.sharing_key.is_some() {
                    return None;
                }
                let to = if s.pool == "l2" { "bgp" } else { "l2" };
                if to == "l2" && churn.l2_addresses() >= MAX_L2_ADDRESSES {
                    return None;
                }
                s.pool = to;
                Some((true, format!("pool -> {to}")))
            }),
            50..=59 => self.update(rng, |s, _| {
                if s.sharing_key.is_some() {
                    return None;
                }
                s.local = !s.local;
                Some((false, format!("local: {}", s.local)))
            }),
            60..=69 => self.update(rng, |s, _| {
                if s.sharing_key.is_some() {
                    return None;
                }
                s.port = if s.port == 80 { 8080 } else { 80 };
                Some((false, format!("port -> {}", s.port)))
            }),
            70..=74 => self.update(rng, |s, _| {
                let old = s.sharing_key.as_ref()?;
                // Leaves its pair (a key of its own, never the pair's): it may no longer hold
                // the pair's address.
                let own = format!("own-{}", s.name);
                if *old == own {
                    return None;
                }
                s.sharing_key = Some(own);
                Some((true, "sharing key changed".into()))
            }),
            _ => {
                let nodes = self.some_nodes(rng);
                self.update(rng, move |s, _| {
                    s.endpoints = nodes.clone();
                    Some((false, format!("endpoints -> {}", nodes.join(","))))
                })
            }
        }
    }

    /// Applies `edit` to a random Service it accepts (a few tries); a creation when none does.
    fn update(
        &mut self,
        rng: &mut Rng,
        edit: impl Fn(&mut ChurnService, &Churn) -> Option<(bool, String)>,
    ) -> Change {
        for _ in 0..8 {
            let i = rng.below(self.services.len());
            let mut s = self.services[i].clone();
            if let Some((may_move, what)) = edit(&mut s, self) {
                self.services[i] = s.clone();
                return Change::Update {
                    service: s,
                    may_move,
                    what,
                };
            }
        }
        let made = vec![self.new_service(rng, "bgp", false)];
        self.services.extend(made.iter().cloned());
        Change::Create(made)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_services_stay_within_bounds_and_l2_never_runs_out() {
        let nodes: Vec<String> = ["n1", "n2", "n3"].map(String::from).to_vec();
        for seed in 0..50 {
            let mut rng = Rng::new(seed);
            let mut churn = Churn::new(&nodes);
            churn.initial(&mut rng);
            let mut kinds = std::collections::BTreeSet::new();
            for _ in 0..300 {
                let before: std::collections::BTreeMap<String, Option<String>> = churn
                    .services
                    .iter()
                    .map(|s| (s.name.clone(), s.sharing_key.clone()))
                    .collect();
                let change = churn.next(&mut rng);
                match &change {
                    Change::Create(_) => kinds.insert("create".to_string()),
                    Change::Delete(_) => kinds.insert("delete".to_string()),
                    Change::Update { what, .. } => {
                        kinds.insert(what.split_whitespace().next().unwrap().to_string())
                    }
                };
                assert!(churn.services.len() <= MAX_SERVICES + 1);
                assert!(churn.l2_addresses() <= MAX_L2_ADDRESSES + 1);
                let ports: std::collections::BTreeSet<u16> =
                    churn.services.iter().map(|s| s.node_port).collect();
                assert_eq!(ports.len(), churn.services.len(), "node ports are unique");
                assert!(churn.services.iter().all(|s| !s.endpoints.is_empty()));
                if let Change::Update { service, what, .. } = &change
                    && what.starts_with("sharing")
                {
                    assert_ne!(before.get(&service.name), Some(&service.sharing_key));
                }
            }
            for k in [
                "create",
                "delete",
                "pool",
                "local:",
                "port",
                "sharing",
                "endpoints",
            ] {
                assert!(
                    kinds.contains(k),
                    "seed {seed}: {k} never happened: {kinds:?}"
                );
            }
        }
    }

    #[test]
    fn a_manifest_names_its_pool_policy_port_and_endpoints() {
        let s = ChurnService {
            name: "svc-1".into(),
            pool: "l2",
            local: true,
            port: 80,
            node_port: 30100,
            endpoints: vec!["n2".into()],
            sharing_key: Some("k".into()),
        };
        let m = s.manifest();
        for want in [
            "ferrolb.io/address-pool: l2",
            "ferrolb.io/allow-shared-ip: k",
            "externalTrafficPolicy: Local",
            "nodePort: 30100",
            "nodeName: n2",
            "203.0.113.202",
        ] {
            assert!(m.contains(want), "{want} in {m}");
        }
    }
}
