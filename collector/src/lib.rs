//! The daytwo collector: OTLP ingest → embedded store → correlation → rules → incidents,
//! with the HTTP API and the notification outbox.
//!
//! Entry type: [`Collector`], built from [`CollectorConfig`] with [`Collector::bind`] (which
//! binds both ports, so a caller can print the real addresses when port 0 was asked for) and
//! run with [`Collector::run`] until its shutdown token is cancelled.
//!
//! Invariants: an OTLP export is acknowledged only after its signals committed; an incident
//! change and its notifications commit in one transaction; every task stops on shutdown.

pub mod alertmanager;
pub mod api;
pub mod correlate;
pub mod detect;
pub mod ingest;
pub mod kube;
pub mod metrics;
pub mod notify;
pub mod page;
pub mod pipeline;
pub mod rank;
pub mod replay;
pub mod rules_reload;
pub mod store;
pub mod topology;

use axum::serve::ListenerExt;
use daytwo_rules::RuleSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Everything the collector needs to start.
pub struct CollectorConfig {
    /// The embedded store lives in `<data_dir>/collector.redb`.
    pub data_dir: PathBuf,
    pub otlp_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub notify: notify::NotifyConfig,
    pub rules: Arc<RuleSet>,
    /// The rule files and directories `rules` came from (empty: the shipped packs); watched
    /// for changes when `rules_reload_interval` is set.
    pub rules_paths: Vec<PathBuf>,
    /// How often the rule files are checked for changes; `None` turns reloading off.
    pub rules_reload_interval: Option<Duration>,
    /// Signals further apart than this in event time are not joined by host alone.
    pub correlation_window: Duration,
    /// Distinct warning symptoms on one entity within the window that open an incident when
    /// no rule explains them.
    pub quorum: usize,
    /// Largest decoded OTLP request; bigger ones are answered RESOURCE_EXHAUSTED.
    pub max_recv_bytes: usize,
    /// Resolve an incident once no signal joined it for this long (event time against the
    /// wall clock); `None` keeps incidents open until someone resolves them.
    pub auto_resolve_after: Option<Duration>,
    /// Bearer token required for write calls (ack, resolve), if set.
    pub token: Option<String>,
}

