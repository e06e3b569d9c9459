//! A connection to the scheduler as a client, and one method per request.
//!
//! Every request goes on a new bidirectional stream: the request is sent, the sending half is
//! finished, and the replies are read until the scheduler finishes its half. The `graze` command
//! and the TUI share this module.
//!
//! Reading replies is not cancel-safe (a frame may be half read): drive a [`Replies`] or
//! [`LogStream`] from one task and do not drop a pending `next` in a `select!`.

use graze_net::{Access, Framed, NetError};
use graze_proto::{
    ArrayView, ClientReply, ClientRequest, JobId, JobRef, JobSpec, JobView, LogAttempt, LogLine,
    NodeView, Role,
};
use std::time::Duration;

/// Idle timeout of the connection; keep-alives hold it open while waiting for long answers.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Client::close`] waits for the close to be sent.
pub const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The transport failed; retryable when [`NetError::is_retryable`] says so (reconnect).
    #[error(transparent)]
    Net(#[from] NetError),
    /// The scheduler answered [`ClientReply::Error`] (unknown job, invalid spec, ...). Not
    /// retryable: the message says what to change.
    #[error("{0}")]
    Scheduler(String),
    /// The scheduler answered with a reply that does not fit the request. Not retryable: the
    /// scheduler and this client disagree about the protocol.
    #[error("the scheduler answered {request} with an unexpected {reply} reply")]
    Unexpected {
        /// The request's name.
        request: &'static str,
        /// The reply's name.
        reply: &'static str,
    },
    /// The scheduler finished the stream without answering. Retryable.
    #[error("the scheduler ended the stream without answering {request}")]
    NoAnswer {
        /// The request's name.
        request: &'static str,
    },
}

impl ClientError {
    /// Whether trying again (after reconnecting) may help.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Net(e) => e.is_retryable(),
            ClientError::NoAnswer { .. } => true,
            ClientError::Scheduler(_) | ClientError::Unexpected { .. } => false,
        }
    }
}

/// The name of a request, for messages.
pub fn request_name(req: &ClientRequest) -> &'static str {
    match req {
        ClientRequest::Submit(_) => "submit",
        ClientRequest::Queue { .. } => "queue",
        ClientRequest::Nodes => "nodes",
        ClientRequest::Show(_) => "show",
        ClientRequest::Cancel(_) => "cancel",
        ClientRequest::Release(_) => "release",
        ClientRequest::Hold(_) => "hold",
        ClientRequest::Requeue { .. } => "requeue",
        ClientRequest::Wait(_) => "wait",
        ClientRequest::Logs { .. } => "logs",
        ClientRequest::Drain { .. } => "drain",
        ClientRequest::Undrain { .. } => "undrain",
        ClientRequest::Watch => "watch",
        ClientRequest::History(_) => "history",
        ClientRequest::Harvest { .. } => "harvest",
        ClientRequest::Clusrun(_) => "clusrun",
        ClientRequest::Trace { .. } => "trace",
    }
}

/// The name of a reply, for messages.
pub fn reply_name(reply: &ClientReply) -> &'static str {
    match reply {
        ClientReply::Submitted { .. } => "submitted",
        ClientReply::Jobs(_) => "jobs",
        ClientReply::Nodes(_) => "nodes",
        ClientReply::Job(_) => "job",
        ClientReply::Log(_) => "log",
        ClientReply::LogEnd => "log_end",
        ClientReply::LogAttempt { .. } => "log_attempt",
        ClientReply::Snapshot { .. } => "snapshot",
        ClientReply::NodeChanged(_) => "node_changed",
        ClientReply::NodeLoads(_) => "node_loads",
        ClientReply::JobChanged(_) => "job_changed",
        ClientReply::History(_) => "history",
        ClientReply::Harvest(_) => "harvest",
        ClientReply::ClusrunOutput(_) => "clusrun_output",
        ClientReply::ClusrunEnd { .. } => "clusrun_end",
        ClientReply::Array(_) => "array",
        ClientReply::TraceFile { .. } => "trace_file",
        ClientReply::TraceEnd { .. } => "trace_end",
        ClientReply::Error { .. } => "error",
    }
}

/// What a request naming `7` or `7.3` answers: one job (or task), or a whole array.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Shown {
    /// A job or one task.
    Job(Box<JobView>),
    /// A whole array.
    Array(Box<ArrayView>),
}

impl Shown {
    /// Whether it is final (every task, for an array).
    pub fn is_final(&self) -> bool {
        match self {
            Shown::Job(j) => j.state.is_final(),
            Shown::Array(a) => a.tasks.iter().all(|t| t.state.is_final()),
        }
    }
}

