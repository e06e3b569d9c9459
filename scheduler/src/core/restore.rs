//! What the driver persists and hands back after a restart: [`JobRecord`]s out, and
//! [`Core::restore`] rebuilding the tables from them. Runs that were live wait for their
//! nodes to report back (the confirm deadline in `timeout.rs`).

use super::job::{Job, Placement, RunState};
use super::node::Node;
use super::secret::Secret;
use super::state::Core;
use graze_proto::{ArrayTask, JobEvent, JobId, JobSpec, NodeInfo};
use std::cmp::Reverse;
use std::collections::BTreeSet;

/// A job as persisted by the driver and handed back to [`Core::restore`]. The database's own
/// row type (`db::JobRow`) converts from and to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    /// Id.
    pub id: JobId,
    /// The spec.
    pub spec: JobSpec,
    /// State. A failing run is recorded as what the wire calls it (running or suspended).
    pub state: RunState,
    /// The shim secret.
    pub secret: Secret,
    /// Submit time.
    pub submitted_ms: u64,
    /// Start of the current or last run.
    pub started_ms: Option<u64>,
    /// Current or last allocation.
    pub alloc: Vec<Placement>,
    /// Nodes that must still confirm the last run's processes are gone.
    pub clearing: Vec<String>,
    /// Requeue count.
    pub requeues: u32,
    /// Life events.
    pub events: Vec<JobEvent>,
    /// The current run's epoch.
    pub epoch: u64,
    /// Queue order (submit time, 0 after a vacate).
    pub order: u64,
    /// Time the current or last run spent suspended, ended suspensions only (ms).
    pub run_suspended_ms: u64,
    /// A run started whose attempt record is not yet written.
    pub run_open: bool,
    /// For a task of an array: the array and the index.
    pub task: Option<ArrayTask>,
}

impl Core {
    /// A job as persisted.
    pub fn job_record(&self, id: JobId) -> Option<JobRecord> {
        let j = self.jobs.get(&id)?;
        let state = match &j.state {
            RunState::Failing {
                suspended: Some(since),
                ..
            } => RunState::Suspended { since: *since },
            RunState::Failing {
                suspended: None, ..
            } => RunState::Running,
            s => s.clone(),
        };
        Some(JobRecord {
            id,
            spec: j.spec.clone(),
            state,
            secret: j.secret.clone(),
            submitted_ms: j.submitted_ms,
            started_ms: j.started_ms,
            alloc: j.alloc.clone(),
            clearing: j.clearing.iter().cloned().collect(),
            requeues: j.requeues,
            events: j.events.clone(),
            epoch: j.epoch,
            order: j.order,
            run_suspended_ms: j.run_suspended_ms,
            run_open: j.run_open,
            task: j.task,
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
            let d = drained.contains(&info.name);
            self.nodes.insert(info.name.clone(), Node::new(info, d));
        }
        for r in jobs {
            self.next_job = self.next_job.max(r.id.0 + 1);
            // The suspension in progress at the restart counts up to now: the run resumes as
            // running (below) and is suspended again from now if its node is still reclaimed.
            let ongoing = r
                .state
                .suspended_since()
                .map_or(0, |since| now.saturating_sub(since));
            // A suspended run comes back as running: its nodes are told to resume when they
            // confirm it, and a node still reclaimed suspends it again with its first status.
            // A failing run's verdict is not kept: its main node no longer holds it, so it is
            // requeued when that node reports back.
            let state = if r.state.is_placed() {
                RunState::Running
            } else {
                r.state
            };
            let live = matches!(state, RunState::Running | RunState::Cancelling);
            let clearing: BTreeSet<String> = r.clearing.into_iter().collect();
            let confirm: BTreeSet<String> = if live {
                r.alloc.iter().map(|a| a.host.clone()).collect()
            } else {
                clearing.clone()
            };
            if state == RunState::Queued {
                let key = (Reverse(r.spec.priority), r.order, r.id);
                self.queue.insert(key, r.spec.nprocs);
                if r.spec.time_limit_ms.is_some() {
                    self.limited.insert(key);
                }
            }
            // Live runs, and kills not yet confirmed, wait for their nodes to report back.
            let deadline = (live || !clearing.is_empty()).then_some(now + self.cfg.node_timeout_ms);
            let mut job = Job::new(r.spec, r.secret, r.submitted_ms);
            job.state = state;
            job.started_ms = r.started_ms;
            job.alloc = r.alloc;
            job.confirm = confirm;
            job.clearing = clearing;
            job.requeues = r.requeues;
            let last = r.events.iter().map(|e| e.seq).max().unwrap_or(0);
            self.next_event = self.next_event.max(last + 1);
            job.events = r.events;
            job.epoch = r.epoch;
            job.confirm_deadline = deadline;
            job.order = r.order;
            job.run_suspended_ms = r.run_suspended_ms.saturating_add(ongoing);
            job.run_open = r.run_open;
            job.signalled = job.signal_sent_this_run();
            job.task = r.task;
            if job.state == RunState::Running {
                job.ckpt_next = job.periodic_from(now);
            }
            if let Some(t) = r.task {
                // The array's id is no job's, but it is taken.
                self.next_job = self.next_job.max(t.array.0 + 1);
            }
            self.jobs.insert(r.id, job);
            self.track_active(r.id);
        }
        self.restore_arrays();
        self.restore_deps(now);
    }
}
