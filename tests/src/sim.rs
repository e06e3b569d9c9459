//! Simulated agents for load tests: thousands of tokio tasks in one process, each speaking the
//! real agent protocol (`graze_net::connect` with an agent token, `Register`, a `Status` once a
//! second, numbered job messages) over real QUIC to a real scheduler on loopback. A job is a
//! no-op "process" that ends after a set time (its clock stops while it is suspended); a node's
//! simulated owner may come back for a while, which the scheduler answers with `SuspendJob`
//! and, once the node offers again, `ResumeJob`.
//!
//! Used by `benches/scale.rs` (up to 10,000 agents) and `tests/scale.rs` (300).

use graze_net::Access;
use graze_proto::{
    AgentMsg, Availability, ExitStatus, JobId, JobMsg, NodeInfo, NodeStatus, OwnerPolicy, Role,
    SchedulerMsg,
};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// How a simulated agent behaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// An access file whose token may register any node (an agent token without `--node`).
    pub access: Access,
    /// Cores each agent offers.
    pub cores: u32,
    /// How long a job's no-op process runs.
    pub job_time: Duration,
    /// Time between status reports.
    pub status_every: Duration,
    /// One agent in this many offers its cores (the others report an active owner); 1: all.
    pub offer_one_in: u32,
    /// Every this often an offering agent's owner may come back (`None`: never) ...
    pub owner_every: Option<Duration>,
    /// ... for this long (status `OwnerActive`, then offered again).
    pub owner_for: Duration,
    /// The silence after which a link is dead (the agent's `node_timeout`).
    pub node_timeout: Duration,
}

/// Counters shared by every simulated agent.
#[derive(Default, Debug)]
pub struct SimStats {
    /// Agents registered now.
    pub registered: AtomicU64,
    /// Registrations ever.
    pub registrations: AtomicU64,
    /// Agents that left (their task ended).
    pub left: AtomicU64,
    /// Connection or registration failures (given up).
    pub failures: AtomicU64,
    /// Connection attempts that failed and were retried.
    pub retries: AtomicU64,
    /// `StartJob` messages received.
    pub started: AtomicU64,
    /// Jobs whose process ended (`JobExited` sent).
    pub exited: AtomicU64,
    /// `JobCleared` sent.
    pub cleared: AtomicU64,
    /// `SuspendJob` received.
    pub suspended: AtomicU64,
    /// `ResumeJob` received.
    pub resumed: AtomicU64,
    /// Status reports sent.
    pub statuses: AtomicU64,
    /// Owner episodes started.
    pub owner_returns: AtomicU64,
    /// For each offering agent that got work: time from its registration to its first
    /// `StartJob` (µs).
    pub first_work_us: Mutex<Vec<u64>>,
    /// Time from a `JobCleared` to the next `StartJob` on an agent with a free core and a
    /// non-empty queue, as far as the agent can tell (µs).
    pub refill_us: Mutex<Vec<u64>>,
    /// The first few errors, for reports.
    pub errors: Mutex<Vec<String>>,
}

impl SimStats {
    fn error(&self, e: String) {
        self.failures.fetch_add(1, Relaxed);
        self.note(e);
    }

    fn note(&self, e: String) {
        let mut v = lock(&self.errors);
        if v.len() < 10 {
            v.push(e);
        }
    }
}

/// A set of simulated agents: start more with [`Sim::spawn`], stop them all with
/// [`Sim::stop`].
pub struct Sim {
    cfg: SimConfig,
    /// Counters.
    pub stats: Arc<SimStats>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// One QUIC endpoint per local address, shared by the agents bound to it: an endpoint
    /// each (a socket, its driver task and about 0.7 MB of buffers) starved the generator at
    /// 10,000 agents. The scheduler tells connections apart by their connection ids.
    endpoints: HashMap<IpAddr, graze_net::quinn::Endpoint>,
}

impl Sim {
    /// No agents yet.
    pub fn new(cfg: SimConfig) -> Sim {
        Sim {
            cfg,
            stats: Arc::default(),
            stop: watch::channel(false).0,
            tasks: Vec::new(),
            endpoints: HashMap::new(),
        }
    }