/// A client connection that passed the hello.
pub struct Client {
    /// The connection's endpoint (its UDP socket); kept for the life of the connection.
    _endpoint: graze_net::quinn::Endpoint,
    conn: graze_net::quinn::Connection,
    /// The stream the hello went on; kept open for the life of the connection.
    _control: Framed,
}

impl Client {
    /// Connect to the scheduler named in `access` and say hello as a client.
    pub async fn connect(access: &Access) -> Result<Client, ClientError> {
        let s = graze_net::connect(access, Role::Client, None, IDLE_TIMEOUT).await?;
        Ok(Client {
            _endpoint: s.endpoint,
            conn: s.conn,
            _control: s.control,
        })
    }

    /// Send `req` on a new stream; read the replies from the returned [`Replies`].
    pub async fn open(&self, req: &ClientRequest) -> Result<Replies, ClientError> {
        let (send, recv) = self.conn.open_bi().await.map_err(NetError::from)?;
        let mut framed = Framed { send, recv };
        framed.send(req).await?;
        framed
            .send
            .finish()
            .map_err(|_| NetError::Write(graze_net::quinn::WriteError::ClosedStream))?;
        tracing::debug!(request = request_name(req), "request sent");
        Ok(Replies {
            framed,
            request: request_name(req),
        })
    }

    /// Send `req` and return its first reply (for requests answered once).
    pub async fn request(&self, req: &ClientRequest) -> Result<ClientReply, ClientError> {
        let mut replies = self.open(req).await?;
        replies.next().await?.ok_or(ClientError::NoAnswer {
            request: request_name(req),
        })
    }

    /// Ended attempts of jobs.
    pub async fn history(
        &self,
        q: graze_proto::HistoryQuery,
    ) -> Result<Vec<graze_proto::AttemptView>, ClientError> {
        match self.request(&ClientRequest::History(q)).await? {
            ClientReply::History(v) => Ok(v),
            other => Err(unexpected("history", &other)),
        }
    }

    /// The harvest report's data since `since_ms`.
    pub async fn harvest(&self, since_ms: u64) -> Result<graze_proto::HarvestData, ClientError> {
        match self.request(&ClientRequest::Harvest { since_ms }).await? {
            ClientReply::Harvest(d) => Ok(*d),
            other => Err(unexpected("harvest", &other)),
        }
    }

    /// Queue a job; its id.
    pub async fn submit(&self, spec: JobSpec) -> Result<JobId, ClientError> {
        match self.request(&ClientRequest::Submit(Box::new(spec))).await? {
            ClientReply::Submitted { id } => Ok(id),
            other => Err(unexpected("submit", &other)),
        }
    }

    /// Queue several jobs over this one connection; their ids, in order. The requests are
    /// pipelined (up to [`PIPELINE`] in flight, each on its own stream), so the scheduler
    /// commits many of them together; each id still comes only once its job is committed.
    /// On an error, the jobs before it are queued (and those in flight may be).
    pub async fn submit_many(
        &self,
        specs: impl IntoIterator<Item = JobSpec>,
    ) -> Result<Vec<JobId>, ClientError> {
        let mut ids = Vec::new();
        let mut in_flight = std::collections::VecDeque::new();
        for spec in specs {
            if in_flight.len() >= PIPELINE {
                ids.push(submitted(in_flight.pop_front()).await?);
            }
            in_flight.push_back(self.open(&ClientRequest::Submit(Box::new(spec))).await?);
        }
        while let Some(r) = in_flight.pop_front() {
            ids.push(submitted(Some(r)).await?);
        }
        Ok(ids)
    }

    /// Jobs not yet final plus recent final ones; every job with `all`.
    pub async fn queue(&self, all: bool) -> Result<Vec<JobView>, ClientError> {
        match self.request(&ClientRequest::Queue { all }).await? {
            ClientReply::Jobs(jobs) => Ok(jobs),
            other => Err(unexpected("queue", &other)),
        }
    }

    /// All nodes.
    pub async fn nodes(&self) -> Result<Vec<NodeView>, ClientError> {
        match self.request(&ClientRequest::Nodes).await? {
            ClientReply::Nodes(nodes) => Ok(nodes),
            other => Err(unexpected("nodes", &other)),
        }
    }

