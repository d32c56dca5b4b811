//! The node detectors: each [`NodeSnapshot`] is fed to the `daytwo-detect` series detectors,
//! one set per filesystem and per cgroup, and every firing becomes a signal.
//!
//! Entry types: [`DetectConfig`] (levels and durations, serde with `deny_unknown_fields`) and
//! [`NodeDetectors`], whose [`NodeDetectors::observe`] is pure: the snapshot carries its time.
//!
//! | event | detector | severity |
//! |---|---|---|
//! | `daytwo.node.filesystem_full` | `Threshold` on space (and, separately, inodes) used, enter 98 % (or nothing available), exit 95 % | critical |
//! | `daytwo.node.filesystem_filling` | `Forecast` of bytes used against used + available, horizon 1 h | warning |
//! | `daytwo.container.cpu_throttled` | `CpuThrottling` on `cpu.stat` counters, enter 25 %, exit 10 %, for 6 intervals | warning |
//! | `daytwo.container.memory_growth` | `MemoryGrowth` of the working set against the limit, horizon 1 h | warning |
//! | `daytwo.container.memory_pressure` | `MemoryPressure` on the cgroup's PSI `some avg10`, enter 10 %, exit 5 %, for 3 intervals | warning |
//! | `daytwo.node.memory_pressure` | the same on `/proc/pressure/memory` | warning |
//! | `daytwo.node.conntrack_near_full` | `Threshold` on `nf_conntrack_count / nf_conntrack_max`, enter 90 %, exit 80 % | warning |
//!
//! Invariants: only transitions into firing make signals (a detector resolving is logged by the
//! absence of new signals; the incident is resolved by people or by the collector's rules); the
//! state of a filesystem or cgroup that vanished is dropped with it, so memory stays bounded by
//! the snapshot's own bounds; the root cgroup `/` is the host and gets no container detectors;
//! read-only filesystems (ISO images, squashfs are always full) get no space detectors.

use super::NodeSnapshot;
use super::cgroups::{CgroupStats, KubeIds};
use super::fs::Filesystem;
use daytwo_detect::series::{
    CpuThrottling, CpuThrottlingConfig, Detection, DetectionKind, Forecast, ForecastConfig,
    MemoryGrowth, MemoryGrowthConfig, MemoryPressure, MemoryPressureConfig, Threshold,
    ThresholdConfig,
};
use daytwo_k8s::map::pod::PodMeta;
use daytwo_model::{Attributes, Entity, EntityKind, Evidence, Severity, Signal, stable_id};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

pub const FILESYSTEM_FULL: &str = "daytwo.node.filesystem_full";
pub const FILESYSTEM_FILLING: &str = "daytwo.node.filesystem_filling";
pub const FILESYSTEM_UNRESPONSIVE: &str = "daytwo.node.filesystem_unresponsive";
pub const CPU_THROTTLED: &str = "daytwo.container.cpu_throttled";
pub const MEMORY_GROWTH: &str = "daytwo.container.memory_growth";
pub const CONTAINER_MEMORY_PRESSURE: &str = "daytwo.container.memory_pressure";
pub const NODE_MEMORY_PRESSURE: &str = "daytwo.node.memory_pressure";
pub const CONNTRACK_NEAR_FULL: &str = "daytwo.node.conntrack_near_full";

/// Every event name the node detectors emit.
pub const EVENTS: &[&str] = &[
    FILESYSTEM_FULL,
    FILESYSTEM_FILLING,
    CPU_THROTTLED,
    MEMORY_GROWTH,
    CONTAINER_MEMORY_PRESSURE,
    NODE_MEMORY_PRESSURE,
    CONNTRACK_NEAR_FULL,
];

/// Levels and durations of the node detectors (`agent.node.detect` in the config file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// `filesystem_full` fires when this share of a filesystem's space (or inodes) is used,
    /// or when nothing is available.
    pub filesystem_full_ratio: f64,
    /// … and is over again when usage falls to this share.
    pub filesystem_full_exit_ratio: f64,
    /// `filesystem_filling` fires when the trend reaches full within this many seconds.
    pub filesystem_filling_horizon_secs: f64,
    /// How far back the filling trend looks, in seconds.
    pub filesystem_filling_window_secs: f64,
    /// `cpu_throttled` fires when this share of CFS periods was throttled …
    pub cpu_throttled_ratio: f64,
    /// … resolves at this share …
    pub cpu_throttled_exit_ratio: f64,
    /// … and either needs to hold this long (default: 6 sampling intervals, 60 s at 10 s).
    pub cpu_throttled_min_duration_secs: Option<f64>,
    /// `memory_growth` fires when the working set reaches the limit within this many seconds.
    pub memory_growth_horizon_secs: f64,
    /// How far back the memory trend looks, in seconds.
    pub memory_growth_window_secs: f64,
    /// `memory_pressure` fires at this PSI `some avg10` (percent) …
    pub memory_pressure_percent: f64,
    /// … resolves at this one …
    pub memory_pressure_exit_percent: f64,
    /// … and either needs to hold this long (default: 3 sampling intervals, 30 s at 10 s).
    pub memory_pressure_min_duration_secs: Option<f64>,
    /// `conntrack_near_full` fires when this share of `nf_conntrack_max` is used …
    pub conntrack_ratio: f64,
    /// … and resolves at this share.
    pub conntrack_exit_ratio: f64,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            filesystem_full_ratio: 0.98,
            filesystem_full_exit_ratio: 0.95,
            filesystem_filling_horizon_secs: 3600.0,
            filesystem_filling_window_secs: 1800.0,
            cpu_throttled_ratio: 0.25,
            cpu_throttled_exit_ratio: 0.10,
            cpu_throttled_min_duration_secs: None,
            memory_growth_horizon_secs: 3600.0,
            memory_growth_window_secs: 3600.0,
            memory_pressure_percent: 10.0,
            memory_pressure_exit_percent: 5.0,
            memory_pressure_min_duration_secs: None,
            conntrack_ratio: 0.90,
            conntrack_exit_ratio: 0.80,
        }
    }
}

