//! Harness for cluster-level tests: a real `graze-scheduler` and real `graze-agent`s as
//! processes on loopback addresses, driven with the real `graze` command.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

pub mod logind;
pub mod sim;

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
        // Not the variables cargo set for this test binary: build scripts that track one
        // (ring's tracks CARGO_MANIFEST_DIR) would otherwise rerun here, and again at the
        // next `cargo test`, rebuilding the TLS stack twice per test binary.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("CARGO_PKG_")
                || k.starts_with("CARGO_BIN_")
                || k.starts_with("CARGO_MANIFEST_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                    "OUT_DIR",
                ]
                .contains(&k.as_ref())
            {
                cmd.env_remove(k.as_ref());
            }
        }
        let st = cmd.status().expect("running cargo build");
        assert!(st.success(), "building the graze binaries failed");
    });
}

/// Path of one of the workspace's binaries.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// The unprivileged user agents started as root run test jobs as.
pub const TEST_USER: &str = "graze-test";

/// True when the tests run as root.
pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Create [`TEST_USER`] (a system user without login or home) when running as root and it
/// is missing; returns its uid, or `None` when not root.
pub fn ensure_test_user() -> Option<u32> {
    if !is_root() {
        return None;
    }
    // The same code `graze-agent install` creates its jobs' user with.
    let (_, uid, _) = graze_agent::install::ensure_user(Path::new("/"), TEST_USER)
        .unwrap_or_else(|e| panic!("creating the test user {TEST_USER}: {e:#}"));
    Some(uid)
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
    /// Network namespace of the scheduler and the CLI, if not the host's.
    pub ns: Option<String>,
    /// `RUST_LOG` of the scheduler and the agents (`info` unless started with
    /// [`Cluster::start_logging`]).
    pub log_filter: String,
}

/// `program`, run inside network namespace `ns` when given, as a host of its own: `ip netns
/// exec` (which bind-mounts [`TestNet`]'s `/etc/netns/NS/hosts` over `/etc/hosts`), then
/// `unshare --uts` with the host name `ns`, so that MPI launchers name their host by a name
/// the other namespaces resolve (hydra's proxies connect back to `mpiexec`'s host name). Each
/// step execs the next: the child's pid is the program's.
pub fn command(ns: Option<&str>, program: &Path) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "unshare", "--uts", "sh", "-c"])
                .arg(r#"hostname "$0" && exec "$@""#)
                .arg(ns)
                .arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Start `graze-scheduler` (in namespace `ns`, if given) on the state dir `DIR/scheduler`,
/// appending to `DIR/scheduler.log`.
fn spawn_scheduler(
    ns: Option<&str>,
    dir: &Path,
    listen: &str,
    extra: &[&str],
    log_filter: &str,
) -> Child {
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join("scheduler.log"))
        .unwrap();
    command(ns, &bin("graze-scheduler"))
        .arg("--state-dir")
        .arg(dir.join("scheduler"))
        .args(["--listen", listen])
        .args(extra)
        .env("RUST_LOG", log_filter)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting graze-scheduler")
}

impl Cluster {
    /// Start a scheduler on 127.0.0.1 with extra flags and wait for its access file.
    pub fn start(extra: &[&str]) -> Cluster {
        Self::start_in(None, "127.0.0.1:0", extra)
    }

    /// Start a scheduler inside network namespace `ns` (if given), listening on `listen`.
    pub fn start_in(ns: Option<&str>, listen: &str, extra: &[&str]) -> Cluster {
        Self::start_with(ns, listen, extra, "info")
    }

    /// [`Cluster::start`] with `RUST_LOG=filter` for the scheduler and every agent (such as
    /// `info,graze::timeline=debug` for the launch timeline, see [`Timeline`]).
    pub fn start_logging(extra: &[&str], filter: &str) -> Cluster {
        Self::start_with(None, "127.0.0.1:0", extra, filter)
    }

    fn start_with(ns: Option<&str>, listen: &str, extra: &[&str], filter: &str) -> Cluster {
        ensure_built();
        let dir = tempfile::Builder::new()
            .prefix("graze-test-")
            .tempdir()
            .unwrap();
        // Jobs of agents started as root run as an unprivileged user who must reach the spools.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let scheduler = spawn_scheduler(ns, dir.path(), listen, extra, filter);
        let access = dir.path().join("scheduler/access.toml");
        let mut c = Cluster {
            dir,
            access: access.clone(),
            scheduler,
            agents: Vec::new(),
            ns: ns.map(str::to_owned),
            log_filter: filter.to_owned(),
        };
        wait_for(
            "the scheduler's access file",
            Duration::from_secs(30),
            || access.exists().then_some(()),
        );
        c.assert_running();
        c
    }

