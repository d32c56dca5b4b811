//! The configuration analyzers (k8sgpt's Ingress, NetworkPolicy, PodDisruptionBudget, CronJob,
//! StatefulSet and Deployment analyzers, `daytwo_k8s::map::cluster`) on real Kubernetes JSON
//! (tests/fixtures/kubernetes, see its README), fed through the same trackers and index the
//! collector's watches use. Each finding: a positive case, a near miss, emitted once, cleared
//! once.

use daytwo_k8s::map::cluster::{
    Analyzer, AnalyzerConfig, ClusterIndex, Indexable, Indexing, Quiet, index_only,
};
use daytwo_k8s::map::config::SecretMapper;
use daytwo_k8s::map::job::JobMapper;
use daytwo_k8s::map::workload::DeploymentMapper;
use daytwo_k8s::{Context, Mapper, Tracker, names};
use daytwo_model::{EntityKind, Severity, Signal, Timestamp};
use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::Value;
use std::time::Duration;

mod common;
use common::fixture;

fn at(hms: &str) -> Timestamp {
    Timestamp::parse_rfc3339(&format!("2026-11-25T{hms}Z")).unwrap()
}

fn ctx() -> Context {
    Context {
        cluster: Some("prod-eu".into()),
        host: None,
        max_age: Duration::from_secs(900),
    }
}

/// One watch of the collector: a tracker over an indexing mapper.
struct W<M: Mapper>(Tracker<M>);

impl<M: Mapper> W<M> {
    /// Lists `objects` (a complete list: the kind counts as listed afterwards).
    fn list(&mut self, objects: &[M::Object], now: Timestamp) -> Vec<Signal> {
        self.0.init();
        let mut out = Vec::new();
        for o in objects {
            out.extend(self.0.apply(o, now));
        }
        out.extend(self.0.init_done(now));
        out
    }
}

fn quiet<T>(index: &ClusterIndex) -> W<Indexing<Quiet<T>>>
where
    T: Indexable
        + k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
{
    W(Tracker::new(index_only::<T>(index)))
}

