//! The agent's owning task: one loop that holds all state (connection, jobs, pending
//! launches, owner status) and is fed by one channel of [`Input`].
//!
//! Drivers around it: a connector task per connection attempt, a reader and a writer task per
//! connection, a task per job process (exit) and per output pipe (lines), the launcher socket
//! listener. The tick (50 ms with job processes, 1 s without) is a timer inside the loop
//! itself so that a flood of output cannot delay availability changes. The CPU sample is
//! taken by the tick once a second: in the loop while no job processes are here (one read
//! of `/proc/stat`), else on the blocking pool (the jobs' processes are scanned too). An
//! idle agent so wakes about twice a second: the tick with its status, and the status's ack.
//!
//! Modules: `state` (the types, a leaf), `connect` (one connection attempt), `link` (the
//! connection's life), `job_control` (start, stop, kill, clear), `launches` (the shim's
//! requests).

mod checkpoint;
mod clusrun;
mod connect;
mod job_control;
mod launches;
mod link;
mod local;
mod state;
mod trace;

use crate::config::AgentConfig;
use crate::jobs::cgroup::CgroupRoot;
use crate::jobs::confine::{self, Confinement};
use crate::jobs::dir;
use crate::launch::{self, ShimEvent};
use crate::outbox::Outbox;
use crate::owner::cpu::{CpuMeter, CpuSample};
use crate::owner::rule::Rules;
use crate::owner::watch::{Observation, OwnerWatch, STATUS_EVERY};
use crate::owner::Owner;
use anyhow::{Context, Result};
use graze_net::Access;
use graze_proto::{AgentMsg, JobMsg, LogLine, NodeStatus, SchedulerMsg};
use rand::Rng;
use state::{Agent, Conn, Input, BACKOFF_MIN, IDLE_TICK, TICK};
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// Run the agent until `shutdown` completes or a fatal error.
pub(crate) async fn run(cfg: AgentConfig, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    if cfg.idle_sources.is_empty() {
        anyhow::bail!(crate::config::NO_IDLE_SOURCE);
    }
    let access = Access::load(&cfg.access).context("loading the access file")?;
    let jobs_dir = cfg.spool.join("jobs");
    std::fs::create_dir_all(&jobs_dir)
        .with_context(|| format!("creating spool directory '{}'", jobs_dir.display()))?;
    // SAFETY: geteuid cannot fail.
    let is_root = unsafe { libc::geteuid() } == 0;
    let confine = match &cfg.run_as {
        Some(name) if is_root => Confinement::new(confine::user_by_name(name)?, true, cfg.nice),
        Some(name) => anyhow::bail!(
            "run_as '{name}' needs an agent started as root; a normal user's agent runs jobs as itself"
        ),
        None if is_root => anyhow::bail!(
            "graze-agent runs as root but no run_as user is set: job processes never run as root (set run_as, default 'graze')"
        ),
        None => Confinement::new(confine::current_user(), false, cfg.nice),
    };
    let slots = match &cfg.slot_users {
        Some(prefix) if confine.switch_user => {
            let pool = crate::jobs::slots::SlotPool::discover(prefix, &confine)?;
            tracing::info!(prefix = %prefix, users = pool.len(), "each job runs as a slot user of its own");
            pool
        }
        _ => crate::jobs::slots::SlotPool::none(),
    };
    let output_dir = cfg.spool.join("output");
    dir::prepare_spool(&confine, &cfg.spool, &jobs_dir, &output_dir)?;
    let sock = cfg.spool.join("launch.sock");
    let listener = launch::bind(&sock)
        .with_context(|| format!("listening on launcher socket '{}'", sock.display()))?;
    dir::share_socket(&confine, &sock).with_context(|| {
        format!(
            "giving launcher socket '{}' to the job user",
            sock.display()
        )
    })?;
    // Job processes a previous agent on this spool left behind (it crashed or was killed)
    // belong to runs the scheduler has requeued by now: fence them.
    let tag_base = spool_tag(&cfg.spool);
    // The cgroup leaf carries the spool's tag as well as the name: two agents of one name on
    // one machine (two test clusters, two demos) must never share job cgroups, or one agent's
    // kill of its job 1 kills the other's job 1.
    let cgroups = match CgroupRoot::detect(&format!("{}-{}", cfg.name, &tag_base[..8])) {
        Ok(r) => {
            tracing::info!(kind = ?r.kind, base = %r.base.display(), "one cgroup per job");
            Some(r)
        }
        Err(why) => {
            tracing::info!(%why, "cgroups not writable; jobs are tracked by process group");
            None
        }
    };
    tracing::info!(user = %confine.user.name, uid = confine.user.uid, "job processes run as");
    if !cfg.launcher.exists() {
        tracing::warn!(launcher = %cfg.launcher.display(),
            "launcher shim not found; MPI jobs spanning several nodes will fail");
    }

    let swept = crate::jobs::procs::kill_tag_prefix(&format!("{tag_base}-"));
    if swept > 0 {
        tracing::warn!(
            swept,
            "killed job processes left behind by a previous agent"
        );
    }
    let instance = hex_id();
    // Should this process die without cleaning up, its guard kills this instance's jobs.
    let guard = match crate::jobs::guard::agent_exe(&cfg.launcher)
        .ok_or_else(|| std::io::Error::other("no graze-agent executable found"))
        .and_then(|exe| {
            crate::jobs::guard::Guard::start(
                &exe,
                &format!("{tag_base}-{instance}-"),
                cgroups.as_ref().map(|r| (r.kind, r.base.as_path())),
            )
        }) {
        Ok(g) => {
            tracing::info!(
                pid = g.pid(),
                "guard started: job processes die with this agent"
            );
            Some(g)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the guard: if this agent crashes, its job processes live on until it restarts");
            None
        }
    };
    let info = crate::machine::node_info(&cfg).await;
    tracing::info!(name = %info.name, cores = info.cores, sockets = info.sockets,
        mpi = ?info.mpi.iter().map(|m| format!("{} {}", m.kind, m.version)).collect::<Vec<_>>(),
        scheduler = %access.scheduler, "graze-agent starting");

    let (tx, mut rx) = mpsc::channel::<Input>(4096);
    let listen_task = tokio::spawn(launch::serve(listener, tx.clone(), Input::Shim));

    let started = Instant::now();
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let cfg_node_timeout = cfg.node_timeout;
    let rules = Rules {
        start_after: cfg.start_after,
        owner_cpu_max: cfg.owner_cpu_max,
        resume_after: cfg.policy.resume_after,
    };
    let mut agent = Agent {
        owner: Owner::new(&cfg.idle_sources, started, &wake),
        instance,
        guard,
        tag_base,
        cfg,
        access,
        info,
        tx,
        jobs: HashMap::new(),
        launches: HashMap::new(),
        conn: Conn::Down { retry_at: started },
        gen: 0,
        backoff: BACKOFF_MIN,
        failures: 0,
        cpu: CpuSample {
            core_load: Vec::new(),
            owner_cpu: 0.0,
            job_cpu: 0.0,
        },
        jobsets: Vec::new(),
        meter: Some(Box::new(CpuMeter::new())),
        sampled_at: Instant::now(),
        ticked_at: Instant::now(),
        jobs_dir,
        sock,
        fatal: None,
        watch: OwnerWatch::new(rules),
        wake,
        lost_at: None,
        heard: (0, started),
        node_timeout: cfg_node_timeout,
        outbox: Outbox::default(),
        confine,
        slots,
        snoozed_until_ms: None,
        cgroups,
        output_dir,
        clusruns: HashMap::new(),
        ckpts: HashMap::new(),
        early_restores: Vec::new(),
        traces: HashMap::new(),
        last_idle: None,
    };

    let local_task = local::serve(&agent.cfg, agent.tx.clone());
    let wake_rx = agent.wake.clone();
    // The tick's period is asked afresh after every input, so a job's start (or a lost
    // connection) brings the next tick to at most `TICK` after the last one.
    tokio::pin!(shutdown);
    loop {
        let last_tick = tokio::time::Instant::from_std(agent.ticked_at);
        let mut due = last_tick + agent.tick_period();
        // Not after the next status is due (nor sooner than `TICK` after the last tick): an
        // idle node still reports once a second.
        if let Some(at) = agent.watch.report_due() {
            due = due.min(tokio::time::Instant::from_std(at).max(last_tick + TICK));
        }
        tokio::select! {
            biased;
            () = &mut shutdown => {
                tracing::info!("shutting down");
                break;
            }
            () = tokio::time::sleep_until(due) => agent.on_tick().await,
            () = wake_rx.notified() => agent.on_tick().await,
            Some(input) = rx.recv() => agent.handle(input).await,
        }
        if agent.fatal.is_some() {
            break;
        }
    }
    listen_task.abort();
    if let Some(t) = local_task {
        t.abort();
    }
    agent.stop().await;
    match agent.fatal.take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A stable id for a spool directory (FNV-1a of its path), used in job tags.
fn spool_tag(spool: &std::path::Path) -> String {
    let path = std::fs::canonicalize(spool).unwrap_or_else(|_| spool.to_owned());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn hex_id() -> String {
    let v: u64 = rand::thread_rng().gen();
    format!("{v:016x}")
}

impl Agent {
    /// When this PC's availability window closes, for the scheduler's placement (a job whose
    /// time limit runs past it is not placed here).
    fn window_ends_ms(&self) -> Option<u64> {
        self.cfg.policy.windows.closes_at_ms()
    }

    async fn handle(&mut self, input: Input) {
        match input {
            Input::Connected {
                gen,
                session,
                node_timeout,
            } => self.on_connected(gen, *session, node_timeout),
            Input::ConnectFailed { gen, error } => self.on_connect_failed(gen, error),
            Input::Scheduler { gen, msg } if gen == self.gen => {
                // A job arriving on an idle node (whose tick is up to `IDLE_TICK` old): look
                // at the owner first, so a job placed just as the owner came back starts
                // stopped instead of running until the next tick.
                if matches!(
                    msg,
                    SchedulerMsg::StartJob { .. } | SchedulerMsg::SpawnRemote { .. }
                ) && self.ticked_at.elapsed() >= TICK
                {
                    self.on_tick().await;
                }
                self.on_scheduler(msg).await
            }
            Input::Scheduler { .. } => {}
            Input::Lost {
                gen,
                reason,
                timed_out,
            } => {
                if gen == self.gen && matches!(self.conn, Conn::Up { .. }) {
                    self.lose_connection(&reason, timed_out);
                }
            }
            Input::Output {
                job,
                rank,
                stream,
                line,
            } => {
                if self.jobs.contains_key(&job) {
                    let line = LogLine { rank, stream, line };
                    self.send_job(JobMsg::Output { job, line }).await;
                }
            }
            Input::Local { req, reply } => self.on_local(req, reply),
            Input::Note { job, what } => {
                if self.jobs.contains_key(&job) {
                    self.send_job(JobMsg::JobNote { job, what }).await;
                }
            }
            Input::MainExited { job, exit } => self.on_main_exited(job, exit).await,
            Input::RemoteExited { job, remote, exit } => {
                self.on_remote_exited(job, remote, exit).await
            }
            Input::Killed { job, result } => self.on_killed(job, result).await,
            Input::Shim(ShimEvent::Request(r)) => self.on_launch_request(r).await,
            Input::Shim(ShimEvent::Gone(id)) => {
                if let Some(p) = self.launches.remove(&id) {
                    tracing::info!(job = %p.job, launch = id.0, "launcher shim went away; launch abandoned");
                    self.send(AgentMsg::LaunchAbandoned { id }).await;
                }
            }
            Input::ClusrunLine { id, stream, line } => self.on_clusrun_line(id, stream, line).await,
            Input::ClusrunExited { id, exit } => self.on_clusrun_exited(id, exit).await,
            Input::Sample(meter, s) => {
                self.meter = Some(meter);
                self.cpu = s;
            }
            Input::RestoreStream {
                gen,
                job,
                epoch,
                id,
                error,
                streams,
            } if gen == self.gen => self.on_restore_stream(job, epoch, id, error, *streams),
            Input::RestoreStream { .. } => {}
            Input::Restored {
                job,
                epoch,
                id,
                result,
            } => self.on_restored(job, epoch, Some(id), result).await,
            Input::Markers {
                job,
                epoch,
                id,
                verdict,
                stop,
            } => self.on_markers(job, epoch, id, verdict, stop),
            Input::Packed { job, id } => self.on_packed(job, id),
            Input::PartSent {
                job,
                id,
                result,
                clear,
            } => self.on_part_sent(job, id, result, clear).await,
            Input::ClockSample { job, result } => self.on_clock_sample(job, result),
            Input::TraceSent { job, result } => self.on_trace_sent(job, result).await,
            Input::Stopped {
                seen,
                result,
                released,
            } => match result {
                Ok(()) => {
                    let latency_us = seen.elapsed().as_micros() as u64;
                    tracing::info!(
                        after_ms = latency_us / 1000,
                        "every job process on this node is stopped"
                    );
                    // The owner-release latency, for the harvest report: input seen to every
                    // job process stopped. Sequenced, so a reconnect does not lose it.
                    if !released.is_empty() {
                        self.send_job(JobMsg::OwnerReleased {
                            latency_us,
                            jobs: released,
                        })
                        .await;
                    }
                }
                Err(e) => tracing::error!(error = %e, "job processes did not stop"),
            },
        }
    }

    /// How long after the last tick the next one is due: [`TICK`] while anything here needs
    /// it (job processes, whose owner release and self-fence it bounds; clusruns, restores,
    /// pending launches; a connection that is down or lost), else [`IDLE_TICK`], shortened
    /// to the moment the owner's idle time reaches `start_after` so an offer is not late.
    fn tick_period(&self) -> Duration {
        let busy = !self.jobs.is_empty()
            || !self.launches.is_empty()
            || !self.clusruns.is_empty()
            || !self.ckpts.is_empty()
            || !self.early_restores.is_empty()
            || self.lost_at.is_some()
            || !matches!(self.conn, Conn::Up { .. });
        if busy {
            return TICK;
        }
        let start_after = self.cfg.start_after;
        match self.last_idle {
            Some(idle) if idle < start_after => (start_after - idle).clamp(TICK, IDLE_TICK),
            _ => IDLE_TICK,
        }
    }

    /// Take the CPU sample when one is due (every [`STATUS_EVERY`], a little early so a tick
    /// that comes for the status finds it due): at once while no job processes are here,
    /// else on the blocking pool, which hands the meter back with [`Input::Sample`]. Until
    /// then the status carries the previous sample.
    fn sample_cpu(&mut self, now: Instant) {
        if now.duration_since(self.sampled_at) + TICK / 2 < STATUS_EVERY {
            return;
        }
        let Some(mut meter) = self.meter.take() else {
            return;
        };
        self.sampled_at = now;
        if self.jobsets.is_empty() {
            self.cpu = meter.sample(&[]);
            self.meter = Some(meter);
            return;
        }
        let sets = self.jobsets.clone();
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let s = meter.sample(&sets);
            let _ = tx.blocking_send(Input::Sample(meter, s));
        });
    }

    /// Every [`Agent::tick_period`] (or at once when an event-driven source saw input): the
    /// owner watch, the self-fence, the reconnect and the status.
    async fn on_tick(&mut self) {
        let now = Instant::now();
        self.ticked_at = now;
        self.sample_cpu(now);
        let owner = self.owner.evaluate(now, SystemTime::now());
        self.last_idle = Some(owner.idle);
        let obs = Observation {
            idle: owner.idle,
            owner_cpu: self.cpu.owner_cpu,
            window_open: self.cfg.policy.windows.open_now(),
            present: owner.present.clone(),
            snoozed_until_ms: self.snoozed_now(),
            has_jobs: self.jobs.values().any(|j| !j.killing),
            connected: matches!(self.conn, Conn::Up { .. }),
        };
        let d = self.watch.tick(now, &obs);
        let avail = d.availability;
        if d.reclaim {
            tracing::info!(why = %avail, "the owner reclaimed this PC");
            // Locally and at once: no round trip to the scheduler.
            self.stop_all_jobs(now);
        }
        if d.resumable {
            tracing::info!(to = %avail, "the owner has been idle for resume_after");
        }
        self.clusrun_tick(now);
        self.trace_tick(now);
        self.restore_timeouts(now).await;
        if self.self_fence_due(now) {
            tracing::warn!(
                silent_s = now.duration_since(self.heard.1).as_secs_f64(),
                "no packet from the scheduler; fencing this node's jobs before the scheduler calls it lost"
            );
            self.lose_connection("no packet from the scheduler", true);
        }
        if let Some(at) = self.lost_at {
            if matches!(self.conn, Conn::Up { .. }) {
                self.lost_at = None;
            } else if now.duration_since(at) >= self.node_timeout {
                tracing::warn!(
                    after_s = self.node_timeout.as_secs_f64(),
                    "the scheduler did not come back; killing every job process on this node"
                );
                self.kill_all_jobs("graze-agent lost its connection to the scheduler");
            }
        }
        if let Conn::Down { retry_at } = self.conn {
            if now >= retry_at {
                self.start_connect();
            }
        }
        if let Some(from) = &d.changed_from {
            tracing::info!(from = %from, to = %avail, "availability changed");
        }
        if d.report {
            let status = NodeStatus {
                core_load: self.cpu.core_load.clone(),
                owner_cpu: self.cpu.owner_cpu,
                owner_idle_ms: owner.idle.as_millis().try_into().unwrap_or(u64::MAX),
                availability: avail,
                idle_sources: owner.working,
                unavailable_sources: owner.unavailable,
                window_ends_ms: self.window_ends_ms(),
            };
            self.send(AgentMsg::Status(status)).await;
        }
    }
}
