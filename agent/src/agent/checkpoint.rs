//! Checkpoints in the owning task (issue 12): `CheckpointSetup` (the node's checkpoint
//! directory, the restore before the run starts, holding back its launches meanwhile) and
//! `Checkpoint` (signal, grace, markers, vacate, pack and send this node's part), and the
//! streams both ways. The files themselves are read and written by the job's user
//! (`jobs/checkpoint.rs`); the waits and transfers run off the owning task and report back
//! through [`Input`].

use super::state::{Agent, Conn, Input};
use crate::jobs::checkpoint::UnpackSummary;
use crate::jobs::{confine, guard, spawn};
use graze_proto::{
    CheckpointId, CheckpointStream, JobId, JobMsg, SchedulerMsg, StreamEnd, StreamReply, MAX_BLOCK,
};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a run's launches wait for the restore they were told of.
pub(super) const RESTORE_WAIT: Duration = Duration::from_secs(120);
/// How often the markers are looked for during a grace.
const MARKER_POLL: Duration = Duration::from_millis(100);

/// A job's checkpoint state on this node (from its `CheckpointSetup`).
pub(super) struct NodeCkpt {
    /// The run.
    pub(super) epoch: u64,
    /// `GRAZE_CHECKPOINT_DIR`.
    pub(super) dir: PathBuf,
    /// The ranks this node runs.
    pub(super) ranks: Vec<u32>,
    /// `GRAZE_CHECKPOINT_SIGNAL`.
    pub(super) signal: i32,
    /// A restore is awaited until then; the run's launches wait in `deferred`.
    pub(super) restore_until: Option<Instant>,
    /// `StartJob` / `SpawnRemote` held back until the restore finished.
    pub(super) deferred: Vec<SchedulerMsg>,
    /// In the grace of a stopping checkpoint: the owner's input does not stop the job.
    pub(super) grace: bool,
    /// The part to pack and send once the job's processes here are gone (a stopping
    /// checkpoint), or `None`.
    pub(super) pack_after_kill: Option<(CheckpointId, Result<Vec<u32>, String>)>,
    /// A part is being sent; `JobCleared` waits for it.
    pub(super) sending: bool,
    /// The checkpoint whose part (with data) is being packed here (until its packer is done,
    /// [`Input::Packed`], or the part failed). A periodic
    /// checkpoint asked meanwhile is skipped: its signal would make the program rewrite the
    /// files the packer is reading.
    pub(super) packing: Option<CheckpointId>,
    /// A cancel came during a checkpoint: nothing more is packed.
    pub(super) cancelled: bool,
}

/// A restore stream that came before its run's `CheckpointSetup` (the stream and the control
/// stream race): kept until the setup comes, at most [`RESTORE_WAIT`].
pub(super) struct EarlyRestore {
    job: JobId,
    epoch: u64,
    id: CheckpointId,
    error: Option<String>,
    streams: (graze_net::quinn::SendStream, graze_net::quinn::RecvStream),
    until: Instant,
}

/// Why some of `ranks` are missing from `have`, or `Ok(have)`.
pub(super) fn marker_verdict(
    ranks: &[u32],
    have: &[u32],
    grace: Duration,
) -> Result<Vec<u32>, String> {
    let missing: Vec<String> = ranks
        .iter()
        .filter(|r| !have.contains(r))
        .map(u32::to_string)
        .collect();
    if missing.is_empty() {
        return Ok(have.to_vec());
    }
    let word = if missing.len() == 1 { "rank" } else { "ranks" };
    Err(format!(
        "{word} {} wrote no marker within {}s",
        missing.join(","),
        grace.as_secs()
    ))
}

/// `1.2 MB`, `4 kB`, `17 B`.
fn human_bytes(b: u64) -> String {
    match b {
        0..=999 => format!("{b} B"),
        1_000..=999_999 => format!("{:.1} kB", b as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} MB", b as f64 / 1e6),
        _ => format!("{:.1} GB", b as f64 / 1e9),
    }
}

