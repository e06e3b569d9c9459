//! `--signal`: deliver a signal to a job's *program* on this PC, not to its MPI launcher.
//!
//! Who gets it: every live member of the job's process set ([`ProcSet::members`]) except the
//! launcher infrastructure, which is
//!
//! - every process whose name is an MPI launcher or daemon ([`LAUNCHERS`]: hydra's `mpiexec`
//!   and `hydra_pmi_proxy`, Open MPI's `mpirun`, `orted`, `prted`, ..., and graze's own
//!   `graze-launch` shim), and
//! - every ancestor of such a process inside the set: the job script that runs `mpiexec`, the
//!   `sh -c` the agent started for a remote launch.
//!
//! So the ranks (children of `hydra_pmi_proxy` or `orted`) and whatever they started get it;
//! a job without a launcher (`graze submit -n 1 -- ./prog`) gets it in every process. Hydra's
//! `mpiexec` and proxies would otherwise die of a SIGTERM (or forward a kill) before a rank's
//! handler could write that it got it.

use crate::jobs::procs::{ProcInfo, ProcSet};
use std::collections::{HashMap, HashSet};

/// Process names (as `/proc/PID/comm` has them, at most 15 bytes) of MPI launchers and their
/// daemons, and of graze's launcher shim: never sent a `--signal`.
pub const LAUNCHERS: &[&str] = &[
    "mpiexec",
    "mpiexec.hydra",
    "mpiexec.mpich",
    "mpirun",
    "mpirun.mpich",
    "mpiexec.openmpi",
    "mpirun.openmpi",
    "orterun",
    "orted",
    "prterun",
    "prted",
    "prte",
    "hydra_pmi_proxy",
    "graze-launch",
];

/// The pids among `procs` (each with its name) that get the signal: see the module
/// documentation. Pure, for the tests.
pub fn program_pids(procs: &[(ProcInfo, String)]) -> Vec<i32> {
    let parent: HashMap<i32, i32> = procs.iter().map(|(p, _)| (p.pid, p.ppid)).collect();
    let mut skip: HashSet<i32> = HashSet::new();
    for (p, name) in procs {
        if !LAUNCHERS.contains(&name.as_str()) {
            continue;
        }
        // The launcher and its ancestors inside the set.
        let mut pid = p.pid;
        while skip.insert(pid) {
            match parent.get(&pid) {
                Some(pp) if parent.contains_key(pp) => pid = *pp,
                _ => break,
            }
        }
    }
    let mut out: Vec<i32> = procs
        .iter()
        .map(|(p, _)| p.pid)
        .filter(|pid| !skip.contains(pid))
        .collect();
    out.sort_unstable();
    out
}

/// A process's name from `/proc/PID/comm`, empty when unreadable.
fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end_matches('\n').to_string())
        .unwrap_or_default()
}

/// Send `sig` to the program's processes in `set` (see the module documentation); returns
/// the pids and names signalled. Blocking (reads `/proc`).
pub fn signal_program(set: &ProcSet, sig: i32) -> Vec<(i32, String)> {
    let procs: Vec<(ProcInfo, String)> = set
        .members()
        .into_iter()
        .map(|p| {
            let name = comm(p.pid);
            (p, name)
        })
        .collect();
    let names: HashMap<i32, String> = procs.iter().map(|(p, n)| (p.pid, n.clone())).collect();
    let mut sent = Vec::new();
    for pid in program_pids(&procs) {
        if pid > 1 {
            // SAFETY: kill(2) takes plain integers and has no memory effects in this process.
            let rc = unsafe { libc::kill(pid, sig) };
            if rc == 0 {
                sent.push((pid, names.get(&pid).cloned().unwrap_or_default()));
            }
        }
    }
    sent
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(pid: i32, ppid: i32, name: &str) -> (ProcInfo, String) {
        (
            ProcInfo {
                pid,
                ppid,
                pgrp: pid,
                state: 'S',
                cpu_ticks: 0,
                start_ticks: 0,
            },
            name.to_string(),
        )
    }

    #[test]
    fn ranks_get_it_launchers_and_their_parents_do_not() {
        // Main node: job script -> mpiexec -> graze-launch; the agent's sh -c -> proxy -> ranks
        // (one rank a shell with a child).
        let procs = [
            p(10, 1, "sh"),
            p(11, 10, "mpiexec"),
            p(12, 11, "graze-launch"),
            p(20, 1, "sh"),
            p(21, 20, "hydra_pmi_proxy"),
            p(22, 21, "prog"),
            p(23, 21, "sh"),
            p(24, 23, "sleep"),
        ];
        assert_eq!(program_pids(&procs), [22, 23, 24]);
    }

    #[test]
    fn a_job_without_launcher_gets_it_everywhere() {
        let procs = [p(10, 1, "sh"), p(11, 10, "prog")];
        assert_eq!(program_pids(&procs), [10, 11]);
    }

    #[test]
    fn open_mpi_daemons_are_skipped() {
        let procs = [
            p(10, 1, "mpirun.openmpi"),
            p(11, 10, "prted"),
            p(12, 11, "prog"),
        ];
        assert_eq!(program_pids(&procs), [12]);
    }

    #[test]
    fn a_real_process_gets_the_signal_its_parent_launcher_does_not() {
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        // "mpiexec" (a copy of sh under that name) runs a child that writes when it gets USR1.
        let dir = tempfile::tempdir().unwrap();
        let launcher = dir.path().join("mpiexec");
        std::fs::copy("/bin/sh", &launcher).unwrap();
        let out = dir.path().join("out");
        let script = format!(
            "sh -c 'trap \"echo got >{out}; exit 0\" USR1; echo ready >{out}.r; while :; do sleep 0.05; done'; echo launcher-survived >{out}.l",
            out = out.display()
        );
        let mut child = Command::new(&launcher)
            .arg("-c")
            .arg(&script)
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        let set = ProcSet::new(vec![pgid], None);
        let ready = dir.path().join("out.r");
        let t0 = std::time::Instant::now();
        while !ready.exists() && t0.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let sent = signal_program(&set, libc::SIGUSR1);
        assert!(
            sent.iter().all(|(pid, _)| *pid != pgid),
            "the launcher got it: {sent:?}"
        );
        assert!(!sent.is_empty(), "nothing signalled");
        let status = child.wait().unwrap();
        assert!(status.success(), "launcher died: {status}");
        assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), "got");
        assert!(dir.path().join("out.l").exists());
    }
}
