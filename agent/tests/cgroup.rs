//! The cgroup backend on this machine: one cgroup per job, joined before exec, frozen,
//! stopped, killed and capped through the real cgroup file system (v1 freezer and memory here,
//! v2 where the unified hierarchy is writable).
#![allow(clippy::unwrap_used)]

use graze_agent::jobs::cgroup::{CgroupRoot, JobCgroup, Kind};
use graze_agent::jobs::confine::{self, Confinement};
use graze_agent::jobs::procs::{read_stat, ProcSet};
use std::time::{Duration, Instant};

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn spawn_in(cg: &JobCgroup, script: &str) -> tokio::process::Child {
    let c = Confinement::new(confine::current_user(), false, 0);
    let mut cmd = tokio::process::Command::new("sh");
    let keep = c.apply(&mut cmd, Some(cg)).unwrap();
    cmd.arg("-c")
        .arg(script)
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd.spawn().unwrap();
    drop(keep);
    child
}

fn exercise(root: &CgroupRoot, label: &str) {
    let cg = root.create_job(label, Some(256 << 20)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _g = rt.enter();
    // A shell that forks three sleepers: all are in the cgroup from their first instruction.
    let mut child = spawn_in(&cg, "sleep 100 & sleep 100 & setsid sleep 100 & wait");
    let pid = child.id().unwrap() as i32;
    wait_for("4 processes in the cgroup", || cg.pids().len() == 4);
    assert!(cg.pids().contains(&pid));
    let set = ProcSet::new(vec![], None).with_cgroup(Some(cg.clone()));
    assert_eq!(
        set.members().len(),
        4,
        "the setsid sleeper is found through the cgroup"
    );

    // The memory cap is set on the job's cgroup.
    let (dir, file) = match cg.kind {
        Kind::V1 => (cg.memory.clone(), "memory.limit_in_bytes"),
        Kind::V2 => (Some(cg.dir.clone()), "memory.max"),
    };
    if let Some(d) = dir.filter(|d| d.join(file).exists()) {
        let v = std::fs::read_to_string(d.join(file)).unwrap();
        assert_eq!(v.trim(), (256u64 << 20).to_string(), "{}", d.display());
    } else {
        eprintln!(
            "no memory controller for {:?} here: cap not checked",
            cg.kind
        );
    }

    // The lowest CPU weight, where this machine has the cpu controller for job cgroups.
    let mut checked = 0;
    for (file, want) in cg.cpu_weight_files() {
        if file.exists() {
            let v = std::fs::read_to_string(&file).unwrap();
            assert_eq!(v.trim(), want, "{}", file.display());
            checked += 1;
        } else {
            eprintln!("{} not available here: not checked", file.display());
        }
    }
    if checked == 0 {
        eprintln!(
            "no cpu controller for {:?} here: CPU weight not checked",
            cg.kind
        );
    }
    if let Some(c) = &cg.cpu {
        let procs = std::fs::read_to_string(c.join("cgroup.procs")).unwrap();
        assert!(
            procs.lines().any(|l| l.trim() == pid.to_string()),
            "the job's shell is in its cpu cgroup"
        );
    }

    // Freeze and thaw.
    cg.freeze(Duration::from_secs(5)).unwrap();
    assert!(cg.is_frozen());
    cg.thaw().unwrap();
    wait_for("thawed", || !cg.is_frozen());

    // Stop (SIGSTOP to every member, found through the cgroup too): every member shows state T.
    set.stop(Duration::from_secs(5)).unwrap();
    for p in set.members() {
        assert_eq!(read_stat(p.pid).unwrap().state, 'T', "pid {}", p.pid);
    }
    set.cont();
    wait_for("continued", || {
        set.members().iter().all(|p| !p.is_stopped())
    });

    // Kill the whole job through the cgroup.
    set.kill(Duration::from_secs(5)).unwrap();
    rt.block_on(async { child.wait().await.unwrap() });
    wait_for("an empty cgroup", || cg.pids().is_empty());
    cg.remove().unwrap();
    assert!(!cg.dir.exists());
    root.remove();
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), rand::random::<u32>())
}

#[test]
fn v1_freezer_and_memory_where_writable() {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let (_, v1) = graze_agent::jobs::cgroup::parse_proc_cgroup(&own);
    let mounts = graze_agent::jobs::cgroup::parse_mountinfo(
        &std::fs::read_to_string("/proc/self/mountinfo").unwrap(),
    );
    let (Some(fm), Some(fp)) = (mounts.v1.get("freezer"), v1.get("freezer")) else {
        eprintln!("skipped: no cgroup v1 freezer on this machine");
        return;
    };
    let leaf = unique("graze-test-v1");
    let base = fm.join(fp.trim_start_matches('/')).join(&leaf);
    let mem = match (mounts.v1.get("memory"), v1.get("memory")) {
        (Some(m), Some(p)) => Some(m.join(p.trim_start_matches('/')).join(&leaf)),
        _ => None,
    };
    let cpu = match (mounts.v1.get("cpu"), v1.get("cpu")) {
        (Some(m), Some(p)) => Some(m.join(p.trim_start_matches('/')).join(&leaf)),
        _ => None,
    };
    let root = match CgroupRoot::v1_at(&base, mem.as_deref()).and_then(|r| match &cpu {
        Some(c) => r.with_cpu_base(c),
        None => Ok(r),
    }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("skipped: cgroup v1 not writable here: {e}");
            return;
        }
    };
    exercise(&root, "1");
}

#[test]
fn v2_freeze_and_kill_where_writable() {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let (v2, _) = graze_agent::jobs::cgroup::parse_proc_cgroup(&own);
    let mounts = graze_agent::jobs::cgroup::parse_mountinfo(
        &std::fs::read_to_string("/proc/self/mountinfo").unwrap(),
    );
    let (Some(m), Some(p)) = (mounts.v2, v2) else {
        eprintln!("skipped: no cgroup v2 hierarchy on this machine");
        return;
    };
    let base = m
        .join(p.trim_start_matches('/'))
        .join(unique("graze-test-v2"));
    let root = match CgroupRoot::v2_at(&base) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("skipped: cgroup v2 not writable here: {e}");
            return;
        }
    };
    exercise(&root, "2");
}

#[test]
fn detect_finds_a_backend_as_root() {
    match CgroupRoot::detect(&unique("detect")) {
        Ok(r) => {
            eprintln!("detected {:?} at {}", r.kind, r.base.display());
            assert!(r.base.is_dir());
            r.remove();
            assert!(!r.base.exists());
        }
        Err(why) => {
            assert!(unsafe { libc::geteuid() } != 0 || !why.is_empty());
            eprintln!("no writable cgroups: {why}");
        }
    }
}