fn findings(sigs: &[Signal]) -> Vec<(String, String, String)> {
    let mut v: Vec<(String, String, String)> = sigs
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                s.attributes[names::FINDING].as_str().unwrap().to_string(),
                s.attributes
                    .get(names::FINDING_DETAIL)
                    .and_then(|d| d.as_str())
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn f(name: &str, code: &str, detail: &str) -> (String, String, String) {
    (name.into(), code.into(), detail.into())
}

const M: &str = names::MISCONFIGURATION;
const C: &str = names::MISCONFIGURATION_CLEARED;

#[test]
fn ingress_class_backend_service_and_tls_secret() {
    let index = ClusterIndex::new();
    let mut a = Analyzer::new(ctx(), index.clone(), AnalyzerConfig::default());
    let now = at("14:30:00");
    let mut ingresses = quiet::<Ingress>(&index);
    let mut services = quiet::<Service>(&index);
    let mut classes = quiet::<IngressClass>(&index);
    // Secrets are watched for changes already; the index rides on that watch.
    let mut secrets = W(Tracker::new(Indexing::new(
        SecretMapper::new(ctx()),
        index.clone(),
    )));
    ingresses.list(&[fixture("ingresses.json", "broken")], now);
    // Nothing is judged against kinds not listed yet: no false "not found".
    assert!(a.tick(now).is_empty());
    services.list(&[fixture("services.json", "checkout")], now);
    classes.list(&[fixture("ingressclasses.json", "nginx")], now);
    secrets.list(&[fixture::<Secret>("config.json", "secret_tls")], now);
    let out = a.tick(now);
    assert_eq!(
        findings(&out),
        [
            f(M, "ingress.backend_service_not_found", "api"),
            f(M, "ingress.class_not_found", "traefik"),
            f(M, "ingress.tls_secret_not_found", "shop-tls-2027"),
        ]
    );
    let svc = out
        .iter()
        .find(|s| s.attributes[names::FINDING] == "ingress.backend_service_not_found")
        .unwrap();
    assert_eq!(svc.entity.kind, EntityKind::Service);
    assert_eq!(svc.entity.name, "shop/shop");
    assert_eq!(svc.entity.attributes[names::INGRESS], "shop");
    assert_eq!(svc.resource[names::NAMESPACE], "shop");
    assert!(
        svc.message
            .contains("Service shop/api, which does not exist"),
        "{}",
        svc.message
    );
    // Ticks and re-lists of unchanged objects emit nothing new.
    assert!(a.tick(now).is_empty());
    ingresses.list(&[fixture("ingresses.json", "broken")], now);
    assert!(a.tick(now).is_empty());
    // Fixed: the three findings clear, once.
    ingresses.0.apply(&fixture("ingresses.json", "ok"), now);
    let out = a.tick(now);
    assert_eq!(
        findings(&out),
        [
            f(C, "ingress.backend_service_not_found", "api"),
            f(C, "ingress.class_not_found", "traefik"),
            f(C, "ingress.tls_secret_not_found", "shop-tls-2027"),
        ]
    );
    assert!(out.iter().all(|s| s.severity == Severity::Info));
    assert!(a.tick(now).is_empty());
}

#[test]
fn an_ingress_without_a_class_is_a_finding_only_without_a_default_class() {
    let index = ClusterIndex::new();
    let mut a = Analyzer::new(ctx(), index.clone(), AnalyzerConfig::default());
    let now = at("14:30:00");
    let mut ingresses = quiet::<Ingress>(&index);
    let mut classes = quiet::<IngressClass>(&index);
    ingresses.list(&[fixture("ingresses.json", "no_class")], now);
    classes.list(&[fixture("ingressclasses.json", "nginx")], now);
    assert_eq!(findings(&a.tick(now)), [f(M, "ingress.class_not_set", "")]);
    // The legacy annotation names the class: near miss.
    ingresses
        .0
        .apply(&fixture("ingresses.json", "legacy_annotation"), now);
    assert_eq!(findings(&a.tick(now)), [f(C, "ingress.class_not_set", "")]);
    // A default IngressClass serves Ingresses that name none.
    ingresses
        .0
        .apply(&fixture("ingresses.json", "no_class"), now);
    classes
        .0
        .apply(&fixture("ingressclasses.json", "nginx_default"), now);
    assert!(a.tick(now).is_empty());
}

#[test]
fn network_policies_that_allow_everything_or_select_nothing() {
    let index = ClusterIndex::new();
    let mut a = Analyzer::new(ctx(), index.clone(), AnalyzerConfig::default());
    let now = at("14:30:00");
    let mut policies = quiet::<NetworkPolicy>(&index);
    let mut deployments = W(Tracker::new(Indexing::new(
        DeploymentMapper::new(ctx()),
        index.clone(),
    )));
    let mut statefulsets = quiet::<StatefulSet>(&index);
    let mut daemonsets = quiet::<DaemonSet>(&index);
    policies.list(
        &[
            fixture("networkpolicies.json", "default_deny"),
            fixture("networkpolicies.json", "allow_all"),
            fixture("networkpolicies.json", "selects_checkout"),
            fixture("networkpolicies.json", "selects_nothing"),
        ],
        now,
    );
    // Until the workloads are listed, only what needs no other kind is judged.
    assert_eq!(
        findings(&a.tick(now)),
        [f(M, "networkpolicy.allows_all", "ingress")]
    );
    deployments.list(&[fixture("deployments.json", "v2_0")], now);
    statefulsets.list(&[fixture("statefulsets.json", "ok")], now);
    daemonsets.list(&[], now);
    // Jobs are watched for failures already; the index rides on that watch too.
    let mut jobs = W(Tracker::new(Indexing::new(
        JobMapper::new(ctx()),
        index.clone(),
    )));
    jobs.list(&[fixture("jobs.json", "running")], now);
    assert!(
        a.tick(now).is_empty(),
        "nothing judged until CronJobs are listed as well"
    );
    let mut cronjobs = quiet::<CronJob>(&index);
    cronjobs.list(&[fixture("cronjobs.json", "ok")], now);
    let out = a.tick(now);
    assert_eq!(findings(&out), [f(M, "networkpolicy.selects_no_pods", "")]);
    assert_eq!(
        out[0].entity.attributes[names::NETWORK_POLICY],
        "checkout-typo"
    );
    assert_eq!(out[0].attributes[names::SELECTOR], "app=chekout");
    // The policy is deleted: cleared, naming the deletion.
    policies.list(
        &[
            fixture("networkpolicies.json", "default_deny"),
            fixture("networkpolicies.json", "allow_all"),
            fixture("networkpolicies.json", "selects_checkout"),
        ],
        now,
    );
    let out = a.tick(now);
    assert_eq!(findings(&out), [f(C, "networkpolicy.selects_no_pods", "")]);
    assert!(out[0].message.contains("was deleted"), "{}", out[0].message);
}

#[test]
fn pod_disruption_budgets() {
    let index = ClusterIndex::new();
    let mut a = Analyzer::new(ctx(), index.clone(), AnalyzerConfig::default());
    let now = at("14:30:00");
    let mut pdbs = quiet::<PodDisruptionBudget>(&index);
    pdbs.list(&[fixture("pdbs.json", "ok")], now);
    assert!(a.tick(now).is_empty(), "healthy, one disruption allowed");
    pdbs.list(
        &[
            fixture("pdbs.json", "expected_pods_not_met"),
            fixture("pdbs.json", "blocks_disruptions"),
            fixture("pdbs.json", "no_pods"),
        ],
        now,
    );
    let out = a.tick(now);
    assert_eq!(
        findings(&out),
        [
            f(M, "pdb.disruptions_not_allowed", ""),
            f(M, "pdb.expected_pods_not_met", ""),
            f(M, "pdb.no_pods", ""),
        ]
    );
    let short = out
        .iter()
        .find(|s| s.attributes[names::FINDING] == "pdb.expected_pods_not_met")
        .unwrap();
    assert_eq!(short.attributes[names::PDB_CURRENT_HEALTHY], 1);
    assert_eq!(short.attributes[names::PDB_DESIRED_HEALTHY], 2);
    assert_eq!(short.entity.attributes[names::PDB], "checkout");
}

#[test]
fn cron_jobs_suspended_with_a_bad_schedule_or_a_negative_deadline() {
    let index = ClusterIndex::new();
    let mut a = Analyzer::new(ctx(), index.clone(), AnalyzerConfig::default());
    let now = at("14:30:00");
    let mut cronjobs = quiet::<CronJob>(&index);
    cronjobs.list(&[fixture("cronjobs.json", "ok")], now);
    assert!(a.tick(now).is_empty());
    let mut seen = Vec::new();
    for (state, code) in [
        ("suspended", "cronjob.suspended"),
        ("invalid_schedule", "cronjob.invalid_schedule"),
        ("negative_deadline", "cronjob.negative_starting_deadline"),
    ] {
        cronjobs.0.apply(&fixture("cronjobs.json", state), now);
        let out = a.tick(now);
        let appeared: Vec<_> = findings(&out).into_iter().filter(|x| x.0 == M).collect();
        assert_eq!(appeared, [f(M, code, "")], "{state}");
        let s = out.iter().find(|s| s.name == M).unwrap();
        assert_eq!(s.entity.kind, EntityKind::Workload);
        assert_eq!(s.entity.attributes[names::CRONJOB], "backup");
        seen.push(s.message.clone());
    }
    assert!(seen[1].contains("\"0 3 * * 7\""), "{}", seen[1]);
    assert!(seen[1].contains("day of week"), "{}", seen[1]);
    cronjobs.0.apply(&fixture("cronjobs.json", "ok"), now);
    assert_eq!(
        findings(&a.tick(now)),
        [f(C, "cronjob.negative_starting_deadline", "")]
    );
}

#[test]
fn stateful_sets_missing_their_service_or_storage_class() {
    let index = ClusterIndex::new();
    let mut a = Analyzer::new(ctx(), index.clone(), AnalyzerConfig::default());
    let now = at("14:30:00");
    let mut sets = quiet::<StatefulSet>(&index);
    let mut services = quiet::<Service>(&index);
    let mut classes = quiet::<StorageClass>(&index);
    sets.list(
        &[
            fixture("statefulsets.json", "ok"),
            fixture("statefulsets.json", "broken"),
        ],
        now,
    );
    services.list(&[fixture("services.json", "db_headless")], now);
    classes.list(&[fixture("storageclasses.json", "standard")], now);
    let out = a.tick(now);
    assert_eq!(
        findings(&out),
        [
            f(M, "statefulset.service_not_found", "db-replica-headless"),
            f(M, "statefulset.storage_class_not_found", "fast-ssd"),
        ]
    );
    assert!(
        out.iter()
            .all(|s| s.entity.attributes[names::STATEFULSET] == "db-replica")
    );
}

#[test]
fn deployment_replicas_not_ready_after_the_grace_period_only() {
    let index = ClusterIndex::new();
    let cfg = AnalyzerConfig {
        replicas_grace: Duration::from_secs(300),
    };
    let mut a = Analyzer::new(ctx(), index.clone(), cfg);
    let mut deployments = W(Tracker::new(Indexing::new(
        DeploymentMapper::new(ctx()),
        index.clone(),
    )));
    deployments.list(&[fixture("deployments.json", "v2_0")], at("14:00:00"));
    assert!(a.tick(at("14:00:00")).is_empty());
    // A scale-up from 3 to 5: 3 ready while the new pods start. Within the grace: nothing.
    deployments
        .0
        .apply(&fixture("deployments.json", "scaled"), at("14:01:00"));
    assert!(a.tick(at("14:01:00")).is_empty());
    assert!(a.tick(at("14:05:59")).is_empty());
    // … it completes in time: still nothing, ever.
    deployments
        .0
        .apply(&fixture("deployments.json", "v2_0"), at("14:06:00"));
    assert!(a.tick(at("14:06:00")).is_empty());
    assert!(a.tick(at("14:20:00")).is_empty());
    // No ready replica since 14:20 (Available=False): reported once the grace has passed.
    deployments
        .0
        .apply(&fixture("deployments.json", "unavailable"), at("14:20:30"));
    assert!(a.tick(at("14:24:00")).is_empty());
    let out = a.tick(at("14:25:00"));
    assert_eq!(out.len(), 1, "{out:#?}");
    let s = &out[0];
    assert_eq!(s.name, names::REPLICAS_NOT_READY);
    assert_eq!(s.severity, Severity::Critical);
    assert_eq!(s.entity.kind, EntityKind::Workload);
    assert_eq!(s.entity.attributes[names::DEPLOYMENT], "checkout");
    assert_eq!(s.attributes[names::REPLICAS_DESIRED], 3);
    assert_eq!(s.attributes[names::REPLICAS_READY_COUNT], 0);
    assert_eq!(s.attributes[names::REASON], "MinimumReplicasUnavailable");
    assert!(s.message.contains("0 of 3 replicas ready"), "{}", s.message);
    assert!(a.tick(at("14:26:00")).is_empty());
    // The collector restarts: the same finding has the same id (deduplicated downstream), and
    // it is reported at once because the Deployment says since when it is unavailable.
    let index2 = ClusterIndex::new();
    let mut a2 = Analyzer::new(ctx(), index2.clone(), cfg);
    let mut d2 = W(Tracker::new(Indexing::new(
        DeploymentMapper::new(ctx()),
        index2.clone(),
    )));
    d2.list(
        &[fixture("deployments.json", "unavailable")],
        at("14:27:00"),
    );
    let again = a2.tick(at("14:27:00"));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, s.id);
    // Ready again: cleared once.
    deployments
        .0
        .apply(&fixture("deployments.json", "v2_0"), at("14:30:00"));
    let out = a.tick(at("14:30:00"));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].name, names::REPLICAS_READY);
    assert_eq!(out[0].severity, Severity::Info);
    assert!(a.tick(at("14:31:00")).is_empty());
}

