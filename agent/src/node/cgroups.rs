//! Per-cgroup (per-container) resource usage, cgroup v1 and v2, found by walking the
//! hierarchies every interval.
//!
//! Entry types: [`Hierarchies`] (where each controller is mounted, found once by
//! [`Hierarchies::detect`]), [`walk`] (the bounded breadth-first discovery of cgroup paths),
//! [`read_cgroup`] (one cgroup's files → [`CgroupStats`]) and [`kube_ids`] (the pure mapping of
//! a kubepods path to pod UID, QoS class and container id).
//!
//! What is read, v1 → v2:
//! * CPU time: `cpuacct.usage` (ns) → `cpu.stat usage_usec`;
//! * CFS throttling: `cpu.stat nr_periods nr_throttled throttled_time` (ns) → `cpu.stat
//!   nr_periods nr_throttled throttled_usec`; the quota from `cpu.cfs_quota_us` /
//!   `cpu.cfs_period_us` → `cpu.max`;
//! * memory: `memory.usage_in_bytes`, `memory.limit_in_bytes`, `memory.stat total_inactive_file`
//!   and `memory.oom_control oom_kill` → `memory.current`, `memory.max`, `memory.stat
//!   inactive_file` and `memory.events oom_kill`; the working set is usage minus inactive file
//!   cache, as the kubelet computes it for evictions;
//! * pids: `pids.current`, `pids.max` (both versions);
//! * PSI: `cpu.pressure`, `memory.pressure`, `io.pressure` (v2 only, also in the v2 hierarchy of
//!   a hybrid host).
//!
//! Invariants: a cgroup that disappears between discovery and reading is normal (its values are
//! simply missing); discovery visits at most `max` cgroups, shallow ones first, and counts the
//! directories it did not visit; paths never contain `..`.

use super::procfs::{Pressure, read_pressure};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

/// Values at or above this mean "no limit" (v1 prints `PAGE_COUNTER_MAX * PAGE_SIZE`).
const UNLIMITED: u64 = 1 << 62;

/// Where each controller's hierarchy is mounted. `None`: not on this host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hierarchies {
    pub memory_v1: Option<PathBuf>,
    pub cpu_v1: Option<PathBuf>,
    pub cpuacct_v1: Option<PathBuf>,
    pub pids_v1: Option<PathBuf>,
    /// The v2 hierarchy: the cgroup root on a pure v2 host, `<root>/unified` on a hybrid one.
    pub v2: Option<PathBuf>,
}

fn is_cgroup_dir(p: &Path) -> bool {
    p.join("cgroup.procs").is_file()
}

impl Hierarchies {
    /// Looks under `root` (normally `/sys/fs/cgroup`).
    pub fn detect(root: &Path) -> Hierarchies {
        let v1 = |names: &[&str]| {
            names
                .iter()
                .map(|n| root.join(n))
                .find(|p| is_cgroup_dir(p) && !p.join("cgroup.controllers").exists())
        };
        let v2 = [root.to_path_buf(), root.join("unified")]
            .into_iter()
            .find(|p| p.join("cgroup.controllers").is_file());
        Hierarchies {
            memory_v1: v1(&["memory"]),
            cpu_v1: v1(&["cpu", "cpu,cpuacct", "cpuacct,cpu"]),
            cpuacct_v1: v1(&["cpuacct", "cpu,cpuacct", "cpuacct,cpu"]),
            pids_v1: v1(&["pids"]),
            v2,
        }
    }

    fn roots(&self) -> Vec<&Path> {
        let mut r: Vec<&Path> = Vec::new();
        for p in [
            &self.memory_v1,
            &self.cpu_v1,
            &self.cpuacct_v1,
            &self.pids_v1,
            &self.v2,
        ]
        .into_iter()
        .flatten()
        {
            if !r.contains(&p.as_path()) {
                r.push(p);
            }
        }
        r
    }

    pub fn is_empty(&self) -> bool {
        self.roots().is_empty()
    }
}

