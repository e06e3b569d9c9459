//! Job control in the owning task: starting a job's main command and remote launches,
//! stopping and resuming (owner reclaim, gang suspend), killing, and answering `JobCleared`.

use super::state::{Agent, Conn, Input, Job, Main, ProcSink, KILL_TIMEOUT};
use crate::jobs::cgroup::JobCgroup;
use crate::jobs::confine::Confinement;
use crate::jobs::hydra::{self, JobEnv, JobFiles, SECRET_VARS};
use crate::jobs::outfiles::{OutFiles, WriterSpec};
use crate::jobs::procs::{self, ProcSet, Survivors, TAG_VAR};
use crate::jobs::{dir, guard, spawn};
use graze_proto::{ExitStatus, HostSlots, JobId, JobMsg, LaunchId, LogLine, RemoteId, Stream};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

impl Agent {
    /// Stop every process of every job here, now: one fast pass in this task, follow-up
    /// rounds in a blocking thread.
    pub(super) fn stop_all_jobs(&mut self, seen: Instant) {
        // A job in a checkpoint's grace runs on (resumed, at its nice level) until it saved.
        let ckpts = &self.ckpts;
        let (released, sets): (Vec<JobId>, Vec<ProcSet>) = self
            .jobs
            .iter_mut()
            .filter(|(id, j)| !j.killing && !ckpts.get(id).is_some_and(|c| c.grace))
            .map(|(id, j)| {
                j.suspended = true;
                (*id, j.procs())
            })
            .unzip();
        if sets.is_empty() {
            return;
        }
        let n = procs::stop_now(&sets);
        tracing::info!(
            jobs = sets.len(),
            processes = n,
            after_us = seen.elapsed().as_micros() as u64,
            "owner is back: job processes stopped"
        );
        self.follow_up_stop(sets, seen, released);
    }

