//! Rendezvous (highest-random-weight) hashing: every node scores every address the same way,
//! so all speakers pick the same owner without talking, and a node leaving or joining moves
//! only the addresses it owned or now wins.
//!
//! The hash is written out here rather than taken from `std` so that speakers of different
//! builds (a rolling upgrade) still agree.

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
