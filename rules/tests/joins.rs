//! Joins: load errors with `path:line:col`, partial loading, and evaluation in either order
//! of arrival.

use daytwo_model::{Entity, EntityKind, Severity, Signal, Timestamp};
use daytwo_rules::{JoinSource, RuleSet, SourceFile};

/// A valid rule with a join; tests break one line at a time. Line numbers matter.
const GOOD: &str = "\
rules:
  - id: c.x
    description: d
    severity: critical
    title: \"node {{ join.node.entity.name }}\"
    match:
      event: daytwo.k8s.container.waiting
    join:
      - name: node
        event: daytwo.k8s.node.condition
        relation: runs-on
        order: before
        within: 10m
        condition: 'attributes[\"k8s.node.condition.status\"] != \"True\" && trigger.name != name'
    root_cause:
      entity: join.node
      score: 0.8
      explanation: \"{{ entity.name }} failed after {{ join.node.entity.name }}\"
      remediation: r
  - id: c.other
    description: d
    severity: warning
    title: t
    match:
      event: daytwo.k8s.container.waiting
    root_cause:
      score: 0.1
      explanation: e
      remediation: r
";

fn errors(text: &str) -> Vec<String> {
    let (set, errors) = RuleSet::compile_partial(&[SourceFile {
        path: "my.yaml",
        text,
    }]);
    // A broken rule never takes the other one down with it.
    assert!(set.get("c.other").is_some(), "{errors:?}");
    errors.iter().map(|e| e.to_string()).collect()
}

fn one_error(text: &str) -> String {
    let es = errors(text);
    assert_eq!(es.len(), 1, "{es:#?}");
    es[0].clone()
}

#[test]
fn the_base_file_is_valid() {
    let set = RuleSet::compile(&[SourceFile {
        path: "my.yaml",
        text: GOOD,
    }])
    .unwrap();
    assert_eq!(
        set.get("c.x").unwrap().join_names().collect::<Vec<_>>(),
        ["node"]
    );
    assert!(set.held_events().contains("daytwo.k8s.node.condition"));
    assert!(set.held_events().contains("daytwo.k8s.container.waiting"));
    assert_eq!(set.join_horizon(), std::time::Duration::from_secs(600));
}

#[test]
fn unknown_relation() {
    let e = one_error(&GOOD.replace("relation: runs-on", "relation: runs_on"));
    assert_eq!(
        e,
        "my.yaml:11:19: rule c.x: join[0].relation: unknown relation `runs_on`; the relations are `same-entity`, `same-host`, `runs-on`, `owned-by`, `calls`, `upstream-of`, `same-cluster`, `mounts`"
    );
}

#[test]
fn unknown_order() {
    let e = one_error(&GOOD.replace("order: before", "order: earlier"));
    assert!(
        e.starts_with("my.yaml:12:16: rule c.x: join[0].order: unknown order `earlier`"),
        "{e}"
    );
}

#[test]
fn bad_windows() {
    for (bad, says) in [
        ("10 minutes", "has an unknown unit"),
        ("10", "has no unit"),
        ("0s", "is zero"),
        ("7h", "longer than the longest window"),
    ] {
        let e = one_error(&GOOD.replace("within: 10m", &format!("within: {bad}")));
        assert!(
            e.starts_with("my.yaml:13:17: rule c.x: join[0].within: "),
            "{e}"
        );
        assert!(e.contains(says), "{e}");
    }
}

