//! One node of the table: what its agent registered and reported, and the cores it holds.

use graze_proto::{Availability, JobId, NodeInfo, NodeStatus, NodeView, Unit};
use std::collections::BTreeMap;

/// Id of one agent connection, chosen by the driver.
pub type ConnId = u64;

#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) info: NodeInfo,
    pub(super) conn: Option<ConnId>,
    pub(super) status: Option<NodeStatus>,
    /// Cores held per job (running or being cleared).
    pub(super) held: BTreeMap<JobId, u32>,
    /// Drained by an admin: no new work.
    pub(super) drained: bool,
}

impl Node {
    /// A node known from its registration, not connected yet.
    pub(super) fn new(info: NodeInfo, drained: bool) -> Node {
        Node {
            info,
            conn: None,
            status: None,
            held: BTreeMap::new(),
            drained,
        }
    }
    pub(super) fn offered(&self) -> bool {
        !self.drained
            && self.conn.is_some()
            && self
                .status
                .as_ref()
                .is_some_and(|s| s.availability == Availability::Offered)
    }
    pub(super) fn used(&self) -> u32 {
        self.held.values().sum()
    }
    pub(super) fn free(&self) -> u32 {
        self.info.cores.saturating_sub(self.used())
    }
    /// False when the node's owner reclaimed it: jobs placed here must not run now.
    pub(super) fn blocks_jobs(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| !s.availability.runs_jobs())
    }
    pub(super) fn idle_ms(&self) -> u64 {
        self.status.as_ref().map_or(0, |s| s.owner_idle_ms)
    }
    fn cores_per_socket(&self) -> u32 {
        (self.info.cores / self.info.sockets.max(1)).max(1)
    }
    /// Cores one rank of `unit` reserves here.
    pub(super) fn cores_per_rank(&self, unit: Unit) -> u32 {
        match unit {
            Unit::Core => 1,
            Unit::Socket => self.cores_per_socket(),
            Unit::Node => self.info.cores.max(1),
        }
    }
    /// Ranks of `unit` that fit in `free` cores.
    pub(super) fn ranks_in(&self, unit: Unit, free: u32) -> u32 {
        match unit {
            Unit::Node => u32::from(free >= self.info.cores && self.info.cores > 0),
            _ => free / self.cores_per_rank(unit),
        }
    }
    /// The node as the CLI shows it.
    pub(super) fn view(&self) -> NodeView {
        NodeView {
            info: self.info.clone(),
            online: self.conn.is_some(),
            status: self.status.clone(),
            used_cores: self.used(),
            jobs: self.held.keys().copied().collect(),
            drained: self.drained,
        }
    }
}
