//! What the collector's Kubernetes scenario tests share: the recorded objects
//! (tests/fixtures/kubernetes), their times, the mappers' context and a pipeline with the
//! shipped rules.

use daytwo_collector::metrics::Metrics;
use daytwo_collector::pipeline::Pipeline;
use daytwo_collector::store::Store;
use daytwo_k8s::Context;
use daytwo_model::Timestamp;
use daytwo_rules::RuleSet;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

/// Object `name` of fixture file `file`.
pub fn fixture<T: DeserializeOwned>(file: &str, name: &str) -> T {
    let path = format!(
        "{}/../tests/fixtures/kubernetes/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let all: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    serde_json::from_value(all[name].clone()).unwrap()
}

/// `hms` on the fixtures' day.
pub fn at(hms: &str) -> Timestamp {
    Timestamp::parse_rfc3339(&format!("2026-11-25T{hms}Z")).unwrap()
}

/// The mappers' context in cluster `e2e`, as the agent on `host` or (`None`) the collector.
pub fn ctx(host: Option<&str>) -> Context {
    Context {
        cluster: Some("e2e".into()),
        host: host.map(str::to_string),
        max_age: Duration::from_secs(3600),
    }
}

/// A collector pipeline over a store in `dir`, with the shipped rules and a quorum of 2.
pub fn pipeline(dir: &std::path::Path) -> Pipeline {
    Pipeline::new(
        Store::open(dir).unwrap(),
        Arc::new(RuleSet::builtin()),
        Duration::from_secs(300),
        2,
        daytwo_collector::notify::Handle::disabled(),
        Metrics::new(&prometheus::Registry::new()).unwrap(),
    )
    .unwrap()
}
