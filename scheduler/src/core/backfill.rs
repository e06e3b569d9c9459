//! EASY backfill: the reservation of the first waiting job that does not fit, and which later
//! jobs may start ahead of it.
//!
//! The rule, in order (applied by the scheduling pass, `queue.rs`):
//!
//! 1. Jobs are taken in queue order. A job that fits now starts, until the first job that
//!    does not fit now (and is not held back by the gate) and could fit in the offered cores
//!    once running jobs end: that job, the *head*, gets the one reservation (EASY keeps one).
//!    A job that could not fit even with every offered core free gets none: it waits for more
//!    nodes to offer cores, a time nobody can predict, and holds nothing back.
//! 2. The head's *shadow time* is the earliest time enough cores free up for it (its unit,
//!    groups, nodes, avoided nodes, `--exclusive` and availability windows counted), from the
//!    running jobs' expected ends: `now + (limit - running_ms)`. A running job without a time
//!    limit never frees its cores in this calculation; cores of a run being killed come back
//!    at `now`. A suspended job's `running_ms` stands still, so its expected end moves later
//!    as long as it stays suspended: the reservation is recomputed at every pass (every event),
//!    and the shadow time only moves later that way, never earlier, so a job backfilled against
//!    an earlier shadow time still ends before it.
//! 3. The reservation is the head's placement at the shadow time (the allocator's packing over
//!    the cores free then). On each node of it, the *extra* cores are those free at the shadow
//!    time beyond what the head takes there.
//! 4. A later job may start now only if it has a time limit and either ends by the shadow time
//!    (`now + limit <= shadow`; it may use any free core) or fits in the extra cores (it may
//!    run past the shadow time without taking the head's cores; its cores then leave the
//!    extra). A job with no `--time` is never backfilled ahead of a reservation.
//! 5. When the shadow time is unknown (jobs without a limit hold cores the head needs), the
//!    reservation is the head's placement as if every running job had ended, and a later job
//!    may start only in the extra cores of that placement (standard EASY with an unknown
//!    shadow time: only jobs that do not use the cores the head needs).
//!
//! The pass stays event-driven: a reservation becoming due is a job end, which runs a pass.
//! Cost: one reservation per pass, O(nodes + their jobs · log); each later job is checked in
//! O(1) (no limit, too large for the free cores) before the allocator runs.

use super::job::{Job, Placement, QueueKey};
use super::node::Node;
use super::place::{eligible, pack, ranks_for, window_ok};
use super::state::Core;
use graze_proto::{human_duration, JobId, JobSpec};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// The head job's reservation, from the last scheduling pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reservation {
    /// The reserved (head) job.
    pub(super) job: JobId,
    /// Its queue key: jobs after it are the ones backfilled.
    pub(super) key: QueueKey,
    /// The `now` of the pass that computed it.
    pub(super) at: u64,
    /// When the head is expected to start; `None`: unknown (cores it needs are held by jobs
    /// without a time limit).
    pub(super) shadow: Option<u64>,
    /// Per node of the reservation: the cores a job still running at the shadow time may
    /// take there now (the extra cores). Nodes not listed are not reserved.
    pub(super) extra: HashMap<String, u32>,
    /// Cores a job outlasting the shadow time could take now: the free cores of the nodes not
    /// in the reservation plus the extra ones that are free (an upper bound for the quick
    /// check, kept by [`Core::refresh_outside`]).
    pub(super) outside: u32,
}

impl Reservation {
    /// A quick, allocation-free check that a job of `n` ranks queued after the reservation
    /// could start now: it has a time limit, and it ends by the shadow time or is not larger
    /// than the cores it may take beside the reservation. `false` means it certainly waits.
    pub(super) fn may_try(&self, spec: &JobSpec, n: u32, now: u64) -> bool {
        let Some(limit) = spec.time_limit_ms else {
            return false;
        };
        self.shadow.is_some_and(|s| now.saturating_add(limit) <= s) || n <= self.outside
    }
}

impl Core {
    /// When a job holding cores is expected to release them: `now` for a run being killed,
    /// `now + (limit - running_ms)` for a placed run with a time limit (at once when past it),
    /// `None` (never, for this calculation) for one without.
    pub(super) fn expected_end(&self, j: &Job, now: u64) -> Option<u64> {
        if !j.state.is_placed() {
            return Some(now);
        }
        let limit = j.spec.time_limit_ms?;
        Some(now.saturating_add(limit.saturating_sub(j.running_ms(now))))
    }

