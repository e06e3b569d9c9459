//! Traced runs (`graze submit --trace`, issue 16) on this node: the tracer's environment
//! (`GRAZE_TRACE_DIR`, `GRAZE_TRACE_MAX_BYTES`, `LD_PRELOAD` of the flavour's library,
//! `PYTHONPATH` with `graze_trace.py`), the clock sync with the scheduler (NTP-style bursts on
//! a stream of their own, at the start, every [`SYNC_EVERY`] and at the end) and the upload of
//! the node's trace files before `JobCleared`.

use super::state::{Agent, Conn, Input};
use crate::tracer::Flavour;
use graze_proto::{
    CheckpointStream, ClockPing, ClockPong, JobId, JobMsg, StreamEnd, StreamReply, TraceFileHead,
    TraceRun, CLOCK_FILE, MAX_BLOCK,
};
use graze_trace::ClockSample;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A burst of clock probes this often during a traced run.
pub(super) const SYNC_EVERY: Duration = Duration::from_secs(3);
/// Probes per burst; the one with the lowest round trip is kept.
const BURST: u64 = 8;
/// How long one burst may take.
const BURST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an upload may take before the node clears without it.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// This node's part of a traced run.
pub(super) struct NodeTrace {
    pub(super) epoch: u64,
    pub(super) run: TraceRun,
    /// `GRAZE_TRACE_DIR`.
    pub(super) dir: PathBuf,
    pub(super) samples: Vec<ClockSample>,
    pub(super) next_sync: Instant,
    pub(super) syncing: bool,
    /// The upload: not started, running, or done (the clear goes on).
    pub(super) upload: Upload,
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub(super) enum Upload {
    No,
    Running,
    Done,
}

/// One NTP-style exchange: sent at `t0`, answered with the scheduler's `server`, back at `t1`
/// (node clock, ns). The offset is the scheduler's clock minus ours at the midpoint; the true
/// one lies within ±RTT/2 of it.
pub(crate) fn sample(t0: u64, server: u64, t1: u64) -> ClockSample {
    let rtt = t1.saturating_sub(t0);
    let mid = t0 + rtt / 2;
    ClockSample {
        local_ns: mid,
        offset_ns: (i128::from(server) - i128::from(mid)) as i64,
        rtt_ns: rtt,
    }
}

/// One burst of probes on a stream of its own; the exchange with the lowest round trip.
pub(crate) async fn burst(conn: &graze_net::quinn::Connection) -> Result<ClockSample, String> {
    let run = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let _ = send.set_priority(10);
        let net = |e: graze_net::NetError| e.to_string();
        graze_net::send(&mut send, &CheckpointStream::Clock)
            .await
            .map_err(net)?;
        let mut best: Option<ClockSample> = None;
        for seq in 0..BURST {
            let t0 = graze_net::monotonic_ns();
            graze_net::send(&mut send, &ClockPing { seq })
                .await
                .map_err(net)?;
            let pong = graze_net::recv::<ClockPong>(&mut recv)
                .await
                .map_err(net)?
                .ok_or("the scheduler closed the clock stream")?;
            let t1 = graze_net::monotonic_ns();
            if pong.seq != seq {
                return Err(format!("clock answer {} for probe {seq}", pong.seq));
            }
            let s = sample(t0, pong.now_ns, t1);
            if best.is_none_or(|b| s.rtt_ns < b.rtt_ns) {
                best = Some(s);
            }
        }
        let _ = send.finish();
        best.ok_or_else(|| "no probe".to_string())
    };
    tokio::time::timeout(BURST_TIMEOUT, run)
        .await
        .map_err(|_| "the clock probes timed out".to_string())?
}

/// The flavour of a main command (`mpiexec`, `mpirun.openmpi`, ...): the registered launcher
/// it resolves to, else its name; else the node's first (default) flavour.
pub(super) fn main_flavour(program: &str, mpi: &[graze_proto::MpiFlavour]) -> Option<Flavour> {
    let resolved = if program.contains('/') {
        Some(PathBuf::from(program))
    } else {
        crate::config::find_on_path(program)
    }
    .and_then(|p| std::fs::canonicalize(p).ok());
    if let Some(r) = &resolved {
        for f in mpi {
            if std::fs::canonicalize(&f.launcher).is_ok_and(|l| &l == r) {
                return kind(&f.kind);
            }
        }
    }
    let base = Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name_flavour(&base).or_else(|| mpi.first().and_then(|f| kind(&f.kind)))
}

/// The flavour a launcher's or daemon's name says.
fn name_flavour(word: &str) -> Option<Flavour> {
    let base = word.rsplit('/').next().unwrap_or(word);
    if base.contains("openmpi") || ["orted", "prted", "orterun", "prterun"].contains(&base) {
        Some(Flavour::OpenMpi)
    } else if base.contains("mpich") || base.contains("hydra") {
        Some(Flavour::Mpich)
    } else {
        None
    }
}

