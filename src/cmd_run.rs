//! `daytwo up`, `daytwo collector` and `daytwo agent`: build the runtime, start the parts,
//! stop cleanly on Ctrl-C or SIGTERM.

use crate::cli::{AgentArgs, CollectorArgs, UpArgs};
use crate::config;
use anyhow::{Context, Result};
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

/// Cancels `token` on Ctrl-C or SIGTERM.
fn stop_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        info!("Stopping.");
        token.cancel();
    });
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
    runtime()?.block_on(async move {
        let registry = prometheus::Registry::new();
        let collector = daytwo_collector::Collector::bind(ccfg, &registry).await?;
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
        print_listening(http, otlp);
        let token = CancellationToken::new();
        stop_on_signal(token.clone());
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
    runtime()?.block_on(async move {
        let registry = prometheus::Registry::new();
        let collector = daytwo_collector::Collector::bind(ccfg, &registry).await?;
        print_listening(collector.http_addr(), collector.otlp_addr());
        let token = CancellationToken::new();
        stop_on_signal(token.clone());
        collector.run(token).await?;
        Ok(ExitCode::SUCCESS)
    })
}

pub fn agent(args: AgentArgs) -> Result<ExitCode> {
    let file = config::load_file(args.common.config.as_deref())?;
    let acfg = config::agent_config(&args.common, args.collector.clone(), &args.agent, &file)?;
    runtime()?.block_on(async move {
        let registry = prometheus::Registry::new();
        let (agent, warnings) = daytwo_agent::Agent::new(acfg, &registry)?;
        for w in warnings {
            warn!("{w}");
        }
        let token = CancellationToken::new();
        stop_on_signal(token.clone());
        agent.run(token).await?;
        Ok(ExitCode::SUCCESS)
    })
}
