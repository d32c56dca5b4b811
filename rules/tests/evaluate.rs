//! Evaluation of rules against signals built in code.

use daytwo_model::{Attributes, Entity, EntityKind, Evidence, Severity, Signal, Timestamp};
use daytwo_rules::{RuleSet, SourceFile};
use serde_json::json;

fn oom(constraint: &str) -> Signal {
    let mut attributes = Attributes::new();
    for (k, v) in [
        ("daytwo.oom.constraint", json!(constraint)),
        ("process.pid", json!(1693)),
        ("process.executable.name", json!("python3")),
        ("daytwo.cgroup.path", json!("/probe1")),
        ("daytwo.memory.usage_bytes", json!(67_108_864u64)),
        ("daytwo.memory.limit_bytes", json!(67_108_864u64)),
        ("daytwo.memory.failcnt", json!(286)),
    ] {
        attributes.insert(k.into(), v);
    }
    let mut resource = Attributes::new();
    resource.insert("host.name".into(), json!("node-1"));
    resource.insert("k8s.cluster.name".into(), json!("prod"));
    let t = Timestamp::from_unix_secs(1_795_617_015);
    Signal {
        id: "s1".into(),
        name: "daytwo.kernel.oom_kill".into(),
        time: t,
        severity: Severity::Critical,
        entity: Entity::new(EntityKind::Cgroup, "/probe1")
            .with_attr("host.name", "node-1")
            .with_attr("daytwo.cgroup.path", "/probe1"),
        resource,
        attributes,
        message: "Kernel OOM-killed python3".into(),
        evidence: vec![
            Evidence {
                time: t,
                kind: "log".into(),
                text: "Killed process 1693".into(),
            },
            Evidence {
                time: t,
                kind: "reading".into(),
                text: "memory.failcnt=286".into(),
            },
            Evidence {
                time: t,
                kind: "sample".into(),
                text: "0.99".into(),
            },
        ],
    }
}

