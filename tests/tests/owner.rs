//! Issue 3 acceptance: the owner comes first. Real scheduler, real agents, real MPICH jobs;
//! the owner is simulated by touching an agent's `file:` idle source, by a CPU busy loop,
//! by an availability window that closes, and by a real X server (Xvfb + xdotool).
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use std::time::Duration;

/// Generous bounds: the machine is shared and may be loaded.
const LONG: Duration = Duration::from_secs(120);

/// A 4-rank Pi job of fixed length (`rounds` rounds of 80M samples per rank).
fn pi_args(rounds: u32) -> Vec<String> {
    [
        "-n",
        "4",
        "--name",
        "pi-long",
        "--",
        "mpiexec",
        "graze-pi",
        "--samples",
        "80000000",
        "--tolerance",
        "1",
        "--min-rounds",
        &rounds.to_string(),
        "--max-rounds",
        &rounds.to_string(),
        "--report-ms",
        "1000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn submit(c: &Cluster, args: &[String]) -> u64 {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    c.submit(&a)
}

fn none_stopped(pids: &[u32]) -> bool {
    pids.iter()
        .all(|p| process_state(*p).is_none_or(|s| s != 'T' && s != 't'))
}

fn availability(c: &Cluster, node: &str) -> String {
    c.node(node)["status"]["availability"]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn check_pi(c: &Cluster, id: u64) {
    let r0 = c.graze(&["logs", &id.to_string(), "--rank", "0"]);
    let text = String::from_utf8_lossy(&r0.stdout);
    let (n, pi) =
        computed_pi(&text).unwrap_or_else(|| panic!("no Computed line from rank 0:\n{text}"));
    assert_eq!(n, 4);
    assert!((pi - std::f64::consts::PI).abs() < 0.01, "pi = {pi}");
}

#[test]
fn suspend_and_resume_across_nodes() {
    let mut c = Cluster::start(&[]);
    let policy = ["--resume-after", "3s", "--vacate-after", "10m"];
    c.add_agent("a2", "127.0.0.2", 2, &policy);
    c.add_agent("a3", "127.0.0.3", 2, &policy);
    c.wait_offered(2);
    let id = submit(&c, &pi_args(100));
    let pids = c.wait_ranks(id, 4, LONG);
    let job = c.show(id);
    assert_eq!(job["allocation"].as_array().unwrap().len(), 2, "{job}");

    // The owner of a3 types.
    touch(&c.agents[1].idle_file);
    // Every job process on both nodes stops: mpiexec, hydra proxies, shims and ranks.
    wait_for("every job process stopped (state T)", LONG, || {
        let now = c.job_processes(id);
        (all_stopped(&now) && now.len() >= pids.len()).then_some(())
    });
    let node = c.node("a3");
    assert_eq!(
        node["status"]["availability"]["state"], "owner_active",
        "{node}"
    );
    let table = String::from_utf8_lossy(&c.graze(&["nodes"]).stdout).to_string();
    assert!(table.contains("owner-busy, 2 cores reclaimed"), "{table}");
    wait_for("the job shown suspended", LONG, || {
        (c.show(id)["state"] == "suspended").then_some(())
    });
    // While the owner is idle for less than resume_after, everything stays stopped.
    assert!(all_stopped(&c.job_processes(id)));

    // After resume_after of idleness everything continues, on both nodes together.
    wait_for("the job resumed", LONG, || {
        (c.show(id)["state"] == "running").then_some(())
    });
    wait_for("every job process running again", LONG, || {
        none_stopped(&c.job_processes(id)).then_some(())
    });
    let out = c.graze(&["wait", &id.to_string()]);
    let job = c.show(id);
    assert!(out.status.success(), "{job}");
    assert_eq!(job["state"], "completed", "{job}");
    let ev = events(&job);
    assert!(
        ev.iter()
            .any(|e| e.starts_with("suspended: node a3 is owner-busy")),
        "{ev:?}"
    );
    assert!(
        ev.iter().any(|e| e.starts_with("resumed: every node")),
        "{ev:?}"
    );
    check_pi(&c, id);
}

#[test]
fn owner_stays_vacates_and_requeues() {
    let mut c = Cluster::start(&[]);
    let policy = [
        "--resume-after",
        "60s",
        "--vacate-after",
        "4s",
        "--vacate-grace",
        "2s",
    ];
    c.add_agent("b2", "127.0.0.2", 2, &policy);
    c.add_agent("b3", "127.0.0.3", 2, &policy);
    c.wait_offered(2);
    let id = submit(&c, &pi_args(100));
    c.wait_ranks(id, 4, LONG);

    // The owner of b3 stays: keeps typing until the job has left.
    let typing = Typing::start(c.agents[1].idle_file.clone(), Duration::from_secs(120));
    wait_for("the job vacated and requeued", LONG, || {
        let job = c.show(id);
        (job["state"] == "queued" && job["requeues"] == 1).then_some(())
    });
    // Nothing of the job survives on either node, and it is not placed back on b3.
    wait_for("no process of the job left", LONG, || {
        c.job_processes(id).is_empty().then_some(())
    });
    // Once both nodes confirmed the old run gone (their JobCleared may come a moment after
    // the processes are), the job waits for cores, avoiding b3.
    let waiting = wait_for("the job waiting for cores, avoiding b3", LONG, || {
        let job = c.show(id);
        assert_eq!(job["state"], "queued", "{job}");
        let w = job["waiting_for"].as_str().unwrap_or_default().to_string();
        (!w.contains("previous run")).then_some(w)
    });
    assert!(waiting.contains("avoiding b3"), "{waiting}");

    // Another idle PC joins: the job runs on b2 + b4 and completes.
    c.add_agent("b4", "127.0.0.4", 2, &policy);
    let out = c.graze(&["wait", &id.to_string()]);
    drop(typing);
    let job = c.show(id);
    assert!(out.status.success(), "{job}");
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["exit"]["code"], 0);
    let hosts = c.hosts(id);
    assert!(!hosts.iter().any(|h| h == "b3"), "{hosts:?}");
    let text = String::from_utf8_lossy(&c.graze(&["show", &id.to_string()]).stdout).to_string();
    assert!(
        text.contains("vacated and requeued: the owner of node b3 stayed busy for 4s"),
        "{text}"
    );
    check_pi(&c, id);
}

/// Local time of day in seconds, as the agents see it.
fn local_seconds() -> u32 {
    // SAFETY: localtime_r writes only into our struct.
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        (tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec.min(59)) as u32
    }
}

