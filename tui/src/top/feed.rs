//! The data feed of `graze top`: one task that keeps a connection to the scheduler, watches it
//! ([`ClientRequest::Watch`](graze_proto::ClientRequest::Watch)) and follows the open job's
//! output, forwarding everything as [`DataEvent`]s; and carries out the app's commands
//! (cancel, owner key). It reconnects by itself when the scheduler is lost.
//!
//! Reads of a [`Replies`] are not cancel-safe, so each stream is read by its own task that
//! forwards over an mpsc; those tasks are aborted as a whole, never raced in a `select!`.

use super::app::Command;
use super::model::DataEvent;
use crate::client::{Client, ClientError};
use graze_net::Access;
use graze_proto::{ClientReply, ClientRequest, JobId};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Pause between reconnection attempts.
const RETRY: Duration = Duration::from_secs(1);

/// Commands the feed carries out, sent by the loop.
pub type CommandTx = mpsc::UnboundedSender<Command>;

/// Why a connection ended.
struct Lost {
    /// For the banner.
    reason: String,
    /// Whether reconnecting may help ([`ClientError::is_retryable`]).
    retryable: bool,
}

impl Lost {
    fn of(e: &ClientError) -> Lost {
        Lost {
            reason: short(e),
            retryable: e.is_retryable(),
        }
    }
}

/// Run the feed until `cmds` closes, reconnecting after errors that are retryable
/// ([`ClientError::is_retryable`]). After any other (a refused or revoked token, another
/// protocol version) it sends [`DataEvent::Stopped`] with the reason and returns.
/// `owner_files` maps node names to their `file:` idle source (demo only) for
/// [`Command::TouchOwner`].
pub async fn run(
    access: Access,
    data: mpsc::UnboundedSender<DataEvent>,
    mut cmds: mpsc::UnboundedReceiver<Command>,
    owner_files: HashMap<String, PathBuf>,
) {
    let mut attempt = 0u32;
    loop {
        let client = match Client::connect(&access).await {
            Ok(c) => Arc::new(c),
            Err(e) if !e.is_retryable() => {
                tracing::warn!("connecting to the scheduler failed for good: {e}");
                let _ = data.send(DataEvent::Stopped { reason: short(&e) });
                return;
            }
            Err(e) => {
                attempt += 1;
                tracing::info!("connecting to the scheduler failed: {e}");
                let _ = data.send(DataEvent::Disconnected {
                    reason: short(&e),
                    attempt,
                });
                // Commands still work while disconnected where they can (owner key).
                let sleep = tokio::time::sleep(RETRY);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        _ = &mut sleep => break,
                        c = cmds.recv() => match c {
                            None => return,
                            Some(c) => offline_command(c, &data, &owner_files),
                        },
                    }
                }
                continue;
            }
        };
        let _ = data.send(DataEvent::Connected);
        let (lost_tx, mut lost_rx) = mpsc::unbounded_channel::<Lost>();
        let watch = tokio::spawn(watch_task(client.clone(), data.clone(), lost_tx.clone()));
        let mut logs: Option<JoinHandle<()>> = None;
        let lost = loop {
            tokio::select! {
                why = lost_rx.recv() => break why.unwrap_or_else(|| Lost {
                    reason: "the connection ended".into(),
                    retryable: true,
                }),
                c = cmds.recv() => match c {
                    None => {
                        watch.abort();
                        if let Some(l) = logs.take() { l.abort(); }
                        if let Ok(c) = Arc::try_unwrap(client) { c.close().await; }
                        return;
                    }
                    Some(Command::OpenLogs(id)) => {
                        if let Some(l) = logs.take() { l.abort(); }
                        logs = Some(tokio::spawn(log_task(client.clone(), id, data.clone(), lost_tx.clone())));
                    }
                    Some(Command::Cancel(id)) => {
                        let (client, data) = (client.clone(), data.clone());
                        tokio::spawn(async move {
                            let msg = match client.cancel(id.into()).await {
                                Ok(crate::client::Shown::Job(v)) => crate::format::cancel_message(&v),
                                Ok(crate::client::Shown::Array(a)) => crate::batch::array_cancel_message(&a),
                                Err(e) => format!("cancelling job {id}: {e}"),
                            };
                            let _ = data.send(DataEvent::Notice(msg));
                        });
                    }
                    Some(Command::LoadHarvest) => {
                        let (client, data) = (client.clone(), data.clone());
                        tokio::spawn(async move {
                            let since = crate::format::now_ms()
                                .saturating_sub(super::app::HARVEST_PERIOD_MS);
                            let ev = match client.harvest(since).await {
                                Ok(d) => DataEvent::Harvest(Box::new(d)),
                                Err(e) => DataEvent::Notice(format!("harvest figures: {e}")),
                            };
                            let _ = data.send(ev);
                        });
                    }
                    Some(Command::LoadTrace(job)) => {
                        let (client, data) = (client.clone(), data.clone());
                        tokio::spawn(async move {
                            let trace = super::data::load_trace(&client, job)
                                .await
                                .map(Box::new)
                                .map_err(|e| format!("{e:#}"));
                            let _ = data.send(DataEvent::Trace { job, trace });
                        });
                    }
                    Some(c) => offline_command(c, &data, &owner_files),
                },
            }
        };
        watch.abort();
        if let Some(l) = logs.take() {
            l.abort();
        }
        let Lost { reason, retryable } = lost;
        if !retryable {
            tracing::warn!("the scheduler connection failed for good: {reason}");
            let _ = data.send(DataEvent::Stopped { reason });
            return;
        }
        attempt = 1;
        tracing::info!("scheduler lost: {reason}");
        let _ = data.send(DataEvent::Disconnected { reason, attempt });
        // The app asks for the open job's output again after the next snapshot.
        tokio::time::sleep(RETRY).await;
    }
}

