//! Recent memory samples per cgroup, kept by the node source for other sources' evidence: an
//! OOM kill carries the victim cgroup's last samples of usage and limit.
//!
//! Entry type: [`MemoryHistory`] (cheap to clone; a mutex inside, held only to copy a few
//! numbers). [`MemoryHistory::record`] takes every node snapshot; [`MemoryHistory::evidence`]
//! gives a cgroup's samples as `sample` evidence.
//!
//! Invariants: at most [`SAMPLES_PER_CGROUP`] samples per cgroup and [`MAX_CGROUPS`] cgroups; a
//! cgroup that vanished is kept for [`KEEP_GONE_SAMPLES`] more snapshots (the kernel may report
//! its OOM kill after it was removed, and kmsg is read a moment after the kill); a cgroup
//! recreated under the same path keeps its samples (its usage simply starts over).

use super::NodeSnapshot;
use daytwo_model::{Evidence, Timestamp};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Samples kept per cgroup (1 minute at a 10 s interval).
pub const SAMPLES_PER_CGROUP: usize = 6;
/// Cgroups kept at most (above `--node-max-cgroups`' default, so vanished ones fit too).
pub const MAX_CGROUPS: usize = 4096;
/// Snapshots a vanished cgroup's samples are kept for.
pub const KEEP_GONE_SAMPLES: u64 = 6;

/// One memory sample of one cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemorySample {
    pub time: Timestamp,
    pub usage_bytes: u64,
    pub working_set_bytes: Option<u64>,
    /// `None`: unlimited.
    pub limit_bytes: Option<u64>,
}

#[derive(Debug, Default)]
struct Series {
    samples: VecDeque<MemorySample>,
    /// The snapshot number that last saw the cgroup.
    seen: u64,
}

#[derive(Debug, Default)]
struct Inner {
    cgroups: HashMap<String, Series>,
    snapshots: u64,
}

/// See the module docs.
#[derive(Clone, Debug, Default)]
pub struct MemoryHistory(Arc<Mutex<Inner>>);

impl MemoryHistory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the memory of every cgroup in `snap` that has a usage value.
    pub fn record(&self, snap: &NodeSnapshot) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.snapshots += 1;
        let now = g.snapshots;
        for c in &snap.cgroups {
            let Some(usage) = c.memory_usage_bytes else {
                continue;
            };
            if !g.cgroups.contains_key(&c.path) && g.cgroups.len() >= MAX_CGROUPS {
                continue;
            }
            let s = g.cgroups.entry(c.path.clone()).or_default();
            s.seen = now;
            if s.samples.len() >= SAMPLES_PER_CGROUP {
                s.samples.pop_front();
            }
            s.samples.push_back(MemorySample {
                time: snap.time,
                usage_bytes: usage,
                working_set_bytes: c.memory_working_set_bytes,
                limit_bytes: c.memory_limit_bytes,
            });
        }
        g.cgroups
            .retain(|_, s| now.saturating_sub(s.seen) <= KEEP_GONE_SAMPLES);
    }

    /// The samples of `path` (`/kubepods/…`), oldest first.
    pub fn samples(&self, path: &str) -> Vec<MemorySample> {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.cgroups
            .get(path)
            .map(|s| s.samples.iter().copied().collect())
            .unwrap_or_default()
    }

    /// `path`'s samples as evidence of kind `sample`, oldest first: per sample
    /// `memory.usage_bytes=N`, then `memory.working_set_bytes=N` and `memory.limit_bytes=N`
    /// where known (an unlimited cgroup has no limit line).
    pub fn evidence(&self, path: &str) -> Vec<Evidence> {
        let mut out = Vec::new();
        for s in self.samples(path) {
            let mut push = |name: &str, v: u64| {
                out.push(Evidence {
                    time: s.time,
                    kind: "sample".into(),
                    text: format!("{name}{{cgroup=\"{path}\"}}={v}"),
                })
            };
            push("memory.usage_bytes", s.usage_bytes);
            if let Some(w) = s.working_set_bytes {
                push("memory.working_set_bytes", w);
            }
            if let Some(l) = s.limit_bytes {
                push("memory.limit_bytes", l);
            }
        }
        out
    }

    /// Cgroups with samples.
    pub fn len(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cgroups
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::cgroups::CgroupStats;

    fn snap(t: i64, cgs: &[(&str, u64, Option<u64>)]) -> NodeSnapshot {
        NodeSnapshot {
            time: Timestamp(t),
            cgroups: cgs
                .iter()
                .map(|(p, u, l)| CgroupStats {
                    path: p.to_string(),
                    memory_usage_bytes: Some(*u),
                    memory_limit_bytes: *l,
                    ..CgroupStats::default()
                })
                .collect(),
            ..NodeSnapshot::default()
        }
    }

    #[test]
    fn keeps_the_last_samples_and_vanished_cgroups_for_a_while() {
        let h = MemoryHistory::new();
        for i in 0..10u64 {
            h.record(&snap(
                i as i64,
                &[("/a", i * 100, Some(1000)), ("/b", 5, None)],
            ));
        }
        let a = h.samples("/a");
        assert_eq!(a.len(), SAMPLES_PER_CGROUP);
        assert_eq!(a.last().unwrap().usage_bytes, 900);
        assert_eq!(a[0].usage_bytes, (10 - SAMPLES_PER_CGROUP as u64) * 100);
        let ev = h.evidence("/a");
        assert_eq!(ev.len(), 2 * SAMPLES_PER_CGROUP);
        assert_eq!(
            ev[ev.len() - 2].text,
            "memory.usage_bytes{cgroup=\"/a\"}=900"
        );
        assert_eq!(
            ev[ev.len() - 1].text,
            "memory.limit_bytes{cgroup=\"/a\"}=1000"
        );
        assert!(ev.iter().all(|e| e.kind == "sample"));
        assert!(h.evidence("/b").iter().all(|e| !e.text.contains("limit")));
        // /a vanishes: still there for KEEP_GONE_SAMPLES snapshots, then forgotten.
        for i in 0..KEEP_GONE_SAMPLES {
            h.record(&snap(100 + i as i64, &[("/b", 5, None)]));
            assert_eq!(h.samples("/a").len(), SAMPLES_PER_CGROUP);
        }
        h.record(&snap(200, &[("/b", 5, None)]));
        assert!(h.samples("/a").is_empty());
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn bounded_in_cgroups() {
        let h = MemoryHistory::new();
        let many: Vec<String> = (0..MAX_CGROUPS + 50).map(|i| format!("/c{i}")).collect();
        let cgs: Vec<(&str, u64, Option<u64>)> =
            many.iter().map(|p| (p.as_str(), 1, None)).collect();
        h.record(&snap(1, &cgs));
        assert_eq!(h.len(), MAX_CGROUPS);
    }
}
