//! The `--config` YAML file and the merge of flags, env and file into the typed settings the
//! collector and agent take. Unknown keys are errors that name the file, line and column.

use crate::cli::{AgentFlags, CollectorFlags, CommonArgs, KubeFlags};
use anyhow::{Context, Result};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A usage or configuration problem: the binary exits 2, like clap's own usage errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// The configuration file (docs/configuration.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Directory for all state.
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub collector: CollectorFile,
    #[serde(default)]
    pub agent: AgentFile,
    /// Kubernetes watches (docs/configuration.md, "Kubernetes").
    #[serde(default)]
    pub kube: KubeFile,
}

/// `kube:` in the config file; flags `--kube`, `--kubeconfig`, … override each field.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeFile {
    /// `auto`, `on` or `off`.
    pub mode: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    pub node_name: Option<String>,
    pub cluster_name: Option<String>,
    pub max_age_secs: Option<u64>,
    pub retry_max_ms: Option<u64>,
    pub analyze_interval_ms: Option<u64>,
    pub replicas_grace_secs: Option<u64>,
}

/// The Kubernetes settings shared by agent and collector: (client, cluster, max age, backoff).
fn kube_common(
    flags: &KubeFlags,
    file: &FileConfig,
) -> Result<(
    daytwo_k8s::client::ClientOptions,
    Option<String>,
    Duration,
    daytwo_k8s::watch::Backoff,
)> {
    let k = &file.kube;
    let mode = flags.kube.clone().or_else(|| k.mode.clone());
    let mode = match mode.as_deref() {
        None => daytwo_k8s::client::KubeMode::Auto,
        Some(m) => m.parse().map_err(usage)?,
    };
    let client = daytwo_k8s::client::ClientOptions {
        mode,
        kubeconfig: flags.kubeconfig.clone().or_else(|| k.kubeconfig.clone()),
    };
    let cluster = flags
        .cluster_name
        .clone()
        .or_else(|| k.cluster_name.clone())
        .filter(|c| !c.is_empty());
    let max_age = Duration::from_secs(flags.kube_max_age_secs.or(k.max_age_secs).unwrap_or(900));
    let mut backoff = daytwo_k8s::watch::Backoff::default();
    if let Some(ms) = flags.kube_retry_max_ms.or(k.retry_max_ms) {
        backoff.max = Duration::from_millis(ms.max(1));
        backoff.initial = backoff.initial.min(backoff.max);
    }
    Ok((client, cluster, max_age, backoff))
}

/// The agent's Kubernetes settings.
pub fn agent_kube(flags: &KubeFlags, file: &FileConfig) -> Result<daytwo_agent::kube::KubeConfig> {
    let (client, cluster_name, max_age, backoff) = kube_common(flags, file)?;
    Ok(daytwo_agent::kube::KubeConfig {
        client,
        node_name: flags
            .node_name
            .clone()
            .or_else(|| file.kube.node_name.clone())
            .filter(|n| !n.is_empty()),
        cluster_name,
        max_age,
        backoff,
    })
}

/// On a Kubernetes node the machine is its node: without an explicit `--host-name`, the agent
/// reports `host.name` = `--node-name`, so its kernel, node and pod signals and the
/// collector's Node signals name one machine (a hostname that differs from the node name, as
/// on some clouds, would otherwise split them).
pub fn host_is_node(cfg: &mut daytwo_agent::AgentConfig, flags: &AgentFlags, file: &FileConfig) {
    if flags.host_name.is_some() || file.agent.host_name.is_some() {
        return;
    }
    if let Some(n) = &cfg.kube.node_name {
        cfg.host_name = n.clone();
    }
}

