//! Launch checks: a job's launcher shim asks, through its agent, to start a command on another
//! node of the job; the scheduler checks the job runs, the secret matches and both nodes are in
//! the allocation, then routes the `SpawnRemote` and, later, its exit.

use super::node::ConnId;
use super::state::Core;
use graze_proto::{ExitStatus, JobId, LaunchId, LaunchOutcome, RemoteId, SchedulerMsg};

impl Core {
    /// A job's launcher shim on the node of `conn` asks to start `command` on `host`.
    pub fn launch(
        &mut self,
        conn: ConnId,
        id: LaunchId,
        job: JobId,
        secret: &str,
        host: &str,
        command: Vec<String>,
    ) {
        match self.check_launch(conn, job, secret, host) {
            Ok(target) => {
                let remote = RemoteId(self.next_remote);
                self.next_remote += 1;
                let epoch = self.jobs.get(&job).map_or(0, |j| j.epoch);
                let trace = self.trace_run(job, host);
                let origin = self.node_name(conn).unwrap_or_default().to_string();
                self.send(
                    target,
                    SchedulerMsg::SpawnRemote {
                        remote,
                        job,
                        command,
                        epoch,
                        origin,
                        origin_id: id,
                        trace,
                    },
                );
            }
            Err(error) => self.send(
                conn,
                SchedulerMsg::LaunchDone {
                    id,
                    outcome: LaunchOutcome::Refused { reason: error },
                },
            ),
        }
    }

    fn check_launch(
        &self,
        conn: ConnId,
        job: JobId,
        secret: &str,
        host: &str,
    ) -> Result<ConnId, String> {
        let origin = self.node_name(conn).ok_or("unknown connection")?;
        let j = self.jobs.get(&job).ok_or_else(|| format!("no job {job}"))?;
        // A suspended job's launch still goes through: the target agent stops what it starts.
        if !j.state.is_placed() {
            return Err(format!("job {job} is {}, not running", j.state.wire()));
        }
        if !j.secret.matches(secret) {
            return Err(format!("wrong secret for job {job}"));
        }
        if !j.placed_on(origin) {
            return Err(format!("node {origin} is not part of job {job}"));
        }
        if !j.placed_on(host) {
            return Err(format!(
                "host '{host}' is not allocated to job {job} (its nodes: {})",
                j.hosts().join(", ")
            ));
        }
        self.conn_of(host)
            .ok_or_else(|| format!("node {host} is offline"))
    }

    /// The shim of a launch went away. Nothing to undo here: the job is ending, and its
    /// processes on every node are killed with it.
    pub fn launch_abandoned(&mut self, _conn: ConnId, _id: LaunchId) {}

    /// A remote command started for a launch ended; the answer goes to the origin node's
    /// current connection (routing needs no memory, so it survives a scheduler restart).
    pub fn remote_exited(&mut self, origin: &str, origin_id: LaunchId, exit: ExitStatus) {
        if let Some(conn) = self.conn_of(origin) {
            self.send(
                conn,
                SchedulerMsg::LaunchDone {
                    id: origin_id,
                    outcome: LaunchOutcome::Exited(exit),
                },
            );
        }
    }
}
