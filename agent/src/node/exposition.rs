//! Every node, container and agent-process metric the agent exposes on `/metrics`, defined in
//! one place and built from the latest [`NodeSnapshot`] at scrape time.
//!
//! Entry type: [`NodeCollector`], a `prometheus::core::Collector` registered into the agent's
//! registry. Kernel counters are exposed as Prometheus counters holding the kernel's value (as
//! node_exporter and cAdvisor do), so nothing is accumulated here and a cgroup or mount that
//! vanished is simply absent from the next scrape.
//!
//! Naming: `daytwo_node_*` for the host, `daytwo_container_*` for cgroups (labels `cgroup`, the
//! path; `pod_uid` and `container_id` when the path is a Kubernetes pod's, else empty), and the
//! standard `process_*` names for the agent's own health. Units are in the names (`_bytes`,
//! `_seconds`, `_total` for counters). Every family is listed in [`FAMILIES`] and documented in
//! docs/node.md.

use super::{Latest, NodeSnapshot, procfs};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use std::collections::{BTreeMap, HashMap};

/// One metric family: its name, help, type and label names.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub counter: bool,
    pub labels: &'static [&'static str],
}

const FS: &[&str] = &["device", "mountpoint", "fstype"];
const DEV: &[&str] = &["device"];
const CG: &[&str] = &["cgroup", "pod_uid", "container_id"];
const NONE: &[&str] = &[];
const SOURCE: &[&str] = &["source"];

macro_rules! families {
    ($($id:ident: $name:literal, $kind:ident, $labels:expr, $help:literal;)*) => {
        $(pub const $id: Family = Family {
            name: $name,
            help: $help,
            counter: families!(@kind $kind),
            labels: $labels,
        };)*
        /// Every family this collector may expose.
        pub const FAMILIES: &[&Family] = &[$(&$id),*];
    };
    (@kind counter) => { true };
    (@kind gauge) => { false };
}

