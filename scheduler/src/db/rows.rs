//! The rows as stored: serde types of their own, converted from and to the core's and the
//! wire's types here, so a change of either is a compile error at this boundary rather than
//! a silent change of what is on disk. Changing a row's shape bumps `db::SCHEMA_VERSION`.

use crate::core::{JobRecord, Placement, RunState, Secret};
use graze_proto::{
    ArraySpec, ArrayTask, CheckpointSpec, DepKind, Dependency, ExitStatus, JobEvent, JobId,
    JobSpec, MpiFlavour, NodeInfo, OwnerPolicy, TimeSignal, Unit,
};
use serde::{Deserialize, Serialize};

/// A job as stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobRow {
    /// Id.
    pub(crate) id: u64,
    /// The spec.
    pub(crate) spec: SpecRow,
    /// State, with what only that state has.
    pub(crate) state: StateRow,
    /// The shim secret.
    pub(crate) secret: String,
    /// Submit time (ms).
    pub(crate) submitted_ms: u64,
    /// Start of the current or last run.
    pub(crate) started_ms: Option<u64>,
    /// Current or last allocation.
    pub(crate) alloc: Vec<PlacementRow>,
    /// Nodes that must still confirm the last run's processes are gone.
    pub(crate) clearing: Vec<String>,
    /// Requeue count.
    pub(crate) requeues: u32,
    /// Life events.
    pub(crate) events: Vec<EventRow>,
    /// The current run's epoch.
    pub(crate) epoch: u64,
    /// Queue order (submit time, 0 after a vacate).
    pub(crate) order: u64,
    /// Time the current or last run spent suspended, ended suspensions only (ms).
    #[serde(default)]
    pub(crate) run_suspended_ms: u64,
    /// A run started whose attempt record is not yet written (absent in rows written before
    /// attempt records: a placed or cancelling job's run counts as open).
    #[serde(default)]
    pub(crate) run_open: Option<bool>,
    /// For a task of an array: the array, the index, the array's size and throttle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) task: Option<TaskRow>,
}

/// What makes a job a task of an array, as stored.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskRow {
    /// The array's id.
    pub(crate) array: u64,
    /// The task's index.
    pub(crate) index: u32,
    /// Tasks in the array.
    pub(crate) count: u32,
    /// Most tasks running at once.
    #[serde(default)]
    pub(crate) throttle: Option<u32>,
}

/// A job's spec as stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct SpecRow {
    /// Display name.
    pub(crate) name: Option<String>,
    /// Ranks.
    pub(crate) nprocs: u32,
    /// What a rank counts (`core`, `socket`, `node`).
    pub(crate) unit: Unit,
    /// Priority, higher first.
    pub(crate) priority: i32,
    /// Node groups every node must belong to.
    pub(crate) groups: Vec<String>,
    /// Nodes the job may run on (empty: any).
    pub(crate) nodes: Vec<String>,
    /// The main command.
    pub(crate) command: Vec<String>,
    /// Working directory.
    pub(crate) cwd: Option<String>,
    /// Extra environment.
    pub(crate) env: Vec<(String, String)>,
    /// Owner (the submitting token's identity).
    pub(crate) user: String,
    /// stdout file pattern.
    #[serde(default)]
    pub(crate) stdout: Option<String>,
    /// stderr file pattern.
    #[serde(default)]
    pub(crate) stderr: Option<String>,
    /// Running-time limit (ms).
    #[serde(default)]
    pub(crate) time_limit_ms: Option<u64>,
    /// Signal before the limit.
    #[serde(default)]
    pub(crate) time_signal: Option<TimeSignalRow>,
    /// Not before (ms).
    #[serde(default)]
    pub(crate) begin_ms: Option<u64>,
    /// Held until released.
    #[serde(default)]
    pub(crate) hold: bool,
    /// Whole nodes.
    #[serde(default)]
    pub(crate) exclusive: bool,
    /// Array shape.
    #[serde(default)]
    pub(crate) array: Option<ArrayRow>,
    /// Dependencies.
    #[serde(default)]
    pub(crate) after: Vec<DepRow>,
    /// Checkpoint options.
    #[serde(default)]
    pub(crate) checkpoint: Option<CheckpointRow>,
    /// `--trace`.
    #[serde(default)]
    pub(crate) trace: bool,
}

/// A job's checkpoint options, as stored.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckpointRow {
    /// Signal number.
    pub(crate) signal: i32,
    /// Grace at a vacate (ms).
    pub(crate) grace_ms: u64,
    /// Periodic interval (ms).
    #[serde(default)]
    pub(crate) every_ms: Option<u64>,
}

