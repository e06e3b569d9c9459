//! graze wire protocol: the messages agents, the CLI and the scheduler exchange, and their framing.
//!
//! Every connection starts with a [`Hello`] from the connecting side, answered by a
//! [`HelloReply`]. After that an agent sends [`AgentMsg`] and receives [`SchedulerMsg`]; a client
//! sends one [`ClientRequest`] per stream and receives one or more [`ClientReply`].
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of JSON. Frames larger than
//! [`MAX_FRAME`] are refused before any allocation.

#![warn(missing_docs)]

mod agent;
mod batch;
mod checkpoint;
mod client;
mod clusrun;
mod defaults;
mod frame;
mod hello;
mod history;
mod ids;
mod limits;
mod node;
mod pattern;
mod scheduler;
mod text;
mod trace;
mod values;

pub use agent::{AgentMsg, JobMsg};
pub use batch::{
    index_words, ArraySpec, ArrayTask, DepKind, Dependency, JobRef, TimeSignal, MAX_ARRAY_TASKS,
};
pub use checkpoint::{
    done_marker, ranks_by_host, CheckpointId, CheckpointSpec, CheckpointStream, CheckpointView,
    RestoreRef, StreamEnd, StreamReply, DEFAULT_CHECKPOINT_GRACE_MS, DEFAULT_CHECKPOINT_SIGNAL,
    EXIT_CHECKPOINTED, MAX_BLOCK, MAX_CHECKPOINT_GRACE_MS, MIN_CHECKPOINT_EVERY_MS,
};
pub use client::{
    ArrayView, ClientReply, ClientRequest, JobEvent, JobSpec, JobState, JobView, LogAttempt,
    NodeLoad, NodeView,
};
pub use clusrun::{
    ClusrunId, ClusrunLine, ClusrunOutcome, ClusrunResult, ClusrunSpec, NodeSelect,
    CLUSRUN_MAX_BYTES, CLUSRUN_MAX_LINES, CLUSRUN_MAX_TIMEOUT_MS,
};
pub use defaults::{DEFAULT_NODE_TIMEOUT, DEFAULT_NODE_TIMEOUT_MS, MIN_NODE_TIMEOUT};
pub use frame::{decode, encode, frame_len, FrameDecoder, FrameError, MAX_FRAME};
pub use hello::{check_version, Hello, HelloReply, Role, PROTOCOL_VERSION};
pub use history::{AttemptView, HarvestData, HistoryQuery, NodeHarvest};
pub use ids::{JobId, LaunchId, RemoteId};
pub use limits::{exact_duration, signal_name, signal_number, BEGIN_WAIT, HELD_WAIT, MAX_SIGNAL};
pub use node::{Availability, HeldJob, MpiFlavour, NodeInfo, NodeStatus, OwnerPolicy};
pub use pattern::{attempt_aside, Pattern, PatternError, PatternValues, MAX_PATTERN};
pub use scheduler::SchedulerMsg;
pub use text::{clip, clip_line, human_duration, MAX_LINE};
pub use trace::{
    trace_file_name_ok, ClockPing, ClockPong, TraceFileHead, TraceRun, CLOCK_FILE,
    DEFAULT_MAX_TRACE_BYTES, MAX_TRACE_NAME, TRACE_CHUNK,
};
pub use values::{ExitStatus, HostSlots, LaunchOutcome, LogLine, Stream, Unit};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
