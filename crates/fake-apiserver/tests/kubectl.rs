//! The real `kubectl` against the fake API server: CRDs, a pool, a LoadBalancer Service.
//!
//! kubectl is installed by the test command; it runs with its default validation (the server
//! publishes OpenAPI v3 and validates fields itself).

use std::path::{Path, PathBuf};
use std::process::Command;

use fake_apiserver::{Config, FakeApiServer};

/// A kubeconfig file that is removed when the test ends, however it ends.
struct Kubeconfig(PathBuf);

impl Kubeconfig {
    /// `kubectl args` (with `stdin`) against the server; (succeeded, stdout, stderr).
    async fn run_with(
        &self,
        args: Vec<&'static str>,
        stdin: Option<String>,
    ) -> (bool, String, String) {
        let path = self.0.clone();
        tokio::task::spawn_blocking(move || kubectl(&path, &args, stdin.as_deref()))
            .await
            .unwrap()
    }

    async fn run(&self, args: Vec<&'static str>) -> (bool, String, String) {
        self.run_with(args, None).await
    }
}

impl Drop for Kubeconfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A fake API server and a kubeconfig file for it (named with `tag` and the port), removed when
/// the test ends.
async fn started(tag: &str) -> (FakeApiServer, Kubeconfig) {
    let server = FakeApiServer::start(Config::default()).await.unwrap();
    let path = std::env::temp_dir().join(format!(
        "fake-apiserver-kubeconfig-{tag}-{}",
        server.addr().port()
    ));
    std::fs::write(&path, server.kubeconfig()).unwrap();
    (server, Kubeconfig(path))
}

