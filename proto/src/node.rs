//! What an agent tells about its PC: registration, status, availability.

use crate::ids::JobId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An MPI implementation an agent found on its PATH.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MpiFlavour {
    /// `mpich` or `openmpi`.
    pub kind: String,
    /// Path of its launcher (`mpiexec` / `mpirun`).
    pub launcher: String,
    /// Version string, if it could be read.
    pub version: String,
}

/// What an agent tells about its PC when it registers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node name, unique in the cluster; the host name MPI sees.
    pub name: String,
    /// Address the agent runs jobs on (its bind address), for people.
    pub addr: String,
    /// Cores the agent offers when the PC is idle.
    pub cores: u32,
    /// CPU sockets (physical packages) of the PC.
    pub sockets: u32,
    /// Physical memory in bytes.
    pub memory_bytes: u64,
    /// Node groups this node belongs to.
    pub groups: Vec<String>,
    /// MPI implementations found on the agent's PATH.
    pub mpi: Vec<MpiFlavour>,
    /// The agent's software version.
    pub software: String,
    /// The owner policy the scheduler applies to this node's jobs.
    #[serde(default)]
    pub policy: OwnerPolicy,
    /// Jobs whose processes this agent still holds, e.g. after a reconnect or a scheduler
    /// restart. The scheduler keeps the runs it still knows and fences (kills) the others.
    #[serde(default)]
    pub held: Vec<HeldJob>,
    /// Random id of this agent process; job message sequence numbers restart with it.
    #[serde(default)]
    pub instance: String,
    /// Why jobs on this node are not isolated from each other (they all run as one user),
    /// for people; `None` when each job runs as a slot user of its own. Not stored: an agent
    /// says it at every registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
}

/// The part of an agent's owner policy the scheduler acts on (see `config/agent.toml`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerPolicy {
    /// Owner idle time before a suspended job continues, in ms.
    pub resume_after_ms: u64,
    /// Time a job may stay suspended because of this node before it is vacated, in ms.
    pub vacate_after_ms: u64,
    /// Time between SIGTERM and SIGKILL when a job is vacated, in ms.
    pub vacate_grace_ms: u64,
}

impl Default for OwnerPolicy {
    /// HTCondor's desktop policy, roughly: 5 min, 10 min, 10 s.
    fn default() -> Self {
        OwnerPolicy {
            resume_after_ms: 5 * 60 * 1000,
            vacate_after_ms: 10 * 60 * 1000,
            vacate_grace_ms: 10 * 1000,
        }
    }
}

/// A job run an agent still holds processes of.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HeldJob {
    /// The job.
    pub job: JobId,
    /// The run's epoch, from [`crate::SchedulerMsg::StartJob`] or
    /// [`crate::SchedulerMsg::SpawnRemote`].
    pub epoch: u64,
    /// Whether the job's main command runs on this node (still running or not yet reported).
    pub main: bool,
}

/// Whether the PC offers its cores now, and if not why.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Availability {
    /// Owner idle long enough: cores offered.
    Offered,
    /// Owner idle, but not yet for `start_after`.
    Waiting {
        /// How long until the cores are offered, in ms.
        remaining_ms: u64,
    },
    /// The owner used keyboard, mouse or terminal recently.
    OwnerActive,
    /// The owner is present without input: e.g. a session holds an idle inhibitor (a video
    /// player, a presentation). New in protocol 7.
    OwnerPresent {
        /// Why, for people: `inhibitor 'mpv: playing video'`.
        reason: String,
    },
    /// The owner's own processes use more CPU than `owner_cpu_max`.
    OwnerCpuBusy {
        /// The owner's CPU use, in percent of the whole PC.
        percent: u32,
    },
    /// Outside the node's availability windows.
    OutsideWindow,
    /// The PC's owner said "not now" (`graze-agent snooze`): like a window's end, nothing is
    /// offered and running jobs are vacated. New in protocol 7.
    Snoozed {
        /// Until when, in ms since the Unix epoch.
        until_ms: u64,
    },
    /// The owner reclaimed the PC (input, CPU load or window end) and has been idle since,
    /// but not yet for `resume_after`: job processes here stay stopped, no new work comes.
    Reclaimed {
        /// How long until the owner has been idle for `resume_after`, in ms.
        resumes_in_ms: u64,
    },
}

impl Availability {
    /// True when the node's cores are offered.
    pub fn is_offered(&self) -> bool {
        matches!(self, Availability::Offered)
    }

    /// True when jobs already placed on the node may run: the owner has not reclaimed it.
    /// `Waiting` counts: the owner has been idle for `resume_after` but not yet for
    /// `start_after`, so suspended jobs continue while no new work is placed.
    pub fn runs_jobs(&self) -> bool {
        matches!(self, Availability::Offered | Availability::Waiting { .. })
    }
}

impl fmt::Display for Availability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Availability::Offered => write!(f, "offered"),
            Availability::Waiting { remaining_ms } => {
                write!(f, "idle, offers in {}s", remaining_ms.div_ceil(1000))
            }
            Availability::OwnerActive => write!(f, "owner-busy"),
            Availability::OwnerPresent { reason } => write!(f, "owner present: {reason}"),
            Availability::OwnerCpuBusy { percent } => write!(f, "owner-busy (cpu {percent}%)"),
            Availability::OutsideWindow => write!(f, "outside window"),
            Availability::Snoozed { until_ms } => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let left = until_ms.saturating_sub(now);
                write!(
                    f,
                    "snoozed by its owner ({} left)",
                    crate::human_duration(left)
                )
            }
            Availability::Reclaimed { resumes_in_ms } => {
                write!(
                    f,
                    "owner-busy (idle, resumes in {}s)",
                    resumes_in_ms.div_ceil(1000)
                )
            }
        }
    }
}

/// Periodic report of an agent's PC.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NodeStatus {
    /// Load of each logical CPU, 0..=100.
    pub core_load: Vec<f32>,
    /// CPU use of processes that are not graze jobs, in percent of the whole PC.
    pub owner_cpu: f32,
    /// Time since the owner's last input, in ms.
    pub owner_idle_ms: u64,
    /// Whether the cores are offered.
    pub availability: Availability,
    /// Idle sources that work on this PC, e.g. `file:/tmp/x`.
    pub idle_sources: Vec<String>,
    /// Configured idle sources with nothing to watch now (no X display, no input device,
    /// nobody logged in on a terminal); they are skipped.
    #[serde(default)]
    pub unavailable_sources: Vec<String>,
    /// When the node's availability windows close next (ms since the Unix epoch), while one is
    /// open; `None` with no windows (always available) or none closing within a week. The
    /// scheduler places no job whose time limit would run past it here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_ends_ms: Option<u64>,
}
