//! Finding, killing, stopping and continuing every process of a job on this PC.
//!
//! A job's process set is found from `/proc` alone, so it also catches processes that left
//! the agent's view:
//!
//! - every process in a process group the agent created for the job (the main command and
//!   each remote launch run in a group of their own),
//! - every descendant of those (walking the parent links),
//! - every process whose environment holds `GRAZE_JOB_TAG=<tag>`, which catches orphans that
//!   were re-parented to init in a new session (MPICH ranks keep running when their hydra
//!   proxy is SIGKILLed, and `mpiexec` never notices).
//!
//! - every process in the job's cgroup, where the agent made one (see [`crate::jobs::cgroup`]);
//!   then killing uses the cgroup (`cgroup.kill`, or freeze + SIGKILL + thaw) before the
//!   process-group sweep, and stopping freezes the cgroup while the members are sent SIGSTOP,
//!   so no member forks between the scan and the signal.
//!
//! Zombies count as gone: they hold no CPU or memory and cannot be killed, only reaped by
//! their parent. The agent's own process is never part of a set.
//!
//! Everything here is blocking (it reads `/proc` and sleeps between rounds): call it from
//! `spawn_blocking` or a thread.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Name of the environment variable that marks a job's processes.
pub const TAG_VAR: &str = "GRAZE_JOB_TAG";

/// How long to wait between two rounds of signals.
const ROUND: Duration = Duration::from_millis(20);

/// One line of `/proc/PID/stat`, the fields graze needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    /// Process id.
    pub pid: i32,
    /// Parent's process id.
    pub ppid: i32,
    /// Process group id.
    pub pgrp: i32,
    /// State letter: `R`, `S`, `D`, `T`, `t`, `Z`, `X`, ...
    pub state: char,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Start time after boot, in clock ticks (tells a reused pid from the old one).
    pub start_ticks: u64,
}

impl ProcInfo {
    /// True for zombies and dead processes: nothing left to kill.
    pub fn is_gone(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }

    /// True when stopped by a signal (or by a tracer).
    pub fn is_stopped(&self) -> bool {
        matches!(self.state, 'T' | 't')
    }
}

/// Parse the text of `/proc/PID/stat`. The command name may hold spaces and parentheses, so
/// the fields after it are found from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcInfo> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text.get(..open)?.trim().parse().ok()?;
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    let field = |n: usize| rest.get(n - 3).copied();
    let num = |n: usize| field(n).and_then(|s| s.parse::<u64>().ok());
    Some(ProcInfo {
        pid,
        state: field(3)?.chars().next()?,
        ppid: field(4)?.parse().ok()?,
        pgrp: field(5)?.parse().ok()?,
        cpu_ticks: num(14)?.saturating_add(num(15)?),
        start_ticks: num(22)?,
    })
}

/// Read one process's stat; `None` when it does not exist (any more).
pub fn read_stat(pid: i32) -> Option<ProcInfo> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// True when `pid` does not exist or is a zombie.
pub fn is_gone(pid: i32) -> bool {
    read_stat(pid).is_none_or(|p| p.is_gone())
}

/// Every process visible in `/proc`.
pub fn all_processes() -> Vec<ProcInfo> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read_stat)
        .collect()
}

/// True when the environment `pid` started with holds exactly `entry` (`NAME=value`).
/// Unreadable environments (other users' processes, gone processes) do not match.
pub fn environ_has(pid: i32, entry: &str) -> bool {
    match std::fs::read(format!("/proc/{pid}/environ")) {
        Ok(bytes) => bytes.split(|b| *b == 0).any(|e| e == entry.as_bytes()),
        Err(_) => false,
    }
}

