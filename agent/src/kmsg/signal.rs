//! Turns a classified OOM kill into the `daytwo.kernel.oom_kill` signal.
//!
//! Entry point: [`oom_signal`]. Pure: the boot clock offset, the cgroup readings and the time
//! they were taken are passed in.
//!
//! Invariants: the signal id is `stable_id(["kmsg", boot_id, seq])` of the `Killed process`
//! record, so reading the same record twice (after a restart) yields the same id; memcg OOMs
//! are about the victim's cgroup, global OOMs about the host; every attribute emitted is
//! listed in [`ATTRIBUTES`] (and documented in docs/signals.md).

use super::oom::{OomConstraint, OomKill};
use crate::cgroup::CgroupMemory;
use daytwo_model::{
    Attributes, Entity, EntityKind, Evidence, Severity, Signal, Timestamp, stable_id,
};

/// The event name of an OOM kill.
pub const OOM_KILL_EVENT: &str = "daytwo.kernel.oom_kill";

/// Every attribute key an OOM-kill signal may carry (absent when the kernel did not say).
pub const ATTRIBUTES: &[&str] = &[
    "daytwo.oom.constraint",
    "process.pid",
    "process.executable.name",
    "user.id",
    "daytwo.cgroup.path",
    "daytwo.oom.memcg",
    "daytwo.memory.usage_bytes",
    "daytwo.memory.limit_bytes",
    "daytwo.memory.max_usage_bytes",
    "daytwo.memory.failcnt",
    "daytwo.memory.source",
    "daytwo.oom.kernel_usage_bytes",
    "daytwo.oom.kernel_limit_bytes",
    "daytwo.oom.kernel_failcnt",
    "daytwo.cgroup.oom_kill_count",
    "daytwo.oom.trigger.process",
    "daytwo.oom.trigger.pid",
    "process.memory.virtual",
    "daytwo.process.anon_rss_bytes",
    "daytwo.process.file_rss_bytes",
    "daytwo.process.shmem_rss_bytes",
    "daytwo.process.oom_score_adj",
];

/// Converts kernel timestamps (microseconds since boot) to wall-clock time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootClock {
    /// Wall-clock nanoseconds at boot: `CLOCK_REALTIME - CLOCK_MONOTONIC`, sampled once.
    pub boot_unix_nanos: i64,
}

impl BootClock {
    pub fn wall(self, ts_usec: u64) -> Timestamp {
        let since_boot = i64::try_from(ts_usec.saturating_mul(1000)).unwrap_or(i64::MAX);
        Timestamp::from_unix_nanos(self.boot_unix_nanos.saturating_add(since_boot))
    }
}

/// Which cgroup's files describe this kill: the one whose limit was hit for a memcg OOM (the
/// cgroup the kernel's `memory: usage …` line is about), else the victim's.
pub fn cgroup_to_read(kill: &OomKill) -> Option<&str> {
    match kill.constraint {
        OomConstraint::Memcg => kill.oom_memcg.as_deref().or(kill.task_memcg.as_deref()),
        _ => kill.task_memcg.as_deref(),
    }
}

