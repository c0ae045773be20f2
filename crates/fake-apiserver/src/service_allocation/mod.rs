//! What the real API server does to a Service: defaults, validation, and allocation of cluster
//! IPs and NodePorts.

use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{Value, json};

use crate::error::ApiError;

/// Cluster IP ranges and the NodePort range, and what is taken from them.
#[derive(Debug, Clone)]
pub struct ServiceAllocations {
    v4_base: u32,
    v4_size: u32,
    v6_base: u128,
    v6_size: u32,
    used_ips: HashSet<IpAddr>,
    next_v4: u32,
    next_v6: u32,
    node_ports: (u16, u16),
    used_ports: BTreeSet<u16>,
    next_port: u16,
}

impl ServiceAllocations {
    /// `v4`/`v6`: first address and size of the service CIDRs; `node_ports`: inclusive range.
    pub fn new(v4: (Ipv4Addr, u32), v6: (Ipv6Addr, u32), node_ports: (u16, u16)) -> Self {
        ServiceAllocations {
            v4_base: u32::from(v4.0),
            v4_size: v4.1,
            v6_base: u128::from(v6.0),
            v6_size: v6.1,
            used_ips: HashSet::new(),
            next_v4: 1,
            next_v6: 1,
            node_ports,
            used_ports: BTreeSet::new(),
            next_port: node_ports.0,
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => {
                let v = u32::from(a);
                v > self.v4_base && v - self.v4_base < self.v4_size
            }
            IpAddr::V6(a) => {
                let v = u128::from(a);
                v > self.v6_base && v - self.v6_base < u128::from(self.v6_size)
            }
        }
    }

    fn allocate_ip(&mut self, family: &str) -> Option<IpAddr> {
        let (size, next) = match family {
            "IPv4" => (self.v4_size, self.next_v4),
            _ => (self.v6_size, self.next_v6),
        };
        // Bounded by the range size; offset 0 is the network address.
        for step in 0..size {
            let offset = 1 + (next - 1 + step) % (size - 1);
            let ip = match family {
                "IPv4" => IpAddr::V4(Ipv4Addr::from(self.v4_base + offset)),
                _ => IpAddr::V6(Ipv6Addr::from(self.v6_base + u128::from(offset))),
            };
            if self.used_ips.insert(ip) {
                match family {
                    "IPv4" => self.next_v4 = offset + 1,
                    _ => self.next_v6 = offset + 1,
                }
                return Some(ip);
            }
        }
        None
    }

    fn allocate_port(&mut self) -> Option<u16> {
        let (lo, hi) = self.node_ports;
        let span = u32::from(hi - lo) + 1;
        for step in 0..span {
            let p = lo + ((u32::from(self.next_port - lo) + step) % span) as u16;
            if self.used_ports.insert(p) {
                self.next_port = if p == hi { lo } else { p + 1 };
                return Some(p);
            }
        }
        None
    }

    /// Marks what a Service holds as taken again (undoing a release).
    fn reserve(&mut self, svc: &Value) {
        self.used_ips.extend(cluster_ips(svc));
        self.used_ports.extend(node_ports(svc));
    }

    /// Releases what a deleted Service held.
    pub fn release(&mut self, svc: &Value) {
        for ip in cluster_ips(svc) {
            self.used_ips.remove(&ip);
        }
        for p in node_ports(svc) {
            self.used_ports.remove(&p);
        }
    }
}

/// What one Service write took, so a failed write gives it back instead of copying the whole
/// allocation state up front.
struct Claim<'a> {
    alloc: &'a mut ServiceAllocations,
    ips: Vec<IpAddr>,
    ports: Vec<u16>,
}

