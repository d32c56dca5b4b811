//! Correlation: every accepted signal is decided against the active incidents. Fixed input:
//! 10,000 signals over 200 hosts, a quarter of them matched by a rule.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use daytwo_collector::correlate::Correlator;
use daytwo_model::{
    Entity, EntityKind, Hypothesis, Incident, IncidentStatus, Severity, Signal, Timestamp,
};
use daytwo_rules::RuleMatch;
use std::hint::black_box;
use std::time::Duration;

fn signals(n: usize) -> Vec<(Signal, Vec<RuleMatch>)> {
    (0..n)
        .map(|i| {
            let host = format!("node-{}", i % 200);
            let cg = format!("/kubepods/pod{}", i % 1000);
            let s = Signal {
                id: format!("{i}"),
                name: "test.event".into(),
                time: Timestamp::from_unix_secs(1_795_617_015 + i as i64 / 10),
                severity: if i % 4 == 0 {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                entity: Entity::new(EntityKind::Cgroup, cg.clone())
                    .with_attr("host.name", host.clone())
                    .with_attr("daytwo.cgroup.path", cg),
                resource: [("host.name".to_string(), host.into())]
                    .into_iter()
                    .collect(),
                attributes: Default::default(),
                message: String::new(),
                evidence: vec![],
            };
            let matches = if i % 4 == 0 {
                vec![RuleMatch {
                    rule: "node.memory_cgroup_oom".into(),
                    severity: Severity::Critical,
                    title: "t".into(),
                    hypothesis: Hypothesis {
                        entity: s.entity.clone(),
                        score: 0.9,
                        rule: "node.memory_cgroup_oom".into(),
                        explanation: String::new(),
                        remediation: String::new(),
                        evidence: vec![],
                    },
                    signals: vec![s.clone()],
                }]
            } else {
                vec![]
            };
            (s, matches)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let input = signals(10_000);
    let mut g = c.benchmark_group("correlate");
    g.throughput(Throughput::Elements(input.len() as u64));
    g.sample_size(20);
    g.bench_function("decide_10k", |b| {
        b.iter(|| {
            let mut c = Correlator::new(Duration::from_secs(300));
            let mut opened = 0u32;
            for (s, m) in &input {
                if let daytwo_collector::correlate::Decision::Open {
                    fingerprint,
                    severity,
                    title,
                    hypotheses,
                    ..
                } = c.decide(s, m)
                {
                    opened += 1;
                    c.track(&Incident {
                        id: format!("i{opened}"),
                        fingerprint,
                        status: IncidentStatus::Open,
                        severity,
                        opened_at: s.time,
                        updated_at: s.time,
                        resolved_at: None,
                        title,
                        root_causes: hypotheses,
                        signals: vec![s.clone()],
                        links: vec![],
                    });
                }
            }
            black_box(opened)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
