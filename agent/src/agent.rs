//! The agent's owning task: one loop that holds all state (connection, jobs, pending
//! launches, owner status) and is fed by one channel of [`Input`].
//!
//! Drivers around it: a connector task per connection attempt, a reader and a writer task per
//! connection, a task per job process (exit) and per output pipe (lines), the launcher socket
//! listener, and a CPU sampler thread. The 50 ms tick is a timer inside the loop itself so
//! that a flood of output cannot delay availability changes.

use crate::cgroup::{CgroupRoot, JobCgroup};
use crate::config::AgentConfig;
use crate::confine::{self, Confinement};
use crate::hydra::{self, JobEnv, JobFiles, SECRET_VARS};
use crate::idle::{self, Owner};
use crate::launch::{self, LaunchRequest, ShimEvent, ShimReply};
use crate::machine::{CpuMeter, CpuSample};
use crate::process::{self, Sink};
use crate::procs::{self, ProcSet, Survivors, TAG_VAR};
use anyhow::{anyhow, Context, Result};
use graze_net::{Access, NetError, Session};
use graze_proto::{
    AgentMsg, Availability, ExitStatus, HeldJob, HostSlots, JobId, JobMsg, LaunchId, LaunchOutcome,
    LogLine, NodeInfo, NodeStatus, RemoteId, Role, SchedulerMsg, Stream,
};
use rand::Rng;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

/// Owner idle sources are evaluated this often.
pub(crate) const TICK: Duration = Duration::from_millis(50);
/// A cut-off agent kills its job processes this long before `node_timeout` of silence. The
/// scheduler calls a node lost no earlier than `node_timeout - KEEP_ALIVE/2` after its last
/// packet, and the agent's last packet from the scheduler is at most one keep-alive (0.5 s)
/// later than that: 1 s leaves 0.2 s for the tick and the kill, before the scheduler's fence
/// margin.
const SELF_FENCE_LEAD: Duration = Duration::from_secs(1);
/// A status goes out at least this often.
pub(crate) const STATUS_EVERY: Duration = Duration::from_secs(1);
/// First reconnect delay.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest reconnect delay.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long killing a job's processes may take before survivors are reported.
pub(crate) const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// Job messages kept until the scheduler acknowledges them.
const UNACKED_MAX: usize = 200_000;
/// Connect plus register must finish within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Everything the owning task reacts to.
pub(crate) enum Input {
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
    /// A CPU measurement.
    Sample(CpuSample),
    /// Gang-stopping every job after an owner reclaim finished (the follow-up rounds).
    Stopped {
        /// When the owner's input was seen.
        seen: Instant,
        result: Result<(), Survivors>,
    },
}

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("the scheduler refused to register node '{name}': {reason}")]
    RegisterRefused { name: String, reason: String },
    #[error("the scheduler answered the registration with {0}")]
    Unexpected(String),
    #[error("the scheduler closed the connection during registration")]
    Closed,
    #[error("no answer from the scheduler within {}s", CONNECT_TIMEOUT.as_secs())]
    Timeout,
}

impl ConnectError {
    fn is_fatal(&self) -> bool {
        match self {
            ConnectError::Net(e) => !e.is_retryable(),
            ConnectError::RegisterRefused { .. } => true,
            ConnectError::Unexpected(_) | ConnectError::Closed | ConnectError::Timeout => false,
        }
    }
}

