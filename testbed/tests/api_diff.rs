//! fake-apiserver held to kube-apiserver: one scripted sequence of requests runs against both,
//! each response is normalised (uids, timestamps, resource versions, continue tokens, allocated
//! cluster IPs and node ports) and compared. Every difference must be one the README lists under
//! "Known differences from kube-apiserver", and every difference listed there must still occur.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use ferrolb_testbed::control_plane::ControlPlane;
use serde_json::{Value, json};

const FAKE_PORT: u16 = 6444;

/// One request of the script.
struct Step {
    name: &'static str,
    method: &'static str,
    /// With `{var}` for a value saved by an earlier step (each server has its own).
    path: String,
    content_type: &'static str,
    accept: &'static str,
    body: Option<Value>,
    /// (variable, JSON pointer into the response) to save.
    save: Vec<(&'static str, &'static str)>,
    /// A watch: the response is newline-separated events.
    watch: bool,
    /// Repeated (up to 30 s) until it answers 200: for what kube-apiserver does in the
    /// background (a CRD being established).
    until_ok: bool,
}

fn step(name: &'static str, method: &'static str, path: &str) -> Step {
    Step {
        name,
        method,
        path: path.to_string(),
        content_type: "application/json",
        accept: "application/json",
        body: None,
        save: Vec::new(),
        watch: false,
        until_ok: false,
    }
}

fn get(name: &'static str, path: &str) -> Step {
    step(name, "GET", path)
}

fn delete(name: &'static str, path: &str) -> Step {
    step(name, "DELETE", path)
}

fn post(name: &'static str, path: &str, body: Value) -> Step {
    step(name, "POST", path).body(body)
}

fn put(name: &'static str, path: &str, body: Value) -> Step {
    step(name, "PUT", path).body(body)
}

fn patch(name: &'static str, path: &str, content_type: &'static str, body: Value) -> Step {
    Step {
        content_type,
        ..step(name, "PATCH", path).body(body)
    }
}

fn watch(name: &'static str, path: &str) -> Step {
    Step {
        watch: true,
        ..get(name, path)
    }
}

impl Step {
    fn body(mut self, body: Value) -> Step {
        self.body = Some(body);
        self
    }

    fn save(mut self, var: &'static str, pointer: &'static str) -> Step {
        self.save.push((var, pointer));
        self
    }

    fn accept(mut self, accept: &'static str) -> Step {
        self.accept = accept;
        self
    }

    fn until_ok(mut self) -> Step {
        self.until_ok = true;
        self
    }
}

const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";
const APPLY: &str = "application/apply-patch+yaml";
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

fn config_map(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.diff.example.com"},
        "spec": {
            "group": "diff.example.com", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Color", "type": "string", "jsonPath": ".spec.color"}
                ],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["size"], "properties": {
                        "size": {"type": "integer", "minimum": 1, "maximum": 10},
                        "color": {"type": "string", "default": "blue", "enum": ["blue", "red"]}
                    }},
                    "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
                }}}
            }]
        }
    })
}