/// The flavour of a remote launch (`hydra_pmi_proxy ...` → MPICH, `orted ...` → Open MPI).
pub(super) fn remote_flavour(words: &[String], mpi: &[graze_proto::MpiFlavour]) -> Option<Flavour> {
    words
        .iter()
        .flat_map(|w| w.split_whitespace())
        .find_map(name_flavour)
        .or_else(|| mpi.first().and_then(|f| kind(&f.kind)))
}

fn kind(k: &str) -> Option<Flavour> {
    match k {
        "mpich" => Some(Flavour::Mpich),
        "openmpi" => Some(Flavour::OpenMpi),
        _ => None,
    }
}

fn flavour_name(f: Flavour) -> &'static str {
    match f {
        Flavour::Mpich => "MPICH",
        Flavour::OpenMpi => "Open MPI",
    }
}

/// Open a file of the trace directory (an open directory) without following links; only
/// regular files, at most `max` bytes read.
fn read_entry(dir: &std::fs::File, name: &str, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd};
    let c = std::ffi::CString::new(name)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: openat on a directory fd we hold and a NUL-terminated name; the fd returned is
    // owned by the File below.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let f = unsafe { std::fs::File::from_raw_fd(fd) };
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut out = Vec::new();
    f.take(max).read_to_end(&mut out)?;
    Ok(out)
}

/// The node's trace files: the tracer's (`rank-N.gzt`, `pid-N.gzt`, `note-N.txt`) that
/// `take` picks, under `max` bytes together, and what was left out.
pub(super) fn collect(
    dir: &Path,
    max: u64,
    take: impl Fn(&str) -> bool,
) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags_nofollow()
        .open(dir);
    let Ok(d) = opened else {
        return (out, skipped);
    };
    use std::os::fd::AsRawFd;
    let Ok(entries) = std::fs::read_dir(format!("/proc/self/fd/{}", d.as_raw_fd())) else {
        return (out, skipped);
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| graze_proto::trace_file_name_ok(n) && n != CLOCK_FILE && take(n))
        .collect();
    names.sort();
    let mut total = 0u64;
    for name in names {
        match read_entry(&d, &name, max.saturating_sub(total).saturating_add(1)) {
            Ok(b) if total + b.len() as u64 > max => {
                skipped.push(format!("'{name}': past the job's max_trace_bytes"))
            }
            Ok(b) => {
                total += b.len() as u64;
                out.push((name, b));
            }
            Err(e) => skipped.push(format!("'{name}': {e}")),
        }
    }
    (out, skipped)
}

trait NoFollow {
    fn custom_flags_nofollow(&mut self) -> &mut Self;
}

impl NoFollow for std::fs::OpenOptions {
    fn custom_flags_nofollow(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
    }
}

/// Send the node's files on a stream of their own; the scheduler's verdict.
async fn upload(
    conn: graze_net::quinn::Connection,
    job: JobId,
    epoch: u64,
    files: Vec<(String, Vec<u8>)>,
) -> Result<(), String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let _ = send.set_priority(-1);
    let net = |e: graze_net::NetError| e.to_string();
    let heads = files
        .iter()
        .map(|(name, b)| TraceFileHead {
            name: name.clone(),
            bytes: b.len() as u64,
        })
        .collect();
    graze_net::send(
        &mut send,
        &CheckpointStream::Trace {
            job,
            epoch,
            files: heads,
        },
    )
    .await
    .map_err(net)?;
    let mut bytes = 0u64;
    for (_, b) in &files {
        for c in b.chunks(MAX_BLOCK) {
            graze_net::send_block(&mut send, c).await.map_err(net)?;
            bytes += c.len() as u64;
        }
    }
    graze_net::send_block(&mut send, &[]).await.map_err(net)?;
    graze_net::send(&mut send, &StreamEnd { bytes, error: None })
        .await
        .map_err(net)?;
    let _ = send.finish();
    match graze_net::recv::<StreamReply>(&mut recv)
        .await
        .map_err(net)?
    {
        Some(StreamReply { error: None }) => Ok(()),
        Some(StreamReply { error: Some(e) }) => Err(e),
        None => Err("the scheduler did not answer".into()),
    }
}