impl DetectConfig {
    /// Fills the durations left to the sampling interval.
    pub fn for_interval(&self, interval: Duration) -> DetectConfig {
        let i = interval.as_secs_f64();
        let mut c = self.clone();
        c.cpu_throttled_min_duration_secs.get_or_insert(6.0 * i);
        c.memory_pressure_min_duration_secs.get_or_insert(3.0 * i);
        c
    }

    /// Checks that every detector can be built; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let c = self.for_interval(Duration::from_secs(10));
        let mut d = NodeDetectors::new("validate".into(), c);
        d.fs_state("/").map_err(|e| e.to_string())?;
        d.cgroup_detectors_valid()
    }
}

struct FsState {
    bytes_full: Threshold,
    inodes_full: Threshold,
    filling: Forecast,
}

#[derive(Default)]
struct CgState {
    throttling: Option<CpuThrottling>,
    growth: Option<MemoryGrowth>,
    pressure: Option<MemoryPressure>,
}

/// Detector state for one node. See the module docs.
pub struct NodeDetectors {
    host: String,
    cfg: DetectConfig,
    fs: HashMap<String, FsState>,
    /// Mount points unresponsive in the last snapshot (a signal when one joins).
    unresponsive: std::collections::HashSet<String>,
    cgroups: HashMap<String, CgState>,
    host_pressure: Option<MemoryPressure>,
    conntrack: Option<Threshold>,
}

impl std::fmt::Debug for NodeDetectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeDetectors")
            .field("host", &self.host)
            .field("filesystems", &self.fs.len())
            .field("cgroups", &self.cgroups.len())
            .finish()
    }
}

fn evidence(d: &Detection, series: &str) -> Vec<Evidence> {
    d.evidence
        .iter()
        .map(|(t, v)| Evidence {
            time: *t,
            kind: "sample".into(),
            text: format!("{series}={v}"),
        })
        .collect()
}

fn reading(t: daytwo_model::Timestamp, text: String) -> Evidence {
    Evidence {
        time: t,
        kind: "reading".into(),
        text,
    }
}

/// The entity a cgroup's signals are about, and how a sentence names it. `pod` is what the
/// agent's pod watch knows about the cgroup's pod (namespace, pod and container names), if
/// anything.
pub fn cgroup_entity(host: &str, c: &CgroupStats, pod: Option<&PodMeta>) -> (Entity, String) {
    path_entity(host, &c.path, c.kube.as_ref(), pod)
}

/// [`cgroup_entity`] for a cgroup known by its path and the Kubernetes ids in it.
pub fn path_entity(
    host: &str,
    path: &str,
    kube: Option<&KubeIds>,
    pod: Option<&PodMeta>,
) -> (Entity, String) {
    let e = match kube.map(|k| (k.pod_uid.as_deref(), k.container_id.as_deref())) {
        Some((pod, Some(cid))) => {
            let short = &cid[..cid.len().min(12)];
            let mut e = Entity::new(EntityKind::Container, short).with_attr("container.id", cid);
            if let Some(p) = pod {
                e = e.with_attr("k8s.pod.uid", p);
            }
            e
        }
        Some((Some(pod), None)) => Entity::new(EntityKind::Pod, pod).with_attr("k8s.pod.uid", pod),
        _ => Entity::new(EntityKind::Cgroup, path),
    };
    let pod = pod.filter(|p| kube.and_then(|k| k.pod_uid.as_deref()) == Some(p.uid.as_str()));
    let container_name = pod
        .zip(kube.and_then(|k| k.container_id.as_deref()))
        .and_then(|(p, id)| p.container_name(id));
    let subject = match (e.kind, pod, container_name) {
        (EntityKind::Container, Some(p), Some(n)) => {
            format!("container {n} of pod {}/{} ({})", p.namespace, p.name, path)
        }
        (EntityKind::Container, Some(p), None) => {
            format!(
                "container {} of pod {}/{} ({})",
                e.name, p.namespace, p.name, path
            )
        }
        (EntityKind::Container, None, _) => format!("container {} ({})", e.name, path),
        (EntityKind::Pod, Some(p), _) => format!("pod {}/{} ({})", p.namespace, p.name, path),
        (EntityKind::Pod, None, _) => format!("pod {} ({})", e.name, path),
        _ => format!("cgroup {}", path),
    };
    let mut e = e;
    if let Some(p) = pod {
        e = e
            .with_attr("k8s.namespace.name", p.namespace.as_str())
            .with_attr("k8s.pod.name", p.name.as_str());
    }
    if let Some(n) = container_name {
        e = e.with_attr("k8s.container.name", n);
    }
    let e = e
        .with_attr("host.name", host)
        .with_attr("daytwo.cgroup.path", path);
    (e, subject)
}

fn fs_entity(host: &str, m: &super::fs::Mount) -> Entity {
    Entity::new(EntityKind::Filesystem, m.mountpoint.as_str())
        .with_attr("host.name", host)
        .with_attr("mount.point", m.mountpoint.as_str())
        .with_attr("system.device", m.device.as_str())
}

fn human_bytes(b: u64) -> String {
    crate::kmsg::signal::human_bytes(b)
}

impl NodeDetectors {
    /// `cfg` should have its durations filled ([`DetectConfig::for_interval`]).
    pub fn new(host: String, cfg: DetectConfig) -> Self {
        let cfg = cfg.for_interval(Duration::from_secs(10));
        NodeDetectors {
            host_pressure: MemoryPressure::new(MemoryPressureConfig {
                enter_percent: cfg.memory_pressure_percent,
                exit_percent: cfg.memory_pressure_exit_percent,
                min_duration_secs: cfg.memory_pressure_min_duration_secs.unwrap_or(30.0),
                ..MemoryPressureConfig::new(format!("host {host}"))
            })
            .ok(),
            conntrack: Threshold::new(ThresholdConfig {
                subject: format!("Connection tracking table of {host}"),
                unit: "ratio".into(),
                ..ThresholdConfig::new(cfg.conntrack_ratio, cfg.conntrack_exit_ratio)
            })
            .ok(),
            host,
            cfg,
            fs: HashMap::new(),
            unresponsive: Default::default(),
            cgroups: HashMap::new(),
        }
    }

