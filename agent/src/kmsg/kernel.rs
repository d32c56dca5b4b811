//! Kernel events other than OOM kills, recognised one record at a time.
//!
//! Entry point: [`classify`], a pure function from one record's message to at most one
//! [`KernelEvent`]. Each recogniser matches the exact shape the kernel prints (the printing
//! function is named at each parser and at each fixture in `fixtures.rs`) and never panics
//! on other text. Floods are merged later, by [`super::burst`].
//!
//! Deliberately not recognised: `IPv6: ADDRCONF(NETDEV_CHANGE): X: link becomes ready` (every
//! pod's veth prints it), bonding and team state changes, RCU stalls, hard lockups.

use daytwo_model::Severity;

/// One recognised kernel event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelEvent {
    /// A block request failed (`print_req_error` in block/blk-core.c) or a buffer read/write
    /// failed (`buffer_io_error` in fs/buffer.c).
    IoError {
        device: String,
        /// The kernel's error class: `I/O`, `critical medium`, `timeout`, …
        error: String,
        sector: Option<u64>,
        /// `READ`, `WRITE`, `FLUSH`, `DISCARD`, … (5.x and later).
        operation: Option<String>,
        logical_block: Option<u64>,
    },
    /// A filesystem found an error (`__ext4_error*`, XFS corruption reports).
    FsError {
        fs_type: String,
        device: String,
        /// `ext4_find_entry:1455`, when the kernel says.
        function: Option<String>,
        detail: String,
    },
    /// A filesystem stopped accepting writes: ext4 remounted read-only, or XFS shut down.
    FsReadOnly {
        fs_type: String,
        device: String,
        /// `remount-ro` or `shutdown`.
        action: &'static str,
        detail: String,
    },
    /// A task sat in uninterruptible sleep too long (`check_hung_task`, kernel/hung_task.c).
    HungTask {
        comm: String,
        pid: u32,
        blocked_secs: u64,
    },
    /// A CPU did not schedule for too long (`watchdog_timer_fn`, kernel/watchdog.c).
    SoftLockup {
        cpu: u32,
        stuck_secs: u64,
        comm: String,
        pid: u32,
    },
    /// A NIC lost its link (driver-specific, `netdev_info(…, "… Link is Down")`).
    LinkDown {
        interface: String,
        driver: Option<String>,
    },
    /// A NIC got its link back.
    LinkUp {
        interface: String,
        driver: Option<String>,
        speed_mbps: Option<u64>,
        duplex: Option<String>,
    },
    /// The conntrack table is full and packets are dropped (`__nf_conntrack_alloc`).
    ConntrackFull,
    /// A user process crashed on a fault (`show_signal_msg`, arch/x86/mm/fault.c; `do_trap` /
    /// `show_signal` in arch/x86/kernel/traps.c).
    Segfault {
        comm: String,
        pid: u32,
        /// `segfault`, `general protection fault`, `trap invalid opcode`, …
        kind: String,
        address: Option<String>,
        ip: Option<String>,
        error_code: Option<String>,
        /// The object the instruction pointer was in (`libc.so.6`).
        object: Option<String>,
    },
    /// A machine check or memory controller error (`print_mce`, `edac_mc_handle_error`, GHES).
    HardwareError {
        /// `mce`, `edac` or `ghes`.
        source: &'static str,
        /// Some(true) corrected, Some(false) uncorrected, None: a context line.
        corrected: Option<bool>,
        /// How many errors this line reports (0 for context lines).
        count: u64,
        cpu: Option<u32>,
        bank: Option<u32>,
        status: Option<String>,
        /// `MC0`.
        controller: Option<String>,
        /// The DIMM or location label.
        location: Option<String>,
    },
}