/// SIGKILL every process whose job tag starts with `prefix` (leftovers of an agent process that
/// died without cleaning up); returns how many were signalled. Zombies are skipped.
pub fn kill_tag_prefix(prefix: &str) -> usize {
    let want = format!("{TAG_VAR}={prefix}");
    let mut n = 0;
    for p in all_processes() {
        if matches!(p.state, 'Z' | 'X') {
            continue;
        }
        let Ok(bytes) = std::fs::read(format!("/proc/{}/environ", p.pid)) else {
            continue;
        };
        if bytes
            .split(|b| *b == 0)
            .any(|e| e.starts_with(want.as_bytes()))
        {
            signal(p.pid, libc::SIGKILL);
            n += 1;
        }
    }
    n
}

/// Send `sig` to `pid`; errors (already gone, not ours) are ignored on purpose.
fn signal(pid: i32, sig: i32) {
    if pid > 1 {
        // SAFETY: kill(2) takes plain integers and has no memory effects in this process.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// The processes of one job on this PC. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcSet {
    /// Process groups the agent created for the job.
    pub pgids: Vec<i32>,
    /// The job's tag: processes whose environment holds `GRAZE_JOB_TAG=<tag>` belong to it.
    pub tag: Option<String>,
    /// The job's cgroup, when the agent could make one.
    pub cgroup: Option<crate::jobs::cgroup::JobCgroup>,
}

/// Processes a set did not get rid of in time.
#[derive(Debug, thiserror::Error)]
#[error("{} process(es) survived: {}", .0.len(), describe(.0))]
pub struct Survivors(pub Vec<ProcInfo>);

fn describe(ps: &[ProcInfo]) -> String {
    ps.iter()
        .map(|p| format!("pid {} (state {})", p.pid, p.state))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ProcSet {
    /// A set from the job's process groups and tag.
    pub fn new(pgids: Vec<i32>, tag: Option<String>) -> ProcSet {
        ProcSet {
            pgids,
            tag,
            cgroup: None,
        }
    }

    /// The same set, also holding every process of `cgroup`.
    pub fn with_cgroup(mut self, cgroup: Option<crate::jobs::cgroup::JobCgroup>) -> ProcSet {
        self.cgroup = cgroup;
        self
    }

    /// The live (non-zombie) members now.
    pub fn members(&self) -> Vec<ProcInfo> {
        members_of(std::slice::from_ref(self))
    }

    /// SIGKILL every member, rescanning until none is left or `timeout` passed.
    pub fn kill(&self, timeout: Duration) -> Result<(), Survivors> {
        let deadline = Instant::now() + timeout;
        if let Some(cg) = &self.cgroup {
            if let Err(e) = cg.kill(timeout) {
                tracing::warn!(error = %e, "killing through the job's cgroup; sweeping by process group");
            }
        }
        loop {
            let m = self.members();
            if m.is_empty() {
                return Ok(());
            }
            // Freeze first so that no member forks a new child between the scan and the kill.
            for p in &m {
                signal(p.pid, libc::SIGSTOP);
            }
            for p in &m {
                signal(p.pid, libc::SIGKILL);
            }
            if Instant::now() >= deadline {
                let left = self.members();
                return if left.is_empty() {
                    Ok(())
                } else {
                    Err(Survivors(left))
                };
            }
            std::thread::sleep(ROUND);
        }
    }

    /// SIGSTOP every member, rescanning until all are stopped or `timeout` passed.
    pub fn stop(&self, timeout: Duration) -> Result<(), Survivors> {
        stop_all(std::slice::from_ref(self), timeout)
    }

    /// SIGCONT every member. Stopped processes cannot fork, so one round suffices.
    pub fn cont(&self) {
        for p in self.members() {
            signal(p.pid, libc::SIGCONT);
        }
    }

    /// Vacate: SIGTERM then SIGCONT every member (so stopped processes wake to the TERM),
    /// wait up to `grace` for them to go, then [`ProcSet::kill`] what is left.
    pub fn vacate(&self, grace: Duration, timeout: Duration) -> Result<(), Survivors> {
        let deadline = Instant::now() + grace;
        let mut termed: HashSet<i32> = HashSet::new();
        loop {
            let m = self.members();
            if m.is_empty() {
                return Ok(());
            }
            // Members that appeared since (children forked before the TERM) get one too.
            let new: Vec<&ProcInfo> = m.iter().filter(|p| termed.insert(p.pid)).collect();
            for p in &new {
                signal(p.pid, libc::SIGTERM);
            }
            for p in &new {
                signal(p.pid, libc::SIGCONT);
            }
            if Instant::now() >= deadline {
                return self.kill(timeout);
            }
            std::thread::sleep(ROUND);
        }
    }
}

/// One fast stopping pass over `sets`, for the moment the owner comes back: first SIGSTOP to
/// every known process group (no `/proc` scan, so the bulk of each job stops within
/// microseconds), then one scan for members outside those groups (descendants that left
/// them, tagged orphans) and SIGSTOP to each. Returns the number of processes signalled in
/// the scan. It never sleeps; [`stop_all`] afterwards catches processes forked in between.
pub fn stop_now(sets: &[ProcSet]) -> usize {
    for s in sets {
        for g in &s.pgids {
            if *g > 1 {
                // SAFETY: kill(2) with a negative pid signals a process group; no memory effects.
                unsafe {
                    libc::kill(-*g, libc::SIGSTOP);
                }
            }
        }
    }
    let m = members_of(sets);
    for p in &m {
        if !p.is_stopped() {
            signal(p.pid, libc::SIGSTOP);
        }
    }
    m.len()
}

/// SIGSTOP every member of `sets`, rescanning until all are stopped or `timeout` passed.
pub fn stop_all(sets: &[ProcSet], timeout: Duration) -> Result<(), Survivors> {
    // No freezer here: members are usually stopped already (`stop_now`), and the v1 freezer
    // waits its whole timeout on stopped tasks, long enough to stop a job the scheduler
    // resumed meanwhile. Rescanning catches forks.
    let deadline = Instant::now() + timeout;
    loop {
        let running: Vec<ProcInfo> = members_of(sets)
            .into_iter()
            .filter(|p| !p.is_stopped())
            .collect();
        if running.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Survivors(running));
        }
        for p in &running {
            signal(p.pid, libc::SIGSTOP);
        }
        std::thread::sleep(ROUND);
    }
}

