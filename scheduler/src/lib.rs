//! `graze-scheduler`: the head node.
//!
//! The [`core`] module is the sans-IO scheduler (node table, queue, allocator). The rest is
//! its driver, [`run`]: a QUIC listener (`accept`) whose connection tasks (`agent_conn`,
//! `client_conn`) feed one owning task (`owner::Owner`) through an mpsc of `owner::Input`;
//! that task alone owns the [`core::Core`], the output store and the waiters. It handles agent
//! messages (`agent_conn`) and client requests (`requests`, `clusrun`), commits every batch of inputs
//! before sending what waited for it (`commit`), and pushes deltas to `graze top` (`watch`).
//! Checkpoints (`checkpoint`) travel on streams of their own beside each agent's control
//! stream and are stored under `STATE/checkpoints`.

mod accept;
mod agent_conn;
pub mod audit;
pub mod auth;
mod checkpoint;
mod client_conn;
mod clusrun;
mod commit;
pub mod config;
pub mod core;
pub(crate) mod db;
mod history;
mod owner;
mod requests;
mod store;
pub mod token_cmd;
mod trace;
mod watch;

use crate::auth::TokenStore;
use crate::core::{Core, CoreConfig};
use crate::owner::{now_ms, Input, Owner};
use crate::watch::{Watch, WATCH_TICK};

/// Least time between two deferred scheduling passes (see [`Core::defer_passes`]): at
/// 10,000 agents jobs end and owners come and go hundreds of times a second, and each pass
/// walks the nodes for the head job's reservation. A submit still places its job at once.
const PASS_GAP: Duration = Duration::from_millis(10);
use anyhow::{Context, Result};
use audit::Audit;
pub use config::SchedulerConfig;
use graze_net::Access;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::info;

/// A running scheduler's address and access file, for tests and the demo.
#[derive(Debug, Clone)]
pub struct Started {
    /// The bound address.
    pub addr: SocketAddr,
    /// The access file written.
    pub access_path: std::path::PathBuf,
    /// Its content.
    pub access: Access,
}

/// Run the scheduler until `shutdown` completes. `on_start` learns the bound address.
pub async fn run(
    cfg: SchedulerConfig,
    shutdown: impl Future<Output = ()> + Send,
    on_start: impl FnOnce(Started) + Send,
) -> Result<()> {
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("creating state dir {}", cfg.state_dir.display()))?;
    let id = graze_net::Identity::load_or_create(&cfg.state_dir.join("identity"))?;
    let access_path = cfg.state_dir.join("access.toml");
    let token = match Access::load(&access_path) {
        Ok(a) => a.token,
        Err(_) => graze_net::random_token(),
    };
    let endpoint = graze_net::server_endpoint(cfg.listen, &id, cfg.node_timeout)?;
    let addr = endpoint.local_addr().context("reading the bound address")?;
    let advertise = cfg.advertise.clone().unwrap_or_else(|| {
        if addr.ip().is_unspecified() {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "localhost".into());
            format!("{host}:{}", addr.port())
        } else {
            addr.to_string()
        }
    });
    let access = Access {
        scheduler: advertise,
        fingerprint: id.fingerprint(),
        token: token.clone(),
    };
    access.save(&access_path)?;
    // The access file's token is the bootstrap admin token (recorded once, on first start).
    let tokens = TokenStore::new(&cfg.state_dir);
    if tokens.bootstrap(&token, now_ms())? {
        info!(store = %tokens.path().display(), "token store created with the bootstrap admin token of access.toml");
    }
    let audit = Audit::open(&cfg.state_dir)
        .with_context(|| format!("opening the audit log in {}", cfg.state_dir.display()))?;
    info!(%addr, access = %access_path.display(), "scheduler listening");
    on_start(Started {
        addr,
        access_path,
        access: access.clone(),
    });

    let mut store = store::Store::open(&cfg.state_dir.join("jobs"))?;
    let db = std::sync::Arc::new(db::Db::open(&cfg.state_dir.join("graze.redb"))?);
    let loaded = db.load()?;
    let mut core = Core::new(CoreConfig {
        max_job_cores: cfg.max_job_cores,
        node_timeout_ms: cfg.node_timeout.as_millis() as u64,
        requeue_when_suspended_after_ms: cfg
            .requeue_when_suspended_after
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX),
        checkpoint_root: cfg.checkpoint_root(&id.fingerprint()),
        max_trace_bytes: cfg.max_trace_bytes,
        ..CoreConfig::default()
    });
    core.defer_passes();
    info!(
        jobs = loaded.jobs.len(),
        nodes = loaded.nodes.len(),
        "state restored from the database"
    );
    core.restore(loaded.jobs, loaded.nodes, &loaded.drained, now_ms());
    store.restore_index(loaded.outputs);
    // The file system is the truth for checkpoints: transfers cut by a crash are removed,
    // complete ones are read, and those of jobs that are final (or unknown) go.
    let mut checkpoints = checkpoint::Checkpoints::open(
        &cfg.state_dir.join("checkpoints"),
        cfg.max_checkpoint_bytes,
    )?;
    checkpoints.retain_jobs(|j| core.job_view(j).is_some_and(|v| !v.state.is_final()));
    let seqs = loaded.seqs.into_iter().collect();
    let mut history = history::History::new(cfg.history_days, now_ms());
    if let Some(cutoff) = history.prune_due(now_ms()) {
        let gone = db.prune_history(cutoff)?;
        info!(rows = gone, days = cfg.history_days, "old history pruned");
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let accept = tokio::spawn(accept::accept_loop(
        endpoint.clone(),
        tokens,
        audit.clone(),
        tx,
    ));
    let owner = Owner {
        core,
        agents: HashMap::new(),
        waiters: HashMap::new(),
        followers: HashMap::new(),
        watch: Watch::default(),
        store,
        db,
        deferred: Vec::new(),
        seqs,
        seq_dirty: BTreeSet::new(),
        acks: HashMap::new(),
        audit,
        history,
        clusruns: Default::default(),
        checkpoints,
        traces: trace::Traces {
            root: cfg.state_dir.join("traces"),
            max: cfg.max_trace_bytes,
        },
    };
    tokio::select! {
        r = owner.run(rx) => r?,
        _ = shutdown => info!("scheduler shutting down"),
    }
    accept.abort();
    endpoint.close(0u32.into(), b"scheduler shutting down");
    Ok(())
}