/// What `kubectl <watch>` printed (stdout, stderr) in `seconds`, while `manifest` was created
/// 1.5 s in.
async fn watch_while_creating(
    kubeconfig: &Path,
    watch: &[&str],
    seconds: u32,
    manifest: String,
) -> (String, String) {
    let watcher = tokio::task::spawn_blocking({
        let path = kubeconfig.to_path_buf();
        let mut args = vec![seconds.to_string(), "kubectl".to_string()];
        args.extend(watch.iter().map(|a| a.to_string()));
        move || {
            Command::new("timeout")
                .args(&args)
                .env("KUBECONFIG", &path)
                .output()
                .unwrap()
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let created = tokio::task::spawn_blocking({
        let path = kubeconfig.to_path_buf();
        move || kubectl(&path, &["create", "-f", "-"], Some(&manifest))
    })
    .await
    .unwrap();
    assert!(created.0, "{}", created.2);
    let out = watcher.await.unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let ran = fake_apiserver::testing::kubectl(kubeconfig, repo, args, stdin, None);
    (ran.ok, ran.stdout, ran.stderr)
}

const POOL_AND_SERVICE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: ferrolb-system}
---
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: public, namespace: ferrolb-system}
spec:
  addresses: ["192.0.2.0/28", "2001:db8::/124"]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, port: 80}, {name: https, port: 443}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_crds_and_manages_a_pool_and_a_service() {
    let (_server, kc) = started("crds").await;

    let (ok, out, err) = kc.run(vec!["apply", "-f", "manifests/crds/"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("ipaddresspools.ferrolb.io created"), "{out}");

    let (ok, out, err) = kc
        .run(vec!["api-resources", "--api-group=ferrolb.io"])
        .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("ipaddresspools") && out.contains("ipp"),
        "{out}"
    );

    let (ok, _, err) = kc
        .run_with(vec!["apply", "-f", "-"], Some(POOL_AND_SERVICE.to_string()))
        .await;
    assert!(ok, "{err}");

    // Read back, with the printer columns of the CRD.
    let (ok, out, err) = kc.run(vec!["get", "ipp", "-n", "ferrolb-system"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("ADDRESSES") && out.contains("AUTO ASSIGN"),
        "{out}"
    );
    assert!(
        out.contains("192.0.2.0/28") && out.contains("true"),
        "{out}"
    );
    let (ok, out, _) = kc
        .run(vec![
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.type} {.spec.ports[0].nodePort}",
        ])
        .await;
    assert!(ok);
    let mut parts = out.split_whitespace();
    assert_eq!(parts.next(), Some("LoadBalancer"));
    let node_port: u16 = parts.next().unwrap().parse().unwrap();
    assert!((30000..=32767).contains(&node_port));

    // Patch both.
    let (ok, _, err) = kc
        .run(vec![
            "patch",
            "ipp",
            "public",
            "-n",
            "ferrolb-system",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"autoAssign":false}}"#,
        ])
        .await;
    assert!(ok, "{err}");
    let (_, out, _) = kc
        .run(vec![
            "get",
            "ipp",
            "public",
            "-n",
            "ferrolb-system",
            "-o",
            "jsonpath={.spec.autoAssign}",
        ])
        .await;
    assert_eq!(out, "false");
    let (ok, _, err) = kc.run(vec!["label", "svc", "web", "tier=edge"]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = kc
        .run(vec![
            "patch",
            "svc",
            "web",
            "-p",
            r#"{"spec":{"externalTrafficPolicy":"Local"}}"#,
        ])
        .await;
    assert!(ok, "{err}");
    let (_, out, _) = kc
        .run(vec![
            "get",
            "svc",
            "-l",
            "tier=edge",
            "-o",
            "jsonpath={.items[0].spec.externalTrafficPolicy}",
        ])
        .await;
    assert_eq!(out, "Local");

    // Re-applying is a no-op; the node port stays.
    let (ok, out, err) = kc
        .run_with(vec!["apply", "-f", "-"], Some(POOL_AND_SERVICE.to_string()))
        .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("service/web configured") || out.contains("service/web unchanged"),
        "{out}"
    );
    let (_, out, _) = kc
        .run(vec![
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ])
        .await;
    assert_eq!(out, node_port.to_string());

    // An Event written through events.k8s.io/v1 (as ferrolb writes them) is what
    // `kubectl describe` and `kubectl get events` show, read through core/v1.
    let (_, uid, _) = kc
        .run(vec!["get", "svc", "web", "-o", "jsonpath={.metadata.uid}"])
        .await;
    let event = format!(
        "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {{name: web.1, namespace: default}}\neventTime: \"2026-01-01T00:00:00.000000Z\"\nreportingController: ferrolb.io/controller\nreportingInstance: c-1\naction: IPAllocated\nreason: IPAllocated\ntype: Normal\nnote: assigned 192.0.2.200 from pool public\nregarding: {{apiVersion: v1, kind: Service, namespace: default, name: web, uid: \"{uid}\"}}\n"
    );
    let (ok, _, err) = kc
        .run_with(vec!["create", "-f", "-"], Some(event.clone()))
        .await;
    assert!(ok, "{err}");
    let (ok, out, err) = kc.run(vec!["describe", "svc", "web"]).await;
    assert!(ok, "{err}");
    let events = out.split("Events:").nth(1).unwrap_or_default();
    assert!(
        events.contains("IPAllocated") && events.contains("assigned 192.0.2.200 from pool public"),
        "{out}"
    );
    let (ok, out, err) = kc.run(vec!["get", "events"]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("LAST SEEN"), "{out}");
    assert!(
        out.contains("Normal") && out.contains("service/web"),
        "{out}"
    );
    // -o wide columns as a real server gives them.
    let (ok, out, err) = kc.run(vec!["get", "svc", "web", "-o", "wide"]).await;
    assert!(ok, "{err}");
    assert!(
        out.lines().next().unwrap_or_default().contains("SELECTOR") && out.contains("app=web"),
        "{out}"
    );
    let node = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nstatus:\n  addresses: [{type: InternalIP, address: 192.0.2.11}]\n  conditions: [{type: Ready, status: \"True\"}]\n  nodeInfo: {kubeletVersion: v1.33.1}\n";
    let (ok, _, err) = kc
        .run_with(vec!["create", "-f", "-"], Some(node.to_string()))
        .await;
    assert!(ok, "{err}");
    let (ok, out, err) = kc.run(vec!["get", "nodes", "-o", "wide"]).await;
    assert!(ok, "{err}");
    let row = out.lines().nth(1).unwrap_or_default();
    assert!(
        row.starts_with("n1")
            && row.contains("Ready")
            && row.contains("192.0.2.11")
            && row.contains("v1.33.1"),
        "{out}"
    );

    // `get all` holds Services (not ferrolb's objects); ferrolb's category holds those.
    let (ok, out, err) = kc.run(vec!["get", "all"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("service/web") && !out.contains("ipaddresspool"),
        "{out}"
    );
    let (ok, out, err) = kc.run(vec!["get", "ferrolb", "-n", "ferrolb-system"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("ipaddresspool.ferrolb.io/public"), "{out}");

    // kubectl's default validation: the server publishes OpenAPI v3 and validates fields
    // itself, so apply, create, replace and diff need no flag; a misspelt field is refused.
    let typo = "apiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: typo, namespace: ferrolb-system}\nspec: {addresses: [198.51.100.0/28], autoAsign: false}\n";
    let (ok, _, err) = kc
        .run_with(vec!["apply", "-f", "-"], Some(typo.to_string()))
        .await;
    assert!(
        !ok && err.contains("strict decoding error: unknown field \"spec.autoAsign\""),
        "{err}"
    );
    let fixed = typo.replace("autoAsign", "autoAssign");
    let (ok, out, err) = kc
        .run_with(vec!["apply", "-f", "-"], Some(fixed.clone()))
        .await;
    assert!(
        ok && out.contains("ipaddresspool.ferrolb.io/typo created"),
        "{out}{err}"
    );
    let changed = fixed.replace("198.51.100.0/28", "198.51.100.0/27");
    let (_, out, err) = kc
        .run_with(vec!["diff", "-f", "-"], Some(changed.clone()))
        .await;
    assert!(
        out.contains("+  - 198.51.100.0/27") && out.contains("-  - 198.51.100.0/28"),
        "{out}{err}"
    );
    let (ok, _, err) = kc
        .run_with(vec!["replace", "-f", "-"], Some(changed.clone()))
        .await;
    assert!(ok, "{err}");
    let (ok, out, err) = kc
        .run(vec!["explain", "ipaddresspool.spec.addresses"])
        .await;
    assert!(
        ok && out.contains("FIELD: addresses <[]string>"),
        "{out}{err}"
    );

    // kubectl's imperative creates send protobuf bodies.
    for args in [
        vec!["create", "namespace", "demo"],
        vec![
            "create",
            "configmap",
            "cfg",
            "-n",
            "demo",
            "--from-literal=a=b",
        ],
        vec![
            "create",
            "secret",
            "generic",
            "sec",
            "-n",
            "demo",
            "--from-literal=password=hunter2",
        ],
        vec![
            "create",
            "service",
            "loadbalancer",
            "lb",
            "-n",
            "demo",
            "--tcp=80:8080",
        ],
    ] {
        let (ok, _, err) = kc.run(args.clone()).await;
        assert!(ok, "{args:?}: {err}");
    }
    let (_, out, _) = kc
        .run(vec![
            "get",
            "cm",
            "cfg",
            "-n",
            "demo",
            "-o",
            "jsonpath={.data.a}",
        ])
        .await;
    assert_eq!(out, "b");
    let (_, out, _) = kc
        .run(vec![
            "get",
            "secret",
            "sec",
            "-n",
            "demo",
            "-o",
            "jsonpath={.data.password}",
        ])
        .await;
    assert_eq!(out, "aHVudGVyMg==", "base64 of hunter2");
    let (_, out, _) = kc
        .run(vec![
            "get",
            "svc",
            "lb",
            "-n",
            "demo",
            "-o",
            "jsonpath={.spec.type} {.spec.ports[0].targetPort} {.spec.selector.app}",
        ])
        .await;
    assert_eq!(out, "LoadBalancer 8080 lb");

    // The kubeconfig's user may do anything, and kubectl can ask.
    let (ok, out, err) = kc.run(vec!["auth", "can-i", "create", "services"]).await;
    assert!(ok && out.trim() == "yes", "{out}{err}");
    // The API server's own Service is there, as on every cluster.
    let (ok, out, err) = kc
        .run(vec![
            "get",
            "svc",
            "kubernetes",
            "-o",
            "jsonpath={.spec.ports[0].port}",
        ])
        .await;
    assert!(ok && out == "443", "{out}{err}");

    // Delete.
    let (ok, _, err) = kc.run(vec!["delete", "svc", "web"]).await;
    assert!(ok, "{err}");
    let (ok, out, err) = kc
        .run(vec!["delete", "ipp", "public", "-n", "ferrolb-system"])
        .await;
    assert!(ok, "{err}");
    assert!(out.contains("deleted"));
    let (ok, _, err) = kc.run(vec!["get", "svc", "web"]).await;
    assert!(!ok && err.contains("NotFound"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_watch_streams_changes() {
    let (_server, kc) = started("w").await;
    let (stdout, _) = watch_while_creating(
        &kc.0,
        &["get", "configmaps", "-w", "-o", "name"],
        4,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: seen-by-watch}\n".to_string(),
    )
    .await;
    assert!(
        stdout.contains("configmap/seen-by-watch"),
        "watch printed: {stdout}"
    );
    drop(kc);
}

/// Every kubectl release we support (the machine carries them all) applies with its default
/// validation: 1.27 and 1.28 read OpenAPI v2 (protobuf), later ones v3; each leaves unknown
/// fields to the server, which refuses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_27_to_1_33_apply_with_their_default_validation() {
    let (_server, kc) = started("versions").await;
    let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    for minor in 27..=33 {
        let kubectl = format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}");
        let run = |args: Vec<String>, stdin: String| {
            let (kubectl, kc) = (kubectl.clone(), kc.0.clone());
            async move {
                tokio::task::spawn_blocking(move || {
                    use std::io::Write;
                    let mut child = Command::new(&kubectl)
                        .args(&args)
                        .env("KUBECONFIG", &kc)
                        .current_dir(repo)
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::piped())
                        .spawn()
                        .unwrap_or_else(|e| panic!("{kubectl}: {e}"));
                    child
                        .stdin
                        .take()
                        .unwrap()
                        .write_all(stdin.as_bytes())
                        .unwrap();
                    let out = child.wait_with_output().unwrap();
                    (
                        out.status.success(),
                        String::from_utf8_lossy(&out.stdout).into_owned(),
                        String::from_utf8_lossy(&out.stderr).into_owned(),
                    )
                })
                .await
                .unwrap()
            }
        };
        let apply = |yaml: String| run(vec!["apply".into(), "-f".into(), "-".into()], yaml);
        let (ok, _, err) = run(
            vec![
                "apply".into(),
                "-f".into(),
                "manifests/crds/ipaddresspools.yaml".into(),
            ],
            String::new(),
        )
        .await;
        assert!(ok, "1.{minor}: {err}");
        let (ok, _, err) = apply(format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{minor}, namespace: default}}\ndata: {{a: b}}\n"
        ))
        .await;
        assert!(ok, "1.{minor}: {err}");
        let (ok, _, err) = apply(format!(
            "apiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: p{minor}, namespace: default}}\nspec: {{addresses: [192.0.2.{minor}/32], colour: blue}}\n"
        ))
        .await;
        assert!(
            !ok && err.contains("strict decoding error: unknown field \"spec.colour\""),
            "1.{minor}: {err}"
        );
        // Built-in kinds too.
        let (ok, _, err) = apply(format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: s{minor}, namespace: default}}\nspec: {{typ: LoadBalancer, ports: [{{port: 80}}]}}\n"
        ))
        .await;
        assert!(
            !ok && err.contains("strict decoding error: unknown field \"spec.typ\""),
            "1.{minor}: {err}"
        );
    }
}