/// True when `pid` sits in a graze job cgroup (`.../graze-AGENT/job-...`) that is not one of
/// the sets' own (those members were taken before this is asked): another agent's process.
///
/// hydra forwards `mpiexec`'s environment, tag included, to every rank, so a remote rank
/// carries the *main* node's tag. With several agents on one machine (one PID namespace: the
/// demo, the tests' network namespaces) the main node's agent would adopt the other node's
/// ranks by that tag and signal them a second time (a checkpoint saved twice) or kill them
/// early. Where the other agent confines its jobs in cgroups, its cgroup says whose they are.
fn in_other_job_cgroup(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|t| in_job_cgroup(&t))
}

/// True when an ancestor of `p` carries a job tag that is none of `tags`: the process was
/// started under another agent's launch (its hydra proxy or orted), whatever tag the launcher
/// forwarded to it. The cgroup check's twin for agents without cgroups (a network namespace's
/// `ip netns exec` mounts a fresh `/sys` without them). An orphan re-parented to init has no
/// such ancestor.
fn started_under_another_tag(
    p: &ProcInfo,
    by_pid: &HashMap<i32, &ProcInfo>,
    tags: &[String],
) -> bool {
    let mut pid = p.ppid;
    for _ in 0..64 {
        if pid <= 1 {
            return false;
        }
        if let Some(tag) = tag_entry(pid) {
            return !tags.iter().any(|t| t.as_bytes() == tag.as_slice());
        }
        match by_pid.get(&pid) {
            Some(a) => pid = a.ppid,
            None => return false,
        }
    }
    false
}

