//! The shipped packs compile and pass their own unit tests.

use daytwo_rules::{BUILTIN_PACKS, BUILTIN_TESTS, RuleSet, SourceFile, parse_test_file, run_tests};

#[test]
fn builtin_packs_compile() {
    let set = RuleSet::builtin();
    let ids: Vec<&str> = set.rule_ids().collect();
    // The OOM rules come first; later rules are appended to the pack.
    assert_eq!(
        ids[..2],
        ["node.memory_cgroup_oom", "node.memory_global_oom"]
    );
    assert_eq!(set.len(), ids.len());
    let unique: std::collections::BTreeSet<&&str> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "rule ids are unique");
    assert!(!set.is_empty());
}

#[test]
fn builtin_tests_pass() {
    for test in BUILTIN_TESTS {
        let tf = parse_test_file(test.path, test.text).unwrap_or_else(|e| panic!("{e}"));
        // Resolve rule_files the way `daytwo rules test` does, against the shipped packs.
        let files: Vec<SourceFile> = tf
            .rule_file_paths()
            .iter()
            .map(|p| {
                let p = p.to_str().unwrap();
                *BUILTIN_PACKS
                    .iter()
                    .find(|f| f.path == p)
                    .unwrap_or_else(|| panic!("{}: rule file {p} is not a shipped pack", test.path))
            })
            .collect();
        let rules = RuleSet::compile(&files).unwrap_or_else(|es| {
            panic!(
                "{}",
                es.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        let outcomes = run_tests(&tf, &rules);
        assert!(outcomes.len() >= 4);
        let failed: Vec<String> = outcomes
            .iter()
            .filter(|o| !o.passed)
            .map(|o| {
                format!(
                    "{} ({}):\n  {}",
                    o.name,
                    o.location,
                    o.failures.join("\n  ")
                )
            })
            .collect();
        assert!(failed.is_empty(), "failed tests:\n{}", failed.join("\n"));
    }
}

#[test]
fn every_shipped_rule_has_a_positive_and_a_negative_test() {
    for id in RuleSet::builtin().rule_ids() {
        let positive = BUILTIN_TESTS.iter().any(|t| {
            t.text
                .lines()
                .any(|l| l.trim_start().trim_start_matches("- ") == format!("rule: {id}"))
        });
        assert!(positive, "{id} has no positive test");
        let negative = BUILTIN_TESTS.iter().any(|t| {
            t.text.lines().any(|l| {
                l.trim_start().starts_with("expect_not:")
                    && l.split(|c: char| !(c.is_ascii_alphanumeric() || "._-".contains(c)))
                        .any(|w| w == id)
            })
        });
        assert!(negative, "{id} has no negative (expect_not) test");
    }
}