/// The script: what ferrolb's components and kubectl ask of an API server.
fn script() -> Vec<Step> {
    let ns = "/api/v1/namespaces/diff";
    let cms = format!("{ns}/configmaps");
    let svcs = format!("{ns}/services");
    let widgets = "/apis/diff.example.com/v1/namespaces/diff/widgets";
    vec![
        post(
            "namespace-create",
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "diff"}}),
        ),
        post(
            "configmap-create",
            &cms,
            config_map("a", json!({"suite": "diff", "app": "one"})),
        )
        .save("rv_a", "/metadata/resourceVersion"),
        post(
            "configmap-create-b",
            &cms,
            config_map("b", json!({"suite": "diff", "app": "two"})),
        ),
        post(
            "configmap-create-c",
            &cms,
            config_map("c", json!({"suite": "diff", "app": "two"})),
        ),
        post(
            "configmap-create-existing",
            &cms,
            config_map("a", json!({})),
        ),
        post(
            "configmap-create-invalid-name",
            &cms,
            config_map("Bad_Name", json!({})),
        ),
        post(
            "configmap-create-dry-run",
            &format!("{cms}?dryRun=All"),
            config_map("e", json!({})),
        ),
        get("configmap-get-dry-run", &format!("{cms}/e")),
        get("configmap-get", &format!("{cms}/a")),
        get("configmap-get-missing", &format!("{cms}/zz")),
        get(
            "configmap-list-label",
            &format!("{cms}?labelSelector=suite%3Ddiff,app%3Dtwo"),
        ),
        get(
            "configmap-list-label-set",
            &format!("{cms}?labelSelector=app%20in%20(one,two)"),
        ),
        get(
            "configmap-list-label-bad",
            &format!("{cms}?labelSelector=app%3D%3D%3Done"),
        ),
        get(
            "configmap-list-field",
            &format!("{cms}?fieldSelector=metadata.name%3Db"),
        ),
        get(
            "configmap-list-field-unknown",
            &format!("{cms}?fieldSelector=data.k%3Dv"),
        ),
        get(
            "configmap-list-page-1",
            &format!("{cms}?labelSelector=suite%3Ddiff&limit=2"),
        )
        .save("continue", "/metadata/continue"),
        get(
            "configmap-list-page-2",
            &format!("{cms}?labelSelector=suite%3Ddiff&limit=2&continue={{continue}}"),
        ),
        put(
            "configmap-update",
            &format!("{cms}/a"),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "a", "resourceVersion": "{rv_a}", "labels": {"suite": "diff", "app": "one"}},
                   "data": {"k": "v2"}}),
        ),
        put(
            "configmap-update-stale",
            &format!("{cms}/a"),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "a", "resourceVersion": "{rv_a}"}, "data": {"k": "v3"}}),
        ),
        patch(
            "configmap-patch-merge",
            &format!("{cms}/a"),
            MERGE,
            json!({"data": {"m": "1"}}),
        ),
        patch(
            "configmap-patch-json",
            &format!("{cms}/a"),
            JSON_PATCH,
            json!([{"op": "add", "path": "/data/j", "value": "2"}]),
        ),
        patch(
            "configmap-patch-json-test-fails",
            &format!("{cms}/a"),
            JSON_PATCH,
            json!([{"op": "test", "path": "/data/k", "value": "nope"}]),
        ),
        patch(
            "configmap-patch-strategic",
            &format!("{cms}/a"),
            STRATEGIC,
            json!({"data": {"s": "3", "m": null}}),
        ),
        patch(
            "configmap-patch-missing",
            &format!("{cms}/zz"),
            MERGE,
            json!({"data": {}}),
        ),
        patch(
            "apply-create",
            &format!("{cms}/d?fieldManager=x"),
            APPLY,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "d", "namespace": "diff", "labels": {"suite": "diff"}},
                   "data": {"owned": "x"}}),
        ),
        patch(
            "apply-conflict",
            &format!("{cms}/d?fieldManager=y"),
            APPLY,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "d", "namespace": "diff"}, "data": {"owned": "y"}}),
        ),
        patch(
            "apply-force",
            &format!("{cms}/d?fieldManager=y&force=true"),
            APPLY,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "d", "namespace": "diff"}, "data": {"owned": "y"}}),
        ),
        patch(
            "apply-drop-field",
            &format!("{cms}/d?fieldManager=y"),
            APPLY,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "d", "namespace": "diff"}, "data": {"other": "z"}}),
        ),
        // Finalizers and deletion.
        post(
            "finalizer-create",
            &cms,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "f", "finalizers": ["diff.example.com/hold"]}}),
        ),
        delete("finalizer-delete", &format!("{cms}/f")),
        get("finalizer-get-deleting", &format!("{cms}/f")),
        patch(
            "finalizer-release",
            &format!("{cms}/f"),
            MERGE,
            json!({"metadata": {"finalizers": null}}),
        ),
        get("finalizer-get-gone", &format!("{cms}/f")),
        step("delete-precondition-fails", "DELETE", &format!("{cms}/b"))
            .body(json!({"kind": "DeleteOptions", "apiVersion": "v1",
                         "preconditions": {"resourceVersion": "1"}})),
        delete("delete", &format!("{cms}/c")),
        delete("delete-missing", &format!("{cms}/c")),
        // Watches from a resource version, with a selector objects enter and leave.
        get("watch-start", &format!("{cms}?labelSelector=suite%3Ddiff"))
            .save("rv_w", "/metadata/resourceVersion"),
        post(
            "watched-create",
            &cms,
            config_map("w", json!({"suite": "diff", "stage": "out"})),
        ),
        patch(
            "watched-enter",
            &format!("{cms}/w"),
            MERGE,
            json!({"metadata": {"labels": {"stage": "in"}}}),
        ),
        patch(
            "watched-leave",
            &format!("{cms}/w"),
            MERGE,
            json!({"metadata": {"labels": {"stage": "out"}}}),
        ),
        delete("watched-delete", &format!("{cms}/w")),
        watch(
            "watch-all",
            &format!(
                "{cms}?watch=1&resourceVersion={{rv_w}}&labelSelector=suite%3Ddiff&timeoutSeconds=1"
            ),
        ),
        watch(
            "watch-selector-enter-leave",
            &format!(
                "{cms}?watch=1&resourceVersion={{rv_w}}&labelSelector=stage%3Din&timeoutSeconds=1"
            ),
        ),
        watch(
            "watch-too-old",
            &format!("{cms}?watch=1&resourceVersion=1&timeoutSeconds=1"),
        ),
        watch(
            "watch-field-selector",
            &format!(
                "{cms}?watch=1&resourceVersion={{rv_w}}&fieldSelector=metadata.name%3Dw&timeoutSeconds=1"
            ),
        ),
        // A Service: allocation, the status subresource, strategic merge of ports, 422s.
        post(
            "service-create",
            &svcs,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
                   "spec": {"type": "LoadBalancer", "selector": {"app": "x"},
                            "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
        ),
        patch(
            "service-status",
            &format!("{svcs}/lb/status"),
            MERGE,
            json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10", "ipMode": "VIP"}]}}}),
        ),
        patch(
            "service-spec-write-ignores-status",
            &format!("{svcs}/lb"),
            MERGE,
            json!({"spec": {"selector": {"app": "y"}},
                   "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.99"}]}}}),
        ),
        patch(
            "service-strategic-ports",
            &format!("{svcs}/lb"),
            STRATEGIC,
            json!({"spec": {"ports": [{"name": "https", "port": 443, "targetPort": 8443}]}}),
        ),
        patch(
            "service-status-invalid",
            &format!("{svcs}/lb/status"),
            MERGE,
            json!({"status": {"loadBalancer": {"ingress": [{"ip": "not-an-ip"}]}}}),
        ),
        post(
            "service-create-invalid",
            &svcs,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bad"},
                   "spec": {"type": "LoadBalancer", "ports": [{"port": 0}]}}),
        ),
        get(
            "service-list-field",
            &format!("{svcs}?fieldSelector=spec.type%3DLoadBalancer"),
        ),
        // Events through both APIs.
        post(
            "event-core-create",
            &format!("{ns}/events"),
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1"},
                   "involvedObject": {"apiVersion": "v1", "kind": "ConfigMap", "name": "a", "namespace": "diff"},
                   "reason": "Tested", "message": "hello", "type": "Normal",
                   "source": {"component": "diff"}, "count": 1,
                   "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z"}),
        ),
        get(
            "event-core-read-as-new",
            "/apis/events.k8s.io/v1/namespaces/diff/events/e1",
        ),
        post(
            "event-new-create",
            "/apis/events.k8s.io/v1/namespaces/diff/events",
            json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e2"},
                   "regarding": {"apiVersion": "v1", "kind": "ConfigMap", "name": "a", "namespace": "diff"},
                   "reason": "Tested", "note": "hi", "type": "Warning", "action": "Testing",
                   "reportingController": "diff.example.com/x", "reportingInstance": "x-1",
                   "eventTime": "2026-01-01T00:00:00.000000Z"}),
        ),
        get("event-new-read-as-core", &format!("{ns}/events/e2")),
        post(
            "event-new-create-invalid",
            "/apis/events.k8s.io/v1/namespaces/diff/events",
            json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e3"},
                   "regarding": {"kind": "ConfigMap", "name": "a", "namespace": "diff"},
                   "reason": "Tested", "type": "Normal", "eventTime": "2026-01-01T00:00:00.000000Z"}),
        ),
        get(
            "event-list-field",
            &format!("{ns}/events?fieldSelector=reason%3DTested"),
        ),
        get(
            "event-list-field-involved",
            &format!("{ns}/events?fieldSelector=involvedObject.name%3Da,type%3DWarning"),
        ),
        // A CRD, then its custom resources.
        post(
            "crd-create",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            widget_crd(),
        ),
        get("crd-served", widgets).until_ok(),
        post(
            "custom-create-defaulted",
            widgets,
            json!({"apiVersion": "diff.example.com/v1", "kind": "Widget",
                   "metadata": {"name": "w1"}, "spec": {"size": 3}}),
        ),
        post(
            "custom-create-pruned",
            widgets,
            json!({"apiVersion": "diff.example.com/v1", "kind": "Widget",
                   "metadata": {"name": "w2"}, "spec": {"size": 4, "extra": true}}),
        ),
        post(
            "custom-create-invalid",
            widgets,
            json!({"apiVersion": "diff.example.com/v1", "kind": "Widget",
                   "metadata": {"name": "w3"}, "spec": {"size": 11, "color": "green"}}),
        ),
        post(
            "custom-create-missing-required",
            widgets,
            json!({"apiVersion": "diff.example.com/v1", "kind": "Widget",
                   "metadata": {"name": "w4"}, "spec": {}}),
        ),
        patch(
            "custom-status",
            &format!("{widgets}/w1/status"),
            MERGE,
            json!({"status": {"ready": true}, "spec": {"size": 9}}),
        ),
        patch(
            "custom-spec-bumps-generation",
            &format!("{widgets}/w1"),
            MERGE,
            json!({"spec": {"size": 5}}),
        ),
        get("custom-list", widgets),
        get("custom-table", widgets).accept(TABLE),
        get(
            "configmap-table",
            &format!("{cms}?labelSelector=suite%3Ddiff"),
        )
        .accept(TABLE),
        delete("custom-delete", &format!("{widgets}/w2")),
        delete("namespace-delete", "/api/v1/namespaces/diff"),
    ]
}