    /// SIGKILL the scheduler, as a crash would.
    pub fn kill_scheduler(&mut self) {
        let _ = self.scheduler.kill();
        let _ = self.scheduler.wait();
    }

    /// Start the scheduler again on the same state dir and address.
    pub fn restart_scheduler(&mut self, extra: &[&str]) {
        let addr = graze_net::Access::load(&self.access)
            .expect("access file")
            .scheduler;
        self.scheduler = spawn_scheduler(
            self.ns.as_deref(),
            self.dir.path(),
            &addr,
            extra,
            &self.log_filter,
        );
        let access = self.access.clone();
        wait_for(
            "the restarted scheduler to answer",
            Duration::from_secs(30),
            || {
                let out = Command::new(bin("graze"))
                    .arg("--access")
                    .arg(&access)
                    .args(["queue", "--json"])
                    .output()
                    .ok()?;
                out.status.success().then_some(())
            },
        );
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
        let access = self.access.clone();
        self.add_agent_with(&access, name, ip, cores, extra)
    }

    /// [`Cluster::add_agent`] with another access file. As root, the agent runs its jobs as
    /// [`TEST_USER`].
    pub fn add_agent_with(
        &mut self,
        access: &Path,
        name: &str,
        ip: &str,
        cores: u32,
        extra: &[&str],
    ) -> &Agent {
        self.add_agent_in(None, access, name, ip, cores, extra)
    }

    /// [`Cluster::add_agent_with`] inside network namespace `ns`, if given.
    pub fn add_agent_in(
        &mut self,
        ns: Option<&str>,
        access: &Path,
        name: &str,
        ip: &str,
        cores: u32,
        extra: &[&str],
    ) -> &Agent {
        self.add_agent_full(ns, access, name, ip, cores, extra, None)
    }

    /// [`Cluster::add_agent`] in a Linux time namespace whose `CLOCK_MONOTONIC` is `secs`
    /// seconds ahead of the host's (`unshare --time --fork --monotonic SECS`, as root; the
    /// agent gets SIGTERM when `unshare` dies), as a PC whose clock differs. Its job processes
    /// inherit the namespace.
    pub fn add_agent_shifted(
        &mut self,
        name: &str,
        ip: &str,
        cores: u32,
        extra: &[&str],
        secs: i64,
    ) -> &Agent {
        let access = self.access.clone();
        self.add_agent_full(None, &access, name, ip, cores, extra, Some(secs))
    }

    #[allow(clippy::too_many_arguments)]
    fn add_agent_full(
        &mut self,
        ns: Option<&str>,
        access: &Path,
        name: &str,
        ip: &str,
        cores: u32,
        extra: &[&str],
        monotonic_shift: Option<i64>,
    ) -> &Agent {
        let run_as: Vec<&str> = if ensure_test_user().is_some() {
            vec!["--run-as", TEST_USER]
        } else {
            vec![]
        };
        let idle_file = self.dir.path().join(format!("{name}.idle"));
        std::fs::write(&idle_file, "").unwrap();
        // The owner was last active an hour ago.
        set_mtime_ago(&idle_file, Duration::from_secs(3600));
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let mut cmd = match monotonic_shift {
            Some(secs) => {
                let mut c = Command::new("unshare");
                c.args(["--time", "--fork", "--kill-child=SIGTERM", "--monotonic"])
                    .arg(secs.to_string())
                    .arg(bin("graze-agent"));
                c
            }
            None => command(ns, &bin("graze-agent")),
        };
        let child = cmd
            .arg("--access")
            .arg(access)
            .args(&run_as)
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
            // Each agent's own owner socket (not the system one every root agent would share).
            .args(if extra.contains(&"--owner-socket") {
                vec![]
            } else {
                vec![
                    "--owner-socket".into(),
                    self.dir
                        .path()
                        .join(format!("{name}.owner.sock"))
                        .display()
                        .to_string(),
                ]
            })
            .args(extra)
            .env("PATH", test_path())
            .env("RUST_LOG", &self.log_filter)
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
        self.graze_with(&self.access.clone(), args)
    }

    /// Run `graze --access FILE ARGS...` with another access file.
    pub fn graze_with(&self, access: &Path, args: &[&str]) -> Output {
        command(self.ns.as_deref(), &bin("graze"))
            .arg("--access")
            .arg(access)
            .args(args)
            .env("PATH", test_path())
            .stdin(Stdio::null())
            .output()
            .expect("running graze")
    }

