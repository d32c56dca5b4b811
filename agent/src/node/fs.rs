//! Filesystems: space and inodes of every real mounted filesystem.
//!
//! Entry points: [`parse_mounts`] (pure: `/proc/mounts` text → the mounts worth watching) and
//! [`FsReader`], which calls `statvfs(2)` on each, bounded by a timeout (a hung network mount
//! is left out and reported, never stalls the samples).
//!
//! Which mounts count, as node_exporter decides by default: pseudo filesystems (proc, sysfs,
//! cgroup, overlay, squashfs, …) and mounts under `/proc`, `/sys` and `/dev` (except
//! `/dev/shm`) are left out, as are the per-pod volumes and container roots that kubelet and
//! the container runtimes mount by the hundred (their space is the node filesystem's); a mount
//! point seen twice (stacked mounts) is kept once, the last (the visible one). At most
//! [`MAX_FILESYSTEMS`] are kept, so labels stay bounded.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tracing::warn;

/// At most this many filesystems per sample.
pub const MAX_FILESYSTEMS: usize = 256;

const PSEUDO_TYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "erofs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tracefs",
];

const SKIPPED_PREFIXES: &[&str] = &[
    "/proc/",
    "/sys/",
    "/run/credentials/",
    "/var/lib/docker/",
    "/var/lib/containers/storage/",
    "/var/lib/kubelet/pods/",
    "/run/containerd/",
    "/run/k3s/containerd/",
    "/var/lib/containerd/",
    "/run/netns/",
    "/var/run/netns/",
    "/snap/",
];

/// One mount from `/proc/mounts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub mountpoint: String,
    pub fs_type: String,
    pub read_only: bool,
}

/// Space and inodes of one filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filesystem {
    pub mount: Mount,
    /// Total size.
    pub size_bytes: u64,
    /// Free, including the blocks reserved for root.
    pub free_bytes: u64,
    /// Free for unprivileged users (what `df` shows as Avail).
    pub avail_bytes: u64,
    /// Total inodes (0 where the filesystem has no fixed count, e.g. btrfs).
    pub files: u64,
    pub files_free: u64,
}

impl Filesystem {
    /// `used / (used + avail)`, the `Use%` of `df`; `None` for an empty filesystem. Exactly 1
    /// when nothing is available.
    pub fn used_ratio(&self) -> Option<f64> {
        let used = self.size_bytes.saturating_sub(self.free_bytes);
        let denom = used + self.avail_bytes;
        if self.size_bytes == 0 || denom == 0 {
            return None;
        }
        if self.avail_bytes == 0 {
            return Some(1.0);
        }
        Some(used as f64 / denom as f64)
    }

    /// Bytes in use and the capacity they can grow to (`used + avail`).
    pub fn used_and_capacity(&self) -> (u64, u64) {
        let used = self.size_bytes.saturating_sub(self.free_bytes);
        (used, used + self.avail_bytes)
    }

    /// Share of inodes in use; `None` where the filesystem has no inode count.
    pub fn inodes_used_ratio(&self) -> Option<f64> {
        if self.files == 0 {
            return None;
        }
        if self.files_free == 0 {
            return Some(1.0);
        }
        Some(self.files.saturating_sub(self.files_free) as f64 / self.files as f64)
    }
}

/// `/proc/mounts` escapes space, tab, newline and backslash as octal (`\040`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// True when a mount is worth watching (see the module docs).
pub fn keep_mount(mountpoint: &str, fs_type: &str) -> bool {
    if PSEUDO_TYPES.contains(&fs_type) {
        return false;
    }
    if mountpoint == "/dev/shm" {
        return true;
    }
    let with_slash = format!("{}/", mountpoint.trim_end_matches('/'));
    if ["/proc/", "/sys/", "/dev/"]
        .iter()
        .any(|p| with_slash.starts_with(p))
    {
        return false;
    }
    !SKIPPED_PREFIXES.iter().any(|p| mountpoint.starts_with(p))
}

/// The mounts worth watching, in mount order, each mount point once (the last mount on it
/// wins), at most [`MAX_FILESYSTEMS`].
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        let mountpoint = unescape(f[1]);
        if !keep_mount(&mountpoint, f[2]) {
            continue;
        }
        let m = Mount {
            device: unescape(f[0]),
            mountpoint,
            fs_type: f[2].to_string(),
            read_only: f[3].split(',').any(|o| o == "ro"),
        };
        if let Some(i) = out.iter().position(|o| o.mountpoint == m.mountpoint) {
            out.remove(i);
        } else if out.len() == MAX_FILESYSTEMS {
            continue;
        }
        out.push(m);
    }
    out
}

