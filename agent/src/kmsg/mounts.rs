//! Which mount point a kernel device name belongs to, from `/proc/<pid>/mountinfo`.
//!
//! Entry point: [`mount_point`], pure over the file's text. The kernel names a filesystem by
//! its superblock id (`sda1`, `dm-0`, `nvme0n1p2`), which is not always the mount source
//! (`/dev/mapper/vg-root` for `dm-0`), so the device's `major:minor` (from
//! `/sys/class/block/<dev>/dev`) is matched first, then the source's file name.

/// The mount point of `device` (kernel name) in `mountinfo`, preferring a mount of the
/// filesystem's root over bind mounts of a subdirectory.
pub fn mount_point(mountinfo: &str, device: &str, major_minor: Option<&str>) -> Option<String> {
    let mut best: Option<(bool, String)> = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let f: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if f.len() < 5 || r.len() < 2 {
            continue;
        }
        let source = r[1];
        let by_number = major_minor.is_some_and(|mm| mm == f[2]);
        let by_name = source.rsplit('/').next() == Some(device) && source.starts_with("/dev/");
        if !(by_number || by_name) {
            continue;
        }
        let whole = f[3] == "/";
        if best.as_ref().is_none_or(|(w, _)| whole && !*w) {
            best = Some((whole, unescape(f[4])));
        }
    }
    best.map(|(_, p)| p)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/vg-root rw,errors=remount-ro
25 22 8:17 / /var rw,relatime shared:5 - xfs /dev/sdb1 rw,attr2,inode64
26 22 8:17 /lib/kubelet /var/lib/kubelet rw,relatime shared:5 - xfs /dev/sdb1 rw
27 22 8:33 / /mnt/my\\040data rw,relatime - ext4 /dev/sdc1 rw
";

    #[test]
    fn finds_by_number_then_by_name() {
        assert_eq!(
            mount_point(MOUNTINFO, "dm-0", Some("253:0")).as_deref(),
            Some("/")
        );
        assert_eq!(mount_point(MOUNTINFO, "dm-0", None), None);
        assert_eq!(
            mount_point(MOUNTINFO, "sdb1", None).as_deref(),
            Some("/var")
        );
        assert_eq!(
            mount_point(MOUNTINFO, "sdc1", Some("8:33")).as_deref(),
            Some("/mnt/my data")
        );
        assert_eq!(mount_point(MOUNTINFO, "sdz", Some("8:200")), None);
    }
}
