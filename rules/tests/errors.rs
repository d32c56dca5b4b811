//! Every load error names `path:line:col` and says what to do.

use daytwo_rules::{RuleParseFailed, RuleSet, SourceFile, parse_test_file};

/// A valid rule file; tests break one line of it at a time. Line numbers matter.
const GOOD: &str = "\
rules:
  - id: node.x
    description: d
    severity: warning
    title: \"t {{ name }}\"
    match:
      event: daytwo.kernel.oom_kill
      condition: 'attributes[\"daytwo.oom.constraint\"] == \"memcg\"'
    root_cause:
      score: 0.5
      explanation: e
      remediation: r
";

fn errors(files: &[(&str, &str)]) -> Vec<String> {
    let files: Vec<SourceFile> = files
        .iter()
        .map(|(path, text)| SourceFile { path, text })
        .collect();
    match RuleSet::compile(&files) {
        Ok(set) => panic!("compiled {} rules, expected errors", set.len()),
        Err(es) => es.iter().map(|e| e.to_string()).collect(),
    }
}

fn one_error(text: &str) -> String {
    let es = errors(&[("my.yaml", text)]);
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
    assert_eq!(set.rule_ids().collect::<Vec<_>>(), ["node.x"]);
}

#[test]
fn unknown_field() {
    let text = GOOD.replace("      condition:", "      conditon:");
    assert_eq!(
        errors(&[("rules/packs/node.yaml", &text)]),
        [
            "rules/packs/node.yaml:8:7: unknown field `conditon`, expected one of `event`, `condition`"
        ]
    );
}

#[test]
fn missing_field() {
    let text = GOOD.replace("    description: d\n", "");
    assert_eq!(one_error(&text), "my.yaml:2:5: missing field `description`");
}

#[test]
fn bad_severity() {
    let text = GOOD.replace("severity: warning", "severity: loud");
    assert_eq!(
        one_error(&text),
        "my.yaml:4:15: unknown variant `loud`, expected one of `info`, `warning`, `critical`"
    );
}

#[test]
fn bad_entity_and_evidence_selectors() {
    let text = GOOD.replace("      score: 0.5", "      entity: owner\n      score: 0.5");
    let e = one_error(&text);
    assert!(
        e.starts_with("my.yaml:10:15: rule node.x: root_cause.entity: unknown selector `owner`"),
        "{e}"
    );
    let text = GOOD.replace(
        "      remediation: r",
        "      remediation: r\n      evidence: some",
    );
    let e = one_error(&text);
    assert!(
        e.starts_with("my.yaml:13:17: unknown variant `some`"),
        "{e}"
    );
}

#[test]
fn yaml_syntax_error() {
    let e = one_error("rules: [\n");
    assert!(e.starts_with("my.yaml:1:8: "), "{e}");
}

#[test]
fn empty_file() {
    assert_eq!(
        one_error("# nothing here\n"),
        "my.yaml:1:1: the file is empty: a rule file is a mapping with a `rules:` list (see docs/rules.md)"
    );
}

#[test]
fn event_of_the_wrong_type() {
    let text = GOOD.replace("event: daytwo.kernel.oom_kill", "event: {a: 1}");
    let e = one_error(&text);
    assert!(e.starts_with("my.yaml:7:14: "), "{e}");
    assert!(e.contains("an event name"), "{e}");
}

#[test]
fn invalid_id() {
    let text = GOOD.replace("id: node.x", "id: Node X");
    assert_eq!(
        one_error(&text),
        "my.yaml:2:9: invalid rule id `Node X`: use only lowercase letters, digits, `.`, `_` and `-` (e.g. `node.memory_cgroup_oom`)"
    );
}

#[test]
fn duplicate_id_across_files() {
    let es = errors(&[("other.yaml", GOOD), ("my.yaml", GOOD)]);
    assert_eq!(
        es,
        [
            "my.yaml:2:9: duplicate rule id `node.x` (first defined at other.yaml:2:9); rename one of them"
        ]
    );
}

#[test]
fn score_out_of_range() {
    for bad in ["1.5", "-0.1", ".nan"] {
        let text = GOOD.replace("score: 0.5", &format!("score: {bad}"));
        let e = one_error(&text);
        assert!(
            e.starts_with("my.yaml:10:14: rule node.x: root_cause.score: "),
            "{e}"
        );
        assert!(e.contains("is outside 0..=1"), "{e}");
    }
    // Integers are scores too.
    let text = GOOD.replace("score: 0.5", "score: 1");
    RuleSet::compile(&[SourceFile {
        path: "my.yaml",
        text: &text,
    }])
    .unwrap();
}

#[test]
fn invalid_event() {
    let text = GOOD.replace("event: daytwo.kernel.oom_kill", "event: []");
    assert_eq!(
        one_error(&text),
        "my.yaml:7:14: rule node.x: match.event: the list is empty: name at least one event, e.g. daytwo.kernel.oom_kill"
    );
    let text = GOOD.replace("event: daytwo.kernel.oom_kill", "event: [a, a]");
    assert_eq!(
        one_error(&text),
        "my.yaml:7:14: rule node.x: match.event: `a` is listed twice"
    );
    let text = GOOD.replace("event: daytwo.kernel.oom_kill", "event: ''");
    assert!(one_error(&text).contains("an event name is empty"));
}