/// `statvfs(2)` of one mount point.
pub fn statvfs(path: &Path) -> std::io::Result<libc::statvfs> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: zeroed is a valid statvfs; `c` is NUL-terminated and outlives the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc == 0 {
        Ok(st)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Space and inodes as `statvfs(2)` reports them, in bytes and counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Space {
    pub size_bytes: u64,
    pub free_bytes: u64,
    pub avail_bytes: u64,
    pub files: u64,
    pub files_free: u64,
}

// The statvfs field types are u32 or u64 depending on the target.
#[allow(clippy::unnecessary_cast)]
/// [`statvfs`] of `path` as [`Space`].
pub fn space(path: &Path) -> std::io::Result<Space> {
    let st = statvfs(path)?;
    let frsize = if st.f_frsize > 0 {
        st.f_frsize as u64
    } else {
        st.f_bsize as u64
    };
    Ok(Space {
        size_bytes: st.f_blocks as u64 * frsize,
        free_bytes: st.f_bfree as u64 * frsize,
        avail_bytes: st.f_bavail as u64 * frsize,
        files: st.f_files as u64,
        files_free: st.f_ffree as u64,
    })
}

/// How a mount point's space is read (a test replaces [`space`]).
pub type StatFn = Arc<dyn Fn(&Path) -> std::io::Result<Space> + Send + Sync>;

/// Default bound on one `statvfs` (node_exporter's `--collector.filesystem.mount-timeout`).
pub const DEFAULT_MOUNT_TIMEOUT: Duration = Duration::from_secs(5);

/// What one [`FsReader::read`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FsRead {
    pub filesystems: Vec<Filesystem>,
    /// Mounts that could not be stat-ed this time (gone, no permission).
    pub errors: u64,
    /// Mounts whose `statvfs` did not return within the timeout and has not returned since
    /// (a hung NFS or FUSE server): left out of samples until it does.
    pub unresponsive: Vec<Mount>,
}

/// Reads the space of every mount worth watching, with a bound on each `statvfs`.
///
/// A `statvfs` on a network filesystem whose server is gone blocks, uninterruptibly, for as
/// long as the mount's own timeouts say (forever for a hard NFS mount). The calls run on a
/// worker thread; when one takes longer than the timeout, the sample goes on without that
/// mount, the mount is marked unresponsive and skipped by later samples, and a new worker
/// takes the rest. The stuck thread stays blocked in the kernel; when its call finally
/// returns it clears the mark and exits, so each hung mount costs at most one parked thread
/// and one timeout, however many samples pass.
pub struct FsReader {
    timeout: Duration,
    stat: StatFn,
    worker: Option<Worker>,
    /// Mount points whose `statvfs` has not returned yet, shared with the stuck threads.
    stuck: Arc<Mutex<HashSet<String>>>,
    /// Calls that ran past the timeout since the start.
    pub timeouts_total: u64,
}

struct Worker {
    jobs: mpsc::Sender<Vec<Mount>>,
    results: mpsc::Receiver<std::io::Result<Space>>,
}

impl FsReader {
    pub fn new(timeout: Duration) -> Self {
        Self::with_stat(timeout, Arc::new(space))
    }

    pub fn with_stat(timeout: Duration, stat: StatFn) -> Self {
        FsReader {
            timeout,
            stat,
            worker: None,
            stuck: Arc::default(),
            timeouts_total: 0,
        }
    }

