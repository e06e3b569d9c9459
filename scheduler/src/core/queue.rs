//! The queue: submit, cancel, requeue, and the scheduling pass that places queued jobs in
//! queue order (a `BTreeMap` keyed by priority, order and id, valued by rank count).

use super::backfill::Reservation;
use super::history::AttemptOutcome;
use super::job::{Job, QueueKey, RunState};
use super::limits::check_limits;
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
        if spec.stdout.is_none() {
            if let Some(e) = &spec.stderr {
                return Err(format!(
                    "invalid --stderr '{e}' without --stdout: stderr goes to its own file only \
                     beside a --stdout file"
                ));
            }
        }
        for (flag, p) in [("--stdout", &spec.stdout), ("--stderr", &spec.stderr)] {
            if let Some(p) = p {
                graze_proto::Pattern::parse(p).map_err(|e| format!("{flag}: {e}"))?;
            }
        }
        check_limits(&spec)?;
        if let Some(c) = &spec.checkpoint {
            c.check()?;
        }
        for n in &spec.nodes {
            if !self.nodes.contains_key(n) {
                return Err(format!("unknown node '{n}': {}", self.known_nodes()));
            }
        }
        if spec.nprocs > self.cfg.max_job_cores && !self.has_capacity(&spec) {
            let (cap, count) = self.capacity(&spec);
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
        if job.spec.time_limit_ms.is_some() {
            self.limited.insert(job.key(id));
        }
        self.jobs.insert(id, job);
        self.event(id, now, "submitted".into());
        self.watch_deps(id, now);
        self.pass(now, Some(id));
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
                self.limited.remove(&key);
                let j = self.jobs.get_mut(&id).ok_or("job vanished")?;
                if j.clearing.is_empty() {
                    let outcome = AttemptOutcome::Final(JobState::Cancelled);
                    self.attempt_ended(id, outcome, None, now);
                    let j = self.jobs.get_mut(&id).ok_or("job vanished")?;
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
                    // The ongoing suspension ends here: keep its time for the attempt record.
                    j.run_suspended_ms = j.suspended_ms(now);
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
        let exit = match &self.jobs[&id].state {
            RunState::Failing { exit, .. } => *exit,
            _ => None,
        };
        self.attempt_ended(id, AttemptOutcome::Requeued(reason.clone()), exit, now);
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
        let limited = j.spec.time_limit_ms.is_some();
        self.queue.insert(key, n);
        if limited {
            self.limited.insert(key);
        }
        self.event(id, now, format!("requeued: {reason}"));
    }

    /// Try to place every queued job, in queue order, with EASY backfill behind the first one
    /// that does not fit (`backfill.rs` has the rule).
    pub(super) fn schedule(&mut self, now: u64) {
        if self.defer_passes {
            self.pass_due = true;
            return;
        }
        self.pass(now, None);
    }

    /// From now on, every scheduling pass an input asks for (a node offering, a job ending,
    /// a cancel...) waits for [`Core::run_deferred_pass`], so that a batch of inputs gets one
    /// pass instead of one each (a submit still places its own job at once). At 10,000 agents
    /// a pass over 100,000 queued jobs costs milliseconds and hundreds of inputs a second ask
    /// for one: the passes, not the packets, filled the scheduler's thread. The driver runs
    /// the deferred pass after every batch of inputs and every timeout, before its commit.
    pub fn defer_passes(&mut self) {
        self.defer_passes = true;
    }

    /// Whether a deferred pass waits for [`Core::run_deferred_pass`].
    pub fn pass_due(&self) -> bool {
        self.pass_due
    }

    /// Run the pass deferred since the last one, if any was asked for; true if one ran.
    pub fn run_deferred_pass(&mut self, now: u64) -> bool {
        if !self.pass_due {
            return false;
        }
        self.pass(now, None);
        true
    }

    /// The scheduling pass. `submitted`: the pass follows the submit of this job alone, so
    /// with no free core only that job can change the reservation.
    pub(super) fn pass(&mut self, now: u64, submitted: Option<JobId>) {
        self.pass_at = now;
        if submitted.is_none() {
            self.pass_due = false;
        }
        // Free offered cores bound every placement: jobs above it are skipped without a search.
        let (mut free, mut offered) = (0u32, 0u32);
        let mut with_free = Vec::new();
        for n in self.nodes.values().filter(|n| n.offered()) {
            let f = n.free();
            free = free.saturating_add(f);
            offered = offered.saturating_add(n.info.cores);
            if f > 0 {
                with_free.push(n.info.name.clone());
            }
        }
        if free == 0 {
            self.reservation = match (submitted, self.reservation.take()) {
                (Some(id), kept) => {
                    let j = &self.jobs[&id];
                    let key = j.key(id);
                    match kept {
                        Some(r) if r.key < key => Some(r),
                        kept if j.spec.nprocs <= offered && self.held_back(id, j).is_none() => {
                            self.reserve(id, key, j, now).or(kept)
                        }
                        kept => kept,
                    }
                }
                (None, _) => self.find_reservation(now),
            };
            return;
        }
        self.pass_nodes = Some(with_free);
        let mut res: Option<Reservation> = None;
        let mut cursor: Option<QueueKey> = None;
        loop {
            let after = match cursor {
                None => std::ops::Bound::Unbounded,
                Some(c) => std::ops::Bound::Excluded(c),
            };
            let range = (after, std::ops::Bound::Unbounded);
            // Until the reservation, every job is looked at (the first that does not fit gets
            // it); after it, only those with a time limit (no other may be backfilled).
            let next = if res.is_none() {
                self.queue.range(range).next().map(|(k, n)| (*k, *n))
            } else {
                self.limited
                    .range(range)
                    .next()
                    .map(|k| (*k, self.queue.get(k).copied().unwrap_or(u32::MAX)))
            };
            let Some((key, n)) = next else {
                break;
            };
            cursor = Some(key);
            if res.is_some() && n > free {
                continue;
            }
            let id = key.2;
            let j = &self.jobs[&id];
            // Behind the reservation, cheap refusals first (no limit; too large for the extra
            // cores when it would outlast the shadow time): most of a long queue stops here.
            if res.as_ref().is_some_and(|r| !r.may_try(&j.spec, n, now)) {
                continue;
            }
            if self.held_back(id, j).is_some() {
                continue;
            }
            let placed = match &res {
                None => {
                    let fits = if n <= free {
                        self.place(&j.spec, &j.avoid, now).ok()
                    } else {
                        None
                    };
                    if fits.is_none() && n <= offered {
                        res = self.reserve(id, key, j, now);
                    }
                    fits.map(|a| (a, false))
                }
                Some(r) => self.backfill_place(&j.spec, j, r, now).ok(),
            };
            if let Some((alloc, past)) = placed {
                if past {
                    if let Some(r) = res.as_mut() {
                        Core::use_extra(r, &alloc);
                    }
                }
                free = free.saturating_sub(alloc.iter().map(|a| a.cores).sum::<u32>());
                self.start(id, alloc, now);
                if let Some(mut r) = res.take() {
                    self.refresh_outside(&mut r);
                    res = Some(r);
                }
            }
            if free == 0 && res.is_some() {
                break;
            }
        }
        self.pass_nodes = None;
        self.reservation = res;
    }

    /// Queued job ids in run order.
    pub fn queued(&self) -> Vec<JobId> {
        self.queue.keys().map(|k| k.2).collect()
    }

    /// The first `n` queued job ids in run order.
    pub fn queued_first(&self, n: usize) -> Vec<JobId> {
        self.queue.keys().take(n).map(|k| k.2).collect()
    }
}