impl Agent {
    /// A traced run's first launch here: the trace directory (in the job directory, the job
    /// user's) and the clock sync. The environment for the command, or `None` (with a job
    /// note) when this node has no tracer for the flavour.
    pub(super) async fn trace_env(
        &mut self,
        job: JobId,
        epoch: u64,
        run: TraceRun,
        flavour: Option<Flavour>,
        env: &[(String, String)],
    ) -> Vec<(String, String)> {
        let dir = PathBuf::from(&run.dir);
        self.traces.entry(job).or_insert_with(|| NodeTrace {
            epoch,
            run: run.clone(),
            dir: dir.clone(),
            samples: Vec::new(),
            next_sync: Instant::now(),
            syncing: false,
            upload: Upload::No,
        });
        let confine = self.job_confine(job);
        if let Err(e) = super::checkpoint::make_dir(&confine, &dir) {
            let what = format!(
                "not traced on node '{}': cannot make the trace directory: {e}",
                self.cfg.name
            );
            self.send_job(JobMsg::JobNote { job, what }).await;
            return Vec::new();
        }
        let lib_dir = self.cfg.spool.join("tracer");
        let lib = match flavour {
            None => Err("no MPI flavour is known here".to_string()),
            Some(f) => match crate::tracer::install(&lib_dir, f) {
                Ok(Some(p)) => Ok(p),
                Ok(None) => Err(format!(
                    "graze-agent was built without the {} tracer",
                    flavour_name(f)
                )),
                Err(e) => Err(format!(
                    "cannot install the tracer in '{}': {e}",
                    lib_dir.display()
                )),
            },
        };
        let lib = match lib {
            Ok(l) => l,
            Err(why) => {
                let what = format!(
                    "not traced on node '{}': {why}; the job runs untraced",
                    self.cfg.name
                );
                self.send_job(JobMsg::JobNote { job, what }).await;
                return Vec::new();
            }
        };
        let mut vars = vec![
            (
                "GRAZE_TRACE_DIR".to_string(),
                dir.to_string_lossy().into_owned(),
            ),
            (
                "GRAZE_TRACE_MAX_BYTES".to_string(),
                run.rank_bytes.to_string(),
            ),
        ];
        let preload = match env.iter().find(|(k, _)| k == "LD_PRELOAD") {
            Some((_, v)) if !v.is_empty() => format!("{}:{v}", lib.display()),
            _ => lib.to_string_lossy().into_owned(),
        };
        vars.push(("LD_PRELOAD".into(), preload));
        let py = lib_dir.join("python");
        let helper = std::fs::create_dir_all(&py).and_then(|()| {
            write_if_changed(&py.join("graze_trace.py"), crate::tracer::PYTHON_HELPER)
        });
        match helper {
            Ok(()) => {
                let path = match env.iter().find(|(k, _)| k == "PYTHONPATH") {
                    Some((_, v)) if !v.is_empty() => format!("{}:{v}", py.display()),
                    _ => py.to_string_lossy().into_owned(),
                };
                vars.push(("PYTHONPATH".into(), path));
            }
            Err(e) => tracing::warn!(error = %e, "cannot write graze_trace.py"),
        }
        vars
    }

    /// The 50 ms tick: a clock burst for each traced job here that is due.
    pub(super) fn trace_tick(&mut self, now: Instant) {
        let Conn::Up { conn, .. } = &self.conn else {
            return;
        };
        for (job, t) in self.traces.iter_mut() {
            if t.syncing || t.upload != Upload::No || now < t.next_sync {
                continue;
            }
            t.syncing = true;
            let (conn, tx, job) = (conn.clone(), self.tx.clone(), *job);
            tokio::spawn(async move {
                let result = burst(&conn).await;
                let _ = tx.send(Input::ClockSample { job, result }).await;
            });
        }
    }

    pub(super) fn on_clock_sample(&mut self, job: JobId, result: Result<ClockSample, String>) {
        let Some(t) = self.traces.get_mut(&job) else {
            return;
        };
        t.syncing = false;
        t.next_sync = Instant::now() + SYNC_EVERY;
        match result {
            Ok(s) => t.samples.push(s),
            Err(e) => tracing::debug!(%job, error = %e, "clock probe failed"),
        }
    }

