//! Traces (`graze submit --trace`, issue 16): the clock-sync streams agents open (answered
//! here, on the stream's own task, never through the owning task, so the round trip stays that
//! of the network), the upload of a node's trace files after its part of a run ended, stored
//! as `STATE/traces/JOB/ATTEMPT/NODE/` (written into `.incoming-NODE` beside it, fsynced, then
//! renamed), and `graze trace`'s answer from those files.
//!
//! The owning task only decides (is the job traced, is the upload within `max_trace_bytes`)
//! and records job events; the bytes move in the stream tasks.

use crate::owner::{Input, Owner};
use graze_net::quinn;
use graze_proto::{
    trace_file_name_ok, ClientReply, ClockPing, ClockPong, JobId, StreamEnd, StreamReply,
    TraceFileHead, CLOCK_FILE, TRACE_CHUNK,
};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

/// Answer the agent's clock probes on this stream until it finishes it.
pub(crate) async fn serve_clock(mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let _ = send.set_priority(10);
    loop {
        match graze_net::recv::<ClockPing>(&mut recv).await {
            Ok(Some(ClockPing { seq })) => {
                let pong = ClockPong {
                    seq,
                    now_ns: graze_net::monotonic_ns(),
                };
                if graze_net::send(&mut send, &pong).await.is_err() {
                    return;
                }
            }
            Ok(None) => break,
            Err(e) => {
                debug!("clock stream: {e}");
                break;
            }
        }
    }
    let _ = send.finish();
}

/// The stored traces: where they live and the per-job limit.
pub(crate) struct Traces {
    pub(crate) root: PathBuf,
    pub(crate) max: u64,
}

/// What the owning task is asked by an upload's stream task.
pub(crate) enum Msg {
    /// May `node` upload these files for run `epoch` of `job`? The directory to write into.
    Begin {
        node: String,
        job: JobId,
        epoch: u64,
        files: Vec<TraceFileHead>,
        reply: oneshot::Sender<Result<PathBuf, String>>,
    },
    /// The upload ended (stored, or why not).
    End {
        node: String,
        job: JobId,
        result: Result<Stored, String>,
    },
}

/// What a stored node trace holds, for the job's events.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Stored {
    pub(crate) ranks: u32,
    /// The tracer's files (not graze's clock samples).
    pub(crate) bytes: u64,
    pub(crate) dropped: u64,
    /// The notes the tracer left (`note-PID.txt`), one line each.
    pub(crate) notes: Vec<String>,
    /// Files that are not valid traces: the parser's error, naming the file.
    pub(crate) bad: Vec<String>,
    /// Files cut in the middle of a record.
    pub(crate) truncated: Vec<String>,
}

impl Stored {
    /// Read what the node's files say (the rank files are parsed defensively).
    pub(crate) fn of(files: &[(String, Vec<u8>)]) -> Stored {
        let mut s = Stored::default();
        for (name, bytes) in files {
            if name != CLOCK_FILE {
                s.bytes += bytes.len() as u64;
            }
            if name.ends_with(".gzt") {
                match graze_trace::format::parse(name, bytes) {
                    Ok(f) => {
                        // `pid-N.gzt`: a process that never initialised MPI (a launcher).
                        if name.starts_with("rank-") {
                            s.ranks += 1;
                        }
                        s.dropped += f.header.dropped;
                        if f.truncated {
                            s.truncated.push(name.clone());
                        }
                    }
                    Err(e) => s.bad.push(e.to_string()),
                }
            } else if name == CLOCK_FILE {
                if let Err(e) = parse_clock(bytes) {
                    s.bad.push(e);
                }
            } else if name.ends_with(".txt") {
                let text = String::from_utf8_lossy(bytes);
                let line = text.lines().next().unwrap_or("").trim();
                if !line.is_empty() {
                    s.notes
                        .push(graze_proto::clip(line.to_string(), 300, "..."));
                }
            }
        }
        s
    }

