//! `daytwo deploy manifests`: the Kubernetes manifests that install daytwo, on stdout, in the
//! manner of `linkerd install | kubectl apply -f -`.
//!
//! Entry point: [`manifests`], a pure function from [`ManifestOptions`] to multi-document YAML.
//! The output is deterministic (same options, same bytes): `deploy/kubernetes/daytwo.yaml` is
//! this function's output for the default options, and `tests/deploy.rs` fails when the two
//! drift. Documents come in apply order (the Namespace first, workloads last).
//!
//! Invariants: every user-supplied value is validated ([`ManifestOptions::validate`]) and then
//! either matches a Kubernetes name or quantity grammar or is written as a quoted YAML scalar, so
//! no option can inject YAML. The agent and collector are configured only through their
//! `DAYTWO_<FLAG>` environment variables (docs/cli.md), never through a config file, so the
//! manifests stay readable and `kubectl set env` works for any knob.
//!
//! What it deliberately does not do: talk to a cluster, template arbitrary fields (use
//! kustomize over this output), or install more than one daytwo per cluster (the cluster-scoped
//! objects have fixed names).

use crate::cli::{DeployArgs, DeployCommand, ImagePullPolicy, ManifestsArgs};
use crate::config::usage;
use anyhow::Result;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

/// The OTLP/gRPC port of the collector Service and container.
pub const OTLP_PORT: u16 = 4317;
/// The collector's HTTP port: API, page, /metrics, /healthz, /readyz, webhooks in.
pub const HTTP_PORT: u16 = 7700;
/// The agent's own /metrics, /healthz and /readyz (on the node's network).
pub const AGENT_HTTP_PORT: u16 = 7701;
/// Where the rules ConfigMap is mounted in the collector.
pub const RULES_DIR: &str = "/etc/daytwo/rules";
/// The data directory: the collector's volume, and the agent's hostPath state directory.
pub const DATA_DIR: &str = "/var/lib/daytwo";

/// What `daytwo deploy manifests` can change. [`Default`] is what deploy/kubernetes/ holds.
#[derive(Clone, Debug)]
pub struct ManifestOptions {
    /// Namespace for every namespaced object (created by the manifests).
    pub namespace: String,
    /// Container image of both the agent and the collector.
    pub image: String,
    /// `Always`, `IfNotPresent` or `Never`.
    pub image_pull_policy: ImagePullPolicy,
    /// Size of the collector's PersistentVolumeClaim (a Kubernetes quantity, e.g. `20Gi`).
    pub storage_size: String,
    /// StorageClass of the PVC; `None` uses the cluster's default class.
    pub storage_class: Option<String>,
    /// `k8s.cluster.name` given to the agent and collector (`DAYTWO_CLUSTER_NAME`).
    pub cluster_name: Option<String>,
    /// Log filter of both processes (`DAYTWO_LOG_LEVEL`).
    pub log_level: String,
    /// Use this existing PriorityClass for the agent instead of creating `daytwo-agent`.
    pub priority_class: Option<String>,
    /// Do not read /dev/kmsg: the agent then runs unprivileged (no kernel OOM or I/O signals).
    pub no_kmsg: bool,
    /// CPU request of the collector (a quantity, e.g. `500m`).
    pub collector_cpu: String,
    /// Memory request and limit of the collector (a quantity, e.g. `1Gi`).
    pub collector_memory: String,
}

impl Default for ManifestOptions {
    fn default() -> Self {
        ManifestOptions {
            namespace: "daytwo".into(),
            image: default_image(),
            image_pull_policy: ImagePullPolicy::IfNotPresent,
            storage_size: "10Gi".into(),
            storage_class: None,
            cluster_name: None,
            log_level: "info".into(),
            priority_class: None,
            no_kmsg: false,
            collector_cpu: DEFAULT_COLLECTOR_CPU.into(),
            collector_memory: DEFAULT_COLLECTOR_MEMORY.into(),
        }
    }
}

/// Collector CPU request by default: enough for about 1,000 nodes (docs/kubernetes.md, sizing).
pub const DEFAULT_COLLECTOR_CPU: &str = "250m";
/// Collector memory request and limit by default (docs/kubernetes.md, sizing).
pub const DEFAULT_COLLECTOR_MEMORY: &str = "512Mi";

/// `daytwo:<crate version>`.
pub fn default_image() -> String {
    format!("daytwo:{}", env!("CARGO_PKG_VERSION"))
}

