//! A PersistentVolumeClaim that fails and the pods that mount it, through the collector's
//! pipeline with the shipped rules: the signals are what the collector's watches make of the
//! recorded objects (tests/fixtures/kubernetes): the claim's `ProvisioningFailed` event (or
//! its `Lost` status), and the kubelet's `FailedMount` event about a Pending pod, whose claims
//! the collector's Pending-pod watch supplies (`daytwo.k8s.pod.claims`).

use daytwo_collector::pipeline::Pipeline;
use daytwo_k8s::k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};
use daytwo_k8s::map::event::EventMapper;
use daytwo_k8s::map::pod::{PendingPodClaims, PodClaims, PodMapper};
use daytwo_k8s::map::pvc::PvcMapper;
use daytwo_k8s::{Context, Tracker, names};
use daytwo_model::{EntityKind, Incident, Signal, Timestamp};

mod common;
use common::{at, ctx, fixture, pipeline};

/// The collector's event watch on the claim's `ProvisioningFailed` (14:10:31).
fn provisioning_failed() -> Signal {
    let e: Event = fixture("events.json", "provisioning_failed");
    let out = Tracker::new(EventMapper::new(ctx(None))).apply(&e, at("14:13:00"));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].name, names::VOLUME_CLAIM_FAILED);
    out.into_iter().next().unwrap()
}

/// The collector's PersistentVolumeClaim watch on the claim going from Bound to Lost.
fn claim_lost(now: Timestamp) -> Signal {
    let mut t = Tracker::new(PvcMapper::new(ctx(None)));
    t.apply(&fixture::<PersistentVolumeClaim>("pvcs.json", "bound"), now);
    let out = t.apply(&fixture::<PersistentVolumeClaim>("pvcs.json", "lost"), now);
    assert_eq!(out.len(), 1);
    out.into_iter().next().unwrap()
}

/// The collector's event watch on the kubelet's `FailedMount` for `pod` (14:12:33), with the
/// claims its Pending-pod watch knows of that pod.
fn failed_mount(pod: &Pod) -> Signal {
    let claims = PodClaims::new();
    Tracker::new(PendingPodClaims::new(claims.clone())).apply(pod, at("14:12:00"));
    let mut e: Event = fixture("events.json", "failed_mount_claim");
    let m = &pod.metadata;
    if m.name.as_deref() != Some("db-0") || m.namespace.as_deref() != Some("shop") {
        e.metadata.uid = Some(format!("event-of-{}", m.uid.clone().unwrap()));
        e.metadata.namespace = m.namespace.clone();
        e.involved_object.namespace = m.namespace.clone();
        e.involved_object.name = m.name.clone();
        e.involved_object.uid = m.uid.clone();
    }
    let out = Tracker::new(EventMapper::with_claims(ctx(None), claims)).apply(&e, at("14:13:00"));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].name, names::POD_VOLUME_FAILED);
    out.into_iter().next().unwrap()
}

fn db_0() -> Pod {
    fixture("pods.json", "mounts_claims")
}

/// Pod `db-1` in the claim's namespace, which mounts its own claim `data-db-1`.
fn db_1() -> Pod {
    let mut p = db_0();
    p.metadata.name = Some("db-1".into());
    p.metadata.uid = Some("d0000000-0000-4000-8000-000000000002".into());
    let vols = p.spec.as_mut().unwrap().volumes.as_mut().unwrap();
    vols.retain(|v| v.name != "scratch");
    vols[0].persistent_volume_claim.as_mut().unwrap().claim_name = "data-db-1".into();
    p
}

/// Pod `db-0` of namespace `staging`: its claim `data-db-0` is another than `shop`'s.
fn staging_db_0() -> Pod {
    let mut p = db_0();
    p.metadata.namespace = Some("staging".into());
    p.metadata.uid = Some("d0000000-0000-4000-8000-000000000003".into());
    p
}

fn active(p: &Pipeline) -> Vec<Incident> {
    p.store().active_incidents().unwrap()
}

