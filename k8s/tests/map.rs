//! The pure mapper on real Kubernetes JSON (tests/fixtures/kubernetes, see its README): one
//! test per failure reason, with its near misses.

use daytwo_k8s::map::config::{ConfigMapMapper, SecretMapper};
use daytwo_k8s::map::endpoints::EndpointSliceMapper;
use daytwo_k8s::map::event::EventMapper;
use daytwo_k8s::map::hpa::HpaMapper;
use daytwo_k8s::map::job::JobMapper;
use daytwo_k8s::map::node::NodeMapper;
use daytwo_k8s::map::pod::PodMapper;
use daytwo_k8s::map::pvc::PvcMapper;
use daytwo_k8s::map::workload::{DeploymentMapper, ReplicaSetMapper};
use daytwo_k8s::{Context, Tracker, names};
use daytwo_model::{EntityKind, Severity, Signal, Timestamp};
use serde_json::Value;

mod common;
use common::fixture;

/// 14:31 on the fixtures' day: every fixture occurrence is within 15 minutes or older.
fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-25T14:31:00Z").unwrap()
}

fn ctx() -> Context {
    Context {
        cluster: Some("prod-eu".into()),
        host: Some("node-1".into()),
        max_age: std::time::Duration::from_secs(3600),
    }
}

fn attr<'a>(s: &'a Signal, k: &str) -> &'a Value {
    s.attr(k)
        .unwrap_or_else(|| panic!("{} has no {k}: {s:#?}", s.name))
}

fn names_of(sigs: &[Signal]) -> Vec<&str> {
    sigs.iter().map(|s| s.name.as_str()).collect()
}

fn pods(states: &[&str]) -> Vec<Vec<Signal>> {
    let mut t = Tracker::new(PodMapper::new(ctx()));
    states
        .iter()
        .map(|s| t.apply(&fixture("pods.json", s), now()))
        .collect()
}

#[test]
fn running_pod_is_quiet() {
    assert!(pods(&["running", "running"]).iter().all(|s| s.is_empty()));
}

#[test]
fn crash_loop_back_off_names_the_container_owner_and_last_exit() {
    let out = pods(&["running", "crashloop"]);
    assert!(out[0].is_empty());
    let sigs = &out[1];
    let w = sigs
        .iter()
        .find(|s| s.name == names::CONTAINER_WAITING)
        .unwrap();
    assert_eq!(attr(w, names::WAITING_REASON), "CrashLoopBackOff");
    assert_eq!(attr(w, names::RESTART_COUNT), 3);
    assert_eq!(attr(w, names::LAST_TERMINATED_REASON), "Error");
    assert_eq!(attr(w, names::EXIT_CODE), 1);
    assert_eq!(w.entity.kind, EntityKind::Container);
    assert_eq!(w.entity.name, "shop/checkout-7d4b9c8f6-x2x9k/app");
    assert_eq!(w.entity.attributes[names::CONTAINER], "app");
    assert_eq!(w.entity.attributes[names::CLUSTER], "prod-eu");
    assert_eq!(w.resource[names::DEPLOYMENT], "checkout");
    assert_eq!(w.resource[names::REPLICASET], "checkout-7d4b9c8f6");
    assert_eq!(w.resource[names::NODE], "node-1");
    assert_eq!(w.resource["k8s.pod.label.app"], "checkout");
    assert_eq!(w.severity, Severity::Warning);
    // The restart that led there is reported too (restart count 3, exit code 1).
    let t = sigs
        .iter()
        .find(|s| s.name == names::CONTAINER_TERMINATED)
        .unwrap();
    assert_eq!(attr(t, names::LAST_TERMINATED_REASON), "Error");
    assert_eq!(
        t.time,
        Timestamp::parse_rfc3339("2026-11-25T14:10:30Z").unwrap()
    );
    assert_eq!(sigs.len(), 2, "{:?}", names_of(sigs));
}

#[test]
fn crash_loop_seen_first_is_reported_at_first_sight() {
    let out = pods(&["crashloop"]);
    assert!(names_of(&out[0]).contains(&names::CONTAINER_WAITING));
}

