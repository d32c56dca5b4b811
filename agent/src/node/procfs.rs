//! Host-wide kernel counters from procfs: disk I/O (`diskstats`), network interfaces
//! (`net/dev`), open files (`sys/fs/file-nr`), conntrack (`sys/net/netfilter/nf_conntrack_*`),
//! pressure stall information (`pressure/{cpu,memory,io}`) and the agent's own process
//! (`self/stat`, `self/fd`).
//!
//! Entry points: the pure parsers ([`parse_diskstats`], [`parse_net_dev`], [`parse_psi`],
//! [`parse_self_stat`]) and [`read_host`], which reads them all under a proc root (normally
//! `/proc`; a DaemonSet mounts the host's at another path).
//!
//! Invariants: a file that is absent (no PSI before 4.20, no conntrack module) gives `None`,
//! never an error; parsers never panic on malformed input (a bad line is skipped); the number
//! of disks and interfaces kept is bounded ([`MAX_DEVICES`]) so labels stay bounded.

use std::path::Path;

/// At most this many block devices and this many network interfaces are kept per sample.
pub const MAX_DEVICES: usize = 256;

/// One block device's cumulative I/O counters (`/proc/diskstats`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiskStats {
    pub device: String,
    pub reads_completed: u64,
    pub sectors_read: u64,
    pub read_time_ms: u64,
    pub writes_completed: u64,
    pub sectors_written: u64,
    pub write_time_ms: u64,
    pub io_in_progress: u64,
    pub io_time_ms: u64,
}

/// One network interface's cumulative counters (`/proc/net/dev`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetDev {
    pub device: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errs: u64,
    pub rx_drop: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errs: u64,
    pub tx_drop: u64,
}

/// One line of a PSI file: `some avg10=0.12 avg60=0.05 avg300=0.01 total=123456`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PsiLine {
    /// Percent of wall time stalled, averaged over 10 s, 60 s and 300 s.
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Cumulative stall time in microseconds.
    pub total_usec: u64,
}

/// A PSI file: `some` (at least one task stalled) and, where the kernel has it, `full` (all
/// non-idle tasks stalled at once).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Psi {
    pub some: PsiLine,
    pub full: Option<PsiLine>,
}

/// PSI of one scope (the host, or one cgroup) for each resource.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pressure {
    pub cpu: Option<Psi>,
    pub memory: Option<Psi>,
    pub io: Option<Psi>,
}

/// The host-wide part of a node sample.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostCounters {
    pub disks: Vec<DiskStats>,
    pub interfaces: Vec<NetDev>,
    /// `file-nr`: allocated file handles and the system maximum.
    pub file_handles: Option<(u64, u64)>,
    /// `nf_conntrack_count` and `nf_conntrack_max` (absent without the conntrack module).
    pub conntrack: Option<(u64, u64)>,
    pub pressure: Pressure,
}

/// Whole disks only, as node_exporter does by default: partitions, RAM disks, loop and
/// floppy devices are left out (their I/O is already in the whole disk, or means nothing).
pub fn keep_disk(name: &str) -> bool {
    let digits_at_end = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let has_digits = digits_at_end.len() < name.len();
    if ["ram", "zram", "loop", "fd"]
        .iter()
        .any(|p| name.starts_with(p) && has_digits && digits_at_end == *p)
    {
        return false;
    }
    // sda1, vdb2, xvda1, hda3: a partition of a (h|s|v|xv)d[a-z]+ disk.
    for p in ["sd", "vd", "hd", "xvd"] {
        if let Some(rest) = digits_at_end.strip_prefix(p)
            && has_digits
            && !rest.is_empty()
            && rest.chars().all(|c| c.is_ascii_lowercase())
        {
            return false;
        }
    }
    // nvme0n1p2, mmcblk0p1: a partition.
    if (name.starts_with("nvme") || name.starts_with("mmcblk")) && has_digits {
        let before = digits_at_end;
        if before.ends_with('p') && before.len() > 1 {
            return false;
        }
    }
    true
}

/// `/proc/diskstats`: `major minor name reads merged sectors ms writes merged sectors ms
/// in_progress io_ms weighted_ms …`. Whole disks only ([`keep_disk`]), at most
/// [`MAX_DEVICES`].
pub fn parse_diskstats(text: &str) -> Vec<DiskStats> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 14 || !keep_disk(f[2]) {
            continue;
        }
        let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
        out.push(DiskStats {
            device: f[2].to_string(),
            reads_completed: n(3),
            sectors_read: n(5),
            read_time_ms: n(6),
            writes_completed: n(7),
            sectors_written: n(9),
            write_time_ms: n(10),
            io_in_progress: n(11),
            io_time_ms: n(12),
        });
        if out.len() == MAX_DEVICES {
            break;
        }
    }
    out
}

