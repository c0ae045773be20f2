//! The requests a component makes to the API server, declared next to its code so the
//! install manifests can be checked against them: RBAC grants exactly these, no more.

/// One verb on one resource (`resource/status` for the status subresource).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiCall {
    pub group: &'static str,
    pub resource: &'static str,
    pub verb: &'static str,
    /// Granted by a ClusterRole (objects in every namespace, or cluster-scoped objects);
    /// otherwise by a Role in ferrolb's namespace.
    pub cluster_wide: bool,
}

/// Every verb of `verbs` on each of `resources`.
pub fn calls(
    group: &'static str,
    resources: &[&'static str],
    verbs: &[&'static str],
    cluster_wide: bool,
) -> Vec<ApiCall> {
    resources
        .iter()
        .flat_map(|resource| {
            verbs.iter().map(move |verb| ApiCall {
                group,
                resource,
                verb,
                cluster_wide,
            })
        })
        .collect()
}
