//! The core's data: [`Core`] (node table, job table, queue), its settings and its outputs.
//! A leaf for the modules that implement the core's methods.

use super::array::Array;
use super::backfill::Reservation;
use super::history::{AttemptRecord, OwnerEventKind};
use super::job::{Job, QueueKey};
use super::node::{ConnId, Node};
use graze_proto::{JobEvent, JobId, SchedulerMsg};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

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
    /// Where checkpointing runs keep their checkpoint on every node: the run's
    /// `GRAZE_CHECKPOINT_DIR` is `{checkpoint_root}/job-{ID}`. The driver makes it
    /// `{checkpoint_node_dir}/{cluster}` (scheduler.toml; the cluster is the first 12 hex
    /// digits of the scheduler's certificate fingerprint), so clusters sharing a PC never
    /// collide.
    pub checkpoint_root: String,
    /// `max_trace_bytes` (scheduler.toml): a traced job's trace limit, all nodes and ranks;
    /// each rank's tracer gets its share (`GRAZE_TRACE_MAX_BYTES`).
    pub max_trace_bytes: u64,
}

/// Default of the scheduler's `checkpoint_node_dir`, the first part of
/// [`CoreConfig::checkpoint_root`].
pub const DEFAULT_CHECKPOINT_NODE_DIR: &str = "/var/tmp/graze-checkpoints";

/// Default of [`CoreConfig::fence_margin_ms`]. A cut-off agent fences itself (kills its job
/// processes) after `node_timeout - 0.75 s - K/2` (K the keep-alive) without a packet from
/// the scheduler, 0.725 s (minus its tick and kill time) before the scheduler can call the
/// node lost; this margin adds to that.
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
            checkpoint_root: format!("{DEFAULT_CHECKPOINT_NODE_DIR}/local"),
            max_trace_bytes: graze_proto::DEFAULT_MAX_TRACE_BYTES,
        }
    }
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
    /// A run ended (or a job ended without one): persist its record in the same commit as
    /// the job's change.
    AttemptEnded(AttemptRecord),
    /// A job was suspended or vacated because of this node's owner.
    OwnerEvent {
        /// The node.
        node: String,
        /// Suspension or vacate.
        kind: OwnerEventKind,
        /// The job.
        job: JobId,
        /// When (ms).
        at: u64,
    },
}

