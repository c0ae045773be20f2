//! The CEL rules (`x-kubernetes-validations`) in ferrolb's CRDs: what one object can be checked
//! for alone, so kube-apiserver refuses it at `kubectl apply` with the rule's message, without an
//! admission webhook. They say what [`crate::model`] says when it parses the same fields; checks
//! across objects (overlapping pools, unknown aliases, selectors) stay with the controller's
//! conditions and `ferrolb validate`.
//!
//! kube-apiserver compiles CRD rules against the CEL environment of the previous minor (1.33 for
//! 1.34): IP and CIDR functions, the strings library; no ordering of addresses, no `cel.bind`,
//! no list ranges. Lists and strings a rule walks carry `maxItems` / `maxLength`, or the server's
//! cost estimate refuses the CRD.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, ValidationRule,
};

/// A rule, or only limits, at one place in a kind's schema.
pub struct Rule {
    pub kind: &'static str,
    /// Dotted from the object's root; `[]` steps into a list's items (`spec.addresses[]`).
    pub at: &'static str,
    /// The CEL expression; empty for limits only.
    pub rule: String,
    /// A CEL expression for the message (it may quote the value); `message` when empty.
    pub message_expression: String,
    pub message: &'static str,
    /// Where the error points, relative to `at` (`.keepaliveTime`), for rules on an object.
    pub field_path: Option<&'static str>,
    pub max_items: Option<i64>,
    pub max_length: Option<i64>,
}

impl Rule {
    fn new(kind: &'static str, at: &'static str) -> Rule {
        Rule {
            kind,
            at,
            rule: String::new(),
            message_expression: String::new(),
            message: "",
            field_path: None,
            max_items: None,
            max_length: None,
        }
    }

    fn check(mut self, rule: impl Into<String>) -> Rule {
        self.rule = rule.into();
        self
    }

    fn message(mut self, message: &'static str) -> Rule {
        self.message = message;
        self
    }

    /// A message that starts with the refused value in quotes.
    fn quoting(mut self, rest: &str) -> Rule {
        self.message_expression = format!("'\"' + self + '\" {}'", rest.replace('\'', "\\'"));
        self
    }

    fn field(mut self, path: &'static str) -> Rule {
        self.field_path = Some(path);
        self
    }

    fn max_items(mut self, n: i64) -> Rule {
        self.max_items = Some(n);
        self
    }

    fn max_length(mut self, n: i64) -> Rule {
        self.max_length = Some(n);
        self
    }
}

/// Most entries in one pool (MetalLB sets none; a thousand ranges is far past any real pool).
pub const MAX_POOL_ENTRIES: i64 = 1000;
/// An IPv6 range written out in full, with spaces around the dash, fits.
const MAX_ADDRESS_ENTRY: i64 = 96;
/// An address, maybe with spaces around it.
const MAX_ADDRESS: i64 = 64;
const MAX_DURATION: i64 = 32;
pub const MAX_COMMUNITIES: i64 = 64;
const MAX_COMMUNITY: i64 = 64;
pub const MAX_ALIASES: i64 = 256;

/// Names an alias may have: it cannot be read as a community literal (no `:`), and the
/// well-known names (`no-export`) are among them.
const ALIAS_NAME: &str = "^[A-Za-z0-9]([-_.A-Za-z0-9]*[A-Za-z0-9])?$";

/// `s` (a CEL string expression) is a standard (`65000:100`) or large (`large:1:2:3`) community
/// with each part in range; digit counts are bounded first so `int()` cannot overflow.
fn community_literal(s: &str) -> String {
    let part = |i: usize| format!("int({s}.split(':')[{i}])");
    format!(
        "{s}.matches('^[0-9]{{1,5}}:[0-9]{{1,5}}$') ? ({a} <= 65535 && {b} <= 65535) : \
         ({s}.matches('^large:[0-9]{{1,10}}:[0-9]{{1,10}}:[0-9]{{1,10}}$') && \
         {l1} <= 4294967295 && {l2} <= 4294967295 && {l3} <= 4294967295)",
        a = part(0),
        b = part(1),
        l1 = part(1),
        l2 = part(2),
        l3 = part(3),
    )
}

/// The well-known community names, spelled as the model accepts them (any case, `_` for `-`).
fn well_known(s: &str) -> String {
    let names: Vec<String> = crate::model::Community::WELL_KNOWN
        .iter()
        .map(|(name, _)| format!("'{name}'"))
        .collect();
    format!(
        "[{}].exists(n, n == {s}.lowerAscii().replace('_', '-'))",
        names.join(", ")
    )
}