impl KernelEvent {
    /// The `event.name` of the signal.
    pub fn event_name(&self) -> &'static str {
        match self {
            KernelEvent::IoError { .. } => IO_ERROR_EVENT,
            KernelEvent::FsError { .. } => FS_ERROR_EVENT,
            KernelEvent::FsReadOnly { .. } => FS_READONLY_EVENT,
            KernelEvent::HungTask { .. } => HUNG_TASK_EVENT,
            KernelEvent::SoftLockup { .. } => SOFT_LOCKUP_EVENT,
            KernelEvent::LinkDown { .. } => LINK_DOWN_EVENT,
            KernelEvent::LinkUp { .. } => LINK_UP_EVENT,
            KernelEvent::ConntrackFull => CONNTRACK_FULL_EVENT,
            KernelEvent::Segfault { .. } => SEGFAULT_EVENT,
            KernelEvent::HardwareError { .. } => HARDWARE_ERROR_EVENT,
        }
    }

    /// The severity of this one line (a burst takes its worst line's).
    pub fn severity(&self) -> Severity {
        match self {
            KernelEvent::IoError { .. }
            | KernelEvent::FsError { .. }
            | KernelEvent::FsReadOnly { .. }
            | KernelEvent::ConntrackFull => Severity::Critical,
            KernelEvent::HungTask { .. }
            | KernelEvent::SoftLockup { .. }
            | KernelEvent::LinkDown { .. }
            | KernelEvent::Segfault { .. } => Severity::Warning,
            KernelEvent::LinkUp { .. } => Severity::Info,
            KernelEvent::HardwareError { corrected, .. } => match corrected {
                Some(false) => Severity::Critical,
                _ => Severity::Warning,
            },
        }
    }

    /// What makes two lines the same flood (within the event name).
    pub fn burst_key(&self) -> String {
        match self {
            KernelEvent::IoError { device, .. }
            | KernelEvent::FsError { device, .. }
            | KernelEvent::FsReadOnly { device, .. } => device.clone(),
            KernelEvent::HungTask { pid, .. } => pid.to_string(),
            KernelEvent::SoftLockup { cpu, .. } => cpu.to_string(),
            KernelEvent::LinkDown { interface, .. } | KernelEvent::LinkUp { interface, .. } => {
                interface.clone()
            }
            KernelEvent::ConntrackFull => String::new(),
            KernelEvent::Segfault { comm, .. } => comm.clone(),
            KernelEvent::HardwareError {
                source, controller, ..
            } => format!("{source}/{}", controller.as_deref().unwrap_or("")),
        }
    }

    /// How long a burst of this event stays open, in microseconds of kernel time: lines of
    /// the same key within it become one signal. 0: one signal per line, at once.
    pub fn burst_window_usec(&self) -> u64 {
        match self {
            // Rare and decisive, or already rate-limited by the kernel (hung task: at most
            // `hung_task_warnings` reports; soft lockup: one per watchdog period per CPU).
            KernelEvent::FsReadOnly { .. }
            | KernelEvent::HungTask { .. }
            | KernelEvent::SoftLockup { .. } => 0,
            _ => BURST_WINDOW_USEC,
        }
    }

    /// Folds a later line of the same burst into this (the first) one.
    pub fn merge(&mut self, later: &KernelEvent) {
        match (self, later) {
            (
                KernelEvent::HardwareError {
                    corrected,
                    count,
                    cpu,
                    bank,
                    status,
                    location,
                    ..
                },
                KernelEvent::HardwareError {
                    corrected: c2,
                    count: n2,
                    cpu: cpu2,
                    bank: bank2,
                    status: s2,
                    location: l2,
                    ..
                },
            ) => {
                *count += n2;
                *corrected = match (*corrected, *c2) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    _ => None,
                };
                if cpu.is_none() {
                    *cpu = *cpu2;
                }
                if bank.is_none() {
                    *bank = *bank2;
                }
                if status.is_none() {
                    status.clone_from(s2);
                }
                if location.is_none() {
                    location.clone_from(l2);
                }
            }
            (
                KernelEvent::IoError {
                    operation, sector, ..
                },
                KernelEvent::IoError {
                    operation: o2,
                    sector: s2,
                    ..
                },
            ) => {
                if operation.is_none() {
                    operation.clone_from(o2);
                }
                if sector.is_none() {
                    *sector = *s2;
                }
            }
            _ => {}
        }
    }

    /// How many errors this line counts for (`EDAC MC0: 5 CE …` counts 5; context lines 0).
    pub fn error_count(&self) -> u64 {
        match self {
            KernelEvent::HardwareError { count, .. } => *count,
            _ => 1,
        }
    }
}