impl ImagePullPolicy {
    fn as_str(self) -> &'static str {
        match self {
            ImagePullPolicy::Always => "Always",
            ImagePullPolicy::IfNotPresent => "IfNotPresent",
            ImagePullPolicy::Never => "Never",
        }
    }
}

/// An option that cannot go into a manifest: names the flag and what is expected.
#[derive(Debug, thiserror::Error)]
#[error("--{flag} {value:?}: {expected}")]
pub struct InvalidOption {
    pub flag: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// RFC 1123 label: what a Namespace name must be.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: what StorageClass and PriorityClass names must be.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A Kubernetes resource quantity in the forms people write (`10Gi`, `500m`, `1.5`, `2G`).
fn is_quantity(s: &str) -> bool {
    const SUFFIXES: [&str; 13] = [
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "m", "k", "M", "G", "T", "P", "E",
    ];
    let number = SUFFIXES
        .iter()
        .find_map(|suf| s.strip_suffix(suf))
        .unwrap_or(s);
    let mut parts = number.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
        && number.bytes().any(|b| b != b'0' && b != b'.')
}

impl ManifestOptions {
    /// Checks every option against the grammar Kubernetes will apply to it.
    pub fn validate(&self) -> Result<(), InvalidOption> {
        let bad = |flag, value: &str, expected| {
            Err(InvalidOption {
                flag,
                value: value.to_string(),
                expected,
            })
        };
        if !is_dns_label(&self.namespace) {
            return bad(
                "namespace",
                &self.namespace,
                "a namespace name: at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit",
            );
        }
        if self.image.is_empty()
            || self
                .image
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\'')
        {
            return bad(
                "image",
                &self.image,
                "an image reference like registry.example.com/daytwo:0.1.0 (no spaces or quotes)",
            );
        }
        if !is_quantity(&self.storage_size) {
            return bad(
                "storage-size",
                &self.storage_size,
                "a positive Kubernetes quantity like 10Gi or 500Mi",
            );
        }
        if let Some(c) = &self.storage_class
            && !is_dns_subdomain(c)
        {
            return bad(
                "storage-class",
                c,
                "a StorageClass name (lower-case letters, digits, '-' and '.')",
            );
        }
        if let Some(c) = &self.cluster_name
            && (c.is_empty() || c.chars().any(char::is_control))
        {
            return bad(
                "cluster-name",
                c,
                "a non-empty name without control characters",
            );
        }
        if self.log_level.is_empty() || self.log_level.chars().any(char::is_control) {
            return bad(
                "log-level",
                &self.log_level,
                "error, warn, info, debug, or a tracing filter",
            );
        }
        if let Some(p) = &self.priority_class
            && !is_dns_subdomain(p)
        {
            return bad(
                "priority-class",
                p,
                "a PriorityClass name (lower-case letters, digits, '-' and '.')",
            );
        }
        if !is_quantity(&self.collector_cpu) {
            return bad(
                "collector-cpu",
                &self.collector_cpu,
                "a positive CPU quantity like 500m or 2",
            );
        }
        if !is_quantity(&self.collector_memory) {
            return bad(
                "collector-memory",
                &self.collector_memory,
                "a positive memory quantity like 512Mi or 2Gi",
            );
        }
        Ok(())
    }
}

/// A string as a double-quoted YAML scalar. JSON string syntax is a subset of YAML's
/// double-quoted style, so serde_json's escaping is exactly right.
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serialises")
}

/// The labels every object carries; `component` is agent, collector or absent.
fn labels(out: &mut String, indent: usize, component: Option<&str>) {
    let pad = " ".repeat(indent);
    let _ = writeln!(out, "{pad}app.kubernetes.io/name: daytwo");
    if let Some(c) = component {
        let _ = writeln!(out, "{pad}app.kubernetes.io/component: {c}");
    }
    let _ = writeln!(
        out,
        "{pad}app.kubernetes.io/version: {}",
        q(env!("CARGO_PKG_VERSION"))
    );
    let _ = writeln!(out, "{pad}app.kubernetes.io/managed-by: daytwo");
}

/// The selector labels of a component (a subset of [`labels`] that never changes on upgrade).
fn selector(out: &mut String, indent: usize, component: &str) {
    let pad = " ".repeat(indent);
    let _ = writeln!(out, "{pad}app.kubernetes.io/name: daytwo");
    let _ = writeln!(out, "{pad}app.kubernetes.io/component: {component}");
}

fn env_value(out: &mut String, name: &str, value: &str) {
    let _ = writeln!(out, "            - name: {name}");
    let _ = writeln!(out, "              value: {}", q(value));
}

