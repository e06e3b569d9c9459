//! The owner's local socket in the agent (see `owner/local.rs`): the accept loop, which
//! checks who asks (SO_PEERCRED, utmp) before anything reaches the owning task, and the
//! owning task's side: a snooze and `status` in plain words.

use super::state::{Agent, Conn, Input};
use crate::config::AgentConfig;
use crate::owner::local::{self, Request};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// The longest request line taken.
const MAX_LINE: u64 = 256;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn human(d: Duration) -> String {
    graze_proto::human_duration(d.as_millis() as u64)
}

/// Listen on the owner's socket; `None` (logged) when it cannot be bound: the agent runs on
/// without it.
pub(super) fn serve(
    cfg: &AgentConfig,
    tx: mpsc::Sender<Input>,
) -> Option<tokio::task::JoinHandle<()>> {
    // SAFETY: geteuid cannot fail.
    let is_root = unsafe { libc::geteuid() } == 0;
    let path = local::socket_path(cfg.owner_socket.as_deref(), &cfg.spool, is_root);
    let utmp = cfg
        .utmp
        .clone()
        .unwrap_or_else(|| local::DEFAULT_UTMP.into());
    let listener = match local::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(socket = %path.display(), error = %e, "no owner socket: `graze-agent snooze` and `status` will not reach this agent");
            return None;
        }
    };
    tracing::info!(socket = %path.display(), "owner socket listening");
    Some(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let (tx, utmp) = (tx.clone(), utmp.clone());
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), one(stream, tx, utmp)).await;
            });
        }
    }))
}

/// One connection: a request line, the check, the answer.
async fn one(
    stream: tokio::net::UnixStream,
    tx: mpsc::Sender<Input>,
    utmp: std::path::PathBuf,
) -> std::io::Result<()> {
    let uid = stream.peer_cred()?.uid();
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(r, MAX_LINE))
        .read_line(&mut line)
        .await?;
    let answer = match Request::parse(&line) {
        Err(e) => (false, e),
        Ok(req) => {
            let allowed = if req.changes() {
                tokio::task::spawn_blocking(move || local::may_change(uid, &utmp))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()))
            } else {
                Ok(())
            };
            match allowed {
                Err(why) => {
                    tracing::info!(uid, request = %req.line(), why = %why, "owner socket: refused");
                    (false, format!("refused: {why}"))
                }
                Ok(()) => {
                    tracing::info!(uid, request = %req.line(), "owner socket");
                    let (reply, rx) = oneshot::channel();
                    if tx.send(Input::Local { req, reply }).await.is_err() {
                        (false, "the agent is stopping".into())
                    } else {
                        rx.await.unwrap_or((false, "the agent is stopping".into()))
                    }
                }
            }
        }
    };
    let head = if answer.0 { "ok" } else { "error" };
    w.write_all(format!("{head}\n{}\n", answer.1.trim_end()).as_bytes())
        .await?;
    w.shutdown().await
}

impl Agent {
    /// The snooze in force now (its end in ms), forgetting one that ended.
    pub(super) fn snoozed_now(&mut self) -> Option<u64> {
        match self.snoozed_until_ms {
            Some(t) if t > now_ms() => Some(t),
            Some(_) => {
                tracing::info!("the owner's snooze ended");
                self.snoozed_until_ms = None;
                None
            }
            None => None,
        }
    }

    /// An allowed request from the owner's socket.
    pub(super) fn on_local(&mut self, req: Request, reply: oneshot::Sender<(bool, String)>) {
        let text = match req {
            Request::Snooze(d) => {
                let until = now_ms() + d.as_millis() as u64;
                self.snoozed_until_ms = Some(until);
                tracing::info!(until_ms = until, "the owner snoozed graze");
                // The next tick reports it (and the scheduler vacates running jobs).
                self.wake.notify_one();
                let jobs = self.job_ids();
                let moved = if jobs.is_empty() {
                    String::new()
                } else {
                    format!(" Running jobs ({jobs}) are stopped now and moved to other PCs.")
                };
                format!(
                    "graze is snoozed until {} ({}): this PC offers nothing to the cluster.{moved}\n`graze-agent snooze off` ends it sooner.",
                    crate::owner::window::local_hhmm(until),
                    human(d)
                )
            }
            Request::SnoozeOff => {
                let was = self.snoozed_until_ms.take().is_some();
                self.wake.notify_one();
                if was {
                    "the snooze is over: graze may use this PC again when you leave it idle".into()
                } else {
                    "graze was not snoozed".into()
                }
            }
            Request::Status => self.status_text(),
        };
        let _ = reply.send((true, text));
    }

    fn job_ids(&self) -> String {
        let mut ids: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, j)| !j.killing)
            .map(|(id, _)| format!("job {id}"))
            .collect();
        ids.sort();
        ids.join(", ")
    }

    /// What graze does on this PC now, for its owner.
    fn status_text(&mut self) -> String {
        use graze_proto::Availability as A;
        let cores = self.cfg.cores;
        let p = &self.cfg.policy;
        let mut out = Vec::new();
        let running: Vec<String> = {
            let mut v: Vec<_> = self.jobs.iter().filter(|(_, j)| !j.killing).collect();
            v.sort_by_key(|(id, _)| **id);
            v.iter()
                .map(|(id, j)| {
                    let since = j
                        .since
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    let stopped = if j.suspended { ", stopped for now" } else { "" };
                    format!(
                        "job {id} since {}{stopped}",
                        crate::owner::window::local_hhmm(since)
                    )
                })
                .collect()
        };
        let avail = self.watch.last_availability();
        out.push(match (&avail, running.is_empty()) {
            (Some(A::Snoozed { until_ms }), _) => format!(
                "You snoozed graze until {}: this PC lends nothing to the cluster.",
                crate::owner::window::local_hhmm(*until_ms)
            ),
            (Some(A::OutsideWindow), _) => {
                "It is outside the hours graze may use this PC: it lends nothing now.".into()
            }
            (Some(A::Offered), true) => format!(
                "This PC lends its {cores} cores to the cluster; no job runs here right now."
            ),
            (Some(A::Offered), false) => format!(
                "This PC lends its {cores} cores to the cluster: {}.",
                running.join("; ")
            ),
            (Some(A::Waiting { remaining_ms }), _) => format!(
                "graze is waiting: this PC lends its {cores} cores after {} more without keyboard or mouse input.",
                graze_proto::human_duration(*remaining_ms)
            ),
            (Some(A::Reclaimed { resumes_in_ms }), _) => format!(
                "You reclaimed this PC: graze's jobs here are stopped; they continue after {} more without input.",
                graze_proto::human_duration(*resumes_in_ms)
            ),
            (Some(a), _) => format!("You are using this PC ({a}): graze lends nothing now."),
            (None, _) => "graze has not looked at this PC's owner yet.".into(),
        });
        if !running.is_empty() && !matches!(avail, Some(A::Offered)) {
            out.push(format!("Jobs here: {}.", running.join("; ")));
        }
        out.push(format!(
            "When you touch the keyboard or mouse, graze's jobs here stop at once and the cores are yours; they continue after {} without input, and move to another PC if you stay {}.",
            human(p.resume_after),
            human(p.vacate_after)
        ));
        out.push("`graze-agent snooze 2h` says \"not now\": nothing runs here for 2 hours.".into());
        if !matches!(self.conn, Conn::Up { .. }) {
            out.push("(The agent is not connected to its scheduler right now.)".into());
        }
        out.join("\n")
    }
}
