//! The sans-IO scheduler core: node table, job queue, allocator.
//!
//! Inputs arrive as method calls carrying `now` (ms since the Unix epoch); effects leave as
//! [`Output`]s collected with [`Core::poll_output`]. No clock, no socket, no file in here.
//!
//! Invariant: a core is never promised to two jobs: `Node::held` sums to at most `Node::cores`.
//! Invariant: a job has at most one allocation alive: a requeued job is not placed again until
//! every node of its previous run has confirmed its processes are gone (or is lost).
//! Invariant: after every input, no queued job that fits the offered cores stays queued.
//! Invariant: a running job has no node whose owner reclaimed it (the job is suspended at
//! once), and a suspended job has at least one such node (it is resumed at once otherwise).
//!
//! Owner reclaim (gang suspend): when a node of a running job stops running jobs
//! ([`Availability::runs_jobs`]), the job is suspended on every node of its allocation and
//! resumed on all of them together once every node runs jobs again. A job suspended longer
//! than a busy node's `vacate_after` (at once when the node's availability window ended) is
//! vacated on every node and requeued at the front of its priority, avoiding the busy nodes
//! until they offer cores again; one suspended for `requeue_when_suspended_after` is vacated
//! early when it could be placed elsewhere right now. Deadlines are reported by
//! [`Core::poll_timeout`] and acted on by [`Core::handle_timeout`].

use graze_proto::{
    human_duration, Availability, ExitStatus, HostSlots, JobEvent, JobId, JobSpec, JobState,
    JobView, LaunchId, LaunchOutcome, NodeInfo, NodeStatus, NodeView, RemoteId, SchedulerMsg, Unit,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// Id of one agent connection, chosen by the driver.
pub type ConnId = u64;

/// Core settings.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Largest job (in ranks) accepted even when the known nodes have fewer cores; 0 means the
    /// limit is the capacity of every node the scheduler knows, online or not.
    pub max_job_cores: u32,
    /// A job suspended this long (ms) is vacated and requeued early if it could be placed
    /// elsewhere right now.
    pub requeue_when_suspended_after_ms: u64,
    /// How long restored running jobs wait for their nodes to report back after a restart.
    pub node_timeout_ms: u64,
    /// After a node is lost, how long its jobs wait before they may run again, so the cut-off
    /// agent (which kills its own processes when it times out) never overlaps the next run.
    pub fence_margin_ms: u64,
}

/// Default of [`CoreConfig::fence_margin_ms`]. A cut-off agent fences itself (kills its job
/// processes) after `node_timeout - 1 s` without a packet from the scheduler, at least 0.2 s
/// (minus its kill time) before the scheduler can call the node lost; this margin adds to that.
/// ARCHITECTURE.md ("Losing a node") has the arithmetic.
pub const DEFAULT_FENCE_MARGIN_MS: u64 = 250;

/// Default of [`CoreConfig::requeue_when_suspended_after_ms`]: 60 s.
pub const DEFAULT_REQUEUE_WHEN_SUSPENDED_AFTER_MS: u64 = 60_000;

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            max_job_cores: 0,
            requeue_when_suspended_after_ms: DEFAULT_REQUEUE_WHEN_SUSPENDED_AFTER_MS,
            node_timeout_ms: graze_proto::DEFAULT_NODE_TIMEOUT_MS,
            fence_margin_ms: DEFAULT_FENCE_MARGIN_MS,
        }
    }
}

/// A job as persisted by the driver and handed back to [`Core::restore`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobRecord {
    /// Id.
    pub id: JobId,
    /// The spec.
    pub spec: JobSpec,
    /// State.
    pub state: JobState,
    /// The shim secret.
    pub secret: String,
    /// Submit time.
    pub submitted_ms: u64,
    /// Start of the current or last run.
    pub started_ms: Option<u64>,
    /// End.
    pub ended_ms: Option<u64>,
    /// Current or last allocation: host, ranks, cores.
    pub alloc: Vec<(String, u32, u32)>,
    /// Nodes that must still confirm the last run's processes are gone.
    pub clearing: Vec<String>,
    /// How the main command ended.
    pub exit: Option<ExitStatus>,
    /// Requeue count.
    pub requeues: u32,
    /// Life events.
    pub events: Vec<JobEvent>,
    /// The current run's epoch.
    pub epoch: u64,
    /// Queue order (submit time, 0 after a vacate); `None` from older state files.
    #[serde(default)]
    pub order: Option<u64>,
}

/// Effects for the driver to carry out.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Send a message to an agent connection.
    Send {
        /// The connection.
        conn: ConnId,
        /// The message.
        msg: SchedulerMsg,
    },
    /// Close an agent connection.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: String,
    },
    /// A job reached a final state.
    JobFinal(JobId),
    /// A job changed (state, allocation, events), e.g. to persist it.
    JobChanged(JobId),
    /// A node registered (new or changed info), e.g. to persist the roster.
    NodeChanged(String),
}

#[derive(Debug, Clone)]
struct Node {
    info: NodeInfo,
    conn: Option<ConnId>,
    status: Option<NodeStatus>,
    /// Cores held per job (running or being cleared).
    held: BTreeMap<JobId, u32>,
    /// Drained by an admin: no new work.
    drained: bool,
}

impl Node {
    fn offered(&self) -> bool {
        !self.drained
            && self.conn.is_some()
            && self
                .status
                .as_ref()
                .is_some_and(|s| s.availability == Availability::Offered)
    }
    fn used(&self) -> u32 {
        self.held.values().sum()
    }
    fn free(&self) -> u32 {
        self.info.cores.saturating_sub(self.used())
    }
    /// False when the node's owner reclaimed it: jobs placed here must not run now.
    fn blocks_jobs(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| !s.availability.runs_jobs())
    }
    fn idle_ms(&self) -> u64 {
        self.status.as_ref().map_or(0, |s| s.owner_idle_ms)
    }
    fn cores_per_socket(&self) -> u32 {
        (self.info.cores / self.info.sockets.max(1)).max(1)
    }
    /// Cores one rank of `unit` reserves here.
    fn cores_per_rank(&self, unit: Unit) -> u32 {
        match unit {
            Unit::Core => 1,
            Unit::Socket => self.cores_per_socket(),
            Unit::Node => self.info.cores.max(1),
        }
    }
    /// Ranks of `unit` that fit in `free` cores.
    fn ranks_in(&self, unit: Unit, free: u32) -> u32 {
        match unit {
            Unit::Node => u32::from(free >= self.info.cores && self.info.cores > 0),
            _ => free / self.cores_per_rank(unit),
        }
    }
}

