//! The agent's configuration: command line, optional TOML file, and defaults from the machine.
//!
//! The shape of ripgrep's `flags/`: `cli` the command lines (with the [`JobArgs`] shared by
//! running and installing), `file` the TOML file, `defaults` the default values, `values` the
//! resolved [`AgentConfig`] and each value's check, and `resolve` the merge: flags override
//! the file, the file overrides the defaults, and every bad value is quoted with where it came
//! from (`invalid KEY 'VALUE' in PATH: WHY`, `invalid --FLAG 'VALUE': WHY`).

mod cli;
mod defaults;
mod file;
mod resolve;
mod values;

pub use cli::{AgentCommand, Cli, InstallArgs, JobArgs, UninstallArgs};
pub use defaults::{
    find_launcher, find_on_path, Defaults, DEFAULT_NICE, DEFAULT_NODE_TIMEOUT,
    DEFAULT_OWNER_CPU_MAX, DEFAULT_START_AFTER, LAUNCHER_NAME,
};
pub use file::{ConfigFile, FileConfig};
pub use resolve::{load, resolve, NO_IDLE_SOURCE};
pub(crate) use values::{check_nice, parse_size};
pub use values::{AgentConfig, Policy};

#[cfg(test)]
mod tests;
