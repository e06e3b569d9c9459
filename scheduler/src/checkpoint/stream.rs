//! The checkpoint streams: parts arriving from an agent (one bidirectional stream each,
//! opened by the agent beside its control stream) and restores sent to the next run's nodes
//! (opened by the scheduler). Their format is in `graze_proto::checkpoint`. Only bytes move
//! here; what a part is worth is decided by the owning task ([`super::Msg`]).

use super::{Msg, Sink};
use crate::owner::Input;
use graze_net::quinn;
use graze_proto::{CheckpointId, CheckpointStream, JobId, StreamEnd, StreamReply, MAX_BLOCK};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

/// How long a new stream may take to send its first frame.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Accept the checkpoint streams the agent `node` opens on its connection, until it ends.
pub(crate) async fn accept_parts(
    link: quinn::Connection,
    node: String,
    tx: mpsc::UnboundedSender<Input>,
) {
    loop {
        match link.accept_bi().await {
            Ok((send, recv)) => {
                let _ = send.set_priority(-1);
                tokio::spawn(receive_part(send, recv, node.clone(), tx.clone()));
            }
            Err(e) => {
                debug!(%node, "no more checkpoint streams: {e}");
                return;
            }
        }
    }
}

/// Ask the owning task; `None` if it is gone.
async fn ask<T>(tx: &mpsc::UnboundedSender<Input>, m: Msg, rx: oneshot::Receiver<T>) -> Option<T> {
    tx.send(Input::Checkpoint(m)).ok()?;
    rx.await.ok()
}

async fn reply(send: &mut quinn::SendStream, error: Option<String>) {
    if let Err(e) = graze_net::send(send, &StreamReply { error }).await {
        debug!("checkpoint stream reply: {e}");
    }
    let _ = send.finish();
}

/// Receive one stream from an agent: a part's header, its data into the part file, the
/// sender's end frame; then the owning task's verdict goes back as the reply.
async fn receive_part(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    node: String,
    tx: mpsc::UnboundedSender<Input>,
) {
    let head =
        match tokio::time::timeout(HEAD_TIMEOUT, graze_net::recv::<CheckpointStream>(&mut recv))
            .await
        {
            Ok(Ok(Some(h))) => h,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                warn!(%node, "checkpoint stream: bad header: {e}");
                let _ = recv.stop(1u32.into());
                return reply(
                    &mut send,
                    Some(format!("bad checkpoint stream header: {e}")),
                )
                .await;
            }
            Err(_) => {
                let _ = recv.stop(1u32.into());
                return reply(
                    &mut send,
                    Some("no checkpoint stream header in time".into()),
                )
                .await;
            }
        };
    let (job, id, ranks, error) = match head {
        CheckpointStream::Part {
            job,
            id,
            ranks,
            error,
        } => (job, id, ranks, error),
        // Clock probes and trace uploads share the agent's extra streams (issue 16).
        CheckpointStream::Clock => return crate::trace::serve_clock(send, recv).await,
        CheckpointStream::Trace { job, epoch, files } => {
            return crate::trace::receive(send, recv, node, job, epoch, files, tx).await
        }
        CheckpointStream::Restore { .. } => {
            let _ = recv.stop(1u32.into());
            return reply(&mut send, Some("agents send parts, not restores".into())).await;
        }
    };
    let outcome = match error {
        Some(e) => Err(e),
        None => {
            let (otx, orx) = oneshot::channel();
            let begin = Msg::Begin {
                node: node.clone(),
                job,
                id,
                reply: otx,
            };
            match ask(&tx, begin, orx).await {
                None => return,
                Some(Err(why)) => {
                    let _ = recv.stop(1u32.into());
                    return reply(&mut send, Some(why)).await;
                }
                Some(Ok(sink)) => match write_part(&mut recv, &sink).await {
                    Ok(bytes) => Ok((ranks, bytes)),
                    Err(why) => {
                        let _ = recv.stop(1u32.into());
                        let _ = tokio::fs::remove_file(&sink.path).await;
                        Err(why)
                    }
                },
            }
        }
    };
    let (otx, orx) = oneshot::channel();
    let end = Msg::End {
        node,
        job,
        id,
        outcome,
        reply: otx,
    };
    if let Some(verdict) = ask(&tx, end, orx).await {
        reply(&mut send, verdict).await;
    }
}

