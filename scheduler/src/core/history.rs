//! Attempt records: every run that ends (for good or cut short and requeued) becomes one
//! [`AttemptRecord`], emitted as [`Output::AttemptEnded`]; a job that ends without a run of
//! its own (cancelled while queued, dependency failed) gets one too, as attempt 0. Owner
//! events (a suspension or a vacate because of a node) leave as [`Output::OwnerEvent`], so
//! the driver can count them per node.
//!
//! A run is *open* from its start ([`Core::start`]) until its record is emitted; the one
//! place that emits is [`Core::attempt_ended`], called by every path that ends a run:
//! `finish` (completed, failed, cancelled, timeout, ...), `requeue` (node lost, node back
//! without the processes, no report after a restart) and `vacate` (owner reclaim, window end,
//! early move).

use super::job::{Job, Placement};
use super::state::{Core, Output};
use graze_proto::{ExitStatus, JobId, JobState};

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The job reached this final state.
    Final(JobState),
    /// The run was cut short and the job queued again, for this reason.
    Requeued(String),
}

/// One ended run of a job (or, as attempt 0, a job that ended without a run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRecord {
    /// The job.
    pub job: JobId,
    /// The run's epoch (1 for the first run); 0: the job ended while queued, with no run of
    /// its own.
    pub attempt: u64,
    /// Who submitted it.
    pub user: String,
    /// Its name (the spec's, else the command's first word).
    pub name: String,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// How the main command ended, if it did.
    pub exit: Option<ExitStatus>,
    /// The run's allocation (empty for attempt 0).
    pub nodes: Vec<Placement>,
    /// When the job was submitted (ms).
    pub submitted_ms: u64,
    /// When the run started (`None` for attempt 0).
    pub started_ms: Option<u64>,
    /// When the run (or the job) ended (ms).
    pub ended_ms: u64,
    /// Time the run ran: start to end, less the time suspended (ms).
    pub running_ms: u64,
    /// Time the run was suspended for owners (ms).
    pub suspended_ms: u64,
    /// Requeues of the job so far, this one included.
    pub requeues: u32,
    /// Why each requeue so far happened, oldest first.
    pub requeue_reasons: Vec<String>,
}

impl AttemptRecord {
    /// Core-milliseconds given: cores held times running time, suspended time not counted
    /// (the cores were held but computed nothing).
    pub fn core_ms(&self) -> u64 {
        let cores: u64 = self.nodes.iter().map(|p| u64::from(p.cores)).sum();
        cores.saturating_mul(self.running_ms)
    }
}

/// Why an owner event happened on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerEventKind {
    /// A job on the node was suspended because the node stopped running jobs.
    Suspend,
    /// A suspended job was vacated (requeued) because of this busy node.
    Vacate,
}

/// Why each requeue of `j` happened, from its events (which survive restarts), in the words
/// of the attempt records: `vacate` writes "vacated and requeued: WHY" (a record's "vacated:
/// WHY"), `requeue` "requeued: WHY" (a record's "WHY").
fn requeue_reasons(j: &Job) -> Vec<String> {
    j.events
        .iter()
        .filter_map(|e| {
            if let Some(why) = e.what.strip_prefix("vacated and requeued: ") {
                Some(format!("vacated: {why}"))
            } else {
                e.what.strip_prefix("requeued: ").map(str::to_string)
            }
        })
        .collect()
}

/// The job's name for people: the spec's, else the command's first word (its file name).
pub(super) fn job_name(j: &Job) -> String {
    if let Some(n) = j.spec.name.as_deref().filter(|n| !n.is_empty()) {
        return n.to_string();
    }
    let first = j.spec.command.first().map_or("", String::as_str);
    first.rsplit('/').next().unwrap_or(first).to_string()
}

impl Core {
    /// The current run of `id` ended (or the job ended without a run): emit its record.
    /// Call before the job's state changes, so the ongoing suspension still counts. A requeue
    /// of a job with no open run emits nothing (there is no run to record).
    pub(super) fn attempt_ended(
        &mut self,
        id: JobId,
        outcome: AttemptOutcome,
        exit: Option<ExitStatus>,
        now: u64,
    ) {
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        let open = std::mem::replace(&mut j.run_open, false);
        if !open && matches!(outcome, AttemptOutcome::Requeued(_)) {
            return;
        }
        let mut reasons = requeue_reasons(j);
        let mut requeues = j.requeues;
        if let AttemptOutcome::Requeued(why) = &outcome {
            // The requeue being recorded is not yet in the events.
            reasons.push(why.clone());
            requeues += 1;
        }
        let rec = if open {
            AttemptRecord {
                job: id,
                attempt: j.epoch,
                user: j.spec.user.clone(),
                name: job_name(j),
                outcome,
                exit,
                nodes: j.alloc.clone(),
                submitted_ms: j.submitted_ms,
                started_ms: j.started_ms,
                ended_ms: now,
                running_ms: j.running_ms(now),
                suspended_ms: j.suspended_ms(now),
                requeues,
                requeue_reasons: reasons,
            }
        } else {
            AttemptRecord {
                job: id,
                attempt: 0,
                user: j.spec.user.clone(),
                name: job_name(j),
                outcome,
                exit,
                nodes: Vec::new(),
                submitted_ms: j.submitted_ms,
                started_ms: None,
                ended_ms: now,
                running_ms: 0,
                suspended_ms: 0,
                requeues,
                requeue_reasons: reasons,
            }
        };
        self.out.push_back(Output::AttemptEnded(rec));
    }

    /// Per node: its name, the cores it offers now (all of them while it offers, else 0) and
    /// the cores jobs hold there; for the driver's usage integral.
    pub fn node_usage(&self) -> impl Iterator<Item = (&str, u32, u32)> + '_ {
        self.nodes.values().map(|n| {
            let offered = if n.offered() { n.info.cores } else { 0 };
            (n.info.name.as_str(), offered, n.used())
        })
    }

    /// Job `job` was suspended or vacated because of node `node`.
    pub(super) fn owner_event(&mut self, node: &str, kind: OwnerEventKind, job: JobId, now: u64) {
        self.out.push_back(Output::OwnerEvent {
            node: node.to_string(),
            kind,
            job,
            at: now,
        });
    }
}
