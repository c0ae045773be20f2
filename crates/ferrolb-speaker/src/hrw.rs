//! Rendezvous (highest-random-weight) hashing: every node scores every address the same way,
//! so all speakers pick the same owner without talking, and a node leaving or joining moves
//! only the addresses it owned or now wins.
//!
//! The hash is written out here rather than taken from `std` so that speakers of different
//! builds (a rolling upgrade) still agree.

use std::collections::HashMap;
use std::net::IpAddr;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// splitmix64's finalizer: FNV alone leaves related inputs with related outputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The weight of `node` for `address`.
pub fn weight(node: &str, address: IpAddr) -> u64 {
    let h = fnv1a(FNV_OFFSET, node.as_bytes());
    // A separator, so ("ab", x) and ("a", "b" + x) cannot collide by construction.
    let h = fnv1a(h, &[0xff]);
    let h = match address {
        IpAddr::V4(a) => fnv1a(h, &a.octets()),
        IpAddr::V6(a) => fnv1a(h, &a.octets()),
    };
    mix(h)
}

/// The node with the highest weight for `address`; ties go to the smaller name.
pub fn owner<'a>(
    address: IpAddr,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|n| (weight(n, address), std::cmp::Reverse(n)))
        .max()
        .map(|(_, std::cmp::Reverse(n))| n)
}

/// Owners chosen in the last decision, so that the next one pays only for what moved: when a
/// candidate leaves, only the addresses it owned are scored again; when candidates join, only
/// they are scored against the owner. With 5,000 nodes, scoring every node for every address
/// each time one node leaves would cost seconds.
#[derive(Debug)]
pub struct OwnerMemo {
    /// Per address: the candidates' fingerprint, the owner, and the decision that last chose it.
    owners: HashMap<IpAddr, (u64, String, u64)>,
    /// Candidate lists of the last decision and of this one, by fingerprint.
    lists: HashMap<u64, Vec<String>>,
    next_lists: HashMap<u64, Vec<String>>,
    /// Candidates in a list that were not in an earlier one, by (earlier, list).
    joined: HashMap<(u64, u64), Vec<String>>,
    decision: u64,
    /// Lists shorter than this are scored whole each time: cheaper than remembering them.
    min_candidates: usize,
}

impl Default for OwnerMemo {
    fn default() -> Self {
        OwnerMemo::remembering_from(32)
    }
}

/// A fingerprint of a candidate list (within this process only).
pub fn fingerprint(candidates: &[&str]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    candidates.hash(&mut h);
    h.finish()
}

impl OwnerMemo {
    /// A memo for lists of at least `min_candidates` (the tests remember every list).
    pub fn remembering_from(min_candidates: usize) -> OwnerMemo {
        OwnerMemo {
            owners: HashMap::new(),
            lists: HashMap::new(),
            next_lists: HashMap::new(),
            joined: HashMap::new(),
            decision: 0,
            min_candidates,
        }
    }

    /// Starts a decision.
    pub fn begin(&mut self) {
        self.decision += 1;
        self.joined.clear();
    }

    /// Ends a decision: forgets addresses and lists it did not use.
    pub fn end(&mut self) {
        let decision = self.decision;
        self.owners.retain(|_, (_, _, d)| *d == decision);
        self.lists = std::mem::take(&mut self.next_lists);
    }

    /// The same as [`owner`] over `candidates` (sorted, with `fingerprint` from
    /// [`fingerprint`]), from what was chosen before where it can be.
    pub fn owner<'c>(
        &mut self,
        address: IpAddr,
        candidates: &[&'c str],
        fingerprint: u64,
    ) -> Option<&'c str> {
        if candidates.len() < self.min_candidates {
            return owner(address, candidates.iter().copied());
        }
        self.next_lists
            .entry(fingerprint)
            .or_insert_with(|| candidates.iter().map(|c| c.to_string()).collect());
        let found = |name: &str| candidates.binary_search(&name).ok().map(|i| candidates[i]);
        let chosen = match self.owners.get(&address) {
            Some((before, kept, _)) if *before == fingerprint => found(kept),
            Some((before, kept, _)) if found(kept).is_some() && self.lists.contains_key(before) => {
                let joined = self
                    .joined
                    .entry((*before, fingerprint))
                    .or_insert_with(|| {
                        let earlier = &self.lists[before];
                        candidates
                            .iter()
                            .filter(|c| earlier.binary_search_by(|e| e.as_str().cmp(c)).is_err())
                            .map(|c| c.to_string())
                            .collect()
                    });
                owner(
                    address,
                    joined.iter().map(String::as_str).chain([kept.as_str()]),
                )
                .and_then(found)
            }
            _ => None,
        };
        let chosen = chosen.or_else(|| owner(address, candidates.iter().copied()))?;
        match self.owners.get_mut(&address) {
            Some(entry) => {
                if entry.1 != chosen {
                    entry.1 = chosen.to_string();
                }
                entry.0 = fingerprint;
                entry.2 = self.decision;
            }
            None => {
                self.owners
                    .insert(address, (fingerprint, chosen.to_string(), self.decision));
            }
        }
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_fixed_across_builds() {
        // Speakers of different versions must agree: this value may never change. It was
        // computed apart from this code (FNV-1a then splitmix64's finalizer, in Python).
        let a = weight("node-a", "192.0.2.10".parse().unwrap());
        let b = weight("node-b", "192.0.2.10".parse().unwrap());
        assert_ne!(a, b);
        assert_eq!(a, WEIGHT_NODE_A_192_0_2_10);
    }

    const WEIGHT_NODE_A_192_0_2_10: u64 = 0x283f_8e38_8d06_b706;

    #[test]
    fn owners_spread_over_nodes() {
        let nodes = ["n1", "n2", "n3", "n4"];
        let mut counts = [0usize; 4];
        for i in 0..4000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0xC633_6400 + i));
            let o = owner(ip, nodes).unwrap();
            counts[nodes.iter().position(|n| *n == o).unwrap()] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "uneven spread {counts:?}");
        }
    }

    #[test]
    fn no_candidates_no_owner() {
        assert_eq!(owner("192.0.2.1".parse().unwrap(), []), None);
    }
}