#[test]
fn oom_killed_restart_is_critical_with_exit_code_137() {
    let out = pods(&["running", "oomkilled"]);
    assert_eq!(names_of(&out[1]), [names::CONTAINER_TERMINATED]);
    let s = &out[1][0];
    assert_eq!(attr(s, names::LAST_TERMINATED_REASON), "OOMKilled");
    assert_eq!(attr(s, names::EXIT_CODE), 137);
    assert_eq!(s.severity, Severity::Critical);
}

#[test]
fn an_old_restart_is_not_replayed_at_first_sight() {
    let mut c = ctx();
    c.max_age = std::time::Duration::from_secs(60);
    let mut t = Tracker::new(PodMapper::new(c));
    // Finished 14:12, seen first at 14:31 with a one-minute max age: history, not news.
    assert!(
        t.apply(&fixture("pods.json", "oomkilled"), now())
            .is_empty()
    );
}

#[test]
fn image_pull_and_config_errors_are_waiting_reasons() {
    for (state, reason) in [
        ("image_pull_backoff", "ImagePullBackOff"),
        ("err_image_pull", "ErrImagePull"),
        ("config_error", "CreateContainerConfigError"),
    ] {
        let out = pods(&["running", state]);
        assert_eq!(names_of(&out[1]), [names::CONTAINER_WAITING], "{state}");
        assert_eq!(attr(&out[1][0], names::WAITING_REASON), reason);
    }
    let out = pods(&["running", "config_error"]);
    assert_eq!(
        attr(&out[1][0], names::MESSAGE),
        "configmap \"checkout-config\" not found"
    );
}

#[test]
fn pull_back_off_and_err_image_pull_alternating_yield_two_signals_only() {
    let out = pods(&[
        "err_image_pull",
        "image_pull_backoff",
        "err_image_pull",
        "image_pull_backoff",
    ]);
    assert_eq!(out.iter().map(Vec::len).sum::<usize>(), 2);
}

#[test]
fn readiness_lost_while_running_is_a_probe_failure() {
    let out = pods(&["running", "not_ready"]);
    assert_eq!(names_of(&out[1]), [names::CONTAINER_PROBE_FAILED]);
    assert_eq!(attr(&out[1][0], names::PROBE), "readiness");
    // Near miss: a pod first seen not ready (still starting) is not a probe failure.
    assert!(pods(&["not_ready"])[0].is_empty());
}

#[test]
fn eviction_and_unschedulable() {
    let out = pods(&["running", "evicted"]);
    assert_eq!(names_of(&out[1]), [names::POD_EVICTED]);
    assert!(
        attr(&out[1][0], names::MESSAGE)
            .as_str()
            .unwrap()
            .contains("low on resource: memory")
    );
    assert_eq!(out[1][0].entity.kind, EntityKind::Pod);
    let out = pods(&["unschedulable", "unschedulable"]);
    assert_eq!(names_of(&out[0]), [names::POD_UNSCHEDULABLE]);
    assert!(out[1].is_empty());
}

#[test]
fn a_restart_with_running_container_is_reported_once() {
    let out = pods(&["running", "restarted", "restarted"]);
    assert_eq!(names_of(&out[1]), [names::CONTAINER_TERMINATED]);
    assert_eq!(attr(&out[1][0], names::RESTART_COUNT), 4);
    assert!(out[2].is_empty());
}

#[test]
fn ids_do_not_depend_on_now_or_the_watcher() {
    let a = Tracker::new(PodMapper::new(ctx())).apply(&fixture("pods.json", "crashloop"), now());
    let b = Tracker::new(PodMapper::new(ctx())).apply(
        &fixture("pods.json", "crashloop"),
        now().plus(std::time::Duration::from_secs(30)),
    );
    let ids = |v: &[Signal]| v.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b));
}

fn nodes(states: &[&str]) -> Vec<Vec<Signal>> {
    let mut t = Tracker::new(NodeMapper::new(ctx()));
    states
        .iter()
        .map(|s| t.apply(&fixture("nodes.json", s), now()))
        .collect()
}

