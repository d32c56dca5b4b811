//! A Service and the failing pod behind it, through the collector's pipeline with the shipped
//! rules: the signals are what `daytwo_k8s`'s mappers make of the recorded objects
//! (tests/fixtures/kubernetes), delivered in the orders an agent (the pod) and the collector's
//! EndpointSlice watch (the Service) can race into.

use daytwo_collector::pipeline::Pipeline;
use daytwo_k8s::k8s_openapi::api::core::v1::Pod;
use daytwo_k8s::k8s_openapi::api::discovery::v1::EndpointSlice;
use daytwo_k8s::map::endpoints::EndpointSliceMapper;
use daytwo_k8s::map::pod::PodMapper;
use daytwo_k8s::{Tracker, names};
use daytwo_model::{Incident, Signal, Timestamp};

mod common;
use common::{at, ctx, fixture, pipeline};

/// node-1's agent on the pod going from running to CrashLoopBackOff: the restart
/// (`container.terminated`) and the back-off (`container.waiting`).
fn pod_failure() -> (Signal, Signal) {
    let mut t = Tracker::new(PodMapper::new(ctx(Some("node-1"))));
    t.apply(&fixture::<Pod>("pods.json", "running"), at("14:10:00"));
    let out = t.apply(&fixture::<Pod>("pods.json", "crashloop"), at("14:10:40"));
    let find = |n: &str| out.iter().find(|s| s.name == n).cloned().unwrap();
    (
        find(names::CONTAINER_TERMINATED),
        find(names::CONTAINER_WAITING),
    )
}

/// The collector on the Service's slice losing its only ready endpoint.
fn endpoint_loss(now: Timestamp) -> Signal {
    let mut t = Tracker::new(EndpointSliceMapper::new(ctx(None)));
    t.init();
    t.apply(
        &fixture::<EndpointSlice>("endpointslices.json", "ready"),
        now,
    );
    t.init_done(now);
    let out = t.apply(
        &fixture::<EndpointSlice>("endpointslices.json", "not_ready"),
        now,
    );
    assert_eq!(out.len(), 1);
    out.into_iter().next().unwrap()
}

fn active(p: &Pipeline) -> Vec<Incident> {
    p.store().active_incidents().unwrap()
}

fn assert_one_incident_on_the_pod(p: &Pipeline) {
    let incs = active(p);
    assert_eq!(incs.len(), 1, "{incs:#?}");
    let inc = &incs[0];
    assert_eq!(
        inc.root_causes[0].entity.name, "shop/checkout-7d4b9c8f6-x2x9k/app",
        "{inc:#?}"
    );
    assert!(
        inc.root_causes
            .iter()
            .any(|h| h.rule == "kubernetes.service_backend_failing"),
        "{inc:#?}"
    );
    for n in [names::SERVICE_NO_ENDPOINTS, names::CONTAINER_WAITING] {
        assert!(inc.signals.iter().any(|s| s.name == n), "{n}: {inc:#?}");
    }
}

#[test]
fn the_pods_crash_loop_first_then_the_services_endpoint_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let (terminated, waiting) = pod_failure();
    p.ingest(vec![terminated, waiting]).unwrap();
    p.ingest(vec![endpoint_loss(at("14:10:45"))]).unwrap();
    assert_one_incident_on_the_pod(&p);
}

#[test]
fn the_restart_then_the_endpoint_loss_then_the_back_off() {
    // The usual race: the container exits (the agent reports the restart), the endpoint turns
    // not ready (the collector), and only then does the kubelet back off.
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let (terminated, waiting) = pod_failure();
    p.ingest(vec![terminated]).unwrap();
    p.ingest(vec![endpoint_loss(at("14:10:35"))]).unwrap();
    p.ingest(vec![waiting]).unwrap();
    assert_one_incident_on_the_pod(&p);
}

#[test]
fn the_service_behind_the_pod_is_in_the_topology() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let loss = endpoint_loss(at("14:10:45"));
    p.ingest(vec![loss.clone()]).unwrap();
    // The Service's signal has no host; its pod's node is where it ran.
    assert_eq!(p.topology().machines(&loss, loss.time), ["node-1"]);
}

#[test]
fn the_endpoint_loss_first_then_the_restart_then_the_back_off() {
    // The collector's EndpointSlice watch is faster than the node's agent: the Service's
    // endpoint loss arrives before any signal of the pod behind it.
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let (terminated, waiting) = pod_failure();
    p.ingest(vec![endpoint_loss(at("14:10:35"))]).unwrap();
    p.ingest(vec![terminated]).unwrap();
    p.ingest(vec![waiting]).unwrap();
    assert_one_incident_on_the_pod(&p);
}

#[test]
fn the_endpoint_loss_first_then_the_back_off_then_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let (terminated, waiting) = pod_failure();
    p.ingest(vec![endpoint_loss(at("14:10:35"))]).unwrap();
    p.ingest(vec![waiting]).unwrap();
    p.ingest(vec![terminated]).unwrap();
    assert_one_incident_on_the_pod(&p);
}

#[test]
fn a_resolved_service_incident_does_not_take_the_late_pod_failure() {
    // The Service's outage was resolved before the pod's crash arrived: the late match opens
    // an incident of its own; the resolved one stays as it was.
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let (terminated, waiting) = pod_failure();
    p.ingest(vec![endpoint_loss(at("14:10:35"))]).unwrap();
    let first = active(&p);
    assert_eq!(first.len(), 1, "{first:#?}");
    let resolved = p.resolve(&first[0].id, at("14:10:36")).unwrap();
    p.ingest(vec![terminated]).unwrap();
    p.ingest(vec![waiting]).unwrap();
    let now = active(&p);
    assert_eq!(now.len(), 1, "{now:#?}");
    assert_ne!(now[0].id, resolved.id);
    // Linked to the resolved one, whose signal (the endpoint loss) it holds too.
    assert!(
        now[0]
            .links
            .iter()
            .any(|l| l.relation == "related" && l.incident_id == resolved.id),
        "{:#?}",
        now[0].links
    );
    assert_eq!(
        now[0].root_causes[0].entity.name,
        "shop/checkout-7d4b9c8f6-x2x9k/app"
    );
    assert_eq!(
        p.store().get_incident(&resolved.id).unwrap().unwrap(),
        resolved
    );
}