    /// Drain (`on`) or undrain a node; the node as it is now.
    pub async fn drain(&self, node: &str, on: bool) -> Result<NodeView, ClientError> {
        let (req, name) = if on {
            (ClientRequest::Drain { node: node.into() }, "drain")
        } else {
            (ClientRequest::Undrain { node: node.into() }, "undrain")
        };
        match self.request(&req).await? {
            ClientReply::Nodes(mut nodes) if nodes.len() == 1 => Ok(nodes.remove(0)),
            other => Err(unexpected(name, &other)),
        }
    }

    /// One job, one task, or a whole array.
    pub async fn show(&self, job: JobRef) -> Result<Shown, ClientError> {
        self.job_reply(&ClientRequest::Show(job)).await
    }

    /// One job (not an array), by its id.
    pub async fn show_job(&self, job: JobId) -> Result<JobView, ClientError> {
        match self.show(job.into()).await? {
            Shown::Job(j) => Ok(*j),
            Shown::Array(_) => Err(unexpected(
                "show",
                &ClientReply::Array(Box::new(ArrayView {
                    id: job,
                    tasks: vec![],
                })),
            )),
        }
    }

    /// One job (not an array) once the scheduler says it is final.
    pub async fn wait_job(&self, job: JobId) -> Result<JobView, ClientError> {
        match self.wait(job.into()).await? {
            Shown::Job(j) => Ok(*j),
            Shown::Array(_) => Err(unexpected(
                "wait",
                &ClientReply::Array(Box::new(ArrayView {
                    id: job,
                    tasks: vec![],
                })),
            )),
        }
    }

    /// Cancel a job, one task or a whole array; it in its new state.
    pub async fn cancel(&self, job: JobRef) -> Result<Shown, ClientError> {
        self.job_reply(&ClientRequest::Cancel(job)).await
    }

    /// Hold (`hold`) or release a job; the job as it is now.
    pub async fn hold(&self, job: JobRef, hold: bool) -> Result<JobView, ClientError> {
        let req = if hold {
            ClientRequest::Hold(job)
        } else {
            ClientRequest::Release(job)
        };
        match self.job_reply(&req).await? {
            Shown::Job(j) => Ok(*j),
            Shown::Array(a) => Err(unexpected(
                if hold { "hold" } else { "release" },
                &ClientReply::Array(a),
            )),
        }
    }

    /// `graze requeue`: vacate a running job now and queue it again (with `checkpoint`, after
    /// taking a checkpoint); the job as it is now.
    pub async fn requeue(&self, job: JobRef, checkpoint: bool) -> Result<JobView, ClientError> {
        match self
            .job_reply(&ClientRequest::Requeue { job, checkpoint })
            .await?
        {
            Shown::Job(j) => Ok(*j),
            Shown::Array(a) => Err(unexpected("requeue", &ClientReply::Array(a))),
        }
    }

    /// The job (every task of an array) once the scheduler says it is final (check the
    /// states all the same).
    pub async fn wait(&self, job: JobRef) -> Result<Shown, ClientError> {
        self.job_reply(&ClientRequest::Wait(job)).await
    }

    /// A job's (or one task's) output: stored lines, then with `follow` new ones until the job
    /// is final.
    pub async fn logs(
        &self,
        job: JobRef,
        rank: Option<u32>,
        follow: bool,
    ) -> Result<LogStream, ClientError> {
        self.logs_of(job, rank, follow, LogAttempt::Latest).await
    }

    /// Output lines of one attempt (or all) of a job; read them with
    /// [`LogStream::next_event`] to hear which attempt each batch belongs to.
    pub async fn logs_of(
        &self,
        job: JobRef,
        rank: Option<u32>,
        follow: bool,
        attempt: LogAttempt,
    ) -> Result<LogStream, ClientError> {
        let replies = self
            .open(&ClientRequest::Logs {
                job,
                rank,
                follow,
                attempt,
            })
            .await?;
        Ok(LogStream {
            replies,
            done: false,
        })
    }

    async fn job_reply(&self, req: &ClientRequest) -> Result<Shown, ClientError> {
        match self.request(req).await? {
            ClientReply::Job(job) => Ok(Shown::Job(job)),
            ClientReply::Array(a) => Ok(Shown::Array(a)),
            other => Err(unexpected(request_name(req), &other)),
        }
    }

