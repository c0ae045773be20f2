//! What the speaker tells the cluster: Events (where a Service is announced from, addresses
//! nobody announces, what cannot be forwarded, bad objects), `Valid` conditions, and its
//! ServiceL2Status / ServiceBGPStatus / BGPSessionState reports.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use ferrolb_cluster::PublishedEvent;
use ferrolb_cluster::service::service_key;
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use kube::Resource;

use super::Speaker;
use crate::cluster::Problem;
use crate::decide::{NodePlan, reporter_for};
use crate::forwarding::NotForwarded;
use crate::reports::{Conditions, ObjectKey, ReportKind, Validity, desired_reports};

impl Speaker {
    /// Events: where each Service is announced from, addresses nobody announces, bad objects.
    pub(super) fn report(
        &mut self,
        plan: &NodePlan,
        services: &[Arc<Service>],
        live: &BTreeSet<String>,
        problems: &[Problem],
        not_forwarded: &[NotForwarded],
    ) {
        let by_key: BTreeMap<_, _> = services.iter().map(|s| (service_key(s), s)).collect();
        for (key, ann) in &plan.services {
            // Only what changed: a reconcile must not cost a string per Service.
            if self.announced_before.get(key) == Some(ann) {
                continue;
            }
            let Some(svc) = by_key.get(key) else { continue };
            // From every advertising node, a BGP Service's Events number nodes × Services.
            if ann.l2.is_empty() && !self.config.bgp_service_reports {
                continue;
            }
            let mut how = Vec::new();
            if !ann.l2.is_empty() {
                how.push("layer2".to_string());
            }
            if !ann.bgp_peers.is_empty() {
                how.push(format!(
                    "bgp to {}",
                    ann.bgp_peers.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            let note = format!(
                "announcing from node \"{}\" with {}",
                self.config.node,
                how.join(" and ")
            );
            self.events.publish(
                svc.object_ref(&()),
                PublishedEvent {
                    warning: false,
                    reason: "nodeAssigned".into(),
                    note,
                },
            );
        }
        self.announced_before = plan.services.clone();
        // Findings published this pass; older ones are forgotten, so the memory of what was
        // said stays the size of what is wrong now.
        let mut current = HashSet::new();
        for (ip, (keys, why)) in &plan.unannounced {
            if reporter_for(*ip, live) != Some(self.config.node.as_str()) {
                continue;
            }
            for key in keys {
                if let Some(svc) = by_key.get(key) {
                    current.insert(self.publish_once(
                        svc.object_ref(&()),
                        "NotAnnounced",
                        true,
                        why.sentence(*ip),
                    ));
                }
            }
        }
        // Each node says what it cannot forward: the reason may be its own (no IPv6 address).
        let mut reasons: BTreeMap<&ferrolb_api::model::ServiceKey, Vec<&str>> = BTreeMap::new();
        for n in not_forwarded {
            reasons.entry(&n.service).or_default().push(&n.reason);
        }
        for (key, why) in reasons {
            if let Some(svc) = by_key.get(key) {
                current.insert(self.publish_once(
                    svc.object_ref(&()),
                    "NotForwarded",
                    true,
                    format!("node \"{}\": {}", self.config.node, why.join("; ")),
                ));
            }
        }
        for p in problems {
            let reference = ObjectReference {
                api_version: Some("ferrolb.io/v1beta1".into()),
                kind: Some(p.kind.into()),
                namespace: Some(p.namespace.clone()),
                name: Some(p.name.clone()),
                ..ObjectReference::default()
            };
            // One speaker reports a bad object, not every node.
            if self.is_cluster_reporter(live) {
                current.insert(self.publish_once(reference, p.reason, true, p.message.clone()));
            }
            if !self.problems_before.contains(p) {
                tracing::warn!(kind = p.kind, name = %p.name, reason = p.reason, "{}", p.message);
            }
        }
        self.problems_before = problems.iter().cloned().collect();
        self.said.keep_only(|topic| current.contains(topic));
    }

    /// Publishes a finding unless the same one was published last; returns its topic.
    pub(super) fn publish_once(
        &mut self,
        reference: ObjectReference,
        reason: &'static str,
        warning: bool,
        note: String,
    ) -> (String, &'static str) {
        let id = format!(
            "{}/{}/{}",
            reference.kind.as_deref().unwrap_or_default(),
            reference.namespace.as_deref().unwrap_or_default(),
            reference.name.as_deref().unwrap_or_default()
        );
        let topic = (id, reason);
        if self.said.is_news(topic.clone(), &note) {
            self.events.publish(
                reference,
                PublishedEvent {
                    warning,
                    reason: reason.to_string(),
                    note,
                },
            );
        }
        topic
    }

    /// The reporting speaker keeps a `Valid` condition on each advertisement, peer and
    /// Community: False with the reason and what to fix, True once it is usable.
    pub(super) fn publish_conditions(
        &self,
        live: &BTreeSet<String>,
        problems: &[Problem],
        objects: [(&'static str, Vec<&kube::core::ObjectMeta>); 5],
    ) {
        if !self.is_cluster_reporter(live) {
            return;
        }
        let mut desired = Conditions::new();
        for (kind, metas) in objects {
            for meta in metas {
                let key = ObjectKey {
                    kind,
                    namespace: meta.namespace.clone().unwrap_or_default(),
                    name: meta.name.clone().unwrap_or_default(),
                };
                let problem = problems.iter().find(|p| {
                    p.kind == key.kind && p.namespace == key.namespace && p.name == key.name
                });
                let value = match problem {
                    Some(p) => Validity {
                        valid: false,
                        reason: p.reason,
                        message: p.message.clone(),
                    },
                    None => Validity {
                        valid: true,
                        reason: "Valid",
                        message: "in use by the speakers".to_string(),
                    },
                };
                desired.insert(key, value);
            }
        }
        self.conditions.publish(desired);
    }

    /// Whether this node reports cluster-wide findings (bad objects): one live speaker,
    /// chosen by the same hash on every node.
    pub(super) fn is_cluster_reporter(&self, live: &BTreeSet<String>) -> bool {
        reporter_for(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), live)
            == Some(self.config.node.as_str())
    }

    /// Whether a session's state or route count moved since the reports were last built.
    pub(super) fn sessions_changed(&self) -> bool {
        self.announcer.sessions() != self.sessions_reported
    }

    /// Writes this node's ServiceL2Status, ServiceBGPStatus and BGPSessionState objects.
    pub(super) fn write_reports(&mut self) {
        let sessions = self.announcer.sessions();
        self.sessions_reported = sessions.clone();
        let mut desired = desired_reports(
            &self.config.node,
            &self.last_plan,
            &self.last_addresses,
            &sessions,
        );
        if !self.config.bgp_service_reports {
            desired.retain(|(kind, _), _| *kind != ReportKind::Bgp);
        }
        self.reports.publish(desired);
    }
}