/// The cgroups found by one [`walk`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Walk {
    /// Cgroup paths as the kernel names them (`/`, `/kubepods/burstable/pod…/…`), sorted.
    pub paths: Vec<String>,
    /// Directories seen but not visited because `max` was reached (their subtrees are not
    /// counted).
    pub skipped: u64,
}

/// Breadth-first over every hierarchy at once, so with a bound the shallow cgroups (slices,
/// pods) are kept before deep ones. The root `/` counts as one cgroup.
pub fn walk(h: &Hierarchies, max: usize) -> Walk {
    let roots = h.roots();
    let mut seen: BTreeMap<String, ()> = BTreeMap::new();
    let mut skipped = 0u64;
    let mut queue: VecDeque<String> = VecDeque::new();
    if !roots.is_empty() && max > 0 {
        seen.insert("/".to_string(), ());
        queue.push_back(String::new());
    }
    while let Some(rel) = queue.pop_front() {
        let mut children: Vec<String> = Vec::new();
        for root in &roots {
            let dir = if rel.is_empty() {
                root.to_path_buf()
            } else {
                root.join(&rel)
            };
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let Some(name) = e.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                children.push(child);
            }
        }
        children.sort();
        children.dedup();
        for c in children {
            let path = format!("/{c}");
            if seen.contains_key(&path) {
                continue;
            }
            if seen.len() >= max {
                skipped += 1;
                continue;
            }
            seen.insert(path, ());
            queue.push_back(c);
        }
    }
    Walk {
        paths: seen.into_keys().collect(),
        skipped,
    }
}

/// Kubernetes identity parsed from a cgroup path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KubeIds {
    /// `guaranteed`, `burstable` or `besteffort`.
    pub qos: &'static str,
    /// The pod UID, with dashes (`0a1b2c3d-…`).
    pub pod_uid: Option<String>,
    /// The container id (64 hex digits) when the path is a container's, not the pod's.
    pub container_id: Option<String>,
    /// `containerd`, `docker`, `crio` when the path says so.
    pub runtime: Option<&'static str>,
}

/// Maps a kubepods cgroup path to pod and container, for both cgroup drivers:
/// cgroupfs `/kubepods/burstable/pod<uid>/<container-id>` (guaranteed pods directly under
/// `/kubepods`) and systemd
/// `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope`
/// (also `docker-<id>.scope`, `crio-<id>.scope`). `None` for any other path; the QoS and pod
/// slices themselves give the ids they have.
pub fn kube_ids(path: &str) -> Option<KubeIds> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let start = parts
        .iter()
        .position(|p| *p == "kubepods" || *p == "kubepods.slice")?;
    let mut ids = KubeIds {
        qos: "guaranteed",
        ..KubeIds::default()
    };
    for p in &parts[start + 1..] {
        let p = p.strip_suffix(".slice").unwrap_or(p);
        let p = p.strip_prefix("kubepods-").unwrap_or(p);
        if ids.pod_uid.is_none() {
            match p {
                "burstable" => {
                    ids.qos = "burstable";
                    continue;
                }
                "besteffort" => {
                    ids.qos = "besteffort";
                    continue;
                }
                _ => {}
            }
            let p = p
                .strip_prefix("burstable-")
                .or_else(|| p.strip_prefix("besteffort-"))
                .unwrap_or(p);
            if let Some(uid) = p.strip_prefix("pod") {
                ids.pod_uid = Some(uid.replace('_', "-"));
                continue;
            }
            return None;
        }
        // Inside a pod: the container.
        let (runtime, id) = if let Some(s) = p.strip_suffix(".scope") {
            if s.starts_with("crio-conmon-") {
                return None;
            }
            [
                ("cri-containerd-", "containerd"),
                ("docker-", "docker"),
                ("crio-", "crio"),
                ("cri-o-", "crio"),
            ]
            .iter()
            .find_map(|(prefix, rt)| s.strip_prefix(prefix).map(|id| (Some(*rt), id)))
            .unwrap_or((None, s))
        } else {
            (None, p)
        };
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        ids.runtime = runtime;
        ids.container_id = Some(id.to_string());
        return Some(ids);
    }
    Some(ids)
}

