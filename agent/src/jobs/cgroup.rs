//! One cgroup per job, where the cgroup file system is writable: freezing and killing the
//! whole job through it, and its memory cap.
//!
//! Two backends:
//! - **cgroup v2** (a unified hierarchy on `/sys/fs/cgroup`): `cgroup.freeze`, `cgroup.kill`
//!   (kernel 5.14+, else freeze plus SIGKILL), `memory.max`.
//! - **cgroup v1**: the `freezer` controller (`freezer.state`) and, when mounted, the `memory`
//!   controller (`memory.limit_in_bytes`).
//!
//! The owner keeps the CPU: every job cgroup gets the lowest CPU weight (v2 `cpu.weight` = 1,
//! v1 `cpu.shares` = 2, in the v1 `cpu` hierarchy when it is mounted and writable), on top of
//! nice 19, and where the kernel has it (v2, 5.19+) `cpu.idle` = 1, SCHED_IDLE for the whole
//! cgroup. A failure to set them is logged, not fatal. `GRAZE_CPU_WEIGHT=off` in the agent's
//! environment leaves them at the defaults (for the latency benchmark's comparison).
//!
//! Job cgroups live under `graze-NODE/` inside the agent's own cgroup (so a systemd unit with
//! `Delegate=yes` owns them): `.../graze-NODE/job-ID`. A job process joins its cgroup in the
//! forked child before `exec` (see [`JobCgroup::join_fds`]), so nothing it starts escapes.
//!
//! Where none of this is writable (a normal user without delegation, other systems), the agent
//! falls back to process groups and the job tag (see [`crate::jobs::procs`]).
//!
//! Everything here is blocking file I/O on the cgroup file system: call it from a blocking
//! context.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Which cgroup interface a job cgroup uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The unified hierarchy.
    V2,
    /// The v1 freezer (and memory) controllers.
    V1,
}

/// Where the agent creates job cgroups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupRoot {
    /// Interface.
    pub kind: Kind,
    /// v2: the parent directory; v1: the parent in the freezer hierarchy.
    pub base: PathBuf,
    /// v1 only: the parent in the memory hierarchy, when that controller is mounted and
    /// writable. (v2 uses `base` for memory too.)
    pub memory_base: Option<PathBuf>,
    /// v1 only: the parent in the `cpu` hierarchy, when that controller is mounted and
    /// writable (for `cpu.shares`). (v2 uses `base` for the cpu controller too.)
    pub cpu_base: Option<PathBuf>,
}

/// The cgroup of one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobCgroup {
    /// Interface.
    pub kind: Kind,
    /// v2: the job's cgroup; v1: its freezer cgroup.
    pub dir: PathBuf,
    /// v1: its memory cgroup, if any.
    pub memory: Option<PathBuf>,
    /// v1: its cpu cgroup, if any.
    pub cpu: Option<PathBuf>,
}

/// Mount points of cgroup file systems, from `/proc/self/mountinfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mounts {
    /// The cgroup2 mount, if any.
    pub v2: Option<PathBuf>,
    /// v1 mounts by controller name.
    pub v1: HashMap<String, PathBuf>,
}

/// Parse `/proc/self/mountinfo` for cgroup mounts.
pub fn parse_mountinfo(text: &str) -> Mounts {
    let mut m = Mounts::default();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(point) = left.split_whitespace().nth(4) else {
            continue;
        };
        let mut r = right.split_whitespace();
        let fstype = r.next().unwrap_or("");
        let _source = r.next();
        let opts = r.next().unwrap_or("");
        match fstype {
            "cgroup2" => {
                m.v2.get_or_insert_with(|| PathBuf::from(point));
            }
            "cgroup" => {
                for o in opts.split(',') {
                    if matches!(o, "freezer" | "memory" | "cpu") {
                        m.v1.entry(o.to_string())
                            .or_insert_with(|| PathBuf::from(point));
                    }
                }
            }
            _ => {}
        }
    }
    m
}

