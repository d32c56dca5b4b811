//! Per-cgroup (per-container) resource usage, cgroup v1 and v2, found by walking the
//! hierarchies every interval.
//!
//! Entry types: [`Hierarchies`] (where each controller is mounted, found once by
//! [`Hierarchies::detect`]), [`Sampler`] (what the agent runs every interval: discovery and
//! reading in one pass, with reused buffers and cached limits; v1 values win over v2 for the
//! controllers v1 owns on a hybrid host) and [`kube_ids`] (the pure mapping of a kubepods path
//! to pod UID, QoS class and container id).
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

use super::procfs::{Pressure, parse_psi};
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
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

/// Re-read the limits (`cpu.cfs_quota_us`/`cpu.cfs_period_us`/`cpu.max`,
/// `memory.limit_in_bytes`/`memory.max`, `pids.max`) of a cgroup every this many samples
/// (60 s at a 10 s interval), and at once when the cgroup is new or was recreated (a directory's
/// inode changed). The counters and usage are read every sample.
pub const LIMITS_EVERY: u64 = 6;

const C_MEMORY: u8 = 1;
const C_CPU: u8 = 2;
const C_CPUACCT: u8 = 4;
const C_PIDS: u8 = 8;
const C_V2: u8 = 16;

/// The slowly-changing values of a cgroup, cached by [`Sampler`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Limits {
    cpu_limit_cores: Option<f64>,
    /// v1 `cpu.stat` of a cgroup without a quota: its CFS counters cannot move until a quota
    /// is set, so it is read again only with the limits.
    unlimited_cpu_stat: Option<CpuStat>,
    memory_limit_bytes: Option<u64>,
    pids_max: Option<u64>,
}

/// A cgroup directory: `prefix` (empty, or a relative path ending in `/`) relative to the
/// directory fd `fd`. Files are opened by `openat(fd, prefix + name)`: no directory fd per
/// cgroup, and a short path walk.
#[derive(Clone, Copy, Debug)]
struct At<'a> {
    fd: RawFd,
    prefix: &'a [u8],
}

/// One cgroup's directory in each hierarchy it exists in.
#[derive(Clone, Copy, Debug, Default)]
struct Dirs<'a> {
    memory: Option<At<'a>>,
    cpu: Option<At<'a>>,
    cpuacct: Option<At<'a>>,
    pids: Option<At<'a>>,
    v2: Option<At<'a>>,
}

/// Reused buffers: the file's text and the path being opened; and how many files existed but
/// could not be read.
#[derive(Default)]
struct Bufs {
    text: Vec<u8>,
    path: Vec<u8>,
    errors: u64,
}

/// A failed open or read of a cgroup file that means more than "not there": a missing file
/// (`ENOENT`: the controller or the cgroup is gone) and a removed cgroup's file (`ENODEV`) are
/// normal.
fn count_error(b: &mut Bufs) {
    let errno = std::io::Error::last_os_error().raw_os_error();
    if !matches!(errno, Some(libc::ENOENT) | Some(libc::ENODEV)) {
        b.errors += 1;
    }
}

impl<'a> Dirs<'a> {
    fn set(&mut self, controllers: u8, fd: At<'a>) {
        for (bit, slot) in [
            (C_MEMORY, &mut self.memory),
            (C_CPU, &mut self.cpu),
            (C_CPUACCT, &mut self.cpuacct),
            (C_PIDS, &mut self.pids),
            (C_V2, &mut self.v2),
        ] {
            if controllers & bit != 0 {
                *slot = Some(fd);
            }
        }
    }
}

/// The counters of a cgroup that cannot move while it uses no CPU: its tasks must run to fork,
/// exit, be throttled or die of an OOM kill. [`Sampler`] keeps them from the last sample and
/// does not read their files again while the CPU counter stands still (an idle cgroup: a pod's
/// pause container, an empty slice), until the limits are re-read.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Still {
    cpu_usage_nanos: u64,
    cpu: Option<CpuStat>,
    oom_kills: Option<u64>,
    pids_current: Option<u64>,
}