impl<'a> Claim<'a> {
    fn new(alloc: &'a mut ServiceAllocations) -> Self {
        Claim {
            alloc,
            ips: Vec::new(),
            ports: Vec::new(),
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        self.alloc.contains(ip)
    }

    /// Takes `ip`; false if it was taken already.
    fn ip(&mut self, ip: IpAddr) -> bool {
        let fresh = self.alloc.used_ips.insert(ip);
        if fresh {
            self.ips.push(ip);
        }
        fresh
    }

    fn new_ip(&mut self, family: &str) -> Option<IpAddr> {
        let ip = self.alloc.allocate_ip(family)?;
        self.ips.push(ip);
        Some(ip)
    }

    /// Takes port `p`; false if it was taken already.
    fn port(&mut self, p: u16) -> bool {
        let fresh = self.alloc.used_ports.insert(p);
        if fresh {
            self.ports.push(p);
        }
        fresh
    }

    fn new_port(&mut self) -> Option<u16> {
        let p = self.alloc.allocate_port()?;
        self.ports.push(p);
        Some(p)
    }

    /// Gives back everything taken.
    fn undo(self) {
        for ip in self.ips {
            self.alloc.used_ips.remove(&ip);
        }
        for p in self.ports {
            self.alloc.used_ports.remove(&p);
        }
    }
}

fn cluster_ips(svc: &Value) -> Vec<IpAddr> {
    svc["spec"]["clusterIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str()?.parse().ok())
        .collect()
}

fn node_ports(svc: &Value) -> Vec<u16> {
    let spec = &svc["spec"];
    let mut out: Vec<u16> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok()))
        .collect();
    if let Some(h) = spec["healthCheckNodePort"]
        .as_u64()
        .and_then(|n| u16::try_from(n).ok())
    {
        out.push(h);
    }
    out
}

fn needs_node_ports(spec: &Value) -> bool {
    match spec["type"].as_str() {
        Some("NodePort") => true,
        Some("LoadBalancer") => spec["allocateLoadBalancerNodePorts"].as_bool() != Some(false),
        _ => false,
    }
}

/// Checks the fields the real API server checks and that our clients could get wrong.
fn validate(name: &str, spec: &Value, ports_range: (u16, u16)) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    let svc_type = spec["type"].as_str().unwrap_or("ClusterIP");
    if !matches!(
        svc_type,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        causes.push(format!(
            "spec.type: Unsupported value: {svc_type:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""
        ));
    }
    let headless = spec["clusterIP"].as_str() == Some("None");
    let ports = spec["ports"].as_array().cloned().unwrap_or_default();
    if ports.is_empty() && svc_type != "ExternalName" && !headless {
        causes.push("spec.ports: Required value".into());
    }
    let mut seen = HashSet::new();
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let port = p["port"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&port) {
            causes.push(format!("spec.ports[{i}].port: Invalid value: {port}: must be between 1 and 65535, inclusive"));
        }
        // targetPort defaults to port, so a port of 0 is refused twice, as kube-apiserver does.
        if let Some(target) = p["targetPort"]
            .as_i64()
            .or(p["targetPort"].is_null().then_some(port))
            && !(1..=65535).contains(&target)
        {
            causes.push(format!("spec.ports[{i}].targetPort: Invalid value: {target}: must be between 1 and 65535, inclusive"));
        }
        let protocol = p["protocol"].as_str().unwrap_or("TCP");
        if !matches!(protocol, "TCP" | "UDP" | "SCTP") {
            causes.push(format!(
                "spec.ports[{i}].protocol: Unsupported value: {protocol:?}"
            ));
        }
        if !seen.insert((port, protocol.to_string())) {
            causes.push(format!(
                "spec.ports[{i}]: Duplicate value: {port}/{protocol}"
            ));
        }
        let pname = p["name"].as_str().unwrap_or("");
        if ports.len() > 1 && pname.is_empty() {
            causes.push(format!("spec.ports[{i}].name: Required value"));
        } else if !pname.is_empty() && !names.insert(pname.to_string()) {
            causes.push(format!("spec.ports[{i}].name: Duplicate value: {pname:?}"));
        }
        if let Some(np) = p["nodePort"].as_i64()
            && !(i64::from(ports_range.0)..=i64::from(ports_range.1)).contains(&np)
        {
            causes.push(format!(
                "spec.ports[{i}].nodePort: Invalid value: {np}: provided port is not in the valid range. The range of valid ports is {}-{}",
                ports_range.0, ports_range.1
            ));
        }
    }
    let policy = spec["ipFamilyPolicy"].as_str().unwrap_or("SingleStack");
    if !matches!(
        policy,
        "SingleStack" | "PreferDualStack" | "RequireDualStack"
    ) {
        causes.push(format!(
            "spec.ipFamilyPolicy: Unsupported value: {policy:?}"
        ));
    }
    let families: Vec<&str> = spec["ipFamilies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if families.iter().any(|f| !matches!(*f, "IPv4" | "IPv6")) {
        causes.push("spec.ipFamilies: Unsupported value: must be IPv4 or IPv6".into());
    }
    if families.len() > 2 || (families.len() == 2 && families[0] == families[1]) {
        causes.push("spec.ipFamilies: Invalid value: at most one of each family".into());
    }
    if policy == "SingleStack" && families.len() > 1 {
        causes.push("spec.ipFamilyPolicy: Invalid value: \"SingleStack\": must be dual-stack when two ipFamilies are given".into());
    }
    if let Some(ip) = spec["loadBalancerIP"].as_str()
        && !ip.is_empty()
        && ip.parse::<IpAddr>().is_err()
    {
        causes.push(format!(
            "spec.loadBalancerIP: Invalid value: {ip:?}: must be a valid IP address"
        ));
    }
    if let Some(etp) = spec["externalTrafficPolicy"].as_str()
        && !matches!(etp, "Cluster" | "Local")
    {
        causes.push(format!(
            "spec.externalTrafficPolicy: Unsupported value: {etp:?}"
        ));
    }
    if !spec["loadBalancerClass"].is_null() && svc_type != "LoadBalancer" {
        causes.push(
            "spec.loadBalancerClass: Forbidden: may only be used when `type` is 'LoadBalancer'"
                .into(),
        );
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("Service", name, &causes))
    }
}

