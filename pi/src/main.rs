//! `graze-pi` binary: parse flags, then run the MPI loop (see the library).

fn main() -> anyhow::Result<()> {
    let cli = graze_pi::try_parse_cli(std::env::args_os()).unwrap_or_else(|e| e.exit());
    graze_pi::run(&cli)
}
