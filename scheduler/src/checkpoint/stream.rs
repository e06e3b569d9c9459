//! The checkpoint streams: parts arriving from an agent (one bidirectional stream each,
//! opened by the agent beside its control stream) and restores sent to the next run's nodes
//! (opened by the scheduler). Their format is in `graze_proto::checkpoint`. Only bytes move
//! here; what a part is worth is decided by the owning task ([`super::Msg`]).

use super::{Msg, Sink};
use crate::core::ConnId;
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

/// Accept the checkpoint streams the agent on `conn` opens, until the connection ends.
pub(crate) async fn accept_parts(
    link: quinn::Connection,
    conn: ConnId,
    tx: mpsc::UnboundedSender<Input>,
) {
    loop {
        match link.accept_bi().await {
            Ok((send, recv)) => {
                let _ = send.set_priority(-1);
                tokio::spawn(receive_part(send, recv, conn, tx.clone()));
            }
            Err(e) => {
                debug!(conn, "no more checkpoint streams: {e}");
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
    conn: ConnId,
    tx: mpsc::UnboundedSender<Input>,
) {
    let head =
        match tokio::time::timeout(HEAD_TIMEOUT, graze_net::recv::<CheckpointStream>(&mut recv))
            .await
        {
            Ok(Ok(Some(h))) => h,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                warn!(conn, "checkpoint stream: bad header: {e}");
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
    let CheckpointStream::Part {
        job,
        id,
        ranks,
        error,
    } = head
    else {
        let _ = recv.stop(1u32.into());
        return reply(&mut send, Some("agents send parts, not restores".into())).await;
    };
    let outcome = match error {
        Some(e) => Err(e),
        None => {
            let (otx, orx) = oneshot::channel();
            let begin = Msg::Begin {
                conn,
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
        conn,
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
                        super::human_bytes(sink.max)
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

/// Send `node` the parts (`files`, concatenated gzip'd tars) of checkpoint `id` to restore
/// for run `epoch` of `job`. The agent reports the outcome as a job note; failures here are
/// logged, and a part that cannot be read is told to the agent as the stream's error.
pub(crate) async fn send_restore(
    link: quinn::Connection,
    node: String,
    job: JobId,
    epoch: u64,
    id: CheckpointId,
    files: Vec<PathBuf>,
) {
    match restore(&link, job, epoch, id, &files).await {
        Ok((bytes, None)) => info!(%job, %id, %node, bytes, "checkpoint sent for restore"),
        Ok((_, Some(e))) => warn!(%job, %id, %node, "restore refused by the agent: {e}"),
        Err(e) => warn!(%job, %id, %node, "sending a restore: {e}"),
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
    let r = graze_net::recv::<StreamReply>(&mut recv).await?;
    Ok((bytes, r.and_then(|r| r.error)))
}
