//! Confining job processes: who they run as, what environment they get, which cgroup they
//! join, and how nice they are.
//!
//! - An agent started as root runs every job process as the configured user (`run_as`,
//!   default `graze`), never as root: the forked child joins its cgroup, then drops to that
//!   user's uid, gid and groups before `exec`.
//! - An agent started as a normal user runs jobs as itself.
//! - Either way the environment is rebuilt from scratch ([`base_env`]): the agent's secrets
//!   (its access file path, any token) never reach a job.

use crate::jobs::cgroup::JobCgroup;
use std::ffi::{CStr, CString, OsString};
use std::path::PathBuf;

/// Name of the default unprivileged user for jobs of an agent running as root.
pub const DEFAULT_RUN_AS: &str = "graze";

/// Variables of the agent's own environment a job may see (with `LC_*`); everything else,
/// and any `GRAZE_*` variable listed in [`crate::jobs::hydra::SECRET_VARS`], is dropped.
pub const PASS_VARS: &[&str] = &["PATH", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR"];

/// A user job processes run as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory from the password database.
    pub home: PathBuf,
}

/// Errors looking up users.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// No such user in the password database.
    #[error("user '{0}' does not exist: create it (`graze-agent install` creates 'graze', or `useradd --system --shell /usr/sbin/nologin {0}`) or set run_as to an existing unprivileged user")]
    Missing(String),
    /// The user is root.
    #[error(
        "run_as user '{0}' has uid 0: job processes never run as root; name an unprivileged user"
    )]
    Root(String),
    /// The lookup failed.
    #[error("looking up user '{name}': {source}")]
    Lookup {
        /// The name.
        name: String,
        /// Cause.
        source: std::io::Error,
    },
}

fn passwd_entry(pw: &libc::passwd) -> User {
    // SAFETY: getpwnam_r/getpwuid_r filled `pw` with pointers into our buffer, valid here.
    let cstr = |p: *const libc::c_char| unsafe {
        if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    User {
        name: cstr(pw.pw_name),
        uid: pw.pw_uid,
        gid: pw.pw_gid,
        home: PathBuf::from(cstr(pw.pw_dir)),
    }
}

fn lookup(
    by: impl Fn(*mut libc::passwd, *mut libc::c_char, usize, *mut *mut libc::passwd) -> i32,
) -> std::io::Result<Option<User>> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value for getpw*_r to fill.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    let rc = by(&mut pw, buf.as_mut_ptr(), buf.len(), &mut out);
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    if out.is_null() {
        return Ok(None);
    }
    Ok(Some(passwd_entry(&pw)))
}

/// Look up an unprivileged user by name.
pub fn user_by_name(name: &str) -> Result<User, UserError> {
    let c = CString::new(name).map_err(|_| UserError::Missing(name.into()))?;
    let found = lookup(|pw, buf, len, out| {
        // SAFETY: all pointers are valid for the call; `len` is the buffer's size.
        unsafe { libc::getpwnam_r(c.as_ptr(), pw, buf, len, out) }
    })
    .map_err(|source| UserError::Lookup {
        name: name.into(),
        source,
    })?;
    let u = found.ok_or_else(|| UserError::Missing(name.into()))?;
    if u.uid == 0 {
        return Err(UserError::Root(name.into()));
    }
    Ok(u)
}

/// The name of the user with `uid`, if the password database has one.
pub fn user_by_uid(uid: u32) -> Option<String> {
    lookup(|pw, buf, len, out| {
        // SAFETY: all pointers are valid for the call; `len` is the buffer's size.
        unsafe { libc::getpwuid_r(uid, pw, buf, len, out) }
    })
    .ok()
    .flatten()
    .map(|u| u.name)
}

/// The user this process runs as.
pub fn current_user() -> User {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let found = lookup(|pw, buf, len, out| {
        // SAFETY: all pointers are valid for the call; `len` is the buffer's size.
        unsafe { libc::getpwuid_r(uid, pw, buf, len, out) }
    })
    .ok()
    .flatten();
    found.unwrap_or_else(|| User {
        name: std::env::var("USER").unwrap_or_else(|_| format!("uid{uid}")),
        uid,
        gid,
        home: std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from),
    })
}

/// How job processes of this agent are confined.
#[derive(Clone, Debug)]
pub struct Confinement {
    /// The user jobs run as.
    pub user: User,
    /// True when the agent switches to `user` (it runs as root).
    pub switch_user: bool,
    /// Nice level of job processes.
    pub nice: i32,
    /// The agent's environment, filtered ([`base_env`]), for every job process.
    pub env: Vec<(OsString, OsString)>,
}

/// The environment every job process starts from: [`PASS_VARS`] and `LC_*` from the agent,
/// the agent's non-secret `GRAZE_*` site variables, and `HOME`, `USER`, `LOGNAME` of the job's
/// user. Job variables (hydra's, `GRAZE_JOB_*`) are added on top by the caller.
pub fn base_env(
    agent_env: impl IntoIterator<Item = (OsString, OsString)>,
    user: &User,
) -> Vec<(OsString, OsString)> {
    let mut out: Vec<(OsString, OsString)> = agent_env
        .into_iter()
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            PASS_VARS.contains(&k.as_ref())
                || k.starts_with("LC_")
                || (k.starts_with("GRAZE_")
                    && !crate::jobs::hydra::SECRET_VARS.contains(&k.as_ref())
                    && !k.contains("TOKEN")
                    && !k.contains("SECRET"))
        })
        .collect();
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    }
    out.push(("HOME".into(), user.home.clone().into_os_string()));
    out.push(("USER".into(), user.name.clone().into()));
    out.push(("LOGNAME".into(), user.name.clone().into()));
    out
}

