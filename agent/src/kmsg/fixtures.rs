//! Kernel OOM sequences as `/dev/kmsg` delivers them, one record per line, for tests.
//!
//! `MEMCG_OOM_V1` keeps the lines captured on the development machine (kernel 6.18, cgroup
//! v1) verbatim where they were captured; the elided call trace and stats lines are filled in
//! with the shapes 6.x prints. `MEMCG_OOM_V2` and `GLOBAL_OOM` follow the exact formats of
//! `mem_cgroup_print_oom_meminfo`, `dump_oom_victim` and `__oom_kill_process` in 5.x/6.x.

use super::{KmsgRecord, parse_record};

/// A memory-cgroup OOM in v1 cgroup `/probe1` (limit 64 MiB), victim python3 pid 1693.
pub const MEMCG_OOM_V1: &str = "\
4,344,68239836,-;python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0
4,345,68240007,-;CPU: 0 UID: 0 PID: 1693 Comm: python3 Not tainted 6.18.44-fc-v669 #1 PREEMPT(none) 
4,346,68240010,-;Call Trace:
4,347,68240012,-; <TASK>
4,348,68240020,-; dump_stack_lvl+0x53/0x70
4,349,68240031,-; dump_header+0x4b/0x3a0
4,350,68240040,-; oom_kill_process+0x2ae/0x350
4,351,68240049,-; out_of_memory+0xec/0x5c0
4,352,68240058,-; mem_cgroup_out_of_memory+0xd1/0xf0
4,353,68240066,-; try_charge_memcg+0x4f0/0x6b0
4,354,68240075,-; charge_memcg+0x2f/0x80
4,355,68240083,-; __mem_cgroup_charge+0x2c/0x80
4,356,68240091,-; do_anonymous_page+0x1d6/0x8a0
4,357,68240100,-; __handle_mm_fault+0x7a3/0xb60
4,358,68240108,-; handle_mm_fault+0xec/0x2f0
4,359,68240117,-; do_user_addr_fault+0x1df/0x6a0
4,360,68240125,-; exc_page_fault+0x6b/0x150
4,361,68240133,-; asm_exc_page_fault+0x26/0x30
4,362,68240141,-;RIP: 0033:0x7f3c1a2b4c1d
4,363,68240150,-;Code: Unable to access opcode bytes at 0x7f3c1a2b4bf3.
4,364,68240158,-;RSP: 002b:00007ffd4c5e0a28 EFLAGS: 00010206
4,365,68240166,-;RAX: 00007f3c15a4b010 RBX: 00007f3c19d5f6a0 RCX: 00007f3c15a4b010
4,366,68240175,-;RDX: 0000000000000000 RSI: 0000000000000000 RDI: 00007f3c15a4b010
4,367,68240183,-;RBP: 0000000000a00000 R08: 0000000000000000 R09: 0000000000000000
4,368,68240191,-;R10: 0000000000000022 R11: 0000000000000246 R12: 0000000000000000
4,369,68240200,-;R13: 00007f3c19d5f6a0 R14: 0000000000000000 R15: 0000000000a00000
4,370,68240208,-; </TASK>
6,372,68249457,-;memory: usage 65536kB, limit 65536kB, failcnt 286
6,373,68249473,-;memory+swap: usage 65536kB, limit 9007199254740988kB, failcnt 0
6,374,68249475,-;kmem: usage 248kB, limit 9007199254740988kB, failcnt 0
6,375,68249477,-;Memory cgroup stats for /probe1:
6,376,68249520,-;cache 6651904
6,377,68249522,-;rss 60555264
6,378,68249524,-;rss_huge 0
6,379,68249526,-;shmem 0
6,380,68249528,-;mapped_file 6651904
6,381,68249530,-;dirty 0
6,382,68249532,-;writeback 0
6,383,68249534,-;pgpgin 18006
6,384,68249536,-;pgpgout 0
6,385,68249538,-;pgfault 17232
6,386,68249540,-;pgmajfault 0
6,387,68249542,-;inactive_anon 60547072
6,388,68249544,-;active_anon 0
6,389,68249546,-;inactive_file 4063232
6,390,68249548,-;active_file 2588672
6,391,68249550,-;unevictable 0
6,392,68249552,-;hierarchical_memory_limit 67108864
6,393,68249554,-;hierarchical_memsw_limit 9223372036854771712
6,394,68249556,-;total_cache 6651904
6,395,68249558,-;total_rss 60555264
6,396,68249600,-;Tasks state (memory values in pages):
6,397,68249610,-;[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name
6,398,68249620,-;[   1693]     0  1693    69678    17912    16288     1624         0   192512        0             0 python3
6,421,68249657,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/probe1,task_memcg=/probe1,task=python3,pid=1693,uid=0
3,422,68249689,-;Memory cgroup out of memory: Killed process 1693 (python3) total-vm:278712kB, anon-rss:65152kB, file-rss:6496kB, shmem-rss:0kB, UID:0 pgtables:188kB oom_score_adj:0
";

/// A memory-cgroup OOM on a cgroup v2 kernel (`memory.max` 100 MiB on a systemd service).
pub const MEMCG_OOM_V2: &str = "\
4,1200,5120000100,-;hog invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0, oom_score_adj=0
4,1201,5120000180,-;CPU: 3 UID: 1000 PID: 9001 Comm: hog Not tainted 6.8.0-49-generic #49-Ubuntu
4,1202,5120000190,-;Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.3-debian-1.16.3-2 04/01/2014
4,1203,5120000200,-;Call Trace:
4,1204,5120000210,-; <TASK>
4,1205,5120000220,-; dump_stack_lvl+0x76/0xa0
4,1206,5120000230,-; </TASK>
6,1207,5120000400,-;memory: usage 102400kB, limit 102400kB, failcnt 0
6,1208,5120000410,-;swap: usage 0kB, limit 0kB, failcnt 0
6,1209,5120000420,-;Memory cgroup stats for /system.slice/hog.service:
6,1210,5120000500,-;anon 103755776
6,1211,5120000510,-;file 36864
6,1212,5120000600,-;Tasks state (memory values in pages):
6,1213,5120000610,-;[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name
6,1214,5120000620,-;[   9001]  1000  9001    27165    25655    25646        9         0   249856        0             0 hog
6,1215,5120000700,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/system.slice/hog.service,task_memcg=/system.slice/hog.service,task=hog,pid=9001,uid=1000
3,1216,5120000800,-;Memory cgroup out of memory: Killed process 9001 (hog) total-vm:108660kB, anon-rss:102584kB, file-rss:36kB, shmem-rss:0kB, UID:1000 pgtables:244kB oom_score_adj:0
";

/// A global OOM: the whole host ran out of memory, victim `stress` pid 4242.
pub const GLOBAL_OOM: &str = "\
4,500,9000000000,-;stress invoked oom-killer: gfp_mask=0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO), order=0, oom_score_adj=0
4,501,9000000010,-;CPU: 1 UID: 1000 PID: 4242 Comm: stress Not tainted 6.1.0-27-amd64 #1  Debian 6.1.115-1
4,502,9000000020,-;Call Trace:
4,503,9000000030,-; <TASK>
4,504,9000000040,-; dump_stack_lvl+0x44/0x5c
4,505,9000000050,-; </TASK>
4,506,9000000100,-;Mem-Info:
4,507,9000000110,-;active_anon:1899000 inactive_anon:20 isolated_anon:0\\x0a active_file:30 inactive_file:12 isolated_file:0
4,508,9000000120,-;Node 0 active_anon:7596000kB inactive_anon:80kB active_file:120kB inactive_file:48kB
4,509,9000000130,-;Free swap  = 0kB
4,510,9000000140,-;Total swap = 0kB
4,511,9000000150,-;2097022 pages RAM
6,512,9000000200,-;Tasks state (memory values in pages):
6,513,9000000210,-;[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name
6,514,9000000220,-;[    412]     0   412    12000      900      400      500         0    98304        0          -250 systemd-journal
6,515,9000000230,-;[   4242]  1000  4242  2000000  1900000  1899000     1000         0 15400960        0             0 stress
6,516,9000000300,-;oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/user.slice/user-1000.slice/session-3.scope,task=stress,pid=4242,uid=1000
3,517,9000000400,-;Out of memory: Killed process 4242 (stress) total-vm:8000000kB, anon-rss:7596000kB, file-rss:4000kB, shmem-rss:0kB, UID:1000 pgtables:15040kB oom_score_adj:0
";

/// The records of a fixture, one per line.
pub fn records(fixture: &str) -> Vec<KmsgRecord> {
    fixture
        .lines()
        .map(|l| parse_record(l.as_bytes()).expect("fixture line parses"))
        .collect()
}

/// Kernel lines of the events other than OOM, as `/dev/kmsg` delivers them, each with the
/// event name it must classify as (None: must not). Levels are the ones the printing call
/// uses; sequence numbers and timestamps are arbitrary but increasing.
pub const KERNEL_EVENTS: &[(&str, Option<&str>)] = &[
    // block/blk-core.c print_req_error, 4.x (caller name prefix, no op).
    (
        "3,1000,100000000,-;blk_update_request: I/O error, dev sda, sector 12345",
        Some("daytwo.kernel.io_error"),
    ),
    // print_req_error, 5.x (caller prefix and op/flags).
    (
        "3,1001,100000100,-;blk_update_request: I/O error, dev sda, sector 2048 op 0x1:(WRITE) flags 0x800 phys_seg 1 prio class 0",
        Some("daytwo.kernel.io_error"),
    ),
    // print_req_error, 6.x (no caller prefix).
    (
        "3,1002,100000200,-;I/O error, dev vdb, sector 0 op 0x1:(WRITE) flags 0x800 phys_seg 1 prio class 2",
        Some("daytwo.kernel.io_error"),
    ),
    (
        "3,1003,100000300,-;critical medium error, dev nvme0n1, sector 88 op 0x0:(READ) flags 0x80700 phys_seg 1 prio class 2",
        Some("daytwo.kernel.io_error"),
    ),
    // fs/buffer.c buffer_io_error.
    (
        "3,1004,100000400,-;Buffer I/O error on dev sdb1, logical block 0, async page read",
        Some("daytwo.kernel.io_error"),
    ),
    // fs/ext4/super.c __ext4_error_inode and __ext4_std_error (KERN_CRIT).
    (
        "2,1005,100000500,-;EXT4-fs error (device sda1): ext4_find_entry:1455: inode #2: comm ls: reading directory lblock 0",
        Some("daytwo.kernel.fs_error"),
    ),
    (
        "2,1006,100000600,-;EXT4-fs error (device dm-0) in ext4_reserve_inode_write:5768: IO failure",
        Some("daytwo.kernel.fs_error"),
    ),
    // fs/ext4/super.c ext4_handle_error → ext4_msg(sb, KERN_CRIT, …).
    (
        "2,1007,100000700,-;EXT4-fs (sda1): Remounting filesystem read-only",
        Some("daytwo.kernel.fs_readonly"),
    ),
    // fs/xfs/xfs_fsops.c xfs_do_force_shutdown (6.x) and a later failing call (xfs_log.c).
    (
        "1,1008,100000800,-;XFS (sdb1): Metadata I/O Error (0x1) detected at xfs_trans_read_buf_map+0x1d1/0x310 [xfs] (fs/xfs/xfs_trans_buf.c:296).  Shutting down filesystem.",
        Some("daytwo.kernel.fs_readonly"),
    ),
    (
        "1,1009,100000900,-;XFS (sdb1): Please unmount the filesystem and rectify the problem(s)",
        None,
    ),
    (
        "1,1010,100001000,-;XFS (sdb1): Filesystem has been shut down due to log error (0x2).",
        Some("daytwo.kernel.fs_readonly"),
    ),
    // fs/xfs/xfs_error.c xfs_corruption_error / xfs_verifier_error.
    (
        "1,1011,100001100,-;XFS (sdc): Corruption detected. Unmount and run xfs_repair",
        Some("daytwo.kernel.fs_error"),
    ),
    (
        "1,1012,100001200,-;XFS (sdc): Metadata corruption detected at xfs_dinode_verify+0x1a0/0x5f0 [xfs], inode 0x2d8c4 dinode",
        Some("daytwo.kernel.fs_error"),
    ),
    // kernel/hung_task.c check_hung_task (pr_err) and its follow-up lines.
    (
        "3,1013,100001300,-;INFO: task kworker/u8:2:1234 blocked for more than 120 seconds.",
        Some("daytwo.kernel.hung_task"),
    ),
    (
        "3,1014,100001310,-;      Not tainted 6.1.0-27-amd64 #1 Debian 6.1.115-1",
        None,
    ),
    (
        "3,1015,100001320,-;\"echo 0 > /proc/sys/kernel/hung_task_timeout_secs\" disables this message.",
        None,
    ),
    // kernel/watchdog.c watchdog_timer_fn (pr_emerg, pr_fmt "watchdog: ").
    (
        "0,1016,100001400,-;watchdog: BUG: soft lockup - CPU#3 stuck for 23s! [kworker/3:1:123]",
        Some("daytwo.kernel.soft_lockup"),
    ),
    // Drivers' netdev_info: e1000e, igb (igb_watchdog_task), mlx5e_update_carrier, phylib.
    (
        "6,1017,100001500,-;e1000e 0000:00:1f.6 eno1: NIC Link is Down",
        Some("daytwo.kernel.link_down"),
    ),
    (
        "6,1018,100001600,-;igb 0000:01:00.0 eth0: igb: eth0 NIC Link is Up 1000 Mbps Full Duplex, Flow Control: RX/TX",
        Some("daytwo.kernel.link_up"),
    ),
    (
        "6,1019,100001700,-;mlx5_core 0000:5e:00.0 enp94s0f0: Link down",
        Some("daytwo.kernel.link_down"),
    ),
    (
        "6,1020,100001800,-;mlx5_core 0000:5e:00.0 enp94s0f0: Link up",
        Some("daytwo.kernel.link_up"),
    ),
    (
        "6,1021,100001900,-;eth0: Link is Down",
        Some("daytwo.kernel.link_down"),
    ),
    (
        "6,1022,100002000,-;IPv6: ADDRCONF(NETDEV_CHANGE): cali12345: link becomes ready",
        None,
    ),
    // net/netfilter/nf_conntrack_core.c __nf_conntrack_alloc (net_warn_ratelimited, pr_fmt).
    (
        "4,1023,100002100,-;nf_conntrack: nf_conntrack: table full, dropping packet",
        Some("daytwo.kernel.conntrack_full"),
    ),
    // arch/x86/mm/fault.c show_signal_msg + print_vma_addr (6.x adds "likely on CPU").
    (
        "6,1024,100002200,-;nginx[4242]: segfault at 0 ip 00007f2b1c3a1e45 sp 00007ffd8c1b2a38 error 4 in libc.so.6[7f2b1c28e000+155000] likely on CPU 3 (core 3, socket 0)",
        Some("daytwo.kernel.segfault"),
    ),
    (
        "6,1025,100002210,-;Code: 0f 1f 44 00 00 f3 0f 1e fa 48 89 f8 48 89 fa 81 e2 ff 0f 00 00",
        None,
    ),
    // arch/x86/kernel/cpu/mce/core.c print_mce (uncorrected: UC bit 61 set) and context.
    (
        "0,1026,100002300,-;mce: [Hardware Error]: CPU 0: Machine Check Exception: 5 Bank 4: b200000000070f0f",
        Some("daytwo.kernel.hardware_error"),
    ),
    (
        "0,1027,100002310,-;mce: [Hardware Error]: TSC 0 ADDR 1ffff8a5d4000 MISC 8c",
        Some("daytwo.kernel.hardware_error"),
    ),
    (
        "0,1028,100002320,-;mce: [Hardware Error]: PROCESSOR 0:50654 TIME 1700000000 SOCKET 0 APIC 0 microcode 2006906",
        Some("daytwo.kernel.hardware_error"),
    ),
    // mce_notify_irq (corrected errors logged).
    (
        "6,1029,100002400,-;mce: [Hardware Error]: Machine check events logged",
        Some("daytwo.kernel.hardware_error"),
    ),
    // drivers/edac/edac_mc.c edac_ce_error (KERN_WARNING) and edac_ue_error (KERN_EMERG).
    (
        "4,1030,100002500,-;EDAC MC0: 1 CE memory read error on CPU_SrcID#0_Ha#0_Chan#1_DIMM#0 (channel:1 slot:0 page:0x3f4a2 offset:0x0 grain:32 syndrome:0x0 - area:DRAM err_code:0001:0091 socket:0 ha:0 channel_mask:2 rank:1)",
        Some("daytwo.kernel.hardware_error"),
    ),
    (
        "0,1031,100002600,-;EDAC MC1: 1 UE memory read error on CPU_SrcID#1_MC#0_Chan#0_DIMM#0 (channel:0 slot:0 page:0x1234 offset:0x0 grain:32 - err_code:0000:009f)",
        Some("daytwo.kernel.hardware_error"),
    ),
    // Ordinary lines around them.
    (
        "6,1032,100002700,-;EXT4-fs (vda): mounted filesystem with ordered data mode. Quota mode: none.",
        None,
    ),
    (
        "5,1033,100002800,-;audit: type=1400 audit(1700000000.000:2): apparmor=\"STATUS\" operation=\"profile_load\"",
        None,
    ),
];

/// An I/O error flood on one disk (kernel 6.x shape), 50 lines in 4 s, then one more after the
/// 10 s burst window, then an unrelated line 20 s later.
pub fn io_error_flood() -> Vec<KmsgRecord> {
    let mut out = Vec::new();
    for i in 0..50u64 {
        let line = format!(
            "3,{},{},-;I/O error, dev sdb, sector {} op 0x0:(READ) flags 0x0 phys_seg 1 prio class 2",
            2000 + i,
            500_000_000 + i * 80_000,
            1000 + i * 8
        );
        out.push(parse_record(line.as_bytes()).expect("fixture line parses"));
    }
    let late = "3,2050,511000000,-;I/O error, dev sdb, sector 9999 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 2";
    out.push(parse_record(late.as_bytes()).expect("fixture line parses"));
    let later = "6,2051,531000000,-;systemd-journald[321]: Received SIGTERM";
    out.push(parse_record(later.as_bytes()).expect("fixture line parses"));
    out
}
