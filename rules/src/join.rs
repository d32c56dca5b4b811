//! Joins: the other signals a rule requires next to its trigger, and the relations between
//! their entities.
//!
//! Entry types: [`Relation`] (how a joined signal's entity relates to its anchor's),
//! [`Order`] (before, after, either side) and [`JoinSource`], the trait through which a
//! caller hands the rule engine the signals it holds and the topology it knows. The engine
//! stays pure: the collector implements [`JoinSource`] over its in-memory window and its
//! time-versioned topology, `rules test` over a test case's signals.
//!
//! A relation reads as a sentence with the anchor first: "the trigger *runs-on* the node",
//! "the trigger *owned-by* the change's workload", "the caller's anomaly *calls* the callee's".
//! Every relation first looks at the two signals' own attributes (entity, then resource);
//! [`JoinSource`] may add what the topology learnt from other signals.
//!
//! Identity helpers ([`machine_of`], [`workload_of`], [`service_of`]) are public so the
//! collector's topology names machines and workloads exactly as relations compare them.

use daytwo_model::{EntityKind, Signal, Timestamp};
use std::time::Duration;

/// How a joined signal's entity relates to its anchor's (the trigger, or an earlier join).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Relation {
    /// The same entity (equal identity attributes).
    SameEntity,
    /// Observed on the same machine (`host.name` or `k8s.node.name`; a Kubernetes node and the
    /// host of the same name are one machine).
    SameHost,
    /// The joined signal is about the node or host the anchor (a container, pod, process,
    /// cgroup, service instance) ran on at the anchor's time.
    RunsOn,
    /// The joined signal is about the workload (Deployment, StatefulSet, DaemonSet, Job, …)
    /// that owns the anchor's pod or container.
    OwnedBy,
    /// The anchor's service calls the joined signal's service directly (from spans).
    Calls,
    /// The anchor's service reaches the joined signal's service through calls, directly or
    /// through others: the joined service is one of its (transitive) dependencies.
    UpstreamOf,
    /// The same cluster (`k8s.cluster.name`; two signals without one count as the same).
    SameCluster,
    /// The anchor (a pod, or a container of it) mounts the joined signal's
    /// PersistentVolumeClaim at the anchor's time: from the anchor's own
    /// `daytwo.k8s.pod.claims` (see [`claims_of`]) or the topology.
    Mounts,
}

impl Relation {
    /// Every relation, by the name rules use.
    pub const ALL: &[(&'static str, Relation)] = &[
        ("same-entity", Relation::SameEntity),
        ("same-host", Relation::SameHost),
        ("runs-on", Relation::RunsOn),
        ("owned-by", Relation::OwnedBy),
        ("calls", Relation::Calls),
        ("upstream-of", Relation::UpstreamOf),
        ("same-cluster", Relation::SameCluster),
        ("mounts", Relation::Mounts),
    ];

    pub fn parse(s: &str) -> Option<Relation> {
        Relation::ALL.iter().find(|(n, _)| *n == s).map(|(_, r)| *r)
    }

    pub fn as_str(self) -> &'static str {
        Relation::ALL
            .iter()
            .find(|(_, r)| *r == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// When a joined signal happened relative to its anchor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// At or before the anchor, at most `within` earlier (a cause before its symptom).
    Before,
    /// At or after the anchor, at most `within` later.
    After,
    /// Either side, at most `within` apart.
    Any,
}

impl Order {
    pub fn parse(s: &str) -> Option<Order> {
        Some(match s {
            "before" => Order::Before,
            "after" => Order::After,
            "any" => Order::Any,
            _ => return None,
        })
    }

    /// The event-time range a joined signal must fall in, given its anchor's time.
    pub fn range(self, anchor: Timestamp, within: Duration) -> (Timestamp, Timestamp) {
        match self {
            Order::Before => (anchor.minus(within), anchor),
            Order::After => (anchor, anchor.plus(within)),
            Order::Any => (anchor.minus(within), anchor.plus(within)),
        }
    }
}

/// The longest join window accepted: the collector keeps joinable signals in memory for the
/// longest window of any rule, so this bounds its memory.
pub const MAX_WINDOW: Duration = Duration::from_secs(6 * 3600);

/// Parses a window such as `90s`, `5m`, `1h`, `500ms` (a number and a unit; no spaces).
pub fn parse_window(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let hint = "write a whole number and a unit: `500ms`, `30s`, `5m` or `1h`";
    let Ok(n) = num.parse::<u64>() else {
        return Err(format!("`{s}` is not a duration; {hint}"));
    };
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "" => return Err(format!("`{s}` has no unit; {hint}")),
        other => return Err(format!("`{s}` has an unknown unit `{other}`; {hint}")),
    };
    if d.is_zero() {
        return Err(format!("`{s}` is zero: a join needs a window, e.g. `5m`"));
    }
    if d > MAX_WINDOW {
        return Err(format!(
            "`{s}` is longer than the longest window, {}h (joined signals are held in memory that long)",
            MAX_WINDOW.as_secs() / 3600
        ));
    }
    Ok(d)
}

/// What the rule engine needs from its caller to evaluate joins: the signals it holds, and
/// what its topology knows beyond the signals' own attributes.
///
/// The topology methods default to "nothing known", so a source that only holds signals
/// gets relations from attributes alone.
pub trait JoinSource {
    /// Every held signal named `event` with a time in `from..=to`, in any order. The trigger
    /// itself may be among them; the engine skips it.
    fn signals(&self, event: &str, from: Timestamp, to: Timestamp) -> Vec<&Signal>;