enum Conn {
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
enum Main {
    /// The main command does not run on this node.
    None,
    Running,
    Exited,
}

struct Job {
    tag: String,
    span: tracing::Span,
    secret: Option<String>,
    pgids: Vec<i32>,
    main: Main,
    /// Remote launches running here, with the origin node and launch id to answer.
    remotes: HashMap<RemoteId, (String, LaunchId)>,
    killing: bool,
    killed: bool,
    /// Processes are (to be) stopped: the owner reclaimed this PC or the scheduler suspended
    /// the job. Only the scheduler's `ResumeJob` clears it.
    suspended: bool,
    /// The run's epoch from the scheduler; reported back when registering again.
    epoch: u64,
    /// The job's cgroup, when cgroups are writable here.
    cgroup: Option<JobCgroup>,
}

impl Job {
    fn procs(&self) -> ProcSet {
        ProcSet::new(self.pgids.clone(), Some(self.tag.clone())).with_cgroup(self.cgroup.clone())
    }
}

struct PendingLaunch {
    job: JobId,
    reply: oneshot::Sender<ShimReply>,
}

/// Sends a process's events into the owning task.
#[derive(Clone)]
struct ProcSink {
    tx: mpsc::Sender<Input>,
    job: JobId,
    /// `None` for the main command (its lines carry hydra's rank labels).
    remote: Option<RemoteId>,
    /// The main command's rank lines, put back together per stream (stdout, stderr).
    relabel: Option<std::sync::Arc<std::sync::Mutex<[hydra::Relabel; 2]>>>,
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

/// The agent's state, owned by [`Agent::run`].
pub(crate) struct Agent {
    cfg: AgentConfig,
    access: Access,
    info: NodeInfo,
    tx: mpsc::Sender<Input>,
    instance: String,
    /// Stable per spool: job tags start with it, so a restarted agent finds what a crashed
    /// one left behind.
    tag_base: String,
    owner: Owner,
    jobs: HashMap<JobId, Job>,
    launches: HashMap<LaunchId, PendingLaunch>,
    conn: Conn,
    gen: u64,
    backoff: Duration,
    failures: u32,
    last_status: Option<(Instant, Availability)>,
    cpu: CpuSample,
    jobsets: watch::Sender<Vec<ProcSet>>,
    jobs_dir: PathBuf,
    sock: PathBuf,
    fatal: Option<anyhow::Error>,
    /// The owner reclaimed the PC and has not been idle for `resume_after` since.
    reclaimed: bool,
    /// The owner is using the PC now (input, CPU, outside the windows).
    busy_now: bool,
    /// When the owner was last seen busy (input, CPU, window).
    last_busy: Option<Instant>,
    /// Wakes the loop at once when an event-driven idle source sees input.
    wake: std::sync::Arc<tokio::sync::Notify>,
    /// When the scheduler was lost while jobs ran here.
    lost_at: Option<Instant>,
    /// Kills this instance's job processes if the agent dies (see `guard.rs`).
    guard: Option<crate::guard::Guard>,
    /// The node timeout in force: the shorter of ours and the scheduler's.
    node_timeout: Duration,
    /// Datagrams received on the current connection, and when that count last grew.
    heard: (u64, Instant),
    /// Job messages sent but not yet acknowledged, oldest first.
    unacked: VecDeque<(u64, AgentMsg)>,
    /// Last job-message sequence number used.
    seq: u64,
    /// Who job processes run as, and their environment.
    confine: Confinement,
    /// Where job cgroups are made; `None`: process groups only.
    cgroups: Option<CgroupRoot>,
    /// Where files a job left in its working directory are kept (`SPOOL/output/ID`).
    output_dir: PathBuf,
}

/// Run the agent until `shutdown` completes or a fatal error.
pub(crate) async fn run(cfg: AgentConfig, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    if cfg.idle_sources.is_empty() {
        anyhow::bail!(crate::config::NO_IDLE_SOURCE);
    }
    let access = Access::load(&cfg.access).context("loading the access file")?;
    let jobs_dir = cfg.spool.join("jobs");
    std::fs::create_dir_all(&jobs_dir)
        .with_context(|| format!("creating spool directory '{}'", jobs_dir.display()))?;
    // SAFETY: geteuid cannot fail.
    let is_root = unsafe { libc::geteuid() } == 0;
    let confine = match &cfg.run_as {
        Some(name) if is_root => Confinement::new(confine::user_by_name(name)?, true, cfg.nice),
        Some(name) => anyhow::bail!(
            "run_as '{name}' needs an agent started as root; a normal user's agent runs jobs as itself"
        ),
        None if is_root => anyhow::bail!(
            "graze-agent runs as root but no run_as user is set: job processes never run as root (set run_as, default 'graze')"
        ),
        None => Confinement::new(confine::current_user(), false, cfg.nice),
    };
    let output_dir = cfg.spool.join("output");
    confine::prepare_spool(&confine, &cfg.spool, &jobs_dir, &output_dir)?;
    let sock = cfg.spool.join("launch.sock");
    let listener = launch::bind(&sock)
        .with_context(|| format!("listening on launcher socket '{}'", sock.display()))?;
    confine::share_socket(&confine, &sock).with_context(|| {
        format!(
            "giving launcher socket '{}' to the job user",
            sock.display()
        )
    })?;
    // Job processes a previous agent on this spool left behind (it crashed or was killed)
    // belong to runs the scheduler has requeued by now: fence them.
    let tag_base = spool_tag(&cfg.spool);
    // The cgroup leaf carries the spool's tag as well as the name: two agents of one name on
    // one machine (two test clusters, two demos) must never share job cgroups, or one agent's
    // kill of its job 1 kills the other's job 1.
    let cgroups = match CgroupRoot::detect(&format!("{}-{}", cfg.name, &tag_base[..8])) {
        Ok(r) => {
            tracing::info!(kind = ?r.kind, base = %r.base.display(), "one cgroup per job");
            Some(r)
        }
        Err(why) => {
            tracing::info!(%why, "cgroups not writable; jobs are tracked by process group");
            None
        }
    };
    tracing::info!(user = %confine.user.name, uid = confine.user.uid, "job processes run as");
    if !cfg.launcher.exists() {
        tracing::warn!(launcher = %cfg.launcher.display(),
            "launcher shim not found; MPI jobs spanning several nodes will fail");
    }

    let swept = crate::procs::kill_tag_prefix(&format!("{tag_base}-"));
    if swept > 0 {
        tracing::warn!(
            swept,
            "killed job processes left behind by a previous agent"
        );
    }
    let instance = hex_id();
    // Should this process die without cleaning up, its guard kills this instance's jobs.
    let guard = match crate::guard::agent_exe(&cfg.launcher)
        .ok_or_else(|| std::io::Error::other("no graze-agent executable found"))
        .and_then(|exe| {
            crate::guard::Guard::start(
                &exe,
                &format!("{tag_base}-{instance}-"),
                cgroups.as_ref().map(|r| (r.kind, r.base.as_path())),
            )
        }) {
        Ok(g) => {
            tracing::info!(
                pid = g.pid(),
                "guard started: job processes die with this agent"
            );
            Some(g)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the guard: if this agent crashes, its job processes live on until it restarts");
            None
        }
    };
    let info = crate::machine::node_info(&cfg).await;
    tracing::info!(name = %info.name, cores = info.cores, sockets = info.sockets,
        mpi = ?info.mpi.iter().map(|m| format!("{} {}", m.kind, m.version)).collect::<Vec<_>>(),
        scheduler = %access.scheduler, "graze-agent starting");

    let (tx, mut rx) = mpsc::channel::<Input>(4096);
    let listen_task = tokio::spawn(launch::serve(listener, tx.clone(), Input::Shim));
    let (jobsets, jobsets_rx) = watch::channel(Vec::new());
    spawn_sampler(tx.clone(), jobsets_rx);

    let started = Instant::now();
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let cfg_node_timeout = cfg.node_timeout;
    let mut agent = Agent {
        owner: Owner::new(&cfg.idle_sources, started, &wake),
        instance,
        guard,
        tag_base,
        cfg,
        access,
        info,
        tx,
        jobs: HashMap::new(),
        launches: HashMap::new(),
        conn: Conn::Down { retry_at: started },
        gen: 0,
        backoff: BACKOFF_MIN,
        failures: 0,
        last_status: None,
        cpu: CpuSample {
            core_load: Vec::new(),
            owner_cpu: 0.0,
            job_cpu: 0.0,
        },
        jobsets,
        jobs_dir,
        sock,
        fatal: None,
        reclaimed: false,
        busy_now: false,
        last_busy: None,
        wake,
        lost_at: None,
        heard: (0, started),
        node_timeout: cfg_node_timeout,
        unacked: VecDeque::new(),
        seq: 0,
        confine,
        cgroups,
        output_dir,
    };

    let wake_rx = agent.wake.clone();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => {
                tracing::info!("shutting down");
                break;
            }
            _ = tick.tick() => agent.on_tick().await,
            () = wake_rx.notified() => agent.on_tick().await,
            Some(input) = rx.recv() => agent.handle(input).await,
        }
        if agent.fatal.is_some() {
            break;
        }
    }
    listen_task.abort();
    agent.stop().await;
    match agent.fatal.take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A stable id for a spool directory (FNV-1a of its path), used in job tags.
fn spool_tag(spool: &std::path::Path) -> String {
    let path = std::fs::canonicalize(spool).unwrap_or_else(|_| spool.to_owned());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn hex_id() -> String {
    let v: u64 = rand::thread_rng().gen();
    format!("{v:016x}")
}

fn spawn_sampler(tx: mpsc::Sender<Input>, jobsets: watch::Receiver<Vec<ProcSet>>) {
    let spawned = std::thread::Builder::new()
        .name("cpu-sampler".into())
        .spawn(move || {
            let mut meter = CpuMeter::new();
            loop {
                std::thread::sleep(STATUS_EVERY);
                let sets = jobsets.borrow().clone();
                let s = meter.sample(&sets);
                if tx.blocking_send(Input::Sample(s)).is_err() {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the CPU sampler; owner CPU use reads as 0");
    }
}

impl Agent {
    async fn handle(&mut self, input: Input) {
        match input {
            Input::Connected {
                gen,
                session,
                node_timeout,
            } => self.on_connected(gen, *session, node_timeout),
            Input::ConnectFailed { gen, error } => self.on_connect_failed(gen, error),
            Input::Scheduler { gen, msg } if gen == self.gen => self.on_scheduler(msg).await,
            Input::Scheduler { .. } => {}
            Input::Lost {
                gen,
                reason,
                timed_out,
            } => {
                if gen == self.gen && matches!(self.conn, Conn::Up { .. }) {
                    self.lose_connection(&reason, timed_out);
                }
            }
            Input::Output {
                job,
                rank,
                stream,
                line,
            } => {
                if self.jobs.contains_key(&job) {
                    let line = LogLine { rank, stream, line };
                    self.send_job(JobMsg::Output { job, line }).await;
                }
            }
            Input::MainExited { job, exit } => self.on_main_exited(job, exit).await,
            Input::RemoteExited { job, remote, exit } => {
                self.on_remote_exited(job, remote, exit).await
            }
            Input::Killed { job, result } => self.on_killed(job, result).await,
            Input::Shim(ShimEvent::Request(r)) => self.on_launch_request(r).await,
            Input::Shim(ShimEvent::Gone(id)) => {
                if let Some(p) = self.launches.remove(&id) {
                    tracing::info!(job = %p.job, launch = id.0, "launcher shim went away; launch abandoned");
                    self.send(AgentMsg::LaunchAbandoned { id }).await;
                }
            }
            Input::Sample(s) => self.cpu = s,
            Input::Stopped { seen, result } => match result {
                Ok(()) => tracing::info!(
                    after_ms = seen.elapsed().as_millis() as u64,
                    "every job process on this node is stopped"
                ),
                Err(e) => tracing::error!(error = %e, "job processes did not stop"),
            },
        }
    }

    // ---- owner ----

    /// Stop every process of every job here, now: one fast pass in this task, follow-up
    /// rounds in a blocking thread.
    fn stop_all_jobs(&mut self, seen: Instant) {
        let sets: Vec<ProcSet> = self
            .jobs
            .values_mut()
            .filter(|j| !j.killing)
            .map(|j| {
                j.suspended = true;
                j.procs()
            })
            .collect();
        if sets.is_empty() {
            return;
        }
        let n = procs::stop_now(&sets);
        tracing::info!(
            jobs = sets.len(),
            processes = n,
            after_us = seen.elapsed().as_micros() as u64,
            "owner is back: job processes stopped"
        );
        self.follow_up_stop(sets, seen);
    }

    fn follow_up_stop(&self, sets: Vec<ProcSet>, seen: Instant) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = tokio::task::spawn_blocking(move || procs::stop_all(&sets, KILL_TIMEOUT))
                .await
                .unwrap_or(Ok(()));
            let _ = tx.send(Input::Stopped { seen, result }).await;
        });
    }

    /// Stop one job's processes (gang suspend from the scheduler, or a process started for a
    /// suspended job).
    fn stop_job(&mut self, job: JobId) {
        let Some(j) = self.jobs.get_mut(&job) else {
            return;
        };
        if j.killing {
            return;
        }
        j.suspended = true;
        let set = j.procs();
        j.span
            .in_scope(|| tracing::info!("suspending the job's processes"));
        procs::stop_now(std::slice::from_ref(&set));
        self.follow_up_stop(vec![set], Instant::now());
    }

    /// The scheduler resumes a job: continue its processes unless this PC's owner is busy.
    fn resume_job(&mut self, job: JobId) {
        let reclaimed = self.reclaimed || self.busy_now;
        let Some(j) = self.jobs.get_mut(&job) else {
            return;
        };
        if reclaimed || j.killing {
            j.span.in_scope(|| {
                tracing::info!("not resuming: the owner of this PC reclaimed it meanwhile")
            });
            return;
        }
        j.suspended = false;
        j.span
            .in_scope(|| tracing::info!("resuming the job's processes"));
        let set = j.procs();
        tokio::task::spawn_blocking(move || set.cont());
    }

    // ---- connection ----

    async fn on_tick(&mut self) {
        let now = Instant::now();
        let owner = self.owner.evaluate(now, SystemTime::now());
        let policy = &self.cfg.policy;
        let mut state = idle::OwnerState {
            idle: owner.idle,
            since_busy: self.last_busy.map(|b| now.saturating_duration_since(b)),
            owner_cpu: self.cpu.owner_cpu,
            window_open: policy.windows.open_now(),
            reclaimed: self.reclaimed,
        };
        let rules = idle::Rules {
            start_after: self.cfg.start_after,
            owner_cpu_max: self.cfg.owner_cpu_max,
            resume_after: policy.resume_after,
        };
        let mut avail = idle::availability(&state, &rules);
        self.busy_now = idle::is_busy(&avail);
        // Reclaimed matters only while jobs are here to resume; without jobs, start_after
        // alone says when the PC takes work.
        let has_jobs = self.jobs.values().any(|j| !j.killing);
        if self.reclaimed && !has_jobs {
            self.reclaimed = false;
            state.reclaimed = false;
            avail = idle::availability(&state, &rules);
        }
        if self.busy_now {
            // Input has its own idle clock; CPU load and closed windows have only this one.
            if avail != Availability::OwnerActive {
                self.last_busy = Some(now);
            }
            if !self.reclaimed && has_jobs {
                self.reclaimed = true;
                tracing::info!(why = %avail, "the owner reclaimed this PC");
                // Locally and at once: no round trip to the scheduler.
                self.stop_all_jobs(now);
            }
        } else if self.reclaimed && !matches!(avail, Availability::Reclaimed { .. }) {
            tracing::info!(to = %avail, "the owner has been idle for resume_after");
            self.reclaimed = false;
            state.reclaimed = false;
            avail = idle::availability(&state, &rules);
        }
        if self.self_fence_due(now) {
            tracing::warn!(
                silent_s = now.duration_since(self.heard.1).as_secs_f64(),
                "no packet from the scheduler; fencing this node's jobs before the scheduler calls it lost"
            );
            self.lose_connection("no packet from the scheduler", true);
        }
        if let Some(at) = self.lost_at {
            if matches!(self.conn, Conn::Up { .. }) {
                self.lost_at = None;
            } else if now.duration_since(at) >= self.node_timeout {
                tracing::warn!(
                    after_s = self.node_timeout.as_secs_f64(),
                    "the scheduler did not come back; killing every job process on this node"
                );
                self.kill_all_jobs("graze-agent lost its connection to the scheduler");
            }
        }
        if let Conn::Down { retry_at } = self.conn {
            if now >= retry_at {
                self.start_connect();
            }
        }
        let due = match &self.last_status {
            None => true,
            Some((at, last)) => {
                if !idle::same_kind(last, &avail) {
                    tracing::info!(from = %last, to = %avail, "availability changed");
                    true
                } else {
                    now.duration_since(*at) >= STATUS_EVERY
                }
            }
        };
        if due && matches!(self.conn, Conn::Up { .. }) {
            let status = NodeStatus {
                core_load: self.cpu.core_load.clone(),
                owner_cpu: self.cpu.owner_cpu,
                owner_idle_ms: owner.idle.as_millis().try_into().unwrap_or(u64::MAX),
                availability: avail.clone(),
                idle_sources: owner.working.clone(),
                unavailable_sources: owner.unavailable.clone(),
            };
            self.send(AgentMsg::Status(status)).await;
            self.last_status = Some((now, avail));
        } else if !matches!(self.conn, Conn::Up { .. }) {
            // Remember the kind so changes are logged, and report afresh after connecting.
            self.last_status = None;
        }
    }

    fn start_connect(&mut self) {
        self.gen += 1;
        let gen = self.gen;
        let tx = self.tx.clone();
        let access = self.access.clone();
        let bind = self.cfg.bind;
        let idle = self.cfg.node_timeout;
        let mut info = self.info.clone();
        info.held = self.held();
        info.instance = self.instance.clone();
        let task = tokio::spawn(
            async move {
                let r =
                    tokio::time::timeout(CONNECT_TIMEOUT, connect(access, bind, idle, info)).await;
                let input = match r {
                    Ok(Ok((session, node_timeout))) => Input::Connected {
                        gen,
                        session: Box::new(session),
                        node_timeout,
                    },
                    Ok(Err(error)) => Input::ConnectFailed { gen, error },
                    Err(_) => Input::ConnectFailed {
                        gen,
                        error: ConnectError::Timeout,
                    },
                };
                let _ = tx.send(input).await;
            }
            .instrument(tracing::info_span!("connect", attempt = gen)),
        );
        self.conn = Conn::Connecting { task };
    }

    fn on_connected(&mut self, gen: u64, session: Session, scheduler_timeout: Duration) {
        if gen != self.gen || !matches!(self.conn, Conn::Connecting { .. }) {
            session.conn.close(0u32.into(), b"stale");
            return;
        }
        // The shorter of the two timeouts rules: QUIC negotiates the shorter idle timeout, and
        // jobs kept past the scheduler's own timeout could overlap their requeued run.
        let effective = self.cfg.node_timeout.min(scheduler_timeout);
        if effective != self.node_timeout && effective < self.cfg.node_timeout {
            tracing::info!(
                scheduler_s = scheduler_timeout.as_secs_f64(),
                own_s = self.cfg.node_timeout.as_secs_f64(),
                "following the scheduler's shorter node_timeout"
            );
        }
        self.node_timeout = effective;
        tracing::info!(scheduler = %self.access.scheduler, node = %self.cfg.name, "registered with the scheduler");
        self.backoff = BACKOFF_MIN;
        self.failures = 0;
        self.last_status = None;
        let Session {
            endpoint,
            conn,
            control,
        } = session;
        let graze_net::Framed { mut send, mut recv } = control;
        let (out, mut out_rx) = mpsc::channel::<AgentMsg>(1024);
        let tx = self.tx.clone();
        // Unacknowledged job messages go first, in order (the scheduler drops any it has).
        let backlog: Vec<AgentMsg> = self.unacked.iter().map(|(_, m)| m.clone()).collect();
        let writer = tokio::spawn(async move {
            let mut backlog = backlog.into_iter();
            loop {
                let msg = match backlog.next() {
                    Some(m) => m,
                    None => match out_rx.recv().await {
                        Some(m) => m,
                        None => break,
                    },
                };
                if let Err(e) = graze_net::send(&mut send, &msg).await {
                    let _ = tx
                        .send(Input::Lost {
                            gen,
                            reason: e.to_string(),
                            timed_out: e.is_timeout(),
                        })
                        .await;
                    return;
                }
            }
            let _ = send.finish();
        });
        let tx = self.tx.clone();
        let reader = tokio::spawn(async move {
            let (reason, timed_out) = loop {
                match graze_net::recv::<SchedulerMsg>(&mut recv).await {
                    Ok(Some(msg)) => {
                        if tx.send(Input::Scheduler { gen, msg }).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break ("the scheduler closed the connection".to_string(), false),
                    Err(e) => break (e.to_string(), e.is_timeout()),
                }
            };
            let _ = tx
                .send(Input::Lost {
                    gen,
                    reason,
                    timed_out,
                })
                .await;
        });
        self.lost_at = None;
        self.heard = (conn.stats().udp_rx.datagrams, Instant::now());
        self.conn = Conn::Up {
            out,
            conn,
            endpoint,
            tasks: vec![writer, reader],
        };
    }

    fn on_connect_failed(&mut self, gen: u64, error: ConnectError) {
        if gen != self.gen {
            return;
        }
        if error.is_fatal() {
            self.fatal = Some(anyhow!(error).context(format!(
                "connecting to the scheduler at {}",
                self.access.scheduler
            )));
            return;
        }
        self.failures += 1;
        let delay = self.next_delay();
        tracing::warn!(error = %error, attempt = self.failures,
            retry_in_ms = delay.as_millis() as u64, "cannot reach the scheduler");
        self.conn = Conn::Down {
            retry_at: Instant::now() + delay,
        };
    }

    fn next_delay(&mut self) -> Duration {
        let base = self.backoff;
        // While jobs wait for the scheduler, keep trying often: they die at node_timeout.
        let max = if self.jobs.is_empty() {
            BACKOFF_MAX
        } else {
            BACKOFF_MIN * 2
        };
        self.backoff = (self.backoff * 2).min(max);
        let jitter_ms = rand::thread_rng().gen_range(0..=base.as_millis() as u64 / 2);
        base + Duration::from_millis(jitter_ms)
    }

    /// True when this node holds jobs and the scheduler has sent nothing (not even a
    /// keep-alive) for `node_timeout - SELF_FENCE_LEAD`: the link is cut, and the scheduler
    /// will call this node lost and run its jobs elsewhere. Its processes must be gone first.
    fn self_fence_due(&mut self, now: Instant) -> bool {
        let Conn::Up { conn, .. } = &self.conn else {
            return false;
        };
        let rx = conn.stats().udp_rx.datagrams;
        if rx != self.heard.0 {
            self.heard = (rx, now);
            return false;
        }
        !self.jobs.is_empty()
            && now.duration_since(self.heard.1) >= self.node_timeout.saturating_sub(SELF_FENCE_LEAD)
    }

    /// The scheduler is gone. Job processes keep running until `node_timeout` has passed
    /// without the scheduler (a restarting scheduler finds them again); a link that went
    /// silent has already been silent that long, so its jobs are killed at once.
    fn lose_connection(&mut self, reason: &str, timed_out: bool) {
        self.close_conn(b"reconnecting");
        self.backoff = BACKOFF_MIN;
        let delay = self.next_delay();
        self.conn = Conn::Down {
            retry_at: Instant::now() + delay,
        };
        if timed_out || self.jobs.is_empty() {
            tracing::warn!(
                reason,
                "lost the scheduler; killing every job process on this node"
            );
            self.kill_all_jobs("graze-agent lost its connection to the scheduler");
        } else {
            tracing::warn!(
                reason,
                keep_for_s = self.node_timeout.as_secs_f64(),
                "lost the scheduler; keeping job processes while reconnecting"
            );
            self.lost_at = Some(Instant::now());
        }
    }

    /// Kill every job process on this node and forget the jobs (fenced: the scheduler will
    /// not find them when this agent registers again).
    fn kill_all_jobs(&mut self, why: &str) {
        self.lost_at = None;
        self.fail_launches(why);
        for (id, job) in self.jobs.drain() {
            let set = job.procs();
            let files = JobFiles::paths(&self.jobs_dir, id);
            let output = self.output_dir.join(id.to_string());
            let span = job.span.clone();
            tokio::task::spawn_blocking(move || {
                let _e = span.enter();
                if let Err(e) = set.kill(KILL_TIMEOUT) {
                    tracing::error!(error = %e, "job processes survived SIGKILL");
                }
                if let Some(cg) = &set.cgroup {
                    let _ = cg.remove();
                }
                confine::finish_job_dir(&files, &output);
            });
        }
        self.publish_jobsets();
    }

    /// The runs this node holds, for registering.
    fn held(&self) -> Vec<HeldJob> {
        self.jobs
            .iter()
            .filter(|(_, j)| !j.killing && j.epoch > 0 && !j.pgids.is_empty())
            .map(|(id, j)| HeldJob {
                job: *id,
                epoch: j.epoch,
                main: j.main != Main::None,
            })
            .collect()
    }

    fn close_conn(&mut self, why: &'static [u8]) {
        match std::mem::replace(
            &mut self.conn,
            Conn::Down {
                retry_at: Instant::now(),
            },
        ) {
            Conn::Up { conn, tasks, .. } => {
                conn.close(0u32.into(), why);
                for t in tasks {
                    t.abort();
                }
            }
            Conn::Connecting { task } => task.abort(),
            Conn::Down { .. } => {}
        }
    }

    fn fail_launches(&mut self, why: &str) {
        for (_, p) in self.launches.drain() {
            let _ = p.reply.send(ShimReply::error(why));
        }
    }

    /// Send a job message (output, exits, clears, remote exits): numbered and kept until the
    /// scheduler acknowledges it, and sent again after a reconnect, so none is lost in a
    /// broken connection.
    async fn send_job(&mut self, msg: JobMsg) {
        self.seq += 1;
        let m = AgentMsg::Sequenced { seq: self.seq, msg };
        if self.unacked.len() >= UNACKED_MAX {
            tracing::warn!("too many unacknowledged job messages; dropping the oldest");
            self.unacked.pop_front();
        }
        self.unacked.push_back((self.seq, m.clone()));
        self.send(m).await;
    }

    /// Send to the scheduler if connected; a full writer queue waits (backpressure).
    /// Status reports and launch requests only matter live; job messages go through
    /// [`Agent::send_job`].
    async fn send(&mut self, msg: AgentMsg) {
        if let Conn::Up { out, .. } = &self.conn {
            if out.send(msg).await.is_err() {
                // The writer ended; its Lost input (or the reader's) follows, and the
                // reconnect resends what was not acknowledged.
                tracing::debug!("writer gone; message dropped");
            }
        }
    }

    async fn on_scheduler(&mut self, msg: SchedulerMsg) {
        match msg {
            SchedulerMsg::Registered { .. } => tracing::debug!("registered again"),
            SchedulerMsg::RegisterRefused { reason } => {
                self.fatal = Some(anyhow!(ConnectError::RegisterRefused {
                    name: self.cfg.name.clone(),
                    reason
                }));
            }
            SchedulerMsg::StartJob {
                job,
                command,
                cwd,
                env,
                hosts,
                secret,
                epoch,
            } => {
                self.start_job(job, command, cwd, env, hosts, secret).await;
                if let Some(j) = self.jobs.get_mut(&job) {
                    j.epoch = j.epoch.max(epoch);
                }
            }
            SchedulerMsg::SpawnRemote {
                remote,
                job,
                command,
                epoch,
                origin,
                origin_id,
            } => {
                self.spawn_remote(remote, job, command, (origin, origin_id))
                    .await;
                if let Some(j) = self.jobs.get_mut(&job) {
                    j.epoch = j.epoch.max(epoch);
                }
            }
            SchedulerMsg::LaunchDone { id, outcome } => {
                let Some(p) = self.launches.remove(&id) else {
                    tracing::debug!(launch = id.0, "answer for a launch that is gone");
                    return;
                };
                let reply = match outcome {
                    LaunchOutcome::Exited(x) => ShimReply::exit(x.shell_code()),
                    LaunchOutcome::Refused { reason } => ShimReply::error(reason),
                };
                let _ = p.reply.send(reply);
            }
            SchedulerMsg::KillJob { job } => self.kill_job(job, None),
            SchedulerMsg::SuspendJob { job } => self.stop_job(job),
            SchedulerMsg::ResumeJob { job } => self.resume_job(job),
            SchedulerMsg::VacateJob { job } => {
                let grace = self.cfg.policy.vacate_grace;
                self.kill_job(job, Some(grace))
            }
            SchedulerMsg::Ack { seq } => {
                while self.unacked.front().is_some_and(|(s, _)| *s <= seq) {
                    self.unacked.pop_front();
                }
            }
        }
    }

    // ---- jobs ----

    fn tag(&self, job: JobId) -> String {
        format!("{}-{}-{job}", self.tag_base, self.instance)
    }

    fn job_entry(&mut self, job: JobId) -> &mut Job {
        let tag = self.tag(job);
        self.jobs.entry(job).or_insert_with(|| Job {
            tag,
            span: tracing::info_span!("job", id = %job),
            secret: None,
            pgids: Vec::new(),
            main: Main::None,
            remotes: HashMap::new(),
            killing: false,
            killed: false,
            suspended: false,
            epoch: 0,
            cgroup: None,
        })
    }

    /// The job's cgroup, made on first use where cgroups are writable.
    fn job_cgroup(&mut self, job: JobId) -> Option<JobCgroup> {
        if let Some(cg) = self.jobs.get(&job).and_then(|j| j.cgroup.clone()) {
            return Some(cg);
        }
        let root = self.cgroups.as_ref()?;
        match root.create_job(&job.to_string(), self.cfg.memory_max) {
            Ok(cg) => {
                self.job_entry(job).cgroup = Some(cg.clone());
                Some(cg)
            }
            Err(e) => {
                tracing::warn!(%job, error = %e, "cannot make the job's cgroup; tracking it by process group");
                None
            }
        }
    }

    fn publish_jobsets(&self) {
        let sets: Vec<ProcSet> = self.jobs.values().map(Job::procs).collect();
        self.jobsets.send_replace(sets);
    }

    /// A command for a job process: clean environment, own process group, the job's cgroup
    /// and user (see [`Confinement::apply`]). The files returned must live until the spawn.
    fn base_command(
        &mut self,
        program: &str,
        job: JobId,
        tag: &str,
    ) -> std::io::Result<(tokio::process::Command, Vec<std::fs::File>)> {
        let cgroup = self.job_cgroup(job);
        let mut cmd = tokio::process::Command::new(program);
        let keep = self.confine.apply(&mut cmd, cgroup.as_ref())?;
        for v in SECRET_VARS {
            cmd.env_remove(v);
        }
        cmd.env("GRAZE_JOB_ID", job.to_string())
            .env(TAG_VAR, tag)
            .stdin(Stdio::null())
            .process_group(0);
        Ok((cmd, keep))
    }

    async fn start_job(
        &mut self,
        job: JobId,
        command: Vec<String>,
        cwd: Option<String>,
        env: Vec<(String, String)>,
        hosts: Vec<HostSlots>,
        secret: String,
    ) {
        if let Some(j) = self.jobs.get(&job) {
            if j.main != Main::None || j.killing {
                let reason = format!("job {job} already runs on node '{}'", self.cfg.name);
                self.send_job(JobMsg::JobFailedToStart { job, reason })
                    .await;
                return;
            }
        }
        let files = JobFiles::paths(&self.jobs_dir, job);
        let Some(program) = command.first().cloned() else {
            let reason = "empty command".to_string();
            self.send_job(JobMsg::JobFailedToStart { job, reason })
                .await;
            return;
        };
        if let Err(e) = files
            .write(&hosts)
            .and_then(|()| confine::give_job_dir(&self.confine, &files.dir))
        {
            let reason = format!(
                "cannot write job files in '{}': {}",
                files.dir.display(),
                process::io_reason(&e)
            );
            self.send_job(JobMsg::JobFailedToStart { job, reason })
                .await;
            return;
        }
        let tag = self.tag(job);
        let span = tracing::info_span!("job", id = %job);
        let mut note = None;
        let dir = match cwd {
            Some(c) if std::path::Path::new(&c).is_dir() => PathBuf::from(c),
            Some(c) => {
                note = Some(format!(
                    "graze: working directory '{c}' does not exist on node '{}'; running in '{}'",
                    self.cfg.name,
                    files.dir.display()
                ));
                files.dir.clone()
            }
            None => files.dir.clone(),
        };
        let (mut cmd, _keep) = match self.base_command(&program, job, &tag) {
            Ok(c) => c,
            Err(e) => {
                let reason = format!("cannot confine the job: {}", process::io_reason(&e));
                self.send_job(JobMsg::JobFailedToStart { job, reason })
                    .await;
                return;
            }
        };
        cmd.args(&command[1..]).current_dir(&dir);
        let sock = self.sock.clone();
        let vars = JobEnv {
            job,
            files: &files,
            hosts: &hosts,
            launcher: &self.cfg.launcher,
            launch_sock: &sock,
            secret: &secret,
            tag: &tag,
            extra: &env,
        }
        .vars();
        cmd.envs(vars);
        let names: Vec<String> = hosts.iter().map(|h| h.host.clone()).collect();
        let sink = ProcSink {
            tx: self.tx.clone(),
            job,
            remote: None,
            relabel: Some(std::sync::Arc::new(std::sync::Mutex::new([
                hydra::Relabel::new(names.clone()),
                hydra::Relabel::new(names),
            ]))),
        };
        match process::spawn(cmd, sink, span.clone()) {
            Ok(pid) => {
                let _e = span.enter();
                tracing::info!(pid, command = ?command, cwd = %dir.display(), "job started");
                drop(_e);
                let j = self.job_entry(job);
                j.span = span;
                j.secret = Some(secret);
                j.main = Main::Running;
                j.pgids.push(pid as i32);
                let stop = j.suspended;
                self.publish_jobsets();
                if stop || self.reclaimed || self.busy_now {
                    // Placed just as the owner came back: stopped until the scheduler resumes it.
                    self.stop_job(job);
                }
                if let Some(line) = note {
                    let line = LogLine {
                        rank: None,
                        stream: Stream::Stderr,
                        line,
                    };
                    self.send_job(JobMsg::Output { job, line }).await;
                }
            }
            Err(e) => {
                let reason = format!("cannot run '{program}': {}", process::io_reason(&e));
                span.in_scope(|| tracing::warn!(%reason, "job failed to start"));
                let _ = std::fs::remove_dir_all(&files.dir);
                self.send_job(JobMsg::JobFailedToStart { job, reason })
                    .await;
            }
        }
    }

    async fn spawn_remote(
        &mut self,
        remote: RemoteId,
        job: JobId,
        command: Vec<String>,
        origin: (String, LaunchId),
    ) {
        let fail = |why: String| {
            vec![
                JobMsg::Output {
                    job,
                    line: LogLine {
                        rank: None,
                        stream: Stream::Stderr,
                        line: why,
                    },
                },
                JobMsg::RemoteExited {
                    remote,
                    exit: ExitStatus {
                        code: Some(127),
                        signal: None,
                    },
                    origin: origin.0.clone(),
                    origin_id: origin.1,
                },
            ]
        };
        if self.jobs.get(&job).is_some_and(|j| j.killing) {
            for m in fail(format!(
                "graze: not starting a process for job {job} on '{}': the job is being killed",
                self.cfg.name
            )) {
                self.send_job(m).await;
            }
            return;
        }
        let files = JobFiles::paths(&self.jobs_dir, job);
        let dir = files.dir.clone();
        if let Err(e) = std::fs::create_dir_all(&files.tmp)
            .and_then(|()| confine::give_job_dir(&self.confine, &dir))
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create job directory");
        }
        let tag = self.tag(job);
        let line = command.join(" ");
        let (mut cmd, _keep) = match self.base_command("sh", job, &tag) {
            Ok(c) => c,
            Err(e) => {
                for m in fail(format!(
                    "graze: cannot confine a process of job {job} on '{}': {}",
                    self.cfg.name,
                    process::io_reason(&e)
                )) {
                    self.send_job(m).await;
                }
                return;
            }
        };
        cmd.arg("-c").arg(&line);
        if dir.is_dir() {
            cmd.current_dir(&dir);
        }
        if files.tmp.is_dir() {
            let shares_host = sysinfo::System::host_name().is_some_and(|h| h != self.cfg.name);
            cmd.envs(hydra::node_vars(&files.tmp, shares_host));
        }
        let sink = ProcSink {
            tx: self.tx.clone(),
            job,
            remote: Some(remote),
            relabel: None,
        };
        let span = self.job_entry(job).span.clone();
        match process::spawn(cmd, sink, span.clone()) {
            Ok(pid) => {
                span.in_scope(|| tracing::info!(remote = remote.0, pid, command = %line, "remote launch started"));
                let j = self.job_entry(job);
                j.pgids.push(pid as i32);
                j.remotes.insert(remote, origin.clone());
                let stop = j.suspended;
                self.publish_jobsets();
                if stop || self.reclaimed || self.busy_now {
                    self.stop_job(job);
                }
            }
            Err(e) => {
                for m in fail(format!(
                    "graze: cannot run 'sh' on '{}': {}",
                    self.cfg.name,
                    process::io_reason(&e)
                )) {
                    self.send_job(m).await;
                }
                if let Some(j) = self.jobs.get(&job) {
                    if j.main == Main::None && j.remotes.is_empty() && j.pgids.is_empty() {
                        self.jobs.remove(&job);
                    }
                }
            }
        }
    }

    async fn on_main_exited(&mut self, job: JobId, exit: ExitStatus) {
        let Some(j) = self.jobs.get_mut(&job) else {
            return;
        };
        j.main = Main::Exited;
        j.span
            .in_scope(|| tracing::info!(%exit, "job's main command ended"));
        self.send_job(JobMsg::JobExited { job, exit }).await;
        self.maybe_cleared(job).await;
    }

    async fn on_remote_exited(&mut self, job: JobId, remote: RemoteId, exit: ExitStatus) {
        let Some(j) = self.jobs.get_mut(&job) else {
            return;
        };
        let (origin, origin_id) = j.remotes.remove(&remote).unwrap_or_default();
        j.span
            .in_scope(|| tracing::info!(remote = remote.0, %exit, "remote launch ended"));
        self.send_job(JobMsg::RemoteExited {
            remote,
            exit,
            origin,
            origin_id,
        })
        .await;
        self.maybe_cleared(job).await;
    }

    /// Kill the job's processes; with `grace`, vacate (SIGTERM, SIGKILL after `grace`).
    fn kill_job(&mut self, job: JobId, grace: Option<Duration>) {
        let set = match self.jobs.get_mut(&job) {
            Some(j) if j.killing => return,
            Some(j) => {
                j.killing = true;
                j.span.in_scope(|| match grace {
                    None => tracing::info!("killing the job's processes"),
                    Some(g) => tracing::info!(grace_ms = g.as_millis() as u64, "vacating the job"),
                });
                j.procs()
            }
            // Nothing known here; still sweep for tagged orphans.
            None => ProcSet::new(Vec::new(), Some(self.tag(job))),
        };
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = tokio::task::spawn_blocking(move || match grace {
                None => set.kill(KILL_TIMEOUT),
                Some(g) => set.vacate(g, KILL_TIMEOUT),
            })
            .await
            .unwrap_or(Ok(()));
            let _ = tx.send(Input::Killed { job, result }).await;
        });
    }