/// Whether kubectl's `-v=8` log shows a response in protobuf (its requests carry the same
/// header, so only the lines under a "Response" count).
fn answered_in_protobuf(log: &str, media_type: &str) -> bool {
    let lines: Vec<&str> = log.lines().collect();
    lines.iter().enumerate().any(|(i, line)| {
        line.contains("\"Response\"")
            && lines[i + 1..]
                .iter()
                .take(6)
                .any(|l| l.trim() == format!("Content-Type: {media_type}"))
    })
}

/// kubectl's typed clients speak protobuf: its imperative creates send it for every kind they
/// make, `describe` reads objects and lists in it, `events -w` watches in it, and errors come
/// back as a protobuf Status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_speaks_protobuf_with_built_in_kinds() {
    let (_server, kc) = started("pb").await;
    for args in [
        vec!["create", "namespace", "demo"],
        vec![
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=0",
            "-n",
            "demo",
        ],
        vec!["create", "serviceaccount", "sa", "-n", "demo"],
        vec![
            "create",
            "clusterrole",
            "reader",
            "--verb=get,list",
            "--resource=services",
        ],
        vec![
            "create",
            "clusterrolebinding",
            "reader",
            "--clusterrole=reader",
            "--serviceaccount=demo:sa",
        ],
        vec![
            "create",
            "rolebinding",
            "reader",
            "--clusterrole=reader",
            "--user=u",
            "-n",
            "demo",
        ],
        vec![
            "create",
            "pdb",
            "web",
            "--selector=app=web",
            "--min-available=1",
            "-n",
            "demo",
        ],
        vec![
            "create",
            "service",
            "loadbalancer",
            "lb",
            "--tcp=80:8080",
            "-n",
            "demo",
        ],
    ] {
        let (ok, out, err) = kc.run(args.clone()).await;
        assert!(ok && out.contains("created"), "{args:?}: {out}{err}");
    }
    // What protobuf carried arrives whole: a zero in a pointer field (replicas) is kept, an
    // int-or-string is an int, a binding's subject and a rule's verbs are there.
    for (args, want) in [
        (
            vec![
                "get",
                "deploy",
                "web",
                "-n",
                "demo",
                "-o",
                "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image}",
            ],
            "0 nginx",
        ),
        (
            vec![
                "get",
                "pdb",
                "web",
                "-n",
                "demo",
                "-o",
                "jsonpath={.spec.minAvailable} {.spec.selector.matchLabels.app}",
            ],
            "1 web",
        ),
        (
            vec![
                "get",
                "clusterrolebinding",
                "reader",
                "-o",
                "jsonpath={.subjects[0].kind} {.subjects[0].namespace} {.roleRef.name}",
            ],
            "ServiceAccount demo reader",
        ),
        (
            vec![
                "get",
                "clusterrole",
                "reader",
                "-o",
                "jsonpath={.rules[0].verbs}",
            ],
            r#"["get","list"]"#,
        ),
    ] {
        let (ok, out, err) = kc.run(args.clone()).await;
        assert!(ok && out == want, "{args:?}: {out}{err}");
    }
    // An error in protobuf: kubectl reads the Status.
    let (ok, _, err) = kc.run(vec!["create", "namespace", "demo"]).await;
    assert!(
        !ok && err.contains(r#"namespaces "demo" already exists"#),
        "{err}"
    );

    // A protobuf watch: `kubectl events -w` sees an Event written afterwards; `describe`
    // finds a Service's Events by its uid.
    let (_, uid, _) = kc
        .run(vec![
            "get",
            "svc",
            "lb",
            "-n",
            "demo",
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .await;
    let event = format!(
        r#"{{"apiVersion": "v1", "kind": "Event", "metadata": {{"name": "lb.1", "namespace": "demo"}},
        "involvedObject": {{"kind": "Service", "name": "lb", "namespace": "demo", "uid": "{uid}"}},
        "reason": "IPAllocated", "message": "Assigned IP 192.0.2.10", "type": "Normal",
        "source": {{"component": "ferrolb-controller"}}}}"#
    );
    let (stdout, stderr) =
        watch_while_creating(&kc.0, &["events", "-n", "demo", "-w", "-v=8"], 5, event).await;
    assert!(
        stdout.contains("IPAllocated") && stdout.contains("Assigned IP 192.0.2.10"),
        "{stdout}"
    );
    assert!(
        answered_in_protobuf(&stderr, "application/vnd.kubernetes.protobuf;stream=watch"),
        "{stderr}"
    );

    // `describe` reads the Service, its EndpointSlices and its Events in protobuf.
    let (ok, out, err) = kc
        .run(vec!["describe", "svc", "lb", "-n", "demo", "-v=8"])
        .await;
    assert!(ok && out.contains("Assigned IP 192.0.2.10"), "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("Type:") && l.ends_with("LoadBalancer")),
        "{out}"
    );
    assert!(
        answered_in_protobuf(&err, "application/vnd.kubernetes.protobuf"),
        "{err}"
    );
    drop(kc);
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: a, image: "a:1"}
      - {name: b, image: "b:1"}
