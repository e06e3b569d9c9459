//! Job history and the harvest report: what `graze history` and `graze report` (and the
//! harvest view of `graze top`) receive.

use crate::ids::JobId;
use crate::values::{ExitStatus, HostSlots};
use serde::{Deserialize, Serialize};

/// One ended run of a job, or (attempt 0) a job that ended without a run of its own.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AttemptView {
    /// The job.
    pub job: JobId,
    /// The run number (the job's epoch, 1 for the first run); 0: no run.
    pub attempt: u64,
    /// Who submitted the job.
    pub user: String,
    /// The job's name.
    pub name: String,
    /// The final state's name (`completed`, `failed`, `cancelled`, ...) or `requeued`.
    pub state: String,
    /// Why the run was requeued (state `requeued` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requeue_reason: Option<String>,
    /// How the main command ended, if it did.
    pub exit: Option<ExitStatus>,
    /// The run's nodes with their ranks.
    pub nodes: Vec<HostSlots>,
    /// Cores held per node, in the order of `nodes`.
    pub cores: Vec<u32>,
    /// Submit time (ms since the Unix epoch).
    pub submitted_ms: u64,
    /// Start of the run (none for attempt 0).
    pub started_ms: Option<u64>,
    /// End of the run, or of the job for attempt 0.
    pub ended_ms: u64,
    /// Time the run ran, suspensions not counted (ms).
    pub running_ms: u64,
    /// Time the run was suspended for owners (ms).
    pub suspended_ms: u64,
    /// Cores held times running time (ms); suspended time is not counted.
    pub core_ms: u64,
    /// Requeues of the job so far, this one included.
    pub requeues: u32,
    /// Why each requeue so far happened, oldest first.
    pub requeue_reasons: Vec<String>,
}

/// What `graze history` asks for. Every filter is optional.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct HistoryQuery {
    /// Only this user's jobs.
    #[serde(default)]
    pub user: Option<String>,
    /// Only attempts that ended at or after this time (ms since the Unix epoch).
    #[serde(default)]
    pub since_ms: Option<u64>,
    /// Only attempts in this state (`completed`, `requeued`, ...).
    #[serde(default)]
    pub state: Option<String>,
}

/// Per node: what its owner did to jobs and what it offered, for the harvest report.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct NodeHarvest {
    /// The node.
    pub node: String,
    /// Jobs suspended because this node's owner came back.
    pub suspensions: u32,
    /// Jobs vacated (requeued) because this node stayed busy.
    pub vacates: u32,
    /// Owner-release latencies the agent measured (µs): from its owner watch seeing the input
    /// to every job process on the node stopped.
    pub release_us: Vec<u64>,
    /// Hourly usage: (hour start in ms since the Unix epoch, offered core-ms, used core-ms).
    pub hours: Vec<(u64, u64, u64)>,
}

/// What `graze report` (and the harvest view of `graze top`) receive.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct HarvestData {
    /// The start of the period (ms since the Unix epoch).
    pub since_ms: u64,
    /// When the scheduler answered.
    pub now_ms: u64,
    /// Attempts that ended in the period.
    pub attempts: Vec<AttemptView>,
    /// Per node figures.
    pub nodes: Vec<NodeHarvest>,
}

impl std::str::FromStr for crate::JobState {
    type Err = String;

    /// A state by the name the CLI shows (`completed`, `dependency-failed`, ...).
    fn from_str(s: &str) -> Result<Self, String> {
        use crate::JobState as S;
        let all = [
            S::Queued,
            S::Running,
            S::Suspended,
            S::Cancelling,
            S::Completed,
            S::Failed,
            S::Cancelled,
            S::Timeout,
            S::DependencyFailed,
        ];
        all.into_iter()
            .find(|st| st.to_string() == s)
            .ok_or_else(|| {
                let names: Vec<String> = all.iter().map(ToString::to_string).collect();
                format!("unknown state '{s}': one of {}", names.join(", "))
            })
    }
}