/// A server the script runs against, with the values its responses gave.
struct Server {
    name: &'static str,
    base: String,
    token: Option<String>,
    vars: BTreeMap<&'static str, String>,
}

impl Server {
    fn fill(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (var, value) in &self.vars {
            out = out.replace(&format!("{{{var}}}"), value);
        }
        out
    }
}

/// What a server answered: its status code and its body (a watch's events as a list).
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: u16,
    body: Value,
}

fn send(api: &ControlPlane, server: &Server, step: &Step, n: usize) -> Answer {
    let url = format!("{}{}", server.base, server.fill(&step.path));
    let mut args: Vec<String> = vec![
        "-sS".into(),
        "-k".into(),
        "-X".into(),
        step.method.into(),
        "-A".into(),
        "diff-client".into(),
        "-H".into(),
        format!("Accept: {}", step.accept),
        "-w".into(),
        "\n%{http_code}".into(),
        "--max-time".into(),
        "10".into(),
    ];
    if let Some(token) = &server.token {
        args.extend(["-H".into(), format!("Authorization: Bearer {token}")]);
    }
    if let Some(body) = &step.body {
        let file = api.dir.join(format!("body-{}-{n}.json", server.name));
        std::fs::write(&file, server.fill(&body.to_string())).unwrap();
        args.extend([
            "-H".into(),
            format!("Content-Type: {}", step.content_type),
            "--data-binary".into(),
            format!("@{}", file.display()),
        ]);
    }
    args.push(url);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = api.run("curl", &args).expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    let status: u16 = status.trim().parse().unwrap_or(0);
    let body = if step.watch {
        Value::Array(
            body.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap_or(Value::String(l.into())))
                .collect(),
        )
    } else {
        serde_json::from_str(body).unwrap_or(Value::String(body.into()))
    };
    Answer { status, body }
}

