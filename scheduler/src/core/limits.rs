//! Time limits and the start conditions a user sets: `--time` (running time, suspensions for
//! owners not counted), `--signal SIG@T` (sent T before the limit), `--begin` (not started
//! before a time) and `--hold` / `graze release` / `graze hold`.
//!
//! A limit counts the current run's running time ([`Job::running_ms`]): a requeued run starts
//! from zero, a suspended run's deadline does not run, and a restart keeps the run's time
//! (`started_ms`, `run_suspended_ms`). At the limit the run is killed on every node
//! (`KillJob`) and the job ends `timeout` at once (its cores stay held until each node
//! confirms, as after any end); a timed-out job is never requeued. Deadlines join
//! [`Core::poll_timeout`]; a begin time clears in [`Core::handle_timeout`], so the pass that
//! starts the job runs at the begin time, not on a timer tick.

use super::job::{Job, RunState};
use super::state::Core;
use graze_proto::{exact_duration, signal_name, JobId, JobSpec, JobState, SchedulerMsg};

/// Start of the event that records a sent `--signal`; a restart reads it back so the signal
/// is not sent twice in one run.
const SIGNAL_EVENT: &str = "sent ";

/// Refuse limits that make no sense: a zero limit, a signal without a limit, a signal not
/// before the limit, an unknown signal number.
pub(super) fn check_limits(spec: &JobSpec) -> Result<(), String> {
    if spec.time_limit_ms == Some(0) {
        return Err("invalid time limit '0': a time limit must be at least 1s".into());
    }
    if let Some(sig) = spec.time_signal {
        let name = signal_name(sig.signal)
            .ok_or_else(|| format!("invalid signal '{}': must be 1 to 64", sig.signal))?;
        let Some(limit) = spec.time_limit_ms else {
            return Err(format!(
                "invalid signal '{name}@{}': a signal before the time limit needs a time limit (--time)",
                exact_duration(sig.before_ms)
            ));
        };
        if sig.before_ms >= limit {
            return Err(format!(
                "invalid signal '{name}@{}': it must come before the time limit {}, not at or above it",
                exact_duration(sig.before_ms),
                exact_duration(limit)
            ));
        }
    }
    Ok(())
}

impl Job {
    /// When the running run reaches its time limit, if it has one. `None` while suspended
    /// (the deadline does not run) and when not running.
    pub(super) fn limit_at(&self) -> Option<u64> {
        if self.state != RunState::Running {
            return None;
        }
        let start = self.started_ms?;
        let limit = self.spec.time_limit_ms?;
        Some(
            start
                .saturating_add(self.run_suspended_ms)
                .saturating_add(limit),
        )
    }

    /// When the running run's `--signal` is due, unless it was sent.
    pub(super) fn signal_at(&self) -> Option<u64> {
        if self.signalled {
            return None;
        }
        let sig = self.spec.time_signal?;
        Some(self.limit_at()?.saturating_sub(sig.before_ms))
    }

    /// Whether the current run's events record its `--signal` (after a restart).
    pub(super) fn signal_sent_this_run(&self) -> bool {
        let Some(start) = self.started_ms else {
            return false;
        };
        self.spec.time_signal.is_some()
            && self
                .events
                .iter()
                .any(|e| e.at_ms >= start && e.what.starts_with(SIGNAL_EVENT))
    }
}

impl Core {
    /// Begin times passed, signals due, limits reached, at `now`.
    pub(super) fn review_limits(&mut self, now: u64) {
        for id in self.active_ids() {
            let Some(j) = self.jobs.get_mut(&id) else {
                continue;
            };
            if j.begin_until.is_some_and(|t| t <= now) {
                j.begin_until = None;
            }
            if j.signal_at().is_some_and(|t| t <= now) {
                self.send_time_signal(id, now);
            }
            if self.jobs[&id].limit_at().is_some_and(|t| t <= now) {
                self.time_out(id, now);
            }
        }
    }

    /// Send the run's `--signal` to every node of its allocation.
    fn send_time_signal(&mut self, id: JobId, now: u64) {
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        let Some(sig) = j.spec.time_signal else {
            return;
        };
        j.signalled = true;
        let epoch = j.epoch;
        let hosts = j.hosts();
        for h in &hosts {
            if let Some(conn) = self.conn_of(h) {
                self.send(
                    conn,
                    SchedulerMsg::SignalJob {
                        job: id,
                        epoch,
                        signal: sig.signal,
                    },
                );
            }
        }
        let name = signal_name(sig.signal).unwrap_or_else(|| sig.signal.to_string());
        self.event(
            id,
            now,
            format!(
                "{SIGNAL_EVENT}{name} to the program on {}, {} before the time limit",
                hosts.join(", "),
                exact_duration(sig.before_ms)
            ),
        );
    }

    /// The run reached its time limit: the job ends `timeout`, its processes are killed.
    fn time_out(&mut self, id: JobId, now: u64) {
        let Some(j) = self.jobs.get(&id) else {
            return;
        };
        let limit = j.spec.time_limit_ms.unwrap_or(0);
        let what = format!(
            "time limit {} reached: ran {} ({} suspended for owners not counted); killing it",
            exact_duration(limit),
            exact_duration(j.running_ms(now)),
            exact_duration(j.suspended_ms(now))
        );
        let nodes = j.hosts();
        self.finish(
            id,
            RunState::TimedOut {
                exit: None,
                at: now,
            },
            what,
            now,
        );
        self.kill_on(id, &nodes);
        self.schedule(now);
    }

    /// The main command of a timed-out run ended (killed, usually): keep how, once.
    pub(super) fn timed_out_exit(
        &mut self,
        id: JobId,
        name: &str,
        exit: Option<graze_proto::ExitStatus>,
    ) {
        let Some(j) = self.jobs.get_mut(&id) else {
            return;
        };
        if j.alloc.first().map(|a| a.host.as_str()) != Some(name) {
            return;
        }
        if let RunState::TimedOut { exit: e @ None, .. } = &mut j.state {
            *e = exit;
            self.out.push_back(super::state::Output::JobChanged(id));
        }
    }

    /// `graze release`: a held job may be scheduled.
    pub fn release(&mut self, id: JobId, now: u64) -> Result<JobState, String> {
        let Some(j) = self.jobs.get_mut(&id) else {
            return Err(format!("no job {id}"));
        };
        if !j.spec.hold || j.state.is_final() {
            return Err(format!(
                "job {id} is not held ({}): only a held job can be released",
                j.state.wire()
            ));
        }
        j.spec.hold = false;
        self.event(id, now, "released".into());
        self.schedule(now);
        Ok(self.jobs[&id].state.wire())
    }

    /// `graze hold`: a queued job is not started until released.
    pub fn hold(&mut self, id: JobId, now: u64) -> Result<JobState, String> {
        let Some(j) = self.jobs.get_mut(&id) else {
            return Err(format!("no job {id}"));
        };
        if j.spec.hold {
            return Err(format!("job {id} is already held"));
        }
        if j.state != RunState::Queued {
            return Err(format!(
                "job {id} is {}: only a queued job can be held",
                j.state.wire()
            ));
        }
        j.spec.hold = true;
        self.event(id, now, "held".into());
        Ok(JobState::Queued)
    }
}
