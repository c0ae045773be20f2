//! The nftables transactions, as libnftables JSON: pure functions of what is programmed and
//! what should be.
//!
//! ```text
//! table inet ferrolb
//!   map fwd4/fwd6        address . protocol . port : NodePort
//!   set forwarded4/6     address . protocol . port          (counter per element)
//!   set restricted4/6    keys with loadBalancerSourceRanges
//!   set allowed4/6       address . protocol . port . source prefix   (intervals)
//!   set dropped4/6       keys with source ranges                  (counter per element)
//!   chain prerouting     filter hook prerouting priority -150 (after conntrack, before any DNAT)
//!       restricted key, source not allowed: count in dropped, drop
//!       key forwarded: count it, rewrite the destination to node : fwd[key] in the header
//!   chain output         route hook output priority -150: the rewrite, for the node's own traffic
//!   chain nat_prerouting nat hook prerouting priority -90 (after kube-proxy's -100)
//!       a new flow whose original destination is a key: dnat to node : fwd[key]
//!   chain nat_output     nat hook output priority -90: the same
//! ```
//!
//! Why a rewrite and not simply a DNAT: only the first DNAT of a flow applies, so a DNAT of
//! ours to the NodePort would keep kube-proxy's (iptables, nftables) NodePort DNAT to a pod
//! from ever running. Instead the header is rewritten after conntrack has recorded the flow
//! and before any NAT: whatever serves the NodePort sees an ordinary packet to node:NodePort
//! and DNATs it to a pod, and the replies are translated back to the flow's original
//! destination, the Service address. When nothing DNATs the flow (a process listens on the
//! NodePort itself), the fallback DNAT after kube-proxy's gives the flow the same binding,
//! so the replies come from the Service address too.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde_json::{Value, json};

use crate::model::{Forwarding, Key, Prefix, Target};

pub const FAMILY: &str = "inet";
pub const TABLE: &str = "ferrolb";

/// After conntrack (-200) has recorded the flow to the Service address, before any DNAT (-100).
const REWRITE_PRIORITY: i32 = -150;
/// After kube-proxy's DNAT (-100), which wins when it runs.
const FALLBACK_DNAT_PRIORITY: i32 = -90;
const L4: [&str; 3] = ["tcp", "udp", "sctp"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    const BOTH: [Family; 2] = [Family::V4, Family::V6];

    fn addr_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }

    fn payload(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }
}

/// The sets and maps, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Store {
    Fwd,
    Forwarded,
    Restricted,
    Allowed,
    Dropped,
}

impl Store {
    pub fn name(self, family_v4: bool) -> String {
        let base = match self {
            Store::Fwd => "fwd",
            Store::Forwarded => "forwarded",
            Store::Restricted => "restricted",
            Store::Allowed => "allowed",
            Store::Dropped => "dropped",
        };
        format!("{base}{}", if family_v4 { "4" } else { "6" })
    }
}

fn table() -> Value {
    json!({"table": {"family": FAMILY, "name": TABLE}})
}

/// Removes the table, whether it exists or not (adding an existing table is no error).
pub fn remove() -> Value {
    json!({"nftables": [{"add": table()}, {"delete": table()}]})
}

fn key_type(f: Family) -> Value {
    json!([f.addr_type(), "inet_proto", "inet_service"])
}

fn key_expr(f: Family) -> Value {
    json!({"concat": [
        {"payload": {"protocol": f.payload(), "field": "daddr"}},
        {"meta": {"key": "l4proto"}},
        {"payload": {"protocol": "th", "field": "dport"}},
    ]})
}

fn l4_match() -> Value {
    json!({"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": {"set": L4}}})
}

fn in_set(left: Value, op: &str, set: &str) -> Value {
    json!({"match": {"op": op, "left": left, "right": format!("@{set}")}})
}

fn rule(chain: &str, expr: Vec<Value>) -> Value {
    json!({"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": chain, "expr": expr}}})
}

fn chain(name: &str, kind: &str, hook: &str, prio: i32) -> Value {
    json!({"add": {"chain": {"family": FAMILY, "table": TABLE, "name": name,
        "type": kind, "hook": hook, "prio": prio, "policy": "accept"}}})
}

fn key_value(key: &Key) -> Value {
    json!({"concat": [key.address.to_string(), key.protocol.nft(), key.port]})
}

fn allowed_value(key: &Key, prefix: &Prefix) -> Value {
    json!({"concat": [key.address.to_string(), key.protocol.nft(), key.port,
        {"prefix": {"addr": prefix.address().to_string(), "len": prefix.len()}}]})
}

/// Element commands, one per store and verb, in a fixed order.
#[derive(Default)]
struct Elements {
    commands: BTreeMap<(bool, Store, bool), Vec<Value>>,
}