/// `GRAZE_JOB_TAG=...` of `pid`'s environment, if it has one (and it can be read).
fn tag_entry(pid: i32) -> Option<Vec<u8>> {
    let bytes = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let want = format!("{TAG_VAR}=");
    bytes
        .split(|b| *b == 0)
        .find(|e| e.starts_with(want.as_bytes()))
        .map(<[u8]>::to_vec)
}

/// `/proc/PID/cgroup`'s text names a graze job cgroup. Pure, for the tests.
fn in_job_cgroup(text: &str) -> bool {
    text.lines().any(|l| {
        let path = l.splitn(3, ':').nth(2).unwrap_or("");
        let mut parts = path.split('/');
        let mut graze = false;
        parts.any(|c| {
            if c.starts_with("graze-") {
                graze = true;
                false
            } else {
                graze && c.starts_with("job-")
            }
        })
    })
}

/// The live members of any of `sets`, each process once.
pub fn members_of(sets: &[ProcSet]) -> Vec<ProcInfo> {
    if sets.is_empty() {
        return Vec::new();
    }
    let me = std::process::id() as i32;
    let procs = all_processes();
    let pgids: HashSet<i32> = sets.iter().flat_map(|s| s.pgids.iter().copied()).collect();
    let in_cgroups: HashSet<i32> = sets
        .iter()
        .filter_map(|s| s.cgroup.as_ref())
        .flat_map(|c| c.pids())
        .collect();
    let tags: Vec<String> = sets
        .iter()
        .filter_map(|s| s.tag.as_ref())
        .map(|t| format!("{TAG_VAR}={t}"))
        .collect();
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in &procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let by_pid: HashMap<i32, &ProcInfo> = procs.iter().map(|p| (p.pid, p)).collect();
    let mut queue: Vec<i32> = procs
        .iter()
        .filter(|p| p.pid != me && !p.is_gone())
        .filter(|p| {
            pgids.contains(&p.pgrp)
                || in_cgroups.contains(&p.pid)
                || (tags.iter().any(|t| environ_has(p.pid, t))
                    && !in_other_job_cgroup(p.pid)
                    && !started_under_another_tag(p, &by_pid, &tags))
        })
        .map(|p| p.pid)
        .collect();
    let mut found: HashSet<i32> = HashSet::new();
    while let Some(pid) = queue.pop() {
        if pid <= 1 || pid == me || !found.insert(pid) {
            continue;
        }
        if let Some(kids) = children.get(&pid) {
            queue.extend(kids.iter().copied());
        }
    }
    let mut out: Vec<ProcInfo> = found
        .into_iter()
        .filter_map(|pid| by_pid.get(&pid).map(|p| (*p).clone()))
        .filter(|p| !p.is_gone())
        .collect();
    out.sort_by_key(|p| p.pid);
    out
}

