//! Notes from an agent about a run (an output file it could not create): an event on the
//! job, nothing else changes.

use super::node::ConnId;
use super::state::Core;
use graze_proto::JobId;

/// Longest note kept, in bytes (the rest is cut).
const MAX_NOTE: usize = 500;

impl Core {
    /// The agent on `conn` tells something about job `id`'s run there: recorded as an event
    /// when that node belongs to the job's run, ignored otherwise (a stale run's note).
    pub fn job_note(&mut self, conn: ConnId, id: JobId, what: String, now: u64) {
        if !self.conn_in_job(conn, id) {
            return;
        }
        let node = self.node_name(conn).unwrap_or("?").to_string();
        let what = graze_proto::clip(what, MAX_NOTE, "...");
        self.event(id, now, format!("on {node}: {what}"));
    }
}

impl Core {
    /// The driver records something about job `id` (a checkpoint stored or discarded, a
    /// restore sent): an event on the job, nothing else changes. Ignored for an unknown job.
    pub fn job_event(&mut self, id: JobId, what: String, now: u64) {
        if !self.jobs.contains_key(&id) {
            return;
        }
        let what = graze_proto::clip(what, MAX_NOTE, "...");
        self.event(id, now, what);
    }
}