#[test]
fn node_not_ready_then_ready_again() {
    let out = nodes(&[
        "ready",
        "heartbeat",
        "not_ready",
        "not_ready",
        "ready_again",
    ]);
    assert!(
        out[0].is_empty() && out[1].is_empty(),
        "heartbeats are quiet"
    );
    let bad = &out[2];
    let ready = bad
        .iter()
        .find(|s| s.attributes[names::CONDITION_TYPE] == "Ready")
        .unwrap();
    assert_eq!(ready.name, names::NODE_CONDITION);
    assert_eq!(attr(ready, names::CONDITION_STATUS), "Unknown");
    assert_eq!(attr(ready, names::REASON), "NodeStatusUnknown");
    assert_eq!(ready.entity.kind, EntityKind::Node);
    assert_eq!(ready.entity.attributes[names::NODE], "node-1");
    assert_eq!(ready.severity, Severity::Critical);
    // Unknown pressure conditions are not "True": only Ready is bad.
    assert_eq!(bad.len(), 1, "{:?}", names_of(bad));
    assert!(out[3].is_empty());
    assert_eq!(names_of(&out[4]), [names::NODE_CONDITION_CLEARED]);
}

#[test]
fn pressure_and_custom_conditions() {
    let out = nodes(&["ready", "memory_pressure"]);
    assert_eq!(names_of(&out[1]), [names::NODE_CONDITION]);
    assert_eq!(
        out[1][0].attributes[names::CONDITION_TYPE],
        "MemoryPressure"
    );
    assert_eq!(out[1][0].severity, Severity::Warning);
    let out = nodes(&["ready", "disk_pressure"]);
    assert_eq!(out[1][0].attributes[names::CONDITION_TYPE], "DiskPressure");
    let out = nodes(&["kernel_deadlock"]);
    let types: Vec<&Value> = out[0]
        .iter()
        .map(|s| &s.attributes[names::CONDITION_TYPE])
        .collect();
    // node-problem-detector's KernelDeadlock=True is bad; ReadonlyFilesystem=False is fine.
    assert_eq!(types, ["KernelDeadlock"]);
}

#[test]
fn cordon_is_a_change() {
    let out = nodes(&["ready", "cordoned"]);
    assert_eq!(names_of(&out[1]), [names::CHANGE]);
    assert_eq!(out[1][0].attributes[names::CHANGE_KIND], "cordon");
    // Near miss: a node first seen cordoned is not a change we saw happen.
    assert!(nodes(&["cordoned"])[0].is_empty());
}

#[test]
fn agent_and_collector_report_a_node_transition_with_one_id() {
    let mut collector_ctx = ctx();
    collector_ctx.host = None;
    let a = Tracker::new(NodeMapper::new(ctx())).apply(&fixture("nodes.json", "not_ready"), now());
    let c = Tracker::new(NodeMapper::new(collector_ctx))
        .apply(&fixture("nodes.json", "not_ready"), now());
    assert_eq!(a[0].id, c[0].id);
}

fn event(name: &str) -> Vec<Signal> {
    Tracker::new(EventMapper::new(ctx())).apply(&fixture("events.json", name), now())
}