/// Parse `/proc/self/cgroup`: the v2 path (`0::PATH`) and v1 paths by controller.
pub fn parse_proc_cgroup(text: &str) -> (Option<String>, HashMap<String, String>) {
    let mut v2 = None;
    let mut v1 = HashMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if ctrls.is_empty() {
            v2 = Some(path.to_string());
        } else {
            for c in ctrls.split(',') {
                v1.insert(c.to_string(), path.to_string());
            }
        }
    }
    (v2, v1)
}

fn join(mount: &Path, cg_path: &str) -> PathBuf {
    mount.join(cg_path.trim_start_matches('/'))
}

fn write_file(p: &Path, s: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(p)?;
    f.write_all(s.as_bytes())
}

fn io_ctx(p: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", p.display()))
}

impl CgroupRoot {
    /// Find a writable cgroup hierarchy and create `graze-LEAF` in the agent's own cgroup
    /// (`LEAF`: the agent's name and spool tag, unique per agent on this machine).
    /// `Err` says why the agent falls back to process groups.
    pub fn detect(leaf: &str) -> Result<CgroupRoot, String> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let mounts = parse_mountinfo(&mountinfo);
        let (v2_path, v1_paths) = parse_proc_cgroup(&own);
        let leaf = format!("graze-{leaf}");
        let mut why = Vec::new();
        // A v2 system (no v1 freezer mounted): the unified hierarchy holds the controllers.
        // Hybrid systems with a v1 freezer use v1, where the memory controller also lives.
        if !mounts.v1.contains_key("freezer") {
            if let (Some(mount), Some(path)) = (&mounts.v2, &v2_path) {
                let base = join(mount, path).join(&leaf);
                match Self::make_v2(&base) {
                    Ok(r) => return Ok(r),
                    Err(e) => why.push(format!("cgroup v2 at {}: {e}", base.display())),
                }
            }
        }
        if let (Some(mount), Some(path)) = (mounts.v1.get("freezer"), v1_paths.get("freezer")) {
            let base = join(mount, path).join(&leaf);
            match std::fs::create_dir_all(&base) {
                Ok(()) => {
                    let memory_base = match (mounts.v1.get("memory"), v1_paths.get("memory")) {
                        (Some(m), Some(p)) => {
                            let mb = join(m, p).join(&leaf);
                            match std::fs::create_dir_all(&mb) {
                                Ok(()) => Some(mb),
                                Err(e) => {
                                    tracing::warn!(dir = %mb.display(), error = %e,
                                        "memory cgroup not writable; no per-job memory cap");
                                    None
                                }
                            }
                        }
                        _ => None,
                    };
                    let cpu_base = match (mounts.v1.get("cpu"), v1_paths.get("cpu")) {
                        (Some(m), Some(p)) => {
                            let cb = join(m, p).join(&leaf);
                            match std::fs::create_dir_all(&cb) {
                                Ok(()) => Some(cb),
                                Err(e) => {
                                    tracing::warn!(dir = %cb.display(), error = %e,
                                        "cpu cgroup not writable; jobs keep the default CPU weight");
                                    None
                                }
                            }
                        }
                        _ => None,
                    };
                    return Ok(CgroupRoot {
                        kind: Kind::V1,
                        base,
                        memory_base,
                        cpu_base,
                    });
                }
                Err(e) => why.push(format!("cgroup v1 freezer at {}: {e}", base.display())),
            }
        }
        if why.is_empty() {
            why.push("no cgroup v2 hierarchy and no v1 freezer mounted".into());
        }
        Err(why.join("; "))
    }

    /// A v1 root at `base` (freezer hierarchy) and `memory_base`, created if missing.
    pub fn v1_at(base: &Path, memory_base: Option<&Path>) -> std::io::Result<CgroupRoot> {
        std::fs::create_dir_all(base).map_err(|e| io_ctx(base, e))?;
        if let Some(m) = memory_base {
            std::fs::create_dir_all(m).map_err(|e| io_ctx(m, e))?;
        }
        Ok(CgroupRoot {
            kind: Kind::V1,
            base: base.to_owned(),
            memory_base: memory_base.map(Path::to_owned),
            cpu_base: None,
        })
    }

    /// The same v1 root with job cgroups also in the `cpu` hierarchy at `cpu_base` (created
    /// if missing), for their `cpu.shares`.
    pub fn with_cpu_base(mut self, cpu_base: &Path) -> std::io::Result<CgroupRoot> {
        std::fs::create_dir_all(cpu_base).map_err(|e| io_ctx(cpu_base, e))?;
        self.cpu_base = Some(cpu_base.to_owned());
        Ok(self)
    }

    /// A v2 root at `base`, created if missing, with the memory controller enabled for its
    /// children where the parent allows it.
    pub fn v2_at(base: &Path) -> std::io::Result<CgroupRoot> {
        Self::make_v2(base)
    }

    fn make_v2(base: &Path) -> std::io::Result<CgroupRoot> {
        std::fs::create_dir_all(base).map_err(|e| io_ctx(base, e))?;
        // Enable the memory controller for job cgroups where the parent allows it.
        let parent_ctrl = base
            .parent()
            .map(|p| p.join("cgroup.subtree_control"))
            .unwrap_or_default();
        let available =
            std::fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
        if !available.split_whitespace().any(|c| c == "memory") {
            let _ = write_file(&parent_ctrl, "+memory");
        }
        let available =
            std::fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
        if available.split_whitespace().any(|c| c == "memory") {
            if let Err(e) = write_file(&base.join("cgroup.subtree_control"), "+memory") {
                tracing::warn!(error = %e, "cannot enable the memory controller for job cgroups; no per-job memory cap");
            }
        }
        // And the cpu controller, for the jobs' lowest CPU weight.
        let available =
            std::fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
        if !available.split_whitespace().any(|c| c == "cpu") {
            let _ = write_file(&parent_ctrl, "+cpu");
        }
        if let Err(e) = write_file(&base.join("cgroup.subtree_control"), "+cpu") {
            tracing::warn!(error = %e, "cannot enable the cpu controller for job cgroups; jobs keep the default CPU weight");
        }
        Ok(CgroupRoot {
            kind: Kind::V2,
            base: base.to_owned(),
            memory_base: None,
            cpu_base: None,
        })
    }

    /// Create (afresh) the cgroup of job `label`, with `memory_max` bytes as its memory cap.
    pub fn create_job(&self, label: &str, memory_max: Option<u64>) -> std::io::Result<JobCgroup> {
        let dir = self.base.join(format!("job-{label}"));
        let memory = self
            .memory_base
            .as_ref()
            .map(|m| m.join(format!("job-{label}")));
        let cpu = self
            .cpu_base
            .as_ref()
            .map(|c| c.join(format!("job-{label}")));
        let cg = JobCgroup {
            kind: self.kind,
            dir,
            memory,
            cpu,
        };
        // A stale cgroup of the same name (agent restart) is emptied and removed first.
        if cg.dir.exists() {
            let _ = cg.kill(Duration::from_secs(2));
            let _ = cg.remove();
        }
        std::fs::create_dir_all(&cg.dir).map_err(|e| io_ctx(&cg.dir, e))?;
        if let Some(m) = &cg.memory {
            std::fs::create_dir_all(m).map_err(|e| io_ctx(m, e))?;
        }
        if let Some(c) = &cg.cpu {
            std::fs::create_dir_all(c).map_err(|e| io_ctx(c, e))?;
        }
        if cpu_weight_wanted() {
            cg.set_lowest_cpu_weight();
        }
        if let Some(bytes) = memory_max {
            let (file, dir) = match cg.kind {
                Kind::V2 => ("memory.max", Some(&cg.dir)),
                Kind::V1 => ("memory.limit_in_bytes", cg.memory.as_ref()),
            };
            match dir {
                Some(d) if d.join(file).exists() => {
                    let p = d.join(file);
                    write_file(&p, &bytes.to_string()).map_err(|e| io_ctx(&p, e))?;
                }
                _ => tracing::warn!(cgroup = %cg.dir.display(),
                    "no memory controller for job cgroups: memory_max is not enforced by cgroup"),
            }
        }
        Ok(cg)
    }

    /// Remove the agent's `graze-NODE` directories (they must be empty).
    pub fn remove(&self) {
        for d in std::iter::once(&self.base)
            .chain(self.memory_base.iter())
            .chain(self.cpu_base.iter())
        {
            if let Err(e) = std::fs::remove_dir(d) {
                tracing::debug!(dir = %d.display(), error = %e, "cannot remove cgroup directory");
            }
        }
    }
}

