//! `graze-scheduler`: the head node.
//!
//! The [`core`] module is the sans-IO scheduler (node table, queue, allocator). This file is
//! its driver: a QUIC listener whose connection tasks feed one owning task through an mpsc of
//! [`Input`]; that task alone owns the [`core::Core`], the output store and the waiters.

pub mod audit;
pub mod auth;
pub mod config;
pub mod core;
pub mod db;
mod store;
pub mod token_cmd;

use crate::audit::{Audit, Outcome};
use crate::auth::{Identity, TokenRole, TokenStore};
use crate::core::{ConnId, Core, CoreConfig, Output};
use anyhow::{Context, Result};
pub use config::SchedulerConfig;
use graze_net::{Access, Framed, NetError};
use graze_proto::{
    self as proto, AgentMsg, ClientReply, ClientRequest, Hello, HelloReply, JobId, LogLine, Role,
    SchedulerMsg,
};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tracing::{debug, info, info_span, warn, Instrument};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Everything the owning task reacts to.
enum Input {
    /// An agent passed the hello and registered.
    AgentUp {
        conn: ConnId,
        info: proto::NodeInfo,
        tx: mpsc::UnboundedSender<SchedulerMsg>,
        close: quinn_close::Closer,
    },
    /// A message from a registered agent.
    Agent(ConnId, AgentMsg),
    /// The agent's connection ended.
    AgentDown(ConnId, String),
    /// A client request from an identity, with where to send the replies.
    Client(Identity, ClientRequest, mpsc::UnboundedSender<ClientReply>),
}

mod quinn_close {
    /// Closes one connection from the owning task.
    #[derive(Clone)]
    pub(crate) struct Closer(pub(crate) graze_net::quinn::Connection);
    impl Closer {
        pub(crate) fn close(&self, reason: &str) {
            self.0.close(1u32.into(), reason.as_bytes());
        }
    }
}

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
    let db = db::Db::open(&cfg.state_dir.join("graze.redb"))?;
    let loaded = db.load()?;
    let mut core = Core::new(CoreConfig {
        max_job_cores: cfg.max_job_cores,
        node_timeout_ms: cfg.node_timeout.as_millis() as u64,
        requeue_when_suspended_after_ms: cfg
            .requeue_when_suspended_after
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX),
        ..CoreConfig::default()
    });
    info!(
        jobs = loaded.jobs.len(),
        nodes = loaded.nodes.len(),
        "state restored from the database"
    );
    core.restore(loaded.jobs, loaded.nodes, &loaded.drained, now_ms());
    store.restore_index(loaded.outputs);
    let seqs = loaded.seqs.into_iter().collect();
    let (tx, rx) = mpsc::unbounded_channel();
    let accept = tokio::spawn(accept_loop(endpoint.clone(), tokens, audit.clone(), tx));
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
        seq_dirty: std::collections::BTreeSet::new(),
        acks: HashMap::new(),
        audit,
    };
    tokio::select! {
        r = owner.run(rx) => r?,
        _ = shutdown => info!("scheduler shutting down"),
    }
    accept.abort();
    endpoint.close(0u32.into(), b"scheduler shutting down");
    Ok(())
}

async fn accept_loop(
    endpoint: graze_net::quinn::Endpoint,
    tokens: TokenStore,
    audit: Audit,
    tx: mpsc::UnboundedSender<Input>,
) {
    let mut next_conn: ConnId = 1;
    while let Some(incoming) = endpoint.accept().await {
        let conn_id = next_conn;
        next_conn += 1;
        let tokens = tokens.clone();
        let audit = audit.clone();
        let tx = tx.clone();
        let peer = incoming.remote_address();
        tokio::spawn(
            async move {
                if let Err(e) = serve_connection(incoming, conn_id, &tokens, &audit, tx).await {
                    info!("connection ended: {e:#}");
                }
            }
            .instrument(info_span!("conn", id = conn_id, %peer)),
        );
    }
}

