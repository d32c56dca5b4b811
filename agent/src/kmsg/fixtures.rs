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