    /// Filesystems and cgroups with detector state (for tests and the debug view).
    pub fn tracked(&self) -> (usize, usize) {
        (self.fs.len(), self.cgroups.len())
    }

    fn fs_state(
        &mut self,
        mountpoint: &str,
    ) -> Result<&mut FsState, daytwo_detect::series::DetectorConfigInvalid> {
        if !self.fs.contains_key(mountpoint) {
            let c = &self.cfg;
            let full = |what: &str| {
                Threshold::new(ThresholdConfig {
                    subject: format!("{what} used on {mountpoint}"),
                    unit: "ratio".into(),
                    ..ThresholdConfig::new(c.filesystem_full_ratio, c.filesystem_full_exit_ratio)
                })
            };
            let st = FsState {
                bytes_full: full("Space")?,
                inodes_full: full("Inodes")?,
                filling: Forecast::new(ForecastConfig {
                    subject: format!("{mountpoint} on {}", self.host),
                    horizon_secs: c.filesystem_filling_horizon_secs,
                    window_secs: c.filesystem_filling_window_secs,
                    ..ForecastConfig::new(1.0)
                })?,
            };
            self.fs.insert(mountpoint.to_string(), st);
        }
        Ok(self.fs.get_mut(mountpoint).expect("inserted above"))
    }

    fn cgroup_detectors_valid(&mut self) -> Result<(), String> {
        let c = &self.cfg;
        CpuThrottling::new(self.throttling_config("x")).map_err(|e| e.to_string())?;
        MemoryGrowth::new(MemoryGrowthConfig {
            subject: "x".into(),
            limit_bytes: 1.0,
            horizon_secs: c.memory_growth_horizon_secs,
            window_secs: c.memory_growth_window_secs,
        })
        .map_err(|e| e.to_string())?;
        MemoryPressure::new(self.pressure_config("x")).map_err(|e| e.to_string())?;
        Threshold::new(ThresholdConfig::new(
            c.conntrack_ratio,
            c.conntrack_exit_ratio,
        ))
        .map_err(|e| format!("conntrack: {e}"))?;
        Ok(())
    }

    fn throttling_config(&self, subject: &str) -> CpuThrottlingConfig {
        CpuThrottlingConfig {
            enter_ratio: self.cfg.cpu_throttled_ratio,
            exit_ratio: self.cfg.cpu_throttled_exit_ratio,
            min_duration_secs: self.cfg.cpu_throttled_min_duration_secs.unwrap_or(60.0),
            ..CpuThrottlingConfig::new(subject)
        }
    }

