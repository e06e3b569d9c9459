//! graze wire protocol: the messages agents, the CLI and the scheduler exchange, and their framing.
//!
//! Every connection starts with a [`Hello`] from the connecting side, answered by a
//! [`HelloReply`]. After that an agent sends [`AgentMsg`] and receives [`SchedulerMsg`]; a client
//! sends one [`ClientRequest`] per stream and receives one or more [`ClientReply`].
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of JSON. Frames larger than
//! [`MAX_FRAME`] are refused before any allocation.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::fmt;

/// The protocol version this build speaks. Checked in the first message of every connection.
pub const PROTOCOL_VERSION: u32 = 3;

/// The largest frame body accepted, in bytes.
pub const MAX_FRAME: usize = 4 << 20;

/// The longest output line kept; longer lines are cut and marked.
pub const MAX_LINE: usize = 64 << 10;

/// A job's id, unique for the life of a scheduler state dir.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Id of one remote-launch request (one hydra proxy started on one node).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(transparent)]
pub struct LaunchId(pub u64);

/// Who is connecting.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A `graze-agent` offering a PC's cores.
    Agent,
    /// The `graze` command or the TUI.
    Client,
}

/// First message on every connection, from the connecting side.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The sender's [`PROTOCOL_VERSION`].
    pub version: u32,
    /// What the sender is.
    pub role: Role,
    /// The cluster token from the access file.
    pub token: String,
    /// Free text naming the sender's software, e.g. `graze-agent 0.1.0`.
    pub software: String,
}

/// The scheduler's answer to a [`Hello`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HelloReply {
    /// Accepted; the connection goes on.
    Welcome {
        /// The scheduler's protocol version.
        version: u32,
    },
    /// Refused; the scheduler closes the connection after this.
    Refused {
        /// Why, in words for a person.
        reason: String,
    },
}

/// Check a peer's version against ours, with an explicit error.
pub fn check_version(peer: &str, theirs: u32) -> Result<(), String> {
    if theirs == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(format!(
            "protocol version mismatch: this side speaks graze protocol {PROTOCOL_VERSION}, the {peer} speaks {theirs}; install the same graze version on both"
        ))
    }
}

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

/// An MPI implementation an agent found on its PATH.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MpiFlavour {
    /// `mpich` or `openmpi`.
    pub kind: String,
    /// Path of its launcher (`mpiexec` / `mpirun`).
    pub launcher: String,
    /// Version string, if it could be read.
    pub version: String,
}

/// What an agent tells about its PC when it registers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node name, unique in the cluster; the host name MPI sees.
    pub name: String,
    /// Address the agent runs jobs on (its bind address), for people.
    pub addr: String,
    /// Cores the agent offers when the PC is idle.
    pub cores: u32,
    /// CPU sockets (physical packages) of the PC.
    pub sockets: u32,
    /// Physical memory in bytes.
    pub memory_bytes: u64,
    /// Node groups this node belongs to.
    pub groups: Vec<String>,
    /// MPI implementations found on the agent's PATH.
    pub mpi: Vec<MpiFlavour>,
    /// The agent's software version.
    pub software: String,
    /// The owner policy the scheduler applies to this node's jobs.
    #[serde(default)]
    pub policy: OwnerPolicy,
    /// Jobs whose processes this agent still holds, e.g. after a reconnect or a scheduler
    /// restart. The scheduler keeps the runs it still knows and fences (kills) the others.
    #[serde(default)]
    pub held: Vec<HeldJob>,
    /// Random id of this agent process; job message sequence numbers restart with it.
    #[serde(default)]
    pub instance: String,
}

/// The part of an agent's owner policy the scheduler acts on (see `config/agent.toml`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerPolicy {
    /// Owner idle time before a suspended job continues, in ms.
    pub resume_after_ms: u64,
    /// Time a job may stay suspended because of this node before it is vacated, in ms.
    pub vacate_after_ms: u64,
    /// Time between SIGTERM and SIGKILL when a job is vacated, in ms.
    pub vacate_grace_ms: u64,
}