    /// The job events it makes.
    pub(crate) fn events(&self, node: &str) -> Vec<String> {
        let mut out = Vec::new();
        for n in &self.notes {
            out.push(format!("trace note from node '{node}': {n}"));
        }
        for b in &self.bad {
            out.push(format!("bad trace from node '{node}': {b}"));
        }
        for t in &self.truncated {
            out.push(format!(
                "trace file '{t}' from node '{node}' was cut short (the rank died while writing); read up to its last whole record"
            ));
        }
        if self.ranks == 0 {
            out.push(format!(
                "no rank wrote a trace on node '{node}': the program is statically linked or not an MPI program"
            ));
        } else {
            out.push(format!(
                "trace stored from node '{node}': {} rank{}, {} bytes, {} dropped event{}",
                self.ranks,
                if self.ranks == 1 { "" } else { "s" },
                self.bytes,
                self.dropped,
                if self.dropped == 1 { "" } else { "s" }
            ));
        }
        out
    }
}

async fn reply(send: &mut quinn::SendStream, error: Option<String>) {
    if let Err(e) = graze_net::send(send, &StreamReply { error }).await {
        debug!("trace stream reply: {e}");
    }
    let _ = send.finish();
}

/// Receive a node's trace upload (the header was read by the caller).
pub(crate) async fn receive(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    node: String,
    job: JobId,
    epoch: u64,
    files: Vec<TraceFileHead>,
    tx: mpsc::UnboundedSender<Input>,
) {
    let (otx, orx) = oneshot::channel();
    let begin = Msg::Begin {
        node: node.clone(),
        job,
        epoch,
        files: files.clone(),
        reply: otx,
    };
    if tx.send(Input::Trace(begin)).is_err() {
        return;
    }
    let dir = match orx.await {
        Ok(Ok(d)) => d,
        Ok(Err(why)) => {
            let _ = recv.stop(1u32.into());
            return reply(&mut send, Some(why)).await;
        }
        Err(_) => return,
    };
    let result = store(&mut recv, &dir, &node, &files).await;
    if result.is_err() {
        let _ = recv.stop(1u32.into());
    }
    let error = result.as_ref().err().cloned();
    let _ = tx.send(Input::Trace(Msg::End { node, job, result }));
    reply(&mut send, error).await;
}

/// Read the files' bytes into `.incoming-NODE` beside `dir`, check them, rename to `dir`.
async fn store(
    recv: &mut quinn::RecvStream,
    dir: &Path,
    node: &str,
    heads: &[TraceFileHead],
) -> Result<Stored, String> {
    let cannot = |e: std::io::Error| format!("the scheduler cannot store it: {e}");
    let parent = dir.parent().ok_or("no parent directory")?.to_path_buf();
    let incoming = parent.join(format!(".incoming-{node}"));
    tokio::fs::create_dir_all(&parent).await.map_err(cannot)?;
    let _ = tokio::fs::remove_dir_all(&incoming).await;
    tokio::fs::create_dir(&incoming).await.map_err(cannot)?;
    let result = receive_files(recv, &incoming, heads).await;
    let files = match result {
        Ok(f) => f,
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&incoming).await;
            return Err(e);
        }
    };
    let stored = tokio::task::spawn_blocking(move || Stored::of(&files))
        .await
        .map_err(|e| e.to_string())?;
    let _ = tokio::fs::remove_dir_all(dir).await;
    tokio::fs::rename(&incoming, dir).await.map_err(cannot)?;
    if let Ok(d) = tokio::fs::File::open(&parent).await {
        let _ = d.sync_all().await;
    }
    Ok(stored)
}