/// `/proc/net/dev`: two header lines, then `iface: rx_bytes rx_packets rx_errs rx_drop fifo
/// frame compressed multicast tx_bytes tx_packets tx_errs tx_drop …`. At most
/// [`MAX_DEVICES`].
pub fn parse_net_dev(text: &str) -> Vec<NetDev> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        if f.len() < 12 {
            continue;
        }
        out.push(NetDev {
            device: name.trim().to_string(),
            rx_bytes: f[0],
            rx_packets: f[1],
            rx_errs: f[2],
            rx_drop: f[3],
            tx_bytes: f[8],
            tx_packets: f[9],
            tx_errs: f[10],
            tx_drop: f[11],
        });
        if out.len() == MAX_DEVICES {
            break;
        }
    }
    out
}

/// A PSI file (`/proc/pressure/memory`, a cgroup's `memory.pressure`). `None` without a
/// `some` line.
pub fn parse_psi(text: &str) -> Option<Psi> {
    let line = |l: &str| -> Option<PsiLine> {
        let mut p = PsiLine::default();
        for kv in l.split_whitespace().skip(1) {
            let (k, v) = kv.split_once('=')?;
            match k {
                "avg10" => p.avg10 = v.parse().ok()?,
                "avg60" => p.avg60 = v.parse().ok()?,
                "avg300" => p.avg300 = v.parse().ok()?,
                "total" => p.total_usec = v.parse().ok()?,
                _ => {}
            }
        }
        Some(p)
    };
    let mut some = None;
    let mut full = None;
    for l in text.lines() {
        if l.starts_with("some ") {
            some = line(l);
        } else if l.starts_with("full ") {
            full = line(l);
        }
    }
    Some(Psi { some: some?, full })
}

/// `/proc/sys/fs/file-nr`: `allocated unused max`.
pub fn parse_file_nr(text: &str) -> Option<(u64, u64)> {
    let f: Vec<u64> = text
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    (f.len() == 3).then(|| (f[0], f[2]))
}

/// Files that existed but could not be read (permission, I/O error) or were not text, since
/// the process started: `daytwo_agent_node_read_errors_total`. A missing file is normal (a
/// module not loaded) and not counted.
static READ_ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// See [`READ_ERRORS`].
pub fn read_errors() -> u64 {
    READ_ERRORS.load(std::sync::atomic::Ordering::Relaxed)
}

fn read(path: &Path) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(_) => {
            READ_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            None
        }
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    read(path)?.trim().parse().ok()
}

/// Reads the pressure files of one directory: `<dir>/<prefix>cpu<suffix>` etc.
pub fn read_pressure(dir: &Path, names: [&str; 3]) -> Pressure {
    let get = |n: &str| read(&dir.join(n)).and_then(|t| parse_psi(&t));
    Pressure {
        cpu: get(names[0]),
        memory: get(names[1]),
        io: get(names[2]),
    }
}

/// Reads every host counter under `proc_root`. Blocking (a dozen small procfs reads).
pub fn read_host(proc_root: &Path) -> HostCounters {
    let net = proc_root.join("sys/net/netfilter");
    HostCounters {
        disks: read(&proc_root.join("diskstats"))
            .map(|t| parse_diskstats(&t))
            .unwrap_or_default(),
        interfaces: read(&proc_root.join("net/dev"))
            .map(|t| parse_net_dev(&t))
            .unwrap_or_default(),
        file_handles: read(&proc_root.join("sys/fs/file-nr")).and_then(|t| parse_file_nr(&t)),
        conntrack: read_u64(&net.join("nf_conntrack_count"))
            .zip(read_u64(&net.join("nf_conntrack_max"))),
        pressure: read_pressure(&proc_root.join("pressure"), ["cpu", "memory", "io"]),
    }
}

/// What `/proc/self/stat` says about the agent's own process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SelfStat {
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    pub threads: u64,
    /// Start time after boot, in clock ticks.
    pub start_ticks: u64,
    pub virtual_bytes: u64,
    pub rss_pages: u64,
}

