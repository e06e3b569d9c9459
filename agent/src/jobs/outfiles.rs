//! Output files: `graze submit --stdout PATTERN --stderr PATTERN` ([`graze_proto::Pattern`]).
//!
//! The main node's agent sees every rank's lines (hydra forwards them to mpiexec, and
//! `hydra::Relabel` puts each rank's lines back together). Besides streaming them to the
//! scheduler (`graze logs`), it hands the main command's lines to a writer process, which
//! appends them to the files the patterns name, relative to the job's working directory.
//!
//! Security: the agent runs as root, the job as its unprivileged user, and the patterns and
//! the working directory are the user's to choose. A root process opening those paths could
//! be made to write through a symlink the job planted, or into a directory the user cannot
//! write. So the files are never opened by root: the writer is `graze-agent output-writer`
//! (a hidden subcommand of the agent's own binary), started through the same
//! [`Confinement`] as job processes: it drops to the job's user (groups, gid, uid) before
//! `exec`, and every open, rename and write it makes is checked by the kernel against that
//! user's rights. A symlink to a file the user may not write fails with "Permission denied";
//! one to the user's own file is the user's own business. This needs no path checks of our own
//! (which would race with the job changing the paths between check and use).
//!
//! The writer is not part of the job's process set (own process group, no job tag, not in the
//! job's cgroup): killing or suspending the job does not lose or stop its last lines. It
//! reads records from its stdin until end of file, which comes when the main command's
//! output ends (the [`OutFiles`] handle is dropped with the last reader) or the agent dies.
//!
//! Routing, in order:
//! - a line goes to the stderr pattern's file if it came on stderr and `--stderr` was given,
//!   else to the stdout pattern's file (as in Slurm: without `--stderr` both streams share one
//!   file, in arrival order);
//! - with `%r` each rank has its own file; lines without a rank (mpiexec's own messages, or
//!   every line of a command that is not an MPI launcher) go to rank 0's file. Without `%r`,
//!   all ranks' lines go to the one file, in the order they arrived;
//! - attempts: the file of attempt 1 is created afresh (truncated). A later attempt whose
//!   pattern has no `%n` first renames a file already at its path to the name
//!   [`graze_proto::attempt_aside`] gives (`out-7-0.txt` → `out-7-0.attempt1.txt` before
//!   attempt 2; a free `.2`, `.3`, ... is added when that name is taken too), so the plain
//!   name always holds the latest attempt and no attempt's file is overwritten.
//!
//! A file that cannot be created or written is reported once on the writer's stderr; the
//! agent turns each report into a `JobNote` (an event in `graze show`). The job runs on and
//! its lines still reach `graze logs`.
//!
//! Records on the writer's stdin: `stream: u8` (0 stdout, 1 stderr), `rank: u32` big-endian
//! (`u32::MAX`: none), `len: u32` big-endian, then `len` bytes of the line (no newline).

use crate::jobs::confine::Confinement;
use graze_proto::{attempt_aside, Pattern, PatternValues, Stream};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Records waiting for the writer; past this, lines are dropped from the files (not from
/// `graze logs`) and the drop is reported.
const QUEUE: usize = 16 * 1024;
/// Reports the writer makes at most; later ones are counted only.
const MAX_REPORTS: usize = 20;

/// Arguments of the hidden `graze-agent output-writer` subcommand.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct WriterArgs {
    /// The [`WriterSpec`], as JSON.
    #[arg(long)]
    pub spec: String,
}

/// What the writer writes where.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct WriterSpec {
    /// Relative patterns are relative to this directory (the job's working directory).
    pub dir: PathBuf,
    /// The `--stdout` pattern.
    pub stdout: String,
    /// The `--stderr` pattern; `None`: stderr goes to the stdout file.
    pub stderr: Option<String>,
    /// Values for the tokens other than `%r`.
    pub job: u64,
    /// `%n`.
    pub attempt: u64,
    /// `%a`.
    pub array_index: u64,
    /// `%A`.
    pub array_job: u64,
}