impl Still {
    fn of(s: &CgroupStats) -> Option<Still> {
        Some(Still {
            cpu_usage_nanos: s.cpu_usage_nanos?,
            cpu: s.cpu,
            oom_kills: s.oom_kills,
            pids_current: s.pids_current,
        })
    }
}

struct Cached {
    limits: Limits,
    /// The last sample's counters (see [`Still`]).
    still: Option<Still>,
    /// The cgroup directories' inodes folded together: a recreated cgroup has new ones.
    ino: u64,
    read_at: u64,
}

/// Discovers and reads every cgroup each interval, cheaply: one pass over the hierarchies that
/// opens each cgroup directory once per hierarchy it exists in, lists only directories that
/// have subdirectories (kernfs gives a directory `2 + subdirectories` links), reads the files
/// relative to the directory fd into one reused buffer, skips `memory.stat` when usage is 0 (the
/// working set is 0 either way), re-reads limits only every [`LIMITS_EVERY`] samples, and
/// skips the counters an idle cgroup cannot move (see [`Still`]) between those re-reads.
pub struct Sampler {
    /// Each distinct hierarchy root, opened once, with the controllers it serves.
    roots: Vec<(OwnedFd, u8)>,
    buf: Bufs,
    dents: Vec<u8>,
    cache: HashMap<String, Cached>,
    samples: u64,
}

impl Sampler {
    pub fn new(h: &Hierarchies) -> Sampler {
        let mut roots: Vec<(PathBuf, u8)> = Vec::new();
        for (p, bit) in [
            (&h.memory_v1, C_MEMORY),
            (&h.cpu_v1, C_CPU),
            (&h.cpuacct_v1, C_CPUACCT),
            (&h.pids_v1, C_PIDS),
            (&h.v2, C_V2),
        ] {
            let Some(p) = p else { continue };
            match roots.iter_mut().find(|(r, _)| r == p) {
                Some((_, c)) => *c |= bit,
                None => roots.push((p.clone(), bit)),
            }
        }
        let roots = roots
            .into_iter()
            .filter_map(|(p, c)| {
                let cp = CString::new(p.as_os_str().as_bytes()).ok()?;
                open_dir(libc::AT_FDCWD, &cp).map(|fd| (fd, c))
            })
            .collect();
        Sampler {
            roots,
            buf: Bufs::default(),
            dents: vec![0u8; 32 * 1024],
            cache: HashMap::new(),
            samples: 0,
        }
    }

    /// Cgroup files that existed but could not be read (or were not text) so far.
    pub fn read_errors(&self) -> u64 {
        self.buf.errors
    }