/// `/proc/self/stat`. The command name (field 2) may contain spaces and parentheses, so
/// fields are counted from the last `)`.
pub fn parse_self_stat(text: &str) -> Option<SelfStat> {
    let rest = &text[text.rfind(')')? + 1..];
    // rest starts at field 3 (state); field N is at index N - 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |field: usize| f.get(field - 3)?.parse::<u64>().ok();
    Some(SelfStat {
        cpu_ticks: n(14)? + n(15)?,
        threads: n(20)?,
        start_ticks: n(22)?,
        virtual_bytes: n(23)?,
        rss_pages: n(24)?,
    })
}

/// The agent's own health, as the standard `process_*` metrics report it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SelfHealth {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
}

// rlim_t is u32 or u64 depending on the target.
#[allow(clippy::unnecessary_cast)]
/// Reads the agent's own process health from `/proc/self` (not the host's proc root: this is
/// about this process wherever it runs).
pub fn read_self() -> Option<SelfHealth> {
    let stat = parse_self_stat(&read(Path::new("/proc/self/stat"))?)?;
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    let max_fds = (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0)
        .then_some(lim.rlim_cur as u64);
    let btime = read(Path::new("/proc/stat")).and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    Some(SelfHealth {
        cpu_seconds: stat.cpu_ticks as f64 / tck,
        resident_bytes: stat.rss_pages * page,
        virtual_bytes: stat.virtual_bytes,
        threads: stat.threads,
        open_fds,
        max_fds,
        start_time_seconds: btime.map(|b| b + stat.start_ticks as f64 / tck),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn diskstats_keeps_whole_disks() {
        let text = "\
 253       0 vda 95066 21 5806414 32540 1041434 651229 46123464 1134567 0 584612 1206580 0 0 0 0 12 39472
 253       1 vda1 94000 21 5800000 32000 1041000 651000 46120000 1134000 0 584000 1206000 0 0 0 0 0 0
   7       0 loop0 12 0 24 1 0 0 0 0 0 4 1 0 0 0 0 0 0
   1       0 ram0 0 0 0 0 0 0 0 0 0 0 0
 259       0 nvme0n1 10 0 80 3 20 0 160 7 2 9 10
 259       1 nvme0n1p1 10 0 80 3 20 0 160 7 0 9 10
 253       2 dm-0 1 0 8 0 1 0 8 0 0 0 0
";
        let d = parse_diskstats(text);
        let names: Vec<_> = d.iter().map(|d| d.device.as_str()).collect();
        assert_eq!(names, ["vda", "nvme0n1", "dm-0"]);
        assert_eq!(d[0].reads_completed, 95066);
        assert_eq!(d[0].sectors_read, 5_806_414);
        assert_eq!(d[0].read_time_ms, 32540);
        assert_eq!(d[0].writes_completed, 1_041_434);
        assert_eq!(d[0].sectors_written, 46_123_464);
        assert_eq!(d[0].write_time_ms, 1_134_567);
        assert_eq!(d[0].io_in_progress, 0);
        assert_eq!(d[0].io_time_ms, 584_612);
        assert_eq!(d[1].io_in_progress, 2);
    }

    #[test]
    fn keep_disk_rules() {
        for keep in [
            "sda", "vdb", "xvdf", "nvme0n1", "dm-3", "md0", "mmcblk0", "sr0",
        ] {
            assert!(keep_disk(keep), "{keep}");
        }
        for drop in [
            "sda1",
            "vda15",
            "xvdf1",
            "nvme0n1p2",
            "mmcblk0p1",
            "loop7",
            "ram0",
        ] {
            assert!(!keep_disk(drop), "{drop}");
        }
    }

    #[test]
    fn net_dev_parses_counters() {
        let text = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1234 10 0 0 0 0 0 0 1234 10 0 0 0 0 0 0
  eth0: 987654321 12345 3 7 0 0 0 12 123456 2345 1 2 0 0 0 0
";
        let n = parse_net_dev(text);
        assert_eq!(n.len(), 2);
        assert_eq!(n[1].device, "eth0");
        assert_eq!(n[1].rx_bytes, 987_654_321);
        assert_eq!(n[1].rx_packets, 12345);
        assert_eq!(n[1].rx_errs, 3);
        assert_eq!(n[1].rx_drop, 7);
        assert_eq!(n[1].tx_bytes, 123_456);
        assert_eq!(n[1].tx_packets, 2345);
        assert_eq!(n[1].tx_errs, 1);
        assert_eq!(n[1].tx_drop, 2);
    }

    #[test]
    fn psi_parses_some_and_full() {
        let p = parse_psi(
            "some avg10=12.50 avg60=3.10 avg300=0.80 total=4567890\nfull avg10=1.00 avg60=0.50 avg300=0.10 total=1234\n",
        )
        .unwrap();
        assert_eq!(p.some.avg10, 12.5);
        assert_eq!(p.some.avg60, 3.1);
        assert_eq!(p.some.total_usec, 4_567_890);
        assert_eq!(p.full.unwrap().total_usec, 1234);
        let cpu = parse_psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n").unwrap();
        assert_eq!(cpu.full, None);
        assert_eq!(parse_psi(""), None);
        assert_eq!(parse_psi("some avg10=x"), None);
    }

    #[test]
    fn file_nr_and_self_stat() {
        assert_eq!(
            parse_file_nr("2080\t0\t9223372036854775807\n"),
            Some((2080, i64::MAX as u64))
        );
        assert_eq!(parse_file_nr("garbage"), None);
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 50 0 0 20 0 7 0 123456 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0";
        let s = parse_self_stat(stat).unwrap();
        assert_eq!(s.cpu_ticks, 200);
        assert_eq!(s.threads, 7);
        assert_eq!(s.start_ticks, 123_456);
        assert_eq!(s.virtual_bytes, 104_857_600);
        assert_eq!(s.rss_pages, 2560);
    }

    #[test]
    fn reads_this_host() {
        let h = read_host(Path::new("/proc"));
        assert!(!h.interfaces.is_empty(), "at least lo");
        assert!(h.file_handles.is_some());
        let me = read_self().unwrap();
        assert!(me.resident_bytes > 0 && me.open_fds > 0 && me.threads >= 1);
    }

    #[test]
    fn missing_files_are_none() {
        let tmp = tempfile::tempdir().unwrap();
        let h = read_host(tmp.path());
        assert_eq!(h, HostCounters::default());
    }

    #[test]
    fn garbage_proc_files_are_empty_values_and_unreadable_ones_are_counted() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path();
        std::fs::create_dir_all(p.join("net")).unwrap();
        std::fs::create_dir_all(p.join("sys/fs")).unwrap();
        std::fs::create_dir_all(p.join("pressure")).unwrap();
        std::fs::write(p.join("diskstats"), b"\x00\xff\xfe binary").unwrap();
        std::fs::write(
            p.join("net/dev"),
            "Inter-|\n face |\n  eth0: 1 2 x 4 5 6 7 8 9 10 11 12 13 14 15 16\n lo: -1\n",
        )
        .unwrap();
        std::fs::write(p.join("sys/fs/file-nr"), "many\n").unwrap();
        // Unreadable: a directory where a file should be.
        std::fs::create_dir_all(p.join("pressure/memory")).unwrap();
        std::fs::write(p.join("pressure/cpu"), "some avg10=abc\n").unwrap();
        let before = read_errors();
        let h = read_host(p);
        assert!(h.disks.is_empty());
        assert!(h.interfaces.iter().all(|i| i.device != "lo"));
        assert_eq!(h.file_handles, None);
        assert_eq!(h.pressure.cpu, None);
        assert_eq!(h.pressure.memory, None);
        // diskstats (not text) and pressure/memory (a directory); missing files are not errors.
        assert!(read_errors() >= before + 2);
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_bytes(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let s = String::from_utf8_lossy(&b);
            let _ = parse_diskstats(&s);
            let _ = parse_net_dev(&s);
            let _ = parse_psi(&s);
            let _ = parse_file_nr(&s);
            let _ = parse_self_stat(&s);
        }

        /// Lines shaped like the real files with arbitrary numbers (huge, negative, missing).
        #[test]
        fn near_real_lines_never_panic(
            name in "[a-z]{1,6}[0-9]{0,2}",
            nums in proptest::collection::vec(prop_oneof![any::<u64>().prop_map(|n| n.to_string()), any::<i64>().prop_map(|n| n.to_string()), Just("18446744073709551616".to_string()), Just("x".to_string())], 0..20),
        ) {
            let joined = nums.join(" ");
            let _ = parse_diskstats(&format!("   8       0 {name} {joined}\n"));
            let _ = parse_net_dev(&format!("h\nh\n  {name}: {joined}\n"));
            let _ = parse_psi(&format!("some avg10={} total={}\n", nums.first().cloned().unwrap_or_default(), joined));
            let _ = parse_file_nr(&joined);
        }

        #[test]
        fn parsers_never_panic(s in ".{0,400}") {
            let _ = parse_diskstats(&s);
            let _ = parse_net_dev(&s);
            let _ = parse_psi(&s);
            let _ = parse_file_nr(&s);
            let _ = parse_self_stat(&s);
        }
    }
}
