//! The owning task's state ([`Owner`]) and what it is fed ([`Input`]): a leaf shared by the
//! driver's modules, which implement its methods by topic.

use crate::audit::Audit;
use crate::auth::Identity;
use crate::core::{ConnId, Core};
use crate::watch::Watch;
use crate::{db, store};
use graze_proto::{self as proto, AgentMsg, ClientReply, ClientRequest, JobId, SchedulerMsg};
use std::collections::{BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// The wall clock in ms since the Unix epoch: the `now` the core is given.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Everything the owning task reacts to.
pub(crate) enum Input {
    /// An agent passed the hello and registered.
    AgentUp {
        conn: ConnId,
        info: proto::NodeInfo,
        tx: mpsc::UnboundedSender<SchedulerMsg>,
        close: Closer,
    },
    /// A message from a registered agent.
    Agent(ConnId, AgentMsg),
    /// The agent's connection ended.
    AgentDown(ConnId, String),
    /// A client request from an identity, with where to send the replies.
    Client(Identity, ClientRequest, mpsc::UnboundedSender<ClientReply>),
    /// A checkpoint stream task's question (a part arriving).
    Checkpoint(crate::checkpoint::Msg),
    /// A trace upload's question or end.
    Trace(crate::trace::Msg),
}

/// Closes one connection from the owning task.
#[derive(Clone)]
pub(crate) struct Closer(pub(crate) graze_net::quinn::Connection);

impl Closer {
    pub(crate) fn close(&self, reason: &str) {
        self.0.close(1u32.into(), reason.as_bytes());
    }
}

/// A `graze logs --follow` stream.
pub(crate) struct Follower {
    pub(crate) rank: Option<u32>,
    /// Only this attempt's lines (`--attempt N`); `None`: whatever attempt runs.
    pub(crate) attempt: Option<u64>,
    /// The attempt whose lines it was sent last; a line of another is preceded by a
    /// [`ClientReply::LogAttempt`].
    pub(crate) shown: u64,
    pub(crate) tx: mpsc::UnboundedSender<ClientReply>,
}

/// The owning task: it alone holds the core, the output store, the database and every
/// client waiting on the core.
pub(crate) struct Owner {
    pub(crate) core: Core,
    pub(crate) agents: HashMap<ConnId, (mpsc::UnboundedSender<SchedulerMsg>, Closer)>,
    pub(crate) waiters: HashMap<JobId, Vec<mpsc::UnboundedSender<ClientReply>>>,
    pub(crate) followers: HashMap<JobId, Vec<Follower>>,
    pub(crate) watch: Watch,
    pub(crate) store: store::Store,
    /// Shared with the blocking pool, where commits run.
    pub(crate) db: std::sync::Arc<db::Db>,
    /// Replies sent only once the state they acknowledge is committed.
    pub(crate) deferred: Vec<(mpsc::UnboundedSender<ClientReply>, ClientReply)>,
    /// Per node: agent instance and highest job-message sequence number applied.
    pub(crate) seqs: HashMap<String, (String, u64)>,
    pub(crate) seq_dirty: BTreeSet<String>,
    /// Acks to send once committed.
    pub(crate) acks: HashMap<ConnId, u64>,
    pub(crate) audit: Audit,
    /// Attempt records, owner events and usage waiting for the commit.
    pub(crate) history: crate::history::History,
    /// `graze clusrun` runs in flight.
    pub(crate) clusruns: crate::clusrun::Clusruns,
    /// Stored checkpoints and those being received.
    pub(crate) checkpoints: crate::checkpoint::Checkpoints,
    /// Stored traces (`STATE/traces`) and their limit.
    pub(crate) traces: crate::trace::Traces,
}