#[test]
fn warning_events_map_to_the_same_names_as_object_states() {
    type Case<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);
    let cases: &[Case] = &[
        (
            "backoff",
            names::CONTAINER_WAITING,
            Some((names::WAITING_REASON, "CrashLoopBackOff")),
        ),
        (
            "pull_backoff",
            names::CONTAINER_WAITING,
            Some((names::WAITING_REASON, "ImagePullBackOff")),
        ),
        (
            "err_image_pull",
            names::CONTAINER_WAITING,
            Some((names::WAITING_REASON, "ErrImagePull")),
        ),
        (
            "config_error",
            names::CONTAINER_WAITING,
            Some((names::WAITING_REASON, "CreateContainerConfigError")),
        ),
        (
            "unhealthy",
            names::CONTAINER_PROBE_FAILED,
            Some((names::PROBE, "readiness")),
        ),
        (
            "liveness",
            names::CONTAINER_PROBE_FAILED,
            Some((names::PROBE, "liveness")),
        ),
        ("failed_scheduling", names::POD_UNSCHEDULABLE, None),
        ("evicted", names::POD_EVICTED, None),
        ("failed_mount", names::POD_VOLUME_FAILED, None),
        ("sandbox", names::POD_SANDBOX_FAILED, None),
        ("provisioning_failed", names::VOLUME_CLAIM_FAILED, None),
        ("hpa_metrics", names::HPA_UNABLE_TO_SCALE, None),
        ("rs_failed_create", names::REPLICA_FAILURE, None),
        ("job_backoff", names::JOB_FAILED, None),
        ("node_npd", names::WARNING_EVENT, None),
    ];
    for (fixture_name, want, attr_want) in cases {
        let sigs = event(fixture_name);
        assert_eq!(names_of(&sigs), [*want], "{fixture_name}");
        if let Some((k, v)) = attr_want {
            assert_eq!(sigs[0].attributes[*k], *v, "{fixture_name}");
        }
    }
    let s = &event("backoff")[0];
    assert_eq!(s.entity.kind, EntityKind::Container);
    assert_eq!(s.entity.attributes[names::CONTAINER], "app");
    assert_eq!(s.resource[names::NODE], "node-1");
    assert_eq!(s.attributes[names::EVENT_COUNT], 5);
    let s = &event("rs_failed_create")[0];
    assert_eq!(s.entity.kind, EntityKind::Workload);
    assert_eq!(s.entity.attributes[names::REPLICASET], "checkout-7d4b9c8f6");
}

#[test]
fn the_container_entity_of_an_event_equals_the_pod_mappers() {
    let from_event = &event("backoff")[0];
    let from_pod = pods(&["crashloop"]).remove(0);
    let w = from_pod
        .iter()
        .find(|s| s.name == names::CONTAINER_WAITING)
        .unwrap();
    assert_eq!(from_event.entity.key(), w.entity.key());
}

#[test]
fn normal_old_and_updated_events_are_quiet() {
    assert!(event("normal").is_empty());
    let mut c = ctx();
    c.max_age = std::time::Duration::from_secs(60);
    assert!(
        Tracker::new(EventMapper::new(c))
            .apply(&fixture("events.json", "backoff"), now())
            .is_empty()
    );
    let mut t = Tracker::new(EventMapper::new(ctx()));
    let mut e: k8s_openapi::api::core::v1::Event = fixture("events.json", "backoff");
    assert_eq!(t.apply(&e, now()).len(), 1);
    e.count = Some(6);
    assert!(t.apply(&e, now()).is_empty(), "a count bump is not news");
}

#[test]
fn rollout_reports_image_memory_and_env_fields() {
    let mut t = Tracker::new(DeploymentMapper::new(ctx()));
    assert!(
        t.apply(&fixture("deployments.json", "v2_0"), now())
            .is_empty()
    );
    assert!(
        t.apply(&fixture("deployments.json", "status_only"), now())
            .is_empty()
    );
    let out = t.apply(&fixture("deployments.json", "v2_1"), now());
    assert_eq!(names_of(&out), [names::CHANGE]);
    let s = &out[0];
    assert_eq!(s.attributes[names::CHANGE_KIND], "rollout");
    assert_eq!(
        s.attributes[names::CHANGE_FIELDS],
        serde_json::json!([
            "spec.template.spec.containers[app].image",
            "spec.template.spec.containers[app].resources.limits.memory",
            "spec.template.spec.containers[app].env[LOG_LEVEL]"
        ])
    );
    assert_eq!(
        s.attributes[names::IMAGE_BEFORE],
        "registry.example/shop/checkout:v2.0"
    );
    assert_eq!(
        s.attributes[names::IMAGE_AFTER],
        "registry.example/shop/checkout:v2.1"
    );
    assert_eq!(s.attributes[names::MEMORY_LIMIT_BEFORE], 536_870_912);
    assert_eq!(s.attributes[names::MEMORY_LIMIT_AFTER], 268_435_456);
    assert_eq!(s.entity.kind, EntityKind::Workload);
    assert_eq!(s.entity.attributes[names::DEPLOYMENT], "checkout");
    // The env value itself never leaves the mapper.
    assert!(!serde_json::to_string(s).unwrap().contains("debug"));
    let out = t.apply(&fixture("deployments.json", "scaled"), now());
    assert_eq!(out[0].attributes[names::CHANGE_KIND], "scale");
    assert_eq!(out[0].attributes[names::REPLICAS_BEFORE], 3);
    assert_eq!(out[0].attributes[names::REPLICAS_AFTER], 5);
}