fn run(api: &ControlPlane, server: &mut Server, step: &Step, n: usize) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        let answer = send(api, server, step, n);
        if !step.until_ok || answer.status == 200 || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for (var, pointer) in &step.save {
        let value = answer.body.pointer(pointer).and_then(Value::as_str);
        server
            .vars
            .insert(var, value.unwrap_or_default().to_string());
    }
    answer
}

/// Replaces what differs between any two servers (or two runs) by a placeholder.
fn normalise(value: &mut Value) {
    in_cause_order(value);
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                let placeholder = match key.as_str() {
                    "uid" => "<uid>",
                    "resourceVersion" => "<resourceVersion>",
                    "creationTimestamp" | "deletionTimestamp" | "time" | "lastTransitionTime" => {
                        "<time>"
                    }
                    "continue" => "<continue>",
                    "clusterIP" | "nodePort" | "healthCheckNodePort" => "<allocated>",
                    _ => "",
                };
                if key == "message"
                    && let Some(text) = v.as_str()
                {
                    *v = Value::String(without_versions(text));
                    continue;
                }
                if !placeholder.is_empty() && !v.is_null() && v.as_str() != Some("") {
                    if v.as_str() == Some("None") {
                        continue;
                    }
                    *v = Value::String(placeholder.into());
                } else if key == "clusterIPs" {
                    *v = Value::String("<allocated>".into());
                } else {
                    normalise(v);
                }
            }
            // A Table's Age column is the time since creation.
            if let (Some(Value::Array(columns)), Some(Value::Array(rows))) =
                (map.get("columnDefinitions").cloned(), map.get_mut("rows"))
            {
                let age = columns.iter().position(|c| c["name"] == "Age");
                for row in rows {
                    if let (Some(i), Some(Value::Array(cells))) = (age, row.get_mut("cells"))
                        && let Some(cell) = cells.get_mut(i)
                    {
                        *cell = Value::String("<age>".into());
                    }
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalise),
        _ => {}
    }
}

