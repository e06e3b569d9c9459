//! Requests from the CLI and the TUI, and the scheduler's answers.

use crate::batch::{ArraySpec, ArrayTask, Dependency, JobRef, TimeSignal};
use crate::history::{AttemptView, HarvestData, HistoryQuery};
use crate::ids::JobId;
use crate::node::{NodeInfo, NodeStatus};
use crate::values::{ExitStatus, HostSlots, LogLine, Unit};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A job as submitted. Options added after protocol 4's first form default when absent, so
/// `..JobSpec::default()` fills what a caller leaves out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct JobSpec {
    /// Name for people; defaults to the command's first word.
    pub name: Option<String>,
    /// Number of ranks (cores, sockets or nodes, per `unit`).
    pub nprocs: u32,
    /// What one rank reserves.
    pub unit: Unit,
    /// Higher runs first.
    pub priority: i32,
    /// Node groups the job's nodes must all belong to.
    pub groups: Vec<String>,
    /// If not empty, the only nodes the job may use.
    pub nodes: Vec<String>,
    /// The main command, e.g. `mpiexec graze-pi`.
    pub command: Vec<String>,
    /// Working directory on the first node.
    pub cwd: Option<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Who submitted it. The client sends its login name; the scheduler replaces it with the
    /// name of the identity whose token submitted the job.
    pub user: String,
    /// `--stdout PATTERN`: also write stdout to this file on the first node, relative to `cwd`
    /// (`%j` job, `%r` rank, `%a` array index, `%A` array job, `%n` attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    /// `--stderr PATTERN`, as `stdout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// `--time`: limit on running time (ms); time suspended for an owner does not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit_ms: Option<u64>,
    /// `--signal SIG@T`: sent that long before the time limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_signal: Option<TimeSignal>,
    /// `--begin`: not started before this time (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub begin_ms: Option<u64>,
    /// `--hold`: not started until `graze release`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hold: bool,
    /// `--exclusive`: whole nodes, no other job beside it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exclusive: bool,
    /// `--array`: one task per index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<ArraySpec>,
    /// `--after`: jobs (or whole arrays) this one waits for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<Dependency>,
    /// `--checkpoint` (and its options): the job follows graze's checkpoint protocol
    /// ([`crate::CheckpointSpec`]); at a vacate it gets the signal and a grace period, and the
    /// next run is restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<crate::CheckpointSpec>,
    /// `--trace` (protocol 8): preload graze's MPI tracer into every rank, sync the nodes'
    /// clocks during the run and keep the trace for `graze trace`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trace: bool,
}

/// A job's state.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for cores.
    Queued,
    /// Running.
    Running,
    /// Placed and holding its cores, but every process stopped (SIGSTOP) on every node,
    /// because the owner of one of its nodes reclaimed that PC.
    Suspended,
    /// Cancel asked; processes being killed.
    Cancelling,
    /// Ended with exit code 0.
    Completed,
    /// Ended otherwise.
    Failed,
    /// Cancelled by a user.
    Cancelled,
    /// Killed at its time limit.
    Timeout,
    /// Never run: a job it depended on ended in a way that can never meet the dependency.
    DependencyFailed,
}

impl JobState {
    /// True once the job will not run again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Completed
                | JobState::Failed
                | JobState::Cancelled
                | JobState::Timeout
                | JobState::DependencyFailed
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Suspended => "suspended",
            JobState::Cancelling => "cancelling",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Timeout => "timeout",
            JobState::DependencyFailed => "dependency-failed",
        })
    }
}

/// One event in a job's life, for `graze show`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct JobEvent {
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
    /// What happened.
    pub what: String,
    /// The event's place among all the scheduler's events (one counter for every job), so
    /// two events of the same millisecond (a task's end and the next task's start) are told
    /// apart. 0 in records from before protocol 5.
    #[serde(default)]
    pub seq: u64,
}

/// A job as the CLI shows it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct JobView {
    /// Id.
    pub id: JobId,
    /// The spec as submitted.
    pub spec: JobSpec,
    /// Current state.
    pub state: JobState,
    /// Why a queued job waits.
    pub waiting_for: Option<String>,
    /// Submit time, ms since the Unix epoch.
    pub submitted_ms: u64,
    /// Start of the current or last run.
    pub started_ms: Option<u64>,
    /// End time.
    pub ended_ms: Option<u64>,
    /// Current or last allocation.
    pub allocation: Vec<HostSlots>,
    /// How the main command ended.
    pub exit: Option<ExitStatus>,
    /// Times the job was requeued.
    pub requeues: u32,
    /// Life events.
    pub events: Vec<JobEvent>,
    /// A queued job's reservation (EASY backfill): the scheduler expects it to start by then
    /// (ms since the Unix epoch), when running jobs reach their time limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_start_ms: Option<u64>,
    /// For a task of an array: the array and the task's index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<ArrayTask>,
    /// The job's stored checkpoints, oldest first (filled in by the scheduler's driver).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<crate::CheckpointView>,
}

