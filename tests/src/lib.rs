//! Harness for cluster-level tests: a real `graze-scheduler` and real `graze-agent`s as
//! processes on loopback addresses, driven with the real `graze` command.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

/// The directory holding the workspace's binaries (target/debug).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/cluster-xxxx -> target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_owned()
}

/// Build the binaries the tests run, once per test process (a no-op when up to date).
pub fn ensure_built() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--bins",
            "-p",
            "graze-scheduler",
            "-p",
            "graze-agent",
            "-p",
            "graze",
            "-p",
            "graze-pi",
        ]);
        if bin_dir().file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("running cargo build");
        assert!(st.success(), "building the graze binaries failed");
    });
}

/// Path of one of the workspace's binaries.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// Poll `cond` every 50 ms until it holds or `timeout` passes; panics with `what` on timeout.
pub fn wait_for<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A PATH that finds the workspace's binaries first.
pub fn test_path() -> String {
    format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// One agent process.
pub struct Agent {
    /// Node name.
    pub name: String,
    /// Its `file:` idle source; touching it means the owner typed.
    pub idle_file: PathBuf,
    /// The process.
    pub child: Child,
}

/// A scheduler plus agents, all real processes; everything is killed on drop.
pub struct Cluster {
    /// Temp dir holding state, spools, idle files and logs.
    pub dir: tempfile::TempDir,
    /// The scheduler's access file.
    pub access: PathBuf,
    /// The scheduler process.
    pub scheduler: Child,
    /// Agents.
    pub agents: Vec<Agent>,
}

impl Cluster {
    /// Start a scheduler on 127.0.0.1 with extra flags and wait for its access file.
    pub fn start(extra: &[&str]) -> Cluster {
        ensure_built();
        let dir = tempfile::Builder::new()
            .prefix("graze-test-")
            .tempdir()
            .unwrap();
        let state = dir.path().join("scheduler");
        let log = std::fs::File::create(dir.path().join("scheduler.log")).unwrap();
        let scheduler = Command::new(bin("graze-scheduler"))
            .arg("--state-dir")
            .arg(&state)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting graze-scheduler");
        let access = state.join("access.toml");
        let mut c = Cluster {
            dir,
            access: access.clone(),
            scheduler,
            agents: Vec::new(),
        };
        wait_for(
            "the scheduler's access file",
            Duration::from_secs(30),
            || access.exists().then_some(()),
        );
        c.assert_running();
        c
    }

    fn assert_running(&mut self) {
        if let Ok(Some(st)) = self.scheduler.try_wait() {
            panic!("scheduler exited: {st}\n{}", self.log("scheduler"));
        }
    }

    /// A log file of the cluster (`scheduler` or an agent name).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Start an agent bound to `ip` offering `cores`, with a `file:` idle source that starts
    /// out idle, `--start-after 0s` and the owner-CPU check off (all agents share one machine)
    /// unless `extra` sets those flags itself.
    pub fn add_agent(&mut self, name: &str, ip: &str, cores: u32, extra: &[&str]) -> &Agent {
        let idle_file = self.dir.path().join(format!("{name}.idle"));
        std::fs::write(&idle_file, "").unwrap();
        // The owner was last active an hour ago.
        set_mtime_ago(&idle_file, Duration::from_secs(3600));
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new(bin("graze-agent"))
            .arg("--access")
            .arg(&self.access)
            .args(["--name", name, "--bind", ip, "--cores", &cores.to_string()])
            .arg("--idle-source")
            .arg(format!("file:{}", idle_file.display()))
            .args(
                [("--start-after", "0s"), ("--owner-cpu-max", "100")]
                    .iter()
                    .filter(|(flag, _)| !extra.contains(flag))
                    .flat_map(|(flag, v)| [*flag, *v]),
            )
            .arg("--spool")
            .arg(self.dir.path().join("spool").join(name))
            .args(extra)
            .env("PATH", test_path())
            .env("RUST_LOG", "info")
            .env("GRAZE_TEST_CLUSTER", self.dir.path())
            // Tests name their X display explicitly (x11:DISPLAY), never a stray one.
            .env_remove("DISPLAY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting graze-agent");
        self.agents.push(Agent {
            name: name.into(),
            idle_file,
            child,
        });
        self.agents.last().unwrap()
    }

    /// Run `graze --access ACCESS ARGS...`.
    pub fn graze(&self, args: &[&str]) -> Output {
        Command::new(bin("graze"))
            .arg("--access")
            .arg(&self.access)
            .args(args)
            .env("PATH", test_path())
            .stdin(Stdio::null())
            .output()
            .expect("running graze")
    }

    /// Run graze, expect success, parse stdout as JSON.
    pub fn graze_json(&self, args: &[&str]) -> Value {
        let out = self.graze(args);
        assert!(
            out.status.success(),
            "graze {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "graze {args:?}: bad JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Names of nodes that are online and offering their cores.
    pub fn offered_nodes(&self) -> Vec<String> {
        let nodes = self.graze_json(&["nodes", "--json"]);
        nodes
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["online"] == true && n["status"]["availability"]["state"] == "offered")
            .map(|n| n["info"]["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Wait until `n` nodes offer their cores.
    pub fn wait_offered(&self, n: usize) {
        wait_for(
            &format!("{n} offered nodes"),
            Duration::from_secs(60),
            || (self.offered_nodes().len() >= n).then_some(()),
        );
    }

    /// Submit and return the job id.
    pub fn submit(&self, args: &[&str]) -> u64 {
        let mut a = vec!["submit", "--json"];
        a.extend_from_slice(args);
        self.graze_json(&a)["id"].as_u64().expect("job id")
    }

    /// `graze show JOB --json`.
    pub fn show(&self, id: u64) -> Value {
        self.graze_json(&["show", &id.to_string(), "--json"])
    }

    /// The node `name` as `graze nodes --json` shows it.
    pub fn node(&self, name: &str) -> Value {
        let nodes = self.graze_json(&["nodes", "--json"]);
        nodes
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["info"]["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Live (non-zombie) processes that belong to job `id` of this cluster.
    pub fn job_processes(&self, id: u64) -> Vec<u32> {
        let mark = format!("GRAZE_TEST_CLUSTER={}", self.dir.path().display());
        let job = format!("GRAZE_JOB_ID={id}");
        processes_with_env(&[&mark, &job])
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for a in &mut self.agents {
            unsafe { libc::kill(a.child.id() as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for a in &mut self.agents {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = a.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = a.child.kill();
            let _ = a.child.wait();
        }
        let _ = self.scheduler.kill();
        let _ = self.scheduler.wait();
        // Anything of this cluster still alive is killed, so no test leaks processes.
        let mark = format!("GRAZE_TEST_CLUSTER={}", self.dir.path().display());
        for pid in processes_with_env(&[&mark]) {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        if std::thread::panicking() || std::env::var_os("GRAZE_KEEP_TEST_DIR").is_some() {
            let kept = self.dir.path().to_owned();
            eprintln!("--- cluster logs in {} ---", kept.display());
            for e in std::fs::read_dir(&kept).into_iter().flatten().flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "log") {
                    let text = std::fs::read_to_string(&p).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(40).collect();
                    eprintln!("=== {} (last 40 lines) ===", p.display());
                    for l in tail.into_iter().rev() {
                        eprintln!("{l}");
                    }
                }
            }
        }
    }
}

/// Set a file's mtime to `ago` before now.
pub fn set_mtime_ago(p: &Path, ago: Duration) {
    let t = std::time::SystemTime::now() - ago;
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(t).unwrap();
}

/// Live processes whose environment holds every one of `vars` (`K=V`).
pub fn processes_with_env(vars: &[&str]) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let entries: Vec<&[u8]> = env.split(|b| *b == 0).collect();
        if !vars.iter().all(|v| entries.contains(&v.as_bytes())) {
            continue;
        }
        if process_state(pid).is_some_and(|s| s != 'Z' && s != 'X') {
            out.push(pid);
        }
    }
    out
}

/// The state letter of a process from /proc/PID/stat.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.trim_start().chars().next()
}

/// Extract rank 0's final "Computed value of pi on N processors is X" from output text.
pub fn computed_pi(text: &str) -> Option<(u32, f64)> {
    text.lines().find_map(|l| {
        let rest = l.split("Computed value of pi on ").nth(1)?;
        let (n, x) = rest.split_once(" processors is ")?;
        Some((n.trim().parse().ok()?, x.trim().parse().ok()?))
    })
}

/// Mark `p` as touched now: the owner of that agent typed.
pub fn touch(p: &Path) {
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
}

/// The command name of a process.
pub fn process_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}
