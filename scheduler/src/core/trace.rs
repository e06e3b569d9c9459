//! Traced runs (`--trace`): what a run's launch on a node carries ([`TraceRun`]).

use super::Core;
use graze_proto::{JobId, TraceRun};

impl Core {
    /// The trace part of a launch of job `id`'s current run on `host`; `None` when the job is
    /// not traced. The directory is `{checkpoint_root}/trace-{ID}.{EPOCH}`: one absolute path
    /// on every node (MPI launchers copy the first node's environment to the ranks), per
    /// cluster and run. Each rank's file limit is the job's `max_trace_bytes` over its ranks.
    pub(super) fn trace_run(&self, id: JobId, host: &str) -> Option<TraceRun> {
        let j = self.jobs.get(&id)?;
        if !j.spec.trace {
            return None;
        }
        let host_ranks = j.host_ranks();
        let nranks: u64 = host_ranks.iter().map(|(_, r)| r.len() as u64).sum();
        Some(TraceRun {
            rank_bytes: self.cfg.max_trace_bytes / nranks.max(1),
            node_bytes: self.cfg.max_trace_bytes,
            dir: format!(
                "{}/trace-{id}.{}",
                self.cfg.checkpoint_root.trim_end_matches('/'),
                j.epoch
            ),
            ranks: host_ranks
                .iter()
                .find(|(h, _)| h == host)
                .map(|(_, r)| r.clone())
                .unwrap_or_default(),
            first: j.alloc.first().is_some_and(|a| a.host == host),
        })
    }
}
