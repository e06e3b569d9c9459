//! Issue 2 acceptance: real scheduler, real agents on 127.0.0.x, real MPICH, real QUIC.
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use std::time::{Duration, Instant};

const PI_ARGS: [&str; 6] = [
    "mpiexec",
    "graze-pi",
    "--samples",
    "200000",
    "--report-ms",
    "100",
];

#[test]
fn wait_then_run_across_nodes() {
    // The cluster will grow: accept jobs up to 16 ranks before the 4th node is known.
    let mut c = Cluster::start(&["--max-job-cores", "16"]);
    c.add_agent("a2", "127.0.0.2", 2, &[]);
    c.add_agent("a3", "127.0.0.3", 2, &[]);
    c.add_agent("a4", "127.0.0.4", 2, &[]);
    c.wait_offered(3);

    let mut args = vec!["-n", "8", "--name", "pi8", "--"];
    args.extend_from_slice(&PI_ARGS);
    let id = c.submit(&args);
    let job = c.show(id);
    assert_eq!(job["state"], "queued", "{job}");
    assert_eq!(job["waiting_for"], "needs 8 cores, 6 offered", "{job}");
    // `graze queue` says why, in words.
    let q = c.graze(&["queue"]);
    let qs = String::from_utf8_lossy(&q.stdout);
    assert!(qs.contains("needs 8 cores, 6 offered"), "{qs}");

    c.add_agent("a5", "127.0.0.5", 2, &[]);
    let out = c.graze(&["wait", &id.to_string()]);
    let job = c.show(id);
    assert!(
        out.status.success(),
        "wait: {:?} {}\n{job}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["exit"]["code"], 0);
    let hosts = job["allocation"].as_array().unwrap();
    assert!(hosts.len() >= 3, "ran on {} nodes: {job}", hosts.len());
    let slots: u64 = hosts.iter().map(|h| h["slots"].as_u64().unwrap()).sum();
    assert_eq!(slots, 8);

    let r0 = c.graze(&["logs", &id.to_string(), "--rank", "0"]);
    let text = String::from_utf8_lossy(&r0.stdout);
    let (n, pi) =
        computed_pi(&text).unwrap_or_else(|| panic!("no Computed line from rank 0:\n{text}"));
    assert_eq!(n, 8);
    assert!((pi - std::f64::consts::PI).abs() < 0.01, "pi = {pi}");
    assert!(text.contains("pi: "), "{text}");
    for r in 0..8 {
        let out = c.graze(&["logs", &id.to_string(), "--rank", &r.to_string()]);
        assert!(out.status.success());
        assert!(!out.stdout.is_empty(), "rank {r} has no output");
    }
}

#[test]
fn never_fits_is_refused() {
    let mut c = Cluster::start(&[]);
    for (i, ip) in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
        .iter()
        .enumerate()
    {
        c.add_agent(&format!("n{i}"), ip, 2, &[]);
    }
    c.wait_offered(4);
    let out = c.graze(&["submit", "-n", "100", "--", "mpiexec", "graze-pi"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "job needs 100 cores but the whole cluster has 8 (4 nodes): it could never run"
        ),
        "{err}"
    );
    let q = c.graze_json(&["queue", "--all", "--json"]);
    assert_eq!(q.as_array().unwrap().len(), 0, "{q}");
}

#[test]
fn wrong_access_is_refused() {
    let mut c = Cluster::start(&[]);
    let good = graze_net::Access::load(&c.access).unwrap();

    // A wrong token.
    let bad_token = c.dir.path().join("bad-token.toml");
    graze_net::Access {
        token: "0".repeat(64),
        ..good.clone()
    }
    .save(&bad_token)
    .unwrap();
    // A wrong pinned fingerprint.
    let bad_fp = c.dir.path().join("bad-fp.toml");
    graze_net::Access {
        fingerprint: graze_net::fingerprint(b"someone else"),
        ..good.clone()
    }
    .save(&bad_fp)
    .unwrap();

    for (file, expect) in [
        (&bad_token, "invalid cluster token"),
        (&bad_fp, "fingerprint"),
    ] {
        let out = std::process::Command::new(bin("graze"))
            .arg("--access")
            .arg(file)
            .args(["submit", "-n", "1", "--", "true"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{file:?}: {err}");

        let access_ok = c.access.clone();
        c.access = file.clone();
        let agent = c.add_agent("intruder", "127.0.0.9", 2, &[]);
        let _ = agent;
        let a = c.agents.last_mut().unwrap();
        let st = wait_for("the refused agent to exit", Duration::from_secs(30), || {
            a.child.try_wait().unwrap()
        });
        assert!(!st.success());
        let log = c.log("intruder");
        assert!(log.contains(expect), "agent log: {log}");
        c.agents.pop();
        c.access = access_ok;
    }
    let nodes = c.graze_json(&["nodes", "--json"]);
    assert_eq!(nodes.as_array().unwrap().len(), 0, "{nodes}");
    let q = c.graze_json(&["queue", "--all", "--json"]);
    assert_eq!(q.as_array().unwrap().len(), 0, "{q}");
}

#[test]
fn cancel_kills_everything_and_frees_cores() {
    let mut c = Cluster::start(&[]);
    c.add_agent("c2", "127.0.0.2", 2, &[]);
    c.add_agent("c3", "127.0.0.3", 2, &[]);
    c.wait_offered(2);
    // A Pi job that never ends on its own: no stop before round 10^8. (A tiny tolerance is
    // not enough: the seed's delta compares two rounds' estimates, and two rounds with the
    // same hit count, about one in a thousand here, give delta 0 and converge at once.)
    let id = c.submit(&[
        "-n",
        "4",
        "--",
        "mpiexec",
        "graze-pi",
        "--samples",
        "100000",
        "--min-rounds",
        "100000000",
        "--max-rounds",
        "100000000",
    ]);
    wait_for(
        "rank output from both nodes",
        Duration::from_secs(60),
        || {
            let out = c.graze(&["logs", &id.to_string(), "--rank", "3"]);
            (!out.stdout.is_empty()).then_some(())
        },
    );
    let job = c.show(id);
    assert_eq!(job["state"], "running", "{job}");
    assert_eq!(job["allocation"].as_array().unwrap().len(), 2, "{job}");
    wait_for(
        "the job's processes to be visible before the cancel",
        Duration::from_secs(20),
        || (!c.job_processes(id).is_empty()).then_some(()),
    );

    let out = c.graze(&["cancel", &id.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = Instant::now();
    wait_for("no process of the job left", Duration::from_secs(2), || {
        c.job_processes(id).is_empty().then_some(())
    });
    eprintln!("processes gone {:?} after cancel", t.elapsed());
    wait_for("the job cancelled", Duration::from_secs(10), || {
        (c.show(id)["state"] == "cancelled").then_some(())
    });
    // Its cores are offered again: a 4-core job runs now.
    let id2 = c.submit(&["-n", "4", "--", "mpiexec", "true"]);
    let out = c.graze(&["wait", &id2.to_string()]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.show(id2)
    );
}

/// Two clusters on one machine whose agents share a name (two test runs, two demos): each
/// agent's job 1 is its own. Starting or cancelling one must not touch the other (they once
/// shared the cgroup `graze-twin/job-1`, so starting the second killed the first).
#[test]
fn same_named_agents_of_two_clusters_keep_to_their_own_jobs() {
    let mut a = Cluster::start(&[]);
    let mut b = Cluster::start(&[]);
    a.add_agent("twin", "127.0.0.2", 1, &[]);
    b.add_agent("twin", "127.0.0.2", 1, &[]);
    a.wait_offered(1);
    b.wait_offered(1);
    let running = |c: &Cluster, id: u64| {
        wait_for("the job's processes", Duration::from_secs(30), || {
            (c.show(id)["state"] == "running" && !c.job_processes(id).is_empty()).then_some(())
        })
    };
    let ida = a.submit(&["-n", "1", "--", "sleep", "300"]);
    running(&a, ida);
    let idb = b.submit(&["-n", "1", "--", "sleep", "300"]);
    assert_eq!(ida, idb, "both clusters number their first job alike");
    running(&b, idb);
    let pa = a.job_processes(ida);
    assert!(
        !pa.is_empty(),
        "starting the other cluster's job killed this one"
    );
    assert_eq!(a.show(ida)["state"], "running", "{}", a.show(ida));

    let out = b.graze(&["cancel", &idb.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("b's job gone", Duration::from_secs(10), || {
        b.job_processes(idb).is_empty().then_some(())
    });
    wait_for("b's job cancelled", Duration::from_secs(10), || {
        (b.show(idb)["state"] == "cancelled").then_some(())
    });
    assert_eq!(
        a.job_processes(ida),
        pa,
        "cancelling the other cluster's job touched this one"
    );
    assert_eq!(a.show(ida)["state"], "running", "{}", a.show(ida));
}