    /// How many agents were started.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// True before the first agent.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Start agent number `i` (named `simNNNNN`) on the endpoint bound to `ip`.
    pub fn spawn(&mut self, i: usize, ip: IpAddr) {
        let cfg = self.cfg.clone();
        let stats = self.stats.clone();
        let stop = self.stop.subscribe();
        let endpoint = match self.endpoints.get(&ip) {
            Some(e) => Ok(e.clone()),
            None => graze_net::bind_client(ip, Some(1 << 20)).inspect(|e| {
                self.endpoints.insert(ip, e.clone());
            }),
        };
        self.tasks.push(tokio::spawn(async move {
            match endpoint {
                Ok(endpoint) => run_agent(i, ip, endpoint, cfg, stats.clone(), stop).await,
                Err(e) => stats.error(format!("sim{i:05}: endpoint on {ip}: {e}")),
            }
            stats.left.fetch_add(1, Relaxed);
        }));
    }

    /// Stop every agent (each closes its connection) and wait for them, at most `limit`.
    pub async fn stop(self, limit: Duration) {
        let _ = self.stop.send(true);
        let all = futures_join(self.tasks);
        let _ = tokio::time::timeout(limit, all).await;
    }
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

/// The `n`th loopback source address of a spread over 127.0.1.0 - 127.0.1.255 (never the
/// scheduler's 127.0.0.1); agents on one address share its endpoint.
pub fn loopback(n: usize) -> IpAddr {
    IpAddr::from([127, 0, 1, (n % 256) as u8])
}

/// A job on a simulated node.
struct SimJob {
    /// Main node (received `StartJob`): its process runs here.
    main: bool,
    /// Time left to run, while suspended; the deadline while running.
    left: Duration,
    ends: Option<Instant>,
    exited: bool,
}

struct Node {
    i: usize,
    cfg: SimConfig,
    stats: Arc<SimStats>,
    send: graze_net::quinn::SendStream,
    seq: u64,
    jobs: HashMap<JobId, SimJob>,
    owner_until: Option<Instant>,
    offers: bool,
    registered_at: Instant,
    got_work: bool,
    cleared_at: Option<Instant>,
}

impl Node {
    fn availability(&self, now: Instant) -> Availability {
        if !self.offers || self.owner_until.is_some_and(|t| now < t) {
            Availability::OwnerActive
        } else {
            Availability::Offered
        }
    }

    async fn status(&mut self, now: Instant) -> Result<(), graze_net::NetError> {
        let availability = self.availability(now);
        let busy = self.jobs.values().filter(|j| j.ends.is_some()).count();
        let st = NodeStatus {
            core_load: (0..self.cfg.cores)
                .map(|c| if (c as usize) < busy { 100.0 } else { 1.0 })
                .collect(),
            owner_cpu: 0.5,
            owner_idle_ms: if availability.is_offered() {
                3_600_000 + (self.i as u64 % 1000)
            } else {
                0
            },
            availability,
            idle_sources: vec!["file:/sim".into()],
            unavailable_sources: vec![],
            window_ends_ms: None,
        };
        self.stats.statuses.fetch_add(1, Relaxed);
        graze_net::send(&mut self.send, &AgentMsg::Status(st)).await
    }

    async fn job_msg(&mut self, msg: JobMsg) -> Result<(), graze_net::NetError> {
        self.seq += 1;
        let seq = self.seq;
        graze_net::send(&mut self.send, &AgentMsg::Sequenced { seq, msg }).await
    }

    async fn clear(&mut self, job: JobId) -> Result<(), graze_net::NetError> {
        if self.jobs.remove(&job).is_some() {
            self.stats.cleared.fetch_add(1, Relaxed);
            self.cleared_at = Some(Instant::now());
            self.job_msg(JobMsg::JobCleared { job }).await?;
        }
        Ok(())
    }