pub const IO_ERROR_EVENT: &str = "daytwo.kernel.io_error";
pub const FS_ERROR_EVENT: &str = "daytwo.kernel.fs_error";
pub const FS_READONLY_EVENT: &str = "daytwo.kernel.fs_readonly";
pub const HUNG_TASK_EVENT: &str = "daytwo.kernel.hung_task";
pub const SOFT_LOCKUP_EVENT: &str = "daytwo.kernel.soft_lockup";
pub const LINK_DOWN_EVENT: &str = "daytwo.kernel.link_down";
pub const LINK_UP_EVENT: &str = "daytwo.kernel.link_up";
pub const CONNTRACK_FULL_EVENT: &str = "daytwo.kernel.conntrack_full";
pub const SEGFAULT_EVENT: &str = "daytwo.kernel.segfault";
pub const HARDWARE_ERROR_EVENT: &str = "daytwo.kernel.hardware_error";

/// Every event name [`classify`] can lead to.
pub const EVENT_NAMES: &[&str] = &[
    IO_ERROR_EVENT,
    FS_ERROR_EVENT,
    FS_READONLY_EVENT,
    HUNG_TASK_EVENT,
    SOFT_LOCKUP_EVENT,
    LINK_DOWN_EVENT,
    LINK_UP_EVENT,
    CONNTRACK_FULL_EVENT,
    SEGFAULT_EVENT,
    HARDWARE_ERROR_EVENT,
];

/// Lines of the same event and key within this much kernel time become one signal.
pub const BURST_WINDOW_USEC: u64 = 10_000_000;

/// Recognises one record's message.
pub fn classify(message: &str) -> Option<KernelEvent> {
    let msg = message.trim_end();
    io_error(msg)
        .or_else(|| fs_event(msg))
        .or_else(|| hung_task(msg))
        .or_else(|| soft_lockup(msg))
        .or_else(|| conntrack_full(msg))
        .or_else(|| segfault(msg))
        .or_else(|| hardware_error(msg))
        .or_else(|| link(msg))
}

/// The word after `key`, up to whitespace or `,`.
fn word_after<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let start = s.find(key)? + key.len();
    s[start..]
        .split(|c: char| c.is_whitespace() || c == ',')
        .next()
        .filter(|w| !w.is_empty())
}

fn number_after<T: std::str::FromStr>(s: &str, key: &str) -> Option<T> {
    word_after(s, key)?.parse().ok()
}

/// A block device or partition name as the kernel prints `disk_name` (`sda`, `nvme0n1p2`,
/// `dm-0`, `mmcblk0`, `sr0`).
fn is_device_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'!'))
}

/// `print_req_error` (block/blk-core.c): 4.x `blk_update_request: I/O error, dev sda, sector
/// 2048`; 5.x adds ` op 0x1:(WRITE) flags 0x800 phys_seg 1 prio class 0`; 6.x drops the
/// function prefix. The class is any `blk_errors[].name` (`critical medium`, `timeout`, …).
/// `buffer_io_error` (fs/buffer.c): `Buffer I/O error on dev sda1, logical block 0, async page
/// read`.
fn io_error(msg: &str) -> Option<KernelEvent> {
    if let Some(rest) = msg.strip_prefix("Buffer I/O error on dev ") {
        let device = rest.split(',').next()?.trim();
        if !is_device_name(device) {
            return None;
        }
        let operation = if rest.contains("write") {
            Some("WRITE".to_string())
        } else if rest.contains("read") {
            Some("READ".to_string())
        } else {
            None
        };
        return Some(KernelEvent::IoError {
            device: device.to_string(),
            error: "I/O".into(),
            sector: None,
            operation,
            logical_block: number_after(rest, "logical block "),
        });
    }
    let at = msg.find(" error, dev ")?;
    let head = &msg[..at];
    // Drop the 4.x/5.x function prefix (`blk_update_request: `, `print_req_error: `).
    let error = head.rsplit(": ").next()?.trim();
    if error.is_empty() || error.len() > 40 || !error.bytes().all(|b| b != b'(') {
        return None;
    }
    let rest = &msg[at + " error, dev ".len()..];
    let (device, tail) = rest.split_once(", sector ")?;
    if !is_device_name(device) {
        return None;
    }
    let sector = tail.split_whitespace().next()?.parse().ok()?;
    let operation = tail
        .find(":(")
        .and_then(|i| tail[i + 2..].split(')').next())
        .map(str::to_string);
    Some(KernelEvent::IoError {
        device: device.to_string(),
        error: error.to_string(),
        sector: Some(sector),
        operation,
        logical_block: None,
    })
}

