//! Rule evaluation: every signal the collector accepts is evaluated against every rule.

use criterion::{Criterion, criterion_group, criterion_main};
use daytwo_model::{Entity, EntityKind, Severity, Signal, Timestamp};
use daytwo_rules::RuleSet;
use std::hint::black_box;

fn signal(constraint: &str) -> Signal {
    let attributes = serde_json::json!({
        "daytwo.oom.constraint": constraint,
        "process.pid": 1693,
        "process.executable.name": "python3",
        "daytwo.cgroup.path": "/probe1",
        "daytwo.memory.usage_bytes": 67108864u64,
        "daytwo.memory.limit_bytes": 67108864u64,
        "daytwo.memory.failcnt": 286,
    });
    Signal {
        id: "x".into(),
        name: "daytwo.kernel.oom_kill".into(),
        time: Timestamp::from_unix_secs(1_795_617_015),
        severity: Severity::Critical,
        entity: Entity::new(EntityKind::Cgroup, "/probe1")
            .with_attr("host.name", "node-1")
            .with_attr("daytwo.cgroup.path", "/probe1"),
        resource: [("host.name".to_string(), "node-1".into())]
            .into_iter()
            .collect(),
        attributes: attributes
            .as_object()
            .unwrap()
            .clone()
            .into_iter()
            .collect(),
        message: "OOM".into(),
        evidence: vec![],
    }
}

fn bench(c: &mut Criterion) {
    let rules = RuleSet::builtin();
    let memcg = signal("memcg");
    let mut other = signal("memcg");
    other.name = "daytwo.log.new_template".into();
    let mut g = c.benchmark_group("rules");
    g.bench_function("evaluate_matching_oom", |b| {
        b.iter(|| black_box(rules.evaluate(black_box(&memcg))))
    });
    g.bench_function("evaluate_non_matching_event", |b| {
        b.iter(|| black_box(rules.evaluate(black_box(&other))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