    async fn on_killed(&mut self, job: JobId, result: Result<(), Survivors>) {
        let Some(j) = self.jobs.get_mut(&job) else {
            self.send_job(JobMsg::JobCleared { job }).await;
            return;
        };
        j.killed = true;
        if let Err(e) = result {
            j.span
                .in_scope(|| tracing::error!(error = %e, "job processes survived SIGKILL"));
            // Answer anyway: the scheduler must not wait forever for unkillable processes.
            self.clear(job).await;
            return;
        }
        self.maybe_cleared(job).await;
    }

    /// Answer `JobCleared` once the kill finished and every process we started was reaped.
    async fn maybe_cleared(&mut self, job: JobId) {
        let done = self.jobs.get(&job).is_some_and(|j| {
            j.killing && j.killed && j.main != Main::Running && j.remotes.is_empty()
        });
        if done {
            self.clear(job).await;
        }
    }

    async fn clear(&mut self, job: JobId) {
        if let Some(j) = self.jobs.remove(&job) {
            j.span.in_scope(|| tracing::info!("job cleared"));
            if let Some(cg) = &j.cgroup {
                if let Err(e) = cg.remove() {
                    tracing::warn!(%job, error = %e, "cannot remove the job's cgroup");
                }
            }
        }
        self.publish_jobsets();
        let files = JobFiles::paths(&self.jobs_dir, job);
        confine::finish_job_dir(&files, &self.output_dir.join(job.to_string()));
        self.send_job(JobMsg::JobCleared { job }).await;
    }

