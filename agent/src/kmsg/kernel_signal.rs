//! Turns a [`Burst`] of kernel lines into its signal (`daytwo.kernel.io_error`, …).
//!
//! Entry point: [`kernel_signal`]. Pure: the boot clock and the mount point (looked up by the
//! reader) are passed in.
//!
//! Invariants: the signal id is `stable_id(["kmsg", boot_id, first_seq])` of the burst's first
//! record, like the OOM signal's; every attribute emitted is listed in [`ATTRIBUTES`] and
//! documented in docs/signals.md; `daytwo.kernel.event_count` is on every signal.

use super::burst::Burst;
use super::kernel::KernelEvent;
use super::signal::BootClock;
use daytwo_model::{Attributes, Entity, EntityKind, Evidence, Signal, stable_id};

/// Every attribute key a kernel-event signal (other than OOM) may carry.
pub const ATTRIBUTES: &[&str] = &[
    // All events.
    "daytwo.kernel.event_count",
    "daytwo.kernel.burst_secs",
    // I/O errors and filesystems.
    "system.device",
    "mount.point",
    "daytwo.io.error",
    "daytwo.io.operation",
    "daytwo.io.sector",
    "daytwo.io.logical_block",
    "daytwo.fs.type",
    "daytwo.fs.function",
    "daytwo.fs.detail",
    "daytwo.fs.action",
    // Processes (hung task, soft lockup, segfault).
    "process.pid",
    "process.executable.name",
    "daytwo.kernel.blocked_secs",
    "daytwo.kernel.cpu",
    "daytwo.kernel.stuck_secs",
    "daytwo.segfault.kind",
    "daytwo.segfault.address",
    "daytwo.segfault.ip",
    "daytwo.segfault.error_code",
    "daytwo.segfault.object",
    // Links.
    "network.interface.name",
    "daytwo.link.driver",
    "daytwo.link.speed_mbps",
    "daytwo.link.duplex",
    // Hardware.
    "daytwo.hardware.source",
    "daytwo.hardware.corrected",
    "daytwo.hardware.error_count",
    "daytwo.hardware.controller",
    "daytwo.hardware.location",
    "daytwo.mce.bank",
    "daytwo.mce.status",
];

