//! `graze top` watchers: after a snapshot, a `JobChanged` per core `Output::JobChanged` and a
//! `NodeChanged` for each node an input touched when its availability, connection, cores or
//! jobs change, at once. Load-only changes wait for the tick (every 250 ms), which sends
//! those at least a second after the node's last delta as one `NodeLoads` frame (a frame
//! per node and second was most of a large cluster's feed: 2,000 agents, 2,000 frames a
//! second), and refreshes queued jobs' waiting reasons after node changes.

use crate::core::Core;
use graze_proto::{self as proto, ClientReply, JobId};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use tokio::sync::mpsc;

/// Least time between two load-only deltas of one node to watchers.
const NODE_DELTA_MS: u64 = 1000;
/// Least time between two refreshes of queued jobs' waiting reasons to watchers.
const QUEUE_REFRESH_MS: u64 = 1000;
/// Queued jobs (in run order) whose waiting reason is refreshed when the nodes change.
const QUEUE_REFRESH_MAX: usize = 1000;
/// Most nodes and most jobs in the first snapshot frame; the rest follow as deltas, so no
/// frame comes near `MAX_FRAME` (4 MiB) on a large cluster (a snapshot of 100,000 jobs is
/// about 60 MB).
const SNAPSHOT_CHUNK: usize = 500;
/// Most nodes in one `NodeLoads` frame (each about 150 bytes).
const LOADS_CHUNK: usize = 2000;
/// How often pending watch deltas are looked at.
pub(crate) const WATCH_TICK: Duration = Duration::from_millis(250);

/// What a node delta last told watchers: the fields sent at once when they change (all but
/// the load: [`proto::NodeLoad`]).
struct NodeSig {
    online: bool,
    drained: bool,
    status: Option<StatusSig>,
    used: u32,
    jobs: Vec<JobId>,
}

/// A status's fields other than the load.
struct StatusSig {
    availability: proto::Availability,
    idle_sources: Vec<String>,
    unavailable_sources: Vec<String>,
    window_ends_ms: Option<u64>,
}

impl NodeSig {
    fn of(v: &proto::NodeView) -> NodeSig {
        NodeSig::of_state(&crate::core::NodeState {
            online: v.online,
            drained: v.drained,
            status: v.status.as_ref(),
            used_cores: v.used_cores,
            jobs: v.jobs.clone(),
        })
    }

    /// Whether `v` tells what this did (compared in place: a status a second per node).
    fn same(&self, v: &crate::core::NodeState<'_>) -> bool {
        self.online == v.online
            && self.drained == v.drained
            && self.used == v.used_cores
            && self.jobs == v.jobs
            && match (&self.status, v.status) {
                (None, None) => true,
                (Some(a), Some(b)) => {
                    a.availability == b.availability
                        && a.idle_sources == b.idle_sources
                        && a.unavailable_sources == b.unavailable_sources
                        && a.window_ends_ms == b.window_ends_ms
                }
                _ => false,
            }
    }

    fn of_state(v: &crate::core::NodeState<'_>) -> NodeSig {
        NodeSig {
            online: v.online,
            drained: v.drained,
            status: v.status.map(|s| StatusSig {
                availability: s.availability.clone(),
                idle_sources: s.idle_sources.clone(),
                unavailable_sources: s.unavailable_sources.clone(),
                window_ends_ms: s.window_ends_ms,
            }),
            used: v.used_cores,
            jobs: v.jobs.clone(),
        }
    }
}

/// `graze top` watchers and what they were last told.
#[derive(Default)]
pub(crate) struct Watch {
    watchers: Vec<mpsc::UnboundedSender<ClientReply>>,
    /// Per node: the last delta's significant fields and when it was sent.
    sent: HashMap<String, (NodeSig, u64)>,
    /// Nodes with a load-only change not yet sent.
    pending: BTreeSet<String>,
    /// Nodes touched by the input being handled.
    touched: BTreeSet<String>,
    /// Queued jobs' waiting reasons may have changed since this time.
    queue_dirty: bool,
    queue_sent_ms: u64,
}

impl Watch {
    /// Whether anyone watches (else nothing needs tracking).
    pub(crate) fn is_watched(&self) -> bool {
        !self.watchers.is_empty()
    }

    /// Send `reply` to every watcher, forgetting those gone.
    pub(crate) fn send(&mut self, reply: &ClientReply) {
        self.watchers.retain(|w| w.send(reply.clone()).is_ok());
    }

    /// Nodes an input or a job change touched: their deltas go out after the batch.
    pub(crate) fn touch(&mut self, nodes: impl IntoIterator<Item = String>) {
        self.touched.extend(nodes);
    }

    /// A new watcher: send it the snapshot (its first [`SNAPSHOT_CHUNK`] nodes and jobs, the
    /// rest as deltas) and remember what every node looked like.
    pub(crate) fn add(&mut self, core: &Core, tx: mpsc::UnboundedSender<ClientReply>, now: u64) {
        let mut nodes = core.node_views();
        let mut jobs = core.job_views(true);
        for n in &nodes {
            let sig = NodeSig::of(n);
            self.sent.insert(n.info.name.clone(), (sig, now));
        }
        let more_nodes = nodes.split_off(nodes.len().min(SNAPSHOT_CHUNK));
        let more_jobs = jobs.split_off(jobs.len().min(SNAPSHOT_CHUNK));
        let rest = more_nodes
            .into_iter()
            .map(|n| ClientReply::NodeChanged(Box::new(n)))
            .chain(
                more_jobs
                    .into_iter()
                    .map(|j| ClientReply::JobChanged(Box::new(j))),
            );
        let sent = std::iter::once(ClientReply::Snapshot { nodes, jobs })
            .chain(rest)
            .all(|r| tx.send(r).is_ok());
        if sent {
            self.watchers.push(tx);
        }
    }

