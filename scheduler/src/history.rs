//! The driver's side of job history and the harvest report: the core's attempt records and
//! owner events, the agents' release latencies and the per-node usage integral are collected
//! here and written in the same commit as the job changes (`commit.rs`); `graze history` and
//! `graze report` read them back from the database; old rows are pruned at start and at most
//! once an hour, when a commit happens (no timer of its own).
//!
//! Usage: at a commit, at most once a second ([`USAGE_SAMPLE_MS`]), each node's offered cores
//! (all its cores while it offers them, else 0) and used cores (held by jobs) since the
//! previous sample are added to its bucket of the hour, split at hour boundaries: a change is
//! counted from the first sample after it, at most a second late. Time while the scheduler is
//! down counts as neither. Buckets are written with the next commit while there are at most
//! [`USAGE_WRITE_NOW_MAX`] of them (clusters of up to a few hundred PCs: a crash loses no
//! usage); with more, with the first commit a minute after the last write, so a crash loses at
//! most a minute of usage (never an attempt or an owner event).
//! Neither depends on how many commits there are: with 10,000 nodes, sampling and writing
//! every node at every commit (each job start, end and status batch) cost more than the rest
//! of the scheduler.

use crate::core::{AttemptOutcome, AttemptRecord, Core};
use crate::db::history::{HistoryRead, HistoryWrite, OwnerEventRow, UsageRow, HOUR_MS};
use graze_proto::{AttemptView, HarvestData, HistoryQuery, HostSlots, JobState, NodeHarvest};
use std::collections::{BTreeMap, HashMap};

