//! `graze-agent`: see the library documentation.

use anyhow::Context;
use clap::Parser;
use graze_agent::config::{self, Cli, Defaults};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    graze_net::init_tracing("info", graze_net::LogTo::Stderr);
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
        Some(config::AgentCommand::Doctor(a)) => {
            if !graze_agent::doctor::run(a)? {
                std::process::exit(1);
            }
            return Ok(());
        }
        Some(config::AgentCommand::Snooze(a)) => {
            let req = graze_agent::owner::local::parse_snooze(&a.what)
                .map_err(|e| anyhow::anyhow!("invalid snooze: {e}"))?;
            return owner_ask(&a.socket.socket, &req);
        }
        Some(config::AgentCommand::Status(a)) => {
            return owner_ask(&a.socket, &graze_agent::owner::local::Request::Status);
        }
        Some(config::AgentCommand::Guard(a)) => {
            graze_agent::jobs::guard::run(a);
            return Ok(());
        }
        Some(config::AgentCommand::OutputWriter(a)) => {
            std::process::exit(graze_agent::jobs::outfiles::run(a));
        }
        Some(config::AgentCommand::CheckpointPack(a)) => {
            std::process::exit(graze_agent::jobs::checkpoint::run_pack(a));
        }
        Some(config::AgentCommand::CheckpointUnpack(a)) => {
            std::process::exit(graze_agent::jobs::checkpoint::run_unpack(a));
        }
        Some(config::AgentCommand::TracerLib(a)) => {
            return graze_agent::tracer::run_tracer_lib(a);
        }
        None => {}
    }
    let cfg = config::load(&cli, &Defaults::detect())?;
    // One thread: an idle agent wakes 20 times a second (the owner watch's tick) and once a
    // second for its status; on a multi-thread runtime each wake-up hopped between worker
    // threads (futex wake-ups and context switches: about 0.3 % of a core idle, against
    // 0.1 % targeted). Blocking work goes to spawn_blocking threads as before.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(graze_agent::run(cfg, graze_net::shutdown_signal()))
}

/// Ask the local agent; its answer on stdout, or its refusal as the error.
fn owner_ask(
    socket: &std::path::Path,
    req: &graze_agent::owner::local::Request,
) -> anyhow::Result<()> {
    let (ok, text) = graze_agent::owner::local::ask(socket, req).map_err(|e| anyhow::anyhow!(e))?;
    if ok {
        println!("{}", text.trim_end());
        Ok(())
    } else {
        anyhow::bail!("{}", text.trim_end())
    }
}