fn claim_incident(p: &Pipeline) -> Incident {
    let incs = active(p);
    let on_claim: Vec<&Incident> = incs
        .iter()
        .filter(|i| {
            i.root_causes.first().is_some_and(|h| {
                h.entity.kind == EntityKind::Volume && h.entity.name == "shop/data-db-0"
            })
        })
        .collect();
    assert_eq!(on_claim.len(), 1, "{incs:#?}");
    on_claim[0].clone()
}

#[test]
fn a_claim_fails_then_its_pods_mount_fails_one_incident_rooted_on_the_claim() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    p.ingest(vec![provisioning_failed()]).unwrap();
    let mount = failed_mount(&db_0());
    assert_eq!(
        mount.resource[names::POD_CLAIMS],
        serde_json::json!(["data-db-0", "db-0-scratch"])
    );
    p.ingest(vec![mount]).unwrap();
    let incs = active(&p);
    assert_eq!(incs.len(), 1, "{incs:#?}");
    let inc = claim_incident(&p);
    let top = &inc.root_causes[0];
    assert_eq!(top.rule, "cascades.volume_claim_failed", "{inc:#?}");
    assert!(top.explanation.contains("pod shop/db-0"), "{top:#?}");
    assert!(top.explanation.contains("fast-ssd"), "{top:#?}");
    for n in [names::VOLUME_CLAIM_FAILED, names::POD_VOLUME_FAILED] {
        assert!(inc.signals.iter().any(|s| s.name == n), "{n}: {inc:#?}");
    }
    // The topology learnt the pod's claims from the event.
    let pod_signal = inc
        .signals
        .iter()
        .find(|s| s.name == names::POD_VOLUME_FAILED)
        .unwrap();
    assert_eq!(
        p.topology().claims(pod_signal, pod_signal.time),
        ["shop/data-db-0", "shop/db-0-scratch"]
    );
}

#[test]
fn a_lost_claim_then_its_pods_mount_fails_one_incident_rooted_on_the_claim() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    p.ingest(vec![claim_lost(at("14:11:00"))]).unwrap();
    p.ingest(vec![failed_mount(&db_0())]).unwrap();
    let inc = claim_incident(&p);
    assert_eq!(
        inc.root_causes[0].rule, "cascades.volume_claim_failed",
        "{inc:#?}"
    );
    assert!(
        inc.signals
            .iter()
            .any(|s| s.name == names::POD_VOLUME_FAILED)
    );
}

#[test]
fn the_claims_failure_arriving_after_the_pods_still_names_the_claim() {
    // The event watch delivers the pod's FailedMount before the claim's older
    // ProvisioningFailed (a re-list, or the PVC watch lagging): the late cause completes the
    // held trigger.
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    p.ingest(vec![failed_mount(&db_0())]).unwrap();
    p.ingest(vec![provisioning_failed()]).unwrap();
    let inc = claim_incident(&p);
    assert_eq!(
        inc.root_causes[0].rule, "cascades.volume_claim_failed",
        "{inc:#?}"
    );
    assert!(
        inc.signals
            .iter()
            .any(|s| s.name == names::POD_VOLUME_FAILED)
    );
    assert_eq!(active(&p).len(), 1, "{:#?}", active(&p));
}

/// Whether a `cascades.volume_claim_failed` hypothesis of any active incident names the claim
/// as the cause of pod `pod`'s (`NS/NAME`) failure.
fn claim_blamed_for(p: &Pipeline, pod: &str) -> bool {
    active(p).iter().any(|i| {
        i.root_causes.iter().any(|h| {
            h.rule == "cascades.volume_claim_failed"
                && h.explanation.contains(&format!("pod {pod},"))
        })
    })
}