/// Builds the signal of one burst. `mount_point` is where the burst's device is mounted, when
/// the event is about a filesystem and the reader found it.
pub fn kernel_signal(
    burst: &Burst,
    host_name: &str,
    boot_id: &str,
    clock: BootClock,
    mount_point: Option<&str>,
) -> Signal {
    let mut a = Attributes::new();
    let mut put = |k: &str, v: serde_json::Value| {
        a.insert(k.to_string(), v);
    };
    put("daytwo.kernel.event_count", burst.lines_seen.into());
    let burst_secs = (burst.last_ts_usec - burst.first_ts_usec) as f64 / 1e6;
    put("daytwo.kernel.burst_secs", burst_secs.into());
    let host = || Entity::new(EntityKind::Host, host_name).with_attr("host.name", host_name);
    let process = |comm: &str, pid: u32| {
        Entity::new(EntityKind::Process, format!("{comm} ({pid})"))
            .with_attr("host.name", host_name)
            .with_attr("process.pid", pid)
            .with_attr("process.executable.name", comm)
    };
    let filesystem = |device: &str| {
        let mut e = Entity::new(EntityKind::Filesystem, mount_point.unwrap_or(device))
            .with_attr("host.name", host_name)
            .with_attr("system.device", device);
        if let Some(m) = mount_point {
            e = e.with_attr("mount.point", m);
        }
        e
    };
    let n = burst.lines_seen;
    let times = if n > 1 {
        format!(" ({n} times in {burst_secs:.0} s)")
    } else {
        String::new()
    };
    let on_fs = |device: &str| match mount_point {
        Some(m) => format!("{m} ({device})"),
        None => device.to_string(),
    };

    let (entity, message) = match &burst.event {
        KernelEvent::IoError {
            device,
            error,
            sector,
            operation,
            logical_block,
        } => {
            put("system.device", device.as_str().into());
            put("daytwo.io.error", error.as_str().into());
            if let Some(op) = operation {
                put("daytwo.io.operation", op.as_str().into());
            }
            if let Some(s) = sector {
                put("daytwo.io.sector", (*s).into());
            }
            if let Some(b) = logical_block {
                put("daytwo.io.logical_block", (*b).into());
            }
            let op = operation
                .as_deref()
                .map(|o| format!(" on {}", o.to_ascii_lowercase()))
                .unwrap_or_default();
            let at = sector
                .map(|s| format!(" at sector {s}"))
                .unwrap_or_default();
            (
                Entity::new(EntityKind::Volume, device)
                    .with_attr("host.name", host_name)
                    .with_attr("system.device", device.as_str()),
                format!("Disk {device} had {}{op}{at}{times}.", article_error(error)),
            )
        }
        KernelEvent::FsError {
            fs_type,
            device,
            function,
            detail,
        } => {
            put("system.device", device.as_str().into());
            put("daytwo.fs.type", fs_type.as_str().into());
            put("daytwo.fs.detail", detail.as_str().into());
            if let Some(f) = function {
                put("daytwo.fs.function", f.as_str().into());
            }
            if let Some(m) = mount_point {
                put("mount.point", m.into());
            }
            (
                filesystem(device),
                format!(
                    "Filesystem {} ({fs_type}) reported an error{times}: {detail}.",
                    on_fs(device)
                ),
            )
        }
        KernelEvent::FsReadOnly {
            fs_type,
            device,
            action,
            detail,
        } => {
            put("system.device", device.as_str().into());
            put("daytwo.fs.type", fs_type.as_str().into());
            put("daytwo.fs.action", (*action).into());
            put("daytwo.fs.detail", detail.as_str().into());
            if let Some(m) = mount_point {
                put("mount.point", m.into());
            }
            let what = if *action == "shutdown" {
                "was shut down by the kernel and fails every operation"
            } else {
                "was remounted read-only by the kernel after an error"
            };
            (
                filesystem(device),
                format!("Filesystem {} ({fs_type}) {what}.", on_fs(device)),
            )
        }
        KernelEvent::HungTask {
            comm,
            pid,
            blocked_secs,
        } => {
            put("process.pid", (*pid).into());
            put("process.executable.name", comm.as_str().into());
            put("daytwo.kernel.blocked_secs", (*blocked_secs).into());
            (
                process(comm, *pid),
                format!(
                    "Task {comm} (pid {pid}) has been blocked in uninterruptible sleep for more than {blocked_secs} s."
                ),
            )
        }
        KernelEvent::SoftLockup {
            cpu,
            stuck_secs,
            comm,
            pid,
        } => {
            put("daytwo.kernel.cpu", (*cpu).into());
            put("daytwo.kernel.stuck_secs", (*stuck_secs).into());
            put("process.pid", (*pid).into());
            put("process.executable.name", comm.as_str().into());
            (
                host(),
                format!(
                    "CPU {cpu} was stuck for {stuck_secs} s running {comm} (pid {pid}) (soft lockup)."
                ),
            )
        }
        KernelEvent::LinkDown { interface, driver }
        | KernelEvent::LinkUp {
            interface, driver, ..
        } => {
            put("network.interface.name", interface.as_str().into());
            if let Some(d) = driver {
                put("daytwo.link.driver", d.as_str().into());
            }
            let entity = Entity::new(EntityKind::Interface, interface)
                .with_attr("host.name", host_name)
                .with_attr("network.interface.name", interface.as_str());
            let message = match &burst.event {
                KernelEvent::LinkUp {
                    speed_mbps, duplex, ..
                } => {
                    if let Some(s) = speed_mbps {
                        put("daytwo.link.speed_mbps", (*s).into());
                    }
                    if let Some(d) = duplex {
                        put("daytwo.link.duplex", d.as_str().into());
                    }
                    let speed = speed_mbps
                        .map(|s| format!(" at {s} Mb/s"))
                        .unwrap_or_default();
                    let duplex = duplex
                        .as_deref()
                        .map(|d| format!(" {d} duplex"))
                        .unwrap_or_default();
                    format!("Network interface {interface} link is up{speed}{duplex}{times}.")
                }
                _ => format!("Network interface {interface} lost its link{times}."),
            };
            (entity, message)
        }
        KernelEvent::ConntrackFull => (
            host(),
            format!(
                "The conntrack table is full and new connections' packets are dropped{times}; raise net.netfilter.nf_conntrack_max or find the connection leak."
            ),
        ),
        KernelEvent::Segfault {
            comm,
            pid,
            kind,
            address,
            ip,
            error_code,
            object,
        } => {
            put("process.pid", (*pid).into());
            put("process.executable.name", comm.as_str().into());
            put("daytwo.segfault.kind", kind.as_str().into());
            for (k, v) in [
                ("daytwo.segfault.address", address),
                ("daytwo.segfault.ip", ip),
                ("daytwo.segfault.error_code", error_code),
                ("daytwo.segfault.object", object),
            ] {
                if let Some(v) = v {
                    put(k, v.as_str().into());
                }
            }
            let at = address
                .as_deref()
                .map(|a| format!(" at address {a}"))
                .unwrap_or_default();
            let inside = object
                .as_deref()
                .map(|o| format!(" in {o}"))
                .unwrap_or_default();
            (
                process(comm, *pid),
                format!("Process {comm} (pid {pid}) crashed: {kind}{at}{inside}{times}."),
            )
        }
        KernelEvent::HardwareError {
            source,
            corrected,
            cpu,
            bank,
            status,
            controller,
            location,
            ..
        } => {
            put("daytwo.hardware.source", (*source).into());
            if let Some(c) = corrected {
                put("daytwo.hardware.corrected", (*c).into());
            }
            put("daytwo.hardware.error_count", burst.error_count.into());
            if let Some(c) = cpu {
                put("daytwo.kernel.cpu", (*c).into());
            }
            if let Some(b) = bank {
                put("daytwo.mce.bank", (*b).into());
            }
            if let Some(s) = status {
                put("daytwo.mce.status", s.as_str().into());
            }
            if let Some(c) = controller {
                put("daytwo.hardware.controller", c.as_str().into());
            }
            if let Some(l) = location {
                put("daytwo.hardware.location", l.as_str().into());
            }
            let kind = match corrected {
                Some(true) => "corrected",
                Some(false) => "uncorrected",
                None => "unclassified",
            };
            let what = match *source {
                "edac" => "memory",
                "mce" => "machine check",
                _ => "platform (APEI)",
            };
            let wher = match (controller, location) {
                (Some(c), Some(l)) => format!(" on {c} {l}"),
                (Some(c), None) => format!(" on {c}"),
                (None, _) => cpu.map(|c| format!(" on CPU {c}")).unwrap_or_default(),
            };
            let count = burst.error_count;
            let errors = if count == 1 { "error" } else { "errors" };
            (
                host(),
                format!("The hardware reported {count} {kind} {what} {errors}{wher}."),
            )
        }
    };

    let mut resource = Attributes::new();
    resource.insert("host.name".into(), host_name.into());
    Signal {
        id: stable_id(&["kmsg", boot_id, &burst.first_seq.to_string()]),
        name: burst.event.event_name().into(),
        time: clock.wall(burst.first_ts_usec),
        severity: burst.severity,
        entity,
        resource,
        attributes: a,
        message,
        evidence: burst
            .lines
            .iter()
            .map(|r| Evidence {
                time: clock.wall(r.ts_usec),
                kind: "log".into(),
                text: r.message.trim_end().to_string(),
            })
            .collect(),
    }
}

