//! The commit: carry out the core's outputs, write what changed in one durable transaction,
//! and only then send what waited for it (submit, drain and `wait` answers, agents' `Ack`s).

use crate::core::Output;
use crate::db::history::OwnerEventRow;
use crate::owner::Owner;
use anyhow::Result;
use graze_proto::{ClientReply, SchedulerMsg};
use tracing::info;

impl Owner {
    /// Carry out the core's outputs; commit changed state, then send what waited for it.
    /// The commit (its fsync) runs on the blocking pool and this task waits for it, taking
    /// no other input meanwhile; the runtime's one thread goes on with the connections.
    pub(crate) async fn flush(&mut self) -> Result<()> {
        let mut jobs = std::collections::BTreeSet::new();
        let mut nodes = std::collections::BTreeSet::new();
        while let Some(o) = self.core.poll_output() {
            match o {
                Output::Send { conn, mut msg } => {
                    // A checkpoint's parts are expected; a setup gets its restore, whose
                    // stream starts once the setup is on its way.
                    let restore = self.checkpoint_outgoing(conn, &mut msg, crate::owner::now_ms());
                    // Messages to agents, `StartJob` among them, go out before the commit
                    // below. That is safe for "at most one run alive" because nothing that
                    // depends on this run is acknowledged before the commit (the submit's
                    // answer and agents' Acks wait for it), and if the scheduler dies before
                    // committing, the restored core does not know this run: the job is queued
                    // at its previous epoch (or, submitted in this batch, was never accepted
                    // and is unknown). When the agent registers again it reports holding a run
                    // the core does not know, and `Core::node_connected` fences it (KillJob);
                    // the run's exit finds no running job and changes nothing (output lines
                    // it sent may still land in the job's log). Waiting for
                    // the commit instead would delay every start by an fsync for no gain.
                    // The limit: the restored job's next run reuses this run's epoch, and the
                    // fence's kill is not awaited, so if that run lands on the same main node
                    // before the kill finished, the agent refuses the start ("already runs")
                    // and the job fails once.
                    if let Some((tx, _)) = self.agents.get(&conn) {
                        timeline_sent(&msg, self.core.node_name(conn).unwrap_or("?"));
                        let _ = tx.send(msg);
                    }
                    if let Some(r) = restore {
                        tokio::spawn(r.run());
                    }
                }
                Output::Close { conn, reason } => {
                    if let Some((_, close)) = self.agents.remove(&conn) {
                        close.close(&reason);
                    }
                }
                Output::JobFinal(id) => {
                    if let Some(v) = self.core.job_view(id) {
                        info!(%id, state = %v.state, "job final");
                        // `graze wait` hears the end only once it is durable, like a submit:
                        // a crash before the commit must not leave a waiter with a result
                        // the restarted scheduler never saw.
                        for w in self.waiters.remove(&id).unwrap_or_default() {
                            self.deferred
                                .push((w, ClientReply::Job(Box::new(v.clone()))));
                        }
                    }
                    // The last task of an array answers those waiting for the whole array.
                    if let Some(t) = self.core.task_of(id) {
                        if self.core.array_final(t.array) == Some(true) {
                            let waiting = self.waiters.remove(&t.array).unwrap_or_default();
                            if let (false, Some(v)) =
                                (waiting.is_empty(), self.core.array_view(t.array))
                            {
                                for w in waiting {
                                    self.deferred
                                        .push((w, ClientReply::Array(Box::new(v.clone()))));
                                }
                            }
                        }
                    }
                    for f in self.followers.remove(&id).unwrap_or_default() {
                        let _ = f.tx.send(ClientReply::LogEnd);
                    }
                    self.store.close(id);
                    self.checkpoint_job_final(id);
                }
                Output::JobChanged(id) => {
                    jobs.insert(id);
                    if self.watch.is_watched() {
                        if let Some(v) = self.core.job_view(id) {
                            self.watch.send(&ClientReply::JobChanged(Box::new(v)));
                        }
                        // Its nodes' held cores and job lists may have changed.
                        self.watch.touch(self.core.job_nodes(id));
                    }
                }
                Output::NodeChanged(name) => {
                    nodes.insert(name);
                }
                Output::AttemptEnded(r) => self.history.attempt(r),
                Output::OwnerEvent {
                    node,
                    kind,
                    job,
                    at,
                } => self
                    .history
                    .event(OwnerEventRow::from_core(node, kind, job, at)),
            }
        }
        self.store.flush_all();
        let records: Vec<_> = jobs
            .iter()
            .filter_map(|id| self.core.job_record(*id))
            .collect();
        let infos: Vec<_> = nodes
            .iter()
            .filter_map(|n| Some((self.core.node_info(n)?, self.core.node_drained(n))))
            .collect();
        let outputs: Vec<_> = records
            .iter()
            .filter(|r| r.state.is_final())
            .filter_map(|r| self.store.index(r.id).map(|ix| (r.id, ix)))
            .collect();
        let seqs: Vec<_> = std::mem::take(&mut self.seq_dirty)
            .into_iter()
            .filter_map(|n| self.seqs.get(&n).map(|s| (n, s.clone())))
            .collect();
        let now = crate::owner::now_ms();
        self.history.sample(&self.core, now);
        let hist = self.history.take(now);
        let (written, hist) = self.write(records, infos, outputs, seqs, hist).await;
        if let Err(e) = written {
            self.history.untake(hist);
            // Nothing may be acknowledged that is not durable: stop rather than lie.
            for (tx, _) in self.deferred.drain(..) {
                let _ = tx.send(ClientReply::Error {
                    message: format!("the scheduler cannot commit its state: {e:#}"),
                });
            }
            return Err(e.context("committing scheduler state"));
        }
        for (tx, reply) in self.deferred.drain(..) {
            match &reply {
                ClientReply::Submitted { id } => {
                    graze_net::timeline(id.0, "submit_committed", "");
                }
                ClientReply::Job(v) => graze_net::timeline(v.id.0, "wait_answered", ""),
                _ => {}
            }
            let _ = tx.send(reply);
        }
        if let Some(cutoff) = self.history.prune_due(now) {
            match self.db.prune_history(cutoff) {
                Ok(0) => {}
                Ok(n) => info!(rows = n, "old history pruned"),
                Err(e) => tracing::warn!("pruning old history: {e:#}"),
            }
        }
        for (conn, seq) in self.acks.drain() {
            if let Some((tx, _)) = self.agents.get(&conn) {
                let _ = tx.send(SchedulerMsg::Ack { seq });
            }
        }
        Ok(())
    }
}

