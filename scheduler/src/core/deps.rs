//! Dependencies (`--after ok:7,any:8,notok:9`): a job waits until each job (or whole array)
//! it names is decided. `ok` needs every task completed (exit 0), `notok` needs it ended
//! otherwise (for an array: every task ended, some not completed), `any` needs it ended.
//! A dependency that can never be met ends the waiting job at once as `dependency-failed`,
//! with an event naming the job that broke it, and that cascades down a chain. A job can only
//! name jobs that exist when it is submitted, so a cycle cannot arise.
//!
//! The index `Core::dependents` maps a job or array to the jobs that name it, so a job's end
//! looks only at the jobs waiting for it.

use super::history::AttemptOutcome;
use super::job::RunState;
use super::state::{Core, Output};
use graze_proto::{DepKind, Dependency, JobEvent, JobId, JobState};

/// Where one dependency stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DepStatus {
    /// Met: the job may start as far as this dependency goes.
    Met,
    /// Not decided yet.
    Pending,
    /// Can never be met; why.
    Broken(String),
}

/// How an ended job ended, for the event of a job whose dependency it broke.
fn ended_words(s: &RunState) -> String {
    match s {
        RunState::Completed { .. } => "completed".into(),
        RunState::Failed { exit: Some(e), .. } => format!("failed ({e})"),
        RunState::Failed { exit: None, .. } => "failed (it could not start)".into(),
        RunState::Cancelled { .. } => "was cancelled".into(),
        RunState::TimedOut { .. } => "timed out".into(),
        RunState::DependencyFailed { .. } => "ended dependency-failed".into(),
        other => other.wire().to_string(),
    }
}

impl Core {
    /// Refuse dependencies on jobs that do not exist.
    pub(super) fn check_deps(&self, after: &[Dependency]) -> Result<(), String> {
        for d in after {
            if !self.jobs.contains_key(&d.job) && !self.arrays.contains_key(&d.job) {
                return Err(format!("invalid --after '{d}': no job {}", d.job));
            }
        }
        Ok(())
    }

    /// Where dependency `d` stands now.
    pub(super) fn dep_status(&self, d: &Dependency) -> DepStatus {
        if let Some(j) = self.jobs.get(&d.job) {
            if !j.state.is_final() {
                return DepStatus::Pending;
            }
            let ok = matches!(j.state, RunState::Completed { .. });
            let met = match d.kind {
                DepKind::Ok => ok,
                DepKind::NotOk => !ok,
                DepKind::Any => true,
            };
            return if met {
                DepStatus::Met
            } else {
                let name = match j.task {
                    Some(t) => format!("task {}", t.job_ref()),
                    None => format!("job {}", d.job),
                };
                DepStatus::Broken(format!(
                    "{name} {}; this job needed {d}",
                    ended_words(&j.state)
                ))
            };
        }
        let Some(a) = self.arrays.get(&d.job) else {
            return DepStatus::Broken(format!("job {} is unknown; this job needed {d}", d.job));
        };
        match d.kind {
            // The first task that ends otherwise breaks it: no need to wait for the others.
            DepKind::Ok => match a.bad.first().and_then(|t| Some((t, self.jobs.get(t)?))) {
                Some((_, j)) => {
                    let index = j.task.map_or(0, |t| t.index);
                    DepStatus::Broken(format!(
                        "task {}.{index} of array {} {}; this job needed {d}",
                        d.job,
                        d.job,
                        ended_words(&j.state)
                    ))
                }
                None if a.is_final() => DepStatus::Met,
                None => DepStatus::Pending,
            },
            DepKind::NotOk if !a.is_final() => DepStatus::Pending,
            DepKind::NotOk if a.bad.is_empty() => DepStatus::Broken(format!(
                "every task of array {} completed; this job needed {d}",
                d.job
            )),
            DepKind::NotOk => DepStatus::Met,
            DepKind::Any if a.is_final() => DepStatus::Met,
            DepKind::Any => DepStatus::Pending,
        }
    }

