//! Checkpoints (`graze submit --checkpoint`): the job's options, the ids of checkpoints, and
//! the headers of the two kinds of checkpoint stream.
//!
//! The protocol a job follows (the environment its processes get):
//! - `GRAZE_CHECKPOINT_DIR`: one directory, the same path on every node of the run (so it
//!   survives MPI launchers that copy the first node's environment to every rank). Rank `r`
//!   writes its checkpoint under `$GRAZE_CHECKPOINT_DIR/r/` (any files), then creates the empty
//!   file `$GRAZE_CHECKPOINT_DIR/r.done` ([`done_marker`]) last: only ranks with a marker count.
//! - `GRAZE_CHECKPOINT_SIGNAL`: the signal number that asks for a checkpoint.
//! - `GRAZE_RESTART_COUNT`: how many runs of the job came before this one (0 on the first).
//! - A rank that saved its checkpoint and wants to stop exits with [`EXIT_CHECKPOINTED`] (85):
//!   the run counts as checkpointed, and the job is requeued and restored, not failed.
//!
//! Transfers use their own bidirectional QUIC stream each, beside the control stream, so a
//! large checkpoint never delays other messages. A stream starts with one JSON frame
//! ([`CheckpointStream`]), then data blocks (`graze_net::send_block`: a 4-byte length and the
//! bytes, at most [`MAX_BLOCK`]; a zero length ends the data), then one [`StreamEnd`] frame from
//! the sender; the receiver answers with one [`StreamReply`] frame. The data is a gzip'd tar of
//! the rank directories (`r/...`); several parts are simply concatenated.

use crate::ids::JobId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The exit code of a rank that saved its checkpoint and stops (HTCondor's convention).
pub const EXIT_CHECKPOINTED: i32 = 85;
/// The default checkpoint signal: SIGUSR1.
pub const DEFAULT_CHECKPOINT_SIGNAL: i32 = 10;
/// The default grace period between the checkpoint signal at a vacate and SIGTERM (ms).
pub const DEFAULT_CHECKPOINT_GRACE_MS: u64 = 60_000;
/// The shortest `--checkpoint-every` accepted (ms).
pub const MIN_CHECKPOINT_EVERY_MS: u64 = 10_000;
/// The longest `--checkpoint-grace` accepted (ms).
pub const MAX_CHECKPOINT_GRACE_MS: u64 = 3_600_000;
/// The largest data block on a checkpoint stream.
pub const MAX_BLOCK: usize = 1 << 20;

/// A job's checkpoint options (`--checkpoint`, `--checkpoint-signal`, `--checkpoint-grace`,
/// `--checkpoint-every`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointSpec {
    /// The signal that asks the ranks for a checkpoint (Linux numbering).
    pub signal: i32,
    /// At a vacate: how long the ranks may run (resumed, at nice 19) after the signal before
    /// SIGTERM (ms).
    pub grace_ms: u64,
    /// Periodic checkpoints: the signal every this long of running time (ms); the job goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_ms: Option<u64>,
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        CheckpointSpec {
            signal: DEFAULT_CHECKPOINT_SIGNAL,
            grace_ms: DEFAULT_CHECKPOINT_GRACE_MS,
            every_ms: None,
        }
    }
}

impl CheckpointSpec {
    /// Check the values a client sent.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=crate::MAX_SIGNAL).contains(&self.signal) {
            return Err(format!("checkpoint signal {} is not a signal", self.signal));
        }
        if self.grace_ms > MAX_CHECKPOINT_GRACE_MS {
            return Err(format!(
                "checkpoint grace {} is longer than {}",
                crate::human_duration(self.grace_ms),
                crate::human_duration(MAX_CHECKPOINT_GRACE_MS)
            ));
        }
        if let Some(e) = self.every_ms {
            if e < MIN_CHECKPOINT_EVERY_MS {
                return Err(format!(
                    "--checkpoint-every {} is shorter than {}",
                    crate::human_duration(e),
                    crate::human_duration(MIN_CHECKPOINT_EVERY_MS)
                ));
            }
        }
        Ok(())
    }
}

/// One checkpoint of a job: the run (epoch) it was taken in and when it was asked for (ms since
/// the Unix epoch, the scheduler's clock). Ordered: later runs, then later times, are newer.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckpointId {
    /// The run's epoch.
    pub epoch: u64,
    /// When the scheduler asked for it.
    pub at_ms: u64,
}

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}-{}", self.epoch, self.at_ms)
    }
}

impl std::str::FromStr for CheckpointId {
    type Err = String;
    /// Parses what `Display` writes (`r3-1700000000000`), e.g. a directory name.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not a checkpoint id (rEPOCH-MS)");
        let rest = s.strip_prefix('r').ok_or_else(bad)?;
        let (e, t) = rest.split_once('-').ok_or_else(bad)?;
        Ok(CheckpointId {
            epoch: e.parse().map_err(|_| bad())?,
            at_ms: t.parse().map_err(|_| bad())?,
        })
    }
}

