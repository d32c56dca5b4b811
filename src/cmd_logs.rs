//! `daytwo logs templates [FILE] [--state DIR]`: runs the agent's own online template miner
//! (`daytwo_detect::miner`) over a file or standard input and prints, for every input line,
//! `TEMPLATE_ID<TAB>TEMPLATE` — the final template of the line's cluster once all input is read.
//!
//! Lines are split on `\n` only (no multi-line joining), may be of any length, and invalid UTF-8
//! is replaced lossily. Without `--state` the miner starts empty; with it, the state is loaded
//! from `DIR/miner.json` when present and saved there atomically (temporary file + rename) at the
//! end, so template ids stay stable across runs.

use crate::cli::{LogsArgs, LogsCommand};
use anyhow::{Context, Result};
use daytwo_detect::miner::{Miner, TemplateId};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const STATE_FILE: &str = "miner.json";

pub fn run(args: LogsArgs) -> Result<ExitCode> {
    match args.command {
        LogsCommand::Templates { file, state } => templates_cmd(file, state),
    }
}

fn templates_cmd(file: Option<PathBuf>, state: Option<PathBuf>) -> Result<ExitCode> {
    let input: Box<dyn BufRead> = match &file {
        Some(path) => {
            let f = File::open(path).map_err(|e| {
                crate::config::usage(format!(
                    "cannot read {}: {e}; give a readable file or pipe lines on standard input",
                    path.display()
                ))
            })?;
            Box::new(BufReader::with_capacity(1 << 16, f))
        }
        None => Box::new(BufReader::with_capacity(1 << 16, io::stdin().lock())),
    };
    let mut miner = match &state {
        Some(dir) => load_state(dir)?,
        None => Miner::default(),
    };
    let stdout = io::stdout().lock();
    let mut out = BufWriter::with_capacity(1 << 16, stdout);
    let source = file
        .as_ref()
        .map_or_else(|| "standard input".to_string(), |p| p.display().to_string());
    templates(&mut miner, input, &mut out).with_context(|| format!("mining {source}"))?;
    match out.flush() {
        // A closed pipe (`| head`) is not an error worth reporting.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        r => r.context("writing to standard output")?,
    }
    if let Some(dir) = &state {
        save_state(dir, &miner)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Feeds every line of `input` to `miner` in order, then writes one `ID<TAB>TEMPLATE` line per
/// input line with the final template of its cluster.
pub fn templates(miner: &mut Miner, mut input: impl BufRead, mut out: impl Write) -> Result<()> {
    let mut ids: Vec<TemplateId> = Vec::new();
    // First templates of clusters created in this run, for lines whose cluster was evicted
    // before the end (only when the run creates more clusters than the miner keeps).
    let mut first: HashMap<TemplateId, String> = HashMap::new();
    let mut raw = Vec::new();
    loop {
        raw.clear();
        let n = input.read_until(b'\n', &mut raw).context("reading input")?;
        if n == 0 {
            break;
        }
        if raw.last() == Some(&b'\n') {
            raw.pop();
        }
        let line = String::from_utf8_lossy(&raw);
        let a = miner.add(&line);
        if a.is_new {
            first.insert(a.id, miner.template(a.id).unwrap_or_default());
        }
        ids.push(a.id);
    }
    let mut cache: HashMap<TemplateId, (TemplateId, String)> = HashMap::new();
    for id in ids {
        let (final_id, tpl) = cache.entry(id).or_insert_with(|| match miner.resolve(id) {
            Some(r) => (r, miner.template(r).unwrap_or_default()),
            None => (id, first.get(&id).cloned().unwrap_or_default()),
        });
        match writeln!(out, "{final_id}\t{tpl}") {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            r => r.context("writing to standard output")?,
        }
    }
    Ok(())
}

fn load_state(dir: &Path) -> Result<Miner> {
    let path = dir.join(STATE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => Miner::from_json(&s).with_context(|| {
            format!(
                "loading {}; remove it to start a fresh miner (template ids will change)",
                path.display()
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Miner::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn save_state(dir: &Path, miner: &Miner) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let mut f = File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(miner.to_json().as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_lines(miner: &mut Miner, input: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        templates(miner, input, &mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| {
                let (a, b) = l.split_once('\t').unwrap();
                (a.to_string(), b.to_string())
            })
            .collect()
    }

    #[test]
    fn one_output_line_per_input_line_with_final_templates() {
        // Three users make the position a variable: the first two lines, printed after all
        // input is read, show the final template and the surviving id.
        let input = b"session opened for user alice\nsession opened for user bob\n\n\
                      bad \xff byte\nsession opened for user carol\n";
        let rows = run_lines(&mut Miner::default(), input);
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[0], rows[1]);
        assert_eq!(rows[0], rows[4]);
        assert_eq!(rows[0].1, "session opened for user <*>");
        assert_eq!(rows[2].1, "");
        assert_eq!(rows[3].1, "bad \u{fffd} byte");
        assert_eq!(rows[0].0.len(), 16);
    }

    #[test]
    fn state_keeps_ids_across_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = load_state(dir.path()).unwrap();
        let first = run_lines(&mut m, b"disk 1 is 90% full\n");
        save_state(dir.path(), &m).unwrap();
        let mut m = load_state(dir.path()).unwrap();
        let again = run_lines(&mut m, b"disk 2 is 95% full\n");
        assert_eq!(first[0].0, again[0].0);
    }
}
