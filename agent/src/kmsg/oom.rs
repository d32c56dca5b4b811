//! The OOM classifier: a pure state machine that recognises the kernel's OOM-kill sequence.
//!
//! Entry type: [`OomClassifier`]. Feed it every kmsg record in sequence order with
//! [`OomClassifier::feed`]; it returns one [`OomKill`] at each `Killed process` line.
//!
//! The sequence the kernel prints (5.x and 6.x, cgroup v1 and v2 alike) is:
//! `<comm> invoked oom-killer: gfp_mask=…` (the header), `CPU: … PID: … Comm: …`, a call trace,
//! then for a memory-cgroup OOM `memory: usage XkB, limit YkB, failcnt Z`, the
//! `memory+swap:`/`swap:` and `kmem:` lines and `Memory cgroup stats for /path:`; for a global
//! OOM `Mem-Info:` and friends; then the task dump, `oom-kill:constraint=…,task_memcg=…,pid=…`
//! and finally `Memory cgroup out of memory: Killed process …` or
//! `Out of memory: Killed process …`.
//!
//! Invariants: no I/O and no clock; evidence is bounded to [`MAX_EVIDENCE_LINES`] relevant
//! lines (never the call trace, stats or task dump); a `Killed process` line always yields an
//! event, even when the agent started mid-sequence (then with fewer fields);
//! [`OomClassifier::is_idle`] is true between sequences, the only points at which a kmsg
//! checkpoint may be written without losing a half-read sequence on restart.

use super::KmsgRecord;

/// At most this many raw lines are kept as evidence for one OOM kill.
pub const MAX_EVIDENCE_LINES: usize = 20;

/// A sequence whose `Killed process` line has not arrived after this many records is
/// abandoned (the kernel found nothing to kill, or records were lost).
const MAX_SEQUENCE_RECORDS: usize = 100_000;

/// How many records after a kill a header-less `Killed process` line (memory.oom.group kills
/// every task of the group) still reuses the previous sequence's context.
const GROUP_KILL_WINDOW: u64 = 512;

/// Values at or above this are the kernel's "no limit" (PAGE_COUNTER_MAX and friends).
const UNLIMITED_BYTES: u64 = 1 << 62;

/// Which limit was exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OomConstraint {
    /// A memory cgroup hit its limit (`CONSTRAINT_MEMCG`); only that cgroup is affected.
    Memcg,
    /// The whole machine ran out of memory (`CONSTRAINT_NONE`, `global_oom`).
    Global,
    /// A cpuset's memory nodes ran out (`CONSTRAINT_CPUSET`).
    Cpuset,
    /// A NUMA memory policy's nodes ran out (`CONSTRAINT_MEMORY_POLICY`).
    MemoryPolicy,
}

impl OomConstraint {
    /// The value of the `daytwo.oom.constraint` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            OomConstraint::Memcg => "memcg",
            OomConstraint::Global => "global",
            OomConstraint::Cpuset => "cpuset",
            OomConstraint::MemoryPolicy => "mempolicy",
        }
    }

    fn from_kernel(s: &str) -> Option<Self> {
        Some(match s {
            "CONSTRAINT_MEMCG" => OomConstraint::Memcg,
            "CONSTRAINT_NONE" => OomConstraint::Global,
            "CONSTRAINT_CPUSET" => OomConstraint::Cpuset,
            "CONSTRAINT_MEMORY_POLICY" => OomConstraint::MemoryPolicy,
            _ => return None,
        })
    }
}

/// The kernel's own view of the cgroup at the moment of the OOM
/// (`memory: usage XkB, limit YkB, failcnt Z`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelMemory {
    pub usage_bytes: u64,
    /// `None` when the kernel printed its "no limit" value.
    pub limit_bytes: Option<u64>,
    pub failcnt: u64,
}

/// The process whose allocation invoked the OOM killer (not necessarily the victim).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OomTrigger {
    pub comm: String,
    /// From the `CPU: … PID: N Comm: …` line that follows the header.
    pub pid: Option<u32>,
    /// e.g. `0xcc0(GFP_KERNEL)`.
    pub gfp_mask: Option<String>,
    pub order: Option<u32>,
}

