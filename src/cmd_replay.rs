//! `daytwo replay`: recorded OTLP/JSON telemetry through detection, correlation and rules,
//! offline. Prints `{"incidents":[…]}` (or a table) on stdout and nothing else; logs go to
//! stderr. See docs/replay.md.

use crate::cli::{ReplayArgs, ReplayFormat};
use crate::config;
use anyhow::{Context, Result};
use daytwo_collector::replay::{ReplayOptions, replay};
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use tracing::info;

pub fn run(args: ReplayArgs) -> Result<ExitCode> {
    let rules = config::load_rules(&args.rules)?;
    let opts = ReplayOptions {
        rules: Arc::new(rules),
        ..ReplayOptions::default()
    };
    let started = Instant::now();
    let report = replay(&args.files, &opts).context("replay failed")?;
    info!(
        files = args.files.len(),
        lines = report.lines,
        metric_points = report.metric_points,
        spans = report.spans,
        log_records = report.log_records,
        signals = report.signals,
        rejected_records = report.rejected_records,
        incidents = report.incidents.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "Replay finished."
    );
    let mut out = std::io::stdout().lock();
    match args.format {
        ReplayFormat::Json => {
            serde_json::to_writer(
                &mut out,
                &serde_json::json!({ "incidents": report.incidents }),
            )
            .context("writing the incidents")?;
            writeln!(out)?;
        }
        ReplayFormat::Table => {
            if report.incidents.is_empty() {
                writeln!(out, "no incidents")?;
            }
            for inc in &report.incidents {
                writeln!(
                    out,
                    "{}  {}  {:<8}  {:<8}  {}",
                    inc.id, inc.opened_at, inc.status, inc.severity, inc.title
                )?;
                for h in &inc.root_causes {
                    writeln!(
                        out,
                        "    {:.2}  {} {}  [{}]  {}",
                        h.score, h.entity.kind, h.entity.name, h.rule, h.explanation
                    )?;
                }
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
