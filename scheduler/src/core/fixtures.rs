//! Test fixtures the scheduler's tests share: a node's registration and status.

use graze_proto::{Availability, NodeInfo, NodeStatus};

/// A node named `name` with `cores` cores on one socket, no groups, the default policy.
pub(crate) fn node_info(name: &str, cores: u32) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        addr: String::new(),
        cores,
        sockets: 1,
        memory_bytes: 0,
        groups: vec![],
        mpi: vec![],
        software: "test".into(),
        policy: Default::default(),
        held: vec![],
        instance: String::new(),
        isolation: None,
    }
}

/// A status saying `availability`, its owner idle for `idle_ms`, no load, no window end.
pub(crate) fn node_status(availability: Availability, idle_ms: u64) -> NodeStatus {
    NodeStatus {
        core_load: vec![],
        owner_cpu: 0.0,
        owner_idle_ms: idle_ms,
        availability,
        idle_sources: vec![],
        unavailable_sources: vec![],
        window_ends_ms: None,
    }
}
