//! The owning task's state: its inputs, the connection, the jobs and their processes.
//! A leaf of `agent/`: the loop (`mod.rs`), the link to the scheduler (`link.rs`), job
//! control (`job_control.rs`) and launches (`launches.rs`) all work on [`Agent`].

use super::connect::ConnectError;
use crate::config::AgentConfig;
use crate::jobs::cgroup::{CgroupRoot, JobCgroup};
use crate::jobs::confine::Confinement;
use crate::jobs::hydra;
use crate::jobs::procs::{ProcSet, Survivors};
use crate::jobs::spawn::Sink;
use crate::launch::{ShimEvent, ShimReply};
use crate::outbox::Outbox;
use crate::owner::cpu::{CpuMeter, CpuSample};
use crate::owner::watch::OwnerWatch;
use crate::owner::Owner;
use graze_net::{Access, Session};
use graze_proto::{
    AgentMsg, ClusrunId, ExitStatus, JobId, LaunchId, NodeInfo, RemoteId, SchedulerMsg, Stream,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Owner idle sources are evaluated this often while job processes (or anything else that
/// needs a quick tick) are here: it bounds owner release latency and the self-fence's lag.
pub(super) const TICK: Duration = Duration::from_millis(50);
/// ... and this often on an idle node (no job processes), with the status and the CPU
/// sample: an event-driven source's wake still ticks at once, the tick comes early when
/// `start_after` is due, and a job that arrives ticks at once before it starts.
pub(super) const IDLE_TICK: Duration = Duration::from_secs(1);
/// A cut-off agent kills its job processes this long before `node_timeout` (T) of silence:
/// 0.75 s plus half the keep-alive K of T (1 s at T = 3 s, 1.375 s at 10 s). The scheduler
/// calls a node lost no earlier than `T - K/2` after its last packet (the QUIC idle timeout,
/// [`graze_net::quic_idle_timeout`]), and the agent's last packet from the scheduler (the
/// scheduler sends no keep-alive: its ack of the agent's last packet) is at most quinn's ack
/// delay (25 ms) later than that: the kill lands 0.725 s, less the tick and the kill itself,
/// before the scheduler can call the node lost, and then the scheduler's fence margin holds
/// the job. The longest normal silence, up to K or the 1 s status period plus 25 ms, stays
/// well under `T - lead` (2 s at the 3 s minimum T).
pub(super) fn self_fence_lead(node_timeout: Duration) -> Duration {
    Duration::from_millis(750) + graze_net::keep_alive(node_timeout) / 2
}
/// First reconnect delay.
pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest reconnect delay.
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long killing a job's processes may take before survivors are reported.
pub(super) const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything the owning task reacts to.
pub(super) enum Input {
    /// A connection attempt registered.
    Connected {
        gen: u64,
        session: Box<Session>,
        /// The scheduler's node_timeout.
        node_timeout: Duration,
    },
    /// A connection attempt failed.
    ConnectFailed { gen: u64, error: ConnectError },
    /// A message from the scheduler.
    Scheduler { gen: u64, msg: SchedulerMsg },
    /// The connection broke (reader or writer).
    Lost {
        gen: u64,
        reason: String,
        /// Ended by silence (the idle timeout) rather than a close or reset.
        timed_out: bool,
    },
    /// An output line of a job process.
    Output {
        job: JobId,
        rank: Option<u32>,
        stream: Stream,
        line: String,
    },
    /// Something about a job's run worth an event (from its output file writer).
    Note { job: JobId, what: String },
    /// A job's main command ended.
    MainExited { job: JobId, exit: ExitStatus },
    /// A remote-launched command ended.
    RemoteExited {
        job: JobId,
        remote: RemoteId,
        exit: ExitStatus,
    },
    /// Killing a job's processes finished.
    Killed {
        job: JobId,
        result: Result<(), Survivors>,
    },
    /// From the launcher socket.
    Shim(ShimEvent),
    /// A CPU measurement taken off the loop (job processes to scan), with the meter back.
    Sample(Box<CpuMeter>, CpuSample),
    /// An output line of a clusrun's command.
    ClusrunLine {
        id: ClusrunId,
        stream: Stream,
        line: String,
    },
    /// A clusrun's command ended.
    ClusrunExited { id: ClusrunId, exit: ExitStatus },
    /// A restore stream from the scheduler (connection `gen`).
    RestoreStream {
        gen: u64,
        job: JobId,
        epoch: u64,
        id: graze_proto::CheckpointId,
        error: Option<String>,
        streams: Box<(graze_net::quinn::SendStream, graze_net::quinn::RecvStream)>,
    },
    /// A restore into this node's checkpoint directory finished.
    Restored {
        job: JobId,
        epoch: u64,
        id: graze_proto::CheckpointId,
        result: Result<crate::jobs::checkpoint::UnpackSummary, String>,
    },
    /// A checkpoint's wait for markers ended: the ranks to pack, or why there is no part.
    Markers {
        job: JobId,
        epoch: u64,
        id: graze_proto::CheckpointId,
        verdict: Result<Vec<u32>, String>,
        stop: bool,
    },
    /// A checkpoint part's packer is done with the files (sent before the part's end frame,
    /// so it is here before any message the scheduler sends after reading that frame).
    Packed {
        job: JobId,
        id: graze_proto::CheckpointId,
    },
    /// A checkpoint part was sent (and the scheduler replied), or could not be; with
    /// `clear` the job's clear waited for it.
    PartSent {
        job: JobId,
        id: graze_proto::CheckpointId,
        result: Result<(), String>,
        clear: bool,
    },
    /// A clock-sync burst of a traced job ended.
    ClockSample {
        job: JobId,
        result: Result<graze_trace::ClockSample, String>,
    },
    /// A traced job's files were uploaded (what was left out), or could not be.
    TraceSent {
        job: JobId,
        result: Result<Vec<String>, String>,
    },
    /// A request on the owner's local socket (already allowed), and where to answer.
    Local {
        req: crate::owner::local::Request,
        reply: tokio::sync::oneshot::Sender<(bool, String)>,
    },
    /// Gang-stopping every job after an owner reclaim finished (the follow-up rounds).
    Stopped {
        /// When the owner's input was seen.
        seen: Instant,
        result: Result<(), Survivors>,
        /// The jobs an owner reclaim stopped (empty for a scheduler's gang suspend): the
        /// release latency is reported for these.
        released: Vec<JobId>,
    },
}

pub(super) enum Conn {
    /// Not connected; try again at `retry_at`.
    Down { retry_at: Instant },
    /// A connector task runs.
    Connecting { task: JoinHandle<()> },
    /// Registered.
    Up {
        out: mpsc::Sender<AgentMsg>,
        conn: graze_net::quinn::Connection,
        endpoint: graze_net::quinn::Endpoint,
        tasks: Vec<JoinHandle<()>>,
    },
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub(super) enum Main {
    /// The main command does not run on this node.
    None,
    Running,
    Exited,
}

pub(super) struct Job {
    pub(super) tag: String,
    pub(super) span: tracing::Span,
    pub(super) secret: Option<String>,
    pub(super) pgids: Vec<i32>,
    pub(super) main: Main,
    /// Remote launches running here, with the origin node and launch id to answer.
    pub(super) remotes: HashMap<RemoteId, (String, LaunchId)>,
    pub(super) killing: bool,
    pub(super) killed: bool,
    /// Processes are (to be) stopped: the owner reclaimed this PC or the scheduler suspended
    /// the job. Only the scheduler's `ResumeJob` clears it.
    pub(super) suspended: bool,
    /// The run's epoch from the scheduler; reported back when registering again.
    pub(super) epoch: u64,
    /// The job's cgroup, when cgroups are writable here.
    pub(super) cgroup: Option<JobCgroup>,
    /// When this node first heard of the job (for `graze-agent status`).
    pub(super) since: std::time::SystemTime,
}

impl Job {
    pub(super) fn procs(&self) -> ProcSet {
        ProcSet::new(self.pgids.clone(), Some(self.tag.clone())).with_cgroup(self.cgroup.clone())
    }
}

pub(super) struct PendingLaunch {
    pub(super) job: JobId,
    pub(super) reply: oneshot::Sender<ShimReply>,
}

/// Sends a process's events into the owning task.
/// How long a job's end waits for its output files to be complete (see `OutFiles::finish`).
const OUTPUT_FILES_FINISH: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub(super) struct ProcSink {
    pub(super) tx: mpsc::Sender<Input>,
    pub(super) job: JobId,
    /// `None` for the main command (its lines carry hydra's rank labels).
    pub(super) remote: Option<RemoteId>,
    /// The main command's rank lines, put back together per stream (stdout, stderr).
    pub(super) relabel: Option<std::sync::Arc<std::sync::Mutex<[hydra::Relabel; 2]>>>,
    /// The main command's `--stdout`/`--stderr` files, if the job asked for them.
    pub(super) files: Option<crate::jobs::outfiles::OutFiles>,
}

impl ProcSink {
    /// The lines `line` completes (or, with `None`, the unfinished ones at the stream's end).
    fn relabelled(&self, stream: Stream, line: Option<String>) -> Vec<(Option<u32>, String)> {
        let Some(r) = &self.relabel else {
            return line.map(|l| (None, l)).into_iter().collect();
        };
        let mut r = r.lock().unwrap_or_else(|e| e.into_inner());
        let r = &mut r[usize::from(stream == Stream::Stderr)];
        match line {
            Some(l) => r.line(&l),
            None => r.finish(),
        }
    }

    async fn send_lines(&self, stream: Stream, lines: Vec<(Option<u32>, String)>) -> bool {
        for (rank, line) in lines {
            if let Some(f) = &self.files {
                f.line(stream, rank, &line);
            }
            let out = Input::Output {
                job: self.job,
                rank,
                stream,
                line,
            };
            if self.tx.send(out).await.is_err() {
                return false;
            }
        }
        true
    }
}

impl Sink for ProcSink {
    async fn line(&self, stream: Stream, line: String) -> bool {
        let lines = self.relabelled(stream, Some(line));
        self.send_lines(stream, lines).await
    }

    async fn closed(&self, stream: Stream) {
        let lines = self.relabelled(stream, None);
        self.send_lines(stream, lines).await;
    }

    async fn exited(&self, exit: ExitStatus) {
        if let (None, Some(f)) = (self.remote, &self.files) {
            f.finish(OUTPUT_FILES_FINISH).await;
        }
        let ev = match self.remote {
            None => Input::MainExited {
                job: self.job,
                exit,
            },
            Some(remote) => Input::RemoteExited {
                job: self.job,
                remote,
                exit,
            },
        };
        let _ = self.tx.send(ev).await;
    }
}

/// The agent's state, owned by the loop in [`super::run`].
pub(super) struct Agent {
    pub(super) cfg: AgentConfig,
    pub(super) access: Access,
    pub(super) info: NodeInfo,
    pub(super) tx: mpsc::Sender<Input>,
    pub(super) instance: String,
    /// Stable per spool: job tags start with it, so a restarted agent finds what a crashed
    /// one left behind.
    pub(super) tag_base: String,
    pub(super) owner: Owner,
    pub(super) jobs: HashMap<JobId, Job>,
    pub(super) launches: HashMap<LaunchId, PendingLaunch>,
    pub(super) conn: Conn,
    pub(super) gen: u64,
    pub(super) backoff: Duration,
    pub(super) failures: u32,
    pub(super) cpu: CpuSample,
    /// The process sets of the jobs and clusruns here, for the CPU meter.
    pub(super) jobsets: Vec<ProcSet>,
    /// The CPU meter; `None` while a sample runs on the blocking pool.
    pub(super) meter: Option<Box<CpuMeter>>,
    /// When the last CPU sample was started.
    pub(super) sampled_at: Instant,
    /// When the last tick ran.
    pub(super) ticked_at: Instant,
    pub(super) jobs_dir: PathBuf,
    pub(super) sock: PathBuf,
    pub(super) fatal: Option<anyhow::Error>,
    /// The owner's state between ticks: reclaimed, busy, last status.
    pub(super) watch: OwnerWatch,
    /// Wakes the loop at once when an event-driven idle source sees input.
    pub(super) wake: std::sync::Arc<tokio::sync::Notify>,
    /// When the scheduler was lost while jobs ran here.
    pub(super) lost_at: Option<Instant>,
    /// Kills this instance's job processes if the agent dies (see `jobs/guard.rs`).
    pub(super) guard: Option<crate::jobs::guard::Guard>,
    /// The node timeout in force: the shorter of ours and the scheduler's.
    pub(super) node_timeout: Duration,
    /// Datagrams received on the current connection, and when that count last grew.
    pub(super) heard: (u64, Instant),
    /// Job messages sent but not yet acknowledged.
    pub(super) outbox: Outbox,
    /// Who job processes run as, and their environment.
    pub(super) confine: Confinement,
    /// The owner snoozed graze until then (ms since the Unix epoch).
    pub(super) snoozed_until_ms: Option<u64>,
    /// One user per concurrent job, when configured (`slot_users`).
    pub(super) slots: crate::jobs::slots::SlotPool,
    /// Where job cgroups are made; `None`: process groups only.
    pub(super) cgroups: Option<CgroupRoot>,
    /// Where files a job left in its working directory are kept (`SPOOL/output/ID`).
    pub(super) output_dir: PathBuf,
    /// `graze clusrun` commands running here.
    pub(super) clusruns: HashMap<ClusrunId, super::clusrun::Clusrun>,
    /// Checkpoint state of the jobs this node was set up for (`CheckpointSetup`).
    pub(super) ckpts: HashMap<JobId, super::checkpoint::NodeCkpt>,
    /// Restore streams that came before their run's setup.
    pub(super) early_restores: Vec<super::checkpoint::EarlyRestore>,
    /// Traced runs with processes here (`--trace`).
    pub(super) traces: HashMap<JobId, super::trace::NodeTrace>,
    /// The owner's idle time at the last tick (for the next tick's time).
    pub(super) last_idle: Option<Duration>,
}
