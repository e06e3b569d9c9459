//! The scheduler's checkpoint store (issue 12): parts arriving from agents are assembled
//! (`assembly`, pure) and written aside (`disk`), becoming the job's current checkpoint only
//! once complete; the next run's nodes get theirs back on a stream of their own (`stream`).
//!
//! The owning task keeps the index (the complete checkpoints per job, read from disk at start:
//! the file system is the truth) and the assemblies in flight; the stream tasks only move
//! bytes and ask it, through [`Msg`], whether a part is wanted and what became of it.

mod assembly;
mod disk;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod owner_tests;
pub(crate) mod stream;

use crate::core::ConnId;
use crate::owner::Owner;
use anyhow::Result;
use assembly::{Assembly, Status};
use disk::Disk;
use disk::Manifest;
use graze_proto::{CheckpointId, CheckpointView, JobId, RestoreRef, SchedulerMsg};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::sync::oneshot;
use tracing::{info, warn};

/// What a receiving stream task asks the owning task.
pub(crate) enum Msg {
    /// A part of checkpoint `id` of `job` starts arriving from node `node` (the name its
    /// connection registered with): where to write it, or why it is not wanted.
    Begin {
        node: String,
        job: JobId,
        id: CheckpointId,
        reply: oneshot::Sender<Result<Sink, String>>,
    },
    /// The part from `node` is written and fsynced (its ranks and size), or failed (why: the
    /// agent's error, a broken stream, the size limit). The reply is the `StreamReply` error.
    End {
        node: String,
        job: JobId,
        id: CheckpointId,
        outcome: Result<(Vec<u32>, u64), String>,
        reply: oneshot::Sender<Option<String>>,
    },
}

/// Where a receiver writes a part, and the checkpoint's byte budget.
#[derive(Debug)]
pub(crate) struct Sink {
    /// The part's file (in the checkpoint's `.incoming-ID` directory).
    pub(crate) path: PathBuf,
    /// Bytes received for the whole checkpoint so far (all its parts).
    pub(crate) received: Arc<AtomicU64>,
    /// `max_checkpoint_bytes`.
    pub(crate) max: u64,
}

/// One checkpoint being received.
struct Pending {
    asm: Assembly,
    bytes: BTreeMap<String, u64>,
}

/// The checkpoint store's state in the owning task.
pub(crate) struct Checkpoints {
    disk: Disk,
    max_bytes: u64,
    /// Complete checkpoints per job, oldest first (at most [`disk::KEEP`]).
    index: HashMap<JobId, Vec<Manifest>>,
    pending: BTreeMap<(JobId, CheckpointId), Pending>,
    /// Per job, the last run whose restore was announced as an event (one per run, not one
    /// per node).
    announced: HashMap<JobId, u64>,
}

/// Bytes for people: `1.2 MB`.
pub(crate) fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if b < 1000 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1000.0;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// The size limit as written in `scheduler.toml`'s way: `1 GiB` when it is a whole number of
/// binary units, else as [`human_bytes`].
pub(crate) fn limit_text(b: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if b >= 1 << shift && b.is_multiple_of(1 << shift) {
            return format!("{} {unit}", b >> shift);
        }
    }
    human_bytes(b)
}

impl Checkpoints {
    /// The store in `root` (`STATE/checkpoints`): incoming leftovers removed, the rest read.
    pub(crate) fn open(root: &Path, max_bytes: u64) -> Result<Checkpoints> {
        let disk = Disk::open(root)?;
        let index: HashMap<_, _> = disk.scan()?.into_iter().collect();
        Ok(Checkpoints {
            disk,
            max_bytes,
            index,
            pending: BTreeMap::new(),
            announced: HashMap::new(),
        })
    }

    /// Forget (and remove) the checkpoints of jobs for which `keep` is false: final or
    /// unknown ones, e.g. jobs that ended while the scheduler was down.
    pub(crate) fn retain_jobs(&mut self, keep: impl Fn(JobId) -> bool) {
        let gone: Vec<JobId> = self.index.keys().copied().filter(|j| !keep(*j)).collect();
        for j in gone {
            info!(job = %j, "checkpoints of a finished job removed");
            self.index.remove(&j);
            self.disk.remove_job(j);
        }
    }

    /// The job's current checkpoint (the newest complete one).
    fn current(&self, job: JobId) -> Option<&Manifest> {
        self.index.get(&job).and_then(|v| v.last())
    }

    /// The job's stored checkpoints for `graze show`, oldest first.
    pub(crate) fn views(&self, job: JobId) -> Vec<CheckpointView> {
        let list = self.index.get(&job).map(Vec::as_slice).unwrap_or(&[]);
        let n = list.len();
        list.iter()
            .enumerate()
            .map(|(i, m)| CheckpointView {
                id: m.id,
                stored_ms: m.stored_ms,
                bytes: m.bytes,
                ranks: m.ranks,
                nodes: m.nodes.clone(),
                current: i + 1 == n,
            })
            .collect()
    }

