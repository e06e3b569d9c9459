//! `graze demo`: a whole graze cluster on this machine, Pi jobs on it, and `graze top`.
//!
//! It starts `graze-scheduler` on 127.0.0.1 and four `graze-agent`s on 127.0.0.2-5 (the
//! binaries next to the `graze` executable, with that directory first on the agents' PATH so
//! jobs find `graze-pi`), each with a `file:` idle source whose owner was last active an hour
//! ago. Every child is in one process group, carries a marker in its environment (inherited by
//! the jobs' processes, which agents put in process groups of their own), and gets SIGTERM when
//! `graze` dies; [`Demo`]'s drop stops them all, on a normal exit, an error or a panic.

use crate::client::Client;
use crate::top::{self, TopOptions};
use anyhow::{bail, Context as _};
use graze_net::Access;
use graze_proto::{JobId, JobSpec, JobState, Unit};
use std::collections::HashMap;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// Environment variable marking every process the demo started (value: the demo's dir).
pub const MARK: &str = "GRAZE_DEMO_DIR";

/// Cores each demo agent offers.
const CORES: u32 = 2;
/// Owner idle time before a demo node offers its cores.
const START_AFTER: &str = "2s";

/// A running demo cluster. Dropping it stops every process it started.
pub struct Demo {
    dir: PathBuf,
    keep: bool,
    pgid: Option<i32>,
    children: Vec<(String, Child)>,
    /// The scheduler's access file.
    pub access_path: PathBuf,
    /// Its content.
    pub access: Access,
    /// Node name to its `file:` idle source.
    pub owner_files: HashMap<String, PathBuf>,
}

/// The directory of the running `graze` executable, where the other graze binaries are.
fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the graze executable")?;
    exe.parent()
        .map(Path::to_owned)
        .context("the graze executable has no directory")
}