    /// Close the connection politely: wait (at most [`CLOSE_TIMEOUT`]) until the close is
    /// sent, so the scheduler hears of it at once rather than at its idle timeout. Not for
    /// the draining period after it (three probe timeouts, about 80 ms even on loopback, which
    /// `Endpoint::wait_idle` waits for): nothing the scheduler could still send matters now.
    pub async fn close(self) {
        if self.conn.close_reason().is_some() {
            // Closed already (by the scheduler, or timed out): nothing to send.
            return;
        }
        // After `close` the connection sends nothing but the close: the next datagram is it.
        let before = self.conn.stats().udp_tx.datagrams;
        self.conn.close(0u32.into(), b"bye");
        let sent = async {
            // The connection's driver task sends it as soon as it runs: let it, then (should
            // the socket be slow) look again each millisecond rather than spin.
            let mut turns = 0;
            while self.conn.stats().udp_tx.datagrams == before {
                if turns < 100 {
                    turns += 1;
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        };
        if tokio::time::timeout(CLOSE_TIMEOUT, sent).await.is_err() {
            tracing::debug!("the close was not sent in time");
        }
    }
}

/// How many submits [`Client::submit_many`] keeps in flight on one connection (below QUIC's
/// default limit of 100 open streams).
pub const PIPELINE: usize = 64;

/// The id a submit's replies carry.
async fn submitted(replies: Option<Replies>) -> Result<JobId, ClientError> {
    let Some(mut r) = replies else {
        return Err(ClientError::NoAnswer { request: "submit" });
    };
    match r.next().await? {
        Some(ClientReply::Submitted { id }) => Ok(id),
        Some(other) => Err(unexpected("submit", &other)),
        None => Err(ClientError::NoAnswer { request: "submit" }),
    }
}

fn unexpected(request: &'static str, reply: &ClientReply) -> ClientError {
    ClientError::Unexpected {
        request,
        reply: reply_name(reply),
    }
}

/// The replies to one request.
pub struct Replies {
    framed: Framed,
    request: &'static str,
}

impl Replies {
    /// The next reply; `None` when the scheduler finished the stream. A
    /// [`ClientReply::Error`] comes out as [`ClientError::Scheduler`].
    pub async fn next(&mut self) -> Result<Option<ClientReply>, ClientError> {
        match self.framed.recv::<ClientReply>().await? {
            Some(ClientReply::Error { message }) => Err(ClientError::Scheduler(message)),
            Some(reply) => {
                tracing::trace!(request = self.request, reply = reply_name(&reply), "reply");
                Ok(Some(reply))
            }
            None => Ok(None),
        }
    }
}

/// The output of a [`Client::logs`] request.
pub struct LogStream {
    replies: Replies,
    done: bool,
}

/// What a [`LogStream`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// Output lines.
    Lines(Vec<LogLine>),
    /// The lines that follow are attempt `attempt`'s; `attempts` have output.
    Attempt {
        /// The attempt.
        attempt: u64,
        /// Every attempt with output so far.
        attempts: Vec<u64>,
    },
}

impl LogStream {
    /// The next batch of lines; `None` after [`ClientReply::LogEnd`]. Attempt markers are
    /// skipped.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<LogLine>>, ClientError> {
        loop {
            match self.next_event().await? {
                Some(LogEvent::Lines(l)) => return Ok(Some(l)),
                Some(LogEvent::Attempt { .. }) => {}
                None => return Ok(None),
            }
        }
    }

    /// The next batch of lines or attempt marker; `None` after [`ClientReply::LogEnd`].
    pub async fn next_event(&mut self) -> Result<Option<LogEvent>, ClientError> {
        if self.done {
            return Ok(None);
        }
        match self.replies.next().await? {
            Some(ClientReply::Log(lines)) => Ok(Some(LogEvent::Lines(lines))),
            Some(ClientReply::LogAttempt { attempt, attempts }) => {
                Ok(Some(LogEvent::Attempt { attempt, attempts }))
            }
            Some(ClientReply::LogEnd) => {
                self.done = true;
                Ok(None)
            }
            Some(other) => Err(unexpected("logs", &other)),
            None => {
                tracing::warn!("the scheduler ended the log stream without an end marker");
                self.done = true;
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_retryability() {
        assert_eq!(request_name(&ClientRequest::Wait(JobId(1).into())), "wait");
        assert_eq!(reply_name(&ClientReply::LogEnd), "log_end");
        let e = unexpected("submit", &ClientReply::Jobs(vec![]));
        assert_eq!(
            e.to_string(),
            "the scheduler answered submit with an unexpected jobs reply"
        );
        assert!(!e.is_retryable());
        assert!(!ClientError::Scheduler("no job 9".into()).is_retryable());
        assert!(ClientError::NoAnswer { request: "nodes" }.is_retryable());
        assert!(ClientError::Net(NetError::Read("reset".into())).is_retryable());
        assert!(!ClientError::Net(NetError::Refused("bad token".into())).is_retryable());
    }
}
