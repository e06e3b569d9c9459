//! The TOML file: every key optional, unknown keys refused, and the path it was read from kept
//! for error messages.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The TOML file's contents. Every key is optional.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// See [`crate::AgentConfig::access`].
    pub access: Option<PathBuf>,
    /// See [`crate::AgentConfig::name`].
    pub name: Option<String>,
    /// See [`crate::AgentConfig::cores`].
    pub cores: Option<u32>,
    /// See [`crate::AgentConfig::bind`].
    pub bind: Option<String>,
    /// See [`crate::AgentConfig::groups`].
    pub groups: Option<Vec<String>>,
    /// See [`crate::AgentConfig::idle_sources`].
    pub idle_sources: Option<Vec<String>>,
    /// See [`crate::AgentConfig::start_after`]; e.g. `"15m"`.
    pub start_after: Option<String>,
    /// See [`crate::AgentConfig::owner_cpu_max`].
    pub owner_cpu_max: Option<u32>,
    /// See [`crate::config::Policy::resume_after`].
    pub resume_after: Option<String>,
    /// See [`crate::config::Policy::vacate_after`].
    pub vacate_after: Option<String>,
    /// See [`crate::config::Policy::vacate_grace`].
    pub vacate_grace: Option<String>,
    /// See [`crate::config::Policy::windows`].
    pub windows: Option<Vec<String>>,
    /// See [`crate::AgentConfig::spool`].
    pub spool: Option<PathBuf>,
    /// See [`crate::AgentConfig::launcher`].
    pub launcher: Option<PathBuf>,
    /// See [`crate::AgentConfig::node_timeout`].
    pub node_timeout: Option<String>,
    /// See [`crate::AgentConfig::run_as`].
    pub run_as: Option<String>,
    /// See [`crate::AgentConfig::slot_users`].
    pub slot_users: Option<String>,
    /// See [`crate::AgentConfig::nice`].
    pub nice: Option<i32>,
    /// See [`crate::AgentConfig::memory_max`]; e.g. `"4G"`.
    pub memory_max: Option<String>,
    /// See [`crate::AgentConfig::checkpoint_rate`]; bytes per second, e.g. `"10M"`.
    pub checkpoint_rate: Option<String>,
    /// See [`crate::AgentConfig::owner_socket`].
    pub owner_socket: Option<PathBuf>,
    /// See [`crate::AgentConfig::utmp`].
    pub utmp: Option<PathBuf>,
}

/// A config file and where it came from (for error messages).
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigFile {
    /// The path as given.
    pub path: PathBuf,
    /// Its contents.
    pub values: FileConfig,
}

impl ConfigFile {
    /// Read and parse a config file; a missing or invalid file is an error.
    pub fn load(path: &Path) -> Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file '{}'", path.display()))?;
        ConfigFile::parse(path, &text)
    }

    /// Parse config text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile> {
        let values: FileConfig = toml::from_str(text)
            .with_context(|| format!("invalid config file '{}'", path.display()))?;
        Ok(ConfigFile {
            path: path.to_owned(),
            values,
        })
    }
}