families! {
    FS_SIZE: "daytwo_node_filesystem_size_bytes", gauge, FS, "Filesystem size.";
    FS_FREE: "daytwo_node_filesystem_free_bytes", gauge, FS, "Free space, including blocks reserved for root.";
    FS_AVAIL: "daytwo_node_filesystem_avail_bytes", gauge, FS, "Space available to unprivileged users (df Avail).";
    FS_FILES: "daytwo_node_filesystem_files", gauge, FS, "Inodes in total.";
    FS_FILES_FREE: "daytwo_node_filesystem_files_free", gauge, FS, "Free inodes.";
    FS_READONLY: "daytwo_node_filesystem_readonly", gauge, FS, "1 when the filesystem is mounted read-only.";
    FS_UNRESPONSIVE: "daytwo_node_filesystem_unresponsive", gauge, FS, "1 while statvfs on the mount has not returned within the mount timeout (a hung NFS or FUSE server); its space series are absent meanwhile.";
    DISK_READS: "daytwo_node_disk_reads_completed_total", counter, DEV, "Reads completed.";
    DISK_READ_BYTES: "daytwo_node_disk_read_bytes_total", counter, DEV, "Bytes read.";
    DISK_READ_TIME: "daytwo_node_disk_read_time_seconds_total", counter, DEV, "Time spent reading.";
    DISK_WRITES: "daytwo_node_disk_writes_completed_total", counter, DEV, "Writes completed.";
    DISK_WRITTEN_BYTES: "daytwo_node_disk_written_bytes_total", counter, DEV, "Bytes written.";
    DISK_WRITE_TIME: "daytwo_node_disk_write_time_seconds_total", counter, DEV, "Time spent writing.";
    DISK_IO_NOW: "daytwo_node_disk_io_now", gauge, DEV, "I/Os in progress.";
    DISK_IO_TIME: "daytwo_node_disk_io_time_seconds_total", counter, DEV, "Time the device was busy with I/O.";
    NET_RX_BYTES: "daytwo_node_network_receive_bytes_total", counter, DEV, "Bytes received.";
    NET_RX_PACKETS: "daytwo_node_network_receive_packets_total", counter, DEV, "Packets received.";
    NET_RX_ERRS: "daytwo_node_network_receive_errs_total", counter, DEV, "Receive errors.";
    NET_RX_DROP: "daytwo_node_network_receive_drop_total", counter, DEV, "Received packets dropped.";
    NET_TX_BYTES: "daytwo_node_network_transmit_bytes_total", counter, DEV, "Bytes transmitted.";
    NET_TX_PACKETS: "daytwo_node_network_transmit_packets_total", counter, DEV, "Packets transmitted.";
    NET_TX_ERRS: "daytwo_node_network_transmit_errs_total", counter, DEV, "Transmit errors.";
    NET_TX_DROP: "daytwo_node_network_transmit_drop_total", counter, DEV, "Transmitted packets dropped.";
    FILEFD_ALLOCATED: "daytwo_node_filefd_allocated", gauge, NONE, "Allocated file handles (file-nr).";
    FILEFD_MAX: "daytwo_node_filefd_maximum", gauge, NONE, "Maximum file handles (fs.file-max).";
    CONNTRACK: "daytwo_node_nf_conntrack_entries", gauge, NONE, "Connection tracking entries in use.";
    CONNTRACK_MAX: "daytwo_node_nf_conntrack_entries_limit", gauge, NONE, "Connection tracking table size (nf_conntrack_max).";
    PSI_CPU_WAIT: "daytwo_node_pressure_cpu_waiting_seconds_total", counter, NONE, "Time some tasks waited for CPU (PSI some).";
    PSI_MEM_WAIT: "daytwo_node_pressure_memory_waiting_seconds_total", counter, NONE, "Time some tasks waited for memory (PSI some).";
    PSI_MEM_STALL: "daytwo_node_pressure_memory_stalled_seconds_total", counter, NONE, "Time all non-idle tasks stalled on memory (PSI full).";
    PSI_IO_WAIT: "daytwo_node_pressure_io_waiting_seconds_total", counter, NONE, "Time some tasks waited for I/O (PSI some).";
    PSI_IO_STALL: "daytwo_node_pressure_io_stalled_seconds_total", counter, NONE, "Time all non-idle tasks stalled on I/O (PSI full).";
    CG_CPU: "daytwo_container_cpu_usage_seconds_total", counter, CG, "CPU time used by the cgroup.";
    CG_PERIODS: "daytwo_container_cpu_periods_total", counter, CG, "CFS enforcement periods that elapsed with the cgroup runnable.";
    CG_THROTTLED: "daytwo_container_cpu_throttled_periods_total", counter, CG, "CFS periods in which the cgroup was throttled by its CPU quota.";
    CG_THROTTLED_SECS: "daytwo_container_cpu_throttled_seconds_total", counter, CG, "Time the cgroup was throttled by its CPU quota.";
    CG_CPU_LIMIT: "daytwo_container_cpu_limit_cores", gauge, CG, "CPU quota in cores (quota / period); absent when unlimited.";
    CG_MEM: "daytwo_container_memory_usage_bytes", gauge, CG, "Memory charged to the cgroup, page cache included.";
    CG_WS: "daytwo_container_memory_working_set_bytes", gauge, CG, "Memory usage minus inactive file cache (what the kubelet evicts on).";
    CG_MEM_LIMIT: "daytwo_container_memory_limit_bytes", gauge, CG, "Memory limit; absent when unlimited.";
    CG_OOM: "daytwo_container_memory_oom_kills_total", counter, CG, "Processes the kernel OOM-killed in the cgroup.";
    CG_PIDS: "daytwo_container_pids", gauge, CG, "Tasks in the cgroup.";
    CG_PIDS_MAX: "daytwo_container_pids_limit", gauge, CG, "Task limit (pids.max); absent when unlimited.";
    CG_PSI_CPU_WAIT: "daytwo_container_pressure_cpu_waiting_seconds_total", counter, CG, "Time some tasks of the cgroup waited for CPU (PSI some).";
    CG_PSI_MEM_WAIT: "daytwo_container_pressure_memory_waiting_seconds_total", counter, CG, "Time some tasks of the cgroup waited for memory (PSI some).";
    CG_PSI_MEM_STALL: "daytwo_container_pressure_memory_stalled_seconds_total", counter, CG, "Time all tasks of the cgroup stalled on memory (PSI full).";
    CG_PSI_IO_WAIT: "daytwo_container_pressure_io_waiting_seconds_total", counter, CG, "Time some tasks of the cgroup waited for I/O (PSI some).";
    CG_PSI_IO_STALL: "daytwo_container_pressure_io_stalled_seconds_total", counter, CG, "Time all tasks of the cgroup stalled on I/O (PSI full).";
    NODE_RESETS: "daytwo_agent_node_resets_total", counter, SOURCE, "Cgroups, disks and interfaces whose kernel counters went backwards between two samples (recreated or reloaded); never a negative rate.";
    NODE_READ_ERRORS: "daytwo_agent_node_read_errors_total", counter, NONE, "Kernel files (procfs, cgroup) that existed but could not be read or were not text; the value is left out of that sample.";
    NODE_MOUNT_TIMEOUTS: "daytwo_agent_node_mount_timeouts_total", counter, NONE, "statvfs calls that did not return within the mount timeout (each hang counts once).";
    PROC_CPU: "process_cpu_seconds_total", counter, NONE, "Total user and system CPU time spent in seconds.";
    PROC_RSS: "process_resident_memory_bytes", gauge, NONE, "Resident memory size in bytes.";
    PROC_VSZ: "process_virtual_memory_bytes", gauge, NONE, "Virtual memory size in bytes.";
    PROC_FDS: "process_open_fds", gauge, NONE, "Number of open file descriptors.";
    PROC_MAX_FDS: "process_max_fds", gauge, NONE, "Maximum number of open file descriptors.";
    PROC_THREADS: "process_threads", gauge, NONE, "Number of OS threads in the process.";
    PROC_START: "process_start_time_seconds", gauge, NONE, "Start time of the process since unix epoch in seconds.";
}