#[derive(Debug, Clone)]
struct Job {
    spec: JobSpec,
    state: JobState,
    secret: String,
    submitted_ms: u64,
    started_ms: Option<u64>,
    ended_ms: Option<u64>,
    /// Current or last allocation: host, ranks, cores.
    alloc: Vec<(String, u32, u32)>,
    /// Nodes of the previous or current run that still have to confirm their processes are gone.
    clearing: BTreeSet<String>,
    exit: Option<ExitStatus>,
    requeues: u32,
    events: Vec<JobEvent>,
    /// The current run's epoch, +1 per start.
    epoch: u64,
    /// After a restart: nodes of the running allocation that have not yet reported holding it.
    confirm: BTreeSet<String>,
    /// When unconfirmed nodes count as lost.
    confirm_deadline: Option<u64>,
    /// Not placed again before this time (fence after a node loss).
    fence_until: Option<u64>,
    /// Second part of the queue key: the submit time, or 0 after a vacate (front of its
    /// priority).
    order: u64,
    /// When the current suspension began.
    suspended_ms: Option<u64>,
    /// Nodes this job avoids until they offer cores again (their owner made it vacate).
    avoid: BTreeSet<String>,
    /// The main command of a multi-node run failed; the verdict waits until every other node
    /// of the run confirms its processes are gone. A node lost meanwhile is the likelier cause
    /// (its ranks died with it), so the run is requeued instead. Not persisted: after a restart
    /// such a run is requeued, its main node no longer holding it.
    failing: Option<(Option<ExitStatus>, String)>,
}

impl Job {
    fn key(&self, id: JobId) -> QueueKey {
        (Reverse(self.spec.priority), self.order, id)
    }
}

type QueueKey = (Reverse<i32>, u64, JobId);

/// The scheduler's state.
#[derive(Debug, Clone)]
pub struct Core {
    cfg: CoreConfig,
    nodes: BTreeMap<String, Node>,
    conns: HashMap<ConnId, String>,
    jobs: BTreeMap<JobId, Job>,
    /// Queued jobs in run order (priority high first, submit time, id) with their rank count,
    /// so a pass can skip jobs larger than the free cores without looking them up.
    queue: BTreeMap<QueueKey, u32>,
    next_job: u64,
    next_remote: u64,
    out: VecDeque<Output>,
    /// The latest `now` given to [`Core::handle_timeout`]: early-move checks up to it are done.
    last_timeout: u64,
}

impl Core {
    /// An empty cluster.
    pub fn new(cfg: CoreConfig) -> Core {
        Core {
            cfg,
            nodes: BTreeMap::new(),
            conns: HashMap::new(),
            jobs: BTreeMap::new(),
            queue: BTreeMap::new(),
            next_job: 1,
            next_remote: 1,
            out: VecDeque::new(),
            last_timeout: 0,
        }
    }