#[test]
fn a_pod_that_mounts_another_claim_is_not_blamed_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    p.ingest(vec![provisioning_failed()]).unwrap();
    p.ingest(vec![failed_mount(&db_0())]).unwrap();
    assert!(claim_blamed_for(&p, "shop/db-0"));
    let other = failed_mount(&db_1());
    assert_eq!(
        other.resource[names::POD_CLAIMS],
        serde_json::json!(["data-db-1"])
    );
    p.ingest(vec![other]).unwrap();
    // db-1 fails in the same namespace at the same time, so the correlator may group it with
    // the claim's incident (host-less signals are grouped by namespace), but the claim is not
    // named as the cause of db-1's failure.
    assert!(!claim_blamed_for(&p, "shop/db-1"), "{:#?}", active(&p));
    assert_eq!(
        claim_incident(&p).root_causes[0].rule,
        "cascades.volume_claim_failed"
    );
}

#[test]
fn a_pod_that_mounts_a_same_named_claim_in_another_namespace_stays_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    p.ingest(vec![provisioning_failed()]).unwrap();
    let other = failed_mount(&staging_db_0());
    assert_eq!(
        other.resource[names::POD_CLAIMS],
        serde_json::json!(["data-db-0", "db-0-scratch"])
    );
    p.ingest(vec![other.clone()]).unwrap();
    let inc = claim_incident(&p);
    assert!(
        !inc.signals.iter().any(|s| s.id == other.id),
        "staging/db-0 mounts staging/data-db-0: {inc:#?}"
    );
    assert!(!claim_blamed_for(&p, "staging/db-0"), "{:#?}", active(&p));
}

#[test]
fn without_the_pending_pod_watch_the_claim_is_not_named() {
    // The same FailedMount event mapped without the pod's claims (the event seen before the
    // pod at start-up): no join to the claim, so the claim cascade does not fire. This is
    // what the Pending-pod watch is for.
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    p.ingest(vec![provisioning_failed()]).unwrap();
    let e: Event = fixture("events.json", "failed_mount_claim");
    let out = Tracker::new(EventMapper::new(ctx(None))).apply(&e, at("14:13:00"));
    assert!(!out[0].resource.contains_key(names::POD_CLAIMS));
    let id = out[0].id.clone();
    p.ingest(out).unwrap();
    for i in active(&p) {
        if i.signals.iter().any(|s| s.id == id) {
            assert!(
                !i.root_causes
                    .iter()
                    .any(|h| h.rule == "cascades.volume_claim_failed"),
                "{i:#?}"
            );
        }
    }
}

#[test]
fn an_event_without_claims_finds_them_in_the_topology() {
    // The event is mapped without the pod's claims (seen before the pod), but node-1's agent
    // reported the pod earlier, with its claims, in a signal that is no trigger of the cascade
    // (a ConfigMap error): the topology's pod → claim edge completes the join.
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    p.ingest(vec![provisioning_failed()]).unwrap();
    let mut pod = db_0();
    let waiting = pod
        .status
        .as_mut()
        .unwrap()
        .container_statuses
        .as_mut()
        .unwrap()[0]
        .state
        .as_mut()
        .unwrap()
        .waiting
        .as_mut()
        .unwrap();
    waiting.reason = Some("CreateContainerConfigError".into());
    waiting.message = Some("configmap \"db-config\" not found".into());
    let agent = Context {
        host: Some("node-1".into()),
        ..ctx(None)
    };
    let out = Tracker::new(PodMapper::new(agent)).apply(&pod, at("14:12:00"));
    assert_eq!(out.len(), 1);
    assert!(out[0].resource.contains_key(names::POD_CLAIMS));
    p.ingest(out).unwrap();
    assert!(!claim_blamed_for(&p, "shop/db-0"), "{:#?}", active(&p));

    let e: Event = fixture("events.json", "failed_mount_claim");
    let out = Tracker::new(EventMapper::new(ctx(None))).apply(&e, at("14:13:00"));
    assert!(!out[0].resource.contains_key(names::POD_CLAIMS));
    p.ingest(out).unwrap();
    assert!(claim_blamed_for(&p, "shop/db-0"), "{:#?}", active(&p));
}
