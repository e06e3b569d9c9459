//! Inputs about nodes: an agent registers (fencing runs nobody knows), reports its status
//! (suspending runs on a reclaimed node), is lost (requeueing its runs); admins drain nodes.

use super::history::OwnerEventKind;
use super::job::RunState;
use super::node::{ConnId, Node};
use super::state::{Core, Output};
use graze_proto::{HeldJob, JobId, JobState, NodeInfo, NodeStatus, NodeView, SchedulerMsg};
use std::collections::BTreeMap;

impl Core {
    /// An agent registered on connection `conn`, reporting the job runs it still holds.
    /// A node of the same name on another connection is replaced (the agent reconnected):
    /// runs it still holds go on, runs it lost are requeued, runs nobody knows are fenced.
    pub fn node_connected(&mut self, conn: ConnId, info: NodeInfo, now: u64) -> Result<(), String> {
        if info.name.is_empty() {
            return Err("invalid node name '': must not be empty".into());
        }
        if info.cores == 0 {
            return Err(format!(
                "invalid cores '0' from node '{}': must be at least 1",
                info.name
            ));
        }
        let name = info.name.clone();
        if let Some(old) = self.conn_of(&name) {
            if old != conn {
                self.conns.remove(&old);
                self.out.push_back(Output::Close {
                    conn: old,
                    reason: "a newer agent registered with the same name".into(),
                });
            }
        }
        let mut held: BTreeMap<JobId, HeldJob> =
            info.held.iter().map(|h| (h.job, h.clone())).collect();
        self.conns.insert(conn, name.clone());
        let node = self
            .nodes
            .entry(name.clone())
            .or_insert_with(|| Node::new(info.clone(), false));
        node.info = info;
        node.info.held.clear();
        node.conn = Some(conn);
        node.status = None;
        node.held.clear();
        let node_timeout_ms = self.cfg.node_timeout_ms;
        self.send(conn, SchedulerMsg::Registered { node_timeout_ms });
        self.out.push_back(Output::NodeChanged(name.clone()));

        // Only jobs placed or clearing somewhere can concern this node.
        for id in self.active_ids() {
            let Some(j) = self.jobs.get(&id) else {
                continue;
            };
            let in_alloc = j.alloc.iter().find(|a| a.host == name).map(|a| a.cores);
            let live = j.state.is_placed() || j.state == RunState::Cancelling;
            // A run is kept only if the node still holds it and still has the cores for it
            // (an agent may come back offering fewer).
            // An --exclusive run is kept only alone, and nothing is kept beside one.
            let fits = in_alloc.is_some_and(|c| {
                self.nodes.get(&name).is_some_and(|n| {
                    n.used() + c <= n.info.cores
                        && !self.has_exclusive(n)
                        && (!j.spec.exclusive || n.held.is_empty())
                })
            });
            let holds = fits && held.get(&id).is_some_and(|h| h.epoch == j.epoch);
            match (live, in_alloc) {
                (true, Some(cores)) if holds => {
                    held.remove(&id);
                    if let Some(n) = self.nodes.get_mut(&name) {
                        n.held.insert(id, cores);
                    }
                    if let Some(j) = self.jobs.get_mut(&id) {
                        j.confirm.remove(&name);
                        if j.confirm.is_empty() {
                            j.confirm_deadline = None;
                        }
                    }
                    let j = &self.jobs[&id];
                    if j.state == RunState::Cancelling && j.clearing.contains(&name) {
                        self.send(conn, SchedulerMsg::KillJob { job: id });
                    }
                    // The job may have been suspended or resumed while the node was away;
                    // both messages are idempotent on the agent.
                    match self.jobs[&id].state.wire() {
                        JobState::Running => self.send(conn, SchedulerMsg::ResumeJob { job: id }),
                        JobState::Suspended => {
                            self.send(conn, SchedulerMsg::SuspendJob { job: id })
                        }
                        _ => {}
                    }
                }
                (true, Some(_)) => {
                    if j.state.is_placed() {
                        self.requeue(
                            id,
                            format!("node {name} came back without the job's processes"),
                            now,
                        );
                    } else {
                        self.cleared(id, &name, now);
                    }
                }
                _ if j.clearing.contains(&name) => {
                    if held.remove(&id).is_some() {
                        // Still there: hold its cores until the node confirms the kill.
                        if let (Some(cores), Some(n)) = (in_alloc, self.nodes.get_mut(&name)) {
                            let cores = cores.min(n.free());
                            if cores > 0 {
                                n.held.insert(id, cores);
                            }
                        }
                        self.send(conn, SchedulerMsg::KillJob { job: id });
                    } else {
                        self.cleared(id, &name, now);
                    }
                }
                _ => {}
            }
        }
        // Runs nobody here knows any more: fence them.
        for id in held.into_keys() {
            self.send(conn, SchedulerMsg::KillJob { job: id });
        }
        self.schedule(now);
        Ok(())
    }