#[test]
fn references_to_undefined_joins() {
    let e = one_error(&GOOD.replace("entity: join.node", "entity: join.nod"));
    assert_eq!(
        e,
        "my.yaml:16:15: rule c.x: root_cause.entity: `join.nod` names a join that is not defined; the joins are `node`"
    );
    let e = one_error(&GOOD.replace(
        "title: \"node {{ join.node.entity.name }}\"",
        "title: \"node {{ join.nod.entity.name }}\"",
    ));
    assert_eq!(
        e,
        "my.yaml:5:21: rule c.x: title: `join.nod` names a join that is not defined; the joins are `node`"
    );
    // `join` in a rule without joins is not a variable at all.
    let text = GOOD.replace(
        "      explanation: e",
        "      explanation: \"{{ join.node.name }}\"",
    );
    let (set, es) = RuleSet::compile_partial(&[SourceFile {
        path: "my.yaml",
        text: &text,
    }]);
    assert!(set.get("c.x").is_some() && set.get("c.other").is_none());
    assert_eq!(es.len(), 1);
    let e = es[0].to_string();
    assert!(
        e.contains("rule c.other: root_cause.explanation: unknown variable `join`"),
        "{e}"
    );
    // `trigger` is only for join conditions.
    let e = one_error(&GOOD.replace(
        "    match:\n      event: daytwo.k8s.container.waiting\n    join:",
        "    match:\n      event: daytwo.k8s.container.waiting\n      condition: trigger.name == ''\n    join:",
    ));
    assert!(
        e.contains("match.condition: unknown variable `trigger`"),
        "{e}"
    );
    let e = one_error(&GOOD.replace("order: before", "order: before\n        of: nod"));
    assert!(
        e.starts_with(
            "my.yaml:13:13: rule c.x: join[0].of: `of: nod` names a join that is not defined"
        ),
        "{e}"
    );
}

#[test]
fn a_cycle_between_joins() {
    let text = GOOD.replace(
        "    root_cause:\n      entity: join.node",
        "      - name: a\n        event: e1\n        relation: same-host\n        of: b\n        within: 1m\n      - name: b\n        event: e2\n        relation: same-host\n        of: a\n        within: 1m\n    root_cause:\n      entity: join.node",
    );
    let e = one_error(&text);
    assert_eq!(
        e,
        "my.yaml:18:13: rule c.x: join[1].of: the joins' `of:` form a cycle (a → b → a); one of them must be measured from `trigger`"
    );
}

#[test]
fn bad_join_names() {
    let es = errors(&GOOD.replace("- name: node", "- name: Node"));
    assert!(
        es[0].starts_with("my.yaml:9:15: rule c.x: join[0].name: invalid join name `Node`"),
        "{es:?}"
    );
    let es = errors(&GOOD.replace("- name: node", "- name: trigger"));
    assert!(es[0].contains("invalid join name `trigger`"), "{es:?}");
}

#[test]
fn a_yaml_error_in_one_file_keeps_the_other_files() {
    let (set, errors) = RuleSet::compile_partial(&[
        SourceFile {
            path: "bad.yaml",
            text: "rules: [\n",
        },
        SourceFile {
            path: "good.yaml",
            text: GOOD,
        },
    ]);
    assert_eq!(set.len(), 2);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].to_string().starts_with("bad.yaml:"),
        "{}",
        errors[0]
    );
}

// --- evaluation --------------------------------------------------------------------------

struct Pool(Vec<Signal>);

impl JoinSource for Pool {
    fn signals(&self, event: &str, from: Timestamp, to: Timestamp) -> Vec<&Signal> {
        self.0
            .iter()
            .filter(|s| s.name == event && s.time >= from && s.time <= to)
            .collect()
    }
}

fn waiting(id: &str, node: &str, t: i64) -> Signal {
    Signal {
        id: id.into(),
        name: "daytwo.k8s.container.waiting".into(),
        time: Timestamp::from_unix_secs(t),
        severity: Severity::Warning,
        entity: Entity::new(EntityKind::Container, format!("pod-{id}/app"))
            .with_attr("k8s.pod.uid", id)
            .with_attr("k8s.container.name", "app"),
        resource: [("k8s.node.name".to_string(), node.into())]
            .into_iter()
            .collect(),
        attributes: Default::default(),
        message: String::new(),
        evidence: vec![],
    }
}

