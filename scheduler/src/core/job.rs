//! One job of the core: its spec, its run state (which carries the data that only that state
//! has), its placement and the bookkeeping of the nodes that must still confirm a kill.

use super::secret::Secret;
use graze_proto::{ArrayTask, ExitStatus, HostSlots, JobEvent, JobId, JobSpec, JobState};
use std::cmp::Reverse;
use std::collections::BTreeSet;

/// One node's share of a job's allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The node.
    pub host: String,
    /// Ranks placed there.
    pub ranks: u32,
    /// Cores those ranks hold there.
    pub cores: u32,
}

impl Placement {
    /// The host and its slots, as hydra's host file and the CLI name them.
    pub fn slots(&self) -> HostSlots {
        HostSlots {
            host: self.host.clone(),
            slots: self.ranks,
        }
    }
}

/// Where a job is in its life. Each variant carries what only it has: a suspension its start,
/// a failing run its verdict, an ended job its exit and end time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Waiting for cores (or for its previous run's nodes to confirm the kill).
    Queued,
    /// Placed and running.
    Running,
    /// Placed, holding its cores, every process stopped because an owner reclaimed a node.
    Suspended {
        /// When the suspension began (ms).
        since: u64,
    },
    /// The main command of a multi-node run failed; the verdict waits until every other node
    /// of the run confirms its processes are gone. A node lost meanwhile is the likelier cause
    /// (its ranks died with it), so the run is requeued instead. Not persisted: after a
    /// restart such a run is requeued, its main node no longer holding it.
    Failing {
        /// How the main command ended (`None`: it could not start).
        exit: Option<ExitStatus>,
        /// The final event, once the verdict stands.
        what: String,
        /// When an owner reclaim suspended the failing run, if it did.
        suspended: Option<u64>,
    },
    /// Cancel asked; processes being killed.
    Cancelling,
    /// Ended with exit code 0.
    Completed {
        /// How the main command ended.
        exit: ExitStatus,
        /// When the job ended (ms).
        at: u64,
    },
    /// Ended otherwise.
    Failed {
        /// How the main command ended (`None`: it could not start).
        exit: Option<ExitStatus>,
        /// When the job ended (ms).
        at: u64,
    },
    /// Cancelled by a user.
    Cancelled {
        /// When the job ended (ms).
        at: u64,
    },
    /// Killed at its time limit.
    TimedOut {
        /// How the main command ended, if it did before its node cleared.
        exit: Option<ExitStatus>,
        /// When the job ended (ms).
        at: u64,
    },
    /// Never run: a dependency can never be met (the event names the job that broke it).
    DependencyFailed {
        /// When the job ended (ms).
        at: u64,
    },
}

impl RunState {
    /// The state as the wire (and the CLI) names it.
    pub fn wire(&self) -> JobState {
        match self {
            RunState::Queued => JobState::Queued,
            RunState::Running
            | RunState::Failing {
                suspended: None, ..
            } => JobState::Running,
            RunState::Suspended { .. }
            | RunState::Failing {
                suspended: Some(_), ..
            } => JobState::Suspended,
            RunState::Cancelling => JobState::Cancelling,
            RunState::Completed { .. } => JobState::Completed,
            RunState::Failed { .. } => JobState::Failed,
            RunState::Cancelled { .. } => JobState::Cancelled,
            RunState::TimedOut { .. } => JobState::Timeout,
            RunState::DependencyFailed { .. } => JobState::DependencyFailed,
        }
    }

    /// True once the job will not run again.
    pub fn is_final(&self) -> bool {
        self.wire().is_final()
    }

    /// A run placed on its nodes and not being cancelled: running, suspended or failing.
    pub fn is_placed(&self) -> bool {
        matches!(
            self,
            RunState::Running | RunState::Suspended { .. } | RunState::Failing { .. }
        )
    }

    /// When the current suspension began, while suspended.
    pub fn suspended_since(&self) -> Option<u64> {
        match self {
            RunState::Suspended { since } => Some(*since),
            RunState::Failing { suspended, .. } => *suspended,
            _ => None,
        }
    }

    /// How the main command ended, once the job did.
    pub fn exit(&self) -> Option<ExitStatus> {
        match self {
            RunState::Completed { exit, .. } => Some(*exit),
            RunState::Failed { exit, .. } | RunState::TimedOut { exit, .. } => *exit,
            _ => None,
        }
    }

    /// When the job ended, once it did.
    pub fn ended_at(&self) -> Option<u64> {
        match self {
            RunState::Completed { at, .. }
            | RunState::Failed { at, .. }
            | RunState::Cancelled { at }
            | RunState::TimedOut { at, .. }
            | RunState::DependencyFailed { at } => Some(*at),
            _ => None,
        }
    }
}