    fn pressure_config(&self, subject: &str) -> MemoryPressureConfig {
        MemoryPressureConfig {
            enter_percent: self.cfg.memory_pressure_percent,
            exit_percent: self.cfg.memory_pressure_exit_percent,
            min_duration_secs: self.cfg.memory_pressure_min_duration_secs.unwrap_or(30.0),
            ..MemoryPressureConfig::new(subject)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn signal(
        &self,
        name: &str,
        severity: Severity,
        entity: Entity,
        d: &Detection,
        attributes: Attributes,
        message: String,
        evidence: Vec<Evidence>,
    ) -> Signal {
        self.signal_at(
            name, severity, entity, d.time, attributes, message, evidence,
        )
    }

    /// A signal of this host about `entity` at `time`, its id stable for that time.
    #[allow(clippy::too_many_arguments)]
    fn signal_at(
        &self,
        name: &str,
        severity: Severity,
        entity: Entity,
        time: daytwo_model::Timestamp,
        attributes: Attributes,
        message: String,
        evidence: Vec<Evidence>,
    ) -> Signal {
        let mut resource = Attributes::new();
        resource.insert("host.name".into(), self.host.clone().into());
        Signal {
            id: stable_id(&[
                "node",
                &self.host,
                name,
                &entity.key(),
                &time.unix_nanos().to_string(),
            ]),
            name: name.to_string(),
            time,
            severity,
            entity,
            resource,
            attributes,
            message,
            evidence,
        }
    }

    /// Feeds one snapshot to every detector; returns the signals of the detectors that started
    /// firing.
    pub fn observe(&mut self, snap: &NodeSnapshot) -> Vec<Signal> {
        let mut out = Vec::new();
        self.observe_filesystems(snap, &mut out);
        self.observe_host(snap, &mut out);
        self.observe_cgroups(snap, &mut out);
        out
    }

    fn observe_filesystems(&mut self, snap: &NodeSnapshot, out: &mut Vec<Signal>) {
        let t = snap.time;
        let mut seen = Vec::new();
        for f in &snap.filesystems {
            if f.mount.read_only || f.size_bytes == 0 {
                continue;
            }
            let mp = f.mount.mountpoint.as_str();
            seen.push(mp);
            let Ok(st) = self.fs_state(mp) else {
                continue;
            };
            let bytes = f.used_ratio().and_then(|r| st.bytes_full.observe(t, r));
            let inodes = f
                .inodes_used_ratio()
                .and_then(|r| st.inodes_full.observe(t, r));
            let (used, cap) = f.used_and_capacity();
            st.filling.set_capacity(cap as f64);
            let filling = st.filling.observe(t, used as f64);
            let fit = st.filling.last_fit();
            for (d, resource) in [(bytes, "bytes"), (inodes, "inodes")] {
                if let Some(d) = d.filter(|d| d.kind == DetectionKind::ThresholdFiring) {
                    out.push(self.filesystem_full(f, &d, resource, t));
                }
            }
            if let Some(d) = filling.filter(|d| d.kind == DetectionKind::ForecastFiring) {
                out.push(self.filesystem_filling(f, &d, fit));
            }
        }
        // A mount that does not answer keeps its detectors' state for when it answers again.
        let mut now_stuck = std::collections::HashSet::new();
        for m in &snap.filesystems_unresponsive {
            seen.push(m.mountpoint.as_str());
            now_stuck.insert(m.mountpoint.clone());
            if !self.unresponsive.contains(&m.mountpoint) {
                out.push(self.filesystem_unresponsive(m, snap));
            }
        }
        self.unresponsive = now_stuck;
        let seen: std::collections::HashSet<&str> = seen.into_iter().collect();
        self.fs.retain(|k, _| seen.contains(k.as_str()));
    }

    fn filesystem_unresponsive(&self, m: &super::fs::Mount, snap: &NodeSnapshot) -> Signal {
        let mp = &m.mountpoint;
        let mut a = Attributes::new();
        a.insert("mount.point".into(), mp.clone().into());
        a.insert("system.device".into(), m.device.clone().into());
        a.insert("daytwo.fs.type".into(), m.fs_type.clone().into());
        self.signal_at(
            FILESYSTEM_UNRESPONSIVE,
            Severity::Critical,
            fs_entity(&self.host, m),
            snap.time,
            a,
            format!(
                "Filesystem {mp} ({}, {}) on {} does not answer: statvfs did not return within the mount timeout; processes that touch it hang.",
                m.device, m.fs_type, self.host
            ),
            vec![reading(
                snap.time,
                format!("statvfs({mp}): no answer (device {}, type {})", m.device, m.fs_type),
            )],
        )
    }

    fn fs_attributes(f: &Filesystem) -> Attributes {
        let mut a = Attributes::new();
        let mut put = |k: &str, v: serde_json::Value| {
            a.insert(k.to_string(), v);
        };
        put("mount.point", f.mount.mountpoint.clone().into());
        put("system.device", f.mount.device.clone().into());
        put("daytwo.fs.type", f.mount.fs_type.clone().into());
        put("daytwo.fs.size_bytes", f.size_bytes.into());
        put("daytwo.fs.avail_bytes", f.avail_bytes.into());
        put("daytwo.fs.files", f.files.into());
        put("daytwo.fs.files_free", f.files_free.into());
        a
    }

    fn filesystem_full(
        &self,
        f: &Filesystem,
        d: &Detection,
        resource: &str,
        t: daytwo_model::Timestamp,
    ) -> Signal {
        let mut a = Self::fs_attributes(f);
        a.insert("daytwo.fs.resource".into(), resource.into());
        a.insert("daytwo.fs.used_ratio".into(), d.value.into());
        let mp = &f.mount.mountpoint;
        let message = if resource == "inodes" {
            format!(
                "Filesystem {mp} on {} is out of inodes: {} of {} in use ({:.1}%); no new files can be created.",
                self.host,
                f.files.saturating_sub(f.files_free),
                f.files,
                d.value * 100.0
            )
        } else if f.avail_bytes == 0 {
            format!(
                "Filesystem {mp} on {} is full: 0 B available of {} ({}); writes fail with ENOSPC.",
                self.host,
                human_bytes(f.size_bytes),
                f.mount.fs_type
            )
        } else {
            format!(
                "Filesystem {mp} on {} is {:.1}% full: {} available of {} ({}).",
                self.host,
                d.value * 100.0,
                human_bytes(f.avail_bytes),
                human_bytes(f.size_bytes),
                f.mount.fs_type
            )
        };
        let series = if resource == "inodes" {
            format!("inodes_used_ratio{{mountpoint=\"{mp}\"}}")
        } else {
            format!("used_ratio{{mountpoint=\"{mp}\"}}")
        };
        let mut ev = evidence(d, &series);
        ev.push(reading(
            t,
            format!(
                "statvfs({mp}): size_bytes={} free_bytes={} avail_bytes={} files={} files_free={}",
                f.size_bytes, f.free_bytes, f.avail_bytes, f.files, f.files_free
            ),
        ));
        self.signal(
            FILESYSTEM_FULL,
            Severity::Critical,
            fs_entity(&self.host, &f.mount),
            d,
            a,
            message,
            ev,
        )
    }

    fn filesystem_filling(
        &self,
        f: &Filesystem,
        d: &Detection,
        fit: Option<daytwo_detect::series::Fit>,
    ) -> Signal {
        let mut a = Self::fs_attributes(f);
        a.insert("daytwo.fs.resource".into(), "bytes".into());
        a.insert("daytwo.forecast.eta_secs".into(), d.magnitude.into());
        if let Some(fit) = fit {
            a.insert(
                "daytwo.forecast.growth_bytes_per_sec".into(),
                fit.slope_per_sec.into(),
            );
        }
        let mp = &f.mount.mountpoint;
        self.signal(
            FILESYSTEM_FILLING,
            Severity::Warning,
            fs_entity(&self.host, &f.mount),
            d,
            a,
            d.message.clone(),
            evidence(d, &format!("used_bytes{{mountpoint=\"{mp}\"}}")),
        )
    }

    fn host_entity(&self) -> Entity {
        Entity::new(EntityKind::Host, self.host.as_str()).with_attr("host.name", self.host.as_str())
    }

    fn observe_host(&mut self, snap: &NodeSnapshot, out: &mut Vec<Signal>) {
        let t = snap.time;
        if let Some(psi) = snap.host.pressure.memory
            && let Some(p) = self.host_pressure.as_mut()
            && let Some(d) = p.observe(t, psi.some.avg10)
            && d.kind == DetectionKind::ThresholdFiring
        {
            let mut a = Attributes::new();
            a.insert("daytwo.psi.some_avg10".into(), psi.some.avg10.into());
            a.insert("daytwo.psi.some_avg60".into(), psi.some.avg60.into());
            if let Some(full) = psi.full {
                a.insert("daytwo.psi.full_avg10".into(), full.avg10.into());
            }
            let ev = evidence(&d, "memory_psi_some_avg10");
            let msg = d.message.clone();
            out.push(self.signal(
                NODE_MEMORY_PRESSURE,
                Severity::Warning,
                self.host_entity(),
                &d,
                a,
                msg,
                ev,
            ));
        }
        if let Some((count, max)) = snap.host.conntrack
            && max > 0
            && let Some(th) = self.conntrack.as_mut()
            && let Some(d) = th.observe(t, count as f64 / max as f64)
            && d.kind == DetectionKind::ThresholdFiring
        {
            let mut a = Attributes::new();
            a.insert("daytwo.conntrack.count".into(), count.into());
            a.insert("daytwo.conntrack.max".into(), max.into());
            a.insert("daytwo.conntrack.ratio".into(), d.value.into());
            let msg = format!(
                "Connection tracking table of {} is {:.1}% full ({count} of {max} entries); new connections are dropped when it is full.",
                self.host,
                d.value * 100.0
            );
            let mut ev = evidence(&d, "conntrack_ratio");
            ev.push(reading(
                t,
                format!("nf_conntrack_count={count} nf_conntrack_max={max}"),
            ));
            out.push(self.signal(
                CONNTRACK_NEAR_FULL,
                Severity::Warning,
                self.host_entity(),
                &d,
                a,
                msg,
                ev,
            ));
        }
    }

    fn observe_cgroups(&mut self, snap: &NodeSnapshot, out: &mut Vec<Signal>) {
        let t = snap.time;
        let mut states = std::mem::take(&mut self.cgroups);
        let mut next = HashMap::with_capacity(states.len());
        for c in &snap.cgroups {
            if c.path == "/" {
                continue;
            }
            let mut st = states.remove(&c.path).unwrap_or_default();
            let pod = c
                .kube
                .as_ref()
                .and_then(|k| k.pod_uid.as_deref())
                .and_then(crate::kube::pod_meta);
            let (entity, subject) = cgroup_entity(&self.host, c, pod.as_deref());
            let mut base = Attributes::new();
            base.insert("daytwo.cgroup.path".into(), c.path.clone().into());
            if let Some(k) = &c.kube {
                base.insert("daytwo.k8s.qos_class".into(), k.qos.into());
                if let Some(p) = &k.pod_uid {
                    base.insert("k8s.pod.uid".into(), p.clone().into());
                }
                if let Some(id) = &k.container_id {
                    base.insert("container.id".into(), id.clone().into());
                }
                if let Some(rt) = k.runtime {
                    base.insert("container.runtime".into(), rt.into());
                }
            }

            // CPU throttling: only where a quota exists (or existed: periods are counted).
            if let Some(cpu) = c.cpu
                && (c.cpu_limit_cores.is_some() || cpu.nr_periods > 0)
            {
                if st.throttling.is_none() {
                    st.throttling = CpuThrottling::new(self.throttling_config(&subject)).ok();
                }
                if let Some(th) = st.throttling.as_mut()
                    && let Some(d) = th.observe_counters(t, cpu.nr_periods, cpu.nr_throttled)
                    && d.kind == DetectionKind::ThresholdFiring
                {
                    let mut a = base.clone();
                    a.insert("daytwo.cpu.throttled_ratio".into(), d.value.into());
                    a.insert("daytwo.cpu.nr_periods".into(), cpu.nr_periods.into());
                    a.insert("daytwo.cpu.nr_throttled".into(), cpu.nr_throttled.into());
                    a.insert(
                        "daytwo.cpu.throttled_secs".into(),
                        (cpu.throttled_nanos as f64 / 1e9).into(),
                    );
                    let limit = c
                        .cpu_limit_cores
                        .map(|l| {
                            a.insert("daytwo.cpu.limit_cores".into(), l.into());
                            format!(" by its CPU limit of {l} cores")
                        })
                        .unwrap_or_default();
                    let message = format!(
                        "The kernel throttled {subject}{limit} in {:.0}% of its scheduling periods: its threads are runnable but wait for the next period, which shows as latency.",
                        d.value * 100.0
                    );
                    let mut ev = evidence(&d, "throttled_ratio");
                    ev.push(reading(
                        t,
                        format!(
                            "cpu.stat: nr_periods {} nr_throttled {} throttled_time {}",
                            cpu.nr_periods, cpu.nr_throttled, cpu.throttled_nanos
                        ),
                    ));
                    out.push(self.signal(
                        CPU_THROTTLED,
                        Severity::Warning,
                        entity.clone(),
                        &d,
                        a,
                        message,
                        ev,
                    ));
                }
            }

            // Memory growth towards a limit.
            match (c.memory_working_set_bytes, c.memory_limit_bytes) {
                (Some(ws), Some(limit)) => {
                    if st.growth.is_none() {
                        st.growth = MemoryGrowth::new(MemoryGrowthConfig {
                            subject: subject.clone(),
                            limit_bytes: limit as f64,
                            horizon_secs: self.cfg.memory_growth_horizon_secs,
                            window_secs: self.cfg.memory_growth_window_secs,
                        })
                        .ok();
                    }
                    if let Some(g) = st.growth.as_mut() {
                        g.set_limit(limit as f64);
                        if let Some(d) = g.observe(t, ws as f64)
                            && d.kind == DetectionKind::ForecastFiring
                        {
                            let mut a = base.clone();
                            a.insert("daytwo.memory.working_set_bytes".into(), ws.into());
                            a.insert("daytwo.memory.limit_bytes".into(), limit.into());
                            a.insert("daytwo.forecast.eta_secs".into(), d.magnitude.into());
                            let ev = evidence(&d, "working_set_bytes");
                            out.push(self.signal(
                                MEMORY_GROWTH,
                                Severity::Warning,
                                entity.clone(),
                                &d,
                                a,
                                d.message.clone(),
                                ev,
                            ));
                        }
                    }
                }
                _ => st.growth = None,
            }

            // Memory pressure (PSI, cgroup v2).
            if let Some(psi) = c.pressure.memory {
                if st.pressure.is_none() {
                    st.pressure = MemoryPressure::new(self.pressure_config(&subject)).ok();
                }
                if let Some(p) = st.pressure.as_mut()
                    && let Some(d) = p.observe(t, psi.some.avg10)
                    && d.kind == DetectionKind::ThresholdFiring
                {
                    let mut a = base.clone();
                    a.insert("daytwo.psi.some_avg10".into(), psi.some.avg10.into());
                    a.insert("daytwo.psi.some_avg60".into(), psi.some.avg60.into());
                    if let Some(full) = psi.full {
                        a.insert("daytwo.psi.full_avg10".into(), full.avg10.into());
                    }
                    let ev = evidence(&d, "memory_psi_some_avg10");
                    out.push(self.signal(
                        CONTAINER_MEMORY_PRESSURE,
                        Severity::Warning,
                        entity.clone(),
                        &d,
                        a,
                        d.message.clone(),
                        ev,
                    ));
                }
            }
            if st.throttling.is_some() || st.growth.is_some() || st.pressure.is_some() {
                next.insert(c.path.clone(), st);
            }
        }
        // Whatever is left in `states` vanished.
        drop(states);
        self.cgroups = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::cgroups::{CpuStat, KubeIds};
    use crate::node::fs::Mount;
    use crate::node::procfs::{Psi, PsiLine};
    use daytwo_model::Timestamp;

    const HOST: &str = "node-1";

    fn cfg() -> DetectConfig {
        DetectConfig::default().for_interval(Duration::from_secs(1))
    }

    fn tmpfs(avail: u64) -> Filesystem {
        Filesystem {
            mount: Mount {
                device: "tmpfs".into(),
                mountpoint: "/tmp/fill".into(),
                fs_type: "tmpfs".into(),
                read_only: false,
            },
            size_bytes: 8 << 20,
            free_bytes: avail,
            avail_bytes: avail,
            files: 1000,
            files_free: 990,
        }
    }

    fn snap(secs: i64, filesystems: Vec<Filesystem>, cgroups: Vec<CgroupStats>) -> NodeSnapshot {
        NodeSnapshot {
            time: Timestamp::from_unix_secs(1_800_000_000 + secs),
            filesystems,
            cgroups,
            ..NodeSnapshot::default()
        }
    }

    #[test]
    fn an_unresponsive_mount_is_signalled_once_per_hang() {
        let nfs = Mount {
            device: "nfs1:/export".into(),
            mountpoint: "/mnt/nfs".into(),
            fs_type: "nfs4".into(),
            read_only: false,
        };
        let hung = |secs| NodeSnapshot {
            filesystems_unresponsive: vec![nfs.clone()],
            ..snap(secs, vec![], vec![])
        };
        let mut d = NodeDetectors::new(HOST.into(), cfg());
        assert!(d.observe(&snap(0, vec![], vec![])).is_empty());
        let s = d.observe(&hung(10));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, FILESYSTEM_UNRESPONSIVE);
        assert_eq!(s[0].severity, Severity::Critical);
        assert_eq!(s[0].entity.kind, EntityKind::Filesystem);
        assert_eq!(s[0].entity.name, "/mnt/nfs");
        assert_eq!(s[0].attributes["system.device"], "nfs1:/export");
        assert!(s[0].message.contains("/mnt/nfs"), "{}", s[0].message);
        assert!(d.observe(&hung(20)).is_empty(), "still the same hang");
        assert!(
            d.observe(&snap(30, vec![], vec![])).is_empty(),
            "it answers again"
        );
        let again = d.observe(&hung(40));
        assert_eq!(again.len(), 1, "a new hang is a new signal");
        assert_ne!(again[0].id, s[0].id);
    }

    #[test]
    fn a_full_filesystem_fires_once_critical_with_its_mount_point() {
        let mut d = NodeDetectors::new(HOST.into(), cfg());
        assert!(d.observe(&snap(0, vec![tmpfs(4 << 20)], vec![])).is_empty());
        let s = d.observe(&snap(1, vec![tmpfs(0)], vec![]));
        assert_eq!(s.len(), 1, "{s:?}");
        let s = &s[0];
        assert_eq!(s.name, FILESYSTEM_FULL);
        assert_eq!(s.severity, Severity::Critical);
        assert_eq!(s.entity.kind, EntityKind::Filesystem);
        assert_eq!(s.entity.name, "/tmp/fill");
        assert_eq!(s.entity.attributes["mount.point"], "/tmp/fill");
        assert_eq!(s.attributes["mount.point"], "/tmp/fill");
        assert_eq!(s.attributes["daytwo.fs.resource"], "bytes");
        assert_eq!(s.attributes["daytwo.fs.avail_bytes"], 0);
        assert_eq!(s.attributes["daytwo.fs.used_ratio"], 1.0);
        assert_eq!(s.resource["host.name"], HOST);
        assert!(
            s.message
                .starts_with("Filesystem /tmp/fill on node-1 is full: 0 B available of 8.0 MiB"),
            "{}",
            s.message
        );
        assert!(s.evidence.iter().any(|e| e.kind == "sample"));
        assert!(s.evidence.iter().any(|e| e.kind == "reading"));
        // Still full: no new signal. Same input to a fresh detector: the same id.
        assert!(d.observe(&snap(2, vec![tmpfs(0)], vec![])).is_empty());
        let mut again = NodeDetectors::new(HOST.into(), cfg());
        again.observe(&snap(0, vec![tmpfs(4 << 20)], vec![]));
        assert_eq!(again.observe(&snap(1, vec![tmpfs(0)], vec![]))[0].id, s.id);
        // Freed, then full again: a new signal with a new id.
        assert!(d.observe(&snap(3, vec![tmpfs(4 << 20)], vec![])).is_empty());
        let s2 = d.observe(&snap(4, vec![tmpfs(0)], vec![]));
        assert_eq!(s2.len(), 1);
        assert_ne!(s2[0].id, s.id);
    }

    #[test]
    fn ninety_seven_percent_is_not_full_and_read_only_is_ignored() {
        let mut d = NodeDetectors::new(HOST.into(), cfg());
        let mut f = tmpfs(0);
        f.avail_bytes = (f.size_bytes as f64 * 0.03) as u64;
        f.free_bytes = f.avail_bytes;
        assert!(d.observe(&snap(0, vec![f.clone()], vec![])).is_empty());
        let mut ro = tmpfs(0);
        ro.mount.read_only = true;
        assert!(d.observe(&snap(1, vec![ro], vec![])).is_empty());
        assert_eq!(d.tracked().0, 0, "the read-only one is not tracked");
    }

    #[test]
    fn inodes_exhausted_is_full_too() {
        let mut d = NodeDetectors::new(HOST.into(), cfg());
        let mut f = tmpfs(4 << 20);
        f.files_free = 0;
        let s = d.observe(&snap(0, vec![f], vec![]));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].attributes["daytwo.fs.resource"], "inodes");
        assert!(s[0].message.contains("out of inodes"), "{}", s[0].message);
    }