/// One classified OOM kill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OomKill {
    pub constraint: OomConstraint,
    /// The cgroup whose limit was hit (`oom_memcg=`), memcg OOMs only.
    pub oom_memcg: Option<String>,
    /// The victim's memory cgroup (`task_memcg=`).
    pub task_memcg: Option<String>,
    /// Victim pid.
    pub pid: u32,
    /// Victim command name (the kernel's 15-byte `comm`).
    pub comm: String,
    pub uid: Option<u32>,
    pub total_vm_bytes: Option<u64>,
    pub anon_rss_bytes: Option<u64>,
    pub file_rss_bytes: Option<u64>,
    pub shmem_rss_bytes: Option<u64>,
    pub oom_score_adj: Option<i32>,
    pub kernel_memory: Option<KernelMemory>,
    pub trigger: Option<OomTrigger>,
    /// Sequence number of the `Killed process` record (the event's identity within a boot).
    pub seq: u64,
    /// Kernel timestamp of the `Killed process` record, microseconds since boot.
    pub ts_usec: u64,
    /// The relevant raw records, in order, at most [`MAX_EVIDENCE_LINES`].
    pub lines: Vec<KmsgRecord>,
}

impl OomKill {
    /// The cgroup the victim ran in: `task_memcg`, else the OOM-ing cgroup.
    pub fn cgroup_path(&self) -> Option<&str> {
        self.task_memcg.as_deref().or(self.oom_memcg.as_deref())
    }
}

/// What a sequence has told us so far.
#[derive(Clone, Debug, Default)]
struct Sequence {
    trigger: Option<OomTrigger>,
    kernel_memory: Option<KernelMemory>,
    constraint: Option<OomConstraint>,
    oom_memcg: Option<String>,
    task_memcg: Option<String>,
    task_uid: Option<u32>,
    lines: Vec<KmsgRecord>,
    records_seen: usize,
}

impl Sequence {
    fn keep(&mut self, rec: &KmsgRecord) {
        // The header and the oom-kill/Killed lines matter most: keep the first lines up to
        // the bound minus room for the two closing lines.
        if self.lines.len() < MAX_EVIDENCE_LINES - 2 {
            self.lines.push(rec.clone());
        }
    }
}

/// The state machine. See the module docs.
#[derive(Debug, Default)]
pub struct OomClassifier {
    pending: Option<Sequence>,
    /// The context of the last completed sequence and the seq of its kill, for group kills.
    recent: Option<(u64, Sequence)>,
}

impl OomClassifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// True when no OOM sequence is half-read.
    pub fn is_idle(&self) -> bool {
        self.pending.is_none()
    }

    /// Feeds the next record; returns the classified kill at a `Killed process` line.
    pub fn feed(&mut self, rec: &KmsgRecord) -> Option<OomKill> {
        let msg = rec.message.trim_end();

        if let Some(idx) = msg.find(" invoked oom-killer:") {
            let mut seq = Sequence {
                trigger: Some(parse_header(&msg[..idx], &msg[idx..])),
                ..Sequence::default()
            };
            seq.keep(rec);
            self.pending = Some(seq);
            return None;
        }

        if let Some(kill) = msg.find("Killed process ") {
            let prefix = &msg[..kill];
            if prefix.contains("ut of memory") {
                return self.finish(rec, prefix, &msg[kill + "Killed process ".len()..]);
            }
        }

        if let Some(rest) = msg.strip_prefix("oom-kill:") {
            let seq = self.pending.get_or_insert_with(Sequence::default);
            parse_oom_kill_line(rest, seq);
            // The oom-kill line is the most telling one: always keep it.
            if seq.lines.len() < MAX_EVIDENCE_LINES - 1 {
                seq.lines.push(rec.clone());
            }
            return None;
        }

        let seq = self.pending.as_mut()?;
        seq.records_seen += 1;
        if seq.records_seen > MAX_SEQUENCE_RECORDS
            || msg.starts_with("Out of memory and no killable processes")
        {
            self.pending = None;
            return None;
        }

        if let Some(rest) = msg.strip_prefix("CPU: ") {
            if let Some(t) = seq.trigger.as_mut()
                && t.pid.is_none()
            {
                t.pid = word_after(rest, "PID: ").and_then(|p| p.parse().ok());
                seq.keep(rec);
            }
        } else if let Some(rest) = msg.strip_prefix("memory: usage ") {
            seq.kernel_memory = parse_memory_line(rest);
            seq.keep(rec);
        } else if msg.starts_with("memory+swap: usage ")
            || msg.starts_with("swap: usage ")
            || msg.starts_with("kmem: usage ")
            || msg.starts_with("Memory cgroup stats for ")
            || msg.starts_with("Tasks in ")
        {
            seq.keep(rec);
        }
        None
    }

    fn finish(&mut self, rec: &KmsgRecord, prefix: &str, rest: &str) -> Option<OomKill> {
        let mut seq = match self.pending.take() {
            Some(seq) => seq,
            // memory.oom.group: more tasks of the same group are killed right after.
            None => match self.recent.take() {
                Some((at, mut ctx)) if rec.seq.saturating_sub(at) <= GROUP_KILL_WINDOW => {
                    ctx.task_memcg = None;
                    ctx.task_uid = None;
                    ctx.lines.retain(|l| !l.message.contains("Killed process "));
                    ctx
                }
                _ => Sequence::default(),
            },
        };
        let victim = parse_killed(rest)?;
        let constraint = seq
            .constraint
            .unwrap_or(if prefix.starts_with("Memory cgroup") {
                OomConstraint::Memcg
            } else {
                OomConstraint::Global
            });
        seq.lines.truncate(MAX_EVIDENCE_LINES - 1);
        seq.lines.push(rec.clone());
        let kill = OomKill {
            constraint,
            oom_memcg: seq.oom_memcg.clone(),
            task_memcg: seq.task_memcg.clone(),
            pid: victim.pid,
            comm: victim.comm,
            uid: victim.uid.or(seq.task_uid),
            total_vm_bytes: victim.total_vm_bytes,
            anon_rss_bytes: victim.anon_rss_bytes,
            file_rss_bytes: victim.file_rss_bytes,
            shmem_rss_bytes: victim.shmem_rss_bytes,
            oom_score_adj: victim.oom_score_adj,
            kernel_memory: seq.kernel_memory,
            trigger: seq.trigger.clone(),
            seq: rec.seq,
            ts_usec: rec.ts_usec,
            lines: seq.lines.clone(),
        };
        self.recent = Some((rec.seq, seq));
        Some(kill)
    }
}