impl Owner {
    /// Write one transaction on the blocking pool (nothing to write: no transaction); the
    /// history rows come back for [`crate::history::History::untake`] on an error.
    async fn write(
        &self,
        records: Vec<crate::core::JobRecord>,
        infos: Vec<(graze_proto::NodeInfo, bool)>,
        outputs: Vec<(graze_proto::JobId, crate::db::OutputIndex)>,
        seqs: Vec<(String, (String, u64))>,
        hist: crate::db::history::HistoryWrite,
    ) -> (Result<()>, crate::db::history::HistoryWrite) {
        if crate::db::nothing_to_write(&records, &infos, &outputs, &seqs, &hist) {
            return (Ok(()), hist);
        }
        let db = self.db.clone();
        let job = tokio::task::spawn_blocking(move || {
            let r = db.write(&records, &infos, &outputs, &seqs, &hist);
            (r, hist)
        });
        match job.await {
            Ok(done) => done,
            Err(e) => (
                Err(anyhow::anyhow!("the commit's thread failed: {e}")),
                crate::db::history::HistoryWrite::default(),
            ),
        }
    }
}

/// The launch timeline's steps among messages to agents (see [`graze_net::timeline`]).
fn timeline_sent(msg: &SchedulerMsg, node: &str) {
    match msg {
        SchedulerMsg::StartJob { job, .. } => graze_net::timeline(job.0, "start_sent", node),
        SchedulerMsg::SpawnRemote { job, .. } => {
            graze_net::timeline(job.0, "spawn_remote_sent", node)
        }
        SchedulerMsg::LaunchDone { .. } => graze_net::timeline(0, "launch_done_sent", node),
        SchedulerMsg::KillJob { job } => graze_net::timeline(job.0, "kill_sent", node),
        _ => {}
    }
}
