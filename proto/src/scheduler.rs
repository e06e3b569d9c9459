//! Messages from the scheduler to an agent.

use crate::ids::{JobId, LaunchId, RemoteId};
use crate::values::{HostSlots, LaunchOutcome};
use serde::{Deserialize, Serialize};

/// Messages from the scheduler to an agent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerMsg {
    /// Registration accepted.
    Registered {
        /// The scheduler's `node_timeout` in ms: the agent keeps jobs while it reconnects, and
        /// fences them when its link goes silent, within the shorter of this and its own.
        node_timeout_ms: u64,
    },
    /// Registration refused; the connection closes.
    RegisterRefused {
        /// Why.
        reason: String,
    },
    /// Run the job's main command on this node.
    StartJob {
        /// The job.
        job: JobId,
        /// argv of the main command.
        command: Vec<String>,
        /// Working directory, if the submitter asked for one.
        cwd: Option<String>,
        /// Extra environment variables.
        env: Vec<(String, String)>,
        /// The whole allocation, first host first.
        hosts: Vec<HostSlots>,
        /// Secret the job's launcher shim must present.
        secret: String,
        /// The run's epoch: grows with every (re)start of the job. Agents report it back in
        /// [`crate::HeldJob`] so a stale run can be fenced.
        epoch: u64,
        /// `--stdout PATTERN` ([`crate::Pattern`]): also write the job's output to files on
        /// this node, relative to the working directory.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stdout: Option<String>,
        /// `--stderr PATTERN`; without one stderr goes where stdout goes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stderr: Option<String>,
        /// A traced run (`--trace`, protocol 8): preload the tracer, sync the clock, upload the
        /// node's trace files before [`crate::JobMsg::JobCleared`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace: Option<crate::TraceRun>,
    },
    /// Start a command on this node for a job (a hydra proxy).
    SpawnRemote {
        /// The scheduler's id for this remote process.
        remote: RemoteId,
        /// The job it belongs to.
        job: JobId,
        /// Words to run with `sh -c`.
        command: Vec<String>,
        /// The run's epoch.
        epoch: u64,
        /// The node whose shim asked; echoed in [`crate::JobMsg::RemoteExited`] so the answer
        /// finds its way even across a scheduler restart.
        origin: String,
        /// The origin agent's launch id, echoed likewise.
        origin_id: LaunchId,
        /// A traced run, as in [`SchedulerMsg::StartJob`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace: Option<crate::TraceRun>,
    },
    /// A launch this agent asked for ([`crate::AgentMsg::Launch`]) ended, or was refused.
    LaunchDone {
        /// The agent's id of the launch.
        id: LaunchId,
        /// How it ended.
        outcome: LaunchOutcome,
    },
    /// Every [`crate::AgentMsg::Sequenced`] up to `seq` is applied and committed.
    Ack {
        /// Highest sequence number applied.
        seq: u64,
    },
    /// Kill every process of the job on this node, then answer [`crate::JobMsg::JobCleared`].
    KillJob {
        /// The job.
        job: JobId,
    },
    /// Gang suspend: SIGSTOP every process of the job on this node (another node of the job
    /// was reclaimed by its owner). No answer; the processes stay stopped until
    /// [`SchedulerMsg::ResumeJob`], a vacate or a kill.
    SuspendJob {
        /// The job.
        job: JobId,
    },
    /// Every node of the job is available again: SIGCONT its processes on this node, unless
    /// this node's own owner has reclaimed it meanwhile (then they stay stopped and the
    /// scheduler learns it from the next status).
    ResumeJob {
        /// The job.
        job: JobId,
    },
    /// Vacate: SIGCONT then SIGTERM every process of the job on this node, SIGKILL what is
    /// left after the agent's `vacate_grace`, then answer [`crate::JobMsg::JobCleared`].
    VacateJob {
        /// The job.
        job: JobId,
    },
    /// `graze clusrun`: run `command` on this node now, as the job user, in a clean
    /// environment and its own process group and cgroup, killed at `timeout_ms`. Answered by
    /// [`crate::AgentMsg::ClusrunOutput`] lines and one [`crate::AgentMsg::ClusrunDone`].
    Clusrun {
        /// The scheduler's id of the run.
        id: crate::clusrun::ClusrunId,
        /// argv.
        command: Vec<String>,
        /// Kill after this long, in ms.
        timeout_ms: u64,
        /// The owner may be present: run at nice 19, and do not refuse for a present owner.
        even_if_busy: bool,
    },
    /// Kill clusrun `id` here (the client went away, or the scheduler gave up on it). No
    /// answer is needed; a late [`crate::AgentMsg::ClusrunDone`] is ignored.
    ClusrunKill {
        /// The run.
        id: crate::clusrun::ClusrunId,
    },
    /// `--signal`: send `signal` to the job's program on this node (the ranks, not the MPI
    /// launcher: the agent skips `mpiexec`, `hydra_pmi_proxy` and the like, and the processes
    /// that run them). No answer. Ignored for another epoch of the job.
    SignalJob {
        /// The job.
        job: JobId,
        /// The run it is meant for.
        epoch: u64,
        /// The signal number (Linux numbering).
        signal: i32,
    },
    /// A checkpointing job's run is about to start here (sent to every node of the
    /// allocation before [`SchedulerMsg::StartJob`] reaches the first): create `dir`, empty the
    /// entries of `ranks` there, and with `restore` receive that checkpoint on a stream the
    /// scheduler opens ([`crate::CheckpointStream::Restore`]) and unpack this node's ranks from
    /// it. Until that is done the agent holds back the job's main command and remote launches
    /// here. The outcome of a restore is reported as a [`crate::JobMsg::JobNote`].
    CheckpointSetup {
        /// The job.
        job: JobId,
        /// The run.
        epoch: u64,
        /// `GRAZE_CHECKPOINT_DIR`: the same absolute path on every node.
        dir: String,
        /// The ranks this node runs (host-file order, [`crate::ranks_by_host`]).
        ranks: Vec<u32>,
        /// The checkpoint to restore, if the job has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restore: Option<crate::RestoreRef>,
        /// `GRAZE_CHECKPOINT_SIGNAL`, for processes this node starts with an environment of
        /// their own (Open MPI's `orted` does not pass on the main command's).
        #[serde(default = "default_checkpoint_signal")]
        signal: i32,
    },
    /// Take a checkpoint of the job on this node: with `signal`, SIGCONT the job's processes
    /// here and send it to the program (as [`SchedulerMsg::SignalJob`] does); wait until every
    /// rank in `ranks` wrote its marker ([`crate::done_marker`]), or, with `stop`, until the
    /// job's processes here are gone, at most `grace_ms`; with `stop` then SIGTERM and SIGKILL
    /// as a vacate does. Then send this node's part on a stream of its own
    /// ([`crate::CheckpointStream::Part`], also when there is nothing to send: with its
    /// error), and with `stop` answer [`crate::JobMsg::JobCleared`] only after the scheduler's
    /// reply on that stream. Without `stop` the job goes on (a periodic checkpoint). During the
    /// grace of a `stop` the owner's input does not stop the job again.
    Checkpoint {
        /// The job.
        job: JobId,
        /// The run it is meant for; ignored for another.
        epoch: u64,
        /// The checkpoint's id (echoed in the part).
        id: crate::CheckpointId,
        /// The ranks this node runs.
        ranks: Vec<u32>,
        /// The signal to send, if any (none when the ranks already exited with 85).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
        /// The grace period (ms).
        grace_ms: u64,
        /// End the job's processes here afterwards (a vacate), or let it go on (periodic).
        stop: bool,
    },
}

fn default_checkpoint_signal() -> i32 {
    crate::DEFAULT_CHECKPOINT_SIGNAL
}