    #[test]
    fn a_steady_fill_is_forecast() {
        let mut d = NodeDetectors::new(HOST.into(), DetectConfig::default());
        let size: u64 = 100 << 30;
        let mut fired = None;
        // 10 GiB used, growing 20 MiB per 10 s (~2 GiB/min... 120 MiB/min): 90 GiB left.
        for i in 0..400i64 {
            let used = (10u64 << 30) + (i as u64) * (200 << 20);
            let f = Filesystem {
                mount: Mount {
                    device: "/dev/sda1".into(),
                    mountpoint: "/var".into(),
                    fs_type: "ext4".into(),
                    read_only: false,
                },
                size_bytes: size,
                free_bytes: size - used,
                avail_bytes: size - used,
                files: 1000,
                files_free: 900,
            };
            let s = d.observe(&snap(i * 10, vec![f], vec![]));
            if let Some(s) = s.into_iter().find(|s| s.name == FILESYSTEM_FILLING) {
                fired = Some((i, s));
                break;
            }
        }
        let (_, s) = fired.expect("the forecast fires");
        assert_eq!(s.severity, Severity::Warning);
        assert_eq!(s.entity.name, "/var");
        assert!(
            s.message.starts_with("/var on node-1 fills in about"),
            "{}",
            s.message
        );
        let eta = s.attributes["daytwo.forecast.eta_secs"].as_f64().unwrap();
        assert!(eta > 0.0 && eta <= 3600.0, "{eta}");
    }