async fn receive_files(
    recv: &mut quinn::RecvStream,
    dir: &Path,
    heads: &[TraceFileHead],
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let cannot = |e: std::io::Error| format!("the scheduler cannot store it: {e}");
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut idx = 0usize;
    let mut cur: Vec<u8> = Vec::new();
    let total: u64 = heads.iter().map(|h| h.bytes).sum();
    let mut got = 0u64;
    // Files of 0 bytes are complete before any block.
    let flush = |idx: &mut usize, cur: &mut Vec<u8>, out: &mut Vec<(String, Vec<u8>)>| {
        while *idx < heads.len() && cur.len() as u64 == heads[*idx].bytes {
            out.push((heads[*idx].name.clone(), std::mem::take(cur)));
            *idx += 1;
        }
    };
    flush(&mut idx, &mut cur, &mut out);
    loop {
        match graze_net::recv_block(recv).await {
            Ok(Some(b)) => {
                got += b.len() as u64;
                if got > total {
                    return Err(format!(
                        "the agent sent more than the {total} bytes it announced"
                    ));
                }
                let mut rest: &[u8] = &b;
                while !rest.is_empty() {
                    let Some(h) = heads.get(idx) else {
                        return Err("data past the last file".into());
                    };
                    let want = (h.bytes - cur.len() as u64) as usize;
                    let take = want.min(rest.len());
                    cur.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    flush(&mut idx, &mut cur, &mut out);
                }
            }
            Ok(None) => break,
            Err(e) => return Err(format!("the transfer broke off after {got} bytes: {e}")),
        }
    }
    if got != total || idx != heads.len() {
        return Err(format!("{got} of the {total} bytes announced arrived"));
    }
    match graze_net::recv::<StreamEnd>(recv).await {
        Ok(Some(StreamEnd { error: Some(e), .. })) => return Err(e),
        Ok(Some(StreamEnd { bytes, .. })) if bytes != got => {
            return Err(format!("the agent sent {bytes} bytes but {got} arrived"))
        }
        Ok(Some(_)) => {}
        Ok(None) => return Err("the stream ended without its end frame".into()),
        Err(e) => return Err(format!("the transfer broke off at its end: {e}")),
    }
    for (name, bytes) in &out {
        let mut f = tokio::fs::File::create(dir.join(name))
            .await
            .map_err(cannot)?;
        f.write_all(bytes).await.map_err(cannot)?;
        f.sync_all().await.map_err(cannot)?;
    }
    Ok(out)
}

/// The largest `clock.json` accepted: a sample every 3 s for days.
const MAX_CLOCK_FILE: u64 = 16 << 20;

/// Check an upload's header: names, count, sizes (the tracer's files within `max`).
pub(crate) fn check_files(files: &[TraceFileHead], max: u64) -> Result<(), String> {
    if files.len() > 100_000 {
        return Err(format!("{} files is too many", files.len()));
    }
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    for f in files {
        if !trace_file_name_ok(&f.name) {
            return Err(format!(
                "'{}' is not a trace file name",
                f.name.escape_debug()
            ));
        }
        if !seen.insert(f.name.as_str()) {
            return Err(format!("'{}' is sent twice", f.name));
        }
        // The node's clock samples are graze's own, bounded apart from the job's limit.
        if f.name == CLOCK_FILE {
            if f.bytes > MAX_CLOCK_FILE {
                return Err(format!(
                    "its {CLOCK_FILE} of {} bytes is too large",
                    f.bytes
                ));
            }
            continue;
        }
        total = total.saturating_add(f.bytes);
    }
    if total > max {
        return Err(format!(
            "its {total} bytes are more than max_trace_bytes ({max})"
        ));
    }
    Ok(())
}

