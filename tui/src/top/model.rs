//! The data `graze top` shows: what the scheduler pushed (nodes, jobs), the CPU history the TUI
//! keeps per node, and the output of the job that is open. Pure data: no terminal, no network.

use graze_proto::{Availability, JobId, JobState, JobView, LogLine, NodeStatus, NodeView};
use std::collections::{BTreeMap, VecDeque};

/// CPU samples kept per node: one a second, so three minutes.
pub const HISTORY: usize = 180;
/// Output lines kept per rank of the open job.
pub const LINES_PER_RANK: usize = 2000;

/// Something the data feed learnt.
#[derive(Debug, Clone, PartialEq)]
pub enum DataEvent {
    /// Connected to the scheduler; a snapshot follows.
    Connected,
    /// The connection to the scheduler is lost (or could not be made); the feed retries.
    Disconnected {
        /// Why, for the banner.
        reason: String,
        /// How many attempts failed in a row.
        attempt: u32,
    },
    /// The feed gave up: trying again cannot help (a refused or revoked token, another
    /// protocol version, an answer that does not fit). `graze top` ends with this reason.
    Stopped {
        /// Why, for a person.
        reason: String,
    },
    /// Every node and job, replacing what was known.
    Snapshot {
        /// Nodes.
        nodes: Vec<NodeView>,
        /// Jobs.
        jobs: Vec<JobView>,
    },
    /// One node changed.
    Node(Box<NodeView>),
    /// Nodes' load changed: their new statuses (unknown nodes are skipped).
    Loads(Vec<graze_proto::NodeLoad>),
    /// One job changed or is new.
    Job(Box<JobView>),
    /// Output lines of a job; `reset` drops the lines known before (a new log stream).
    Log {
        /// The job.
        job: JobId,
        /// The lines.
        lines: Vec<LogLine>,
        /// Forget earlier lines first.
        reset: bool,
    },
    /// The job's output is complete (it is final).
    LogEnd(JobId),
    /// A message for the status line (a cancel's result, an error).
    Notice(String),
    /// The harvest report's data (asked for by the harvest view).
    Harvest(Box<graze_proto::HarvestData>),
    /// A job's merged trace, or why there is none (asked for by the timeline view).
    Trace {
        /// The job.
        job: JobId,
        /// The trace, or the error for a person.
        trace: Result<Box<graze_trace::Trace>, String>,
    },
}

/// One CPU sample of a node: the jobs' share and the owner's share, in percent of the PC.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CpuSample {
    /// Load not caused by the owner: graze jobs.
    pub jobs: f32,
    /// The owner's own processes.
    pub owner: f32,
}

impl CpuSample {
    /// The sample of a status report: mean core load split into owner and jobs.
    pub fn of(s: &NodeStatus) -> CpuSample {
        let total = if s.core_load.is_empty() {
            0.0
        } else {
            s.core_load.iter().sum::<f32>() / s.core_load.len() as f32
        };
        let owner = s.owner_cpu.clamp(0.0, 100.0);
        let total = total.clamp(0.0, 100.0).max(owner);
        CpuSample {
            jobs: total - owner,
            owner,
        }
    }
    /// Both shares.
    pub fn total(&self) -> f32 {
        self.jobs + self.owner
    }
}

/// A node and its CPU history.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeEntry {
    /// The scheduler's latest view.
    pub view: NodeView,
    /// Oldest first.
    pub history: VecDeque<CpuSample>,
}

/// What a node is doing, as the nodes view names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeState {
    /// Cores offered and some used by jobs.
    Running,
    /// Cores offered, none used.
    Offered,
    /// Owner idle, but not yet for `start_after`.
    Idle,
    /// The owner uses the PC (input or CPU).
    OwnerBusy,
    /// Outside the node's availability windows.
    OutsideWindow,
    /// The owner snoozed graze (`graze-agent snooze`).
    Snoozed,
    /// Connected, no status yet.
    Starting,
    /// Not connected.
    Offline,
}

