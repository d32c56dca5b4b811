//! Flags. Every flag also reads `DAYTWO_<FLAG>`; flags beat env, env beats the `--config`
//! file, the file beats the built-in default (documented in each help text and docs/cli.md).
//! Flags that a config file may also set are `Option`s so that precedence can be applied.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "daytwo",
    version,
    about = "Day-two diagnostics: turns node faults into incidents with a named root cause.",
    long_about = "daytwo reads kernel events, logs and metrics on every node, joins them into incidents \
                  with a named root cause, and pages once.\n\nRun it on this machine:  daytwo up\n\
                  List incidents:          daytwo incidents list"
)]
pub struct Cli {
    /// Log filter for daytwo's own logs (stderr): error, warn, info, debug, or a tracing filter.
    #[arg(long, global = true, env = "DAYTWO_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log format for daytwo's own logs.
    #[arg(
        long,
        global = true,
        env = "DAYTWO_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

// Parsed once at start-up: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the collector and an agent for this machine, with the embedded store.
    Up(UpArgs),
    /// Run only the collector (OTLP in, incidents, HTTP API, notifications).
    Collector(CollectorArgs),
    /// Run only the node agent, shipping signals to a collector.
    Agent(AgentArgs),
    /// List, show, acknowledge and resolve incidents.
    Incidents(IncidentsArgs),
    /// Check rule files and run rule unit tests.
    Rules(RulesArgs),
    /// Work with logs: mine templates the way the agent does.
    Logs(LogsArgs),
    /// Run recorded OTLP/JSON telemetry through detection, correlation and rules; print incidents.
    Replay(ReplayArgs),
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// OTLP/JSON files (one export request per line, as the OpenTelemetry Collector's file exporter writes them; .gz accepted).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: ReplayFormat,
    /// Rule files or directories [default: the shipped packs].
    #[arg(long = "rules")]
    pub rules: Vec<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ReplayFormat {
    Json,
    Table,
}

#[derive(Args, Debug, Clone, Default)]
pub struct CommonArgs {
    /// YAML configuration file (docs/configuration.md). Flags and env vars override it.
    #[arg(long, env = "DAYTWO_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the embedded store, the outbox and the agent's queue [default: ./daytwo-data].
    #[arg(long, env = "DAYTWO_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct CollectorFlags {
    /// HTTP address: API, /metrics, /healthz, /readyz [default: 127.0.0.1:7700]. Port 0 picks a free port.
    #[arg(long, env = "DAYTWO_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// OTLP/gRPC address [default: 127.0.0.1:4317]. Port 0 picks a free port.
    #[arg(long, env = "DAYTWO_OTLP_ADDR")]
    pub otlp_addr: Option<SocketAddr>,
    /// Generic JSON webhook to notify (repeatable; env: comma-separated).
    #[arg(long = "webhook", env = "DAYTWO_WEBHOOK", value_delimiter = ',')]
    pub webhooks: Vec<String>,
    /// Secret for the X-Daytwo-Signature HMAC-SHA256 header on webhooks.
    #[arg(long, env = "DAYTWO_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Rule files or directories (repeatable) [default: the shipped packs].
    #[arg(long = "rules", env = "DAYTWO_RULES", value_delimiter = ',')]
    pub rules: Vec<PathBuf>,
    /// How often the --rules files are checked for changes and reloaded, in ms; 0 turns reloading off [default: 2000].
    #[arg(long, env = "DAYTWO_RULES_RELOAD_INTERVAL_MS")]
    pub rules_reload_interval_ms: Option<u64>,
    /// Bearer token required for ack and resolve calls.
    #[arg(long, env = "DAYTWO_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Signals further apart than this (event time) are not joined by host alone [default: 300].
    #[arg(long, env = "DAYTWO_CORRELATION_WINDOW_SECS")]
    pub correlation_window_secs: Option<u64>,
    /// Distinct warning symptoms on one entity within the window that open an incident when no
    /// rule explains them [default: 2].
    #[arg(long, env = "DAYTWO_INCIDENT_QUORUM")]
    pub incident_quorum: Option<usize>,
    /// Resolve an incident once no signal joined it for this long; 0 keeps incidents open until
    /// someone resolves them [default: 3600].
    #[arg(long, env = "DAYTWO_AUTO_RESOLVE_AFTER_SECS")]
    pub auto_resolve_after_secs: Option<u64>,
    /// First retry delay of a failed notification [default: 1000].
    #[arg(long, env = "DAYTWO_NOTIFY_BACKOFF_INITIAL_MS")]
    pub notify_backoff_initial_ms: Option<u64>,
    /// Longest retry delay of a failed notification [default: 300000].
    #[arg(long, env = "DAYTWO_NOTIFY_BACKOFF_MAX_MS")]
    pub notify_backoff_max_ms: Option<u64>,
    /// A notification still failing this long after it was queued is dead-lettered [default: 86400].
    #[arg(long, env = "DAYTWO_NOTIFY_MAX_AGE_SECS")]
    pub notify_max_age_secs: Option<u64>,
    /// Consecutive failed attempts that open a receiver's circuit breaker [default: 5].
    #[arg(long, env = "DAYTWO_NOTIFY_BREAKER_FAILURES")]
    pub notify_breaker_failures: Option<u32>,
    /// How long an open circuit breaker holds a receiver's notifications before one probe [default: 60000].
    #[arg(long, env = "DAYTWO_NOTIFY_BREAKER_COOLDOWN_MS")]
    pub notify_breaker_cooldown_ms: Option<u64>,
    /// The collector's URL as on-call engineers reach it; pages link to the incident under it [default: none, no link].
    #[arg(long, env = "DAYTWO_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Largest accepted OTLP request, decoded [default: 16777216].
    #[arg(long, env = "DAYTWO_OTLP_MAX_RECV_BYTES")]
    pub otlp_max_recv_bytes: Option<usize>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct AgentFlags {
    /// host.name reported for this machine [default: the hostname].
    #[arg(long, env = "DAYTWO_HOST_NAME")]
    pub host_name: Option<String>,
    /// Kernel log device [default: /dev/kmsg].
    #[arg(long, env = "DAYTWO_KMSG_PATH")]
    pub kmsg_path: Option<PathBuf>,
    /// Do not read kernel messages.
    #[arg(long, env = "DAYTWO_NO_KMSG")]
    pub no_kmsg: bool,
    /// Root of the cgroup filesystem [default: /sys/fs/cgroup].
    #[arg(long, env = "DAYTWO_CGROUP_ROOT")]
    pub cgroup_root: Option<PathBuf>,
    /// Host metrics interval [default: 10].
    #[arg(long, env = "DAYTWO_METRICS_INTERVAL_SECS")]
    pub metrics_interval_secs: Option<u64>,
    /// Bound of the on-disk send queue; the oldest signals are dropped (and counted) past it [default: 268435456].
    #[arg(long, env = "DAYTWO_QUEUE_MAX_BYTES")]
    pub queue_max_bytes: Option<u64>,
    /// First retry delay when the collector is unreachable [default: 500].
    #[arg(long, env = "DAYTWO_RETRY_INITIAL_MS")]
    pub retry_initial_ms: Option<u64>,
    /// Longest retry delay when the collector is unreachable [default: 30000].
    #[arg(long, env = "DAYTWO_RETRY_MAX_MS")]
    pub retry_max_ms: Option<u64>,
    /// Log files to tail, as a glob (repeatable; env: comma-separated) [default: /var/log/pods/*/*/*.log when /var/log/pods exists, else none]. docs/logs.md.
    #[arg(long = "log-path", env = "DAYTWO_LOG_PATH", value_delimiter = ',')]
    pub log_paths: Vec<String>,
    /// Do not read log files.
    #[arg(long, env = "DAYTWO_NO_LOGS")]
    pub no_logs: bool,
    /// How often log files are looked for and read [default: 1000].
    #[arg(long, env = "DAYTWO_LOG_POLL_INTERVAL_MS")]
    pub log_poll_interval_ms: Option<u64>,
    /// Longer log lines are cut to this many bytes and counted [default: 1048576].
    #[arg(long, env = "DAYTWO_LOG_MAX_LINE_BYTES")]
    pub log_max_line_bytes: Option<usize>,
    /// A held multi-line record (stack trace) is sent after this long without a continuation line [default: 1000].
    #[arg(long, env = "DAYTWO_LOG_MULTILINE_TIMEOUT_MS")]
    pub log_multiline_timeout_ms: Option<u64>,
    /// A rotated or deleted log file is closed this long after it stopped growing [default: 5000].
    #[arg(long, env = "DAYTWO_LOG_ROTATE_WAIT_MS")]
    pub log_rotate_wait_ms: Option<u64>,
    /// Reading pauses while this many bytes of raw logs wait on disk for the collector [default: 268435456].
    #[arg(long, env = "DAYTWO_LOG_QUEUE_MAX_BYTES")]
    pub log_queue_max_bytes: Option<u64>,
    /// Do not ship raw log records; only log signals are sent.
    #[arg(long, env = "DAYTWO_NO_LOG_SHIP")]
    pub no_log_ship: bool,
    /// Send raw logs without gzip (cheaper CPU on a fast link).
    #[arg(long, env = "DAYTWO_NO_LOG_COMPRESSION")]
    pub no_log_compression: bool,
    /// Benchmark: read the log paths once to their end (no queue, no network), print a `logs-bench` line, exit.
    #[arg(long, hide = true)]
    pub log_bench: bool,
    /// Do not sample node and container metrics (and run no node detectors). docs/node.md.
    #[arg(long, env = "DAYTWO_NO_NODE_METRICS")]
    pub no_node_metrics: bool,
    /// Cgroups tracked per interval; more are counted in daytwo_agent_node_cgroups_skipped [default: 2000].
    #[arg(long, env = "DAYTWO_NODE_MAX_CGROUPS")]
    pub node_max_cgroups: Option<usize>,
    /// The proc filesystem host counters and mounts are read from (a DaemonSet mounts the host's) [default: /proc].
    #[arg(long, env = "DAYTWO_PROC_ROOT")]
    pub proc_root: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub collector: CollectorFlags,
    #[command(flatten)]
    pub agent: AgentFlags,
}

#[derive(Args, Debug)]
pub struct CollectorArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub collector: CollectorFlags,
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Collector OTLP/gRPC endpoint [default: http://127.0.0.1:4317].
    #[arg(long, env = "DAYTWO_COLLECTOR")]
    pub collector: Option<String>,
    /// The agent's own /metrics and /healthz [default: 127.0.0.1:7701]. Port 0 picks a free port.
    #[arg(long, env = "DAYTWO_AGENT_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub agent: AgentFlags,
}

#[derive(Args, Debug)]
pub struct IncidentsArgs {
    /// Collector HTTP address.
    #[arg(
        long,
        global = true,
        env = "DAYTWO_SERVER",
        default_value = "http://127.0.0.1:7700"
    )]
    pub server: String,
    /// Print Incident JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Bearer token for ack and resolve.
    #[arg(long, global = true, env = "DAYTWO_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: IncidentsCommand,
}

