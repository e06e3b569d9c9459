//! `graze-pi` binary: parse flags, then run the MPI loop (see the library).

use std::process::ExitCode;

fn main() -> anyhow::Result<ExitCode> {
    let cli = graze_pi::try_parse_cli(std::env::args_os()).unwrap_or_else(|e| e.exit());
    Ok(match graze_pi::run(&cli)? {
        graze_pi::Outcome::Finished => ExitCode::SUCCESS,
        graze_pi::Outcome::Checkpointed => ExitCode::from(graze_pi::EXIT_CHECKPOINTED as u8),
    })
}