/// A signal before the time limit, as stored.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct TimeSignalRow {
    /// Signal number.
    pub(crate) signal: i32,
    /// How long before the limit (ms).
    pub(crate) before_ms: u64,
}

/// An array's shape, as stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct ArrayRow {
    /// Task indices.
    pub(crate) indices: Vec<u32>,
    /// Most tasks running at once.
    pub(crate) throttle: Option<u32>,
}

/// One dependency, as stored.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct DepRow {
    /// `ok`, `notok` or `any`.
    pub(crate) kind: DepKindRow,
    /// The job.
    pub(crate) job: u64,
}

/// What a dependency needs, as stored.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DepKindRow {
    /// Completed.
    Ok,
    /// Ended otherwise.
    NotOk,
    /// Ended.
    Any,
}

/// A job's state as stored.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StateRow {
    /// Waiting for cores.
    Queued,
    /// Running.
    Running,
    /// Suspended since `since` (ms).
    Suspended {
        /// Start of the suspension.
        since: u64,
    },
    /// Being cancelled.
    Cancelling,
    /// Ended with exit code 0.
    Completed {
        /// How the main command ended.
        exit: ExitRow,
        /// When (ms).
        ended_ms: u64,
    },
    /// Ended otherwise.
    Failed {
        /// How the main command ended (`None`: it could not start).
        exit: Option<ExitRow>,
        /// When (ms).
        ended_ms: u64,
    },
    /// Cancelled.
    Cancelled {
        /// When (ms).
        ended_ms: u64,
    },
    /// Killed at its time limit.
    TimedOut {
        /// How the main command ended, if it did.
        exit: Option<ExitRow>,
        /// When (ms).
        ended_ms: u64,
    },
    /// A dependency can never be met.
    DependencyFailed {
        /// When (ms).
        ended_ms: u64,
    },
}

/// How a main command ended, as stored.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExitRow {
    /// Exit code, if it exited.
    pub(crate) code: Option<i32>,
    /// Signal, if one killed it.
    pub(crate) signal: Option<i32>,
}

/// One node's share of an allocation, as stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlacementRow {
    /// Node name.
    pub(crate) host: String,
    /// Ranks there.
    pub(crate) ranks: u32,
    /// Cores held there.
    pub(crate) cores: u32,
}

/// One event of a job's life, as stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventRow {
    /// When (ms since the Unix epoch).
    pub(crate) at_ms: u64,
    /// What happened.
    pub(crate) what: String,
    /// Order among all events.
    #[serde(default)]
    pub(crate) seq: u64,
}

/// A node of the roster as stored: what it registered (without the runs it held then).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeRow {
    /// Node name.
    pub(crate) name: String,
    /// Its address, for people.
    pub(crate) addr: String,
    /// Cores offered.
    pub(crate) cores: u32,
    /// CPU sockets.
    pub(crate) sockets: u32,
    /// Physical memory in bytes.
    pub(crate) memory_bytes: u64,
    /// Node groups.
    pub(crate) groups: Vec<String>,
    /// MPI implementations found.
    pub(crate) mpi: Vec<MpiRow>,
    /// Agent software version.
    pub(crate) software: String,
    /// Owner policy.
    pub(crate) policy: PolicyRow,
    /// The agent process's instance id.
    pub(crate) instance: String,
}

/// An MPI implementation of a node, as stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct MpiRow {
    /// `mpich` or `openmpi`.
    pub(crate) kind: String,
    /// Its launcher's path.
    pub(crate) launcher: String,
    /// Version string.
    pub(crate) version: String,
}

/// A node's owner policy, as stored.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyRow {
    /// See `OwnerPolicy::resume_after_ms`.
    pub(crate) resume_after_ms: u64,
    /// See `OwnerPolicy::vacate_after_ms`.
    pub(crate) vacate_after_ms: u64,
    /// See `OwnerPolicy::vacate_grace_ms`.
    pub(crate) vacate_grace_ms: u64,
}

impl From<ExitStatus> for ExitRow {
    fn from(e: ExitStatus) -> ExitRow {
        ExitRow {
            code: e.code,
            signal: e.signal,
        }
    }
}

impl From<ExitRow> for ExitStatus {
    fn from(e: ExitRow) -> ExitStatus {
        ExitStatus {
            code: e.code,
            signal: e.signal,
        }
    }
}

