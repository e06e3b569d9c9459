//! `graze` binary: everything is in the library, see [`graze::main_entry`].

fn main() -> std::process::ExitCode {
    graze::main_entry()
}
