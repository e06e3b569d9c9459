//! Client requests, handled by the owning task: submit, queue, nodes, show, cancel, wait,
//! watch, logs, drain; with the ownership checks and the audit records they need.

use crate::audit::Outcome;
use crate::auth::{self, Identity, TokenRole};
use crate::core::Target;
use crate::owner::{Follower, Owner};
use graze_proto::{ClientReply, ClientRequest, JobId, LogLine};
use tokio::sync::mpsc;

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
            ClientRequest::Show(r) | ClientRequest::Cancel(r) | ClientRequest::Wait(r) => Some(*r),
            ClientRequest::Logs { job, .. } => Some(*job),
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
                Some(v) => ClientReply::Job(Box::new(v)),
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
            ClientRequest::Logs { job, .. } if array => reply(ClientReply::Error {
                message: format!(
                    "job {job} is an array: name one task's output, e.g. graze logs {job}.1"
                ),
            }),
            ClientRequest::Logs { rank, follow, .. } => {
                let job = id;
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
}
