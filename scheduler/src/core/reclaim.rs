//! Owner reclaim (gang suspend): a running job whose node stops running jobs is suspended on
//! every node, resumed on all together, vacated after the busy node's `vacate_after` (at once
//! when its availability window ended) or early when it fits elsewhere.

use super::job::{Job, RunState};
use super::node::Node;
use super::state::Core;
use graze_proto::{human_duration, Availability, JobId, JobState, SchedulerMsg};
use std::collections::BTreeSet;

impl Core {
    /// Stop job `id` on every node of its allocation.
    pub(super) fn suspend(&mut self, id: JobId, reason: String, now: u64) {
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        j.state = match std::mem::replace(&mut j.state, RunState::Queued) {
            RunState::Failing { exit, what, .. } => RunState::Failing {
                exit,
                what,
                suspended: Some(now),
            },
            _ => RunState::Suspended { since: now },
        };
        for n in j.hosts() {
            if let Some(conn) = self.conn_of(&n) {
                self.send(conn, SchedulerMsg::SuspendJob { job: id });
            }
        }
        self.event(id, now, format!("suspended: {reason}"));
    }

    /// The owner-policy deadline of a suspended job: its vacate, or an early-move check not
    /// yet made (an early move that found no room is checked again when nodes change).
    pub(super) fn suspend_deadline(&self, j: &Job) -> Option<u64> {
        let since = j.state.suspended_since()?;
        let vacate = self.vacate_due(j, since).map(|(at, _)| at);
        let early = Some(since.saturating_add(self.cfg.requeue_when_suspended_after_ms))
            .filter(|t| *t > self.last_timeout);
        [vacate, early].into_iter().flatten().min()
    }

    /// When a job suspended `since` must be vacated because of its busy nodes, and why.
    fn vacate_due(&self, j: &Job, since: u64) -> Option<(u64, String)> {
        let mut due: Option<(u64, String)> = None;
        for a in &j.alloc {
            let name = &a.host;
            let Some(n) = self.nodes.get(name) else {
                continue;
            };
            if !n.blocks_jobs() {
                continue;
            }
            let status = n.status.as_ref().map(|s| &s.availability);
            let (at, why) = if status == Some(&Availability::OutsideWindow) {
                (
                    since,
                    format!("the availability window of node {name} ended"),
                )
            } else if let Some(Availability::Snoozed { .. }) = status {
                (since, format!("the owner of node {name} snoozed graze"))
            } else {
                let after = n.info.policy.vacate_after_ms;
                (
                    since.saturating_add(after),
                    format!(
                        "the owner of node {name} stayed busy for {} (vacate_after)",
                        human_duration(after)
                    ),
                )
            };
            if due.as_ref().is_none_or(|d| at < d.0) {
                due = Some((at, why));
            }
        }
        due
    }

    /// Resume, vacate or move suspended jobs whose time has come.
    pub(super) fn review_suspended(&mut self, now: u64) {
        let suspended: Vec<(JobId, u64)> = self
            .active_jobs()
            .filter_map(|(id, j)| Some((id, j.state.suspended_since()?)))
            .collect();
        for (id, since) in suspended {
            let j = &self.jobs[&id];
            let busy: BTreeSet<String> = j
                .alloc
                .iter()
                .filter(|a| self.nodes.get(&a.host).is_none_or(Node::blocks_jobs))
                .map(|a| a.host.clone())
                .collect();
            if busy.is_empty() {
                self.resume(id, now);
                continue;
            }
            if let Some((at, why)) = self.vacate_due(j, since) {
                if at <= now {
                    self.vacate(id, why, busy, now);
                    continue;
                }
            }
            let early = since.saturating_add(self.cfg.requeue_when_suspended_after_ms);
            if early <= now {
                let mut avoid = j.avoid.clone();
                avoid.extend(busy.iter().cloned());
                if self.place(&j.spec, &avoid, now).is_ok() {
                    let why = format!(
                        "suspended for {} (requeue_when_suspended_after) and it can run elsewhere now",
                        human_duration(now.saturating_sub(since))
                    );
                    self.vacate(id, why, busy, now);
                }
            }
        }
    }

    /// Continue a suspended job on every node.
    fn resume(&mut self, id: JobId, now: u64) {
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        let since = j.state.suspended_since().unwrap_or(now);
        j.run_suspended_ms = j.suspended_ms(now);
        j.state = match std::mem::replace(&mut j.state, RunState::Queued) {
            RunState::Failing { exit, what, .. } => RunState::Failing {
                exit,
                what,
                suspended: None,
            },
            _ => RunState::Running,
        };
        debug_assert_eq!(j.state.wire(), JobState::Running);
        for n in j.hosts() {
            if let Some(conn) = self.conn_of(&n) {
                self.send(conn, SchedulerMsg::ResumeJob { job: id });
            }
        }
        self.event(
            id,
            now,
            format!(
                "resumed: every node is available again (suspended for {})",
                human_duration(now.saturating_sub(since))
            ),
        );
    }

    /// Vacate a suspended job on every node and requeue it at the front of its priority,
    /// avoiding `busy` until those nodes offer cores again. A checkpointing job is asked for
    /// a checkpoint first (`checkpoint.rs`).
    fn vacate(&mut self, id: JobId, reason: String, busy: BTreeSet<String>, now: u64) {
        let Some(mode) = self.jobs.get(&id).map(Job::vacate_mode) else {
            return;
        };
        self.vacate_as(
            id,
            (
                format!("vacated: {reason}"),
                format!("vacated and requeued: {reason}"),
            ),
            busy,
            mode,
            None,
            now,
        );
    }
}
