//! `graze-scheduler`: the head node.
//!
//! The [`core`] module is the sans-IO scheduler (node table, queue, allocator). This file is
//! its driver: a QUIC listener whose connection tasks feed one owning task through an mpsc of
//! [`Input`]; that task alone owns the [`core::Core`], the output store and the waiters.

pub mod config;
pub mod core;
mod store;

use crate::core::{ConnId, Core, CoreConfig, Output};
use anyhow::{Context, Result};
pub use config::SchedulerConfig;
use graze_net::{Access, Framed, Identity, NetError};
use graze_proto::{
    self as proto, AgentMsg, ClientReply, ClientRequest, Hello, HelloReply, JobId, LogLine, Role,
    SchedulerMsg,
};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tracing::{debug, info, info_span, warn, Instrument};

/// Compare secrets without an early exit.
pub(crate) fn secret_eq(a: &str, b: &str) -> bool {
    graze_net::token_eq(a, b)
}

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
    /// A client request, with where to send the replies.
    Client(ClientRequest, mpsc::UnboundedSender<ClientReply>),
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
    let id = Identity::load_or_create(&cfg.state_dir.join("identity"))?;
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
    info!(%addr, access = %access_path.display(), "scheduler listening");
    on_start(Started {
        addr,
        access_path,
        access: access.clone(),
    });

    let store = store::Store::open(&cfg.state_dir.join("jobs"))?;
    let (tx, rx) = mpsc::unbounded_channel();
    let accept = tokio::spawn(accept_loop(endpoint.clone(), token, tx));
    let owner = Owner {
        core: Core::new(CoreConfig {
            max_job_cores: cfg.max_job_cores,
            requeue_when_suspended_after_ms: cfg
                .requeue_when_suspended_after
                .as_millis()
                .try_into()
                .unwrap_or(u64::MAX),
        }),
        agents: HashMap::new(),
        waiters: HashMap::new(),
        followers: HashMap::new(),
        store,
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
    token: String,
    tx: mpsc::UnboundedSender<Input>,
) {
    let mut next_conn: ConnId = 1;
    while let Some(incoming) = endpoint.accept().await {
        let conn_id = next_conn;
        next_conn += 1;
        let token = token.clone();
        let tx = tx.clone();
        let peer = incoming.remote_address();
        tokio::spawn(
            async move {
                if let Err(e) = serve_connection(incoming, conn_id, &token, tx).await {
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
    token: &str,
    tx: mpsc::UnboundedSender<Input>,
) -> Result<()> {
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
    let refusal = if let Err(e) = proto::check_version(
        &format!("{:?} peer", hello.role).to_lowercase(),
        hello.version,
    ) {
        Some(e)
    } else if !graze_net::token_eq(&hello.token, token) {
        Some("invalid cluster token: use the access.toml written by this scheduler".to_string())
    } else {
        None
    };
    if let Some(reason) = refusal {
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
    match hello.role {
        Role::Agent => serve_agent(conn, conn_id, control, tx).await,
        Role::Client => serve_client(conn, tx).await,
    }
}

async fn serve_agent(
    conn: graze_net::quinn::Connection,
    conn_id: ConnId,
    mut control: Framed,
    tx: mpsc::UnboundedSender<Input>,
) -> Result<()> {
    let info = match control.recv::<AgentMsg>().await? {
        Some(AgentMsg::Register(info)) => info,
        other => {
            conn.close(2u32.into(), b"expected register");
            anyhow::bail!("expected Register, got {other:?}");
        }
    };
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
            if tx.send(Input::Client(req, rtx)).is_err() {
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

struct Owner {
    core: Core,
    agents: HashMap<ConnId, (mpsc::UnboundedSender<SchedulerMsg>, quinn_close::Closer)>,
    waiters: HashMap<JobId, Vec<mpsc::UnboundedSender<ClientReply>>>,
    followers: HashMap<JobId, Vec<Follower>>,
    store: store::Store,
}

impl Owner {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) -> Result<()> {
        loop {
            // The core's next deadline (vacating a suspended job), as a sleep.
            let now = now_ms();
            let wait = self
                .core
                .poll_timeout(now)
                .map(|at| Duration::from_millis(at.saturating_sub(now)));
            let timer = async {
                match wait {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                input = rx.recv() => {
                    let Some(input) = input else { break };
                    self.handle(input, now_ms());
                }
                () = timer => self.core.handle_timeout(now_ms()),
            }
            self.flush();
        }
        Ok(())
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
            Input::Client(req, tx) => self.client(req, tx, now),
        }
    }

    fn agent_msg(&mut self, conn: ConnId, msg: AgentMsg, now: u64) {
        match msg {
            AgentMsg::Register(_) => {}
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
            AgentMsg::RemoteExited { remote, exit } => self.core.remote_exited(conn, remote, exit),
        }
    }

    fn client(&mut self, req: ClientRequest, tx: mpsc::UnboundedSender<ClientReply>, now: u64) {
        let reply = |r: ClientReply| {
            let _ = tx.send(r);
        };
        let no_job = |id: JobId| ClientReply::Error {
            message: format!("no job {id}"),
        };
        match req {
            ClientRequest::Submit(spec) => {
                let user = spec.user.clone();
                match self.core.submit(spec, graze_net::random_token(), now) {
                    Ok(id) => {
                        info!(%id, %user, "job submitted");
                        reply(ClientReply::Submitted { id })
                    }
                    Err(message) => {
                        info!(%user, "submit refused: {message}");
                        reply(ClientReply::Error { message })
                    }
                }
            }
            ClientRequest::Queue { all } => reply(ClientReply::Jobs(self.core.job_views(all))),
            ClientRequest::Nodes => reply(ClientReply::Nodes(self.core.node_views())),
            ClientRequest::Show(id) => reply(match self.core.job_view(id) {
                Some(v) => ClientReply::Job(Box::new(v)),
                None => no_job(id),
            }),
            ClientRequest::Cancel(id) => match self.core.cancel(id, now) {
                Ok(_) => {
                    info!(%id, "job cancel requested");
                    if let Some(v) = self.core.job_view(id) {
                        reply(ClientReply::Job(Box::new(v)))
                    }
                }
                Err(message) => reply(ClientReply::Error { message }),
            },
            ClientRequest::Wait(id) => match self.core.job_view(id) {
                None => reply(no_job(id)),
                Some(v) if v.state.is_final() => reply(ClientReply::Job(Box::new(v))),
                Some(_) => self.waiters.entry(id).or_default().push(tx),
            },
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

    /// Carry out the core's outputs.
    fn flush(&mut self) {
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
                Output::JobChanged(_) => {}
            }
        }
    }
}
