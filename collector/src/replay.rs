//! Replay: recorded OTLP/JSON telemetry through the live path, offline.
//!
//! Entry points: [`read_file`] (one file → its export requests, in file order, with line
//! numbers) and [`replay`] (files → incidents). The file format is the OpenTelemetry
//! Collector's file exporter's: one `ExportMetricsServiceRequest`, `ExportLogsServiceRequest` or
//! `ExportTraceServiceRequest` per line in the protobuf JSON mapping, plain or gzip (detected
//! from the content, not the name). Blank lines are skipped.
//!
//! [`replay`] merges all files into one event-time stream (each line is placed at the earliest
//! time of the records in it; ties keep file and line order), then runs exactly what the
//! collector runs for each export: [`Detect`] on metrics and traces, log records with an event
//! name decoded as signals, and every signal through [`Pipeline::ingest`] (rules, correlation,
//! the generic ranker). The store is a fresh temporary database that is deleted afterwards;
//! nothing is notified.
//!
//! A line that is not valid JSON or not an export request stops the replay with
//! [`ReplayError::LineInvalid`], naming the file and line: a recording that cannot be read as a
//! whole is not silently scored on the part that could. Log records that are events but not
//! valid signals are skipped and counted, as the live collector rejects them one by one.

use crate::detect::Detect;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::store::{ListFilter, Store, StoreError};
use daytwo_model::{Incident, Signal};
use daytwo_rules::RuleSet;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};

/// One export request read from a file.
#[derive(Debug, Clone, PartialEq)]
pub enum Export {
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
    Traces(ExportTraceServiceRequest),
}

/// One line of a file: where it came from, its event time and the request.
#[derive(Debug, Clone)]
pub struct Line {
    pub file: usize,
    /// 1-based.
    pub line: usize,
    /// The earliest record time in the request (nanoseconds since the epoch); `i64::MAX` when
    /// it holds no timed record.
    pub time: i64,
    pub export: Export,
}

/// Replay failed; the message names the file (and line) and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot open {}: {source}", path.display())]
    OpenFailed {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {} at line {line}: {source} (is the gzip stream truncated?)", path.display())]
    ReadFailed {
        path: PathBuf,
        line: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {problem}", path.display())]
    LineInvalid {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("cannot create a temporary store: {0}")]
    TempDirFailed(#[source] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// What a replay runs with.
#[derive(Clone)]
pub struct ReplayOptions {
    pub rules: Arc<RuleSet>,
    /// The correlation window (the collector's `--correlation-window-secs`).
    pub correlation_window: Duration,
    /// The symptom quorum (the collector's `--incident-quorum`).
    pub quorum: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            rules: Arc::new(RuleSet::builtin()),
            correlation_window: Duration::from_secs(300),
            quorum: crate::correlate::DEFAULT_QUORUM,
        }
    }
}

/// What a replay read and found.
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Every incident, open and resolved, newest first.
    pub incidents: Vec<Incident>,
    pub lines: usize,
    pub metric_points: usize,
    pub spans: usize,
    pub log_records: usize,
    /// Signals handed to the pipeline (decoded from logs and detected).
    pub signals: usize,
    /// Log records that named an event but were not valid signals.
    pub rejected_records: usize,
}

/// Reads one OTLP/JSON lines file (plain or gzip).
pub fn read_file(path: &Path, file: usize) -> Result<Vec<Line>, ReplayError> {
    let open = || {
        std::fs::File::open(path).map_err(|source| ReplayError::OpenFailed {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut magic = [0u8; 2];
    let n = open()?
        .read(&mut magic)
        .map_err(|source| ReplayError::ReadFailed {
            path: path.to_path_buf(),
            line: 0,
            source,
        })?;
    let raw = open()?;
    let reader: Box<dyn Read> = if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(raw))
    } else {
        Box::new(raw)
    };
    read_lines(BufReader::with_capacity(1 << 20, reader), path, file)
}

/// Reads OTLP/JSON lines from any reader; `path` is only for messages.
pub fn read_lines(
    mut reader: impl BufRead,
    path: &Path,
    file: usize,
) -> Result<Vec<Line>, ReplayError> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut no = 0;
    loop {
        buf.clear();
        no += 1;
        let n = reader
            .read_line(&mut buf)
            .map_err(|source| ReplayError::ReadFailed {
                path: path.to_path_buf(),
                line: no,
                source,
            })?;
        if n == 0 {
            break;
        }
        let text = buf.trim();
        if text.is_empty() {
            continue;
        }
        let export = parse_line(text).map_err(|problem| ReplayError::LineInvalid {
            path: path.to_path_buf(),
            line: no,
            problem,
        })?;
        out.push(Line {
            file,
            line: no,
            time: earliest(&export),
            export,
        });
    }
    Ok(out)
}

/// One line → one export request, or what is wrong with it.
pub fn parse_line(text: &str) -> Result<Export, String> {
    let kind = first_key(text).ok_or_else(|| {
        "not a JSON object with a resourceMetrics, resourceLogs or resourceSpans field".to_string()
    })?;
    let err =
        |what: &str, e: serde_json::Error| format!("invalid {what} (column {}): {e}", e.column());
    Ok(match kind {
        "resourceMetrics" => Export::Metrics(
            serde_json::from_str(text).map_err(|e| err("ExportMetricsServiceRequest", e))?,
        ),
        "resourceLogs" => Export::Logs(
            serde_json::from_str(text).map_err(|e| err("ExportLogsServiceRequest", e))?,
        ),
        "resourceSpans" => Export::Traces(
            serde_json::from_str(text).map_err(|e| err("ExportTraceServiceRequest", e))?,
        ),
        other => {
            return Err(format!(
                "unknown export type {other:?}: expected resourceMetrics, resourceLogs or resourceSpans"
            ));
        }
    })
}

