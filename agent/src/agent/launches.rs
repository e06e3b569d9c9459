//! Launch requests from the `graze-launch` shim: checked here, forwarded to the scheduler,
//! answered when it says how the remote command ended.

use super::state::{Agent, Conn, PendingLaunch};
use crate::launch::{LaunchRequest, ShimReply};
use graze_proto::AgentMsg;

impl Agent {
    pub(super) async fn on_launch_request(&mut self, r: LaunchRequest) {
        let LaunchRequest { id, req, reply } = r;
        let check = match self.jobs.get(&req.job) {
            None => Err(format!(
                "job {} is not running on node '{}'",
                req.job, self.cfg.name
            )),
            Some(j) if j.killing => Err(format!("job {} is being killed", req.job)),
            Some(j) => match &j.secret {
                Some(s) if graze_net::token_eq(s, &req.secret) => Ok(()),
                _ => Err(format!("wrong secret for job {}", req.job)),
            },
        };
        if let Err(e) = check {
            tracing::warn!(launch = id.0, job = %req.job, error = %e, "launch refused");
            let _ = reply.send(ShimReply::error(e));
            return;
        }
        if !matches!(self.conn, Conn::Up { .. }) {
            let _ = reply.send(ShimReply::error(
                "graze-agent has no connection to the scheduler",
            ));
            return;
        }
        graze_net::timeline(req.job.0, "shim_request", &req.host);
        if let Some(j) = self.jobs.get(&req.job) {
            j.span.in_scope(|| {
                tracing::info!(launch = id.0, host = %req.host, command = ?req.command, "launch requested")
            });
        }
        self.launches.insert(
            id,
            PendingLaunch {
                job: req.job,
                reply,
            },
        );
        self.send(AgentMsg::Launch {
            id,
            job: req.job,
            secret: req.secret,
            host: req.host,
            command: req.command,
        })
        .await;
    }

    pub(super) fn fail_launches(&mut self, why: &str) {
        for (_, p) in self.launches.drain() {
            let _ = p.reply.send(ShimReply::error(why));
        }
    }
}