/// ext2/3/4 (fs/ext4/super.c): `__ext4_error*` print `EXT4-fs error (device sda1):
/// ext4_find_entry:1455: inode #2: comm ls: reading directory lblock 0`; `__ext4_std_error`
/// prints `EXT4-fs error (device sda1) in ext4_reserve_inode_write:5768: IO failure`;
/// `ext4_handle_error` → `ext4_msg` prints `EXT4-fs (sda1): Remounting filesystem read-only`.
/// XFS (fs/xfs/xfs_message.c prefixes `XFS (sdb1): `): `xfs_do_force_shutdown` prints
/// `… Shutting down filesystem` (6.x: `Metadata I/O Error (0x1) detected at … Shutting down
/// filesystem.`) and later calls fail with `Filesystem has been shut down due to log error`;
/// `xfs_corruption_error` / `xfs_verifier_error` print `Corruption detected. Unmount and run
/// xfs_repair` and `Metadata corruption detected at …`.
fn fs_event(msg: &str) -> Option<KernelEvent> {
    if let Some(rest) = msg
        .strip_prefix("EXT4-fs")
        .or_else(|| msg.strip_prefix("EXT3-fs"))
        .or_else(|| msg.strip_prefix("EXT2-fs"))
    {
        let fs_type = msg[..4].to_ascii_lowercase();
        if let Some(rest) = rest.strip_prefix(" error (device ") {
            let (device, tail) = rest.split_once(')')?;
            let tail = tail
                .strip_prefix(": ")
                .or_else(|| tail.strip_prefix(" in "))
                .unwrap_or(tail)
                .trim();
            let (function, detail) = match tail.split_once(": ") {
                Some((f, d)) if f.contains(':') && !f.contains(' ') => {
                    (Some(f.to_string()), d.to_string())
                }
                _ => (None, tail.to_string()),
            };
            return Some(KernelEvent::FsError {
                fs_type,
                device: device.to_string(),
                function,
                detail,
            });
        }
        let rest = rest.strip_prefix(" (")?;
        let (device, tail) = rest.split_once("): ")?;
        if tail.starts_with("Remounting filesystem read-only") {
            return Some(KernelEvent::FsReadOnly {
                fs_type,
                device: device.to_string(),
                action: "remount-ro",
                detail: tail.to_string(),
            });
        }
        return None;
    }
    let rest = msg.strip_prefix("XFS (")?;
    let (device, tail) = rest.split_once("): ")?;
    let shutdown = tail.contains("Shutting down filesystem")
        || tail.starts_with("Filesystem has been shut down");
    if shutdown {
        return Some(KernelEvent::FsReadOnly {
            fs_type: "xfs".into(),
            device: device.to_string(),
            action: "shutdown",
            detail: tail.to_string(),
        });
    }
    if tail.starts_with("Corruption detected")
        || tail.starts_with("Metadata corruption detected")
        || tail.starts_with("Internal error")
        || tail.starts_with("metadata I/O error")
        || tail.starts_with("Corruption of in-memory data detected")
    {
        return Some(KernelEvent::FsError {
            fs_type: "xfs".into(),
            device: device.to_string(),
            function: None,
            detail: tail.to_string(),
        });
    }
    None
}

/// `check_hung_task` (kernel/hung_task.c): `INFO: task kworker/u8:2:1234 blocked for more than
/// 120 seconds.` The comm may contain `:`; the pid follows the last one.
fn hung_task(msg: &str) -> Option<KernelEvent> {
    let rest = msg.strip_prefix("INFO: task ")?;
    let (who, tail) = rest.split_once(" blocked for more than ")?;
    let (comm, pid) = who.rsplit_once(':')?;
    Some(KernelEvent::HungTask {
        comm: comm.to_string(),
        pid: pid.parse().ok()?,
        blocked_secs: tail.split_whitespace().next()?.parse().ok()?,
    })
}