fn not_ready(node: &str, t: i64) -> Signal {
    Signal {
        id: format!("nr-{node}-{t}"),
        name: "daytwo.k8s.node.condition".into(),
        time: Timestamp::from_unix_secs(t),
        severity: Severity::Critical,
        entity: Entity::new(EntityKind::Node, node).with_attr("k8s.node.name", node),
        resource: Default::default(),
        attributes: [
            ("k8s.node.condition.type".to_string(), "Ready".into()),
            ("k8s.node.condition.status".to_string(), "False".into()),
        ]
        .into_iter()
        .collect(),
        message: String::new(),
        evidence: vec![],
    }
}

fn rules() -> RuleSet {
    RuleSet::compile(&[SourceFile {
        path: "my.yaml",
        text: GOOD,
    }])
    .unwrap()
}

#[test]
fn a_trigger_finds_its_earlier_cause() {
    let rules = rules();
    let pod = waiting("p1", "n1", 1000);
    let pool = Pool(vec![
        not_ready("n2", 900),
        not_ready("n1", 950),
        pod.clone(),
    ]);
    let ms = rules.evaluate_with(&pod, &pool);
    let m = ms.iter().find(|m| m.rule == "c.x").expect("c.x matches");
    assert_eq!(m.hypothesis.entity.name, "n1");
    assert_eq!(m.title, "node n1");
    assert_eq!(m.hypothesis.explanation, "pod-p1/app failed after n1");
    assert_eq!(
        m.signals.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["p1", "nr-n1-950"]
    );
    // Alone, or with the node's condition after the pod, it does not match.
    assert!(rules.evaluate(&pod).iter().all(|m| m.rule != "c.x"));
    let later = Pool(vec![not_ready("n1", 1010), pod.clone()]);
    assert!(
        rules
            .evaluate_with(&pod, &later)
            .iter()
            .all(|m| m.rule != "c.x")
    );
}

#[test]
fn a_cause_arriving_after_its_symptoms_completes_them() {
    let rules = rules();
    let node = not_ready("n1", 950);
    let pool = Pool(vec![
        waiting("p1", "n1", 1000),
        waiting("p2", "n1", 1001),
        waiting("p3", "n2", 1002),
        waiting("old", "n1", 100),
        node.clone(),
    ]);
    let late = rules.evaluate_joined(&node, &pool);
    let triggers: Vec<&str> = late.iter().map(|m| m.signals[0].id.as_str()).collect();
    assert_eq!(triggers, ["p1", "p2"]);
    assert!(late.iter().all(|m| m.hypothesis.entity.name == "n1"));
    // A signal no join listens for completes nothing.
    assert!(
        rules
            .evaluate_joined(&waiting("p4", "n1", 1003), &pool)
            .is_empty()
    );
}

proptest::proptest! {
    /// Whatever the order in which a pod's failure and its node's condition arrive, evaluating
    /// each as it arrives (as a trigger, then as a late join) yields the match exactly when the
    /// condition came first in event time and within the window.
    #[test]
    fn arrival_order_does_not_matter(pod_t in 0i64..2000, node_t in 0i64..2000, node_first in proptest::bool::ANY) {
        let rules = rules();
        let pod = waiting("p", "n1", pod_t);
        let node = not_ready("n1", node_t);
        let (first, second) = if node_first { (node.clone(), pod.clone()) } else { (pod.clone(), node.clone()) };
        let mut pool = Pool(vec![first.clone()]);
        let mut found = rules.evaluate_with(&first, &pool).into_iter().chain(rules.evaluate_joined(&first, &pool)).filter(|m| m.rule == "c.x").count();
        pool.0.push(second.clone());
        found += rules.evaluate_with(&second, &pool).into_iter().chain(rules.evaluate_joined(&second, &pool)).filter(|m| m.rule == "c.x").count();
        let expected = node_t <= pod_t && pod_t - node_t <= 600;
        proptest::prop_assert_eq!(found, usize::from(expected));
    }
}
