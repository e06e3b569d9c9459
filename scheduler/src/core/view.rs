//! Views: jobs and nodes as the CLI and `graze top` show them, and the small read-only
//! lookups the driver needs (owner, state, nodes of a job).

use super::job::RunState;
use super::node::{ConnId, Node};
use super::place::PlaceMemo;
use super::state::Core;
use graze_proto::{JobId, JobState, JobView, NodeStatus, NodeView};

/// A node's state without its registration: what `graze top`'s deltas compare for every
/// status (a whole [`NodeView`] copies the registration each time).
#[derive(Debug)]
pub struct NodeState<'a> {
    /// Connected now.
    pub online: bool,
    /// Drained by an admin.
    pub drained: bool,
    /// Latest status.
    pub status: Option<&'a NodeStatus>,
    /// Cores in use by jobs.
    pub used_cores: u32,
    /// Jobs with ranks on this node.
    pub jobs: Vec<JobId>,
}

impl Core {
    /// A job as the CLI shows it.
    pub fn job_view(&self, id: JobId) -> Option<JobView> {
        self.job_view_with(id, &mut PlaceMemo::default())
    }

    /// Jobs as the CLI shows them, sharing one [`PlaceMemo`] (their waiting reasons).
    pub fn job_views_of(&self, ids: impl IntoIterator<Item = JobId>) -> Vec<JobView> {
        let mut memo = PlaceMemo::default();
        ids.into_iter()
            .filter_map(|id| self.job_view_with(id, &mut memo))
            .collect()
    }

    fn job_view_with(&self, id: JobId, memo: &mut PlaceMemo) -> Option<JobView> {
        let j = self.jobs.get(&id)?;
        Some(JobView {
            id,
            spec: j.spec.clone(),
            state: j.state.wire(),
            waiting_for: self.waiting_for(id, j, memo),
            submitted_ms: j.submitted_ms,
            started_ms: j.started_ms,
            ended_ms: j.state.ended_at(),
            allocation: j.alloc.iter().map(|a| a.slots()).collect(),
            exit: j.state.exit(),
            requeues: j.requeues,
            events: j.events.clone(),
            expected_start_ms: self
                .reservation
                .as_ref()
                .filter(|r| r.job == id && j.state == RunState::Queued)
                .and_then(|r| r.shadow),
            task: j.task,
            checkpoints: Vec::new(),
        })
    }

    /// Jobs: all not final, plus final ones when `all`. The ended tasks of an array with
    /// tasks left come too, so the array's line can count them.
    pub fn job_views(&self, all: bool) -> Vec<JobView> {
        self.job_views_of(
            self.jobs
                .iter()
                .filter(|(_, j)| {
                    all || !j.state.is_final()
                        || j.task
                            .is_some_and(|t| self.array_final(t.array) == Some(false))
                })
                .map(|(id, _)| *id),
        )
    }

    /// All nodes.
    pub fn node_views(&self) -> Vec<NodeView> {
        self.nodes.values().map(Node::view).collect()
    }

    /// One node, by name.
    pub fn node_view(&self, name: &str) -> Option<NodeView> {
        self.nodes.get(name).map(Node::view)
    }

    /// One node's state, by name (see [`NodeState`]).
    pub fn node_state(&self, name: &str) -> Option<NodeState<'_>> {
        self.nodes.get(name).map(|n| NodeState {
            online: n.conn.is_some(),
            drained: n.drained,
            status: n.status.as_ref(),
            used_cores: n.used(),
            jobs: n.held.keys().copied().collect(),
        })
    }

    /// Nodes of a job's current or last allocation and those still clearing it.
    pub fn job_nodes(&self, id: JobId) -> Vec<String> {
        let Some(j) = self.jobs.get(&id) else {
            return Vec::new();
        };
        let mut v = j.hosts();
        for c in &j.clearing {
            if !v.contains(c) {
                v.push(c.clone());
            }
        }
        v
    }

    /// State of a job, as the wire names it.
    pub fn job_state(&self, id: JobId) -> Option<JobState> {
        self.jobs.get(&id).map(|j| j.state.wire())
    }

    /// Who submitted job `id` (or array `id`).
    pub fn job_owner(&self, id: JobId) -> Option<&str> {
        let id = match self.arrays.get(&id) {
            Some(a) => *a.tasks.values().next()?,
            None => id,
        };
        self.jobs.get(&id).map(|j| j.spec.user.as_str())
    }

    /// Whether the node of `conn` is part of job `id`'s allocation (current or being cleared).
    pub fn conn_in_job(&self, conn: ConnId, id: JobId) -> bool {
        let Some(name) = self.node_name(conn) else {
            return false;
        };
        self.jobs
            .get(&id)
            .is_some_and(|j| j.placed_on(name) || j.clearing.contains(name))
    }

    /// The job's current or last run number (its epoch: 1 for the first run, 0 before it ever
    /// started): the attempt its output lines belong to.
    pub fn job_epoch(&self, id: JobId) -> Option<u64> {
        self.jobs.get(&id).map(|j| j.epoch)
    }
}