/// `watchdog_timer_fn` (kernel/watchdog.c, `pr_fmt` "watchdog: "): `watchdog: BUG: soft
/// lockup - CPU#3 stuck for 23s! [kworker/3:1:123]`; 4.x printed `NMI watchdog: BUG: …`.
fn soft_lockup(msg: &str) -> Option<KernelEvent> {
    let at = msg.find("BUG: soft lockup - CPU#")?;
    let rest = &msg[at + "BUG: soft lockup - CPU#".len()..];
    let (cpu, rest) = rest.split_once(" stuck for ")?;
    let (secs, rest) = rest.split_once("s!")?;
    let who = rest.trim().strip_prefix('[')?.strip_suffix(']')?;
    let (comm, pid) = who.rsplit_once(':')?;
    Some(KernelEvent::SoftLockup {
        cpu: cpu.parse().ok()?,
        stuck_secs: secs.parse().ok()?,
        comm: comm.to_string(),
        pid: pid.parse().ok()?,
    })
}

/// `__nf_conntrack_alloc` (net/netfilter/nf_conntrack_core.c): `net_warn_ratelimited(
/// "nf_conntrack: table full, dropping packet\n")` under `pr_fmt` "nf_conntrack: ", so the
/// prefix appears twice; 3.x printed one prefix and a trailing `.`.
fn conntrack_full(msg: &str) -> Option<KernelEvent> {
    msg.contains("nf_conntrack: table full, dropping packet")
        .then_some(KernelEvent::ConntrackFull)
}

/// `show_signal_msg` (arch/x86/mm/fault.c): `nginx[4242]: segfault at 0 ip 00007f… sp 00007ff…
/// error 4 in libc.so.6[7f2b1c28e000+155000] likely on CPU 3 (core 3, socket 0)`;
/// `show_signal` (arch/x86/kernel/traps.c, `pr_fmt` "traps: "): `traps: nginx[4242] general
/// protection fault ip:55d1… sp:7ffc… error:0 in nginx[55d1…+e5000]`, and `trap invalid
/// opcode`, `trap divide error`, … the same way.
fn segfault(msg: &str) -> Option<KernelEvent> {
    let object =
        |s: &str| word_after(s, " in ").and_then(|w| w.split('[').next().map(str::to_string));
    if let Some(at) = msg.find("]: segfault at ") {
        let (comm, pid) = msg[..at].rsplit_once('[')?;
        let rest = &msg[at + 2..];
        return Some(KernelEvent::Segfault {
            comm: comm.to_string(),
            pid: pid.parse().ok()?,
            kind: "segfault".into(),
            address: word_after(rest, "segfault at ").map(str::to_string),
            ip: word_after(rest, " ip ").map(str::to_string),
            error_code: word_after(rest, " error ").map(str::to_string),
            object: object(rest),
        });
    }
    let rest = msg.strip_prefix("traps: ")?;
    let close = rest.find("] ")?;
    let (comm, pid) = rest[..close].rsplit_once('[')?;
    let tail = &rest[close + 2..];
    let kind = tail.split(" ip:").next()?.trim();
    if !(kind == "general protection fault" || kind.starts_with("trap ")) {
        return None;
    }
    Some(KernelEvent::Segfault {
        comm: comm.to_string(),
        pid: pid.parse().ok()?,
        kind: kind.to_string(),
        address: None,
        ip: word_after(tail, " ip:").map(str::to_string),
        error_code: word_after(tail, " error:").map(str::to_string),
        object: object(tail),
    })
}

