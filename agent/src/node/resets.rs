//! Counters that went backwards between two node samples. Pure.
//!
//! Entry types: [`count`] (two snapshots → [`Resets`]) and [`delta`] (the one way the agent
//! turns two readings of a kernel counter into an increase). A cumulative kernel counter only
//! falls when its owner was replaced: a cgroup removed and created again under the same path
//! (a restarted container, a systemd unit's new run), a NIC driver reloaded, a disk
//! re-attached, or a 32-bit counter wrapping. The agent exposes the kernel's values as they
//! are (Prometheus' `rate()` already treats a drop as a reset) and computes its own rates
//! (the throttling detector's) with [`delta`] semantics: a fall is a restart of the counter,
//! never a negative rate. The falls are counted in `daytwo_agent_node_resets_total`.

use super::NodeSnapshot;
use super::cgroups::CgroupStats;
use super::procfs::{DiskStats, NetDev};
use std::collections::HashMap;

/// How many cgroups, disks and interfaces had a counter go backwards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resets {
    pub cgroup: u64,
    pub disk: u64,
    pub network: u64,
}

impl Resets {
    pub fn add(&mut self, o: Resets) {
        self.cgroup += o.cgroup;
        self.disk += o.disk;
        self.network += o.network;
    }
}

/// The increase of a cumulative counter from `prev` to `cur`: `None` when it fell (a reset:
/// the interval has no valid increase), never negative.
pub fn delta(prev: u64, cur: u64) -> Option<u64> {
    cur.checked_sub(prev)
}

fn fell(pairs: &[(Option<u64>, Option<u64>)]) -> bool {
    pairs
        .iter()
        .any(|(p, c)| matches!((p, c), (Some(p), Some(c)) if delta(*p, *c).is_none()))
}

fn cgroup_fell(p: &CgroupStats, c: &CgroupStats) -> bool {
    let cpu = |s: &CgroupStats| {
        s.cpu.map_or([None; 3], |x| {
            [
                Some(x.nr_periods),
                Some(x.nr_throttled),
                Some(x.throttled_nanos),
            ]
        })
    };
    let (pc, cc) = (cpu(p), cpu(c));
    fell(&[
        (p.cpu_usage_nanos, c.cpu_usage_nanos),
        (p.oom_kills, c.oom_kills),
        (pc[0], cc[0]),
        (pc[1], cc[1]),
        (pc[2], cc[2]),
    ])
}

fn disk_fell(p: &DiskStats, c: &DiskStats) -> bool {
    let v = |d: &DiskStats| {
        [
            d.reads_completed,
            d.sectors_read,
            d.read_time_ms,
            d.writes_completed,
            d.sectors_written,
            d.write_time_ms,
            d.io_time_ms,
        ]
    };
    v(p).iter().zip(v(c)).any(|(a, b)| delta(*a, b).is_none())
}

fn net_fell(p: &NetDev, c: &NetDev) -> bool {
    let v = |d: &NetDev| {
        [
            d.rx_bytes,
            d.rx_packets,
            d.rx_errs,
            d.rx_drop,
            d.tx_bytes,
            d.tx_packets,
            d.tx_errs,
            d.tx_drop,
        ]
    };
    v(p).iter().zip(v(c)).any(|(a, b)| delta(*a, b).is_none())
}

/// Counts the cgroups, disks and interfaces present in both snapshots whose counters fell.
pub fn count(prev: &NodeSnapshot, cur: &NodeSnapshot) -> Resets {
    let mut t = ResetTracker::default();
    t.observe(prev);
    t.observe(cur)
}

/// A vanished cgroup, disk or interface is remembered for this many samples, so one recreated
/// a little later under the same name still counts as a reset.
pub const REMEMBER_GONE_SAMPLES: u64 = 6;

/// The last counters of every cgroup, disk and interface seen, compared with each new sample.
#[derive(Debug, Default)]
pub struct ResetTracker {
    cgroups: HashMap<String, (CgroupStats, u64)>,
    disks: HashMap<String, (DiskStats, u64)>,
    nets: HashMap<String, (NetDev, u64)>,
    samples: u64,
}

fn track<T: Clone>(
    map: &mut HashMap<String, (T, u64)>,
    now: u64,
    items: &[T],
    key: impl Fn(&T) -> &str,
    fell: impl Fn(&T, &T) -> bool,
) -> u64 {
    let mut n = 0;
    for it in items {
        let k = key(it);
        match map.get_mut(k) {
            Some((prev, seen)) => {
                if fell(prev, it) {
                    n += 1;
                }
                *prev = it.clone();
                *seen = now;
            }
            None => {
                map.insert(k.to_string(), (it.clone(), now));
            }
        }
    }
    map.retain(|_, (_, seen)| now.saturating_sub(*seen) <= REMEMBER_GONE_SAMPLES);
    n
}

