use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = graze_scheduler::config::Cli::parse();
    graze_net::init_tracing("info", graze_net::LogTo::Stderr);
    if let Some(graze_scheduler::config::Command::Token(cmd)) = &cli.command {
        let r = graze_scheduler::config::state_dir_of(&cli)
            .and_then(|dir| graze_scheduler::token_cmd::run(cmd, &dir));
        return match r {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("graze-scheduler: error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let result = (|| {
        let cfg = graze_scheduler::config::resolve(cli)?;
        // One thread for everything: per agent and second the scheduler handles a status and
        // sends an ack, and on a multi-thread runtime waking the other threads for each (the
        // endpoint's driver, the connection's, its reader, the owning task) cost more than the
        // work itself (at 2,000 agents 12.1 % of a core against 7.5 %). The owning task's
        // commits wait for their fsync on the blocking pool, so a slow disk does not stop
        // the packets (an agent that hears nothing for `node_timeout - 1 s` fences itself).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(graze_scheduler::run(
            cfg,
            graze_net::shutdown_signal(),
            |s| {
                eprintln!(
                    "graze-scheduler listening on {}; access file {}",
                    s.addr,
                    s.access_path.display()
                );
            },
        ))
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("graze-scheduler: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
