//! The sans-IO scheduler core: node table, job queue, allocator.
//!
//! Inputs arrive as method calls carrying `now` (ms since the Unix epoch); effects leave as
//! [`Output`]s collected with [`Core::poll_output`]. No clock, no socket, no file in here.
//!
//! # Methods, sorted
//!
//! The core's methods fall into three groups, like quinn-proto's `Connection`:
//!
//! - **Inputs**, each taking `now`. From agents: [`Core::node_connected`],
//!   [`Core::node_status`], [`Core::node_lost`], [`Core::job_exited`],
//!   [`Core::job_failed_to_start`], [`Core::job_cleared`], [`Core::job_note`]; from the driver
//!   (checkpoint store) [`Core::job_event`]; launches from the shim (they need no
//!   clock): [`Core::launch`], [`Core::launch_abandoned`], [`Core::remote_exited`]. From clients:
//!   [`Core::submit`], [`Core::cancel`], [`Core::requeue_job`], [`Core::release`], [`Core::hold`],
//!   [`Core::set_drained`]. From the timer:
//!   [`Core::handle_timeout`]. After a restart, once: [`Core::restore`].
//! - **Outputs**, polled after every batch of inputs: [`Core::poll_output`] (messages to send,
//!   connections to close, jobs and nodes to persist and announce) and [`Core::poll_timeout`]
//!   (when to call [`Core::handle_timeout`] next).
//! - **Views**, read-only: [`Core::job_view`], [`Core::job_views`], [`Core::node_view`],
//!   [`Core::node_views`], [`Core::queued`], [`Core::job_state`], [`Core::job_owner`],
//!   [`Core::job_nodes`], [`Core::node_name`] (the one lookup from a connection to its node),
//!   [`Core::conn_in_job`], [`Core::job_epoch`]; for persistence [`Core::job_record`], [`Core::node_info`],
//!   [`Core::node_drained`]; for tests [`Core::check_invariants`].
//!
//! # Modules
//!
//! `state` holds the data ([`Core`], [`CoreConfig`], [`Output`]); `node` and `job` the table
//! rows ([`RunState`], [`Placement`]); `secret` the shim [`Secret`]. The methods live by topic:
//! `connect` (node-table inputs), `queue` (submit, cancel, requeue, the scheduling pass),
//! `gate` (why a queued job may not start now, whatever the cores), `place` (the allocator
//! and waiting reasons, `--exclusive`, availability windows against time limits),
//! `backfill` (EASY backfill: the head job's reservation and who may start ahead of it),
//! `reclaim` (gang suspend, resume, vacate), `checkpoint` (the checkpoint protocol's
//! environment and messages, periodic checkpoints, `graze requeue`), `exit` (run ends, kills, final states), `note`
//! (agents' notes on a run), `launch` (launch checks), `limits` (`--time`, `--signal`,
//! `--begin`, hold and release), `timeout` (deadlines),
//! `restore` ([`JobRecord`] and rebuilding), `view` and `invariants`.
//!
//! Invariant: a core is never promised to two jobs: `Node::held` sums to at most `Node::cores`.
//! Invariant: a job has at most one allocation alive: a requeued job is not placed again until
//! every node of its previous run has confirmed its processes are gone (or is lost).
//! Invariant: after every input, no queued job that fits the offered cores stays queued,
//! except a job queued after the reservation whose start could delay it (EASY backfill); and a
//! backfilled job never moves the reservation later.
//! Invariant: an `--exclusive` run holds every core of its nodes, and nothing runs beside it.
//! Invariant: a running job has no node whose owner reclaimed it (the job is suspended at
//! once), and a suspended job has at least one such node (it is resumed at once otherwise).
//!
//! Owner reclaim (gang suspend): when a node of a running job stops running jobs
//! ([`graze_proto::Availability::runs_jobs`]), the job is suspended on every node of its
//! allocation and resumed on all of them together once every node runs jobs again. A job
//! suspended longer than a busy node's `vacate_after` (at once when the node's availability
//! window ended) is vacated on every node and requeued at the front of its priority, avoiding
//! the busy nodes until they offer cores again; one suspended for
//! `requeue_when_suspended_after` is vacated early when it could be placed elsewhere right
//! now. Deadlines are reported by [`Core::poll_timeout`] and acted on by
//! [`Core::handle_timeout`].

mod array;
mod backfill;
mod checkpoint;
mod connect;
mod deps;
mod exit;
#[cfg(test)]
pub(crate) mod fixtures;
mod gate;
mod history;
mod invariants;
mod job;
mod launch;
mod limits;
mod node;
mod note;
mod place;
mod queue;
mod reclaim;
mod restore;
mod secret;
mod state;
mod timeout;
mod trace;
mod view;

pub use array::Target;
pub use history::{AttemptOutcome, AttemptRecord, OwnerEventKind};
pub use job::{Placement, RunState};
pub use node::ConnId;
pub use restore::JobRecord;
pub use secret::Secret;
pub use state::{
    Core, CoreConfig, Output, DEFAULT_CHECKPOINT_NODE_DIR, DEFAULT_FENCE_MARGIN_MS,
    DEFAULT_REQUEUE_WHEN_SUSPENDED_AFTER_MS,
};
pub use view::NodeState;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod history_tests;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod backfill_tests;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod outfiles_tests;
