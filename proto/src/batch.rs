//! A job's batch options: time limits, array shape and dependencies. Plain values the CLI
//! fills in and the scheduler checks; the CLI's words for them (`2h`, `1-100%10`, `ok:7`) are
//! parsed by the CLI.

use crate::ids::JobId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A signal sent before a job's time limit (`--signal TERM@60s`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeSignal {
    /// The signal number (Linux numbering).
    pub signal: i32,
    /// How long before the limit it is sent (ms).
    pub before_ms: u64,
}

/// The shape of a job array (`--array 1-100%10`, `--array 1,5,9`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ArraySpec {
    /// The task indices, ascending, without repeats.
    pub indices: Vec<u32>,
    /// Never more than this many tasks running at once.
    pub throttle: Option<u32>,
}

/// What a dependency needs of the job it names.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DepKind {
    /// The job (every task, for an array) completed with exit code 0.
    Ok,
    /// The job (some task, for an array) ended otherwise: failed, timed out, cancelled.
    NotOk,
    /// The job ended, however.
    Any,
}

impl fmt::Display for DepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DepKind::Ok => "ok",
            DepKind::NotOk => "notok",
            DepKind::Any => "any",
        })
    }
}

/// One dependency (`--after ok:7`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dependency {
    /// What is needed.
    pub kind: DepKind,
    /// Of which job (or whole array).
    pub job: JobId,
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.job)
    }
}