/// The collector's Kubernetes settings.
pub fn collector_kube(
    flags: &KubeFlags,
    file: &FileConfig,
) -> Result<daytwo_collector::kube::KubeConfig> {
    let (client, cluster_name, max_age, backoff) = kube_common(flags, file)?;
    let mut analyzer = daytwo_k8s::map::cluster::AnalyzerConfig::default();
    if let Some(secs) = flags
        .kube_replicas_grace_secs
        .or(file.kube.replicas_grace_secs)
    {
        analyzer.replicas_grace = Duration::from_secs(secs);
    }
    Ok(daytwo_collector::kube::KubeConfig {
        client,
        cluster_name,
        max_age,
        backoff,
        analyze_interval: Duration::from_millis(
            flags
                .kube_analyze_interval_ms
                .or(file.kube.analyze_interval_ms)
                .unwrap_or(30_000)
                .max(10),
        ),
        analyzer,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorFile {
    pub http_addr: Option<SocketAddr>,
    pub otlp_addr: Option<SocketAddr>,
    /// Rule files or directories.
    #[serde(default)]
    pub rules: Vec<PathBuf>,
    pub token: Option<String>,
    pub correlation_window_secs: Option<u64>,
    pub incident_quorum: Option<usize>,
    pub auto_resolve_after_secs: Option<u64>,
    /// How often rule files are checked for changes, in ms; 0 turns reloading off.
    pub rules_reload_interval_ms: Option<u64>,
    pub otlp_max_recv_bytes: Option<usize>,
    /// Where pages go (docs/notify.md).
    #[serde(default)]
    pub receivers: Vec<ReceiverFile>,
    /// Which incidents go to which receivers; none means all receivers.
    #[serde(default)]
    pub routes: Vec<daytwo_collector::notify::Route>,
    /// One-off silences (RFC 3339 start and end).
    #[serde(default)]
    pub silences: Vec<daytwo_collector::notify::Silence>,
    /// Recurring maintenance windows (UTC).
    #[serde(default)]
    pub maintenance_windows: Vec<daytwo_collector::notify::MaintenanceWindow>,
    pub notify_backoff_initial_ms: Option<u64>,
    pub notify_backoff_max_ms: Option<u64>,
    /// A notification still failing this long after it was queued is dead-lettered.
    pub notify_max_age_secs: Option<u64>,
    /// Consecutive failures that open a receiver's circuit breaker.
    pub notify_breaker_failures: Option<u32>,
    /// How long an open breaker holds notifications before a probe.
    pub notify_breaker_cooldown_ms: Option<u64>,
    /// How long a breaker must have been open before the fallback receiver gets copies.
    pub notify_fallback_after_ms: Option<u64>,
    /// The collector's URL as on-call engineers reach it; pages link to incidents under it.
    pub public_url: Option<String>,
}

/// `collector.receivers[]` in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverFile {
    /// Unique; a metric label, and the key queued notifications refer to.
    pub name: String,
    /// `webhook` (default), `pagerduty`, `opsgenie` or `slack`.
    #[serde(default)]
    pub kind: daytwo_collector::notify::ReceiverKind,
    /// Webhook or Slack incoming-webhook URL; PagerDuty events URL (default
    /// https://events.pagerduty.com/v2/enqueue); Opsgenie API base (default https://api.opsgenie.com).
    pub url: Option<String>,
    /// HMAC-SHA256 secret for X-Daytwo-Signature (webhook only).
    pub secret: Option<String>,
    /// PagerDuty Events API v2 integration key (pagerduty only).
    pub routing_key: Option<String>,
    /// Opsgenie API integration key (opsgenie only).
    pub api_key: Option<String>,
    /// A receiver that also gets this one's notifications while its circuit breaker is open.
    pub fallback: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    pub collector: Option<String>,
    /// The agent's own /metrics and /healthz (standalone `daytwo agent` only).
    pub http_addr: Option<SocketAddr>,
    pub host_name: Option<String>,
    pub kmsg_path: Option<PathBuf>,
    pub kmsg_enabled: Option<bool>,
    pub cgroup_root: Option<PathBuf>,
    pub metrics_interval_secs: Option<u64>,
    pub queue_max_bytes: Option<u64>,
    pub retry_initial_ms: Option<u64>,
    pub retry_max_ms: Option<u64>,
    /// Log files (docs/logs.md).
    #[serde(default)]
    pub logs: daytwo_agent::logs::LogsFile,
    /// Node and container health (docs/node.md).
    #[serde(default)]
    pub node: NodeFile,
    /// The systemd journal (docs/logs.md).
    #[serde(default)]
    pub journald: JournaldFile,
}

/// `agent.journald` in the config file (docs/logs.md, "systemd journal").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournaldFile {
    /// `auto` (default), `on` or `off`.
    pub mode: Option<daytwo_agent::journald::JournaldMode>,
    /// The journalctl binary (default: journalctl from PATH).
    pub journalctl: Option<PathBuf>,
    /// journalctl --directory (default: the system journal).
    pub directory: Option<PathBuf>,
    /// First wait before restarting journalctl (default 1000).
    pub restart_initial_ms: Option<u64>,
    /// Longest wait between restarts (default 60000).
    pub restart_max_ms: Option<u64>,
    /// How often entries are committed with their cursor (default 1000).
    pub commit_interval_ms: Option<u64>,
    /// Unit failure and restart-loop detection; unset fields keep their defaults.
    pub systemd: Option<daytwo_agent::journald::systemd::UnitDetectConfig>,
}

/// `agent.node` in the config file (docs/node.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// Sample node and container metrics and run the node detectors (default true).
    pub enabled: Option<bool>,
    /// Cgroups tracked per interval (default 2000).
    pub max_cgroups: Option<usize>,
    /// How long one statvfs may take, in ms, before the mount counts as unresponsive
    /// (default 5000).
    pub mount_timeout_ms: Option<u64>,
    /// The proc filesystem to read (default /proc).
    pub proc_root: Option<PathBuf>,
    /// Detector levels and durations; unset fields keep their defaults.
    pub detect: Option<daytwo_agent::node::detect::DetectConfig>,
}