    /// Rescan until every member of `sets` is stopped, off-task; `Input::Stopped` says when.
    pub(super) fn follow_up_stop(&self, sets: Vec<ProcSet>, seen: Instant, released: Vec<JobId>) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = tokio::task::spawn_blocking(move || procs::stop_all(&sets, KILL_TIMEOUT))
                .await
                .unwrap_or(Ok(()));
            let _ = tx
                .send(Input::Stopped {
                    seen,
                    result,
                    released,
                })
                .await;
        });
    }

    /// Stop one job's processes (gang suspend from the scheduler, or a process started for a
    /// suspended job).
    pub(super) fn stop_job(&mut self, job: JobId) {
        let Some(j) = self.jobs.get_mut(&job) else {
            return;
        };
        if j.killing {
            return;
        }
        j.suspended = true;
        let set = j.procs();
        j.span
            .in_scope(|| tracing::info!("suspending the job's processes"));
        procs::stop_now(std::slice::from_ref(&set));
        self.follow_up_stop(vec![set], Instant::now(), Vec::new());
    }

    /// The scheduler resumes a job: continue its processes unless this PC's owner is busy.
    pub(super) fn resume_job(&mut self, job: JobId) {
        let reclaimed = self.watch.holds_jobs_stopped();
        let Some(j) = self.jobs.get_mut(&job) else {
            return;
        };
        if reclaimed || j.killing {
            j.span.in_scope(|| {
                tracing::info!("not resuming: the owner of this PC reclaimed it meanwhile")
            });
            return;
        }
        j.suspended = false;
        j.span
            .in_scope(|| tracing::info!("resuming the job's processes"));
        let set = j.procs();
        tokio::task::spawn_blocking(move || set.cont());
    }

    /// Kill every job process on this node and forget the jobs (fenced: the scheduler will
    /// not find them when this agent registers again).
    pub(super) fn kill_all_jobs(&mut self, why: &str) {
        self.lost_at = None;
        self.fail_launches(why);
        for (id, job) in self.jobs.drain() {
            let set = job.procs();
            let files = JobFiles::paths(&self.jobs_dir, id);
            let output = self.output_dir.join(id.to_string());
            let span = job.span.clone();
            let attempt = job.epoch;
            tokio::task::spawn_blocking(move || {
                let _e = span.enter();
                if let Err(e) = set.kill(KILL_TIMEOUT) {
                    tracing::error!(error = %e, "job processes survived SIGKILL");
                }
                if let Some(cg) = &set.cgroup {
                    let _ = cg.remove();
                }
                dir::finish_job_dir(&files, &output, attempt);
            });
        }
        self.publish_jobsets();
    }

    pub(super) fn tag(&self, job: JobId) -> String {
        format!("{}-{}-{job}", self.tag_base, self.instance)
    }

    pub(super) fn job_entry(&mut self, job: JobId) -> &mut Job {
        let tag = self.tag(job);
        self.jobs.entry(job).or_insert_with(|| Job {
            tag,
            span: tracing::info_span!("job", id = %job),
            secret: None,
            pgids: Vec::new(),
            main: Main::None,
            remotes: HashMap::new(),
            killing: false,
            killed: false,
            suspended: false,
            epoch: 0,
            cgroup: None,
            since: std::time::SystemTime::now(),
        })
    }

    /// Who `job`'s processes run as on this node: its slot user (taken at the job's first
    /// use here, given back at its clear) or, without slot users, the agent's job user.
    pub(super) fn job_confine(&mut self, job: JobId) -> Confinement {
        if !self.slots.isolates() {
            return self.confine.clone();
        }
        match self.slots.take(job) {
            Some(c) => c.clone(),
            None => {
                tracing::warn!(%job, slots = self.slots.len(), "every slot user is taken: the job runs as the shared job user");
                self.confine.clone()
            }
        }
    }

    /// The job's cgroup, made on first use where cgroups are writable.
    pub(super) fn job_cgroup(&mut self, job: JobId) -> Option<JobCgroup> {
        if let Some(cg) = self.jobs.get(&job).and_then(|j| j.cgroup.clone()) {
            return Some(cg);
        }
        let root = self.cgroups.as_ref()?;
        match root.create_job(&job.to_string(), self.cfg.memory_max) {
            Ok(cg) => {
                self.job_entry(job).cgroup = Some(cg.clone());
                Some(cg)
            }
            Err(e) => {
                tracing::warn!(%job, error = %e, "cannot make the job's cgroup; tracking it by process group");
                None
            }
        }
    }

    pub(super) fn publish_jobsets(&mut self) {
        self.jobsets = self
            .jobs
            .values()
            .map(Job::procs)
            .chain(self.clusrun_sets())
            .collect();
    }

    /// A command for a job process: clean environment, own process group, the job's cgroup
    /// and user (see [`crate::jobs::confine::Confinement::apply`]). The files returned must
    /// live until the spawn.
    pub(super) fn base_command(
        &mut self,
        program: &str,
        job: JobId,
        tag: &str,
    ) -> std::io::Result<(tokio::process::Command, Vec<std::fs::File>)> {
        let cgroup = self.job_cgroup(job);
        let mut cmd = tokio::process::Command::new(program);
        let keep = self.job_confine(job).apply(&mut cmd, cgroup.as_ref())?;
        for v in SECRET_VARS {
            cmd.env_remove(v);
        }
        cmd.env("GRAZE_JOB_ID", job.to_string())
            .env(TAG_VAR, tag)
            .stdin(Stdio::null())
            .process_group(0);
        Ok((cmd, keep))
    }

    /// Start the job's main command. `out`: the `--stdout` and `--stderr` patterns and the
    /// run's attempt (epoch), when the job asked for output files.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn start_job(
        &mut self,
        job: JobId,
        command: Vec<String>,
        cwd: Option<String>,
        env: Vec<(String, String)>,
        hosts: Vec<HostSlots>,
        secret: String,
        out: Option<(String, Option<String>, u64)>,
        trace: Option<(graze_proto::TraceRun, u64)>,
    ) {
        if let Some(j) = self.jobs.get(&job) {
            if j.main != Main::None || j.killing {
                let reason = format!("job {job} already runs on node '{}'", self.cfg.name);
                self.send_job(JobMsg::JobFailedToStart { job, reason })
                    .await;
                return;
            }
        }
        let files = JobFiles::paths(&self.jobs_dir, job);
        let Some(program) = command.first().cloned() else {
            let reason = "empty command".to_string();
            self.send_job(JobMsg::JobFailedToStart { job, reason })
                .await;
            return;
        };
        let confine = self.job_confine(job);
        if let Err(e) = files
            .write(&hosts)
            .and_then(|()| dir::give_job_dir(&confine, &files.dir))
        {
            let reason = format!(
                "cannot write job files in '{}': {}",
                files.dir.display(),
                spawn::io_reason(&e)
            );
            self.send_job(JobMsg::JobFailedToStart { job, reason })
                .await;
            return;
        }
        let tag = self.tag(job);
        let span = tracing::info_span!("job", id = %job);
        let mut note = None;
        let dir = match cwd {
            Some(c) if std::path::Path::new(&c).is_dir() => PathBuf::from(c),
            Some(c) => {
                note = Some(format!(
                    "graze: working directory '{c}' does not exist on node '{}'; running in '{}'",
                    self.cfg.name,
                    files.dir.display()
                ));
                files.dir.clone()
            }
            None => files.dir.clone(),
        };
        let (mut cmd, _keep) = match self.base_command(&program, job, &tag) {
            Ok(c) => c,
            Err(e) => {
                let reason = format!("cannot confine the job: {}", spawn::io_reason(&e));
                self.send_job(JobMsg::JobFailedToStart { job, reason })
                    .await;
                return;
            }
        };
        cmd.args(&command[1..]).current_dir(&dir);
        let sock = self.sock.clone();
        let vars = JobEnv {
            job,
            files: &files,
            hosts: &hosts,
            launcher: &self.cfg.launcher,
            launch_sock: &sock,
            secret: &secret,
            tag: &tag,
            extra: &env,
        }
        .vars();
        cmd.envs(vars);
        if let Some((run, epoch)) = trace {
            let flavour = super::trace::main_flavour(&program, &self.info.mpi);
            let vars = self.trace_env(job, epoch, run, flavour, &env).await;
            cmd.envs(vars);
        }
        let names: Vec<String> = hosts.iter().map(|h| h.host.clone()).collect();
        let out_files = match out {
            Some((stdout, stderr, attempt)) => {
                let spec = WriterSpec::for_run(dir.clone(), stdout, stderr, job.0, attempt, &env);
                match self.output_writer(job, &spec) {
                    Ok(f) => Some(f),
                    Err(what) => {
                        self.send_job(JobMsg::JobNote { job, what }).await;
                        None
                    }
                }
            }
            None => None,
        };
        let sink = ProcSink {
            tx: self.tx.clone(),
            job,
            remote: None,
            relabel: Some(std::sync::Arc::new(std::sync::Mutex::new([
                hydra::Relabel::new(names.clone()),
                hydra::Relabel::new(names),
            ]))),
            files: out_files,
        };
        match spawn::spawn(cmd, sink, span.clone()) {
            Ok(pid) => {
                let _e = span.enter();
                tracing::info!(pid, command = ?command, cwd = %dir.display(), "job started");
                graze_net::timeline(job.0, "main_spawned", &self.cfg.name);
                drop(_e);
                let j = self.job_entry(job);
                j.span = span;
                j.secret = Some(secret);
                j.main = Main::Running;
                j.pgids.push(pid as i32);
                let stop = j.suspended;
                self.publish_jobsets();
                if stop || (self.watch.holds_jobs_stopped() && !self.job_in_grace(job)) {
                    // Placed just as the owner came back: stopped until the scheduler resumes it.
                    self.stop_job(job);
                }
                if let Some(line) = note {
                    let line = LogLine {
                        rank: None,
                        stream: Stream::Stderr,
                        line,
                    };
                    self.send_job(JobMsg::Output { job, line }).await;
                }
            }
            Err(e) => {
                let reason = format!("cannot run '{program}': {}", spawn::io_reason(&e));
                span.in_scope(|| tracing::warn!(%reason, "job failed to start"));
                let _ = std::fs::remove_dir_all(&files.dir);
                self.send_job(JobMsg::JobFailedToStart { job, reason })
                    .await;
            }
        }
    }

    /// Start the writer of a run's output files, as the job's user (see `jobs/outfiles.rs`).
    fn output_writer(&mut self, job: JobId, spec: &WriterSpec) -> Result<OutFiles, String> {
        let confine = self.job_confine(job);
        let exe = guard::agent_exe(&self.cfg.launcher)
            .ok_or_else(|| "no graze-agent executable found".to_string());
        let tx = self.tx.clone();
        let note = move |what: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(Input::Note { job, what }).await;
            }
        };
        exe.and_then(|exe| {
            OutFiles::start(&exe, &confine, spec, note).map_err(|e| spawn::io_reason(&e))
        })
        .map_err(|why| format!("no output files for this run: cannot start their writer: {why}"))
    }

    pub(super) async fn spawn_remote(
        &mut self,
        remote: RemoteId,
        job: JobId,
        command: Vec<String>,
        origin: (String, LaunchId),
        trace: Option<(graze_proto::TraceRun, u64)>,
    ) {
        let fail = |why: String| {
            vec![
                JobMsg::Output {
                    job,
                    line: LogLine {
                        rank: None,
                        stream: Stream::Stderr,
                        line: why,
                    },
                },
                JobMsg::RemoteExited {
                    remote,
                    exit: ExitStatus {
                        code: Some(127),
                        signal: None,
                    },
                    origin: origin.0.clone(),
                    origin_id: origin.1,
                },
            ]
        };
        if self.jobs.get(&job).is_some_and(|j| j.killing) {
            for m in fail(format!(
                "graze: not starting a process for job {job} on '{}': the job is being killed",
                self.cfg.name
            )) {
                self.send_job(m).await;
            }
            return;
        }
        let files = JobFiles::paths(&self.jobs_dir, job);
        let dir = files.dir.clone();
        let confine = self.job_confine(job);
        if let Err(e) =
            std::fs::create_dir_all(&files.tmp).and_then(|()| dir::give_job_dir(&confine, &dir))
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create job directory");
        }
        let tag = self.tag(job);
        let line = command.join(" ");
        let (mut cmd, _keep) = match self.base_command("sh", job, &tag) {
            Ok(c) => c,
            Err(e) => {
                for m in fail(format!(
                    "graze: cannot confine a process of job {job} on '{}': {}",
                    self.cfg.name,
                    spawn::io_reason(&e)
                )) {
                    self.send_job(m).await;
                }
                return;
            }
        };
        cmd.arg("-c").arg(&line);
        if dir.is_dir() {
            cmd.current_dir(&dir);
        }
        if files.tmp.is_dir() {
            let shares_host = sysinfo::System::host_name().is_some_and(|h| h != self.cfg.name);
            cmd.envs(hydra::node_vars(&files.tmp, shares_host));
        }
        // Open MPI's `orted` passes its own environment to the ranks it starts here, not the
        // main command's (hydra's proxy copies the main command's): the checkpoint protocol's
        // variables (the directory is the same path on every node) come from this node's setup.
        if let Some(ck) = self.ckpts.get(&job) {
            cmd.env("GRAZE_CHECKPOINT_DIR", &ck.dir)
                .env("GRAZE_CHECKPOINT_SIGNAL", ck.signal.to_string())
                .env(
                    "GRAZE_RESTART_COUNT",
                    ck.epoch.saturating_sub(1).to_string(),
                );
        }
        // Likewise the tracer's variables, for the ranks `orted` starts here.
        if let Some((run, epoch)) = trace {
            let flavour = super::trace::remote_flavour(&command, &self.info.mpi);
            let vars = self.trace_env(job, epoch, run, flavour, &[]).await;
            cmd.envs(vars);
        }
        let sink = ProcSink {
            tx: self.tx.clone(),
            job,
            remote: Some(remote),
            relabel: None,
            files: None,
        };
        let span = self.job_entry(job).span.clone();
        match spawn::spawn(cmd, sink, span.clone()) {
            Ok(pid) => {
                span.in_scope(|| tracing::info!(remote = remote.0, pid, command = %line, "remote launch started"));
                graze_net::timeline(job.0, "remote_spawned", &self.cfg.name);
                let j = self.job_entry(job);
                j.pgids.push(pid as i32);
                j.remotes.insert(remote, origin.clone());
                let stop = j.suspended;
                self.publish_jobsets();
                if stop || (self.watch.holds_jobs_stopped() && !self.job_in_grace(job)) {
                    self.stop_job(job);
                }
            }
            Err(e) => {
                for m in fail(format!(
                    "graze: cannot run 'sh' on '{}': {}",
                    self.cfg.name,
                    spawn::io_reason(&e)
                )) {
                    self.send_job(m).await;
                }
                if let Some(j) = self.jobs.get(&job) {
                    if j.main == Main::None && j.remotes.is_empty() && j.pgids.is_empty() {
                        self.jobs.remove(&job);
                        if !self.ckpts.contains_key(&job) {
                            self.slots.give_back(job);
                        }
                    }
                }
            }
        }
    }

    pub(super) async fn on_main_exited(&mut self, job: JobId, exit: ExitStatus) {
        let Some(j) = self.jobs.get_mut(&job) else {
            return;
        };
        j.main = Main::Exited;
        graze_net::timeline(job.0, "main_exited", &self.cfg.name);
        j.span
            .in_scope(|| tracing::info!(%exit, "job's main command ended"));
        self.send_job(JobMsg::JobExited { job, exit }).await;
        self.maybe_cleared(job).await;
    }

    pub(super) async fn on_remote_exited(
        &mut self,
        job: JobId,
        remote: RemoteId,
        exit: ExitStatus,
    ) {
        let Some(j) = self.jobs.get_mut(&job) else {
            return;
        };
        let (origin, origin_id) = j.remotes.remove(&remote).unwrap_or_default();
        graze_net::timeline(job.0, "remote_exited", &self.cfg.name);
        j.span
            .in_scope(|| tracing::info!(remote = remote.0, %exit, "remote launch ended"));
        self.send_job(JobMsg::RemoteExited {
            remote,
            exit,
            origin,
            origin_id,
        })
        .await;
        self.maybe_cleared(job).await;
    }

    /// `--signal`: send `sig` to the job's program here (not its MPI launcher), for run `epoch`.
    pub(super) fn signal_job(&mut self, job: JobId, epoch: u64, sig: i32) {
        let Some(j) = self.jobs.get(&job) else {
            tracing::debug!(%job, "signal for a job with no process here");
            return;
        };
        if j.killing || j.epoch != epoch {
            return;
        }
        let set = j.procs();
        let span = j.span.clone();
        tokio::task::spawn_blocking(move || {
            let sent = crate::jobs::signal::signal_program(&set, sig);
            span.in_scope(
                || tracing::info!(signal = sig, processes = ?sent, "signalled the job's program"),
            );
        });
    }

    /// Kill the job's processes; with `grace`, vacate (SIGTERM, SIGKILL after `grace`).
    pub(super) fn kill_job(&mut self, job: JobId, grace: Option<Duration>) {
        if grace.is_none() {
            // A cancel during a checkpoint's grace: kill at once, no part.
            self.checkpoint_cancelled(job);
        }
        let set = match self.jobs.get_mut(&job) {
            Some(j) if j.killing => return,
            Some(j) => {
                j.killing = true;
                j.span.in_scope(|| match grace {
                    None => tracing::info!("killing the job's processes"),
                    Some(g) => tracing::info!(grace_ms = g.as_millis() as u64, "vacating the job"),
                });
                j.procs()
            }
            // Nothing known here; still sweep for tagged orphans.
            None => ProcSet::new(Vec::new(), Some(self.tag(job))),
        };
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = tokio::task::spawn_blocking(move || match grace {
                None => set.kill(KILL_TIMEOUT),
                Some(g) => set.vacate(g, KILL_TIMEOUT),
            })
            .await
            .unwrap_or(Ok(()));
            let _ = tx.send(Input::Killed { job, result }).await;
        });
    }

    pub(super) async fn on_killed(&mut self, job: JobId, result: Result<(), Survivors>) {
        graze_net::timeline(job.0, "killed", &self.cfg.name);
        let Some(j) = self.jobs.get_mut(&job) else {
            self.send_job(JobMsg::JobCleared { job }).await;
            return;
        };
        j.killed = true;
        if let Err(e) = result {
            j.span
                .in_scope(|| tracing::error!(error = %e, "job processes survived SIGKILL"));
            // Answer anyway: the scheduler must not wait forever for unkillable processes.
            if !self.start_pack(job) {
                self.clear(job).await;
            }
            return;
        }
        self.maybe_cleared(job).await;
    }

    /// Answer `JobCleared` once the kill finished and every process we started was reaped.
    pub(super) async fn maybe_cleared(&mut self, job: JobId) {
        let done = self.jobs.get(&job).is_some_and(|j| {
            j.killing && j.killed && j.main != Main::Running && j.remotes.is_empty()
        });
        if done && !self.start_pack(job) {
            self.clear(job).await;
        }
    }

    pub(super) async fn clear(&mut self, job: JobId) {
        // A traced run's files go to the scheduler first (`trace.rs`); the clear goes on
        // when they went, or could not.
        if self.start_trace_upload(job) {
            return;
        }
        self.forget_trace(job);
        let mut attempt = 1;
        if let Some(j) = self.jobs.remove(&job) {
            attempt = j.epoch;
            j.span.in_scope(|| tracing::info!("job cleared"));
            if let Some(cg) = &j.cgroup {
                if let Err(e) = cg.remove() {
                    tracing::warn!(%job, error = %e, "cannot remove the job's cgroup");
                }
            }
        }
        self.publish_jobsets();
        self.forget_checkpoint(job);
        let files = JobFiles::paths(&self.jobs_dir, job);
        dir::finish_job_dir(&files, &self.output_dir.join(job.to_string()), attempt);
        self.slots.give_back(job);
        graze_net::timeline(job.0, "cleared", &self.cfg.name);
        self.send_job(JobMsg::JobCleared { job }).await;
    }

    pub(super) async fn stop(&mut self) {
        self.fail_launches("graze-agent is shutting down");
        let _ = self.drop_clusruns().await;
        let sets: Vec<(tracing::Span, ProcSet)> = self
            .jobs
            .values()
            .map(|j| (j.span.clone(), j.procs()))
            .collect();
        if !sets.is_empty() {
            tracing::info!(jobs = sets.len(), "killing job processes");
        }
        let killing = tokio::task::spawn_blocking(move || {
            for (span, set) in sets {
                if let Err(e) = set.kill(KILL_TIMEOUT) {
                    span.in_scope(|| tracing::error!(error = %e, "job processes survived SIGKILL"));
                }
            }
        });
        let _ = killing.await;
        for (id, j) in &self.jobs {
            if let Some(cg) = &j.cgroup {
                let _ = cg.remove();
            }
            dir::finish_job_dir(
                &JobFiles::paths(&self.jobs_dir, *id),
                &self.output_dir.join(id.to_string()),
                j.epoch,
            );
        }
        self.jobs.clear();
        if let Some(r) = &self.cgroups {
            r.remove();
        }
        if let Some(g) = self.guard.take() {
            let _ = tokio::task::spawn_blocking(move || g.release()).await;
        }
        let endpoint = match &self.conn {
            Conn::Up { endpoint, .. } => Some(endpoint.clone()),
            _ => None,
        };
        self.close_conn(b"agent shutting down");
        if let Some(ep) = endpoint {
            let _ = tokio::time::timeout(Duration::from_secs(1), ep.wait_idle()).await;
        }
        let _ = std::fs::remove_file(&self.sock);
    }
}