    /// The first dependency of job `id` not yet met, and where it stands (`None`: all met).
    pub(super) fn deps_status(&self, id: JobId) -> Option<(Dependency, DepStatus)> {
        let j = self.jobs.get(&id)?;
        let mut pending = None;
        for d in &j.spec.after {
            match self.dep_status(d) {
                DepStatus::Met => {}
                DepStatus::Broken(why) => return Some((*d, DepStatus::Broken(why))),
                DepStatus::Pending => {
                    if pending.is_none() {
                        pending = Some(*d);
                    }
                }
            }
        }
        pending.map(|d| (d, DepStatus::Pending))
    }

    /// Why queued job `id` may not start for its dependencies: `waiting for job 7`.
    pub(super) fn waiting_for_deps(&self, id: JobId) -> Option<String> {
        match self.deps_status(id)? {
            (d, DepStatus::Pending) => {
                let what = if self.arrays.contains_key(&d.job) {
                    "array"
                } else {
                    "job"
                };
                Some(format!("waiting for {what} {} ({})", d.job, d.kind))
            }
            // Never left standing: a broken dependency ends the job at once.
            (_, DepStatus::Broken(why)) => Some(why),
            (_, DepStatus::Met) => None,
        }
    }

    /// Job `id` was just queued: index its dependencies, and end it at once if one is already
    /// broken (it names a job that ended the wrong way).
    pub(super) fn watch_deps(&mut self, id: JobId, now: u64) {
        let Some(j) = self.jobs.get(&id) else {
            return;
        };
        let targets: Vec<JobId> = j.spec.after.iter().map(|d| d.job).collect();
        for t in targets {
            let v = self.dependents.entry(t).or_default();
            if !v.contains(&id) {
                v.push(id);
            }
        }
        if let Some((_, DepStatus::Broken(why))) = self.deps_status(id) {
            self.dependency_failed(id, why, now);
            self.cascade(vec![id], now);
        }
    }

    /// Job `id` ended: decide the jobs waiting for it (or for its array), and down the chain.
    pub(super) fn release_dependents(&mut self, id: JobId, now: u64) {
        self.cascade(vec![id], now);
    }

    /// Decide the dependents of every job in `work`, and of the jobs that fail on the way.
    fn cascade(&mut self, mut work: Vec<JobId>, now: u64) {
        while let Some(done) = work.pop() {
            let mut targets = vec![done];
            if let Some(t) = self.jobs.get(&done).and_then(|j| j.task) {
                targets.push(t.array);
            }
            for target in targets {
                let waiting = self.dependents.get(&target).cloned().unwrap_or_default();
                for d in waiting {
                    if self
                        .jobs
                        .get(&d)
                        .is_none_or(|j| j.state != RunState::Queued)
                    {
                        continue;
                    }
                    if let Some((_, DepStatus::Broken(why))) = self.deps_status(d) {
                        self.dependency_failed(d, why, now);
                        work.push(d);
                    }
                }
            }
        }
    }

    /// End queued job `id` as dependency-failed. The event is written here rather than with
    /// `event` so the cascade stays a loop, not a recursion.
    fn dependency_failed(&mut self, id: JobId, why: String, now: u64) {
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        if j.state != RunState::Queued {
            return;
        }
        let key = j.key(id);
        self.attempt_ended(
            id,
            AttemptOutcome::Final(JobState::DependencyFailed),
            None,
            now,
        );
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        j.state = RunState::DependencyFailed { at: now };
        j.events.push(JobEvent {
            at_ms: now,
            what: format!("dependency-failed: {why}"),
            seq: self.next_event,
        });
        self.next_event += 1;
        self.queue.remove(&key);
        self.limited.remove(&key);
        self.out.push_back(Output::JobChanged(id));
        self.out.push_back(Output::JobFinal(id));
        self.track_task(id);
    }

    /// Rebuild the dependents index after a restore, and end jobs whose dependency broke.
    pub(super) fn restore_deps(&mut self, now: u64) {
        let ids: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| !j.spec.after.is_empty())
            .map(|(id, _)| *id)
            .collect();
        // Only queued jobs still wait for anything.
        for id in ids {
            if self.jobs[&id].state == RunState::Queued {
                self.watch_deps(id, now);
            }
        }
    }
}
