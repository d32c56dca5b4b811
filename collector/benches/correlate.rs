//! Correlation: every accepted signal is decided against the active incidents. Fixed input:
//! 10,000 signals over 200 hosts, a quarter of them matched by a rule (`correlate/decide_10k`).
//!
//! `throughput/*`: the whole brain per signal, as the pipeline runs it minus the store: the
//! topology learns from the signal, it is held for joins, the shipped rules (with their joins:
//! runs-on, same-host, owned-by, calls, same-cluster) are matched as a trigger and as a late
//! cause, the correlator decides, and the matches whose text the pipeline keeps are rendered
//! (all of a new incident's; a joined incident's new causes). 100,000 signals (a fixed-seed mix of container failures,
//! node conditions, kernel faults, changes, log bursts and service anomalies over one hour of
//! event time) with more than 10,000 entities in the topology. The reference, measured in the
//! same run on the same signals: the correlator alone (`throughput/correlator_only`).
//! `bench/correlate_throughput.sh` prints both in signals/s. Each input signal is behind an
//! `Arc`, built once, as the pipeline holds a signal it accepted: the brain shares it (held
//! for joins, named by rule matches) and never copies it.
//!
//! `throughput_cpu/*`: the same two, measured in CPU time of the benchmarking thread
//! (`CLOCK_THREAD_CPUTIME_ID`) rather than wall-clock time, so that a machine shared with other
//! work still gives a figure for one core: the time the brain spent running, not waiting.

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use daytwo_collector::correlate::{Correlator, Decision, Held, match_rules};
use daytwo_collector::topology::Topology;
use daytwo_model::{
    Entity, EntityKind, Hypothesis, Incident, IncidentStatus, Severity, Signal, Timestamp,
};
use daytwo_rules::RuleMatch;
use daytwo_rules::RuleSet;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