#[test]
fn restart_rollout_and_stuck_rollout() {
    let mut t = Tracker::new(DeploymentMapper::new(ctx()));
    t.apply(&fixture("deployments.json", "v2_0"), now());
    let out = t.apply(&fixture("deployments.json", "restarted"), now());
    assert_eq!(
        out[0].attributes[names::CHANGE_FIELDS],
        serde_json::json!(["spec.template"])
    );
    let mut t = Tracker::new(DeploymentMapper::new(ctx()));
    let out = t.apply(&fixture("deployments.json", "stuck"), now());
    assert_eq!(names_of(&out), [names::ROLLOUT_STUCK]);
    assert_eq!(out[0].attributes[names::REASON], "ProgressDeadlineExceeded");
}

#[test]
fn replicaset_failure_but_no_change_for_owned_replicasets() {
    let mut t = Tracker::new(ReplicaSetMapper::new(ctx()));
    let out = t.apply(&fixture("replicasets.json", "failed_create"), now());
    assert_eq!(names_of(&out), [names::REPLICA_FAILURE]);
    assert!(
        out[0].attributes[names::MESSAGE]
            .as_str()
            .unwrap()
            .contains("exceeded quota")
    );
}

#[test]
fn config_changes_carry_hashes_never_values() {
    let mut t = Tracker::new(ConfigMapMapper::new(ctx()));
    assert!(
        t.apply(&fixture("config.json", "configmap_v1"), now())
            .is_empty()
    );
    let out = t.apply(&fixture("config.json", "configmap_v2"), now());
    assert_eq!(names_of(&out), [names::CHANGE]);
    assert_eq!(out[0].attributes[names::CHANGE_KIND], "config");
    assert_eq!(
        out[0].attributes[names::CHANGE_FIELDS],
        serde_json::json!(["data[TIMEOUT_MS]"])
    );
    assert_eq!(
        out[0].entity.attributes[names::CONFIGMAP],
        "checkout-config"
    );
    let text = serde_json::to_string(&out).unwrap();
    assert!(
        !text.contains("\"200\"") && !text.contains("2000"),
        "{text}"
    );
    let mut t = Tracker::new(SecretMapper::new(ctx()));
    t.apply(&fixture("config.json", "secret_v1"), now());
    let out = t.apply(&fixture("config.json", "secret_v2"), now());
    assert_eq!(
        out[0].attributes[names::CHANGE_FIELDS],
        serde_json::json!(["data[password]"])
    );
    let text = serde_json::to_string(&out).unwrap();
    assert!(
        !text.contains("czNjcjN0") && !text.contains("s3cr3t"),
        "{text}"
    );
}

#[test]
fn job_failed_hpa_unable_pvc_lost() {
    let mut t = Tracker::new(JobMapper::new(ctx()));
    assert!(t.apply(&fixture("jobs.json", "running"), now()).is_empty());
    let out = t.apply(&fixture("jobs.json", "failed"), now());
    assert_eq!(names_of(&out), [names::JOB_FAILED]);
    assert_eq!(out[0].attributes[names::REASON], "BackoffLimitExceeded");
    assert_eq!(out[0].resource[names::CRONJOB], "nightly-report");

    let mut t = Tracker::new(HpaMapper::new(ctx()));
    assert!(t.apply(&fixture("hpas.json", "healthy"), now()).is_empty());
    let out = t.apply(&fixture("hpas.json", "failed_get_resource_metric"), now());
    assert_eq!(names_of(&out), [names::HPA_UNABLE_TO_SCALE]);
    assert_eq!(out[0].attributes[names::REASON], "FailedGetResourceMetric");
    assert_eq!(
        out[0].attributes[names::SCALE_TARGET],
        "Deployment/checkout"
    );

    let mut t = Tracker::new(PvcMapper::new(ctx()));
    assert!(t.apply(&fixture("pvcs.json", "pending"), now()).is_empty());
    assert!(t.apply(&fixture("pvcs.json", "bound"), now()).is_empty());
    let out = t.apply(&fixture("pvcs.json", "lost"), now());
    assert_eq!(names_of(&out), [names::VOLUME_CLAIM_FAILED]);
    assert_eq!(out[0].entity.kind, EntityKind::Volume);
}

