//! The image, built as `scripts/build-image.sh` builds it (buildah, from a Debian base made by
//! debootstrap; no registry), run in the lab on kube-apiserver: the speaker from the image's
//! root filesystem, as root with only NET_RAW and NET_ADMIN, finds libnftables, announces and
//! forwards; the controller from it, as user 65534, assigns the address.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use ferrolb_testbed::netns::wait_every;
use ferrolb_testbed::{Api, Lab, LabConfig, Topology};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_testbed"))
        .parent()
        .unwrap()
        .into()
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The image's root filesystem, mounted from a working container, with /proc and /dev for
/// the processes run in it; unmounted and removed (with the image) however the test ends.
struct Rootfs {
    image: String,
    container: String,
    dir: PathBuf,
}

impl Rootfs {
    fn of(image: &str) -> Rootfs {
        let container = run("buildah", &["from", "--pull-never", image]);
        let dir = PathBuf::from(run("buildah", &["mount", &container]));
        let rootfs = Rootfs {
            image: image.to_string(),
            container,
            dir,
        };
        let proc_dir = rootfs.path("/proc");
        run("mount", &["-t", "proc", "proc", &proc_dir]);
        run("mount", &["--bind", "/dev", &rootfs.path("/dev")]);
        rootfs
    }

    fn path(&self, inside: &str) -> String {
        self.dir
            .join(inside.trim_start_matches('/'))
            .display()
            .to_string()
    }
}

impl Drop for Rootfs {
    fn drop(&mut self) {
        for inside in ["/proc", "/dev"] {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.path(inside))
                .status();
        }
        let _ = Command::new("buildah")
            .args(["umount", &self.container])
            .status();
        let _ = Command::new("buildah")
            .args(["rm", &self.container])
            .status();
        let _ = Command::new("buildah").args(["rmi", &self.image]).status();
    }
}

/// The effective capabilities of process `pid` (`CapEff` in /proc).
fn effective_capabilities(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

/// The uid process `pid` runs as.
fn uid(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn the_speaker_and_the_controller_run_from_the_image() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let image = format!("localhost/ferrolb:test-{}", std::process::id());
    let binary = bin_dir().join("ferrolb");
    let built = Command::new("bash")
        .arg(root().join("scripts/build-image.sh"))
        .arg(&binary)
        .env("FERROLB_IMAGE", &image)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(built.status.success(), "scripts/build-image.sh failed");
    // Declared before the lab: dropped after it, once the processes in it are gone.
    let rootfs = Rootfs::of(&image);

    let config = LabConfig {
        prefix: format!("fti{}-", std::process::id() % 100_000),
        bin_dir: bin_dir(),
        speaker_args: Vec::new(),
        controller_args: Vec::new(),
        listener_addresses: Vec::new(),
        api: Api::KubeApiserver,
    };
    let mut lab = Lab::up(Topology::builtin(), config).expect("lab up");
    let lab_config = std::fs::read_to_string(root().join("examples/lab/10-ferrolb.yaml")).unwrap();
    lab.apply("ferrolb", &lab_config).unwrap();
    // Only the image's components run: n1's speaker and one controller.
    for what in [
        "speaker-n1",
        "speaker-n2",
        "speaker-n3",
        "controller-0",
        "controller-1",
    ] {
        lab.signal(what, libc::SIGTERM, Duration::from_secs(20));
    }
    std::fs::create_dir_all(rootfs.path("/etc/ferrolb")).unwrap();
    for account in ["ferrolb-speaker", "ferrolb-controller"] {
        let inside = rootfs.path(&format!("/etc/ferrolb/{account}.kubeconfig"));
        std::fs::copy(lab.component_kubeconfig(account), &inside).unwrap();
        // Readable by the controller's user (a mounted ServiceAccount token is too).
        run("chmod", &["0644", &inside]);
    }

    // The speaker as its DaemonSet runs it: root, every capability dropped but two.
    let speaker = lab
        .start(
            "image-speaker-n1",
            "n1",
            [
                "chroot",
                &rootfs.dir.display().to_string(),
                "/usr/bin/setpriv",
                "--bounding-set=-all,+net_raw,+net_admin",
                "--no-new-privs",
                "--",
                "/usr/local/bin/ferrolb",
                "speaker",
                "--kubeconfig=/etc/ferrolb/ferrolb-speaker.kubeconfig",
                "--node-name=n1",
                "--forwarding=nftables",
                "--metrics-addr=0.0.0.0:7472",
            ]
            .map(String::from)
            .to_vec(),
        )
        .unwrap();
    // The controller as its Deployment runs it: user 65534.
    let api = lab.topology.api.name.clone();
    let controller = lab
        .start(
            "image-controller",
            &api,
            [
                "chroot",
                "--userspec=65534:65534",
                &rootfs.dir.display().to_string(),
                "/usr/local/bin/ferrolb",
                "controller",
                "--kubeconfig=/etc/ferrolb/ferrolb-controller.kubeconfig",
                "--identity=image-0",
                "--forwarding=nftables",
                "--metrics-addr=127.0.0.1:7490",
                "--health-addr=127.0.0.1:7491",
            ]
            .map(String::from)
            .to_vec(),
        )
        .unwrap();
    assert!(
        wait_every(Duration::from_secs(60), Duration::from_millis(500), || lab
            .speaker_ready("n1")),
        "the image's speaker never became ready:\n{}",
        lab.read_log("image-speaker-n1")
    );

    lab.apply(
        "web",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: img}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: img, annotations: {ferrolb.io/address-pool: l2}}\nspec: {type: LoadBalancer, ports: [{port: 80, nodePort: 30080}]}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, namespace: img, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{port: 8080, protocol: TCP}]\nendpoints:\n- {addresses: [203.0.113.201], conditions: {ready: true}, nodeName: n1}\n",
    )
    .unwrap();
    let mut address = String::new();
    assert!(
        wait_every(Duration::from_secs(60), Duration::from_millis(500), || {
            address = lab
                .kubectl(&[
                    "get",
                    "service",
                    "-n",
                    "img",
                    "web",
                    "-o",
                    "jsonpath={.status.loadBalancer.ingress[0].ip}",
                ])
                .unwrap_or_default();
            !address.is_empty()
        }),
        "the image's controller gave web no address:\n{}",
        lab.read_log("image-controller")
    );
    let target: std::net::SocketAddr = format!("{address}:80").parse().unwrap();
    let mut answered = None;
    assert!(
        wait_every(Duration::from_secs(30), Duration::from_millis(200), || {
            answered = ferrolb_testbed::probe::answered_from(&lab.ns("client-lan"), target);
            answered.is_some()
        }),
        "nobody answered {target}:\n{}",
        lab.read_log("image-speaker-n1")
    );
    assert_eq!(answered.as_deref(), Some("n1"));
    // It forwards with its own nftables table, through the image's libnftables.
    let tables =
        ferrolb_testbed::netns::exec_ok(&lab.ns("n1"), &["nft", "list", "tables"]).unwrap();
    assert!(tables.contains("ferrolb"), "{tables}");
    // What it ran with: the two capabilities (CAP_NET_ADMIN 12, CAP_NET_RAW 13), and 65534.
    // The recorded pid is chroot's, which execs in place.
    assert_eq!(effective_capabilities(speaker), (1 << 12) | (1 << 13));
    assert_eq!(uid(controller), 65534);
}
