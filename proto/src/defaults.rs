//! Default values more than one program uses, each written once.

use std::time::Duration;

/// The scheduler's default `node_timeout` in ms: an agent silent this long is lost, and an
/// agent keeps its jobs this long while it reconnects.
pub const DEFAULT_NODE_TIMEOUT_MS: u64 = 10_000;

/// [`DEFAULT_NODE_TIMEOUT_MS`] as a duration; the agent's default `node_timeout` too.
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_millis(DEFAULT_NODE_TIMEOUT_MS);

/// The shortest `node_timeout` either daemon accepts. The agent fences itself (kills its job
/// processes) after `node_timeout - 1 s` of silence from the scheduler at this limit (see
/// ARCHITECTURE.md, "Losing a node"), and an agent of a longer timeout of its own keeps
/// quiet for up to a second between statuses (its keep-alive is then longer than the
/// status period): at 2 s that second would fence a healthy link.
pub const MIN_NODE_TIMEOUT: Duration = Duration::from_secs(3);