/// The ranks of `ranks` whose marker exists in `dir` (an lstat each: nothing is opened).
pub(super) fn markers(dir: &Path, ranks: &[u32]) -> Vec<u32> {
    ranks
        .iter()
        .copied()
        .filter(|r| std::fs::symlink_metadata(dir.join(graze_proto::done_marker(*r))).is_ok())
        .collect()
}

/// Remove the markers of `ranks` from `dir` (an unlink never follows a symlink; `dir` itself
/// is the agent's, in root-owned parents).
fn remove_markers(dir: &Path, ranks: &[u32]) {
    for r in ranks {
        match std::fs::remove_file(dir.join(graze_proto::done_marker(*r))) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(rank = r, error = %e, "cannot remove an old checkpoint marker")
            }
        }
    }
}

/// Make the checkpoint directory: its parents as root-owned 0755 directories (never through
/// a symlink), itself owned by the job's user, 0700.
pub(super) fn make_dir(c: &confine::Confinement, dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if !dir.is_absolute() {
        return Err(format!("'{}' is not an absolute path", dir.display()));
    }
    let mut at = PathBuf::from("/");
    for comp in dir.components().skip(1) {
        at.push(comp);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("'{}' is not a directory", at.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match std::fs::create_dir(&at) {
                    Ok(()) => {
                        std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o755))
                            .map_err(|e| format!("'{}': {}", at.display(), spawn::io_reason(&e)))?;
                    }
                    // Another agent on this machine (or another run) made it meanwhile: it
                    // must still be a real directory.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        if !std::fs::symlink_metadata(&at).is_ok_and(|m| m.is_dir()) {
                            return Err(format!("'{}' is not a directory", at.display()));
                        }
                    }
                    Err(e) => {
                        return Err(format!(
                            "cannot create '{}': {}",
                            at.display(),
                            spawn::io_reason(&e)
                        ))
                    }
                }
            }
            Err(e) => return Err(format!("'{}': {}", at.display(), spawn::io_reason(&e))),
        }
    }
    if c.switch_user {
        confine::chown_to(c, dir).map_err(|e| {
            format!(
                "cannot give '{}' to the job's user: {}",
                dir.display(),
                spawn::io_reason(&e)
            )
        })?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("'{}': {}", dir.display(), spawn::io_reason(&e)))
}

/// Start `graze-agent checkpoint-pack|unpack` as the job's user.
fn helper(
    exe: &Path,
    c: &confine::Confinement,
    what: &str,
    dir: &Path,
    ranks: &[u32],
) -> std::io::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new(exe);
    let _keep = c.apply(&mut cmd, None)?;
    let ranks: Vec<String> = ranks.iter().map(u32::to_string).collect();
    cmd.arg(what)
        .arg("--dir")
        .arg(dir)
        .arg("--ranks")
        .arg(ranks.join(","))
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn()
}

/// The helper's one-line reason, or a description of how it ended.
async fn helper_end(child: &mut tokio::process::Child) -> Result<(), String> {
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err).await;
    }
    match child.wait().await {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => {
            let line = err.lines().next().unwrap_or("").trim().to_string();
            Err(if line.is_empty() {
                format!("the packer ended with {s}")
            } else {
                line
            })
        }
        Err(e) => Err(spawn::io_reason(&e)),
    }
}

