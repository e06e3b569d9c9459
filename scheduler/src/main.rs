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
        let rt = tokio::runtime::Runtime::new()?;
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