    fn throttled(path: &str, periods: u64, throttled: u64) -> CgroupStats {
        CgroupStats {
            path: path.into(),
            cpu: Some(CpuStat {
                nr_periods: periods,
                nr_throttled: throttled,
                throttled_nanos: throttled * 9_000_000,
            }),
            cpu_limit_cores: Some(0.1),
            ..CgroupStats::default()
        }
    }

    #[test]
    fn a_throttled_cgroup_fires_after_six_intervals() {
        let mut d = NodeDetectors::new(HOST.into(), cfg());
        let mut fired = None;
        for i in 0..20u64 {
            let c = throttled("/busy", i * 10, i * 9);
            let s = d.observe(&snap(i as i64, vec![], vec![c]));
            if !s.is_empty() {
                fired = Some((i, s[0].clone()));
                break;
            }
        }
        let (i, s) = fired.expect("fires");
        // Primed at 0, first ratio at 1, held 6 s at 7.
        assert_eq!(i, 7);
        assert_eq!(s.name, CPU_THROTTLED);
        assert_eq!(s.severity, Severity::Warning);
        assert_eq!(s.entity.kind, EntityKind::Cgroup);
        assert_eq!(s.entity.name, "/busy");
        assert_eq!(s.attributes["daytwo.cgroup.path"], "/busy");
        assert_eq!(s.attributes["daytwo.cpu.limit_cores"], 0.1);
        assert!((s.attributes["daytwo.cpu.throttled_ratio"].as_f64().unwrap() - 0.9).abs() < 1e-9);
        assert!(
            s.message.starts_with(
                "The kernel throttled cgroup /busy by its CPU limit of 0.1 cores in 90%"
            ),
            "{}",
            s.message
        );
        // A vanished cgroup's state goes with it.
        d.observe(&snap(30, vec![], vec![]));
        assert_eq!(d.tracked().1, 0);
    }

