//! The queue: submit, cancel, requeue, and the scheduling pass that places queued jobs in
//! queue order (a `BTreeMap` keyed by priority, order and id, valued by rank count).

use super::job::{Job, QueueKey, RunState};
use super::node::Node;
use super::secret::Secret;
use super::state::{Core, Output};
use graze_proto::{JobId, JobSpec, JobState};

impl Core {
    /// Queue a job. Refuses a spec that is invalid or could never fit.
    pub fn submit(&mut self, spec: JobSpec, secret: Secret, now: u64) -> Result<JobId, String> {
        if spec.nprocs == 0 {
            return Err("invalid nprocs '0': a job needs at least 1 rank".into());
        }
        if spec.command.is_empty() || spec.command[0].is_empty() {
            return Err("the job has no command: give one after '--'".into());
        }
        for n in &spec.nodes {
            if !self.nodes.contains_key(n) {
                return Err(format!("unknown node '{n}': {}", self.known_nodes()));
            }
        }
        let (cap, count) = self.capacity(&spec);
        if spec.nprocs > cap && spec.nprocs > self.cfg.max_job_cores {
            return Err(format!(
                "job needs {} {}s but the whole cluster{} has {} ({} node{}): it could never run",
                spec.nprocs,
                spec.unit,
                self.filter_words(&spec),
                cap,
                count,
                if count == 1 { "" } else { "s" }
            ));
        }
        self.check_deps(&spec.after)?;
        if spec.array.is_some() {
            return self.submit_array(spec, secret, now);
        }
        let id = JobId(self.next_job);
        self.next_job += 1;
        let job = Job::new(spec, secret, now);
        self.queue.insert(job.key(id), job.spec.nprocs);
        self.jobs.insert(id, job);
        self.event(id, now, "submitted".into());
        self.watch_deps(id, now);
        self.schedule(now);
        Ok(id)
    }

    /// Cancel a job.
    pub fn cancel(&mut self, id: JobId, now: u64) -> Result<JobState, String> {
        self.cancel_one(id, now)?;
        self.schedule(now);
        Ok(self.jobs[&id].state.wire())
    }

    /// Cancel a job, without the scheduling pass (a whole array's tasks share one).
    pub(super) fn cancel_one(&mut self, id: JobId, now: u64) -> Result<(), String> {
        let Some(j) = self.jobs.get(&id) else {
            return Err(format!("no job {id}"));
        };
        match &j.state {
            RunState::Queued => {
                let key = j.key(id);
                self.queue.remove(&key);
                let j = self.jobs.get_mut(&id).ok_or("job vanished")?;
                if j.clearing.is_empty() {
                    j.state = RunState::Cancelled { at: now };
                    self.event(id, now, "cancelled while queued".into());
                    self.out.push_back(Output::JobFinal(id));
                } else {
                    j.state = RunState::Cancelling;
                    self.event(id, now, "cancel requested".into());
                }
            }
            s if s.is_placed() => {
                let nodes = j.hosts();
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.state = RunState::Cancelling;
                }
                self.event(id, now, "cancel requested".into());
                self.kill_on(id, &nodes);
                if self.jobs[&id].clearing.is_empty() {
                    self.cleared(id, "", now);
                }
            }
            RunState::Cancelling => {}
            s => return Err(format!("job {id} is already {}", s.wire())),
        }
        Ok(())
    }

    /// Kill the current run on its nodes and queue the job again.
    pub(super) fn requeue(&mut self, id: JobId, reason: String, now: u64) {
        let nodes = self.jobs[&id].hosts();
        self.kill_on(id, &nodes);
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        j.state = RunState::Queued;
        j.requeues += 1;
        j.confirm.clear();
        j.confirm_deadline = None;
        let key = j.key(id);
        let n = j.spec.nprocs;
        self.queue.insert(key, n);
        self.event(id, now, format!("requeued: {reason}"));
    }

    /// Try to place every queued job, in queue order.
    pub(super) fn schedule(&mut self, now: u64) {
        // Free offered cores bound every placement: jobs above it are skipped without a search.
        let mut free: u32 = self
            .nodes
            .values()
            .filter(|n| n.offered())
            .map(Node::free)
            .sum();
        if free == 0 {
            return;
        }
        let mut cursor: Option<QueueKey> = None;
        loop {
            // Next queued job, after the cursor, small enough for the free cores.
            let next = match cursor {
                None => self.queue.iter().find(|(_, n)| **n <= free),
                Some(c) => self
                    .queue
                    .range((std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded))
                    .find(|(_, n)| **n <= free),
            };
            let Some((key, _)) = next else {
                return;
            };
            let key = *key;
            cursor = Some(key);
            let id = key.2;
            let j = &self.jobs[&id];
            if self.held_back(id, j).is_some() {
                continue;
            }
            if let Ok(alloc) = self.place(&j.spec, &j.avoid) {
                free -= alloc.iter().map(|a| a.cores).sum::<u32>();
                self.start(id, alloc, now);
                if free == 0 {
                    return;
                }
            }
        }
    }

    /// Queued job ids in run order.
    pub fn queued(&self) -> Vec<JobId> {
        self.queue.keys().map(|k| k.2).collect()
    }
}