    fn spawn(&self) -> Option<Worker> {
        let (jobs, job_rx) = mpsc::channel::<Vec<Mount>>();
        let (res_tx, results) = mpsc::channel();
        let stat = self.stat.clone();
        let stuck = self.stuck.clone();
        let spawned = std::thread::Builder::new()
            .name("daytwo-statvfs".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                while let Ok(batch) = job_rx.recv() {
                    for m in batch {
                        let r = stat(Path::new(&m.mountpoint));
                        if res_tx.send(r).is_err() {
                            // Given up on while blocked in this mount: it answers again.
                            if let Ok(mut s) = stuck.lock() {
                                s.remove(&m.mountpoint);
                            }
                            return;
                        }
                    }
                }
            });
        match spawned {
            Ok(_) => Some(Worker { jobs, results }),
            Err(e) => {
                warn!(error = %e, "Cannot start a thread for statvfs; filesystems are left out of this sample.");
                None
            }
        }
    }

    /// Reads `<proc_root>/mounts` and the space of every mount worth watching.
    pub fn read(&mut self, proc_root: &Path) -> FsRead {
        let Ok(text) = std::fs::read_to_string(proc_root.join("mounts")) else {
            return FsRead {
                errors: 1,
                ..FsRead::default()
            };
        };
        self.read_mounts(parse_mounts(&text))
    }

    /// [`Self::read`] of these mounts.
    pub fn read_mounts(&mut self, mounts: Vec<Mount>) -> FsRead {
        let mut out = FsRead::default();
        let stuck: HashSet<String> = self.stuck.lock().map(|s| s.clone()).unwrap_or_default();
        let (mut todo, skipped): (Vec<Mount>, Vec<Mount>) = mounts
            .into_iter()
            .partition(|m| !stuck.contains(&m.mountpoint));
        out.unresponsive = skipped;
        while !todo.is_empty() {
            let Some(w) = self.worker.take().or_else(|| self.spawn()) else {
                return out;
            };
            if w.jobs.send(todo.clone()).is_err() {
                continue; // the worker is gone (it panicked): a new one takes the batch
            }
            let mut done = 0;
            let mut lost = false;
            while done < todo.len() {
                match w.results.recv_timeout(self.timeout) {
                    Ok(Ok(space)) => out
                        .filesystems
                        .push(Filesystem::new(todo[done].clone(), space)),
                    Ok(Err(_)) => out.errors += 1,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        let m = &todo[done];
                        if let Ok(mut s) = self.stuck.lock() {
                            s.insert(m.mountpoint.clone());
                        }
                        self.timeouts_total += 1;
                        warn!(
                            mountpoint = %m.mountpoint,
                            device = %m.device,
                            fs_type = %m.fs_type,
                            timeout = ?self.timeout,
                            "statvfs did not return: the filesystem does not answer (a hung NFS or FUSE server?). It is left out of node samples until it answers."
                        );
                        out.unresponsive.push(m.clone());
                        lost = true;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        // The stat function panicked on this mount: count it, go on.
                        out.errors += 1;
                        lost = true;
                    }
                }
                done += 1;
                if lost {
                    break;
                }
            }
            todo.drain(..done);
            if !lost {
                self.worker = Some(w);
            }
        }
        out
    }
}