    /// What stays current if a checkpoint is discarded, for the event.
    fn stays(&self, job: JobId) -> String {
        match self.current(job) {
            Some(m) => format!("{} stays current", m.id),
            None => "the job has no earlier checkpoint".into(),
        }
    }

    /// Discard every checkpoint of `job` still being received; the events to record.
    fn discard_pending(&mut self, job: JobId, why: &str) -> Vec<String> {
        let ids: Vec<CheckpointId> = self
            .pending
            .range((job, CheckpointId { epoch: 0, at_ms: 0 })..)
            .take_while(|((j, _), _)| *j == job)
            .map(|((_, id), _)| *id)
            .collect();
        let mut events = Vec::new();
        for id in ids {
            self.pending.remove(&(job, id));
            self.disk.discard(job, id);
            events.push(format!(
                "checkpoint {id} discarded: {why}; {}",
                self.stays(job)
            ));
        }
        events
    }

    /// Settle checkpoint `id` if it completed or failed; the event to record.
    fn settle(&mut self, job: JobId, id: CheckpointId, now: u64) -> Option<String> {
        let status = self.pending.get(&(job, id))?.asm.status();
        match status {
            Status::Pending => None,
            Status::Failed(why) => {
                self.pending.remove(&(job, id));
                self.disk.discard(job, id);
                Some(format!(
                    "checkpoint {id} discarded: {why}; {}",
                    self.stays(job)
                ))
            }
            Status::Complete => {
                let p = self.pending.remove(&(job, id))?;
                let parts = p.asm.parts().clone();
                let m = Manifest {
                    id,
                    stored_ms: now,
                    bytes: p.bytes.values().sum(),
                    ranks: p.asm.nprocs(),
                    nodes: parts.keys().cloned().collect(),
                    parts,
                };
                if let Err(e) = self.disk.commit(job, &m) {
                    warn!(%job, %id, "storing a checkpoint: {e:#}");
                    self.disk.discard(job, id);
                    return Some(format!(
                        "checkpoint {id} discarded: the scheduler could not store it ({e:#}); {}",
                        self.stays(job)
                    ));
                }
                let what = format!(
                    "checkpoint {id} stored: {} ranks from {}, {}",
                    m.ranks,
                    m.nodes.join(" "),
                    human_bytes(m.bytes)
                );
                let list = self.index.entry(job).or_default();
                list.push(m);
                list.sort_by_key(|m| m.id);
                while list.len() > disk::KEEP {
                    let old = list.remove(0);
                    self.disk.remove(job, old.id);
                }
                Some(what)
            }
        }
    }
}

impl Owner {
    /// An outgoing message to the agent on `conn`, before it is sent: a `Checkpoint`
    /// registers the part expected from that node; a `CheckpointSetup` ends any assembly of
    /// the job still in flight (void now) and is given the job's current checkpoint; the
    /// stream sending that node its parts is returned, to be started once the message is on
    /// its way.
    pub(crate) fn checkpoint_outgoing(
        &mut self,
        conn: ConnId,
        msg: &mut SchedulerMsg,
        now: u64,
    ) -> Option<stream::RestoreTask> {
        match msg {
            SchedulerMsg::Checkpoint { job, id, ranks, .. } => {
                let node = self.core.node_name(conn)?.to_string();
                let nprocs = self.core.job_view(*job).map_or(0, |v| v.spec.nprocs);
                self.checkpoints
                    .pending
                    .entry((*job, *id))
                    .or_insert_with(|| Pending {
                        asm: Assembly::new(nprocs),
                        bytes: BTreeMap::new(),
                    })
                    .asm
                    .expect(&node, ranks.clone());
                None
            }
            SchedulerMsg::CheckpointSetup {
                job,
                epoch,
                ranks,
                restore,
                ..
            } => {
                let job = *job;
                for e in self
                    .checkpoints
                    .discard_pending(job, "the job started again before it completed")
                {
                    self.core.job_event(job, e, now);
                }
                let m = self.checkpoints.current(job)?.clone();
                *restore = Some(RestoreRef {
                    id: m.id,
                    bytes: m.bytes,
                });
                if self.checkpoints.announced.insert(job, *epoch) != Some(*epoch) {
                    let what = format!(
                        "run {epoch} restores checkpoint {}: {} ranks, {}",
                        m.id,
                        m.ranks,
                        human_bytes(m.bytes)
                    );
                    self.core.job_event(job, what, now);
                }
                let files: Vec<PathBuf> = m
                    .parts
                    .iter()
                    .filter(|(_, r)| r.iter().any(|x| ranks.contains(x)))
                    .map(|(n, _)| self.checkpoints.disk.part(job, m.id, n))
                    .collect();
                let id = m.id;
                let (_, close) = self.agents.get(&conn)?;
                Some(stream::RestoreTask {
                    link: close.0.clone(),
                    node: self.core.node_name(conn).unwrap_or("?").to_string(),
                    job,
                    epoch: *epoch,
                    id,
                    files,
                })
            }
            _ => None,
        }
    }