#[test]
fn service_without_ready_endpoints_and_back() {
    let mut t = Tracker::new(EndpointSliceMapper::new(ctx()));
    let s = |n: &str| -> k8s_openapi::api::discovery::v1::EndpointSlice {
        fixture("endpointslices.json", n)
    };
    t.init();
    assert!(t.apply(&s("ready"), now()).is_empty());
    assert!(t.init_done(now()).is_empty());
    let out = t.apply(&s("not_ready"), now());
    assert_eq!(names_of(&out), [names::SERVICE_NO_ENDPOINTS]);
    assert_eq!(out[0].entity.kind, EntityKind::Service);
    assert_eq!(out[0].entity.attributes[names::SERVICE], "checkout");
    assert!(out[0].message.contains("Pod/checkout-7d4b9c8f6-x2x9k"));
    // The pods behind the Service, for rules and the collector's Service → pod topology.
    assert_eq!(
        out[0].attributes[names::ENDPOINT_PODS],
        serde_json::json!(["checkout-7d4b9c8f6-x2x9k"])
    );
    assert_eq!(
        out[0].attributes[names::ENDPOINT_POD_UIDS],
        serde_json::json!(["5f0c9a8e-2b1d-4c3e-9f7a-1a2b3c4d5e6f"])
    );
    assert_eq!(
        out[0].attributes[names::ENDPOINT_NODES],
        serde_json::json!(["node-1"])
    );
    assert!(
        t.apply(&s("empty"), now()).is_empty(),
        "still none: no repeat"
    );
    let out = t.apply(&s("second_ready"), now());
    assert_eq!(names_of(&out), [names::SERVICE_ENDPOINTS_RESTORED]);
}

#[test]
fn a_relist_judges_a_service_after_all_its_slices() {
    let mut t = Tracker::new(EndpointSliceMapper::new(ctx()));
    let s = |n: &str| -> k8s_openapi::api::discovery::v1::EndpointSlice {
        fixture("endpointslices.json", n)
    };
    t.init();
    // The empty slice alone would look like an outage; its sibling has a ready endpoint.
    assert!(t.apply(&s("empty"), now()).is_empty());
    assert!(t.apply(&s("second_ready"), now()).is_empty());
    assert!(t.init_done(now()).is_empty());
    // A re-list that no longer has the ready sibling: deleted while we were away.
    t.init();
    t.apply(&s("empty"), now());
    let out = t.init_done(now());
    assert_eq!(names_of(&out), [names::SERVICE_NO_ENDPOINTS]);
}

#[test]
fn pod_meta_names_containers_by_the_id_their_cgroups_carry() {
    use daytwo_k8s::map::pod::PodMeta;
    let pod: k8s_openapi::api::core::v1::Pod = fixture("pods.json", "running");
    let m = PodMeta::from_pod(&pod);
    let id = "8c2b6f1e0d9a7c5b3e1f2d4a6c8b0e9f7d5a3c1b2e4f6a8d0c9b7e5f3a1d2c4b";
    assert_eq!(m.container_name(id), Some("app"), "runtime prefix stripped");
    assert_eq!(m.container_name(&format!("containerd://{id}")), None);
    assert_eq!(m.container_name(&id[..12]), None, "ids match whole");
    // A container that never started has no id: nothing to name.
    let pending: k8s_openapi::api::core::v1::Pod = fixture("pods.json", "image_pull_backoff");
    assert!(PodMeta::from_pod(&pending).containers.is_empty());
}

