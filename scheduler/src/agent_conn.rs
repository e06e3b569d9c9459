//! An agent connection: its task (registration, then messages in and out), and the owning
//! task's handling of what agents send (registration, loss, sequenced job messages, output).

use crate::audit::{Audit, Outcome};
use crate::auth;
use crate::core::ConnId;
use crate::owner::{Closer, Input, Owner};
use anyhow::Result;
use graze_net::{Framed, NetError};
use graze_proto::{self as proto, AgentMsg, ClientReply, JobMsg, NodeInfo, SchedulerMsg};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// Serve a registered agent: forward its messages to the owning task, send what it is told.
pub(crate) async fn serve_agent(
    conn: graze_net::quinn::Connection,
    conn_id: ConnId,
    mut control: Framed,
    identity: auth::Identity,
    audit: &Audit,
    peer: std::net::SocketAddr,
    tx: mpsc::UnboundedSender<Input>,
) -> Result<()> {
    let info = match control.recv::<AgentMsg>().await? {
        Some(AgentMsg::Register(info)) => info,
        other => {
            conn.close(2u32.into(), b"expected register");
            anyhow::bail!("expected Register, got {other:?}");
        }
    };
    if let Err(reason) = auth::may_register(&identity, &info.name) {
        audit.record(
            &identity.name,
            &identity.role.to_string(),
            "register",
            Outcome::Refused,
            &[("peer", peer.to_string()), ("node", info.name.clone())],
            &reason,
        );
        let _ = control
            .send(&SchedulerMsg::RegisterRefused {
                reason: reason.clone(),
            })
            .await;
        let _ = control.send.finish();
        tokio::time::sleep(Duration::from_millis(200)).await;
        conn.close(3u32.into(), b"register refused");
        anyhow::bail!("registration refused: {reason}");
    }
    info!(node = %info.name, cores = info.cores, "agent registered");
    let node = info.name.clone();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<SchedulerMsg>();
    let _ = tx.send(Input::AgentUp {
        conn: conn_id,
        info,
        tx: out_tx,
        close: Closer(conn.clone()),
    });
    let Framed { mut send, mut recv } = control;
    let parts = tokio::spawn(crate::checkpoint::stream::accept_parts(
        conn.clone(),
        node,
        tx.clone(),
    ));
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if let Err(e) = graze_net::send(&mut send, &m).await {
                debug!("agent writer: {e}");
                break;
            }
        }
    });
    let reason = loop {
        match graze_net::recv::<AgentMsg>(&mut recv).await {
            Ok(Some(AgentMsg::Register(_))) => {
                conn.close(2u32.into(), b"register sent twice");
                break "protocol error: register sent twice".to_string();
            }
            Ok(Some(m)) => {
                if tx.send(Input::Agent(conn_id, m)).is_err() {
                    break "scheduler stopping".into();
                }
            }
            Ok(None) => break "agent closed its stream".into(),
            Err(e @ NetError::Frame(_)) => {
                warn!("closing agent connection: {e}");
                conn.close(2u32.into(), b"bad frame");
                break format!("{e}");
            }
            Err(e) => break format!("{e}"),
        }
    };
    writer.abort();
    parts.abort();
    let _ = tx.send(Input::AgentDown(conn_id, reason.clone()));
    anyhow::bail!("agent gone: {reason}")
}

