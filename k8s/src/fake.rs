//! A scriptable fake Kubernetes API server for tests (feature `fake-api-server`).
//!
//! No API server can run where daytwo's tests run, so this one serves what a real one would
//! for LIST and WATCH of any collection path (`/api/v1/pods`, `/apis/apps/v1/deployments`, …):
//! a scripted sequence of list responses, and for each watch request the next scripted
//! session: watch event lines (`{"type":"MODIFIED","object":{…}}`, an `ERROR` with a `410`
//! Status, or raw bytes such as half a line), after which the stream is either closed (a cut
//! connection) or held open like an idle watch. Paths without a script list nothing and hold
//! their watches. A script pushed for `PATH?fieldSelector=SELECTOR` answers the requests for
//! PATH with exactly that field selector (two watches of one collection with different
//! selectors, such as the agent's pods of its node and the collector's Pending pods, each get
//! their own); other requests for PATH get PATH's script. Every request is recorded, with its query, so tests can check selectors
//! and the resourceVersion a watch resumed from.
//!
//! The objects come from the fixtures under `tests/fixtures/kubernetes/` (real Kubernetes
//! JSON; see the README there).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What happens after a watch session's lines were sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEnd {
    /// Close the response: the client sees the stream end (or break, after a partial line).
    Close,
    /// Keep the response open without sending more, like a quiet watch.
    Hold,
}

/// A gate a watch session waits at before sending its events, opened by the test: it orders
/// events of different watches (first this pod's failure, then its Service's endpoints).
#[derive(Clone, Debug)]
pub struct Gate(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Gate {
    fn default() -> Self {
        Gate(Arc::new(tokio::sync::watch::channel(false).0))
    }
}

impl Gate {
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets every session waiting at this gate send its events.
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }
}

/// One scripted answer to a watch request.
#[derive(Clone, Debug)]
pub struct WatchSession {
    /// Raw chunks, each usually one JSON watch event followed by `\n`.
    pub chunks: Vec<String>,
    pub end: WatchEnd,
    /// When set, the response starts (headers) at once and its events wait for the gate.
    pub gate: Option<Gate>,
}

impl WatchSession {
    pub fn new(end: WatchEnd) -> Self {
        WatchSession {
            chunks: Vec::new(),
            end,
            gate: None,
        }
    }

    /// Holds the session's events until `gate` is opened.
    pub fn after(mut self, gate: &Gate) -> Self {
        self.gate = Some(gate.clone());
        self
    }

    /// Adds an `ADDED`, `MODIFIED`, `DELETED` or `BOOKMARK` event for `object`.
    pub fn event(mut self, type_: &str, object: Value) -> Self {
        self.chunks
            .push(format!("{}\n", json!({"type": type_, "object": object})));
        self
    }

    /// Adds the `ERROR` event a real API server sends when the requested resourceVersion is
    /// too old (a watch desync): a `Status` with code 410, reason `Expired`.
    pub fn gone(mut self, rv: &str) -> Self {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure",
            "message": format!("too old resource version: {rv} (999999)"),
            "reason": "Expired", "code": 410
        });
        self.chunks
            .push(format!("{}\n", json!({"type": "ERROR", "object": status})));
        self
    }

    /// Adds raw bytes (half an event, to cut a stream mid-line).
    pub fn raw(mut self, text: &str) -> Self {
        self.chunks.push(text.to_string());
        self
    }
}

/// A request the server received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub query: HashMap<String, String>,
}

impl Recorded {
    pub fn is_watch(&self) -> bool {
        self.query
            .get("watch")
            .is_some_and(|w| w == "true" || w == "1")
    }
}

#[derive(Default)]
struct Script {
    /// Answer every request with 403 Forbidden, as for a service account without RBAC.
    forbidden: bool,
    lists: VecDeque<Value>,
    last_list: Option<Value>,
    watches: VecDeque<WatchSession>,
}

#[derive(Default)]
struct Inner {
    scripts: HashMap<String, Script>,
    requests: Vec<Recorded>,
}