impl Default for OwnerPolicy {
    /// HTCondor's desktop policy, roughly: 5 min, 10 min, 10 s.
    fn default() -> Self {
        OwnerPolicy {
            resume_after_ms: 5 * 60 * 1000,
            vacate_after_ms: 10 * 60 * 1000,
            vacate_grace_ms: 10 * 1000,
        }
    }
}

/// A job run an agent still holds processes of.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HeldJob {
    /// The job.
    pub job: JobId,
    /// The run's epoch, from [`SchedulerMsg::StartJob`] or [`SchedulerMsg::SpawnRemote`].
    pub epoch: u64,
    /// Whether the job's main command runs on this node (still running or not yet reported).
    pub main: bool,
}

/// Whether the PC offers its cores now, and if not why.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Availability {
    /// Owner idle long enough: cores offered.
    Offered,
    /// Owner idle, but not yet for `start_after`.
    Waiting {
        /// How long until the cores are offered, in ms.
        remaining_ms: u64,
    },
    /// The owner used keyboard, mouse or terminal recently.
    OwnerActive,
    /// The owner's own processes use more CPU than `owner_cpu_max`.
    OwnerCpuBusy {
        /// The owner's CPU use, in percent of the whole PC.
        percent: u32,
    },
    /// Outside the node's availability windows.
    OutsideWindow,
    /// The owner reclaimed the PC (input, CPU load or window end) and has been idle since,
    /// but not yet for `resume_after`: job processes here stay stopped, no new work comes.
    Reclaimed {
        /// How long until the owner has been idle for `resume_after`, in ms.
        resumes_in_ms: u64,
    },
}

impl Availability {
    /// True when the node's cores are offered.
    pub fn is_offered(&self) -> bool {
        matches!(self, Availability::Offered)
    }

    /// True when jobs already placed on the node may run: the owner has not reclaimed it.
    /// `Waiting` counts: the owner has been idle for `resume_after` but not yet for
    /// `start_after`, so suspended jobs continue while no new work is placed.
    pub fn runs_jobs(&self) -> bool {
        matches!(self, Availability::Offered | Availability::Waiting { .. })
    }
}

impl fmt::Display for Availability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Availability::Offered => write!(f, "offered"),
            Availability::Waiting { remaining_ms } => {
                write!(f, "idle, offers in {}s", remaining_ms.div_ceil(1000))
            }
            Availability::OwnerActive => write!(f, "owner-busy"),
            Availability::OwnerCpuBusy { percent } => write!(f, "owner-busy (cpu {percent}%)"),
            Availability::OutsideWindow => write!(f, "outside window"),
            Availability::Reclaimed { resumes_in_ms } => {
                write!(
                    f,
                    "owner-busy (idle, resumes in {}s)",
                    resumes_in_ms.div_ceil(1000)
                )
            }
        }
    }
}

/// Periodic report of an agent's PC.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NodeStatus {
    /// Load of each logical CPU, 0..=100.
    pub core_load: Vec<f32>,
    /// CPU use of processes that are not graze jobs, in percent of the whole PC.
    pub owner_cpu: f32,
    /// Time since the owner's last input, in ms.
    pub owner_idle_ms: u64,
    /// Whether the cores are offered.
    pub availability: Availability,
    /// Idle sources that work on this PC, e.g. `file:/tmp/x`.
    pub idle_sources: Vec<String>,
    /// Configured idle sources with nothing to watch now (no X display, no input device,
    /// nobody logged in on a terminal); they are skipped.
    #[serde(default)]
    pub unavailable_sources: Vec<String>,
}

/// A host of an allocation and how many ranks it runs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HostSlots {
    /// Node name.
    pub host: String,
    /// Ranks (slots) on it.
    pub slots: u32,
}

