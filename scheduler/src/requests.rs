//! Client requests, handled by the owning task: submit, queue, nodes, show, cancel, requeue, wait,
//! watch, logs, drain, clusrun (in `clusrun.rs`), hold and release (`requests/hold.rs`); with
//! the ownership checks and the audit records they need.

use crate::audit::Outcome;
use crate::auth::{self, Identity, TokenRole};
use crate::core::Target;
use crate::owner::{Follower, Owner};
use graze_proto::{ClientReply, ClientRequest, JobId, JobState, LogAttempt, LogLine};
use tokio::sync::mpsc;

mod hold;

impl Owner {
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

    /// A client request from `who`; replies go to `tx` (some only once committed).
    pub(crate) fn client(
        &mut self,
        who: &Identity,
        req: ClientRequest,
        tx: mpsc::UnboundedSender<ClientReply>,
        now: u64,
    ) {
        let reply = |r: ClientReply| {
            let _ = tx.send(r);
        };
        // Every request naming a job names it as `7` or `7.3`: resolved first, then refused
        // alike when the job is someone else's.
        let named = match &req {
            ClientRequest::Show(r)
            | ClientRequest::Cancel(r)
            | ClientRequest::Wait(r)
            | ClientRequest::Release(r)
            | ClientRequest::Hold(r) => Some(*r),
            ClientRequest::Logs { job, .. }
            | ClientRequest::Requeue { job, .. }
            | ClientRequest::Trace { job, .. } => Some(*job),
            _ => None,
        };
        let target = match named.map(|r| self.core.resolve(r)) {
            None => None,
            Some(Ok(t)) => Some(t),
            Some(Err(message)) => return reply(ClientReply::Error { message }),
        };
        let id = match target {
            Some(Target::Job(id) | Target::Array(id)) => id,
            None => JobId(0),
        };
        let array = matches!(target, Some(Target::Array(_)));
        if target.is_some() {
            if let Some(message) = self.job_refusal(who, id) {
                let action = match req {
                    ClientRequest::Cancel(_) => Some("cancel"),
                    ClientRequest::Release(_) => Some("release"),
                    ClientRequest::Hold(_) => Some("hold"),
                    ClientRequest::Requeue { .. } => Some("requeue"),
                    _ => None,
                };
                if let Some(action) = action {
                    self.audit(
                        who,
                        action,
                        Outcome::Refused,
                        &[("job", id.to_string())],
                        &message,
                    );
                }
                return reply(ClientReply::Error { message });
            }
        }
        let no_job = |id: JobId| ClientReply::Error {
            message: format!("no job {id}"),
        };
        match req {
            ClientRequest::Submit(mut spec) => {
                // The job belongs to the token's identity, whatever the client says.
                let declared = std::mem::replace(&mut spec.user, who.name.clone());
                let nprocs = spec.nprocs;
                match self
                    .core
                    .submit(*spec, graze_net::random_token().into(), now)
                {
                    Ok(id) => {
                        graze_net::timeline(id.0, "submit_received", "");
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
            ClientRequest::Show(_) if array => reply(match self.core.array_view(id) {
                Some(v) => ClientReply::Array(Box::new(v)),
                None => no_job(id),
            }),
            ClientRequest::Show(_) => reply(match self.core.job_view(id) {
                Some(mut v) => {
                    self.checkpoint_fill(&mut v);
                    ClientReply::Job(Box::new(v))
                }
                None => no_job(id),
            }),
            ClientRequest::Cancel(r) => match if array {
                self.core.cancel_array(id, now)
            } else {
                self.core.cancel(id, now).map(|_| ())
            } {
                Ok(()) => {
                    self.audit(who, "cancel", Outcome::Ok, &[("job", r.to_string())], "");
                    if array {
                        if let Some(v) = self.core.array_view(id) {
                            reply(ClientReply::Array(Box::new(v)))
                        }
                    } else if let Some(v) = self.core.job_view(id) {
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
            ClientRequest::Requeue { job, .. } if array => reply(ClientReply::Error {
                message: format!(
                    "job {job} is an array: requeue one task at a time, e.g. graze requeue {job}.1"
                ),
            }),
            ClientRequest::Requeue { job, checkpoint } => {
                let fields = [
                    ("job", job.to_string()),
                    ("checkpoint", checkpoint.to_string()),
                ];
                match self.core.requeue_job(id, checkpoint, &who.name, now) {
                    Ok(_) => {
                        self.audit(who, "requeue", Outcome::Ok, &fields, "");
                        if let Some(v) = self.core.job_view(id) {
                            // Answered once the requeue is committed, like a submit.
                            self.deferred
                                .push((tx.clone(), ClientReply::Job(Box::new(v))));
                        }
                    }
                    Err(message) => {
                        self.audit(who, "requeue", Outcome::Refused, &fields, &message);
                        reply(ClientReply::Error { message })
                    }
                }
            }
            ClientRequest::Release(_) | ClientRequest::Hold(_) if array => {
                reply(ClientReply::Error {
                    message: format!(
                        "job {id} is an array: release or hold one task at a time, e.g. {id}.1"
                    ),
                })
            }
            ClientRequest::Release(_) => reply(self.hold_request(who, id, false, now)),
            ClientRequest::Hold(_) => reply(self.hold_request(who, id, true, now)),
            // An array's waiters wait under the array's id; the commit answers them when its
            // last task ends.
            ClientRequest::Wait(_) if array => match self.core.array_view(id) {
                None => reply(no_job(id)),
                Some(v) if self.core.array_final(id) == Some(true) => self
                    .deferred
                    .push((tx.clone(), ClientReply::Array(Box::new(v)))),
                Some(_) => self.waiters.entry(id).or_default().push(tx),
            },
            ClientRequest::Wait(_) => match self.core.job_view(id) {
                None => reply(no_job(id)),
                // Deferred to the commit: the end may have come in this very batch.
                Some(v) if v.state.is_final() => self
                    .deferred
                    .push((tx.clone(), ClientReply::Job(Box::new(v)))),
                Some(_) => self.waiters.entry(id).or_default().push(tx),
            },
            ClientRequest::Watch => self.watch.add(&self.core, tx, now),
            ClientRequest::History(q) => reply(self.history_reply(who, &q)),
            ClientRequest::Harvest { since_ms } => reply(self.harvest_reply(who, since_ms, now)),
            ClientRequest::Clusrun(spec) => self.clusrun(who, *spec, tx, now),
            ClientRequest::Trace { job, .. } if array => reply(ClientReply::Error {
                message: format!(
                    "job {job} is an array: name one task's trace, e.g. graze trace {job}.1"
                ),
            }),
            ClientRequest::Trace { attempt, .. } => self.trace_request(id, attempt, tx),
            ClientRequest::Logs { job, .. } if array => reply(ClientReply::Error {
                message: format!(
                    "job {job} is an array: name one task's output, e.g. graze logs {job}.1"
                ),
            }),
            ClientRequest::Logs {
                rank,
                follow,
                attempt,
                ..
            } => {
                let job = id;
                let Some(state) = self.core.job_state(job) else {
                    return reply(no_job(job));
                };
                let lines = match self.store.read(job) {
                    Ok(l) => l,
                    Err(e) => {
                        return reply(ClientReply::Error {
                            message: format!("reading output of job {job}: {e:#}"),
                        })
                    }
                };
                let attempts = crate::store::attempts_of(&lines);
                let current = self.core.job_epoch(job).unwrap_or(0);
                let active = matches!(state, JobState::Running | JobState::Suspended);
                let shown: Vec<u64> = match attempt {
                    LogAttempt::All => attempts.clone(),
                    LogAttempt::Number(n) if attempts.contains(&n) || (n == current && n > 0) => {
                        vec![n]
                    }
                    LogAttempt::Number(n) => {
                        let message = format!(
                            "invalid --attempt '{n}': job {job} has {}",
                            attempts_words(&attempts, current)
                        );
                        return reply(ClientReply::Error { message });
                    }
                    // The running attempt while the job runs, else the last one with output.
                    LogAttempt::Latest if active && current > 0 => vec![current],
                    LogAttempt::Latest => attempts.last().copied().into_iter().collect(),
                };
                for a in &shown {
                    reply(ClientReply::LogAttempt {
                        attempt: *a,
                        attempts: attempts.clone(),
                    });
                    let of: Vec<LogLine> = lines
                        .iter()
                        .filter(|l| l.attempt == *a && (rank.is_none() || l.line.rank == rank))
                        .map(|l| l.line.clone())
                        .collect();
                    for chunk in of.chunks(1000) {
                        reply(ClientReply::Log(chunk.to_vec()));
                    }
                }
                let follows = match attempt {
                    LogAttempt::Number(n) => n == current && active,
                    _ => true,
                };
                if follow && follows && !state.is_final() {
                    self.followers.entry(job).or_default().push(Follower {
                        rank,
                        attempt: match attempt {
                            LogAttempt::Number(n) => Some(n),
                            _ => None,
                        },
                        shown: shown.last().copied().unwrap_or(0),
                        tx,
                    });
                } else {
                    reply(ClientReply::LogEnd);
                }
            }
        }
    }
}

impl Owner {
    /// `graze history`: committed attempts, a user token's own jobs only (as `graze queue`).
    fn history_reply(&self, who: &Identity, q: &graze_proto::HistoryQuery) -> ClientReply {
        if let Some(s) = &q.state {
            if let Err(message) = crate::history::check_state(s) {
                return ClientReply::Error { message };
            }
        }
        let only = (who.role != TokenRole::Admin).then_some(who.name.as_str());
        match self.db.read_history(q.since_ms.unwrap_or(0)) {
            Ok(read) => ClientReply::History(crate::history::select(&read, q, only)),
            Err(e) => ClientReply::Error {
                message: format!("reading the job history: {e:#}"),
            },
        }
    }

    /// `graze report`: attempts (a user token's own), every node's owner figures and usage.
    fn harvest_reply(&self, who: &Identity, since_ms: u64, now: u64) -> ClientReply {
        let only = (who.role != TokenRole::Admin).then_some(who.name.as_str());
        let known = self
            .core
            .node_views()
            .into_iter()
            .map(|v| v.info.name)
            .collect();
        match self.db.read_history(since_ms) {
            Ok(read) => ClientReply::Harvest(Box::new(crate::history::harvest(
                &read, since_ms, now, only, known,
            ))),
            Err(e) => ClientReply::Error {
                message: format!("reading the harvest figures: {e:#}"),
            },
        }
    }
}

/// "attempts 1 and 2", "no output yet", for a refused `--attempt`.
fn attempts_words(attempts: &[u64], current: u64) -> String {
    if attempts.is_empty() {
        return if current == 0 {
            "not run yet".into()
        } else {
            format!("no output yet (its run is attempt {current})")
        };
    }
    let list: Vec<String> = attempts.iter().map(u64::to_string).collect();
    format!(
        "output from attempt{} {} only",
        if attempts.len() == 1 { "" } else { "s" },
        list.join(", ")
    )
}
