//! Reads a memory cgroup's accounting files, cgroup v1 and v2.
//!
//! Entry point: [`read_memory`], called when an OOM kill is classified, for the victim's
//! cgroup. v1 lives at `<root>/memory/<path>` (`memory.usage_in_bytes`,
//! `memory.limit_in_bytes`, `memory.max_usage_in_bytes`, `memory.failcnt`,
//! `memory.oom_control`); v2 at `<root>/<path>` or, on hybrid hosts, `<root>/unified/<path>`
//! (`memory.current`, `memory.max`, `memory.peak`, `memory.events`).
//!
//! Invariants: a cgroup that no longer exists (removed right after the kill) is normal and
//! gives `None`, never an error; a path with `..` components is refused; every value read is
//! also kept verbatim as a reading (`memory.usage_in_bytes=67108864`) for evidence. This module
//! reads files synchronously: a handful of small sysfs reads, once per OOM kill.

use std::path::{Component, Path, PathBuf};

/// Values at or above this mean "no limit" (v1 prints `PAGE_COUNTER_MAX * PAGE_SIZE`).
const UNLIMITED_BYTES: u64 = 1 << 62;

/// Which cgroup hierarchy the files came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// What a memory cgroup's files said at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupMemory {
    pub version: CgroupVersion,
    /// The directory the files were read from.
    pub dir: PathBuf,
    /// v1 `memory.usage_in_bytes`, v2 `memory.current`.
    pub usage_bytes: Option<u64>,
    /// v1 `memory.limit_in_bytes`, v2 `memory.max`; `None` when unlimited or unreadable.
    pub limit_bytes: Option<u64>,
    /// v1 `memory.max_usage_in_bytes`, v2 `memory.peak` (kernel 5.19+).
    pub max_usage_bytes: Option<u64>,
    /// v1 `memory.failcnt`, v2 the `max` count of `memory.events` (times usage hit the limit).
    pub failcnt: Option<u64>,
    /// v1 `oom_kill` of `memory.oom_control`, v2 `oom_kill` of `memory.events`.
    pub oom_kill_count: Option<u64>,
    /// Every file read, as `file=value` text (multi-line files condensed onto one line).
    pub readings: Vec<String>,
}

/// Reads the memory files of `cgroup_path` (as the kernel names it, e.g. `/probe1`) under
/// `root` (normally `/sys/fs/cgroup`). `None` when the cgroup does not exist (any more) in
/// either hierarchy.
pub fn read_memory(root: &Path, cgroup_path: &str) -> Option<CgroupMemory> {
    let rel = relative(cgroup_path)?;
    let v1 = root.join("memory").join(&rel);
    if v1.join("memory.usage_in_bytes").is_file() {
        return Some(read_v1(v1));
    }
    for dir in [root.join(&rel), root.join("unified").join(&rel)] {
        if dir.join("memory.current").is_file() {
            return Some(read_v2(dir));
        }
    }
    None
}

/// `/a/b` → `a/b`; refuses anything but plain names.
fn relative(cgroup_path: &str) -> Option<PathBuf> {
    let mut rel = PathBuf::new();
    for c in Path::new(cgroup_path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => rel.push(n),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(rel)
}

struct Reader {
    dir: PathBuf,
    readings: Vec<String>,
}

impl Reader {
    fn raw(&mut self, file: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.dir.join(file)).ok()?;
        let text = text.trim().to_string();
        let condensed = text.lines().collect::<Vec<_>>().join(", ");
        if text.contains('\n') {
            self.readings.push(format!("{file}: {condensed}"));
        } else {
            self.readings.push(format!("{file}={condensed}"));
        }
        Some(text)
    }

    fn number(&mut self, file: &str) -> Option<u64> {
        self.raw(file)?.parse().ok()
    }

    /// A limit file: a number, or `max` (v2) / a huge number (v1) for unlimited.
    fn limit(&mut self, file: &str) -> Option<u64> {
        let text = self.raw(file)?;
        text.parse::<u64>().ok().filter(|&v| v < UNLIMITED_BYTES)
    }

    /// A flat-keyed file (`key value` lines) → the value of `key`.
    fn keyed(&mut self, file: &str, keys: &[&str]) -> Vec<Option<u64>> {
        let text = self.raw(file).unwrap_or_default();
        keys.iter()
            .map(|k| {
                text.lines().find_map(|l| {
                    let (name, v) = l.split_once(' ')?;
                    (name == *k).then(|| v.trim().parse().ok()).flatten()
                })
            })
            .collect()
    }
}

fn read_v1(dir: PathBuf) -> CgroupMemory {
    let mut r = Reader {
        dir,
        readings: Vec::new(),
    };
    let usage_bytes = r.number("memory.usage_in_bytes");
    let limit_bytes = r.limit("memory.limit_in_bytes");
    let max_usage_bytes = r.number("memory.max_usage_in_bytes");
    let failcnt = r.number("memory.failcnt");
    let oom_kill_count = r.keyed("memory.oom_control", &["oom_kill"])[0];
    CgroupMemory {
        version: CgroupVersion::V1,
        dir: r.dir,
        usage_bytes,
        limit_bytes,
        max_usage_bytes,
        failcnt,
        oom_kill_count,
        readings: r.readings,
    }
}