    // ---- launches ----

    async fn on_launch_request(&mut self, r: LaunchRequest) {
        let LaunchRequest { id, req, reply } = r;
        let check = match self.jobs.get(&req.job) {
            None => Err(format!(
                "job {} is not running on node '{}'",
                req.job, self.cfg.name
            )),
            Some(j) if j.killing => Err(format!("job {} is being killed", req.job)),
            Some(j) => match &j.secret {
                Some(s) if graze_net::token_eq(s, &req.secret) => Ok(()),
                _ => Err(format!("wrong secret for job {}", req.job)),
            },
        };
        if let Err(e) = check {
            tracing::warn!(launch = id.0, job = %req.job, error = %e, "launch refused");
            let _ = reply.send(ShimReply::error(e));
            return;
        }
        if !matches!(self.conn, Conn::Up { .. }) {
            let _ = reply.send(ShimReply::error(
                "graze-agent has no connection to the scheduler",
            ));
            return;
        }
        if let Some(j) = self.jobs.get(&req.job) {
            j.span.in_scope(|| {
                tracing::info!(launch = id.0, host = %req.host, command = ?req.command, "launch requested")
            });
        }
        self.launches.insert(
            id,
            PendingLaunch {
                job: req.job,
                reply,
            },
        );
        self.send(AgentMsg::Launch {
            id,
            job: req.job,
            secret: req.secret,
            host: req.host,
            command: req.command,
        })
        .await;
    }

