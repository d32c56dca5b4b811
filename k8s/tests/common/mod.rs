//! Shared by the k8s crate's integration tests.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Object `name` of `tests/fixtures/kubernetes/<file>` (real Kubernetes JSON; see its README).
pub fn fixture<T: DeserializeOwned>(file: &str, name: &str) -> T {
    let path = format!(
        "{}/../tests/fixtures/kubernetes/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let all: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let v = all
        .get(name)
        .unwrap_or_else(|| panic!("{file} has no {name}"))
        .clone();
    serde_json::from_value(v).unwrap_or_else(|e| panic!("{file}/{name}: {e}"))
}