async fn serve_connection(
    incoming: graze_net::quinn::Incoming,
    conn_id: ConnId,
    tokens: &TokenStore,
    audit: &Audit,
    tx: mpsc::UnboundedSender<Input>,
) -> Result<()> {
    let peer = incoming.remote_address();
    let conn = incoming.await.context("handshake")?;
    let (send, recv) = tokio::time::timeout(Duration::from_secs(10), conn.accept_bi())
        .await
        .context("no hello within 10 s")??;
    let mut control = Framed { send, recv };
    let hello: Hello = match tokio::time::timeout(Duration::from_secs(10), control.recv()).await {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) => anyhow::bail!("peer closed before the hello"),
        Ok(Err(e)) => {
            conn.close(2u32.into(), b"bad hello");
            anyhow::bail!("bad hello: {e}");
        }
        Err(_) => anyhow::bail!("no hello within 10 s"),
    };
    let token = hello.token.clone();
    let lookup = tokio::task::spawn_blocking({
        let tokens = tokens.clone();
        move || tokens.lookup(&token)
    })
    .await
    .context("token lookup task")?;
    let identity = match lookup {
        Ok(i) => i,
        Err(e) => {
            tracing::error!("{e}");
            None
        }
    };
    let refusal = if let Err(e) = proto::check_version(
        &format!("{:?} peer", hello.role).to_lowercase(),
        hello.version,
    ) {
        Some(e)
    } else {
        match &identity {
            None => Some(
                "invalid cluster token: unknown or revoked; use an access file from this scheduler (access.toml, or one printed by `graze-scheduler token create`)"
                    .to_string(),
            ),
            Some(who) => auth::may_connect(who, hello.role).err(),
        }
    };
    if let Some(reason) = refusal {
        let (who, role) = identity
            .as_ref()
            .map_or(("-".to_string(), "-".to_string()), |i| {
                (i.name.clone(), i.role.to_string())
            });
        audit.record(
            &who,
            &role,
            "connect",
            Outcome::Refused,
            &[
                ("peer", peer.to_string()),
                ("as", format!("{:?}", hello.role).to_lowercase()),
            ],
            &reason,
        );
        warn!(software = %hello.software, "refused connection: {reason}");
        control
            .send(&HelloReply::Refused {
                reason: reason.clone(),
            })
            .await?;
        let _ = control.send.finish();
        // Give the refusal time to reach the peer before closing.
        tokio::time::sleep(Duration::from_millis(200)).await;
        conn.close(3u32.into(), reason.as_bytes());
        return Ok(());
    }
    control
        .send(&HelloReply::Welcome {
            version: proto::PROTOCOL_VERSION,
        })
        .await?;
    let Some(identity) = identity else {
        anyhow::bail!("no identity after the hello");
    };
    debug!(who = %identity, "connection accepted");
    match hello.role {
        Role::Agent => serve_agent(conn, conn_id, control, identity, audit, peer, tx).await,
        Role::Client => serve_client(conn, identity, tx).await,
    }
}

async fn serve_agent(
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
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<SchedulerMsg>();
    let _ = tx.send(Input::AgentUp {
        conn: conn_id,
        info,
        tx: out_tx,
        close: quinn_close::Closer(conn.clone()),
    });
    let Framed { mut send, mut recv } = control;
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
    let _ = tx.send(Input::AgentDown(conn_id, reason.clone()));
    anyhow::bail!("agent gone: {reason}")
}