    /// A stream task's question.
    pub(crate) fn checkpoint_msg(&mut self, msg: Msg, now: u64) {
        match msg {
            Msg::Begin {
                node,
                job,
                id,
                reply,
            } => {
                let r = self.checkpoint_begin(&node, job, id);
                let _ = reply.send(r);
            }
            Msg::End {
                node,
                job,
                id,
                outcome,
                reply,
            } => {
                let max = self.checkpoints.max_bytes;
                let Some(p) = self.checkpoints.pending.get_mut(&(job, id)) else {
                    let _ = reply.send(Some(format!(
                        "checkpoint {id} of job {job} is not being received (void or unknown)"
                    )));
                    return;
                };
                if !p.asm.expects(&node) {
                    let _ = reply.send(Some(format!(
                        "{node} was not asked for a part of checkpoint {id}"
                    )));
                    return;
                }
                match outcome {
                    Ok((ranks, bytes)) => {
                        p.bytes.insert(node.clone(), bytes);
                        p.asm.stored(&node, ranks);
                    }
                    Err(why) => p.asm.fail(format!("{node}: {why}")),
                }
                let total: u64 = p.bytes.values().sum();
                if total > max {
                    p.asm.fail(format!(
                        "it is larger than max_checkpoint_bytes ({})",
                        limit_text(max)
                    ));
                }
                let status = p.asm.status();
                if let Some(e) = self.checkpoints.settle(job, id, now) {
                    info!(%job, "{e}");
                    self.core.job_event(job, e, now);
                }
                let _ = reply.send(match status {
                    Status::Failed(why) => Some(why),
                    _ => None,
                });
            }
        }
    }

    fn checkpoint_begin(
        &mut self,
        node: &str,
        job: JobId,
        id: CheckpointId,
    ) -> Result<Sink, String> {
        let max = self.checkpoints.max_bytes;
        let p = self
            .checkpoints
            .pending
            .get_mut(&(job, id))
            .ok_or_else(|| {
                format!("checkpoint {id} of job {job} was not asked for (or is void)")
            })?;
        p.asm.begin(node)?;
        match self.checkpoints.disk.incoming_part(job, id, node) {
            Ok(path) => Ok(Sink {
                path,
                received: p.asm.received.clone(),
                max,
            }),
            Err(e) => {
                warn!(%job, %id, "checkpoint part: {e:#}");
                Err(format!("the scheduler cannot store it: {e:#}"))
            }
        }
    }

    /// Node `node` is lost: the checkpoints still waiting for its part are void.
    pub(crate) fn checkpoint_node_lost(&mut self, node: &str, now: u64) {
        let keys: Vec<_> = self
            .checkpoints
            .pending
            .iter_mut()
            .filter(|(_, p)| p.asm.expects(node))
            .map(|(k, p)| {
                p.asm.node_lost(node);
                *k
            })
            .collect();
        for (job, id) in keys {
            if let Some(e) = self.checkpoints.settle(job, id, now) {
                self.core.job_event(job, e, now);
            }
        }
    }

    /// Job `job` is final: its checkpoints, stored or in flight, are removed.
    pub(crate) fn checkpoint_job_final(&mut self, job: JobId) {
        let _ = self.checkpoints.discard_pending(job, "the job ended");
        self.checkpoints.announced.remove(&job);
        if self.checkpoints.index.remove(&job).is_some() {
            info!(%job, "checkpoints of a finished job removed");
        }
        self.checkpoints.disk.remove_job(job);
    }

