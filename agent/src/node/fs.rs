//! Filesystems: space and inodes of every real mounted filesystem.
//!
//! Entry points: [`parse_mounts`] (pure: `/proc/mounts` text → the mounts worth watching) and
//! [`read_filesystems`], which calls `statvfs(2)` on each.
//!
//! Which mounts count, as node_exporter decides by default: pseudo filesystems (proc, sysfs,
//! cgroup, overlay, squashfs, …) and mounts under `/proc`, `/sys` and `/dev` (except
//! `/dev/shm`) are left out, as are the per-pod volumes and container roots that kubelet and
//! the container runtimes mount by the hundred (their space is the node filesystem's); a mount
//! point seen twice (stacked mounts) is kept once, the last (the visible one). At most
//! [`MAX_FILESYSTEMS`] are kept, so labels stay bounded.
//!
//! Not done here: a timeout around `statvfs` on a hung network mount (the caller runs this on
//! the blocking pool, so a hang delays node samples but never the runtime).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

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

// The statvfs and rlimit field types are u32 or u64 depending on the target.
#[allow(clippy::unnecessary_cast)]
/// Reads `<proc_root>/mounts` and `statvfs`es every mount worth watching; a mount that
/// cannot be stat-ed (gone, no permission) is left out and counted in the second value.
pub fn read_filesystems(proc_root: &Path) -> (Vec<Filesystem>, u64) {
    let Ok(text) = std::fs::read_to_string(proc_root.join("mounts")) else {
        return (Vec::new(), 1);
    };
    let mut errors = 0;
    let mut out = Vec::new();
    for m in parse_mounts(&text) {
        match statvfs(Path::new(&m.mountpoint)) {
            Ok(st) => {
                let frsize = if st.f_frsize > 0 {
                    st.f_frsize as u64
                } else {
                    st.f_bsize as u64
                };
                out.push(Filesystem {
                    size_bytes: st.f_blocks as u64 * frsize,
                    free_bytes: st.f_bfree as u64 * frsize,
                    avail_bytes: st.f_bavail as u64 * frsize,
                    files: st.f_files as u64,
                    files_free: st.f_ffree as u64,
                    mount: m,
                });
            }
            Err(_) => errors += 1,
        }
    }
    (out, errors)
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
        let (fss, _) = read_filesystems(Path::new("/proc"));
        let root = fss.iter().find(|f| f.mount.mountpoint == "/");
        let root = root.expect("/ is mounted");
        assert!(root.size_bytes > 0 && root.files > 0);
    }

    proptest::proptest! {
        #[test]
        fn parse_mounts_never_panics_on_bytes(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = parse_mounts(&String::from_utf8_lossy(&b));
        }
    }
}