/// The attempts of `job` with a stored trace, in order.
pub(crate) fn attempts(root: &Path, job: JobId) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(root.join(job.to_string()))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// Send the stored files of `attempt` of `job` (every node) as [`ClientReply::TraceFile`]
/// chunks and a [`ClientReply::TraceEnd`].
pub(crate) async fn send_files(
    root: PathBuf,
    job: JobId,
    attempt: u64,
    attempts: Vec<u64>,
    tx: mpsc::UnboundedSender<ClientReply>,
) {
    let dir = root.join(job.to_string()).join(attempt.to_string());
    let result = async {
        let mut nodes = Vec::new();
        let mut rd = tokio::fs::read_dir(&dir).await?;
        while let Some(e) = rd.next_entry().await? {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && e.file_type().await?.is_dir() {
                nodes.push(name);
            }
        }
        nodes.sort();
        for node in nodes {
            let mut names = Vec::new();
            let mut rd = tokio::fs::read_dir(dir.join(&node)).await?;
            while let Some(e) = rd.next_entry().await? {
                let name = e.file_name().to_string_lossy().into_owned();
                if trace_file_name_ok(&name) {
                    names.push(name);
                }
            }
            names.sort();
            for name in names {
                let bytes = tokio::fs::read(dir.join(&node).join(&name)).await?;
                let mut chunks = bytes.chunks(TRACE_CHUNK).peekable();
                if chunks.peek().is_none() {
                    let _ = tx.send(ClientReply::TraceFile {
                        node: node.clone(),
                        name: name.clone(),
                        hex: String::new(),
                    });
                }
                for c in chunks {
                    let r = ClientReply::TraceFile {
                        node: node.clone(),
                        name: name.clone(),
                        hex: hex::encode(c),
                    };
                    if tx.send(r).is_err() {
                        return Ok(());
                    }
                }
            }
        }
        Ok::<(), std::io::Error>(())
    }
    .await;
    let _ = tx.send(match result {
        Ok(()) => ClientReply::TraceEnd { attempt, attempts },
        Err(e) => ClientReply::Error {
            message: format!("cannot read the stored trace of job {job} attempt {attempt}: {e}"),
        },
    });
}

impl Owner {
    /// An upload's question or its end.
    pub(crate) fn trace_msg(&mut self, m: Msg, now: u64) {
        match m {
            Msg::Begin {
                node,
                job,
                epoch,
                files,
                reply,
            } => {
                let verdict = match self.core.job_view(job) {
                    None => Err(format!("job {job} is unknown")),
                    Some(v) if !v.spec.trace => Err(format!("job {job} is not traced")),
                    Some(_) => check_files(&files, self.traces.max),
                };
                if let Err(why) = &verdict {
                    warn!(%node, %job, "trace upload refused: {why}");
                    self.core.job_event(
                        job,
                        format!("trace from node '{node}' not stored: {why}"),
                        now,
                    );
                }
                let dir = self
                    .traces
                    .root
                    .join(job.to_string())
                    .join(epoch.to_string())
                    .join(&node);
                let _ = reply.send(verdict.map(|()| dir));
            }
            Msg::End { node, job, result } => match result {
                Ok(s) => {
                    info!(%node, %job, ranks = s.ranks, bytes = s.bytes, "trace stored");
                    for e in s.events(&node) {
                        self.core.job_event(job, e, now);
                    }
                }
                Err(why) => {
                    warn!(%node, %job, "trace not stored: {why}");
                    self.core.job_event(
                        job,
                        format!("trace from node '{node}' not stored: {why}"),
                        now,
                    );
                }
            },
        }
    }

    /// `graze trace`: check the job, then send its files from a task of their own.
    pub(crate) fn trace_request(
        &mut self,
        job: JobId,
        attempt: Option<u64>,
        tx: mpsc::UnboundedSender<ClientReply>,
    ) {
        let err = |message: String| {
            let _ = tx.send(ClientReply::Error { message });
        };
        let Some(v) = self.core.job_view(job) else {
            return err(format!("no job {job}"));
        };
        if !v.spec.trace {
            return err(format!(
                "job {job} was not traced: submit it with 'graze submit --trace'"
            ));
        }
        let all = attempts(&self.traces.root, job);
        let pick = match attempt {
            Some(a) if all.contains(&a) => a,
            Some(a) => {
                return err(format!(
                    "job {job} has no stored trace of attempt {a} (stored: {})",
                    list(&all)
                ))
            }
            None => match all.last() {
                Some(a) => *a,
                None if v.state.is_final() => {
                    return err(format!(
                        "job {job} ended without a stored trace: see 'graze show {job}' for why"
                    ))
                }
                None => {
                    return err(format!(
                        "job {job} has no trace yet: it is stored when the run ends ('graze wait {job}')"
                    ))
                }
            },
        };
        tokio::spawn(send_files(self.traces.root.clone(), job, pick, all, tx));
    }
}