/// Copy a part's data blocks into its file, count them against the checkpoint's budget,
/// check the end frame and fsync; the bytes written, or why the part is void.
async fn write_part(recv: &mut quinn::RecvStream, sink: &Sink) -> Result<u64, String> {
    let mut f = tokio::fs::File::create(&sink.path)
        .await
        .map_err(|e| format!("the scheduler cannot store it: {e}"))?;
    let mut bytes = 0u64;
    loop {
        match graze_net::recv_block(recv).await {
            Ok(Some(b)) => {
                let n = b.len() as u64;
                let total = sink.received.fetch_add(n, Ordering::Relaxed) + n;
                if total > sink.max {
                    return Err(format!(
                        "it is larger than max_checkpoint_bytes ({})",
                        super::limit_text(sink.max)
                    ));
                }
                f.write_all(&b)
                    .await
                    .map_err(|e| format!("the scheduler cannot store it: {e}"))?;
                bytes += n;
            }
            Ok(None) => break,
            Err(e) => return Err(format!("the transfer broke off after {bytes} bytes: {e}")),
        }
    }
    match graze_net::recv::<StreamEnd>(recv).await {
        Ok(Some(StreamEnd { error: Some(e), .. })) => return Err(e),
        Ok(Some(StreamEnd { bytes: b, .. })) if b != bytes => {
            return Err(format!("the agent sent {b} bytes but {bytes} arrived"))
        }
        Ok(Some(_)) => {}
        Ok(None) => return Err("the stream ended without its end frame".into()),
        Err(e) => return Err(format!("the transfer broke off at its end: {e}")),
    }
    f.flush()
        .await
        .and(f.sync_all().await)
        .map_err(|e| format!("the scheduler cannot store it: {e}"))?;
    Ok(bytes)
}

/// How long a node may take to unpack a restore and answer.
const RESTORE_REPLY_TIMEOUT: Duration = Duration::from_secs(600);

/// A restore to send: the parts (`files`, concatenated gzip'd tars) of checkpoint `id` that
/// `node` needs for run `epoch` of `job`.
pub(crate) struct RestoreTask {
    pub(crate) link: quinn::Connection,
    pub(crate) node: String,
    pub(crate) job: JobId,
    pub(crate) epoch: u64,
    pub(crate) id: CheckpointId,
    pub(crate) files: Vec<PathBuf>,
}

impl RestoreTask {
    /// Send it. The agent reports the outcome as a job note; failures here are logged, and
    /// a part that cannot be read is told to the agent as the stream's error.
    pub(crate) async fn run(self) {
        let RestoreTask {
            link,
            node,
            job,
            epoch,
            id,
            files,
        } = self;
        match restore(&link, job, epoch, id, &files).await {
            Ok((bytes, None)) => info!(%job, %id, %node, bytes, "checkpoint sent for restore"),
            Ok((_, Some(e))) => warn!(%job, %id, %node, "restore refused by the agent: {e}"),
            Err(e) => warn!(%job, %id, %node, "sending a restore: {e:#}"),
        }
    }
}

