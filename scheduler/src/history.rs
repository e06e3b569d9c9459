//! The driver's side of job history and the harvest report: the core's attempt records and
//! owner events, the agents' release latencies and the per-node usage integral are collected
//! here and written in the same commit as the job changes (`commit.rs`); `graze history` and
//! `graze report` read them back from the database; old rows are pruned at start and at most
//! once an hour, when a commit happens (no timer of its own).
//!
//! Usage: at every commit each node's offered cores (all its cores while it offers them,
//! else 0) and used cores (held by jobs) since the previous commit are added to its bucket of
//! the hour, split at hour boundaries. Time while the scheduler is down counts as neither.
//! Buckets are written with the next commit that writes anything else, and at least once a
//! minute, so a crash loses at most a minute of usage (never an attempt or an owner event).

use crate::core::{AttemptOutcome, AttemptRecord, Core};
use crate::db::history::{HistoryRead, HistoryWrite, OwnerEventRow, UsageRow, HOUR_MS};
use graze_proto::{AttemptView, HarvestData, HistoryQuery, HostSlots, JobState, NodeHarvest};
use std::collections::{BTreeMap, HashMap};

/// How often usage buckets are written when nothing else is (ms).
const USAGE_FLUSH_MS: u64 = 60_000;
/// How often old rows are pruned (ms).
const PRUNE_EVERY_MS: u64 = HOUR_MS;
/// Release latencies sent per node in a report, the latest kept.
const MAX_RELEASES: usize = 10_000;

/// Pending history rows and the usage integrator.
#[derive(Debug)]
pub(crate) struct History {
    retention_ms: u64,
    last_prune: Option<u64>,
    pending: HistoryWrite,
    /// Per node: the last sample (time, offered cores, used cores).
    samples: HashMap<String, (u64, u64, u64)>,
    /// Usage not yet written, per (node, hour).
    buckets: BTreeMap<(String, u64), UsageRow>,
    last_usage_write: u64,
}

impl History {
    pub(crate) fn new(history_days: u32, now: u64) -> History {
        History {
            retention_ms: u64::from(history_days) * 24 * HOUR_MS,
            last_prune: None,
            pending: HistoryWrite::default(),
            samples: HashMap::new(),
            buckets: BTreeMap::new(),
            last_usage_write: now,
        }
    }

    pub(crate) fn attempt(&mut self, r: AttemptRecord) {
        self.pending.attempts.push(r);
    }

    pub(crate) fn event(&mut self, e: OwnerEventRow) {
        self.pending.events.push(e);
    }

    /// The cutoff to prune before, if a prune is due at `now`.
    pub(crate) fn prune_due(&mut self, now: u64) -> Option<u64> {
        if self
            .last_prune
            .is_some_and(|t| now.saturating_sub(t) < PRUNE_EVERY_MS)
        {
            return None;
        }
        self.last_prune = Some(now);
        Some(now.saturating_sub(self.retention_ms))
    }

    /// Integrate every node's offered and used cores up to `now`.
    pub(crate) fn sample(&mut self, core: &Core, now: u64) {
        for v in core.node_views() {
            let offered_now = v.online
                && !v.drained
                && v.status
                    .as_ref()
                    .is_some_and(|s| s.availability.is_offered());
            let off = if offered_now {
                u64::from(v.info.cores)
            } else {
                0
            };
            let used = u64::from(v.used_cores);
            let name = v.info.name;
            if let Some((t0, off0, used0)) = self.samples.insert(name.clone(), (now, off, used)) {
                let mut t = t0;
                while t < now {
                    let hour = t - t % HOUR_MS;
                    let end = now.min(hour + HOUR_MS);
                    let dt = end - t;
                    if off0 > 0 || used0 > 0 {
                        let b = self.buckets.entry((name.clone(), hour)).or_default();
                        b.offered_core_ms = b.offered_core_ms.saturating_add(off0 * dt);
                        b.used_core_ms = b.used_core_ms.saturating_add(used0 * dt);
                    }
                    t = end;
                }
            }
        }
    }

    /// What this commit writes: pending rows, and the usage buckets when `other` (the commit
    /// writes something anyway) or a minute passed.
    pub(crate) fn take(&mut self, other: bool, now: u64) -> HistoryWrite {
        let mut w = std::mem::take(&mut self.pending);
        let due = now.saturating_sub(self.last_usage_write) >= USAGE_FLUSH_MS;
        if (other || due || !w.is_empty()) && !self.buckets.is_empty() {
            w.usage = std::mem::take(&mut self.buckets).into_iter().collect();
            self.last_usage_write = now;
        }
        w
    }

