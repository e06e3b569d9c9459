//! Tracing (`graze submit --trace`, issue 16): what a traced run asks of a node, the clock-sync
//! probes, the upload of a node's trace files and `graze trace`'s replies.
//!
//! Streams: an agent opens extra bidirectional streams on its connection, each starting with
//! one [`crate::CheckpointStream`] frame. [`crate::CheckpointStream::Clock`] is a clock-sync
//! stream: the agent sends [`ClockPing`] frames and the scheduler answers each at once, on the
//! stream's own task, with a [`ClockPong`] carrying its `CLOCK_MONOTONIC`.
//! [`crate::CheckpointStream::Trace`] uploads a node's trace directory: the files' bytes follow
//! as data blocks in the header's order, then a [`crate::StreamEnd`], answered by a
//! [`crate::StreamReply`].

use serde::{Deserialize, Serialize};

/// The name of the node's clock samples among its trace files (JSON, a list of
/// `{local_ns, offset_ns, rtt_ns}`).
pub const CLOCK_FILE: &str = "clock.json";

/// The longest name of a trace file.
pub const MAX_TRACE_NAME: usize = 64;

/// The default `max_trace_bytes` of a job (all nodes, all ranks).
pub const DEFAULT_MAX_TRACE_BYTES: u64 = 256 << 20;

/// The bytes of one chunk of a file in [`crate::ClientReply::TraceFile`] (hex doubles them;
/// far below [`crate::MAX_FRAME`]).
pub const TRACE_CHUNK: usize = 256 * 1024;

/// A traced run, as [`crate::SchedulerMsg::StartJob`] and [`crate::SchedulerMsg::SpawnRemote`]
/// carry it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TraceRun {
    /// `GRAZE_TRACE_MAX_BYTES`: one rank's file limit (the job's limit over its ranks).
    pub rank_bytes: u64,
    /// The most this node may upload (the job's limit).
    pub node_bytes: u64,
    /// `GRAZE_TRACE_DIR`: the same absolute path on every node of the run (MPI launchers copy
    /// the first node's environment to every rank), private to the run.
    pub dir: String,
    /// The ranks this node runs (host-file order, [`crate::ranks_by_host`]): it uploads their
    /// `rank-N.gzt` only, so nodes sharing a machine (and so the directory) never send a file
    /// twice.
    pub ranks: Vec<u32>,
    /// The allocation's first node (where the main command runs): it also uploads the files
    /// not named by rank (`pid-N.gzt`, `note-N.txt`).
    pub first: bool,
}

impl TraceRun {
    /// Does this node upload the file `name` of the run's directory?
    pub fn takes(&self, name: &str) -> bool {
        match name
            .strip_prefix("rank-")
            .and_then(|r| r.strip_suffix(".gzt"))
        {
            Some(r) => r.parse::<u32>().is_ok_and(|r| self.ranks.contains(&r)),
            None => self.first && trace_file_name_ok(name) && name != CLOCK_FILE,
        }
    }
}

/// A trace file in a [`crate::CheckpointStream::Trace`] header.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TraceFileHead {
    /// Its name in the node's trace directory (`rank-3.gzt`, `note-77.txt`, `clock.json`).
    pub name: String,
    /// Its length; the data blocks carry the files one after the other.
    pub bytes: u64,
}

/// Is `name` a file name a node may upload: `rank-N.gzt`, `pid-N.gzt`, `note-N.txt` or
/// [`CLOCK_FILE`]. Nothing else is read or stored (no paths, no dot files).
pub fn trace_file_name_ok(name: &str) -> bool {
    if name == CLOCK_FILE {
        return true;
    }
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    let ok = |prefix: &str, suffix: &str| {
        name.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(suffix))
            .is_some_and(digits)
    };
    ok("rank-", ".gzt") || ok("pid-", ".gzt") || ok("note-", ".txt")
}

/// A clock-sync probe (agent → scheduler).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockPing {
    /// Echoed in the answer.
    pub seq: u64,
}

/// The answer to a [`ClockPing`], sent as soon as it is read.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockPong {
    /// The ping's.
    pub seq: u64,
    /// The scheduler's `CLOCK_MONOTONIC` when it answered (ns).
    pub now_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_trace_names_pass() {
        for ok in [
            "rank-0.gzt",
            "rank-12.gzt",
            "pid-77.gzt",
            "note-5.txt",
            "clock.json",
        ] {
            assert!(trace_file_name_ok(ok), "{ok}");
        }
        for bad in [
            "rank-.gzt",
            "rank-1.gzt.tmp",
            "../rank-1.gzt",
            "rank-1/x.gzt",
            ".clock.json",
            "note-x.txt",
            "rank-123456789012345678901.gzt",
            "",
        ] {
            assert!(!trace_file_name_ok(bad), "{bad}");
        }
    }

    #[test]
    fn a_node_takes_its_ranks_and_the_first_the_rest() {
        let mut run = TraceRun {
            rank_bytes: 1,
            node_bytes: 1,
            dir: "/t".into(),
            ranks: vec![2, 3],
            first: false,
        };
        assert!(run.takes("rank-2.gzt"));
        assert!(!run.takes("rank-0.gzt"));
        assert!(!run.takes("note-5.txt"));
        assert!(!run.takes(CLOCK_FILE));
        run.first = true;
        assert!(run.takes("note-5.txt") && run.takes("pid-9.gzt"));
        assert!(!run.takes("rank-1.gzt") && !run.takes("x.txt"));
    }
}
