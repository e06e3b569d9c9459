//! How runs end: the main command's exit (a failing multi-node run waits for its other nodes),
//! kills sent and confirmed, and the final state.

use super::history::AttemptOutcome;
use super::job::RunState;
use super::node::ConnId;
use super::state::{Core, Output};
use graze_proto::{ExitStatus, JobId, SchedulerMsg};

impl Core {
    /// The job's main command ended on the node of `conn`.
    pub fn job_exited(&mut self, conn: ConnId, id: JobId, exit: ExitStatus, now: u64) {
        self.job_ended(conn, id, Ok(exit), now);
    }

    /// The job's main command could not start on the node of `conn`.
    pub fn job_failed_to_start(&mut self, conn: ConnId, id: JobId, reason: String, now: u64) {
        self.job_ended(conn, id, Err(reason), now);
    }

    fn job_ended(&mut self, conn: ConnId, id: JobId, how: Result<ExitStatus, String>, now: u64) {
        let Some(name) = self.node_name(conn).map(str::to_owned) else {
            return;
        };
        let Some(j) = self.jobs.get(&id) else {
            return;
        };
        // Only the main node of the current run speaks for the job, once.
        let suspended = match j.state {
            RunState::Running => None,
            RunState::Suspended { since } => Some(since),
            RunState::TimedOut { exit: None, .. } => {
                self.timed_out_exit(id, &name, how.ok());
                return;
            }
            _ => return,
        };
        if j.alloc.first().map(|a| a.host.as_str()) != Some(name.as_str()) {
            return;
        }
        if let Ok(exit) = &how {
            if exit.code == Some(graze_proto::EXIT_CHECKPOINTED) && j.spec.checkpoint.is_some() {
                self.checkpointed_exit(id, &name, *exit, now);
                self.schedule(now);
                return;
            }
        }
        let nodes = j.hosts();
        let (state, what) = match how {
            Ok(exit) if exit.success() => (
                RunState::Completed { exit, at: now },
                format!("completed: {exit}"),
            ),
            Ok(e) => (
                RunState::Failed {
                    exit: Some(e),
                    at: now,
                },
                format!("failed: {e}"),
            ),
            Err(r) => (
                RunState::Failed {
                    exit: None,
                    at: now,
                },
                format!("failed to start on {name}: {r}"),
            ),
        };
        if let (RunState::Failed { exit, .. }, true) = (&state, nodes.len() > 1) {
            // A rank on a node that just died (agent crash: its guard killed the ranks) makes
            // mpiexec fail before the node counts as lost: hold the verdict until every other
            // node confirms, or one is lost (then `node_lost` requeues the run).
            let exit = *exit;
            if let Some(j) = self.jobs.get_mut(&id) {
                j.state = RunState::Failing {
                    exit,
                    what,
                    suspended,
                };
            }
            self.kill_on(id, &nodes);
            let pending: Vec<String> = self.jobs[&id].clearing.iter().cloned().collect();
            if !pending.is_empty() {
                let how = exit.map_or_else(|| "could not start".to_string(), |e| e.to_string());
                self.event(
                    id,
                    now,
                    format!(
                        "main command ended ({how}) on {name}; waiting for {} to confirm its processes are gone before failing the run",
                        pending.join(", ")
                    ),
                );
            }
            self.settle_failing(id, now);
            self.schedule(now);
            return;
        }
        self.finish(id, state, what, now);
        self.kill_on(id, &nodes);
        self.schedule(now);
    }

    /// The run ended for good: the final state (with its exit and end time), the event, and
    /// the driver told to persist and announce it.
    pub(super) fn finish(&mut self, id: JobId, state: RunState, what: String, now: u64) {
        debug_assert!(state.is_final());
        let outcome = AttemptOutcome::Final(state.wire());
        self.attempt_ended(id, outcome, state.exit(), now);
        if let Some(j) = self.jobs.get_mut(&id) {
            j.state = state;
        }
        self.event(id, now, what);
        self.out.push_back(Output::JobFinal(id));
    }

    /// A failing run whose nodes have all confirmed is failed for good.
    fn settle_failing(&mut self, id: JobId, now: u64) {
        let Some(j) = self.jobs.get(&id) else {
            return;
        };
        if !j.clearing.is_empty() {
            return;
        }
        if let RunState::Failing { exit, what, .. } = &j.state {
            let (exit, what) = (*exit, what.clone());
            self.finish(id, RunState::Failed { exit, at: now }, what, now);
        }
    }

    /// The node of `conn` has no process of job `id` left.
    pub fn job_cleared(&mut self, conn: ConnId, id: JobId, now: u64) {
        let Some(name) = self.node_name(conn).map(str::to_owned) else {
            return;
        };
        self.cleared(id, &name, now);
        self.schedule(now);
    }

    /// Send KillJob to every online node in `nodes` and wait for their confirmation.
    pub(super) fn kill_on(&mut self, id: JobId, nodes: &[String]) {
        let targets: Vec<_> = nodes
            .iter()
            .filter_map(|n| Some((self.conn_of(n)?, n.clone())))
            .collect();
        if let Some(j) = self.jobs.get_mut(&id) {
            for (_, n) in &targets {
                j.clearing.insert(n.clone());
                self.active.insert(id);
            }
        }
        for (conn, _) in targets {
            self.send(conn, SchedulerMsg::KillJob { job: id });
        }
    }

    /// Node `name` confirmed (or can no longer hold) no process of job `id`.
    pub(super) fn cleared(&mut self, id: JobId, name: &str, now: u64) {
        // A stray confirmation for a node the job still runs on (and was not asked to clear)
        // must not free cores its processes use.
        if let Some(j) = self.jobs.get(&id) {
            let live = j.state.is_placed()
                && j.placed_on(name)
                && !j.clearing.contains(name)
                && self.conn_of(name).is_some();
            if live {
                return;
            }
        }
        if let Some(node) = self.nodes.get_mut(name) {
            node.held.remove(&id);
        }
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        j.clearing.remove(name);
        j.confirm.remove(name);
        if j.clearing.is_empty() && j.state == RunState::Cancelling {
            let what = "cancelled: every process killed".to_string();
            self.finish(id, RunState::Cancelled { at: now }, what, now);
        }
        self.settle_failing(id, now);
        self.track_active(id);
    }
}