impl Owner {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) -> Result<()> {
        let mut tick = tokio::time::interval(WATCH_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The core's next deadline, asked again only after inputs that may have changed it: a
        // status that changes nothing the core acts on (most of them: load and idle time
        // move every second) leaves every deadline as it was, and asking walks every
        // unsettled job (with 5,000 running jobs, about as long as the status itself).
        self.core.run_deferred_pass(now_ms());
        let mut deadline = self.core.poll_timeout();
        // Deferred passes run at most every `PASS_GAP`: one asked for sooner waits for
        // `pass_at` (each pass costs a walk of the nodes for the head job's reservation).
        let mut last_pass = tokio::time::Instant::now();
        let mut pass_at: Option<tokio::time::Instant> = None;
        loop {
            let sleep = async {
                match deadline {
                    Some(t) => {
                        let wait = t.saturating_sub(now_ms());
                        tokio::time::sleep(Duration::from_millis(wait)).await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                input = rx.recv() => {
                    let Some(input) = input else { return Ok(()) };
                    self.touch_input(&input);
                    let mut changed = self.handle(input, now_ms());
                    // Take whatever else is already waiting into the same commit.
                    while let Ok(input) = rx.try_recv() {
                        self.touch_input(&input);
                        changed |= self.handle(input, now_ms());
                    }
                    // One scheduling pass for the whole batch, unless one ran just now.
                    if self.core.pass_due() {
                        let now = tokio::time::Instant::now();
                        if now >= last_pass + PASS_GAP {
                            changed |= self.core.run_deferred_pass(now_ms());
                            last_pass = now;
                            pass_at = None;
                        } else {
                            pass_at = Some(last_pass + PASS_GAP);
                        }
                    }
                    self.flush().await?;
                    self.watch.push_nodes(&self.core, now_ms());
                    if changed {
                        deadline = self.core.poll_timeout();
                    }
                }
                () = sleep => {
                    self.core.handle_timeout(now_ms());
                    self.core.run_deferred_pass(now_ms());
                    self.flush().await?;
                    deadline = self.core.poll_timeout();
                }
                () = async { tokio::time::sleep_until(pass_at.unwrap_or_else(tokio::time::Instant::now)).await }, if pass_at.is_some() => {
                    pass_at = None;
                    last_pass = tokio::time::Instant::now();
                    if self.core.run_deferred_pass(now_ms()) {
                        self.flush().await?;
                        deadline = self.core.poll_timeout();
                    }
                }
                _ = tick.tick() => {
                    self.watch.tick(&self.core, now_ms());
                    self.clusrun_tick(now_ms());
                    if self.core.run_deferred_pass(now_ms()) {
                        self.flush().await?;
                        deadline = self.core.poll_timeout();
                    }
                }
            }
        }
    }

    /// Remember which node an input is about, for watch deltas.
    fn touch_input(&mut self, input: &Input) {
        if !self.watch.is_watched() {
            return;
        }
        let name = match input {
            Input::AgentUp { info, .. } => Some(info.name.clone()),
            Input::Agent(conn, _) | Input::AgentDown(conn, _) => {
                self.core.node_name(*conn).map(str::to_owned)
            }
            Input::Client(..) | Input::Checkpoint(_) | Input::Trace(_) => None,
        };
        self.watch.touch(name);
    }

    /// Handle one input; false when it cannot have changed the core's deadlines (a quiet
    /// status), true otherwise.
    fn handle(&mut self, input: Input, now: u64) -> bool {
        match input {
            Input::AgentUp {
                conn,
                info,
                tx,
                close,
            } => self.agent_up(conn, info, tx, close, now),
            Input::AgentDown(conn, reason) => self.agent_down(conn, &reason, now),
            Input::Agent(conn, msg) => return self.agent_msg(conn, msg, now),
            Input::Client(who, req, tx) => self.client(&who, req, tx, now),
            Input::Checkpoint(m) => self.checkpoint_msg(m, now),
            Input::Trace(m) => self.trace_msg(m, now),
        }
        true
    }
}