fn default_spec(spec: &mut Value) {
    let s = spec.as_object_mut().expect("spec is an object");
    s.entry("type").or_insert(json!("ClusterIP"));
    s.entry("sessionAffinity").or_insert(json!("None"));
    s.entry("internalTrafficPolicy").or_insert(json!("Cluster"));
    let svc_type = s["type"].as_str().unwrap_or("ClusterIP").to_string();
    if matches!(svc_type.as_str(), "NodePort" | "LoadBalancer") {
        s.entry("externalTrafficPolicy").or_insert(json!("Cluster"));
    }
    if svc_type == "LoadBalancer" {
        s.entry("allocateLoadBalancerNodePorts")
            .or_insert(json!(true));
    }
    if let Some(ports) = s.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            let port = p["port"].clone();
            if let Some(m) = p.as_object_mut() {
                m.entry("protocol").or_insert(json!("TCP"));
                m.entry("targetPort").or_insert(port);
            }
        }
    }
    s.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
}

/// Defaults, validates and allocates a new Service; on error nothing stays allocated.
pub fn prepare_create(svc: &mut Value, alloc: &mut ServiceAllocations) -> Result<(), ApiError> {
    let name = svc["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !svc["spec"].is_object() {
        svc["spec"] = json!({});
    }
    default_spec(&mut svc["spec"]);
    validate(&name, &svc["spec"], alloc.node_ports)?;
    let mut claim = Claim::new(alloc);
    if let Err(e) = allocate(&name, &mut svc["spec"], None, &mut claim) {
        claim.undo();
        return Err(e);
    }
    if !svc["status"].is_object() {
        svc["status"] = json!({"loadBalancer": {}});
    }
    Ok(())
}

/// Carries allocated values over from `old`, checks immutable fields, and allocates what is new.
pub fn prepare_update(
    old: &Value,
    svc: &mut Value,
    alloc: &mut ServiceAllocations,
) -> Result<(), ApiError> {
    let name = svc["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !svc["spec"].is_object() {
        svc["spec"] = json!({});
    }
    let old_spec = &old["spec"];
    {
        let spec = svc["spec"].as_object_mut().expect("spec is an object");
        for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if spec.get(field).is_none_or(Value::is_null) && !old_spec[field].is_null() {
                spec.insert(field.into(), old_spec[field].clone());
            }
        }
    }
    default_spec(&mut svc["spec"]);
    if svc["spec"]["clusterIP"] != old_spec["clusterIP"] {
        return Err(ApiError::invalid(
            "Service",
            &name,
            &["spec.clusterIPs[0]: Invalid value: field is immutable".to_string()],
        ));
    }
    if svc["spec"]["loadBalancerClass"] != old_spec["loadBalancerClass"]
        && old_spec["type"] == "LoadBalancer"
        && svc["spec"]["type"] == "LoadBalancer"
    {
        return Err(ApiError::invalid(
            "Service",
            &name,
            &["spec.loadBalancerClass: Invalid value: field is immutable".to_string()],
        ));
    }
    validate(&name, &svc["spec"], alloc.node_ports)?;
    alloc.release(old);
    let mut claim = Claim::new(alloc);
    if let Err(e) = allocate(&name, &mut svc["spec"], Some(old_spec), &mut claim) {
        claim.undo();
        alloc.reserve(old);
        return Err(e);
    }
    Ok(())
}