mod replay {
    //! Property: whatever order the watches deliver and re-list objects in, and however often
    //! the analyzers tick, each finding's signals alternate appear, clear, appear, … (never
    //! twice in a row), and what is active after a tick is exactly what an analyzer started
    //! afresh over the same objects finds.
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Clone, Debug)]
    enum Op {
        /// The Ingress changes to this fixture state (a watch MODIFIED).
        Ingress(&'static str),
        /// The Services are re-listed with or without `checkout`.
        Services(bool),
        /// The Ingress is re-listed as it is (a reconnect or a 410).
        RelistIngress,
        /// The IngressClasses are re-listed with or without a default class.
        Classes(bool),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            prop_oneof![
                3 => prop::sample::select(vec!["ok", "broken", "no_class", "legacy_annotation"])
                    .prop_map(Op::Ingress),
                2 => any::<bool>().prop_map(Op::Services),
                2 => Just(Op::RelistIngress),
                1 => any::<bool>().prop_map(Op::Classes),
            ],
            0..30,
        )
    }

    fn active_keys(a: &Analyzer) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = a
            .active()
            .map(|f| (f.code.to_string(), f.detail.clone()))
            .collect();
        v.sort();
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn findings_alternate_and_match_a_fresh_analysis(ops in ops()) {
            let index = ClusterIndex::new();
            let mut a = Analyzer::new(ctx(), index.clone(), AnalyzerConfig::default());
            let now = at("14:30:00");
            let mut ingresses = quiet::<Ingress>(&index);
            let mut services = quiet::<Service>(&index);
            let mut classes = quiet::<IngressClass>(&index);
            let mut current: Ingress = fixture("ingresses.json", "broken");
            ingresses.list(std::slice::from_ref(&current), now);
            services.list(&[fixture("services.json", "checkout")], now);
            classes.list(&[fixture("ingressclasses.json", "nginx")], now);
            let mut last: BTreeMap<(String, String), String> = BTreeMap::new();
            for op in ops.iter().cloned().chain([Op::RelistIngress]) {
                match op {
                    Op::Ingress(state) => {
                        current = fixture("ingresses.json", state);
                        ingresses.0.apply(&current, now);
                    }
                    Op::Services(with) => {
                        let list: Vec<Service> = if with {
                            vec![fixture("services.json", "checkout")]
                        } else {
                            vec![]
                        };
                        services.list(&list, now);
                    }
                    Op::RelistIngress => {
                        ingresses.list(std::slice::from_ref(&current), now);
                    }
                    Op::Classes(default) => {
                        let c = if default { "nginx_default" } else { "nginx" };
                        classes.list(&[fixture("ingressclasses.json", c)], now);
                    }
                }
                for s in a.tick(now) {
                    let key = (
                        s.attributes[names::FINDING].as_str().unwrap().to_string(),
                        s.attributes
                            .get(names::FINDING_DETAIL)
                            .and_then(|d| d.as_str())
                            .unwrap_or("")
                            .to_string(),
                    );
                    let before = last.insert(key.clone(), s.name.clone());
                    match s.name.as_str() {
                        M => prop_assert!(before.as_deref() != Some(M), "{key:?} appeared twice"),
                        C => prop_assert_eq!(before.as_deref(), Some(M), "{:?} cleared unseen", key),
                        other => prop_assert!(false, "unexpected {other}"),
                    }
                }
                let mut fresh = Analyzer::new(ctx(), index.clone(), AnalyzerConfig::default());
                fresh.tick(now);
                prop_assert_eq!(active_keys(&a), active_keys(&fresh));
                // A second tick with nothing changed says nothing.
                prop_assert!(a.tick(now).is_empty());
            }
        }
    }
}