/// Collects families by name while a scrape is being built.
#[derive(Default)]
struct Out {
    by_name: BTreeMap<&'static str, (&'static Family, Vec<Metric>)>,
}

impl Out {
    fn put(&mut self, f: &'static Family, labels: &[&str], value: f64) {
        debug_assert_eq!(labels.len(), f.labels.len(), "{}", f.name);
        let pairs = f
            .labels
            .iter()
            .zip(labels)
            .map(|(n, v)| {
                let mut p = LabelPair::default();
                p.set_name((*n).to_string());
                p.set_value((*v).to_string());
                p
            })
            .collect();
        let mut m = Metric::default();
        m.set_label(pairs);
        if f.counter {
            let mut c = Counter::default();
            c.set_value(value);
            m.set_counter(c);
        } else {
            let mut g = Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        }
        self.by_name
            .entry(f.name)
            .or_insert((f, Vec::new()))
            .1
            .push(m);
    }

    fn opt(&mut self, f: &'static Family, labels: &[&str], value: Option<f64>) {
        if let Some(v) = value {
            self.put(f, labels, v);
        }
    }

    fn finish(self) -> Vec<MetricFamily> {
        self.by_name
            .into_values()
            .map(|(f, metrics)| {
                let mut mf = MetricFamily::default();
                mf.set_name(f.name.to_string());
                mf.set_help(f.help.to_string());
                mf.set_field_type(if f.counter {
                    MetricType::COUNTER
                } else {
                    MetricType::GAUGE
                });
                mf.set_metric(metrics);
                mf
            })
            .collect()
    }
}

fn usec(v: u64) -> f64 {
    v as f64 / 1e6
}