fn hms(s: u32) -> String {
    let s = s % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

#[test]
fn window_end_vacates() {
    let mut c = Cluster::start(&[]);
    let now = local_seconds();
    // Open since a minute ago, closing in 15 s.
    let window = format!("daily {}-{}", hms(now + 86_400 - 60), hms(now + 15));
    c.add_agent("w2", "127.0.0.2", 2, &["--window", &window]);
    c.wait_offered(1);
    let id = c.submit(&["-n", "1", "--", "sleep", "300"]);
    wait_for("the job running", LONG, || {
        (!c.job_processes(id).is_empty()).then_some(())
    });
    wait_for("the window to end and the job to be vacated", LONG, || {
        let job = c.show(id);
        (job["state"] == "queued").then_some(())
    });
    assert_eq!(availability(&c, "w2"), "outside_window");
    wait_for("no process of the job left", LONG, || {
        c.job_processes(id).is_empty().then_some(())
    });
    let ev = events(&c.show(id));
    assert!(
        ev.iter()
            .any(|e| e.contains("vacated and requeued: the availability window of node w2 ended")),
        "{ev:?}"
    );
}

#[test]
fn owner_cpu_load_withdraws_cores() {
    let mut c = Cluster::start(&[]);
    // All test agents share this machine: a threshold the busy loop (two cores' worth) is
    // sure to cross, high enough that ordinary background load does not.
    c.add_agent("c2", "127.0.0.2", 1, &["--owner-cpu-max", "70"]);
    c.wait_offered(1);
    let id = c.submit(&["-n", "1", "--", "sleep", "300"]);
    let pids = wait_for("the job running", LONG, || {
        let p = c.job_processes(id);
        (!p.is_empty()).then_some(p)
    });
    // Two bounded busy loops outside graze.
    let mut loops: Vec<std::process::Child> = (0..2)
        .map(|_| {
            std::process::Command::new("timeout")
                .args(["90", "sh", "-c", "while :; do :; done"])
                .spawn()
                .unwrap()
        })
        .collect();
    let seen = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for("the node to withdraw its cores", LONG, || {
            (availability(&c, "c2") == "owner_cpu_busy").then_some(())
        });
        wait_for("the job's processes stopped", LONG, || {
            all_stopped(&pids).then_some(())
        });
        wait_for("the job suspended", LONG, || {
            (c.show(id)["state"] == "suspended").then_some(())
        });
    }));
    for l in &mut loops {
        // SIGTERM to `timeout`, which passes it on to its busy child (SIGKILL would orphan it).
        unsafe { libc::kill(l.id() as i32, libc::SIGTERM) };
        let _ = l.wait();
    }
    if let Err(e) = seen {
        std::panic::resume_unwind(e);
    }
    let ev = events(&c.show(id));
    assert!(
        ev.iter()
            .any(|e| e.starts_with("suspended: node c2 is owner-busy (cpu")),
        "{ev:?}"
    );
}

