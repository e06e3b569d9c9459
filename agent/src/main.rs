//! `graze-agent`: see the library documentation.

use anyhow::Context;
use clap::Parser;
use graze_agent::config::{self, Cli, Defaults};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("graze-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Some(config::AgentCommand::Install(a)) => {
            print!("{}", graze_agent::install::install(a)?);
            return Ok(());
        }
        Some(config::AgentCommand::Uninstall(a)) => {
            print!("{}", graze_agent::install::uninstall(a)?);
            return Ok(());
        }
        Some(config::AgentCommand::Guard(a)) => {
            graze_agent::jobs::guard::run(a);
            return Ok(());
        }
        None => {}
    }
    let cfg = config::load(&cli, &Defaults::detect())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(graze_agent::run(cfg, shutdown_signal()))
}

/// Completes on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM");
            None
        }
    };
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