/// `67108864` → `64.0 MiB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Builds the signal. `cgroup` is what [`crate::cgroup::read_memory`] found for
/// [`cgroup_to_read`] (None when the cgroup is gone), read at `read_at`.
pub fn oom_signal(
    kill: &OomKill,
    cgroup: Option<&CgroupMemory>,
    host_name: &str,
    boot_id: &str,
    clock: BootClock,
    read_at: Timestamp,
) -> Signal {
    let time = clock.wall(kill.ts_usec);
    let mut a = Attributes::new();
    let mut put = |k: &str, v: serde_json::Value| {
        a.insert(k.to_string(), v);
    };
    put("daytwo.oom.constraint", kill.constraint.as_str().into());
    put("process.pid", kill.pid.into());
    put("process.executable.name", kill.comm.clone().into());
    if let Some(uid) = kill.uid {
        put("user.id", uid.into());
    }
    if let Some(p) = kill.cgroup_path() {
        put("daytwo.cgroup.path", p.into());
    }
    if let Some(m) = &kill.oom_memcg {
        put("daytwo.oom.memcg", m.clone().into());
    }

    // The cgroup's files when it still exists, else the kernel's own numbers.
    let (usage, limit, max_usage, failcnt, source) = match cgroup {
        Some(c) => (
            c.usage_bytes,
            c.limit_bytes,
            c.max_usage_bytes,
            c.failcnt,
            Some("cgroup"),
        ),
        None => match kill.kernel_memory {
            Some(k) => (
                Some(k.usage_bytes),
                k.limit_bytes,
                None,
                Some(k.failcnt),
                Some("kernel"),
            ),
            None => (None, None, None, None, None),
        },
    };
    for (k, v) in [
        ("daytwo.memory.usage_bytes", usage),
        ("daytwo.memory.limit_bytes", limit),
        ("daytwo.memory.max_usage_bytes", max_usage),
        ("daytwo.memory.failcnt", failcnt),
    ] {
        if let Some(v) = v {
            put(k, v.into());
        }
    }
    if let Some(s) = source {
        put("daytwo.memory.source", s.into());
    }
    if let Some(k) = kill.kernel_memory {
        put("daytwo.oom.kernel_usage_bytes", k.usage_bytes.into());
        if let Some(l) = k.limit_bytes {
            put("daytwo.oom.kernel_limit_bytes", l.into());
        }
        put("daytwo.oom.kernel_failcnt", k.failcnt.into());
    }
    if let Some(n) = cgroup.and_then(|c| c.oom_kill_count) {
        put("daytwo.cgroup.oom_kill_count", n.into());
    }
    if let Some(t) = &kill.trigger {
        put("daytwo.oom.trigger.process", t.comm.clone().into());
        if let Some(pid) = t.pid {
            put("daytwo.oom.trigger.pid", pid.into());
        }
    }
    for (k, v) in [
        ("process.memory.virtual", kill.total_vm_bytes),
        ("daytwo.process.anon_rss_bytes", kill.anon_rss_bytes),
        ("daytwo.process.file_rss_bytes", kill.file_rss_bytes),
        ("daytwo.process.shmem_rss_bytes", kill.shmem_rss_bytes),
    ] {
        if let Some(v) = v {
            put(k, v.into());
        }
    }
    if let Some(adj) = kill.oom_score_adj {
        put("daytwo.process.oom_score_adj", adj.into());
    }

    // A cgroup OOM in a Kubernetes container's cgroup is about that container (its id and
    // pod UID from the path, its names from the agent's pod watch when it knows the pod), so
    // it meets the pod's own OOMKilled status and the rest of the pod's signals.
    let mut place = None;
    let entity = match (kill.constraint, kill.cgroup_path()) {
        (OomConstraint::Memcg, Some(path)) => {
            let kube = crate::node::cgroups::kube_ids(path);
            let pod = kube
                .as_ref()
                .and_then(|k| k.pod_uid.as_deref())
                .and_then(crate::kube::pod_meta);
            for (k, v) in [
                (
                    "k8s.pod.uid",
                    kube.as_ref().and_then(|k| k.pod_uid.as_deref()),
                ),
                (
                    "container.id",
                    kube.as_ref().and_then(|k| k.container_id.as_deref()),
                ),
            ] {
                if let Some(v) = v {
                    put(k, v.into());
                }
            }
            let (e, subject) =
                crate::node::detect::path_entity(host_name, path, kube.as_ref(), pod.as_deref());
            if e.kind != EntityKind::Cgroup {
                place = Some(subject);
            }
            e
        }
        _ => Entity::new(EntityKind::Host, host_name).with_attr("host.name", host_name),
    };
    let mut resource = Attributes::new();
    resource.insert("host.name".into(), host_name.into());

    let mut evidence: Vec<Evidence> = kill
        .lines
        .iter()
        .map(|r| Evidence {
            time: clock.wall(r.ts_usec),
            kind: "log".into(),
            text: r.message.trim_end().to_string(),
        })
        .collect();
    if let Some(c) = cgroup {
        evidence.extend(c.readings.iter().map(|text| Evidence {
            time: read_at,
            kind: "reading".into(),
            text: text.clone(),
        }));
    }

    Signal {
        id: stable_id(&["kmsg", boot_id, &kill.seq.to_string()]),
        name: OOM_KILL_EVENT.into(),
        time,
        severity: Severity::Critical,
        entity,
        resource,
        attributes: a,
        message: message(kill, cgroup, place.as_deref()),
        evidence,
    }
}

