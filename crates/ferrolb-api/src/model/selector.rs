//! Kubernetes label selectors, validated once and then matched without allocation.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

/// A user-facing error in a label selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error(
        "label selector on key {key:?}: unknown operator {operator:?} (In, NotIn, Exists, DoesNotExist)"
    )]
    UnknownOperator { key: String, operator: String },
    #[error("label selector on key {key:?}: operator {operator} needs at least one value")]
    MissingValues { key: String, operator: String },
    #[error("label selector on key {key:?}: operator {operator} takes no values")]
    UnexpectedValues { key: String, operator: String },
}

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::In(k, values) => labels.get(k).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(k, values) => labels.get(k).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

/// A validated label selector. The empty selector matches everything, as in Kubernetes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// A selector that requires each of `labels`.
    pub fn from_labels(labels: &Labels) -> Self {
        Selector {
            requirements: labels
                .iter()
                .map(|(k, v)| Requirement::In(k.clone(), BTreeSet::from([v.clone()])))
                .collect(),
        }
    }

    pub fn parse(selector: &LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements: Vec<Requirement> = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| Requirement::In(k.clone(), BTreeSet::from([v.clone()])))
            .collect();
        for expr in selector.match_expressions.iter().flatten() {
            let values: BTreeSet<String> = expr.values.iter().flatten().cloned().collect();
            let key = expr.key.clone();
            let operator = expr.operator.clone();
            if !matches!(
                operator.as_str(),
                "In" | "NotIn" | "Exists" | "DoesNotExist"
            ) {
                return Err(SelectorError::UnknownOperator { key, operator });
            }
            let needs_values = matches!(operator.as_str(), "In" | "NotIn");
            if needs_values && values.is_empty() {
                return Err(SelectorError::MissingValues { key, operator });
            }
            if !needs_values && !values.is_empty() {
                return Err(SelectorError::UnexpectedValues { key, operator });
            }
            requirements.push(match operator.as_str() {
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                _ => Requirement::DoesNotExist(key),
            });
        }
        Ok(Selector { requirements })
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

/// Parses a list of selectors, stopping at the first bad one.
pub fn parse_selectors(selectors: &[LabelSelector]) -> Result<Vec<Selector>, SelectorError> {
    selectors.iter().map(Selector::parse).collect()
}

/// MetalLB's rule for selector lists: an empty list matches everything, otherwise any one must match.
pub fn any_matches(selectors: &[Selector], labels: &Labels) -> bool {
    selectors.is_empty() || selectors.iter().any(|s| s.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn match_labels_and_expressions_must_all_hold() {
        let sel = Selector::parse(&LabelSelector {
            match_labels: Some(labels(&[("team", "net")]).into_iter().collect()),
            match_expressions: Some(vec![
                expr("env", "In", &["prod", "staging"]),
                expr("legacy", "DoesNotExist", &[]),
            ]),
        })
        .unwrap();
        assert!(sel.matches(&labels(&[("team", "net"), ("env", "prod")])));
        assert!(!sel.matches(&labels(&[("team", "net"), ("env", "dev")])));
        assert!(!sel.matches(&labels(&[("team", "net"), ("env", "prod"), ("legacy", "")])));
    }

    #[test]
    fn not_in_matches_objects_without_the_key() {
        let sel = Selector::parse(&LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![expr("env", "NotIn", &["prod"])]),
        })
        .unwrap();
        assert!(sel.matches(&labels(&[])));
        assert!(!sel.matches(&labels(&[("env", "prod")])));
    }

    #[test]
    fn unknown_operator_and_missing_values_are_errors() {
        let bad_op = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![expr("env", "Like", &["x"])]),
        };
        assert!(matches!(
            Selector::parse(&bad_op),
            Err(SelectorError::UnknownOperator { .. })
        ));
        let no_values = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![expr("env", "In", &[])]),
        };
        assert!(matches!(
            Selector::parse(&no_values),
            Err(SelectorError::MissingValues { .. })
        ));
    }

    #[test]
    fn empty_selector_list_matches_everything() {
        assert!(any_matches(&[], &labels(&[])));
    }
}
