//! `graze clusrun` on the agent: run one command now, beside the jobs, and stream its lines.
//!
//! The command is confined like a job process (the same [`Confinement::apply`]: the job user,
//! never root; the job cgroup kind, here `job-clusrun-ID`; its own process group; a
//! `GRAZE_JOB_TAG` of this agent instance, so the guard kills it should the agent die) but
//! with a fixed environment ([`clusrun_env`]) instead of the jobs' one. At the timeout its
//! whole process set is killed (`ProcSet::kill`) and the end reads `timeout`; when it exits
//! on its own, whatever it left behind in its group, cgroup or tag is killed too. Output is
//! bounded per run ([`CLUSRUN_MAX_LINES`], [`CLUSRUN_MAX_BYTES`]); the rest is counted and
//! dropped. A clusrun does not outlive the link: losing the scheduler kills it, as its
//! output and end could not be delivered. It is not stopped when the owner returns (it is
//! bounded by its timeout, and runs at nice 19 where it was started with `--even-if-busy`).

use super::state::{Agent, Input, KILL_TIMEOUT};
use crate::jobs::cgroup::JobCgroup;
use crate::jobs::confine::{Confinement, User};
use crate::jobs::procs::{ProcSet, TAG_VAR};
use crate::jobs::spawn::{self, Sink};
use graze_proto::{
    AgentMsg, ClusrunId, ClusrunOutcome, ExitStatus, Stream, CLUSRUN_MAX_BYTES, CLUSRUN_MAX_LINES,
};
use std::ffi::OsString;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// `PATH` of a clusrun command: fixed, whatever the agent's own.
pub(crate) const CLUSRUN_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Nice level of a clusrun on a node whose owner is present (`--even-if-busy`).
pub(crate) const BUSY_NICE: i32 = 19;

/// The whole environment of a clusrun command: `PATH` ([`CLUSRUN_PATH`]), `HOME`, `USER`,
/// `LOGNAME` of the job user, `LANG=C.UTF-8` and `GRAZE_NODE` (this node's name). Nothing
/// comes from the agent's environment. (`GRAZE_JOB_TAG` is added by the spawn.)
pub(crate) fn clusrun_env(user: &User, node: &str) -> Vec<(OsString, OsString)> {
    vec![
        ("PATH".into(), CLUSRUN_PATH.into()),
        ("HOME".into(), user.home.clone().into_os_string()),
        ("USER".into(), user.name.clone().into()),
        ("LOGNAME".into(), user.name.clone().into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("GRAZE_NODE".into(), node.into()),
    ]
}

/// One clusrun running here.
pub(super) struct Clusrun {
    pgid: i32,
    tag: String,
    cgroup: Option<JobCgroup>,
    deadline: Instant,
    /// Killed at the timeout: the end reads `timeout`.
    timed_out: bool,
    /// A kill was started (timeout or the scheduler's `ClusrunKill`).
    killing: bool,
    lines: u32,
    bytes: u64,
    dropped: u64,
    span: tracing::Span,
}

impl Clusrun {
    fn procs(&self) -> ProcSet {
        ProcSet::new(vec![self.pgid], Some(self.tag.clone())).with_cgroup(self.cgroup.clone())
    }

    /// Count a line against the bound; `false` when it must be dropped.
    fn admit(&mut self, line: &str) -> bool {
        let size = line.len() as u64 + 1;
        if self.lines >= CLUSRUN_MAX_LINES || self.bytes + size > CLUSRUN_MAX_BYTES {
            self.dropped += 1;
            return false;
        }
        self.lines += 1;
        self.bytes += size;
        true
    }
}

/// Sends a clusrun process's events into the owning task.
#[derive(Clone)]
struct ClusrunSink {
    tx: mpsc::Sender<Input>,
    id: ClusrunId,
}

impl Sink for ClusrunSink {
    async fn line(&self, stream: Stream, line: String) -> bool {
        let id = self.id;
        self.tx
            .send(Input::ClusrunLine { id, stream, line })
            .await
            .is_ok()
    }

    async fn exited(&self, exit: ExitStatus) {
        let _ = self
            .tx
            .send(Input::ClusrunExited { id: self.id, exit })
            .await;
    }
}

/// Kill a process set and remove its cgroup, off the owning task.
fn kill_set(set: ProcSet, span: tracing::Span) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        let _e = span.enter();
        if let Err(e) = set.kill(KILL_TIMEOUT) {
            tracing::error!(error = %e, "clusrun processes survived SIGKILL");
        }
        if let Some(cg) = &set.cgroup {
            let _ = cg.remove();
        }
    })
}