fn compile(text: &str) -> RuleSet {
    RuleSet::compile(&[SourceFile {
        path: "t.yaml",
        text,
    }])
    .unwrap_or_else(|es| {
        panic!(
            "{}",
            es.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

/// A rule with the given `match` and root-cause extras.
fn rule(id: &str, score: f64, matcher: &str, extra: &str) -> String {
    format!(
        "  - id: {id}\n    description: d\n    severity: warning\n    title: \"{id} {{{{ entity.name }}}}\"\n    match:\n{matcher}\n    root_cause:\n      score: {score}\n      explanation: x\n      remediation: y\n{extra}"
    )
}

#[test]
fn memcg_oom_matches_the_memcg_rule_only() {
    let set = RuleSet::builtin();
    let ms = set.evaluate(&oom("memcg"));
    assert_eq!(ms.len(), 1);
    let m = &ms[0];
    assert_eq!(m.rule, "node.memory_cgroup_oom");
    assert_eq!(m.severity, Severity::Critical);
    assert_eq!(m.title, "OOM kill in /probe1 on node-1");
    assert_eq!(m.hypothesis.rule, "node.memory_cgroup_oom");
    assert_eq!(m.hypothesis.entity, oom("memcg").entity);
    assert_eq!(m.hypothesis.score, 0.9);
    assert!(
        m.hypothesis.explanation.starts_with(
            "python3 (pid 1693) was killed by the kernel because memory cgroup /probe1 reached its limit: usage 64.0 MiB of limit 64.0 MiB (limit hit 286 times). "
        ),
        "{}",
        m.hypothesis.explanation
    );
    assert!(m.hypothesis.remediation.contains("resources.limits.memory"));
    assert_eq!(m.hypothesis.evidence.len(), 3);
}

#[test]
fn global_oom_names_the_host_with_its_cluster() {
    let set = RuleSet::builtin();
    let ms = set.evaluate(&oom("global"));
    assert_eq!(ms.len(), 1);
    let m = &ms[0];
    assert_eq!(m.rule, "node.memory_global_oom");
    let e = &m.hypothesis.entity;
    assert_eq!((e.kind, e.name.as_str()), (EntityKind::Host, "node-1"));
    assert_eq!(e.attributes["host.name"], "node-1");
    assert_eq!(e.attributes["k8s.cluster.name"], "prod");
    assert!(m.hypothesis.score < 0.9);
    // evidence: logs
    assert_eq!(m.hypothesis.evidence.len(), 1);
    assert_eq!(m.hypothesis.evidence[0].kind, "log");
}

#[test]
fn host_rules_do_not_match_signals_without_a_host() {
    let mut s = oom("global");
    s.resource.clear();
    s.entity.attributes.clear();
    assert!(RuleSet::builtin().evaluate(&s).is_empty());
}

#[test]
fn other_events_and_unknown_constraints_match_nothing() {
    let set = RuleSet::builtin();
    let mut s = oom("memcg");
    s.name = "daytwo.kernel.oom".into();
    assert!(set.evaluate(&s).is_empty());
    assert!(set.evaluate(&oom("cpuset")).is_empty());
    let mut s = oom("memcg");
    s.attributes.remove("daytwo.oom.constraint");
    assert!(
        set.evaluate(&s).is_empty(),
        "a failing condition does not match"
    );
}

#[test]
fn matches_are_sorted_by_score_then_id() {
    let m = "      event: daytwo.kernel.oom_kill";
    let text = format!(
        "rules:\n{}{}{}",
        rule("b.low", 0.2, m, ""),
        rule("b.high", 0.8, m, ""),
        rule("a.high", 0.8, m, "")
    );
    let ms = compile(&text).evaluate(&oom("memcg"));
    let ids: Vec<&str> = ms.iter().map(|m| m.rule.as_str()).collect();
    assert_eq!(ids, ["a.high", "b.high", "b.low"]);
}

#[test]
fn event_lists_conditions_and_variables() {
    let text = format!(
        "rules:\n{}{}{}{}{}",
        rule(
            "list",
            0.5,
            "      event: [x.y, daytwo.kernel.oom_kill]",
            ""
        ),
        rule(
            "vars",
            0.5,
            "      event: daytwo.kernel.oom_kill\n      condition: >-\n        name == 'daytwo.kernel.oom_kill' && severity == 'critical' &&\n        entity.kind == 'cgroup' && entity.attributes['host.name'] == 'node-1' &&\n        resource['k8s.cluster.name'] == 'prod' && message.startsWith('Kernel') &&\n        attributes['process.pid'] == 1693 && attributes['daytwo.memory.limit_bytes'] > 1000",
            ""
        ),
        rule(
            "false",
            0.5,
            "      event: daytwo.kernel.oom_kill\n      condition: name == 'nope'",
            ""
        ),
        rule(
            "not-bool",
            0.5,
            "      event: daytwo.kernel.oom_kill\n      condition: name",
            ""
        ),
        rule(
            "macros",
            0.5,
            "      event: daytwo.kernel.oom_kill\n      condition: attributes.exists(k, k.startsWith('daytwo.oom')) && 'process.pid' in attributes",
            ""
        ),
    );
    let ms = compile(&text).evaluate(&oom("memcg"));
    let ids: Vec<&str> = ms.iter().map(|m| m.rule.as_str()).collect();
    assert_eq!(ids, ["list", "macros", "vars"]);
}

#[test]
fn evidence_selectors() {
    let m = "      event: daytwo.kernel.oom_kill";
    let text = format!(
        "rules:\n{}{}{}{}{}",
        rule("all", 0.5, m, ""),
        rule("logs", 0.5, m, "      evidence: logs\n"),
        rule("readings", 0.5, m, "      evidence: readings\n"),
        rule("samples", 0.5, m, "      evidence: samples\n"),
        rule("none", 0.5, m, "      evidence: none\n"),
    );
    let ms = compile(&text).evaluate(&oom("memcg"));
    let counts: Vec<(&str, usize)> = ms
        .iter()
        .map(|m| (m.rule.as_str(), m.hypothesis.evidence.len()))
        .collect();
    assert_eq!(
        counts,
        [
            ("all", 3),
            ("logs", 1),
            ("none", 0),
            ("readings", 1),
            ("samples", 1)
        ]
    );
}

#[test]
fn evaluation_is_deterministic() {
    let set = RuleSet::builtin();
    assert_eq!(set.evaluate(&oom("memcg")), set.evaluate(&oom("memcg")));
}

#[test]
fn rule_sets_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RuleSet>();
    let set = std::sync::Arc::new(RuleSet::builtin());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let set = set.clone();
            std::thread::spawn(move || set.evaluate(&oom("memcg")).len())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 1);
    }
}

#[test]
fn rules_are_introspectable() {
    let set = RuleSet::builtin();
    let r = set.get("node.memory_cgroup_oom").unwrap();
    assert_eq!(r.events(), ["daytwo.kernel.oom_kill"]);
    assert_eq!(r.severity(), Severity::Critical);
    assert_eq!(r.defined_at().to_string(), "rules/packs/node.yaml:4:5");
    assert!(r.condition().unwrap().contains("memcg"));
    assert!(set.get("nope").is_none());
}