/// Cumulative CFS counters of `cpu.stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuStat {
    pub nr_periods: u64,
    pub nr_throttled: u64,
    pub throttled_nanos: u64,
}

/// What one cgroup's files said at one moment. Every value is `None` where the controller is
/// not there or the file could not be read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CgroupStats {
    /// The path as the kernel names it, e.g. `/kubepods/burstable/pod…/…`.
    pub path: String,
    pub kube: Option<KubeIds>,
    pub cpu_usage_nanos: Option<u64>,
    pub cpu: Option<CpuStat>,
    /// The CFS quota in cores (quota / period); `None` when unlimited.
    pub cpu_limit_cores: Option<f64>,
    pub memory_usage_bytes: Option<u64>,
    pub memory_working_set_bytes: Option<u64>,
    /// `None` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    pub oom_kills: Option<u64>,
    pub pids_current: Option<u64>,
    /// `None` when unlimited.
    pub pids_max: Option<u64>,
    pub pressure: Pressure,
}

/// Reads a small kernfs file with open, read, close: no `statx` for a size hint and no extra
/// read for EOF when the first read did not fill the buffer (kernfs returns a small file in
/// one read). Sampling thousands of cgroup files per interval is syscall-bound.
fn read(p: &Path) -> Option<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(p).ok()?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        let n = f.read(&mut buf[len..]).ok()?;
        len += n;
        if n == 0 || len < buf.len() {
            break;
        }
        buf.resize(buf.len() * 2, 0);
    }
    buf.truncate(len);
    String::from_utf8(buf).ok()
}

fn number(p: &Path) -> Option<u64> {
    read(p)?.trim().parse().ok()
}

/// A flat-keyed file (`key value` lines) → the value of each key.
fn keyed<const N: usize>(text: &str, keys: [&str; N]) -> [Option<u64>; N] {
    let mut out = [None; N];
    for l in text.lines() {
        let Some((k, v)) = l.split_once(' ') else {
            continue;
        };
        if let Some(i) = keys.iter().position(|x| *x == k) {
            out[i] = v.trim().parse().ok();
        }
    }
    out
}

/// A limit file: a number, or `max` (v2) / a huge number (v1) for unlimited.
fn limit(text: &str) -> Option<u64> {
    text.trim().parse::<u64>().ok().filter(|&v| v < UNLIMITED)
}

/// v2 `cpu.max`: `max 100000` or `50000 100000` → cores.
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut f = text.split_whitespace();
    let quota: f64 = f.next()?.parse().ok()?;
    let period: f64 = f.next()?.parse().ok()?;
    (period > 0.0 && quota > 0.0).then(|| quota / period)
}