    /// Breadth-first over every hierarchy at once, so with a bound the shallow cgroups
    /// (slices, pods) are kept before deep ones: at most `max` cgroups (the root `/` counts as
    /// one), returns their stats sorted by path and the directories not visited (their
    /// subtrees are not counted).
    pub fn sample(&mut self, max: usize) -> (Vec<CgroupStats>, u64) {
        let mut out: Vec<CgroupStats> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut skipped = 0u64;
        let mut queue: VecDeque<(String, u32)> = VecDeque::new();
        if !self.roots.is_empty() && max > 0 {
            seen.insert("/".to_string());
            queue.push_back((String::new(), (1u32 << self.roots.len()) - 1));
        }
        let mut children: Vec<(String, u32)> = Vec::new();
        while let Some((rel, mask)) = queue.pop_front() {
            let Ok(crel) = CString::new(if rel.is_empty() { "." } else { rel.as_str() }) else {
                continue;
            };
            let prefix = if rel.is_empty() {
                String::new()
            } else {
                format!("{rel}/")
            };
            let mut dirs = Dirs::default();
            let mut ino = 0u64;
            children.clear();
            for (i, (root, controllers)) in self.roots.iter().enumerate() {
                if mask & (1 << i) == 0 {
                    continue;
                }
                // SAFETY: an all-zero `stat` is a valid value; fstatat fills it.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                // SAFETY: the root fd is open, crel NUL-terminated, st a valid out pointer.
                if unsafe {
                    libc::fstatat(
                        root.as_raw_fd(),
                        crel.as_ptr(),
                        &mut st,
                        libc::AT_SYMLINK_NOFOLLOW,
                    )
                } != 0
                    || st.st_mode & libc::S_IFMT != libc::S_IFDIR
                {
                    continue;
                }
                ino = ino.rotate_left(17) ^ st.st_ino;
                // kernfs (and tmpfs, ext4) give a directory 2 + subdirectories links: a leaf
                // is not listed. Others (btrfs) say 1.
                if st.st_nlink != 2
                    && let Some(fd) = open_dir(root.as_raw_fd(), &crel)
                {
                    list_subdirs(fd.as_raw_fd(), &mut self.dents, |name| {
                        children.push((name, 1 << i))
                    });
                }
                dirs.set(
                    *controllers,
                    At {
                        fd: root.as_raw_fd(),
                        prefix: prefix.as_bytes(),
                    },
                );
            }
            let path = format!("/{rel}");
            let cached = self.cache.get(&path).and_then(|c| {
                (c.ino == ino && self.samples.saturating_sub(c.read_at) < LIMITS_EVERY)
                    .then_some((c.limits, c.still))
            });
            let (limits, still) = cached.map_or((None, None), |(l, s)| (Some(l), s));
            let (stats, limits) = read_dirs(&dirs, &path, &mut self.buf, limits, still);
            let still = Still::of(&stats);
            match self.cache.get_mut(&path) {
                Some(c) if cached.is_some() => c.still = still,
                _ => {
                    self.cache.insert(
                        path,
                        Cached {
                            limits,
                            still,
                            ino,
                            read_at: self.samples,
                        },
                    );
                }
            }
            out.push(stats);
            children.sort();
            let mut i = 0;
            while i < children.len() {
                let (name, mut m) = (std::mem::take(&mut children[i].0), children[i].1);
                i += 1;
                while i < children.len() && children[i].0 == name {
                    m |= children[i].1;
                    i += 1;
                }
                let c = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let p = format!("/{c}");
                if seen.contains(&p) {
                    continue;
                }
                if seen.len() >= max {
                    skipped += 1;
                    continue;
                }
                seen.insert(p);
                queue.push_back((c, m));
            }
        }
        self.samples += 1;
        self.cache.retain(|p, _| seen.contains(p));
        out.sort_by(|a, b| a.path.cmp(&b.path));
        (out, skipped)
    }
}