    /// The held signals named any of `events` in `from..=to` that may stand in `relation` to
    /// the anchor, in any order. A source with an index (by machine, workload, service,
    /// entity) returns just those, working out the anchor's index keys once for all the
    /// events; the default returns [`JoinSource::signals`] of each event. The engine checks
    /// the relation on each candidate either way.
    fn candidates(
        &self,
        events: &[String],
        from: Timestamp,
        to: Timestamp,
        _relation: Relation,
        _anchor: &Anchor,
    ) -> Vec<&Signal> {
        events
            .iter()
            .flat_map(|e| self.signals(e, from, to))
            .collect()
    }

    /// The held triggers of rule `rule` (event `event`, in `from..=to`) that `joined` may
    /// complete through a join with `relation` measured from the trigger. A source that knows
    /// which held signals passed the rule's condition ([`crate::RuleSet::armed`]) and indexes
    /// them by relation returns just those; the default returns [`JoinSource::signals`]. The
    /// engine evaluates each one fully either way.
    fn triggers(
        &self,
        _rule: &str,
        event: &str,
        from: Timestamp,
        to: Timestamp,
        _relation: Relation,
        _joined: &Signal,
    ) -> Vec<&Signal> {
        self.signals(event, from, to)
    }

    /// The CEL variables kept for `s`, a signal this source handed out or the trigger being
    /// evaluated, if it keeps them ([`crate::Prepared`]: one per held signal, for that exact
    /// signal and no other). The default keeps none: the engine converts the variables for
    /// each evaluation, which gives the same results more slowly.
    fn prepared(&self, _s: &Signal) -> Option<&crate::Prepared> {
        None
    }

    /// `s` itself, shared, when this source holds it behind an `Arc` (a rule match then
    /// names it without copying it). The default shares nothing: the match gets a copy.
    fn shared(&self, _s: &Signal) -> Option<std::sync::Arc<Signal>> {
        None
    }

    /// Machines (see [`machine_of`]) the entity of `s` ran on at `at`, from the topology.
    fn machines(&self, _s: &Signal, _at: Timestamp) -> Vec<String> {
        Vec::new()
    }

    /// Workloads (see [`workload_of`]) that owned the entity of `s` at `at`, from the topology.
    fn workloads(&self, _s: &Signal, _at: Timestamp) -> Vec<String> {
        Vec::new()
    }

    /// PersistentVolumeClaims (`NS/CLAIM`, see [`claim_of`]) the pod of `s` (a pod, or a
    /// container of it) mounted at `at`, from the topology.
    fn claims(&self, _s: &Signal, _at: Timestamp) -> Vec<String> {
        Vec::new()
    }

