//! The link to the scheduler: connecting with backoff, the reader and writer of a
//! connection, losing it (and fencing this node's jobs), sending, and what the scheduler says.

use super::connect::{connect, ConnectError, CONNECT_TIMEOUT};
use super::state::{self_fence_lead, Agent, Conn, Input, Main, BACKOFF_MAX, BACKOFF_MIN};
use crate::launch::ShimReply;
use anyhow::anyhow;
use graze_net::Session;
use graze_proto::{AgentMsg, HeldJob, JobMsg, LaunchOutcome, SchedulerMsg};
use rand::Rng;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::Instrument;

impl Agent {
    pub(super) fn start_connect(&mut self) {
        self.gen += 1;
        let gen = self.gen;
        let tx = self.tx.clone();
        let access = self.access.clone();
        let bind = self.cfg.bind;
        let idle = self.cfg.node_timeout;
        let mut info = self.info.clone();
        info.held = self.held();
        info.instance = self.instance.clone();
        let task = tokio::spawn(
            async move {
                let r =
                    tokio::time::timeout(CONNECT_TIMEOUT, connect(access, bind, idle, info)).await;
                let input = match r {
                    Ok(Ok((session, node_timeout))) => Input::Connected {
                        gen,
                        session: Box::new(session),
                        node_timeout,
                    },
                    Ok(Err(error)) => Input::ConnectFailed { gen, error },
                    Err(_) => Input::ConnectFailed {
                        gen,
                        error: ConnectError::Timeout,
                    },
                };
                let _ = tx.send(input).await;
            }
            .instrument(tracing::info_span!("connect", attempt = gen)),
        );
        self.conn = Conn::Connecting { task };
    }