/// A whole job array (`graze show 7`, `graze wait 7`, `graze cancel 7`): its tasks in index
/// order.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ArrayView {
    /// The array's id.
    pub id: JobId,
    /// Every task.
    pub tasks: Vec<JobView>,
}

/// A node's load-only change, in [`ClientReply::NodeLoads`]: these fields of its status
/// are new, the rest of its view (availability, idle sources, cores, jobs) is as last told.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NodeLoad {
    /// The node.
    pub node: String,
    /// [`NodeStatus::core_load`].
    pub core_load: Vec<f32>,
    /// [`NodeStatus::owner_cpu`].
    pub owner_cpu: f32,
    /// [`NodeStatus::owner_idle_ms`].
    pub owner_idle_ms: u64,
}

impl NodeLoad {
    /// The load-only part of `status`.
    pub fn of(node: String, status: &NodeStatus) -> NodeLoad {
        NodeLoad {
            node,
            core_load: status.core_load.clone(),
            owner_cpu: status.owner_cpu,
            owner_idle_ms: status.owner_idle_ms,
        }
    }

    /// Put these fields into `status`.
    pub fn apply(&self, status: &mut NodeStatus) {
        status.core_load.clone_from(&self.core_load);
        status.owner_cpu = self.owner_cpu;
        status.owner_idle_ms = self.owner_idle_ms;
    }
}

/// A node as the CLI shows it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NodeView {
    /// What the agent registered.
    pub info: NodeInfo,
    /// Connected now.
    pub online: bool,
    /// Latest status, if any arrived.
    pub status: Option<NodeStatus>,
    /// Cores in use by jobs.
    pub used_cores: u32,
    /// Jobs with ranks on this node.
    pub jobs: Vec<JobId>,
    /// Drained by an admin: takes no new work; running jobs go on.
    #[serde(default)]
    pub drained: bool,
}

/// Which attempt's output `graze logs --attempt` asks for.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogAttempt {
    /// The latest attempt with output (the current run's once it wrote something).
    #[default]
    Latest,
    /// This attempt (1 is the first run).
    Number(u64),
    /// Every attempt, in order.
    All,
}

impl LogAttempt {
    /// True for [`LogAttempt::Latest`].
    pub fn is_latest(&self) -> bool {
        *self == LogAttempt::Latest
    }
}

/// One request from the CLI; each goes on its own stream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientRequest {
    /// Queue a job. Answer: [`ClientReply::Submitted`] or [`ClientReply::Error`].
    Submit(Box<JobSpec>),
    /// All jobs not yet final, plus recent final ones. Answer: [`ClientReply::Jobs`].
    Queue {
        /// Include every finished job too.
        all: bool,
    },
    /// All nodes. Answer: [`ClientReply::Nodes`].
    Nodes,
    /// One job, or one task (`7.3`). Answer: [`ClientReply::Job`]; for a whole array (`7`),
    /// [`ClientReply::Array`].
    Show(JobRef),
    /// Cancel a job, one task, or every task of an array not yet final. Answer:
    /// [`ClientReply::Job`] (or [`ClientReply::Array`]) with the new state.
    Cancel(JobRef),
    /// `graze requeue`: vacate a running or suspended job now and queue it again at the
    /// front of its priority. Owner or admin only. Answer: [`ClientReply::Job`] with the new
    /// state, or [`ClientReply::Error`] (not running, an array, `checkpoint` for a job
    /// without `--checkpoint`).
    Requeue {
        /// The job, or one task of an array.
        job: JobRef,
        /// Take a checkpoint first (the job must have been submitted with `--checkpoint`);
        /// without it a checkpointing job is vacated plainly and keeps its stored checkpoint.
        #[serde(default)]
        checkpoint: bool,
    },
    /// Answer with [`ClientReply::Job`] once the job is final; for a whole array with
    /// [`ClientReply::Array`] once every task is.
    Wait(JobRef),
    /// Let a held job (`--hold`, `graze hold`) be scheduled. Owner or admin only. Answer:
    /// [`ClientReply::Job`], or [`ClientReply::Error`] when the job is not held.
    Release(JobRef),
    /// Hold a queued job: it is not started until [`ClientRequest::Release`]. Owner or admin
    /// only. Answer as for [`ClientRequest::Release`].
    Hold(JobRef),
    /// Output lines, then [`ClientReply::LogEnd`]; with `follow`, until the job is final.
    Logs {
        /// The job, or one task of an array.
        job: JobRef,
        /// Only this rank.
        rank: Option<u32>,
        /// Keep streaming while the job runs.
        follow: bool,
        /// Which attempt (run) of the job; the latest when absent.
        #[serde(default, skip_serializing_if = "LogAttempt::is_latest")]
        attempt: LogAttempt,
    },
    /// Stop placing new work on a node; its running jobs go on. Admin tokens only.
    /// Answer: [`ClientReply::Nodes`] with that one node, or [`ClientReply::Error`].
    Drain {
        /// Node name.
        node: String,
    },
    /// Let a drained node take work again. Admin tokens only. Answer as for
    /// [`ClientRequest::Drain`].
    Undrain {
        /// Node name.
        node: String,
    },
    /// Live cluster data for `graze top`: one [`ClientReply::Snapshot`] of every node and every
    /// job (finished ones included), then [`ClientReply::NodeChanged`] and
    /// [`ClientReply::JobChanged`] deltas on the same stream until the client closes it, and
    /// [`ClientReply::NodeLoads`], the load-only changes of many nodes in one frame. On a
    /// large cluster the snapshot holds only the first nodes and jobs and the others follow
    /// at once as deltas (a delta of a node or job not yet known adds it), so that no frame
    /// nears [`crate::MAX_FRAME`].
    /// A node's load-only changes are sent at most about once a second per node (batched
    /// every 250 ms); changes of
    /// availability, connection, cores or jobs at once. Nodes and jobs are never removed from a
    /// scheduler's tables (offline nodes stay, finished jobs stay), so there is no removal delta.
    Watch,
    /// Ended attempts (runs) of jobs, oldest first; a user token sees only its own jobs'.
    /// Answer: [`ClientReply::History`] or [`ClientReply::Error`] (a bad state name).
    History(HistoryQuery),
    /// The harvest report's data since a time (ms since the Unix epoch); a user token sees
    /// only its own jobs' attempts, every node's figures. Answer: [`ClientReply::Harvest`].
    Harvest {
        /// Start of the period.
        since_ms: u64,
    },
    /// `graze clusrun`: run a command once on each chosen node, now (admin tokens only).
    /// Answer: [`ClientReply::ClusrunOutput`] lines as they come, then one
    /// [`ClientReply::ClusrunEnd`]; or [`ClientReply::Error`] before anything runs.
    Clusrun(Box<crate::clusrun::ClusrunSpec>),
    /// `graze trace`: the stored trace files of a traced job's run (the latest stored attempt
    /// when `attempt` is absent). Answer: [`ClientReply::TraceFile`] chunks, then one
    /// [`ClientReply::TraceEnd`]; or [`ClientReply::Error`] (not traced, no trace yet).
    Trace {
        /// The job, or one task of an array.
        job: JobRef,
        /// Which run (1 is the first).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attempt: Option<u64>,
    },
}