impl Elements {
    fn push(&mut self, add: bool, store: Store, v4: bool, elem: Value) {
        self.commands
            .entry((add, store, v4))
            .or_default()
            .push(elem);
    }

    /// Deletions first, so a key that changes is removed and added in one transaction.
    fn into_commands(self) -> impl Iterator<Item = Value> {
        self.commands.into_iter().map(|((add, store, v4), elem)| {
            let body = json!({"element": {"family": FAMILY, "table": TABLE,
                "name": store.name(v4), "elem": elem}});
            if add {
                json!({"add": body})
            } else {
                json!({"delete": body})
            }
        })
    }

    /// Adds (or deletes) every element of one entry.
    fn entry(&mut self, add: bool, key: &Key, target: &Target) {
        let v4 = key.address.is_ipv4();
        if add {
            self.push(
                true,
                Store::Fwd,
                v4,
                json!([key_value(key), target.node_port]),
            );
        } else {
            self.push(false, Store::Fwd, v4, key_value(key));
        }
        self.push(add, Store::Forwarded, v4, key_value(key));
        if let Some(allowed) = &target.allowed {
            self.push(add, Store::Restricted, v4, key_value(key));
            self.push(add, Store::Dropped, v4, key_value(key));
            for prefix in allowed {
                self.push(add, Store::Allowed, v4, allowed_value(key, prefix));
            }
        }
    }

    /// Only what differs between two targets of one key, so its counters survive.
    fn change(&mut self, key: &Key, was: &Target, now: &Target) {
        let v4 = key.address.is_ipv4();
        if was.node_port != now.node_port {
            self.push(false, Store::Fwd, v4, key_value(key));
            self.push(true, Store::Fwd, v4, json!([key_value(key), now.node_port]));
        }
        let empty = BTreeSet::new();
        match (&was.allowed, &now.allowed) {
            (None, Some(_)) | (Some(_), None) => {
                let add = now.allowed.is_some();
                self.push(add, Store::Restricted, v4, key_value(key));
                self.push(add, Store::Dropped, v4, key_value(key));
            }
            _ => {}
        }
        let before = was.allowed.as_ref().unwrap_or(&empty);
        let after = now.allowed.as_ref().unwrap_or(&empty);
        for prefix in before.difference(after) {
            self.push(false, Store::Allowed, v4, allowed_value(key, prefix));
        }
        for prefix in after.difference(before) {
            self.push(true, Store::Allowed, v4, allowed_value(key, prefix));
        }
    }
}