/// Whether job cgroups get the lowest CPU weight: yes unless the agent's environment has
/// `GRAZE_CPU_WEIGHT=off` (the latency benchmark's comparison run).
pub fn cpu_weight_wanted() -> bool {
    std::env::var("GRAZE_CPU_WEIGHT").map_or(true, |v| v != "off")
}

impl JobCgroup {
    /// The CPU files this cgroup's weight is set in, with the lowest values: v2 `cpu.weight`
    /// = 1 and `cpu.idle` = 1 (the latter only where the kernel has it), v1 `cpu.shares` = 2.
    pub fn cpu_weight_files(&self) -> Vec<(PathBuf, &'static str)> {
        match self.kind {
            Kind::V2 => vec![
                (self.dir.join("cpu.weight"), "1"),
                (self.dir.join("cpu.idle"), "1"),
            ],
            Kind::V1 => self
                .cpu
                .iter()
                .map(|c| (c.join("cpu.shares"), "2"))
                .collect(),
        }
    }

    /// Give this cgroup the lowest CPU weight (see [`JobCgroup::cpu_weight_files`]). Failures
    /// are logged, not fatal: the job still runs at nice 19.
    pub fn set_lowest_cpu_weight(&self) {
        let files = self.cpu_weight_files();
        if files.is_empty() {
            tracing::warn!(cgroup = %self.dir.display(),
                "no cpu controller for job cgroups: jobs keep the default CPU weight (nice 19 only)");
        }
        for (p, v) in files {
            if !p.exists() {
                // cpu.idle is kernel 5.19+; a missing cpu.weight means no cpu controller.
                tracing::info!(file = %p.display(), "not available here; not set");
                continue;
            }
            if let Err(e) = write_file(&p, v) {
                tracing::warn!(file = %p.display(), error = %e, "cannot set the job's CPU weight");
            }
        }
    }