    /// Whether service `caller` called service `callee` around `at`.
    fn calls(&self, _caller: &str, _callee: &str, _at: Timestamp) -> bool {
        false
    }

    /// Whether service `from` reaches service `to` through calls around `at`.
    fn reaches(&self, _from: &str, _to: &str, _at: Timestamp) -> bool {
        false
    }
}

/// What a relation needs to know about its anchor, computed once per join rather than once
/// per candidate: the machines it ran on and the workloads that owned it at its time (its own
/// attributes plus the topology's answer).
pub struct Anchor<'a> {
    pub signal: &'a Signal,
    /// For `same-host` and `runs-on`; empty for other relations.
    pub machines: Vec<String>,
    /// For `owned-by`; empty for other relations.
    pub workloads: Vec<String>,
}

impl<'a> Anchor<'a> {
    pub fn new(relation: Relation, signal: &'a Signal, source: &dyn JoinSource) -> Self {
        let mut a = Anchor {
            signal,
            machines: Vec::new(),
            workloads: Vec::new(),
        };
        match relation {
            Relation::SameHost | Relation::RunsOn => {
                a.machines.extend(machine_of(signal).map(str::to_string));
                for m in source.machines(signal, signal.time) {
                    if !a.machines.contains(&m) {
                        a.machines.push(m);
                    }
                }
            }
            Relation::OwnedBy => {
                a.workloads.extend(workload_of(signal));
                for w in source.workloads(signal, signal.time) {
                    if !a.workloads.contains(&w) {
                        a.workloads.push(w);
                    }
                }
            }
            _ => {}
        }
        a
    }
}

/// A source with no signals: rules with joins never match against it.
pub struct NoJoins;

impl JoinSource for NoJoins {
    fn signals(&self, _: &str, _: Timestamp, _: Timestamp) -> Vec<&Signal> {
        Vec::new()
    }
}

fn attr<'a>(s: &'a Signal, key: &str) -> Option<&'a str> {
    s.entity
        .attributes
        .get(key)
        .or_else(|| s.resource.get(key))
        .and_then(|v| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The machine a signal was observed on: `host.name`, else `k8s.node.name` (of the entity,
/// then the resource); for a node or host entity without either, its name. A Kubernetes node
/// and the host of the same name are one machine.
pub fn machine_of(s: &Signal) -> Option<&str> {
    attr(s, "host.name")
        .or_else(|| attr(s, "k8s.node.name"))
        .or_else(|| {
            matches!(s.entity.kind, EntityKind::Node | EntityKind::Host)
                .then_some(s.entity.name.as_str())
                .filter(|n| !n.is_empty())
        })
}

/// The owner attributes, most specific workload first; a ReplicaSet stands for its
/// Deployment when no Deployment is named.
const OWNERS: &[(&str, &str)] = &[
    ("k8s.deployment.name", "deployment"),
    ("k8s.statefulset.name", "statefulset"),
    ("k8s.daemonset.name", "daemonset"),
    ("k8s.cronjob.name", "cronjob"),
    ("k8s.job.name", "job"),
];

/// The workload a signal's entity belongs to, as `CLUSTER/NAMESPACE/KIND/NAME` (cluster empty
/// when unknown): from the owner attributes (`k8s.deployment.name`, …; a ReplicaSet
/// `web-7d9f8b6c5d` counts as Deployment `web`), within `k8s.namespace.name`.
pub fn workload_of(s: &Signal) -> Option<String> {
    workload_parts(s).map(|w| w.to_string())
}

/// [`workload_of`] as its parts, borrowed from the signal: compared with a workload name or
/// written into a buffer without building a string.
pub fn workload_parts(s: &Signal) -> Option<Workload<'_>> {
    let ns = attr(s, "k8s.namespace.name")?;
    let cluster = attr(s, "k8s.cluster.name").unwrap_or("");
    let (kind, name) = OWNERS
        .iter()
        .find_map(|(k, kind)| attr(s, k).map(|n| (*kind, n)))
        .or_else(|| {
            let rs = attr(s, "k8s.replicaset.name")?;
            Some(("deployment", deployment_of_replicaset(rs)))
        })?;
    Some(Workload {
        cluster,
        ns,
        kind,
        name,
    })
}

/// A workload's identity ([`workload_of`]), as parts; displays as `CLUSTER/NAMESPACE/KIND/NAME`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload<'a> {
    pub cluster: &'a str,
    pub ns: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
}