fn open_dir(at: RawFd, path: &CStr) -> Option<OwnedFd> {
    // SAFETY: path is NUL-terminated; the returned fd, if any, is ours.
    let fd = unsafe {
        libc::openat(
            at,
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    // SAFETY: fd was just opened and is owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Calls `f` with the name of every subdirectory of the open directory `fd` (`getdents64`).
fn list_subdirs(fd: RawFd, buf: &mut [u8], mut f: impl FnMut(String)) {
    loop {
        // SAFETY: buf is valid for buf.len() bytes; the kernel writes at most that many.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            return;
        }
        let mut off = 0usize;
        while off + 19 < n as usize {
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            if reclen == 0 {
                return;
            }
            let d_type = buf[off + 18];
            let name_bytes = &buf[off + 19..off + reclen];
            let name_bytes = &name_bytes[..name_bytes
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(name_bytes.len())];
            off += reclen;
            if name_bytes == b"." || name_bytes == b".." {
                continue;
            }
            let is_dir = match d_type {
                libc::DT_DIR => true,
                libc::DT_UNKNOWN => {
                    let Ok(cn) = CString::new(name_bytes) else {
                        continue;
                    };
                    // SAFETY: as in `Sampler::sample`.
                    let mut st: libc::stat = unsafe { std::mem::zeroed() };
                    // SAFETY: fd is open, cn NUL-terminated, st a valid out pointer.
                    (unsafe { libc::fstatat(fd, cn.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) }
                        == 0)
                        && st.st_mode & libc::S_IFMT == libc::S_IFDIR
                }
                _ => false,
            };
            if is_dir && let Ok(name) = std::str::from_utf8(name_bytes) {
                f(name.to_string());
            }
        }
    }
}

/// Reads a small kernfs file in `dir` into `b.text`: openat, read, close.
fn read_at<'a>(dir: At, name: &CStr, b: &'a mut Bufs) -> Option<&'a str> {
    b.path.clear();
    b.path.extend_from_slice(dir.prefix);
    b.path.extend_from_slice(name.to_bytes_with_nul());
    // SAFETY: b.path is NUL-terminated (name is, and the prefix has no NUL: it is a CString's).
    let fd = unsafe {
        libc::openat(
            dir.fd,
            b.path.as_ptr() as *const libc::c_char,
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        count_error(b);
        return None;
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let buf = &mut b.text;
    buf.clear();
    if buf.capacity() < 4096 {
        buf.reserve(4096);
    }
    loop {
        let spare = buf.capacity() - buf.len();
        // SAFETY: writes at most `spare` bytes into the vector's spare capacity.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf.as_mut_ptr().add(buf.len()) as *mut libc::c_void,
                spare,
            )
        };
        if n < 0 {
            let errno = std::io::Error::last_os_error().raw_os_error();
            if !matches!(errno, Some(libc::ENOENT) | Some(libc::ENODEV)) {
                b.errors += 1;
            }
            return None;
        }
        let n = n as usize;
        // SAFETY: the kernel initialised n more bytes.
        unsafe { buf.set_len(buf.len() + n) };
        // kernfs returns a small file in one read: a short read is the end.
        if n == 0 || n < spare {
            break;
        }
        buf.reserve(buf.capacity());
    }
    match std::str::from_utf8(&b.text) {
        Ok(s) => Some(s),
        Err(_) => {
            b.errors += 1;
            None
        }
    }
}

fn number_at(dir: At, name: &CStr, buf: &mut Bufs) -> Option<u64> {
    read_at(dir, name, buf)?.trim().parse().ok()
}

fn pressure_at(dir: At, buf: &mut Bufs) -> Pressure {
    let mut get = |n: &CStr| read_at(dir, n, buf).and_then(parse_psi);
    Pressure {
        cpu: get(c"cpu.pressure"),
        memory: get(c"memory.pressure"),
        io: get(c"io.pressure"),
    }
}

