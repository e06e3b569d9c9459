//! Owner release latency: from the owner's input (a file touch, an X key press, a logind
//! session's IdleHint turning false) to every job process stopped, on the touched node and on
//! every node of the job; and from the idle threshold to the cores
//! being offered. Prints p50/p99/max; asserts nothing.
//! `cargo bench -p graze-tests --bench owner_release` (`-- --test` for a quick run).
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(120);

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let pct = |p: f64| ms(v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]);
    println!(
        "  {name:<44} p50 {:>7.1} ms   p99 {:>7.1} ms   max {:>7.1} ms   (n={})",
        pct(0.50),
        pct(0.99),
        ms(v[v.len() - 1]),
        v.len()
    );
}

/// pid -> ppid for every process.
fn parents() -> HashMap<u32, u32> {
    let mut m = HashMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            if let Some(ppid) = s
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1))
                .and_then(|p| p.parse().ok())
            {
                m.insert(pid, ppid);
            }
        }
    }
    m
}

/// Of `pids`, those descending from `root`.
fn under(root: u32, pids: &[u32], par: &HashMap<u32, u32>) -> Vec<u32> {
    pids.iter()
        .copied()
        .filter(|p| {
            let mut x = *p;
            for _ in 0..64 {
                match par.get(&x) {
                    Some(&pp) if pp == root => return true,
                    Some(&pp) if pp > 1 => x = pp,
                    _ => return false,
                }
            }
            false
        })
        .collect()
}

fn stopped(p: u32) -> bool {
    process_state(p).is_none_or(|s| s == 'T' || s == 't')
}

/// Touch (or press) and time until `node` procs and then `all` procs are stopped; then run
/// `after` (the owner going idle again, where a source needs it) and wait for the scheduler
/// to resume the job.
fn trial(
    c: &Cluster,
    id: u64,
    node: &[u32],
    all: &[u32],
    input: &dyn Fn(),
    after: &dyn Fn(),
) -> (Duration, Duration) {
    let t0 = Instant::now();
    input();
    let mut t_node = None;
    loop {
        if t_node.is_none() && node.iter().all(|p| stopped(*p)) {
            t_node = Some(t0.elapsed());
        }
        if all.iter().all(|p| stopped(*p)) {
            let t_all = t0.elapsed();
            let t_node = t_node.unwrap_or(t_all);
            after();
            wait_for("the job resumed", LONG, || {
                (c.show(id)["state"] == "running" && all.iter().all(|p| !stopped(*p))).then_some(())
            });
            return (t_node, t_all);
        }
        assert!(t0.elapsed() < LONG, "job processes never stopped");
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn running_job(c: &Cluster, args: &[&str], expect: usize) -> (u64, Vec<u32>) {
    let id = c.submit(args);
    let pids = wait_for("the job's processes", LONG, || {
        let p = c.job_processes(id);
        let sleeps = p
            .iter()
            .filter(|x| process_name(**x).as_deref() == Some("sleep"))
            .count();
        (sleeps == expect).then_some(p)
    });
    (id, pids)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let trials = if quick { 3 } else { 100 };
    println!("owner release ({trials} trials each)");

    // 1. file touch on one node of a 4-rank, 2-node hydra job.
    {
        let mut c = Cluster::start(&[]);
        let policy = ["--resume-after", "1s"];
        c.add_agent("r2", "127.0.0.2", 2, &policy);
        c.add_agent("r3", "127.0.0.3", 2, &policy);
        c.wait_offered(2);
        let (id, all) = running_job(&c, &["-n", "4", "--", "mpiexec", "sleep", "100000"], 4);
        let node = under(c.agents[1].child.id(), &all, &parents());
        assert!(!node.is_empty());
        let file = c.agents[1].idle_file.clone();
        let mut tn = Vec::new();
        let mut ta = Vec::new();
        for _ in 0..trials {
            let (n, a) = trial(&c, id, &node, &all, &|| touch(&file), &|| {});
            tn.push(n);
            ta.push(a);
            // Owner idle for resume_after again: rewind the file so the next touch is news.
            set_mtime_ago(&file, Duration::from_secs(3600));
        }
        println!(
            "  ({} processes on the touched node, {} in the job)",
            node.len(),
            all.len()
        );
        stats("file touch -> touched node stopped", tn);
        stats("file touch -> job stopped on both nodes", ta);
    }

    // 2. xdotool key under Xvfb, x11 source.
    if std::process::Command::new("Xvfb")
        .arg("-help")
        .output()
        .is_ok()
    {
        use std::io::BufRead;
        let mut x = std::process::Command::new("Xvfb")
            .args(["-displayfd", "1", "-nolisten", "tcp"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(x.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let display = format!(":{}", line.trim());
        let mut c = Cluster::start(&[]);
        let src = format!("x11:{display}");
        c.add_agent(
            "k2",
            "127.0.0.2",
            2,
            &["--idle-source", &src, "--resume-after", "1s"],
        );
        c.wait_offered(1);
        let (id, all) = running_job(&c, &["-n", "2", "--", "mpiexec", "sleep", "100000"], 2);
        let key = || {
            std::process::Command::new("xdotool")
                .args(["key", "a"])
                .env("DISPLAY", &display)
                .status()
                .unwrap();
        };
        let mut t = Vec::new();
        for _ in 0..trials {
            // The X idle counter must pass 2 s (owner active) and resume_after first: the
            // trial waits for the resume, which needs exactly that.
            let (n, _) = trial(&c, id, &all, &all, &key, &|| {});
            t.push(n);
        }
        stats("xdotool key (Xvfb) -> job stopped", t);
        drop(c);
        let _ = x.kill();
        let _ = x.wait();
    }

    // 3. logind: a session's IdleHint turning false (the stand-in logind on a private bus).
    {
        let logind = graze_tests::logind::FakeLogind::start();
        let hour = Duration::from_secs(3600);
        logind.add_session("2", "wayland", "user", Some(hour));
        let mut c = Cluster::start(&[]);
        let src = logind.spec();
        c.add_agent(
            "g2",
            "127.0.0.2",
            2,
            &["--idle-source", &src, "--resume-after", "1s"],
        );
        c.wait_offered(1);
        let (id, all) = running_job(&c, &["-n", "2", "--", "mpiexec", "sleep", "100000"], 2);
        let mut t = Vec::new();
        for _ in 0..trials {
            let (n, _) = trial(&c, id, &all, &all, &|| logind.set_idle("2", None), &|| {
                logind.set_idle("2", Some(hour))
            });
            t.push(n);
        }
        stats("logind IdleHint=false -> job stopped", t);
    }

    // 4. idle to offered: start_after 2 s after a touch.
    {
        let mut c = Cluster::start(&[]);
        c.add_agent("i2", "127.0.0.2", 1, &["--start-after", "2s"]);
        c.wait_offered(1);
        let file = c.agents[0].idle_file.clone();
        let mut v = Vec::new();
        let n = if quick { 2 } else { 10 };
        for _ in 0..n {
            touch(&file);
            let threshold = Instant::now() + Duration::from_secs(2);
            wait_for("owner seen", LONG, || {
                (c.offered_nodes().is_empty()).then_some(())
            });
            let seen: HashSet<String> = wait_for("offered again", LONG, || {
                let o = c.offered_nodes();
                (!o.is_empty()).then(|| o.into_iter().collect())
            });
            assert!(seen.contains("i2"));
            v.push(Instant::now().saturating_duration_since(threshold));
        }
        stats("idle threshold -> cores offered (graze nodes)", v);
    }
}