"#;

/// The built-in kinds' schemas are published as kube-apiserver publishes them (`kubectl
/// explain` reads them; the merge extensions of the Go types are there), and the strategic
/// merge patch kubectl's client-side apply sends is merged by the type's keys: a container
/// another writer changed keeps that change when apply changes its sibling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_explains_and_merges_built_in_kinds() {
    let (_server, kc) = started("x").await;
    let (ok, out, err) = kc
        .run_with(vec!["explain", "service.spec.ports"], None)
        .await;
    assert!(
        ok && out.contains("FIELD: ports <[]ServicePort>")
            && out.contains("port\t<integer> -required-"),
        "{out}{err}"
    );
    let (ok, out, err) = kc
        .run_with(
            vec!["explain", "deployment.spec.template.spec.containers"],
            None,
        )
        .await;
    assert!(
        ok && out.contains("GROUP:      apps") && out.contains("FIELD: containers <[]Container>"),
        "{out}{err}"
    );

    let (ok, out, err) = kc
        .run_with(vec!["get", "--raw", "/openapi/v3/apis/apps/v1"], None)
        .await;
    assert!(ok, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let containers =
        &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(
        containers["x-kubernetes-list-map-keys"],
        serde_json::json!(["name"])
    );
    assert_eq!(
        doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"]
            [0]["kind"],
        "Deployment"
    );

    let (ok, _, err) = kc
        .run_with(vec!["apply", "-f", "-"], Some(DEPLOYMENT.to_string()))
        .await;
    assert!(ok, "{err}");
    let (ok, _, err) = kc.run_with(
        vec![
            "patch",
            "deployment",
            "web",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"b","env":[{"name":"X","value":"1"}]}]}}}}"#,
        ],
        None,
    ).await;
    assert!(ok, "{err}");
    let (ok, _, err) = kc
        .run_with(
            vec!["apply", "-f", "-"],
            Some(DEPLOYMENT.replace("a:1", "a:2")),
        )
        .await;
    assert!(ok, "{err}");
    let (ok, out, err) = kc.run_with(
        vec![
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[*].image} {.spec.template.spec.containers[1].env[0].name}",
        ],
        None,
    ).await;
    assert!(ok && out == "a:2 b:1 X", "{out}{err}");
    drop(kc);
}