/// Replaces whatever table `inet ferrolb` holds with `to`, atomically: a previous run's
/// forwarding stays in force until the same transaction installs this one.
pub fn program(to: &Forwarding) -> Value {
    let mut cmds = vec![
        json!({"add": table()}),
        json!({"delete": table()}),
        json!({"add": table()}),
    ];
    for f in Family::BOTH {
        let v4 = f == Family::V4;
        let set = |store: Store, extra: Value| {
            let mut body = json!({"family": FAMILY, "table": TABLE, "name": store.name(v4),
                "type": key_type(f)});
            if let (Some(obj), Value::Object(more)) = (body.as_object_mut(), extra) {
                obj.extend(more);
            }
            if store == Store::Fwd {
                json!({"add": {"map": body}})
            } else {
                json!({"add": {"set": body}})
            }
        };
        cmds.push(set(Store::Fwd, json!({"map": "inet_service"})));
        cmds.push(set(Store::Forwarded, json!({"stmt": [{"counter": null}]})));
        cmds.push(set(Store::Restricted, json!({})));
        cmds.push(set(
            Store::Allowed,
            json!({"type": [f.addr_type(), "inet_proto", "inet_service", f.addr_type()],
                "flags": ["interval"]}),
        ));
        cmds.push(set(Store::Dropped, json!({"stmt": [{"counter": null}]})));
    }
    cmds.push(chain(
        "prerouting",
        "filter",
        "prerouting",
        REWRITE_PRIORITY,
    ));
    cmds.push(chain("output", "route", "output", REWRITE_PRIORITY));
    cmds.push(chain(
        "nat_prerouting",
        "nat",
        "prerouting",
        FALLBACK_DNAT_PRIORITY,
    ));
    cmds.push(chain("nat_output", "nat", "output", FALLBACK_DNAT_PRIORITY));
    for f in Family::BOTH {
        let v4 = f == Family::V4;
        let saddr = json!({"payload": {"protocol": f.payload(), "field": "saddr"}});
        let mut with_source = key_expr(f);
        if let Some(parts) = with_source["concat"].as_array_mut() {
            parts.push(saddr);
        }
        cmds.push(rule(
            "prerouting",
            vec![
                l4_match(),
                in_set(key_expr(f), "==", &Store::Restricted.name(v4)),
                in_set(with_source, "!=", &Store::Allowed.name(v4)),
                in_set(key_expr(f), "==", &Store::Dropped.name(v4)),
                json!({"drop": null}),
            ],
        ));
        let node = match f {
            Family::V4 => to.node_v4.map(IpAddr::V4),
            Family::V6 => to.node_v6.map(IpAddr::V6),
        };
        let Some(node) = node else { continue };
        for l4 in L4 {
            let key = json!({"concat": [
                {"payload": {"protocol": f.payload(), "field": "daddr"}},
                {"meta": {"key": "l4proto"}},
                {"payload": {"protocol": l4, "field": "dport"}},
            ]});
            // The port first: its map is keyed on the Service address, which the next
            // statement replaces.
            let rewrite = vec![
                json!({"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": l4}}),
                in_set(key.clone(), "==", &Store::Forwarded.name(v4)),
                json!({"mangle": {"key": {"payload": {"protocol": l4, "field": "dport"}},
                    "value": {"map": {"key": key, "data": format!("@{}", Store::Fwd.name(v4))}}}}),
                json!({"mangle": {"key": {"payload": {"protocol": f.payload(), "field": "daddr"}},
                    "value": node.to_string()}}),
            ];
            cmds.push(rule("prerouting", rewrite.clone()));
            cmds.push(rule("output", rewrite));
        }
        let original = json!({"concat": [
            {"ct": {"key": format!("{} daddr", f.payload()), "dir": "original"}},
            {"meta": {"key": "l4proto"}},
            {"ct": {"key": "proto-dst", "dir": "original"}},
        ]});
        for chain in ["nat_prerouting", "nat_output"] {
            cmds.push(rule(
                chain,
                vec![
                    l4_match(),
                    json!({"dnat": {"family": f.payload(), "addr": node.to_string(),
                        "port": {"map": {"key": original, "data": format!("@{}", Store::Fwd.name(v4))}}}}),
                ],
            ));
        }
    }
    let mut elements = Elements::default();
    for (key, target) in to.programmable() {
        elements.entry(true, key, target);
    }
    cmds.extend(elements.into_commands());
    json!({"nftables": cmds})
}

/// A change to the table: the transaction, and the keys whose existing datagram flows (UDP,
/// SCTP) now go nowhere or elsewhere, found by the same walk.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub transaction: Value,
    pub full: bool,
    pub moved_flows: BTreeSet<Key>,
}

/// Whether flows of `key` keep their translation until they end on their own (TCP) or must be
/// forgotten when their target changes (datagrams).
fn datagram(key: &Key) -> bool {
    key.protocol != crate::model::Protocol::Tcp
}

/// The transaction that turns `from` (programmed) into `to`; `None` when nothing changes.
/// Element updates only, unless the node's addresses changed (then the whole table). Both
/// maps are walked in key order once, so a change costs O(Services) comparisons and no
/// allocation beyond the commands.
pub fn update(from: &Forwarding, to: &Forwarding) -> Option<Update> {
    if from.node_v4 != to.node_v4 || from.node_v6 != to.node_v6 {
        return Some(Update {
            transaction: program(to),
            full: true,
            moved_flows: from
                .programmable()
                .map(|(k, _)| *k)
                .filter(datagram)
                .collect(),
        });
    }
    let mut e = Elements::default();
    let mut moved_flows = BTreeSet::new();
    let mut old = from.programmable().peekable();
    let mut new = to.programmable().peekable();
    loop {
        let next = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some((a, _)), Some((b, _))) => a.cmp(b),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
        };
        match next {
            std::cmp::Ordering::Less => {
                let (key, target) = old.next().expect("peeked");
                e.entry(false, key, target);
                if datagram(key) {
                    moved_flows.insert(*key);
                }
            }
            std::cmp::Ordering::Greater => {
                let (key, target) = new.next().expect("peeked");
                e.entry(true, key, target);
            }
            std::cmp::Ordering::Equal => {
                let (key, was) = old.next().expect("peeked");
                let (_, now) = new.next().expect("peeked");
                if was != now {
                    e.change(key, was, now);
                    if was.node_port != now.node_port && datagram(key) {
                        moved_flows.insert(*key);
                    }
                }
            }
        }
    }
    (!e.commands.is_empty()).then(|| Update {
        transaction: json!({"nftables": e.into_commands().collect::<Vec<_>>()}),
        full: false,
        moved_flows,
    })
}