    pub(super) fn on_connected(&mut self, gen: u64, session: Session, scheduler_timeout: Duration) {
        if gen != self.gen || !matches!(self.conn, Conn::Connecting { .. }) {
            session.conn.close(0u32.into(), b"stale");
            return;
        }
        // The shorter of the two timeouts rules: QUIC negotiates the shorter idle timeout, and
        // jobs kept past the scheduler's own timeout could overlap their requeued run.
        let effective = self.cfg.node_timeout.min(scheduler_timeout);
        if effective != self.node_timeout && effective < self.cfg.node_timeout {
            tracing::info!(
                scheduler_s = scheduler_timeout.as_secs_f64(),
                own_s = self.cfg.node_timeout.as_secs_f64(),
                "following the scheduler's shorter node_timeout"
            );
        }
        self.node_timeout = effective;
        tracing::info!(scheduler = %self.access.scheduler, node = %self.cfg.name, "registered with the scheduler");
        self.backoff = BACKOFF_MIN;
        self.failures = 0;
        self.watch.report_afresh();
        let Session {
            endpoint,
            conn,
            control,
        } = session;
        let graze_net::Framed { mut send, mut recv } = control;
        let (out, mut out_rx) = mpsc::channel::<AgentMsg>(1024);
        let tx = self.tx.clone();
        // Unacknowledged job messages go first, in order (the scheduler drops any it has).
        let backlog: Vec<AgentMsg> = self.outbox.backlog();
        let writer = tokio::spawn(async move {
            let mut backlog = backlog.into_iter();
            loop {
                let msg = match backlog.next() {
                    Some(m) => m,
                    None => match out_rx.recv().await {
                        Some(m) => m,
                        None => break,
                    },
                };
                if let Err(e) = graze_net::send(&mut send, &msg).await {
                    let _ = tx
                        .send(Input::Lost {
                            gen,
                            reason: e.to_string(),
                            timed_out: e.is_timeout(),
                        })
                        .await;
                    return;
                }
            }
            let _ = send.finish();
        });
        let tx = self.tx.clone();
        let reader = tokio::spawn(async move {
            let (reason, timed_out) = loop {
                match graze_net::recv::<SchedulerMsg>(&mut recv).await {
                    Ok(Some(msg)) => {
                        if tx.send(Input::Scheduler { gen, msg }).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break ("the scheduler closed the connection".to_string(), false),
                    Err(e) => break (e.to_string(), e.is_timeout()),
                }
            };
            let _ = tx
                .send(Input::Lost {
                    gen,
                    reason,
                    timed_out,
                })
                .await;
        });
        let streams = self.accept_streams(gen, conn.clone());
        self.lost_at = None;
        self.heard = (conn.stats().udp_rx.datagrams, Instant::now());
        self.conn = Conn::Up {
            out,
            conn,
            endpoint,
            tasks: vec![writer, reader, streams],
        };
    }

    pub(super) fn on_connect_failed(&mut self, gen: u64, error: ConnectError) {
        if gen != self.gen {
            return;
        }
        if error.is_fatal() {
            self.fatal = Some(anyhow!(error).context(format!(
                "connecting to the scheduler at {}",
                self.access.scheduler
            )));
            return;
        }
        self.failures += 1;
        let delay = self.next_delay();
        tracing::warn!(error = %error, attempt = self.failures,
            retry_in_ms = delay.as_millis() as u64, "cannot reach the scheduler");
        self.conn = Conn::Down {
            retry_at: Instant::now() + delay,
        };
    }

    pub(super) fn next_delay(&mut self) -> Duration {
        let base = self.backoff;
        // While jobs wait for the scheduler, keep trying often: they die at node_timeout.
        let max = if self.jobs.is_empty() {
            BACKOFF_MAX
        } else {
            BACKOFF_MIN * 2
        };
        self.backoff = (self.backoff * 2).min(max);
        let jitter_ms = rand::thread_rng().gen_range(0..=base.as_millis() as u64 / 2);
        base + Duration::from_millis(jitter_ms)
    }

    /// True when this node holds jobs and the scheduler has sent nothing (not even a
    /// keep-alive) for `node_timeout - self_fence_lead`: the link is cut, and the scheduler
    /// will call this node lost and run its jobs elsewhere. Its processes must be gone first.
    pub(super) fn self_fence_due(&mut self, now: Instant) -> bool {
        let Conn::Up { conn, .. } = &self.conn else {
            return false;
        };
        let rx = conn.stats().udp_rx.datagrams;
        if rx != self.heard.0 {
            self.heard = (rx, now);
            return false;
        }
        !self.jobs.is_empty()
            && now.duration_since(self.heard.1)
                >= self
                    .node_timeout
                    .saturating_sub(self_fence_lead(self.node_timeout))
    }

    /// The scheduler is gone. Job processes keep running until `node_timeout` has passed
    /// without the scheduler (a restarting scheduler finds them again); a link that went
    /// silent has already been silent that long, so its jobs are killed at once.
    pub(super) fn lose_connection(&mut self, reason: &str, timed_out: bool) {
        self.close_conn(b"reconnecting");
        self.backoff = BACKOFF_MIN;
        let delay = self.next_delay();
        self.conn = Conn::Down {
            retry_at: Instant::now() + delay,
        };
        // A clusrun's output and end could not reach anyone.
        self.drop_clusruns();
        if timed_out || self.jobs.is_empty() {
            tracing::warn!(
                reason,
                "lost the scheduler; killing every job process on this node"
            );
            self.kill_all_jobs("graze-agent lost its connection to the scheduler");
        } else {
            tracing::warn!(
                reason,
                keep_for_s = self.node_timeout.as_secs_f64(),
                "lost the scheduler; keeping job processes while reconnecting"
            );
            self.lost_at = Some(Instant::now());
        }
    }

    /// The runs this node holds, for registering.
    pub(super) fn held(&self) -> Vec<HeldJob> {
        self.jobs
            .iter()
            .filter(|(_, j)| !j.killing && j.epoch > 0 && !j.pgids.is_empty())
            .map(|(id, j)| HeldJob {
                job: *id,
                epoch: j.epoch,
                main: j.main != Main::None,
            })
            .collect()
    }

    pub(super) fn close_conn(&mut self, why: &'static [u8]) {
        match std::mem::replace(
            &mut self.conn,
            Conn::Down {
                retry_at: Instant::now(),
            },
        ) {
            Conn::Up { conn, tasks, .. } => {
                conn.close(0u32.into(), why);
                for t in tasks {
                    t.abort();
                }
            }
            Conn::Connecting { task } => task.abort(),
            Conn::Down { .. } => {}
        }
    }

    /// Send a job message (output, exits, clears, remote exits): numbered and kept in the
    /// outbox until the scheduler acknowledges it, and sent again after a reconnect, so none is
    /// lost in a broken connection.
    pub(super) async fn send_job(&mut self, msg: JobMsg) {
        let pushed = self.outbox.push(msg);
        if pushed.dropped_oldest {
            tracing::warn!("too many unacknowledged job messages; dropping the oldest");
        }
        self.send(pushed.msg).await;
    }

    /// Send to the scheduler if connected; a full writer queue waits (backpressure).
    /// Status reports and launch requests only matter live; job messages go through
    /// [`Agent::send_job`].
    pub(super) async fn send(&mut self, msg: AgentMsg) {
        if let Conn::Up { out, .. } = &self.conn {
            if out.send(msg).await.is_err() {
                // The writer ended; its Lost input (or the reader's) follows, and the
                // reconnect resends what was not acknowledged.
                tracing::debug!("writer gone; message dropped");
            }
        }
    }

    pub(super) async fn on_scheduler(&mut self, msg: SchedulerMsg) {
        match msg {
            SchedulerMsg::CheckpointSetup {
                job,
                epoch,
                dir,
                ranks,
                restore,
                signal,
            } => {
                self.on_checkpoint_setup(job, epoch, dir, ranks, restore, signal)
                    .await
            }
            SchedulerMsg::Checkpoint {
                job,
                epoch,
                id,
                ranks,
                signal,
                grace_ms,
                stop,
            } => {
                self.on_checkpoint(job, epoch, id, ranks, signal, grace_ms, stop)
                    .await
            }
            msg @ (SchedulerMsg::StartJob { .. } | SchedulerMsg::SpawnRemote { .. })
                if self.defer_launch_needed(&msg) =>
            {
                self.defer_launch(msg);
            }
            SchedulerMsg::Registered { .. } => tracing::debug!("registered again"),
            SchedulerMsg::RegisterRefused { reason } => {
                self.fatal = Some(anyhow!(ConnectError::RegisterRefused {
                    name: self.cfg.name.clone(),
                    reason
                }));
            }
            SchedulerMsg::StartJob {
                job,
                command,
                cwd,
                env,
                hosts,
                secret,
                epoch,
                stdout,
                stderr,
                trace,
            } => {
                graze_net::timeline(job.0, "start_received", &self.cfg.name);
                let files = stdout.map(|o| (o, stderr, epoch));
                let trace = trace.map(|t| (t, epoch));
                self.start_job(job, command, cwd, env, hosts, secret, files, trace)
                    .await;
                if let Some(j) = self.jobs.get_mut(&job) {
                    j.epoch = j.epoch.max(epoch);
                }
            }
            SchedulerMsg::SpawnRemote {
                remote,
                job,
                command,
                epoch,
                origin,
                origin_id,
                trace,
            } => {
                let trace = trace.map(|t| (t, epoch));
                self.spawn_remote(remote, job, command, (origin, origin_id), trace)
                    .await;
                if let Some(j) = self.jobs.get_mut(&job) {
                    j.epoch = j.epoch.max(epoch);
                }
            }
            SchedulerMsg::LaunchDone { id, outcome } => {
                let Some(p) = self.launches.remove(&id) else {
                    tracing::debug!(launch = id.0, "answer for a launch that is gone");
                    return;
                };
                let reply = match outcome {
                    LaunchOutcome::Exited(x) => ShimReply::exit(x.shell_code()),
                    LaunchOutcome::Refused { reason } => ShimReply::error(reason),
                };
                graze_net::timeline(p.job.0, "shim_answered", &self.cfg.name);
                let _ = p.reply.send(reply);
            }
            SchedulerMsg::KillJob { job } => {
                graze_net::timeline(job.0, "kill_received", &self.cfg.name);
                self.kill_job(job, None)
            }
            SchedulerMsg::SuspendJob { job } => self.stop_job(job),
            SchedulerMsg::ResumeJob { job } => self.resume_job(job),
            SchedulerMsg::VacateJob { job } => {
                let grace = self.cfg.policy.vacate_grace;
                self.kill_job(job, Some(grace))
            }
            SchedulerMsg::Ack { seq } => self.outbox.ack(seq),
            SchedulerMsg::Clusrun {
                id,
                command,
                timeout_ms,
                even_if_busy,
            } => {
                self.start_clusrun(id, command, timeout_ms, even_if_busy)
                    .await
            }
            SchedulerMsg::ClusrunKill { id } => self.kill_clusrun(id, false),
            SchedulerMsg::SignalJob { job, epoch, signal } => self.signal_job(job, epoch, signal),
        }
    }
}