    /// The `cgroup.procs` files a new job process must be written into.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        std::iter::once(&self.dir)
            .chain(self.memory.iter())
            .chain(self.cpu.iter())
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    /// Open the `cgroup.procs` files for a child to join before `exec` (write its pid to each
    /// fd with [`join_fd`]). Keep the files open until the child is spawned.
    pub fn join_fds(&self) -> std::io::Result<Vec<std::fs::File>> {
        self.procs_files()
            .iter()
            .map(|p| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(p)
                    .map_err(|e| io_ctx(p, e))
            })
            .collect()
    }

    /// Processes in the cgroup now.
    pub fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Freeze every process of the cgroup and wait until the kernel says it is frozen.
    pub fn freeze(&self, timeout: Duration) -> std::io::Result<()> {
        match self.kind {
            Kind::V2 => write_file(&self.dir.join("cgroup.freeze"), "1")?,
            Kind::V1 => write_file(&self.dir.join("freezer.state"), "FROZEN")?,
        }
        let deadline = Instant::now() + timeout;
        while !self.is_frozen() {
            if Instant::now() >= deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("cgroup {} did not freeze in time", self.dir.display()),
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    /// Let the cgroup's processes run again.
    pub fn thaw(&self) -> std::io::Result<()> {
        match self.kind {
            Kind::V2 => write_file(&self.dir.join("cgroup.freeze"), "0"),
            Kind::V1 => write_file(&self.dir.join("freezer.state"), "THAWED"),
        }
    }

    /// Whether the cgroup is frozen.
    pub fn is_frozen(&self) -> bool {
        match self.kind {
            Kind::V2 => std::fs::read_to_string(self.dir.join("cgroup.events"))
                .is_ok_and(|t| t.lines().any(|l| l.trim() == "frozen 1")),
            Kind::V1 => std::fs::read_to_string(self.dir.join("freezer.state"))
                .is_ok_and(|t| t.trim() == "FROZEN"),
        }
    }

    /// Kill every process of the cgroup: `cgroup.kill` where the kernel has it, else freeze,
    /// SIGKILL each member, thaw (the kills land as the members thaw). Waits until empty.
    pub fn kill(&self, timeout: Duration) -> std::io::Result<()> {
        let deadline = Instant::now() + timeout;
        let v2_kill = self.dir.join("cgroup.kill");
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                return Ok(());
            }
            if self.kind == Kind::V2 && v2_kill.exists() {
                write_file(&v2_kill, "1")?;
            } else {
                // Frozen members cannot fork between the listing and the kill.
                let _ = self.freeze(Duration::from_millis(500));
                for pid in self.pids() {
                    if pid > 1 {
                        // SAFETY: kill(2) takes plain integers.
                        unsafe {
                            libc::kill(pid, libc::SIGKILL);
                        }
                    }
                }
                // Thaw even when the freeze did not complete (v1 can stay FREEZING on
                // stopped tasks): the kills land as the members thaw.
                self.thaw()?;
            }
            if Instant::now() >= deadline {
                let left = self.pids();
                return if left.is_empty() {
                    Ok(())
                } else {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "cgroup {} still holds {} process(es)",
                            self.dir.display(),
                            left.len()
                        ),
                    ))
                };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Remove the (empty) cgroup directories.
    pub fn remove(&self) -> std::io::Result<()> {
        if self.is_frozen() {
            let _ = self.thaw();
        }
        let mut first = Ok(());
        for d in std::iter::once(&self.dir)
            .chain(self.memory.iter())
            .chain(self.cpu.iter())
        {
            match std::fs::remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    if first.is_ok() {
                        first = Err(io_ctx(d, e));
                    }
                }
            }
        }
        first
    }
}