/// Machine checks, `print_mce` (arch/x86/kernel/cpu/mce/core.c, `pr_fmt` "mce: ", `HW_ERR`
/// "[Hardware Error]: "): `mce: [Hardware Error]: CPU 0: Machine Check Exception: 5 Bank 4:
/// b200000000070f0f` (bit 61 of the bank status is UC, uncorrected), then `TSC …`,
/// `PROCESSOR …`, … context lines; `mce_notify_irq`: `mce: [Hardware Error]: Machine check events
/// logged` (corrected errors found by polling or CMCI).
/// EDAC, `edac_mc_handle_error` → `edac_ce_error` / `edac_ue_error` (drivers/edac/edac_mc.c):
/// `EDAC MC0: 1 CE memory read error on CPU_SrcID#0_Ha#0_Chan#1_DIMM#0 (channel:1 slot:0 page:0x…`
/// and `… UE …`. APEI GHES (drivers/acpi/apei/ghes.c, cper.c): `{1}[Hardware Error]: event
/// severity: corrected|recoverable|fatal`.
fn hardware_error(msg: &str) -> Option<KernelEvent> {
    let blank = |source, corrected, count| KernelEvent::HardwareError {
        source,
        corrected,
        count,
        cpu: None,
        bank: None,
        status: None,
        controller: None,
        location: None,
    };
    if let Some(rest) = msg.strip_prefix("EDAC MC") {
        let (mc, tail) = rest.split_once(": ")?;
        if !mc.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut words = tail.split_whitespace();
        let count: u64 = words.next()?.parse().ok()?;
        let corrected = match words.next()? {
            "CE" => true,
            "UE" => false,
            _ => return None,
        };
        let location = tail
            .split_once(" on ")
            .and_then(|(_, l)| l.split(" (").next())
            .map(str::to_string);
        return Some(KernelEvent::HardwareError {
            source: "edac",
            corrected: Some(corrected),
            count,
            cpu: None,
            bank: None,
            status: None,
            controller: Some(format!("MC{mc}")),
            location,
        });
    }
    let at = msg.find("[Hardware Error]: ")?;
    let rest = &msg[at + "[Hardware Error]: ".len()..];
    if msg.starts_with("mce: ") {
        if let Some(cpu_rest) = rest.strip_prefix("CPU ")
            && let Some((cpu, tail)) = cpu_rest.split_once(": Machine Check")
        {
            let status = tail.rsplit(": ").next().map(str::trim).map(str::to_string);
            let uncorrected = status
                .as_deref()
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .map(|s| s & (1 << 61) != 0)
                .unwrap_or(tail.starts_with(" Exception"));
            let bank = word_after(tail, "Bank ").and_then(|b| b.trim_end_matches(':').parse().ok());
            return Some(KernelEvent::HardwareError {
                source: "mce",
                corrected: Some(!uncorrected),
                count: 1,
                cpu: cpu.parse().ok(),
                bank,
                status,
                controller: None,
                location: None,
            });
        }
        if rest.starts_with("Machine check events logged") {
            return Some(blank("mce", Some(true), 1));
        }
        return Some(blank("mce", None, 0));
    }
    if let Some(sev) = rest.strip_prefix("event severity: ") {
        let corrected = matches!(sev.trim(), "corrected" | "info");
        return Some(blank("ghes", Some(corrected), 1));
    }
    Some(blank("ghes", None, 0))
}

/// Link changes, printed by each driver through `netdev_info`, so the message is
/// `DRIVER BUS-ID IFNAME: TEXT` (or `IFNAME: TEXT`):
/// * phylib `phy_print_status` (drivers/net/phy/phy.c): `Link is Up - 1Gbps/Full - flow
///   control rx/tx`, `Link is Down`;
/// * e1000e/ixgbe/i40e/ice/bnxt_en: `NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx`,
///   `NIC Link is Up, 25 Gbps Full Duplex, …`, `NIC Link is Down`;
/// * igb `igb_watchdog_task`: `igb: eth0 NIC Link is Up 1000 Mbps Full Duplex, Flow Control:
///   RX/TX`;
/// * mlx5 `mlx5e_update_carrier` (drivers/net/ethernet/mellanox/mlx5/core/en_main.c): `Link up`,
///   `Link down`;
/// * tg3 `tg3_link_report`: `Link is up at 1000 Mbps, full duplex`, `Link is down`.
fn link(msg: &str) -> Option<KernelEvent> {
    let (head, text) = msg.split_once(": ")?;
    let mut head_words = head.split_whitespace();
    let interface = head_words.next_back()?;
    let driver = head_words.next().map(str::to_string);
    if interface.is_empty()
        || interface.len() > 15
        || !interface
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'@'))
    {
        return None;
    }
    // igb repeats the driver and interface: `igb: eth0 NIC Link is …`.
    let text = match text.split_once(": ") {
        Some((_, t)) if t.starts_with(&format!("{interface} ")) => &t[interface.len() + 1..],
        _ => text,
    };
    let text = text.strip_prefix("NIC ").unwrap_or(text);
    // Drivers capitalise `Link`; a lowercase `link up` is some other subsystem's chatter.
    let lower = text.to_ascii_lowercase();
    let up =
        if text.starts_with("Link is Up") || text.starts_with("Link is up") || text == "Link up" {
            true
        } else if text.starts_with("Link is Down")
            || text.starts_with("Link is down")
            || text == "Link down"
        {
            false
        } else {
            return None;
        };
    let interface = interface.to_string();
    if !up {
        return Some(KernelEvent::LinkDown { interface, driver });
    }
    Some(KernelEvent::LinkUp {
        interface,
        driver,
        speed_mbps: speed_mbps(text),
        duplex: if lower.contains("full") {
            Some("full".into())
        } else if lower.contains("half") {
            Some("half".into())
        } else {
            None
        },
    })
}

