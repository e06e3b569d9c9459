//! IPython engines on graze (issue 15): the real ipyparallel from PyPI in a venv
//! (`scripts/setup` makes `target/ipp-venv`), `ipcluster start --engines=graze`, real
//! schedulers and agents. Skipped, saying why, only when that venv cannot be made.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use graze_tests::{
    bin_dir, process_state, processes_with_env, test_path, touch, wait_for, Cluster,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(180);

/// The venv's python, made by `scripts/setup` when missing (once per test binary: the tests
/// run in parallel); `None` (the test skips) when it cannot be made.
fn venv_python() -> Option<PathBuf> {
    static PYTHON: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    PYTHON.get_or_init(make_venv).clone()
}

fn make_venv() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let venv = std::env::var_os("GRAZE_PY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin_dir().parent().unwrap().join("ipp-venv"));
    let python = venv.join("bin/python");
    let ready = || {
        Command::new(&python)
            .args(["-c", "import ipyparallel, graze_ipyparallel"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ready() {
        return Some(python);
    }
    let setup = Command::new("bash")
        .arg(root.join("scripts/setup"))
        .env("GRAZE_PY_VENV", &venv)
        .output();
    if ready() {
        return Some(python);
    }
    eprintln!(
        "SKIPPED: python3 with ipyparallel could not be installed into {} (`bash scripts/setup` \
         makes it: it needs python3-venv and PyPI): {}",
        venv.display(),
        setup
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_else(|e| e.to_string())
    );
    None
}

/// `ipcluster start` in the foreground, stopped (and killed) on drop.
struct IpCluster {
    python: PathBuf,
    profile: PathBuf,
    dir: PathBuf,
    access: PathBuf,
    child: Child,
}

impl IpCluster {
    fn start(c: &Cluster, python: &Path, n: u32, extra: &[&str]) -> IpCluster {
        let dir = c.dir.path().to_owned();
        let profile = dir.join("ipprofile");
        let log = std::fs::File::create(dir.join("ipcluster.log")).unwrap();
        let child = python_cmd(python, &dir, &c.access)
            .args(["-m", "ipyparallel.cluster", "start"])
            .arg(format!("-n={n}"))
            .arg("--engines=graze")
            .arg(format!("--profile-dir={}", profile.display()))
            .args(extra)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting ipcluster");
        IpCluster {
            python: python.to_owned(),
            profile,
            dir,
            access: c.access.clone(),
            child,
        }
    }

    /// Run a Python client script (`{profile}` is replaced by the profile dir); its last
    /// stdout line is JSON.
    fn client(&self, script: &str) -> Child {
        let path = self.dir.join(format!("client-{}.py", std::process::id()));
        std::fs::write(
            &path,
            script.replace("{profile}", &self.profile.display().to_string()),
        )
        .unwrap();
        python_cmd(&self.python, &self.dir, &self.access)
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running the client script")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("ipcluster.log")).unwrap_or_default()
    }

    /// `ipcluster stop`; true when it succeeded.
    fn stop(&mut self) -> bool {
        let out = python_cmd(&self.python, &self.dir, &self.access)
            .args(["-m", "ipyparallel.cluster", "stop"])
            .arg(format!("--profile-dir={}", self.profile.display()))
            .output()
            .expect("running ipcluster stop");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        out.status.success()
    }
}

impl Drop for IpCluster {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.stop();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("=== ipcluster.log ===\n{}", self.log());
        }
    }
}

fn python_cmd(python: &Path, dir: &Path, access: &Path) -> Command {
    let mut cmd = Command::new(python);
    cmd.current_dir(dir)
        .env("PATH", test_path())
        .env("GRAZE_ACCESS", access)
        .env("IPYTHONDIR", dir.join("ipython"))
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null());
    cmd
}

/// Wait for a client script; its last stdout line, as JSON.
fn finish(child: Child, what: &str) -> Value {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{what}: bad JSON ({e}): {stdout}\nstderr:\n{stderr}"))
}