/// Clock ticks per second for the CPU times in [`ProcInfo`].
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command, Stdio};

    #[test]
    fn a_graze_job_cgroup_is_recognised() {
        // v2, v1 (freezer line among others), and not a job cgroup.
        assert!(in_job_cgroup("0::/user.slice/graze-n1-0a1b2c3d/job-7\n"));
        assert!(in_job_cgroup(
            "12:memory:/\n5:freezer:/graze-n1-0a1b2c3d/job-clusrun-3\n0::/\n"
        ));
        assert!(!in_job_cgroup("0::/user.slice/graze-n1-0a1b2c3d\n"));
        assert!(!in_job_cgroup("0::/system.slice/job-7\n"));
        assert!(!in_job_cgroup("0::/\n"));
    }

    fn unique_tag() -> String {
        format!("test-{}-{}", std::process::id(), rand::random::<u64>())
    }

    fn group(script: &str, tag: Option<&str>) -> Child {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(script)
            .process_group(0)
            .stdin(Stdio::null());
        if let Some(t) = tag {
            c.env(TAG_VAR, t);
        }
        c.spawn().unwrap()
    }

    /// Poll until `cond` holds, for at most 5 s.
    fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    fn sleeps(m: &[ProcInfo]) -> usize {
        m.iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{}/comm", p.pid))
                    .map(|c| c.trim() == "sleep")
                    .unwrap_or(false)
            })
            .count()
    }

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 9999 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let p = parse_stat(line).unwrap();
        assert_eq!(p.pid, 4242);
        assert_eq!(p.state, 'S');
        assert_eq!(p.ppid, 1);
        assert_eq!(p.pgrp, 4242);
        assert_eq!(p.cpu_ticks, 10);
        assert_eq!(p.start_ticks, 9999);
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("12 (x) S").is_none());
    }

    #[test]
    fn own_stat_is_readable() {
        let me = read_stat(std::process::id() as i32).unwrap();
        assert!(!me.is_gone());
    }

    #[test]
    fn kills_a_whole_process_group_tree() {
        let mut child = group("sleep 100 & sleep 100 & wait", None);
        let set = ProcSet::new(vec![child.id() as i32], None);
        assert!(
            wait_for(|| sleeps(&set.members()) == 2),
            "{:?}",
            set.members()
        );
        let pids: Vec<i32> = set.members().iter().map(|p| p.pid).collect();
        assert_eq!(pids.len(), 3, "sh and two sleeps: {pids:?}");
        set.kill(Duration::from_secs(5)).unwrap();
        child.wait().unwrap();
        for pid in pids {
            assert!(is_gone(pid), "pid {pid} survived");
        }
        assert!(set.members().is_empty());
    }

    #[test]
    fn kills_descendants_that_left_the_group() {
        // The inner sh moves its sleep into a new session and process group; only the parent
        // links (while the parent lives) connect it to the job.
        let mut child = group("setsid -w sleep 100 & wait", None);
        let set = ProcSet::new(vec![child.id() as i32], None);
        assert!(wait_for(|| sleeps(&set.members()) == 1));
        let pids: Vec<i32> = set.members().iter().map(|p| p.pid).collect();
        set.kill(Duration::from_secs(5)).unwrap();
        child.wait().unwrap();
        for pid in pids {
            assert!(is_gone(pid), "pid {pid} survived");
        }
    }

    #[test]
    fn kills_tagged_orphans() {
        let tag = unique_tag();
        // setsid puts sh in a new session; sh starts a background sleep and exits, so the
        // sleep is re-parented to init (or a subreaper): only its environment marks it.
        let status = Command::new("setsid")
            .args(["sh", "-c", "sleep 100 > /dev/null 2>&1 &"])
            .env(TAG_VAR, &tag)
            .stdin(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let set = ProcSet::new(vec![], Some(tag.clone()));
        assert!(wait_for(|| sleeps(&set.members()) == 1), "orphan not found");
        let pids: Vec<i32> = set.members().iter().map(|p| p.pid).collect();
        assert_eq!(pids.len(), 1);
        // Another tag does not match it.
        assert!(ProcSet::new(vec![], Some(format!("{tag}x")))
            .members()
            .is_empty());
        set.kill(Duration::from_secs(5)).unwrap();
        assert!(wait_for(|| is_gone(pids[0])), "orphan {} survived", pids[0]);
    }

    /// hydra forwards the main node's tag to every rank: a rank started under another agent's
    /// launch (a parent with that agent's tag) is not adopted by the tag it carries.
    #[test]
    fn a_rank_under_another_agents_launch_is_not_adopted() {
        let ours = unique_tag();
        let theirs = unique_tag();
        let mut launch = Command::new("setsid")
            .args(["sh", "-c", &format!("{TAG_VAR}={ours} sleep 100 & wait")])
            .env(TAG_VAR, &theirs)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let theirs_set = ProcSet::new(vec![], Some(theirs.clone()));
        assert!(wait_for(|| !theirs_set.members().is_empty()));
        let rank = ProcSet::new(vec![], Some(ours.clone()));
        let ok = wait_for(|| {
            all_processes()
                .iter()
                .any(|p| environ_has(p.pid, &format!("{TAG_VAR}={ours}")))
        });
        assert!(ok, "the rank did not start");
        assert!(rank.members().is_empty(), "{:?}", rank.members());
        theirs_set.kill(Duration::from_secs(5)).unwrap();
        let _ = launch.wait();
    }

    #[test]
    fn kills_a_mixed_set() {
        let tag = unique_tag();
        let mut child = group("sleep 100 & sleep 100 & wait", Some(&tag));
        Command::new("setsid")
            .args(["sh", "-c", "sleep 100 > /dev/null 2>&1 &"])
            .env(TAG_VAR, &tag)
            .status()
            .unwrap();
        let set = ProcSet::new(vec![child.id() as i32], Some(tag));
        assert!(wait_for(|| sleeps(&set.members()) == 3));
        let pids: Vec<i32> = set.members().iter().map(|p| p.pid).collect();
        set.kill(Duration::from_secs(5)).unwrap();
        child.wait().unwrap();
        assert!(wait_for(|| pids.iter().all(|p| is_gone(*p))), "{pids:?}");
    }

    #[test]
    fn stops_and_continues_a_set() {
        let mut child = group("sleep 100 & wait", None);
        let set = ProcSet::new(vec![child.id() as i32], None);
        assert!(wait_for(|| sleeps(&set.members()) == 1));
        set.stop(Duration::from_secs(5)).unwrap();
        let m = set.members();
        assert_eq!(m.len(), 2);
        for p in &m {
            let now = read_stat(p.pid).unwrap();
            assert_eq!(now.state, 'T', "pid {} not stopped", p.pid);
        }
        set.cont();
        assert!(wait_for(|| set.members().iter().all(|p| !p.is_stopped())));
        set.kill(Duration::from_secs(5)).unwrap();
        child.wait().unwrap();
        assert!(set.members().is_empty());
    }

    #[test]
    fn stop_now_stops_groups_and_orphans_in_one_pass() {
        let tag = unique_tag();
        let mut child = group("sleep 100 & sleep 100 & wait", None);
        Command::new("setsid")
            .args(["sh", "-c", "sleep 100 > /dev/null 2>&1 &"])
            .env(TAG_VAR, &tag)
            .status()
            .unwrap();
        let sets = [
            ProcSet::new(vec![child.id() as i32], None),
            ProcSet::new(vec![], Some(tag)),
        ];
        assert!(wait_for(|| sleeps(&members_of(&sets)) == 3));
        stop_now(&sets);
        // Signals are delivered asynchronously; no new signal is sent from here on.
        assert!(wait_for(|| members_of(&sets)
            .iter()
            .all(ProcInfo::is_stopped)));
        assert_eq!(members_of(&sets).len(), 4);
        stop_all(&sets, Duration::from_secs(1)).unwrap();
        for s in &sets {
            s.kill(Duration::from_secs(5)).unwrap();
        }
        child.wait().unwrap();
    }

    #[test]
    fn vacate_terms_stopped_processes_then_kills_the_stubborn() {
        // Both sleeps ignore TERM (SIG_IGN is inherited); both are stopped first.
        let mut child = group("trap '' TERM; sleep 100 & exec sleep 100", None);
        let set = ProcSet::new(vec![child.id() as i32], None);
        assert!(wait_for(|| sleeps(&set.members()) == 2));
        set.stop(Duration::from_secs(5)).unwrap();
        let t = Instant::now();
        set.vacate(Duration::from_millis(300), Duration::from_secs(5))
            .unwrap();
        assert!(set.members().is_empty());
        assert!(
            t.elapsed() >= Duration::from_millis(300),
            "the TERM-ignoring sleep waited for the grace"
        );
        child.wait().unwrap();
    }

    #[test]
    fn empty_sets_have_no_members() {
        assert!(ProcSet::default().members().is_empty());
        assert!(members_of(&[]).is_empty());
        ProcSet::default().kill(Duration::from_millis(10)).unwrap();
    }
}
