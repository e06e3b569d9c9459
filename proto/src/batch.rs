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

/// Most tasks one array may have (`--array 1-10000` is the largest range).
pub const MAX_ARRAY_TASKS: u32 = 10_000;

/// A reference to a job on the command line: `7` (a job, or a whole array) or `7.3` (task 3
/// of array 7).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobRef {
    /// The job, or the array.
    pub job: JobId,
    /// The task's index, for one task of an array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<u32>,
}

impl From<JobId> for JobRef {
    fn from(job: JobId) -> JobRef {
        JobRef { job, task: None }
    }
}

impl fmt::Display for JobRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.task {
            Some(t) => write!(f, "{}.{t}", self.job),
            None => write!(f, "{}", self.job),
        }
    }
}

/// What makes a job a task of an array: the array's id (what `graze submit` printed), the
/// task's index and the array's size and throttle. A task is otherwise an ordinary job with
/// its own id.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArrayTask {
    /// The array's id.
    pub array: JobId,
    /// This task's index.
    pub index: u32,
    /// How many tasks the array has.
    pub count: u32,
    /// The array's throttle (`%N`): never more than this many tasks running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<u32>,
}

impl ArrayTask {
    /// The task as the CLI names it: `7.3`.
    pub fn job_ref(&self) -> JobRef {
        JobRef {
            job: self.array,
            task: Some(self.index),
        }
    }
}

/// `1-3,7` for the indices `[1, 2, 3, 7]`, for names and messages (the scheduler's and the CLI's).
pub fn index_words(indices: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        let mut end = start;
        while i + 1 < indices.len() && indices[i + 1] == end + 1 {
            end += 1;
            i += 1;
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}