/// `python3` + ` invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0`.
fn parse_header(comm: &str, rest: &str) -> OomTrigger {
    let mut t = OomTrigger {
        comm: comm.trim().to_string(),
        pid: None,
        gfp_mask: None,
        order: None,
    };
    for part in rest.split(", ") {
        if let Some(v) = part.split("gfp_mask=").nth(1) {
            t.gfp_mask = Some(v.to_string());
        } else if let Some(v) = part.strip_prefix("order=") {
            t.order = v.parse().ok();
        }
    }
    t
}

/// The word following `key` in `s` (up to the next space).
fn word_after<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let start = s.find(key)? + key.len();
    s[start..].split_whitespace().next()
}

/// `123kB` → bytes.
fn kb(s: &str) -> Option<u64> {
    s.trim()
        .strip_suffix("kB")?
        .parse::<u64>()
        .ok()?
        .checked_mul(1024)
}

/// `65536kB, limit 65536kB, failcnt 286` (after `memory: usage `).
fn parse_memory_line(rest: &str) -> Option<KernelMemory> {
    let mut parts = rest.split(", ");
    let usage_bytes = kb(parts.next()?)?;
    let limit = kb(parts.next()?.strip_prefix("limit ")?)?;
    let failcnt = parts
        .next()?
        .strip_prefix("failcnt ")?
        .trim()
        .parse()
        .ok()?;
    Some(KernelMemory {
        usage_bytes,
        limit_bytes: (limit < UNLIMITED_BYTES).then_some(limit),
        failcnt,
    })
}

/// `constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/probe1,…`.
/// Values may contain commas (`mems_allowed=0-1,3`): a piece without `=` continues the
/// previous value, except the bare `global_oom` flag.
fn parse_oom_kill_line(rest: &str, seq: &mut Sequence) {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut global_flag = false;
    for piece in rest.split(',') {
        if piece == "global_oom" {
            global_flag = true;
        } else if let Some((k, v)) = piece.split_once('=') {
            pairs.push((k.to_string(), v.to_string()));
        } else if let Some((_, v)) = pairs.last_mut() {
            v.push(',');
            v.push_str(piece);
        }
    }
    for (k, v) in pairs {
        match k.as_str() {
            "constraint" => seq.constraint = OomConstraint::from_kernel(&v),
            "oom_memcg" => seq.oom_memcg = Some(v),
            "task_memcg" => seq.task_memcg = Some(v),
            "uid" => seq.task_uid = v.parse().ok(),
            _ => {}
        }
    }
    if global_flag && seq.constraint.is_none() {
        seq.constraint = Some(OomConstraint::Global);
    }
}