impl ResetTracker {
    /// Compares `snap` with what was last seen of each of its cgroups, disks and interfaces
    /// (within [`REMEMBER_GONE_SAMPLES`]), and remembers it.
    pub fn observe(&mut self, snap: &NodeSnapshot) -> Resets {
        self.samples += 1;
        let now = self.samples;
        Resets {
            cgroup: track(
                &mut self.cgroups,
                now,
                &snap.cgroups,
                |c| c.path.as_str(),
                cgroup_fell,
            ),
            disk: track(
                &mut self.disks,
                now,
                &snap.host.disks,
                |d| d.device.as_str(),
                disk_fell,
            ),
            network: track(
                &mut self.nets,
                now,
                &snap.host.interfaces,
                |d| d.device.as_str(),
                net_fell,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::cgroups::CpuStat;
    use proptest::prelude::*;

    fn cg(path: &str, cpu: u64, periods: u64) -> CgroupStats {
        CgroupStats {
            path: path.into(),
            cpu_usage_nanos: Some(cpu),
            cpu: Some(CpuStat {
                nr_periods: periods,
                nr_throttled: periods / 2,
                throttled_nanos: periods * 10,
            }),
            oom_kills: Some(0),
            ..CgroupStats::default()
        }
    }

    fn net(dev: &str, rx: u64) -> NetDev {
        NetDev {
            device: dev.into(),
            rx_bytes: rx,
            ..NetDev::default()
        }
    }

    #[test]
    fn a_recreated_cgroup_and_a_reloaded_nic_are_resets() {
        let a = NodeSnapshot {
            cgroups: vec![cg("/app", 5_000, 100), cg("/steady", 10, 1)],
            host: crate::node::procfs::HostCounters {
                interfaces: vec![net("eth0", 1 << 40), net("eth1", 5)],
                disks: vec![DiskStats {
                    device: "sda".into(),
                    reads_completed: 10,
                    ..DiskStats::default()
                }],
                ..Default::default()
            },
            ..NodeSnapshot::default()
        };
        let mut b = a.clone();
        // /app recreated under the same path: its counters start over.
        b.cgroups[0] = cg("/app", 20, 0);
        b.cgroups[1] = cg("/steady", 11, 1);
        b.cgroups.push(cg("/new", 0, 0));
        b.host.interfaces[0].rx_bytes = 100;
        b.host.interfaces[1].rx_bytes = 6;
        b.host.disks[0].reads_completed = 11;
        assert_eq!(
            count(&a, &b),
            Resets {
                cgroup: 1,
                disk: 0,
                network: 1
            }
        );
        assert_eq!(count(&b, &b), Resets::default());
        // A counter that became unreadable is no reset.
        let mut c = b.clone();
        c.cgroups[0].cpu_usage_nanos = None;
        assert_eq!(count(&b, &c).cgroup, 0);
    }

    #[test]
    fn a_cgroup_gone_for_a_sample_and_back_with_lower_counters_is_a_reset() {
        let mut t = ResetTracker::default();
        let with = |cpu| NodeSnapshot {
            cgroups: vec![cg("/app", cpu, 0)],
            ..NodeSnapshot::default()
        };
        assert_eq!(t.observe(&with(5_000)), Resets::default());
        assert_eq!(t.observe(&NodeSnapshot::default()), Resets::default());
        assert_eq!(t.observe(&with(10)).cgroup, 1);
        // Gone for longer than remembered: a new cgroup, not a reset.
        for _ in 0..=REMEMBER_GONE_SAMPLES {
            t.observe(&NodeSnapshot::default());
        }
        assert_eq!(t.observe(&with(1)).cgroup, 0);
    }

    proptest! {
        /// `delta` is never negative and is the difference whenever the counter did not fall.
        #[test]
        fn delta_is_never_negative(a in any::<u64>(), b in any::<u64>()) {
            match delta(a, b) {
                Some(d) => prop_assert_eq!(a + d, b),
                None => prop_assert!(b < a),
            }
        }

        /// Any sequence of readings: the resets counted are exactly the falls.
        #[test]
        fn resets_count_every_fall(readings in proptest::collection::vec(any::<u32>(), 2..40)) {
            let snaps: Vec<NodeSnapshot> = readings
                .iter()
                .map(|r| NodeSnapshot {
                    cgroups: vec![cg("/x", *r as u64, 0)],
                    host: crate::node::procfs::HostCounters {
                        interfaces: vec![net("eth0", *r as u64)],
                        ..Default::default()
                    },
                    ..NodeSnapshot::default()
                })
                .collect();
            let mut total = Resets::default();
            let mut t = ResetTracker::default();
            for s in &snaps {
                total.add(t.observe(s));
            }
            let falls = readings.windows(2).filter(|w| w[1] < w[0]).count() as u64;
            prop_assert_eq!(total.cgroup, falls);
            prop_assert_eq!(total.network, falls);
            prop_assert_eq!(total.disk, 0);
        }
    }
}
