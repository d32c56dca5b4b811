//! End to end with a real hung mount: a real FUSE filesystem (tests/hangfs.py, Debian
//! `python3-fusepy`) whose statfs blocks, as a dead NFS server's mount does. The agent's
//! sample goes on without it after `--node-mount-timeout-ms`, the collector opens a
//! `node.filesystem_unresponsive` incident naming the mount point, /metrics says which mount
//! does not answer while the other filesystems keep being sampled, and when the filesystem
//! answers again its space series come back.
//!
//! Its own test binary: cargo runs test binaries one after another, so no other test's agent
//! meets the hung mount. The mount is released and unmounted by a Drop guard even when an
//! assertion fails.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PYTHON: &str = "/usr/bin/python3";

/// Root, /dev/fuse and Debian's python3 with fusepy. Outside CI a missing one skips the test
/// with a printed reason; under CI=true it fails (.ci/run installs python3-fusepy).
fn can_mount_fuse(test: &str) -> bool {
    let why = if unsafe { libc::geteuid() } != 0 {
        Some("needs root (mounting a FUSE filesystem)".to_string())
    } else if !Path::new("/dev/fuse").exists() {
        Some("no /dev/fuse on this machine".to_string())
    } else {
        let ok = Command::new(PYTHON)
            .args(["-c", "import fusepy"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        (!ok).then(|| format!("{PYTHON} cannot import fusepy (apt-get install python3-fusepy)"))
    };
    match why {
        None => true,
        Some(why) if in_ci() => panic!("{test}: {why}; under CI=true this test must run"),
        Some(why) => {
            eprintln!("SKIPPED {test}: {why}");
            false
        }
    }
}

/// The hanging FUSE filesystem; released, unmounted and stopped on drop.
struct HungMount {
    dir: PathBuf,
    release: PathBuf,
    child: Child,
}

impl HungMount {
    fn mount(dir: PathBuf, log: &Path) -> HungMount {
        std::fs::create_dir_all(&dir).unwrap();
        let release = dir.with_extension("release");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hangfs.py");
        let child = Command::new(PYTHON)
            .arg(script)
            .arg(&dir)
            .arg(&release)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start hangfs.py");
        let m = HungMount {
            dir,
            release,
            child,
        };
        let mp = m.dir.to_str().unwrap().to_string();
        let mounted = wait_until(Duration::from_secs(10), || {
            read(Path::new("/proc/mounts"))
                .lines()
                .any(|l| l.split(' ').nth(1) == Some(mp.as_str()))
        });
        assert!(mounted, "hangfs did not mount {mp}:\n{}", read(log));
        m
    }

    fn answer(&self) {
        std::fs::write(&self.release, b"").unwrap();
    }
}

impl Drop for HungMount {
    fn drop(&mut self) {
        self.answer();
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn metric_lines(server: &str, name: &str, mp: &str) -> Vec<String> {
    get(&format!("{server}/metrics"))
        .map(|(_, b)| {
            b.lines()
                .filter(|l| l.starts_with(name) && l.contains(&format!("mountpoint=\"{mp}\"")))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_mount_that_does_not_answer_is_an_incident_and_sampling_goes_on() {
    let test = "a_mount_that_does_not_answer_is_an_incident_and_sampling_goes_on";
    if !can_mount_fuse(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let flags: Vec<String> = [
        "up",
        "--data-dir",
        data.to_str().unwrap(),
        "--http-addr",
        "127.0.0.1:0",
        "--otlp-addr",
        "127.0.0.1:0",
        "--metrics-interval-secs",
        "1",
        "--node-mount-timeout-ms",
        "300",
        "--no-logs",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let d = Daytwo::start(&flags, &tmp.path().join("up.log"), true);
    d.wait_agent_ready();
    let mnt = HungMount::mount(tmp.path().join("nfs"), &tmp.path().join("hangfs.log"));
    let mp = mnt.dir.to_str().unwrap().to_string();
    let server = d.server();

    let inc = wait_for(Duration::from_secs(30), || {
        d.incidents().into_iter().find(|i| {
            i["root_causes"][0]["rule"] == "node.filesystem_unresponsive"
                && i["root_causes"][0]["entity"]["name"] == mp.as_str()
        })
    })
    .unwrap_or_else(|| panic!("no incident for {mp} within 30 s; log:\n{}", read(&d.log)));
    assert_eq!(inc["severity"], "critical");
    let top = &inc["root_causes"][0];
    assert_eq!(top["entity"]["kind"], "filesystem");
    let explanation = top["explanation"].as_str().unwrap();
    assert!(
        explanation.contains(&format!(
            "Filesystem {mp} (hangfs:/export, fuse) does not answer"
        )),
        "{explanation}"
    );
    assert!(
        read(&d.log).contains("statvfs did not return"),
        "the agent logs the hang:\n{}",
        read(&d.log)
    );

    // /metrics says which mount hangs; the root filesystem is still sampled every interval.
    let unresponsive = metric_lines(&server, "daytwo_node_filesystem_unresponsive", &mp);
    assert_eq!(unresponsive.len(), 1, "{unresponsive:?}");
    assert!(unresponsive[0].ends_with(" 1"), "{unresponsive:?}");
    assert!(metric_lines(&server, "daytwo_node_filesystem_size_bytes", &mp).is_empty());
    let timeouts = |body: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix("daytwo_agent_node_mount_timeouts_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let (_, body) = get(&format!("{server}/metrics")).unwrap();
    assert_eq!(timeouts(&body), Some(1.0), "one hang, one timeout");
    assert!(
        body.lines()
            .any(|l| l.starts_with("daytwo_node_filesystem_size_bytes")
                && l.contains("mountpoint=\"/\"")),
        "the root filesystem is still exposed"
    );
    let before = read(&d.log).matches("statvfs did not return").count();
    std::thread::sleep(Duration::from_secs(3));
    let (_, later) = get(&format!("{server}/metrics")).unwrap();
    assert_eq!(
        timeouts(&later),
        Some(1.0),
        "a hung mount is not waited for again"
    );
    assert_eq!(
        read(&d.log).matches("statvfs did not return").count(),
        before,
        "logged once per hang"
    );
    let n = d
        .incidents()
        .iter()
        .filter(|i| i["root_causes"][0]["entity"]["name"] == mp.as_str())
        .count();
    assert_eq!(n, 1, "one incident while it hangs");

    // The server answers again: its space is sampled again and the gauge is gone.
    mnt.answer();
    let back = wait_until(Duration::from_secs(15), || {
        metric_lines(&server, "daytwo_node_filesystem_size_bytes", &mp)
            .iter()
            .any(|l| l.ends_with(" 10485760"))
    });
    assert!(
        back,
        "{mp} not sampled again after it answered; log:\n{}",
        read(&d.log)
    );
    assert!(metric_lines(&server, "daytwo_node_filesystem_unresponsive", &mp).is_empty());
}
