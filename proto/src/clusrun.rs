//! `graze clusrun`: a command run once on each chosen node, now, beside the jobs (not queued,
//! no cores reserved), for admins. The CLI sends [`crate::ClientRequest::Clusrun`]; the
//! scheduler sends [`crate::SchedulerMsg::Clusrun`] to each chosen agent, which streams
//! [`crate::AgentMsg::ClusrunOutput`] lines and ends with [`crate::AgentMsg::ClusrunDone`];
//! the scheduler streams [`crate::ClientReply::ClusrunOutput`] lines to the CLI and ends with
//! [`crate::ClientReply::ClusrunEnd`].

use crate::values::{ExitStatus, Stream};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The longest `--timeout` a clusrun may have (24 hours), in ms.
pub const CLUSRUN_MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
/// Output kept per node and run: at most this many lines ...
pub const CLUSRUN_MAX_LINES: u32 = 10_000;
/// ... and at most this many bytes (1 MiB); what comes after is dropped and counted.
pub const CLUSRUN_MAX_BYTES: u64 = 1 << 20;

/// The scheduler's id of one clusrun, unique for the life of a scheduler process.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusrunId(pub u64);

impl fmt::Display for ClusrunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which nodes a clusrun runs on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NodeSelect {
    /// Every node the scheduler knows (offline ones are reported, not run).
    All,
    /// Every node of this group.
    Group(String),
    /// These nodes; every name must be known.
    Nodes(Vec<String>),
}

/// A clusrun as the CLI asks for it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ClusrunSpec {
    /// The nodes.
    pub select: NodeSelect,
    /// argv, run directly (no shell): `sh -c '...'` for shell syntax.
    pub command: Vec<String>,
    /// Kill the command's whole process set after this long, in ms (1 ..= [`CLUSRUN_MAX_TIMEOUT_MS`]).
    pub timeout_ms: u64,
    /// Run on nodes whose owner is present too (at nice 19 there).
    #[serde(default)]
    pub even_if_busy: bool,
}

/// How a clusrun ended on one node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum ClusrunOutcome {
    /// The command ran and ended (exit code or signal).
    Exited {
        /// How.
        exit: ExitStatus,
    },
    /// Killed (its whole process set) at the timeout.
    Timeout,
    /// The command could not start there (no such program, cannot confine it, ...).
    NotStarted {
        /// Why.
        reason: String,
    },
    /// The node's agent went away or stopped answering during the run.
    Lost {
        /// What happened.
        reason: String,
    },
    /// Not run there on purpose: the owner is present, no status yet, ...
    Skipped {
        /// Why.
        reason: String,
    },
    /// The node is known but its agent is not connected.
    Offline,
}

impl ClusrunOutcome {
    /// True when the node failed: a non-zero exit, a signal, a timeout, no start, a lost
    /// node. Skipped and offline nodes are not failures (they did not run).
    pub fn failed(&self) -> bool {
        match self {
            ClusrunOutcome::Exited { exit } => !exit.success(),
            ClusrunOutcome::Timeout
            | ClusrunOutcome::NotStarted { .. }
            | ClusrunOutcome::Lost { .. } => true,
            ClusrunOutcome::Skipped { .. } | ClusrunOutcome::Offline => false,
        }
    }

    /// True when the command ran on the node (whatever its exit).
    pub fn ran(&self) -> bool {
        matches!(
            self,
            ClusrunOutcome::Exited { .. } | ClusrunOutcome::Timeout | ClusrunOutcome::Lost { .. }
        )
    }
}

impl fmt::Display for ClusrunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusrunOutcome::Exited { exit } => write!(f, "{exit}"),
            ClusrunOutcome::Timeout => write!(f, "timeout"),
            ClusrunOutcome::NotStarted { reason } => write!(f, "not started: {reason}"),
            ClusrunOutcome::Lost { reason } => write!(f, "node lost: {reason}"),
            ClusrunOutcome::Skipped { reason } => write!(f, "skipped: {reason}"),
            ClusrunOutcome::Offline => write!(f, "offline"),
        }
    }
}

/// One node's result, in [`crate::ClientReply::ClusrunEnd`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ClusrunResult {
    /// Node name.
    pub node: String,
    /// How it ended there.
    pub outcome: ClusrunOutcome,
    /// Output lines dropped past [`CLUSRUN_MAX_LINES`] / [`CLUSRUN_MAX_BYTES`].
    #[serde(default)]
    pub dropped_lines: u64,
    /// How long it ran, in ms (0 when it did not run).
    #[serde(default)]
    pub elapsed_ms: u64,
}

/// One output line of a clusrun, in [`crate::ClientReply::ClusrunOutput`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ClusrunLine {
    /// The node it came from.
    pub node: String,
    /// Stdout or stderr.
    pub stream: Stream,
    /// The line, without its newline.
    pub line: String,
}