impl WriterSpec {
    /// The spec for a run: `%a`/`%A` from the array variables of the job's environment
    /// (`GRAZE_ARRAY_INDEX`, `GRAZE_ARRAY_JOB_ID`), else `0` and the job's own id.
    pub fn for_run(
        dir: PathBuf,
        stdout: String,
        stderr: Option<String>,
        job: u64,
        attempt: u64,
        env: &[(String, String)],
    ) -> WriterSpec {
        let var = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        };
        WriterSpec {
            dir,
            stdout,
            stderr,
            job,
            attempt: attempt.max(1),
            array_index: var("GRAZE_ARRAY_INDEX").unwrap_or(0),
            array_job: var("GRAZE_ARRAY_JOB_ID").unwrap_or(job),
        }
    }
}

/// The agent's handle on a run's writer: cheap to clone; the writer ends when the last clone
/// is dropped.
#[derive(Clone)]
pub(crate) struct OutFiles {
    tx: mpsc::Sender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
    /// True once the writer has exited and every report it made was handed on.
    done: tokio::sync::watch::Receiver<bool>,
}

/// One record for the writer's stdin.
fn record(stream: Stream, rank: Option<u32>, line: &str) -> Vec<u8> {
    let mut r = Vec::with_capacity(line.len() + 9);
    r.push(u8::from(stream == Stream::Stderr));
    r.extend_from_slice(&rank.unwrap_or(u32::MAX).to_be_bytes());
    let len = u32::try_from(line.len()).unwrap_or(u32::MAX);
    r.extend_from_slice(&len.to_be_bytes());
    r.extend_from_slice(&line.as_bytes()[..len as usize]);
    r
}