impl Confinement {
    /// Jobs run as `user`; `switch_user` when the agent is root.
    pub fn new(user: User, switch_user: bool, nice: i32) -> Confinement {
        let env = base_env(std::env::vars_os(), &user);
        Confinement {
            user,
            switch_user,
            nice,
            env,
        }
    }

    /// The same confinement for another user (a job's slot user).
    pub fn for_user(&self, user: &User) -> Confinement {
        Confinement::new(user.clone(), self.switch_user, self.nice)
    }

    /// Set up `cmd`: a clean environment, and in the child, before `exec`: join `cgroup`,
    /// set the nice level, drop to the job's user. Returns the open `cgroup.procs` files,
    /// which must live until `cmd` is spawned.
    pub fn apply(
        &self,
        cmd: &mut tokio::process::Command,
        cgroup: Option<&JobCgroup>,
    ) -> std::io::Result<Vec<std::fs::File>> {
        use std::os::fd::AsRawFd;
        cmd.env_clear();
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let files = match cgroup {
            Some(cg) => cg.join_fds()?,
            None => Vec::new(),
        };
        let fds: Vec<i32> = files.iter().map(AsRawFd::as_raw_fd).collect();
        let (uid, gid, switch, nice) = (self.user.uid, self.user.gid, self.switch_user, self.nice);
        // initgroups allocates; compute the supplementary groups now, in the parent.
        let groups = if switch {
            supplementary_groups(&self.user)
        } else {
            Vec::new()
        };
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe system calls (write, setpriority, setgroups, setgid, setuid) on
        // values computed before the fork.
        unsafe {
            cmd.pre_exec(move || {
                for fd in &fds {
                    crate::jobs::cgroup::join_fd(*fd)?;
                }
                if nice != 0 {
                    // An error (e.g. a lower nice for a non-root agent) leaves the inherited one.
                    libc::setpriority(libc::PRIO_PROCESS, 0, nice);
                }
                if switch {
                    if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    if libc::setgid(gid) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    if libc::setuid(uid) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // Never go on as root, whatever happened above.
                    if libc::geteuid() == 0 || libc::getuid() == 0 {
                        return Err(std::io::Error::from_raw_os_error(libc::EPERM));
                    }
                }
                Ok(())
            });
        }
        Ok(files)
    }
}

/// The groups `user` belongs to (primary first), from the group database.
pub fn supplementary_groups(user: &User) -> Vec<libc::gid_t> {
    let Ok(name) = CString::new(user.name.as_bytes()) else {
        return vec![user.gid];
    };
    let mut n: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let mut count = n;
        // SAFETY: `groups` holds `count` entries; getgrouplist writes at most that many.
        let rc =
            unsafe { libc::getgrouplist(name.as_ptr(), user.gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count.max(0) as usize);
            return groups;
        }
        if count <= n || n > 65536 {
            return vec![user.gid];
        }
        n = count;
    }
}

/// Give `path` to the job's user (a no-op when the agent does not switch users).
pub fn chown_to(c: &Confinement, path: &std::path::Path) -> std::io::Result<()> {
    if !c.switch_user {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(c.user.uid), Some(c.user.gid))
}

/// Whether `user` can reach (search) every directory above and including `dir`.
pub fn reachable_by(user: &User, dir: &std::path::Path) -> Result<(), PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let groups = supplementary_groups(user);
    for d in dir.ancestors() {
        if d.as_os_str().is_empty() {
            continue;
        }
        let Ok(m) = std::fs::metadata(d) else {
            continue;
        };
        let mode = m.mode();
        let ok = if m.uid() == user.uid {
            mode & 0o100 != 0
        } else if groups.contains(&m.gid()) {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !ok {
            return Err(d.to_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn u() -> User {
        User {
            name: "graze".into(),
            uid: 999,
            gid: 998,
            home: "/nonexistent".into(),
        }
    }

    #[test]
    fn env_keeps_only_what_a_job_needs() {
        let agent: Vec<(OsString, OsString)> = [
            ("PATH", "/usr/bin"),
            ("GRAZE_ACCESS", "/etc/graze/access.toml"),
            ("GRAZE_TOKEN", "t"),
            ("GRAZE_SITE", "lab"),
            ("HOME", "/root"),
            ("SSH_AUTH_SOCK", "/tmp/agent"),
            ("LC_ALL", "C.UTF-8"),
            ("RUST_LOG", "debug"),
        ]
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
        let e = base_env(agent, &u());
        let get = |k: &str| {
            e.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.to_string_lossy().into_owned())
        };
        assert_eq!(get("PATH").as_deref(), Some("/usr/bin"));
        assert_eq!(get("HOME").as_deref(), Some("/nonexistent"));
        assert_eq!(get("USER").as_deref(), Some("graze"));
        assert_eq!(get("LC_ALL").as_deref(), Some("C.UTF-8"));
        assert_eq!(get("GRAZE_SITE").as_deref(), Some("lab"));
        for gone in ["GRAZE_ACCESS", "GRAZE_TOKEN", "SSH_AUTH_SOCK", "RUST_LOG"] {
            assert_eq!(get(gone), None, "{gone} leaked");
        }
        assert_eq!(e.iter().filter(|(k, _)| k == "HOME").count(), 1);
    }

    #[test]
    fn root_and_missing_users_are_refused() {
        let e = user_by_name("root").unwrap_err().to_string();
        assert!(e.contains("never run as root"), "{e}");
        let e = user_by_name("no-such-user-graze-test")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("user 'no-such-user-graze-test' does not exist"),
            "{e}"
        );
        let me = current_user();
        assert!(!me.name.is_empty());
    }
}
