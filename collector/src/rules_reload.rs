//! Rule reload without a restart: polls the rule files and directories for changes and swaps
//! the pipeline's rules.
//!
//! Entry points: [`RulesWatch::new`] (the paths, read once to know the files in force) and
//! [`run`] (the task: every interval, compare each file's modification time and size, and the
//! set of files; on a change, read and compile). A poll of metadata rather than inotify
//! (`notify`): it survives editors that replace files by rename, ConfigMap volume symlink
//! swaps and network filesystems, and costs a few `stat` calls per interval.
//!
//! Invariants: a file with an error never replaces its previous version in force (a new file
//! with an error is left out), the other files' changes apply; each error is logged once (not
//! again until its file changes); `daytwo_rules_reloads_total` moves on every reload that
//! applied cleanly, `daytwo_rules_reload_errors_total` once per reload that found errors.

use crate::pipeline::Pipeline;
use daytwo_rules::{RuleSet, SourceFile};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The reload counters.
#[derive(Clone)]
pub struct ReloadMetrics {
    pub reloads: prometheus::IntCounter,
    pub errors: prometheus::IntCounter,
}

impl ReloadMetrics {
    pub fn register(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let m = ReloadMetrics {
            reloads: prometheus::IntCounter::new(
                "daytwo_rules_reloads_total",
                "Rule reloads that applied without errors.",
            )?,
            errors: prometheus::IntCounter::new(
                "daytwo_rules_reload_errors_total",
                "Rule reloads that found errors (the broken files kept their previous version).",
            )?,
        };
        registry.register(Box::new(m.reloads.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        Ok(m)
    }
}

/// A file's identity for change detection: path, modification time, size.
type Stamp = BTreeMap<PathBuf, (Option<SystemTime>, u64)>;

/// What the watcher knows: the paths to watch, the last stamp, and the last good text of
/// every file.
pub struct RulesWatch {
    paths: Vec<PathBuf>,
    stamp: Stamp,
    good: BTreeMap<PathBuf, String>,
    reported: HashSet<String>,
}

/// The rule files under `paths`: files as given, and every `*.yaml`/`*.yml` (but not
/// `*.test.yaml`) of a directory, sorted. Paths that cannot be read are skipped (a file
/// being replaced may be missing for a moment).
pub fn rule_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => {
                let Ok(entries) = std::fs::read_dir(p) else {
                    continue;
                };
                let mut files: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|path| {
                        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                        (name.ends_with(".yaml") || name.ends_with(".yml"))
                            && !(name.ends_with(".test.yaml") || name.ends_with(".test.yml"))
                            && !name.starts_with('.')
                    })
                    .collect();
                files.sort();
                out.extend(files);
            }
            Ok(_) => out.push(p.clone()),
            Err(_) => {}
        }
    }
    out
}

fn stamp(files: &[PathBuf]) -> Stamp {
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok();
            (
                f.clone(),
                (
                    m.as_ref().and_then(|m| m.modified().ok()),
                    m.map_or(0, |m| m.len()),
                ),
            )
        })
        .collect()
}

/// What one reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// Nothing changed on disk.
    Unchanged,
    /// The new rules are in force; no errors.
    Applied { rules: usize },
    /// Errors were found; what could be applied was (broken files kept their previous
    /// version). The errors as `path:line:col: …` lines.
    Errors { rules: usize, errors: Vec<String> },
}

impl RulesWatch {
    /// Starts watching `paths`; the files as they are now are taken as the rules in force.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        let files = rule_files(&paths);
        let good = files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok().map(|t| (f.clone(), t)))
            .collect();
        RulesWatch {
            stamp: stamp(&files),
            paths,
            good,
            reported: HashSet::new(),
        }
    }

    /// Checks for changes; on one, compiles and returns the rules to put in force.
    pub fn poll(&mut self) -> (Reloaded, Option<RuleSet>) {
        let files = rule_files(&self.paths);
        let now = stamp(&files);
        if now == self.stamp {
            return (Reloaded::Unchanged, None);
        }
        self.stamp = now;
        let texts: Vec<(PathBuf, String)> = files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok().map(|t| (f.clone(), t)))
            .collect();
        let shown: Vec<String> = texts.iter().map(|(p, _)| p.display().to_string()).collect();
        let sources: Vec<SourceFile> = texts
            .iter()
            .zip(&shown)
            .map(|((_, t), p)| SourceFile { path: p, text: t })
            .collect();
        let (set, errors) = RuleSet::compile_partial(&sources);
        if errors.is_empty() {
            self.good = texts.into_iter().collect();
            self.reported.clear();
            let n = set.len();
            return (Reloaded::Applied { rules: n }, Some(set));
        }
        // Broken files keep their previous text; compile again with those.
        let broken: HashSet<&str> = errors.iter().map(|e| e.location().path.as_str()).collect();
        let mut merged: Vec<(PathBuf, String)> = Vec::new();
        for (path, text) in &texts {
            if broken.contains(path.display().to_string().as_str()) {
                if let Some(old) = self.good.get(path) {
                    merged.push((path.clone(), old.clone()));
                }
            } else {
                merged.push((path.clone(), text.clone()));
            }
        }
        let merged_shown: Vec<String> = merged
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        let merged_sources: Vec<SourceFile> = merged
            .iter()
            .zip(&merged_shown)
            .map(|((_, t), p)| SourceFile { path: p, text: t })
            .collect();
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let (set, again) = RuleSet::compile_partial(&merged_sources);
        if !again.is_empty() {
            // The old versions do not fit with the new files (a duplicate id moved between
            // files): keep everything as it was.
            let mut lines = lines;
            lines.extend(again.iter().map(|e| e.to_string()));
            return (
                Reloaded::Errors {
                    rules: 0,
                    errors: lines,
                },
                None,
            );
        }
        for (path, text) in merged {
            self.good.insert(path, text);
        }
        let n = set.len();
        (
            Reloaded::Errors {
                rules: n,
                errors: lines,
            },
            Some(set),
        )
    }

    /// Errors not logged yet (each once, until its file changes and breaks again).
    fn fresh(&mut self, errors: &[String]) -> Vec<String> {
        errors
            .iter()
            .filter(|e| self.reported.insert((*e).clone()))
            .cloned()
            .collect()
    }
}