/// How often usage buckets are written (ms).
const USAGE_FLUSH_MS: u64 = 60_000;
/// Up to this many usage buckets are written with every commit (a sample at most once a
/// second); more wait for [`USAGE_FLUSH_MS`].
const USAGE_WRITE_NOW_MAX: usize = 256;
/// Least time between two usage samples (ms).
const USAGE_SAMPLE_MS: u64 = 1000;
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
    /// The time of the last sample.
    last_sample: Option<u64>,
    /// Buckets are written at once while there are at most this many.
    write_now_max: usize,
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
            last_sample: None,
            write_now_max: USAGE_WRITE_NOW_MAX,
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
    /// At most once per [`USAGE_SAMPLE_MS`].
    pub(crate) fn sample(&mut self, core: &Core, now: u64) {
        if self
            .last_sample
            .is_some_and(|t| now.saturating_sub(t) < USAGE_SAMPLE_MS)
        {
            return;
        }
        self.last_sample = Some(now);
        for (name, off, used) in core.node_usage() {
            let (off, used) = (u64::from(off), u64::from(used));
            let prev = match self.samples.get_mut(name) {
                Some(s) => Some(std::mem::replace(s, (now, off, used))),
                None => {
                    self.samples.insert(name.to_string(), (now, off, used));
                    None
                }
            };
            if let Some((t0, off0, used0)) = prev {
                let mut t = t0;
                while t < now {
                    let hour = t - t % HOUR_MS;
                    let end = now.min(hour + HOUR_MS);
                    let dt = end - t;
                    if off0 > 0 || used0 > 0 {
                        let b = self.buckets.entry((name.to_string(), hour)).or_default();
                        b.offered_core_ms = b.offered_core_ms.saturating_add(off0 * dt);
                        b.used_core_ms = b.used_core_ms.saturating_add(used0 * dt);
                    }
                    t = end;
                }
            }
        }
    }

    /// What this commit writes: pending rows, and the usage buckets when there are few of
    /// them or a minute passed since they were last written.
    pub(crate) fn take(&mut self, now: u64) -> HistoryWrite {
        let mut w = std::mem::take(&mut self.pending);
        let due = self.buckets.len() <= self.write_now_max
            || now.saturating_sub(self.last_usage_write) >= USAGE_FLUSH_MS;
        if due && !self.buckets.is_empty() {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::core::CoreConfig;
    use graze_proto::Availability;

    fn node(c: &mut Core, conn: u64, name: &str, cores: u32, a: Availability, now: u64) {
        let info = crate::core::fixtures::node_info(name, cores);
        c.node_connected(conn, info, now).unwrap();
        status(c, conn, a, now);
    }

    fn status(c: &mut Core, conn: u64, a: Availability, now: u64) {
        c.node_status(conn, crate::core::fixtures::node_status(a, 0), now);
    }

    /// Offered and used core-ms land in the right hour, split at the boundary; time before
    /// the first sample counts as nothing; buckets wait for a commit or a minute.
    #[test]
    fn usage_is_integrated_per_hour() {
        let h0 = 10 * HOUR_MS;
        let mut c = Core::new(CoreConfig::default());
        node(&mut c, 1, "a", 4, Availability::Offered, h0);
        node(&mut c, 2, "b", 2, Availability::OwnerActive, h0);
        let mut h = History::new(30, h0 + HOUR_MS - 1000);
        // As in a large cluster: buckets wait for the minute.
        h.write_now_max = 0;
        // A 2-core job on a from 1 s before the hour's end; the commit after it samples.
        c.submit(
            graze_proto::JobSpec {
                nprocs: 2,
                command: vec!["x".into()],
                user: "u".into(),
                ..Default::default()
            },
            "s".into(),
            h0 + HOUR_MS - 1000,
        )
        .unwrap();
        h.sample(&c, h0 + HOUR_MS - 1000);
        h.sample(&c, h0 + HOUR_MS + 3000);
        assert!(h.take(h0 + HOUR_MS + 3000).usage.is_empty(), "not yet due");
        // Samples closer than a second to the last are skipped.
        h.sample(&c, h0 + HOUR_MS + 3500);
        let w = h.take(h0 + HOUR_MS + 59_000);
        let got: BTreeMap<_, _> = w.usage.into_iter().collect();
        let a0 = got[&("a".to_string(), h0)];
        let a1 = got[&("a".to_string(), h0 + HOUR_MS)];
        assert_eq!((a0.offered_core_ms, a0.used_core_ms), (4 * 1000, 2 * 1000));
        assert_eq!((a1.offered_core_ms, a1.used_core_ms), (4 * 3000, 2 * 3000));
        assert!(
            !got.keys().any(|(n, _)| n == "b"),
            "b offered nothing: {got:?}"
        );
        // A minute later with nothing else to write, the buckets go anyway.
        status(&mut c, 1, Availability::OwnerActive, h0 + HOUR_MS + 63_000);
        h.sample(&c, h0 + HOUR_MS + 63_000);
        let w = h.take(h0 + HOUR_MS + 63_000 + 60_000);
        assert_eq!(w.usage.len(), 1);
        assert_eq!(w.usage[0].1.offered_core_ms, 4 * 60_000);
    }

    #[test]
    fn a_small_cluster_writes_its_usage_with_the_next_commit() {
        let h0 = 10 * HOUR_MS;
        let mut c = Core::new(CoreConfig::default());
        node(&mut c, 1, "a", 4, Availability::Offered, h0);
        let mut h = History::new(30, h0);
        h.sample(&c, h0);
        h.sample(&c, h0 + 2000);
        // Seconds after the start, not a minute: a crash now loses nothing.
        let w = h.take(h0 + 2000);
        assert_eq!(w.usage.len(), 1);
        assert_eq!(w.usage[0].1.offered_core_ms, 4 * 2000);
        assert!(h.take(h0 + 2001).usage.is_empty(), "written once");
    }

    #[test]
    fn prune_runs_at_start_then_at_most_hourly() {
        let mut h = History::new(2, 0);
        let t = 100 * HOUR_MS;
        assert_eq!(h.prune_due(t), Some(t - 48 * HOUR_MS));
        assert_eq!(h.prune_due(t + HOUR_MS - 1), None);
        assert_eq!(h.prune_due(t + HOUR_MS), Some(t - 47 * HOUR_MS));
    }

    #[test]
    fn bad_state_filter_is_refused_with_the_names() {
        let e = check_state("bogus").unwrap_err();
        assert!(
            e.starts_with("unknown state 'bogus': one of queued, "),
            "{e}"
        );
        assert!(e.ends_with(", requeued"), "{e}");
        check_state("dependency-failed").unwrap();
        check_state("requeued").unwrap();
    }
}
