//! Shared helpers for the end-to-end tests: run the real `daytwo` binary, a real HTTP
//! receiver standing in for a pager, and real kernel faults in real cgroups.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_daytwo")
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// True when this test can inject kernel faults (root, /dev/kmsg, a memory cgroup, python3).
/// Outside CI a missing part skips the test with a printed reason; under CI=true it fails.
pub fn can_inject_oom(test: &str) -> bool {
    let reason = if unsafe { libc::geteuid() } != 0 {
        Some("needs root (to create memory cgroups and read /dev/kmsg)".to_string())
    } else if std::fs::File::open("/dev/kmsg").is_err() {
        Some("cannot open /dev/kmsg".to_string())
    } else if memory_cgroup_root().is_none() {
        Some(
            "no memory cgroup controller (v1 /sys/fs/cgroup/memory or v2 with +memory)".to_string(),
        )
    } else if Command::new("python3")
        .arg("-c")
        .arg("0")
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        Some("python3 is needed to allocate memory in the test cgroup".to_string())
    } else {
        None
    };
    match reason {
        None => true,
        Some(r) if in_ci() => panic!("{test}: {r}; under CI=true this test must run"),
        Some(r) => {
            eprintln!("SKIPPED {test}: {r}");
            false
        }
    }
}

/// The memory cgroup hierarchy: v1 `/sys/fs/cgroup/memory`, or the v2 root when it has memory.
pub fn memory_cgroup_root() -> Option<(PathBuf, bool)> {
    let v1 = Path::new("/sys/fs/cgroup/memory");
    if v1.join("memory.limit_in_bytes").exists()
        || v1.join("cgroup.procs").exists() && v1.join("memory.usage_in_bytes").exists()
    {
        return Some((v1.to_path_buf(), false));
    }
    let v2 = Path::new("/sys/fs/cgroup");
    let controllers = std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
    controllers
        .split_whitespace()
        .any(|c| c == "memory")
        .then(|| (v2.to_path_buf(), true))
}

/// A memory cgroup that is removed again on drop.
pub struct MemCgroup {
    pub dir: PathBuf,
    /// The path as the kernel names it (relative to the hierarchy root), e.g. `/daytwo-e2e-1-a`.
    pub path: String,
}

impl MemCgroup {
    pub fn new(name: &str, limit_bytes: u64) -> MemCgroup {
        let (root, v2) = memory_cgroup_root().expect("memory cgroup");
        let leaf = format!("daytwo-e2e-{}-{name}", std::process::id());
        let dir = root.join(&leaf);
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        if v2 {
            std::fs::write(dir.join("memory.max"), limit_bytes.to_string()).unwrap();
            let _ = std::fs::write(dir.join("memory.swap.max"), "0");
        } else {
            std::fs::write(dir.join("memory.limit_in_bytes"), limit_bytes.to_string()).unwrap();
        }
        MemCgroup {
            dir,
            path: format!("/{leaf}"),
        }
    }