fn allocate(
    name: &str,
    spec: &mut Value,
    old: Option<&Value>,
    alloc: &mut Claim<'_>,
) -> Result<(), ApiError> {
    let invalid = |m: String| ApiError::invalid("Service", name, &[m]);
    let policy = spec["ipFamilyPolicy"]
        .as_str()
        .unwrap_or("SingleStack")
        .to_string();
    if spec["ipFamilies"].as_array().is_none_or(Vec::is_empty) {
        let given: Option<IpAddr> = spec["clusterIP"].as_str().and_then(|s| s.parse().ok());
        let primary = match given {
            Some(IpAddr::V6(_)) => "IPv6",
            _ => "IPv4",
        };
        let secondary = if primary == "IPv4" { "IPv6" } else { "IPv4" };
        spec["ipFamilies"] = if policy == "SingleStack" {
            json!([primary])
        } else {
            json!([primary, secondary])
        };
    }
    let families: Vec<String> = spec["ipFamilies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    // Cluster IPs: kept from the old object, validated when given, allocated otherwise.
    if spec["clusterIP"].as_str() == Some("None") {
        spec["clusterIPs"] = json!(["None"]);
    } else if old.is_some() && !spec["clusterIPs"].is_null() {
        for ip in cluster_ips(&json!({"spec": spec.clone()})) {
            alloc.ip(ip);
        }
    } else {
        let mut ips = Vec::new();
        for (i, family) in families.iter().enumerate() {
            let given = if i == 0 {
                spec["clusterIP"].as_str().filter(|s| !s.is_empty())
            } else {
                None
            };
            let ip = match given {
                Some(text) => {
                    let ip: IpAddr = text
                        .parse()
                        .map_err(|_| invalid(format!("spec.clusterIPs[0]: Invalid value: {text:?}: must be a valid IP address")))?;
                    if !alloc.contains(ip) {
                        return Err(invalid(format!(
                            "spec.clusterIPs[0]: Invalid value: {text:?}: provided IP is not in the valid range"
                        )));
                    }
                    if !alloc.ip(ip) {
                        return Err(invalid(format!(
                            "spec.clusterIPs[0]: Invalid value: {text:?}: provided IP is already allocated"
                        )));
                    }
                    ip
                }
                None => alloc.new_ip(family).ok_or_else(|| {
                    invalid(format!(
                        "spec.clusterIPs[{i}]: Internal error: range is full"
                    ))
                })?,
            };
            ips.push(ip.to_string());
        }
        spec["clusterIP"] = json!(ips[0]);
        spec["clusterIPs"] = json!(ips);
    }
    // NodePorts.
    let wants = needs_node_ports(spec);
    let old_ports: Vec<Value> = old
        .and_then(|o| o["ports"].as_array().cloned())
        .unwrap_or_default();
    if let Some(ports) = spec["ports"].as_array_mut() {
        for (i, p) in ports.iter_mut().enumerate() {
            if !wants {
                if let Some(m) = p.as_object_mut() {
                    m.remove("nodePort");
                }
                continue;
            }
            let requested = p["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok());
            let kept = old_ports
                .iter()
                .find(|o| o["port"] == p["port"] && o["protocol"] == p["protocol"])
                .and_then(|o| o["nodePort"].as_u64())
                .and_then(|n| u16::try_from(n).ok());
            let port = match requested.or(kept) {
                Some(n) => {
                    if !alloc.port(n) {
                        return Err(invalid(format!(
                            "spec.ports[{i}].nodePort: Invalid value: {n}: provided port is already allocated"
                        )));
                    }
                    n
                }
                None => alloc.new_port().ok_or_else(|| {
                    invalid(format!(
                        "spec.ports[{i}].nodePort: Internal error: range is full"
                    ))
                })?,
            };
            p["nodePort"] = json!(port);
        }
    }
    let wants_health = spec["type"] == "LoadBalancer" && spec["externalTrafficPolicy"] == "Local";
    if wants_health {
        let kept = spec["healthCheckNodePort"]
            .as_u64()
            .or_else(|| old.and_then(|o| o["healthCheckNodePort"].as_u64()))
            .and_then(|n| u16::try_from(n).ok());
        let port = match kept {
            Some(n) if alloc.port(n) => n,
            Some(n) => {
                return Err(invalid(format!(
                    "spec.healthCheckNodePort: Invalid value: {n}: provided port is already allocated"
                )));
            }
            None => alloc.new_port().ok_or_else(|| {
                invalid("spec.healthCheckNodePort: Internal error: range is full".into())
            })?,
        };
        spec["healthCheckNodePort"] = json!(port);
    } else if let Some(m) = spec.as_object_mut() {
        m.remove("healthCheckNodePort");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