    #[test]
    fn a_cgroup_recreated_with_reset_counters_gives_no_false_signal() {
        let mut d = NodeDetectors::new(HOST.into(), cfg());
        // Lightly throttled for a while, then recreated under the same path: its counters fall
        // from (100 periods, 10 throttled) to (1, 1), which as a naive difference would be a
        // negative or absurd ratio.
        for i in 0..10u64 {
            assert!(
                d.observe(&snap(i as i64, vec![], vec![throttled("/app", i * 10, i)]))
                    .is_empty()
            );
        }
        for i in 0..5u64 {
            let s = d.observe(&snap(
                10 + i as i64,
                vec![],
                vec![throttled("/app", 1 + i * 10, 1 + i)],
            ));
            assert!(s.is_empty(), "a reset is not throttling: {s:?}");
        }
    }

    proptest::proptest! {
        /// Any sequence of cpu.stat readings, resets included: every throttling signal's ratio
        /// is a share in [0, 1], never negative.
        #[test]
        fn throttled_ratios_stay_in_range_across_resets(
            readings in proptest::collection::vec((0u64..2000, 0u64..2000), 1..40)
        ) {
            let mut d = NodeDetectors::new(HOST.into(), cfg());
            for (i, (p, t)) in readings.iter().enumerate() {
                for s in d.observe(&snap(i as i64, vec![], vec![throttled("/p", *p, *t)])) {
                    let r = s.attributes["daytwo.cpu.throttled_ratio"].as_f64().unwrap();
                    proptest::prop_assert!((0.0..=1.0).contains(&r), "{r}");
                }
            }
        }
    }

    #[test]
    fn unthrottled_and_unlimited_cgroups_stay_quiet() {
        let mut d = NodeDetectors::new(HOST.into(), cfg());
        for i in 0..20u64 {
            let mut quiet = throttled("/quiet", i * 10, i / 5);
            quiet.memory_working_set_bytes = Some(1 << 20);
            let idle = CgroupStats {
                path: "/idle".into(),
                cpu: Some(CpuStat::default()),
                memory_working_set_bytes: Some(1 << 20),
                ..CgroupStats::default()
            };
            assert!(
                d.observe(&snap(i as i64, vec![], vec![quiet, idle]))
                    .is_empty()
            );
        }
        assert_eq!(d.tracked().1, 1, "only the cgroup with a quota has state");
    }

