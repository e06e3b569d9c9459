//! Plain value types shared by several messages.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How a process ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ExitStatus {
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// Signal number, if it was killed by one.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
    /// Code a shell would report: the code, or 128 + signal.
    pub fn shell_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 1,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit {c}"),
            (None, Some(s)) => write!(f, "signal {s}"),
            (None, None) => write!(f, "unknown"),
        }
    }
}

/// Which output stream a line came from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A host of an allocation and how many ranks it runs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HostSlots {
    /// Node name.
    pub host: String,
    /// Ranks (slots) on it.
    pub slots: u32,
}

/// How ranks are counted for a job.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// One rank per core.
    #[default]
    Core,
    /// One rank per socket; the socket's cores are reserved.
    Socket,
    /// One rank per node; the whole node is reserved.
    Node,
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unit::Core => "core",
            Unit::Socket => "socket",
            Unit::Node => "node",
        })
    }
}

/// One stored output line.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Rank, if known.
    pub rank: Option<u32>,
    /// Stream.
    pub stream: Stream,
    /// Text.
    pub line: String,
}

/// How a remote launch ended, as the origin agent's shim learns it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LaunchOutcome {
    /// The remote command ran and ended like this.
    Exited(ExitStatus),
    /// The remote command never started: the scheduler refused the launch (wrong secret, a
    /// node outside the allocation, a job not running, a node offline).
    Refused {
        /// Why, for a person.
        reason: String,
    },
}