/// The scheduler's state.
#[derive(Debug, Clone)]
pub struct Core {
    pub(super) cfg: CoreConfig,
    pub(super) nodes: BTreeMap<String, Node>,
    pub(super) conns: HashMap<ConnId, String>,
    pub(super) jobs: BTreeMap<JobId, Job>,
    /// Queued jobs in run order (priority high first, submit time, id) with their rank count,
    /// so a pass can skip jobs larger than the free cores without looking them up.
    pub(super) queue: BTreeMap<QueueKey, u32>,
    /// The keys of queued jobs with a time limit: the only ones a pass looks at behind a
    /// reservation (EASY backfill), so a long queue without limits costs nothing there.
    pub(super) limited: BTreeSet<QueueKey>,
    pub(super) next_job: u64,
    pub(super) next_remote: u64,
    pub(super) out: VecDeque<Output>,
    /// The latest `now` given to [`Core::handle_timeout`]: early-move checks up to it are done.
    pub(super) last_timeout: u64,
    /// The `now` of the latest scheduling pass: views and the invariant check judge "fits
    /// now" (availability windows) and the reservation at that time.
    pub(super) pass_at: u64,
    /// The head job's reservation from the latest pass (EASY backfill), if one has one.
    pub(super) reservation: Option<Reservation>,
    /// Passes wait for [`Core::run_deferred_pass`] (see [`Core::defer_passes`]).
    pub(super) defer_passes: bool,
    /// A pass was asked for and deferred.
    pub(super) pass_due: bool,
    /// During a pass's placements: the nodes that may take ranks (offered, a free core), in
    /// name order. Starts only shrink that set, so each placement looks at these alone
    /// instead of every node (at 10,000 nodes the scan per start was most of a pass).
    pub(super) pass_nodes: Option<Vec<String>>,
    /// Job arrays by the array's id (no job has that id; its tasks are jobs of their own).
    pub(super) arrays: BTreeMap<JobId, Array>,
    /// For each job or array named in another job's `after`: the jobs that name it.
    pub(super) dependents: HashMap<JobId, Vec<JobId>>,
    /// The next event's [`JobEvent::seq`].
    pub(super) next_event: u64,
    /// Every job that is not [`super::job::Job::settled`] (placed, cancelling, failing,
    /// clearing, fenced, waiting for a begin time or a confirmation), and perhaps a few that
    /// became settled since and are dropped at their next event or timeout: what per-node
    /// inputs and deadlines look at instead of every job, so their cost does not grow with
    /// the queue or the finished jobs. Kept by [`Core::track_active`].
    pub(super) active: BTreeSet<JobId>,
    /// Nodes some job may avoid (`Job::avoid`, a superset): only an offer from one of these
    /// needs a look at every job.
    pub(super) avoided: BTreeSet<String>,
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
            limited: BTreeSet::new(),
            next_job: 1,
            next_remote: 1,
            out: VecDeque::new(),
            last_timeout: 0,
            pass_at: 0,
            reservation: None,
            defer_passes: false,
            pass_due: false,
            pass_nodes: None,
            arrays: BTreeMap::new(),
            dependents: HashMap::new(),
            next_event: 1,
            active: BTreeSet::new(),
            avoided: BTreeSet::new(),
        }
    }

    /// Keep job `id` in [`Core::active`] exactly while it is not settled.
    pub(super) fn track_active(&mut self, id: JobId) {
        match self.jobs.get(&id) {
            Some(j) if !j.settled() => {
                self.active.insert(id);
            }
            _ => {
                self.active.remove(&id);
            }
        }
    }

    /// The ids of [`Core::active`], for loops that change jobs.
    pub(super) fn active_ids(&self) -> Vec<JobId> {
        self.active.iter().copied().collect()
    }

    /// The jobs of [`Core::active`].
    pub(super) fn active_jobs(&self) -> impl Iterator<Item = (JobId, &super::job::Job)> + '_ {
        self.active
            .iter()
            .filter_map(|id| self.jobs.get(id).map(|j| (*id, j)))
    }

    /// The next effect to carry out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub(super) fn send(&mut self, conn: ConnId, msg: SchedulerMsg) {
        self.out.push_back(Output::Send { conn, msg });
    }

    pub(super) fn event(&mut self, job: JobId, now: u64, what: String) {
        if let Some(j) = self.jobs.get_mut(&job) {
            j.events.push(JobEvent {
                at_ms: now,
                what,
                seq: self.next_event,
            });
            self.next_event += 1;
        }
        self.out.push_back(Output::JobChanged(job));
        self.track_active(job);
        // Every change of state comes with an event: the array's counts follow it here, and
        // a job that just ended decides the jobs that wait for it.
        self.track_task(job);
        if self.jobs.get(&job).is_some_and(|j| j.state.is_final()) {
            self.release_dependents(job, now);
        }
    }

    /// The node name of an agent connection, while it is connected: the one lookup from a
    /// connection to its node.
    pub fn node_name(&self, conn: ConnId) -> Option<&str> {
        self.conns.get(&conn).map(String::as_str)
    }

    /// The connection of node `name`, while it is connected.
    pub(super) fn conn_of(&self, name: &str) -> Option<ConnId> {
        self.nodes.get(name).and_then(|n| n.conn)
    }

    /// "known nodes are a, b" (or "none yet"), for errors naming an unknown node.
    pub(super) fn known_nodes(&self) -> String {
        let known: Vec<&str> = self.nodes.keys().map(String::as_str).collect();
        if known.is_empty() {
            "known nodes are none yet".to_string()
        } else {
            format!("known nodes are {}", known.join(", "))
        }
    }
}
