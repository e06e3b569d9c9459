//! Issue 14: the `logind` idle source against a stand-in logind (`graze_tests::logind`) on a
//! private dbus-daemon. Real scheduler, real agents, real MPICH jobs.
#![allow(clippy::unwrap_used)]

use graze_tests::logind::FakeLogind;
use graze_tests::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Generous bounds: the machine is shared and may be loaded.
const LONG: Duration = Duration::from_secs(120);
/// The owner's last input, for sessions idle from the start.
const HOUR: Duration = Duration::from_secs(3600);

/// A 2-rank Pi job on node `node`, long enough to be stopped while it runs.
fn submit_pi(c: &Cluster, node: &str) -> u64 {
    c.submit(&[
        "-n",
        "2",
        "--nodes",
        node,
        "--name",
        "pi-logind",
        "--",
        "mpiexec",
        "graze-pi",
        "--samples",
        "20000000",
        "--tolerance",
        "1",
        "--min-rounds",
        "1000",
        "--max-rounds",
        "1000",
        "--report-ms",
        "1000",
    ])
}

fn status(c: &Cluster, node: &str) -> Value {
    c.node(node)["status"].clone()
}

fn lists(v: &Value, what: &str) -> bool {
    v.as_array().is_some_and(|a| a.iter().any(|s| s == what))
}

/// An agent whose owner is a graphical session idle for an hour, with the usual `file:`
/// source idle for as long (so logind decides).
fn cluster_with_session(logind: &FakeLogind, node: &str, extra: &[&str]) -> Cluster {
    logind.add_session("2", "x11", "user", Some(HOUR));
    let mut c = Cluster::start(&[]);
    let spec = logind.spec();
    let mut args = vec!["--idle-source", spec.as_str()];
    args.extend_from_slice(extra);
    c.add_agent(node, "127.0.0.2", 2, &args);
    c.wait_offered(1);
    let st = status(&c, node);
    assert!(lists(&st["idle_sources"], &spec), "{st}");
    c
}

#[test]
fn idle_hint_false_stops_the_running_job() {
    let logind = FakeLogind::start();
    let c = cluster_with_session(&logind, "l2", &[]);
    let id = submit_pi(&c, "l2");
    let pids = c.wait_ranks(id, 2, LONG);

    // The owner moves the mouse: the desktop clears its idle hint.
    let t0 = Instant::now();
    logind.set_idle("2", None);
    wait_for(
        "every job process stopped (state T) after IdleHint=false",
        Duration::from_secs(10),
        || all_stopped(&c.job_processes(id)).then_some(()),
    );
    let took = t0.elapsed();
    // The figure, for people; the bound above is generous on purpose (a shared machine).
    eprintln!(
        "IdleHint=false to all {} job processes stopped (seen by 50 ms polling): {took:?}",
        pids.len()
    );
    wait_for("l2 shown owner-busy", LONG, || {
        (status(&c, "l2")["availability"]["state"] == "owner_active").then_some(())
    });
    wait_for("the job shown suspended", LONG, || {
        (c.show(id)["state"] == "suspended").then_some(())
    });
    let out = c.graze(&["cancel", &id.to_string()]);
    assert!(out.status.success());
}

#[test]
fn an_idle_inhibitor_keeps_the_pc_from_being_offered() {
    let logind = FakeLogind::start();
    let c = cluster_with_session(&logind, "l2", &[]);
    // A sleep delay inhibitor (NetworkManager's kind) is not presence; an idle block is.
    logind.inhibit("sleep", "NetworkManager", "", "delay");
    let mpv = logind.inhibit("idle", "mpv", "playing video", "block");
    wait_for("l2 shown owner-present", LONG, || {
        let a = status(&c, "l2")["availability"].clone();
        (a == json!({"state": "owner_present", "reason": "inhibitor 'mpv: playing video'"}))
            .then_some(())
    });
    assert!(c.offered_nodes().is_empty());
    let table = String::from_utf8_lossy(&c.graze(&["nodes"]).stdout).to_string();
    assert!(
        table.contains("owner present: inhibitor 'mpv: playing video'"),
        "{table}"
    );
    // A job for that node waits.
    let id = c.submit(&["-n", "1", "--nodes", "l2", "--", "sleep", "300"]);
    assert_eq!(c.show(id)["state"], "queued");

    // The video ends: the node is offered again (start_after 0 here) and the job starts.
    logind.release(mpv);
    wait_for("the job running once the inhibitor is gone", LONG, || {
        (c.show(id)["state"] == "running").then_some(())
    });
    let out = c.graze(&["cancel", &id.to_string()]);
    assert!(out.status.success());
}

#[test]
fn a_lost_bus_leaves_the_source_unavailable_and_the_agent_alive() {
    let mut logind = FakeLogind::start();
    let mut c = cluster_with_session(&logind, "l2", &[]);
    // An agent whose bus is not there at all: the source is skipped from the start.
    let dir = tempfile::tempdir().unwrap();
    let nowhere = format!("logind:unix:path={}", dir.path().join("no-bus").display());
    c.add_agent("l3", "127.0.0.3", 1, &["--idle-source", &nowhere]);
    c.wait_offered(2);
    let st = status(&c, "l3");
    assert!(lists(&st["unavailable_sources"], &nowhere), "{st}");

    logind.kill_bus();
    let spec = logind.spec();
    wait_for("l2 to report its logind source unavailable", LONG, || {
        lists(&status(&c, "l2")["unavailable_sources"], &spec).then_some(())
    });
    for a in &mut c.agents {
        assert!(a.child.try_wait().unwrap().is_none(), "{} died", a.name);
    }
    let node = c.node("l2");
    assert_eq!(node["online"], true, "{node}");
    // The file source still tells: the PC is still offered.
    assert_eq!(node["status"]["availability"]["state"], "offered", "{node}");
    assert!(
        c.log("l2").contains("logind idle source unavailable"),
        "{}",
        c.log("l2")
    );
}