impl Workload<'_> {
    /// Whether `w` is this workload's name as [`workload_of`] writes it.
    pub fn is(&self, w: &str) -> bool {
        let rest = w
            .strip_prefix(self.cluster)
            .and_then(|r| r.strip_prefix('/'))
            .and_then(|r| r.strip_prefix(self.ns))
            .and_then(|r| r.strip_prefix('/'))
            .and_then(|r| r.strip_prefix(self.kind))
            .and_then(|r| r.strip_prefix('/'));
        rest == Some(self.name)
    }

    /// Appends its name, as [`workload_of`] writes it, to `buf`.
    pub fn write_to(&self, buf: &mut String) {
        for part in [self.cluster, "/", self.ns, "/", self.kind, "/", self.name] {
            buf.push_str(part);
        }
    }
}

impl std::fmt::Display for Workload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.cluster, self.ns, self.kind, self.name
        )
    }
}

/// `web-7d9f8b6c5d` → `web`: a ReplicaSet's name is its Deployment's plus a hash.
fn deployment_of_replicaset(rs: &str) -> &str {
    match rs.rsplit_once('-') {
        Some((head, hash))
            if !head.is_empty()
                && (5..=10).contains(&hash.len())
                && hash.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            head
        }
        _ => rs,
    }
}

/// The attribute in which a pod's signals list the PersistentVolumeClaims it mounts (an array
/// of claim names within the pod's namespace).
pub const POD_CLAIMS: &str = "daytwo.k8s.pod.claims";

/// The PersistentVolumeClaim a signal is about, as `NS/CLAIM`: a volume entity with
/// `k8s.namespace.name` and `k8s.persistentvolumeclaim.name`.
pub fn claim_of(s: &Signal) -> Option<String> {
    if s.entity.kind != EntityKind::Volume {
        return None;
    }
    let ns = attr(s, "k8s.namespace.name")?;
    let claim = attr(s, "k8s.persistentvolumeclaim.name")?;
    Some(format!("{ns}/{claim}"))
}

/// The PersistentVolumeClaims a signal's pod mounts by its own attributes, as `NS/CLAIM`:
/// `daytwo.k8s.pod.claims` (of the entity, the resource, then the attributes) within
/// `k8s.namespace.name`. Empty without either.
pub fn claims_of(s: &Signal) -> Vec<String> {
    let Some(ns) = attr(s, "k8s.namespace.name") else {
        return Vec::new();
    };
    let list = s
        .entity
        .attributes
        .get(POD_CLAIMS)
        .or_else(|| s.resource.get(POD_CLAIMS))
        .or_else(|| s.attributes.get(POD_CLAIMS))
        .and_then(|v| v.as_array());
    list.into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .filter(|c| !c.is_empty())
        .map(|c| format!("{ns}/{c}"))
        .collect()
}

/// The service a signal is about: `service.name` of its entity or resource, else the name of
/// a service entity.
pub fn service_of(s: &Signal) -> Option<&str> {
    attr(s, "service.name").or_else(|| {
        (s.entity.kind == EntityKind::Service)
            .then_some(s.entity.name.as_str())
            .filter(|n| !n.is_empty())
    })
}

/// Whether `relation` holds from `anchor` to `joined`, from their attributes and what
/// `source` knows. Time is the anchor's.
pub fn related(
    relation: Relation,
    anchor: &Signal,
    joined: &Signal,
    source: &dyn JoinSource,
) -> bool {
    related_to(
        relation,
        &Anchor::new(relation, anchor, source),
        joined,
        source,
    )
}