/// Pack this node's `ranks` and send them on a new stream; the scheduler's reply.
#[allow(clippy::too_many_arguments)]
async fn send_part(
    conn: graze_net::quinn::Connection,
    exe: Option<PathBuf>,
    c: confine::Confinement,
    dir: PathBuf,
    job: JobId,
    id: CheckpointId,
    ranks: Result<Vec<u32>, String>,
    rate: Option<u64>,
    tx: tokio::sync::mpsc::Sender<Input>,
) -> Result<(), String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let _ = send.set_priority(-1);
    let net = |e: graze_net::NetError| e.to_string();
    let (ranks, error) = match (ranks, &exe) {
        (Ok(r), Some(_)) => (r, None),
        (Ok(_), None) => (
            Vec::new(),
            Some("no graze-agent executable found".to_string()),
        ),
        (Err(e), _) => (Vec::new(), Some(e)),
    };
    let header = CheckpointStream::Part {
        job,
        id,
        ranks: ranks.clone(),
        error: error.clone(),
    };
    graze_net::send(&mut send, &header).await.map_err(net)?;
    let mut end = StreamEnd {
        bytes: 0,
        error: None,
    };
    if let (None, Some(exe)) = (&error, exe) {
        match helper(&exe, &c, "checkpoint-pack", &dir, &ranks) {
            Err(e) => {
                end.error = Some(format!("cannot start the packer: {}", spawn::io_reason(&e)))
            }
            Ok(mut child) => {
                drop(child.stdin.take());
                let mut out = child.stdout.take();
                let started = Instant::now();
                let mut buf = vec![0u8; MAX_BLOCK.min(256 * 1024)];
                if let Some(o) = out.as_mut() {
                    loop {
                        let n = o.read(&mut buf).await.map_err(|e| e.to_string())?;
                        if n == 0 {
                            break;
                        }
                        graze_net::send_block(&mut send, &buf[..n])
                            .await
                            .map_err(net)?;
                        end.bytes += n as u64;
                        if let Some(r) = rate.filter(|r| *r > 0) {
                            let due = Duration::from_secs_f64(end.bytes as f64 / r as f64);
                            if let Some(wait) = due.checked_sub(started.elapsed()) {
                                tokio::time::sleep(wait).await;
                            }
                        }
                    }
                }
                if let Err(e) = helper_end(&mut child).await {
                    end.error = Some(e);
                }
            }
        }
        let _ = tx.send(Input::Packed { job, id }).await;
        graze_net::send_block(&mut send, &[]).await.map_err(net)?;
        graze_net::send(&mut send, &end).await.map_err(net)?;
    }
    let _ = send.finish();
    let reply: Option<StreamReply> = graze_net::recv(&mut recv).await.map_err(net)?;
    match (error, end.error, reply) {
        (Some(e), _, _) | (None, Some(e), _) => Err(e),
        (None, None, Some(StreamReply { error: Some(e) })) => {
            Err(format!("the scheduler refused it: {e}"))
        }
        (None, None, Some(_)) => Ok(()),
        (None, None, None) => Err("the scheduler closed the stream without a reply".into()),
    }
}

/// Receive a restore's data into `checkpoint-unpack`; its summary.
async fn receive_restore(
    exe: Option<PathBuf>,
    c: confine::Confinement,
    dir: PathBuf,
    ranks: Vec<u32>,
    send: &mut graze_net::quinn::SendStream,
    recv: &mut graze_net::quinn::RecvStream,
) -> Result<UnpackSummary, String> {
    let net = |e: graze_net::NetError| e.to_string();
    let exe = exe.ok_or("no graze-agent executable found")?;
    let mut child = helper(&exe, &c, "checkpoint-unpack", &dir, &ranks)
        .map_err(|e| format!("cannot start the unpacker: {}", spawn::io_reason(&e)))?;
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let reading = tokio::spawn(async move {
        let mut s = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_string(&mut s).await;
        }
        s
    });
    let mut failed = None;
    while let Some(block) = graze_net::recv_block(recv).await.map_err(net)? {
        if let Some(w) = stdin.as_mut() {
            if w.write_all(&block).await.is_err() {
                // The unpacker refused and exited; drain the rest, its reason follows.
                stdin = None;
            }
        }
    }
    drop(stdin);
    let end: Option<StreamEnd> = graze_net::recv(recv).await.map_err(net)?;
    if let Some(StreamEnd { error: Some(e), .. }) = end {
        failed = Some(format!("the scheduler could not send it: {e}"));
    }
    let ended = helper_end(&mut child).await;
    let out = reading.await.unwrap_or_default();
    let result = match (failed, ended) {
        (Some(e), _) | (None, Err(e)) => Err(e),
        (None, Ok(())) => serde_json::from_str::<UnpackSummary>(out.trim())
            .map_err(|e| format!("the unpacker's summary is unreadable: {e}")),
    };
    let reply = StreamReply {
        error: result.as_ref().err().cloned(),
    };
    let _ = graze_net::send(send, &reply).await;
    let _ = send.finish();
    result
}

