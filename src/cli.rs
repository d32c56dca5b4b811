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
    /// Add, list and expire silences (maintenance), in the manner of amtool.
    #[command(alias = "silence")]
    Silences(SilencesArgs),
    /// Check rule files and run rule unit tests.
    Rules(RulesArgs),
    /// Work with logs: mine templates the way the agent does.
    Logs(LogsArgs),
    /// Run recorded OTLP/JSON telemetry through detection, correlation and rules; print incidents.
    Replay(ReplayArgs),
    /// Print what installs daytwo elsewhere: `daytwo deploy manifests | kubectl apply -f -`.
    Deploy(DeployArgs),
}

#[derive(Args, Debug)]
pub struct DeployArgs {
    #[command(subcommand)]
    pub command: DeployCommand,
}

#[derive(Subcommand, Debug)]
pub enum DeployCommand {
    /// Print the Kubernetes manifests (agent DaemonSet, collector Deployment, RBAC, rules) on
    /// stdout. The global --log-level is also the level the pods log at. docs/kubernetes.md.
    Manifests(ManifestsArgs),
}

#[derive(Args, Debug)]
pub struct ManifestsArgs {
    /// Namespace to install into (the manifests create it).
    #[arg(long, env = "DAYTWO_NAMESPACE", default_value = "daytwo")]
    pub namespace: String,
    /// Container image of the agent and the collector [default: daytwo:<this version>].
    #[arg(long, env = "DAYTWO_IMAGE")]
    pub image: Option<String>,
    /// When the kubelet pulls the image.
    #[arg(
        long,
        env = "DAYTWO_IMAGE_PULL_POLICY",
        value_enum,
        default_value = "IfNotPresent"
    )]
    pub image_pull_policy: ImagePullPolicy,
    /// Size of the collector's PersistentVolumeClaim (its embedded store).
    #[arg(long, env = "DAYTWO_STORAGE_SIZE", default_value = "10Gi")]
    pub storage_size: String,
    /// StorageClass of that claim [default: the cluster's default class].
    #[arg(long, env = "DAYTWO_STORAGE_CLASS")]
    pub storage_class: Option<String>,
    /// k8s.cluster.name the agents and the collector report (DAYTWO_CLUSTER_NAME in the pods).
    #[arg(long, env = "DAYTWO_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Use this existing PriorityClass for the agent instead of creating `daytwo-agent`.
    #[arg(long, env = "DAYTWO_PRIORITY_CLASS")]
    pub priority_class: Option<String>,
    /// The agent does not read /dev/kmsg and so runs unprivileged (no kernel OOM, I/O or
    /// filesystem signals).
    #[arg(long, env = "DAYTWO_NO_KMSG")]
    pub no_kmsg: bool,
    /// CPU request of the collector (docs/kubernetes.md has sizes per fleet).
    #[arg(long, env = "DAYTWO_COLLECTOR_CPU", default_value = crate::cmd_deploy::DEFAULT_COLLECTOR_CPU)]
    pub collector_cpu: String,
    /// Memory request and limit of the collector (docs/kubernetes.md has sizes per fleet).
    #[arg(long, env = "DAYTWO_COLLECTOR_MEMORY", default_value = crate::cmd_deploy::DEFAULT_COLLECTOR_MEMORY)]
    pub collector_memory: String,
}

