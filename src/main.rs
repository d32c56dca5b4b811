//! The `daytwo` binary: one executable for the collector, the agent, both together (`up`),
//! and the on-call CLI.
//!
//! Each subcommand lives in its own module; this file only parses flags, sets up logging and
//! maps failures to exit codes: 0 ok, 1 the command ran and found a problem (a failed rule test,
//! an API error), 2 bad usage or configuration (like clap's own usage errors).

mod cli;
mod cmd_deploy;
mod cmd_incidents;
mod cmd_logs;
mod cmd_replay;
mod cmd_rules;
mod cmd_run;
mod cmd_silences;
mod config;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // reqwest is built without a default TLS provider so that aws-lc never enters the tree.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = cli::Cli::parse();
    init_logging(&cli.log_level, cli.log_format);
    let result = match cli.command {
        cli::Command::Up(args) => cmd_run::up(args),
        cli::Command::Collector(args) => cmd_run::collector(args),
        cli::Command::Agent(args) => cmd_run::agent(args),
        cli::Command::Incidents(args) => cmd_incidents::run(args),
        cli::Command::Silences(args) => cmd_silences::run(args),
        cli::Command::Rules(args) => cmd_rules::run(args),
        cli::Command::Logs(args) => cmd_logs::run(args),
        cli::Command::Replay(args) => cmd_replay::run(args),
        cli::Command::Deploy(args) => cmd_deploy::run(args, &cli.log_level),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let code = match e.downcast_ref::<config::UsageError>() {
                Some(_) => 2,
                None => 1,
            };
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn init_logging(level: &str, format: cli::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DAYTWO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // kube's client and watcher log every failed request (ERROR/WARN per retry); daytwo's watch
    // loop logs an outage once and counts every failure (daytwo_k8s::watch).
    let filter = filter
        .add_directive(
            "kube_client::client::builder=off"
                .parse()
                .expect("valid directive"),
        )
        .add_directive(
            "kube_runtime::watcher=error"
                .parse()
                .expect("valid directive"),
        );
    // Colours only on a terminal: logs that go to a file or journald stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        cli::LogFormat::Json => builder.json().init(),
        cli::LogFormat::Text => builder.init(),
    }
}