async fn serve_client(
    conn: graze_net::quinn::Connection,
    identity: Identity,
    tx: mpsc::UnboundedSender<Input>,
) -> Result<()> {
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                debug!("client gone: {e}");
                return Ok(());
            }
        };
        let tx = tx.clone();
        let conn = conn.clone();
        let identity = identity.clone();
        tokio::spawn(async move {
            let mut s = Framed { send, recv };
            let req = match s.recv::<ClientRequest>().await {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    warn!("closing client connection: {e}");
                    conn.close(2u32.into(), b"bad request");
                    return;
                }
            };
            let (rtx, mut rrx) = mpsc::unbounded_channel();
            if tx.send(Input::Client(identity, req, rtx)).is_err() {
                return;
            }
            while let Some(reply) = rrx.recv().await {
                if s.send(&reply).await.is_err() {
                    return;
                }
            }
            let _ = s.send.finish();
        });
    }
}

struct Follower {
    rank: Option<u32>,
    tx: mpsc::UnboundedSender<ClientReply>,
}

/// Least time between two load-only deltas of one node to watchers.
const NODE_DELTA_MS: u64 = 1000;
/// Least time between two refreshes of queued jobs' waiting reasons to watchers.
const QUEUE_REFRESH_MS: u64 = 1000;
/// Queued jobs (in run order) whose waiting reason is refreshed when the nodes change.
const QUEUE_REFRESH_MAX: usize = 1000;
/// How often pending watch deltas are looked at.
const WATCH_TICK: Duration = Duration::from_millis(250);

/// What a node delta last told watchers: the fields sent at once when they change.
#[derive(PartialEq)]
struct NodeSig {
    online: bool,
    availability: Option<proto::Availability>,
    used: u32,
    jobs: Vec<JobId>,
}

impl NodeSig {
    fn of(v: &proto::NodeView) -> NodeSig {
        NodeSig {
            online: v.online,
            availability: v.status.as_ref().map(|s| s.availability.clone()),
            used: v.used_cores,
            jobs: v.jobs.clone(),
        }
    }
}

/// `graze top` watchers and what they were last told.
#[derive(Default)]
struct Watch {
    watchers: Vec<mpsc::UnboundedSender<ClientReply>>,
    /// Per node: the last delta's significant fields and when it was sent.
    sent: HashMap<String, (NodeSig, u64)>,
    /// Nodes with a load-only change not yet sent.
    pending: BTreeSet<String>,
    /// Nodes touched by the input being handled.
    touched: BTreeSet<String>,
    /// Queued jobs' waiting reasons may have changed since this time.
    queue_dirty: bool,
    queue_sent_ms: u64,
}

impl Watch {
    fn send(&mut self, reply: &ClientReply) {
        self.watchers.retain(|w| w.send(reply.clone()).is_ok());
    }
}

struct Owner {
    core: Core,
    agents: HashMap<ConnId, (mpsc::UnboundedSender<SchedulerMsg>, quinn_close::Closer)>,
    waiters: HashMap<JobId, Vec<mpsc::UnboundedSender<ClientReply>>>,
    followers: HashMap<JobId, Vec<Follower>>,
    watch: Watch,
    store: store::Store,
    db: db::Db,
    /// Replies sent only once the state they acknowledge is committed.
    deferred: Vec<(mpsc::UnboundedSender<ClientReply>, ClientReply)>,
    /// Per node: agent instance and highest job-message sequence number applied.
    seqs: HashMap<String, (String, u64)>,
    seq_dirty: std::collections::BTreeSet<String>,
    /// Acks to send once committed.
    acks: HashMap<ConnId, u64>,
    audit: Audit,
}

