//! Kernel log hot path: parse every /dev/kmsg record and feed the OOM classifier.
//! Input: a fixed mix of ordinary kernel lines and real OOM reports (captured on kernel 6.18).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use daytwo_agent::kmsg::oom::OomClassifier;
use daytwo_agent::kmsg::parse_record;
use std::hint::black_box;

const OOM: &[&str] = &[
    "4,344,68239836,-;python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
    "4,345,68240007,-;CPU: 0 UID: 0 PID: 1693 Comm: python3 Not tainted 6.18.44-fc-v669 #1 PREEMPT(none) ",
    "4,346,68240034,-;Call Trace:",
    "4,347,68241511,-; <TASK>",
    "4,359,68247384,-; __handle_mm_fault+0xa1e/0xf40",
    "4,371,68249392,-; </TASK>",
    "6,372,68249457,-;memory: usage 65536kB, limit 65536kB, failcnt 286",
    "6,373,68249473,-;memory+swap: usage 65536kB, limit 9007199254740988kB, failcnt 0",
    "6,374,68249475,-;kmem: usage 248kB, limit 9007199254740988kB, failcnt 0",
    "6,375,68249477,-;Memory cgroup stats for /probe1:",
    "6,376,68249543,-;cache 8192",
    "6,419,68249648,-;[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name",
    "6,420,68249652,-;[   1693]     0  1693    69678    17912    16288     1624         0   192512        0             0 python3",
    "6,421,68249657,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/probe1,task_memcg=/probe1,task=python3,pid=1693,uid=0",
    "3,422,68249689,-;Memory cgroup out of memory: Killed process 1693 (python3) total-vm:278712kB, anon-rss:65152kB, file-rss:6496kB, shmem-rss:0kB, UID:0 pgtables:188kB oom_score_adj:0",
];

const NOISE: &[&str] = &[
    "6,100,1000,-;eth0: renamed from veth1a2b3c",
    "4,101,1001,-;EXT4-fs (vda): mounted filesystem with ordered data mode. Quota mode: none.",
    "6,102,1002,-;IPv6: ADDRCONF(NETDEV_CHANGE): cali12345: link becomes ready",
    "5,103,1003,-;audit: type=1400 audit(1795617015.123:42): apparmor=\"STATUS\" operation=\"profile_load\"\n SUBSYSTEM=net\n DEVICE=+net:eth0",
];

fn records() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..1000 {
        if i % 50 == 0 {
            out.extend(OOM.iter().map(|l| l.as_bytes().to_vec()));
        } else {
            out.push(NOISE[i % NOISE.len()].as_bytes().to_vec());
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let recs = records();
    let mut g = c.benchmark_group("kmsg");
    g.throughput(Throughput::Elements(recs.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| {
            for r in &recs {
                black_box(parse_record(black_box(r)).ok());
            }
        })
    });
    g.bench_function("parse_and_classify", |b| {
        b.iter(|| {
            let mut c = OomClassifier::new();
            let mut kills = 0;
            for r in &recs {
                if let Ok(rec) = parse_record(r)
                    && c.feed(&rec).is_some()
                {
                    kills += 1;
                }
            }
            black_box(kills)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