async fn restore(
    link: &quinn::Connection,
    job: JobId,
    epoch: u64,
    id: CheckpointId,
    files: &[PathBuf],
) -> anyhow::Result<(u64, Option<String>)> {
    let (mut send, mut recv) = link.open_bi().await?;
    let _ = send.set_priority(-1);
    let mut opened = Vec::new();
    let mut error = None;
    for p in files {
        match tokio::fs::File::open(p).await {
            Ok(f) => opened.push(f),
            Err(e) => {
                error = Some(format!("the scheduler cannot read {}: {e}", p.display()));
                break;
            }
        }
    }
    let head = CheckpointStream::Restore {
        job,
        epoch,
        id,
        error: error.clone(),
    };
    graze_net::send(&mut send, &head).await?;
    let mut bytes = 0u64;
    let mut end_error = None;
    if error.is_none() {
        let mut buf = vec![0u8; MAX_BLOCK];
        'files: for mut f in opened {
            loop {
                match f.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        graze_net::send_block(&mut send, &buf[..n]).await?;
                        bytes += n as u64;
                    }
                    Err(e) => {
                        end_error =
                            Some(format!("the scheduler could not read the checkpoint: {e}"));
                        break 'files;
                    }
                }
            }
        }
        graze_net::send_block(&mut send, &[]).await?;
        graze_net::send(
            &mut send,
            &StreamEnd {
                bytes,
                error: end_error,
            },
        )
        .await?;
    }
    let _ = send.finish();
    let r = tokio::time::timeout(
        RESTORE_REPLY_TIMEOUT,
        graze_net::recv::<StreamReply>(&mut recv),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no answer from the agent in time"))??;
    Ok((bytes, r.and_then(|r| r.error)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The stream tasks over a real QUIC connection on loopback; the owning task's side is
    //! played by a small loop that answers as `Owner::checkpoint_msg` would, so the tests
    //! see exactly what the tasks report.
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    struct Pair {
        _dir: tempfile::TempDir,
        /// The scheduler's side of the connection.
        server: quinn::Connection,
        /// The agent's side.
        agent: quinn::Connection,
        _endpoints: (quinn::Endpoint, quinn::Endpoint),
    }

    async fn pair() -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let id = graze_net::Identity::load_or_create(dir.path()).unwrap();
        let idle = Duration::from_secs(10);
        let se = graze_net::server_endpoint("127.0.0.1:0".parse().unwrap(), &id, idle).unwrap();
        let addr = se.local_addr().unwrap();
        let ce =
            graze_net::client_endpoint([127, 0, 0, 1].into(), &id.fingerprint(), idle).unwrap();
        let connecting = ce.connect(addr, graze_net::SERVER_NAME).unwrap();
        let (agent, server) = tokio::join!(connecting, async {
            se.accept().await.unwrap().await.unwrap()
        });
        Pair {
            _dir: dir,
            server,
            agent: agent.unwrap(),
            _endpoints: (se, ce),
        }
    }

    /// What the owning-task stand-in saw: each `End`'s outcome.
    type Ends = mpsc::UnboundedReceiver<Result<(Vec<u32>, u64), String>>;

    /// Accept parts on `p.server`, answering `Begin` with a sink at `path` (budget `max`).
    fn serve(p: &Pair, path: PathBuf, max: u64) -> Ends {
        let (tx, mut rx) = mpsc::unbounded_channel::<Input>();
        tokio::spawn(accept_parts(p.server.clone(), "a1".into(), tx));
        let (etx, erx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(i) = rx.recv().await {
                match i {
                    Input::Checkpoint(Msg::Begin { reply, .. }) => {
                        let _ = reply.send(Ok(Sink {
                            path: path.clone(),
                            received: Arc::new(AtomicU64::new(0)),
                            max,
                        }));
                    }
                    Input::Checkpoint(Msg::End { outcome, reply, .. }) => {
                        let verdict = outcome.as_ref().err().cloned();
                        let _ = etx.send(outcome);
                        let _ = reply.send(verdict);
                    }
                    _ => {}
                }
            }
        });
        erx
    }

    fn head() -> CheckpointStream {
        CheckpointStream::Part {
            job: JobId(5),
            id: CheckpointId { epoch: 1, at_ms: 9 },
            ranks: vec![0, 1],
            error: None,
        }
    }

    /// Send a part as an agent does; the scheduler's reply.
    async fn send_part(agent: &quinn::Connection, data: &[u8], claimed: u64) -> StreamReply {
        let (mut s, mut r) = agent.open_bi().await.unwrap();
        graze_net::send(&mut s, &head()).await.unwrap();
        let _ = graze_net::send_block(&mut s, data).await;
        let _ = graze_net::send_block(&mut s, &[]).await;
        let _ = graze_net::send(
            &mut s,
            &StreamEnd {
                bytes: claimed,
                error: None,
            },
        )
        .await;
        let _ = s.finish();
        graze_net::recv::<StreamReply>(&mut r)
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn a_part_is_written_whole_and_fsynced_before_the_reply() {
        let p = pair().await;
        let file = p._dir.path().join("part");
        let mut ends = serve(&p, file.clone(), 1 << 30);
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let reply = send_part(&p.agent, &data, data.len() as u64).await;
        assert_eq!(reply, StreamReply { error: None });
        assert_eq!(
            ends.recv().await.unwrap(),
            Ok((vec![0, 1], data.len() as u64))
        );
        assert_eq!(std::fs::read(&file).unwrap(), data);
    }

    #[tokio::test]
    async fn a_part_over_the_limit_or_with_a_wrong_length_is_void() {
        let p = pair().await;
        let file = p._dir.path().join("part");
        let mut ends = serve(&p, file.clone(), 1000);
        let reply = send_part(&p.agent, &[7u8; 5000], 5000).await;
        let e = reply.error.unwrap();
        assert!(e.contains("max_checkpoint_bytes"), "{e}");
        assert!(ends.recv().await.unwrap().is_err());
        assert!(!file.exists(), "a void part's file is removed");
        let reply = send_part(&p.agent, &[7u8; 10], 11).await;
        assert!(reply.error.unwrap().contains("11 bytes"));
    }

    #[tokio::test]
    async fn a_link_cut_mid_transfer_voids_the_part() {
        let p = pair().await;
        let file = p._dir.path().join("part");
        let mut ends = serve(&p, file.clone(), 1 << 30);
        let (mut s, _r) = p.agent.open_bi().await.unwrap();
        graze_net::send(&mut s, &head()).await.unwrap();
        graze_net::send_block(&mut s, &[1u8; 100_000])
            .await
            .unwrap();
        // Cut once the scheduler is writing the part (its file exists).
        for _ in 0..500 {
            if file.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(file.exists(), "the part never started arriving");
        p.agent.close(0u32.into(), b"cut");
        let why = ends.recv().await.unwrap().unwrap_err();
        assert!(why.contains("broke off"), "{why}");
        assert!(!file.exists());
    }

    #[tokio::test]
    async fn a_part_with_an_error_carries_it_and_no_data() {
        let p = pair().await;
        let mut ends = serve(&p, p._dir.path().join("part"), 1 << 30);
        let (mut s, mut r) = p.agent.open_bi().await.unwrap();
        let mut h = head();
        if let CheckpointStream::Part { error, ranks, .. } = &mut h {
            *error = Some("rank 1: symlink '1/x' points out of the checkpoint directory".into());
            ranks.clear();
        }
        graze_net::send(&mut s, &h).await.unwrap();
        let _ = s.finish();
        let reply = graze_net::recv::<StreamReply>(&mut r)
            .await
            .unwrap()
            .unwrap();
        assert!(reply.error.unwrap().contains("symlink"));
        assert!(ends.recv().await.unwrap().unwrap_err().contains("symlink"));
    }

    #[tokio::test]
    async fn a_restore_sends_the_parts_concatenated() {
        let p = pair().await;
        let a = p._dir.path().join("a.tgz");
        let b = p._dir.path().join("b.tgz");
        let da: Vec<u8> = (0..1_500_000u32).map(|i| (i % 13) as u8).collect();
        std::fs::write(&a, &da).unwrap();
        std::fs::write(&b, b"second part").unwrap();
        let id = CheckpointId { epoch: 2, at_ms: 4 };
        let agent = p.agent.clone();
        let got = tokio::spawn(async move {
            let (mut s, mut r) = agent.accept_bi().await.unwrap();
            let h = graze_net::recv::<CheckpointStream>(&mut r)
                .await
                .unwrap()
                .unwrap();
            let mut data = Vec::new();
            while let Some(b) = graze_net::recv_block(&mut r).await.unwrap() {
                data.extend(b);
            }
            let end = graze_net::recv::<StreamEnd>(&mut r).await.unwrap().unwrap();
            graze_net::send(&mut s, &StreamReply { error: None })
                .await
                .unwrap();
            s.finish().unwrap();
            let _ = s.stopped().await;
            (h, data, end)
        });
        let sent = restore(&p.server, JobId(5), 3, id, &[a, b]).await.unwrap();
        let (h, data, end) = got.await.unwrap();
        assert_eq!(
            h,
            CheckpointStream::Restore {
                job: JobId(5),
                epoch: 3,
                id,
                error: None
            }
        );
        let mut want = da.clone();
        want.extend(b"second part");
        assert_eq!(data, want);
        assert_eq!(end.bytes, want.len() as u64);
        assert_eq!(sent, (want.len() as u64, None));
    }

    #[tokio::test]
    async fn a_restore_whose_part_is_unreadable_says_why_and_sends_nothing() {
        let p = pair().await;
        let agent = p.agent.clone();
        let got = tokio::spawn(async move {
            let (mut s, mut r) = agent.accept_bi().await.unwrap();
            let h = graze_net::recv::<CheckpointStream>(&mut r)
                .await
                .unwrap()
                .unwrap();
            graze_net::send(&mut s, &StreamReply { error: None })
                .await
                .unwrap();
            s.finish().unwrap();
            let _ = s.stopped().await;
            h
        });
        let id = CheckpointId { epoch: 2, at_ms: 4 };
        let missing = p._dir.path().join("gone.tgz");
        restore(&p.server, JobId(5), 3, id, &[missing])
            .await
            .unwrap();
        match got.await.unwrap() {
            CheckpointStream::Restore { error: Some(e), .. } => {
                assert!(e.contains("gone.tgz"), "{e}")
            }
            h => panic!("{h:?}"),
        }
    }
}
