//! graze's MPI traces (issue 16): the per-rank files the PMPI tracer writes
//! (`docs/TRACE_FORMAT.md`, parsed in [`format`](mod@format)), clock alignment across nodes and the merged
//! [`Trace`] that `graze trace` writes out and `graze top` draws.
//!
//! Everything here is pure, bytes in and values out, except [`otf2::write`], which writes the
//! archive directory it is given. [`format`](mod@format): the per-rank file (parser and writer);
//! [`clock`]: a node's offset model; [`merge()`]: all nodes' files onto the scheduler's clock;
//! [`chrome`], [`otf2`], [`summary`]: the outputs of `graze trace`; [`op_name`] and
//! [`op_class`] for display.

pub mod chrome;
pub mod clock;
pub mod format;
mod merge;
mod ops;
pub mod otf2;
pub mod summary;

use serde::{Deserialize, Serialize};

pub use merge::{merge, MergeError};
pub use ops::{op_class, op_name, OpClass};

/// One clock-sync exchange between an agent and the scheduler (NTP-style), as the agent kept it.
/// `offset_ns` is scheduler clock minus node clock at `local_ns` (the midpoint of the exchange on
/// the node's `CLOCK_MONOTONIC`); the true offset lies within `offset_ns ± rtt_ns / 2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockSample {
    pub local_ns: u64,
    pub offset_ns: i64,
    pub rtt_ns: u64,
}

/// What one node sent for a traced run: its rank files and its clock samples.
#[derive(Debug, Clone, Default)]
pub struct NodeInput {
    pub node: String,
    /// (file name, contents) for each file of the node's trace directory.
    pub files: Vec<(String, Vec<u8>)>,
    pub clock: Vec<ClockSample>,
}

/// An MPI call of the format's op table (`docs/TRACE_FORMAT.md`); unknown ops are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Op(pub u8);

/// What a span is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum What {
    Mpi(Op),
    Region(String),
}

/// One span of one rank, on the merged (scheduler's) clock, in ns since [`Trace::start_ns`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub begin_ns: u64,
    pub end_ns: u64,
    pub what: What,
    pub peer: Option<i32>,
    pub tag: Option<i32>,
    pub comm_size: Option<u32>,
    pub bytes: Option<u64>,
}

impl Span {
    /// A span with no peer, tag, communicator size or byte count.
    pub fn new(begin_ns: u64, end_ns: u64, what: What) -> Span {
        Span {
            begin_ns,
            end_ns,
            what,
            peer: None,
            tag: None,
            comm_size: None,
            bytes: None,
        }
    }
}

/// One rank's track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankTrack {
    pub rank: i32,
    pub node: String,
    pub pid: u32,
    /// Sorted by `begin_ns`.
    pub spans: Vec<Span>,
    /// Events the tracer dropped past the size limit.
    pub dropped: u64,
    /// The file was cut in the middle of a record (the rank died while writing).
    pub truncated: bool,
}

/// A node's clock correction as used for the merge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeClock {
    pub node: String,
    pub samples: Vec<ClockSample>,
    /// The largest error bound (RTT/2) of the samples used, in ns.
    pub error_ns: u64,
}

/// A merged trace: every rank of a run, on one clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The scheduler clock's time (ns) that the spans' 0 stands for: the earliest begin.
    pub start_ns: u64,
    /// Sorted by rank.
    pub ranks: Vec<RankTrack>,
    pub nodes: Vec<NodeClock>,
    /// What the merge noticed but did not refuse: a node without clock samples (its times
    /// are uncorrected), files that are not rank traces, a process that never initialised
    /// MPI, tracer notes (`note-PID.txt`).
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl Trace {
    /// The latest end of any span, in ns since `start_ns` (0 when there are no spans).
    pub fn end_ns(&self) -> u64 {
        self.ranks
            .iter()
            .flat_map(|r| r.spans.iter().map(|s| s.end_ns))
            .max()
            .unwrap_or(0)
    }

    /// The clock used for `node`.
    pub fn node_clock(&self, node: &str) -> Option<&NodeClock> {
        self.nodes.iter().find(|n| n.node == node)
    }
}