/// Polls every `interval` until `shutdown`; swaps the pipeline's rules on a change.
pub async fn run(
    pipeline: Arc<Mutex<Pipeline>>,
    mut watch: RulesWatch,
    interval: Duration,
    metrics: ReloadMetrics,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Reading and compiling block (files, a parser thread): off the async threads.
        let polled = tokio::task::spawn_blocking(move || {
            let r = watch.poll();
            (watch, r)
        })
        .await;
        let (w, (outcome, set)) = match polled {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "Rule reload task failed; rules unchanged, reloading stops.");
                return;
            }
        };
        watch = w;
        if let Some(set) = set {
            pipeline
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .set_rules(Arc::new(set));
        }
        match outcome {
            Reloaded::Unchanged => {}
            Reloaded::Applied { rules } => {
                metrics.reloads.inc();
                info!(rules, "Rules reloaded.");
            }
            Reloaded::Errors { rules, errors } => {
                metrics.errors.inc();
                for e in watch.fresh(&errors) {
                    warn!(error = %e, "Rule reload: this file keeps its previous version until fixed.");
                }
                info!(
                    rules,
                    "Rules reloaded with errors; the other files' changes apply."
                );
            }
        }
    }
}

/// Whether `path` looks like something [`rule_files`] would read (for messages).
pub fn is_rule_file(path: &Path) -> bool {
    rule_files(&[path.to_path_buf()]).len() == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "rules:\n  - id: t.a\n    description: d\n    severity: warning\n    title: t\n    match:\n      event: e.a\n    root_cause:\n      score: 0.5\n      explanation: e\n      remediation: r\n";

    fn bump(p: &Path, text: &str) {
        std::fs::write(p, text).unwrap();
        // Make sure the stamp changes even within the filesystem's time resolution.
        let f = std::fs::File::options().append(true).open(p).unwrap();
        let t = SystemTime::now() + Duration::from_secs(rand_secs());
        f.set_modified(t).unwrap();
    }

    fn rand_secs() -> u64 {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    #[test]
    fn good_bad_and_new_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        std::fs::write(&a, RULE).unwrap();
        std::fs::write(dir.path().join("a.test.yaml"), "not a rule").unwrap();
        let mut w = RulesWatch::new(vec![dir.path().to_path_buf()]);
        assert_eq!(w.poll().0, Reloaded::Unchanged);

        // A new good file is picked up.
        let b = dir.path().join("b.yaml");
        bump(&b, &RULE.replace("t.a", "t.b"));
        let (r, set) = w.poll();
        assert_eq!(r, Reloaded::Applied { rules: 2 });
        assert!(set.unwrap().get("t.b").is_some());

        // Breaking b keeps its previous version; a's change still applies.
        bump(
            &b,
            &RULE.replace("t.a", "t.b").replace("score: 0.5", "score: 7"),
        );
        bump(&a, &RULE.replace("t.a", "t.a2"));
        let (r, set) = w.poll();
        let set = set.unwrap();
        match r {
            Reloaded::Errors { rules, errors } => {
                assert_eq!(rules, 2);
                assert_eq!(errors.len(), 1);
                assert!(
                    errors[0].contains("b.yaml:9:14: rule t.b: root_cause.score"),
                    "{}",
                    errors[0]
                );
                assert_eq!(w.fresh(&errors).len(), 1);
                assert!(w.fresh(&errors).is_empty(), "logged once");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            set.get("t.b").is_some(),
            "the broken file's previous rule stays"
        );
        assert!(set.get("t.a2").is_some() && set.get("t.a").is_none());

        // A new broken file is left out entirely.
        let c = dir.path().join("c.yaml");
        bump(&c, "rules: [\n");
        let (r, set) = w.poll();
        assert!(matches!(r, Reloaded::Errors { rules: 2, .. }), "{r:?}");
        assert_eq!(set.unwrap().len(), 2);
        assert!(is_rule_file(&c));
    }
}