/// Messages from an agent to the scheduler.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum AgentMsg {
    /// First message after the hello: who this node is.
    Register(NodeInfo),
    /// Load, owner idle time and availability; at least once a second and on every change.
    Status(NodeStatus),
    /// One whole line of a job's output, labelled with its rank where known.
    Output {
        /// The job.
        job: JobId,
        /// MPI rank, when the line carried hydra's `[rank@host]` label.
        rank: Option<u32>,
        /// Which stream.
        stream: Stream,
        /// The line, without its label and newline.
        line: String,
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
    /// Every process of the job on this node is gone.
    JobCleared {
        /// The job.
        job: JobId,
    },
    /// The launcher shim of a job running on this node asks to start a command on `host`.
    Launch {
        /// Id chosen by the agent, unique per agent connection.
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
    /// The shim of launch `id` went away; stop what it started.
    LaunchAbandoned {
        /// The launch.
        id: LaunchId,
    },
    /// A job message (output, exit, clear, remote exit) numbered so that none is lost or
    /// applied twice: the agent keeps it until the scheduler's [`SchedulerMsg::Ack`] covers
    /// `seq`, resends it after a reconnect, and the scheduler drops numbers it already applied.
    Sequenced {
        /// Per agent instance, from 1, without gaps.
        seq: u64,
        /// The message.
        msg: Box<AgentMsg>,
    },
    /// A command this agent started for a remote launch ended.
    RemoteExited {
        /// The scheduler's id for the remote process.
        remote: LaunchId,
        /// How it ended.
        exit: ExitStatus,
        /// The node whose shim asked for it (from [`SchedulerMsg::SpawnRemote`]).
        #[serde(default)]
        origin: String,
        /// The origin agent's launch id.
        #[serde(default = "no_launch")]
        origin_id: LaunchId,
    },
}

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
        /// [`HeldJob`] so a stale run can be fenced.
        #[serde(default)]
        epoch: u64,
    },
    /// Start a command on this node for a job (a hydra proxy).
    SpawnRemote {
        /// The scheduler's id for this remote process.
        remote: LaunchId,
        /// The job it belongs to.
        job: JobId,
        /// Words to run with `sh -c`.
        command: Vec<String>,
        /// The run's epoch.
        #[serde(default)]
        epoch: u64,
        /// The node whose shim asked; echoed in [`AgentMsg::RemoteExited`] so the answer finds
        /// its way even across a scheduler restart.
        #[serde(default)]
        origin: String,
        /// The origin agent's launch id, echoed likewise.
        #[serde(default = "no_launch")]
        origin_id: LaunchId,
    },
    /// A launch this agent asked for ended (or could not start).
    LaunchDone {
        /// The agent's id of the launch.
        id: LaunchId,
        /// How the remote command ended; `None` when it never started.
        exit: Option<ExitStatus>,
        /// Why it could not start, if it could not.
        error: Option<String>,
    },
    /// Every [`AgentMsg::Sequenced`] up to `seq` is applied and committed.
    Ack {
        /// Highest sequence number applied.
        seq: u64,
    },
    /// Kill every process of the job on this node, then answer [`AgentMsg::JobCleared`].
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
    /// left after the agent's `vacate_grace`, then answer [`AgentMsg::JobCleared`].
    VacateJob {
        /// The job.
        job: JobId,
    },
}

fn no_launch() -> LaunchId {
    LaunchId(0)
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

/// A job as submitted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
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
}

impl JobState {
    /// True once the job will not run again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
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
        })
    }
}

/// One event in a job's life, for `graze show`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct JobEvent {
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
    /// What happened.
    pub what: String,
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

/// One request from the CLI; each goes on its own stream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientRequest {
    /// Queue a job. Answer: [`ClientReply::Submitted`] or [`ClientReply::Error`].
    Submit(JobSpec),
    /// All jobs not yet final, plus recent final ones. Answer: [`ClientReply::Jobs`].
    Queue {
        /// Include every finished job too.
        all: bool,
    },
    /// All nodes. Answer: [`ClientReply::Nodes`].
    Nodes,
    /// One job. Answer: [`ClientReply::Job`].
    Show(JobId),
    /// Cancel a job. Answer: [`ClientReply::Job`] with its new state.
    Cancel(JobId),
    /// Answer with [`ClientReply::Job`] once the job is final.
    Wait(JobId),
    /// Output lines, then [`ClientReply::LogEnd`]; with `follow`, until the job is final.
    Logs {
        /// The job.
        job: JobId,
        /// Only this rank.
        rank: Option<u32>,
        /// Keep streaming while the job runs.
        follow: bool,
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
    /// [`ClientReply::JobChanged`] deltas on the same stream until the client closes it.
    /// A node's load-only changes are sent at most about once a second per node; changes of
    /// availability, connection, cores or jobs at once. Nodes and jobs are never removed from a
    /// scheduler's tables (offline nodes stay, finished jobs stay), so there is no removal delta.
    Watch,
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
    /// Output lines.
    Log(Vec<LogLine>),
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
    /// A [`ClientRequest::Watch`] delta: this job's new view replaces the old one (or is new).
    JobChanged(Box<JobView>),
    /// The request failed.
    Error {
        /// Why, for a person.
        message: String,
    },
}

