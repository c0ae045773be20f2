//! The checked-in CRDs under `manifests/crds/` must be what the Rust types generate.
//! `FERROLB_UPDATE_CRDS=1 cargo test -p ferrolb-api --test crd_manifests` rewrites them.

use std::path::PathBuf;

fn manifests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../manifests/crds")
}

#[test]
fn checked_in_crds_match_the_rust_types() {
    let dir = manifests_dir();
    let update = std::env::var_os("FERROLB_UPDATE_CRDS").is_some();
    let mut drifted = Vec::new();
    for crd in ferrolb_api::crds::all() {
        let path = dir.join(ferrolb_api::crds::file_name(&crd));
        let expected = ferrolb_api::crds::to_yaml(&crd);
        if update {
            std::fs::write(&path, &expected).unwrap();
            continue;
        }
        let actual = std::fs::read_to_string(&path).unwrap_or_default();
        if actual != expected {
            drifted.push(path.display().to_string());
        }
    }
    assert!(
        drifted.is_empty(),
        "CRDs drifted from the Rust types: {drifted:?}; run `cargo run -p ferrolb -- crds --dir manifests/crds`"
    );
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "bfdprofiles.yaml",
            "bgpadvertisements.yaml",
            "bgppeers.yaml",
            "bgpsessionstates.yaml",
            "communities.yaml",
            "ipaddresspools.yaml",
            "l2advertisements.yaml",
            "servicebgpstatuses.yaml",
            "servicel2statuses.yaml"
        ],
        "manifests/crds holds exactly the generated CRDs"
    );
}

#[test]
fn crds_are_structural_with_patterns_and_printer_columns() {
    let pool = ferrolb_api::crds::for_kind("IPAddressPool").unwrap();
    assert_eq!(pool.spec.group, "ferrolb.io");
    assert_eq!(
        pool.spec.names.short_names.as_deref(),
        Some(&["ipp".to_string()][..])
    );
    let version = &pool.spec.versions[0];
    assert_eq!(version.name, "v1beta1");
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert!(columns.contains(&"Addresses") && columns.contains(&"Auto Assign"));
    let schema = serde_json::to_value(version.schema.as_ref().unwrap()).unwrap();
    let addresses = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["addresses"];
    assert_eq!(addresses["items"]["type"], "string");
    assert!(addresses["items"]["pattern"].is_string());
    assert_eq!(
        schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["autoAssign"]["default"],
        true
    );
    // Structural schemas have no $ref, anyOf at the top of a property, or missing types.
    let text = schema.to_string();
    assert!(!text.contains("$ref"), "schema has $ref");
}