/// The one graze job the engines run as (waits until it exists).
fn engines_job(c: &Cluster) -> u64 {
    wait_for("the engines' graze job", LONG, || {
        let q = c.graze_json(&["queue", "--all", "--json"]);
        q.as_array()?.iter().find_map(|j| j["id"].as_u64())
    })
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Processes of this cluster running the engine wrapper (Python processes, not the `sh` or
/// `mpiexec` whose arguments name it).
fn engine_processes(c: &Cluster) -> Vec<u32> {
    let mark = format!("GRAZE_TEST_CLUSTER={}", c.dir.path().display());
    processes_with_env(&[&mark])
        .into_iter()
        .filter(|p| {
            graze_tests::process_name(*p).is_some_and(|n| n.starts_with("python"))
                && graze_tests::process_cmdline(*p).contains("graze_ipyparallel.engine")
        })
        .collect()
}

const MAP: &str = r#"
import json, os, socket, ipyparallel as ipp
rc = ipp.Client(profile_dir="{profile}")
rc.wait_for_engines(4, timeout=150)
def f(x):
    return x * x + 1
def node():
    import os
    return os.environ.get("GRAZE_NODE")
squares = rc[:].map_sync(f, range(100))
nodes = rc[:].apply_sync(node)
hosts = rc[:].apply_sync(socket.gethostname)
print(json.dumps({"ok": squares == [f(x) for x in range(100)], "nodes": nodes,
                  "hosts": hosts, "ids": rc.ids}))
"#;

#[test]
fn ipcluster_runs_engines_as_one_graze_job() {
    let Some(python) = venv_python() else { return };
    let mut c = Cluster::start(&[]);
    c.add_agent("a2", "127.0.0.2", 2, &[]);
    c.add_agent("a3", "127.0.0.3", 2, &[]);
    c.wait_offered(2);

    // Exactly the issue's command: graze engines beside ipyparallel's own local controller.
    let mut ipc = IpCluster::start(&c, &python, 4, &[]);
    let id = engines_job(&c);
    let r = finish(ipc.client(MAP), "map client");
    assert_eq!(r["ok"], true, "{r}");
    let mut nodes: Vec<String> = r["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap_or("?").to_string())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["a2", "a2", "a3", "a3"], "{r}");
    let job = c.show(id);
    assert_eq!(job["state"], "running", "{job}");
    assert_eq!(job["spec"]["nprocs"], 4, "{job}");
    assert_eq!(
        c.graze_json(&["queue", "--all", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(engine_processes(&c).len(), 4);

    assert!(ipc.stop(), "ipcluster stop failed:\n{}", ipc.log());
    wait_for("the engines' job cancelled", LONG, || {
        (c.show(id)["state"] == "cancelled").then_some(())
    });
    wait_for("no engine process left", LONG, || {
        (engine_processes(&c).is_empty() && c.job_processes(id).is_empty()).then_some(())
    });
}

const LONG_MAP: &str = r#"
import json, os, time, ipyparallel as ipp
rc = ipp.Client(profile_dir="{profile}")
rc.wait_for_engines(4, timeout=150)
ids = list(rc.ids)
def slow(x):
    import time
    time.sleep(0.5)
    return x * 3
ar = rc[:].map_async(slow, range(80))
open("map-started", "w").write("")
t0 = time.time()
result = ar.get(timeout=600)
print(json.dumps({"ok": result == [x * 3 for x in range(80)], "ids_before": ids,
                  "ids_after": rc.ids, "seconds": time.time() - t0}))
"#;

/// The owner of a2 comes back during a long map and stays 1 s; graze suspends the whole job
/// for `resume_after` (40 s: longer than ipyparallel's default heartbeat tolerance of about
/// 33 s). With `--controller=graze` no engine is dropped: the map finishes after the owner
/// leaves, nothing lost, no engine replaced, and no engine process used CPU while stopped.
#[test]
fn owner_returns_during_a_long_map() {
    let Some(python) = venv_python() else { return };
    let mut c = Cluster::start(&[]);
    let policy = ["--resume-after", "40s", "--vacate-after", "10m"];
    c.add_agent("a2", "127.0.0.2", 2, &policy);
    c.add_agent("a3", "127.0.0.3", 2, &policy);
    c.wait_offered(2);

    let ipc = IpCluster::start(&c, &python, 4, &["--controller=graze"]);
    let id = engines_job(&c);
    let client = ipc.client(LONG_MAP);
    let marker = c.dir.path().join("map-started");
    wait_for("the long map started", LONG, || {
        marker.exists().then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));

    touch(&c.agents[0].idle_file);
    let suspended_at = Instant::now();
    wait_for("the engines' job suspended", LONG, || {
        (c.show(id)["state"] == "suspended").then_some(())
    });
    let engines = engine_processes(&c);
    assert_eq!(engines.len(), 4, "{engines:?}");
    wait_for("every engine stopped (state T)", LONG, || {
        engines
            .iter()
            .all(|p| process_state(*p) == Some('T'))
            .then_some(())
    });
    let before: Vec<Option<u64>> = engines.iter().map(|p| cpu_ticks(*p)).collect();
    std::thread::sleep(Duration::from_secs(3));
    let after: Vec<Option<u64>> = engines.iter().map(|p| cpu_ticks(*p)).collect();
    assert_eq!(
        before, after,
        "an engine used CPU while the owner was there"
    );
    assert!(engines.iter().all(|p| process_state(*p) == Some('T')));

    wait_for("the job resumed", LONG, || {
        (c.show(id)["state"] == "running").then_some(())
    });
    let stopped_for = suspended_at.elapsed();
    assert!(
        stopped_for > Duration::from_secs(35),
        "resumed after {stopped_for:?}"
    );
    let r = finish(client, "long map client");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        r["ids_before"], r["ids_after"],
        "an engine was dropped: {r}"
    );
    let job = c.show(id);
    assert_eq!(job["requeues"], 0, "{job}");
    assert_eq!(job["state"], "running", "{job}");
    drop(ipc);
    wait_for("no engine process left", LONG, || {
        engine_processes(&c).is_empty().then_some(())
    });
}

/// `graze engines -n 2`: controller and engines in one command, the printed lines work in a
/// client, and Ctrl-C (SIGINT) stops it all.
#[test]
fn graze_engines_shortcut() {
    let Some(python) = venv_python() else { return };
    let mut c = Cluster::start(&[]);
    c.add_agent("a2", "127.0.0.2", 1, &[]);
    c.add_agent("a3", "127.0.0.3", 1, &[]);
    c.wait_offered(2);
    let dir = c.dir.path().to_owned();
    let mut graze = Command::new(graze_tests::bin("graze"))
        .arg("--access")
        .arg(&c.access)
        .args(["engines", "-n", "2", "--python"])
        .arg(&python)
        .arg("--profile-dir")
        .arg(dir.join("eprof"))
        .env("PATH", test_path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running graze engines");
    // A failing test still stops it (and, through its parent-death signal, its Python side).
    struct KillOnDrop(Option<u32>);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            if let Some(pid) = self.0 {
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
    let mut guard = KillOnDrop(Some(graze.id()));
    let stdout = graze.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut printed = String::new();
    let deadline = Instant::now() + LONG;
    while !printed.contains("rc.wait_for_engines(2)") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => printed += &(l + "\n"),
            Err(_) => panic!("graze engines printed no client lines: {printed}"),
        }
    }
    let code: String = printed
        .lines()
        .filter(|l| l.starts_with("    "))
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    let script = format!(
        "{code}import json\nprint(json.dumps(rc[:].map_sync(lambda x: x + 1, range(10))))\n"
    );
    std::fs::write(dir.join("paste.py"), script).unwrap();
    let client = python_cmd(&python, &dir, &c.access)
        .arg(dir.join("paste.py"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let r = finish(client, "the pasted lines");
    assert_eq!(r, serde_json::json!([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
    let id = engines_job(&c);
    assert_eq!(c.show(id)["state"], "running");

    unsafe { libc::kill(graze.id() as i32, libc::SIGINT) };
    let start = Instant::now();
    let status = loop {
        if let Some(st) = graze.try_wait().unwrap() {
            guard.0 = None; // reaped: its pid may be reused
            break st;
        }
        assert!(start.elapsed() < LONG, "graze engines did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    wait_for("the engines' job cancelled", LONG, || {
        (c.show(id)["state"] == "cancelled").then_some(())
    });
    wait_for("no engine process left", LONG, || {
        engine_processes(&c).is_empty().then_some(())
    });
}

const RETRIED_MAP: &str = r#"
import json, time, ipyparallel as ipp
rc = ipp.Client(profile_dir="{profile}")
rc.wait_for_engines(4, timeout=150)
ids = list(rc.ids)
def slow(x):
    import time
    time.sleep(1.0)
    return x * 5
lv = rc.load_balanced_view()
lv.set_flags(retries=5)
ar = lv.map_async(slow, range(60))
open("map-started", "w").write("")
result = ar.get(timeout=600)
print(json.dumps({"ok": result == [x * 5 for x in range(60)], "ids_before": ids,
                  "ids_after": rc.ids}))
"#;

/// `on_owner=requeue`: the owner of a2 stays 20 s during a load-balanced map with retries.
/// The launcher requeues the suspended job (its engines are killed, nothing of it runs while
/// the owner is there), graze starts it again when a2 is free, 4 new engines register, and
/// the old engines' tasks are retried on them: the map is right.
#[test]
fn owner_returns_engines_are_requeued() {
    let Some(python) = venv_python() else { return };
    let mut c = Cluster::start(&[]);
    let policy = ["--resume-after", "10m", "--vacate-after", "10m"];
    c.add_agent("a2", "127.0.0.2", 2, &policy);
    c.add_agent("a3", "127.0.0.3", 2, &policy);
    c.wait_offered(2);

    let ipc = IpCluster::start(
        &c,
        &python,
        4,
        &[
            "--controller=graze",
            "--GrazeEngineSetLauncher.on_owner=requeue",
            "--GrazeEngineSetLauncher.requeue_after=3",
            "--GrazeControllerLauncher.heartbeat_tolerance=30",
        ],
    );
    let id = engines_job(&c);
    let client = ipc.client(RETRIED_MAP);
    let marker = c.dir.path().join("map-started");
    wait_for("the map started", LONG, || marker.exists().then_some(()));
    std::thread::sleep(Duration::from_secs(2));

    let typing = graze_tests::Typing::start(c.agents[0].idle_file.clone(), Duration::from_secs(20));
    wait_for("the engines' job requeued", LONG, || {
        (c.show(id)["requeues"].as_u64() == Some(1)).then_some(())
    });
    wait_for("every old engine gone", LONG, || {
        engine_processes(&c).is_empty().then_some(())
    });
    // While the owner types the job waits (a3 alone has 2 of its 4 cores): nothing of it runs.
    let job = c.show(id);
    assert_eq!(job["state"], "queued", "{job}");
    assert!(engine_processes(&c).is_empty());
    drop(typing);

    let r = finish(client, "retried map client");
    assert_eq!(r["ok"], true, "{r}");
    let before: Vec<u64> = serde_json::from_value(r["ids_before"].clone()).unwrap();
    let after: Vec<u64> = serde_json::from_value(r["ids_after"].clone()).unwrap();
    assert_eq!(after.len(), 4, "{r}");
    assert!(after.iter().all(|e| !before.contains(e)), "{r}");
    assert_eq!(c.show(id)["state"], "running");
    drop(ipc);
    wait_for("no engine process left", LONG, || {
        engine_processes(&c).is_empty().then_some(())
    });
}

const DASK: &str = r#"
import json
from distributed import Client
from graze_ipyparallel.dask import GrazeCluster
cluster = GrazeCluster(cores=2, memory="1GB", scheduler_options={"dashboard_address": None})
cluster.scale(jobs=2)
client = Client(cluster)
client.wait_for_workers(4, timeout=150)
total = sum(client.gather(client.map(lambda x: x * 2, range(100))))
nodes = sorted(client.run(lambda: __import__("os").environ.get("GRAZE_NODE") or "?").values())
cluster.close()
print(json.dumps({"total": total, "nodes": nodes}))
"#;

/// Dask's `GrazeCluster`: two graze jobs of 2 single-threaded workers, one per core.
#[test]
fn dask_workers_as_graze_jobs() {
    let Some(python) = venv_python() else { return };
    let mut c = Cluster::start(&[]);
    c.add_agent("a2", "127.0.0.2", 2, &[]);
    c.add_agent("a3", "127.0.0.3", 2, &[]);
    c.wait_offered(2);
    let dir = c.dir.path().to_owned();
    std::fs::write(dir.join("dask_client.py"), DASK).unwrap();
    let client = python_cmd(&python, &dir, &c.access)
        .arg(dir.join("dask_client.py"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let r = finish(client, "the dask client");
    assert_eq!(r["total"], 9900, "{r}");
    assert_eq!(
        r["nodes"],
        serde_json::json!(["a2", "a2", "a3", "a3"]),
        "{r}"
    );
    let jobs = c.graze_json(&["queue", "--all", "--json"]);
    assert_eq!(jobs.as_array().unwrap().len(), 2, "{jobs}");
    wait_for("both worker jobs cancelled", LONG, || {
        jobs.as_array()
            .unwrap()
            .iter()
            .all(|j| c.show(j["id"].as_u64().unwrap())["state"] == "cancelled")
            .then_some(())
    });
}
