//! `graze top` watchers: after a snapshot, a `JobChanged` per core `Output::JobChanged` and a
//! `NodeChanged` for each node an input touched: at once when its availability, connection,
//! cores or jobs change, load-only changes at most once a second; a tick sends the postponed
//! ones and refreshes queued jobs' waiting reasons after node changes.

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
/// How often pending watch deltas are looked at.
pub(crate) const WATCH_TICK: Duration = Duration::from_millis(250);

/// What a node delta last told watchers: the fields sent at once when they change.
#[derive(PartialEq)]
struct NodeSig {
    online: bool,
    availability: Option<proto::Availability>,
    used: u32,
    jobs: Vec<JobId>,
}

impl NodeSig {
    fn of(v: &proto::NodeView) -> NodeSig {
        NodeSig {
            online: v.online,
            availability: v.status.as_ref().map(|s| s.availability.clone()),
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

    /// Send deltas of the nodes touched by the last input: at once when a significant field
    /// changed, else at most every [`NODE_DELTA_MS`].
    pub(crate) fn push_nodes(&mut self, core: &Core, now: u64) {
        if self.watchers.is_empty() {
            self.touched.clear();
            return;
        }
        for name in std::mem::take(&mut self.touched) {
            let Some(view) = core.node_view(&name) else {
                continue;
            };
            let sig = NodeSig::of(&view);
            let (significant, due) = match self.sent.get(&name) {
                None => (true, true),
                Some((old, at)) => (*old != sig, now.saturating_sub(*at) >= NODE_DELTA_MS),
            };
            if significant || due {
                if significant {
                    self.queue_dirty = true;
                }
                self.pending.remove(&name);
                self.sent.insert(name, (sig, now));
                self.send(&ClientReply::NodeChanged(Box::new(view)));
            } else {
                self.pending.insert(name);
            }
        }
    }

    /// Send the load-only node deltas that are due, and refresh queued jobs' waiting reasons.
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
        for name in due {
            self.pending.remove(&name);
            if let Some(view) = core.node_view(&name) {
                self.sent.insert(name, (NodeSig::of(&view), now));
                self.send(&ClientReply::NodeChanged(Box::new(view)));
            }
        }
        if self.queue_dirty && now.saturating_sub(self.queue_sent_ms) >= QUEUE_REFRESH_MS {
            self.queue_dirty = false;
            self.queue_sent_ms = now;
            for id in core.queued().into_iter().take(QUEUE_REFRESH_MAX) {
                if let Some(v) = core.job_view(id) {
                    self.send(&ClientReply::JobChanged(Box::new(v)));
                }
            }
        }
    }
}