impl Filesystem {
    fn new(mount: Mount, s: Space) -> Filesystem {
        Filesystem {
            mount,
            size_bytes: s.size_bytes,
            free_bytes: s.free_bytes,
            avail_bytes: s.avail_bytes,
            files: s.files,
            files_free: s.files_free,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
proc /proc proc rw,relatime 0 0
sysfs /sys sysfs rw,relatime 0 0
devtmpfs /dev devtmpfs rw,relatime,size=12334460k 0 0
tmpfs /dev/shm tmpfs rw,relatime 0 0
/dev/vda / ext4 rw,relatime,discard 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
overlay /var/lib/docker/overlay2/abc/merged overlay rw 0 0
tmpfs /var/lib/kubelet/pods/0a1b/volumes/kubernetes.io~projected/kube-api-access-x tmpfs rw 0 0
/dev/sdb1 /mnt/my\\040data xfs ro,relatime 0 0
tmpfs /dev/shm tmpfs rw,relatime,size=24684084k 0 0
/dev/loop3 /snap/core/1 squashfs ro 0 0
tmpfs /tmp/daytwo-e2e tmpfs rw,relatime,size=8192k 0 0
";

    #[test]
    fn keeps_real_mounts_once() {
        let m = parse_mounts(MOUNTS);
        let points: Vec<_> = m.iter().map(|m| m.mountpoint.as_str()).collect();
        assert_eq!(points, ["/", "/mnt/my data", "/dev/shm", "/tmp/daytwo-e2e"]);
        assert_eq!(m[0].device, "/dev/vda");
        assert_eq!(m[0].fs_type, "ext4");
        assert!(!m[0].read_only);
        assert!(m[1].read_only);
    }

    #[test]
    fn ratios() {
        let fs = |size, free, avail, files, ffree| Filesystem {
            mount: Mount {
                device: "d".into(),
                mountpoint: "/".into(),
                fs_type: "ext4".into(),
                read_only: false,
            },
            size_bytes: size,
            free_bytes: free,
            avail_bytes: avail,
            files,
            files_free: ffree,
        };
        // 100 blocks, 30 free of which 5 reserved: used 70 of 95 usable.
        let f = fs(100, 30, 25, 10, 4);
        assert!((f.used_ratio().unwrap() - 70.0 / 95.0).abs() < 1e-12);
        assert_eq!(f.used_and_capacity(), (70, 95));
        assert!((f.inodes_used_ratio().unwrap() - 0.6).abs() < 1e-12);
        assert_eq!(fs(100, 5, 0, 10, 0).used_ratio(), Some(1.0));
        assert_eq!(fs(100, 5, 0, 10, 0).inodes_used_ratio(), Some(1.0));
        assert_eq!(fs(0, 0, 0, 0, 0).used_ratio(), None);
        assert_eq!(fs(0, 0, 0, 0, 0).inodes_used_ratio(), None);
    }

    #[test]
    fn reads_this_hosts_root() {
        let r = FsReader::new(DEFAULT_MOUNT_TIMEOUT).read(Path::new("/proc"));
        assert!(r.unresponsive.is_empty());
        let root = r.filesystems.iter().find(|f| f.mount.mountpoint == "/");
        let root = root.expect("/ is mounted");
        assert!(root.size_bytes > 0 && root.files > 0);
    }

    fn mount(p: &str) -> Mount {
        Mount {
            device: format!("server:{p}"),
            mountpoint: p.into(),
            fs_type: "nfs4".into(),
            read_only: false,
        }
    }

    /// A stat function that blocks on `/hung` until released, answers everything else, and
    /// records which paths it was asked for.
    fn hanging_stat() -> (StatFn, Arc<Mutex<Vec<String>>>, mpsc::Sender<()>) {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let (release, released) = mpsc::channel::<()>();
        let released = Mutex::new(released);
        let answered = Mutex::new(false);
        let log = asked.clone();
        let stat: StatFn = Arc::new(move |p: &Path| {
            let p = p.to_string_lossy().to_string();
            log.lock().unwrap().push(p.clone());
            if p == "/hung" {
                // Blocks until released; once released, answers at once (the lock is held
                // by the blocked call, so a second call waits for the release too).
                let rx = released.lock().unwrap();
                let _ = rx.recv_timeout(Duration::from_secs(if *answered.lock().unwrap() {
                    0
                } else {
                    60
                }));
                *answered.lock().unwrap() = true;
            }
            if p == "/gone" {
                return Err(std::io::Error::from_raw_os_error(libc::ENOENT));
            }
            Ok(Space {
                size_bytes: 100,
                avail_bytes: 50,
                free_bytes: 60,
                files: 10,
                files_free: 5,
            })
        });
        (stat, asked, release)
    }

    fn names(fss: &[Filesystem]) -> Vec<&str> {
        fss.iter().map(|f| f.mount.mountpoint.as_str()).collect()
    }

    #[test]
    fn a_hung_mount_is_left_out_once_timed_out_and_back_when_it_answers() {
        let (stat, asked, release) = hanging_stat();
        let mut r = FsReader::with_stat(Duration::from_millis(200), stat);
        let mounts = || ["/", "/hung", "/gone", "/data"].map(mount).to_vec();

        let first = r.read_mounts(mounts());
        assert_eq!(
            names(&first.filesystems),
            ["/", "/data"],
            "the rest is still read"
        );
        assert_eq!(first.errors, 1, "/gone");
        assert_eq!(first.unresponsive, [mount("/hung")]);
        assert_eq!(r.timeouts_total, 1);

        // While it hangs, later samples do not ask it again (no new thread, no new wait).
        asked.lock().unwrap().clear();
        let second = r.read_mounts(mounts());
        assert_eq!(names(&second.filesystems), ["/", "/data"]);
        assert_eq!(second.unresponsive, [mount("/hung")]);
        assert_eq!(*asked.lock().unwrap(), ["/", "/gone", "/data"]);
        assert_eq!(r.timeouts_total, 1, "counted once per hang");

        // The server answers again: the stuck call returns and the mount is back.
        release.send(()).unwrap();
        let mut back = FsRead::default();
        for _ in 0..100 {
            back = r.read_mounts(mounts());
            if back.unresponsive.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(names(&back.filesystems), ["/", "/hung", "/data"]);
        assert_eq!(back.filesystems[1].avail_bytes, 50);
    }

    #[test]
    fn a_panicking_stat_counts_as_an_error_and_the_next_mount_is_read() {
        let stat: StatFn = Arc::new(|p: &Path| {
            if p == Path::new("/bad") {
                panic!("test: stat panics");
            }
            Ok(Space::default())
        });
        let mut r = FsReader::with_stat(Duration::from_secs(5), stat);
        let out = r.read_mounts(["/bad", "/ok"].map(mount).to_vec());
        assert_eq!(out.errors, 1);
        assert_eq!(names(&out.filesystems), ["/ok"]);
        assert!(out.unresponsive.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn parse_mounts_never_panics_on_bytes(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = parse_mounts(&String::from_utf8_lossy(&b));
        }
    }
}