/// The collector failed to start or to keep running.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDirFailed {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(
        "cannot listen on {what} address {addr}: {source} (is another process using it? use port 0 for any free port)"
    )]
    BindFailed {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Notify(#[from] notify::NotifyError),
    #[error("OTLP server failed: {0}")]
    Otlp(#[from] tonic::transport::Error),
    #[error("HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
}

/// A collector with its ports bound, ready to run.
pub struct Collector {
    otlp: TcpListener,
    http: TcpListener,
    ingest: ingest::Ingest,
    api: api::ApiState,
    notifier: notify::Notifier,
    max_recv_bytes: usize,
    auto_resolve_after: Option<Duration>,
    /// Cluster-wide Kubernetes watches, when [`Collector::set_kube`] configured them.
    kube: Option<(kube::KubeConfig, daytwo_k8s::watch::WatchMetrics)>,
    reload: Option<(rules_reload::RulesWatch, Duration)>,
    reload_metrics: rules_reload::ReloadMetrics,
}

impl Collector {
    /// Turns on the cluster-wide Kubernetes watches ([`kube`]) for [`Collector::run`] and
    /// registers their `daytwo_collector_kube_*` metrics.
    pub fn set_kube(&mut self, config: kube::KubeConfig) -> Result<(), CollectorError> {
        let metrics = daytwo_k8s::watch::WatchMetrics::new("daytwo_collector")?;
        metrics.register(&self.api.registry)?;
        self.kube = Some((config, metrics));
        Ok(())
    }

    /// Opens the store, rebuilds correlation state and binds both ports.
    pub async fn bind(
        config: CollectorConfig,
        registry: &prometheus::Registry,
    ) -> Result<Collector, CollectorError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| {
            CollectorError::DataDirFailed {
                path: config.data_dir.clone(),
                source,
            }
        })?;
        let store = store::Store::open(&config.data_dir)?;
        let metrics = metrics::Metrics::new(registry)?;
        let notifier = notify::Notifier::new(store.db(), config.notify, registry)?;
        let pipeline = pipeline::Pipeline::new(
            store.clone(),
            config.rules,
            config.correlation_window,
            config.quorum,
            notifier.handle(),
            metrics.clone(),
        )?;
        let reload_metrics = rules_reload::ReloadMetrics::register(registry)?;
        let reload = match config.rules_reload_interval {
            Some(every) if !config.rules_paths.is_empty() && !every.is_zero() => Some((
                rules_reload::RulesWatch::new(config.rules_paths.clone()),
                every,
            )),
            _ => None,
        };
        let mut pipeline = pipeline;
        pipeline.set_topology_metrics(pipeline::TopologyMetrics::register(registry)?);
        let pipeline = Arc::new(Mutex::new(pipeline));
        let otlp = TcpListener::bind(config.otlp_addr)
            .await
            .map_err(|source| CollectorError::BindFailed {
                what: "OTLP",
                addr: config.otlp_addr,
                source,
            })?;
        let http = TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| CollectorError::BindFailed {
                what: "HTTP",
                addr: config.http_addr,
                source,
            })?;
        Ok(Collector {
            otlp,
            http,
            ingest: ingest::Ingest::new(pipeline.clone(), metrics.clone()),
            api: api::ApiState {
                pipeline,
                store,
                notify: notifier.handle(),
                registry: registry.clone(),
                token: config.token,
                ready: Arc::new(AtomicBool::new(false)),
                metrics,
            },
            notifier,
            max_recv_bytes: config.max_recv_bytes,
            auto_resolve_after: config.auto_resolve_after,
            kube: None,
            reload,
            reload_metrics,
        })
    }

    pub fn otlp_addr(&self) -> SocketAddr {
        self.otlp.local_addr().expect("bound socket has an address")
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().expect("bound socket has an address")
    }

    /// Serves until `shutdown` is cancelled, then stops every task.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), CollectorError> {
        info!(otlp = %self.otlp_addr(), http = %self.http_addr(), "Collector is serving.");
        let ready = self.api.ready.clone();
        let pipeline = self.api.pipeline.clone();
        let app = api::router(self.api);
        let http_shutdown = shutdown.clone();
        let http = tokio::spawn(async move {
            // TCP_NODELAY, as for OTLP/gRPC: an answer written in parts must not wait for the
            // client's delayed ACK.
            let listener = self.http.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(http_shutdown.cancelled_owned())
                .await
                .map_err(CollectorError::Http)
        });
        let notifier = tokio::spawn(self.notifier.run(shutdown.clone()));
        let resolver = self
            .auto_resolve_after
            .map(|quiet| tokio::spawn(auto_resolve(pipeline.clone(), quiet, shutdown.clone())));
        let kube = self
            .kube
            .map(|(cfg, m)| tokio::spawn(kube::run(cfg, pipeline.clone(), m, shutdown.clone())));
        let reloader = self.reload.map(|(watch, every)| {
            tokio::spawn(rules_reload::run(
                pipeline.clone(),
                watch,
                every,
                self.reload_metrics.clone(),
                shutdown.clone(),
            ))
        });
        ready.store(true, Ordering::Release);
        let otlp = ingest::serve(
            self.otlp,
            self.ingest,
            self.max_recv_bytes,
            shutdown.clone(),
        )
        .await;
        // If the OTLP server failed, take the rest down with it.
        shutdown.cancel();
        let http = http.await.unwrap_or(Ok(()));
        let _ = notifier.await;
        if let Some(r) = resolver {
            let _ = r.await;
        }
        if let Some(k) = kube {
            let _ = k.await;
        }
        if let Some(r) = reloader {
            let _ = r.await;
        }
        otlp?;
        http
    }
}

/// Resolves quiet incidents periodically (every tenth of the quiet time, between 1 s and 60 s).
async fn auto_resolve(
    pipeline: Arc<Mutex<pipeline::Pipeline>>,
    quiet: Duration,
    shutdown: CancellationToken,
) {
    let every = (quiet / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let p = pipeline.clone();
        let now = daytwo_model::Timestamp::from_system_time(std::time::SystemTime::now());
        let result = tokio::task::spawn_blocking(move || {
            p.lock()
                .unwrap_or_else(|e| e.into_inner())
                .resolve_quiet(now, quiet)
        })
        .await;
        match result {
            Ok(Ok(ids)) => {
                for id in ids {
                    info!(incident = %id, quiet_secs = quiet.as_secs(), "Incident auto-resolved: its signals cleared.");
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Auto-resolve could not read or write the store; will retry.")
            }
            Err(e) => tracing::warn!(error = %e, "Auto-resolve task failed; will retry."),
        }
    }
}