/// Queue order: priority high first, then the order (submit time, 0 after a vacate), then id.
pub(super) type QueueKey = (Reverse<i32>, u64, JobId);

#[derive(Debug, Clone)]
pub(super) struct Job {
    pub(super) spec: JobSpec,
    pub(super) state: RunState,
    pub(super) secret: Secret,
    pub(super) submitted_ms: u64,
    pub(super) started_ms: Option<u64>,
    /// Current or last allocation.
    pub(super) alloc: Vec<Placement>,
    /// Nodes of the previous or current run that still have to confirm their processes are gone.
    pub(super) clearing: BTreeSet<String>,
    pub(super) requeues: u32,
    pub(super) events: Vec<JobEvent>,
    /// The current run's epoch, +1 per start.
    pub(super) epoch: u64,
    /// After a restart: nodes of the running allocation that have not yet reported holding it.
    pub(super) confirm: BTreeSet<String>,
    /// When unconfirmed nodes count as lost.
    pub(super) confirm_deadline: Option<u64>,
    /// Not placed again before this time (fence after a node loss).
    pub(super) fence_until: Option<u64>,
    /// Second part of the queue key: the submit time, or 0 after a vacate (front of its
    /// priority).
    pub(super) order: u64,
    /// Nodes this job avoids until they offer cores again (their owner made it vacate).
    pub(super) avoid: BTreeSet<String>,
    /// Time the current (or last) run spent suspended in suspensions that ended (ms); the
    /// ongoing one is in `state`. See [`Job::suspended_ms`] and [`Job::running_ms`].
    pub(super) run_suspended_ms: u64,
    /// A run started and its attempt record is not yet emitted (`history.rs`).
    pub(super) run_open: bool,
    /// The current run's `--signal` was sent (see `limits.rs`).
    pub(super) signalled: bool,
    /// Not started before this time (`--begin`); cleared by the timeout once it passed.
    pub(super) begin_until: Option<u64>,
    /// For a task of an array: the array and the task's index.
    pub(super) task: Option<ArrayTask>,
    /// `--checkpoint-every`: when the running run's next periodic checkpoint is due (set at
    /// start and after each; postponed while suspended; not persisted: after a restart it
    /// counts from then). See `checkpoint.rs`.
    pub(super) ckpt_next: Option<u64>,
}

impl Job {
    /// A job just submitted at `now`.
    pub(super) fn new(spec: JobSpec, secret: Secret, now: u64) -> Job {
        let spec_begin = spec.begin_ms;
        Job {
            spec,
            state: RunState::Queued,
            secret,
            submitted_ms: now,
            started_ms: None,
            alloc: Vec::new(),
            clearing: BTreeSet::new(),
            requeues: 0,
            events: Vec::new(),
            epoch: 0,
            confirm: BTreeSet::new(),
            confirm_deadline: None,
            fence_until: None,
            order: now,
            avoid: BTreeSet::new(),
            run_suspended_ms: 0,
            run_open: false,
            signalled: false,
            begin_until: spec_begin.filter(|b| *b > now),
            task: None,
            ckpt_next: None,
        }
    }

    /// Time the current (or last) run has been suspended for owners up to `now`, the ongoing
    /// suspension included.
    pub(super) fn suspended_ms(&self, now: u64) -> u64 {
        let ongoing = self
            .state
            .suspended_since()
            .map_or(0, |since| now.saturating_sub(since));
        self.run_suspended_ms.saturating_add(ongoing)
    }

    /// Time the current (or last) run has been running up to `now`: since its start, less the
    /// time suspended. What a time limit counts.
    pub(super) fn running_ms(&self, now: u64) -> u64 {
        let Some(start) = self.started_ms else {
            return 0;
        };
        now.saturating_sub(start)
            .saturating_sub(self.suspended_ms(now))
    }

    pub(super) fn key(&self, id: JobId) -> QueueKey {
        (Reverse(self.spec.priority), self.order, id)
    }

    /// Nothing about this job can happen without a request or a scheduling pass: queued (or
    /// final) with no node left to clear it and no deadline. Jobs that are not settled are
    /// kept in [`super::state::Core::active`].
    pub(super) fn settled(&self) -> bool {
        (self.state == RunState::Queued || self.state.is_final())
            && self.clearing.is_empty()
            && self.confirm.is_empty()
            && self.confirm_deadline.is_none()
            && self.fence_until.is_none()
            && self.begin_until.is_none()
    }

    /// Whether `host` is part of the current or last allocation.
    pub(super) fn placed_on(&self, host: &str) -> bool {
        self.alloc.iter().any(|a| a.host == host)
    }

    /// The hosts of the current or last allocation, in order (the main node first).
    pub(super) fn hosts(&self) -> Vec<String> {
        self.alloc.iter().map(|a| a.host.clone()).collect()
    }
}