/// Builds every family from one snapshot and the agent's own health (pure).
pub fn families(snap: Option<&NodeSnapshot>, me: Option<&procfs::SelfHealth>) -> Vec<MetricFamily> {
    let mut o = Out::default();
    if let Some(s) = snap {
        for f in &s.filesystems {
            let l = [
                f.mount.device.as_str(),
                f.mount.mountpoint.as_str(),
                f.mount.fs_type.as_str(),
            ];
            o.put(&FS_SIZE, &l, f.size_bytes as f64);
            o.put(&FS_FREE, &l, f.free_bytes as f64);
            o.put(&FS_AVAIL, &l, f.avail_bytes as f64);
            o.put(&FS_FILES, &l, f.files as f64);
            o.put(&FS_FILES_FREE, &l, f.files_free as f64);
            o.put(&FS_READONLY, &l, if f.mount.read_only { 1.0 } else { 0.0 });
        }
        for m in &s.filesystems_unresponsive {
            let l = [m.device.as_str(), m.mountpoint.as_str(), m.fs_type.as_str()];
            o.put(&FS_UNRESPONSIVE, &l, 1.0);
        }
        for d in &s.host.disks {
            let l = [d.device.as_str()];
            o.put(&DISK_READS, &l, d.reads_completed as f64);
            o.put(&DISK_READ_BYTES, &l, d.sectors_read as f64 * 512.0);
            o.put(&DISK_READ_TIME, &l, d.read_time_ms as f64 / 1e3);
            o.put(&DISK_WRITES, &l, d.writes_completed as f64);
            o.put(&DISK_WRITTEN_BYTES, &l, d.sectors_written as f64 * 512.0);
            o.put(&DISK_WRITE_TIME, &l, d.write_time_ms as f64 / 1e3);
            o.put(&DISK_IO_NOW, &l, d.io_in_progress as f64);
            o.put(&DISK_IO_TIME, &l, d.io_time_ms as f64 / 1e3);
        }
        for n in &s.host.interfaces {
            let l = [n.device.as_str()];
            o.put(&NET_RX_BYTES, &l, n.rx_bytes as f64);
            o.put(&NET_RX_PACKETS, &l, n.rx_packets as f64);
            o.put(&NET_RX_ERRS, &l, n.rx_errs as f64);
            o.put(&NET_RX_DROP, &l, n.rx_drop as f64);
            o.put(&NET_TX_BYTES, &l, n.tx_bytes as f64);
            o.put(&NET_TX_PACKETS, &l, n.tx_packets as f64);
            o.put(&NET_TX_ERRS, &l, n.tx_errs as f64);
            o.put(&NET_TX_DROP, &l, n.tx_drop as f64);
        }
        if let Some((alloc, max)) = s.host.file_handles {
            o.put(&FILEFD_ALLOCATED, &[], alloc as f64);
            o.put(&FILEFD_MAX, &[], max as f64);
        }
        if let Some((count, max)) = s.host.conntrack {
            o.put(&CONNTRACK, &[], count as f64);
            o.put(&CONNTRACK_MAX, &[], max as f64);
        }
        let p = &s.host.pressure;
        o.opt(&PSI_CPU_WAIT, &[], p.cpu.map(|x| usec(x.some.total_usec)));
        o.opt(
            &PSI_MEM_WAIT,
            &[],
            p.memory.map(|x| usec(x.some.total_usec)),
        );
        o.opt(
            &PSI_MEM_STALL,
            &[],
            p.memory.and_then(|x| x.full).map(|f| usec(f.total_usec)),
        );
        o.opt(&PSI_IO_WAIT, &[], p.io.map(|x| usec(x.some.total_usec)));
        o.opt(
            &PSI_IO_STALL,
            &[],
            p.io.and_then(|x| x.full).map(|f| usec(f.total_usec)),
        );
        for c in &s.cgroups {
            let (pod, ctr) = c
                .kube
                .as_ref()
                .map(|k| {
                    (
                        k.pod_uid.as_deref().unwrap_or(""),
                        k.container_id.as_deref().unwrap_or(""),
                    )
                })
                .unwrap_or(("", ""));
            let l = [c.path.as_str(), pod, ctr];
            o.opt(&CG_CPU, &l, c.cpu_usage_nanos.map(|n| n as f64 / 1e9));
            if let Some(cpu) = c.cpu {
                o.put(&CG_PERIODS, &l, cpu.nr_periods as f64);
                o.put(&CG_THROTTLED, &l, cpu.nr_throttled as f64);
                o.put(&CG_THROTTLED_SECS, &l, cpu.throttled_nanos as f64 / 1e9);
            }
            o.opt(&CG_CPU_LIMIT, &l, c.cpu_limit_cores);
            o.opt(&CG_MEM, &l, c.memory_usage_bytes.map(|v| v as f64));
            o.opt(&CG_WS, &l, c.memory_working_set_bytes.map(|v| v as f64));
            o.opt(&CG_MEM_LIMIT, &l, c.memory_limit_bytes.map(|v| v as f64));
            o.opt(&CG_OOM, &l, c.oom_kills.map(|v| v as f64));
            o.opt(&CG_PIDS, &l, c.pids_current.map(|v| v as f64));
            o.opt(&CG_PIDS_MAX, &l, c.pids_max.map(|v| v as f64));
            let p = &c.pressure;
            o.opt(&CG_PSI_CPU_WAIT, &l, p.cpu.map(|x| usec(x.some.total_usec)));
            o.opt(
                &CG_PSI_MEM_WAIT,
                &l,
                p.memory.map(|x| usec(x.some.total_usec)),
            );
            o.opt(
                &CG_PSI_MEM_STALL,
                &l,
                p.memory.and_then(|x| x.full).map(|f| usec(f.total_usec)),
            );
            o.opt(&CG_PSI_IO_WAIT, &l, p.io.map(|x| usec(x.some.total_usec)));
            o.opt(
                &CG_PSI_IO_STALL,
                &l,
                p.io.and_then(|x| x.full).map(|f| usec(f.total_usec)),
            );
        }
    }
    if let Some(s) = snap {
        let r = s.counter_resets;
        o.put(&NODE_RESETS, &["cgroup"], r.cgroup as f64);
        o.put(&NODE_RESETS, &["disk"], r.disk as f64);
        o.put(&NODE_RESETS, &["network"], r.network as f64);
        o.put(&NODE_READ_ERRORS, &[], s.read_errors as f64);
        o.put(&NODE_MOUNT_TIMEOUTS, &[], s.mount_timeouts as f64);
    }
    if let Some(me) = me {
        o.put(&PROC_CPU, &[], me.cpu_seconds);
        o.put(&PROC_RSS, &[], me.resident_bytes as f64);
        o.put(&PROC_VSZ, &[], me.virtual_bytes as f64);
        o.put(&PROC_FDS, &[], me.open_fds as f64);
        o.opt(&PROC_MAX_FDS, &[], me.max_fds.map(|v| v as f64));
        o.put(&PROC_THREADS, &[], me.threads as f64);
        o.opt(&PROC_START, &[], me.start_time_seconds);
    }
    o.finish()
}

