//! `graze-launch HOST WORDS...`: the remote launcher MPICH's hydra runs instead of ssh.
//! It asks the graze-agent of the job to start `WORDS` on `HOST` through the scheduler.

fn main() -> std::process::ExitCode {
    graze_agent::launch::shim_main()
}