    async fn on_msg(&mut self, msg: SchedulerMsg, now: Instant) -> Result<(), graze_net::NetError> {
        match msg {
            SchedulerMsg::StartJob { job, .. } => {
                self.stats.started.fetch_add(1, Relaxed);
                if !self.got_work {
                    self.got_work = true;
                    let us = now.duration_since(self.registered_at).as_micros() as u64;
                    lock(&self.stats.first_work_us).push(us);
                } else if let Some(t) = self.cleared_at.take() {
                    lock(&self.stats.refill_us).push(now.duration_since(t).as_micros() as u64);
                }
                self.jobs.insert(
                    job,
                    SimJob {
                        main: true,
                        left: self.cfg.job_time,
                        ends: Some(now + self.cfg.job_time),
                        exited: false,
                    },
                );
            }
            SchedulerMsg::SpawnRemote {
                remote,
                job,
                origin,
                origin_id,
                ..
            } => {
                // A rank-only node: the "proxy" ends at once.
                self.jobs.entry(job).or_insert(SimJob {
                    main: false,
                    left: Duration::ZERO,
                    ends: None,
                    exited: true,
                });
                self.job_msg(JobMsg::RemoteExited {
                    remote,
                    exit: ExitStatus {
                        code: Some(0),
                        signal: None,
                    },
                    origin,
                    origin_id,
                })
                .await?;
            }
            SchedulerMsg::KillJob { job } | SchedulerMsg::VacateJob { job } => {
                self.clear(job).await?;
            }
            SchedulerMsg::SuspendJob { job } => {
                self.stats.suspended.fetch_add(1, Relaxed);
                if let Some(j) = self.jobs.get_mut(&job) {
                    if let Some(t) = j.ends.take() {
                        j.left = t.saturating_duration_since(now);
                    }
                }
            }
            SchedulerMsg::ResumeJob { job } => {
                self.stats.resumed.fetch_add(1, Relaxed);
                if let Some(j) = self.jobs.get_mut(&job) {
                    if j.ends.is_none() && !j.exited {
                        j.ends = Some(now + j.left);
                    }
                }
            }
            SchedulerMsg::Registered { .. }
            | SchedulerMsg::Ack { .. }
            | SchedulerMsg::LaunchDone { .. }
            | SchedulerMsg::SignalJob { .. }
            | SchedulerMsg::CheckpointSetup { .. }
            | SchedulerMsg::Checkpoint { .. }
            | SchedulerMsg::ClusrunKill { .. } => {}
            SchedulerMsg::Clusrun { id, .. } => {
                graze_net::send(
                    &mut self.send,
                    &AgentMsg::ClusrunDone {
                        id,
                        outcome: graze_proto::ClusrunOutcome::Skipped {
                            reason: "simulated agent".into(),
                        },
                        dropped_lines: 0,
                    },
                )
                .await?;
            }
            SchedulerMsg::RegisterRefused { reason } => {
                self.stats
                    .error(format!("sim{:05}: refused: {reason}", self.i));
            }
        }
        Ok(())
    }

    /// The main processes whose time is up end: `JobExited` (the scheduler answers with
    /// `KillJob`, which clears them).
    async fn end_due(&mut self, now: Instant) -> Result<(), graze_net::NetError> {
        let due: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.main && !j.exited && j.ends.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for job in due {
            if let Some(j) = self.jobs.get_mut(&job) {
                j.exited = true;
                j.ends = None;
            }
            self.stats.exited.fetch_add(1, Relaxed);
            self.job_msg(JobMsg::JobExited {
                job,
                exit: ExitStatus {
                    code: Some(0),
                    signal: None,
                },
            })
            .await?;
        }
        Ok(())
    }

