//! Issue 13 item 3, untimed: 300 simulated agents (`graze_tests::sim`: the real protocol over
//! real QUIC, from 127.0.1.x addresses) register with a real scheduler, each receives work from
//! a 600-task array, runs it (through owner returns that suspend and resume jobs), reports
//! its end and clears it; every task completes, and when the agents stop every node goes
//! offline.
#![allow(clippy::unwrap_used)]

use graze_tests::sim::{self, Sim, SimConfig};
use graze_tests::*;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

const AGENTS: usize = 300;
const TASKS: u64 = 600;

#[test]
fn three_hundred_agents_register_run_jobs_and_leave() {
    sim::raise_nofile();
    let c = Cluster::start(&[]);
    let access = graze_net::Access::load(&c.create_token("agent", "sim")).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut s = Sim::new(SimConfig {
        access,
        cores: 1,
        job_time: Duration::from_millis(1500),
        status_every: Duration::from_secs(1),
        offer_one_in: 1,
        owner_every: Some(Duration::from_secs(4)),
        owner_for: Duration::from_millis(700),
        node_timeout: graze_proto::DEFAULT_NODE_TIMEOUT,
    });
    let stats = s.stats.clone();
    for i in 0..AGENTS {
        s.spawn(i, sim::loopback(i));
    }
    wait_for("300 agents registered", Duration::from_secs(90), || {
        (stats.registered.load(Relaxed) as usize == AGENTS).then_some(())
    });
    assert_eq!(stats.failures.load(Relaxed), 0, "{:?}", stats.errors);
    let nodes = c.graze_json(&["nodes", "--json"]);
    assert_eq!(nodes.as_array().unwrap().len(), AGENTS);

    let a = c.submit(&["-n", "1", "--array", &format!("1-{TASKS}"), "--", "true"]);
    wait_for(
        "every task's end reported",
        Duration::from_secs(120),
        || (stats.cleared.load(Relaxed) >= TASKS).then_some(()),
    );
    let out = c.graze(&["wait", &a.to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "wait: {:?} {err}", out.status);
    assert_eq!(err.trim(), format!("array {a}: {TASKS} completed"));
    assert_eq!(stats.exited.load(Relaxed), TASKS);
    // 600 one-core tasks on 300 one-core nodes: the first wave reaches every node.
    assert_eq!(stats.first_work_us.lock().unwrap().len(), AGENTS);
    assert!(stats.owner_returns.load(Relaxed) > 0);
    assert_eq!(stats.failures.load(Relaxed), 0, "{:?}", stats.errors);

    rt.block_on(s.stop(Duration::from_secs(30)));
    assert_eq!(stats.left.load(Relaxed) as usize, AGENTS);
    wait_for("every node offline", Duration::from_secs(30), || {
        let nodes = c.graze_json(&["nodes", "--json"]);
        let online = nodes
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["online"] == true)
            .count();
        (online == 0).then_some(())
    });
}
