//! The allocator: pack a job onto as few offered nodes as possible (owners idle longest
//! first), say why a queued job waits, and start a placed run.

use super::job::{Job, Placement, RunState};
use super::node::Node;
use super::state::Core;
use graze_proto::{JobId, JobSpec, SchedulerMsg};
use std::collections::{BTreeSet, HashMap};

impl Core {
    /// Pack `spec` onto as few offered nodes as possible, preferring owners idle longest,
    /// never onto a node in `avoid`, nor (for a job with a time limit starting at `now`) onto
    /// one whose availability window closes before the limit would be reached.
    pub(super) fn place(
        &self,
        spec: &JobSpec,
        avoid: &BTreeSet<String>,
        now: u64,
    ) -> Result<Vec<Placement>, String> {
        self.place_at(spec, avoid, now, None)
    }

    /// [`Core::place`], with the free cores of the nodes in `caps` limited to their value
    /// there (a backfilled job that outlasts a reservation gets only its extra cores).
    pub(super) fn place_at(
        &self,
        spec: &JobSpec,
        avoid: &BTreeSet<String>,
        now: u64,
        caps: Option<&HashMap<String, u32>>,
    ) -> Result<Vec<Placement>, String> {
        let mut late = 0u32;
        let mut cands: Vec<(&Node, u32)> = Vec::new();
        let nodes: Box<dyn Iterator<Item = &Node>> = match &self.pass_nodes {
            Some(names) => Box::new(names.iter().filter_map(|n| self.nodes.get(n))),
            None => Box::new(self.nodes.values()),
        };
        for n in nodes {
            if !(n.offered() && eligible(n, spec) && !avoid.contains(&n.info.name)) {
                continue;
            }
            let mut free = n.free();
            if let Some(c) = caps.and_then(|c| c.get(&n.info.name)) {
                free = free.min(*c);
            }
            let r = ranks_for(n, spec, free);
            if r == 0 || self.has_exclusive(n) {
                continue;
            }
            if !window_ok(n, spec.time_limit_ms, now) {
                late += 1;
                continue;
            }
            cands.push((n, r));
        }
        let avail: u32 = cands.iter().map(|c| c.1).fold(0, u32::saturating_add);
        if avail < spec.nprocs {
            let mut why = if spec.exclusive {
                let need = self.whole_nodes_needed(spec, avoid);
                format!(
                    "needs {need} whole free node{}{}, {} free",
                    if need == 1 { "" } else { "s" },
                    self.filter_words(spec),
                    cands.len()
                )
            } else {
                format!(
                    "needs {} {}s{}, {} offered",
                    spec.nprocs,
                    spec.unit,
                    self.filter_words(spec),
                    avail
                )
            };
            if late > 0 {
                why.push_str(&format!(
                    " ({late} more node{} free, but the availability window there closes before \
                     its --time would end)",
                    if late == 1 { "" } else { "s" }
                ));
            }
            return Err(why);
        }
        Ok(pack(cands, spec))
    }

    /// Whether an `--exclusive` run holds cores on `node` (nothing is placed beside it, even
    /// when the node registered again with more cores).
    pub(super) fn has_exclusive(&self, node: &Node) -> bool {
        node.held.keys().any(|id| {
            self.jobs
                .get(id)
                .is_some_and(|j| j.spec.exclusive && j.state.is_placed())
        })
    }

    /// How many whole nodes an `--exclusive` job needs: the fewest of the offered (else the
    /// known) eligible nodes, largest first, that hold its ranks.
    fn whole_nodes_needed(&self, spec: &JobSpec, avoid: &BTreeSet<String>) -> usize {
        let count = |offered_only: bool| {
            let mut caps: Vec<u32> = self
                .nodes
                .values()
                .filter(|n| (!offered_only || n.offered()) && eligible(n, spec))
                .filter(|n| !avoid.contains(&n.info.name))
                .map(|n| ranks_for(n, spec, n.info.cores))
                .collect();
            caps.sort_unstable_by(|a, b| b.cmp(a));
            let mut have = 0u32;
            caps.iter()
                .position(|c| {
                    have = have.saturating_add(*c);
                    have >= spec.nprocs
                })
                .map(|i| i + 1)
        };
        count(true)
            .or_else(|| count(false))
            .unwrap_or(spec.nprocs as usize)
    }

