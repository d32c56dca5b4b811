//! Entities: the things that can be a cause, named by OpenTelemetry resource attributes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A flat JSON object of OpenTelemetry semantic-convention keys (`host.name`, `k8s.pod.uid`, …).
pub type Attributes = BTreeMap<String, serde_json::Value>;

/// What kind of thing an entity is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityKind {
    /// A Linux machine (`host.name`).
    Host,
    /// A Kubernetes node (`k8s.node.name`).
    Node,
    /// A Kubernetes pod (`k8s.pod.uid`).
    Pod,
    /// A container (`container.id`).
    Container,
    /// A control group (`daytwo.cgroup.path` on `host.name`).
    Cgroup,
    /// A process (`process.pid` on `host.name`).
    Process,
    /// A systemd unit.
    Unit,
    /// A service (`service.name`).
    Service,
    /// A workload: Deployment, StatefulSet, DaemonSet, Job.
    Workload,
    /// A volume.
    Volume,
    /// A mounted filesystem.
    Filesystem,
    /// A network interface.
    Interface,
    /// A whole cluster.
    Cluster,
}

impl EntityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Host => "host",
            EntityKind::Node => "node",
            EntityKind::Pod => "pod",
            EntityKind::Container => "container",
            EntityKind::Cgroup => "cgroup",
            EntityKind::Process => "process",
            EntityKind::Unit => "unit",
            EntityKind::Service => "service",
            EntityKind::Workload => "workload",
            EntityKind::Volume => "volume",
            EntityKind::Filesystem => "filesystem",
            EntityKind::Interface => "interface",
            EntityKind::Cluster => "cluster",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "host" => EntityKind::Host,
            "node" => EntityKind::Node,
            "pod" => EntityKind::Pod,
            "container" => EntityKind::Container,
            "cgroup" => EntityKind::Cgroup,
            "process" => EntityKind::Process,
            "unit" => EntityKind::Unit,
            "service" => EntityKind::Service,
            "workload" => EntityKind::Workload,
            "volume" => EntityKind::Volume,
            "filesystem" => EntityKind::Filesystem,
            "interface" => EntityKind::Interface,
            "cluster" => EntityKind::Cluster,
            _ => return None,
        })
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that can be a cause. `attributes` carry its identity; `name` is for humans.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub kind: EntityKind,
    pub name: String,
    #[serde(default)]
    pub attributes: Attributes,
}

/// The attribute keys that identify an entity of each kind (in order of preference).
/// Everything else in `attributes` is description, not identity.
pub const IDENTITY_KEYS: &[&str] = &[
    "k8s.cluster.name",
    "host.name",
    "k8s.node.name",
    "k8s.namespace.name",
    // Workload owners and other namespaced objects (docs/signals.md, "Kubernetes").
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.replicaset.name",
    "k8s.job.name",
    "k8s.cronjob.name",
    "k8s.hpa.name",
    "k8s.persistentvolumeclaim.name",
    "k8s.configmap.name",
    "k8s.secret.name",
    "k8s.ingress.name",
    "k8s.networkpolicy.name",
    "k8s.poddisruptionbudget.name",
    "k8s.pod.uid",
    "k8s.pod.name",
    "container.id",
    "k8s.container.name",
    "daytwo.cgroup.path",
    "process.pid",
    "service.namespace",
    "service.name",
    "systemd.unit",
    "mount.point",
    "system.device",
    "network.interface.name",
];

impl Entity {
    pub fn new(kind: EntityKind, name: impl Into<String>) -> Self {
        Entity {
            kind,
            name: name.into(),
            attributes: Attributes::new(),
        }
    }

    pub fn with_attr(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.attributes.insert(key.to_string(), value.into());
        self
    }

    /// A canonical key that is equal for two descriptions of the same entity and never
    /// includes free text: kind plus the identity attributes that are present.
    pub fn key(&self) -> String {
        let mut any = false;
        // An entity has a few attributes: find each in the list of identity keys (mostly a
        // length comparison) rather than look every identity key up in the map.
        let mut present = [None; IDENTITY_KEYS.len()];
        // The key's length, for one allocation (a value that is not a string is sized below).
        let mut len = self.kind.as_str().len() + "|name=".len() + self.name.len();
        for (name, v) in &self.attributes {
            if let Some(i) = IDENTITY_KEYS.iter().position(|id| id == name) {
                present[i] = Some(v);
                len += 2 + name.len() + v.as_str().map_or(8, str::len);
            }
        }
        let mut k = String::with_capacity(len);
        k.push_str(self.kind.as_str());
        for (id, v) in IDENTITY_KEYS.iter().zip(present) {
            if let Some(v) = v {
                k.push('|');
                k.push_str(id);
                k.push('=');
                match v {
                    serde_json::Value::String(s) => k.push_str(s),
                    other => k.push_str(&other.to_string()),
                }
                any = true;
            }
        }
        if !any {
            k.push_str("|name=");
            k.push_str(&self.name);
        }
        k
    }

    /// The host this entity lives on, when it is host-local.
    pub fn host(&self) -> Option<&str> {
        self.attributes.get("host.name").and_then(|v| v.as_str())
    }

    /// The cluster this entity belongs to, if known.
    pub fn cluster(&self) -> Option<&str> {
        self.attributes
            .get("k8s.cluster.name")
            .and_then(|v| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ignores_name_when_identity_is_present() {
        let a = Entity::new(EntityKind::Cgroup, "a")
            .with_attr("daytwo.cgroup.path", "/x")
            .with_attr("host.name", "h");
        let b = Entity::new(EntityKind::Cgroup, "b")
            .with_attr("host.name", "h")
            .with_attr("daytwo.cgroup.path", "/x");
        assert_eq!(a.key(), b.key());
        let c = Entity::new(EntityKind::Cgroup, "a")
            .with_attr("daytwo.cgroup.path", "/y")
            .with_attr("host.name", "h");
        assert_ne!(a.key(), c.key());
    }

    #[test]
    fn key_lists_identity_attributes_in_identity_key_order() {
        // The key as the identity keys are listed, each looked up in turn, for many subsets
        // of them mixed with other attributes and non-string values.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..500 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut e = Entity::new(EntityKind::Pod, format!("n{round}"));
            for (i, id) in IDENTITY_KEYS.iter().enumerate() {
                if x >> (i % 64) & 1 == 1 {
                    e = if i % 5 == 0 {
                        e.with_attr(id, round as i64)
                    } else {
                        e.with_attr(id, format!("v{i}"))
                    };
                }
            }
            if round % 3 == 0 {
                e = e.with_attr("k8s.pod.ip", "10.0.0.1").with_attr("zz", true);
            }
            let mut expected = String::from("pod");
            for id in IDENTITY_KEYS {
                if let Some(v) = e.attributes.get(*id) {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    expected.push_str(&format!("|{id}={v}"));
                }
            }
            if expected == "pod" {
                expected.push_str(&format!("|name=n{round}"));
            }
            assert_eq!(e.key(), expected);
        }
    }

    #[test]
    fn kind_round_trips() {
        for k in ["host", "cgroup", "pod", "cluster"] {
            assert_eq!(EntityKind::parse(k).unwrap().as_str(), k);
        }
        assert!(EntityKind::parse("nope").is_none());
    }
}