/// The first key of a JSON object (the file exporter writes the payload's one field first).
fn first_key(text: &str) -> Option<&str> {
    let rest = text.strip_prefix('{')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(&rest[..end])
}

/// The earliest record time of a request, for merging files into one stream.
fn earliest(e: &Export) -> i64 {
    let min = match e {
        Export::Metrics(r) => r
            .resource_metrics
            .iter()
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .flat_map(|m| -> Vec<u64> {
                match &m.data {
                    Some(Data::Gauge(g)) => {
                        g.data_points.iter().map(|p| p.time_unix_nano).collect()
                    }
                    Some(Data::Sum(s)) => s.data_points.iter().map(|p| p.time_unix_nano).collect(),
                    Some(Data::Histogram(h)) => {
                        h.data_points.iter().map(|p| p.time_unix_nano).collect()
                    }
                    Some(Data::ExponentialHistogram(h)) => {
                        h.data_points.iter().map(|p| p.time_unix_nano).collect()
                    }
                    Some(Data::Summary(s)) => {
                        s.data_points.iter().map(|p| p.time_unix_nano).collect()
                    }
                    None => Vec::new(),
                }
            })
            .filter(|t| *t > 0)
            .min(),
        Export::Logs(r) => r
            .resource_logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| &sl.log_records)
            .map(|l| {
                if l.time_unix_nano > 0 {
                    l.time_unix_nano
                } else {
                    l.observed_time_unix_nano
                }
            })
            .filter(|t| *t > 0)
            .min(),
        Export::Traces(r) => r
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| s.start_time_unix_nano)
            .filter(|t| *t > 0)
            .min(),
    };
    min.map(|t| t.min(i64::MAX as u64) as i64)
        .unwrap_or(i64::MAX)
}

/// Reads every file, merges them into one event-time stream and runs it through detection,
/// rules and correlation. Returns every incident found.
pub fn replay(files: &[PathBuf], opts: &ReplayOptions) -> Result<ReplayReport, ReplayError> {
    let mut lines = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let read = read_file(f, i)?;
        debug!(file = %f.display(), lines = read.len(), "Read a recording.");
        lines.extend(read);
    }
    // Stable: equal times keep file order, then line order.
    lines.sort_by_key(|l| (l.time, l.file, l.line));
    run(lines, opts)
}

/// Runs already-read lines, in the order given, through a fresh pipeline.
pub fn run(lines: Vec<Line>, opts: &ReplayOptions) -> Result<ReplayReport, ReplayError> {
    let dir = tempfile::Builder::new()
        .prefix("daytwo-replay-")
        .tempdir()
        .map_err(ReplayError::TempDirFailed)?;
    let store = Store::open(dir.path())?;
    let registry = prometheus::Registry::new();
    let metrics = Metrics::new(&registry)?;
    let mut pipeline = Pipeline::new(
        store.clone(),
        opts.rules.clone(),
        opts.correlation_window,
        opts.quorum,
        crate::notify::Handle::disabled(),
        metrics,
    )?;
    let mut detect = Detect::default();
    let mut report = ReplayReport {
        lines: lines.len(),
        ..Default::default()
    };
    let mut batch: Vec<Signal> = Vec::new();
    for line in lines {
        match &line.export {
            Export::Metrics(req) => {
                report.metric_points += crate::ingest::count_points(req) as usize;
                batch.extend(detect.metrics(req));
            }
            Export::Traces(req) => {
                report.spans += req
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .map(|s| s.spans.len())
                    .sum::<usize>();
                batch.extend(detect.traces(req));
            }
            Export::Logs(req) => {
                let (decoded, plain) = daytwo_model::otlp::signals_from_request(req);
                report.log_records += plain + decoded.len();
                for d in decoded {
                    match d {
                        Ok(s) => batch.push(s),
                        Err(e) => {
                            report.rejected_records += 1;
                            if report.rejected_records == 1 {
                                warn!(line = line.line, error = %e, "Skipped a log record that is not a valid signal (only the first is logged).");
                            }
                        }
                    }
                }
            }
        }
        for (call, t) in detect.take_calls() {
            pipeline.add_call(&call.caller, &call.callee, t);
        }
        if !batch.is_empty() {
            for s in &batch {
                debug!(signal = %s.name, entity = %s.entity.name, time = %s.time, message = %s.message, "Signal.");
            }
            report.signals += batch.len();
            pipeline.ingest(std::mem::take(&mut batch))?;
        }
    }
    let rest = detect.flush();
    for (call, t) in detect.take_calls() {
        pipeline.add_call(&call.caller, &call.callee, t);
    }
    if !rest.is_empty() {
        for s in &rest {
            debug!(signal = %s.name, entity = %s.entity.name, time = %s.time, message = %s.message, "Signal.");
        }
        report.signals += rest.len();
        pipeline.ingest(rest)?;
    }
    let mut cursor = None;
    loop {
        let (page, next) = store.list_incidents(&ListFilter {
            limit: 1000,
            cursor,
            ..Default::default()
        })?;
        report.incidents.extend(page);
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    drop(pipeline);
    drop(store);
    let _ = dir.close();
    Ok(report)
}

#[cfg(test)]
mod tests;
