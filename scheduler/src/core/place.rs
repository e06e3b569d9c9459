//! The allocator: pack a job onto as few offered nodes as possible (owners idle longest
//! first), say why a queued job waits, and start a placed run.

use super::job::{Job, Placement, RunState};
use super::node::Node;
use super::state::Core;
use graze_proto::{JobId, JobSpec, SchedulerMsg};
use std::collections::BTreeSet;

impl Core {
    /// Pack `spec` onto as few offered nodes as possible, preferring owners idle longest,
    /// never onto a node in `avoid`.
    pub(super) fn place(
        &self,
        spec: &JobSpec,
        avoid: &BTreeSet<String>,
    ) -> Result<Vec<Placement>, String> {
        let mut cands: Vec<(&Node, u32)> = self
            .nodes
            .values()
            .filter(|n| n.offered() && eligible(n, spec) && !avoid.contains(&n.info.name))
            .map(|n| (n, n.ranks_in(spec.unit, n.free())))
            .filter(|(_, r)| *r > 0)
            .collect();
        let avail: u32 = cands.iter().map(|c| c.1).sum();
        if avail < spec.nprocs {
            return Err(format!(
                "needs {} {}s{}, {} offered",
                spec.nprocs,
                spec.unit,
                self.filter_words(spec),
                avail
            ));
        }
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
                cores: take * n.cores_per_rank(spec.unit),
            });
        }
        Ok(alloc)
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
    pub(super) fn capacity(&self, spec: &JobSpec) -> (u32, u32) {
        let mut cap = 0u32;
        let mut count = 0;
        for n in self.nodes.values().filter(|n| eligible(n, spec)) {
            cap = cap.saturating_add(n.ranks_in(spec.unit, n.info.cores));
            count += 1;
        }
        (cap, count)
    }

    /// Why a queued job waits, computed when asked.
    pub(super) fn waiting_for(&self, id: JobId, j: &Job) -> Option<String> {
        if j.state != RunState::Queued {
            return None;
        }
        if let Some(why) = self.held_back(id, j) {
            return Some(why);
        }
        match self.place(&j.spec, &j.avoid) {
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
        self.queue.remove(&j.key(id));
        j.state = RunState::Running;
        // A fresh run: confirmations awaited for an earlier run (after a restart) are moot.
        j.confirm.clear();
        j.confirm_deadline = None;
        j.started_ms = Some(now);
        j.run_suspended_ms = 0;
        j.epoch += 1;
        j.alloc = alloc.clone();
        let mut env = j.spec.env.clone();
        if let Some(t) = j.task {
            env.extend(super::array::task_env(&t));
        }
        let msg = SchedulerMsg::StartJob {
            job: id,
            command: j.spec.command.clone(),
            cwd: j.spec.cwd.clone(),
            env,
            hosts: alloc.iter().map(Placement::slots).collect(),
            secret: j.secret.expose().to_string(),
            epoch: j.epoch,
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
        if let Some(conn) = self.conn_of(&alloc[0].host) {
            self.send(conn, msg);
        }
    }
}

/// Whether `node` passes the spec's group and node filters.
fn eligible(node: &Node, spec: &JobSpec) -> bool {
    spec.groups.iter().all(|g| node.info.groups.contains(g))
        && (spec.nodes.is_empty() || spec.nodes.contains(&node.info.name))
}
