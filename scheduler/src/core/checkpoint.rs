//! Checkpoints (`graze submit --checkpoint`), the core's part: the protocol's environment and
//! the [`SchedulerMsg::CheckpointSetup`] messages at a run's start, [`SchedulerMsg::Checkpoint`]
//! instead of `VacateJob` when a checkpointing job is vacated (`reclaim.rs`) or its ranks exit
//! 85 (`exit.rs`), periodic checkpoints (`--checkpoint-every`) on the timer, and
//! `graze requeue JOB [--checkpoint]`.
//!
//! The core only asks: the driver registers every outgoing `Checkpoint` as an expected part,
//! fills `restore` into every outgoing `CheckpointSetup` and stores what arrives
//! (`scheduler/src/checkpoint/`). A vacated job is placed again only once every node cleared,
//! and an agent clears only after its part got the scheduler's answer, so the next run's
//! `CheckpointSetup` always sees the finished assembly.

use super::history::{AttemptOutcome, OwnerEventKind};
use super::job::{Job, RunState};
use super::state::Core;
use graze_proto::{
    exact_duration, ranks_by_host, signal_name, CheckpointId, ExitStatus, JobId, JobState,
    SchedulerMsg, DEFAULT_CHECKPOINT_SIGNAL,
};
use std::collections::BTreeSet;

/// The run's checkpoint directory (the same path on every node).
pub(super) const ENV_CHECKPOINT_DIR: &str = "GRAZE_CHECKPOINT_DIR";
/// The signal number that asks for a checkpoint.
pub(super) const ENV_CHECKPOINT_SIGNAL: &str = "GRAZE_CHECKPOINT_SIGNAL";
/// Runs of the job before this one (0 on the first); set for every job.
pub(super) const ENV_RESTART_COUNT: &str = "GRAZE_RESTART_COUNT";

/// How a vacate ends a run's processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum VacateMode {
    /// `VacateJob`: SIGTERM, then SIGKILL (a job without `--checkpoint`, or
    /// `graze requeue` without `--checkpoint`).
    Plain,
    /// `Checkpoint { stop: true }` with this signal (`None`: the ranks already saved and
    /// exited 85).
    Checkpoint {
        /// The signal sent to the program first.
        signal: Option<i32>,
    },
}

impl Job {
    /// When the next periodic checkpoint of a run (re)starting its clock at `now` is due.
    pub(super) fn periodic_from(&self, now: u64) -> Option<u64> {
        let every = self.spec.checkpoint?.every_ms?;
        Some(now.saturating_add(every))
    }

    /// How an owner's vacate ends this job's run: with a checkpoint when it has one.
    pub(super) fn vacate_mode(&self) -> VacateMode {
        match self.spec.checkpoint {
            Some(c) => VacateMode::Checkpoint {
                signal: Some(c.signal),
            },
            None => VacateMode::Plain,
        }
    }

    /// The current (or last) allocation's hosts with the ranks each runs, in host-file order.
    pub(super) fn host_ranks(&self) -> Vec<(String, Vec<u32>)> {
        let slots: Vec<u32> = self.alloc.iter().map(|a| a.ranks).collect();
        self.alloc
            .iter()
            .map(|a| a.host.clone())
            .zip(ranks_by_host(&slots))
            .collect()
    }

    /// The due time of the running run's next periodic checkpoint; `None` while suspended
    /// (postponed until it runs again: then at once if it fell due meanwhile) or not running.
    pub(super) fn checkpoint_at(&self) -> Option<u64> {
        if self.state != RunState::Running {
            return None;
        }
        self.ckpt_next
    }
}

/// "SIGUSR1", or the number when the signal has no name.
fn sig_words(sig: i32) -> String {
    signal_name(sig).unwrap_or_else(|| sig.to_string())
}

impl Core {
    /// `GRAZE_CHECKPOINT_DIR` of job `id`: `{checkpoint_root}/job-{ID}`.
    pub(super) fn checkpoint_dir(&self, id: JobId) -> String {
        format!(
            "{}/job-{id}",
            self.cfg.checkpoint_root.trim_end_matches('/')
        )
    }

