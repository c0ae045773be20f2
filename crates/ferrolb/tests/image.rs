//! What can be checked of the container image without a Docker engine: the binary it ships
//! runs, links only what the runtime base carries, finds what it loads at run time there,
//! and the Dockerfile builds it as the README says.

use std::collections::BTreeSet;
use std::process::Command;

fn dockerfile() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Dockerfile"))
        .expect("Dockerfile at the repository root")
}

/// The Debian package that holds `path` on this (Debian) machine.
fn package_of(path: &str) -> String {
    let out = Command::new("dpkg")
        .args(["-S", path])
        .output()
        .expect("dpkg");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(':')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn the_binary_runs_and_reports_its_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("ferrolb {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn the_binary_links_only_what_debian_slim_carries() {
    let out = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_ferrolb"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let packages: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.split("=>").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .map(|path| {
            // dpkg may know the library by the /lib path ldd prints or by the /usr/lib one
            // it resolves to (merged /usr).
            let resolved = std::fs::canonicalize(path).unwrap();
            Some(package_of(path))
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| package_of(resolved.to_str().unwrap()))
        })
        .collect();
    // libc6 and libgcc-s1 are in every Debian base image.
    let base: BTreeSet<String> = ["libc6", "libgcc-s1"].map(String::from).into();
    assert!(
        packages.is_subset(&base),
        "linked from {packages:?}:\n{text}"
    );
}

#[test]
fn the_runtime_stage_installs_what_the_speaker_loads_at_run_time() {
    let text = dockerfile();
    // What comes before the first FROM is the header comment (and the base image ARGs).
    let stages: Vec<&str> = text.split("\nFROM ").skip(1).collect();
    let stage = |name: &str| {
        *stages
            .iter()
            .find(|s| {
                s.lines()
                    .next()
                    .is_some_and(|l| l.ends_with(&format!(" AS {name}")))
            })
            .unwrap_or_else(|| panic!("a stage {name}: {text}"))
    };
    let runtime = stage("runtime");
    // The two ways to the image (compiled in a Rust image, or a binary from the context) both
    // start from the runtime stage, which the default (last) stage is built on.
    assert!(stage("prebuilt").starts_with("runtime AS prebuilt"));
    assert!(stages.last().unwrap().starts_with("runtime\n"), "{text}");
    // The dataplane dlopens libnftables.so.1; on Debian that file is in libnftables1.
    assert_eq!(
        package_of("/usr/lib/x86_64-linux-gnu/libnftables.so.1"),
        "libnftables1"
    );
    assert!(runtime.contains("libnftables1"), "{runtime}");
    assert!(runtime.contains("ln -s ferrolb /usr/local/bin/kubectl-ferrolb"));
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert_ne!(
        user.split(':').next(),
        Some("0"),
        "the controller runs as non-root"
    );
    // The builder's Rust is at least what the workspace asks for.
    let builder = text
        .lines()
        .find_map(|l| l.strip_prefix("ARG RUST_IMAGE=rust:"))
        .and_then(|v| v.split('-').next())
        .expect("a rust builder image");
    let cargo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml")).unwrap();
    let wanted = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap();
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap()).collect() };
    assert!(version(builder) >= version(wanted), "{builder} < {wanted}");
}