#[test]
fn cel_syntax_error_points_into_the_expression() {
    // The expression ends after `== ` (column 58 of line 8) where an operand is missing.
    let text = GOOD.replace(
        "condition: 'attributes[\"daytwo.oom.constraint\"] == \"memcg\"'",
        "condition: 'attributes[\"daytwo.oom.constraint\"] == '",
    );
    let e = one_error(&text);
    assert!(
        e.starts_with("my.yaml:8:58: rule node.x: match.condition: CEL syntax error: "),
        "{e}"
    );
}

#[test]
fn cel_unknown_variable() {
    let text = GOOD.replace("condition: 'attributes[", "condition: 'atributes[");
    assert_eq!(
        one_error(&text),
        "my.yaml:8:19: rule node.x: match.condition: unknown variable `atributes`; the variables are name, severity, attributes, resource, entity, message and time (plus trigger in a join condition, join in the templates of a rule with joins)"
    );
}

#[test]
fn cel_error_in_a_block_scalar_points_at_the_scalar() {
    let text = GOOD.replace(
        "      condition: 'attributes[\"daytwo.oom.constraint\"] == \"memcg\"'",
        "      condition: >-\n        name == 'x' &&\n        nme == 'y'",
    );
    let e = one_error(&text);
    assert!(
        e.starts_with("my.yaml:9:9: rule node.x: match.condition: unknown variable `nme`"),
        "{e}"
    );
}

#[test]
fn template_errors() {
    let text = GOOD.replace("title: \"t {{ name }}\"", "title: \"t {{ name \"");
    assert_eq!(
        one_error(&text),
        "my.yaml:5:15: rule node.x: title: `{{` is never closed by `}}`"
    );
    let text = GOOD.replace("title: \"t {{ name }}\"", "title: \"t {{ name | byts }}\"");
    assert_eq!(
        one_error(&text),
        "my.yaml:5:25: rule node.x: title: unknown filter `byts`; the filters are `bytes`"
    );
    let text = GOOD.replace("explanation: e", "explanation: 'pid {{ attributes[ }}'");
    let e = one_error(&text);
    // The hole's expression ` attributes[ ` ends at column 40 without its index.
    assert!(
        e.starts_with("my.yaml:11:40: rule node.x: root_cause.explanation: CEL syntax error: "),
        "{e}"
    );
    let text = GOOD.replace("remediation: r", "remediation: '{{ }}'");
    let e = one_error(&text);
    assert!(
        e.starts_with("my.yaml:12:21: rule node.x: root_cause.remediation: empty `{{ }}`"),
        "{e}"
    );
}

#[test]
fn all_errors_are_reported_not_just_the_first() {
    let bad_rule = GOOD
        .replace("id: node.x", "id: node.y")
        .replace("score: 0.5", "score: 2")
        .replace("title: \"t {{ name }}\"", "title: \"{{ nam }}\"");
    let es = errors(&[
        ("a.yaml", "rules: [\n"),
        ("b.yaml", &bad_rule),
        ("c.yaml", GOOD),
        ("d.yaml", GOOD),
    ]);
    assert_eq!(es.len(), 4, "{es:#?}");
    assert!(es[0].starts_with("a.yaml:1:"));
    assert!(
        es[1].starts_with("b.yaml:10:14: rule node.y: root_cause.score"),
        "{}",
        es[1]
    );
    assert!(
        es[2].starts_with("b.yaml:5:16: rule node.y: title: unknown variable `nam`"),
        "{}",
        es[2]
    );
    assert!(
        es[3].starts_with("d.yaml:2:9: duplicate rule id `node.x` (first defined at c.yaml:2:9)")
    );
}

#[test]
fn errors_expose_their_location() {
    let text = GOOD.replace("id: node.x", "id: X");
    let files = [SourceFile {
        path: "my.yaml",
        text: &text,
    }];
    let es = RuleSet::compile(&files).unwrap_err();
    let at = es[0].location();
    assert_eq!((at.path.as_str(), at.line, at.column), ("my.yaml", 2, 9));
    assert!(matches!(es[0], RuleParseFailed::InvalidId { .. }));
}

#[test]
fn test_file_errors() {
    let err = |text: &str| parse_test_file("t.yaml", text).unwrap_err().to_string();
    assert_eq!(
        err("rule_files: [a.yaml]\ntests: []\n"),
        "t.yaml:2:8: tests is empty: add at least one test"
    );
    assert_eq!(
        err("rule_files: []\ntests: []\n"),
        "t.yaml:1:13: rule_files is empty: list the rule files these tests load, relative to this file"
    );
    let no_expect = "rule_files: [a.yaml]\ntests:\n  - name: x\n    signals:\n      - {name: e, entity: {kind: host, name: h}}\n";
    assert_eq!(
        err(no_expect),
        "t.yaml:3:5: test `x` checks nothing: add `expect:` or `expect_not:`"
    );
    let typo = "rule_files: [a.yaml]\ntests:\n  - name: x\n    signals:\n      - {name: e, entity: {kind: host, name: h}, atributes: {}}\n    expect_not: [a]\n";
    let e = err(typo);
    assert!(e.starts_with("t.yaml:5:"), "{e}");
    assert!(e.contains("unknown field `atributes`"), "{e}");
    let dup = "rule_files: [a.yaml]\ntests:\n  - name: x\n    signals: [{name: e, entity: {kind: host, name: h}}]\n    expect_not: [a]\n  - name: x\n    signals: [{name: e, entity: {kind: host, name: h}}]\n    expect_not: [a]\n";
    assert_eq!(
        err(dup),
        "t.yaml:6:11: duplicate test name `x`: give each test its own name"
    );
}
