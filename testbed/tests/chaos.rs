//! Three minutes of chaos on the lab with a fixed seed (`testbed chaos --minutes 3 --seed 1`):
//! every kind of fault at least once, several at once, Services churned meanwhile, and every
//! invariant held: during the faults, after them, and after a speaker stops for good.

use std::process::Command;

#[test]
fn three_minutes_of_chaos_with_seed_1_violate_no_invariant() {
    let prefix = format!("ftx{}-", std::process::id() % 100_000);
    let out = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["chaos", "--minutes", "3", "--seed", "1"])
        .env("FERROLB_TESTBED_PREFIX", &prefix)
        .output()
        .expect("testbed chaos runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A failed run leaves its lab up for a look; the test removes it.
    ferrolb_testbed::lab::remove(&prefix);
    println!("{stdout}");
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("\nviolations: 0\n"), "{stdout}");
    // Every kind of fault fake-apiserver's lab knows was injected.
    for kind in [
        "controller leader SIGKILL",
        "controller leader SIGSTOP 30 s",
        "controller rolling restart",
        "speaker SIGKILL",
        "speaker SIGSTOP",
        "speaker SIGTERM + restart",
        "link cut (carrier lost)",
        "link flapping",
        "gossip blocked on a node",
        "gossip partition",
        "router restart",
        "BGP sessions reset by the router",
        "API server restart",
        "watches dropped",
        "API history compacted",
        "API 10 % errors",
        "API slow (300 ms)",
    ] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(kind)),
            "{kind} never injected:\n{stdout}"
        );
    }
    // Every invariant was checked, and every Service came back.
    for check in [
        "1+2 addresses",
        "3 ARP answerers",
        "4 answered after the faults",
        "4 nothing announced unassigned",
        "5 nothing left behind",
        "6 logs free of panics",
        "6 processes running",
    ] {
        assert!(stdout.contains(check), "{check} never checked:\n{stdout}");
    }
    assert!(
        stdout.contains("recovery after the faults stopped"),
        "{stdout}"
    );
}