/// `1000 Mbps`, `10 Gbps`, `1Gbps/Full`, `25000 Mbps`, `up at 100 Mbps`.
fn speed_mbps(text: &str) -> Option<u64> {
    let tokens: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == ',' || c == '/' || c == '-')
        .filter(|t| !t.is_empty())
        .collect();
    for (i, t) in tokens.iter().enumerate() {
        let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
            Some(0) => continue,
            Some(j) => (&t[..j], &t[j..]),
            None => (*t, tokens.get(i + 1).copied().unwrap_or("")),
        };
        let n: u64 = num.parse().ok()?;
        match unit.to_ascii_lowercase().as_str() {
            "mbps" | "mb/s" => return Some(n),
            "gbps" | "gb/s" => return Some(n * 1000),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmsg::fixtures::KERNEL_EVENTS;

    fn one(msg: &str) -> KernelEvent {
        classify(msg).unwrap_or_else(|| panic!("not recognised: {msg}"))
    }

    #[test]
    fn every_fixture_line_is_recognised_as_named() {
        for (line, name) in KERNEL_EVENTS {
            let rec = crate::kmsg::parse_record(line.as_bytes()).unwrap();
            let got = classify(&rec.message).map(|e| e.event_name());
            assert_eq!(got, *name, "{line}");
        }
    }

    #[test]
    fn block_errors_of_every_kernel_generation() {
        assert_eq!(
            one("blk_update_request: I/O error, dev sda, sector 12345"),
            KernelEvent::IoError {
                device: "sda".into(),
                error: "I/O".into(),
                sector: Some(12345),
                operation: None,
                logical_block: None,
            }
        );
        let KernelEvent::IoError {
            device,
            error,
            sector,
            operation,
            ..
        } = one(
            "critical medium error, dev nvme0n1, sector 88 op 0x0:(READ) flags 0x80700 phys_seg 1 prio class 2",
        )
        else {
            panic!()
        };
        assert_eq!(device, "nvme0n1");
        assert_eq!(error, "critical medium");
        assert_eq!(sector, Some(88));
        assert_eq!(operation.as_deref(), Some("READ"));
        let KernelEvent::IoError {
            device,
            logical_block,
            operation,
            ..
        } = one("Buffer I/O error on dev sdb1, logical block 0, async page read")
        else {
            panic!()
        };
        assert_eq!(
            (device.as_str(), logical_block, operation.as_deref()),
            ("sdb1", Some(0), Some("READ"))
        );
    }

    #[test]
    fn ext4_and_xfs() {
        assert_eq!(
            one(
                "EXT4-fs error (device sda1): ext4_find_entry:1455: inode #2: comm ls: reading directory lblock 0"
            ),
            KernelEvent::FsError {
                fs_type: "ext4".into(),
                device: "sda1".into(),
                function: Some("ext4_find_entry:1455".into()),
                detail: "inode #2: comm ls: reading directory lblock 0".into(),
            }
        );
        let KernelEvent::FsError {
            function, detail, ..
        } = one("EXT4-fs error (device dm-0) in ext4_reserve_inode_write:5768: IO failure")
        else {
            panic!()
        };
        assert_eq!(function.as_deref(), Some("ext4_reserve_inode_write:5768"));
        assert_eq!(detail, "IO failure");
        assert!(matches!(
            one("EXT4-fs (sda1): Remounting filesystem read-only"),
            KernelEvent::FsReadOnly {
                action: "remount-ro",
                ..
            }
        ));
        assert!(classify("EXT4-fs (sda1): mounted filesystem with ordered data mode.").is_none());
        assert!(matches!(
            one("XFS (sdb1): Filesystem has been shut down due to log error (0x2)."),
            KernelEvent::FsReadOnly {
                action: "shutdown",
                ..
            }
        ));
        assert!(matches!(
            one("XFS (sdb1): Corruption detected. Unmount and run xfs_repair"),
            KernelEvent::FsError { .. }
        ));
        assert!(classify("XFS (sdb1): Mounting V5 Filesystem").is_none());
    }

    #[test]
    fn tasks_lockups_and_crashes() {
        assert_eq!(
            one("INFO: task kworker/u8:2:1234 blocked for more than 120 seconds."),
            KernelEvent::HungTask {
                comm: "kworker/u8:2".into(),
                pid: 1234,
                blocked_secs: 120,
            }
        );
        assert_eq!(
            one("NMI watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [swapper/0:0]"),
            KernelEvent::SoftLockup {
                cpu: 0,
                stuck_secs: 22,
                comm: "swapper/0".into(),
                pid: 0,
            }
        );
        assert_eq!(
            one(
                "traps: nginx[4242] general protection fault ip:55d1c0a5b0e5 sp:7ffc62ba1a40 error:0 in nginx[55d1c0a00000+e5000]"
            ),
            KernelEvent::Segfault {
                comm: "nginx".into(),
                pid: 4242,
                kind: "general protection fault".into(),
                address: None,
                ip: Some("55d1c0a5b0e5".into()),
                error_code: Some("0".into()),
                object: Some("nginx".into()),
            }
        );
        assert_eq!(
            one("nf_conntrack: table full, dropping packet."),
            KernelEvent::ConntrackFull
        );
    }

    #[test]
    fn links() {
        assert_eq!(
            one("r8169 0000:03:00.0 enp3s0: Link is Up - 1Gbps/Full - flow control rx/tx"),
            KernelEvent::LinkUp {
                interface: "enp3s0".into(),
                driver: Some("r8169".into()),
                speed_mbps: Some(1000),
                duplex: Some("full".into()),
            }
        );
        assert_eq!(
            one("eth0: Link is Down"),
            KernelEvent::LinkDown {
                interface: "eth0".into(),
                driver: None,
            }
        );
        assert!(matches!(
            one("tg3 0000:02:00.0 eth0: Link is up at 100 Mbps, half duplex"),
            KernelEvent::LinkUp { speed_mbps: Some(100), duplex: Some(d), .. } if d == "half"
        ));
        assert!(matches!(
            one(
                "i40e 0000:3b:00.0 ens1f0: NIC Link is Up, 25 Gbps Full Duplex, Requested FEC: None, Negotiated FEC: None, Autoneg: False, Flow Control: None"
            ),
            KernelEvent::LinkUp {
                speed_mbps: Some(25_000),
                ..
            }
        ));
        assert!(classify("IPv6: ADDRCONF(NETDEV_CHANGE): cali12345: link becomes ready").is_none());
        assert!(classify("usb 1-1: new high-speed USB device number 2 using xhci_hcd").is_none());
        assert!(classify("eth0: renamed from veth1a2b3c").is_none());
        assert!(classify("eth0: link up").is_none());
    }

    #[test]
    fn hardware_errors_tell_corrected_from_uncorrected() {
        let sev = |m: &str| one(m).severity();
        assert_eq!(
            sev("mce: [Hardware Error]: CPU 2: Machine Check: 0 Bank 7: cc00008000010090"),
            Severity::Warning
        );
        assert_eq!(
            sev(
                "mce: [Hardware Error]: CPU 0: Machine Check Exception: 5 Bank 4: b200000000070f0f"
            ),
            Severity::Critical
        );
        assert_eq!(
            sev("{1}[Hardware Error]: event severity: fatal"),
            Severity::Critical
        );
        assert!(matches!(
            one("mce: [Hardware Error]: TSC 0 ADDR 1ffff8a5d4000 MISC 8c"),
            KernelEvent::HardwareError {
                corrected: None,
                count: 0,
                ..
            }
        ));
        assert!(classify("mce: CPU0: Thermal monitoring enabled (TM1)").is_none());
        assert!(classify("EDAC MC0: Giving out device to module skx_edac").is_none());
    }

    #[test]
    fn ordinary_lines_are_not_events() {
        for m in [
            "Linux version 6.1.0-27-amd64 (debian-kernel@lists.debian.org)",
            "EXT4-fs (vda): mounted filesystem with ordered data mode. Quota mode: none.",
            "audit: type=1400 audit(1700000000.000:2): apparmor=\"STATUS\"",
            "oom_reaper: reaped process 1693 (python3), now anon-rss:0kB",
            "sd 0:0:0:0: [sda] tag#0 Sense Key : Medium Error [current]",
            "",
        ] {
            assert!(classify(m).is_none(), "{m}");
        }
    }
}