    /// The reservation of queued job `id` at `now` (rule 2, 3 and 5 above); `None` when it
    /// could not fit even with every offered core free.
    pub(super) fn reserve(
        &self,
        id: JobId,
        key: QueueKey,
        j: &Job,
        now: u64,
    ) -> Option<Reservation> {
        let spec = &j.spec;
        let nodes: Vec<&Node> = self
            .nodes
            .values()
            .filter(|n| {
                n.offered()
                    && eligible(n, spec)
                    && !j.avoid.contains(&n.info.name)
                    && window_ok(n, spec.time_limit_ms, now)
            })
            .collect();
        let capacity: u32 = nodes
            .iter()
            .map(|n| ranks_for(n, spec, n.info.cores))
            .fold(0, u32::saturating_add);
        if capacity < spec.nprocs {
            return None;
        }
        let mut events: Vec<(u64, usize, u32)> = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            for (other, cores) in &n.held {
                if let Some(t) = self.jobs.get(other).and_then(|o| self.expected_end(o, now)) {
                    events.push((t, i, *cores));
                }
            }
        }
        events.sort_unstable();
        let mut free: Vec<u32> = nodes.iter().map(|n| n.free()).collect();
        let mut ranks: Vec<u32> = nodes
            .iter()
            .zip(&free)
            .map(|(n, f)| ranks_for(n, spec, *f))
            .collect();
        let mut sum: u32 = ranks.iter().fold(0, |a, r| a.saturating_add(*r));
        let mut dropped = vec![false; nodes.len()];
        // Latest start for which a node's window still holds the job's limit.
        let mut closing: BinaryHeap<Reverse<(u64, usize)>> = nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let w = n.status.as_ref()?.window_ends_ms?;
                Some(Reverse((w.saturating_sub(spec.time_limit_ms?), i)))
            })
            .collect();
        let mut k = 0;
        let mut t = now;
        let shadow = loop {
            while k < events.len() && events[k].0 <= t {
                let (_, i, c) = events[k];
                free[i] = free[i].saturating_add(c);
                if !dropped[i] {
                    let r = ranks_for(nodes[i], spec, free[i]);
                    sum = sum.saturating_add(r).saturating_sub(ranks[i]);
                    ranks[i] = r;
                }
                k += 1;
            }
            while let Some(Reverse((last, i))) = closing.peek().copied() {
                if last >= t {
                    break;
                }
                closing.pop();
                dropped[i] = true;
                sum = sum.saturating_sub(ranks[i]);
                ranks[i] = 0;
            }
            if sum >= spec.nprocs {
                break Some(t);
            }
            if k == events.len() {
                break None;
            }
            t = events[k].0;
        };
        let (alloc, free_then): (Vec<Placement>, HashMap<&str, u32>) = match shadow {
            Some(_) => {
                let cands = nodes
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !dropped[*i] && ranks[*i] > 0)
                    .map(|(i, n)| (*n, ranks[i]))
                    .collect();
                let then = nodes
                    .iter()
                    .zip(&free)
                    .map(|(n, f)| (n.info.name.as_str(), *f))
                    .collect();
                (pack(cands, spec), then)
            }
            None => {
                let cands = nodes
                    .iter()
                    .map(|n| (*n, ranks_for(n, spec, n.info.cores)))
                    .filter(|(_, r)| *r > 0)
                    .collect();
                let then = nodes
                    .iter()
                    .map(|n| (n.info.name.as_str(), n.info.cores))
                    .collect();
                (pack(cands, spec), then)
            }
        };
        let extra = alloc
            .iter()
            .map(|a| {
                let then = free_then.get(a.host.as_str()).copied().unwrap_or(0);
                (a.host.clone(), then.saturating_sub(a.cores))
            })
            .collect();
        let mut r = Reservation {
            job: id,
            key,
            at: now,
            shadow,
            extra,
            outside: 0,
        };
        self.refresh_outside(&mut r);
        Some(r)
    }

    /// Recount [`Reservation::outside`] from the nodes' free cores.
    pub(super) fn refresh_outside(&self, r: &mut Reservation) {
        r.outside = self
            .nodes
            .values()
            .filter(|n| n.offered())
            .map(|n| match r.extra.get(&n.info.name) {
                Some(e) => n.free().min(*e),
                None => n.free(),
            })
            .fold(0, u32::saturating_add);
    }

    /// The reservation when no core is free: the first queued job (not held back) that gets
    /// one. Only a pass with no free core uses this (nothing can start then).
    pub(super) fn find_reservation(&self, now: u64) -> Option<Reservation> {
        let offered: u32 = self
            .nodes
            .values()
            .filter(|n| n.offered())
            .map(|n| n.info.cores)
            .fold(0, u32::saturating_add);
        if offered == 0 {
            return None;
        }
        self.queue.iter().find_map(|(key, n)| {
            // A job of more ranks than offered cores could never fit them.
            if *n > offered {
                return None;
            }
            let j = &self.jobs[&key.2];
            if self.held_back(key.2, j).is_some() {
                return None;
            }
            self.reserve(key.2, *key, j, now)
        })
    }

    /// Place a job queued after the reservation (rule 4 and 5): `Ok((allocation, past))`,
    /// `past` when it runs past the shadow time (its cores come out of the extra ones), or
    /// why it may not start now.
    pub(super) fn backfill_place(
        &self,
        spec: &JobSpec,
        j: &Job,
        r: &Reservation,
        now: u64,
    ) -> Result<(Vec<Placement>, bool), String> {
        let Some(limit) = spec.time_limit_ms else {
            return Err(format!(
                "waits behind job {}'s reservation: only jobs with --time start ahead of it",
                r.job
            ));
        };
        if r.shadow.is_some_and(|s| now.saturating_add(limit) <= s) {
            return self.place(spec, &j.avoid, now).map(|a| (a, false));
        }
        match self.place_at(spec, &j.avoid, now, Some(&r.extra)) {
            Ok(a) => Ok((a, true)),
            Err(_) => Err(match r.shadow {
                Some(s) => format!(
                    "would delay job {} (reserved to start in {}): its --time {} runs past that \
                     and the cores left beside the reservation are too few",
                    r.job,
                    human_duration(s.saturating_sub(now)),
                    human_duration(limit)
                ),
                None => format!(
                    "would take cores reserved for job {} (its start is unknown: jobs without \
                     --time hold cores it needs)",
                    r.job
                ),
            }),
        }
    }

    /// Take a backfilled run that outlasts the shadow time out of the extra cores.
    pub(super) fn use_extra(r: &mut Reservation, alloc: &[Placement]) {
        for a in alloc {
            if let Some(e) = r.extra.get_mut(&a.host) {
                *e = e.saturating_sub(a.cores);
            }
        }
    }

    /// The backfill part of the invariants: no queued job the rule lets start stays queued,
    /// and the backfilled jobs never moved the reservation later.
    pub(super) fn check_backfill(&self) -> Result<(), String> {
        let limited: Vec<&QueueKey> = self
            .queue
            .keys()
            .filter(|k| self.jobs[&k.2].spec.time_limit_ms.is_some())
            .collect();
        if !limited.iter().copied().eq(self.limited.iter()) {
            return Err("the queued jobs with a time limit are not the limited set".into());
        }
        let now = self.pass_at;
        let r = self.reservation.as_ref();
        for key in self.queue.keys() {
            let j = &self.jobs[&key.2];
            if self.held_back(key.2, j).is_some() || self.place(&j.spec, &j.avoid, now).is_err() {
                continue;
            }
            match r {
                Some(r) if *key > r.key => {
                    if self.backfill_place(&j.spec, j, r, now).is_ok() {
                        return Err(format!(
                            "job {} could be backfilled without delaying job {} but stays queued",
                            key.2, r.job
                        ));
                    }
                }
                _ => return Err(format!("job {} fits but stays queued", key.2)),
            }
        }
        if let Some(r) = r {
            let Some(j) = self.jobs.get(&r.job) else {
                return Err(format!("reservation for unknown job {}", r.job));
            };
            if j.key(r.job) != r.key || !self.queue.contains_key(&r.key) {
                return Err(format!(
                    "reservation for job {}, which is not queued",
                    r.job
                ));
            }
            let again = self.reserve(r.job, r.key, j, r.at).and_then(|x| x.shadow);
            if let Some(was) = r.shadow {
                if again.is_none_or(|t| t > was) {
                    return Err(format!(
                        "job {}'s reservation moved from {was} to {again:?} after backfilling",
                        r.job
                    ));
                }
            }
        }
        Ok(())
    }
}