fn list(v: &[u64]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

/// [`CLOCK_FILE`]'s samples, parsed defensively (a bad file is an error naming it).
pub(crate) fn parse_clock(bytes: &[u8]) -> Result<Vec<graze_trace::ClockSample>, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("bad {CLOCK_FILE}: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn head(name: &str, bytes: u64) -> TraceFileHead {
        TraceFileHead {
            name: name.into(),
            bytes,
        }
    }

    #[test]
    fn upload_headers_are_checked() {
        assert!(check_files(&[head("rank-0.gzt", 10), head(CLOCK_FILE, 5)], 100).is_ok());
        // The clock samples do not count against the job's limit, but are bounded.
        assert!(check_files(&[head("rank-0.gzt", 100), head(CLOCK_FILE, 500)], 100).is_ok());
        assert!(check_files(&[head(CLOCK_FILE, MAX_CLOCK_FILE + 1)], 100).is_err());
        let e = check_files(&[head("../x", 1)], 100).unwrap_err();
        assert!(e.contains("not a trace file name"), "{e}");
        let e = check_files(&[head("rank-0.gzt", 1), head("rank-0.gzt", 1)], 100).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = check_files(&[head("rank-0.gzt", 60), head("rank-1.gzt", 60)], 100).unwrap_err();
        assert!(e.contains("max_trace_bytes"), "{e}");
    }

    #[test]
    fn a_node_without_rank_files_says_why() {
        let s = Stored::of(&[
            (
                "note-7.txt".into(),
                b"graze trace: built for mpich, rank uses Open MPI\n".to_vec(),
            ),
            (CLOCK_FILE.into(), b"[]".to_vec()),
        ]);
        assert_eq!(s.ranks, 0);
        let ev = s.events("pc1");
        assert!(ev[0].contains("built for mpich"), "{ev:?}");
        assert!(ev
            .last()
            .unwrap()
            .contains("statically linked or not an MPI program"));
    }

    fn file(rank: i32, dropped: u64) -> Vec<u8> {
        let mut w = graze_trace::format::Writer::new(&graze_trace::format::Header {
            rank,
            world_size: 2,
            pid: 7,
            dropped,
            start_ns: 1,
            host: "pc".into(),
        });
        w.region("compute", 5, 9);
        w.finish()
    }

    #[test]
    fn rank_files_count_and_launchers_do_not() {
        let s = Stored::of(&[
            ("rank-0.gzt".into(), file(0, 3)),
            ("rank-1.gzt".into(), file(1, 0)),
            ("pid-9.gzt".into(), file(-1, 0)),
            (CLOCK_FILE.into(), b"[]".to_vec()),
        ]);
        assert_eq!((s.ranks, s.dropped), (2, 3));
        assert!(s.bad.is_empty(), "{:?}", s.bad);
        let ev = s.events("pc1");
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert!(
            ev[0].starts_with("trace stored from node 'pc1': 2 ranks,"),
            "{ev:?}"
        );
        assert!(ev[0].ends_with("3 dropped events"), "{ev:?}");
    }

    #[test]
    fn a_bad_rank_file_is_an_event_naming_it() {
        let s = Stored::of(&[("rank-3.gzt".into(), b"not a trace at all".to_vec())]);
        assert_eq!(s.ranks, 0);
        assert_eq!(s.bad.len(), 1);
        assert!(
            s.events("pc1")[0].contains("rank-3.gzt"),
            "{:?}",
            s.events("pc1")
        );
    }

    #[test]
    fn clock_files_parse_or_say_why() {
        let ok = parse_clock(br#"[{"local_ns":5,"offset_ns":-3,"rtt_ns":100}]"#).unwrap();
        assert_eq!(ok[0].offset_ns, -3);
        assert!(parse_clock(b"{").unwrap_err().contains(CLOCK_FILE));
    }
}
