//! The user verbs, run as a user runs them.

use std::process::Command;

fn ferrolb(args: &[&str]) -> (String, String, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .expect("run ferrolb");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

#[test]
fn migrate_converts_the_example_and_names_what_it_changes() {
    let (stdout, stderr, ok) = ferrolb(&["migrate", "examples/metallb-config.yaml"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("apiVersion: ferrolb.io/v1beta1"));
    assert!(!stdout.contains("metallb.io/v1beta"));
    // The peer's VRF carries over; what moved is named.
    assert!(stdout.contains("vrf: red"), "{stdout}");
    assert!(!stderr.contains("dropped"), "{stderr}");
    assert!(stderr.contains("BGPPeer/tor: namespace metallb-system became ferrolb-system"));
}

#[test]
fn plan_shows_assignments_and_refusals() {
    let line = |svc: &str| plan_line_of("examples/metallb-config.yaml", svc);
    assert!(line("shop/web ").contains("198.51.100.10"));
    assert!(
        line("shop/web-udp").contains("198.51.100.10"),
        "shared address"
    );
    assert!(line("default/api").contains("192.0.2.0,2001:db8:1::"));
    assert!(line("default/pinned").contains("192.0.2.3"));
    assert!(line("default/wrong").contains("InvalidRequestedIP"));
}

#[test]
fn plan_prefers_a_reserved_pool_without_priority_to_a_general_one() {
    let case = "reserved-pool-without-priority.yaml";
    assert!(plan_line(case, "team-a/web").contains("198.51.100.0"));
    assert!(plan_line(case, "team-b/web").contains("192.0.2.0"));
}

/// `ferrolb plan` on one of the allocator's case files: the line of `service`.
fn plan_line(case: &str, service: &str) -> String {
    plan_line_of(&format!("crates/ferrolb-ipam/tests/cases/{case}"), service)
}

/// `ferrolb plan FILE` (relative to the repository): the line of `service`.
fn plan_line_of(file: &str, service: &str) -> String {
    let (stdout, stderr, ok) = ferrolb(&["plan", file]);
    assert!(ok, "{stderr}");
    stdout
        .lines()
        .find(|l| l.starts_with(service))
        .unwrap_or_else(|| panic!("no line for {service} in\n{stdout}"))
        .to_string()
}

#[test]
fn plan_honours_metallbs_former_annotations() {
    let line = plan_line("metallb-former-annotations.yaml", "shop/legacy");
    assert!(
        line.contains("edge") && line.contains("198.51.100.7"),
        "{line}"
    );
}

#[test]
fn plan_refuses_a_load_balancer_ip_that_disagrees_with_the_annotation() {
    let torn = plan_line("load-balancer-ip-disagrees.yaml", "shop/torn");
    assert!(
        torn.contains("192.0.2.5") && torn.contains("192.0.2.6"),
        "{torn}"
    );
    let agreed = plan_line("load-balancer-ip-disagrees.yaml", "shop/agreed");
    assert!(agreed.contains("192.0.2.7"), "{agreed}");
    let wrong = plan_line("load-balancer-ip-disagrees.yaml", "shop/wrong-family");
    assert!(wrong.contains("with ipFamilies IPv4"), "{wrong}");
}

#[test]
fn plan_gives_a_prefer_dual_stack_service_the_family_its_pool_gained() {
    let line = plan_line("prefer-dual-stack-gains-family.yaml", "shop/web");
    assert!(line.ends_with("192.0.2.3,2001:db8::"), "{line}");
}

#[test]
fn crds_prints_every_kind() {
    let (stdout, _, ok) = ferrolb(&["crds"]);
    assert!(ok);
    for kind in [
        "IPAddressPool",
        "L2Advertisement",
        "BGPAdvertisement",
        "BGPPeer",
        "BFDProfile",
        "Community",
    ] {
        assert!(stdout.contains(&format!("kind: {kind}\n")), "{kind}");
    }
}

#[test]
fn unreadable_input_is_an_error_not_a_panic() {
    let (_, stderr, ok) = ferrolb(&["plan", "does-not-exist.yaml"]);
    assert!(!ok);
    assert!(
        stderr.contains("does-not-exist.yaml") && !stderr.contains("panicked"),
        "{stderr}"
    );
}