    // ---- shutdown ----

    async fn stop(&mut self) {
        self.fail_launches("graze-agent is shutting down");
        let sets: Vec<(tracing::Span, ProcSet)> = self
            .jobs
            .values()
            .map(|j| (j.span.clone(), j.procs()))
            .collect();
        if !sets.is_empty() {
            tracing::info!(jobs = sets.len(), "killing job processes");
        }
        let killing = tokio::task::spawn_blocking(move || {
            for (span, set) in sets {
                if let Err(e) = set.kill(KILL_TIMEOUT) {
                    span.in_scope(|| tracing::error!(error = %e, "job processes survived SIGKILL"));
                }
            }
        });
        let _ = killing.await;
        for (id, j) in &self.jobs {
            if let Some(cg) = &j.cgroup {
                let _ = cg.remove();
            }
            confine::finish_job_dir(
                &JobFiles::paths(&self.jobs_dir, *id),
                &self.output_dir.join(id.to_string()),
            );
        }
        self.jobs.clear();
        if let Some(r) = &self.cgroups {
            r.remove();
        }
        if let Some(g) = self.guard.take() {
            let _ = tokio::task::spawn_blocking(move || g.release()).await;
        }
        let endpoint = match &self.conn {
            Conn::Up { endpoint, .. } => Some(endpoint.clone()),
            _ => None,
        };
        self.close_conn(b"agent shutting down");
        if let Some(ep) = endpoint {
            let _ = tokio::time::timeout(Duration::from_secs(1), ep.wait_idle()).await;
        }
        let _ = std::fs::remove_file(&self.sock);
    }
}

/// Connect, say hello, register.
async fn connect(
    access: Access,
    bind: Option<std::net::IpAddr>,
    idle: Duration,
    info: NodeInfo,
) -> Result<(Session, Duration), ConnectError> {
    let mut s = graze_net::connect(&access, Role::Agent, bind, idle).await?;
    let name = info.name.clone();
    s.control.send(&AgentMsg::Register(info)).await?;
    match s.control.recv::<SchedulerMsg>().await? {
        Some(SchedulerMsg::Registered { node_timeout_ms }) => {
            Ok((s, Duration::from_millis(node_timeout_ms)))
        }
        Some(SchedulerMsg::RegisterRefused { reason }) => {
            Err(ConnectError::RegisterRefused { name, reason })
        }
        Some(other) => Err(ConnectError::Unexpected(graze_proto::clip(
            format!("{other:?}"),
            200,
            "...",
        ))),
        None => Err(ConnectError::Closed),
    }
}