/// A message with the resource versions it quotes (`in record (202)`, `version: 1 (415)`) as
/// placeholders: each server counts its own.
fn without_versions(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('(') {
        let (before, after) = rest.split_at(open + 1);
        out.push_str(before);
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with(')') {
            out.push_str("<resourceVersion>");
            rest = &after[digits..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A 422's causes sorted by field, and its message listing them in that order: kube-apiserver
/// reports a custom resource's schema errors in no fixed order (two runs of the same request
/// differ), so only the set of causes can be compared.
fn in_cause_order(status: &mut Value) {
    let Some(causes) = status
        .pointer_mut("/details/causes")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    if causes.len() < 2 {
        return;
    }
    let key = |c: &Value| (c["field"].to_string(), c["message"].to_string());
    causes.sort_by_key(key);
    let listed: Vec<String> = causes
        .iter()
        .map(|c| match c["field"].as_str() {
            Some(field) => format!("{field}: {}", c["message"].as_str().unwrap_or_default()),
            None => c["message"].as_str().unwrap_or_default().to_string(),
        })
        .collect();
    if let Some(message) = status["message"].as_str()
        && let Some((prefix, _)) = message.split_once(" is invalid: ")
    {
        status["message"] = Value::String(format!("{prefix} is invalid: [{}]", listed.join(", ")));
    }
}

/// Paths (`.a.b[2]`) at which `fake` differs from `real`.
fn differences(real: &Value, fake: &Value, path: &str, out: &mut Vec<String>) {
    match (real, fake) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = format!("{path}.{k}");
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => differences(x, y, &p, out),
                    _ => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(x, y, &format!("{path}[{i}]"), out);
            }
        }
        (a, b) if a == b => {}
        _ => out.push(if path.is_empty() {
            ".".into()
        } else {
            path.into()
        }),
    }
}

/// The accepted differences: `- \`step path\`: reason` lines of the README's section.
fn accepted() -> Vec<(String, String)> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let section = readme
        .split("### Known differences from kube-apiserver")
        .nth(1)
        .expect("README has the known differences section");
    let section = section.split("\n#").next().unwrap();
    section
        .lines()
        .filter_map(|l| l.strip_prefix("- `"))
        .filter_map(|l| l.split('`').next())
        .filter_map(|entry| entry.split_once(' '))
        .map(|(step, path)| (step.to_string(), path.to_string()))
        .collect()
}