/// An error for the one-line banner: at most 120 bytes, then `…`.
fn short(e: &ClientError) -> String {
    graze_proto::clip(e.to_string(), 120, "…")
}

/// Commands that need no scheduler.
fn offline_command(
    c: Command,
    data: &mpsc::UnboundedSender<DataEvent>,
    owner_files: &HashMap<String, PathBuf>,
) {
    match c {
        Command::TouchOwner(node) => {
            let msg = match owner_files.get(&node) {
                Some(p) => match touch(p) {
                    Ok(()) => format!("the owner of {node} touched the keyboard"),
                    Err(e) => format!("touching {}: {e}", p.display()),
                },
                None => format!("no idle file known for node {node}"),
            };
            let _ = data.send(DataEvent::Notice(msg));
        }
        Command::Cancel(id) => {
            let _ = data.send(DataEvent::Notice(format!(
                "cannot cancel job {id}: not connected to the scheduler"
            )));
        }
        Command::LoadHarvest => {
            let _ = data.send(DataEvent::Notice(
                "harvest figures: not connected to the scheduler".into(),
            ));
        }
        Command::LoadTrace(job) => {
            let _ = data.send(DataEvent::Trace {
                job,
                trace: Err("not connected to the scheduler".into()),
            });
        }
        Command::OpenLogs(_) | Command::Quit => {}
    }
}

/// Set a file's modification time to now (what an owner's input does to a `file:` source).
pub fn touch(p: &std::path::Path) -> std::io::Result<()> {
    let f = std::fs::File::options().append(true).create(true).open(p)?;
    f.set_modified(std::time::SystemTime::now())
}

async fn watch_task(
    client: Arc<Client>,
    data: mpsc::UnboundedSender<DataEvent>,
    lost: mpsc::UnboundedSender<Lost>,
) {
    let why = match watch_loop(&client, &data).await {
        Ok(()) => Lost {
            reason: "the scheduler ended the watch stream".to_string(),
            retryable: true,
        },
        Err(e) => Lost::of(&e),
    };
    let _ = lost.send(why);
}

async fn watch_loop(
    client: &Client,
    data: &mpsc::UnboundedSender<DataEvent>,
) -> Result<(), ClientError> {
    let mut replies = client.open(&ClientRequest::Watch).await?;
    while let Some(r) = replies.next().await? {
        let ev = match r {
            ClientReply::Snapshot { nodes, jobs } => DataEvent::Snapshot { nodes, jobs },
            ClientReply::NodeChanged(n) => DataEvent::Node(n),
            ClientReply::NodeLoads(l) => DataEvent::Loads(l),
            ClientReply::JobChanged(j) => DataEvent::Job(j),
            other => {
                return Err(ClientError::Unexpected {
                    request: "watch",
                    reply: crate::client::reply_name(&other),
                })
            }
        };
        if data.send(ev).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

async fn log_task(
    client: Arc<Client>,
    job: JobId,
    data: mpsc::UnboundedSender<DataEvent>,
    lost: mpsc::UnboundedSender<Lost>,
) {
    let result = async {
        let mut stream = client.logs(job.into(), None, true).await?;
        let mut reset = true;
        while let Some(lines) = stream.next_batch().await? {
            let _ = data.send(DataEvent::Log { job, lines, reset });
            reset = false;
        }
        if reset {
            let _ = data.send(DataEvent::Log {
                job,
                lines: Vec::new(),
                reset,
            });
        }
        let _ = data.send(DataEvent::LogEnd(job));
        Ok::<(), ClientError>(())
    }
    .await;
    match result {
        Ok(()) => {}
        Err(e @ ClientError::Scheduler(_)) => {
            let _ = data.send(DataEvent::Notice(format!("output of job {job}: {e}")));
        }
        Err(e) => {
            let _ = lost.send(Lost::of(&e));
        }
    }
}