    /// Runs python3 in this cgroup allocating `bytes`; returns once it exited (killed).
    /// Returns the pid and whether the kernel killed it with SIGKILL.
    pub fn allocate(&self, bytes: u64) -> (u32, bool) {
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        let procs = self.dir.join("cgroup.procs");
        let mut cmd = Command::new("python3");
        cmd.arg("-c").arg(format!(
            "a = bytearray({bytes}); a[::4096] = b'x' * len(a[::4096]); print('survived')"
        ));
        unsafe {
            cmd.pre_exec(move || {
                std::fs::write(&procs, std::process::id().to_string())?;
                Ok(())
            });
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn python3");
        let pid = child.id();
        let status = child.wait().unwrap();
        (pid, status.signal() == Some(libc::SIGKILL))
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A running `daytwo` process; killed on drop.
pub struct Daytwo {
    pub child: Child,
    pub http: Option<SocketAddr>,
    pub otlp: Option<SocketAddr>,
    pub log: PathBuf,
}

impl Daytwo {
    /// Starts `daytwo ARGS`; when `wait_listening`, reads the first stdout line
    /// (`listening http=ADDR otlp=ADDR`) and waits for /readyz.
    pub fn start<S: AsRef<std::ffi::OsStr>>(
        args: &[S],
        log: &Path,
        wait_listening: bool,
    ) -> Daytwo {
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut child = Command::new(bin())
            .args(args)
            .env("DAYTWO_LOG_LEVEL", "info,daytwo=debug")
            .stdout(Stdio::piped())
            .stderr(logf)
            .spawn()
            .expect("spawn daytwo");
        let (mut http, mut otlp) = (None, None);
        if wait_listening {
            let stdout = child.stdout.take().unwrap();
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace();
            assert_eq!(
                parts.next(),
                Some("listening"),
                "first stdout line was {line:?}; log:\n{}",
                read(log)
            );
            for p in parts {
                if let Some(a) = p.strip_prefix("http=") {
                    http = Some(a.parse().unwrap());
                } else if let Some(a) = p.strip_prefix("otlp=") {
                    otlp = Some(a.parse().unwrap());
                }
            }
        }
        let d = Daytwo {
            child,
            http,
            otlp,
            log: log.to_path_buf(),
        };
        if let Some(http) = d.http {
            let ready = wait_until(Duration::from_secs(20), || {
                get(&format!("http://{http}/readyz")).is_some_and(|(c, _)| c == 200)
            });
            assert!(ready, "daytwo never became ready; log:\n{}", read(log));
        }
        d
    }

    pub fn server(&self) -> String {
        format!("http://{}", self.http.expect("http address"))
    }

    /// SIGKILL, no cleanup: the crash case.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait: the clean stop.
    pub fn stop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
    }

    /// Runs `daytwo incidents ... --server URL` and returns stdout; panics on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(bin())
            .args(args)
            .arg("--server")
            .arg(self.server())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "daytwo {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn incidents(&self) -> Vec<serde_json::Value> {
        let out = self.cli(&["incidents", "list", "--json", "--limit", "1000"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["incidents"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Daytwo {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Polls `f` every 100 ms until it returns Some or the deadline passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    wait_for(limit, || f().then_some(())).is_some()
}

/// A blocking HTTP GET with std only: (status, body).
pub fn get(url: &str) -> Option<(u16, String)> {
    http("GET", url, None, None)
}

/// A blocking HTTP POST of a JSON body with std only: (status, body).
pub fn post_json(url: &str, body: &str) -> Option<(u16, String)> {
    http("POST", url, Some(body), None)
}

/// Any method with a JSON body (empty when `None`) and an optional bearer token; panics when
/// the server cannot be reached: (status, body).
#[allow(dead_code)] // not every test binary uses it
pub fn request(method: &str, url: &str, body: Option<&str>, token: Option<&str>) -> (u16, String) {
    http(method, url, Some(body.unwrap_or("")), token)
        .unwrap_or_else(|| panic!("{method} {url}: no HTTP answer"))
}

/// One HTTP/1.1 request over a fresh connection, std only (tests must not depend on the code
/// under test to talk to it).
fn http(method: &str, url: &str, body: Option<&str>, token: Option<&str>) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub body: serde_json::Value,
    pub headers: Vec<(String, String)>,
    /// The status the receiver answered.
    pub answered: u16,
}

/// A real HTTP server standing in for a pager. `fail` makes it answer 503.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub got: Arc<Mutex<Vec<Delivery>>>,
    pub fail: Arc<std::sync::atomic::AtomicBool>,
    _rt: Arc<tokio::runtime::Runtime>,
}

impl Receiver {
    pub fn start() -> Receiver {
        use axum::routing::post;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let got: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, f) = (got.clone(), fail.clone());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/hook",
            post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let (g, f) = (g.clone(), f.clone());
                    async move {
                        let failing = f.load(std::sync::atomic::Ordering::SeqCst);
                        let answered = if failing { 503 } else { 200 };
                        let body: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_else(|_| {
                                serde_json::Value::String(String::from_utf8_lossy(&body).into())
                            });
                        let headers = headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect();
                        g.lock().unwrap().push(Delivery {
                            body,
                            headers,
                            answered,
                        });
                        axum::http::StatusCode::from_u16(answered).unwrap()
                    }
                },
            ),
        );
        rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            addr,
            got,
            fail,
            _rt: Arc::new(rt),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Deliveries answered 2xx for this incident and event.
    pub fn delivered(&self, incident_id: &str, event: &str) -> Vec<Delivery> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|d| {
                d.answered == 200
                    && d.body["event"] == event
                    && d.body["incident"]["id"] == incident_id
            })
            .cloned()
            .collect()
    }

    pub fn attempts(&self, incident_id: &str, event: &str) -> usize {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.body["event"] == event && d.body["incident"]["id"] == incident_id)
            .count()
    }
}

/// The incident whose top root cause is the cgroup at `path`, if any.
pub fn incident_for_cgroup<'a>(
    incidents: &'a [serde_json::Value],
    path: &str,
) -> Vec<&'a serde_json::Value> {
    incidents
        .iter()
        .filter(|i| {
            i["root_causes"][0]["entity"]["kind"] == "cgroup"
                && i["root_causes"][0]["entity"]["name"] == path
        })
        .collect()
}

/// Finds a program on PATH. Outside CI a missing one skips the test with a printed reason;
/// under CI=true it fails (.ci/run installs it).
pub fn require_program(test: &str, program: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(program))
                .find(|p| p.is_file())
        })
        .unwrap_or_default();
    match found {
        Some(p) => Some(p),
        None if in_ci() => panic!(
            "{test}: {program} not found (Debian package {package}); under CI=true it must be installed"
        ),
        None => {
            eprintln!("SKIPPED {test}: {program} not found (apt-get install {package})");
            None
        }
    }
}

/// What the agent logs once its sources are open: a fault after this line is sure to be seen.
pub const AGENT_READY: &str = "Agent started.";

impl Daytwo {
    /// Waits until the agent in this process logged that its sources are open.
    pub fn wait_agent_ready(&self) {
        assert!(
            wait_until(Duration::from_secs(20), || read(&self.log)
                .contains(AGENT_READY)),
            "agent not running:\n{}",
            read(&self.log)
        );
    }
}

/// Now plus `secs` seconds, as RFC 3339.
pub fn rfc3339_now_plus(secs: i64) -> String {
    let now = daytwo_model::Timestamp::from_system_time(std::time::SystemTime::now());
    daytwo_model::Timestamp(now.0 + secs * 1_000_000_000).to_string()
}
