//! Default values more than one program uses, each written once.

use std::time::Duration;

/// The scheduler's default `node_timeout` in ms: an agent silent this long is lost, and an
/// agent keeps its jobs this long while it reconnects.
pub const DEFAULT_NODE_TIMEOUT_MS: u64 = 10_000;

/// [`DEFAULT_NODE_TIMEOUT_MS`] as a duration; the agent's default `node_timeout` too.
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_millis(DEFAULT_NODE_TIMEOUT_MS);

/// The shortest `node_timeout` either daemon accepts: below it the agent's fence (a second
/// before the timeout, see ARCHITECTURE.md) would leave no time to kill.
pub const MIN_NODE_TIMEOUT: Duration = Duration::from_secs(2);