/// A real X server: Xvfb on a free display it picks itself; killed on drop.
struct Xvfb {
    child: std::process::Child,
    /// `:N`.
    display: String,
}

impl Xvfb {
    fn start() -> Xvfb {
        use std::io::BufRead;
        let mut child = std::process::Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-nolisten",
                "tcp",
                "-screen",
                "0",
                "640x480x24",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("Xvfb (Debian package xvfb) must be installed");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let n: u32 = line.trim().parse().expect("Xvfb display number");
        Xvfb {
            child,
            display: format!(":{n}"),
        }
    }

    /// `xdotool key a` on this display.
    fn key(&self) {
        let st = std::process::Command::new("xdotool")
            .args(["key", "a"])
            .env("DISPLAY", &self.display)
            .status()
            .expect("xdotool (Debian package xdotool) must be installed");
        assert!(st.success());
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn real_graphical_source_under_xvfb() {
    let x = Xvfb::start();
    let mut c = Cluster::start(&[]);
    let src = format!("x11:{}", x.display);
    c.add_agent("x2", "127.0.0.2", 1, &["--idle-source", &src]);
    // The same agent without any display: keeps running, reports the source unavailable.
    c.add_agent("x3", "127.0.0.3", 1, &["--idle-source", "x11"]);
    c.wait_offered(2);
    let node = c.node("x2");
    assert!(
        node["status"]["idle_sources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == &serde_json::json!(src)),
        "{node}"
    );
    let node = c.node("x3");
    assert_eq!(node["status"]["unavailable_sources"][0], "x11:", "{node}");

    let id = c.submit(&["-n", "1", "--nodes", "x2", "--", "sleep", "300"]);
    let pids = wait_for("the job running", LONG, || {
        let p = c.job_processes(id);
        (!p.is_empty()).then_some(p)
    });
    x.key();
    wait_for("the job's processes stopped by a key press", LONG, || {
        all_stopped(&pids).then_some(())
    });
    // The agent stops the processes first, then tells the scheduler.
    wait_for("x2 shown owner-busy", LONG, || {
        (availability(&c, "x2") == "owner_active").then_some(())
    });
    if let Some(st) = c.agents[1].child.try_wait().unwrap() {
        panic!("x3 exited: {st}");
    }
    drop(x);
    // The X server goes away: the agent survives it and reports the source unavailable.
    wait_for("x2 to report its X source unavailable", LONG, || {
        let n = c.node("x2");
        (n["status"]["unavailable_sources"][0] == serde_json::json!(src)).then_some(())
    });
    assert!(
        c.agents[0].child.try_wait().unwrap().is_none(),
        "x2 died with its X server"
    );
    assert_eq!(c.node("x2")["online"], true);
}

/// `graze-agent doctor` under a real X server: lists the sources (a missing file source
/// says why), asks for a touch, and reports that the x11 source saw `xdotool key` and how
/// late.
#[test]
fn doctor_sees_a_key_press_under_xvfb() {
    use std::io::{BufRead, BufReader};
    ensure_built();
    let x = Xvfb::start();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-file");
    let mut child = std::process::Command::new(bin("graze-agent"))
        .args(["doctor", "--wait", "20s", "--idle-source"])
        .arg(format!("x11:{}", x.display))
        .arg("--idle-source")
        .arg(format!("file:{}", missing.display()))
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut text = String::new();
    // Up to the prompt, then the key press.
    loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "doctor ended early:\n{text}"
        );
        text.push_str(&line);
        if line.contains("now touch the keyboard") {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    x.key();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    text.push_str(&rest);
    let st = child.wait().unwrap();
    assert!(st.success(), "{text}");
    let src = format!("x11:{}", x.display);
    assert!(
        text.contains(&format!("{src}: found, owner idle for")),
        "{text}"
    );
    assert!(
        text.contains(&format!("file:{}: broken", missing.display()))
            || text.contains(&format!("file:{}: not found", missing.display())),
        "{text}"
    );
    let seen = text
        .lines()
        .find(|l| l.contains(&format!("{src}: saw the input")))
        .unwrap_or_else(|| panic!("{text}"));
    // "... saw the input N ms after the prompt, M ms after it happened"
    // With a latency in ms (a figure, not a bound: the machine may be loaded).
    let after = seen
        .split(", ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(after.is_some(), "{seen}");
    assert!(text.contains("ok: graze notices the owner"), "{text}");
}
