//! Deadlines: restored runs whose nodes did not report back, fences after a node loss, and
//! the owner-policy deadlines of suspended jobs, as one [`Core::poll_timeout`] for the driver.

use super::job::{Job, RunState};
use super::state::Core;

impl Core {
    /// The earliest time [`Core::handle_timeout`] has work to do. One pass over the jobs
    /// (the driver asks after every batch of inputs, so with a long queue this walk is part
    /// of every submit's cost).
    pub fn poll_timeout(&self) -> Option<u64> {
        // One pass over the unsettled jobs (`Core::active`): the driver asks after every
        // batch of inputs.
        self.active_jobs()
            .filter_map(|(_, j)| self.job_deadline(j))
            .min()
    }

    /// Job `j`'s earliest deadline: restart confirmations, fence, begin time; while running,
    /// `--signal`, `--time` and the next periodic checkpoint; while suspended, the owner
    /// policy's vacate or early move.
    fn job_deadline(&self, j: &Job) -> Option<u64> {
        let own = [j.confirm_deadline, j.fence_until, j.begin_until];
        let run = match (&j.state, j.state.suspended_since()) {
            (RunState::Running, _) => [j.signal_at(), j.limit_at(), j.checkpoint_at()],
            (_, Some(_)) => [self.suspend_deadline(j), None, None],
            _ => [None; 3],
        };
        own.into_iter().chain(run).flatten().min()
    }

    /// Deadlines: unconfirmed runs after a restart are requeued, fences expire, suspended
    /// jobs are vacated or moved.
    pub fn handle_timeout(&mut self, now: u64) {
        self.last_timeout = self.last_timeout.max(now);
        self.review_suspended(now);
        self.review_limits(now);
        self.review_checkpoints(now);
        for id in self.active_ids() {
            if let Some(j) = self.jobs.get_mut(&id) {
                if j.fence_until.is_some_and(|t| t <= now) {
                    j.fence_until = None;
                }
                // A passed deadline with nothing left to confirm is spent (else the driver's
                // timer would fire again at once).
                if j.confirm_deadline.is_some_and(|t| t <= now) && j.confirm.is_empty() {
                    j.confirm_deadline = None;
                }
            }
            let j = &self.jobs[&id];
            if j.confirm_deadline.is_some_and(|t| t <= now) && !j.confirm.is_empty() {
                let missing: Vec<String> = j.confirm.iter().cloned().collect();
                if j.state.is_placed() {
                    self.requeue(
                        id,
                        format!(
                            "node {} did not report back after the scheduler restart",
                            missing.join(", ")
                        ),
                        now,
                    );
                } else {
                    for n in &missing {
                        self.cleared(id, n, now);
                    }
                }
                // Missing nodes still offline count as cleared; an online one was just asked
                // to kill (requeue) and answers for itself.
                let offline: Vec<String> = missing
                    .iter()
                    .filter(|n| self.conn_of(n).is_none())
                    .cloned()
                    .collect();
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.confirm.clear();
                    j.confirm_deadline = None;
                    for n in &offline {
                        j.clearing.remove(n);
                    }
                }
                if self.jobs[&id].state == RunState::Cancelling {
                    self.cleared(id, "", now);
                }
            }
        }
        // Deadlines spent above leave jobs settled: drop them from the active set.
        for id in self.active_ids() {
            self.track_active(id);
        }
        self.schedule(now);
    }
}