    /// At the clear of a traced job: start the upload (a last clock burst, the files, the
    /// scheduler's answer) and return true; the clear goes on at [`Input::TraceSent`].
    pub(super) fn start_trace_upload(&mut self, job: JobId) -> bool {
        let Some(t) = self.traces.get_mut(&job) else {
            return false;
        };
        match t.upload {
            Upload::Running => return true,
            Upload::Done => return false,
            Upload::No => {}
        }
        t.upload = Upload::Running;
        let conn = match &self.conn {
            Conn::Up { conn, .. } => Some(conn.clone()),
            _ => None,
        };
        let (dir, run, epoch, mut samples) =
            (t.dir.clone(), t.run.clone(), t.epoch, t.samples.clone());
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = async {
                let conn = conn.ok_or("not connected to the scheduler")?;
                if let Ok(s) = burst(&conn).await {
                    samples.push(s);
                }
                let (mut files, skipped) = tokio::task::spawn_blocking(move || {
                    collect(&dir, run.node_bytes, |n| run.takes(n))
                })
                .await
                .map_err(|e| e.to_string())?;
                let clock = serde_json::to_vec(&samples).map_err(|e| e.to_string())?;
                files.push((CLOCK_FILE.to_string(), clock));
                tokio::time::timeout(UPLOAD_TIMEOUT, upload(conn, job, epoch, files))
                    .await
                    .map_err(|_| "the upload timed out".to_string())??;
                Ok::<Vec<String>, String>(skipped)
            }
            .await;
            let _ = tx.send(Input::TraceSent { job, result }).await;
        });
        true
    }

    /// The upload ended: notes for what went wrong, then the clear goes on.
    pub(super) async fn on_trace_sent(&mut self, job: JobId, result: Result<Vec<String>, String>) {
        if let Some(t) = self.traces.get_mut(&job) {
            t.upload = Upload::Done;
        }
        let node = self.cfg.name.clone();
        match result {
            Ok(skipped) => {
                for s in skipped {
                    let what = format!("trace file left out on node '{node}': {s}");
                    self.send_job(JobMsg::JobNote { job, what }).await;
                }
            }
            Err(e) => {
                tracing::warn!(%job, error = %e, "trace not uploaded");
                let what = format!("trace of node '{node}' not sent: {e}");
                self.send_job(JobMsg::JobNote { job, what }).await;
            }
        }
        self.clear(job).await;
    }

    /// At the clear: forget the job's trace and remove this node's files (the directory too
    /// once empty: other nodes on this machine may still need theirs).
    pub(super) fn forget_trace(&mut self, job: JobId) {
        let Some(t) = self.traces.remove(&job) else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(&t.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if t.run.takes(&name) {
                // Root only unlinks here: never follows a symlink.
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = std::fs::remove_dir(&t.dir);
    }
}

/// Write `text` to `path` (0644) unless it already holds it.
fn write_if_changed(path: &Path, text: &str) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|b| b == text.as_bytes()) {
        return Ok(());
    }
    let tmp = path.with_extension("py.tmp");
    std::fs::write(&tmp, text)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_the_midpoint_offset_and_the_round_trip() {
        // Sent at 1000, the scheduler (5 s ahead) answered at 5_000_001_100, back at 1200.
        let s = sample(1000, 5_000_001_100, 1200);
        assert_eq!(s.rtt_ns, 200);
        assert_eq!(s.local_ns, 1100);
        assert_eq!(s.offset_ns, 5_000_000_000);
        // A scheduler clock behind ours gives a negative offset.
        assert_eq!(sample(10_000, 100, 10_010).offset_ns, 100 - 10_005);
    }

    #[test]
    fn flavours_follow_the_launcher_names() {
        let mpi = vec![graze_proto::MpiFlavour {
            kind: "mpich".into(),
            launcher: "/nonexistent/mpiexec".into(),
            version: String::new(),
        }];
        assert_eq!(
            main_flavour("mpirun.openmpi-nowhere", &[]),
            Some(Flavour::OpenMpi)
        );
        assert_eq!(main_flavour("/x/mpiexec.mpich", &[]), Some(Flavour::Mpich));
        assert_eq!(main_flavour("sh", &mpi), Some(Flavour::Mpich));
        assert_eq!(main_flavour("sh", &[]), None);
        let hydra = vec!["/usr/bin/hydra_pmi_proxy --control-port x".to_string()];
        assert_eq!(remote_flavour(&hydra, &[]), Some(Flavour::Mpich));
        let orted = vec!["orted".to_string(), "-mca".to_string()];
        assert_eq!(remote_flavour(&orted, &mpi), Some(Flavour::OpenMpi));
    }

    #[test]
    fn collection_reads_only_trace_files_and_no_links() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("rank-0.gzt"), b"abc").unwrap();
        std::fs::write(d.path().join("note-9.txt"), b"hello\n").unwrap();
        std::fs::write(d.path().join("other.txt"), b"no").unwrap();
        std::fs::write(d.path().join("secret"), b"s3cret").unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), d.path().join("rank-1.gzt")).unwrap();
        let all = |_: &str| true;
        let (files, skipped) = collect(d.path(), 1000, all);
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["note-9.txt", "rank-0.gzt"]);
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert!(skipped[0].contains("rank-1.gzt"));
        // Past the limit: left out and said so.
        let (files, skipped) = collect(d.path(), 5, all);
        assert_eq!(files.len(), 1);
        assert!(
            skipped.iter().any(|s| s.contains("max_trace_bytes")),
            "{skipped:?}"
        );
        // A directory that is a symlink is not followed.
        let link = d.path().join("linked");
        std::os::unix::fs::symlink(d.path(), &link).unwrap();
        assert!(collect(&link, 1000, all).0.is_empty());
        // Only what the node takes.
        let (files, _) = collect(d.path(), 1000, |n| n.starts_with("rank-"));
        assert_eq!(files.len(), 1);
    }
}
