//! The rule test runner reports expected versus got.

use daytwo_rules::{RuleSet, parse_test_file, run_tests};

const TESTS: &str = "\
rule_files: [node.yaml]
tests:
  - name: wrong expectations
    signals:
      - name: daytwo.kernel.oom_kill
        entity: {kind: cgroup, name: /probe1}
        resource: {host.name: node-1}
        attributes: {daytwo.oom.constraint: memcg, daytwo.cgroup.path: /probe1}
    expect:
      - rule: node.memory_cgroup_oom
        entity: {kind: host, name: /probe2}
        severity: info
        rank: 2
        explanation_contains: [\"64.0 MiB\"]
      - rule: node.memory_global_oom
      - rule: node.typo
    expect_not: [node.memory_cgroup_oom, node.other_typo]
  - name: passes
    signals:
      - name: daytwo.kernel.oom_kill
        entity: {kind: cgroup, name: /probe1}
        attributes: {daytwo.oom.constraint: memcg}
    expect:
      - rule: node.memory_cgroup_oom
";

#[test]
fn failures_say_expected_and_got() {
    let tf = parse_test_file("dir/node.test.yaml", TESTS).unwrap();
    assert_eq!(tf.rule_files(), ["node.yaml"]);
    assert_eq!(
        tf.rule_file_paths(),
        [std::path::PathBuf::from("dir/node.yaml")]
    );
    assert_eq!(
        tf.test_names().collect::<Vec<_>>(),
        ["wrong expectations", "passes"]
    );
    let outcomes = run_tests(&tf, &RuleSet::builtin());
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes[1].passed, "{:?}", outcomes[1].failures);
    let o = &outcomes[0];
    assert!(!o.passed);
    assert_eq!(o.name, "wrong expectations");
    assert_eq!(o.location.to_string(), "dir/node.test.yaml:3:5");
    let f = &o.failures;
    assert_eq!(f.len(), 5, "{f:#?}");
    assert!(f[0].starts_with("dir/node.test.yaml:10:9: rule `node.memory_cgroup_oom` matched, but expected severity info, got critical; expected entity kind host, got cgroup; expected entity name \"/probe2\", got \"/probe1\"; expected rank 2 among the matches of its signal, got 1; expected explanation to contain \"64.0 MiB\", got \""), "{}", f[0]);
    assert_eq!(
        f[1],
        "dir/node.test.yaml:15:9: expected rule `node.memory_global_oom` to match, but it did not: its condition returned false; matched: [node.memory_cgroup_oom]"
    );
    assert!(f[2].starts_with("dir/node.test.yaml:16:9: expected rule `node.typo` to match, but no loaded rule has that id (loaded: node.memory_cgroup_oom, node.memory_global_oom"), "{}", f[2]);
    assert_eq!(
        f[3],
        "dir/node.test.yaml:17:18: expected rule `node.memory_cgroup_oom` not to match, but it matched signal `daytwo.kernel.oom_kill` with title \"OOM kill in /probe1 on node-1\""
    );
    assert!(
        f[4].contains("`node.other_typo`") && f[4].contains("no loaded rule has that id"),
        "{}",
        f[4]
    );
}

#[test]
fn a_rule_listening_for_other_events_says_so() {
    let text = "\
rule_files: [node.yaml]
tests:
  - name: t
    signals:
      - {name: other.event, entity: {kind: host, name: h}}
    expect:
      - rule: node.memory_cgroup_oom
";
    let tf = parse_test_file("t.yaml", text).unwrap();
    let o = &run_tests(&tf, &RuleSet::builtin())[0];
    assert_eq!(
        o.failures,
        [
            "t.yaml:7:9: expected rule `node.memory_cgroup_oom` to match, but it did not: it listens for [daytwo.kernel.oom_kill] and the test's signals are [other.event]; matched: []"
        ]
    );
}

#[test]
fn condition_errors_are_reported() {
    let text = "\
rule_files: [node.yaml]
tests:
  - name: t
    signals:
      - {name: daytwo.kernel.oom_kill, entity: {kind: host, name: h}}
    expect:
      - rule: node.memory_cgroup_oom
";
    let tf = parse_test_file("t.yaml", text).unwrap();
    let o = &run_tests(&tf, &RuleSet::builtin())[0];
    assert!(
        o.failures[0]
            .contains("but it did not: its condition failed: No such key: daytwo.oom.constraint"),
        "{:?}",
        o.failures
    );
}