fn env_node_name(out: &mut String, name: &str) {
    let _ = writeln!(out, "            - name: {name}");
    let _ = writeln!(out, "              valueFrom:");
    let _ = writeln!(out, "                fieldRef:");
    let _ = writeln!(out, "                  fieldPath: spec.nodeName");
}

/// One ClusterRole rule: an API group and its resources (verbs are always get, list, watch).
type RbacRule = (&'static str, &'static [&'static str]);

/// The agent's priority class name (ours unless an existing one was named).
const AGENT_PRIORITY_CLASS: &str = "daytwo-agent";

/// The rule files of the shipped packs, keyed by file name, in a stable order.
fn rule_files() -> Vec<(String, &'static str)> {
    let mut files: Vec<(String, &'static str)> = daytwo_rules::BUILTIN_PACKS
        .iter()
        .map(|f| {
            let name = f.path.rsplit('/').next().unwrap_or(f.path).to_string();
            (name, f.text)
        })
        .collect();
    files.sort();
    files
}

/// The manifests for `o`, as multi-document YAML. `o` must have passed [`ManifestOptions::validate`].
pub fn manifests(o: &ManifestOptions) -> String {
    // Quoted: a valid namespace such as `0` or `null` would otherwise read as a number or null.
    let ns = q(&o.namespace);
    let mut y = String::with_capacity(16 * 1024);
    let _ = writeln!(
        y,
        "# daytwo {} for Kubernetes, printed by `daytwo deploy manifests`.",
        env!("CARGO_PKG_VERSION")
    );
    y.push_str(
        "# Install: daytwo deploy manifests | kubectl apply -f -   (docs/kubernetes.md)\n\
         # Do not edit a copy by hand: change the flags and print it again.\n",
    );

    // Namespace. The agent needs hostPath volumes and host networking, and by default a
    // privileged container, so the namespace's Pod Security level is `privileged`; the
    // collector alone would pass `restricted` (tests/deploy.rs checks that it does).
    y.push_str("---\napiVersion: v1\nkind: Namespace\nmetadata:\n");
    let _ = writeln!(y, "  name: {ns}");
    y.push_str("  labels:\n");
    labels(&mut y, 4, None);
    y.push_str(
        "    pod-security.kubernetes.io/enforce: privileged\n    pod-security.kubernetes.io/enforce-version: latest\n",
    );

    // PriorityClass: the agent is what tells you a node is in trouble; it should be the
    // last thing evicted, but below the system-* classes that keep the node itself alive.
    if o.priority_class.is_none() {
        y.push_str("---\napiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n");
        let _ = writeln!(y, "  name: {AGENT_PRIORITY_CLASS}");
        y.push_str("  labels:\n");
        labels(&mut y, 4, Some("agent"));
        y.push_str(
            "value: 1000000\nglobalDefault: false\npreemptionPolicy: PreemptLowerPriority\n\
             description: \"daytwo node agent: diagnoses node faults, so it is scheduled before and evicted after ordinary workloads.\"\n",
        );
    }

    for component in ["agent", "collector"] {
        y.push_str("---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n");
        let _ = writeln!(y, "  name: daytwo-{component}");
        let _ = writeln!(y, "  namespace: {ns}");
        y.push_str("  labels:\n");
        labels(&mut y, 4, Some(component));
    }

    // RBAC: read-only (get, list, watch), and only what each watches. The agent watches the
    // pods of its own node (field selector spec.nodeName) and its Node; everything
    // cluster-wide is watched once, by the collector.
    let rules: [(&str, &[RbacRule]); 2] = [
        ("agent", &[("", &["nodes", "pods"])]),
        (
            "collector",
            &[
                (
                    "",
                    &[
                        "configmaps",
                        "events",
                        "nodes",
                        "persistentvolumeclaims",
                        "pods",
                        "secrets",
                        "services",
                    ],
                ),
                (
                    "apps",
                    &["daemonsets", "deployments", "replicasets", "statefulsets"],
                ),
                ("autoscaling", &["horizontalpodautoscalers"]),
                ("batch", &["cronjobs", "jobs"]),
                ("discovery.k8s.io", &["endpointslices"]),
                (
                    "networking.k8s.io",
                    &["ingressclasses", "ingresses", "networkpolicies"],
                ),
                ("policy", &["poddisruptionbudgets"]),
                ("storage.k8s.io", &["storageclasses"]),
            ],
        ),
    ];
    for (component, groups) in rules {
        y.push_str("---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n");
        let _ = writeln!(y, "  name: daytwo-{component}");
        y.push_str("  labels:\n");
        labels(&mut y, 4, Some(component));
        y.push_str("rules:\n");
        for (group, resources) in groups {
            let _ = writeln!(y, "  - apiGroups: [{}]", q(group));
            let _ = writeln!(y, "    resources: [{}]", resources.join(", "));
            y.push_str("    verbs: [get, list, watch]\n");
        }
    }
    for component in ["agent", "collector"] {
        y.push_str(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n",
        );
        let _ = writeln!(y, "  name: daytwo-{component}");
        y.push_str("  labels:\n");
        labels(&mut y, 4, Some(component));
        let _ = writeln!(
            y,
            "roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: daytwo-{component}"
        );
        let _ = writeln!(
            y,
            "subjects:\n  - kind: ServiceAccount\n    name: daytwo-{component}\n    namespace: {ns}"
        );
    }

    // Rules: the shipped packs as files; the collector loads this directory instead of its
    // built-in copy, so editing the ConfigMap (and restarting the collector) changes rules.
    y.push_str("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: daytwo-rules\n");
    let _ = writeln!(y, "  namespace: {ns}");
    y.push_str("  labels:\n");
    labels(&mut y, 4, Some("collector"));
    y.push_str("data:\n");
    for (name, text) in rule_files() {
        let _ = writeln!(y, "  {name}: |");
        for line in text.lines() {
            if line.trim().is_empty() {
                y.push('\n');
            } else {
                let _ = writeln!(y, "    {line}");
            }
        }
    }

    // The collector's store: one volume, one writer.
    y.push_str(
        "---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: daytwo-collector\n",
    );
    let _ = writeln!(y, "  namespace: {ns}");
    y.push_str("  labels:\n");
    labels(&mut y, 4, Some("collector"));
    y.push_str("spec:\n  accessModes: [ReadWriteOnce]\n");
    if let Some(class) = &o.storage_class {
        let _ = writeln!(y, "  storageClassName: {}", q(class));
    }
    let _ = writeln!(
        y,
        "  resources:\n    requests:\n      storage: {}",
        q(&o.storage_size)
    );

    y.push_str("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: daytwo-collector\n");
    let _ = writeln!(y, "  namespace: {ns}");
    y.push_str("  labels:\n");
    labels(&mut y, 4, Some("collector"));
    y.push_str("spec:\n  type: ClusterIP\n  selector:\n");
    selector(&mut y, 4, "collector");
    let _ = writeln!(
        y,
        "  ports:\n    - name: otlp-grpc\n      port: {OTLP_PORT}\n      targetPort: otlp-grpc\n      protocol: TCP\n      appProtocol: grpc\n    - name: http\n      port: {HTTP_PORT}\n      targetPort: http\n      protocol: TCP\n      appProtocol: http"
    );

    collector_deployment(&mut y, o);
    agent_daemonset(&mut y, o);
    y
}

fn collector_deployment(y: &mut String, o: &ManifestOptions) {
    let ns = q(&o.namespace);
    y.push_str("---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: daytwo-collector\n");
    let _ = writeln!(y, "  namespace: {ns}");
    y.push_str("  labels:\n");
    labels(y, 4, Some("collector"));
    // One replica and Recreate: the embedded store is a single-writer file on a RWO volume;
    // a rolling update would start the new pod while the old one still holds it.
    y.push_str(
        "spec:\n  replicas: 1\n  strategy:\n    type: Recreate\n  selector:\n    matchLabels:\n",
    );
    selector(y, 6, "collector");
    y.push_str("  template:\n    metadata:\n      labels:\n");
    labels(y, 8, Some("collector"));
    y.push_str(
        "    spec:\n      serviceAccountName: daytwo-collector\n      terminationGracePeriodSeconds: 30\n",
    );
    // 65532 is the `nonroot` user of the distroless image; fsGroup makes the volume writable.
    y.push_str(
        "      securityContext:\n        runAsNonRoot: true\n        runAsUser: 65532\n        runAsGroup: 65532\n        fsGroup: 65532\n        seccompProfile:\n          type: RuntimeDefault\n",
    );
    y.push_str("      containers:\n        - name: collector\n");
    let _ = writeln!(y, "          image: {}", q(&o.image));
    let _ = writeln!(
        y,
        "          imagePullPolicy: {}",
        o.image_pull_policy.as_str()
    );
    y.push_str("          args: [collector]\n          env:\n");
    env_value(y, "DAYTWO_DATA_DIR", DATA_DIR);
    env_value(y, "DAYTWO_HTTP_ADDR", &format!("0.0.0.0:{HTTP_PORT}"));
    env_value(y, "DAYTWO_OTLP_ADDR", &format!("0.0.0.0:{OTLP_PORT}"));
    env_value(y, "DAYTWO_RULES", RULES_DIR);
    env_value(y, "DAYTWO_KUBE", "on");
    if let Some(c) = &o.cluster_name {
        env_value(y, "DAYTWO_CLUSTER_NAME", c);
    }
    env_value(y, "DAYTWO_LOG_LEVEL", &o.log_level);
    // Secrets (DAYTWO_TOKEN, DAYTWO_WEBHOOK, DAYTWO_WEBHOOK_SECRET, …) come from an optional
    // Secret the operator creates; the manifests never hold one.
    y.push_str(
        "          envFrom:\n            - secretRef:\n                name: daytwo-collector\n                optional: true\n",
    );
    let _ = writeln!(
        y,
        "          ports:\n            - name: otlp-grpc\n              containerPort: {OTLP_PORT}\n              protocol: TCP\n            - name: http\n              containerPort: {HTTP_PORT}\n              protocol: TCP"
    );
    probes(y, "http");
    let _ = writeln!(
        y,
        "          resources:\n            requests:\n              cpu: {cpu}\n              memory: {mem}\n            limits:\n              cpu: {limit}\n              memory: {mem}",
        cpu = q(&o.collector_cpu),
        mem = q(&o.collector_memory),
        limit = q(&collector_cpu_limit(&o.collector_cpu)),
    );
    y.push_str(
        "          securityContext:\n            readOnlyRootFilesystem: true\n            allowPrivilegeEscalation: false\n            runAsNonRoot: true\n            capabilities:\n              drop: [ALL]\n",
    );
    let _ = writeln!(
        y,
        "          volumeMounts:\n            - name: data\n              mountPath: {DATA_DIR}\n            - name: rules\n              mountPath: {RULES_DIR}\n              readOnly: true"
    );
    y.push_str(
        "      volumes:\n        - name: data\n          persistentVolumeClaim:\n            claimName: daytwo-collector\n        - name: rules\n          configMap:\n            name: daytwo-rules\n",
    );
}

/// The collector's CPU limit: 2 cores (room for the burst of every agent flushing its queue
/// after a collector restart), or the request when that is higher (a limit below the request
/// is invalid).
fn collector_cpu_limit(request: &str) -> String {
    let millis = match request.strip_suffix('m') {
        Some(m) => m.parse::<f64>().ok(),
        None => request.parse::<f64>().ok().map(|c| c * 1000.0),
    };
    match millis {
        Some(m) if m <= 2000.0 => "2".to_string(),
        _ => request.to_string(),
    }
}

/// Liveness on /healthz (the process answers), readiness on /readyz (it can do its work).
fn probes(y: &mut String, port: &str) {
    let _ = writeln!(
        y,
        "          livenessProbe:\n            httpGet:\n              path: /healthz\n              port: {port}\n            initialDelaySeconds: 5\n            periodSeconds: 10\n            timeoutSeconds: 5\n            failureThreshold: 6\n          readinessProbe:\n            httpGet:\n              path: /readyz\n              port: {port}\n            periodSeconds: 10\n            timeoutSeconds: 5\n            failureThreshold: 3"
    );
}

fn agent_daemonset(y: &mut String, o: &ManifestOptions) {
    let ns = q(&o.namespace);
    y.push_str("---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: daytwo-agent\n");
    let _ = writeln!(y, "  namespace: {ns}");
    y.push_str("  labels:\n");
    labels(y, 4, Some("agent"));
    y.push_str("spec:\n  selector:\n    matchLabels:\n");
    selector(y, 6, "agent");
    y.push_str(
        "  updateStrategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxUnavailable: 10%\n",
    );
    y.push_str("  template:\n    metadata:\n      labels:\n");
    labels(y, 8, Some("agent"));
    y.push_str("    spec:\n      serviceAccountName: daytwo-agent\n");
    let _ = writeln!(
        y,
        "      priorityClassName: {}",
        q(o.priority_class.as_deref().unwrap_or(AGENT_PRIORITY_CLASS))
    );
    // Host network: /proc/net/dev then counts the node's interfaces, not the pod's, and
    // host.name is the node's. ClusterFirstWithHostNet keeps the collector's Service name
    // resolvable.
    y.push_str(
        "      hostNetwork: true\n      dnsPolicy: ClusterFirstWithHostNet\n      terminationGracePeriodSeconds: 30\n",
    );
    // Every node, tainted or not: a node that is NotReady or under pressure is exactly the
    // one to watch.
    y.push_str("      tolerations:\n        - operator: Exists\n");
    y.push_str("      containers:\n        - name: agent\n");
    let _ = writeln!(y, "          image: {}", q(&o.image));
    let _ = writeln!(
        y,
        "          imagePullPolicy: {}",
        o.image_pull_policy.as_str()
    );
    y.push_str("          args: [agent]\n          env:\n");
    env_node_name(y, "DAYTWO_NODE_NAME");
    env_node_name(y, "DAYTWO_HOST_NAME");
    env_value(y, "DAYTWO_KUBE", "on");
    env_value(
        y,
        "DAYTWO_COLLECTOR",
        &format!("http://daytwo-collector.{}.svc:{OTLP_PORT}", o.namespace),
    );
    env_value(
        y,
        "DAYTWO_AGENT_HTTP_ADDR",
        &format!("0.0.0.0:{AGENT_HTTP_PORT}"),
    );
    env_value(y, "DAYTWO_DATA_DIR", DATA_DIR);
    env_value(y, "DAYTWO_PROC_ROOT", "/host/proc");
    env_value(y, "DAYTWO_CGROUP_ROOT", "/host/sys/fs/cgroup");
    if o.no_kmsg {
        env_value(y, "DAYTWO_NO_KMSG", "true");
    } else {
        env_value(y, "DAYTWO_KMSG_PATH", "/dev/kmsg");
    }
    if let Some(c) = &o.cluster_name {
        env_value(y, "DAYTWO_CLUSTER_NAME", c);
    }
    env_value(y, "DAYTWO_LOG_LEVEL", &o.log_level);
    let _ = writeln!(
        y,
        "          ports:\n            - name: http-metrics\n              containerPort: {AGENT_HTTP_PORT}\n              protocol: TCP"
    );
    probes(y, "http-metrics");
    y.push_str(
        "          resources:\n            requests:\n              cpu: 50m\n              memory: 64Mi\n            limits:\n              cpu: \"1\"\n              memory: 256Mi\n",
    );
    if o.no_kmsg {
        // Root (uid 0) only to read root-owned pod logs and every cgroup; no capabilities.
        y.push_str(
            "          securityContext:\n            readOnlyRootFilesystem: true\n            allowPrivilegeEscalation: false\n            runAsUser: 0\n            capabilities:\n              drop: [ALL]\n            seccompProfile:\n              type: RuntimeDefault\n",
        );
    } else {
        // Privileged only to open /dev/kmsg: the device cgroup of an unprivileged container
        // denies it (as for node-problem-detector). docs/kubernetes.md, "Why the agent is
        // privileged"; --no-kmsg drops it.
        y.push_str(
            "          securityContext:\n            privileged: true\n            readOnlyRootFilesystem: true\n            runAsUser: 0\n",
        );
    }
    y.push_str("          volumeMounts:\n");
    let mut mounts: Vec<(&str, &str, &str, &str, bool)> = vec![
        // (volume, host path, mount path, hostPath type, read-only)
        (
            "pod-logs",
            "/var/log/pods",
            "/var/log/pods",
            "DirectoryOrCreate",
            true,
        ),
        (
            "container-logs",
            "/var/log/containers",
            "/var/log/containers",
            "DirectoryOrCreate",
            true,
        ),
        ("proc", "/proc", "/host/proc", "Directory", true),
        (
            "cgroup",
            "/sys/fs/cgroup",
            "/host/sys/fs/cgroup",
            "Directory",
            true,
        ),
    ];
    if !o.no_kmsg {
        mounts.push(("kmsg", "/dev/kmsg", "/dev/kmsg", "CharDevice", true));
    }
    mounts.push(("state", DATA_DIR, DATA_DIR, "DirectoryOrCreate", false));
    for (name, _, path, _, ro) in &mounts {
        let _ = writeln!(
            y,
            "            - name: {name}\n              mountPath: {path}"
        );
        if *ro {
            y.push_str("              readOnly: true\n");
        }
    }
    y.push_str("      volumes:\n");
    for (name, host, _, kind, _) in &mounts {
        let _ = writeln!(
            y,
            "        - name: {name}\n          hostPath:\n            path: {host}\n            type: {kind}"
        );
    }
}

/// `daytwo deploy …`.
pub fn run(args: DeployArgs, log_level: &str) -> Result<ExitCode> {
    match args.command {
        DeployCommand::Manifests(m) => print_manifests(m, log_level),
    }
}

fn print_manifests(a: ManifestsArgs, log_level: &str) -> Result<ExitCode> {
    let o = ManifestOptions {
        namespace: a.namespace,
        image: a.image.unwrap_or_else(default_image),
        image_pull_policy: a.image_pull_policy,
        storage_size: a.storage_size,
        storage_class: a.storage_class,
        cluster_name: a.cluster_name,
        log_level: log_level.to_string(),
        priority_class: a.priority_class,
        no_kmsg: a.no_kmsg,
        collector_cpu: a.collector_cpu,
        collector_memory: a.collector_memory,
    };
    o.validate().map_err(|e| usage(e.to_string()))?;
    let text = manifests(&o);
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn docs(o: &ManifestOptions) -> Vec<Value> {
        serde_saphyr::from_multiple::<Value>(&manifests(o))
            .expect("the manifests parse as YAML")
            .into_iter()
            .filter(|d| !d.is_null())
            .collect()
    }

    fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    #[test]
    fn default_options_are_valid_and_output_is_deterministic() {
        let o = ManifestOptions::default();
        o.validate().unwrap();
        assert_eq!(manifests(&o), manifests(&o));
        assert_eq!(o.image, format!("daytwo:{}", env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn every_document_parses_in_apply_order() {
        let d = docs(&ManifestOptions::default());
        let kinds: Vec<&str> = d.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds[0], "Namespace");
        assert_eq!(kinds.last(), Some(&"DaemonSet"));
        for want in [
            "PriorityClass",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "PersistentVolumeClaim",
            "Service",
            "Deployment",
        ] {
            assert!(kinds.contains(&want), "{want} missing from {kinds:?}");
        }
    }

    #[test]
    fn options_reach_the_objects() {
        let o = ManifestOptions {
            namespace: "ops".into(),
            image: "registry.example.com/daytwo:9".into(),
            image_pull_policy: ImagePullPolicy::Always,
            storage_size: "50Gi".into(),
            storage_class: Some("fast-ssd".into()),
            cluster_name: Some("prod: \"eu\" #1".into()),
            log_level: "debug,daytwo_agent=trace".into(),
            priority_class: Some("system-node-critical".into()),
            no_kmsg: false,
            collector_cpu: "1500m".into(),
            collector_memory: "2Gi".into(),
        };
        o.validate().unwrap();
        let d = docs(&o);
        assert!(
            !d.iter().any(|d| d["kind"] == "PriorityClass"),
            "an existing class is used, not created"
        );
        let ds = find(&d, "DaemonSet", "daytwo-agent");
        assert_eq!(ds["metadata"]["namespace"], "ops");
        let pod = &ds["spec"]["template"]["spec"];
        assert_eq!(pod["priorityClassName"], "system-node-critical");
        let c = &pod["containers"][0];
        assert_eq!(c["image"], "registry.example.com/daytwo:9");
        assert_eq!(c["imagePullPolicy"], "Always");
        let env = |name: &str| {
            c["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .map(|e| e["value"].clone())
        };
        // Quotes, colons and a hash survive as one string.
        assert_eq!(
            env("DAYTWO_CLUSTER_NAME"),
            Some(Value::from("prod: \"eu\" #1"))
        );
        assert_eq!(
            env("DAYTWO_LOG_LEVEL"),
            Some(Value::from("debug,daytwo_agent=trace"))
        );
        assert_eq!(
            env("DAYTWO_COLLECTOR"),
            Some(Value::from("http://daytwo-collector.ops.svc:4317"))
        );
        let pvc = find(&d, "PersistentVolumeClaim", "daytwo-collector");
        assert_eq!(pvc["spec"]["storageClassName"], "fast-ssd");
        assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "50Gi");
        let dep = find(&d, "Deployment", "daytwo-collector");
        let res = &dep["spec"]["template"]["spec"]["containers"][0]["resources"];
        assert_eq!(res["requests"]["cpu"], "1500m");
        assert_eq!(res["limits"]["memory"], "2Gi");
        let crb = find(&d, "ClusterRoleBinding", "daytwo-collector");
        assert_eq!(crb["subjects"][0]["namespace"], "ops");
    }

    #[test]
    fn no_kmsg_drops_privileged_and_the_device() {
        let o = ManifestOptions {
            no_kmsg: true,
            ..Default::default()
        };
        let text = manifests(&o);
        assert!(!text.contains("privileged: true"));
        assert!(!text.contains("/dev/kmsg"));
        let d = docs(&o);
        let c = &find(&d, "DaemonSet", "daytwo-agent")["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    }

    #[test]
    fn rules_configmap_holds_the_shipped_packs_verbatim() {
        let d = docs(&ManifestOptions::default());
        let cm = find(&d, "ConfigMap", "daytwo-rules");
        for f in daytwo_rules::BUILTIN_PACKS {
            let name = f.path.rsplit('/').next().unwrap();
            let got = cm["data"][name].as_str().unwrap();
            // Block scalars keep the text; trailing blank lines fold into one newline.
            assert_eq!(got.trim_end(), f.text.trim_end(), "{name}");
        }
        let sources: Vec<(String, String)> = cm["data"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let files: Vec<daytwo_rules::SourceFile> = sources
            .iter()
            .map(|(p, t)| daytwo_rules::SourceFile { path: p, text: t })
            .collect();
        daytwo_rules::RuleSet::compile(&files).expect("the ConfigMap's rules compile");
    }

    #[test]
    fn bad_options_name_the_flag() {
        type Edit = fn(&mut ManifestOptions);
        let cases: [(Edit, &str); 8] = [
            (|o| o.namespace = "Daytwo".into(), "--namespace"),
            (|o| o.namespace = "-x".into(), "--namespace"),
            (|o| o.image = "daytwo: 1".into(), "--image"),
            (|o| o.storage_size = "ten".into(), "--storage-size"),
            (|o| o.storage_size = "0Gi".into(), "--storage-size"),
            (
                |o| o.storage_class = Some("Fast_SSD".into()),
                "--storage-class",
            ),
            (|o| o.cluster_name = Some("a\nb".into()), "--cluster-name"),
            (|o| o.collector_memory = "1GB".into(), "--collector-memory"),
        ];
        for (set, flag) in cases {
            let mut o = ManifestOptions::default();
            set(&mut o);
            let e = o.validate().expect_err(flag).to_string();
            assert!(e.starts_with(flag), "{e}");
        }
    }

    #[test]
    fn cpu_limit_is_never_below_the_request() {
        assert_eq!(collector_cpu_limit("250m"), "2");
        assert_eq!(collector_cpu_limit("2"), "2");
        assert_eq!(collector_cpu_limit("2000m"), "2");
        assert_eq!(collector_cpu_limit("2.5"), "2.5");
        assert_eq!(collector_cpu_limit("4000m"), "4000m");
        // Forms not parsed here keep limit = request, which is always valid.
        assert_eq!(collector_cpu_limit("3k"), "3k");
    }

    proptest::proptest! {
        /// Whatever text passes validation comes back from the YAML exactly: no option can
        /// break out of its scalar.
        #[test]
        fn free_text_options_round_trip(
            cluster in "\\PC{1,40}",
            level in "[ -~]{1,30}",
            image in "[!-~&&[^\"']]{1,40}",
        ) {
            let o = ManifestOptions {
                cluster_name: Some(cluster.clone()),
                log_level: level.clone(),
                image: image.clone(),
                ..Default::default()
            };
            proptest::prop_assume!(o.validate().is_ok());
            let d = docs(&o);
            let c = &find(&d, "DaemonSet", "daytwo-agent")["spec"]["template"]["spec"]["containers"][0];
            let env = |n: &str| c["env"].as_array().unwrap().iter().find(|e| e["name"] == n).unwrap()["value"].clone();
            proptest::prop_assert_eq!(env("DAYTWO_CLUSTER_NAME"), Value::from(cluster));
            proptest::prop_assert_eq!(env("DAYTWO_LOG_LEVEL"), Value::from(level));
            proptest::prop_assert_eq!(c["image"].clone(), Value::from(image));
        }

        /// Every name the validator accepts gives parseable manifests in that namespace.
        #[test]
        fn valid_namespaces_give_valid_yaml(ns in "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?") {
            let o = ManifestOptions { namespace: ns.clone(), ..Default::default() };
            proptest::prop_assert!(o.validate().is_ok());
            for d in docs(&o) {
                let kind = d["kind"].as_str().unwrap_or("").to_string();
                let cluster_scoped = ["Namespace", "PriorityClass", "ClusterRole", "ClusterRoleBinding"];
                if !cluster_scoped.contains(&kind.as_str()) {
                    proptest::prop_assert_eq!(d["metadata"]["namespace"].as_str(), Some(ns.as_str()));
                }
            }
        }
    }

    #[test]
    fn quantities() {
        for ok in ["10Gi", "500m", "1", "1.5", "2G", "100Ki", "0.5"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "Gi", "1GB", "-1", "1.", ".5", "1e3", "0", "0.0Mi"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