/// One cgroup's values from its directories; `limits`: the cached limits, or `None` to read
/// them; `still`: the last sample's counters, kept when the CPU counter has not moved since.
/// Returns the limits it used.
fn read_dirs(
    d: &Dirs,
    path: &str,
    buf: &mut Bufs,
    limits: Option<Limits>,
    still: Option<Still>,
) -> (CgroupStats, Limits) {
    let fresh = limits.is_none();
    let mut lim = limits.unwrap_or_default();
    let mut s = CgroupStats {
        path: path.to_string(),
        kube: kube_ids(path),
        ..CgroupStats::default()
    };
    if let Some(d) = d.cpuacct {
        s.cpu_usage_nanos = number_at(d, c"cpuacct.usage", buf);
    }
    // v1: cpuacct.usage says whether the cgroup ran; v2 learns it from cpu.stat below.
    let mut idle = still.filter(|p| s.cpu_usage_nanos == Some(p.cpu_usage_nanos));
    let mut v1_cpu_limit = false;
    if let Some(d) = d.cpu {
        if fresh {
            // -1 is unlimited; the period only matters with a quota.
            let quota =
                read_at(d, c"cpu.cfs_quota_us", buf).and_then(|q| q.trim().parse::<i64>().ok());
            if let Some(q) = quota.filter(|&q| q > 0)
                && let Some(p) = number_at(d, c"cpu.cfs_period_us", buf).filter(|&p| p > 0)
            {
                lim.cpu_limit_cores = Some(q as f64 / p as f64);
            }
        }
        if lim.cpu_limit_cores.is_none() && lim.unlimited_cpu_stat.is_some() && !fresh {
            s.cpu = lim.unlimited_cpu_stat;
        } else if let Some(p) = idle {
            s.cpu = p.cpu;
        } else if let Some(t) = read_at(d, c"cpu.stat", buf) {
            let [p, t, ns] = keyed(t, ["nr_periods", "nr_throttled", "throttled_time"]);
            if let (Some(nr_periods), Some(nr_throttled)) = (p, t) {
                s.cpu = Some(CpuStat {
                    nr_periods,
                    nr_throttled,
                    throttled_nanos: ns.unwrap_or(0),
                });
            }
            if fresh && lim.cpu_limit_cores.is_none() {
                lim.unlimited_cpu_stat = s.cpu;
            }
        }
        v1_cpu_limit = true;
    }
    if let Some(d) = d.memory
        && let Some(usage) = number_at(d, c"memory.usage_in_bytes", buf)
    {
        s.memory_usage_bytes = Some(usage);
        if fresh {
            lim.memory_limit_bytes = read_at(d, c"memory.limit_in_bytes", buf).and_then(limit);
        }
        s.memory_limit_bytes = lim.memory_limit_bytes;
        // With nothing charged the working set is 0 whatever inactive_file says.
        let inactive = if usage == 0 {
            0
        } else {
            read_at(d, c"memory.stat", buf)
                .and_then(|t| keyed(t, ["total_inactive_file"])[0])
                .unwrap_or(0)
        };
        s.memory_working_set_bytes = Some(usage.saturating_sub(inactive));
        s.oom_kills = match idle {
            Some(p) => p.oom_kills,
            None => read_at(d, c"memory.oom_control", buf).and_then(|t| keyed(t, ["oom_kill"])[0]),
        };
    }
    if let Some(d) = d.pids {
        s.pids_current = match idle {
            Some(p) => p.pids_current,
            None => number_at(d, c"pids.current", buf),
        };
        if fresh {
            lim.pids_max = read_at(d, c"pids.max", buf).and_then(limit);
        }
        s.pids_max = lim.pids_max;
    }
    if let Some(d) = d.v2 {
        if let Some(t) = read_at(d, c"cpu.stat", buf) {
            let [usage, p, t, us] = keyed(
                t,
                ["usage_usec", "nr_periods", "nr_throttled", "throttled_usec"],
            );
            if s.cpu_usage_nanos.is_none() {
                s.cpu_usage_nanos = usage.map(|u| u * 1000);
                idle = still.filter(|p| s.cpu_usage_nanos == Some(p.cpu_usage_nanos));
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
        if fresh && lim.cpu_limit_cores.is_none() && !v1_cpu_limit {
            lim.cpu_limit_cores = read_at(d, c"cpu.max", buf).and_then(parse_cpu_max);
        }
        if s.memory_usage_bytes.is_none()
            && let Some(usage) = number_at(d, c"memory.current", buf)
        {
            s.memory_usage_bytes = Some(usage);
            if fresh {
                lim.memory_limit_bytes = read_at(d, c"memory.max", buf).and_then(limit);
            }
            s.memory_limit_bytes = lim.memory_limit_bytes;
            let inactive = if usage == 0 {
                0
            } else {
                read_at(d, c"memory.stat", buf)
                    .and_then(|t| keyed(t, ["inactive_file"])[0])
                    .unwrap_or(0)
            };
            s.memory_working_set_bytes = Some(usage.saturating_sub(inactive));
            s.oom_kills = match idle {
                Some(p) => p.oom_kills,
                None => read_at(d, c"memory.events", buf).and_then(|t| keyed(t, ["oom_kill"])[0]),
            };
        }
        if s.pids_current.is_none() {
            s.pids_current = match idle {
                Some(p) => p.pids_current,
                None => number_at(d, c"pids.current", buf),
            };
            if s.pids_current.is_some() {
                if fresh {
                    lim.pids_max = read_at(d, c"pids.max", buf).and_then(limit);
                }
                s.pids_max = lim.pids_max;
            }
        }
        s.pressure = pressure_at(d, buf);
    }
    s.cpu_limit_cores = lim.cpu_limit_cores;
    (s, lim)
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

    /// One cgroup as a full sample reads it (absent: `None`).
    fn read_one(h: &Hierarchies, path: &str) -> Option<CgroupStats> {
        let (all, _) = Sampler::new(h).sample(usize::MAX);
        all.into_iter().find(|s| s.path == path)
    }

    #[test]
    fn detects_a_hybrid_host_and_reads_v1_first() {
        let tmp = tempfile::tempdir().unwrap();
        hybrid(tmp.path());
        let h = Hierarchies::detect(tmp.path());
        assert_eq!(h.memory_v1, Some(tmp.path().join("memory")));
        assert_eq!(h.cpu_v1, Some(tmp.path().join("cpu")));
        assert_eq!(h.v2, Some(tmp.path().join("unified")));
        let s = read_one(&h, "/app").unwrap();
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
        let s = read_one(&h, "/svc").unwrap();
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
    fn sampling_is_breadth_first_and_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        hybrid(tmp.path());
        let h = Hierarchies::detect(tmp.path());
        let paths = |max| {
            let (s, skipped) = Sampler::new(&h).sample(max);
            (s.into_iter().map(|s| s.path).collect::<Vec<_>>(), skipped)
        };
        assert_eq!(
            paths(100),
            (
                vec![
                    "/".to_string(),
                    "/app".into(),
                    "/app/deeper".into(),
                    "/app/deeper/deepest".into()
                ],
                0
            )
        );
        assert_eq!(paths(2), (vec!["/".to_string(), "/app".into()], 1));
        assert_eq!(
            Sampler::new(&Hierarchies::default()).sample(10),
            (Vec::new(), 0)
        );
    }

    #[test]
    fn an_idle_cgroup_keeps_its_counters_until_it_runs_or_the_limits_are_read() {
        let tmp = tempfile::tempdir().unwrap();
        hybrid(tmp.path());
        let h = Hierarchies::detect(tmp.path());
        let mut sampler = Sampler::new(&h);
        let counters = |s: &[CgroupStats]| {
            let app = s.iter().find(|s| s.path == "/app").unwrap();
            (
                app.pids_current,
                app.oom_kills,
                app.cpu.map(|c| c.nr_throttled),
                app.memory_usage_bytes,
            )
        };
        assert_eq!(
            counters(&sampler.sample(100).0),
            (Some(12), Some(2), Some(90), Some(104_857_600))
        );
        // The files move but cpuacct.usage does not: the counters are not read again (a
        // real cgroup cannot do this; the test shows the files are skipped). Memory usage
        // can fall without the cgroup running (reclaim): always read.
        let set = |rel: &str, text: &str| fs::write(tmp.path().join(rel), text).unwrap();
        set("pids/app/pids.current", "13\n");
        set(
            "memory/app/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        );
        set(
            "cpu/app/cpu.stat",
            "nr_periods 130\nnr_throttled 91\nthrottled_time 4600000000\n",
        );
        set("memory/app/memory.usage_in_bytes", "4096\n");
        assert_eq!(
            counters(&sampler.sample(100).0),
            (Some(12), Some(2), Some(90), Some(4096))
        );
        // It ran: everything is read.
        set("cpuacct/app/cpuacct.usage", "1500000001\n");
        assert_eq!(
            counters(&sampler.sample(100).0),
            (Some(13), Some(3), Some(91), Some(4096))
        );
        // Idle again: at the latest with the limits (every LIMITS_EVERY samples) the files
        // are read anyway, so a task moved out of an idle cgroup shows within that bound.
        set("pids/app/pids.current", "1\n");
        let mut seen = Vec::new();
        for _ in 0..LIMITS_EVERY {
            seen.push(counters(&sampler.sample(100).0).0);
        }
        assert_eq!(seen.first(), Some(&Some(13)));
        assert_eq!(seen.last(), Some(&Some(1)));
    }

    #[test]
    fn sampler_caches_limits_and_forgets_vanished_cgroups() {
        let tmp = tempfile::tempdir().unwrap();
        hybrid(tmp.path());
        write(
            &tmp.path().join("pids/only-pids"),
            &[("cgroup.procs", ""), ("pids.current", "0\n")],
        );
        write(
            &tmp.path().join("cpu/noquota"),
            &[
                ("cgroup.procs", ""),
                (
                    "cpu.stat",
                    "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
                ),
                ("cpu.cfs_quota_us", "-1\n"),
                ("cpu.cfs_period_us", "100000\n"),
            ],
        );
        let h = Hierarchies::detect(tmp.path());
        let mut sampler = Sampler::new(&h);
        let (first, skipped) = sampler.sample(100);
        assert_eq!(skipped, 0);
        assert!(first.iter().any(|s| s.path == "/only-pids"));
        let app = first.iter().find(|s| s.path == "/app").unwrap();
        assert_eq!(app.memory_limit_bytes, Some(268_435_456));
        // A limit change shows after LIMITS_EVERY samples; usage at once.
        fs::write(
            tmp.path().join("memory/app/memory.limit_in_bytes"),
            "1024\n",
        )
        .unwrap();
        fs::write(tmp.path().join("memory/app/memory.usage_in_bytes"), "512\n").unwrap();
        // Without a quota the CFS counters cannot move: read with the limits, not every time.
        fs::write(tmp.path().join("cpu/noquota/cpu.cfs_quota_us"), "50000\n").unwrap();
        fs::write(
            tmp.path().join("cpu/noquota/cpu.stat"),
            "nr_periods 10\nnr_throttled 5\nthrottled_time 7\n",
        )
        .unwrap();
        for i in 1..=LIMITS_EVERY {
            let (s, _) = sampler.sample(100);
            let app = s.iter().find(|s| s.path == "/app").unwrap();
            assert_eq!(app.memory_usage_bytes, Some(512));
            let want = if i < LIMITS_EVERY { 268_435_456 } else { 1024 };
            assert_eq!(app.memory_limit_bytes, Some(want), "sample {i}");
            let nq = s.iter().find(|s| s.path == "/noquota").unwrap();
            let (periods, cores) = if i < LIMITS_EVERY {
                (0, None)
            } else {
                (10, Some(0.5))
            };
            assert_eq!(nq.cpu.unwrap().nr_periods, periods, "sample {i}");
            assert_eq!(nq.cpu_limit_cores, cores, "sample {i}");
        }
        // A vanished cgroup leaves the sample and the cache.
        fs::remove_dir_all(tmp.path().join("pids/only-pids")).unwrap();
        let (s, _) = sampler.sample(100);
        assert!(s.iter().all(|s| s.path != "/only-pids"));
        assert!(!sampler.cache.contains_key("/only-pids"));
    }

    #[test]
    fn a_vanished_cgroup_reads_empty() {
        let tmp = tempfile::tempdir().unwrap();
        hybrid(tmp.path());
        let h = Hierarchies::detect(tmp.path());
        assert_eq!(read_one(&h, "/gone"), None);
        // Removed between two samples: gone from the next one, nothing else changes.
        fs::remove_dir_all(tmp.path().join("memory/app/deeper")).unwrap();
        let s = read_one(&h, "/app").unwrap();
        assert_eq!(s.memory_usage_bytes, Some(104_857_600));
        assert_eq!(read_one(&h, "/app/deeper"), None);
    }

    /// A pure v2 tree with one cgroup `/svc` holding `files` (bytes, so garbage is possible).
    fn v2_tree(root: &Path, files: &[(&str, &[u8])]) {
        write(
            root,
            &[
                ("cgroup.procs", ""),
                ("cgroup.controllers", "cpu memory pids"),
            ],
        );
        let svc = root.join("svc");
        fs::create_dir_all(&svc).unwrap();
        fs::write(svc.join("cgroup.procs"), "").unwrap();
        for (name, content) in files {
            fs::write(svc.join(name), content).unwrap();
        }
    }

    #[test]
    fn garbage_in_cgroup_files_is_a_missing_value_and_unreadable_files_are_counted() {
        let tmp = tempfile::tempdir().unwrap();
        v2_tree(
            tmp.path(),
            &[
                (
                    "cpu.stat",
                    b"usage_usec lots\nnr_periods -3\nnr_throttled 18446744073709551616\n",
                ),
                ("memory.current", b"\xff\xfe\x00garbage"),
                ("memory.max", b"-5\n"),
                ("memory.events", b"oom_kill\n\n\n"),
                ("pids.current", b"3\n"),
                ("cpu.max", b"max max max\n"),
                ("cpu.pressure", b"some avg10=x total=\n"),
            ],
        );
        // A "file" that cannot be read at all.
        fs::create_dir(tmp.path().join("svc/pids.max")).unwrap();
        let mut sampler = Sampler::new(&Hierarchies::detect(tmp.path()));
        let (stats, _) = sampler.sample(10);
        let s = stats.iter().find(|s| s.path == "/svc").unwrap();
        assert_eq!(s.cpu_usage_nanos, None);
        assert_eq!(s.memory_usage_bytes, None, "not text");
        assert_eq!(s.memory_limit_bytes, None);
        assert_eq!(s.oom_kills, None);
        assert_eq!((s.pids_current, s.pids_max), (Some(3), None));
        assert_eq!(s.cpu_limit_cores, None);
        assert_eq!(s.pressure.cpu, None);
        // The non-UTF-8 file and the directory are errors; absent files are not.
        assert_eq!(sampler.read_errors(), 2);
    }

    #[test]
    fn a_cgroup_recreated_under_its_path_reads_its_new_counters_and_limits() {
        let tmp = tempfile::tempdir().unwrap();
        let files = |usage: &str, max: &str| {
            vec![
                (
                    "cpu.stat",
                    format!(
                        "usage_usec {usage}\nnr_periods 10\nnr_throttled 5\nthrottled_usec 9\n"
                    ),
                ),
                ("cpu.max", "50000 100000\n".to_string()),
                ("memory.current", "4096\n".to_string()),
                ("memory.max", format!("{max}\n")),
            ]
        };
        let put = |f: Vec<(&str, String)>| {
            let b: Vec<(&str, &[u8])> = f.iter().map(|(n, c)| (*n, c.as_bytes())).collect();
            v2_tree(tmp.path(), &b);
        };
        put(files("9000000", "8192"));
        let mut sampler = Sampler::new(&Hierarchies::detect(tmp.path()));
        let (a, _) = sampler.sample(10);
        // Recreated: the new directory exists before the old one goes, so its inode differs
        // (as kernfs gives every new cgroup a new one).
        let old = tmp.path().join("svc");
        fs::rename(&old, tmp.path().join("old-svc")).unwrap();
        put(files("1000", "4096"));
        fs::remove_dir_all(tmp.path().join("old-svc")).unwrap();
        let (b, _) = sampler.sample(10);
        let svc = |v: &[CgroupStats]| v.iter().find(|s| s.path == "/svc").cloned().unwrap();
        assert_eq!(svc(&b).cpu_usage_nanos, Some(1_000_000));
        assert_eq!(
            svc(&b).memory_limit_bytes,
            Some(4096),
            "a new inode re-reads limits"
        );
        let snap = |c: Vec<CgroupStats>| crate::node::NodeSnapshot {
            cgroups: c,
            ..Default::default()
        };
        assert_eq!(crate::node::resets::count(&snap(a), &snap(b)).cgroup, 1);
    }

    proptest::proptest! {
        #[test]
        fn cgroup_parsers_never_panic_on_bytes(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let t = String::from_utf8_lossy(&b);
            let _ = parse_cpu_max(&t);
            let _ = limit(&t);
            let _ = keyed(&t, ["usage_usec", "nr_periods", "oom_kill"]);
            let _ = kube_ids(&t);
            let _ = parse_psi(&t);
        }

        #[test]
        fn cpu_max_is_positive_or_none(q in proptest::prelude::any::<i64>(), p in proptest::prelude::any::<i64>()) {
            if let Some(c) = parse_cpu_max(&format!("{q} {p}\n")) {
                proptest::prop_assert!(c > 0.0 && c.is_finite());
            }
        }
    }
}