/// Answers to a [`ClientRequest`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum ClientReply {
    /// The job was queued with this id.
    Submitted {
        /// Its id.
        id: JobId,
    },
    /// Jobs.
    Jobs(Vec<JobView>),
    /// Nodes.
    Nodes(Vec<NodeView>),
    /// One job.
    Job(Box<JobView>),
    /// A whole array.
    Array(Box<ArrayView>),
    /// Output lines.
    Log(Vec<LogLine>),
    /// Sent in answer to [`ClientRequest::Logs`] before the lines of attempt `attempt` (and
    /// to a follower when a new attempt starts); `attempts` lists every attempt that has
    /// output so far.
    LogAttempt {
        /// The attempt whose lines follow.
        attempt: u64,
        /// Every attempt with output, in order.
        attempts: Vec<u64>,
    },
    /// No more output.
    LogEnd,
    /// First answer to [`ClientRequest::Watch`]: every node and every job.
    Snapshot {
        /// All nodes.
        nodes: Vec<NodeView>,
        /// All jobs, finished ones included.
        jobs: Vec<JobView>,
    },
    /// A [`ClientRequest::Watch`] delta: this node's new view replaces the old one.
    NodeChanged(Box<NodeView>),
    /// A [`ClientRequest::Watch`] delta: load-only changes (core load, owner CPU and idle
    /// time) of these nodes, put into the status known; a node not yet known (or with no
    /// status yet) is skipped: its view comes as [`ClientReply::NodeChanged`] first. One frame carries the
    /// changes of many nodes: a frame per node and second was most of a large cluster's feed.
    NodeLoads(Vec<NodeLoad>),
    /// A [`ClientRequest::Watch`] delta: this job's new view replaces the old one (or is new).
    JobChanged(Box<JobView>),
    /// Answer to [`ClientRequest::History`].
    History(Vec<AttemptView>),
    /// Answer to [`ClientRequest::Harvest`].
    Harvest(Box<HarvestData>),
    /// One output line of a [`ClientRequest::Clusrun`], labelled with its node.
    ClusrunOutput(crate::clusrun::ClusrunLine),
    /// The [`ClientRequest::Clusrun`] ended: every chosen node's result, in name order.
    ClusrunEnd {
        /// Per node.
        results: Vec<crate::clusrun::ClusrunResult>,
    },
    /// One chunk of a stored trace file (answer to [`ClientRequest::Trace`]); a file's
    /// chunks come in order, at most [`crate::TRACE_CHUNK`] bytes each.
    TraceFile {
        /// The node that sent it.
        node: String,
        /// Its name ([`crate::trace_file_name_ok`]).
        name: String,
        /// The bytes, hex.
        hex: String,
    },
    /// Every file of the trace was sent.
    TraceEnd {
        /// The attempt they belong to.
        attempt: u64,
        /// Every attempt with a stored trace.
        attempts: Vec<u64>,
    },
    /// The request failed.
    Error {
        /// Why, for a person.
        message: String,
    },
}