impl From<&JobSpec> for SpecRow {
    fn from(s: &JobSpec) -> SpecRow {
        SpecRow {
            name: s.name.clone(),
            nprocs: s.nprocs,
            unit: s.unit,
            priority: s.priority,
            groups: s.groups.clone(),
            nodes: s.nodes.clone(),
            command: s.command.clone(),
            cwd: s.cwd.clone(),
            env: s.env.clone(),
            user: s.user.clone(),
            stdout: s.stdout.clone(),
            stderr: s.stderr.clone(),
            time_limit_ms: s.time_limit_ms,
            time_signal: s.time_signal.map(|t| TimeSignalRow {
                signal: t.signal,
                before_ms: t.before_ms,
            }),
            begin_ms: s.begin_ms,
            hold: s.hold,
            exclusive: s.exclusive,
            array: s.array.as_ref().map(|a| ArrayRow {
                indices: a.indices.clone(),
                throttle: a.throttle,
            }),
            after: s
                .after
                .iter()
                .map(|d| DepRow {
                    kind: match d.kind {
                        DepKind::Ok => DepKindRow::Ok,
                        DepKind::NotOk => DepKindRow::NotOk,
                        DepKind::Any => DepKindRow::Any,
                    },
                    job: d.job.0,
                })
                .collect(),
            checkpoint: s.checkpoint.map(|c| CheckpointRow {
                signal: c.signal,
                grace_ms: c.grace_ms,
                every_ms: c.every_ms,
            }),
            trace: s.trace,
        }
    }
}

impl From<SpecRow> for JobSpec {
    fn from(s: SpecRow) -> JobSpec {
        JobSpec {
            name: s.name,
            nprocs: s.nprocs,
            unit: s.unit,
            priority: s.priority,
            groups: s.groups,
            nodes: s.nodes,
            command: s.command,
            cwd: s.cwd,
            env: s.env,
            user: s.user,
            stdout: s.stdout,
            stderr: s.stderr,
            time_limit_ms: s.time_limit_ms,
            time_signal: s.time_signal.map(|t| TimeSignal {
                signal: t.signal,
                before_ms: t.before_ms,
            }),
            begin_ms: s.begin_ms,
            hold: s.hold,
            exclusive: s.exclusive,
            array: s.array.map(|a| ArraySpec {
                indices: a.indices,
                throttle: a.throttle,
            }),
            after: s
                .after
                .into_iter()
                .map(|d| Dependency {
                    kind: match d.kind {
                        DepKindRow::Ok => DepKind::Ok,
                        DepKindRow::NotOk => DepKind::NotOk,
                        DepKindRow::Any => DepKind::Any,
                    },
                    job: JobId(d.job),
                })
                .collect(),
            checkpoint: s.checkpoint.map(|c| CheckpointSpec {
                signal: c.signal,
                grace_ms: c.grace_ms,
                every_ms: c.every_ms,
            }),
            trace: s.trace,
        }
    }
}

impl From<&RunState> for StateRow {
    fn from(s: &RunState) -> StateRow {
        match s {
            RunState::Queued => StateRow::Queued,
            RunState::Running => StateRow::Running,
            RunState::Suspended { since } => StateRow::Suspended { since: *since },
            // A failing run's verdict is not kept (see `RunState::Failing`).
            RunState::Failing { suspended, .. } => match suspended {
                Some(since) => StateRow::Suspended { since: *since },
                None => StateRow::Running,
            },
            RunState::Cancelling => StateRow::Cancelling,
            RunState::Completed { exit, at } => StateRow::Completed {
                exit: (*exit).into(),
                ended_ms: *at,
            },
            RunState::Failed { exit, at } => StateRow::Failed {
                exit: exit.map(Into::into),
                ended_ms: *at,
            },
            RunState::Cancelled { at } => StateRow::Cancelled { ended_ms: *at },
            RunState::TimedOut { exit, at } => StateRow::TimedOut {
                exit: exit.map(Into::into),
                ended_ms: *at,
            },
            RunState::DependencyFailed { at } => StateRow::DependencyFailed { ended_ms: *at },
        }
    }
}

impl From<StateRow> for RunState {
    fn from(s: StateRow) -> RunState {
        match s {
            StateRow::Queued => RunState::Queued,
            StateRow::Running => RunState::Running,
            StateRow::Suspended { since } => RunState::Suspended { since },
            StateRow::Cancelling => RunState::Cancelling,
            StateRow::Completed { exit, ended_ms } => RunState::Completed {
                exit: exit.into(),
                at: ended_ms,
            },
            StateRow::Failed { exit, ended_ms } => RunState::Failed {
                exit: exit.map(Into::into),
                at: ended_ms,
            },
            StateRow::Cancelled { ended_ms } => RunState::Cancelled { at: ended_ms },
            StateRow::TimedOut { exit, ended_ms } => RunState::TimedOut {
                exit: exit.map(Into::into),
                at: ended_ms,
            },
            StateRow::DependencyFailed { ended_ms } => RunState::DependencyFailed { at: ended_ms },
        }
    }
}

