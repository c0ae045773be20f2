//! Properties of the transactions: an update, played on the elements a full program leaves,
//! gives exactly the elements the full program of the target leaves, and never deletes an
//! element that is not there or adds one that is (nftables would refuse the transaction).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ferrolb_dataplane::{Forwarding, Key, Prefix, Protocol, Target, ruleset};
use proptest::prelude::*;
use serde_json::Value;

/// Set name -> element key (as JSON text) -> map value (as JSON text; empty for sets).
type Elements = BTreeMap<String, BTreeMap<String, String>>;

/// Plays the element commands of `doc` on `state`; an impossible command is an error.
fn play(doc: &Value, state: &mut Elements) -> Result<(), String> {
    for cmd in doc["nftables"].as_array().unwrap() {
        let (add, body) = match (cmd.get("add"), cmd.get("delete")) {
            (Some(b), _) => (true, b),
            (_, Some(b)) => (false, b),
            _ => continue,
        };
        let Some(el) = body.get("element") else {
            // Table, set, chain or rule commands: a program starts from nothing.
            if !add && body.get("table").is_some() {
                state.clear();
            }
            continue;
        };
        let set = state
            .entry(el["name"].as_str().unwrap().to_string())
            .or_default();
        for elem in el["elem"].as_array().unwrap() {
            let (k, v) = match elem {
                Value::Array(pair) => (pair[0].to_string(), pair[1].to_string()),
                other => (other.to_string(), String::new()),
            };
            if add {
                if set.insert(k.clone(), v).is_some() {
                    return Err(format!("add of existing {k}"));
                }
            } else if set.remove(&k).is_none() {
                return Err(format!("delete of missing {k}"));
            }
        }
    }
    state.retain(|_, s| !s.is_empty());
    Ok(())
}

fn prefixes() -> [Prefix; 4] {
    [
        "192.0.2.0/24".parse().unwrap(),
        "192.0.2.0/25".parse().unwrap(),
        "203.0.113.7/32".parse().unwrap(),
        "2001:db8::/48".parse().unwrap(),
    ]
}

fn forwarding() -> impl Strategy<Value = Forwarding> {
    let entry = (
        0u8..6,
        0u8..3,
        prop::sample::select(vec![80u16, 443]),
        prop::sample::select(vec![30080u16, 30081]),
        prop::option::of(prop::collection::vec(0usize..4, 0..3)),
    );
    (
        prop::collection::vec(entry, 0..12),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(entries, v4, v6)| {
            let mut f = Forwarding {
                node_v4: v4.then(|| Ipv4Addr::new(192, 0, 2, 11)),
                node_v6: v6.then(|| "2001:db8::11".parse::<Ipv6Addr>().unwrap()),
                ..Forwarding::default()
            };
            for (a, p, port, node_port, ranges) in entries {
                let address: IpAddr = if a < 4 {
                    IpAddr::V4(Ipv4Addr::new(198, 51, 100, a))
                } else {
                    format!("2001:db8:100::{a}").parse().unwrap()
                };
                let protocol = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp][p as usize];
                let key = Key {
                    address,
                    protocol,
                    port,
                };
                let ranges: Option<Vec<Prefix>> =
                    ranges.map(|r| r.into_iter().map(|i| prefixes()[i]).collect());
                let target = match ranges {
                    None => Target::new(&key, node_port, &[]),
                    Some(r) if r.is_empty() => Target::closed(node_port),
                    Some(r) => Target::new(&key, node_port, &r),
                };
                f.entries.insert(key, target);
            }
            f
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn an_update_lands_where_a_full_program_does(from in forwarding(), to in forwarding()) {
        let mut state = Elements::new();
        play(&ruleset::program(&from), &mut state).unwrap();
        let mut expected = Elements::new();
        play(&ruleset::program(&to), &mut expected).unwrap();
        match ruleset::update(&from, &to) {
            Some(u) => play(&u.transaction, &mut state).map_err(TestCaseError::fail)?,
            None => prop_assert_eq!(&state, &expected, "no transaction, yet the elements differ"),
        }
        prop_assert_eq!(state, expected);
    }

    #[test]
    fn nested_ranges_never_reach_the_kernel(from in forwarding()) {
        for target in from.entries.values() {
            let allowed: BTreeSet<Prefix> = target.allowed.clone().unwrap_or_default();
            for a in &allowed {
                for b in &allowed {
                    prop_assert!(a == b || !a.contains(b), "{a} holds {b}");
                }
            }
        }
    }
}
