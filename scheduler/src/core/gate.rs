//! The gate in front of the allocator: why a queued job may not start now whatever the free
//! cores (its previous run still being killed, a fence after a node loss; batch options add
//! their own reasons here). The scheduling pass skips a job the gate holds back, and
//! `waiting_for` gives the gate's reason before the allocator's.

use super::job::Job;
use super::state::Core;
use graze_proto::JobId;

impl Core {
    /// Why queued job `id` may not start now regardless of free cores; `None` when it may.
    pub(super) fn held_back(&self, id: JobId, j: &Job) -> Option<String> {
        if j.spec.hold {
            return Some(graze_proto::HELD_WAIT.into());
        }
        if j.begin_until.is_some() {
            return Some(graze_proto::BEGIN_WAIT.into());
        }
        if !j.clearing.is_empty() {
            let nodes: Vec<&str> = j.clearing.iter().map(String::as_str).collect();
            return Some(format!(
                "waiting for its previous run to be killed on {}",
                nodes.join(", ")
            ));
        }
        if j.fence_until.is_some() {
            return Some("waiting briefly so its lost node's processes are gone first".into());
        }
        if !j.spec.after.is_empty() {
            if let Some(why) = self.waiting_for_deps(id) {
                return Some(why);
            }
        }
        if let Some(why) = self.throttled(j) {
            return Some(why);
        }
        None
    }
}