/// Whether an accepted (step, path) covers a difference: `*` is any step, and a path covers
/// everything under it; `[*]` is any index.
fn covers(accepted: &(String, String), step: &str, path: &str) -> bool {
    let (a_step, a_path) = accepted;
    if a_step != "*" && a_step != step {
        return false;
    }
    let mut rest = path;
    let mut pattern = a_path.as_str();
    while !pattern.is_empty() {
        if let Some(after) = pattern.strip_prefix("[*]") {
            let Some(r) = rest.strip_prefix('[') else {
                return false;
            };
            let Some(close) = r.find(']') else {
                return false;
            };
            rest = &r[close + 1..];
            pattern = after;
            continue;
        }
        let next = pattern.find("[*]").unwrap_or(pattern.len());
        let Some(r) = rest.strip_prefix(&pattern[..next]) else {
            return false;
        };
        rest = r;
        pattern = &pattern[next..];
    }
    rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')
}

#[test]
fn fake_apiserver_answers_the_script_as_kube_apiserver_does() {
    let api =
        ControlPlane::up(&format!("ftd{}-", std::process::id() % 100_000)).expect("control plane");
    let fake = Path::new(env!("CARGO_BIN_EXE_testbed"))
        .parent()
        .unwrap()
        .join("fake-apiserver");
    api.start(
        "fake-apiserver",
        vec![
            fake.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{FAKE_PORT}"),
        ],
    )
    .unwrap();
    let mut real = Server {
        name: "kube-apiserver",
        base: api.server.clone(),
        token: Some(api.pki.admin_token.clone()),
        vars: BTreeMap::new(),
    };
    let mut fake = Server {
        name: "fake-apiserver",
        base: format!("http://127.0.0.1:{FAKE_PORT}"),
        token: None,
        vars: BTreeMap::new(),
    };
    let up = ferrolb_testbed::netns::wait_for(Duration::from_secs(10), || {
        send(&api, &fake, &get("up", "/version"), 0).status == 200
    });
    assert!(up, "fake-apiserver did not start");
    // kube-controller-manager makes every namespace's kube-root-ca.crt and default
    // ServiceAccount: the script lists by label so they do not count.
    let accepted = accepted();
    let mut found: Vec<(String, String)> = Vec::new();
    let mut report = String::new();
    for (n, step) in script().iter().enumerate() {
        let mut a = run(&api, &mut real, step, n);
        let mut b = run(&api, &mut fake, step, n);
        normalise(&mut a.body);
        normalise(&mut b.body);
        let mut paths = Vec::new();
        if a.status != b.status {
            paths.push("status".to_string());
        }
        differences(&a.body, &b.body, "", &mut paths);
        for path in paths {
            let listed = accepted.iter().any(|acc| covers(acc, step.name, &path));
            if !listed {
                report.push_str(&format!(
                    "\n{} {path}\n  kube-apiserver: {} {}\n  fake-apiserver: {} {}\n",
                    step.name, a.status, a.body, b.status, b.body
                ));
            }
            found.push((step.name.to_string(), path));
        }
    }
    let stale: Vec<&(String, String)> = accepted
        .iter()
        .filter(|acc| !found.iter().any(|(s, p)| covers(acc, s, p)))
        .collect();
    assert!(
        report.is_empty() && stale.is_empty(),
        "differences not in the README:{report}\nlisted but no longer found: {stale:?}"
    );
}

#[test]
fn an_accepted_difference_covers_its_path_and_below() {
    let acc = ("*".to_string(), ".metadata.managedFields".to_string());
    assert!(covers(&acc, "x", ".metadata.managedFields"));
    assert!(covers(&acc, "x", ".metadata.managedFields[0].manager"));
    assert!(!covers(&acc, "x", ".metadata.managedFieldsX"));
    let acc = ("s".to_string(), ".items[*].metadata".to_string());
    assert!(covers(&acc, "s", ".items[3].metadata.name"));
    assert!(!covers(&acc, "t", ".items[3].metadata.name"));
    assert!(!covers(&acc, "s", ".items"));
}
