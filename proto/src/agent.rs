//! Messages from an agent to the scheduler.

use crate::ids::{JobId, LaunchId, RemoteId};
use crate::node::{NodeInfo, NodeStatus};
use crate::values::{ExitStatus, LogLine};
use serde::{Deserialize, Serialize};

/// Messages from an agent to the scheduler.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum AgentMsg {
    /// First message after the hello: who this node is.
    Register(NodeInfo),
    /// Load, owner idle time and availability; at least once a second and on every change.
    Status(NodeStatus),
    /// The launcher shim of a job running on this node asks to start a command on `host`.
    /// Answered by [`crate::SchedulerMsg::LaunchDone`].
    Launch {
        /// Id chosen by the agent, unique per agent process.
        id: LaunchId,
        /// The job the shim belongs to.
        job: JobId,
        /// The job's secret, proving the shim runs inside the job.
        secret: String,
        /// Target node name.
        host: String,
        /// The words to run with `sh -c`.
        command: Vec<String>,
    },
    /// The shim of launch `id` went away before its answer (hydra killed it, or mpiexec
    /// ended). Informational: the agent forgets the launch and the scheduler only logs it.
    /// What the launch started is not stopped on its own; it belongs to the job's run and is
    /// killed with it ([`crate::SchedulerMsg::KillJob`] to every node of the allocation when
    /// the main command ends, the job is cancelled or a node is lost).
    LaunchAbandoned {
        /// The launch.
        id: LaunchId,
    },
    /// One output line of clusrun `id` (not numbered: a clusrun does not outlive its link).
    ClusrunOutput {
        /// The run.
        id: crate::clusrun::ClusrunId,
        /// Stdout or stderr.
        stream: crate::values::Stream,
        /// The line.
        line: String,
    },
    /// Clusrun `id` ended here (or was refused or skipped).
    ClusrunDone {
        /// The run.
        id: crate::clusrun::ClusrunId,
        /// How.
        outcome: crate::clusrun::ClusrunOutcome,
        /// Lines the agent dropped past the output bound.
        #[serde(default)]
        dropped_lines: u64,
    },
    /// A job message, numbered so that none is lost or applied twice: the agent keeps it until
    /// the scheduler's [`crate::SchedulerMsg::Ack`] covers `seq`, resends it after a reconnect,
    /// and the scheduler drops numbers it already applied. Only job messages are numbered.
    Sequenced {
        /// Per agent instance, from 1, without gaps.
        seq: u64,
        /// The message.
        msg: JobMsg,
    },
}

/// The messages about a job's processes on a node: always sent inside
/// [`AgentMsg::Sequenced`], so they survive a broken connection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum JobMsg {
    /// One whole line of a job's output, labelled with its rank where known (the rank from
    /// hydra's `[rank@host]` label, which is cut off the line).
    Output {
        /// The job.
        job: JobId,
        /// The line.
        line: LogLine,
    },
    /// The job's main command (mpiexec) ended on this node.
    JobExited {
        /// The job.
        job: JobId,
        /// How it ended.
        exit: ExitStatus,
    },
    /// The job's main command could not be started.
    JobFailedToStart {
        /// The job.
        job: JobId,
        /// Why.
        reason: String,
    },
    /// Something about the job's run on this node worth an event in `graze show` (an output
    /// file that could not be created or written); the job goes on.
    JobNote {
        /// The job.
        job: JobId,
        /// What happened, for a person.
        what: String,
    },
    /// Every process of the job on this node is gone.
    JobCleared {
        /// The job.
        job: JobId,
    },
    /// The owner of this PC came back and every job process here is stopped: how long that
    /// took, from the owner watch seeing the input (µs). Sent once per release.
    OwnerReleased {
        /// The latency (µs).
        latency_us: u64,
        /// The jobs stopped.
        jobs: Vec<JobId>,
    },
    /// A command this agent started for a remote launch
    /// ([`crate::SchedulerMsg::SpawnRemote`]) ended, or could not start (then with code 127).
    RemoteExited {
        /// The scheduler's id for the remote process.
        remote: RemoteId,
        /// How it ended.
        exit: ExitStatus,
        /// The node whose shim asked for it (from [`crate::SchedulerMsg::SpawnRemote`]).
        origin: String,
        /// The origin agent's launch id.
        origin_id: LaunchId,
    },
}