impl Owner {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) -> Result<()> {
        let mut tick = tokio::time::interval(WATCH_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.core.poll_timeout();
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
                    self.handle(input, now_ms());
                    // Take whatever else is already waiting into the same commit.
                    while let Ok(input) = rx.try_recv() {
                        self.touch_input(&input);
                        self.handle(input, now_ms());
                    }
                    self.flush()?;
                    self.push_nodes(now_ms());
                }
                () = sleep => {
                    self.core.handle_timeout(now_ms());
                    self.flush()?;
                }
                _ = tick.tick() => self.watch_tick(now_ms()),
            }
        }
    }

    /// Remember which node an input is about, for watch deltas.
    fn touch_input(&mut self, input: &Input) {
        if self.watch.watchers.is_empty() {
            return;
        }
        let name = match input {
            Input::AgentUp { info, .. } => Some(info.name.clone()),
            Input::Agent(conn, _) | Input::AgentDown(conn, _) => {
                self.core.node_name(*conn).map(str::to_owned)
            }
            Input::Client(..) => None,
        };
        self.watch.touched.extend(name);
    }

    /// Send deltas of the nodes touched by the last input: at once when a significant field
    /// changed, else at most every [`NODE_DELTA_MS`].
    fn push_nodes(&mut self, now: u64) {
        if self.watch.watchers.is_empty() {
            self.watch.touched.clear();
            return;
        }
        for name in std::mem::take(&mut self.watch.touched) {
            let Some(view) = self.core.node_view(&name) else {
                continue;
            };
            let sig = NodeSig::of(&view);
            let (significant, due) = match self.watch.sent.get(&name) {
                None => (true, true),
                Some((old, at)) => (*old != sig, now.saturating_sub(*at) >= NODE_DELTA_MS),
            };
            if significant || due {
                if significant {
                    self.watch.queue_dirty = true;
                }
                self.watch.pending.remove(&name);
                self.watch.sent.insert(name, (sig, now));
                self.watch.send(&ClientReply::NodeChanged(Box::new(view)));
            } else {
                self.watch.pending.insert(name);
            }
        }
    }

    /// Send the load-only node deltas that are due, and refresh queued jobs' waiting reasons.
    fn watch_tick(&mut self, now: u64) {
        if self.watch.watchers.is_empty() {
            self.watch.pending.clear();
            return;
        }
        let due: Vec<String> = self
            .watch
            .pending
            .iter()
            .filter(|n| {
                self.watch
                    .sent
                    .get(*n)
                    .is_none_or(|(_, at)| now.saturating_sub(*at) >= NODE_DELTA_MS)
            })
            .cloned()
            .collect();
        for name in due {
            self.watch.pending.remove(&name);
            if let Some(view) = self.core.node_view(&name) {
                self.watch.sent.insert(name, (NodeSig::of(&view), now));
                self.watch.send(&ClientReply::NodeChanged(Box::new(view)));
            }
        }
        if self.watch.queue_dirty
            && now.saturating_sub(self.watch.queue_sent_ms) >= QUEUE_REFRESH_MS
        {
            self.watch.queue_dirty = false;
            self.watch.queue_sent_ms = now;
            for id in self.core.queued().into_iter().take(QUEUE_REFRESH_MAX) {
                if let Some(v) = self.core.job_view(id) {
                    self.watch.send(&ClientReply::JobChanged(Box::new(v)));
                }
            }
        }
    }

    fn handle(&mut self, input: Input, now: u64) {
        match input {
            Input::AgentUp {
                conn,
                info,
                tx,
                close,
            } => {
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
            Input::AgentDown(conn, reason) => {
                if self.agents.remove(&conn).is_some() {
                    info!(conn, "agent lost: {reason}");
                    self.core.node_lost(conn, now);
                }
            }
            Input::Agent(conn, msg) => self.agent_msg(conn, msg, now),
            Input::Client(who, req, tx) => self.client(&who, req, tx, now),
        }
    }

    fn agent_msg(&mut self, conn: ConnId, msg: AgentMsg, now: u64) {
        match msg {
            AgentMsg::Register(_) => {}
            AgentMsg::Sequenced { seq, msg } => {
                let Some(node) = self.core.node_name(conn).map(str::to_owned) else {
                    return;
                };
                let last = self.seqs.get(&node).map_or(0, |s| s.1);
                if seq > last {
                    if seq != last + 1 {
                        warn!(%node, seq, last, "job messages missing from this agent");
                    }
                    if !matches!(*msg, AgentMsg::Sequenced { .. }) {
                        self.agent_msg(conn, *msg, now);
                    }
                    self.seqs.entry(node.clone()).or_default().1 = seq;
                    self.seq_dirty.insert(node);
                }
                // Applied now or before: either way it may be acknowledged once committed.
                self.acks.insert(conn, seq.max(last));
            }
            AgentMsg::Status(s) => self.core.node_status(conn, s, now),
            AgentMsg::Output {
                job,
                rank,
                stream,
                line,
            } => {
                if !self.core.conn_in_job(conn, job) {
                    debug!(conn, %job, "output for a job not on this node dropped");
                    return;
                }
                let line = LogLine {
                    rank,
                    stream,
                    line: proto::clip_line(line),
                };
                if let Err(e) = self.store.append(job, &line) {
                    warn!(%job, "storing output: {e:#}");
                }
                if let Some(fs) = self.followers.get_mut(&job) {
                    fs.retain(|f| {
                        if f.rank.is_some() && f.rank != line.rank {
                            return !f.tx.is_closed();
                        }
                        f.tx.send(ClientReply::Log(vec![line.clone()])).is_ok()
                    });
                }
            }
            AgentMsg::JobExited { job, exit } => self.core.job_exited(conn, job, exit, now),
            AgentMsg::JobFailedToStart { job, reason } => {
                self.core.job_failed_to_start(conn, job, reason, now)
            }
            AgentMsg::JobCleared { job } => self.core.job_cleared(conn, job, now),
            AgentMsg::Launch {
                id,
                job,
                secret,
                host,
                command,
            } => self.core.launch(conn, id, job, &secret, &host, command),
            AgentMsg::LaunchAbandoned { id } => self.core.launch_abandoned(conn, id),
            AgentMsg::RemoteExited {
                remote,
                exit,
                origin,
                origin_id,
            } => {
                debug!(conn, remote = remote.0, %origin, "remote exited");
                self.core.remote_exited(&origin, origin_id, exit)
            }
        }
    }

    /// Why `who` may not see job `id`, or `None` when it may (or the job does not exist).
    fn job_refusal(&self, who: &Identity, id: JobId) -> Option<String> {
        let owner = self.core.job_owner(id)?;
        if auth::may_touch_job(who, owner) {
            None
        } else {
            Some(format!(
                "job {id} belongs to '{owner}': a user token may only see and cancel its own jobs"
            ))
        }
    }

    fn audit(
        &self,
        who: &Identity,
        action: &str,
        outcome: Outcome,
        fields: &[(&str, String)],
        reason: &str,
    ) {
        self.audit.record(
            &who.name,
            &who.role.to_string(),
            action,
            outcome,
            fields,
            reason,
        );
    }

    fn drain(&mut self, who: &Identity, node: String, on: bool, now: u64) -> ClientReply {
        let action = if on { "drain" } else { "undrain" };
        if !auth::may_drain(who) {
            let message = format!(
                "{action} needs an admin token; '{}' has role {}",
                who.name, who.role
            );
            self.audit(who, action, Outcome::Refused, &[("node", node)], &message);
            return ClientReply::Error { message };
        }
        match self.core.set_drained(&node, on, now) {
            Ok(v) => {
                self.audit(who, action, Outcome::Ok, &[("node", node)], "");
                ClientReply::Nodes(vec![v])
            }
            Err(message) => {
                self.audit(who, action, Outcome::Refused, &[("node", node)], &message);
                ClientReply::Error { message }
            }
        }
    }

    fn client(
        &mut self,
        who: &Identity,
        req: ClientRequest,
        tx: mpsc::UnboundedSender<ClientReply>,
        now: u64,
    ) {
        let reply = |r: ClientReply| {
            let _ = tx.send(r);
        };
        let no_job = |id: JobId| ClientReply::Error {
            message: format!("no job {id}"),
        };
        // Every request naming a job is refused alike when the job is someone else's.
        let job_of = |r: &ClientRequest| match r {
            ClientRequest::Show(id) | ClientRequest::Cancel(id) | ClientRequest::Wait(id) => {
                Some(*id)
            }
            ClientRequest::Logs { job, .. } => Some(*job),
            _ => None,
        };
        if let Some(id) = job_of(&req) {
            if let Some(message) = self.job_refusal(who, id) {
                if matches!(req, ClientRequest::Cancel(_)) {
                    self.audit(
                        who,
                        "cancel",
                        Outcome::Refused,
                        &[("job", id.to_string())],
                        &message,
                    );
                }
                return reply(ClientReply::Error { message });
            }
        }
        match req {
            ClientRequest::Submit(mut spec) => {
                // The job belongs to the token's identity, whatever the client says.
                let declared = std::mem::replace(&mut spec.user, who.name.clone());
                let nprocs = spec.nprocs;
                match self
                    .core
                    .submit(spec, graze_net::random_token().into(), now)
                {
                    Ok(id) => {
                        self.audit(
                            who,
                            "submit",
                            Outcome::Ok,
                            &[
                                ("job", id.to_string()),
                                ("nprocs", nprocs.to_string()),
                                ("login", declared),
                            ],
                            "",
                        );
                        // Acknowledged only once the job is committed.
                        self.deferred
                            .push((tx.clone(), ClientReply::Submitted { id }));
                    }
                    Err(message) => {
                        self.audit(
                            who,
                            "submit",
                            Outcome::Refused,
                            &[("login", declared)],
                            &message,
                        );
                        reply(ClientReply::Error { message })
                    }
                }
            }
            ClientRequest::Queue { all } => {
                let mut jobs = self.core.job_views(all);
                if who.role != TokenRole::Admin {
                    jobs.retain(|j| j.spec.user == who.name);
                }
                reply(ClientReply::Jobs(jobs))
            }
            ClientRequest::Nodes => reply(ClientReply::Nodes(self.core.node_views())),
            // Answered once the mark is committed, like a submit.
            ClientRequest::Drain { node } => {
                let r = self.drain(who, node, true, now);
                self.deferred.push((tx.clone(), r));
            }
            ClientRequest::Undrain { node } => {
                let r = self.drain(who, node, false, now);
                self.deferred.push((tx.clone(), r));
            }
            ClientRequest::Show(id) => reply(match self.core.job_view(id) {
                Some(v) => ClientReply::Job(Box::new(v)),
                None => no_job(id),
            }),
            ClientRequest::Cancel(id) => match self.core.cancel(id, now) {
                Ok(_) => {
                    self.audit(who, "cancel", Outcome::Ok, &[("job", id.to_string())], "");
                    if let Some(v) = self.core.job_view(id) {
                        reply(ClientReply::Job(Box::new(v)))
                    }
                }
                Err(message) => {
                    self.audit(
                        who,
                        "cancel",
                        Outcome::Refused,
                        &[("job", id.to_string())],
                        &message,
                    );
                    reply(ClientReply::Error { message })
                }
            },
            ClientRequest::Wait(id) => match self.core.job_view(id) {
                None => reply(no_job(id)),
                Some(v) if v.state.is_final() => reply(ClientReply::Job(Box::new(v))),
                Some(_) => self.waiters.entry(id).or_default().push(tx),
            },
            ClientRequest::Watch => {
                let snapshot = ClientReply::Snapshot {
                    nodes: self.core.node_views(),
                    jobs: self.core.job_views(true),
                };
                if tx.send(snapshot).is_ok() {
                    for n in self.core.node_views() {
                        let sig = NodeSig::of(&n);
                        self.watch.sent.insert(n.info.name, (sig, now));
                    }
                    self.watch.watchers.push(tx);
                }
            }
            ClientRequest::Logs { job, rank, follow } => {
                let Some(state) = self.core.job_state(job) else {
                    return reply(no_job(job));
                };
                match self.store.read(job) {
                    Ok(lines) => {
                        let lines: Vec<LogLine> = lines
                            .into_iter()
                            .filter(|l| rank.is_none() || l.rank == rank)
                            .collect();
                        for chunk in lines.chunks(1000) {
                            reply(ClientReply::Log(chunk.to_vec()));
                        }
                    }
                    Err(e) => {
                        return reply(ClientReply::Error {
                            message: format!("reading output of job {job}: {e:#}"),
                        })
                    }
                }
                if follow && !state.is_final() {
                    self.followers
                        .entry(job)
                        .or_default()
                        .push(Follower { rank, tx });
                } else {
                    reply(ClientReply::LogEnd);
                }
            }
        }
    }

    /// Carry out the core's outputs; commit changed state, then send what waited for it.
    fn flush(&mut self) -> Result<()> {
        let mut jobs = std::collections::BTreeSet::new();
        let mut nodes = std::collections::BTreeSet::new();
        while let Some(o) = self.core.poll_output() {
            match o {
                Output::Send { conn, msg } => {
                    if let Some((tx, _)) = self.agents.get(&conn) {
                        let _ = tx.send(msg);
                    }
                }
                Output::Close { conn, reason } => {
                    if let Some((_, close)) = self.agents.remove(&conn) {
                        close.close(&reason);
                    }
                }
                Output::JobFinal(id) => {
                    if let Some(v) = self.core.job_view(id) {
                        info!(%id, state = %v.state, "job final");
                        for w in self.waiters.remove(&id).unwrap_or_default() {
                            let _ = w.send(ClientReply::Job(Box::new(v.clone())));
                        }
                    }
                    for f in self.followers.remove(&id).unwrap_or_default() {
                        let _ = f.tx.send(ClientReply::LogEnd);
                    }
                    self.store.close(id);
                }
                Output::JobChanged(id) => {
                    jobs.insert(id);
                    if !self.watch.watchers.is_empty() {
                        if let Some(v) = self.core.job_view(id) {
                            self.watch.send(&ClientReply::JobChanged(Box::new(v)));
                        }
                        // Its nodes' held cores and job lists may have changed.
                        self.watch.touched.extend(self.core.job_nodes(id));
                    }
                }
                Output::NodeChanged(name) => {
                    nodes.insert(name);
                }
            }
        }
        self.store.flush_all();
        let records: Vec<_> = jobs
            .iter()
            .filter_map(|id| self.core.job_record(*id))
            .collect();
        let infos: Vec<_> = nodes
            .iter()
            .filter_map(|n| Some((self.core.node_info(n)?, self.core.node_drained(n))))
            .collect();
        let outputs: Vec<_> = records
            .iter()
            .filter(|r| r.state.is_final())
            .filter_map(|r| self.store.index(r.id).map(|ix| (r.id, ix)))
            .collect();
        let seqs: Vec<_> = std::mem::take(&mut self.seq_dirty)
            .into_iter()
            .filter_map(|n| self.seqs.get(&n).map(|s| (n, s.clone())))
            .collect();
        if let Err(e) = self.db.write(&records, &infos, &outputs, &seqs) {
            // Nothing may be acknowledged that is not durable: stop rather than lie.
            for (tx, _) in self.deferred.drain(..) {
                let _ = tx.send(ClientReply::Error {
                    message: format!("the scheduler cannot commit its state: {e:#}"),
                });
            }
            return Err(e.context("committing scheduler state"));
        }
        for (tx, reply) in self.deferred.drain(..) {
            let _ = tx.send(reply);
        }
        for (conn, seq) in self.acks.drain() {
            if let Some((tx, _)) = self.agents.get(&conn) {
                let _ = tx.send(SchedulerMsg::Ack { seq });
            }
        }
        Ok(())
    }
}
