//! The README's first command, run as written (with this build's binaries): the lab comes up,
//! every Service of examples/lab/ answers its clients over L2 and BGP, and the lab is removed.

use std::path::Path;
use std::process::Command;

#[test]
fn the_readme_demo_command_answers_every_service_and_cleans_up() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_testbed")).parent().unwrap();
    for other in ["ferrolb", "fake-apiserver"] {
        assert!(
            bin_dir.join(other).exists(),
            "{other} is not built in {}: the workspace test command builds it (cargo test --workspace)",
            bin_dir.display()
        );
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    // The first code block of the README is the demo command.
    let first_block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(first_block, "./scripts/demo.sh");
    let prefix = format!("ftd{}-", std::process::id());
    let out = Command::new("bash")
        .arg("-c")
        .arg(&first_block)
        .current_dir(root)
        .env("FERROLB_BIN_DIR", bin_dir)
        .env("FERROLB_TESTBED_PREFIX", &prefix)
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    // The table: SERVICE, ADDRESS, ANNOUNCED BY, CLIENT, ANSWER, columns two spaces apart.
    let rows: Vec<Vec<String>> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("SERVICE"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect();
    let row = |service: &str, address: &str, client: &str| -> Vec<String> {
        rows.iter()
            .find(|r| r[0] == service && r[1] == address && r[3] == client)
            .unwrap_or_else(|| panic!("no row {service} {address} {client} in:\n{stdout}"))
            .clone()
    };
    // L2, both families: one node announces, the client on the segment is answered by it.
    for (service, address, seen) in [
        ("web", "192.0.2.200:80", "192.0.2.100:"),
        ("web6", "[2001:db8::200]:80", "[2001:db8::100]:"),
    ] {
        let r = row(service, address, "client-lan");
        assert!(r[2].ends_with("(L2)") && !r[2].contains(','), "{r:?}");
        let owner = r[2].trim_end_matches(" (L2)");
        assert!(r[4].starts_with(&format!("{owner} {seen}")), "{r:?}");
    }
    // BGP, dual-stack, Cluster: every node announces; clients behind both routers answered.
    for address in ["198.51.100.0:80", "[2001:db8:100::]:80"] {
        for client in ["client-frr", "client-bird"] {
            let r = row("api", address, client);
            assert_eq!(r[2], "n1, n2, n3 (BGP)");
            assert!(r[4].starts_with('n'), "{r:?}");
        }
    }
    // BGP, Local: only the node with the endpoint announces and answers.
    for (client, seen) in [
        ("client-frr", "203.0.113.10:"),
        ("client-bird", "203.0.113.74:"),
    ] {
        let r = row("api-local", "198.51.100.1:80", client);
        assert_eq!(r[2], "n2 (BGP)");
        assert!(r[4].starts_with(&format!("n2 {seen}")), "{r:?}");
    }
    assert!(!stdout.contains("(no answer)"), "{stdout}");
    assert!(stdout.contains("lab removed"));
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains(&prefix),
        "namespaces left behind"
    );
}