/// [`related`], with the anchor's facts computed already.
pub fn related_to(
    relation: Relation,
    anchor: &Anchor,
    joined: &Signal,
    source: &dyn JoinSource,
) -> bool {
    let a = anchor.signal;
    let at = a.time;
    match relation {
        Relation::SameEntity => a.entity.key() == joined.entity.key(),
        Relation::SameCluster => attr(a, "k8s.cluster.name") == attr(joined, "k8s.cluster.name"),
        Relation::SameHost => {
            machine_of(joined).is_some_and(|m| anchor.machines.iter().any(|x| x == m))
        }
        Relation::RunsOn => {
            matches!(joined.entity.kind, EntityKind::Node | EntityKind::Host)
                // A node is not "on" itself.
                && !matches!(a.entity.kind, EntityKind::Node | EntityKind::Host)
                && machine_of(joined).is_some_and(|m| anchor.machines.iter().any(|x| x == m))
        }
        Relation::OwnedBy => {
            a.entity.kind != EntityKind::Workload
                && workload_parts(joined).is_some_and(|w| anchor.workloads.iter().any(|a| w.is(a)))
        }
        Relation::Mounts => {
            if !matches!(a.entity.kind, EntityKind::Pod | EntityKind::Container)
                || attr(a, "k8s.cluster.name") != attr(joined, "k8s.cluster.name")
            {
                return false;
            }
            let Some(claim) = claim_of(joined) else {
                return false;
            };
            claims_of(a).contains(&claim) || source.claims(a, at).contains(&claim)
        }
        Relation::Calls | Relation::UpstreamOf => {
            let (Some(x), Some(y)) = (service_of(a), service_of(joined)) else {
                return false;
            };
            if x == y {
                return false;
            }
            match relation {
                Relation::Calls => source.calls(x, y, at),
                _ => source.reaches(x, y, at),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use daytwo_model::Entity;

    fn sig(kind: EntityKind, name: &str, attrs: &[(&str, &str)]) -> Signal {
        let mut e = Entity::new(kind, name);
        for (k, v) in attrs {
            e = e.with_attr(k, *v);
        }
        Signal {
            id: name.into(),
            name: "x".into(),
            time: Timestamp::from_unix_secs(100),
            severity: daytwo_model::Severity::Warning,
            entity: e,
            resource: Default::default(),
            attributes: Default::default(),
            message: String::new(),
            evidence: vec![],
        }
    }

    proptest::proptest! {
        /// A workload's parts compare and write exactly as its formatted name does, whatever
        /// the parts hold (slashes, empty parts, one a prefix of another).
        #[test]
        fn workload_parts_agree_with_the_formatted_name(
            a in proptest::collection::vec("[a/]{0,3}", 4),
            b in proptest::collection::vec("[a/]{0,3}", 4),
        ) {
            fn w(p: &[String]) -> Workload<'_> {
                Workload { cluster: &p[0], ns: &p[1], kind: &p[2], name: &p[3] }
            }
            let (x, y) = (w(&a), w(&b));
            let shorter = x.to_string().get(1..).unwrap_or_default().to_string();
            for candidate in [x.to_string(), y.to_string(), format!("{x}/"), shorter] {
                proptest::prop_assert_eq!(x.is(&candidate), candidate == x.to_string(), "{}", candidate);
            }
            let mut buf = String::from("workload:");
            x.write_to(&mut buf);
            proptest::prop_assert_eq!(buf, format!("workload:{x}"));
        }
    }

    #[test]
    fn windows_parse_with_units_and_reject_the_rest() {
        assert_eq!(parse_window("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_window("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_window("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_window("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["5", "five minutes", "0s", "7h", "-1m", "5 m", "1d", ""] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pods_run_on_their_node_and_belong_to_their_workload() {
        let pod = sig(
            EntityKind::Pod,
            "web-1",
            &[
                ("k8s.node.name", "n1"),
                ("k8s.namespace.name", "shop"),
                ("k8s.replicaset.name", "web-7d9f8b6c5d"),
            ],
        );
        let node = sig(EntityKind::Node, "n1", &[("k8s.node.name", "n1")]);
        let other = sig(EntityKind::Node, "n2", &[("k8s.node.name", "n2")]);
        let host = sig(EntityKind::Host, "n1", &[("host.name", "n1")]);
        let web = sig(
            EntityKind::Workload,
            "web",
            &[
                ("k8s.namespace.name", "shop"),
                ("k8s.deployment.name", "web"),
            ],
        );
        let api = sig(
            EntityKind::Workload,
            "api",
            &[
                ("k8s.namespace.name", "shop"),
                ("k8s.deployment.name", "api"),
            ],
        );
        assert!(related(Relation::RunsOn, &pod, &node, &NoJoins));
        assert!(related(Relation::RunsOn, &pod, &host, &NoJoins));
        assert!(!related(Relation::RunsOn, &pod, &other, &NoJoins));
        assert!(!related(Relation::RunsOn, &node, &node, &NoJoins));
        assert!(related(Relation::SameHost, &pod, &host, &NoJoins));
        assert!(related(Relation::OwnedBy, &pod, &web, &NoJoins));
        assert!(!related(Relation::OwnedBy, &pod, &api, &NoJoins));
        assert!(!related(Relation::OwnedBy, &web, &web, &NoJoins));
        assert_eq!(workload_of(&pod).as_deref(), Some("/shop/deployment/web"));
        assert!(related(Relation::SameCluster, &pod, &node, &NoJoins));
    }

    #[test]
    fn pods_mount_their_claims_from_attributes_or_the_topology() {
        let mut pod = sig(
            EntityKind::Container,
            "shop/db-0/postgres",
            &[("k8s.namespace.name", "shop"), ("k8s.pod.name", "db-0")],
        );
        pod.resource
            .insert(POD_CLAIMS.into(), serde_json::json!(["data-db-0"]));
        let claim = |ns: &str, name: &str| {
            sig(
                EntityKind::Volume,
                &format!("{ns}/{name}"),
                &[
                    ("k8s.namespace.name", ns),
                    ("k8s.persistentvolumeclaim.name", name),
                ],
            )
        };
        assert!(related(
            Relation::Mounts,
            &pod,
            &claim("shop", "data-db-0"),
            &NoJoins
        ));
        // Another claim, the same claim name in another namespace, a ConfigMap: no.
        assert!(!related(
            Relation::Mounts,
            &pod,
            &claim("shop", "data-db-1"),
            &NoJoins
        ));
        assert!(!related(
            Relation::Mounts,
            &pod,
            &claim("prod", "data-db-0"),
            &NoJoins
        ));
        let cm = sig(
            EntityKind::Volume,
            "shop/data-db-0",
            &[
                ("k8s.namespace.name", "shop"),
                ("k8s.configmap.name", "data-db-0"),
            ],
        );
        assert!(!related(Relation::Mounts, &pod, &cm, &NoJoins));
        // A claim does not mount itself; a workload mounts nothing.
        let c = claim("shop", "data-db-0");
        assert!(!related(Relation::Mounts, &c, &c, &NoJoins));
        // Without the attribute, the topology answers.
        struct Topo;
        impl JoinSource for Topo {
            fn signals(&self, _: &str, _: Timestamp, _: Timestamp) -> Vec<&Signal> {
                Vec::new()
            }
            fn claims(&self, _: &Signal, _: Timestamp) -> Vec<String> {
                vec!["shop/data-db-1".into()]
            }
        }
        let bare = sig(
            EntityKind::Pod,
            "shop/db-1",
            &[("k8s.namespace.name", "shop")],
        );
        assert!(!related(
            Relation::Mounts,
            &bare,
            &claim("shop", "data-db-1"),
            &NoJoins
        ));
        assert!(related(
            Relation::Mounts,
            &bare,
            &claim("shop", "data-db-1"),
            &Topo
        ));
    }

    #[test]
    fn relation_names_round_trip() {
        for (n, r) in Relation::ALL {
            assert_eq!(Relation::parse(n), Some(*r));
            assert_eq!(r.as_str(), *n);
        }
        assert_eq!(Relation::parse("runs_on"), None);
    }
}