/// The fake API server; stops when dropped.
pub struct FakeApiServer {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A list response (`{"kind": "<Kind>List", "metadata": {"resourceVersion": rv}, "items": …}`).
pub fn list(kind: &str, api_version: &str, rv: &str, items: Vec<Value>) -> Value {
    json!({
        "kind": format!("{kind}List"),
        "apiVersion": api_version,
        "metadata": {"resourceVersion": rv},
        "items": items,
    })
}

impl FakeApiServer {
    /// Starts on 127.0.0.1 with a free port.
    pub async fn start() -> std::io::Result<FakeApiServer> {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeApiServer { addr, inner, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues a list response for `path`; the last one queued keeps answering.
    pub fn push_list(&self, path: &str, list: Value) {
        let mut g = self.inner.lock().unwrap();
        let s = g.scripts.entry(path.to_string()).or_default();
        s.lists.push_back(list);
    }

    /// Queues the answer to the next watch request on `path`.
    pub fn push_watch(&self, path: &str, session: WatchSession) {
        let mut g = self.inner.lock().unwrap();
        g.scripts
            .entry(path.to_string())
            .or_default()
            .watches
            .push_back(session);
    }

    /// Answers every request for `path` with `403 Forbidden` (a `Status` body naming the
    /// resource), as an API server does for a service account that may not list it.
    pub fn forbid(&self, path: &str) {
        let mut g = self.inner.lock().unwrap();
        g.scripts.entry(path.to_string()).or_default().forbidden = true;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Requests for one path.
    pub fn requests_for(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// A kubeconfig that points at this server over plain HTTP.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: fake-token\n",
            self.url()
        )
    }

    /// Writes [`FakeApiServer::kubeconfig`] to `dir/kubeconfig` and returns its path.
    pub fn write_kubeconfig(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let p = dir.join("kubeconfig");
        std::fs::write(&p, self.kubeconfig())?;
        Ok(p)
    }
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    let rec = Recorded {
        path: path.clone(),
        query,
    };
    let watch = rec.is_watch();
    let mut g = inner.lock().unwrap();
    let selected = rec
        .query
        .get("fieldSelector")
        .map(|s| format!("{path}?fieldSelector={s}"))
        .filter(|k| g.scripts.contains_key(k));
    g.requests.push(rec);
    let script = g
        .scripts
        .entry(selected.unwrap_or_else(|| path.clone()))
        .or_default();
    if script.forbidden {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{path} is forbidden: User \"system:serviceaccount:daytwo:daytwo\" cannot list resource at the cluster scope"),
            "reason": "Forbidden", "code": 403
        });
        return (
            StatusCode::FORBIDDEN,
            [("content-type", "application/json")],
            status.to_string(),
        )
            .into_response();
    }
    if watch {
        let session = script
            .watches
            .pop_front()
            .unwrap_or_else(|| WatchSession::new(WatchEnd::Hold));
        drop(g);
        let gate = session.gate.clone();
        let wait = futures::stream::once(async move {
            if let Some(g) = gate {
                g.wait().await;
            }
        })
        .filter_map(|_| async { None::<Result<Vec<u8>, std::io::Error>> });
        let chunks = wait.chain(futures::stream::iter(
            session
                .chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(c.into_bytes())),
        ));
        let body = match session.end {
            WatchEnd::Close => Body::from_stream(chunks),
            WatchEnd::Hold => Body::from_stream(chunks.chain(futures::stream::pending())),
        };
        return (StatusCode::OK, [("content-type", "application/json")], body).into_response();
    }
    let list = match script.lists.pop_front() {
        Some(l) => {
            script.last_list = Some(l.clone());
            l
        }
        None => script
            .last_list
            .clone()
            .unwrap_or_else(|| list("", "v1", "1", Vec::new())),
    };
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        list.to_string(),
    )
        .into_response()
}

/// Percent-decoding of a query component (`spec.nodeName%3Dnode-1` → `spec.nodeName=node-1`).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
