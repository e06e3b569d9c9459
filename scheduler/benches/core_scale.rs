//! Scheduler core scale: one scheduling pass with 100,000 queued jobs on 2,000 simulated nodes.
//! Prints figures; asserts nothing. `cargo bench -p graze-scheduler --bench core_scale`.
#![allow(clippy::unwrap_used)]

use graze_proto::{Availability, ExitStatus, JobSpec, NodeInfo, NodeStatus, Unit};
use graze_scheduler::core::{Core, CoreConfig};
use std::time::Instant;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    pages * 4
}

fn spec(n: u32, i: u64) -> JobSpec {
    JobSpec {
        name: Some(format!("job{i}")),
        nprocs: n,
        unit: Unit::Core,
        priority: (i % 3) as i32,
        groups: vec![],
        nodes: vec![],
        command: vec!["mpiexec".into(), "graze-pi".into()],
        cwd: None,
        env: vec![],
        user: "bench".into(),
        ..Default::default()
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test" || a == "--quick");
    let (nodes, jobs) = if quick {
        (200, 10_000)
    } else {
        (2_000, 100_000)
    };
    let cores = 16;
    let rss0 = rss_kib();
    let mut c = Core::new(CoreConfig::default());
    for n in 0..nodes {
        let info = NodeInfo {
            name: format!("pc{n:05}"),
            addr: String::new(),
            cores,
            sockets: 2,
            memory_bytes: 16 << 30,
            groups: if n % 4 == 0 {
                vec!["gpu".into()]
            } else {
                vec![]
            },
            mpi: vec![],
            software: "bench".into(),
            policy: Default::default(),
            held: vec![],
            instance: String::new(),
            isolation: None,
        };
        c.node_connected(n as u64, info, 0).unwrap();
        let st = NodeStatus {
            core_load: vec![0.0; cores as usize],
            owner_cpu: 0.0,
            owner_idle_ms: (n as u64 * 7919) % 3_600_000,
            availability: Availability::Offered,
            idle_sources: vec!["file:/x".into()],
            unavailable_sources: vec![],
            window_ends_ms: None,
        };
        c.node_status(n as u64, st, 0);
    }
    // Fill every node with a whole-node job.
    for i in 0..nodes as u64 {
        c.submit(spec(cores, i), "s".into(), 1).unwrap();
    }
    while c.poll_output().is_some() {}
    let t = Instant::now();
    for i in 0..jobs as u64 {
        c.submit(spec(1 + (i % 48) as u32, i), "s".into(), 2 + i)
            .unwrap();
    }
    let submit = t.elapsed();
    while c.poll_output().is_some() {}
    let rss1 = rss_kib();
    assert_eq!(c.queued().len(), jobs);

    // One node's job ends and its cores come back: one pass over the whole queue.
    let first = c.node_views()[0].jobs[0];
    let t = Instant::now();
    c.job_exited(
        0,
        first,
        ExitStatus {
            code: Some(0),
            signal: None,
        },
        10_000_000,
    );
    c.job_cleared(0, first, 10_000_001);
    let pass = t.elapsed();
    let started = c.queued().len();
    while c.poll_output().is_some() {}

    // Worst case: a fully free cluster appears at once (every running job cleared), placing
    // as many queued jobs as fit in one burst of passes.
    let t = Instant::now();
    let running: Vec<(u64, graze_proto::JobId)> = c
        .node_views()
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.jobs.first().map(|j| (i as u64, *j)))
        .collect();
    for (conn, j) in &running {
        c.job_exited(
            *conn,
            *j,
            ExitStatus {
                code: Some(0),
                signal: None,
            },
            20_000_000,
        );
        c.job_cleared(*conn, *j, 20_000_000);
    }
    let burst = t.elapsed();
    while c.poll_output().is_some() {}

    println!("core_scale: {nodes} nodes x {cores} cores, {jobs} queued jobs");
    println!(
        "  submit {jobs} jobs:          {:>10.1} ms ({:.2} us/job)",
        submit.as_secs_f64() * 1e3,
        submit.as_secs_f64() * 1e6 / jobs as f64
    );
    println!(
        "  one scheduling pass:       {:>10.3} ms ({} jobs still queued)",
        pass.as_secs_f64() * 1e3,
        started
    );
    println!(
        "  {} node releases + passes: {:>10.1} ms ({} jobs still queued)",
        running.len(),
        burst.as_secs_f64() * 1e3,
        c.queued().len()
    );
    println!(
        "  memory for the queue:      {:>10.1} MiB RSS ({:.0} bytes/job)",
        (rss1 - rss0) as f64 / 1024.0,
        (rss1 - rss0) as f64 * 1024.0 / jobs as f64
    );
}