/// A container's `imagePullPolicy`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ImagePullPolicy {
    #[value(name = "Always")]
    Always,
    #[value(name = "IfNotPresent")]
    IfNotPresent,
    #[value(name = "Never")]
    Never,
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
    /// How long a receiver's circuit breaker must have been open before its pages also go to
    /// its fallback receiver [default: 0, as soon as it opens].
    #[arg(long, env = "DAYTWO_NOTIFY_FALLBACK_AFTER_MS")]
    pub notify_fallback_after_ms: Option<u64>,
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
    /// Send raw logs without gzip (cheaper CPU on a fast link); the same as `--log-compression none`.
    #[arg(long, env = "DAYTWO_NO_LOG_COMPRESSION")]
    pub no_log_compression: bool,
    /// gzip raw-log exports: auto (unless the collector is on loopback), gzip or none [default: auto].
    #[arg(long, env = "DAYTWO_LOG_COMPRESSION", value_parser = ["auto", "gzip", "none"])]
    pub log_compression: Option<String>,
    /// Benchmark: read the log paths once to their end (no queue, no network), print a `logs-bench` line, exit.
    #[arg(long, hide = true)]
    pub log_bench: bool,
    /// Do not sample node and container metrics (and run no node detectors). docs/node.md.
    #[arg(long, env = "DAYTWO_NO_NODE_METRICS")]
    pub no_node_metrics: bool,
    /// Cgroups tracked per interval; more are counted in daytwo_agent_node_cgroups_skipped [default: 2000].
    #[arg(long, env = "DAYTWO_NODE_MAX_CGROUPS")]
    pub node_max_cgroups: Option<usize>,
    /// How long one statvfs may take before its mount counts as unresponsive (hung NFS/FUSE): signalled, left out until it answers [default: 5000].
    #[arg(long, env = "DAYTWO_NODE_MOUNT_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub node_mount_timeout_ms: Option<u64>,
    /// The proc filesystem host counters and mounts are read from (a DaemonSet mounts the host's) [default: /proc].
    #[arg(long, env = "DAYTWO_PROC_ROOT")]
    pub proc_root: Option<PathBuf>,
    /// Read the systemd journal: auto (when journalctl and a journal directory exist), on or off [default: auto]. docs/logs.md.
    #[arg(long, env = "DAYTWO_JOURNALD")]
    pub journald: Option<daytwo_agent::journald::JournaldMode>,
    /// The journalctl binary the journald source runs [default: journalctl from PATH].
    #[arg(long, env = "DAYTWO_JOURNALCTL")]
    pub journalctl: Option<PathBuf>,
    /// Journal directory passed to journalctl --directory (a DaemonSet mounts the host's) [default: the system journal].
    #[arg(long, env = "DAYTWO_JOURNALD_DIRECTORY")]
    pub journald_directory: Option<PathBuf>,
    /// First wait before journalctl is started again after it exited [default: 1000].
    #[arg(long, env = "DAYTWO_JOURNALD_RESTART_INITIAL_MS")]
    pub journald_restart_initial_ms: Option<u64>,
    /// Longest wait between journalctl restarts [default: 60000].
    #[arg(long, env = "DAYTWO_JOURNALD_RESTART_MAX_MS")]
    pub journald_restart_max_ms: Option<u64>,
    /// How often journal entries read are committed with their cursor [default: 1000].
    #[arg(long, env = "DAYTWO_JOURNALD_COMMIT_INTERVAL_MS")]
    pub journald_commit_interval_ms: Option<u64>,
    /// Restarts of one systemd unit within the window that make a restart loop [default: 3].
    #[arg(long, env = "DAYTWO_SYSTEMD_RESTART_LOOP_COUNT")]
    pub systemd_restart_loop_count: Option<u32>,
    /// The restart-loop window, seconds of journal time [default: 300].
    #[arg(long, env = "DAYTWO_SYSTEMD_RESTART_LOOP_WINDOW_SECS")]
    pub systemd_restart_loop_window_secs: Option<u64>,
}

