//! The I/O shell: applies transactions through libnftables and reads the counters back.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde_json::Value;

use crate::libnft::Nft;
use crate::model::Forwarding;
use crate::ruleset::{self, Store};

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("nftables unavailable: {0}")]
    Unavailable(String),
    #[error("nftables refused the change (nothing of it applied): {0}")]
    Refused(String),
    #[error("unreadable nftables output: {0}")]
    Output(String),
}

/// What one [`Dataplane::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    /// The whole table was written (first apply, a node address changed, or recovery).
    pub full: bool,
    /// Anything was written at all.
    pub changed: bool,
    /// UDP and SCTP flows of deleted or moved Service ports that were forgotten.
    pub flows_forgotten: usize,
    /// Why forgetting them failed (the rules are in place regardless).
    pub forget_error: Option<String>,
}

/// Packets and bytes per Service address, summed over its ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counters {
    /// Traffic arriving for the address and sent on to the NodePort.
    pub forwarded: BTreeMap<IpAddr, Count>,
    /// Traffic dropped because its source is outside `loadBalancerSourceRanges`.
    pub dropped: BTreeMap<IpAddr, Count>,
}

/// ferrolb's table in the calling thread's network namespace.
pub struct Dataplane {
    nft: Nft,
    /// What the kernel holds, as far as this process knows; `None` until the first apply,
    /// and after a failed one (the next apply rewrites the table).
    programmed: Option<Forwarding>,
}

impl Dataplane {
    /// Loads libnftables. Nothing in the kernel changes until [`Dataplane::apply`]: a table
    /// left by a previous run keeps forwarding meanwhile.
    pub fn open() -> Result<Dataplane, DataplaneError> {
        let nft = Nft::open().map_err(DataplaneError::Unavailable)?;
        Ok(Dataplane {
            nft,
            programmed: None,
        })
    }

    pub fn programmed(&self) -> Option<&Forwarding> {
        self.programmed.as_ref()
    }

    /// Makes the kernel forward what `to` says, in one transaction.
    pub fn apply(&mut self, to: &Forwarding) -> Result<Applied, DataplaneError> {
        let (transaction, full, moved) = match &self.programmed {
            Some(from) => match ruleset::update(from, to) {
                Some(u) => (u.transaction, u.full, u.moved_flows),
                None => return Ok(Applied::default()),
            },
            // What a previous run left is unknown: no flow is forgotten.
            None => (ruleset::program(to), true, BTreeSet::new()),
        };
        match self.nft.run(&transaction.to_string()) {
            Ok(_) => {
                self.programmed = Some(to.clone());
                let (flows_forgotten, forget_error) = match crate::conntrack::forget(&moved) {
                    Ok(n) => (n, None),
                    Err(e) => (0, Some(format!("conntrack: {e}"))),
                };
                Ok(Applied {
                    full,
                    changed: true,
                    flows_forgotten,
                    forget_error,
                })
            }
            Err(e) => {
                // The kernel holds what it held before; that may not be what we think (someone
                // removed the table), so the next apply starts over.
                self.programmed = None;
                Err(DataplaneError::Refused(e))
            }
        }
    }

    /// [`Dataplane::apply`] of `wanted` plus what is programmed now for addresses
    /// `still_answered` that `wanted` no longer has (see [`Forwarding::kept_for`]). Nothing is
    /// copied when nothing is kept.
    pub fn apply_keeping(
        &mut self,
        wanted: &Forwarding,
        still_answered: impl Fn(&IpAddr) -> bool,
    ) -> Result<Applied, DataplaneError> {
        let kept = self
            .programmed
            .as_ref()
            .map(|p| p.kept_for(wanted, still_answered))
            .unwrap_or_default();
        if kept.is_empty() {
            return self.apply(wanted);
        }
        let mut target = wanted.clone();
        target.entries.extend(kept);
        self.apply(&target)
    }

    /// Stops forwarding to `addresses` (other nodes have taken them); removes the table when
    /// nothing is left to forward.
    pub fn release(&mut self, addresses: &BTreeSet<IpAddr>) -> Result<(), DataplaneError> {
        let Some(mut rest) = self.programmed.clone() else {
            return Ok(());
        };
        rest.entries.retain(|k, _| !addresses.contains(&k.address));
        if rest.addresses().is_empty() {
            return self.remove();
        }
        self.apply(&rest).map(|_| ())
    }

    /// Removes ferrolb's table (and with it all forwarding by this node).
    pub fn remove(&mut self) -> Result<(), DataplaneError> {
        self.nft
            .run(&ruleset::remove().to_string())
            .map_err(DataplaneError::Refused)?;
        // No table: the next apply writes it whole.
        self.programmed = None;
        Ok(())
    }

    /// The per-address counters.
    pub fn counters(&mut self) -> Result<Counters, DataplaneError> {
        let mut counters = Counters::default();
        if self.programmed.is_none() {
            return Ok(counters);
        }
        for (store, _, command) in ruleset::list_counters() {
            let out = self
                .nft
                .run(&command.to_string())
                .map_err(DataplaneError::Refused)?;
            let target = match store {
                Store::Dropped => &mut counters.dropped,
                _ => &mut counters.forwarded,
            };
            add_counts(&out, target)?;
        }
        Ok(counters)
    }
}

/// Sums the element counters of one listed set into `into`, by address.
fn add_counts(listing: &str, into: &mut BTreeMap<IpAddr, Count>) -> Result<(), DataplaneError> {
    let doc: Value =
        serde_json::from_str(listing).map_err(|e| DataplaneError::Output(e.to_string()))?;
    let objects = doc["nftables"].as_array().cloned().unwrap_or_default();
    for object in objects {
        let Some(elems) = object["set"]["elem"].as_array() else {
            continue;
        };
        for elem in elems {
            let elem = &elem["elem"];
            let Some(address) = elem["val"]["concat"][0]
                .as_str()
                .and_then(|a| a.parse::<IpAddr>().ok())
            else {
                return Err(DataplaneError::Output(format!("element {elem}")));
            };
            let c = into.entry(address).or_default();
            c.packets += elem["counter"]["packets"].as_u64().unwrap_or(0);
            c.bytes += elem["counter"]["bytes"].as_u64().unwrap_or(0);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_summed_per_address() {
        let listing = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"set": {"family": "inet", "name": "forwarded4", "table": "ferrolb",
            "elem": [
              {"elem": {"val": {"concat": ["198.51.100.10", "tcp", 80]}, "counter": {"packets": 3, "bytes": 180}}},
              {"elem": {"val": {"concat": ["198.51.100.10", "udp", 53]}, "counter": {"packets": 2, "bytes": 100}}},
              {"elem": {"val": {"concat": ["198.51.100.11", "tcp", 80]}, "counter": {"packets": 0, "bytes": 0}}}
            ]}}]}"#;
        let mut into = BTreeMap::new();
        add_counts(listing, &mut into).unwrap();
        let a: IpAddr = "198.51.100.10".parse().unwrap();
        assert_eq!(
            into[&a],
            Count {
                packets: 5,
                bytes: 280
            }
        );
        assert_eq!(into.len(), 2);
    }

    #[test]
    fn unreadable_listing_is_an_error() {
        let mut into = BTreeMap::new();
        assert!(add_counts("not json", &mut into).is_err());
        let odd = r#"{"nftables": [{"set": {"elem": [{"elem": {"val": 7}}]}}]}"#;
        assert!(add_counts(odd, &mut into).is_err());
    }
}