    /// A status report from an agent. True when it changed more than the node's status row
    /// (its offer, its availability's kind or its window's end: suspends, a pass), the only
    /// case in which [`Core::poll_timeout`] may move; false for a quiet one (load and idle
    /// time only), which the driver need not follow with a new deadline.
    pub fn node_status(&mut self, conn: ConnId, status: NodeStatus, now: u64) -> bool {
        let Some(name) = self.conns.get(&conn) else {
            return false;
        };
        let Some(node) = self.nodes.get_mut(name) else {
            return false;
        };
        let was = node.offered();
        let was_blocking = node.blocks_jobs();
        let was_kind = node
            .status
            .as_ref()
            .map(|s| std::mem::discriminant(&s.availability));
        let was_window = node.status.as_ref().and_then(|s| s.window_ends_ms);
        let window = status.window_ends_ms;
        node.status = Some(status);
        let offered = node.offered();
        let blocking = node.blocks_jobs();
        let kind = node
            .status
            .as_ref()
            .map(|s| std::mem::discriminant(&s.availability));
        let name = name.clone();
        if offered && self.avoided.remove(&name) {
            for j in self.jobs.values_mut() {
                j.avoid.remove(&name);
            }
        }
        if blocking && !was_blocking {
            let why = self.nodes[&name]
                .status
                .as_ref()
                .map(|s| s.availability.to_string())
                .unwrap_or_default();
            let running: Vec<JobId> = self
                .active_jobs()
                .filter(|(_, j)| j.state.wire() == JobState::Running && j.placed_on(&name))
                .map(|(id, _)| id)
                .collect();
            for id in running {
                self.owner_event(&name, OwnerEventKind::Suspend, id, now);
                self.suspend(id, format!("node {name} is {why}"), now);
            }
        }
        // Load and idle time change every second; only a change of offer, of the kind of
        // availability or of the window's end can place, resume or vacate a job.
        if offered != was || blocking != was_blocking || kind != was_kind || window != was_window {
            self.review_suspended(now);
            self.schedule(now);
            return true;
        }
        false
    }

    /// An agent connection ended or timed out: its jobs are requeued, its cores gone.
    pub fn node_lost(&mut self, conn: ConnId, now: u64) {
        let Some(name) = self.conns.remove(&conn) else {
            return;
        };
        let Some(node) = self.nodes.get_mut(&name) else {
            return;
        };
        if node.conn != Some(conn) {
            return;
        }
        node.conn = None;
        node.status = None;
        node.held.clear();
        let affected: Vec<JobId> = self
            .active_jobs()
            .filter(|(_, j)| {
                j.clearing.contains(&name) || (j.state.is_placed() && j.placed_on(&name))
            })
            .map(|(id, _)| id)
            .collect();
        let fence = now + self.cfg.fence_margin_ms;
        for id in affected {
            if self.jobs[&id].state.is_placed() {
                self.requeue(id, format!("node {name} lost"), now);
            }
            if let Some(j) = self.jobs.get_mut(&id) {
                j.fence_until = Some(j.fence_until.map_or(fence, |f| f.max(fence)));
                j.confirm.remove(&name);
            }
            self.cleared(id, &name, now);
        }
        self.schedule(now);
    }

    /// Drain (`on`) or undrain a node: a drained node takes no new work, its running jobs go
    /// on. The mark outlives reconnects.
    pub fn set_drained(&mut self, name: &str, on: bool, now: u64) -> Result<NodeView, String> {
        let known = self.known_nodes();
        let Some(node) = self.nodes.get_mut(name) else {
            return Err(format!("unknown node '{name}': {known}"));
        };
        node.drained = on;
        self.out.push_back(Output::NodeChanged(name.to_string()));
        if !on {
            self.schedule(now);
        }
        self.node_view(name)
            .ok_or_else(|| format!("node '{name}' vanished"))
    }
}