/// Whether the range `first-last` (CEL strings of two addresses of one family) starts after
/// it ends, with what CEL has: the first bit in which they differ is the prefix length `k` at
/// which `first`'s /k network still contains `last` and its /k+1 does not; `first` is after
/// `last` when that bit is set in `first` (its /k network's address is not in its /k+1).
/// One rule per 16 bits: the cost estimate of the whole walk is over one rule's budget.
fn starts_after_end(first: &str, last: &str) -> Vec<String> {
    (0..128)
        .step_by(16)
        .map(|low| {
            let lengths: Vec<String> = (low..low + 16)
                .map(|k| format!("'{k}': '{}'", k + 1))
                .collect();
            let lengths = format!("{{{}}}", lengths.join(", "));
            // Past 32 bits only IPv6 has more.
            let lengths = if low < 32 {
                lengths
            } else {
                format!("(ip(a).family() == 4 ? {{}} : {lengths})")
            };
            // One-element lists bind a name: CEL here has no `cel.bind`, and the cost estimate
            // of a rule that repeats the split is twice as high.
            format!(
                "[{first}].all(a, [{last}].all(b, {lengths}.exists(k, v, \
                 [cidr(a + '/' + k)].all(at, [cidr(a + '/' + v)].all(next, \
                 at.containsIP(b) && !next.containsIP(b) && !next.containsIP(at.masked().ip()))))))"
            )
        })
        .collect()
}

/// Every rule in ferrolb's CRDs.
pub fn rules() -> Vec<Rule> {
    let first = "self.split('-')[0].trim()";
    let last = "self.split('-')[1].trim()";
    let range = format!(
        "(self.contains('-') && self.split('-').size() == 2 && isIP({first}) && isIP({last}))"
    );
    let one_family = format!("ip({first}).family() == ip({last}).family()");
    let address = "isIP(self.trim())";
    let mut rules = vec![
        // IPAddressPool
        Rule::new("IPAddressPool", "spec.addresses").max_items(MAX_POOL_ENTRIES),
        Rule::new("IPAddressPool", "spec.addresses[]")
            .max_length(MAX_ADDRESS_ENTRY)
            .check(format!(
                "self.contains('-') ? {range} : (self.contains('/') ? isCIDR(self.trim()) : {address})"
            ))
            .quoting("is not a CIDR (192.0.2.0/24), a range first-last (192.0.2.10-192.0.2.20) or an address"),
        Rule::new("IPAddressPool", "spec.addresses[]")
            .check(format!("!{range} || {one_family}"))
            .quoting("mixes IPv4 and IPv6"),
        // BGPPeer
        Rule::new("BGPPeer", "spec.myASN")
            .check("self != 0")
            .message("ASN 0 is reserved (RFC 7607)"),
        Rule::new("BGPPeer", "spec.peerASN")
            .check("self != 0")
            .message("ASN 0 is reserved (RFC 7607)"),
        Rule::new("BGPPeer", "spec")
            .check("has(self.peerASN) != has(self.dynamicASN)")
            .field(".peerASN")
            .message("set one of peerASN and dynamicASN"),
        Rule::new("BGPPeer", "spec")
            .check("has(self.peerAddress) != has(self.interface)")
            .field(".peerAddress")
            .message("set one of peerAddress and interface"),
        Rule::new("BGPPeer", "spec.interface")
            .max_length(15)
            .check("self.matches('^[^/\\\\s:]+$')")
            .quoting("is not an interface name"),
        Rule::new("BGPPeer", "spec.vrf")
            .max_length(15)
            .check("self.matches('^[^/\\\\s:]+$')")
            .quoting("is not a VRF device name"),
        Rule::new("BGPPeer", "spec.peerAddress")
            .max_length(MAX_ADDRESS)
            .check(address)
            .quoting("is not an IP address"),
        Rule::new("BGPPeer", "spec.sourceAddress")
            .max_length(MAX_ADDRESS)
            .check(address)
            .quoting("is not an IP address"),
        Rule::new("BGPPeer", "spec.routerID")
            .max_length(MAX_ADDRESS)
            .check(format!("{address} && ip(self.trim()).family() == 4"))
            .quoting("is not an IPv4 address"),
        Rule::new("BGPPeer", "spec")
            .check(
                "!has(self.sourceAddress) || !has(self.peerAddress) || \
                 !isIP(self.sourceAddress.trim()) || !isIP(self.peerAddress.trim()) || \
                 ip(self.sourceAddress.trim()).family() == ip(self.peerAddress.trim()).family()",
            )
            .field(".sourceAddress")
            .message("sourceAddress and peerAddress are of different families"),
        Rule::new("BGPPeer", "spec.holdTime")
            .max_length(MAX_DURATION)
            .check("duration(self) == duration('0s') || duration(self) >= duration('3s')")
            .quoting("is too short: use 0s (no keepalives) or at least 3s"),
        Rule::new("BGPPeer", "spec.keepaliveTime").max_length(MAX_DURATION),
        Rule::new("BGPPeer", "spec")
            .check(
                "!has(self.keepaliveTime) || duration(self.keepaliveTime) <= \
                 (has(self.holdTime) ? duration(self.holdTime) : duration('90s'))",
            )
            .field(".keepaliveTime")
            .message("keepaliveTime is above the hold time (90s when holdTime is not set)"),
        Rule::new("BGPPeer", "spec.connectTime")
            .max_length(MAX_DURATION)
            .check("duration(self) >= duration('1s') && duration(self) <= duration('65535s')")
            .quoting("is out of range (1s to 65535s)"),
        Rule::new("BGPPeer", "spec")
            .check("!(has(self.password) && has(self.passwordSecret))")
            .field(".passwordSecret")
            .message("password and passwordSecret are both set; use one"),
        // BGPAdvertisement
        Rule::new("BGPAdvertisement", "spec.communities").max_items(MAX_COMMUNITIES),
        Rule::new("BGPAdvertisement", "spec.communities[]")
            .max_length(MAX_COMMUNITY)
            .check(format!(
                "self.trim().contains(':') ? ({}) : self.trim().matches('{ALIAS_NAME}')",
                community_literal("self.trim()")
            ))
            .quoting(
                "is neither a community (65000:100 with 16-bit halves, large:64512:1:2 with \
                 32-bit parts) nor a well-known or alias name",
            ),
        // Community
        Rule::new("Community", "spec.communities")
            .max_items(MAX_ALIASES)
            .check("self.all(a, self.exists_one(b, b.name == a.name))")
            .message("alias names must be unique"),
        Rule::new("Community", "spec.communities[].name")
            .max_length(MAX_COMMUNITY)
            .check(format!("self.matches('{ALIAS_NAME}')"))
            .quoting("is not an alias name: letters, digits, '-', '_' and '.', no ':'"),
        Rule::new("Community", "spec.communities[].value")
            .max_length(MAX_COMMUNITY)
            .check(format!(
                "({}) || ({})",
                community_literal("self.trim()"),
                well_known("self.trim()")
            ))
            .quoting(
                "is not a community (65000:100 with 16-bit halves, large:64512:1:2 with 32-bit \
                 parts, or a well-known name such as no-export)",
            ),
    ];
    rules.extend(starts_after_end(first, last).into_iter().map(|walk| {
        Rule::new("IPAddressPool", "spec.addresses[]")
            .check(format!("!{range} || !({one_family}) || !({walk})"))
            .quoting("starts after it ends")
    }));
    rules
}