fn read_v2(dir: PathBuf) -> CgroupMemory {
    let mut r = Reader {
        dir,
        readings: Vec::new(),
    };
    let usage_bytes = r.number("memory.current");
    let limit_bytes = r.limit("memory.max");
    let max_usage_bytes = r.number("memory.peak");
    let events = r.keyed("memory.events", &["max", "oom_kill"]);
    CgroupMemory {
        version: CgroupVersion::V2,
        dir: r.dir,
        usage_bytes,
        limit_bytes,
        max_usage_bytes,
        failcnt: events[0],
        oom_kill_count: events[1],
        readings: r.readings,
    }
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

    /// The files of a v1 memory cgroup as the kernel shows them right after an OOM kill.
    fn v1_probe(root: &Path) {
        write(
            &root.join("memory/probe1"),
            &[
                ("memory.usage_in_bytes", "270336\n"),
                ("memory.limit_in_bytes", "67108864\n"),
                ("memory.max_usage_in_bytes", "67108864\n"),
                ("memory.failcnt", "286\n"),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
                ),
                ("memory.memsw.usage_in_bytes", "270336\n"),
                ("cgroup.procs", ""),
            ],
        );
    }

    #[test]
    fn reads_v1() {
        let tmp = tempfile::tempdir().unwrap();
        v1_probe(tmp.path());
        let m = read_memory(tmp.path(), "/probe1").unwrap();
        assert_eq!(m.version, CgroupVersion::V1);
        assert_eq!(m.dir, tmp.path().join("memory/probe1"));
        assert_eq!(m.usage_bytes, Some(270_336));
        assert_eq!(m.limit_bytes, Some(67_108_864));
        assert_eq!(m.max_usage_bytes, Some(67_108_864));
        assert_eq!(m.failcnt, Some(286));
        assert_eq!(m.oom_kill_count, Some(1));
        assert_eq!(
            m.readings,
            vec![
                "memory.usage_in_bytes=270336",
                "memory.limit_in_bytes=67108864",
                "memory.max_usage_in_bytes=67108864",
                "memory.failcnt=286",
                "memory.oom_control: oom_kill_disable 0, under_oom 0, oom_kill 1",
            ]
        );
    }

    #[test]
    fn v1_unlimited_is_none() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            &tmp.path().join("memory"),
            &[
                ("memory.usage_in_bytes", "1048576\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
            ],
        );
        let m = read_memory(tmp.path(), "/").unwrap();
        assert_eq!(m.limit_bytes, None);
        assert_eq!(m.usage_bytes, Some(1_048_576));
        assert_eq!(m.failcnt, None);
        assert!(
            m.readings
                .contains(&"memory.limit_in_bytes=9223372036854771712".to_string())
        );
    }

    fn v2_files(dir: &Path, max: &str) {
        write(
            dir,
            &[
                ("memory.current", "4096\n"),
                ("memory.max", max),
                ("memory.peak", "104857600\n"),
                (
                    "memory.events",
                    "low 0\nhigh 0\nmax 1543\noom 1\noom_kill 1\noom_group_kill 0\n",
                ),
                ("cgroup.controllers", ""),
            ],
        );
    }

    #[test]
    fn reads_v2_at_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        v2_files(&tmp.path().join("system.slice/hog.service"), "104857600\n");
        let m = read_memory(tmp.path(), "/system.slice/hog.service").unwrap();
        assert_eq!(m.version, CgroupVersion::V2);
        assert_eq!(m.usage_bytes, Some(4096));
        assert_eq!(m.limit_bytes, Some(104_857_600));
        assert_eq!(m.max_usage_bytes, Some(104_857_600));
        assert_eq!(m.failcnt, Some(1543));
        assert_eq!(m.oom_kill_count, Some(1));
        assert_eq!(m.readings[0], "memory.current=4096");
        assert!(m.readings[3].starts_with("memory.events: low 0, high 0, max 1543"));
    }

    #[test]
    fn reads_v2_under_unified_with_max() {
        let tmp = tempfile::tempdir().unwrap();
        // A hybrid host: v1 controllers elsewhere, v2 hierarchy at <root>/unified.
        fs::create_dir_all(tmp.path().join("memory")).unwrap();
        v2_files(&tmp.path().join("unified/app"), "max\n");
        let m = read_memory(tmp.path(), "/app").unwrap();
        assert_eq!(m.version, CgroupVersion::V2);
        assert_eq!(m.dir, tmp.path().join("unified/app"));
        assert_eq!(m.limit_bytes, None);
        assert!(m.readings.contains(&"memory.max=max".to_string()));
    }

    #[test]
    fn a_removed_cgroup_is_none() {
        let tmp = tempfile::tempdir().unwrap();
        v1_probe(tmp.path());
        assert_eq!(read_memory(tmp.path(), "/gone"), None);
    }

    #[test]
    fn refuses_parent_components() {
        assert_eq!(relative("/a/../../etc"), None);
        assert_eq!(relative("/a/./b"), Some(PathBuf::from("a/b")));
    }
}
