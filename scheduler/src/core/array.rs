//! Job arrays: one submit, one task per index. The array's id (what `graze submit` prints) is
//! no job's id; each task is an ordinary job with an id of its own and a link
//! ([`ArrayTask`]) to its array, so placement, requeue, suspend and restore treat it like any
//! job. This module keeps the array table (tasks by index, the tasks whose run is alive, the
//! tasks that ended), the throttle's start condition, cancelling a whole array, and resolving
//! the CLI's `7` and `7.3`.

use super::job::{Job, RunState};
use super::secret::Secret;
use super::state::Core;
use graze_proto::{index_words, ArrayTask, ArrayView, JobId, JobRef, JobSpec, MAX_ARRAY_TASKS};
use std::collections::{BTreeMap, BTreeSet};

/// One job array.
#[derive(Debug, Clone, Default)]
pub(super) struct Array {
    /// Task ids by index.
    pub(super) tasks: BTreeMap<u32, JobId>,
    /// Most tasks running at once.
    pub(super) throttle: Option<u32>,
    /// Tasks placed on their nodes (running, suspended, failing): what the throttle counts.
    /// A task being killed (cancelled, or requeued and waiting for its old run's kill) no
    /// longer counts.
    pub(super) active: BTreeSet<JobId>,
    /// Tasks that ended.
    pub(super) ended: BTreeSet<JobId>,
    /// Tasks that ended otherwise than completed, in the order they ended (the first one breaks
    /// an `ok` dependency on the array).
    pub(super) bad: Vec<JobId>,
}

impl Array {
    /// Every task ended.
    pub(super) fn is_final(&self) -> bool {
        self.ended.len() == self.tasks.len()
    }
}

/// What a [`JobRef`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One job (or one task, by its own id).
    Job(JobId),
    /// A whole array.
    Array(JobId),
}

/// What a task's main command finds in its environment: `GRAZE_ARRAY_JOB_ID`,
/// `GRAZE_ARRAY_INDEX`, `GRAZE_ARRAY_COUNT`.
pub(super) fn task_env(t: &ArrayTask) -> [(String, String); 3] {
    [
        ("GRAZE_ARRAY_JOB_ID".into(), t.array.to_string()),
        ("GRAZE_ARRAY_INDEX".into(), t.index.to_string()),
        ("GRAZE_ARRAY_COUNT".into(), t.count.to_string()),
    ]
}

