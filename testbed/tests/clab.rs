//! The containerlab topology in `testbed/clab/` is what the description generates now, and it
//! is valid against containerlab's own JSON schema. `FERROLB_UPDATE_CLAB=1` rewrites the files.

use std::path::Path;

use ferrolb_testbed::{Topology, clab};
use serde_json::Value;

fn schema() -> jsonschema::Validator {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(dir.join("schema/clab.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::draft7::new(&schema).expect("containerlab's schema compiles")
}

fn errors(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn the_committed_topology_is_what_the_description_generates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("clab");
    let files = clab::generate(&Topology::builtin());
    if std::env::var("FERROLB_UPDATE_CLAB").is_ok() {
        for (path, text) in &files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
    }
    for (path, text) in &files {
        let on_disk = std::fs::read_to_string(dir.join(path))
            .unwrap_or_else(|_| panic!("testbed/clab/{path} missing: run FERROLB_UPDATE_CLAB=1 cargo test -p ferrolb-testbed --test clab"));
        assert_eq!(
            &on_disk, text,
            "testbed/clab/{path} differs from the description's"
        );
    }
}

#[test]
fn the_topology_is_valid_for_containerlab() {
    let files = clab::generate(&Topology::builtin());
    let doc: Value = serde_yaml::from_str(&files["ferrolb.clab.yml"]).unwrap();
    let validator = schema();
    assert_eq!(errors(&validator, &doc), Vec::<String>::new());
}

#[test]
fn the_schema_check_refuses_what_containerlab_would() {
    let files = clab::generate(&Topology::builtin());
    let mut doc: Value = serde_yaml::from_str(&files["ferrolb.clab.yml"]).unwrap();
    doc["topology"]["nodes"]["frr"]["kind"] = Value::from("router-of-dreams");
    doc["topology"]["nodes"]["client-lan"]["exec"] = Value::from(Vec::<String>::new());
    let found = errors(&schema(), &doc);
    assert!(
        found.iter().any(|e| e.contains("/topology/nodes/frr")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|e| e.contains("/topology/nodes/client-lan")),
        "{found:?}"
    );
}