/// The scrape-time collector over the node source's latest snapshot.
pub struct NodeCollector {
    latest: Latest,
    descs: Vec<Desc>,
}

impl std::fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCollector").finish_non_exhaustive()
    }
}

impl NodeCollector {
    pub fn new(latest: Latest) -> Result<Self, prometheus::Error> {
        let descs = FAMILIES
            .iter()
            .map(|f| {
                Desc::new(
                    f.name.to_string(),
                    f.help.to_string(),
                    f.labels.iter().map(|l| (*l).to_string()).collect(),
                    HashMap::new(),
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(NodeCollector { latest, descs })
    }
}

impl Collector for NodeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Clone the Arc and release the lock before building: a scrape never blocks sampling.
        let snap = self
            .latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let me = procfs::read_self();
        families(snap.as_deref(), me.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::cgroups::{CgroupStats, CpuStat, KubeIds};
    use crate::node::fs::{Filesystem, Mount};
    use crate::node::procfs::{HostCounters, NetDev, Psi, PsiLine};
    use prometheus::Encoder;
    use std::sync::{Arc, RwLock};

    fn snapshot(with_pod: bool) -> NodeSnapshot {
        let mut cgroups = vec![CgroupStats {
            path: "/app".into(),
            cpu_usage_nanos: Some(1_500_000_000),
            cpu: Some(CpuStat {
                nr_periods: 10,
                nr_throttled: 9,
                throttled_nanos: 500_000_000,
            }),
            cpu_limit_cores: Some(0.1),
            memory_usage_bytes: Some(100),
            memory_working_set_bytes: Some(80),
            ..CgroupStats::default()
        }];
        if with_pod {
            cgroups.push(CgroupStats {
                path: "/kubepods/burstable/podU/abc".into(),
                kube: Some(KubeIds {
                    qos: "burstable",
                    pod_uid: Some("U".into()),
                    container_id: Some("abc".into()),
                    runtime: None,
                }),
                pids_current: Some(3),
                ..CgroupStats::default()
            });
        }
        NodeSnapshot {
            filesystems: vec![Filesystem {
                mount: Mount {
                    device: "/dev/vda".into(),
                    mountpoint: "/".into(),
                    fs_type: "ext4".into(),
                    read_only: false,
                },
                size_bytes: 1000,
                free_bytes: 300,
                avail_bytes: 250,
                files: 10,
                files_free: 4,
            }],
            filesystems_unresponsive: vec![Mount {
                device: "nfs1:/export".into(),
                mountpoint: "/mnt/nfs".into(),
                fs_type: "nfs4".into(),
                read_only: false,
            }],
            mount_timeouts: 1,
            host: HostCounters {
                interfaces: vec![NetDev {
                    device: "eth0".into(),
                    rx_bytes: 5,
                    ..NetDev::default()
                }],
                file_handles: Some((100, 1000)),
                pressure: crate::node::procfs::Pressure {
                    memory: Some(Psi {
                        some: PsiLine {
                            total_usec: 2_000_000,
                            ..PsiLine::default()
                        },
                        full: None,
                    }),
                    ..Default::default()
                },
                ..HostCounters::default()
            },
            cgroups,
            ..NodeSnapshot::default()
        }
    }

    fn text(c: &NodeCollector) -> String {
        let r = prometheus::Registry::new();
        let latest = c.latest.clone();
        r.register(Box::new(NodeCollector::new(latest).unwrap()))
            .unwrap();
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&r.gather(), &mut buf)
            .unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn exposes_snapshot_and_drops_vanished_series() {
        let latest: Latest = Arc::new(RwLock::new(Some(Arc::new(snapshot(true)))));
        let c = NodeCollector::new(latest.clone()).unwrap();
        let t = text(&c);
        for want in [
            "daytwo_node_filesystem_avail_bytes{device=\"/dev/vda\",mountpoint=\"/\",fstype=\"ext4\"} 250",
            "daytwo_node_filesystem_files_free{device=\"/dev/vda\",mountpoint=\"/\",fstype=\"ext4\"} 4",
            "daytwo_node_filesystem_unresponsive{device=\"nfs1:/export\",mountpoint=\"/mnt/nfs\",fstype=\"nfs4\"} 1",
            "daytwo_agent_node_mount_timeouts_total 1",
            "daytwo_node_network_receive_bytes_total{device=\"eth0\"} 5",
            "daytwo_node_filefd_maximum 1000",
            "daytwo_node_pressure_memory_waiting_seconds_total 2",
            "# TYPE daytwo_container_cpu_throttled_periods_total counter",
            "daytwo_container_cpu_throttled_periods_total{cgroup=\"/app\",pod_uid=\"\",container_id=\"\"} 9",
            "daytwo_container_cpu_usage_seconds_total{cgroup=\"/app\",pod_uid=\"\",container_id=\"\"} 1.5",
            "daytwo_container_cpu_limit_cores{cgroup=\"/app\",pod_uid=\"\",container_id=\"\"} 0.1",
            "daytwo_container_pids{cgroup=\"/kubepods/burstable/podU/abc\",pod_uid=\"U\",container_id=\"abc\"} 3",
            "# TYPE process_resident_memory_bytes gauge",
            "process_open_fds ",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
        // Absent values are absent series, not zeros.
        assert!(!t.contains("daytwo_container_memory_limit_bytes"), "{t}");
        assert!(!t.contains("daytwo_node_nf_conntrack_entries"), "{t}");
        *latest.write().unwrap() = Some(Arc::new(snapshot(false)));
        let t = text(&c);
        assert!(!t.contains("podU"), "vanished cgroup still exposed:\n{t}");
    }

    #[test]
    fn every_family_is_valid_and_unique() {
        let c = NodeCollector::new(Arc::new(RwLock::new(None))).unwrap();
        assert_eq!(c.desc().len(), FAMILIES.len());
        let r = prometheus::Registry::new();
        r.register(Box::new(c)).unwrap();
        for f in FAMILIES {
            assert_eq!(f.counter, f.name.ends_with("_total"), "{}", f.name);
        }
    }
}