impl Core {
    /// Queue every task of an array spec; the caller has checked the spec otherwise. Returns
    /// the array's id.
    pub(super) fn submit_array(
        &mut self,
        mut spec: JobSpec,
        secret: Secret,
        now: u64,
    ) -> Result<JobId, String> {
        let Some(shape) = spec.array.take() else {
            return Err("internal: not an array".into());
        };
        let words = index_words(&shape.indices);
        if shape.indices.is_empty() {
            return Err("invalid --array '': an array needs at least one index".into());
        }
        if shape.indices.len() > MAX_ARRAY_TASKS as usize {
            return Err(format!(
                "invalid --array '{words}': {} tasks, at most {MAX_ARRAY_TASKS} allowed",
                shape.indices.len()
            ));
        }
        if shape.indices.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "invalid --array '{words}': the indices must be ascending without repeats"
            ));
        }
        if shape.throttle == Some(0) {
            return Err(format!(
                "invalid --array '{words}%0': the throttle must be at least 1"
            ));
        }
        let count = shape.indices.len() as u32;
        let array = JobId(self.next_job);
        self.next_job += 1;
        let mut a = Array {
            throttle: shape.throttle,
            ..Array::default()
        };
        let mut ids = Vec::with_capacity(shape.indices.len());
        for &index in &shape.indices {
            let id = JobId(self.next_job);
            self.next_job += 1;
            a.tasks.insert(index, id);
            ids.push(id);
        }
        self.arrays.insert(array, a);
        for (&index, id) in shape.indices.iter().zip(ids) {
            // Each task its own shim secret (the launch checks match a job's secret).
            let task_secret = Secret::new(format!("{}-{index}", secret.expose()));
            let mut job = Job::new(spec.clone(), task_secret, now);
            job.task = Some(ArrayTask {
                array,
                index,
                count,
                throttle: shape.throttle,
            });
            self.queue.insert(job.key(id), job.spec.nprocs);
            if job.spec.time_limit_ms.is_some() {
                self.limited.insert(job.key(id));
            }
            self.jobs.insert(id, job);
            self.event(id, now, format!("submitted as task {array}.{index}"));
            self.watch_deps(id, now);
        }
        self.schedule(now);
        Ok(array)
    }

    /// Keep the array's sets in step with task `id`'s state (called with every event).
    pub(super) fn track_task(&mut self, id: JobId) {
        let Some(j) = self.jobs.get(&id) else {
            return;
        };
        let Some(t) = j.task else {
            return;
        };
        let alive = j.state.is_placed();
        let ended = j.state.is_final();
        let completed = matches!(j.state, RunState::Completed { .. });
        let Some(a) = self.arrays.get_mut(&t.array) else {
            return;
        };
        if alive {
            a.active.insert(id);
        } else {
            a.active.remove(&id);
        }
        if ended && a.ended.insert(id) && !completed {
            a.bad.push(id);
        }
    }

    /// Why task `j` may not start now: its array's throttle is reached.
    pub(super) fn throttled(&self, j: &Job) -> Option<String> {
        let t = j.task?;
        let limit = t.throttle?;
        let a = self.arrays.get(&t.array)?;
        let running = a.active.len() as u32;
        (running >= limit).then(|| format!("throttled ({running} of array {} running)", t.array))
    }

    /// What `r` names: a job, a task of an array, or a whole array.
    pub fn resolve(&self, r: JobRef) -> Result<Target, String> {
        match r.task {
            Some(index) => {
                let Some(a) = self.arrays.get(&r.job) else {
                    return Err(if self.jobs.contains_key(&r.job) {
                        format!("job {} is not an array, so it has no task {r}", r.job)
                    } else {
                        format!("no job {}", r.job)
                    });
                };
                match a.tasks.get(&index) {
                    Some(id) => Ok(Target::Job(*id)),
                    None => {
                        let idx: Vec<u32> = a.tasks.keys().copied().collect();
                        Err(format!(
                            "no task {r}: array {} has indices {}",
                            r.job,
                            index_words(&idx)
                        ))
                    }
                }
            }
            None if self.jobs.contains_key(&r.job) => Ok(Target::Job(r.job)),
            None if self.arrays.contains_key(&r.job) => Ok(Target::Array(r.job)),
            None => Err(format!("no job {}", r.job)),
        }
    }

    /// Cancel every task of array `id` not yet final.
    pub fn cancel_array(&mut self, id: JobId, now: u64) -> Result<(), String> {
        let Some(a) = self.arrays.get(&id) else {
            return Err(format!("no array {id}"));
        };
        let open: Vec<JobId> = a
            .tasks
            .values()
            .filter(|t| self.jobs.get(t).is_some_and(|j| !j.state.is_final()))
            .copied()
            .collect();
        if open.is_empty() {
            return Err(format!("array {id} has ended: no task is left to cancel"));
        }
        // Queued tasks first, so no task starts in a cores freed by a cancelled one.
        let (queued, placed): (Vec<JobId>, Vec<JobId>) = open
            .into_iter()
            .partition(|t| self.jobs[t].state == RunState::Queued);
        for t in queued.into_iter().chain(placed) {
            self.cancel_one(t, now)?;
        }
        self.schedule(now);
        Ok(())
    }

    /// The array as the CLI shows it.
    pub fn array_view(&self, id: JobId) -> Option<ArrayView> {
        let a = self.arrays.get(&id)?;
        Some(ArrayView {
            id,
            tasks: a.tasks.values().filter_map(|t| self.job_view(*t)).collect(),
        })
    }

    /// Whether every task of array `id` ended (`None`: no such array).
    pub fn array_final(&self, id: JobId) -> Option<bool> {
        self.arrays.get(&id).map(Array::is_final)
    }

    /// The array job `id` is a task of, if it is one.
    pub fn task_of(&self, id: JobId) -> Option<ArrayTask> {
        self.jobs.get(&id).and_then(|j| j.task)
    }

    /// Rebuild the array table from restored tasks.
    pub(super) fn restore_arrays(&mut self) {
        let tasks: Vec<(JobId, ArrayTask)> = self
            .jobs
            .iter()
            .filter_map(|(id, j)| Some((*id, j.task?)))
            .collect();
        for (id, t) in tasks {
            let a = self.arrays.entry(t.array).or_default();
            a.throttle = t.throttle;
            a.tasks.insert(t.index, id);
            self.track_task(id);
        }
    }
}
