//! What a new user sees when a component cannot start: one line on stderr that names what was
//! tried (an address and its flag, a file, the flags that disagree) and exit code 1, never a
//! backtrace; and a second controller given the first one's identity is refused.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fake_apiserver::{Config, FakeApiServer};

/// A scratch directory removed however the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("ferrolb-startup-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A process killed when dropped, also when the test fails.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// fake-apiserver with ferrolb's install applied (namespace, CRDs, RBAC) and `objects`, and a
/// scratch directory holding its kubeconfig.
async fn installed_api(tag: &str, objects: &'static str) -> (FakeApiServer, Scratch, PathBuf) {
    let server = FakeApiServer::start(Config::default()).await.unwrap();
    let scratch = Scratch::new(tag);
    let kubeconfig = scratch.0.join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    let install = kubeconfig.clone();
    // kubectl runs blocking: off the runtime's threads.
    tokio::task::spawn_blocking(move || {
        let repo = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let apply = |args: &[&str], stdin| {
            let ran = fake_apiserver::testing::kubectl(&install, &repo, args, stdin, None);
            assert!(ran.ok, "kubectl {args:?}: {}", ran.stderr);
        };
        apply(&["apply", "-k", "manifests/"], None);
        if !objects.is_empty() {
            apply(&["apply", "-f", "-"], Some(objects));
        }
    })
    .await
    .unwrap();
    (server, scratch, kubeconfig)
}

/// A kubeconfig for a server that is never asked (the errors come first).
const UNUSED_KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
";

/// Runs `ferrolb args` (with backtraces asked for, as some shells have them) until it exits
/// (at most 30 s); returns the exit code and stderr.
fn run(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The error is one line on stderr, saying each of `names`.
fn assert_one_line(stderr: &str, names: &[&str]) {
    assert!(!stderr.contains("backtrace"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("ferrolb: "), "{stderr}");
    for name in names {
        assert!(lines[0].contains(name), "`{name}` not in: {stderr}");
    }
}

#[test]
fn an_address_in_use_is_named_with_its_flag() {
    let scratch = Scratch::new("addr");
    let kubeconfig = scratch.0.join("kubeconfig");
    std::fs::write(&kubeconfig, UNUSED_KUBECONFIG).unwrap();
    let kubeconfig = kubeconfig.to_str().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free_addr = free.local_addr().unwrap().to_string();
    drop(free);
    // A second controller on one host: its health port is the first one's.
    let (code, stderr) = run(&[
        "controller",
        "--kubeconfig",
        kubeconfig,
        "--metrics-addr",
        &free_addr,
        "--health-addr",
        &taken_addr,
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_one_line(&stderr, &[&taken_addr, "--health-addr", "in use"]);
    let (code, stderr) = run(&[
        "speaker",
        "--kubeconfig",
        kubeconfig,
        "--node-name",
        "n1",
        "--metrics-addr",
        &taken_addr,
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_one_line(&stderr, &[&taken_addr, "--metrics-addr", "in use"]);
}

#[test]
fn a_missing_kubeconfig_and_disagreeing_flags_are_named() {
    let (code, stderr) = run(&[
        "controller",
        "--kubeconfig",
        "/nonexistent/ferrolb-kubeconfig",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_one_line(&stderr, &["/nonexistent/ferrolb-kubeconfig"]);
    let (code, stderr) = run(&[
        "controller",
        "--lease-duration",
        "5s",
        "--lease-grace",
        "5s",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_one_line(&stderr, &["--lease-grace", "--lease-duration"]);
}

/// Two replicas given one identity would both believe they lead: the second is refused, with
/// the Lease and the identity named; the first goes on leading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_controller_with_the_first_ones_identity_is_refused() {
    let (server, scratch, kubeconfig) = installed_api("twin", "").await;
    let kubeconfig = kubeconfig.to_str().unwrap().to_string();
    let controller = |metrics: &str, health: &str| {
        vec![
            "controller".to_string(),
            "--kubeconfig".into(),
            kubeconfig.clone(),
            "--identity".into(),
            "replica-a".into(),
            "--lease-duration".into(),
            "3s".into(),
            "--lease-grace".into(),
            "1s".into(),
            "--metrics-addr".into(),
            metrics.into(),
            "--health-addr".into(),
            health.into(),
        ]
    };
    let first_log = scratch.0.join("first.log");
    let mut first = Running(
        Command::new(env!("CARGO_BIN_EXE_ferrolb"))
            .args(controller("127.0.0.1:0", "127.0.0.1:0"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&first_log).unwrap())
            .spawn()
            .unwrap(),
    );
    // The first leads once the Lease names it.
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&server.kubeconfig()).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(kube::Client::try_from(config).unwrap(), "ferrolb-system");
    let mut leading = false;
    for _ in 0..100 {
        if let Ok(Some(l)) = leases.get_opt("ferrolb-controller").await
            && l.spec.and_then(|s| s.holder_identity).as_deref() == Some("replica-a")
        {
            leading = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        leading,
        "the first controller never took the Lease:\n{}",
        std::fs::read_to_string(&first_log).unwrap_or_default()
    );
    let args = controller("127.0.0.1:0", "127.0.0.1:0");
    let started = Instant::now();
    let (code, stderr) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args)
    })
    .await
    .unwrap();
    let first_alive = first.0.try_wait().unwrap().is_none();
    drop(first);
    assert_eq!(code, Some(1), "{stderr}");
    assert_one_line(
        &stderr,
        &[
            "ferrolb-system/ferrolb-controller",
            "replica-a",
            "--identity",
        ],
    );
    // Refused within a renewal period (2 s here) and a poll.
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert!(first_alive, "the first controller stopped");
}

/// A speaker whose gossip port another process holds says which address and flag, once it
/// has read its Node and the gossip key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gossip_port_in_use_is_named_with_its_flag() {
    let objects = "apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 127.0.0.1}]}
---
apiVersion: v1
kind: Secret
metadata: {name: ferrolb-memberlist, namespace: ferrolb-system}
stringData: {secretkey: a-gossip-key-of-thirty-two-bytes}
";
    let (_server, _scratch, kubeconfig) = installed_api("gossip", objects).await;
    let taken = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let kubeconfig = kubeconfig.to_str().unwrap().to_string();
    let (code, stderr) = tokio::task::spawn_blocking(move || {
        run(&[
            "speaker",
            "--kubeconfig",
            &kubeconfig,
            "--node-name",
            "n1",
            "--no-l2",
            "--gossip-port",
            &port,
            "--metrics-addr",
            "127.0.0.1:0",
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    let port = taken.local_addr().unwrap().port();
    assert_one_line(&stderr, &[&format!("0.0.0.0:{port}"), "--gossip-port"]);
}