#[derive(Subcommand, Debug)]
pub enum IncidentsCommand {
    /// List incidents, newest first.
    List {
        /// Only this status: open, acknowledged, resolved.
        #[arg(long)]
        status: Option<String>,
        /// Only this severity: info, warning, critical.
        #[arg(long)]
        severity: Option<String>,
        /// Only incidents in this cluster (k8s.cluster.name).
        #[arg(long)]
        cluster: Option<String>,
        /// Only incidents in this namespace (k8s.namespace.name).
        #[arg(long)]
        namespace: Option<String>,
        /// Only incidents with this root-cause entity: NAME or KIND/NAME.
        #[arg(long)]
        entity: Option<String>,
        /// Only incidents opened at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only incidents opened before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one incident with its root causes and evidence.
    Show { id: String },
    /// Acknowledge an incident (pagers are told).
    Ack { id: String },
    /// Resolve an incident (pagers are told).
    Resolve { id: String },
}

#[derive(Args, Debug)]
pub struct RulesArgs {
    #[command(subcommand)]
    pub command: RulesCommand,
}

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Validate rule files; every error as FILE:LINE:COL.
    Check {
        /// Rule files or directories (*.yaml, *.yml; test files are skipped).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Run rule unit tests (signals in, expected hypotheses out).
    Test {
        /// Test files (*.test.yaml) or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    #[command(subcommand)]
    pub command: LogsCommand,
}

#[derive(Subcommand, Debug)]
pub enum LogsCommand {
    /// Print `TEMPLATE_ID<TAB>TEMPLATE` for every input line (the agent's own online miner).
    Templates {
        /// Input file, one message per line [default: standard input].
        file: Option<PathBuf>,
        /// Keep the miner's state in DIR across runs (template ids stay stable).
        #[arg(long)]
        state: Option<PathBuf>,
    },
}