impl NodeState {
    /// The state of a node view.
    pub fn of(v: &NodeView) -> NodeState {
        if !v.online {
            return NodeState::Offline;
        }
        match v.status.as_ref().map(|s| &s.availability) {
            None => NodeState::Starting,
            Some(Availability::Offered) if v.used_cores > 0 => NodeState::Running,
            Some(Availability::Offered) => NodeState::Offered,
            Some(Availability::Waiting { .. }) => NodeState::Idle,
            Some(
                Availability::OwnerActive
                | Availability::OwnerPresent { .. }
                | Availability::OwnerCpuBusy { .. }
                | Availability::Reclaimed { .. },
            ) => NodeState::OwnerBusy,
            Some(Availability::OutsideWindow) => NodeState::OutsideWindow,
            Some(Availability::Snoozed { .. }) => NodeState::Snoozed,
        }
    }
    /// Its name in the table.
    pub fn label(self) -> &'static str {
        match self {
            NodeState::Running => "running",
            NodeState::Offered => "offered",
            NodeState::Idle => "idle",
            NodeState::OwnerBusy => "owner-busy",
            NodeState::OutsideWindow => "off-window",
            NodeState::Snoozed => "snoozed",
            NodeState::Starting => "starting",
            NodeState::Offline => "offline",
        }
    }
}

/// Cores a node offers now: all of them when offered, else none.
pub fn offered_cores(v: &NodeView) -> u32 {
    let offered = v.online
        && v.status
            .as_ref()
            .is_some_and(|s| s.availability == Availability::Offered);
    if offered {
        v.info.cores
    } else {
        0
    }
}

/// The output of the open job.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobLogs {
    /// The job.
    pub job: Option<JobId>,
    /// Lines per rank (`None`: lines without a rank label, e.g. mpiexec's own).
    pub ranks: BTreeMap<Option<u32>, VecDeque<LogLine>>,
    /// Rank 0's `pi: X - delta: Y` lines, in order: (pi, delta).
    pub pi: Vec<(f64, f64)>,
    /// Whether the scheduler said the output is complete.
    pub complete: bool,
}

impl JobLogs {
    fn push(&mut self, line: LogLine) {
        if line.rank == Some(0) {
            if let Some(p) = parse_pi(&line.line) {
                self.pi.push(p);
            }
        }
        let q = self.ranks.entry(line.rank).or_default();
        if q.len() == LINES_PER_RANK {
            q.pop_front();
        }
        q.push_back(line);
    }
}

/// Parse graze-pi's per-round line `pi: 3.141593 - delta: 0.000123`.
pub fn parse_pi(line: &str) -> Option<(f64, f64)> {
    let rest = line.trim().strip_prefix("pi: ")?;
    let (pi, delta) = rest.split_once(" - delta: ")?;
    Some((pi.trim().parse().ok()?, delta.trim().parse().ok()?))
}

/// Everything `graze top` knows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Model {
    /// Nodes by name.
    pub nodes: BTreeMap<String, NodeEntry>,
    /// Jobs by id.
    pub jobs: BTreeMap<JobId, JobView>,
    /// Output of the open job.
    pub logs: JobLogs,
    /// Connected to the scheduler and a snapshot arrived.
    pub connected: bool,
    /// Why the connection is down, and the failed attempts, while it is down.
    pub lost: Option<(String, u32)>,
    /// Time of the last CPU sample, ms since the epoch.
    pub sampled_ms: u64,
    /// The harvest report's data, once asked for and received.
    pub harvest: Option<graze_proto::HarvestData>,
}

impl Model {
    /// Take in a data event. Returns whether the node or job tables changed (so sorted views
    /// must be rebuilt).
    pub fn apply(&mut self, ev: DataEvent) -> bool {
        match ev {
            DataEvent::Connected => {
                self.lost = None;
                false
            }
            DataEvent::Disconnected { reason, attempt } => {
                self.connected = false;
                self.lost = Some((reason, attempt));
                false
            }
            DataEvent::Stopped { reason } => {
                self.connected = false;
                self.lost = Some((reason, 0));
                false
            }
            DataEvent::Snapshot { nodes, jobs } => {
                self.connected = true;
                self.lost = None;
                let mut old = std::mem::take(&mut self.nodes);
                for v in nodes {
                    let history = old
                        .remove(&v.info.name)
                        .map(|e| e.history)
                        .unwrap_or_default();
                    self.nodes
                        .insert(v.info.name.clone(), NodeEntry { view: v, history });
                }
                self.jobs = jobs.into_iter().map(|j| (j.id, j)).collect();
                true
            }
            DataEvent::Node(v) => {
                let v = *v;
                match self.nodes.get_mut(&v.info.name) {
                    Some(e) => e.view = v,
                    None => {
                        self.nodes.insert(
                            v.info.name.clone(),
                            NodeEntry {
                                view: v,
                                history: VecDeque::new(),
                            },
                        );
                    }
                }
                true
            }
            DataEvent::Loads(loads) => {
                let mut changed = false;
                for l in loads {
                    if let Some(s) = self
                        .nodes
                        .get_mut(&l.node)
                        .and_then(|e| e.view.status.as_mut())
                    {
                        l.apply(s);
                        changed = true;
                    }
                }
                changed
            }
            DataEvent::Job(j) => {
                self.jobs.insert(j.id, *j);
                true
            }
            DataEvent::Log { job, lines, reset } => {
                if self.logs.job != Some(job) {
                    return false;
                }
                if reset {
                    self.logs = JobLogs {
                        job: Some(job),
                        ..JobLogs::default()
                    };
                }
                for l in lines {
                    self.logs.push(l);
                }
                false
            }
            DataEvent::LogEnd(job) => {
                if self.logs.job == Some(job) {
                    self.logs.complete = true;
                }
                false
            }
            DataEvent::Notice(_) => false,
            DataEvent::Harvest(d) => {
                self.harvest = Some(*d);
                false
            }
            // The timeline's own: the app keeps it (see `App::update`), not the model.
            DataEvent::Trace { .. } => false,
        }
    }