/// The marker rank `rank` creates (empty, last) once its checkpoint files are written:
/// `RANK.done`, beside the rank's directory `RANK/`.
pub fn done_marker(rank: u32) -> String {
    format!("{rank}.done")
}

/// What is restored on a node before the run's processes start there.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestoreRef {
    /// The checkpoint.
    pub id: CheckpointId,
    /// Its stored size (compressed), all parts.
    pub bytes: u64,
}

/// A stored checkpoint, as `graze show` lists it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CheckpointView {
    /// Which checkpoint (its run and time).
    pub id: CheckpointId,
    /// When it became complete (ms since the Unix epoch).
    pub stored_ms: u64,
    /// Stored size (compressed bytes).
    pub bytes: u64,
    /// The ranks it holds.
    pub ranks: u32,
    /// The nodes it came from.
    pub nodes: Vec<String>,
    /// True for the one the next run restores.
    pub current: bool,
}

/// The first frame of a checkpoint stream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointStream {
    /// Agent → scheduler (a stream the agent opens): one node's part of a checkpoint.
    Part {
        /// The job.
        job: JobId,
        /// The checkpoint ([`crate::SchedulerMsg::Checkpoint`]'s id).
        id: CheckpointId,
        /// The ranks whose files follow (those that wrote their marker). Empty with `error`.
        ranks: Vec<u32>,
        /// Why this node has no part (no data follows): e.g. a symlink pointing out of the
        /// directory, a file the job's user cannot read, ranks that wrote no marker in time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Scheduler → agent (a stream the scheduler opens): the data to restore on this node.
    Restore {
        /// The job.
        job: JobId,
        /// The run it is for.
        epoch: u64,
        /// The checkpoint.
        id: CheckpointId,
        /// Why there is nothing to restore after all (no data follows); the agent starts the
        /// run without it and says so.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Agent → scheduler: a clock-sync stream ([`crate::ClockPing`] / [`crate::ClockPong`]
    /// frames until the agent finishes it). Protocol 8.
    Clock,
    /// Agent → scheduler: a node's trace files of a traced run (protocol 8). The files' bytes
    /// follow in order as data blocks, then a [`StreamEnd`]; the answer is a [`StreamReply`].
    Trace {
        /// The job.
        job: JobId,
        /// The run.
        epoch: u64,
        /// The files, in the order their bytes follow.
        files: Vec<crate::TraceFileHead>,
    },
}

/// The sender's last frame on a checkpoint stream, after the data.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StreamEnd {
    /// Data bytes sent.
    pub bytes: u64,
    /// Set when the sender could not finish (the packer failed half-way): the data is void.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The receiver's answer on a checkpoint stream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StreamReply {
    /// `None`: stored (scheduler) or restored (agent). Otherwise why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Which ranks each host of an allocation runs, in host-file order (the MPI default of both
/// hydra and Open MPI: a host's slots are filled before the next host's).
pub fn ranks_by_host(slots: &[u32]) -> Vec<Vec<u32>> {
    let mut next = 0u32;
    slots
        .iter()
        .map(|n| {
            let r: Vec<u32> = (next..next.saturating_add(*n)).collect();
            next = next.saturating_add(*n);
            r
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_and_round_trip() {
        let a = CheckpointId {
            epoch: 2,
            at_ms: 900,
        };
        let b = CheckpointId {
            epoch: 3,
            at_ms: 100,
        };
        assert!(a < b);
        assert_eq!(a.to_string().parse::<CheckpointId>().unwrap(), a);
        assert!("x3-1".parse::<CheckpointId>().is_err());
        assert!("r3".parse::<CheckpointId>().is_err());
        assert!("r3-x".parse::<CheckpointId>().is_err());
    }

    #[test]
    fn ranks_follow_the_host_file() {
        assert_eq!(
            ranks_by_host(&[2, 1, 3]),
            vec![vec![0, 1], vec![2], vec![3, 4, 5]]
        );
        assert_eq!(ranks_by_host(&[]), Vec::<Vec<u32>>::new());
    }

    #[test]
    fn specs_are_checked() {
        assert!(CheckpointSpec::default().check().is_ok());
        let bad_sig = CheckpointSpec {
            signal: 0,
            ..Default::default()
        };
        assert!(bad_sig.check().is_err());
        let short = CheckpointSpec {
            every_ms: Some(1000),
            ..Default::default()
        };
        assert!(short.check().unwrap_err().contains("shorter"));
        let long = CheckpointSpec {
            grace_ms: MAX_CHECKPOINT_GRACE_MS + 1,
            ..Default::default()
        };
        assert!(long.check().is_err());
    }
}