/// Write the calling process's pid into an open `cgroup.procs` fd. Async-signal-safe: meant
/// for a forked child before `exec` (no allocation, only `getpid` and `write`).
pub fn join_fd(fd: i32) -> std::io::Result<()> {
    // SAFETY: getpid has no memory effects.
    let mut pid = unsafe { libc::getpid() } as u32;
    let mut buf = [0u8; 12];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (pid % 10) as u8;
        pid /= 10;
        if pid == 0 {
            break;
        }
    }
    let digits = &buf[i..];
    // SAFETY: the pointer and length describe the live stack buffer above.
    let n = unsafe { libc::write(fd, digits.as_ptr().cast(), digits.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_and_proc_cgroup() {
        let mi = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
36 31 0:33 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
42 31 0:39 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let m = parse_mountinfo(mi);
        assert_eq!(m.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(m.v1["freezer"], PathBuf::from("/sys/fs/cgroup/freezer"));
        assert_eq!(m.v1["memory"], PathBuf::from("/sys/fs/cgroup/memory"));
        let (v2, v1) =
            parse_proc_cgroup("6:freezer:/\n4:memory:/process_api/abc\n1:cpu,cpuacct:/x\n0::/u\n");
        assert_eq!(v2.as_deref(), Some("/u"));
        assert_eq!(v1["freezer"], "/");
        assert_eq!(v1["memory"], "/process_api/abc");
        assert_eq!(v1["cpuacct"], "/x");
        assert_eq!(
            join(Path::new("/sys/fs/cgroup/memory"), "/process_api/abc"),
            PathBuf::from("/sys/fs/cgroup/memory/process_api/abc")
        );
    }
}