    /// Take a CPU sample of every node if a second has passed since the last.
    pub fn sample(&mut self, now_ms: u64) {
        if now_ms.saturating_sub(self.sampled_ms) < 1000 {
            return;
        }
        self.sampled_ms = now_ms;
        for e in self.nodes.values_mut() {
            let s = match (&e.view.status, e.view.online) {
                (Some(st), true) => CpuSample::of(st),
                _ => CpuSample::default(),
            };
            if e.history.len() == HISTORY {
                e.history.pop_front();
            }
            e.history.push_back(s);
        }
    }

    /// Start keeping the output of `job` (forgetting any other job's).
    pub fn open_logs(&mut self, job: JobId) {
        if self.logs.job != Some(job) {
            self.logs = JobLogs {
                job: Some(job),
                ..JobLogs::default()
            };
        }
    }

    /// Nodes of a job's allocation with the ranks each runs, in MPICH's block order: the first
    /// host's slots get the first ranks.
    pub fn rank_hosts(job: &JobView) -> Vec<(u32, String)> {
        let mut out = Vec::new();
        let mut r = 0;
        for h in &job.allocation {
            for _ in 0..h.slots {
                out.push((r, h.host.clone()));
                r += 1;
            }
        }
        out
    }

    /// Whether a job is final.
    pub fn is_final(&self, id: JobId) -> bool {
        self.jobs.get(&id).is_some_and(|j| j.state.is_final())
    }

    /// Running state of a job's ranks on `host`, as far as the scheduler knows it.
    pub fn rank_state(&self, job: &JobView, host: &str) -> &'static str {
        match job.state {
            JobState::Queued => "queued",
            JobState::Suspended => "suspended",
            JobState::Running | JobState::Cancelling => {
                match self.nodes.get(host).map(|n| NodeState::of(&n.view)) {
                    Some(NodeState::Offline) | None => "node lost",
                    Some(NodeState::OwnerBusy) => "owner back",
                    _ if job.state == JobState::Cancelling => "killing",
                    _ => "running",
                }
            }
            JobState::Completed
            | JobState::Failed
            | JobState::Cancelled
            | JobState::Timeout
            | JobState::DependencyFailed => "ended",
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pi_lines_parse() {
        assert_eq!(
            parse_pi("pi: 3.100000 - delta: 0.000120"),
            Some((3.1, 0.00012))
        );
        assert_eq!(
            parse_pi("Computed value of pi on 4 processors is 3.14"),
            None
        );
        assert_eq!(parse_pi("pi: x - delta: 1"), None);
    }

    #[test]
    fn cpu_split_never_exceeds_the_pc() {
        let st = |load: Vec<f32>, owner: f32| NodeStatus {
            core_load: load,
            owner_cpu: owner,
            owner_idle_ms: 0,
            availability: Availability::Offered,
            idle_sources: vec![],
            unavailable_sources: vec![],
            window_ends_ms: None,
        };
        let s = CpuSample::of(&st(vec![100.0, 50.0], 25.0));
        assert_eq!((s.jobs, s.owner), (50.0, 25.0));
        // Owner CPU above the measured load: all of it is the owner's.
        let s = CpuSample::of(&st(vec![10.0], 40.0));
        assert_eq!((s.jobs, s.owner), (0.0, 40.0));
        let s = CpuSample::of(&st(vec![], 0.0));
        assert_eq!(s.total(), 0.0);
    }
}
