//! Issue 11, EASY backfill and `--exclusive`, with real processes: a scheduler and 4 agents
//! of 2 cores on loopback, plain `sleep` jobs with `--time`.
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use serde_json::Value;
use std::time::Duration;

/// Generous bounds: the machine is shared and may be loaded.
const LONG: Duration = Duration::from_secs(60);

fn state(c: &Cluster, id: u64) -> String {
    c.show(id)["state"].as_str().unwrap_or("").to_string()
}

fn wait_state(c: &Cluster, id: u64, want: &str) -> Value {
    wait_for(&format!("job {id} {want}"), LONG, || {
        let j = c.show(id);
        (j["state"] == want).then_some(j)
    })
}

/// When the job's (last) run started, from its events.
fn start_event(job: &Value) -> u64 {
    job["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["what"].as_str().unwrap().starts_with("started on "))
        .and_then(|e| e["at_ms"].as_u64())
        .unwrap_or_else(|| panic!("no start event: {job}"))
}

fn cluster() -> Cluster {
    let mut c = Cluster::start(&[]);
    for (i, name) in ["a2", "a3", "a4", "a5"].iter().enumerate() {
        c.add_agent(name, &format!("127.0.0.{}", i + 2), 2, &[]);
    }
    c.wait_offered(4);
    c
}

#[test]
fn short_jobs_backfill_and_the_reserved_job_starts_by_its_reservation() {
    let c = cluster();
    // 6 of the 8 cores, limit 20 s; it ends by itself after 6 s.
    let a = c.submit(&["-n", "6", "--time", "20s", "--", "sleep", "6"]);
    let a_job = wait_state(&c, a, "running");
    let a_start = a_job["started_ms"].as_u64().unwrap();

    // The whole cluster: it waits, reserved for when job a reaches its limit.
    let head = c.submit(&["-n", "8", "--time", "30s", "--", "sleep", "1"]);
    let h = c.show(head);
    assert_eq!(h["state"], "queued", "{h}");
    let reserved = h["expected_start_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no reservation shown: {h}"));
    assert_eq!(reserved, a_start + 20_000, "{h}");
    let queue = String::from_utf8_lossy(&c.graze(&["queue"]).stdout).to_string();
    assert!(queue.contains("(reserved)"), "{queue}");

    // 1-core jobs that end well before the reservation run meanwhile on the 2 free cores.
    let short: Vec<u64> = (0..2)
        .map(|_| c.submit(&["-n", "1", "--time", "3s", "--", "sleep", "1"]))
        .collect();
    // One whose limit runs past the reservation waits, and says why.
    let long = c.submit(&["-n", "1", "--time", "60s", "--", "true"]);
    for s in &short {
        let j = wait_state(&c, *s, "completed");
        assert!(start_event(&j) < reserved, "{j}");
    }
    let l = c.show(long);
    assert_eq!(l["state"], "queued", "{l}");
    let why = l["waiting_for"].as_str().unwrap_or("");
    assert!(why.contains(&format!("would delay job {head}")), "{l}");

    // Job a ends (after 6 s): the reserved job starts, no later than its reservation.
    let h = wait_state(&c, head, "running");
    let started = start_event(&h);
    assert!(
        started <= reserved,
        "started {started}, reserved {reserved}: {h}"
    );
    assert_eq!(state(&c, long), "queued");
    wait_state(&c, head, "completed");
    // Then the long job runs.
    wait_state(&c, long, "completed");
}

#[test]
fn exclusive_job_has_its_node_to_itself() {
    let c = cluster();
    let x = c.submit(&["-n", "1", "--exclusive", "--", "sleep", "30"]);
    wait_state(&c, x, "running");
    let host = c.hosts(x)[0].clone();
    let node = c.node(&host);
    assert_eq!(node["used_cores"], 2, "{node}");
    // Six 1-core jobs fill the other three nodes; none lands beside the exclusive job, though
    // its node has a core it does not use.
    let others: Vec<u64> = (0..6)
        .map(|_| c.submit(&["-n", "1", "--", "sleep", "30"]))
        .collect();
    for o in &others {
        wait_state(&c, *o, "running");
        assert_ne!(c.hosts(*o)[0], host, "job {o} beside the exclusive job");
    }
    let node = c.node(&host);
    assert_eq!(node["jobs"], serde_json::json!([x]), "{node}");
    // One more 1-core job waits: the exclusive job's free core is not for it.
    let more = c.submit(&["-n", "1", "--", "true"]);
    assert_eq!(state(&c, more), "queued");
    for id in others.iter().chain([&x, &more]) {
        c.graze(&["cancel", &id.to_string()]);
    }
}