    /// The scheduler's state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("scheduler")
    }

    /// `graze-scheduler token create --role ROLE --name NAME`, saved as an access file.
    pub fn create_token(&self, role: &str, name: &str) -> PathBuf {
        self.create_token_with(role, name, &[])
    }

    /// `graze-scheduler token create` with `extra` arguments (e.g. `--node N`).
    pub fn create_token_with(&self, role: &str, name: &str, extra: &[&str]) -> PathBuf {
        let out = Command::new(bin("graze-scheduler"))
            .args([
                "token",
                "create",
                "--role",
                role,
                "--name",
                name,
                "--state-dir",
            ])
            .arg(self.state_dir())
            .args(extra)
            .output()
            .expect("running graze-scheduler token create");
        assert!(
            out.status.success(),
            "token create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let p = self.dir.path().join(format!("{name}.access.toml"));
        std::fs::write(&p, &out.stdout).unwrap();
        p
    }

    /// `graze-scheduler token revoke NAME`.
    pub fn revoke_token(&self, name: &str) {
        let out = Command::new(bin("graze-scheduler"))
            .args(["token", "revoke", name, "--state-dir"])
            .arg(self.state_dir())
            .output()
            .expect("running graze-scheduler token revoke");
        assert!(
            out.status.success(),
            "token revoke: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Run graze, expect success, parse stdout as JSON.
    pub fn graze_json(&self, args: &[&str]) -> Value {
        self.graze_json_with(&self.access, args)
    }

    /// [`Cluster::graze_json`] with another access file.
    pub fn graze_json_with(&self, access: &Path, args: &[&str]) -> Value {
        let out = self.graze_with(access, args);
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
        self.submit_with(&self.access, args)
    }

    /// [`Cluster::submit`] with another access file (another user's token).
    pub fn submit_with(&self, access: &Path, args: &[&str]) -> u64 {
        let mut a = vec!["submit", "--json"];
        a.extend_from_slice(args);
        self.graze_json_with(access, &a)["id"]
            .as_u64()
            .expect("job id")
    }

    /// The job's processes once `ranks` of them are graze-pi ranks.
    pub fn wait_ranks(&self, id: u64, ranks: usize, timeout: Duration) -> Vec<u32> {
        wait_for("the job's ranks", timeout, || {
            let p = self.job_processes(id);
            let n = p
                .iter()
                .filter(|pid| process_name(**pid).as_deref() == Some("graze-pi"))
                .count();
            (n == ranks).then_some(p)
        })
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

    /// A `sh -c` script that runs `body` holding, for its whole life, an exclusive lock named
    /// `key` (shell-expanded, e.g. `job-$GRAZE_JOB_ID` or `rank-$PMI_RANK`) in this cluster's
    /// directory. A second holder of the same key while the first lives (two runs of a job
    /// overlapping) cannot take it: it prints `OVERLAP` and exits 3, failing its job.
    pub fn exclusive_script(&self, key: &str, body: &str) -> String {
        let locks = self.dir.path().join("locks");
        std::fs::create_dir_all(&locks).unwrap();
        // Jobs run as an unprivileged user when the agents run as root.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&locks, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        format!(
            "flock -n {}/{key} -c '{body}' || {{ echo OVERLAP; exit 3; }}",
            locks.display()
        )
    }

    /// Build the C program `source` with MPI compiler `mpicc` (e.g. `mpicc`, `mpicc.openmpi`)
    /// into the cluster's directory, where the job user can run it; returns its path.
    pub fn compile_mpi(&self, mpicc: &str, name: &str, source: &str) -> String {
        let src = self.dir.path().join(format!("{name}.c"));
        let prog = self.dir.path().join(name);
        std::fs::write(&src, source).unwrap();
        let out = Command::new(mpicc)
            .arg("-O2")
            .arg("-o")
            .arg(&prog)
            .arg(&src)
            .output()
            .unwrap_or_else(|e| panic!("{mpicc}: {e}: run `bash scripts/setup --openmpi`"));
        assert!(
            out.status.success(),
            "{mpicc}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        prog.to_str().unwrap().to_string()
    }

    /// Every launch-timeline step (`graze::timeline` events) in the scheduler's and the
    /// agents' logs, in time order. Needs a cluster started with [`Cluster::start_logging`]
    /// and a filter enabling `graze::timeline=debug`.
    pub fn timeline(&self) -> Vec<Step> {
        let mut steps = Vec::new();
        let names = std::iter::once("scheduler").chain(self.agents.iter().map(|a| a.name.as_str()));
        for name in names {
            steps.extend(self.log(name).lines().filter_map(|l| Step::parse(name, l)));
        }
        steps.sort_by_key(|s| s.at_us);
        steps
    }

    /// Job `id`'s output, every rank, as `graze logs` prints it.
    pub fn logs(&self, id: u64) -> String {
        String::from_utf8_lossy(&self.graze(&["logs", &id.to_string()]).stdout).into_owned()
    }

    /// Wait (up to 60 s) until job `id`'s output holds `needle` at least `n` times.
    /// On a timeout the panic shows the output so far.
    pub fn wait_output(&self, id: u64, needle: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let logs = self.logs(id);
            if logs.matches(needle).count() >= n {
                return;
            }
            if Instant::now() > deadline {
                panic!("timed out after 60s waiting for {n} x '{needle}' in job {id}'s output; it is:\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The hosts of job `id`'s current (or last) allocation, main node first.
    pub fn hosts(&self, id: u64) -> Vec<String> {
        self.show(id)["allocation"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|h| h["host"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Live (non-zombie) processes that belong to job `id` of this cluster.
    pub fn job_processes(&self, id: u64) -> Vec<u32> {
        let mark = format!("GRAZE_TEST_CLUSTER={}", self.dir.path().display());
        let job = format!("GRAZE_JOB_ID={id}");
        processes_with_env(&[&mark, &job])
    }
}

/// One step of the launch timeline, read back from a log (see `graze_net::timeline`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Whose log: `scheduler` or an agent's name.
    pub source: String,
    /// The job (0 for steps that do not name one, such as a remote exit).
    pub job: u64,
    /// What happened (`submit_received`, `start_sent`, ...).
    pub stage: String,
    /// Wall clock, µs since the Unix epoch.
    pub at_us: u64,
    /// A node or host, or empty.
    pub detail: String,
}

impl Step {
    /// Parse one log line of `source`; `None` unless it is a timeline event.
    pub fn parse(source: &str, line: &str) -> Option<Step> {
        let line = strip_ansi(line);
        let rest = line.split_once(&format!("{}:", graze_net::TIMELINE))?.1;
        let field = |key: &str| {
            let after = rest.split_once(&format!(" {key}="))?.1;
            Some(if key == "detail" {
                after.trim().to_string()
            } else {
                after.split_whitespace().next()?.to_string()
            })
        };
        Some(Step {
            source: source.to_string(),
            job: field("job")?.parse().ok()?,
            stage: field("stage")?,
            at_us: field("at_us")?.parse().ok()?,
            detail: field("detail").unwrap_or_default(),
        })
    }
}

/// `line` without ANSI colour sequences (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
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
            if std::env::var_os("GRAZE_KEEP_TEST_DIR").is_some() {
                self.dir.disable_cleanup(true);
            }
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

/// An owner who keeps typing: touches the idle file every 200 ms (for at most `limit`) until
/// dropped.
pub struct Typing {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Typing {
    /// Start typing on `idle`.
    pub fn start(idle: PathBuf, limit: Duration) -> Typing {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let end = std::time::Instant::now() + limit;
            while !flag.load(std::sync::atomic::Ordering::Relaxed)
                && std::time::Instant::now() < end
            {
                touch(&idle);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Typing {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Typing {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Mark `p` as touched now: the owner of that agent typed.
pub fn touch(p: &Path) {
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
}

/// The `GRAZE_JOB_TAG` in a process's environment.
pub fn process_tag(pid: u32) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0)
        .find_map(|e| e.strip_prefix(b"GRAZE_JOB_TAG="))
        .map(|t| String::from_utf8_lossy(t).to_string())
}

/// A process's command line, arguments joined by spaces (empty when it is gone).
pub fn process_cmdline(pid: u32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
        .replace('\0', " ")
}

/// The command name of a process.
pub fn process_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Test hosts in network namespaces: one for the scheduler with a bridge, one per agent joined
/// to it by a veth pair, on 10.77.N.0/24 (addresses exist only inside these namespaces).
/// Cutting an agent's port on the bridge is a real partition. Everything is deleted on drop.
pub struct TestNet {
    /// The scheduler's namespace.
    pub sched_ns: String,
    /// Each agent's namespace.
    pub agent_ns: Vec<String>,
    /// The scheduler's address.
    pub sched_ip: String,
    /// Each agent's address.
    pub agent_ip: Vec<String>,
    ports: Vec<String>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestNet {
    /// Make the namespaces for `agents` agents. Needs root and iproute2.
    pub fn new(agents: usize) -> TestNet {
        let id = std::process::id() % 100_000;
        let net = (id % 200) + 20;
        let sched_ns = format!("gz{id}s");
        let mut t = TestNet {
            sched_ns: sched_ns.clone(),
            agent_ns: Vec::new(),
            sched_ip: format!("10.77.{net}.1"),
            agent_ip: Vec::new(),
            ports: Vec::new(),
        };
        ip(&["netns", "add", &sched_ns]);
        ip(&["-n", &sched_ns, "link", "set", "lo", "up"]);
        ip(&["-n", &sched_ns, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            &sched_ns,
            "addr",
            "add",
            &format!("{}/24", t.sched_ip),
            "dev",
            "br0",
        ]);
        ip(&["-n", &sched_ns, "link", "set", "br0", "up"]);
        for i in 0..agents {
            let ns = format!("gz{id}a{i}");
            let (a, b) = (format!("gz{id}v{i}"), format!("gz{id}p{i}"));
            let addr = format!("10.77.{net}.{}", 10 + i);
            ip(&["netns", "add", &ns]);
            t.agent_ns.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
            ip(&["link", "set", &a, "netns", &ns]);
            ip(&["link", "set", &b, "netns", &sched_ns]);
            ip(&["-n", &sched_ns, "link", "set", &b, "master", "br0"]);
            ip(&["-n", &sched_ns, "link", "set", &b, "up"]);
            ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", &a]);
            ip(&["-n", &ns, "link", "set", &a, "up"]);
            t.agent_ip.push(addr);
            t.ports.push(b);
        }
        // Every namespace resolves every namespace's name (its host name under [`command`]).
        let mut hosts = String::from("127.0.0.1 localhost\n::1 localhost\n");
        hosts += &format!("{} {}\n", t.sched_ip, t.sched_ns);
        for (ns, ip) in t.agent_ns.iter().zip(&t.agent_ip) {
            hosts += &format!("{ip} {ns}\n");
        }
        for ns in t.agent_ns.iter().chain(std::iter::once(&t.sched_ns)) {
            let dir = Path::new("/etc/netns").join(ns);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("hosts"), &hosts).unwrap();
        }
        t
    }

    /// Cut agent `i` off: its bridge port goes down.
    pub fn cut(&self, i: usize) {
        ip(&["-n", &self.sched_ns, "link", "set", &self.ports[i], "down"]);
    }

    /// Restore agent `i`'s link.
    pub fn restore(&self, i: usize) {
        ip(&["-n", &self.sched_ns, "link", "set", &self.ports[i], "up"]);
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for ns in self.agent_ns.iter().chain(std::iter::once(&self.sched_ns)) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(ns));
        }
    }
}

/// The texts of a job's events (`graze show --json`).
pub fn events(job: &Value) -> Vec<String> {
    job["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["what"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// True when every one of `pids` is stopped (state T or t) or gone.
pub fn all_stopped(pids: &[u32]) -> bool {
    pids.iter()
        .all(|p| process_state(*p).is_none_or(|s| s == 'T' || s == 't'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_lines_parse_with_and_without_colours() {
        let plain = "2026-12-07T20:25:26.123456Z DEBUG job{id=3}: graze::timeline: job=3 \
                     stage=start_sent at_us=1765139126123456 detail=b2";
        let s = Step::parse("scheduler", plain).unwrap();
        assert_eq!(
            s,
            Step {
                source: "scheduler".into(),
                job: 3,
                stage: "start_sent".into(),
                at_us: 1_765_139_126_123_456,
                detail: "b2".into(),
            }
        );
        let coloured = "\u{1b}[2m2026\u{1b}[0m \u{1b}[34mDEBUG\u{1b}[0m \u{1b}[2mgraze::timeline\u{1b}[0m\u{1b}[2m:\u{1b}[0m \
                        \u{1b}[3mjob\u{1b}[0m\u{1b}[2m=\u{1b}[0m0 \u{1b}[3mstage\u{1b}[0m\u{1b}[2m=\u{1b}[0mremote_exited_heard \
                        \u{1b}[3mat_us\u{1b}[0m\u{1b}[2m=\u{1b}[0m5 \u{1b}[3mdetail\u{1b}[0m\u{1b}[2m=\u{1b}[0m";
        let s = Step::parse("scheduler", coloured).unwrap();
        assert_eq!(
            (s.job, s.stage.as_str(), s.at_us),
            (0, "remote_exited_heard", 5)
        );
        assert_eq!(s.detail, "");
        assert!(Step::parse("b2", "INFO graze_agent: job started").is_none());
    }
}