impl Agent {
    /// Accept the streams the scheduler opens (restores) on `conn`.
    pub(super) fn accept_streams(
        &self,
        gen: u64,
        conn: graze_net::quinn::Connection,
    ) -> tokio::task::JoinHandle<()> {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            while let Ok((send, mut recv)) = conn.accept_bi().await {
                match graze_net::recv::<CheckpointStream>(&mut recv).await {
                    Ok(Some(CheckpointStream::Restore {
                        job,
                        epoch,
                        id,
                        error,
                    })) => {
                        let input = Input::RestoreStream {
                            gen,
                            job,
                            epoch,
                            id,
                            error,
                            streams: Box::new((send, recv)),
                        };
                        if tx.send(input).await.is_err() {
                            return;
                        }
                    }
                    Ok(other) => tracing::warn!(?other, "unexpected stream from the scheduler"),
                    Err(e) => tracing::warn!(error = %e, "unreadable stream from the scheduler"),
                }
            }
        })
    }

    pub(super) fn job_in_grace(&self, job: JobId) -> bool {
        self.ckpts.get(&job).is_some_and(|c| c.grace)
    }

    /// `CheckpointSetup`: make the directory, and wait for the restore if there is one.
    pub(super) async fn on_checkpoint_setup(
        &mut self,
        job: JobId,
        epoch: u64,
        dir: String,
        ranks: Vec<u32>,
        restore: Option<graze_proto::RestoreRef>,
        signal: i32,
    ) {
        let dir = PathBuf::from(dir);
        let confine = self.job_confine(job);
        if let Err(e) = make_dir(&confine, &dir) {
            let what = format!("no checkpoint directory on {}: {e}", self.cfg.name);
            self.send_job(JobMsg::JobNote { job, what }).await;
        }
        let restore_until = restore.map(|_| Instant::now() + RESTORE_WAIT);
        self.ckpts.insert(
            job,
            NodeCkpt {
                epoch,
                dir,
                ranks,
                signal,
                restore_until,
                deferred: Vec::new(),
                grace: false,
                pack_after_kill: None,
                sending: false,
                packing: None,
                cancelled: false,
            },
        );
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.early_restores)
            .into_iter()
            .partition(|r| r.job == job && r.epoch == epoch);
        self.early_restores = later;
        for r in now {
            self.on_restore_stream(r.job, r.epoch, r.id, r.error, r.streams);
        }
    }

    /// True for a launch (`StartJob`, `SpawnRemote`) of a run whose restore is awaited here.
    pub(super) fn defer_launch_needed(&self, msg: &SchedulerMsg) -> bool {
        let (job, epoch) = match msg {
            SchedulerMsg::StartJob { job, epoch, .. }
            | SchedulerMsg::SpawnRemote { job, epoch, .. } => (*job, *epoch),
            _ => return false,
        };
        self.ckpts
            .get(&job)
            .is_some_and(|c| c.epoch == epoch && c.restore_until.is_some())
    }

    /// Hold back `msg` (see [`Agent::defer_launch_needed`]) until the restore is done.
    pub(super) fn defer_launch(&mut self, msg: SchedulerMsg) {
        let job = match &msg {
            SchedulerMsg::StartJob { job, .. } | SchedulerMsg::SpawnRemote { job, .. } => *job,
            _ => return,
        };
        if let Some(c) = self.ckpts.get_mut(&job) {
            tracing::info!(%job, "holding back a launch until the checkpoint is restored");
            c.deferred.push(msg);
        }
    }

    /// A restore stream arrived.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_restore_stream(
        &mut self,
        job: JobId,
        epoch: u64,
        id: CheckpointId,
        error: Option<String>,
        streams: (graze_net::quinn::SendStream, graze_net::quinn::RecvStream),
    ) {
        let Some(c) = self.ckpts.get(&job).filter(|c| c.epoch == epoch) else {
            let until = Instant::now() + RESTORE_WAIT;
            self.early_restores.push(EarlyRestore {
                job,
                epoch,
                id,
                error,
                streams,
                until,
            });
            return;
        };
        let (mut send, mut recv) = streams;
        let tx = self.tx.clone();
        let exe = guard::agent_exe(&self.cfg.launcher);
        let (dir, ranks) = (c.dir.clone(), c.ranks.clone());
        let conf = self.job_confine(job);
        tokio::spawn(async move {
            let result = match error {
                Some(e) => {
                    let _ = graze_net::send(&mut send, &StreamReply { error: None }).await;
                    let _ = send.finish();
                    Err(e)
                }
                None => receive_restore(exe, conf, dir, ranks, &mut send, &mut recv).await,
            };
            let _ = tx
                .send(Input::Restored {
                    job,
                    epoch,
                    id,
                    result,
                })
                .await;
        });
    }

    /// A restore finished (or failed, or timed out: `id` None): note it, go on with the run.
    pub(super) async fn on_restored(
        &mut self,
        job: JobId,
        epoch: u64,
        id: Option<CheckpointId>,
        result: Result<UnpackSummary, String>,
    ) {
        let Some(c) = self
            .ckpts
            .get_mut(&job)
            .filter(|c| c.epoch == epoch && c.restore_until.is_some())
        else {
            return;
        };
        c.restore_until = None;
        let deferred = std::mem::take(&mut c.deferred);
        let node = self.cfg.name.clone();
        let what = match (&result, id) {
            (Ok(s), Some(id)) => {
                let ranks: Vec<String> = s.ranks.iter().map(u32::to_string).collect();
                format!(
                    "restored checkpoint {id} on {node}: ranks {} ({} files, {})",
                    if ranks.is_empty() {
                        "none".to_string()
                    } else {
                        ranks.join(",")
                    },
                    s.files,
                    human_bytes(s.bytes)
                )
            }
            (Err(e), _) => format!("restore failed on {node}: {e}; the run starts without it"),
            (Ok(_), None) => format!("restore failed on {node}; the run starts without it"),
        };
        self.send_job(JobMsg::JobNote { job, what }).await;
        for msg in deferred {
            Box::pin(self.on_scheduler(msg)).await;
        }
    }

    /// Restores that did not come in time.
    pub(super) async fn restore_timeouts(&mut self, now: Instant) {
        let (late, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.early_restores)
            .into_iter()
            .partition(|r| now >= r.until);
        self.early_restores = keep;
        for r in late {
            let (mut send, _) = r.streams;
            tokio::spawn(async move {
                let reply = StreamReply {
                    error: Some("no such run on this node".into()),
                };
                let _ = graze_net::send(&mut send, &reply).await;
                let _ = send.finish();
            });
        }
        let late: Vec<(JobId, u64)> = self
            .ckpts
            .iter()
            .filter(|(_, c)| c.restore_until.is_some_and(|t| now >= t))
            .map(|(j, c)| (*j, c.epoch))
            .collect();
        for (job, epoch) in late {
            let e = format!("it did not arrive within {}s", RESTORE_WAIT.as_secs());
            self.on_restored(job, epoch, None, Err(e)).await;
        }
    }

    /// `Checkpoint`: signal, wait for the markers (off-task), then go on in
    /// [`Agent::on_markers`].
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn on_checkpoint(
        &mut self,
        job: JobId,
        epoch: u64,
        id: CheckpointId,
        ranks: Vec<u32>,
        signal: Option<i32>,
        grace_ms: u64,
        stop: bool,
    ) {
        let set = self
            .jobs
            .get(&job)
            .filter(|j| !j.killing && j.epoch == epoch)
            .map(|j| j.procs());
        let dir = match self.ckpts.get_mut(&job) {
            Some(c) if c.epoch == epoch => {
                c.grace |= stop;
                c.dir.clone()
            }
            _ => {
                tracing::warn!(%job, epoch, "checkpoint for a run without a checkpoint setup here");
                // Still answer with a part (its error), and with `stop` vacate first.
                let why = format!("no checkpoint setup for run {epoch} on {}", self.cfg.name);
                self.ckpts.entry(job).or_insert(NodeCkpt {
                    epoch,
                    dir: PathBuf::new(),
                    ranks: Vec::new(),
                    signal: graze_proto::DEFAULT_CHECKPOINT_SIGNAL,
                    restore_until: None,
                    deferred: Vec::new(),
                    grace: false,
                    pack_after_kill: None,
                    sending: false,
                    packing: None,
                    cancelled: false,
                });
                self.conclude(job, id, Err(why), stop);
                return;
            }
        };
        if let Some(prev) = self.ckpts.get(&job).and_then(|c| c.packing) {
            if !stop {
                let why = format!(
                    "checkpoint {prev} is still being sent from there, so this one was not asked"
                );
                self.conclude(job, id, Err(why), false);
                return;
            }
        }
        let grace = Duration::from_millis(grace_ms);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            // First this node's ranks' markers of an earlier checkpoint go (a periodic one
            // left them), so only markers written for this one count; then the signal.
            let (d, r, s) = (dir.clone(), ranks.clone(), set.clone());
            let _ = tokio::task::spawn_blocking(move || {
                remove_markers(&d, &r);
                if let Some(set) = s {
                    if stop {
                        set.cont();
                    }
                    if let Some(sig) = signal {
                        crate::jobs::signal::signal_program(&set, sig);
                    }
                }
            })
            .await;
            let until = Instant::now() + grace;
            let have = loop {
                let d = dir.clone();
                let r = ranks.clone();
                let have = tokio::task::spawn_blocking(move || markers(&d, &r))
                    .await
                    .unwrap_or_default();
                let gone = match &set {
                    Some(s) => {
                        let s = s.clone();
                        tokio::task::spawn_blocking(move || s.members().is_empty())
                            .await
                            .unwrap_or(true)
                    }
                    None => true,
                };
                if have.len() == ranks.len() || (stop && gone) || Instant::now() >= until {
                    break have;
                }
                tokio::time::sleep(MARKER_POLL).await;
            };
            let verdict = marker_verdict(&ranks, &have, grace);
            let _ = tx
                .send(Input::Markers {
                    job,
                    epoch,
                    id,
                    verdict,
                    stop,
                })
                .await;
        });
    }

    /// The grace is over: with `stop` vacate and pack afterwards, else pack now.
    pub(super) fn on_markers(
        &mut self,
        job: JobId,
        epoch: u64,
        id: CheckpointId,
        verdict: Result<Vec<u32>, String>,
        stop: bool,
    ) {
        let Some(c) = self.ckpts.get_mut(&job).filter(|c| c.epoch == epoch) else {
            return;
        };
        if c.cancelled {
            return;
        }
        self.conclude(job, id, verdict, stop);
    }

    /// Send this node's part: with `stop` once the job's processes here are gone (vacate
    /// them first, if any), else now.
    fn conclude(
        &mut self,
        job: JobId,
        id: CheckpointId,
        verdict: Result<Vec<u32>, String>,
        stop: bool,
    ) {
        if stop {
            if let Some(c) = self.ckpts.get_mut(&job) {
                c.pack_after_kill = Some((id, verdict));
            }
            let grace = self.cfg.policy.vacate_grace;
            if self.jobs.contains_key(&job) {
                self.kill_job(job, Some(grace));
            } else {
                // No process here at all: pack now, clear after the reply.
                self.start_pack(job);
            }
        } else {
            self.send_part(job, id, verdict, false);
        }
    }

    /// A cancel during a checkpoint: no part.
    pub(super) fn checkpoint_cancelled(&mut self, job: JobId) {
        if let Some(c) = self.ckpts.get_mut(&job) {
            c.cancelled = true;
            c.pack_after_kill = None;
            c.grace = false;
        }
    }

    /// The job's processes are gone: if a stopping checkpoint waits for that, pack now and
    /// return true (the clear follows the reply).
    pub(super) fn start_pack(&mut self, job: JobId) -> bool {
        let Some(c) = self.ckpts.get_mut(&job) else {
            return false;
        };
        if c.sending {
            return true;
        }
        let Some((id, verdict)) = c.pack_after_kill.take() else {
            return false;
        };
        self.send_part(job, id, verdict, true);
        true
    }

    fn send_part(
        &mut self,
        job: JobId,
        id: CheckpointId,
        verdict: Result<Vec<u32>, String>,
        clear: bool,
    ) {
        let Some(c) = self.ckpts.get_mut(&job) else {
            return;
        };
        c.sending = clear;
        if verdict.is_ok() {
            c.packing = Some(id);
        }
        let dir = c.dir.clone();
        let tx = self.tx.clone();
        let conn = match &self.conn {
            Conn::Up { conn, .. } => Some(conn.clone()),
            _ => None,
        };
        let exe = guard::agent_exe(&self.cfg.launcher);
        let conf = self.job_confine(job);
        let rate = self.cfg.checkpoint_rate;
        tokio::spawn(async move {
            let result = match conn {
                Some(conn) => {
                    send_part(conn, exe, conf, dir, job, id, verdict, rate, tx.clone()).await
                }
                None => Err("not connected to the scheduler".into()),
            };
            let _ = tx
                .send(Input::PartSent {
                    job,
                    id,
                    result,
                    clear,
                })
                .await;
        });
    }

    /// The packer of `id` is done with the files: the next periodic checkpoint may signal.
    pub(super) fn on_packed(&mut self, job: JobId, id: CheckpointId) {
        if let Some(c) = self.ckpts.get_mut(&job) {
            if c.packing == Some(id) {
                c.packing = None;
            }
        }
    }

    /// A part went out (or not); after a stopping checkpoint, clear.
    pub(super) async fn on_part_sent(
        &mut self,
        job: JobId,
        id: CheckpointId,
        result: Result<(), String>,
        clear: bool,
    ) {
        match &result {
            Ok(()) => tracing::info!(%job, %id, "checkpoint part stored"),
            Err(e) => tracing::warn!(%job, %id, error = %e, "checkpoint part not stored"),
        }
        if let Some(c) = self.ckpts.get_mut(&job) {
            if c.packing == Some(id) {
                c.packing = None;
            }
        }
        if clear {
            if let Some(c) = self.ckpts.get_mut(&job) {
                c.sending = false;
                c.grace = false;
            }
            self.clear(job).await;
        }
    }

    /// At a clear: remove this node's rank entries and, if empty, the directory.
    pub(super) fn forget_checkpoint(&mut self, job: JobId) {
        let Some(c) = self.ckpts.remove(&job) else {
            return;
        };
        if !c.dir.is_absolute() {
            return;
        }
        // Root only removes here: `remove_dir_all` never follows a symlink. Done in place, so
        // the next run's setup (which comes after this clear) finds the directory clean.
        if let Err(e) = crate::jobs::checkpoint::clear_ranks(&c.dir, &c.ranks) {
            tracing::warn!(%job, error = %e, "cannot remove the checkpoint files");
        }
        let _ = std::fs::remove_dir(&c.dir);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn missing_markers_are_named() {
        assert_eq!(
            marker_verdict(&[0, 1], &[1, 0], Duration::from_secs(60)),
            Ok(vec![1, 0])
        );
        assert_eq!(
            marker_verdict(&[0, 1, 2, 3], &[0, 1], Duration::from_secs(60)).unwrap_err(),
            "ranks 2,3 wrote no marker within 60s"
        );
        assert_eq!(
            marker_verdict(&[4], &[], Duration::from_millis(1500)).unwrap_err(),
            "rank 4 wrote no marker within 1s"
        );
    }

    #[test]
    fn markers_are_found_by_name() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("2.done"), b"").unwrap();
        std::fs::create_dir(t.path().join("3")).unwrap();
        assert_eq!(markers(t.path(), &[2, 3]), vec![2]);
    }
}