/// Lists the counting sets (for [`crate::Counters`]).
pub fn list_counters() -> Vec<(Store, bool, Value)> {
    let mut out = Vec::new();
    for store in [Store::Forwarded, Store::Dropped] {
        for v4 in [true, false] {
            out.push((
                store,
                v4,
                json!({"nftables": [{"list": {"set": {"family": FAMILY, "table": TABLE, "name": store.name(v4)}}}]}),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn key(a: &str, protocol: Protocol, port: u16) -> Key {
        Key {
            address: a.parse().unwrap(),
            protocol,
            port,
        }
    }

    fn node() -> Forwarding {
        Forwarding {
            node_v4: Some("192.0.2.11".parse().unwrap()),
            node_v6: Some("2001:db8::11".parse().unwrap()),
            ..Forwarding::default()
        }
    }

    fn commands(v: &Value) -> Vec<String> {
        v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect()
    }

    #[test]
    fn nothing_changed_is_no_transaction() {
        let mut f = node();
        f.entries
            .insert(key("198.51.100.10", Protocol::Tcp, 80), Target::default());
        assert_eq!(update(&f, &f.clone()), None);
    }

    #[test]
    fn a_port_change_deletes_then_adds_only_that_element() {
        let mut from = node();
        let k = key("198.51.100.10", Protocol::Tcp, 80);
        from.entries.insert(
            k,
            Target {
                node_port: 30080,
                allowed: None,
            },
        );
        from.entries.insert(
            key("198.51.100.11", Protocol::Udp, 53),
            Target {
                node_port: 30053,
                allowed: None,
            },
        );
        let mut to = from.clone();
        to.entries.get_mut(&k).unwrap().node_port = 30081;
        let cmds = commands(&update(&from, &to).unwrap().transaction);
        assert_eq!(cmds.len(), 2, "{cmds:?}");
        assert!(cmds[0].starts_with("{\"delete\"") && cmds[0].contains("\"fwd4\""));
        assert!(cmds[1].starts_with("{\"add\"") && cmds[1].contains("30081"));
        assert!(!cmds.iter().any(|c| c.contains("198.51.100.11")));
    }

    #[test]
    fn datagram_flows_of_changed_or_removed_ports_are_named_tcp_ones_are_not() {
        let mut from = node();
        let tcp = key("198.51.100.10", Protocol::Tcp, 80);
        let udp = key("198.51.100.10", Protocol::Udp, 53);
        let sctp = key("198.51.100.11", Protocol::Sctp, 9);
        for (k, port) in [(tcp, 30080), (udp, 30053), (sctp, 30009)] {
            from.entries.insert(k, Target::new(&k, port, &[]));
        }
        let mut to = from.clone();
        to.entries.get_mut(&tcp).unwrap().node_port = 30081;
        to.entries.get_mut(&udp).unwrap().node_port = 30054;
        to.entries.remove(&sctp);
        let u = update(&from, &to).unwrap();
        assert!(!u.full);
        assert_eq!(u.moved_flows, [udp, sctp].into());
        // A new node address moves every datagram flow.
        to.node_v4 = Some("192.0.2.12".parse().unwrap());
        assert_eq!(update(&from, &to).unwrap().moved_flows, [udp, sctp].into());
    }

    #[test]
    fn a_new_node_address_reprograms_the_table() {
        let from = node();
        let mut to = node();
        to.node_v4 = Some("192.0.2.12".parse().unwrap());
        let cmds = commands(&update(&from, &to).unwrap().transaction);
        assert!(cmds[1].contains("\"delete\"") && cmds[1].contains("\"table\""));
        assert!(cmds.iter().any(|c| c.contains("192.0.2.12")));
    }

    #[test]
    fn source_ranges_add_restriction_and_allowed_prefixes() {
        let from = node();
        let mut to = node();
        let k = key("2001:db8:100::10", Protocol::Sctp, 9000);
        to.entries.insert(
            k,
            Target::new(&k, 31000, &["2001:db8:1::/48".parse().unwrap()]),
        );
        let cmds = commands(&update(&from, &to).unwrap().transaction);
        for set in ["fwd6", "forwarded6", "restricted6", "dropped6", "allowed6"] {
            assert!(
                cmds.iter()
                    .any(|c| c.starts_with("{\"add\"") && c.contains(&format!("\"{set}\""))),
                "{set} in {cmds:?}"
            );
        }
        assert!(cmds.iter().any(|c| c.contains("\"len\":48")));
    }

    #[test]
    fn program_without_ipv6_node_address_has_no_ipv6_dnat() {
        let mut f = node();
        f.node_v6 = None;
        let all = program(&f).to_string();
        assert!(all.contains("\"family\":\"ip\""));
        assert!(all.contains("\"addr\":\"192.0.2.11\""));
        assert!(!all.contains("\"addr\":\"2001:db8::11\""));
    }
}
