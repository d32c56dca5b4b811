//! `daytwo up`, `daytwo collector` and `daytwo agent`: build the runtime, start the parts,
//! stop cleanly on Ctrl-C or SIGTERM.

use crate::cli::{AgentArgs, CollectorArgs, UpArgs};
use crate::config;
use anyhow::{Context, Result};
use axum::response::IntoResponse;
use axum::serve::ListenerExt;
use std::future::IntoFuture;
use std::io::Write;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Cancels `token` on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed before this
/// returns, so a signal that arrives right after start-up still stops the process cleanly.
fn stop_on_signal(token: CancellationToken) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        info!("Stopping.");
        token.cancel();
    });
    Ok(())
}

fn print_listening(http: std::net::SocketAddr, otlp: std::net::SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening http={http} otlp={otlp}");
    let _ = out.flush();
}

pub fn up(args: UpArgs) -> Result<ExitCode> {
    let file = config::load_file(args.common.config.as_deref())?;
    let ccfg = config::collector_config(&args.common, &args.collector, &file)?;
    let mut acfg = config::agent_config(&args.common, None, &args.agent, &file)?;
    acfg.kube = config::agent_kube(&args.kube, &file)?;
    config::host_is_node(&mut acfg, &args.agent, &file);
    let kube = config::collector_kube(&args.kube, &file)?;
    runtime()?.block_on(async move {
        let registry = prometheus::Registry::new();
        let mut collector = daytwo_collector::Collector::bind(ccfg, &registry).await?;
        collector.set_kube(kube)?;
        let (http, otlp) = (collector.http_addr(), collector.otlp_addr());
        // The in-process agent ships over loopback OTLP exactly as a remote agent does.
        let host = if otlp.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            otlp.ip().to_string()
        };
        acfg.collector = format!("http://{host}:{}", otlp.port());
        let (agent, warnings) = daytwo_agent::Agent::new(acfg, &registry)?;
        for w in warnings {
            warn!("{w}");
        }
        let token = CancellationToken::new();
        stop_on_signal(token.clone())?;
        print_listening(http, otlp);
        let agent_task = tokio::spawn(agent.run(token.clone()));
        let result = collector.run(token.clone()).await;
        token.cancel();
        let agent_result = agent_task.await.context("agent task panicked")?;
        result?;
        agent_result?;
        Ok(ExitCode::SUCCESS)
    })
}

pub fn collector(args: CollectorArgs) -> Result<ExitCode> {
    let file = config::load_file(args.common.config.as_deref())?;
    let ccfg = config::collector_config(&args.common, &args.collector, &file)?;
    let kube = config::collector_kube(&args.kube, &file)?;
    runtime()?.block_on(async move {
        let registry = prometheus::Registry::new();
        let mut collector = daytwo_collector::Collector::bind(ccfg, &registry).await?;
        collector.set_kube(kube)?;
        let token = CancellationToken::new();
        stop_on_signal(token.clone())?;
        print_listening(collector.http_addr(), collector.otlp_addr());
        collector.run(token).await?;
        Ok(ExitCode::SUCCESS)
    })
}

pub fn agent(args: AgentArgs) -> Result<ExitCode> {
    let file = config::load_file(args.common.config.as_deref())?;
    let mut acfg = config::agent_config(&args.common, args.collector.clone(), &args.agent, &file)?;
    acfg.kube = config::agent_kube(&args.kube, &file)?;
    config::host_is_node(&mut acfg, &args.agent, &file);
    let http_addr = args
        .http_addr
        .or(file.agent.http_addr)
        .unwrap_or_else(|| "127.0.0.1:7701".parse().expect("valid default"));
    runtime()?.block_on(async move {
        let registry = prometheus::Registry::new();
        let (agent, warnings) = daytwo_agent::Agent::new(acfg, &registry)?;
        for w in warnings {
            warn!("{w}");
        }
        let listener = tokio::net::TcpListener::bind(http_addr).await.with_context(|| {
            format!("cannot listen on {http_addr} for the agent's /metrics (use --http-addr, port 0 for any free port)")
        })?;
        let addr = listener.local_addr()?;
        let token = CancellationToken::new();
        stop_on_signal(token.clone())?;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening http={addr}");
        let _ = out.flush();
        drop(out);
        let http = tokio::spawn(
            axum::serve(
                listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                }),
                agent_router(registry),
            )
                .with_graceful_shutdown(token.clone().cancelled_owned())
                .into_future(),
        );
        let result = agent.run(token.clone()).await;
        token.cancel();
        let _ = http.await;
        result?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The standalone agent's own HTTP: `/metrics` (Prometheus text) and `/healthz`.
fn agent_router(registry: prometheus::Registry) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    use prometheus::Encoder;
                    let enc = prometheus::TextEncoder::new();
                    let mut buf = Vec::new();
                    match enc.encode(&registry.gather(), &mut buf) {
                        Ok(()) => (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                enc.format_type().to_string(),
                            )],
                            buf,
                        )
                            .into_response(),
                        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                            .into_response(),
                    }
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        // Sources are open and the shipper runs once this answers (it is served after
        // `Agent::new` returned); queue health is in /metrics.
        .route("/readyz", get(|| async { "ready\n" }))
}
