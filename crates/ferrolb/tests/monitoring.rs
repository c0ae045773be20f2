//! The Grafana dashboard and the alert rules (`manifests/monitoring/`) query only metrics that
//! ferrolb's controller and speaker export, and cover what an operator watches.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Deserialize;

fn monitoring() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../manifests/monitoring"
    ))
}

/// Every series name the two components export (histograms as their three series).
fn exported() -> BTreeSet<String> {
    let names = ferrolb_speaker::metrics::Metrics::new()
        .names
        .into_iter()
        .chain(ferrolb_controller::metrics::Metrics::new().names);
    let mut out = BTreeSet::new();
    for name in names {
        for suffix in ["", "_bucket", "_sum", "_count"] {
            out.insert(format!("{name}{suffix}"));
        }
    }
    out
}

/// PromQL words followed by a list of labels in parentheses.
const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Other PromQL words that are not metric names.
const KEYWORDS: [&str; 5] = ["bool", "and", "or", "unless", "offset"];

/// Aggregation operators, which may be followed by `by (...)` before their parenthesis.
const AGGREGATIONS: [&str; 12] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// The metric names an expression selects: identifiers outside strings, label matchers,
/// ranges and grouping lists that are not functions, keywords or numbers.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let mut grouping_next = false;
    while i < chars.len() {
        let c = chars[i];
        let skip_to = |close: char, from: usize| {
            chars[from + 1..]
                .iter()
                .position(|&x| x == close)
                .map_or(chars.len(), |p| from + 1 + p + 1)
        };
        match c {
            '"' | '\'' | '`' => i = skip_to(c, i),
            '{' => i = skip_to('}', i),
            '[' => i = skip_to(']', i),
            '(' if grouping_next => {
                i = skip_to(')', i);
                grouping_next = false;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i]))
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                if GROUPING.contains(&word.as_str()) {
                    grouping_next = true;
                } else if KEYWORDS.contains(&word.as_str())
                    || AGGREGATIONS.contains(&word.as_str())
                    || next == Some(&'(')
                {
                    // A function, or a keyword.
                } else {
                    names.push(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn the_expression_reader_finds_metric_names_only() {
    assert_eq!(
        metric_names(
            r#"sum by (pool, family) (ferrolb_a{job=~"$job"}) / on(pool) rate(ferrolb_b_total[5m]) > 0.9 or up{x="y"} == 0"#
        ),
        ["ferrolb_a", "ferrolb_b_total", "up"]
    );
    assert_eq!(
        metric_names("histogram_quantile(0.99, sum by (le) (rate(m_bucket[5m])))"),
        ["m_bucket"]
    );
}

/// Every `expr` in a JSON tree.
fn expressions(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => expressions(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

/// Checks each expression names at least one metric and only exported ones (or Prometheus's
/// `up`); returns every name used.
fn check(what: &str, exprs: &[String]) -> BTreeSet<String> {
    let exported = exported();
    let mut used = BTreeSet::new();
    assert!(!exprs.is_empty(), "{what}: no expressions");
    for expr in exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{what}: `{expr}` selects no metric");
        for name in names {
            assert!(
                name == "up" || exported.contains(&name),
                "{what}: `{expr}` names `{name}`, which ferrolb does not export"
            );
            used.insert(name);
        }
    }
    used
}

#[test]
fn every_dashboard_query_names_an_exported_metric() {
    let text = std::fs::read_to_string(monitoring().join("dashboard.json")).expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut exprs = Vec::new();
    expressions(&dashboard["panels"], &mut exprs);
    let used = check("dashboard", &exprs);
    // The panels the issue of operating ferrolb asks for, by the metric each one reads.
    for metric in [
        "ferrolb_addresses_in_use",
        "ferrolb_allocation_failures_total",
        "ferrolb_speaker_announced_addresses",
        "ferrolb_l2_conflicts_total",
        "ferrolb_bgp_session_up",
        "ferrolb_bfd_session_up",
        "ferrolb_bfd_transitions_total",
        "ferrolb_bgp_announced_prefixes",
        "ferrolb_forwarded_packets_total",
        "ferrolb_source_range_dropped_packets_total",
        "ferrolb_gossip_members",
        "ferrolb_gossip_failures_total",
        "ferrolb_reconcile_duration_seconds_bucket",
        "ferrolb_speaker_decision_seconds_bucket",
    ] {
        assert!(used.contains(metric), "no dashboard panel reads {metric}");
    }
    // Panel ids are unique, or Grafana drops panels.
    let ids: Vec<u64> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().expect("panel id"))
        .collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len());
}

#[test]
fn every_alert_names_an_exported_metric_and_says_what_to_do() {
    let text =
        std::fs::read_to_string(monitoring().join("prometheusrule.yaml")).expect("alert rules");
    let rule =
        serde_json::Value::deserialize(serde_yaml::Deserializer::from_str(&text)).expect("YAML");
    assert_eq!(rule["kind"], "PrometheusRule");
    let rules: Vec<&serde_json::Value> = rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    let exprs: Vec<String> = rules
        .iter()
        .map(|r| r["expr"].as_str().expect("expr").to_string())
        .collect();
    check("alerts", &exprs);
    let alerts: BTreeSet<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    for alert in [
        "FerrolbPoolNearlyExhausted",
        "FerrolbServiceWithoutAddress",
        "FerrolbBGPSessionDown",
        "FerrolbBFDFlapping",
        "FerrolbSpeakerNotReady",
        "FerrolbNoControllerLeader",
    ] {
        assert!(alerts.contains(alert), "no alert {alert}");
    }
    for r in &rules {
        for field in ["summary", "description"] {
            assert!(
                r["annotations"][field]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{} has no {field}",
                r["alert"]
            );
        }
        assert!(
            r["labels"]["severity"].is_string(),
            "{} has no severity",
            r["alert"]
        );
    }
}

#[test]
fn cumulative_counts_are_counters_named_total() {
    let speaker = ferrolb_speaker::metrics::Metrics::new();
    let controller = ferrolb_controller::metrics::Metrics::new();
    // Every counter's family has a `_total` name (types from what a scrape would show).
    speaker.l2_conflicts.with_label_values(&["defended"]).inc();
    controller.allocations.inc();
    controller
        .allocation_failures
        .with_label_values(&["x"])
        .inc();
    controller.status_writes.inc();
    controller.address_changes.inc();
    controller.write_errors.inc();
    for family in speaker
        .registry
        .gather()
        .into_iter()
        .chain(controller.registry.gather())
    {
        let counter = family.get_field_type() == prometheus::proto::MetricType::COUNTER;
        assert_eq!(
            counter,
            family.name().ends_with("_total"),
            "{}: a counter iff named _total",
            family.name()
        );
    }
}
