//! The core's invariants, checked by the tests after every step. What `RunState` makes
//! impossible (a suspension without its start, a verdict on a job not running) is not
//! checked here.

use super::job::RunState;
use super::node::Node;
use super::state::Core;
use graze_proto::JobState;

impl Core {
    /// Check the core's invariants; for tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        for n in self.nodes.values() {
            if n.used() > n.info.cores {
                return Err(format!(
                    "node {} holds {} of {} cores",
                    n.info.name,
                    n.used(),
                    n.info.cores
                ));
            }
            for id in n.held.keys() {
                let j = self.jobs.get(id).ok_or("held by unknown job")?;
                if !j.placed_on(&n.info.name) {
                    return Err(format!(
                        "node {} holds cores for job {id} outside its allocation",
                        n.info.name
                    ));
                }
            }
        }
        for (id, j) in &self.jobs {
            if !j.settled() && !self.active.contains(id) {
                return Err(format!(
                    "job {id} ({}) is not settled but missing from the active set",
                    j.state.wire()
                ));
            }
            if let Some(n) = j.avoid.iter().find(|n| !self.avoided.contains(*n)) {
                return Err(format!(
                    "job {id} avoids {n}, which is not in the avoided set"
                ));
            }
            let in_queue = self.queue.keys().any(|k| k.2 == *id);
            if in_queue != (j.state == RunState::Queued) {
                return Err(format!(
                    "job {id} in queue={in_queue} but state {}",
                    j.state.wire()
                ));
            }
        }
        // An array's sets follow its tasks' states, and it never runs more than its throttle.
        for (aid, a) in &self.arrays {
            for (index, t) in &a.tasks {
                let j = self.jobs.get(t).ok_or("array task unknown")?;
                let alive = j.state.is_placed();
                if alive != a.active.contains(t) || j.state.is_final() != a.ended.contains(t) {
                    return Err(format!(
                        "task {aid}.{index} is {} but the array counts it otherwise",
                        j.state.wire()
                    ));
                }
            }
            if let Some(limit) = a.throttle {
                if a.active.len() as u32 > limit {
                    return Err(format!(
                        "array {aid} runs {} tasks, throttle {limit}",
                        a.active.len()
                    ));
                }
            }
        }
        // A job that started had every dependency met; one whose dependency broke is not queued.
        for (id, j) in &self.jobs {
            if j.started_ms.is_some() {
                if let Some((d, _)) = self.deps_status(*id) {
                    return Err(format!(
                        "job {id} started before its dependency {d} was met"
                    ));
                }
            }
            if j.state == RunState::Queued {
                if let Some((d, super::deps::DepStatus::Broken(_))) = self.deps_status(*id) {
                    return Err(format!("job {id} stays queued with broken dependency {d}"));
                }
            }
        }
        // No queued job that fits stays queued, except behind a reservation (EASY backfill):
        // a job after the reserved one that fits but could delay it may wait. And backfilled
        // jobs never move the reservation later.
        self.check_backfill()?;
        // Exactly the running runs with --checkpoint-every have a periodic checkpoint due.
        self.check_checkpoint_timers()?;
        // An --exclusive run has its nodes to itself.
        for n in self.nodes.values() {
            let exclusive = n.held.keys().find(|id| {
                self.jobs
                    .get(id)
                    .is_some_and(|j| j.spec.exclusive && j.state.is_placed())
            });
            let placed = n
                .held
                .keys()
                .filter(|id| self.jobs.get(id).is_some_and(|j| j.state.is_placed()))
                .count();
            if let (Some(id), true) = (exclusive, placed > 1) {
                return Err(format!(
                    "node {} holds exclusive job {id} beside other jobs",
                    n.info.name
                ));
            }
        }
        // Running jobs run only on nodes that run jobs; suspended ones have a reclaimed node.
        for (id, j) in &self.jobs {
            let blocked: Vec<&str> = j
                .alloc
                .iter()
                .filter(|a| self.nodes.get(&a.host).is_none_or(Node::blocks_jobs))
                .map(|a| a.host.as_str())
                .collect();
            match j.state.wire() {
                JobState::Running if !blocked.is_empty() => {
                    return Err(format!(
                        "job {id} runs on reclaimed node(s) {}",
                        blocked.join(",")
                    ));
                }
                JobState::Suspended if blocked.is_empty() => {
                    return Err(format!("job {id} stays suspended on available nodes"));
                }
                JobState::Suspended | JobState::Running => {
                    // The nodes of a failing run release their cores as they confirm.
                    if matches!(j.state, RunState::Failing { .. }) {
                        continue;
                    }
                    for a in &j.alloc {
                        // After a restart, nodes still to confirm the run hold nothing yet.
                        if j.confirm.contains(&a.host) {
                            continue;
                        }
                        if self
                            .nodes
                            .get(&a.host)
                            .is_none_or(|n| !n.held.contains_key(id))
                        {
                            return Err(format!("job {id} holds no cores on its node {}", a.host));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}