    fn next_end(&self) -> Option<Instant> {
        self.jobs.values().filter_map(|j| j.ends).min()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn run_agent(
    i: usize,
    ip: IpAddr,
    endpoint: graze_net::quinn::Endpoint,
    cfg: SimConfig,
    stats: Arc<SimStats>,
    mut stop: watch::Receiver<bool>,
) {
    let name = format!("sim{i:05}");
    // Like a real agent, retry a failed connection (a loaded machine may time out a
    // handshake); a few times, then give up.
    let mut attempt = 0;
    let session = loop {
        attempt += 1;
        let connect =
            graze_net::connect_via(endpoint.clone(), &cfg.access, Role::Agent, cfg.node_timeout);
        match connect.await {
            Ok(s) => break s,
            Err(e) if attempt >= 5 || !e.is_retryable() => {
                return stats.error(format!("{name}: connect: {e}"));
            }
            Err(e) => {
                stats.retries.fetch_add(1, Relaxed);
                stats.note(format!("{name}: connect (retrying): {e}"));
                tokio::select! {
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(Duration::from_millis(500 * attempt)) => {}
                }
            }
        }
    };
    let graze_net::Session { conn, control, .. } = session;
    let graze_net::Framed { mut send, mut recv } = control;
    let info = NodeInfo {
        name: name.clone(),
        addr: ip.to_string(),
        cores: cfg.cores,
        sockets: 1,
        memory_bytes: 8 << 30,
        groups: vec![],
        mpi: vec![],
        software: "graze-sim".into(),
        policy: OwnerPolicy {
            resume_after_ms: 0,
            vacate_after_ms: 600_000,
            vacate_grace_ms: 1000,
        },
        held: vec![],
        instance: format!("sim-{i}-{}", std::process::id()),
        isolation: None,
    };
    if let Err(e) = graze_net::send(&mut send, &AgentMsg::Register(info)).await {
        return stats.error(format!("{name}: register: {e}"));
    }
    match graze_net::recv::<SchedulerMsg>(&mut recv).await {
        Ok(Some(SchedulerMsg::Registered { .. })) => {}
        other => return stats.error(format!("{name}: registration answered {other:?}")),
    }
    stats.registered.fetch_add(1, Relaxed);
    stats.registrations.fetch_add(1, Relaxed);
    // The reader: `recv` is not cancel-safe, so it runs on its own and feeds a channel.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Ok(Some(m)) = graze_net::recv::<SchedulerMsg>(&mut recv).await {
            if tx.send(m).is_err() {
                break;
            }
        }
    });
    let now = Instant::now();
    let mut node = Node {
        i,
        offers: i.is_multiple_of(cfg.offer_one_in.max(1) as usize),
        cfg: cfg.clone(),
        stats: stats.clone(),
        send,
        seq: 0,
        jobs: HashMap::new(),
        owner_until: None,
        registered_at: now,
        got_work: false,
        cleared_at: None,
    };
    // Spread status reports and owner returns over the period, not all at one instant.
    let phase = Duration::from_micros((i as u64 * 7919) % cfg.status_every.as_micros() as u64);
    let mut tick = tokio::time::interval_at((now + phase).into(), cfg.status_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut owner_at = cfg.owner_every.map(|every| {
        let off = (i as u64 * 104_729) % every.as_millis().max(1) as u64;
        now + every / 2 + Duration::from_millis(off)
    });
    let result: Result<&str, graze_net::NetError> = async {
        node.status(now).await?;
        loop {
            let wake = [node.next_end(), owner_at, node.owner_until]
                .into_iter()
                .flatten()
                .min();
            let sleep = async {
                match wake {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.changed() => return Ok("stopped"),
                m = rx.recv() => match m {
                    Some(m) => node.on_msg(m, Instant::now()).await?,
                    None => return Ok("the scheduler closed the connection"),
                },
                _ = tick.tick() => node.status(Instant::now()).await?,
                () = sleep => {
                    let now = Instant::now();
                    node.end_due(now).await?;
                    if owner_at.is_some_and(|t| t <= now) {
                        owner_at = cfg.owner_every.map(|e| now + e);
                        if node.offers {
                            stats.owner_returns.fetch_add(1, Relaxed);
                            node.owner_until = Some(now + cfg.owner_for);
                            node.status(now).await?;
                        }
                    }
                    if node.owner_until.is_some_and(|t| t <= now) {
                        node.owner_until = None;
                        node.status(now).await?;
                    }
                }
            }
        }
    }
    .await;
    if let Err(e) = &result {
        stats.error(format!("{name}: {e}"));
    }
    stats.registered.fetch_sub(1, Relaxed);
    let _ = node.send.finish();
    conn.close(0u32.into(), b"simulated agent leaving");
    reader.abort();
    // Let the close reach the scheduler before the endpoint goes (it goes with the last
    // agent on it).
    tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle())
        .await
        .ok();
}

/// Percentile `p` (0..=100) of `v` (sorted here), in ms; 0 when empty.
pub fn percentile_ms(v: &mut [u64], p: usize) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let i = ((v.len() - 1) * p) / 100;
    v[i] as f64 / 1000.0
}

/// Raise this process's open-file limit to its hard limit; returns (soft, hard) after.
pub fn raise_nofile() -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read the struct passed; no other preconditions.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        }
    }
    (r.rlim_cur, r.rlim_max)
}

/// A process's CPU time (user + system), in ns from its CPU-time clock
/// (`clock_getcpuclockid`: the scheduler's own accounting), else from `/proc/PID/stat` in
/// clock ticks (10 ms each: an idle agent's 0.1 % over 60 s is only 6 of them).
pub fn proc_cpu(pid: u32) -> Duration {
    let mut clock: libc::clockid_t = 0;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: both calls only write the out-parameters we pass, which live on this stack.
    let ok = unsafe {
        libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) == 0
            && libc::clock_gettime(clock, &mut ts) == 0
    };
    if ok {
        return Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|x| x.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// A field of `/proc/PID/status` in kB (`VmRSS`, `VmHWM`, `Threads`...).
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Open file descriptors of a process.
pub fn proc_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The soft open-file limit of a process, from `/proc/PID/limits`.
pub fn proc_nofile(pid: u32) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("Max open files"))
        .map(|l| {
            l.split_whitespace()
                .skip(3)
                .take(2)
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_default()
}