impl From<&JobRecord> for JobRow {
    fn from(r: &JobRecord) -> JobRow {
        JobRow {
            id: r.id.0,
            spec: (&r.spec).into(),
            state: (&r.state).into(),
            secret: r.secret.expose().to_string(),
            submitted_ms: r.submitted_ms,
            started_ms: r.started_ms,
            alloc: r
                .alloc
                .iter()
                .map(|a| PlacementRow {
                    host: a.host.clone(),
                    ranks: a.ranks,
                    cores: a.cores,
                })
                .collect(),
            clearing: r.clearing.clone(),
            requeues: r.requeues,
            events: r
                .events
                .iter()
                .map(|e| EventRow {
                    at_ms: e.at_ms,
                    what: e.what.clone(),
                    seq: e.seq,
                })
                .collect(),
            epoch: r.epoch,
            order: r.order,
            run_suspended_ms: r.run_suspended_ms,
            run_open: Some(r.run_open),
            task: r.task.map(|t| TaskRow {
                array: t.array.0,
                index: t.index,
                count: t.count,
                throttle: t.throttle,
            }),
        }
    }
}

impl From<JobRow> for JobRecord {
    fn from(r: JobRow) -> JobRecord {
        let state: RunState = r.state.into();
        let run_open = r
            .run_open
            .unwrap_or(state.is_placed() || state == RunState::Cancelling);
        JobRecord {
            run_open,
            id: JobId(r.id),
            spec: r.spec.into(),
            state,
            secret: Secret::new(r.secret),
            submitted_ms: r.submitted_ms,
            started_ms: r.started_ms,
            alloc: r
                .alloc
                .into_iter()
                .map(|a| Placement {
                    host: a.host,
                    ranks: a.ranks,
                    cores: a.cores,
                })
                .collect(),
            clearing: r.clearing,
            requeues: r.requeues,
            events: r
                .events
                .into_iter()
                .map(|e| JobEvent {
                    at_ms: e.at_ms,
                    what: e.what,
                    seq: e.seq,
                })
                .collect(),
            epoch: r.epoch,
            order: r.order,
            run_suspended_ms: r.run_suspended_ms,
            task: r.task.map(|t| ArrayTask {
                array: JobId(t.array),
                index: t.index,
                count: t.count,
                throttle: t.throttle,
            }),
        }
    }
}

impl From<&NodeInfo> for NodeRow {
    fn from(n: &NodeInfo) -> NodeRow {
        NodeRow {
            name: n.name.clone(),
            addr: n.addr.clone(),
            cores: n.cores,
            sockets: n.sockets,
            memory_bytes: n.memory_bytes,
            groups: n.groups.clone(),
            mpi: n
                .mpi
                .iter()
                .map(|m| MpiRow {
                    kind: m.kind.clone(),
                    launcher: m.launcher.clone(),
                    version: m.version.clone(),
                })
                .collect(),
            software: n.software.clone(),
            policy: PolicyRow {
                resume_after_ms: n.policy.resume_after_ms,
                vacate_after_ms: n.policy.vacate_after_ms,
                vacate_grace_ms: n.policy.vacate_grace_ms,
            },
            instance: n.instance.clone(),
        }
    }
}

impl From<NodeRow> for NodeInfo {
    fn from(n: NodeRow) -> NodeInfo {
        NodeInfo {
            name: n.name,
            addr: n.addr,
            cores: n.cores,
            sockets: n.sockets,
            memory_bytes: n.memory_bytes,
            groups: n.groups,
            mpi: n
                .mpi
                .into_iter()
                .map(|m| MpiFlavour {
                    kind: m.kind,
                    launcher: m.launcher,
                    version: m.version,
                })
                .collect(),
            software: n.software,
            policy: OwnerPolicy {
                resume_after_ms: n.policy.resume_after_ms,
                vacate_after_ms: n.policy.vacate_after_ms,
                vacate_grace_ms: n.policy.vacate_grace_ms,
            },
            held: Vec::new(),
            instance: n.instance,
            isolation: None,
        }
    }
}