pub fn load_file(path: Option<&Path>) -> Result<FileConfig> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read config file {}: {e}", path.display())))?;
    serde_saphyr::from_str(&text).map_err(|e| usage(format!("{}: {e}", path.display())))
}

pub fn data_dir(common: &CommonArgs, file: &FileConfig) -> PathBuf {
    common
        .data_dir
        .clone()
        .or_else(|| file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("daytwo-data"))
}

/// Reads rule files (or every *.yaml / *.yml in a directory, skipping *.test.yaml) and
/// compiles them; with no paths, the shipped packs.
pub fn load_rules(paths: &[PathBuf]) -> Result<daytwo_rules::RuleSet> {
    if paths.is_empty() {
        return Ok(daytwo_rules::RuleSet::builtin());
    }
    let files = read_rule_files(paths, false)?;
    let sources: Vec<daytwo_rules::SourceFile> = files
        .iter()
        .map(|(p, t)| daytwo_rules::SourceFile { path: p, text: t })
        .collect();
    daytwo_rules::RuleSet::compile(&sources).map_err(|errs| {
        let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        usage(format!("invalid rules:\n{}", lines.join("\n")))
    })
}

/// Expands files and directories into (path, text) pairs, sorted for a stable order.
/// `tests` selects `*.test.yaml` files instead of rule files.
pub fn read_rule_files(paths: &[PathBuf], tests: bool) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| usage(format!("{}: {e}", p.display())))?;
        let mut files = Vec::new();
        if meta.is_dir() {
            for entry in std::fs::read_dir(p)
                .with_context(|| format!("reading directory {}", p.display()))?
            {
                let path = entry?.path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
                let is_test = name.ends_with(".test.yaml") || name.ends_with(".test.yml");
                if is_yaml && is_test == tests {
                    files.push(path);
                }
            }
            files.sort();
        } else {
            files.push(p.clone());
        }
        for f in files {
            let text =
                std::fs::read_to_string(&f).map_err(|e| usage(format!("{}: {e}", f.display())))?;
            out.push((f.display().to_string(), text));
        }
    }
    Ok(out)
}