/// Node names for the demo that are not this machine's host name (hydra would run a host of
/// that name locally, bypassing graze).
pub fn node_names(hostname: &str) -> Vec<String> {
    let plain: Vec<String> = (2..=5).map(|i| format!("ws{i}")).collect();
    if plain.iter().any(|n| n == hostname) {
        (2..=5).map(|i| format!("graze-ws{i}")).collect()
    } else {
        plain
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Set a file's modification time to `ago` before now.
fn set_mtime_ago(p: &Path, ago: Duration) -> std::io::Result<()> {
    let f = std::fs::File::options().create(true).append(true).open(p)?;
    f.set_modified(SystemTime::now() - ago)
}

impl Demo {
    /// Start the scheduler and the agents and wait until the 4 nodes offer their cores.
    /// `say` prints progress.
    pub async fn start(keep: bool, say: &dyn Fn(&str)) -> anyhow::Result<Demo> {
        let bin = bin_dir()?;
        for b in ["graze-scheduler", "graze-agent", "graze-pi", "graze-launch"] {
            if !bin.join(b).exists() {
                bail!(
                    "{b} is not next to graze in {}: build every binary first (cargo build --bins)",
                    bin.display()
                );
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("graze-demo-")
            .tempdir()
            .context("creating the demo's temp dir")?
            .keep();
        // As root, agents run jobs as an unprivileged user (never root): `nobody` exists on
        // every Debian machine; it must be able to enter the demo's dir.
        let run_as: Vec<&str> = if is_root() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("opening {} to the job user", dir.display()))?;
            vec!["--run-as", "nobody"]
        } else {
            Vec::new()
        };
        let mut demo = Demo {
            dir: dir.clone(),
            keep,
            pgid: None,
            children: Vec::new(),
            access_path: dir.join("scheduler").join("access.toml"),
            access: Access {
                scheduler: String::new(),
                fingerprint: String::new(),
                token: String::new(),
            },
            owner_files: HashMap::new(),
        };
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );

        say("starting graze-scheduler on 127.0.0.1");
        let mut cmd = std::process::Command::new(bin.join("graze-scheduler"));
        cmd.arg("--state-dir")
            .arg(dir.join("scheduler"))
            .args(["--listen", "127.0.0.1:0"]);
        demo.spawn("scheduler", cmd, &path)?;
        let started = Instant::now();
        while !demo.access_path.exists() {
            demo.check_alive()?;
            if started.elapsed() > Duration::from_secs(30) {
                bail!(
                    "the scheduler wrote no access file within 30 s; see {}",
                    demo.log("scheduler").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        demo.access = Access::load(&demo.access_path).context("reading the demo's access file")?;

        let names = node_names(&hostname());
        say(&format!(
            "starting 4 agents {} on 127.0.0.2-5, {CORES} cores each (owners idle for an hour: cores offered after {START_AFTER})",
            names.join(", ")
        ));
        for (i, name) in names.iter().enumerate() {
            let idle = dir.join(format!("owner-{name}"));
            set_mtime_ago(&idle, Duration::from_secs(3600))
                .with_context(|| format!("creating {}", idle.display()))?;
            let mut cmd = std::process::Command::new(bin.join("graze-agent"));
            cmd.arg("--access")
                .arg(&demo.access_path)
                .args(["--name", name, "--bind", &format!("127.0.0.{}", i + 2)])
                .args(["--cores", &CORES.to_string()])
                .arg("--idle-source")
                .arg(format!("file:{}", idle.display()))
                .args(["--start-after", START_AFTER, "--owner-cpu-max", "100"])
                .arg("--spool")
                .arg(dir.join("spool").join(name))
                .args(&run_as);
            demo.spawn(name, cmd, &path)?;
            demo.owner_files.insert(name.clone(), idle);
        }
        let client = Client::connect(&demo.access)
            .await
            .context("connecting to the demo scheduler")?;
        let started = Instant::now();
        loop {
            demo.check_alive()?;
            let nodes = client.nodes().await.context("listing the demo's nodes")?;
            let offered = nodes
                .iter()
                .filter(|n| {
                    n.online
                        && n.status
                            .as_ref()
                            .is_some_and(|s| s.availability.is_offered())
                })
                .count();
            if offered == names.len() {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "only {offered} of {} demo nodes offer their cores after 60 s; logs in {}",
                    names.len(),
                    dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        client.close().await;
        Ok(demo)
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    fn spawn(
        &mut self,
        name: &str,
        mut cmd: std::process::Command,
        path: &str,
    ) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.log(name))
            .with_context(|| format!("creating {}", self.log(name).display()))?;
        cmd.env("PATH", path)
            .env(MARK, &self.dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(self.pgid.unwrap_or(0));
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting the demo's {name}"))?;
        if self.pgid.is_none() {
            self.pgid = i32::try_from(child.id()).ok();
        }
        self.children.push((name.to_string(), child));
        Ok(())
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        for (name, c) in &mut self.children {
            if let Ok(Some(st)) = c.try_wait() {
                bail!(
                    "the demo's {name} exited ({st}); see {}",
                    self.dir.join(format!("{name}.log")).display()
                );
            }
        }
        Ok(())
    }

    /// Stop every process the demo started; remove its dir unless kept. Idempotent.
    pub fn stop(&mut self) {
        if let Some(pg) = self.pgid.take() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(-pg, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            for (_, c) in &mut self.children {
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = c.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            // SAFETY: as above.
            unsafe { libc::kill(-pg, libc::SIGKILL) };
            for (_, c) in &mut self.children {
                let _ = c.wait();
            }
        }
        // Job processes live in process groups of their own: find them by the marker.
        let mark = format!("{MARK}={}", self.dir.display());
        for pid in processes_with_env(&mark) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if !self.keep && self.dir.exists() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// The demo's directory (state, logs, idle files).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Live processes whose environment holds `var` (`K=V`).
fn processes_with_env(var: &str) -> Vec<i32> {
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|e| e == var.as_bytes()))
        })
        .filter_map(|pid| i32::try_from(pid).ok())
        .collect()
}

/// The demo's Pi jobs: `(name, ranks)`. 8 cores in the cluster: the third waits for cores.
pub const JOBS: [(&str, u32); 3] = [("pi-a", 4), ("pi-b", 2), ("pi-c", 6)];

/// The demo job submitted with `--trace`.
pub const TRACED: &str = "pi-b";

/// The spec of one demo Pi job of `rounds` rounds.
pub fn pi_spec(name: &str, nprocs: u32, rounds: u64, samples: u64, cwd: &Path) -> JobSpec {
    let rounds = rounds.to_string();
    JobSpec {
        name: Some(name.into()),
        nprocs,
        unit: Unit::Core,
        priority: 0,
        groups: vec![],
        nodes: vec![],
        command: [
            "mpiexec",
            "graze-pi",
            "--samples",
            &samples.to_string(),
            "--min-rounds",
            &rounds,
            "--max-rounds",
            &rounds,
            "--report-ms",
            "500",
        ]
        .map(String::from)
        .to_vec(),
        cwd: Some(cwd.display().to_string()),
        env: vec![],
        user: crate::current_user(),
        ..Default::default()
    }
}

/// A line on the traced job's merged trace (its nodes' uploads come with their clears, so
/// they may follow the job's end by a moment: asked for up to 10 s).
async fn traced(client: &Client, id: JobId) -> anyhow::Result<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let nodes = loop {
        match crate::trace_cmd::fetch(client, id.into(), None).await {
            Ok(n) if !n.is_empty() => break n,
            r if std::time::Instant::now() >= deadline => {
                r?;
                anyhow::bail!("no node sent its trace");
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    let t = graze_trace::merge(&nodes)?;
    let calls: usize = t
        .ranks
        .iter()
        .map(|r| {
            r.spans
                .iter()
                .filter(|s| matches!(s.what, graze_trace::What::Mpi(_)))
                .count()
        })
        .sum();
    let error = t.nodes.iter().map(|n| n.error_ns).max().unwrap_or(0);
    let nodes = t.nodes.len();
    Ok(format!(
        "traced: {} ranks on {nodes} node{}, {calls} MPI calls, clock error bound {:.1} µs",
        t.ranks.len(),
        if nodes == 1 { "" } else { "s" },
        error as f64 / 1000.0
    ))
}

/// Rank 0's final "Computed value of pi on N processors is X".
pub fn computed_pi(lines: &[graze_proto::LogLine]) -> Option<(u32, f64)> {
    lines.iter().find_map(|l| {
        let rest = l.line.split("Computed value of pi on ").nth(1)?;
        let (n, x) = rest.split_once(" processors is ")?;
        Some((n.trim().parse().ok()?, x.trim().parse().ok()?))
    })
}

/// Run `graze demo`.
pub async fn run(args: crate::cli::DemoArgs) -> anyhow::Result<std::process::ExitCode> {
    let say = |s: &str| {
        if args.no_tui {
            println!("== {s}");
        } else {
            eprintln!("== {s}");
        }
    };
    let mut demo = Demo::start(args.keep, &say).await?;
    let rounds = args.rounds.unwrap_or(if args.no_tui { 12 } else { 600 });
    let samples = if args.no_tui { 400_000 } else { 4_000_000 };
    let client = Client::connect(&demo.access)
        .await
        .context("connecting to the demo scheduler")?;
    let mut ids = Vec::new();
    for (name, n) in JOBS {
        let mut spec = pi_spec(name, n, rounds, samples, demo.dir());
        // One job runs traced: `t` on it in `graze top` shows its MPI timeline once it ended.
        spec.trace = name == TRACED;
        let id = client
            .submit(spec)
            .await
            .with_context(|| format!("submitting {name}"))?;
        say(&format!(
            "submitted job {id} {name}: {n} ranks, {rounds} rounds{}",
            if name == TRACED { ", traced" } else { "" }
        ));
        ids.push(id);
    }
    if let Some(last) = ids.last() {
        let v = client
            .show_job(*last)
            .await
            .context("showing the last demo job")?;
        if v.state == JobState::Queued {
            say(&format!(
                "job {last} {} waits for cores: {}",
                crate::format::job_name(&v.spec),
                v.waiting_for.as_deref().unwrap_or("-")
            ));
        }
    }
    let code = if args.no_tui {
        let r = tokio::select! {
            r = summary(&client, &ids) => r,
            _ = interrupted() => Err(anyhow::anyhow!("interrupted")),
        };
        client.close().await;
        r?
    } else {
        client.close().await;
        let opts = TopOptions {
            owner_files: demo.owner_files.clone(),
        };
        tokio::select! {
            r = top::run_top(demo.access.clone(), opts) => r?,
            _ = interrupted() => {}
        }
        std::process::ExitCode::SUCCESS
    };
    say("stopping the demo cluster");
    demo.stop();
    if args.keep {
        say(&format!("state and logs kept in {}", demo.dir().display()));
    }
    Ok(code)
}

/// Completes on SIGTERM, SIGHUP or ctrl-c.
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = hup.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Wait for every job, print a summary line per job; success when every job completed with a
/// pi within 0.01 of the true value.
async fn summary(client: &Client, ids: &[JobId]) -> anyhow::Result<std::process::ExitCode> {
    let mut ok = true;
    for id in ids {
        let job = loop {
            let v = client
                .wait_job(*id)
                .await
                .with_context(|| format!("waiting for job {id}"))?;
            if v.state.is_final() {
                break v;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let mut lines = Vec::new();
        let mut logs = client.logs((*id).into(), Some(0), false).await?;
        while let Some(batch) = logs.next_batch().await? {
            lines.extend(batch);
        }
        let pi = computed_pi(&lines);
        let good = job.state == JobState::Completed
            && pi.is_some_and(|(_, x)| (x - std::f64::consts::PI).abs() < 0.01);
        ok &= good;
        println!(
            "job {id} {}: {} on {} after {}{}",
            crate::format::job_name(&job.spec),
            job.state,
            crate::format::hosts(&job.allocation),
            crate::format::elapsed(&job, crate::format::now_ms()),
            match pi {
                Some((n, x)) => format!(
                    " · pi = {x:.6} on {n} ranks (error {:.6})",
                    (x - std::f64::consts::PI).abs()
                ),
                None => " · no pi value in rank 0's output".into(),
            }
        );
        if !good {
            explain_failure(client, &job).await;
        }
        if good && job.spec.trace {
            match traced(client, *id).await {
                Ok(t) => println!("  {t}; see `graze trace {id} --summary`"),
                Err(e) => {
                    ok = false;
                    println!("  no trace for job {id}: {e:#}");
                }
            }
        }
    }
    if ok {
        println!("every job done, every pi correct");
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        println!("some jobs did not complete with a correct pi");
        Ok(std::process::ExitCode::from(crate::EXIT_REFUSED))
    }
}

/// Print what the scheduler knows of a job that did not give a correct pi: its events and the
/// last lines of its output (all ranks and the launcher), so that a failure can be read from the
/// summary alone.
async fn explain_failure(client: &Client, job: &graze_proto::JobView) {
    for e in &job.events {
        println!("    event: {}", e.what);
    }
    let mut lines = Vec::new();
    match client.logs(job.id.into(), None, false).await {
        Ok(mut logs) => {
            while let Ok(Some(batch)) = logs.next_batch().await {
                lines.extend(batch);
            }
        }
        Err(e) => println!("    (output not available: {e})"),
    }
    let skip = lines.len().saturating_sub(40);
    for l in &lines[skip..] {
        let who = l
            .rank
            .map_or_else(|| "mpiexec".to_string(), |r| format!("rank {r}"));
        println!("    {who} {:?}: {}", l.stream, l.line);
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory of ours.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_avoid_the_host_name() {
        assert_eq!(node_names("vm"), ["ws2", "ws3", "ws4", "ws5"]);
        assert_eq!(node_names("ws3")[0], "graze-ws2");
    }
}