    /// Send deltas of the nodes touched by the last input when a significant field changed;
    /// a load-only change waits for [`Watch::tick`].
    pub(crate) fn push_nodes(&mut self, core: &Core, now: u64) {
        if self.watchers.is_empty() {
            self.touched.clear();
            return;
        }
        for name in std::mem::take(&mut self.touched) {
            let Some(state) = core.node_state(&name) else {
                continue;
            };
            let significant = self
                .sent
                .get(&name)
                .is_none_or(|(old, _)| !old.same(&state));
            if !significant {
                self.pending.insert(name);
                continue;
            }
            let sig = NodeSig::of_state(&state);
            let Some(view) = core.node_view(&name) else {
                continue;
            };
            self.queue_dirty = true;
            self.pending.remove(&name);
            self.sent.insert(name, (sig, now));
            self.send(&ClientReply::NodeChanged(Box::new(view)));
        }
    }

    /// Send the load-only node deltas that are due (in [`LOADS_CHUNK`]s), and refresh queued
    /// jobs' waiting reasons.
    pub(crate) fn tick(&mut self, core: &Core, now: u64) {
        if self.watchers.is_empty() {
            self.pending.clear();
            return;
        }
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|n| {
                self.sent
                    .get(*n)
                    .is_none_or(|(_, at)| now.saturating_sub(*at) >= NODE_DELTA_MS)
            })
            .cloned()
            .collect();
        let mut loads = Vec::new();
        for name in due {
            self.pending.remove(&name);
            let Some(state) = core.node_state(&name) else {
                continue;
            };
            match self.sent.get_mut(&name) {
                Some((old, at)) if old.same(&state) => {
                    *at = now;
                    if let Some(status) = state.status {
                        loads.push(proto::NodeLoad::of(name, status));
                    }
                }
                _ => {
                    let sig = NodeSig::of_state(&state);
                    if let Some(view) = core.node_view(&name) {
                        self.sent.insert(name, (sig, now));
                        self.send(&ClientReply::NodeChanged(Box::new(view)));
                    }
                }
            }
        }
        while !loads.is_empty() {
            let rest = loads.split_off(loads.len().min(LOADS_CHUNK));
            self.send(&ClientReply::NodeLoads(std::mem::replace(&mut loads, rest)));
        }
        if self.queue_dirty && now.saturating_sub(self.queue_sent_ms) >= QUEUE_REFRESH_MS {
            self.queue_dirty = false;
            self.queue_sent_ms = now;
            for v in core.job_views_of(core.queued_first(QUEUE_REFRESH_MAX)) {
                self.send(&ClientReply::JobChanged(Box::new(v)));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::core::fixtures::{node_info, node_status};
    use crate::core::{ConnId, CoreConfig};
    use proto::Availability;

    fn status(load: f32, availability: Availability) -> proto::NodeStatus {
        proto::NodeStatus {
            core_load: vec![load],
            ..node_status(availability, 60_000)
        }
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<ClientReply>) -> Vec<ClientReply> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn load_only_changes_go_out_batched_once_a_second_and_others_at_once() {
        let mut core = Core::new(CoreConfig::default());
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            core.node_connected(i as ConnId, node_info(n, 1), 0)
                .unwrap();
            core.node_status(i as ConnId, status(1.0, Availability::Offered), 0);
        }
        let mut w = Watch::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        w.add(&core, tx, 0);
        assert!(
            matches!(&drain(&mut rx)[..], [ClientReply::Snapshot { nodes, .. }] if nodes.len() == 3)
        );

        // Load-only changes of a and b: nothing at once, nor at a tick before a second.
        for (i, load) in [(0, 50.0), (1, 60.0)] {
            core.node_status(i, status(load, Availability::Offered), 100);
        }
        w.touch(["a".to_string(), "b".to_string()]);
        w.push_nodes(&core, 100);
        w.tick(&core, 500);
        assert!(drain(&mut rx).is_empty());
        // A significant change (c's owner is back) goes out at once, as a whole view.
        core.node_status(2, status(1.0, Availability::OwnerActive), 600);
        w.touch(["c".to_string()]);
        w.push_nodes(&core, 600);
        let out = drain(&mut rx);
        assert!(
            matches!(&out[..], [ClientReply::NodeChanged(v)] if v.info.name == "c"),
            "{out:?}"
        );
        // A second after the snapshot, one frame carries both load changes.
        w.tick(&core, 1000);
        let out = drain(&mut rx);
        let [ClientReply::NodeLoads(loads)] = &out[..] else {
            panic!("{out:?}")
        };
        let got: Vec<(&str, f32)> = loads
            .iter()
            .map(|l| (l.node.as_str(), l.core_load[0]))
            .collect();
        assert_eq!(got, [("a", 50.0), ("b", 60.0)]);
        // Nothing is pending any more.
        w.tick(&core, 3000);
        assert!(drain(&mut rx).is_empty());
    }
}
