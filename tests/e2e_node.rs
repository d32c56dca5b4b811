//! End to end with real faults on this machine: a real tmpfs filled to ENOSPC becomes a
//! `node.filesystem_full` incident naming its mount point; a real busy loop in a real CPU
//! cgroup with a 10 % quota becomes a `daytwo.container.cpu_throttled` signal naming the cgroup;
//! a real Prometheus scrapes the agent's /metrics every second and `promtool check metrics`
//! finds nothing to lint.
//!
//! Mounts, cgroups and processes are removed by Drop guards even when an assertion fails.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Root is needed for mount(8) and for cgroups. Outside CI the test is skipped with a printed
/// reason; under CI=true it fails.
fn need_root(test: &str, why: &str) -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if in_ci() {
        panic!("{test}: needs root ({why}); under CI=true this test must run");
    }
    eprintln!("SKIPPED {test}: needs root ({why})");
    false
}

fn up_flags(data: &Path) -> Vec<String> {
    [
        "up",
        "--data-dir",
        data.to_str().unwrap(),
        "--http-addr",
        "127.0.0.1:0",
        "--otlp-addr",
        "127.0.0.1:0",
        "--metrics-interval-secs",
        "1",
        "--no-logs",
        "--retry-initial-ms",
        "100",
        "--retry-max-ms",
        "500",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A tmpfs mounted on a directory; unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount -t tmpfs on {} failed", dir.display());
        Tmpfs { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Writes 1 MiB chunks into `path` until the filesystem says ENOSPC.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0xa5u8; 1 << 20];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("writing {}: {e}", path.display()),
        }
    }
    let _ = f.sync_all();
    written
}

