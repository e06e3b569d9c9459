//! One user per job slot: an agent running as root with `slot_users = PREFIX` runs each
//! concurrent job as its own unprivileged user `PREFIX0`, `PREFIX1`, ..., so two jobs on one PC
//! cannot signal, trace or read each other (the kernel refuses: EPERM, EACCES). A job keeps
//! its user on this node from its first message (`CheckpointSetup`, `StartJob` or a remote
//! launch) until it is cleared here; then the user goes back to the pool.

use super::confine::{self, Confinement};
use graze_proto::JobId;
use std::collections::HashMap;

/// The slot users (each as a ready confinement) and which job holds each.
#[derive(Debug, Default)]
pub struct SlotPool {
    slots: Vec<Confinement>,
    held: HashMap<JobId, usize>,
}

impl SlotPool {
    /// No slot users: every job runs as the agent's one job user.
    pub fn none() -> SlotPool {
        SlotPool::default()
    }

    /// The users `PREFIX0`, `PREFIX1`, ... that exist (stopping at the first missing one),
    /// confined like `base` otherwise. Each must have `base`'s group (the run_as user's,
    /// which owns the spool and the launcher socket) as its primary group; none at all is an
    /// error.
    pub fn discover(prefix: &str, base: &Confinement) -> anyhow::Result<SlotPool> {
        let gid = base.user.gid;
        let mut users = Vec::new();
        for i in 0.. {
            let name = format!("{prefix}{i}");
            match confine::user_by_name(&name) {
                Ok(u) if u.gid != gid => anyhow::bail!(
                    "slot user '{name}' has primary group {} but the job user's group is {gid}: create slot users with that group (`useradd --system -g GROUP {name}`, or `graze-agent install`)",
                    u.gid
                ),
                Ok(u) => users.push(u),
                Err(confine::UserError::Missing(_)) => break,
                Err(e) => return Err(e.into()),
            }
        }
        if users.is_empty() {
            anyhow::bail!(
                "slot_users '{prefix}': no user '{prefix}0' exists (`graze-agent install` creates them)"
            );
        }
        Ok(SlotPool::new(
            users.iter().map(|u| base.for_user(u)).collect(),
        ))
    }

    /// A pool of `slots`.
    pub fn new(slots: Vec<Confinement>) -> SlotPool {
        SlotPool {
            slots,
            held: HashMap::new(),
        }
    }

    /// True when jobs get users of their own.
    pub fn isolates(&self) -> bool {
        !self.slots.is_empty()
    }

    /// The slot users.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True without slot users.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// `job`'s slot: the one it holds, else the first free one, which it holds from now on.
    /// `None` with no slot users or when all are held by other jobs.
    pub fn take(&mut self, job: JobId) -> Option<&Confinement> {
        let i = match self.held.get(&job) {
            Some(i) => *i,
            None => {
                let i = (0..self.slots.len()).find(|i| !self.held.values().any(|h| h == i))?;
                self.held.insert(job, i);
                i
            }
        };
        self.slots.get(i)
    }

    /// The slot `job` holds, if any.
    pub fn held_by(&self, job: JobId) -> Option<&Confinement> {
        self.held.get(&job).and_then(|i| self.slots.get(*i))
    }

    /// `job` is cleared here: its user is free again.
    pub fn give_back(&mut self, job: JobId) {
        self.held.remove(&job);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn user(i: u32) -> Confinement {
        let u = confine::User {
            name: format!("s{i}"),
            uid: 5000 + i,
            gid: 5000,
            home: PathBuf::from("/nonexistent"),
        };
        Confinement::new(u, true, 19)
    }

    #[test]
    fn each_job_holds_one_user_until_given_back() {
        let mut p = SlotPool::new(vec![user(0), user(1)]);
        assert!(p.isolates());
        assert_eq!(p.take(JobId(7)).unwrap().user.name, "s0");
        // The same job keeps its user.
        assert_eq!(p.take(JobId(7)).unwrap().user.name, "s0");
        assert_eq!(p.take(JobId(8)).unwrap().user.name, "s1");
        // All held: no user for a third job.
        assert!(p.take(JobId(9)).is_none());
        p.give_back(JobId(7));
        assert!(p.held_by(JobId(7)).is_none());
        assert_eq!(p.take(JobId(9)).unwrap().user.name, "s0");
        assert_eq!(p.held_by(JobId(8)).unwrap().user.name, "s1");
    }

    #[test]
    fn no_slot_users_isolate_nothing() {
        let mut p = SlotPool::none();
        assert!(!p.isolates());
        assert!(p.take(JobId(1)).is_none());
    }

    #[test]
    fn a_missing_first_user_is_an_error() {
        let base = Confinement::new(confine::current_user(), false, 19);
        let e = SlotPool::discover("graze-no-such-slot-user-", &base).unwrap_err();
        assert!(
            e.to_string()
                .contains("no user 'graze-no-such-slot-user-0'"),
            "{e}"
        );
    }
}