struct Victim {
    pid: u32,
    comm: String,
    uid: Option<u32>,
    total_vm_bytes: Option<u64>,
    anon_rss_bytes: Option<u64>,
    file_rss_bytes: Option<u64>,
    shmem_rss_bytes: Option<u64>,
    oom_score_adj: Option<i32>,
}

/// `1693 (python3) total-vm:278712kB, anon-rss:65152kB, file-rss:6496kB, shmem-rss:0kB, UID:0
/// pgtables:188kB oom_score_adj:0` (after `Killed process `). The comm may hold spaces and
/// parentheses, so it ends at the last `) `.
fn parse_killed(rest: &str) -> Option<Victim> {
    let (pid, rest) = rest.split_once(" (")?;
    let pid = pid.trim().parse().ok()?;
    let (comm, tail) = match rest.rfind(") total-vm:") {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => match rest.rfind(')') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        },
    };
    let mut v = Victim {
        pid,
        comm: comm.to_string(),
        uid: None,
        total_vm_bytes: None,
        anon_rss_bytes: None,
        file_rss_bytes: None,
        shmem_rss_bytes: None,
        oom_score_adj: None,
    };
    for token in tail.split([',', ' ']).filter(|t| !t.is_empty()) {
        let Some((k, val)) = token.split_once(':') else {
            continue;
        };
        match k {
            "total-vm" => v.total_vm_bytes = kb(val),
            "anon-rss" => v.anon_rss_bytes = kb(val),
            "file-rss" => v.file_rss_bytes = kb(val),
            "shmem-rss" => v.shmem_rss_bytes = kb(val),
            "UID" => v.uid = val.parse().ok(),
            "oom_score_adj" => v.oom_score_adj = val.parse().ok(),
            _ => {}
        }
    }
    Some(v)
}