/// The collector's settings: flags, then env (clap), then file, then defaults.
pub fn collector_config(
    common: &CommonArgs,
    flags: &CollectorFlags,
    file: &FileConfig,
) -> Result<daytwo_collector::CollectorConfig> {
    let c = &file.collector;
    let rules_paths = if flags.rules.is_empty() {
        c.rules.clone()
    } else {
        flags.rules.clone()
    };
    let rules = load_rules(&rules_paths)?;
    let mut receivers = daytwo_collector::notify::receivers_from_urls(
        &flags.webhooks,
        flags.webhook_secret.clone(),
    )
    .map_err(|e| usage(format!("--webhook: {e}")))?;
    if flags.webhooks.is_empty() {
        use daytwo_collector::notify::{Receiver, ReceiverKind, receiver_url};
        for (i, r) in c.receivers.iter().enumerate() {
            let url = receiver_url(r.kind, r.url.as_deref())
                .map_err(|e| usage(format!("collector.receivers[{i}].url ({}): {e}", r.name)))?;
            let mut parsed = Receiver::new(r.name.clone(), r.kind, url);
            parsed.secret = match r.kind {
                ReceiverKind::Webhook => r
                    .secret
                    .clone()
                    .or_else(|| flags.webhook_secret.clone())
                    .filter(|s| !s.is_empty()),
                _ => r.secret.clone(),
            };
            parsed.routing_key = r.routing_key.clone();
            parsed.api_key = r.api_key.clone();
            parsed.fallback = r.fallback.clone();
            receivers.push(parsed);
        }
    }
    let mut notify = daytwo_collector::notify::NotifyConfig {
        receivers,
        policy: daytwo_collector::notify::Policy {
            routes: c.routes.clone(),
            silences: c.silences.clone(),
            maintenance_windows: c.maintenance_windows.clone(),
        },
        public_url: flags.public_url.clone().or_else(|| c.public_url.clone()),
        ..Default::default()
    };
    if let Some(s) = flags.notify_max_age_secs.or(c.notify_max_age_secs) {
        notify.max_age = Duration::from_secs(s.max(1));
    }
    if let Some(n) = flags.notify_breaker_failures.or(c.notify_breaker_failures) {
        notify.breaker_failures = n;
    }
    if let Some(ms) = flags
        .notify_breaker_cooldown_ms
        .or(c.notify_breaker_cooldown_ms)
    {
        notify.breaker_cooldown = Duration::from_millis(ms);
    }
    if let Some(ms) = flags
        .notify_fallback_after_ms
        .or(c.notify_fallback_after_ms)
    {
        notify.fallback_after = Duration::from_millis(ms);
    }
    if let Some(ms) = flags
        .notify_backoff_initial_ms
        .or(c.notify_backoff_initial_ms)
    {
        notify.backoff_initial = Duration::from_millis(ms.max(1));
    }
    if let Some(ms) = flags.notify_backoff_max_ms.or(c.notify_backoff_max_ms) {
        notify.backoff_max = Duration::from_millis(ms.max(1));
    }
    notify.validate().map_err(|e| usage(e.to_string()))?;
    Ok(daytwo_collector::CollectorConfig {
        data_dir: data_dir(common, file),
        otlp_addr: flags
            .otlp_addr
            .or(c.otlp_addr)
            .unwrap_or_else(|| "127.0.0.1:4317".parse().unwrap()),
        http_addr: flags
            .http_addr
            .or(c.http_addr)
            .unwrap_or_else(|| "127.0.0.1:7700".parse().unwrap()),
        notify,
        rules: std::sync::Arc::new(rules),
        rules_reload_interval: match flags
            .rules_reload_interval_ms
            .or(c.rules_reload_interval_ms)
            .unwrap_or(2000)
        {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        },
        rules_paths: rules_paths.clone(),
        correlation_window: Duration::from_secs(
            flags
                .correlation_window_secs
                .or(c.correlation_window_secs)
                .unwrap_or(300),
        ),
        auto_resolve_after: match flags
            .auto_resolve_after_secs
            .or(c.auto_resolve_after_secs)
            .unwrap_or(3600)
        {
            0 => None,
            s => Some(Duration::from_secs(s)),
        },
        quorum: flags
            .incident_quorum
            .or(c.incident_quorum)
            .unwrap_or(daytwo_collector::correlate::DEFAULT_QUORUM),
        max_recv_bytes: flags
            .otlp_max_recv_bytes
            .or(c.otlp_max_recv_bytes)
            .unwrap_or(daytwo_collector::ingest::DEFAULT_MAX_RECV_BYTES),
        token: flags.token.clone().or_else(|| c.token.clone()),
    })
}