    #[test]
    fn containers_are_named_by_kubernetes_ids() {
        let cid = "5f8e3c1a9b7d6e4f2a1c0b9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f";
        let c = CgroupStats {
            path: format!("/kubepods/burstable/podU1/{cid}"),
            kube: Some(KubeIds {
                qos: "burstable",
                pod_uid: Some("U1".into()),
                container_id: Some(cid.into()),
                runtime: None,
            }),
            ..CgroupStats::default()
        };
        let (e, subject) = cgroup_entity(HOST, &c, None);
        assert_eq!(e.kind, EntityKind::Container);
        assert_eq!(e.name, &cid[..12]);
        assert_eq!(e.attributes["container.id"], cid);
        assert_eq!(e.attributes["k8s.pod.uid"], "U1");
        assert_eq!(e.attributes["daytwo.cgroup.path"], c.path.as_str());
        assert!(subject.starts_with("container 5f8e3c1a9b7d"), "{subject}");
        let pod = CgroupStats {
            path: "/kubepods/burstable/podU1".into(),
            kube: Some(KubeIds {
                qos: "burstable",
                pod_uid: Some("U1".into()),
                container_id: None,
                runtime: None,
            }),
            ..CgroupStats::default()
        };
        assert_eq!(cgroup_entity(HOST, &pod, None).0.kind, EntityKind::Pod);

        // With the pod watch's view of the pod, sentences and attributes carry names.
        let meta = PodMeta {
            namespace: "shop".into(),
            name: "web-7d9f".into(),
            uid: "U1".into(),
            containers: vec![(cid.into(), "nginx".into())],
            ..PodMeta::default()
        };
        let (e, subject) = cgroup_entity(HOST, &c, Some(&meta));
        assert_eq!(e.name, &cid[..12], "identity stays the container id");
        assert_eq!(e.attributes["k8s.container.name"], "nginx");
        assert_eq!(e.attributes["k8s.pod.name"], "web-7d9f");
        assert_eq!(e.attributes["k8s.namespace.name"], "shop");
        assert!(
            subject.starts_with("container nginx of pod shop/web-7d9f ("),
            "{subject}"
        );
        let (e, subject) = cgroup_entity(HOST, &pod, Some(&meta));
        assert!(subject.starts_with("pod shop/web-7d9f ("), "{subject}");
        assert!(!e.attributes.contains_key("k8s.container.name"));
        // Another pod's metadata is never used.
        let other = PodMeta {
            uid: "U2".into(),
            ..meta.clone()
        };
        let (e, subject) = cgroup_entity(HOST, &c, Some(&other));
        assert!(subject.starts_with("container 5f8e3c1a9b7d ("), "{subject}");
        assert!(!e.attributes.contains_key("k8s.pod.name"));
    }

    fn psi(avg10: f64) -> Psi {
        Psi {
            some: PsiLine {
                avg10,
                avg60: avg10 / 2.0,
                ..PsiLine::default()
            },
            full: None,
        }
    }

    #[test]
    fn memory_pressure_host_and_cgroup() {
        let mut d = NodeDetectors::new(HOST.into(), cfg());
        let mut names = Vec::new();
        for i in 0..10i64 {
            let mut s = snap(i, vec![], vec![]);
            s.host.pressure.memory = Some(psi(40.0));
            s.cgroups.push(CgroupStats {
                path: "/app".into(),
                pressure: crate::node::procfs::Pressure {
                    memory: Some(psi(25.0)),
                    ..Default::default()
                },
                ..CgroupStats::default()
            });
            names.extend(d.observe(&s).into_iter().map(|s| (s.name, s.entity.name)));
        }
        assert_eq!(
            names,
            [
                (NODE_MEMORY_PRESSURE.to_string(), HOST.to_string()),
                (CONTAINER_MEMORY_PRESSURE.to_string(), "/app".to_string())
            ]
        );
    }

    #[test]
    fn conntrack_near_full() {
        let mut d = NodeDetectors::new(HOST.into(), cfg());
        let mut s = snap(0, vec![], vec![]);
        s.host.conntrack = Some((50, 100));
        assert!(d.observe(&s).is_empty());
        s.time = Timestamp::from_unix_secs(1_800_000_001);
        s.host.conntrack = Some((95, 100));
        let out = d.observe(&s);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name, CONNTRACK_NEAR_FULL);
        assert_eq!(out[0].attributes["daytwo.conntrack.max"], 100);
        assert!(
            out[0].message.contains("95.0% full (95 of 100"),
            "{}",
            out[0].message
        );
    }

    #[test]
    fn memory_growth_towards_a_limit() {
        let mut d = NodeDetectors::new(HOST.into(), DetectConfig::default());
        let limit: u64 = 1 << 30;
        let mut hit = None;
        for i in 0..400u64 {
            let c = CgroupStats {
                path: "/leaky".into(),
                memory_working_set_bytes: Some((200 << 20) + i * (4 << 20)),
                memory_limit_bytes: Some(limit),
                ..CgroupStats::default()
            };
            if let Some(s) = d.observe(&snap(i as i64 * 10, vec![], vec![c])).pop() {
                hit = Some(s);
                break;
            }
        }
        let s = hit.expect("growth fires");
        assert_eq!(s.name, MEMORY_GROWTH);
        assert_eq!(s.attributes["daytwo.memory.limit_bytes"], limit);
        assert!(s.message.contains("reaches its limit"), "{}", s.message);
    }

    #[test]
    fn config_validates_and_rejects_unknown_fields() {
        assert!(DetectConfig::default().validate().is_ok());
        let bad = DetectConfig {
            cpu_throttled_exit_ratio: 0.5,
            ..DetectConfig::default()
        };
        let e = bad.validate().unwrap_err();
        assert!(e.contains("exit"), "{e}");
        let parsed: Result<DetectConfig, _> =
            serde_json::from_str(r#"{"filesystem_full_ratio": 0.9, "nope": 1}"#);
        assert!(parsed.is_err());
        let parsed: DetectConfig =
            serde_json::from_str(r#"{"filesystem_full_ratio": 0.9}"#).unwrap();
        assert_eq!(parsed.filesystem_full_ratio, 0.9);
        assert_eq!(parsed.conntrack_ratio, 0.9);
    }
}