/// Appends the memory samples the node source kept of the cgroup whose limit was hit
/// (`oom_memcg`, else the victim's `task_memcg`) to an OOM signal's evidence (kind `sample`,
/// oldest first): the series that led to the kill.
pub fn add_memory_samples(
    signal: &mut daytwo_model::Signal,
    kill: &OomKill,
    history: &crate::node::history::MemoryHistory,
) {
    let path = kill.oom_memcg.as_deref().or_else(|| kill.cgroup_path());
    if let Some(p) = path {
        signal.evidence.extend(history.evidence(p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmsg::fixtures::{GLOBAL_OOM, MEMCG_OOM_V1, MEMCG_OOM_V2, records};

    fn classify(fixture: &str) -> (Vec<OomKill>, OomClassifier) {
        let mut c = OomClassifier::new();
        let kills = records(fixture).iter().filter_map(|r| c.feed(r)).collect();
        (kills, c)
    }

    #[test]
    fn the_victim_cgroups_memory_samples_become_evidence() {
        use crate::node::cgroups::CgroupStats;
        use crate::node::{NodeSnapshot, history::MemoryHistory};
        let (kills, _) = classify(MEMCG_OOM_V1);
        let h = MemoryHistory::new();
        for (t, usage) in [(1, 10 << 20), (2, 40 << 20), (3, 64 << 20)] {
            h.record(&NodeSnapshot {
                time: daytwo_model::Timestamp(t),
                cgroups: vec![CgroupStats {
                    path: "/probe1".into(),
                    memory_usage_bytes: Some(usage),
                    memory_limit_bytes: Some(64 << 20),
                    ..CgroupStats::default()
                }],
                ..NodeSnapshot::default()
            });
        }
        let mut s = crate::kmsg::signal::oom_signal(
            &kills[0],
            None,
            "node-1",
            "boot",
            crate::kmsg::signal::BootClock { boot_unix_nanos: 0 },
            daytwo_model::Timestamp(5),
        );
        let before = s.evidence.len();
        add_memory_samples(&mut s, &kills[0], &h);
        let samples: Vec<&str> = s.evidence[before..]
            .iter()
            .map(|e| e.text.as_str())
            .collect();
        assert_eq!(samples.len(), 6, "{samples:?}");
        assert_eq!(
            samples[4],
            "memory.usage_bytes{cgroup=\"/probe1\"}=67108864"
        );
        assert_eq!(
            samples[5],
            "memory.limit_bytes{cgroup=\"/probe1\"}=67108864"
        );
        assert!(s.evidence[before..].iter().all(|e| e.kind == "sample"));
        // Another cgroup's OOM gets none of them.
        let (global, _) = classify(GLOBAL_OOM);
        let mut g = s.clone();
        g.evidence.clear();
        add_memory_samples(&mut g, &global[0], &h);
        assert!(g.evidence.iter().all(|e| !e.text.contains("/probe1")));
    }

    #[test]
    fn classifies_the_memcg_oom_captured_on_this_machine() {
        let (kills, c) = classify(MEMCG_OOM_V1);
        assert!(c.is_idle());
        assert_eq!(kills.len(), 1);
        let k = &kills[0];
        assert_eq!(k.constraint, OomConstraint::Memcg);
        assert_eq!(k.oom_memcg.as_deref(), Some("/probe1"));
        assert_eq!(k.task_memcg.as_deref(), Some("/probe1"));
        assert_eq!(k.cgroup_path(), Some("/probe1"));
        assert_eq!(k.pid, 1693);
        assert_eq!(k.comm, "python3");
        assert_eq!(k.uid, Some(0));
        assert_eq!(k.total_vm_bytes, Some(278_712 * 1024));
        assert_eq!(k.anon_rss_bytes, Some(65_152 * 1024));
        assert_eq!(k.file_rss_bytes, Some(6_496 * 1024));
        assert_eq!(k.shmem_rss_bytes, Some(0));
        assert_eq!(k.oom_score_adj, Some(0));
        assert_eq!(
            k.kernel_memory,
            Some(KernelMemory {
                usage_bytes: 65_536 * 1024,
                limit_bytes: Some(65_536 * 1024),
                failcnt: 286,
            })
        );
        let t = k.trigger.as_ref().unwrap();
        assert_eq!(t.comm, "python3");
        assert_eq!(t.pid, Some(1693));
        assert_eq!(t.gfp_mask.as_deref(), Some("0xcc0(GFP_KERNEL)"));
        assert_eq!(t.order, Some(0));
        assert_eq!(k.seq, 422);
        assert_eq!(k.ts_usec, 68_249_689);
        let texts: Vec<&str> = k.lines.iter().map(|l| l.message.as_str()).collect();
        assert!(texts[0].contains("invoked oom-killer"), "{texts:?}");
        assert!(texts.iter().any(|l| l.starts_with("memory: usage")));
        assert!(texts.iter().any(|l| l.starts_with("memory+swap: usage")));
        assert!(
            texts
                .iter()
                .any(|l| l.starts_with("Memory cgroup stats for /probe1"))
        );
        assert!(texts.iter().any(|l| l.starts_with("oom-kill:")));
        assert!(texts.last().unwrap().contains("Killed process 1693"));
        assert!(!texts.iter().any(|l| l.contains("Call Trace")));
        assert!(!texts.iter().any(|l| l.starts_with("cache ")));
        assert!(k.lines.len() <= MAX_EVIDENCE_LINES);
    }

    #[test]
    fn classifies_a_cgroup_v2_memcg_oom() {
        let (kills, _) = classify(MEMCG_OOM_V2);
        assert_eq!(kills.len(), 1);
        let k = &kills[0];
        assert_eq!(k.constraint, OomConstraint::Memcg);
        assert_eq!(k.cgroup_path(), Some("/system.slice/hog.service"));
        assert_eq!(k.comm, "hog");
        assert_eq!(k.pid, 9001);
        assert_eq!(
            k.kernel_memory,
            Some(KernelMemory {
                usage_bytes: 102_400 * 1024,
                limit_bytes: Some(102_400 * 1024),
                failcnt: 0,
            })
        );
        assert!(k.lines.iter().any(|l| l.message.starts_with("swap: usage")));
    }

    #[test]
    fn classifies_a_global_oom() {
        let (kills, c) = classify(GLOBAL_OOM);
        assert!(c.is_idle());
        assert_eq!(kills.len(), 1);
        let k = &kills[0];
        assert_eq!(k.constraint, OomConstraint::Global);
        assert_eq!(k.oom_memcg, None);
        assert_eq!(
            k.task_memcg.as_deref(),
            Some("/user.slice/user-1000.slice/session-3.scope")
        );
        assert_eq!(k.pid, 4242);
        assert_eq!(k.comm, "stress");
        assert_eq!(k.uid, Some(1000));
        assert_eq!(k.kernel_memory, None);
        assert_eq!(k.trigger.as_ref().unwrap().comm, "stress");
        assert!(
            k.lines
                .last()
                .unwrap()
                .message
                .starts_with("Out of memory: Killed process 4242")
        );
        assert!(!k.lines.iter().any(|l| l.message.starts_with("[ ")));
    }

    #[test]
    fn is_busy_mid_sequence() {
        let recs = records(MEMCG_OOM_V1);
        let mut c = OomClassifier::new();
        assert!(c.is_idle());
        c.feed(&recs[0]);
        assert!(!c.is_idle());
        for r in &recs[1..recs.len() - 1] {
            assert!(c.feed(r).is_none());
            assert!(!c.is_idle());
        }
        assert!(c.feed(&recs[recs.len() - 1]).is_some());
        assert!(c.is_idle());
    }

    #[test]
    fn a_lone_killed_line_still_yields_an_event() {
        let mut c = OomClassifier::new();
        let rec = crate::kmsg::parse_record(
            b"3,9,10,-;Memory cgroup out of memory: Killed process 77 (my (odd) app) total-vm:100kB, anon-rss:50kB, file-rss:0kB, shmem-rss:0kB, UID:5 pgtables:4kB oom_score_adj:-100",
        )
        .unwrap();
        let k = c.feed(&rec).unwrap();
        assert_eq!(k.constraint, OomConstraint::Memcg);
        assert_eq!(k.comm, "my (odd) app");
        assert_eq!(k.pid, 77);
        assert_eq!(k.uid, Some(5));
        assert_eq!(k.oom_score_adj, Some(-100));
        assert_eq!(k.cgroup_path(), None);
        assert_eq!(k.lines.len(), 1);
    }

    #[test]
    fn unlimited_kernel_limit_is_none() {
        let m = parse_memory_line("100kB, limit 9007199254740988kB, failcnt 0").unwrap();
        assert_eq!(m.limit_bytes, None);
        assert_eq!(m.usage_bytes, 102_400);
    }

    #[test]
    fn oom_kill_line_values_may_hold_commas() {
        let mut s = Sequence::default();
        parse_oom_kill_line(
            "constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0-1,3,global_oom,task_memcg=/a,task=x,y,pid=1,uid=2",
            &mut s,
        );
        assert_eq!(s.constraint, Some(OomConstraint::Global));
        assert_eq!(s.task_memcg.as_deref(), Some("/a"));
        assert_eq!(s.task_uid, Some(2));
    }

    #[test]
    fn group_kills_reuse_the_sequence_context() {
        let mut c = OomClassifier::new();
        let kills: Vec<OomKill> = records(MEMCG_OOM_V1)
            .iter()
            .filter_map(|r| c.feed(r))
            .collect();
        assert_eq!(kills.len(), 1);
        let second = crate::kmsg::parse_record(
            b"3,423,68249700,-;Memory cgroup out of memory: Killed process 1694 (worker) total-vm:1000kB, anon-rss:500kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:8kB oom_score_adj:0",
        )
        .unwrap();
        let k = c.feed(&second).unwrap();
        assert_eq!(k.pid, 1694);
        assert_eq!(k.oom_memcg.as_deref(), Some("/probe1"));
        assert_eq!(k.cgroup_path(), Some("/probe1"));
        assert_eq!(k.kernel_memory.unwrap().failcnt, 286);
        assert_eq!(
            k.lines
                .iter()
                .filter(|l| l.message.contains("Killed process"))
                .count(),
            1
        );
    }

    #[test]
    fn abandoned_sequences_do_not_block_checkpoints() {
        let mut c = OomClassifier::new();
        let recs = records(MEMCG_OOM_V1);
        c.feed(&recs[0]);
        let give_up =
            crate::kmsg::parse_record(b"0,400,1,-;Out of memory and no killable processes...")
                .unwrap();
        c.feed(&give_up);
        assert!(c.is_idle());
    }

    #[test]
    fn the_reaper_line_is_not_a_kill() {
        let mut c = OomClassifier::new();
        let rec = crate::kmsg::parse_record(
            b"6,500,1,-;oom_reaper: reaped process 1693 (python3), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
        )
        .unwrap();
        assert!(c.feed(&rec).is_none());
        assert!(c.is_idle());
    }
}
