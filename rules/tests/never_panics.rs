//! Loading arbitrary text never panics: it compiles or returns located errors.

use daytwo_rules::{RuleSet, SourceFile, parse_test_file};
use proptest::prelude::*;

/// YAML-ish fragments, so the generator reaches past the first syntax error often.
fn yamlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("rules:\n".to_string()),
        Just("  - id: a.b\n".to_string()),
        Just("    description: d\n".to_string()),
        Just("    severity: critical\n".to_string()),
        Just("    title: \"{{ name }}\"\n".to_string()),
        Just("    match:\n      event: e\n".to_string()),
        Just("      condition: ".to_string()),
        Just(
            "    root_cause:\n      score: 0.5\n      explanation: x\n      remediation: y\n"
                .to_string()
        ),
        Just("{{".to_string()),
        Just("}}".to_string()),
        Just("|".to_string()),
        Just("'".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("<<: ".to_string()),
        "[ -~]{0,12}",
        "\\PC{0,6}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn compile_never_panics_on_arbitrary_text(text in "\\PC*") {
        if let Err(es) = RuleSet::compile(&[SourceFile { path: "f.yaml", text: &text }]) {
            prop_assert!(!es.is_empty());
            for e in es {
                prop_assert!(e.to_string().starts_with("f.yaml:"));
            }
        }
    }

    #[test]
    fn compile_never_panics_on_yamlish_text(text in yamlish()) {
        if let Err(es) = RuleSet::compile(&[SourceFile { path: "f.yaml", text: &text }]) {
            for e in es {
                prop_assert!(e.to_string().starts_with("f.yaml:"));
            }
        }
    }

    #[test]
    fn conditions_and_templates_never_panic(expr in "[ -~]{0,40}") {
        let text = format!(
            "rules:\n  - id: a\n    description: d\n    severity: info\n    title: {t:?}\n    match:\n      event: e\n      condition: {c:?}\n    root_cause:\n      score: 1\n      explanation: x\n      remediation: y\n",
            t = format!("{{{{ {expr} }}}}"),
            c = expr,
        );
        let _ = RuleSet::compile(&[SourceFile { path: "f.yaml", text: &text }]);
    }

    #[test]
    fn test_files_never_panic(text in yamlish()) {
        let _ = parse_test_file("t.yaml", &text);
    }
}

fn condition(expr: &str) -> Result<RuleSet, Vec<daytwo_rules::RuleParseFailed>> {
    let text = format!(
        "rules:\n  - id: a\n    description: d\n    severity: info\n    title: t\n    match:\n      event: e\n      condition: '{expr}'\n    root_cause:\n      score: 1\n      explanation: x\n      remediation: y\n"
    );
    RuleSet::compile(&[SourceFile {
        path: "f.yaml",
        text: &text,
    }])
}

/// Deeply nested input is rejected with a located error instead of overflowing a stack
/// (this test runs on a 2 MiB test thread, like a tokio worker).
#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let sum = |n: usize| vec!["1"; n].join(" + ") + " > 0";
    for expr in [
        "(".repeat(5000),
        "[".repeat(40),
        "size(".repeat(40) + "name" + &")".repeat(40),
        sum(100),
        sum(3000),
        "true && ".repeat(2000) + "true",
    ] {
        let es = condition(&expr).unwrap_err();
        let e = es[0].to_string();
        assert!(e.starts_with("f.yaml:8:"), "{e}");
        assert!(
            e.contains("match.condition: CEL expression too complex: "),
            "{e}"
        );
    }
    // Within the limits: compiles, and evaluates on this thread.
    let signal = daytwo_model::Signal {
        id: "1".into(),
        name: "e".into(),
        time: daytwo_model::Timestamp(0),
        severity: daytwo_model::Severity::Info,
        entity: daytwo_model::Entity::new(daytwo_model::EntityKind::Host, "h"),
        resource: Default::default(),
        attributes: Default::default(),
        message: String::new(),
        evidence: vec![],
    };
    for expr in [
        sum(30),
        "true && ".repeat(500) + "true",
        "-".repeat(500) + "1 < 5",
        "(".repeat(30) + "true" + &")".repeat(30),
    ] {
        let set = condition(&expr).unwrap_or_else(|es| panic!("{}", es[0]));
        assert_eq!(set.evaluate(&signal).len(), 1, "{expr}");
    }
    let deep_yaml = "[".repeat(100_000);
    assert!(
        RuleSet::compile(&[SourceFile {
            path: "f.yaml",
            text: &deep_yaml
        }])
        .is_err()
    );
}