    /// The protocol's variables for the run of job `id` now starting (its epoch already
    /// counted): `GRAZE_RESTART_COUNT` always, the checkpoint directory and signal for a
    /// checkpointing job. They replace any of the same name in the spec's environment.
    pub(super) fn protocol_env(&self, id: JobId, env: &mut Vec<(String, String)>) {
        let Some(j) = self.jobs.get(&id) else {
            return;
        };
        env.retain(|(k, _)| {
            k != ENV_RESTART_COUNT && k != ENV_CHECKPOINT_DIR && k != ENV_CHECKPOINT_SIGNAL
        });
        env.push((
            ENV_RESTART_COUNT.into(),
            j.epoch.saturating_sub(1).to_string(),
        ));
        if let Some(c) = j.spec.checkpoint {
            env.push((ENV_CHECKPOINT_DIR.into(), self.checkpoint_dir(id)));
            env.push((ENV_CHECKPOINT_SIGNAL.into(), c.signal.to_string()));
        }
    }

    /// A checkpointing job's run starts: every node of the allocation is told its ranks and
    /// the directory (the driver adds the checkpoint to restore), before the main node's
    /// `StartJob`.
    pub(super) fn send_setup(&mut self, id: JobId) {
        let Some(j) = self.jobs.get(&id) else {
            return;
        };
        if j.spec.checkpoint.is_none() {
            return;
        }
        let epoch = j.epoch;
        let signal = j
            .spec
            .checkpoint
            .map_or(DEFAULT_CHECKPOINT_SIGNAL, |c| c.signal);
        let dir = self.checkpoint_dir(id);
        for (host, ranks) in j.host_ranks() {
            if let Some(conn) = self.conn_of(&host) {
                self.send(
                    conn,
                    SchedulerMsg::CheckpointSetup {
                        job: id,
                        epoch,
                        dir: dir.clone(),
                        ranks,
                        restore: None,
                        signal,
                    },
                );
            }
        }
    }

    /// Ask every online node of job `id`'s current (or just vacated) run for its part of a
    /// checkpoint taken now. The job must have `--checkpoint`.
    fn send_checkpoint(
        &mut self,
        id: JobId,
        signal: Option<i32>,
        stop: bool,
        now: u64,
    ) -> Option<CheckpointId> {
        let j = self.jobs.get(&id)?;
        let spec = j.spec.checkpoint?;
        let ckpt = CheckpointId {
            epoch: j.epoch,
            at_ms: now,
        };
        for (host, ranks) in j.host_ranks() {
            if let Some(conn) = self.conn_of(&host) {
                self.send(
                    conn,
                    SchedulerMsg::Checkpoint {
                        job: id,
                        epoch: ckpt.epoch,
                        id: ckpt,
                        ranks,
                        signal,
                        grace_ms: spec.grace_ms,
                        stop,
                    },
                );
            }
        }
        Some(ckpt)
    }

    /// Periodic checkpoints due at `now`: the signal to every node, the job goes on.
    pub(super) fn review_checkpoints(&mut self, now: u64) {
        let due: Vec<JobId> = self
            .active_jobs()
            .filter(|(_, j)| j.checkpoint_at().is_some_and(|t| t <= now))
            .map(|(id, _)| id)
            .collect();
        for id in due {
            let Some(j) = self.jobs.get_mut(&id) else {
                continue;
            };
            j.ckpt_next = j.periodic_from(now);
            let Some(spec) = j.spec.checkpoint else {
                continue;
            };
            let every = spec.every_ms.unwrap_or(0);
            if let Some(ckpt) = self.send_checkpoint(id, Some(spec.signal), false, now) {
                self.event(
                    id,
                    now,
                    format!(
                        "periodic checkpoint {ckpt} asked ({} to the program, every {})",
                        sig_words(spec.signal),
                        exact_duration(every)
                    ),
                );
            }
        }
    }

