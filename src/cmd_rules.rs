//! `daytwo rules check` and `daytwo rules test`, in the manner of `promtool check rules` and
//! `promtool test rules`: exit 0 when all is well, 1 when a rule is wrong or a test failed.

use crate::cli::{RulesArgs, RulesCommand};
use crate::config;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn run(args: RulesArgs) -> Result<ExitCode> {
    match args.command {
        RulesCommand::Check { paths } => check(&paths),
        RulesCommand::Test { paths } => test(&paths),
    }
}

fn check(paths: &[PathBuf]) -> Result<ExitCode> {
    let files = config::read_rule_files(paths, false)?;
    if files.is_empty() {
        return Err(config::usage(
            "no rule files found (expected *.yaml or *.yml)",
        ));
    }
    let sources: Vec<daytwo_rules::SourceFile> = files
        .iter()
        .map(|(p, t)| daytwo_rules::SourceFile { path: p, text: t })
        .collect();
    match daytwo_rules::RuleSet::compile(&sources) {
        Ok(set) => {
            for (p, _) in &files {
                println!("Checking {p}\n  SUCCESS");
            }
            println!("{} rules found", set.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("FAILED: {} error(s)", errors.len());
            Ok(ExitCode::from(1))
        }
    }
}

fn test(paths: &[PathBuf]) -> Result<ExitCode> {
    let files = config::read_rule_files(paths, true)?;
    if files.is_empty() {
        return Err(config::usage(
            "no rule test files found (expected *.test.yaml)",
        ));
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    for (path, text) in &files {
        println!("Unit testing {path}");
        let tf = match daytwo_rules::parse_test_file(path, text) {
            Ok(tf) => tf,
            Err(e) => {
                eprintln!("  {e}");
                failed += 1;
                continue;
            }
        };
        let dir = Path::new(path).parent().unwrap_or(Path::new("."));
        let rule_paths: Vec<PathBuf> = tf.rule_files().iter().map(|r| dir.join(r)).collect();
        let rule_files = config::read_rule_files(&rule_paths, false)?;
        let sources: Vec<daytwo_rules::SourceFile> = rule_files
            .iter()
            .map(|(p, t)| daytwo_rules::SourceFile { path: p, text: t })
            .collect();
        let rules = match daytwo_rules::RuleSet::compile(&sources) {
            Ok(r) => r,
            Err(errors) => {
                for e in &errors {
                    eprintln!("  {e}");
                }
                failed += 1;
                continue;
            }
        };
        for outcome in daytwo_rules::run_tests(&tf, &rules) {
            if outcome.passed {
                passed += 1;
                println!("  PASS  {}", outcome.name);
            } else {
                failed += 1;
                println!("  FAIL  {}", outcome.name);
                for f in &outcome.failures {
                    println!("        {f}");
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