#[test]
fn a_full_filesystem_becomes_an_incident_naming_its_mount_point() {
    let test = "a_full_filesystem_becomes_an_incident_naming_its_mount_point";
    if !need_root(test, "mount -t tmpfs") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = Daytwo::start(
        &up_flags(&tmp.path().join("data")),
        &tmp.path().join("up.log"),
        true,
    );
    d.wait_agent_ready();
    let mnt = Tmpfs::mount(tmp.path().join("fill"), "8m");
    let mp = mnt.dir.to_str().unwrap().to_string();
    // Let the agent see it with room first (a full filesystem from the start fires as well).
    let metrics_url = format!("{}/metrics", d.server());
    let seen = wait_until(Duration::from_secs(10), || {
        get(&metrics_url).is_some_and(|(_, b)| {
            b.lines().any(|l| {
                l.starts_with("daytwo_node_filesystem_size_bytes")
                    && l.contains(&format!("mountpoint=\"{mp}\""))
            })
        })
    });
    assert!(seen, "the agent never exposed {mp}; log:\n{}", read(&d.log));
    let written = fill(&mnt.dir.join("big"));
    assert!(
        written > 4 << 20,
        "wrote only {written} bytes before ENOSPC"
    );

    let inc = wait_for(Duration::from_secs(30), || {
        d.incidents().into_iter().find(|i| {
            i["root_causes"][0]["entity"]["kind"] == "filesystem"
                && i["root_causes"][0]["entity"]["name"] == mp.as_str()
        })
    })
    .unwrap_or_else(|| panic!("no incident for {mp} within 30 s; log:\n{}", read(&d.log)));
    assert_eq!(inc["severity"], "critical");
    assert_eq!(inc["status"], "open");
    let top = &inc["root_causes"][0];
    assert_eq!(top["rule"], "node.filesystem_full");
    assert_eq!(top["entity"]["attributes"]["mount.point"], mp.as_str());
    let explanation = top["explanation"].as_str().unwrap();
    assert!(
        explanation.contains(&format!(
            "Filesystem {mp} (tmpfs, tmpfs) is full: 0 B of 8.0 MiB"
        )),
        "{explanation}"
    );
    assert!(inc["title"].as_str().unwrap().contains(&mp), "{inc}");
    let signal = inc["signals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "daytwo.node.filesystem_full")
        .cloned()
        .expect("the filesystem_full signal is in the incident");
    assert_eq!(signal["severity"], "critical");
    assert_eq!(signal["attributes"]["mount.point"], mp.as_str());
    assert_eq!(signal["attributes"]["daytwo.fs.avail_bytes"], 0);
    assert!(
        signal["evidence"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == "sample")),
        "{signal}"
    );
    // The exposition agrees.
    let (_, body) = get(&metrics_url).unwrap();
    assert!(
        body.lines()
            .any(|l| l.starts_with("daytwo_node_filesystem_avail_bytes")
                && l.contains(&format!("mountpoint=\"{mp}\""))
                && l.ends_with(" 0")),
        "avail 0 not exposed for {mp}"
    );
    // Still full a few intervals later: still one incident, one signal.
    std::thread::sleep(Duration::from_secs(3));
    let all = d.incidents();
    let mine: Vec<_> = all
        .iter()
        .filter(|i| i["root_causes"][0]["entity"]["name"] == mp.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "exactly one incident for {mp}");
    let n = mine[0]["signals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "daytwo.node.filesystem_full")
        .count();
    assert_eq!(n, 1, "one signal while it stays full");
}

/// A CPU cgroup with a CFS quota (v1 `cpu.cfs_quota_us`, or v2 `cpu.max`) running a busy loop;
/// the loop is killed and the cgroup removed on drop.
struct BusyCgroup {
    dir: PathBuf,
    path: String,
    child: Option<Child>,
}

impl BusyCgroup {
    fn cpu_root() -> Option<(PathBuf, bool)> {
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        if v1.join("cpu.cfs_quota_us").exists() {
            return Some((v1.to_path_buf(), false));
        }
        let v2 = Path::new("/sys/fs/cgroup");
        let ctl = std::fs::read_to_string(v2.join("cgroup.subtree_control")).unwrap_or_default();
        ctl.split_whitespace()
            .any(|c| c == "cpu")
            .then(|| (v2.to_path_buf(), true))
    }

    fn start(name: &str) -> BusyCgroup {
        use std::os::unix::process::CommandExt;
        let (root, v2) = Self::cpu_root().expect("a cpu cgroup controller");
        let leaf = format!("daytwo-e2e-{}-{name}", std::process::id());
        let dir = root.join(&leaf);
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        if v2 {
            std::fs::write(dir.join("cpu.max"), "10000 100000").unwrap();
        } else {
            std::fs::write(dir.join("cpu.cfs_period_us"), "100000").unwrap();
            std::fs::write(dir.join("cpu.cfs_quota_us"), "10000").unwrap();
        }
        let procs = dir.join("cgroup.procs");
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("while :; do :; done");
        unsafe {
            cmd.pre_exec(move || {
                std::fs::write(&procs, std::process::id().to_string())?;
                Ok(())
            });
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the busy loop");
        BusyCgroup {
            dir,
            path: format!("/{leaf}"),
            child: Some(child),
        }
    }
}

impl Drop for BusyCgroup {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_cpu_quota_busy_loop_becomes_a_throttling_signal_naming_the_cgroup() {
    let test = "a_cpu_quota_busy_loop_becomes_a_throttling_signal_naming_the_cgroup";
    if !need_root(test, "creating a CPU cgroup with a quota") {
        return;
    }
    if BusyCgroup::cpu_root().is_none() {
        let r = "no cpu cgroup controller (v1 /sys/fs/cgroup/cpu or v2 with +cpu)";
        if in_ci() {
            panic!("{test}: {r}");
        }
        eprintln!("SKIPPED {test}: {r}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = Daytwo::start(
        &up_flags(&tmp.path().join("data")),
        &tmp.path().join("up.log"),
        true,
    );
    d.wait_agent_ready();
    let cg = BusyCgroup::start("busy");

    let inc = wait_for(Duration::from_secs(45), || {
        d.incidents()
            .into_iter()
            .find(|i| i["root_causes"][0]["entity"]["name"] == cg.path.as_str())
    })
    .unwrap_or_else(|| {
        panic!(
            "no incident for {} within 45 s; log:\n{}",
            cg.path,
            read(&d.log)
        )
    });
    let top = &inc["root_causes"][0];
    assert_eq!(top["rule"], "node.container_cpu_throttled");
    assert_eq!(top["entity"]["kind"], "cgroup");
    assert_eq!(inc["severity"], "warning");
    let s = inc["signals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "daytwo.container.cpu_throttled")
        .cloned()
        .expect("the throttling signal is in the incident");
    assert_eq!(s["entity"]["kind"], "cgroup");
    assert_eq!(s["entity"]["name"], cg.path.as_str());
    assert_eq!(s["attributes"]["daytwo.cgroup.path"], cg.path.as_str());
    assert_eq!(s["attributes"]["daytwo.cpu.limit_cores"], 0.1);
    let ratio = s["attributes"]["daytwo.cpu.throttled_ratio"]
        .as_f64()
        .unwrap();
    assert!(ratio >= 0.25, "throttled ratio {ratio}");
    assert!(
        s["message"].as_str().unwrap().contains(&cg.path),
        "{}",
        s["message"]
    );
    // The counters behind it are exposed per cgroup.
    let (_, body) = get(&format!("{}/metrics", d.server())).unwrap();
    let line = body
        .lines()
        .find(|l| {
            l.starts_with("daytwo_container_cpu_throttled_periods_total")
                && l.contains(&format!("cgroup=\"{}\"", cg.path))
        })
        .unwrap_or_else(|| panic!("no throttled periods series for {}", cg.path));
    let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(v > 0.0, "{line}");
}

fn metric_value(server: &str, line_start: &str) -> Option<f64> {
    let (_, body) = get(&format!("{server}/metrics"))?;
    body.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn a_cgroup_recreated_under_its_path_is_counted_as_a_reset_not_a_negative_rate() {
    let test = "a_cgroup_recreated_under_its_path_is_counted_as_a_reset_not_a_negative_rate";
    if !need_root(test, "creating and recreating a CPU cgroup") {
        return;
    }
    if BusyCgroup::cpu_root().is_none() {
        let r = "no cpu cgroup controller (v1 /sys/fs/cgroup/cpu or v2 with +cpu)";
        if in_ci() {
            panic!("{test}: {r}");
        }
        eprintln!("SKIPPED {test}: {r}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = Daytwo::start(
        &up_flags(&tmp.path().join("data")),
        &tmp.path().join("up.log"),
        true,
    );
    d.wait_agent_ready();
    let server = d.server();
    let cg = BusyCgroup::start("recreated");
    let usage = |path: &str| {
        metric_value(
            &server,
            // CFS periods: in the cpu hierarchy itself (cpuacct may be a separate one).
            &format!("daytwo_container_cpu_periods_total{{cgroup=\"{path}\""),
        )
    };
    let path = cg.path.clone();
    let first = wait_for(Duration::from_secs(30), || {
        usage(&path).filter(|v| *v >= 20.0)
    })
    .unwrap_or_else(|| panic!("{path} ran no CFS periods; log:\n{}", read(&d.log)));
    let resets = "daytwo_agent_node_resets_total{source=\"cgroup\"}";
    let before = metric_value(&server, resets).expect("the resets counter is exposed");
    // Removed and created again under the same path: its counters start over.
    drop(cg);
    let again = BusyCgroup::start("recreated");
    assert_eq!(again.path, path);
    assert!(
        wait_until(Duration::from_secs(30), || metric_value(&server, resets)
            .is_some_and(|v| v > before)),
        "no reset counted for {path} (usage was {first}); log:\n{}",
        read(&d.log)
    );
    assert!(get(&format!("{server}/healthz")).is_some_and(|(c, _)| c == 200));
}

/// A real Prometheus server; killed on drop.
struct Prometheus {
    child: Child,
    addr: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn url_encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn prom_query(addr: &str, q: &str) -> Vec<serde_json::Value> {
    let Some((200, body)) = get(&format!(
        "http://{addr}/api/v1/query?query={}",
        url_encode(q)
    )) else {
        return Vec::new();
    };
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn a_real_prometheus_scrapes_the_agent_and_promtool_finds_nothing_to_lint() {
    let test = "a_real_prometheus_scrapes_the_agent_and_promtool_finds_nothing_to_lint";
    let Some(prometheus) = require_program(test, "prometheus", "prometheus") else {
        return;
    };
    let Some(promtool) = require_program(test, "promtool", "prometheus") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let collector = format!("http://127.0.0.1:{}", free_port());
    let agent = Daytwo::start(
        &[
            "agent",
            "--data-dir",
            tmp.path().join("data").to_str().unwrap(),
            "--http-addr",
            "127.0.0.1:0",
            "--collector",
            &collector,
            "--metrics-interval-secs",
            "1",
            "--no-logs",
            "--no-kmsg",
        ],
        &tmp.path().join("agent.log"),
        true,
    );
    let target = agent.http.unwrap().to_string();
    let metrics_url = format!("http://{target}/metrics");
    // Wait for the first node sample.
    assert!(
        wait_until(Duration::from_secs(10), || get(&metrics_url)
            .is_some_and(|(_, b)| b.contains("daytwo_node_filefd_maximum"))),
        "no node series; log:\n{}",
        read(&agent.log)
    );

    // promtool lints the exposition (names, units, help, types).
    let (_, body) = get(&metrics_url).unwrap();
    let mut lint = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        lint.stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
    }
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let web = format!("127.0.0.1:{}", free_port());
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: daytwo\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let prom_log = std::fs::File::create(tmp.path().join("prometheus.log")).unwrap();
    let prom = Prometheus {
        child: Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(prom_log)
            .spawn()
            .expect("start prometheus"),
        addr: web,
    };
    let up = wait_until(Duration::from_secs(30), || {
        prom_query(&prom.addr, "up{job=\"daytwo\"}")
            .first()
            .is_some_and(|r| r["value"][1] == "1")
    });
    assert!(
        up,
        "Prometheus never scraped the agent (up{{job=\"daytwo\"}} != 1); prometheus log:\n{}",
        read(&tmp.path().join("prometheus.log"))
    );
    let series = wait_for(Duration::from_secs(10), || {
        let r = prom_query(
            &prom.addr,
            "count({__name__=~\"daytwo_node_.+\",job=\"daytwo\"})",
        );
        r.first()
            .and_then(|r| r["value"][1].as_str()?.parse::<u64>().ok())
            .filter(|n| *n > 0)
    })
    .expect("daytwo_node_* series in Prometheus");
    assert!(series >= 3, "{series} daytwo_node_* series");
    let rss = prom_query(&prom.addr, "process_resident_memory_bytes{job=\"daytwo\"}");
    assert_eq!(rss.len(), 1, "the agent's own health is scraped: {rss:?}");
}