impl Agent {
    async fn clusrun_done(&mut self, id: ClusrunId, outcome: ClusrunOutcome, dropped: u64) {
        self.send(AgentMsg::ClusrunDone {
            id,
            outcome,
            dropped_lines: dropped,
        })
        .await;
    }

    /// `SchedulerMsg::Clusrun`: start the command, or answer why not.
    pub(super) async fn start_clusrun(
        &mut self,
        id: ClusrunId,
        command: Vec<String>,
        timeout_ms: u64,
        even_if_busy: bool,
    ) {
        let not = |reason: String| ClusrunOutcome::NotStarted { reason };
        if self.clusruns.contains_key(&id) {
            let o = not(format!("clusrun {id} already runs on this node"));
            return self.clusrun_done(id, o, 0).await;
        }
        if !even_if_busy && self.watch.holds_jobs_stopped() {
            let o = ClusrunOutcome::Skipped {
                reason: "owner present (seen by the node)".into(),
            };
            return self.clusrun_done(id, o, 0).await;
        }
        let Some(program) = command.first().filter(|p| !p.is_empty()).cloned() else {
            return self.clusrun_done(id, not("empty command".into()), 0).await;
        };
        let span = tracing::info_span!("clusrun", %id);
        let cgroup = self.cgroups.as_ref().and_then(|root| {
            root.create_job(&format!("clusrun-{id}"), self.cfg.memory_max)
                .map_err(|e| {
                    span.in_scope(|| tracing::warn!(error = %e, "cannot make a cgroup; tracking by process group"))
                })
                .ok()
        });
        let mut confine: Confinement = self.confine.clone();
        confine.env = clusrun_env(&confine.user, &self.cfg.name);
        if even_if_busy {
            confine.nice = BUSY_NICE;
        }
        let tag = format!("{}-{}-c{id}", self.tag_base, self.instance);
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&command[1..]);
        let dir = if confine.user.home.is_dir() {
            confine.user.home.clone()
        } else {
            "/".into()
        };
        let _keep = match confine.apply(&mut cmd, cgroup.as_ref()) {
            Ok(k) => k,
            Err(e) => {
                if let Some(cg) = &cgroup {
                    let _ = cg.remove();
                }
                let o = not(format!("cannot confine it: {}", spawn::io_reason(&e)));
                return self.clusrun_done(id, o, 0).await;
            }
        };
        cmd.env(TAG_VAR, &tag)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .process_group(0);
        let sink = ClusrunSink {
            tx: self.tx.clone(),
            id,
        };
        match spawn::spawn(cmd, sink, span.clone()) {
            Ok(pid) => {
                span.in_scope(|| {
                    tracing::info!(pid, ?command, timeout_ms, even_if_busy, "clusrun started")
                });
                self.clusruns.insert(
                    id,
                    Clusrun {
                        pgid: pid as i32,
                        tag,
                        cgroup,
                        deadline: Instant::now() + Duration::from_millis(timeout_ms),
                        timed_out: false,
                        killing: false,
                        lines: 0,
                        bytes: 0,
                        dropped: 0,
                        span,
                    },
                );
                self.publish_jobsets();
            }
            Err(e) => {
                if let Some(cg) = &cgroup {
                    let _ = cg.remove();
                }
                let o = not(format!("cannot run '{program}': {}", spawn::io_reason(&e)));
                self.clusrun_done(id, o, 0).await;
            }
        }
    }

    /// An output line of clusrun `id`, sent on within the bound.
    pub(super) async fn on_clusrun_line(&mut self, id: ClusrunId, stream: Stream, line: String) {
        let Some(c) = self.clusruns.get_mut(&id) else {
            return;
        };
        if c.admit(&line) {
            self.send(AgentMsg::ClusrunOutput { id, stream, line })
                .await;
        }
    }

    /// Clusrun `id`'s command ended: kill what it left behind, report.
    pub(super) async fn on_clusrun_exited(&mut self, id: ClusrunId, exit: ExitStatus) {
        let Some(c) = self.clusruns.remove(&id) else {
            return;
        };
        c.span
            .in_scope(|| tracing::info!(%exit, timed_out = c.timed_out, "clusrun ended"));
        let outcome = if c.timed_out {
            ClusrunOutcome::Timeout
        } else {
            ClusrunOutcome::Exited { exit }
        };
        let dropped = c.dropped;
        kill_set(c.procs(), c.span.clone());
        self.publish_jobsets();
        self.clusrun_done(id, outcome, dropped).await;
    }

    /// Start killing clusrun `id` (its end follows when its command is reaped).
    pub(super) fn kill_clusrun(&mut self, id: ClusrunId, timed_out: bool) {
        let Some(c) = self.clusruns.get_mut(&id) else {
            return;
        };
        c.timed_out |= timed_out;
        if c.killing {
            return;
        }
        c.killing = true;
        c.span.in_scope(|| {
            tracing::info!(
                timed_out,
                "killing the clusrun's processes (process group, cgroup, tag)"
            )
        });
        kill_set(c.procs(), c.span.clone());
    }

    /// Every tick: kill the clusruns past their timeout.
    pub(super) fn clusrun_tick(&mut self, now: Instant) {
        let due: Vec<ClusrunId> = self
            .clusruns
            .iter()
            .filter(|(_, c)| !c.killing && now >= c.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.kill_clusrun(id, true);
        }
    }

    /// Kill every clusrun and forget them (the link is gone, or the agent stops); the
    /// returned task ends when they are dead.
    pub(super) fn drop_clusruns(&mut self) -> tokio::task::JoinHandle<()> {
        let sets: Vec<(ProcSet, tracing::Span)> = self
            .clusruns
            .drain()
            .map(|(_, c)| (c.procs(), c.span.clone()))
            .collect();
        if !sets.is_empty() {
            tracing::info!(runs = sets.len(), "killing clusrun processes");
        }
        tokio::spawn(async move {
            for (set, span) in sets {
                let _ = kill_set(set, span).await;
            }
        })
    }

    /// The process sets of the clusruns running here (their CPU is not the owner's).
    pub(super) fn clusrun_sets(&self) -> impl Iterator<Item = ProcSet> + '_ {
        self.clusruns.values().map(Clusrun::procs)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn env_is_fixed_and_small() {
        let u = User {
            name: "graze".into(),
            uid: 999,
            gid: 999,
            home: "/var/lib/graze".into(),
        };
        let e = clusrun_env(&u, "pc7");
        let get = |k: &str| {
            e.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.to_string_lossy().into_owned())
        };
        assert_eq!(get("PATH").as_deref(), Some(CLUSRUN_PATH));
        assert_eq!(get("HOME").as_deref(), Some("/var/lib/graze"));
        assert_eq!(get("GRAZE_NODE").as_deref(), Some("pc7"));
        assert_eq!(get("USER").as_deref(), Some("graze"));
        assert_eq!(e.len(), 6);
    }

    #[test]
    fn output_is_bounded() {
        let mut c = Clusrun {
            pgid: 0,
            tag: String::new(),
            cgroup: None,
            deadline: Instant::now(),
            timed_out: false,
            killing: false,
            lines: 0,
            bytes: 0,
            dropped: 0,
            span: tracing::Span::none(),
        };
        for _ in 0..CLUSRUN_MAX_LINES {
            assert!(c.admit("x"));
        }
        assert!(!c.admit("x"));
        assert_eq!(c.dropped, 1);
        c.lines = 0;
        let big = "y".repeat(CLUSRUN_MAX_BYTES as usize);
        assert!(!c.admit(&big));
        assert_eq!(c.dropped, 2);
    }
}
