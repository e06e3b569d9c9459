//! Issue 13 item 5: an idle real `graze-agent`'s footprint. One agent registered with a real
//! scheduler on loopback, offering its cores, no jobs; after 5 s to settle, its CPU time (from
//! /proc/PID/stat) over 60 s and its RSS (/proc/PID/status), against the targets (< 10 MB,
//! < 0.1 % of one core) and slurmd's anchors (5.5 MB, about 0.05 %). Asserts nothing.
//! `cargo bench -p graze-tests --bench agent_footprint` (`-- --test` or
//! `GRAZE_FOOTPRINT_SECS=10`: a shorter window).
#![allow(clippy::unwrap_used)]

use graze_tests::{sim, Cluster};
use std::time::{Duration, Instant};

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let secs: u64 = std::env::var("GRAZE_FOOTPRINT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 10 } else { 60 });
    let mut c = Cluster::start(&[]);
    c.add_agent("idle", "127.0.0.2", 2, &[]);
    c.wait_offered(1);
    let pid = c.agents[0].child.id();
    std::thread::sleep(Duration::from_secs(5));
    let (cpu0, t0) = (sim::proc_cpu(pid), Instant::now());
    let mut rss_max = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        rss_max = rss_max.max(sim::proc_status(pid, "VmRSS"));
    }
    let cpu = (sim::proc_cpu(pid) - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
    let rss = sim::proc_status(pid, "VmRSS");
    let anon = sim::proc_status(pid, "RssAnon");
    let file = sim::proc_status(pid, "RssFile");
    println!(
        "agent_footprint: idle graze-agent (offering 2 cores, no jobs) over {secs} s after 5 s to settle"
    );
    println!(
        "  RSS {:.1} MB (max {:.1} MB; anon {:.1}, file {:.1}; peak VmHWM {:.1} MB): {:.2}x the 10 MB target, {:.2}x slurmd's 5.5 MB",
        rss as f64 * 1024.0 / 1e6,
        rss_max as f64 * 1024.0 / 1e6,
        anon as f64 * 1024.0 / 1e6,
        file as f64 * 1024.0 / 1e6,
        sim::proc_status(pid, "VmHWM") as f64 * 1024.0 / 1e6,
        rss as f64 * 1024.0 / 10e6,
        rss as f64 * 1024.0 / 5.5e6
    );
    println!(
        "  CPU {:.3} % of one core: {:.2}x the 0.1 % target, {:.2}x slurmd's 0.05 %; {} threads, {} fds",
        cpu * 100.0,
        cpu * 100.0 / 0.1,
        cpu * 100.0 / 0.05,
        sim::proc_status(pid, "Threads"),
        sim::proc_fds(pid)
    );
}