/// The agent's settings. `collector` is the endpoint flag (or the in-process collector's).
pub fn agent_config(
    common: &CommonArgs,
    collector: Option<String>,
    flags: &AgentFlags,
    file: &FileConfig,
) -> Result<daytwo_agent::AgentConfig> {
    let a = &file.agent;
    let endpoint = collector
        .or_else(|| a.collector.clone())
        .unwrap_or_else(|| "http://127.0.0.1:4317".into());
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(usage(format!(
            "--collector {endpoint:?}: expected a URL like http://collector.example:4317"
        )));
    }
    let mut cfg = daytwo_agent::AgentConfig::new(endpoint, data_dir(common, file).join("agent"));
    if let Some(h) = flags.host_name.clone().or_else(|| a.host_name.clone()) {
        cfg.host_name = h;
    }
    if let Some(p) = flags.kmsg_path.clone().or_else(|| a.kmsg_path.clone()) {
        cfg.kmsg_path = p;
    }
    if flags.no_kmsg || a.kmsg_enabled == Some(false) {
        cfg.kmsg_enabled = false;
    }
    if let Some(p) = flags.cgroup_root.clone().or_else(|| a.cgroup_root.clone()) {
        cfg.cgroup_root = p;
    }
    if let Some(s) = flags.metrics_interval_secs.or(a.metrics_interval_secs) {
        if s == 0 {
            return Err(usage("--metrics-interval-secs must be at least 1"));
        }
        cfg.metrics_interval = Duration::from_secs(s);
    }
    if let Some(b) = flags.queue_max_bytes.or(a.queue_max_bytes) {
        cfg.queue_max_bytes = b;
    }
    if let Some(ms) = flags.retry_initial_ms.or(a.retry_initial_ms) {
        cfg.retry_initial = Duration::from_millis(ms.max(1));
    }
    if let Some(ms) = flags.retry_max_ms.or(a.retry_max_ms) {
        cfg.retry_max = Duration::from_millis(ms.max(1));
    }
    let lf = &a.logs;
    let logs = &mut cfg.logs;
    if flags.no_logs || lf.enabled == Some(false) {
        logs.enabled = false;
    }
    logs.sources = if !flags.log_paths.is_empty() {
        flags
            .log_paths
            .iter()
            .map(|g| daytwo_agent::logs::tail::SourceSpec {
                glob: g.clone(),
                format: daytwo_agent::logs::parse::Format::Auto,
            })
            .collect()
    } else if !lf.paths.is_empty() {
        lf.paths.clone()
    } else {
        let d = daytwo_agent::logs::LogsConfig::default_sources(std::path::Path::new("/"));
        if logs.enabled && !d.is_empty() {
            tracing::info!(
                glob = daytwo_agent::logs::DEFAULT_POD_GLOB,
                "No --log-path given and /var/log/pods exists: reading pod logs."
            );
        }
        d
    };
    if let Some(ms) = flags.log_poll_interval_ms.or(lf.poll_interval_ms) {
        logs.poll_interval = Duration::from_millis(ms);
    }
    if let Some(b) = flags.log_max_line_bytes.or(lf.max_line_bytes) {
        logs.max_line_bytes = b;
    }
    if let Some(m) = lf.multiline {
        logs.multiline = m;
    }
    if let Some(ms) = flags.log_multiline_timeout_ms.or(lf.multiline_timeout_ms) {
        logs.multiline_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = flags.log_rotate_wait_ms.or(lf.rotate_wait_ms) {
        logs.rotate_wait = Duration::from_millis(ms);
    }
    if let Some(b) = flags.log_queue_max_bytes.or(lf.queue_max_bytes) {
        logs.queue_max_bytes = b;
    }
    if flags.no_log_ship || lf.ship_raw == Some(false) {
        logs.ship_raw = false;
    }
    if let Some(c) = lf.compression {
        logs.compression = c;
    } else if lf.compress == Some(false) {
        logs.compression = daytwo_agent::logs::ship::Compression::None;
    }
    if let Some(c) = &flags.log_compression {
        logs.compression = c
            .parse()
            .map_err(|e: String| usage(format!("--log-compression: {e}")))?;
    } else if flags.no_log_compression {
        logs.compression = daytwo_agent::logs::ship::Compression::None;
    }
    logs.redact = lf.redact.clone();
    if let Some(d) = &lf.detect {
        logs.detect = Some(d.clone());
    }
    if lf.detect_enabled == Some(false) {
        logs.detect = None;
    }
    cfg.logs_bench = flags.log_bench;
    let nf = &a.node;
    if flags.no_node_metrics || nf.enabled == Some(false) {
        cfg.node.enabled = false;
    }
    if let Some(n) = flags.node_max_cgroups.or(nf.max_cgroups) {
        cfg.node.max_cgroups = n;
    }
    match flags.node_mount_timeout_ms.or(nf.mount_timeout_ms) {
        Some(0) => {
            return Err(usage(
                "agent.node.mount_timeout_ms: must be at least 1 (a statvfs cannot answer in 0 ms)",
            ));
        }
        Some(ms) => cfg.node.mount_timeout = Duration::from_millis(ms),
        None => {}
    }
    if let Some(p) = flags.proc_root.clone().or_else(|| nf.proc_root.clone()) {
        cfg.node.proc_root = p;
    }
    if let Some(d) = &nf.detect {
        d.validate()
            .map_err(|e| usage(format!("agent.node.detect: {e}")))?;
        cfg.node.detect = d.clone();
    }
    if logs.enabled {
        logs.validate().map_err(|e| usage(format!("logs: {e}")))?;
    }
    let jf = &a.journald;
    let j = &mut cfg.journald;
    if let Some(m) = flags.journald.or(jf.mode) {
        j.mode = m;
    }
    if let Some(p) = flags.journalctl.clone().or_else(|| jf.journalctl.clone()) {
        j.journalctl = p;
    }
    if let Some(d) = flags
        .journald_directory
        .clone()
        .or_else(|| jf.directory.clone())
    {
        j.directory = Some(d);
    }
    if let Some(ms) = flags.journald_restart_initial_ms.or(jf.restart_initial_ms) {
        j.restart_initial = Duration::from_millis(ms.max(1));
    }
    if let Some(ms) = flags.journald_restart_max_ms.or(jf.restart_max_ms) {
        j.restart_max = Duration::from_millis(ms.max(1));
    }
    if let Some(ms) = flags.journald_commit_interval_ms.or(jf.commit_interval_ms) {
        j.commit_interval = Duration::from_millis(ms.max(1));
    }
    if let Some(d) = &jf.systemd {
        j.systemd = d.clone();
    }
    if let Some(n) = flags.systemd_restart_loop_count {
        j.systemd.restart_loop_count = n;
    }
    if let Some(w) = flags.systemd_restart_loop_window_secs {
        j.systemd.restart_loop_window_secs = w;
    }
    j.systemd
        .validate()
        .map_err(|e| usage(format!("agent.journald.systemd: {e}")))?;
    Ok(cfg)
}