/// `I/O` → `an I/O error`; `critical medium` → `a critical medium error`.
fn article_error(error: &str) -> String {
    let vowel = error
        .chars()
        .next()
        .is_some_and(|c| "aeiouAEIOU".contains(c));
    format!("{} {error} error", if vowel { "an" } else { "a" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmsg::burst::BurstClassifier;
    use crate::kmsg::fixtures::{KERNEL_EVENTS, io_error_flood};
    use crate::kmsg::kernel::EVENT_NAMES;
    use crate::kmsg::parse_record;
    use daytwo_model::{EntityKind, Severity};

    const CLOCK: BootClock = BootClock {
        boot_unix_nanos: 1_795_617_000_000_000_000,
    };

    fn signals() -> Vec<Signal> {
        let mut c = BurstClassifier::new();
        let mut bursts = Vec::new();
        for (line, _) in KERNEL_EVENTS {
            bursts.extend(c.feed(&parse_record(line.as_bytes()).unwrap()));
        }
        bursts.extend(c.flush(u64::MAX));
        bursts
            .iter()
            .map(|b| kernel_signal(b, "node-1", "boot-a", CLOCK, None))
            .collect()
    }

    fn named<'a>(s: &'a [Signal], name: &str) -> Vec<&'a Signal> {
        s.iter().filter(|x| x.name == name).collect()
    }

    #[test]
    fn every_attribute_is_listed_and_every_event_appears() {
        let s = signals();
        for sig in &s {
            for key in sig.attributes.keys() {
                assert!(ATTRIBUTES.contains(&key.as_str()), "{key} is not listed");
            }
            assert!(sig.attributes.contains_key("daytwo.kernel.event_count"));
            assert_eq!(sig.resource["host.name"], "node-1");
            assert!(!sig.evidence.is_empty());
        }
        for name in EVENT_NAMES {
            assert!(!named(&s, name).is_empty(), "{name} never emitted");
        }
        let mut ids: Vec<_> = s.iter().map(|x| x.id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), s.len(), "ids are unique");
    }

    #[test]
    fn io_errors_are_about_the_volume() {
        let mut c = BurstClassifier::new();
        let b: Vec<_> = io_error_flood().iter().flat_map(|r| c.feed(r)).collect();
        let s = kernel_signal(&b[0], "node-1", "boot-a", CLOCK, None);
        assert_eq!(s.id, stable_id(&["kmsg", "boot-a", "2000"]));
        assert_eq!(s.name, "daytwo.kernel.io_error");
        assert_eq!(s.severity, Severity::Critical);
        assert_eq!(s.time, CLOCK.wall(500_000_000));
        assert_eq!(s.entity.kind, EntityKind::Volume);
        assert_eq!(s.entity.name, "sdb");
        assert_eq!(s.entity.attributes["system.device"], "sdb");
        assert_eq!(s.attributes["daytwo.kernel.event_count"], 50);
        assert_eq!(s.attributes["daytwo.io.operation"], "READ");
        assert_eq!(s.attributes["daytwo.io.sector"], 1000);
        assert_eq!(
            s.message,
            "Disk sdb had an I/O error on read at sector 1000 (50 times in 4 s)."
        );
        assert_eq!(s.evidence.len(), 10);
    }

    #[test]
    fn filesystems_use_the_mount_point_when_known() {
        let r = parse_record(b"2,7,5,-;EXT4-fs (sda1): Remounting filesystem read-only").unwrap();
        let b = BurstClassifier::new().feed(&r);
        let s = kernel_signal(&b[0], "node-1", "boot-a", CLOCK, Some("/var"));
        assert_eq!(s.name, "daytwo.kernel.fs_readonly");
        assert_eq!(s.severity, Severity::Critical);
        assert_eq!(s.entity.kind, EntityKind::Filesystem);
        assert_eq!(s.entity.name, "/var");
        assert_eq!(s.entity.attributes["mount.point"], "/var");
        assert_eq!(s.attributes["daytwo.fs.action"], "remount-ro");
        assert_eq!(
            s.message,
            "Filesystem /var (sda1) (ext4) was remounted read-only by the kernel after an error."
        );
        let without = kernel_signal(&b[0], "node-1", "boot-a", CLOCK, None);
        assert_eq!(without.entity.name, "sda1");
        assert!(!without.entity.attributes.contains_key("mount.point"));
    }

    #[test]
    fn entities_and_severities_per_event() {
        let s = signals();
        let one = |name: &str| named(&s, name)[0].clone();
        let hung = one("daytwo.kernel.hung_task");
        assert_eq!(hung.entity.kind, EntityKind::Process);
        assert_eq!(hung.entity.attributes["process.pid"], 1234);
        assert_eq!(hung.severity, Severity::Warning);
        let seg = one("daytwo.kernel.segfault");
        assert_eq!(seg.entity.kind, EntityKind::Process);
        assert_eq!(seg.attributes["daytwo.segfault.object"], "libc.so.6");
        assert_eq!(seg.attributes["process.executable.name"], "nginx");
        assert_eq!(
            seg.message,
            "Process nginx (pid 4242) crashed: segfault at address 0 in libc.so.6."
        );
        let lockup = one("daytwo.kernel.soft_lockup");
        assert_eq!(lockup.entity.kind, EntityKind::Host);
        assert_eq!(lockup.attributes["daytwo.kernel.cpu"], 3);
        let up = named(&s, "daytwo.kernel.link_up");
        assert!(up.iter().all(|x| x.severity == Severity::Info));
        let eth0 = up
            .iter()
            .find(|x| x.entity.name == "eth0")
            .expect("igb eth0 up");
        assert_eq!(eth0.attributes["daytwo.link.speed_mbps"], 1000);
        assert_eq!(eth0.entity.attributes["network.interface.name"], "eth0");
        let down = named(&s, "daytwo.kernel.link_down");
        assert_eq!(down.len(), 3);
        assert!(down.iter().all(|x| x.severity == Severity::Warning));
        assert_eq!(
            one("daytwo.kernel.conntrack_full").severity,
            Severity::Critical
        );
        let hw = named(&s, "daytwo.kernel.hardware_error");
        let edac0 = hw
            .iter()
            .find(|x| x.attributes.get("daytwo.hardware.controller") == Some(&"MC0".into()))
            .unwrap();
        assert_eq!(edac0.severity, Severity::Warning);
        assert_eq!(
            edac0.message,
            "The hardware reported 1 corrected memory error on MC0 CPU_SrcID#0_Ha#0_Chan#1_DIMM#0."
        );
        let mce = hw
            .iter()
            .find(|x| x.attributes["daytwo.hardware.source"] == "mce")
            .unwrap();
        assert_eq!(mce.severity, Severity::Critical);
        assert_eq!(mce.attributes["daytwo.hardware.corrected"], false);
        assert_eq!(mce.attributes["daytwo.mce.status"], "b200000000070f0f");
        assert_eq!(mce.attributes["daytwo.mce.bank"], 4);
    }
}