    /// " in group a+b on nodes x,y": the spec's filters, for messages.
    pub(super) fn filter_words(&self, spec: &JobSpec) -> String {
        let mut w = String::new();
        if !spec.groups.is_empty() {
            w.push_str(&format!(" in group {}", spec.groups.join("+")));
        }
        if !spec.nodes.is_empty() {
            w.push_str(&format!(" on nodes {}", spec.nodes.join(",")));
        }
        w
    }

    /// Ranks of the job's unit the known nodes could hold if all were free, and how many nodes.
    /// Whether the known nodes could ever hold `spec`: [`Core::capacity`] reaching its ranks,
    /// stopping as soon as it does (a submit looks at a few nodes, not at all of them).
    pub(super) fn has_capacity(&self, spec: &JobSpec) -> bool {
        let mut cap = 0u32;
        for n in self.nodes.values().filter(|n| eligible(n, spec)) {
            cap = cap.saturating_add(n.ranks_in(spec.unit, n.info.cores));
            if cap >= spec.nprocs {
                return true;
            }
        }
        false
    }

    pub(super) fn capacity(&self, spec: &JobSpec) -> (u32, u32) {
        let mut cap = 0u32;
        let mut count = 0;
        for n in self.nodes.values().filter(|n| eligible(n, spec)) {
            cap = cap.saturating_add(n.ranks_in(spec.unit, n.info.cores));
            count += 1;
        }
        (cap, count)
    }

    /// Why a queued job waits, computed when asked. `memo` keeps [`Core::place`]'s answers
    /// for the views of one request (see [`PlaceMemo`]).
    pub(super) fn waiting_for(&self, id: JobId, j: &Job, memo: &mut PlaceMemo) -> Option<String> {
        if j.state != RunState::Queued {
            return None;
        }
        if let Some(why) = self.held_back(id, j) {
            return Some(why);
        }
        let now = self.pass_at;
        let key = PlaceMemo::key(&j.spec, &j.avoid);
        let placed = match memo.0.get(&key) {
            Some(p) => p.clone(),
            None => {
                let p = self.place(&j.spec, &j.avoid, now).map(|_| ());
                memo.0.insert(key, p.clone());
                p
            }
        };
        if placed.is_ok() {
            if let Some(r) = self.reservation.as_ref().filter(|r| j.key(id) > r.key) {
                if let Err(why) = self.backfill_place(&j.spec, j, r, now) {
                    return Some(why);
                }
            }
        }
        match placed {
            Err(why) if j.avoid.is_empty() => Some(why),
            Err(why) => {
                let nodes: Vec<&str> = j.avoid.iter().map(String::as_str).collect();
                Some(format!(
                    "{why} (avoiding {} until its owner is idle again)",
                    nodes.join(", ")
                ))
            }
            Ok(_) => Some("jobs ahead of it in the queue come first".into()),
        }
    }