/// `place`: how the signal's entity is named when it is a container or pod ("container app
/// of pod shop/web-1 (/kubepods/…)"), instead of the memory cgroup's path.
fn message(kill: &OomKill, cgroup: Option<&CgroupMemory>, place: Option<&str>) -> String {
    let who = format!("Kernel OOM-killed {} (pid {})", kill.comm, kill.pid);
    // The kernel's numbers describe the moment of the OOM; the files are read after the kill.
    let numbers = match (kill.kernel_memory, cgroup) {
        (Some(k), _) => Some((Some(k.usage_bytes), k.limit_bytes, Some(k.failcnt))),
        (None, Some(c)) => Some((c.usage_bytes, c.limit_bytes, c.failcnt)),
        (None, None) => None,
    };
    let numbers = numbers.map(|(usage, limit, failcnt)| {
        let usage = usage.map_or_else(|| "unknown".to_string(), human_bytes);
        let limit = limit.map_or_else(
            || "no limit".to_string(),
            |l| format!("limit {}", human_bytes(l)),
        );
        let failcnt = failcnt
            .map(|f| format!(", failcnt {f}"))
            .unwrap_or_default();
        format!("usage {usage} of {limit}{failcnt}")
    });
    match kill.constraint {
        OomConstraint::Memcg => {
            let path = kill
                .oom_memcg
                .as_deref()
                .or(kill.task_memcg.as_deref())
                .unwrap_or("(unknown)");
            let place = place.map_or_else(|| format!("memory cgroup {path}"), str::to_string);
            match numbers {
                Some(n) => format!("{who} in {place}: {n}."),
                None => format!("{who} in {place}."),
            }
        }
        OomConstraint::Global => {
            let rss = kill
                .anon_rss_bytes
                .map(|b| format!(" (anon-rss {})", human_bytes(b)))
                .unwrap_or_default();
            let cg = kill
                .task_memcg
                .as_deref()
                .map(|c| format!(" in cgroup {c}"))
                .unwrap_or_default();
            format!("{who}{cg}{rss}: the host ran out of memory (global OOM).")
        }
        OomConstraint::Cpuset => {
            format!("{who}: the memory nodes of its cpuset ran out (cpuset OOM).")
        }
        OomConstraint::MemoryPolicy => {
            format!("{who}: the memory nodes of its NUMA policy ran out (mempolicy OOM).")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::CgroupVersion;
    use crate::kmsg::fixtures::{GLOBAL_OOM, MEMCG_OOM_V1, records};
    use crate::kmsg::oom::OomClassifier;
    use std::path::PathBuf;

    const CLOCK: BootClock = BootClock {
        boot_unix_nanos: 1_795_617_000_000_000_000,
    };

    fn kill(fixture: &str) -> OomKill {
        let mut c = OomClassifier::new();
        records(fixture).iter().find_map(|r| c.feed(r)).unwrap()
    }

    fn probe_cgroup() -> CgroupMemory {
        CgroupMemory {
            version: CgroupVersion::V1,
            dir: PathBuf::from("/sys/fs/cgroup/memory/probe1"),
            usage_bytes: Some(270_336),
            limit_bytes: Some(67_108_864),
            max_usage_bytes: Some(67_108_864),
            failcnt: Some(286),
            oom_kill_count: Some(1),
            readings: vec![
                "memory.usage_in_bytes=270336".into(),
                "memory.limit_in_bytes=67108864".into(),
            ],
        }
    }

    #[test]
    fn an_oom_in_a_kubernetes_container_cgroup_is_about_the_container() {
        // The same kill, in the cgroup the kubelet (cgroupfs driver, v1) gives a burstable
        // pod's container.
        let uid = "6b1f0c2e-3d4a-4b5c-8d6e-7f8091a2b3c4";
        let cid = "8c2b6f1e0d9a7c5b3e1f2d4a6c8b0e9f7d5a3c1b2e4f6a8d0c9b7e5f3a1d2c4b";
        let path = format!("/kubepods/burstable/pod{uid}/{cid}");
        let k = kill(&MEMCG_OOM_V1.replace("/probe1", &path));
        let s = oom_signal(&k, None, "node-1", "boot-a", CLOCK, Timestamp(0));
        assert_eq!(s.entity.kind, EntityKind::Container);
        assert_eq!(s.entity.name, &cid[..12]);
        assert_eq!(s.entity.attributes["container.id"], cid);
        assert_eq!(s.entity.attributes["k8s.pod.uid"], uid);
        assert_eq!(s.entity.attributes["daytwo.cgroup.path"], path.as_str());
        assert_eq!(s.attributes["k8s.pod.uid"], uid);
        assert_eq!(s.attributes["container.id"], cid);
        assert!(
            s.message.starts_with(&format!(
                "Kernel OOM-killed python3 (pid 1693) in container {} ({path}):",
                &cid[..12]
            )),
            "{}",
            s.message
        );
        // A cgroup outside Kubernetes keeps its path as its identity.
        let s = oom_signal(
            &kill(MEMCG_OOM_V1),
            None,
            "node-1",
            "b",
            CLOCK,
            Timestamp(0),
        );
        assert_eq!(s.entity.kind, EntityKind::Cgroup);
        assert!(!s.attributes.contains_key("k8s.pod.uid"));
    }

    #[test]
    fn memcg_signal_from_cgroup_files() {
        let k = kill(MEMCG_OOM_V1);
        let cg = probe_cgroup();
        let read_at = Timestamp::from_unix_secs(1_795_617_100);
        let s = oom_signal(&k, Some(&cg), "node-1", "boot-a", CLOCK, read_at);
        assert_eq!(s.id, stable_id(&["kmsg", "boot-a", "422"]));
        assert_eq!(s.name, OOM_KILL_EVENT);
        assert_eq!(s.severity, Severity::Critical);
        assert_eq!(s.time, CLOCK.wall(68_249_689));
        assert_eq!(
            s.time.unix_nanos(),
            1_795_617_000_000_000_000 + 68_249_689_000
        );
        assert_eq!(s.entity.kind, EntityKind::Cgroup);
        assert_eq!(s.entity.name, "/probe1");
        assert_eq!(s.entity.attributes["host.name"], "node-1");
        assert_eq!(s.entity.attributes["daytwo.cgroup.path"], "/probe1");
        assert_eq!(s.resource["host.name"], "node-1");
        let a = &s.attributes;
        assert_eq!(a["daytwo.oom.constraint"], "memcg");
        assert_eq!(a["process.pid"], 1693);
        assert_eq!(a["process.executable.name"], "python3");
        assert_eq!(a["user.id"], 0);
        assert_eq!(a["daytwo.cgroup.path"], "/probe1");
        assert_eq!(a["daytwo.oom.memcg"], "/probe1");
        assert_eq!(a["daytwo.memory.usage_bytes"], 270_336);
        assert_eq!(a["daytwo.memory.limit_bytes"], 67_108_864);
        assert_eq!(a["daytwo.memory.max_usage_bytes"], 67_108_864);
        assert_eq!(a["daytwo.memory.failcnt"], 286);
        assert_eq!(a["daytwo.memory.source"], "cgroup");
        assert_eq!(a["daytwo.oom.kernel_usage_bytes"], 67_108_864);
        assert_eq!(a["daytwo.oom.kernel_limit_bytes"], 67_108_864);
        assert_eq!(a["daytwo.oom.kernel_failcnt"], 286);
        assert_eq!(a["daytwo.cgroup.oom_kill_count"], 1);
        assert_eq!(a["daytwo.oom.trigger.process"], "python3");
        assert_eq!(a["daytwo.oom.trigger.pid"], 1693);
        assert_eq!(a["process.memory.virtual"], 278_712u64 * 1024);
        assert_eq!(a["daytwo.process.anon_rss_bytes"], 65_152u64 * 1024);
        assert_eq!(a["daytwo.process.file_rss_bytes"], 6_496u64 * 1024);
        for key in a.keys() {
            assert!(ATTRIBUTES.contains(&key.as_str()), "{key} is not listed");
        }
        assert_eq!(
            s.message,
            "Kernel OOM-killed python3 (pid 1693) in memory cgroup /probe1: usage 64.0 MiB of limit 64.0 MiB, failcnt 286."
        );
        let logs: Vec<_> = s.evidence.iter().filter(|e| e.kind == "log").collect();
        assert_eq!(logs.len(), k.lines.len());
        assert!(logs[0].text.starts_with("python3 invoked oom-killer"));
        assert_eq!(logs[0].time, CLOCK.wall(68_239_836));
        let readings: Vec<_> = s.evidence.iter().filter(|e| e.kind == "reading").collect();
        assert_eq!(readings.len(), 2);
        assert_eq!(readings[0].text, "memory.usage_in_bytes=270336");
        assert_eq!(readings[0].time, read_at);
    }

    #[test]
    fn memcg_signal_falls_back_to_kernel_numbers() {
        let k = kill(MEMCG_OOM_V1);
        let s = oom_signal(&k, None, "node-1", "boot-a", CLOCK, Timestamp(0));
        let a = &s.attributes;
        assert_eq!(a["daytwo.memory.source"], "kernel");
        assert_eq!(a["daytwo.memory.usage_bytes"], 67_108_864);
        assert_eq!(a["daytwo.memory.limit_bytes"], 67_108_864);
        assert_eq!(a["daytwo.memory.failcnt"], 286);
        assert!(!a.contains_key("daytwo.memory.max_usage_bytes"));
        assert!(s.evidence.iter().all(|e| e.kind == "log"));
    }

    #[test]
    fn global_signal_is_about_the_host() {
        let k = kill(GLOBAL_OOM);
        let s = oom_signal(&k, None, "node-7", "boot-b", CLOCK, Timestamp(0));
        assert_eq!(s.entity.kind, EntityKind::Host);
        assert_eq!(s.entity.name, "node-7");
        assert_eq!(s.entity.attributes["host.name"], "node-7");
        assert_eq!(s.attributes["daytwo.oom.constraint"], "global");
        assert_eq!(
            s.attributes["daytwo.cgroup.path"],
            "/user.slice/user-1000.slice/session-3.scope"
        );
        assert_eq!(s.attributes["user.id"], 1000);
        assert!(!s.attributes.contains_key("daytwo.oom.memcg"));
        assert!(!s.attributes.contains_key("daytwo.memory.source"));
        assert_eq!(
            s.message,
            "Kernel OOM-killed stress (pid 4242) in cgroup /user.slice/user-1000.slice/session-3.scope (anon-rss 7.2 GiB): the host ran out of memory (global OOM)."
        );
    }

    #[test]
    fn ids_are_stable_per_boot_and_seq() {
        let k = kill(MEMCG_OOM_V1);
        let a = oom_signal(&k, None, "h", "boot-a", CLOCK, Timestamp(0));
        let b = oom_signal(
            &k,
            Some(&probe_cgroup()),
            "h",
            "boot-a",
            CLOCK,
            Timestamp(5),
        );
        let c = oom_signal(&k, None, "h", "boot-b", CLOCK, Timestamp(0));
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
    }

    #[test]
    fn reads_the_cgroup_whose_limit_was_hit() {
        let mut k = kill(MEMCG_OOM_V1);
        k.oom_memcg = Some("/pod".into());
        k.task_memcg = Some("/pod/ctr".into());
        assert_eq!(cgroup_to_read(&k), Some("/pod"));
        let g = kill(GLOBAL_OOM);
        assert_eq!(
            cgroup_to_read(&g),
            Some("/user.slice/user-1000.slice/session-3.scope")
        );
    }

    #[test]
    fn human_bytes_formats() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(67_108_864), "64.0 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