/// Reads one cgroup in every hierarchy it exists in. v1 values win over v2 for the
/// controllers v1 owns on a hybrid host (the v2 hierarchy then has only PSI and `cpu.stat`).
pub fn read_cgroup(h: &Hierarchies, path: &str) -> CgroupStats {
    let rel = path.trim_start_matches('/');
    let at = |root: &Option<PathBuf>| {
        root.as_ref().map(|r| {
            if rel.is_empty() {
                r.clone()
            } else {
                r.join(rel)
            }
        })
    };
    let mut s = CgroupStats {
        path: path.to_string(),
        kube: kube_ids(path),
        ..CgroupStats::default()
    };
    if let Some(d) = at(&h.cpuacct_v1) {
        s.cpu_usage_nanos = number(&d.join("cpuacct.usage"));
    }
    if let Some(d) = at(&h.cpu_v1)
        && let Some(t) = read(&d.join("cpu.stat"))
    {
        let [p, t, ns] = keyed(&t, ["nr_periods", "nr_throttled", "throttled_time"]);
        if let (Some(nr_periods), Some(nr_throttled)) = (p, t) {
            s.cpu = Some(CpuStat {
                nr_periods,
                nr_throttled,
                throttled_nanos: ns.unwrap_or(0),
            });
        }
        // -1 is unlimited; the period only matters with a quota.
        let quota = read(&d.join("cpu.cfs_quota_us")).and_then(|q| q.trim().parse::<i64>().ok());
        if let Some(q) = quota.filter(|&q| q > 0)
            && let Some(p) = number(&d.join("cpu.cfs_period_us")).filter(|&p| p > 0)
        {
            s.cpu_limit_cores = Some(q as f64 / p as f64);
        }
    }
    if let Some(d) = at(&h.memory_v1)
        && let Some(usage) = number(&d.join("memory.usage_in_bytes"))
    {
        s.memory_usage_bytes = Some(usage);
        s.memory_limit_bytes = read(&d.join("memory.limit_in_bytes")).and_then(|t| limit(&t));
        let inactive = read(&d.join("memory.stat"))
            .and_then(|t| keyed(&t, ["total_inactive_file"])[0])
            .unwrap_or(0);
        s.memory_working_set_bytes = Some(usage.saturating_sub(inactive));
        s.oom_kills = read(&d.join("memory.oom_control")).and_then(|t| keyed(&t, ["oom_kill"])[0]);
    }
    if let Some(d) = at(&h.pids_v1) {
        s.pids_current = number(&d.join("pids.current"));
        s.pids_max = read(&d.join("pids.max")).and_then(|t| limit(&t));
    }
    if let Some(d) = at(&h.v2)
        && d.is_dir()
    {
        if let Some(t) = read(&d.join("cpu.stat")) {
            let [usage, p, t, us] = keyed(
                &t,
                ["usage_usec", "nr_periods", "nr_throttled", "throttled_usec"],
            );
            if s.cpu_usage_nanos.is_none() {
                s.cpu_usage_nanos = usage.map(|u| u * 1000);
            }
            if s.cpu.is_none()
                && let (Some(nr_periods), Some(nr_throttled)) = (p, t)
            {
                s.cpu = Some(CpuStat {
                    nr_periods,
                    nr_throttled,
                    throttled_nanos: us.unwrap_or(0) * 1000,
                });
            }
        }
        if s.cpu_limit_cores.is_none() {
            s.cpu_limit_cores = read(&d.join("cpu.max")).and_then(|t| parse_cpu_max(&t));
        }
        if s.memory_usage_bytes.is_none()
            && let Some(usage) = number(&d.join("memory.current"))
        {
            s.memory_usage_bytes = Some(usage);
            s.memory_limit_bytes = read(&d.join("memory.max")).and_then(|t| limit(&t));
            let inactive = read(&d.join("memory.stat"))
                .and_then(|t| keyed(&t, ["inactive_file"])[0])
                .unwrap_or(0);
            s.memory_working_set_bytes = Some(usage.saturating_sub(inactive));
            s.oom_kills = read(&d.join("memory.events")).and_then(|t| keyed(&t, ["oom_kill"])[0]);
        }
        if s.pids_current.is_none() {
            s.pids_current = number(&d.join("pids.current"));
            if s.pids_current.is_some() {
                s.pids_max = read(&d.join("pids.max")).and_then(|t| limit(&t));
            }
        }
        s.pressure = read_pressure(&d, ["cpu.pressure", "memory.pressure", "io.pressure"]);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        fs::create_dir_all(dir).unwrap();
        for (name, content) in files {
            fs::write(dir.join(name), content).unwrap();
        }
    }

    const UID: &str = "0a1b2c3d-1111-2222-3333-444455556666";
    const CID: &str = "5f8e3c1a9b7d6e4f2a1c0b9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f";

    #[test]
    fn kube_paths_cgroupfs_and_systemd() {
        let k = kube_ids(&format!("/kubepods/burstable/pod{UID}/{CID}")).unwrap();
        assert_eq!(k.qos, "burstable");
        assert_eq!(k.pod_uid.as_deref(), Some(UID));
        assert_eq!(k.container_id.as_deref(), Some(CID));
        assert_eq!(k.runtime, None);

        let k = kube_ids(&format!("/kubepods/pod{UID}/{CID}")).unwrap();
        assert_eq!(k.qos, "guaranteed");
        assert_eq!(k.container_id.as_deref(), Some(CID));

        let us = UID.replace('-', "_");
        let k = kube_ids(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{us}.slice/cri-containerd-{CID}.scope"
        ))
        .unwrap();
        assert_eq!(k.qos, "burstable");
        assert_eq!(k.pod_uid.as_deref(), Some(UID));
        assert_eq!(k.container_id.as_deref(), Some(CID));
        assert_eq!(k.runtime, Some("containerd"));

        let k = kube_ids(&format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{us}.slice"
        ))
        .unwrap();
        assert_eq!(k.qos, "besteffort");
        assert_eq!(k.pod_uid.as_deref(), Some(UID));
        assert_eq!(k.container_id, None);

        let k = kube_ids(&format!(
            "/kubepods.slice/kubepods-pod{us}.slice/docker-{CID}.scope"
        ))
        .unwrap();
        assert_eq!(k.qos, "guaranteed");
        assert_eq!(k.runtime, Some("docker"));

        assert_eq!(kube_ids("/kubepods/burstable").unwrap().pod_uid, None);
        assert_eq!(kube_ids("/system.slice/containerd.service"), None);
        assert_eq!(
            kube_ids(&format!(
                "/kubepods.slice/kubepods-pod{us}.slice/crio-conmon-{CID}.scope"
            )),
            None
        );
        assert_eq!(kube_ids("/kubepods/burstable/notapod"), None);
    }

    #[test]
    fn cpu_max_parses() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("50000 100000\n"), Some(0.5));
        assert_eq!(parse_cpu_max(""), None);
    }

    /// A hybrid host as this machine has it: v1 controllers, v2 at `unified`.
    fn hybrid(root: &Path) {
        for c in ["memory", "cpu", "cpuacct", "pids", "unified"] {
            write(&root.join(c), &[("cgroup.procs", "")]);
        }
        write(&root.join("unified"), &[("cgroup.controllers", "")]);
        write(
            &root.join("cpu/app"),
            &[
                ("cgroup.procs", ""),
                (
                    "cpu.stat",
                    "nr_periods 120\nnr_throttled 90\nthrottled_time 4500000000\nnr_bursts 0\nburst_time 0\n",
                ),
                ("cpu.cfs_quota_us", "10000\n"),
                ("cpu.cfs_period_us", "100000\n"),
            ],
        );
        write(
            &root.join("cpuacct/app"),
            &[("cgroup.procs", ""), ("cpuacct.usage", "1500000000\n")],
        );
        write(
            &root.join("memory/app"),
            &[
                ("cgroup.procs", ""),
                ("memory.usage_in_bytes", "104857600\n"),
                ("memory.limit_in_bytes", "268435456\n"),
                (
                    "memory.stat",
                    "cache 4096\ninactive_file 1\ntotal_inactive_file 4194304\n",
                ),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
                ),
            ],
        );
        write(
            &root.join("pids/app"),
            &[
                ("cgroup.procs", ""),
                ("pids.current", "12\n"),
                ("pids.max", "max\n"),
            ],
        );
        write(
            &root.join("unified/app"),
            &[
                ("cgroup.procs", ""),
                ("cpu.stat", "usage_usec 999\n"),
                (
                    "memory.pressure",
                    "some avg10=20.00 avg60=5.00 avg300=1.00 total=1000\nfull avg10=1.00 avg60=0.00 avg300=0.00 total=10\n",
                ),
            ],
        );
        write(
            &root.join("memory/app/deeper/deepest"),
            &[("cgroup.procs", "")],
        );
    }

    #[test]
    fn detects_a_hybrid_host_and_reads_v1_first() {
        let tmp = tempfile::tempdir().unwrap();
        hybrid(tmp.path());
        let h = Hierarchies::detect(tmp.path());
        assert_eq!(h.memory_v1, Some(tmp.path().join("memory")));
        assert_eq!(h.cpu_v1, Some(tmp.path().join("cpu")));
        assert_eq!(h.v2, Some(tmp.path().join("unified")));
        let s = read_cgroup(&h, "/app");
        assert_eq!(s.cpu_usage_nanos, Some(1_500_000_000));
        assert_eq!(
            s.cpu,
            Some(CpuStat {
                nr_periods: 120,
                nr_throttled: 90,
                throttled_nanos: 4_500_000_000
            })
        );
        assert_eq!(s.cpu_limit_cores, Some(0.1));
        assert_eq!(s.memory_usage_bytes, Some(104_857_600));
        assert_eq!(s.memory_working_set_bytes, Some(104_857_600 - 4_194_304));
        assert_eq!(s.memory_limit_bytes, Some(268_435_456));
        assert_eq!(s.oom_kills, Some(2));
        assert_eq!(s.pids_current, Some(12));
        assert_eq!(s.pids_max, None);
        assert_eq!(s.pressure.memory.unwrap().some.avg10, 20.0);
        assert_eq!(s.pressure.cpu, None);
        assert_eq!(s.kube, None);
    }

    #[test]
    fn reads_pure_v2() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(
            root,
            &[
                ("cgroup.procs", ""),
                ("cgroup.controllers", "cpu memory pids"),
            ],
        );
        write(
            &root.join("svc"),
            &[
                ("cgroup.procs", ""),
                (
                    "cpu.stat",
                    "usage_usec 2000000\nuser_usec 1\nsystem_usec 1\nnr_periods 10\nnr_throttled 4\nthrottled_usec 300000\n",
                ),
                ("cpu.max", "20000 100000\n"),
                ("memory.current", "8192\n"),
                ("memory.max", "max\n"),
                ("memory.stat", "anon 4096\ninactive_file 1024\n"),
                ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
                ("pids.current", "3\n"),
                ("pids.max", "100\n"),
                (
                    "cpu.pressure",
                    "some avg10=1.00 avg60=0.00 avg300=0.00 total=5\n",
                ),
            ],
        );
        let h = Hierarchies::detect(root);
        assert_eq!(h.v2, Some(root.to_path_buf()));
        assert_eq!(h.memory_v1, None);
        let s = read_cgroup(&h, "/svc");
        assert_eq!(s.cpu_usage_nanos, Some(2_000_000_000));
        assert_eq!(s.cpu.unwrap().nr_throttled, 4);
        assert_eq!(s.cpu.unwrap().throttled_nanos, 300_000_000);
        assert_eq!(s.cpu_limit_cores, Some(0.2));
        assert_eq!(s.memory_working_set_bytes, Some(7168));
        assert_eq!(s.memory_limit_bytes, None);
        assert_eq!(s.oom_kills, Some(1));
        assert_eq!((s.pids_current, s.pids_max), (Some(3), Some(100)));
        assert!(s.pressure.cpu.is_some());
    }

    #[test]
    fn walk_is_breadth_first_and_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        hybrid(tmp.path());
        let h = Hierarchies::detect(tmp.path());
        let all = walk(&h, 100);
        assert_eq!(
            all.paths,
            ["/", "/app", "/app/deeper", "/app/deeper/deepest"]
        );
        assert_eq!(all.skipped, 0);
        let two = walk(&h, 2);
        assert_eq!(two.paths, ["/", "/app"]);
        assert_eq!(two.skipped, 1);
        assert_eq!(walk(&Hierarchies::default(), 10), Walk::default());
    }

    #[test]
    fn a_vanished_cgroup_reads_empty() {
        let tmp = tempfile::tempdir().unwrap();
        hybrid(tmp.path());
        let h = Hierarchies::detect(tmp.path());
        let s = read_cgroup(&h, "/gone");
        assert_eq!(s.memory_usage_bytes, None);
        assert_eq!(s.cpu, None);
    }
}