    /// The next effect to carry out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn send(&mut self, conn: ConnId, msg: SchedulerMsg) {
        self.out.push_back(Output::Send { conn, msg });
    }

    fn event(&mut self, job: JobId, now: u64, what: String) {
        if let Some(j) = self.jobs.get_mut(&job) {
            j.events.push(JobEvent { at_ms: now, what });
        }
        self.out.push_back(Output::JobChanged(job));
    }

    /// An agent registered on connection `conn`, reporting the job runs it still holds.
    /// A node of the same name on another connection is replaced (the agent reconnected):
    /// runs it still holds go on, runs it lost are requeued, runs nobody knows are fenced.
    pub fn node_connected(&mut self, conn: ConnId, info: NodeInfo, now: u64) -> Result<(), String> {
        if info.name.is_empty() {
            return Err("invalid node name '': must not be empty".into());
        }
        if info.cores == 0 {
            return Err(format!(
                "invalid cores '0' from node '{}': must be at least 1",
                info.name
            ));
        }
        let name = info.name.clone();
        if let Some(old) = self.nodes.get(&name).and_then(|n| n.conn) {
            if old != conn {
                self.conns.remove(&old);
                self.out.push_back(Output::Close {
                    conn: old,
                    reason: "a newer agent registered with the same name".into(),
                });
            }
        }
        let mut held: BTreeMap<JobId, graze_proto::HeldJob> =
            info.held.iter().map(|h| (h.job, h.clone())).collect();
        self.conns.insert(conn, name.clone());
        let node = self.nodes.entry(name.clone()).or_insert_with(|| Node {
            info: info.clone(),
            conn: None,
            status: None,
            held: BTreeMap::new(),
            drained: false,
        });
        node.info = info;
        node.info.held.clear();
        node.conn = Some(conn);
        node.status = None;
        node.held.clear();
        let node_timeout_ms = self.cfg.node_timeout_ms;
        self.send(conn, SchedulerMsg::Registered { node_timeout_ms });
        self.out.push_back(Output::NodeChanged(name.clone()));

        let ids: Vec<JobId> = self.jobs.keys().copied().collect();
        for id in ids {
            let j = &self.jobs[&id];
            let in_alloc = j.alloc.iter().find(|a| a.0 == name).map(|a| a.2);
            let live = matches!(
                j.state,
                JobState::Running | JobState::Suspended | JobState::Cancelling
            );
            // A run is kept only if the node still holds it and still has the cores for it
            // (an agent may come back offering fewer).
            let fits = in_alloc.is_some_and(|c| {
                self.nodes
                    .get(&name)
                    .is_some_and(|n| n.used() + c <= n.info.cores)
            });
            let holds = fits && held.get(&id).is_some_and(|h| h.epoch == j.epoch);
            match (live, in_alloc) {
                (true, Some(cores)) if holds => {
                    held.remove(&id);
                    if let Some(n) = self.nodes.get_mut(&name) {
                        n.held.insert(id, cores);
                    }
                    if let Some(j) = self.jobs.get_mut(&id) {
                        j.confirm.remove(&name);
                        if j.confirm.is_empty() {
                            j.confirm_deadline = None;
                        }
                    }
                    if self.jobs[&id].state == JobState::Cancelling
                        && self.jobs[&id].clearing.contains(&name)
                    {
                        self.send(conn, SchedulerMsg::KillJob { job: id });
                    }
                    // The job may have been suspended or resumed while the node was away;
                    // both messages are idempotent on the agent.
                    match self.jobs[&id].state {
                        JobState::Running => self.send(conn, SchedulerMsg::ResumeJob { job: id }),
                        JobState::Suspended => {
                            self.send(conn, SchedulerMsg::SuspendJob { job: id })
                        }
                        _ => {}
                    }
                }
                (true, Some(_)) => {
                    if matches!(j.state, JobState::Running | JobState::Suspended) {
                        self.requeue(
                            id,
                            format!("node {name} came back without the job's processes"),
                            now,
                        );
                    } else {
                        self.cleared(id, &name, now);
                    }
                }
                _ if j.clearing.contains(&name) => {
                    if held.remove(&id).is_some() {
                        // Still there: hold its cores until the node confirms the kill.
                        if let (Some(cores), Some(n)) = (in_alloc, self.nodes.get_mut(&name)) {
                            let cores = cores.min(n.free());
                            if cores > 0 {
                                n.held.insert(id, cores);
                            }
                        }
                        self.send(conn, SchedulerMsg::KillJob { job: id });
                    } else {
                        self.cleared(id, &name, now);
                    }
                }
                _ => {}
            }
        }
        // Runs nobody here knows any more: fence them.
        for id in held.into_keys() {
            self.send(conn, SchedulerMsg::KillJob { job: id });
        }
        self.schedule(now);
        Ok(())
    }

    /// A status report from an agent.
    pub fn node_status(&mut self, conn: ConnId, status: NodeStatus, now: u64) {
        let Some(name) = self.conns.get(&conn) else {
            return;
        };
        let Some(node) = self.nodes.get_mut(name) else {
            return;
        };
        let was = node.offered();
        let was_blocking = node.blocks_jobs();
        let was_kind = node
            .status
            .as_ref()
            .map(|s| std::mem::discriminant(&s.availability));
        node.status = Some(status);
        let offered = node.offered();
        let blocking = node.blocks_jobs();
        let kind = node
            .status
            .as_ref()
            .map(|s| std::mem::discriminant(&s.availability));
        let name = name.clone();
        if offered {
            for j in self.jobs.values_mut() {
                j.avoid.remove(&name);
            }
        }
        if blocking && !was_blocking {
            let why = self.nodes[&name]
                .status
                .as_ref()
                .map(|s| s.availability.to_string())
                .unwrap_or_default();
            let running: Vec<JobId> = self
                .jobs
                .iter()
                .filter(|(_, j)| {
                    j.state == JobState::Running && j.alloc.iter().any(|a| a.0 == name)
                })
                .map(|(id, _)| *id)
                .collect();
            for id in running {
                self.suspend(id, format!("node {name} is {why}"), now);
            }
        }
        // Load and idle time change every second; only a change of offer or of the kind of
        // availability can place, resume or vacate a job.
        if offered != was || blocking != was_blocking || kind != was_kind {
            self.review_suspended(now);
            self.schedule(now);
        }
    }

    /// Stop job `id` on every node of its allocation.
    fn suspend(&mut self, id: JobId, reason: String, now: u64) {
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        j.state = JobState::Suspended;
        j.suspended_ms = Some(now);
        let nodes: Vec<String> = j.alloc.iter().map(|a| a.0.clone()).collect();
        for n in nodes {
            if let Some(conn) = self.nodes.get(&n).and_then(|n| n.conn) {
                self.send(conn, SchedulerMsg::SuspendJob { job: id });
            }
        }
        self.event(id, now, format!("suspended: {reason}"));
    }

    /// The owner-policy deadlines of suspended jobs: vacates, and early-move checks not yet
    /// made (an early move that found no room is checked again when nodes change).
    fn suspend_deadlines(&self) -> Option<u64> {
        self.jobs
            .values()
            .filter(|j| j.state == JobState::Suspended)
            .flat_map(|j| {
                let vacate = self.vacate_due(j).map(|(at, _)| at);
                let early = j
                    .suspended_ms
                    .map(|s| s.saturating_add(self.cfg.requeue_when_suspended_after_ms))
                    .filter(|t| *t > self.last_timeout);
                [vacate, early]
            })
            .flatten()
            .min()
    }

    /// When a suspended job must be vacated because of its busy nodes, and why.
    fn vacate_due(&self, j: &Job) -> Option<(u64, String)> {
        let since = j.suspended_ms?;
        let mut due: Option<(u64, String)> = None;
        for (name, _, _) in &j.alloc {
            let Some(n) = self.nodes.get(name) else {
                continue;
            };
            if !n.blocks_jobs() {
                continue;
            }
            let outside = n
                .status
                .as_ref()
                .is_some_and(|s| s.availability == Availability::OutsideWindow);
            let (at, why) = if outside {
                (
                    since,
                    format!("the availability window of node {name} ended"),
                )
            } else {
                let after = n.info.policy.vacate_after_ms;
                (
                    since.saturating_add(after),
                    format!(
                        "the owner of node {name} stayed busy for {} (vacate_after)",
                        human_duration(after)
                    ),
                )
            };
            if due.as_ref().is_none_or(|d| at < d.0) {
                due = Some((at, why));
            }
        }
        due
    }

    /// Resume, vacate or move suspended jobs whose time has come.
    fn review_suspended(&mut self, now: u64) {
        let suspended: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::Suspended)
            .map(|(id, _)| *id)
            .collect();
        for id in suspended {
            let j = &self.jobs[&id];
            let busy: BTreeSet<String> = j
                .alloc
                .iter()
                .filter(|a| self.nodes.get(&a.0).is_none_or(Node::blocks_jobs))
                .map(|a| a.0.clone())
                .collect();
            let since = j.suspended_ms.unwrap_or(now);
            if busy.is_empty() {
                self.resume(id, now);
                continue;
            }
            if let Some((at, why)) = self.vacate_due(j) {
                if at <= now {
                    self.vacate(id, why, busy, now);
                    continue;
                }
            }
            let early = since.saturating_add(self.cfg.requeue_when_suspended_after_ms);
            if early <= now {
                let mut avoid = j.avoid.clone();
                avoid.extend(busy.iter().cloned());
                if self.place(&j.spec, &avoid).is_ok() {
                    let why = format!(
                        "suspended for {} (requeue_when_suspended_after) and it can run elsewhere now",
                        human_duration(now.saturating_sub(since))
                    );
                    self.vacate(id, why, busy, now);
                }
            }
        }
    }

    /// Continue a suspended job on every node.
    fn resume(&mut self, id: JobId, now: u64) {
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        j.state = JobState::Running;
        let since = j.suspended_ms.take().unwrap_or(now);
        let nodes: Vec<String> = j.alloc.iter().map(|a| a.0.clone()).collect();
        for n in nodes {
            if let Some(conn) = self.nodes.get(&n).and_then(|n| n.conn) {
                self.send(conn, SchedulerMsg::ResumeJob { job: id });
            }
        }
        self.event(
            id,
            now,
            format!(
                "resumed: every node is available again (suspended for {})",
                human_duration(now.saturating_sub(since))
            ),
        );
    }

    /// Vacate a suspended job on every node and requeue it at the front of its priority,
    /// avoiding `busy` until those nodes offer cores again.
    fn vacate(&mut self, id: JobId, reason: String, busy: BTreeSet<String>, now: u64) {
        let Some(j) = self.jobs.get(&id) else {
            return;
        };
        let nodes: Vec<String> = j.alloc.iter().map(|a| a.0.clone()).collect();
        let mut targets = Vec::new();
        for n in &nodes {
            if let Some(conn) = self.nodes.get(n).and_then(|n| n.conn) {
                targets.push((n.clone(), conn));
            }
        }
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        for (n, _) in &targets {
            j.clearing.insert(n.clone());
        }
        j.state = JobState::Queued;
        j.requeues += 1;
        j.exit = None;
        j.suspended_ms = None;
        j.failing = None;
        j.order = 0;
        j.avoid.extend(busy);
        let key = j.key(id);
        let n = j.spec.nprocs;
        self.queue.insert(key, n);
        for (_, conn) in targets {
            self.send(conn, SchedulerMsg::VacateJob { job: id });
        }
        self.event(id, now, format!("vacated and requeued: {reason}"));
    }

    /// An agent connection ended or timed out: its jobs are requeued, its cores gone.
    pub fn node_lost(&mut self, conn: ConnId, now: u64) {
        let Some(name) = self.conns.remove(&conn) else {
            return;
        };
        let Some(node) = self.nodes.get_mut(&name) else {
            return;
        };
        if node.conn != Some(conn) {
            return;
        }
        node.conn = None;
        node.status = None;
        node.held.clear();
        let affected: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| {
                j.clearing.contains(&name)
                    || (matches!(j.state, JobState::Running | JobState::Suspended)
                        && j.alloc.iter().any(|a| a.0 == name))
            })
            .map(|(id, _)| *id)
            .collect();
        let fence = now + self.cfg.fence_margin_ms;
        for id in affected {
            let state = self.jobs[&id].state;
            if matches!(state, JobState::Running | JobState::Suspended) {
                self.requeue(id, format!("node {name} lost"), now);
            }
            if let Some(j) = self.jobs.get_mut(&id) {
                j.fence_until = Some(j.fence_until.map_or(fence, |f| f.max(fence)));
                j.confirm.remove(&name);
            }
            self.cleared(id, &name, now);
        }
        self.schedule(now);
    }

    fn requeue(&mut self, id: JobId, reason: String, now: u64) {
        let nodes: Vec<String> = self.jobs[&id].alloc.iter().map(|a| a.0.clone()).collect();
        self.kill_on(id, &nodes);
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        j.state = JobState::Queued;
        j.requeues += 1;
        j.exit = None;
        j.suspended_ms = None;
        j.failing = None;
        j.confirm.clear();
        j.confirm_deadline = None;
        let key = j.key(id);
        let n = j.spec.nprocs;
        self.queue.insert(key, n);
        self.event(id, now, format!("requeued: {reason}"));
    }

    /// Send KillJob to every online node in `nodes` and wait for their confirmation.
    fn kill_on(&mut self, id: JobId, nodes: &[String]) {
        let mut targets = Vec::new();
        for n in nodes {
            if let Some(conn) = self.nodes.get(n).and_then(|n| n.conn) {
                targets.push((n.clone(), conn));
            }
        }
        if let Some(j) = self.jobs.get_mut(&id) {
            for (n, _) in &targets {
                j.clearing.insert(n.clone());
            }
        }
        for (_, conn) in targets {
            self.send(conn, SchedulerMsg::KillJob { job: id });
        }
    }

    /// Node `name` confirmed (or can no longer hold) no process of job `id`.
    fn cleared(&mut self, id: JobId, name: &str, now: u64) {
        // A stray confirmation for a node the job still runs on (and was not asked to clear)
        // must not free cores its processes use.
        if let Some(j) = self.jobs.get(&id) {
            let live = matches!(j.state, JobState::Running | JobState::Suspended)
                && j.alloc.iter().any(|a| a.0 == name)
                && !j.clearing.contains(name)
                && self.nodes.get(name).is_some_and(|n| n.conn.is_some());
            if live {
                return;
            }
        }
        if let Some(node) = self.nodes.get_mut(name) {
            node.held.remove(&id);
        }
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        j.clearing.remove(name);
        j.confirm.remove(name);
        if j.clearing.is_empty() && j.state == JobState::Cancelling {
            let exit = j.exit;
            let what = "cancelled: every process killed".to_string();
            self.finish(id, JobState::Cancelled, exit, what, now);
        }
        self.settle_failing(id, now);
    }

    /// Queue a job. Refuses a spec that is invalid or could never fit.
    pub fn submit(&mut self, spec: JobSpec, secret: String, now: u64) -> Result<JobId, String> {
        if spec.nprocs == 0 {
            return Err("invalid nprocs '0': a job needs at least 1 rank".into());
        }
        if spec.command.is_empty() || spec.command[0].is_empty() {
            return Err("the job has no command: give one after '--'".into());
        }
        for n in &spec.nodes {
            if !self.nodes.contains_key(n) {
                let known: Vec<&str> = self.nodes.keys().map(String::as_str).collect();
                return Err(format!(
                    "unknown node '{n}': known nodes are {}",
                    if known.is_empty() {
                        "none yet".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            }
        }
        let (cap, count) = self.capacity(&spec);
        if spec.nprocs > cap && spec.nprocs > self.cfg.max_job_cores {
            return Err(format!(
                "job needs {} {}s but the whole cluster{} has {} ({} node{}): it could never run",
                spec.nprocs,
                spec.unit,
                self.filter_words(&spec),
                cap,
                count,
                if count == 1 { "" } else { "s" }
            ));
        }
        let id = JobId(self.next_job);
        self.next_job += 1;
        self.jobs.insert(
            id,
            Job {
                spec,
                state: JobState::Queued,
                secret,
                submitted_ms: now,
                started_ms: None,
                ended_ms: None,
                alloc: Vec::new(),
                clearing: BTreeSet::new(),
                exit: None,
                requeues: 0,
                events: Vec::new(),
                epoch: 0,
                confirm: BTreeSet::new(),
                confirm_deadline: None,
                fence_until: None,
                order: now,
                suspended_ms: None,
                avoid: BTreeSet::new(),
                failing: None,
            },
        );
        let (key, n) = (self.jobs[&id].key(id), self.jobs[&id].spec.nprocs);
        self.queue.insert(key, n);
        self.event(id, now, "submitted".into());
        self.schedule(now);
        Ok(id)
    }

    fn filter_words(&self, spec: &JobSpec) -> String {
        let mut w = String::new();
        if !spec.groups.is_empty() {
            w.push_str(&format!(" in group {}", spec.groups.join("+")));
        }
        if !spec.nodes.is_empty() {
            w.push_str(&format!(" on nodes {}", spec.nodes.join(",")));
        }
        w
    }

    fn eligible(node: &Node, spec: &JobSpec) -> bool {
        spec.groups.iter().all(|g| node.info.groups.contains(g))
            && (spec.nodes.is_empty() || spec.nodes.contains(&node.info.name))
    }

    /// Ranks of the job's unit the known nodes could hold if all were free, and how many nodes.
    fn capacity(&self, spec: &JobSpec) -> (u32, u32) {
        let mut cap = 0u32;
        let mut count = 0;
        for n in self.nodes.values().filter(|n| Self::eligible(n, spec)) {
            cap = cap.saturating_add(n.ranks_in(spec.unit, n.info.cores));
            count += 1;
        }
        (cap, count)
    }

    /// Cancel a job.
    pub fn cancel(&mut self, id: JobId, now: u64) -> Result<JobState, String> {
        let Some(j) = self.jobs.get(&id) else {
            return Err(format!("no job {id}"));
        };
        match j.state {
            JobState::Queued => {
                let key = j.key(id);
                self.queue.remove(&key);
                let j = self.jobs.get_mut(&id).ok_or("job vanished")?;
                if j.clearing.is_empty() {
                    j.state = JobState::Cancelled;
                    j.ended_ms = Some(now);
                    self.event(id, now, "cancelled while queued".into());
                    self.out.push_back(Output::JobFinal(id));
                } else {
                    j.state = JobState::Cancelling;
                    self.event(id, now, "cancel requested".into());
                }
            }
            JobState::Running | JobState::Suspended => {
                let nodes: Vec<String> = j.alloc.iter().map(|a| a.0.clone()).collect();
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.state = JobState::Cancelling;
                }
                self.event(id, now, "cancel requested".into());
                self.kill_on(id, &nodes);
                if self.jobs[&id].clearing.is_empty() {
                    self.cleared(id, "", now);
                }
            }
            JobState::Cancelling => {}
            s => return Err(format!("job {id} is already {s}")),
        }
        self.schedule(now);
        Ok(self.jobs[&id].state)
    }

    /// Drain (`on`) or undrain a node: a drained node takes no new work, its running jobs go
    /// on. The mark outlives reconnects.
    pub fn set_drained(&mut self, name: &str, on: bool, now: u64) -> Result<NodeView, String> {
        let Some(node) = self.nodes.get_mut(name) else {
            let known: Vec<&str> = self.nodes.keys().map(String::as_str).collect();
            return Err(format!(
                "unknown node '{name}': known nodes are {}",
                if known.is_empty() {
                    "none yet".to_string()
                } else {
                    known.join(", ")
                }
            ));
        };
        node.drained = on;
        self.out.push_back(Output::NodeChanged(name.to_string()));
        if !on {
            self.schedule(now);
        }
        self.node_views()
            .into_iter()
            .find(|v| v.info.name == name)
            .ok_or_else(|| format!("node '{name}' vanished"))
    }

    /// Who submitted job `id`.
    pub fn job_owner(&self, id: JobId) -> Option<&str> {
        self.jobs.get(&id).map(|j| j.spec.user.as_str())
    }

    /// Whether the node of `conn` is part of job `id`'s allocation (current or being cleared).
    pub fn conn_in_job(&self, conn: ConnId, id: JobId) -> bool {
        let Some(name) = self.conn_node(conn) else {
            return false;
        };
        self.jobs
            .get(&id)
            .is_some_and(|j| j.alloc.iter().any(|a| a.0 == name) || j.clearing.contains(name))
    }

    /// The node name of an agent connection.
    pub fn node_of(&self, conn: ConnId) -> Option<&str> {
        self.conn_node(conn)
    }

    fn conn_node(&self, conn: ConnId) -> Option<&str> {
        self.conns.get(&conn).map(String::as_str)
    }

    /// The job's main command ended on the node of `conn`.
    pub fn job_exited(&mut self, conn: ConnId, id: JobId, exit: ExitStatus, now: u64) {
        self.job_ended(conn, id, Ok(exit), now);
    }

    /// The job's main command could not start on the node of `conn`.
    pub fn job_failed_to_start(&mut self, conn: ConnId, id: JobId, reason: String, now: u64) {
        self.job_ended(conn, id, Err(reason), now);
    }

    fn job_ended(&mut self, conn: ConnId, id: JobId, how: Result<ExitStatus, String>, now: u64) {
        let Some(name) = self.conn_node(conn).map(str::to_owned) else {
            return;
        };
        let Some(j) = self.jobs.get(&id) else {
            return;
        };
        // Only the main node of the current run speaks for the job, once.
        if !matches!(j.state, JobState::Running | JobState::Suspended)
            || j.alloc.first().map(|a| a.0.as_str()) != Some(name.as_str())
            || j.failing.is_some()
        {
            return;
        }
        let nodes: Vec<String> = j.alloc.iter().map(|a| a.0.clone()).collect();
        let (state, exit, what) = match how {
            Ok(e) if e.success() => (JobState::Completed, Some(e), format!("completed: {e}")),
            Ok(e) => (JobState::Failed, Some(e), format!("failed: {e}")),
            Err(r) => (
                JobState::Failed,
                None,
                format!("failed to start on {name}: {r}"),
            ),
        };
        if state == JobState::Failed && nodes.len() > 1 {
            // A rank on a node that just died (agent crash: its guard killed the ranks) makes
            // mpiexec fail before the node counts as lost: hold the verdict until every other
            // node confirms, or one is lost (then `node_lost` requeues the run).
            if let Some(j) = self.jobs.get_mut(&id) {
                j.failing = Some((exit, what));
            }
            self.kill_on(id, &nodes);
            let pending: Vec<String> = self.jobs[&id].clearing.iter().cloned().collect();
            if !pending.is_empty() {
                let how = exit.map_or_else(|| "could not start".to_string(), |e| e.to_string());
                self.event(
                    id,
                    now,
                    format!(
                        "main command ended ({how}) on {name}; waiting for {} to confirm its processes are gone before failing the run",
                        pending.join(", ")
                    ),
                );
            }
            self.settle_failing(id, now);
            self.schedule(now);
            return;
        }
        self.finish(id, state, exit, what, now);
        self.kill_on(id, &nodes);
        self.schedule(now);
    }

    /// The run ended for good: final state, the exit, the end time and event, and the
    /// driver told to persist and announce it.
    fn finish(
        &mut self,
        id: JobId,
        state: JobState,
        exit: Option<ExitStatus>,
        what: String,
        now: u64,
    ) {
        if let Some(j) = self.jobs.get_mut(&id) {
            j.state = state;
            j.exit = exit;
            j.ended_ms = Some(now);
            j.failing = None;
            j.suspended_ms = None;
        }
        self.event(id, now, what);
        self.out.push_back(Output::JobFinal(id));
    }

    /// A failing run whose nodes have all confirmed is failed for good.
    fn settle_failing(&mut self, id: JobId, now: u64) {
        let Some(j) = self.jobs.get(&id) else {
            return;
        };
        if !matches!(j.state, JobState::Running | JobState::Suspended) || !j.clearing.is_empty() {
            return;
        }
        if let Some((exit, what)) = j.failing.clone() {
            self.finish(id, JobState::Failed, exit, what, now);
        }
    }

    /// The node of `conn` has no process of job `id` left.
    pub fn job_cleared(&mut self, conn: ConnId, id: JobId, now: u64) {
        let Some(name) = self.conn_node(conn).map(str::to_owned) else {
            return;
        };
        self.cleared(id, &name, now);
        self.schedule(now);
    }

    /// A job's launcher shim on the node of `conn` asks to start `command` on `host`.
    pub fn launch(
        &mut self,
        conn: ConnId,
        id: LaunchId,
        job: JobId,
        secret: &str,
        host: &str,
        command: Vec<String>,
    ) {
        match self.check_launch(conn, job, secret, host) {
            Ok(target) => {
                let remote = RemoteId(self.next_remote);
                self.next_remote += 1;
                let epoch = self.jobs.get(&job).map_or(0, |j| j.epoch);
                let origin = self.conn_node(conn).unwrap_or_default().to_string();
                self.send(
                    target,
                    SchedulerMsg::SpawnRemote {
                        remote,
                        job,
                        command,
                        epoch,
                        origin,
                        origin_id: id,
                    },
                );
            }
            Err(error) => self.send(
                conn,
                SchedulerMsg::LaunchDone {
                    id,
                    outcome: LaunchOutcome::Refused { reason: error },
                },
            ),
        }
    }

    fn check_launch(
        &self,
        conn: ConnId,
        job: JobId,
        secret: &str,
        host: &str,
    ) -> Result<ConnId, String> {
        let origin = self.conn_node(conn).ok_or("unknown connection")?;
        let j = self.jobs.get(&job).ok_or_else(|| format!("no job {job}"))?;
        // A suspended job's launch still goes through: the target agent stops what it starts.
        if !matches!(j.state, JobState::Running | JobState::Suspended) {
            return Err(format!("job {job} is {}, not running", j.state));
        }
        if !crate::secret_eq(&j.secret, secret) {
            return Err(format!("wrong secret for job {job}"));
        }
        if !j.alloc.iter().any(|a| a.0 == origin) {
            return Err(format!("node {origin} is not part of job {job}"));
        }
        if !j.alloc.iter().any(|a| a.0 == host) {
            let hosts: Vec<&str> = j.alloc.iter().map(|a| a.0.as_str()).collect();
            return Err(format!(
                "host '{host}' is not allocated to job {job} (its nodes: {})",
                hosts.join(", ")
            ));
        }
        self.nodes
            .get(host)
            .and_then(|n| n.conn)
            .ok_or_else(|| format!("node {host} is offline"))
    }

    /// The shim of a launch went away. Nothing to undo here: the job is ending, and its
    /// processes on every node are killed with it.
    pub fn launch_abandoned(&mut self, _conn: ConnId, _id: LaunchId) {}

    /// A remote command started for a launch ended; the answer goes to the origin node's
    /// current connection (routing needs no memory, so it survives a scheduler restart).
    pub fn remote_exited(&mut self, origin: &str, origin_id: LaunchId, exit: ExitStatus) {
        if let Some(conn) = self.nodes.get(origin).and_then(|n| n.conn) {
            self.send(
                conn,
                SchedulerMsg::LaunchDone {
                    id: origin_id,
                    outcome: LaunchOutcome::Exited(exit),
                },
            );
        }
    }

    /// The earliest time [`Core::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.jobs
            .values()
            .flat_map(|j| [j.confirm_deadline, j.fence_until])
            .flatten()
            .chain(self.suspend_deadlines())
            .min()
    }

    /// Deadlines: unconfirmed runs after a restart are requeued, fences expire, suspended
    /// jobs are vacated or moved.
    pub fn handle_timeout(&mut self, now: u64) {
        self.last_timeout = self.last_timeout.max(now);
        self.review_suspended(now);
        let ids: Vec<JobId> = self.jobs.keys().copied().collect();
        for id in ids {
            let j = &self.jobs[&id];
            if j.fence_until.is_some_and(|t| t <= now) {
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.fence_until = None;
                }
            }
            if let Some(j) = self.jobs.get_mut(&id) {
                // A passed deadline with nothing left to confirm is spent (else the driver's
                // timer would fire again at once).
                if j.confirm_deadline.is_some_and(|t| t <= now) && j.confirm.is_empty() {
                    j.confirm_deadline = None;
                }
            }
            let j = &self.jobs[&id];
            if j.confirm_deadline.is_some_and(|t| t <= now) && !j.confirm.is_empty() {
                let missing: Vec<String> = j.confirm.iter().cloned().collect();
                match j.state {
                    JobState::Running | JobState::Suspended => self.requeue(
                        id,
                        format!(
                            "node {} did not report back after the scheduler restart",
                            missing.join(", ")
                        ),
                        now,
                    ),
                    _ => {
                        for n in &missing {
                            self.cleared(id, n, now);
                        }
                    }
                }
                // Missing nodes still offline count as cleared; an online one was just asked
                // to kill (requeue) and answers for itself.
                let offline: Vec<String> = missing
                    .iter()
                    .filter(|n| self.nodes.get(*n).is_none_or(|n| n.conn.is_none()))
                    .cloned()
                    .collect();
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.confirm.clear();
                    j.confirm_deadline = None;
                    for n in &offline {
                        j.clearing.remove(n);
                    }
                }
                if self.jobs[&id].state == JobState::Cancelling {
                    self.cleared(id, "", now);
                }
            }
        }
        self.schedule(now);
    }

    /// A job as persisted.
    pub fn job_record(&self, id: JobId) -> Option<JobRecord> {
        let j = self.jobs.get(&id)?;
        Some(JobRecord {
            id,
            spec: j.spec.clone(),
            state: j.state,
            secret: j.secret.clone(),
            submitted_ms: j.submitted_ms,
            started_ms: j.started_ms,
            ended_ms: j.ended_ms,
            alloc: j.alloc.clone(),
            clearing: j.clearing.iter().cloned().collect(),
            exit: j.exit,
            requeues: j.requeues,
            events: j.events.clone(),
            epoch: j.epoch,
            order: Some(j.order),
        })
    }

    /// A node's registered info, as persisted.
    pub fn node_info(&self, name: &str) -> Option<NodeInfo> {
        self.nodes.get(name).map(|n| n.info.clone())
    }

    /// Whether an admin drained the node.
    pub fn node_drained(&self, name: &str) -> bool {
        self.nodes.get(name).is_some_and(|n| n.drained)
    }

    /// Rebuild state after a restart from persisted jobs, nodes and drain marks. Runs that
    /// were live wait up to the node timeout for every node of theirs to report holding them.
    pub fn restore(
        &mut self,
        jobs: Vec<JobRecord>,
        nodes: Vec<NodeInfo>,
        drained: &[String],
        now: u64,
    ) {
        for info in nodes {
            self.nodes.insert(
                info.name.clone(),
                Node {
                    drained: drained.contains(&info.name),
                    info,
                    conn: None,
                    status: None,
                    held: BTreeMap::new(),
                },
            );
        }
        for mut r in jobs {
            self.next_job = self.next_job.max(r.id.0 + 1);
            let order = r.order.unwrap_or(r.submitted_ms);
            // A suspended run comes back as running: its nodes are told to resume when they
            // confirm it, and a node still reclaimed suspends it again with its first status.
            if r.state == JobState::Suspended {
                r.state = JobState::Running;
            }
            let live = matches!(r.state, JobState::Running | JobState::Cancelling);
            let confirm: BTreeSet<String> = if live {
                r.alloc.iter().map(|a| a.0.clone()).collect()
            } else {
                BTreeSet::new()
            };
            let clearing: BTreeSet<String> = r.clearing.into_iter().collect();
            if r.state == JobState::Queued {
                self.queue
                    .insert((Reverse(r.spec.priority), order, r.id), r.spec.nprocs);
            }
            // Live runs, and kills not yet confirmed, wait for their nodes to report back.
            let deadline = (live || !clearing.is_empty()).then_some(now + self.cfg.node_timeout_ms);
            self.jobs.insert(
                r.id,
                Job {
                    spec: r.spec,
                    state: r.state,
                    secret: r.secret,
                    submitted_ms: r.submitted_ms,
                    started_ms: r.started_ms,
                    ended_ms: r.ended_ms,
                    alloc: r.alloc,
                    confirm: if live { confirm } else { clearing.clone() },
                    clearing,
                    exit: r.exit,
                    requeues: r.requeues,
                    events: r.events,
                    epoch: r.epoch,
                    confirm_deadline: deadline,
                    fence_until: None,
                    order,
                    suspended_ms: None,
                    avoid: BTreeSet::new(),
                    failing: None,
                },
            );
        }
    }

    /// Try to place every queued job, in queue order.
    fn schedule(&mut self, now: u64) {
        // Free offered cores bound every placement: jobs above it are skipped without a search.
        let mut free: u32 = self
            .nodes
            .values()
            .filter(|n| n.offered())
            .map(Node::free)
            .sum();
        if free == 0 {
            return;
        }
        let mut cursor: Option<QueueKey> = None;
        loop {
            // Next queued job, after the cursor, small enough for the free cores.
            let next = match cursor {
                None => self.queue.iter().find(|(_, n)| **n <= free),
                Some(c) => self
                    .queue
                    .range((std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded))
                    .find(|(_, n)| **n <= free),
            };
            let Some((key, _)) = next else {
                return;
            };
            let key = *key;
            cursor = Some(key);
            let id = key.2;
            let j = &self.jobs[&id];
            if !j.clearing.is_empty() || j.fence_until.is_some() {
                continue;
            }
            if let Ok(alloc) = self.place(&j.spec, &j.avoid) {
                free -= alloc.iter().map(|a| a.2).sum::<u32>();
                self.start(id, alloc, now);
                if free == 0 {
                    return;
                }
            }
        }
    }

    /// Why a queued job waits, computed when asked.
    fn waiting_for(&self, j: &Job) -> Option<String> {
        if j.state != JobState::Queued {
            return None;
        }
        if !j.clearing.is_empty() {
            let nodes: Vec<&str> = j.clearing.iter().map(String::as_str).collect();
            return Some(format!(
                "waiting for its previous run to be killed on {}",
                nodes.join(", ")
            ));
        }
        if j.fence_until.is_some() {
            return Some("waiting briefly so its lost node's processes are gone first".into());
        }
        match self.place(&j.spec, &j.avoid) {
            Err(why) if j.avoid.is_empty() => Some(why),
            Err(why) => {
                let nodes: Vec<&str> = j.avoid.iter().map(String::as_str).collect();
                Some(format!(
                    "{why} (avoiding {} until its owner is idle again)",
                    nodes.join(", ")
                ))
            }
            Ok(_) => Some("jobs ahead of it in the queue come first".into()),
        }
    }

    /// Pack `spec` onto as few offered nodes as possible, preferring owners idle longest,
    /// never onto a node in `avoid`.
    fn place(
        &self,
        spec: &JobSpec,
        avoid: &BTreeSet<String>,
    ) -> Result<Vec<(String, u32, u32)>, String> {
        let mut cands: Vec<(&Node, u32)> = self
            .nodes
            .values()
            .filter(|n| n.offered() && Self::eligible(n, spec) && !avoid.contains(&n.info.name))
            .map(|n| (n, n.ranks_in(spec.unit, n.free())))
            .filter(|(_, r)| *r > 0)
            .collect();
        let avail: u32 = cands.iter().map(|c| c.1).sum();
        if avail < spec.nprocs {
            return Err(format!(
                "needs {} {}s{}, {} offered",
                spec.nprocs,
                spec.unit,
                self.filter_words(spec),
                avail
            ));
        }
        cands.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then(b.0.idle_ms().cmp(&a.0.idle_ms()))
                .then(a.0.info.name.cmp(&b.0.info.name))
        });
        let mut left = spec.nprocs;
        let mut alloc = Vec::new();
        for (n, ranks) in cands {
            if left == 0 {
                break;
            }
            let take = ranks.min(left);
            left -= take;
            alloc.push((
                n.info.name.clone(),
                take,
                take * n.cores_per_rank(spec.unit),
            ));
        }
        Ok(alloc)
    }

    fn start(&mut self, id: JobId, alloc: Vec<(String, u32, u32)>, now: u64) {
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        self.queue.remove(&j.key(id));
        j.state = JobState::Running;
        j.suspended_ms = None;
        j.failing = None;
        // A fresh run: confirmations awaited for an earlier run (after a restart) are moot.
        j.confirm.clear();
        j.confirm_deadline = None;
        j.started_ms = Some(now);
        j.ended_ms = None;
        j.epoch += 1;
        j.alloc = alloc.clone();
        let msg = SchedulerMsg::StartJob {
            job: id,
            command: j.spec.command.clone(),
            cwd: j.spec.cwd.clone(),
            env: j.spec.env.clone(),
            hosts: alloc
                .iter()
                .map(|a| HostSlots {
                    host: a.0.clone(),
                    slots: a.1,
                })
                .collect(),
            secret: j.secret.clone(),
            epoch: j.epoch,
        };
        for (host, _, cores) in &alloc {
            if let Some(n) = self.nodes.get_mut(host) {
                n.held.insert(id, *cores);
            }
        }
        let hosts: Vec<String> = alloc.iter().map(|a| format!("{}:{}", a.0, a.1)).collect();
        self.event(id, now, format!("started on {}", hosts.join(" ")));
        let main = self.nodes.get(&alloc[0].0).and_then(|n| n.conn);
        if let Some(conn) = main {
            self.send(conn, msg);
        }
    }

    // ---- views -------------------------------------------------------------------------

    /// A job as the CLI shows it.
    pub fn job_view(&self, id: JobId) -> Option<JobView> {
        let j = self.jobs.get(&id)?;
        Some(JobView {
            id,
            spec: j.spec.clone(),
            state: j.state,
            waiting_for: self.waiting_for(j),
            submitted_ms: j.submitted_ms,
            started_ms: j.started_ms,
            ended_ms: j.ended_ms,
            allocation: j
                .alloc
                .iter()
                .map(|a| HostSlots {
                    host: a.0.clone(),
                    slots: a.1,
                })
                .collect(),
            exit: j.exit,
            requeues: j.requeues,
            events: j.events.clone(),
        })
    }

    /// Jobs: all not final, plus final ones when `all`.
    pub fn job_views(&self, all: bool) -> Vec<JobView> {
        self.jobs
            .iter()
            .filter(|(_, j)| all || !j.state.is_final())
            .filter_map(|(id, _)| self.job_view(*id))
            .collect()
    }

    /// All nodes.
    pub fn node_views(&self) -> Vec<NodeView> {
        self.nodes.values().map(Self::view_of).collect()
    }

    /// One node, by name.
    pub fn node_view(&self, name: &str) -> Option<NodeView> {
        self.nodes.get(name).map(Self::view_of)
    }

    fn view_of(n: &Node) -> NodeView {
        NodeView {
            info: n.info.clone(),
            online: n.conn.is_some(),
            status: n.status.clone(),
            used_cores: n.used(),
            jobs: n.held.keys().copied().collect(),
            drained: n.drained,
        }
    }

    /// The node name of an agent connection, while it is connected.
    pub fn conn_name(&self, conn: ConnId) -> Option<&str> {
        self.conn_node(conn)
    }

    /// Nodes of a job's current or last allocation and those still clearing it.
    pub fn job_nodes(&self, id: JobId) -> Vec<String> {
        let Some(j) = self.jobs.get(&id) else {
            return Vec::new();
        };
        let mut v: Vec<String> = j.alloc.iter().map(|a| a.0.clone()).collect();
        for c in &j.clearing {
            if !v.contains(c) {
                v.push(c.clone());
            }
        }
        v
    }

    /// State of a job.
    pub fn job_state(&self, id: JobId) -> Option<JobState> {
        self.jobs.get(&id).map(|j| j.state)
    }

    /// Queued job ids in run order.
    pub fn queued(&self) -> Vec<JobId> {
        self.queue.keys().map(|k| k.2).collect()
    }

    /// Check the core's invariants; for tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        for n in self.nodes.values() {
            if n.used() > n.info.cores {
                return Err(format!(
                    "node {} holds {} of {} cores",
                    n.info.name,
                    n.used(),
                    n.info.cores
                ));
            }
            for id in n.held.keys() {
                let j = self.jobs.get(id).ok_or("held by unknown job")?;
                if !j.alloc.iter().any(|a| a.0 == n.info.name) {
                    return Err(format!(
                        "node {} holds cores for job {id} outside its allocation",
                        n.info.name
                    ));
                }
            }
        }
        for (id, j) in &self.jobs {
            let in_queue = self.queue.keys().any(|k| k.2 == *id);
            if in_queue != (j.state == JobState::Queued) {
                return Err(format!(
                    "job {id} in queue={in_queue} but state {}",
                    j.state
                ));
            }
        }
        // No queued job that fits stays queued.
        for k in self.queue.keys() {
            let j = &self.jobs[&k.2];
            if j.clearing.is_empty()
                && j.fence_until.is_none()
                && self.place(&j.spec, &j.avoid).is_ok()
            {
                return Err(format!("job {} fits but stays queued", k.2));
            }
        }
        // Running jobs run only on nodes that run jobs; suspended ones have a reclaimed node.
        for (id, j) in &self.jobs {
            let blocked: Vec<&str> = j
                .alloc
                .iter()
                .filter(|a| self.nodes.get(&a.0).is_none_or(Node::blocks_jobs))
                .map(|a| a.0.as_str())
                .collect();
            match j.state {
                JobState::Running if !blocked.is_empty() => {
                    return Err(format!(
                        "job {id} runs on reclaimed node(s) {}",
                        blocked.join(",")
                    ));
                }
                JobState::Suspended if blocked.is_empty() => {
                    return Err(format!("job {id} stays suspended on available nodes"));
                }
                JobState::Suspended if j.suspended_ms.is_none() => {
                    return Err(format!("job {id} suspended without a start time"));
                }
                JobState::Suspended | JobState::Running => {
                    for a in &j.alloc {
                        // After a restart, nodes still to confirm the run hold nothing yet;
                        // the nodes of a failing run release their cores as they confirm.
                        if j.confirm.contains(&a.0) || j.failing.is_some() {
                            continue;
                        }
                        if self
                            .nodes
                            .get(&a.0)
                            .is_none_or(|n| !n.held.contains_key(id))
                        {
                            return Err(format!("job {id} holds no cores on its node {}", a.0));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