    /// Rows a failed commit did not write go back, to be tried with the next one (the
    /// scheduler stops after a failed commit, so this only keeps things tidy).
    pub(crate) fn untake(&mut self, w: HistoryWrite) {
        self.pending.attempts.extend(w.attempts);
        self.pending.events.extend(w.events);
        for (k, v) in w.usage {
            let b = self.buckets.entry(k).or_default();
            b.offered_core_ms += v.offered_core_ms;
            b.used_core_ms += v.used_core_ms;
        }
    }
}

/// An attempt as the CLI shows it.
pub(crate) fn attempt_view(r: &AttemptRecord) -> AttemptView {
    let (state, requeue_reason) = match &r.outcome {
        AttemptOutcome::Final(s) => (s.to_string(), None),
        AttemptOutcome::Requeued(why) => ("requeued".to_string(), Some(why.clone())),
    };
    AttemptView {
        job: r.job,
        attempt: r.attempt,
        user: r.user.clone(),
        name: r.name.clone(),
        state,
        requeue_reason,
        exit: r.exit,
        nodes: r
            .nodes
            .iter()
            .map(|p| HostSlots {
                host: p.host.clone(),
                slots: p.ranks,
            })
            .collect(),
        cores: r.nodes.iter().map(|p| p.cores).collect(),
        submitted_ms: r.submitted_ms,
        started_ms: r.started_ms,
        ended_ms: r.ended_ms,
        running_ms: r.running_ms,
        suspended_ms: r.suspended_ms,
        core_ms: r.core_ms(),
        requeues: r.requeues,
        requeue_reasons: r.requeue_reasons.clone(),
    }
}

/// Check a `--state` filter: a state name or `requeued`.
pub(crate) fn check_state(s: &str) -> Result<(), String> {
    if s == "requeued" {
        return Ok(());
    }
    s.parse::<JobState>()
        .map(|_| ())
        .map_err(|e| format!("{e}, requeued"))
}

/// The attempts a query selects, from rows read since its `since`.
pub(crate) fn select(
    read: &HistoryRead,
    q: &HistoryQuery,
    only_user: Option<&str>,
) -> Vec<AttemptView> {
    read.attempts
        .iter()
        .map(attempt_view)
        .filter(|a| only_user.is_none_or(|u| a.user == u))
        .filter(|a| q.user.as_deref().is_none_or(|u| a.user == u))
        .filter(|a| q.state.as_deref().is_none_or(|s| a.state == s))
        .collect()
}

/// The harvest report's data from rows read since `since_ms`.
pub(crate) fn harvest(
    read: &HistoryRead,
    since_ms: u64,
    now_ms: u64,
    only_user: Option<&str>,
    known_nodes: Vec<String>,
) -> HarvestData {
    let mut nodes: BTreeMap<String, NodeHarvest> = known_nodes
        .into_iter()
        .map(|n| {
            (
                n.clone(),
                NodeHarvest {
                    node: n,
                    ..NodeHarvest::default()
                },
            )
        })
        .collect();
    for e in &read.events {
        let (n, what) = match e {
            OwnerEventRow::Suspend { node, .. } => (node, None),
            OwnerEventRow::Vacate { node, .. } => (node, Some(None)),
            OwnerEventRow::Release {
                node, latency_us, ..
            } => (node, Some(Some(*latency_us))),
        };
        let h = node_mut(&mut nodes, n);
        match what {
            None => h.suspensions += 1,
            Some(None) => h.vacates += 1,
            Some(Some(us)) => h.release_us.push(us),
        }
    }
    for ((n, hour), u) in &read.usage {
        node_mut(&mut nodes, n)
            .hours
            .push((*hour, u.offered_core_ms, u.used_core_ms));
    }
    for h in nodes.values_mut() {
        if h.release_us.len() > MAX_RELEASES {
            let cut = h.release_us.len() - MAX_RELEASES;
            h.release_us.drain(..cut);
        }
    }
    let attempts = select(read, &HistoryQuery::default(), only_user);
    for a in &attempts {
        for s in &a.nodes {
            node_mut(&mut nodes, &s.host);
        }
    }
    HarvestData {
        since_ms,
        now_ms,
        attempts,
        nodes: nodes.into_values().collect(),
    }
}

/// The node's entry, made if new.
fn node_mut<'a>(nodes: &'a mut BTreeMap<String, NodeHarvest>, n: &str) -> &'a mut NodeHarvest {
    nodes.entry(n.to_string()).or_insert_with(|| NodeHarvest {
        node: n.to_string(),
        ..NodeHarvest::default()
    })
}
