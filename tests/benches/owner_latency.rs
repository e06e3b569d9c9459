//! The owner keeps the CPU (issue 14): a latency probe at nice 0, standing in for the owner's
//! interactive programs, asks to wake every 1 ms and records how late each wake-up is; first
//! on the idle machine, then with a 2-rank graze job spinning on every core of a real agent,
//! with the jobs' lowest CPU weight (cgroup v2 `cpu.weight` 1 and `cpu.idle` 1 where the kernel
//! has it, on top of nice 19) and without it (`GRAZE_CPU_WEIGHT=off`: nice 19 only). Prints
//! p50/p99/max of the delay; asserts nothing. Target: with a job, the p99 rises by less than
//! 1 ms over the idle machine.
//! `cargo bench -p graze-tests --bench owner_latency` (`-- --test`: a short run).
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use std::time::{Duration, Instant};

/// `n` wake-ups 1 ms apart (relative sleeps), each one's delay past its due time.
fn probe(n: usize) -> Vec<Duration> {
    let period = Duration::from_millis(1);
    let mut late = Vec::with_capacity(n);
    for _ in 0..n {
        let due = Instant::now() + period;
        std::thread::sleep(period);
        late.push(Instant::now().saturating_duration_since(due));
    }
    late
}

fn report(name: &str, mut v: Vec<Duration>) -> Duration {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let at = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    let p99 = at(0.99);
    println!(
        "  {name:<52} p50 {:>8.0} us   p99 {:>8.0} us   max {:>8.0} us   (n={})",
        us(at(0.5)),
        us(p99),
        us(v[v.len() - 1]),
        v.len()
    );
    p99
}

/// The probe while a 2-rank job spins on both cores of an agent (its CPU weight on or off).
fn with_job(weight: bool, n: usize) -> Vec<Duration> {
    // The agent reads GRAZE_CPU_WEIGHT from its environment, inherited from here.
    if weight {
        std::env::remove_var("GRAZE_CPU_WEIGHT");
    } else {
        std::env::set_var("GRAZE_CPU_WEIGHT", "off");
    }
    let mut c = Cluster::start(&[]);
    c.add_agent("lat", "127.0.0.2", 2, &[]);
    c.wait_offered(1);
    let id = c.submit(&[
        "-n",
        "2",
        "--",
        "mpiexec",
        "sh",
        "-c",
        "echo spinning; while :; do :; done",
    ]);
    c.wait_output(id, "spinning", 2);
    // Let the scheduler settle the spinners on the cores.
    std::thread::sleep(Duration::from_millis(500));
    let late = probe(n);
    let out = c.graze(&["cancel", &id.to_string()]);
    assert!(out.status.success(), "{out:?}");
    std::env::remove_var("GRAZE_CPU_WEIGHT");
    late
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let n = if quick { 500 } else { 10_000 };
    ensure_built();
    println!("owner latency: a nice-0 probe waking every 1 ms, its delay past the due time");
    let cgroup_note = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "cgroup v2"
    } else {
        "no cgroup v2"
    };
    let idle = report("idle machine", probe(n));
    let weighted = report(
        &format!("2-rank job spinning, lowest CPU weight ({cgroup_note})"),
        with_job(true, n),
    );
    let niced = report(
        "2-rank job spinning, nice 19 only (GRAZE_CPU_WEIGHT=off)",
        with_job(false, n),
    );
    let rise = |d: Duration| (d.as_secs_f64() - idle.as_secs_f64()) * 1e3;
    println!(
        "  p99 rise over the idle machine: {:.3} ms with the weight, {:.3} ms without (target < 1 ms)",
        rise(weighted),
        rise(niced)
    );
}