/// `kubectl scale` goes through the Deployment's `scale` subresource (with its precondition),
/// and `kubectl get` shows workloads with kubectl's columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_scales_and_lists_workloads() {
    let (_server, kc) = started("s").await;
    let (ok, _, err) = kc
        .run(vec!["create", "deployment", "web", "--image=nginx"])
        .await;
    assert!(ok, "{err}");
    let (ok, out, err) = kc
        .run(vec!["scale", "deployment", "web", "--replicas=3"])
        .await;
    assert!(
        ok && out.contains("deployment.apps/web scaled"),
        "{out}{err}"
    );
    let (ok, _, err) = kc
        .run(vec![
            "scale",
            "deployment",
            "web",
            "--replicas=1",
            "--current-replicas=2",
        ])
        .await;
    assert!(
        !ok && err.contains("Expected replicas to be 2, was 3"),
        "{err}"
    );
    let (ok, out, err) = kc
        .run(vec![
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.generation}",
        ])
        .await;
    assert!(ok && out == "3 2", "{out}{err}");
    let (ok, out, err) = kc
        .run(vec![
            "get",
            "--raw",
            "/apis/apps/v1/namespaces/default/deployments/web/scale",
        ])
        .await;
    assert!(ok, "{err}");
    let scale: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=web");

    let (ok, out, err) = kc.run(vec!["get", "deployments", "-o", "wide"]).await;
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(ok, "{err}");
    assert_eq!(
        lines[0],
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert_eq!(lines[1][..4], ["web", "0/3", "0", "0"]);
    assert_eq!(lines[1][5..], ["nginx", "nginx", "app=web"]);
    drop(kc);
}