    /// Fill in `graze show`'s list of stored checkpoints.
    pub(crate) fn checkpoint_fill(&self, v: &mut graze_proto::JobView) {
        v.checkpoints = self.checkpoints.views(v.id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_well() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_200_000), "1.2 MB");
        assert_eq!(human_bytes(1 << 30), "1.1 GB");
        assert_eq!(limit_text(1 << 30), "1 GiB");
        assert_eq!(limit_text(3 << 20), "3 MiB");
        assert_eq!(limit_text(1000), "1.0 kB");
    }

    fn id(t: u64) -> CheckpointId {
        CheckpointId { epoch: 2, at_ms: t }
    }

    /// Drive the store the way the owning task does, without the network.
    fn receive(
        c: &mut Checkpoints,
        job: JobId,
        id: CheckpointId,
        parts: &[(&str, &[u32], &[u8])],
    ) -> Option<String> {
        let mut asm = Assembly::new(4);
        for (n, r, _) in parts {
            asm.expect(n, r.to_vec());
        }
        c.pending.insert(
            (job, id),
            Pending {
                asm,
                bytes: BTreeMap::new(),
            },
        );
        let mut last = None;
        for (n, r, data) in parts {
            let p = c.pending.get_mut(&(job, id)).unwrap();
            p.asm.begin(n).unwrap();
            let path = c.disk.incoming_part(job, id, n).unwrap();
            std::fs::write(path, data).unwrap();
            let p = c.pending.get_mut(&(job, id)).unwrap();
            p.bytes.insert(n.to_string(), data.len() as u64);
            p.asm.stored(n, r.to_vec());
            last = c.settle(job, id, 1000 + id.at_ms);
        }
        last
    }

    #[test]
    fn complete_checkpoints_become_current_and_two_are_kept() {
        let t = tempfile::tempdir().unwrap();
        let mut c =
            Checkpoints::open(t.path(), crate::config::DEFAULT_MAX_CHECKPOINT_BYTES).unwrap();
        let j = JobId(3);
        for at in [10, 20, 30] {
            let e = receive(
                &mut c,
                j,
                id(at),
                &[("a1", &[0, 1], b"xx"), ("a2", &[2, 3], b"yyy")],
            );
            assert_eq!(
                e.unwrap(),
                format!("checkpoint r2-{at} stored: 4 ranks from a1 a2, 5 B")
            );
        }
        let v = c.views(j);
        assert_eq!(
            v.iter().map(|v| v.id).collect::<Vec<_>>(),
            vec![id(20), id(30)]
        );
        assert!(v[1].current && !v[0].current);
        assert!(!t.path().join("3").join("r2-10").exists());
        // What a restart reads back is the same.
        let again =
            Checkpoints::open(t.path(), crate::config::DEFAULT_MAX_CHECKPOINT_BYTES).unwrap();
        assert_eq!(again.views(j), v);
    }

    #[test]
    fn a_void_checkpoint_leaves_the_previous_one_current() {
        let t = tempfile::tempdir().unwrap();
        let mut c =
            Checkpoints::open(t.path(), crate::config::DEFAULT_MAX_CHECKPOINT_BYTES).unwrap();
        let j = JobId(3);
        receive(&mut c, j, id(10), &[("a1", &[0, 1, 2, 3], b"x")]);
        let e = receive(
            &mut c,
            j,
            id(20),
            &[("a1", &[0, 1], b"x"), ("a2", &[2], b"y")],
        );
        assert_eq!(
            e.unwrap(),
            "checkpoint r2-20 discarded: no part holds ranks 3; r2-10 stays current"
        );
        assert!(!c.disk.incoming_dir(j, id(20)).exists());
        assert_eq!(c.current(j).unwrap().id, id(10));
        // One cut half-way, then the job starts again.
        let mut asm = Assembly::new(4);
        asm.expect("a1", vec![0, 1, 2, 3]);
        c.pending.insert(
            (j, id(30)),
            Pending {
                asm,
                bytes: BTreeMap::new(),
            },
        );
        c.disk.incoming_part(j, id(30), "a1").unwrap();
        let ev = c.discard_pending(j, "the job started again before it completed");
        assert_eq!(ev.len(), 1);
        assert!(ev[0].ends_with("r2-10 stays current"), "{}", ev[0]);
        assert!(!c.disk.incoming_dir(j, id(30)).exists());
        assert_eq!(c.current(j).unwrap().id, id(10));
    }

    #[test]
    fn finished_jobs_lose_their_checkpoints_at_start() {
        let t = tempfile::tempdir().unwrap();
        let mut c =
            Checkpoints::open(t.path(), crate::config::DEFAULT_MAX_CHECKPOINT_BYTES).unwrap();
        receive(&mut c, JobId(3), id(10), &[("a1", &[0, 1, 2, 3], b"x")]);
        receive(&mut c, JobId(4), id(10), &[("a1", &[0, 1, 2, 3], b"x")]);
        let mut c =
            Checkpoints::open(t.path(), crate::config::DEFAULT_MAX_CHECKPOINT_BYTES).unwrap();
        c.retain_jobs(|j| j == JobId(4));
        assert!(c.views(JobId(3)).is_empty());
        assert!(!t.path().join("3").exists());
        assert_eq!(c.views(JobId(4)).len(), 1);
    }
}