/// The schema node at `at` (see [`Rule::at`]) under `root`.
fn node<'a>(root: &'a mut JSONSchemaProps, at: &str) -> Option<&'a mut JSONSchemaProps> {
    let mut here = root;
    for step in at.split('.') {
        let (name, items) = match step.strip_suffix("[]") {
            Some(name) => (name, true),
            None => (step, false),
        };
        here = here.properties.as_mut()?.get_mut(name)?;
        if items {
            here = match here.items.as_mut()? {
                JSONSchemaPropsOrArray::Schema(s) => s,
                JSONSchemaPropsOrArray::Schemas(_) => return None,
            };
        }
    }
    Some(here)
}

/// Adds the rules and limits of `crd`'s kind to its schemas. Panics on a rule whose place is
/// not in the schema: that is a mistake in [`rules`], caught by every test that makes CRDs.
pub fn apply(crd: &mut CustomResourceDefinition) {
    let kind = crd.spec.names.kind.clone();
    for version in &mut crd.spec.versions {
        let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        for rule in rules().into_iter().filter(|r| r.kind == kind) {
            let here = node(root, rule.at)
                .unwrap_or_else(|| panic!("{kind}: no {} in the schema", rule.at));
            if rule.max_items.is_some() {
                here.max_items = rule.max_items;
            }
            if rule.max_length.is_some() {
                here.max_length = rule.max_length;
            }
            if rule.rule.is_empty() {
                continue;
            }
            here.x_kubernetes_validations
                .get_or_insert_with(Vec::new)
                .push(ValidationRule {
                    rule: rule.rule,
                    message: (!rule.message.is_empty()).then(|| rule.message.to_string()),
                    message_expression: (!rule.message_expression.is_empty())
                        .then_some(rule.message_expression),
                    field_path: rule.field_path.map(str::to_string),
                    ..Default::default()
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_has_a_place_in_its_kinds_schema() {
        for mut crd in crate::crds::all() {
            let kind = crd.spec.names.kind.clone();
            let root = crd.spec.versions[0]
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
                .unwrap();
            for rule in rules().iter().filter(|r| r.kind == kind) {
                assert!(node(root, rule.at).is_some(), "{kind} {}", rule.at);
            }
        }
    }

    #[test]
    fn every_rule_has_a_message_and_lists_it_walks_are_bounded() {
        for rule in rules() {
            if rule.rule.is_empty() {
                assert!(rule.max_items.is_some() || rule.max_length.is_some());
                continue;
            }
            assert!(
                !rule.message.is_empty() || !rule.message_expression.is_empty(),
                "{} {}",
                rule.kind,
                rule.at
            );
        }
    }
}
