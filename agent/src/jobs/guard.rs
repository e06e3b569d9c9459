//! The guard: a small process each agent starts at boot that outlives it, so that a crashed
//! agent's jobs die with it.
//!
//! A job's processes do not die with the agent that started them: an agent killed with
//! SIGKILL (or by the OOM killer, or a panic that aborts) leaves them running as orphans,
//! while the scheduler, after `node_timeout`, runs the job again elsewhere. Two runs of one
//! job would then overlap. The restarted agent sweeps such leftovers, but an agent may not be
//! restarted at all.
//!
//! So the agent starts `graze-agent guard` (a hidden subcommand of its own binary) with the
//! read end of a pipe as its stdin. Only the agent holds the write end (close-on-exec, so no
//! job process inherits it). Whatever way the agent ends, the kernel closes that end; the
//! guard reads end-of-file and kills every process tagged with this agent instance's tag
//! prefix (see [`crate::jobs::procs::kill_tag_prefix`]) and every process in the agent's job
//! cgroups, then exits. After a clean shutdown there is nothing left for it to kill.
//!
//! The guard runs in its own process group, so a terminal's ctrl-c aimed at the agent does not
//! take the guard down first.

use crate::jobs::cgroup::{JobCgroup, Kind};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Arguments of the hidden `graze-agent guard` subcommand.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct GuardArgs {
    /// Kill processes whose `GRAZE_JOB_TAG` starts with this.
    #[arg(long)]
    pub prefix: String,
    /// Kill every process in the `job-*` cgroups under this directory.
    #[arg(long, value_name = "DIR")]
    pub cgroup_base: Option<PathBuf>,
    /// The cgroup interface of `--cgroup-base`: `v1` or `v2`.
    #[arg(long, value_name = "KIND", default_value = "v2")]
    pub cgroup_kind: String,
}

/// The agent's end of its guard. Dropping it (or the agent process ending) sets the guard off.
pub struct Guard {
    child: Child,
}

impl Guard {
    /// Start the guard for job tags beginning with `prefix` and job cgroups under
    /// `cgroups` (interface, base directory).
    pub fn start(
        exe: &Path,
        prefix: &str,
        cgroups: Option<(Kind, &Path)>,
    ) -> std::io::Result<Guard> {
        let mut cmd = Command::new(exe);
        cmd.arg("guard").arg("--prefix").arg(prefix);
        if let Some((kind, base)) = cgroups {
            cmd.arg("--cgroup-base")
                .arg(base)
                .arg("--cgroup-kind")
                .arg(match kind {
                    Kind::V1 => "v1",
                    Kind::V2 => "v2",
                });
        }
        // Its own process group: a terminal's SIGINT for the agent's group does not reach it.
        use std::os::unix::process::CommandExt;
        cmd.process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd.spawn()?;
        Ok(Guard { child })
    }

    /// The guard's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Let the guard go: it finds nothing to kill after a clean shutdown and exits. Waits for it
    /// briefly, so that it is not left a zombie of a still-running agent.
    pub fn release(mut self) {
        drop(self.child.stdin.take());
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The `graze-agent` binary that runs the guard: this process's own executable when it is
/// `graze-agent`, else (the agent run as a library, in tests) the one beside `launcher`.
pub fn agent_exe(launcher: &Path) -> Option<PathBuf> {
    let is_agent = |p: &Path| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("graze-agent"))
    };
    if let Ok(me) = std::env::current_exe() {
        if is_agent(&me) {
            if me.is_file() {
                return Some(me);
            }
            // Replaced on disk while running (an upgrade): Linux names it `PATH (deleted)`,
            // but this process's own image is still there to exec.
            return Some(PathBuf::from("/proc/self/exe"));
        }
    }
    let beside = launcher.parent()?.join("graze-agent");
    beside.is_file().then_some(beside)
}

/// Body of `graze-agent guard`: wait for end-of-file on stdin, then kill what the agent left.
/// Returns how many processes it signalled.
pub fn run(args: &GuardArgs) -> usize {
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 64];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    sweep(args)
}

fn sweep(args: &GuardArgs) -> usize {
    let mut killed = 0;
    // Cgroups first: nothing in them can fork while they are frozen and killed.
    if let Some(base) = &args.cgroup_base {
        let kind = if args.cgroup_kind == "v1" {
            Kind::V1
        } else {
            Kind::V2
        };
        if let Ok(rd) = std::fs::read_dir(base) {
            for e in rd.flatten() {
                let name = e.file_name();
                if !name.to_string_lossy().starts_with("job-") || !e.path().is_dir() {
                    continue;
                }
                let cg = JobCgroup {
                    kind,
                    dir: e.path(),
                    memory: None,
                    cpu: None,
                };
                killed += cg.pids().len();
                let _ = cg.kill(Duration::from_secs(2));
            }
        }
    }
    // Then by tag, until a pass finds nothing (a process may fork while the first pass runs).
    for _ in 0..20 {
        let n = crate::jobs::procs::kill_tag_prefix(&args.prefix);
        if n == 0 {
            break;
        }
        killed += n;
        std::thread::sleep(Duration::from_millis(20));
    }
    if killed > 0 {
        eprintln!(
            "graze-agent guard: the agent is gone; killed {killed} job process(es) it left behind"
        );
    }
    killed
}