/// Not a test of behaviour: the cost of one analyzer pass over a large cluster, for the
/// sizing notes (`cargo test -p daytwo-k8s --release --test cluster -- --ignored --nocapture`).
#[test]
#[ignore = "a measurement, not a test: run it with --release -- --ignored --nocapture (docs/kubernetes.md, Sizing)"]
fn analyzer_tick_cost_on_a_large_cluster() {
    let index = ClusterIndex::new();
    let mut a = Analyzer::new(ctx(), index.clone(), AnalyzerConfig::default());
    let now = at("14:30:00");
    let mut ingresses = quiet::<Ingress>(&index);
    let mut services = quiet::<Service>(&index);
    let mut deployments = W(Tracker::new(Indexing::new(
        DeploymentMapper::new(ctx()),
        index.clone(),
    )));
    let n = 10_000;
    let renamed = |mut v: Value, i: usize| {
        v["metadata"]["name"] = Value::from(format!("obj-{i}"));
        v["metadata"]["namespace"] = Value::from(format!("ns-{}", i % 500));
        v["metadata"]["uid"] = Value::from(format!("uid-{i}"));
        v
    };
    let ing: Value = fixture("ingresses.json", "ok");
    let svc: Value = fixture("services.json", "checkout");
    let dep: Value = fixture("deployments.json", "v2_0");
    let t = std::time::Instant::now();
    ingresses.list(
        &(0..n)
            .map(|i| serde_json::from_value(renamed(ing.clone(), i)).unwrap())
            .collect::<Vec<Ingress>>(),
        now,
    );
    services.list(
        &(0..n)
            .map(|i| serde_json::from_value(renamed(svc.clone(), i)).unwrap())
            .collect::<Vec<Service>>(),
        now,
    );
    deployments.list(
        &(0..n)
            .map(|i| serde_json::from_value(renamed(dep.clone(), i)).unwrap())
            .collect::<Vec<k8s_openapi::api::apps::v1::Deployment>>(),
        now,
    );
    let listed = t.elapsed();
    let t = std::time::Instant::now();
    let first = a.tick(now);
    let first_tick = t.elapsed();
    let t = std::time::Instant::now();
    assert!(a.tick(now).is_empty());
    let quiet_tick = t.elapsed();
    println!(
        "{n} Ingresses, Services, Deployments each: lists {listed:?}, first tick {first_tick:?} ({} findings), quiet tick {quiet_tick:?}",
        first.len()
    );
}