    /// Start a new run of queued job `id` on `alloc`: its cores are held at once and its main
    /// node (the first) is told to start it.
    pub(super) fn start(&mut self, id: JobId, alloc: Vec<Placement>, now: u64) {
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        let key = j.key(id);
        self.queue.remove(&key);
        self.limited.remove(&key);
        j.state = RunState::Running;
        // A fresh run: confirmations awaited for an earlier run (after a restart) are moot.
        j.confirm.clear();
        j.confirm_deadline = None;
        j.started_ms = Some(now);
        j.run_suspended_ms = 0;
        j.run_open = true;
        j.signalled = false;
        j.epoch += 1;
        j.alloc = alloc.clone();
        self.active.insert(id);
        j.ckpt_next = j.periodic_from(now);
        let mut env = j.spec.env.clone();
        if let Some(t) = j.task {
            env.extend(super::array::task_env(&t));
        }
        self.protocol_env(id, &mut env);
        let Some(j) = self.jobs.get(&id) else {
            return;
        };
        let msg = SchedulerMsg::StartJob {
            job: id,
            command: j.spec.command.clone(),
            cwd: j.spec.cwd.clone(),
            env,
            hosts: alloc.iter().map(Placement::slots).collect(),
            secret: j.secret.expose().to_string(),
            epoch: j.epoch,
            stdout: j.spec.stdout.clone(),
            stderr: j.spec.stderr.clone(),
            trace: self.trace_run(id, &alloc[0].host),
        };
        for a in &alloc {
            if let Some(n) = self.nodes.get_mut(&a.host) {
                n.held.insert(id, a.cores);
            }
        }
        let hosts: Vec<String> = alloc
            .iter()
            .map(|a| format!("{}:{}", a.host, a.ranks))
            .collect();
        self.event(id, now, format!("started on {}", hosts.join(" ")));
        self.send_setup(id);
        if let Some(conn) = self.conn_of(&alloc[0].host) {
            self.send(conn, msg);
        }
    }
}

/// Whether `node` passes the spec's group and node filters.
pub(super) fn eligible(node: &Node, spec: &JobSpec) -> bool {
    spec.groups.iter().all(|g| node.info.groups.contains(g))
        && (spec.nodes.is_empty() || spec.nodes.contains(&node.info.name))
}

/// Ranks of `spec` a node with `free` free cores holds: for `--exclusive` only a node with
/// no core held (all its cores), else as many of its unit as fit.
pub(super) fn ranks_for(node: &Node, spec: &JobSpec, free: u32) -> u32 {
    if spec.exclusive {
        if free >= node.info.cores && node.info.cores > 0 {
            node.ranks_in(spec.unit, node.info.cores)
        } else {
            0
        }
    } else {
        node.ranks_in(spec.unit, free)
    }
}

/// Whether a job with time limit `limit` starting at `start` ends before `node`'s
/// availability window closes. A job without a limit is not restricted.
pub(super) fn window_ok(node: &Node, limit: Option<u64>, start: u64) -> bool {
    match (limit, node.status.as_ref().and_then(|s| s.window_ends_ms)) {
        (Some(l), Some(w)) => start.saturating_add(l) <= w,
        _ => true,
    }
}

/// The allocator's packing: candidates `(node, ranks it can hold)`, most ranks first, then
/// owners idle longest, then by name, taken until the job's ranks are placed. An
/// `--exclusive` job holds every core of each node it uses.
pub(super) fn pack(mut cands: Vec<(&Node, u32)>, spec: &JobSpec) -> Vec<Placement> {
    cands.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then(b.0.idle_ms().cmp(&a.0.idle_ms()))
            .then(a.0.info.name.cmp(&b.0.info.name))
    });
    let mut left = spec.nprocs;
    let mut alloc = Vec::new();
    for (n, ranks) in cands {
        if left == 0 {
            break;
        }
        let take = ranks.min(left);
        left -= take;
        alloc.push(Placement {
            host: n.info.name.clone(),
            ranks: take,
            cores: if spec.exclusive {
                n.info.cores
            } else {
                take * n.cores_per_rank(spec.unit)
            },
        });
    }
    alloc
}

/// [`Core::place`]'s answers (fits, or why not) by what they depend on in a job (ranks, unit,
/// groups, named nodes, `--exclusive`, time limit, nodes avoided), for the views of one
/// request: queued jobs mostly share these, and each answer scans every offered node (a
/// `graze top` refresh of 1,000 queued jobs on 10,000 nodes was 10 million node visits a
/// second). Valid only while the core does not change: make one per request.
#[derive(Default)]
pub(super) struct PlaceMemo(HashMap<String, Result<(), String>>);

impl PlaceMemo {
    fn key(spec: &JobSpec, avoid: &BTreeSet<String>) -> String {
        format!(
            "{}|{:?}|{:?}|{:?}|{}|{:?}|{:?}",
            spec.nprocs,
            spec.unit,
            spec.groups,
            spec.nodes,
            spec.exclusive,
            spec.time_limit_ms,
            avoid
        )
    }
}