    /// End job `id`'s run on every node and requeue it at the front of its priority, with
    /// `words`: the attempt's outcome and the event; the job avoids `busy` until those nodes
    /// offer cores again. The processes end as `mode` says.
    pub(super) fn vacate_as(
        &mut self,
        id: JobId,
        words: (String, String),
        busy: BTreeSet<String>,
        mode: VacateMode,
        exit: Option<ExitStatus>,
        now: u64,
    ) {
        if !self.jobs.contains_key(&id) {
            return;
        }
        let (outcome, what) = words;
        self.attempt_ended(id, AttemptOutcome::Requeued(outcome), exit, now);
        for n in &busy {
            self.owner_event(n, OwnerEventKind::Vacate, id, now);
        }
        let Some(j) = self.jobs.get(&id) else {
            return;
        };
        let targets: Vec<_> = j
            .hosts()
            .into_iter()
            .filter_map(|n| Some((self.conn_of(&n)?, n)))
            .collect();
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        for (_, n) in &targets {
            j.clearing.insert(n.clone());
        }
        self.active.insert(id);
        j.state = RunState::Queued;
        j.requeues += 1;
        j.order = 0;
        self.avoided.extend(busy.iter().cloned());
        j.avoid.extend(busy);
        j.ckpt_next = None;
        let key = j.key(id);
        let n = j.spec.nprocs;
        let limited = j.spec.time_limit_ms.is_some();
        let grace = j.spec.checkpoint.map_or(0, |c| c.grace_ms);
        self.queue.insert(key, n);
        if limited {
            self.limited.insert(key);
        }
        let mut what = what;
        match mode {
            VacateMode::Checkpoint { signal } => {
                if let Some(ckpt) = self.send_checkpoint(id, signal, true, now) {
                    what.push_str(&match signal {
                        Some(s) => format!(
                            "; checkpoint {ckpt} asked ({} to the program, {} grace)",
                            sig_words(s),
                            exact_duration(grace)
                        ),
                        None => format!("; collecting checkpoint {ckpt}"),
                    });
                }
            }
            VacateMode::Plain => {
                for (conn, _) in targets {
                    self.send(conn, SchedulerMsg::VacateJob { job: id });
                }
            }
        }
        self.event(id, now, what);
    }

    /// The main command of checkpointing job `id` exited 85: its ranks saved and stopped. The
    /// run is requeued like a vacate (front of the queue, no node avoided) and every node
    /// sends what its ranks wrote.
    pub(super) fn checkpointed_exit(&mut self, id: JobId, node: &str, exit: ExitStatus, now: u64) {
        let what = format!("checkpointed (exit 85) on {node} and requeued");
        self.vacate_as(
            id,
            ("checkpointed (exit 85)".into(), what),
            BTreeSet::new(),
            VacateMode::Checkpoint { signal: None },
            Some(exit),
            now,
        );
    }

    /// `graze requeue JOB [--checkpoint]` by `by`: vacate a running or suspended job now and
    /// queue it again at the front of its priority (no node avoided). With `checkpoint` (the
    /// job must have `--checkpoint`) the vacate takes a checkpoint first; without it a
    /// checkpointing job is vacated plainly and its stored checkpoint stays as it is.
    pub fn requeue_job(
        &mut self,
        id: JobId,
        checkpoint: bool,
        by: &str,
        now: u64,
    ) -> Result<JobState, String> {
        let Some(j) = self.jobs.get(&id) else {
            return Err(format!("no job {id}"));
        };
        if checkpoint && j.spec.checkpoint.is_none() {
            return Err(format!(
                "job {id} was not submitted with --checkpoint: it cannot take a checkpoint; \
                 requeue it without --checkpoint to start it again from the beginning"
            ));
        }
        match &j.state {
            RunState::Running | RunState::Suspended { .. } => {}
            RunState::Failing { .. } => {
                return Err(format!(
                    "job {id} is ending (its main command ended; waiting for its other nodes): \
                     it cannot be requeued"
                ))
            }
            s => {
                return Err(format!(
                    "job {id} is {}: only a running or suspended job can be requeued",
                    s.wire()
                ))
            }
        }
        let mode = if checkpoint {
            j.vacate_mode()
        } else {
            VacateMode::Plain
        };
        let why = format!("requeued by {by}");
        self.vacate_as(id, (why.clone(), why), BTreeSet::new(), mode, None, now);
        self.schedule(now);
        Ok(self.jobs[&id].state.wire())
    }

    /// Invariant: exactly the running runs with `--checkpoint-every` have their next periodic
    /// checkpoint due (a suspended one keeps its time for the resume).
    pub(super) fn check_checkpoint_timers(&self) -> Result<(), String> {
        for (id, j) in &self.jobs {
            let every = j.spec.checkpoint.and_then(|c| c.every_ms).is_some();
            if j.ckpt_next.is_some() && !every {
                return Err(format!(
                    "job {id} has a periodic checkpoint due without --checkpoint-every"
                ));
            }
            if j.state == RunState::Running && every && j.ckpt_next.is_none() {
                return Err(format!(
                    "running job {id} has --checkpoint-every but no checkpoint due"
                ));
            }
        }
        Ok(())
    }
}