fn signals(n: usize) -> Vec<(Signal, Vec<RuleMatch>)> {
    (0..n)
        .map(|i| {
            let host = format!("node-{}", i % 200);
            let cg = format!("/kubepods/pod{}", i % 1000);
            let s = Signal {
                id: format!("{i}"),
                name: "test.event".into(),
                time: Timestamp::from_unix_secs(1_795_617_015 + i as i64 / 10),
                severity: if i % 4 == 0 {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                entity: Entity::new(EntityKind::Cgroup, cg.clone())
                    .with_attr("host.name", host.clone())
                    .with_attr("daytwo.cgroup.path", cg),
                resource: [("host.name".to_string(), host.into())]
                    .into_iter()
                    .collect(),
                attributes: Default::default(),
                message: String::new(),
                evidence: vec![],
            };
            let matches = if i % 4 == 0 {
                vec![RuleMatch {
                    rule: "node.memory_cgroup_oom".into(),
                    severity: Severity::Critical,
                    title: "t".into(),
                    hypothesis: Hypothesis {
                        entity: s.entity.clone(),
                        score: 0.9,
                        rule: "node.memory_cgroup_oom".into(),
                        explanation: String::new(),
                        remediation: String::new(),
                        evidence: vec![],
                    },
                    signals: vec![std::sync::Arc::new(s.clone())],
                    rendered: true,
                }]
            } else {
                vec![]
            };
            (s, matches)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let input = signals(10_000);
    let mut g = c.benchmark_group("correlate");
    g.throughput(Throughput::Elements(input.len() as u64));
    g.sample_size(20);
    g.bench_function("decide_10k", |b| {
        b.iter(|| {
            let mut c = Correlator::new(Duration::from_secs(300));
            let mut opened = 0u32;
            for (s, m) in &input {
                if let daytwo_collector::correlate::Decision::Open {
                    fingerprint,
                    severity,
                    title,
                    hypotheses,
                    ..
                } = c.decide(s, m)
                {
                    // The matches' hypotheses are the incident's causes, as in the pipeline.
                    let hypotheses = if m.is_empty() {
                        hypotheses
                    } else {
                        m.iter().map(|x| x.hypothesis.clone()).collect()
                    };
                    opened += 1;
                    c.track(&Incident {
                        id: format!("i{opened}"),
                        fingerprint,
                        status: IncidentStatus::Open,
                        severity,
                        opened_at: s.time,
                        updated_at: s.time,
                        resolved_at: None,
                        title,
                        root_causes: hypotheses,
                        signals: vec![s.clone()],
                        links: vec![],
                    });
                }
            }
            black_box(opened)
        })
    });
    g.finish();
}

/// A fixed-seed generator (xorshift), so every run sees the same signals.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const NODES: u64 = 200;
const PODS: u64 = 5_000;
const WORKLOADS: u64 = 400;
const SERVICES: u64 = 400;

fn attrs(pairs: &[(&str, serde_json::Value)]) -> daytwo_model::Attributes {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// The resource of pod `p`: its node, namespace, owner and service.
fn pod_resource(p: u64) -> daytwo_model::Attributes {
    let w = p % WORKLOADS;
    attrs(&[
        ("k8s.cluster.name", "prod".into()),
        ("k8s.namespace.name", format!("ns{}", w % 20).into()),
        ("k8s.pod.uid", format!("uid-{p}").into()),
        ("k8s.pod.name", format!("w{w}-{p}").into()),
        ("k8s.node.name", format!("node-{}", p % NODES).into()),
        ("k8s.deployment.name", format!("w{w}").into()),
        ("service.name", format!("svc-{}", w % SERVICES).into()),
    ])
}

fn signal(i: u64, name: &str, t: i64, sev: Severity, entity: Entity) -> Signal {
    Signal {
        id: format!("s{i}"),
        name: name.into(),
        time: Timestamp::from_unix_secs(1_795_617_015).plus(Duration::from_millis(t as u64)),
        severity: sev,
        entity,
        resource: Default::default(),
        attributes: Default::default(),
        message: String::new(),
        evidence: vec![],
    }
}

/// The topology every throughput run starts from: every pod's container seen once (more than
/// 10,000 entities: nodes, pods, containers, workloads, services) and each service calling
/// three others.
fn warm_topology() -> Topology {
    let mut t = Topology::new(Duration::from_secs(3 * 3600), Duration::from_secs(300));
    for p in 0..PODS {
        let mut s = signal(
            u64::MAX - p,
            "app.started",
            0,
            Severity::Info,
            Entity::new(EntityKind::Container, format!("c{p}")),
        );
        s.resource = pod_resource(p);
        s.entity = s
            .entity
            .with_attr("k8s.pod.uid", format!("uid-{p}"))
            .with_attr("k8s.container.name", "app");
        t.observe(&s);
    }
    for v in 0..SERVICES {
        for k in 1..=3 {
            t.add_call(
                &format!("svc-{v}"),
                &format!("svc-{}", (v * 7 + k * 13) % SERVICES),
                Timestamp::from_unix_secs(1_795_617_015),
            );
        }
    }
    t
}

/// 100,000 signals over one hour of event time, each behind an `Arc` as the pipeline holds
/// a signal it accepted (shared with the held signals and rule matches, not copied).
fn stream(n: u64) -> Vec<std::sync::Arc<Signal>> {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let step_ms = 3_600_000 / n as i64;
    (0..n)
        .map(|i| {
            let t = i as i64 * step_ms;
            let p = r.below(PODS);
            let w = p % WORKLOADS;
            let node = format!("node-{}", p % NODES);
            let roll = r.below(100);
            let mut s;
            if roll < 40 {
                let svc = format!("svc-{}", r.below(SERVICES));
                let name = if roll < 20 {
                    "daytwo.service.latency_anomaly"
                } else {
                    "daytwo.service.error_anomaly"
                };
                s = signal(
                    i,
                    name,
                    t,
                    Severity::Warning,
                    Entity::new(EntityKind::Service, svc.clone()).with_attr("service.name", svc),
                );
                s.attributes =
                    attrs(&[("daytwo.anomaly.sigma", (5.0 + r.below(50) as f64).into())]);
            } else if roll < 65 {
                let name = if roll < 55 {
                    "daytwo.k8s.container.waiting"
                } else {
                    "daytwo.k8s.container.terminated"
                };
                s = signal(
                    i,
                    name,
                    t,
                    Severity::Warning,
                    Entity::new(EntityKind::Container, format!("w{w}-{p}/app"))
                        .with_attr("k8s.pod.uid", format!("uid-{p}"))
                        .with_attr("k8s.container.name", "app"),
                );
                s.resource = pod_resource(p);
                s.attributes = attrs(&[
                    ("k8s.container.status.reason", "CrashLoopBackOff".into()),
                    (
                        "k8s.container.status.last_terminated_reason",
                        if r.below(4) == 0 {
                            "OOMKilled"
                        } else {
                            "Error"
                        }
                        .into(),
                    ),
                ]);
            } else if roll < 80 {
                s = signal(
                    i,
                    "daytwo.log.error_burst",
                    t,
                    Severity::Warning,
                    Entity::new(EntityKind::Workload, format!("w{w}"))
                        .with_attr("k8s.namespace.name", format!("ns{}", w % 20))
                        .with_attr("k8s.deployment.name", format!("w{w}")),
                );
                s.resource = attrs(&[("k8s.cluster.name", "prod".into())]);
                let template = if r.below(50) == 0 {
                    "dial tcp: lookup <*> on <*>:53: no such host"
                } else {
                    "ERROR request <*> failed after <*> ms"
                };
                s.attributes = attrs(&[("daytwo.log.template", template.into())]);
            } else if roll < 90 {
                let name = [
                    "daytwo.kernel.io_error",
                    "daytwo.kernel.hung_task",
                    "daytwo.node.filesystem_full",
                    "daytwo.container.cpu_throttled",
                ][r.below(4) as usize];
                s = signal(
                    i,
                    name,
                    t,
                    Severity::Warning,
                    Entity::new(EntityKind::Host, node.clone())
                        .with_attr("host.name", node.clone()),
                );
                s.resource = attrs(&[("host.name", node.clone().into())]);
            } else if roll < 95 {
                s = signal(
                    i,
                    "daytwo.k8s.node.condition",
                    t,
                    Severity::Critical,
                    Entity::new(EntityKind::Node, node.clone()).with_attr("k8s.node.name", node),
                );
                let bad = r.below(10) == 0;
                s.attributes = attrs(&[
                    (
                        "k8s.node.condition.type",
                        if bad { "Ready" } else { "MemoryPressure" }.into(),
                    ),
                    ("k8s.node.condition.status", "False".into()),
                ]);
            } else {
                s = signal(
                    i,
                    "daytwo.k8s.change",
                    t,
                    Severity::Info,
                    Entity::new(EntityKind::Workload, format!("ns{}/w{w}", w % 20))
                        .with_attr("k8s.namespace.name", format!("ns{}", w % 20))
                        .with_attr("k8s.deployment.name", format!("w{w}")),
                );
                s.attributes = attrs(&[
                    (
                        "daytwo.change.kind",
                        if r.below(2) == 0 { "rollout" } else { "scale" }.into(),
                    ),
                    (
                        "daytwo.change.memory_limit_bytes.before",
                        536_870_912.into(),
                    ),
                    ("daytwo.change.memory_limit_bytes.after", 268_435_456.into()),
                ]);
            }
            std::sync::Arc::new(s)
        })
        .collect()
}

/// Renders the matches whose text the pipeline keeps: every one for a new incident; for a
/// joined one, those naming a cause (rule and entity) it does not name yet.
fn render_kept(
    rules: &RuleSet,
    d: &Decision,
    matches: &mut [RuleMatch],
    opened: u32,
    named: &mut HashMap<String, Vec<(String, String)>>,
) {
    let (id, all) = match d {
        Decision::Open { .. } => (format!("i{}", opened + 1), true),
        Decision::Join { incident_id, .. } => (incident_id.clone(), false),
        Decision::Hold => return,
    };
    let causes = named.entry(id).or_default();
    for m in matches {
        let cause = (m.rule.clone(), m.hypothesis.entity.key());
        if all || !causes.contains(&cause) {
            rules.render(m);
            causes.push(cause);
        }
    }
}

/// What the pipeline tells the correlator after a decision: the incident opened (its causes
/// the matches' hypotheses, or the correlator's own) or joined.
fn track(c: &mut Correlator, d: Decision, s: &Signal, matches: &[RuleMatch], opened: &mut u32) {
    match d {
        Decision::Open {
            fingerprint,
            severity,
            title,
            hypotheses,
            ..
        } => {
            let (title, hypotheses) = match matches.first() {
                Some(top) => (
                    top.title.clone(),
                    matches.iter().map(|m| m.hypothesis.clone()).collect(),
                ),
                None => (title, hypotheses),
            };
            *opened += 1;
            c.track(&Incident {
                id: format!("i{opened}"),
                fingerprint,
                status: IncidentStatus::Open,
                severity,
                opened_at: s.time,
                updated_at: s.time,
                resolved_at: None,
                title,
                root_causes: hypotheses,
                signals: vec![s.clone()],
                links: vec![],
            });
        }
        Decision::Join { incident_id, .. } => c.touch(&incident_id, s),
        Decision::Hold => {}
    }
}

/// CPU time of the calling thread, in nanoseconds.
fn thread_cpu_ns() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

/// A criterion measurement of the benchmarking thread's CPU time (nanoseconds, shown and
/// turned into throughput like wall-clock time).
struct CpuTime;

impl Measurement for CpuTime {
    type Intermediate = f64;
    type Value = f64;
    fn start(&self) -> f64 {
        thread_cpu_ns()
    }
    fn end(&self, start: f64) -> f64 {
        thread_cpu_ns() - start
    }
    fn add(&self, a: &f64, b: &f64) -> f64 {
        a + b
    }
    fn zero(&self) -> f64 {
        0.0
    }
    fn to_f64(&self, v: &f64) -> f64 {
        *v
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

fn throughput(c: &mut Criterion) {
    throughput_in(c, "throughput", true);
}

fn throughput_cpu(c: &mut Criterion<CpuTime>) {
    throughput_in(c, "throughput_cpu", false);
}

fn throughput_in<M: Measurement>(c: &mut Criterion<M>, group: &str, show: bool) {
    const N: u64 = 100_000;
    let input = stream(N);
    let rules = RuleSet::builtin();
    let warm = warm_topology();
    let entities = 200 + 2 * PODS + WORKLOADS + SERVICES;
    assert!(entities >= 10_000 && warm.len() >= 10_000, "{}", warm.len());
    // One untimed pass to show what the rules did with this input.
    if show {
        let mut topology = warm_topology();
        let mut held = Held::new(Duration::from_secs(3600));
        let mut per_rule: std::collections::BTreeMap<String, usize> = Default::default();
        for s in &input {
            topology.observe(s);
            held.insert(&rules, s);
            for m in match_rules(&rules, &held, &topology, s) {
                *per_rule.entry(m.rule).or_default() += 1;
            }
        }
        eprintln!(
            "throughput input: {N} signals, {} topology edges, {} held for joins; rule matches: {per_rule:?}",
            topology.len(),
            held.len()
        );
    }
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function("rules_joins_topology_100k", |b| {
        b.iter_batched(
            warm_topology,
            |mut topology| {
                let mut held = Held::new(Duration::from_secs(3600));
                let mut corr = Correlator::new(Duration::from_secs(300));
                let mut opened = 0u32;
                let mut matched = 0usize;
                let mut named = HashMap::new();
                for s in &input {
                    topology.observe(s);
                    held.insert(&rules, s);
                    let mut m = match_rules(&rules, &held, &topology, s);
                    matched += m.len();
                    let d = corr.decide_in(s, &m, Some(&topology));
                    render_kept(&rules, &d, &mut m, opened, &mut named);
                    track(&mut corr, d, s, &m, &mut opened);
                }
                black_box((opened, matched))
            },
            criterion::BatchSize::PerIteration,
        )
    });
    g.bench_function("correlator_only", |b| {
        b.iter(|| {
            let mut corr = Correlator::new(Duration::from_secs(300));
            let mut opened = 0u32;
            for s in &input {
                let d = corr.decide(s, &[]);
                track(&mut corr, d, s, &[], &mut opened);
            }
            black_box(opened)
        })
    });
    g.finish();
}

criterion_group!(benches, bench, throughput);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(CpuTime);
    targets = throughput_cpu
}
criterion_main!(benches, cpu);