impl Owner {
    /// An agent registered on `conn`.
    pub(crate) fn agent_up(
        &mut self,
        conn: ConnId,
        info: NodeInfo,
        tx: mpsc::UnboundedSender<SchedulerMsg>,
        close: Closer,
        now: u64,
    ) {
        let name = info.name.clone();
        let instance = info.instance.clone();
        if self.seqs.get(&name).map(|s| &s.0) != Some(&instance) {
            // A new agent process: its sequence numbers start again.
            self.seqs.insert(name.clone(), (instance, 0));
            self.seq_dirty.insert(name.clone());
        }
        self.agents.insert(conn, (tx, close));
        if let Err(reason) = self.core.node_connected(conn, info, now) {
            warn!(node = %name, "registration refused: {reason}");
            if let Some((tx, close)) = self.agents.remove(&conn) {
                let _ = tx.send(SchedulerMsg::RegisterRefused {
                    reason: reason.clone(),
                });
                let close = close.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    close.close(&reason);
                });
            }
        }
    }

    /// The agent connection `conn` ended.
    pub(crate) fn agent_down(&mut self, conn: ConnId, reason: &str, now: u64) {
        if self.agents.remove(&conn).is_some() {
            info!(conn, "agent lost: {reason}");
            if let Some(node) = self.core.node_name(conn).map(str::to_owned) {
                self.checkpoint_node_lost(&node, now);
            }
            self.core.node_lost(conn, now);
            self.clusrun_conn_lost(conn, now);
        }
    }

    /// A message from the agent on `conn`; false for a status the core took quietly
    /// ([`crate::core::Core::node_status`]), true for everything else.
    pub(crate) fn agent_msg(&mut self, conn: ConnId, msg: AgentMsg, now: u64) -> bool {
        match msg {
            AgentMsg::Register(_) => {}
            AgentMsg::Sequenced { seq, msg } => {
                let Some(node) = self.core.node_name(conn).map(str::to_owned) else {
                    return false;
                };
                let last = self.seqs.get(&node).map_or(0, |s| s.1);
                if seq > last {
                    if seq != last + 1 {
                        warn!(%node, seq, last, "job messages missing from this agent");
                    }
                    self.job_msg(conn, msg, now);
                    self.seqs.entry(node.clone()).or_default().1 = seq;
                    self.seq_dirty.insert(node);
                }
                // Applied now or before: either way it may be acknowledged once committed.
                self.acks.insert(conn, seq.max(last));
            }
            AgentMsg::Status(s) => return self.core.node_status(conn, s, now),
            AgentMsg::Launch {
                id,
                job,
                secret,
                host,
                command,
            } => {
                graze_net::timeline(job.0, "launch_received", &host);
                self.core.launch(conn, id, job, &secret, &host, command)
            }
            AgentMsg::LaunchAbandoned { id } => self.core.launch_abandoned(conn, id),
            AgentMsg::ClusrunOutput { id, stream, line } => {
                self.clusrun_output(conn, id, stream, line)
            }
            AgentMsg::ClusrunDone {
                id,
                outcome,
                dropped_lines,
            } => self.clusrun_done(conn, id, outcome, dropped_lines, now),
        }
        true
    }

    /// A numbered job message, applied once.
    fn job_msg(&mut self, conn: ConnId, msg: JobMsg, now: u64) {
        match msg {
            JobMsg::Output { job, mut line } => {
                if !self.core.conn_in_job(conn, job) {
                    debug!(conn, %job, "output for a job not on this node dropped");
                    return;
                }
                line.line = proto::clip_line(line.line);
                // The run the line belongs to: the node is in the job's run (checked above)
                // and a job is placed again only once its old run's nodes cleared it, so the
                // current epoch is that run's.
                let attempt = self.core.job_epoch(job).unwrap_or(1).max(1);
                if let Err(e) = self.store.append(job, attempt, &line) {
                    warn!(%job, "storing output: {e:#}");
                }
                if let Some(fs) = self.followers.get_mut(&job) {
                    let attempts = self.store.known_attempts(job);
                    fs.retain_mut(|f| {
                        let other = f.rank.is_some() && f.rank != line.rank;
                        if other || f.attempt.is_some_and(|a| a != attempt) {
                            return !f.tx.is_closed();
                        }
                        if f.shown != attempt {
                            f.shown = attempt;
                            let head = ClientReply::LogAttempt {
                                attempt,
                                attempts: attempts.clone(),
                            };
                            if f.tx.send(head).is_err() {
                                return false;
                            }
                        }
                        f.tx.send(ClientReply::Log(vec![line.clone()])).is_ok()
                    });
                }
            }
            JobMsg::JobNote { job, what } => self.core.job_note(conn, job, what, now),
            JobMsg::JobExited { job, exit } => {
                graze_net::timeline(job.0, "main_exited_heard", "");
                self.core.job_exited(conn, job, exit, now)
            }
            JobMsg::JobFailedToStart { job, reason } => {
                self.core.job_failed_to_start(conn, job, reason, now)
            }
            JobMsg::JobCleared { job } => {
                let node = self.core.node_name(conn).unwrap_or("?");
                graze_net::timeline(job.0, "cleared_heard", node);
                self.core.job_cleared(conn, job, now)
            }
            JobMsg::OwnerReleased { latency_us, jobs } => {
                if let Some(node) = self.core.node_name(conn) {
                    debug!(%node, latency_us, jobs = jobs.len(), "owner release measured");
                    self.history
                        .event(crate::db::history::OwnerEventRow::Release {
                            node: node.to_string(),
                            latency_us,
                            at_ms: now,
                        });
                }
            }
            JobMsg::RemoteExited {
                remote,
                exit,
                origin,
                origin_id,
            } => {
                debug!(conn, %remote, %origin, "remote exited");
                graze_net::timeline(0, "remote_exited_heard", &origin);
                self.core.remote_exited(&origin, origin_id, exit)
            }
        }
    }
}