/// Errors decoding frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is above [`MAX_FRAME`]. Not retryable: the connection is closed.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not a valid message. Not retryable: the connection is closed.
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Encode a message as one frame (length prefix plus JSON body).
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serialising these types to JSON cannot fail: no maps with non-string keys, no I/O.
    let body = serde_json::to_vec(msg).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decode one frame body.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    Ok(serde_json::from_slice(body)?)
}

/// Check a length prefix.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME,
        });
    }
    Ok(len)
}

/// A sans-IO frame splitter: push bytes as they arrive, pop whole frame bodies.
#[derive(Default, Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// A new, empty decoder.
    pub fn new() -> Self {
        Self::default()
    }
    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }
    /// The next whole frame body, if one is complete.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = frame_len([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])?;
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let body = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(body))
    }
}

/// Cut a line to [`MAX_LINE`] bytes on a char boundary.
pub fn clip_line(mut s: String) -> String {
    if s.len() > MAX_LINE {
        let mut end = MAX_LINE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str(" [line cut by graze]");
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let m = AgentMsg::Launch {
            id: LaunchId(3),
            job: JobId(7),
            secret: "s".into(),
            host: "a1".into(),
            command: vec!["/usr/bin/hydra_pmi_proxy".into(), "--proxy-id".into()],
        };
        let mut d = FrameDecoder::new();
        let bytes = encode(&m);
        d.push(&bytes[..3]);
        assert!(d.next_frame().unwrap().is_none());
        d.push(&bytes[3..]);
        let body = d.next_frame().unwrap().unwrap();
        assert_eq!(decode::<AgentMsg>(&body).unwrap(), m);
    }

    #[test]
    fn too_large_is_refused() {
        let mut d = FrameDecoder::new();
        d.push(&u32::MAX.to_be_bytes());
        let e = d.next_frame().unwrap_err().to_string();
        assert!(e.contains("exceeds the limit"), "{e}");
    }

    #[test]
    fn version_mismatch_names_both() {
        let e = check_version("scheduler", PROTOCOL_VERSION + 1).unwrap_err();
        assert!(e.contains(&format!("speaks graze protocol {PROTOCOL_VERSION}")));
        assert!(e.contains(&format!("speaks {}", PROTOCOL_VERSION + 1)));
    }

    #[test]
    fn clip_keeps_char_boundaries() {
        let s = "é".repeat(MAX_LINE);
        let c = clip_line(s);
        assert!(c.ends_with("[line cut by graze]"));
    }

    proptest! {
        #[test]
        fn decoder_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut d = FrameDecoder::new();
            for c in &chunks {
                d.push(c);
                while let Ok(Some(body)) = d.next_frame() {
                    let _ = decode::<AgentMsg>(&body);
                    let _ = decode::<SchedulerMsg>(&body);
                    let _ = decode::<ClientRequest>(&body);
                    let _ = decode::<Hello>(&body);
                }
            }
        }

        #[test]
        fn output_round_trips(line in ".{0,200}", rank in proptest::option::of(0u32..1000)) {
            let m = AgentMsg::Output { job: JobId(1), rank, stream: Stream::Stderr, line };
            let bytes = encode(&m);
            let mut d = FrameDecoder::new();
            d.push(&bytes);
            let back: AgentMsg = decode(&d.next_frame().unwrap().unwrap()).unwrap();
            prop_assert_eq!(back, m);
        }
    }
}