/// Kubernetes watches (docs/configuration.md, "Kubernetes"): the agent watches its own
/// node's pods and Node, the collector cluster-wide objects.
#[derive(Args, Debug, Clone, Default)]
pub struct KubeFlags {
    /// Watch the Kubernetes API: auto (when in-cluster configuration or a kubeconfig is found), on, off [default: auto].
    #[arg(long, env = "DAYTWO_KUBE", value_parser = ["auto", "on", "off"])]
    pub kube: Option<String>,
    /// Kubeconfig file to use instead of in-cluster configuration, $KUBECONFIG or ~/.kube/config.
    #[arg(long, env = "DAYTWO_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// This node's Kubernetes name (the agent watches pods with spec.nodeName=NAME); the DaemonSet sets it from the downward API.
    #[arg(long, env = "DAYTWO_NODE_NAME")]
    pub node_name: Option<String>,
    /// k8s.cluster.name on every Kubernetes signal and entity [default: none].
    #[arg(long, env = "DAYTWO_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Restarts and Warning events older than this when first seen are not reported [default: 900].
    #[arg(long, env = "DAYTWO_KUBE_MAX_AGE_SECS")]
    pub kube_max_age_secs: Option<u64>,
    /// Longest wait between retries of a failed Kubernetes list or watch [default: 30000].
    #[arg(long, env = "DAYTWO_KUBE_RETRY_MAX_MS")]
    pub kube_retry_max_ms: Option<u64>,
    /// Collector: how often the configuration analyzers (Ingress, NetworkPolicy, PodDisruptionBudget, CronJob, StatefulSet, Deployment replicas) look at the cluster [default: 30000].
    #[arg(long, env = "DAYTWO_KUBE_ANALYZE_INTERVAL_MS")]
    pub kube_analyze_interval_ms: Option<u64>,
    /// Collector: how long a Deployment may have fewer ready replicas than it wants before daytwo.k8s.workload.replicas_not_ready [default: 300].
    #[arg(long, env = "DAYTWO_KUBE_REPLICAS_GRACE_SECS")]
    pub kube_replicas_grace_secs: Option<u64>,
}

#[derive(Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub collector: CollectorFlags,
    #[command(flatten)]
    pub agent: AgentFlags,
    #[command(flatten)]
    pub kube: KubeFlags,
}

#[derive(Args, Debug)]
pub struct CollectorArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub collector: CollectorFlags,
    #[command(flatten)]
    pub kube: KubeFlags,
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
    #[command(flatten)]
    pub kube: KubeFlags,
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
        /// Continue after a previous page (its `next`, printed under the table).
        #[arg(long)]
        cursor: Option<String>,
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

#[derive(Args, Debug)]
pub struct SilencesArgs {
    /// Collector HTTP address.
    #[arg(
        long,
        global = true,
        env = "DAYTWO_SERVER",
        default_value = "http://127.0.0.1:7700"
    )]
    pub server: String,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Bearer token for add and expire.
    #[arg(long, global = true, env = "DAYTWO_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: SilencesCommand,
}

#[derive(Subcommand, Debug)]
pub enum SilencesCommand {
    /// Silence matching incidents for a while: no trigger is sent; a resolve still reaches
    /// whoever was paged before. MATCHER is KEY=VALUE: severity, cluster, namespace, rule, or
    /// any root-cause entity attribute (host.name=db-1).
    Add {
        /// One or more KEY=VALUE; all must match.
        #[arg(required = true, value_name = "MATCHER")]
        matchers: Vec<String>,
        /// How long: 90s, 30m, 2h, 1d, 1h30m (default 1h unless --end is given).
        #[arg(long, short = 'd')]
        duration: Option<String>,
        /// Start (RFC 3339); default now.
        #[arg(long)]
        start: Option<String>,
        /// End (RFC 3339), instead of --duration.
        #[arg(long)]
        end: Option<String>,
        /// Why (a ticket or change number).
        #[arg(long, short = 'c')]
        comment: String,
        /// Who; default $USER.
        #[arg(long, short = 'a', env = "USER")]
        author: Option<String>,
    },
    /// List silences that are active or pending (with --expired, also those that are over).
    #[command(alias = "query")]
    List {
        /// Also show expired silences.
        #[arg(long)]
        expired: bool,
    },
    /// End silences now; triggers they held go out if their incidents are still open.
    Expire {
        /// Silence ids (see `list`).
        #[arg(required = true)]
        ids: Vec<String>,
    },
}