#[test]
fn pod_meta_lists_the_claims_its_volumes_mount() {
    use daytwo_k8s::map::pod::PodMeta;
    let pod: k8s_openapi::api::core::v1::Pod = fixture("pods.json", "mounts_claims");
    let m = PodMeta::from_pod(&pod);
    // A persistentVolumeClaim volume names its claim; a generic ephemeral volume's claim is
    // `<pod>-<volume>`; configMap and projected volumes are no claims.
    assert_eq!(m.claims, ["data-db-0", "db-0-scratch"]);
    let r = m.resource(&ctx());
    assert_eq!(
        r[names::POD_CLAIMS],
        serde_json::json!(["data-db-0", "db-0-scratch"])
    );
    // A pod without claims carries no attribute.
    let plain: k8s_openapi::api::core::v1::Pod = fixture("pods.json", "running");
    let m = PodMeta::from_pod(&plain);
    assert!(m.claims.is_empty());
    assert!(!m.resource(&ctx()).contains_key(names::POD_CLAIMS));
}

#[test]
fn a_pod_signal_carries_the_claims_of_its_pod() {
    let mut t = Tracker::new(PodMapper::new(ctx()));
    let mut pod: k8s_openapi::api::core::v1::Pod = fixture("pods.json", "mounts_claims");
    let st = pod
        .status
        .as_mut()
        .unwrap()
        .container_statuses
        .as_mut()
        .unwrap();
    st[0]
        .state
        .as_mut()
        .unwrap()
        .waiting
        .as_mut()
        .unwrap()
        .reason = Some("CreateContainerConfigError".into());
    let out = t.apply(&pod, now());
    assert_eq!(names_of(&out), [names::CONTAINER_WAITING]);
    assert_eq!(
        out[0].resource[names::POD_CLAIMS],
        serde_json::json!(["data-db-0", "db-0-scratch"])
    );
}

#[test]
fn events_about_a_pending_pod_carry_its_claims_from_the_pending_pod_watch() {
    use daytwo_k8s::map::pod::{PendingPodClaims, PodClaims};
    let claims = PodClaims::new();
    let mut pods = Tracker::new(PendingPodClaims::new(claims.clone()));
    let pod: k8s_openapi::api::core::v1::Pod = fixture("pods.json", "mounts_claims");
    assert!(
        pods.apply(&pod, now()).is_empty(),
        "the watch emits nothing"
    );
    assert_eq!(claims.get("shop", "db-0"), ["data-db-0", "db-0-scratch"]);
    // A pending pod without claims is not held.
    let plain: k8s_openapi::api::core::v1::Pod = fixture("pods.json", "unschedulable");
    pods.apply(&plain, now());
    assert_eq!(claims.len(), 1);

    let event: k8s_openapi::api::core::v1::Event = fixture("events.json", "failed_mount_claim");
    let out = Tracker::new(EventMapper::with_claims(ctx(), claims.clone())).apply(&event, now());
    assert_eq!(names_of(&out), [names::POD_VOLUME_FAILED]);
    assert_eq!(
        out[0].resource[names::POD_CLAIMS],
        serde_json::json!(["data-db-0", "db-0-scratch"])
    );
    // An event about another pod gets none.
    let other: k8s_openapi::api::core::v1::Event = fixture("events.json", "failed_mount");
    let out = Tracker::new(EventMapper::with_claims(ctx(), claims.clone())).apply(&other, now());
    assert!(!out[0].resource.contains_key(names::POD_CLAIMS));
    // The pod left Pending (the watch's field selector sends it as deleted): forgotten.
    pods.delete(&pod, now());
    assert!(claims.get("shop", "db-0").is_empty());
    assert!(claims.is_empty());
    let out = Tracker::new(EventMapper::with_claims(ctx(), claims)).apply(&event, now());
    assert!(!out[0].resource.contains_key(names::POD_CLAIMS));
}