impl OutFiles {
    /// Start the writer for `spec` as the job's user. Each report it makes (a file it cannot
    /// create or write) is handed to `note`.
    pub(crate) fn start<F, Fut>(
        exe: &Path,
        confine: &Confinement,
        spec: &WriterSpec,
        note: F,
    ) -> std::io::Result<OutFiles>
    where
        F: Fn(String) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let json = serde_json::to_string(spec).map_err(std::io::Error::other)?;
        let mut cmd = tokio::process::Command::new(exe);
        // No cgroup: the writer is not a job process (see the module documentation).
        let _keep = confine.apply(&mut cmd, None)?;
        cmd.arg("output-writer")
            .arg("--spec")
            .arg(json)
            .process_group(0)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(false);
        let mut child = cmd.spawn()?;
        let mut stdin = child.stdin.take();
        let stderr = child.stderr.take();
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let lost = dropped.clone();
        let (done_tx, done) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            if let Some(w) = stdin.as_mut() {
                // An empty record (never a line's: those have a header) is `finish`'s end.
                while let Some(r) = rx.recv().await {
                    if r.is_empty() || w.write_all(&r).await.is_err() {
                        break;
                    }
                }
                let _ = w.shutdown().await;
            }
            drop(stdin);
            let _ = child.wait().await;
        });
        tokio::spawn(async move {
            if let Some(e) = stderr {
                let mut lines = tokio::io::BufReader::new(e).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    note(l).await;
                }
            }
            let n = lost.load(Ordering::Relaxed);
            if n > 0 {
                note(format!(
                    "{n} output lines were not written to the output files: the writer fell \
                     behind (they are in graze logs)"
                ))
                .await;
            }
            // The writer's stderr ends when it exits: its files are closed, its reports sent.
            let _ = done_tx.send(true);
        });
        Ok(OutFiles { tx, dropped, done })
    }

    /// The main command ended: end the writer's input and wait (at most `within`) until it
    /// has closed its files and its reports were handed on, so that a job counts as ended
    /// only once its output files are complete (a dependent job may read them). Lines that
    /// come later (from processes left behind) reach `graze logs` only.
    pub(crate) async fn finish(&self, within: std::time::Duration) {
        let mut done = self.done.clone();
        let end = async {
            let _ = self.tx.send(Vec::new()).await;
            let _ = done.wait_for(|d| *d).await;
        };
        if tokio::time::timeout(within, end).await.is_err() {
            tracing::warn!(
                within_s = within.as_secs_f64(),
                "the output-file writer did not finish; the job's end is reported anyway"
            );
        }
    }

    /// Hand one line to the writer; never waits (a full queue drops the line from the files).
    pub(crate) fn line(&self, stream: Stream, rank: Option<u32>, line: &str) {
        if self.tx.try_send(record(stream, rank, line)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Where the lines go: the writer's state.
pub struct Writer {
    spec: WriterSpec,
    stdout: Pattern,
    stderr: Option<Pattern>,
    /// Open files by path; `None`: it failed (reported once).
    files: HashMap<PathBuf, Option<BufWriter<File>>>,
    /// Which file each (stream, rank) goes to.
    routes: HashMap<(bool, Option<u32>), PathBuf>,
    reports: usize,
    report: Box<dyn FnMut(String)>,
}

impl Writer {
    /// A writer for `spec`; `report` gets each problem, for a person.
    pub fn new(
        spec: WriterSpec,
        report: impl FnMut(String) + 'static,
    ) -> Result<Writer, graze_proto::PatternError> {
        let stdout = Pattern::parse(&spec.stdout)?;
        let stderr = spec.stderr.as_deref().map(Pattern::parse).transpose()?;
        Ok(Writer {
            spec,
            stdout,
            stderr,
            files: HashMap::new(),
            routes: HashMap::new(),
            reports: 0,
            report: Box::new(report),
        })
    }

    fn say(&mut self, what: String) {
        self.reports += 1;
        if self.reports <= MAX_REPORTS {
            (self.report)(what);
        } else if self.reports == MAX_REPORTS + 1 {
            (self.report)("further output file problems are not reported".into());
        }
    }

    /// The file for a line of `stream` from `rank`.
    fn path_of(&self, stderr: bool, rank: Option<u32>) -> PathBuf {
        let p = match (&self.stderr, stderr) {
            (Some(e), true) => e,
            _ => &self.stdout,
        };
        let v = PatternValues {
            job: self.spec.job,
            rank: rank.unwrap_or(0),
            array_index: self.spec.array_index,
            array_job: self.spec.array_job,
            attempt: self.spec.attempt,
        };
        self.spec.dir.join(p.expand(&v))
    }

    fn has_attempt(&self, stderr: bool) -> bool {
        match (&self.stderr, stderr) {
            (Some(e), true) => e.has_attempt(),
            _ => self.stdout.has_attempt(),
        }
    }

    /// Open `path` for this attempt: an earlier attempt's file there is renamed aside first.
    fn open(&mut self, path: &Path, per_attempt: bool) -> Option<BufWriter<File>> {
        let shown = path.display().to_string();
        if !per_attempt && self.spec.attempt > 1 && path.symlink_metadata().is_ok() {
            match self.rename_aside(path) {
                Ok(()) => {}
                Err(e) => {
                    self.say(format!(
                        "cannot keep the earlier attempt's output file '{shown}' (renaming it \
                         aside: {}); not writing attempt {}'s output there",
                        reason(&e),
                        self.spec.attempt
                    ));
                    return None;
                }
            }
        }
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(path)
        {
            Ok(f) => Some(BufWriter::with_capacity(64 << 10, f)),
            Err(e) => {
                self.say(format!(
                    "cannot create output file '{shown}': {}",
                    reason(&e)
                ));
                None
            }
        }
    }

    fn rename_aside(&self, path: &Path) -> std::io::Result<()> {
        let base = attempt_aside(&path.to_string_lossy(), self.spec.attempt);
        let mut to = PathBuf::from(&base);
        let mut n = 2;
        while to.symlink_metadata().is_ok() {
            if n > 1000 {
                return Err(std::io::Error::other("every name for it is taken"));
            }
            to = PathBuf::from(format!("{base}.{n}"));
            n += 1;
        }
        std::fs::rename(path, &to)
    }

    /// Write one line.
    pub fn line(&mut self, stderr: bool, rank: Option<u32>, text: &[u8]) {
        let key = (stderr, rank);
        let path = match self.routes.get(&key) {
            Some(p) => p.clone(),
            None => {
                let p = self.path_of(stderr, rank);
                self.routes.insert(key, p.clone());
                p
            }
        };
        if !self.files.contains_key(&path) {
            let f = self.open(&path, self.has_attempt(stderr));
            self.files.insert(path.clone(), f);
        }
        let failed = match self.files.get_mut(&path) {
            Some(Some(w)) => w.write_all(text).and_then(|()| w.write_all(b"\n")).err(),
            _ => None,
        };
        if let Some(e) = failed {
            self.files.insert(path.clone(), None);
            self.say(format!(
                "cannot write output file '{}': {}",
                path.display(),
                reason(&e)
            ));
        }
    }

    /// Hand what is buffered to the kernel.
    pub fn flush(&mut self) {
        let mut failed = Vec::new();
        for (p, f) in &mut self.files {
            if let Some(w) = f {
                if let Err(e) = w.flush() {
                    failed.push((p.clone(), e));
                }
            }
        }
        for (p, e) in failed {
            self.files.insert(p.clone(), None);
            self.say(format!(
                "cannot write output file '{}': {}",
                p.display(),
                reason(&e)
            ));
        }
    }
}

fn reason(e: &std::io::Error) -> String {
    crate::jobs::spawn::io_reason(e)
}

/// Read records from `input` into `w` until end of file, flushing whenever no more input is
/// buffered (so a file follows the job closely without a write per line under load).
pub fn pump(input: impl Read, w: &mut Writer) {
    let mut rd = BufReader::with_capacity(64 << 10, input);
    let mut head = [0u8; 9];
    let mut text = Vec::new();
    loop {
        if rd.buffer().is_empty() {
            w.flush();
        }
        if rd.read_exact(&mut head).is_err() {
            break;
        }
        let rank = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        let len = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) as usize;
        text.resize(len, 0);
        if rd.read_exact(&mut text).is_err() {
            break;
        }
        let rank = (rank != u32::MAX).then_some(rank);
        w.line(head[0] == 1, rank, &text);
    }
    w.flush();
}

/// Body of `graze-agent output-writer`: problems go to stderr, one line each.
pub fn run(args: &WriterArgs) -> i32 {
    let spec: WriterSpec = match serde_json::from_str(&args.spec) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("output writer: bad spec: {e}");
            return 2;
        }
    };
    let mut w = match Writer::new(spec, |what| eprintln!("{what}")) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    pump(std::io::stdin().lock(), &mut w);
    0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    fn spec(dir: &Path, out: &str, err: Option<&str>, attempt: u64) -> WriterSpec {
        WriterSpec::for_run(
            dir.to_owned(),
            out.into(),
            err.map(str::to_owned),
            7,
            attempt,
            &[],
        )
    }

    fn feed(spec: WriterSpec, lines: &[(Stream, Option<u32>, &str)]) -> Vec<String> {
        let said = Rc::new(RefCell::new(Vec::new()));
        let s = said.clone();
        let mut w = Writer::new(spec, move |m| s.borrow_mut().push(m)).unwrap();
        let mut input = Vec::new();
        for (st, r, l) in lines {
            input.extend(record(*st, *r, l));
        }
        pump(&input[..], &mut w);
        let v = said.borrow().clone();
        v
    }

    fn read(p: PathBuf) -> String {
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn per_rank_files_and_rankless_lines_to_rank_0() {
        let d = tempfile::tempdir().unwrap();
        let said = feed(
            spec(d.path(), "out-%j-%r.txt", None, 1),
            &[
                (Stream::Stdout, Some(1), "one"),
                (Stream::Stdout, Some(0), "zero"),
                (Stream::Stderr, Some(1), "one err"),
                (Stream::Stderr, None, "mpiexec says"),
            ],
        );
        assert!(said.is_empty(), "{said:?}");
        assert_eq!(read(d.path().join("out-7-0.txt")), "zero\nmpiexec says\n");
        assert_eq!(read(d.path().join("out-7-1.txt")), "one\none err\n");
    }

    #[test]
    fn one_file_in_arrival_order_and_a_separate_stderr() {
        let d = tempfile::tempdir().unwrap();
        let lines = [
            (Stream::Stdout, Some(1), "a"),
            (Stream::Stderr, Some(0), "b"),
            (Stream::Stdout, None, "c"),
        ];
        feed(spec(d.path(), "all.txt", None, 1), &lines);
        assert_eq!(read(d.path().join("all.txt")), "a\nb\nc\n");
        feed(spec(d.path(), "o-%a-%A.txt", Some("e-%n.txt"), 1), &lines);
        assert_eq!(read(d.path().join("o-0-7.txt")), "a\nc\n");
        assert_eq!(read(d.path().join("e-1.txt")), "b\n");
    }

    #[test]
    fn a_later_attempt_renames_the_earlier_file_aside() {
        let d = tempfile::tempdir().unwrap();
        feed(
            spec(d.path(), "out.txt", None, 1),
            &[(Stream::Stdout, None, "first")],
        );
        feed(
            spec(d.path(), "out.txt", None, 2),
            &[(Stream::Stdout, None, "second")],
        );
        feed(
            spec(d.path(), "out.txt", None, 3),
            &[(Stream::Stdout, None, "third")],
        );
        assert_eq!(read(d.path().join("out.txt")), "third\n");
        assert_eq!(read(d.path().join("out.attempt1.txt")), "first\n");
        assert_eq!(read(d.path().join("out.attempt2.txt")), "second\n");
        // A name already taken is not overwritten either.
        feed(
            spec(d.path(), "out.txt", None, 2),
            &[(Stream::Stdout, None, "again")],
        );
        assert_eq!(read(d.path().join("out.attempt1.txt")), "first\n");
        assert_eq!(read(d.path().join("out.attempt1.txt.2")), "third\n");
        // With %n nothing is renamed.
        feed(
            spec(d.path(), "n-%n.txt", None, 1),
            &[(Stream::Stdout, None, "1")],
        );
        feed(
            spec(d.path(), "n-%n.txt", None, 2),
            &[(Stream::Stdout, None, "2")],
        );
        assert_eq!(read(d.path().join("n-1.txt")), "1\n");
        assert_eq!(read(d.path().join("n-2.txt")), "2\n");
    }

    #[test]
    fn a_file_that_cannot_be_created_is_reported_once() {
        let d = tempfile::tempdir().unwrap();
        let said = feed(
            spec(d.path(), "no/such/dir/out.txt", None, 1),
            &[(Stream::Stdout, None, "x"), (Stream::Stdout, None, "y")],
        );
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].starts_with("cannot create output file '")
                && said[0].ends_with("no/such/dir/out.txt': No such file or directory"),
            "{said:?}"
        );
    }

    #[test]
    fn array_values_come_from_the_environment() {
        let env = [
            ("GRAZE_ARRAY_INDEX".to_string(), "4".to_string()),
            ("GRAZE_ARRAY_JOB_ID".to_string(), "3".to_string()),
        ];
        let s = WriterSpec::for_run("/d".into(), "o".into(), None, 9, 2, &env);
        assert_eq!((s.array_index, s.array_job, s.attempt), (4, 3, 2));
        let s = WriterSpec::for_run("/d".into(), "o".into(), None, 9, 0, &[]);
        assert_eq!((s.array_index, s.array_job, s.attempt), (0, 9, 1));
    }

    #[test]
    fn records_round_trip_through_the_pump() {
        let r = record(Stream::Stderr, None, "x");
        assert_eq!(r, [1, 255, 255, 255, 255, 0, 0, 0, 1, b'x']);
        // A torn record at the end is ignored.
        let d = tempfile::tempdir().unwrap();
        let mut w = Writer::new(spec(d.path(), "t", None, 1), |_| {}).unwrap();
        let mut input = record(Stream::Stdout, Some(2), "whole");
        input.extend(&record(Stream::Stdout, Some(2), "torn")[..6]);
        pump(&input[..], &mut w);
        assert_eq!(read(d.path().join("t")), "whole\n");
    }
}
