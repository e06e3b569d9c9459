//! Issue 11, arrays and dependencies, with real processes: a throttled array never runs more
//! than its throttle (checked from the tasks' events, ordered by their sequence numbers),
//! each task sees its own index, cancelling one task or a whole array; an `ok` chain runs in
//! order and a broken `ok` ends its dependent at once as dependency-failed; `submit --wait
//! --parsable`.
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use serde_json::Value;
use std::time::Duration;

fn cluster() -> Cluster {
    let mut c = Cluster::start(&[]);
    for (i, ip) in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
        .iter()
        .enumerate()
    {
        c.add_agent(&format!("n{i}"), ip, 2, &[]);
    }
    c.wait_offered(4);
    c
}

/// `graze show JOB --json` for a reference (`7`, `7.3`).
fn show(c: &Cluster, r: &str) -> Value {
    c.graze_json(&["show", r, "--json"])
}

/// The sequence numbers of a job's start events and of its final event.
fn starts_and_end(job: &Value) -> (Vec<u64>, Option<u64>) {
    let events = job["events"].as_array().unwrap();
    let starts = events
        .iter()
        .filter(|e| e["what"].as_str().unwrap().starts_with("started on "))
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let end = job["state"]
        .as_str()
        .filter(|s| {
            [
                "completed",
                "failed",
                "cancelled",
                "timeout",
                "dependency_failed",
            ]
            .contains(s)
        })
        .and_then(|_| events.last())
        .map(|e| e["seq"].as_u64().unwrap());
    (starts, end)
}

/// The most tasks running at once, from the tasks' start and end events in sequence order.
fn most_at_once(tasks: &[Value]) -> i64 {
    let mut marks: Vec<(u64, i64)> = Vec::new();
    for t in tasks {
        let (starts, end) = starts_and_end(t);
        assert_eq!(starts.len(), 1, "each task ran once: {t}");
        marks.push((starts[0], 1));
        marks.push((end.expect("the task ended"), -1));
    }
    for (seq, _) in &marks {
        assert!(*seq > 0, "events carry sequence numbers");
    }
    marks.sort();
    let mut seqs: Vec<u64> = marks.iter().map(|m| m.0).collect();
    seqs.dedup();
    assert_eq!(seqs.len(), marks.len(), "sequence numbers are unique");
    let (mut now, mut most) = (0, 0);
    for (_, d) in marks {
        now += d;
        most = most.max(now);
    }
    most
}

#[test]
fn a_throttled_array_never_runs_more_than_its_throttle() {
    let c = cluster();
    let script =
        "echo task $GRAZE_ARRAY_INDEX of $GRAZE_ARRAY_COUNT in $GRAZE_ARRAY_JOB_ID; sleep 0.3";
    let a = c.submit(&[
        "-n", "1", "--name", "sweep", "--array", "1-20%4", "--", "sh", "-c", script,
    ]);
    // One line for the whole array while it runs.
    let q = String::from_utf8_lossy(&c.graze(&["queue"]).stdout).into_owned();
    assert!(q.contains("sweep[1-20%4]"), "{q}");
    let out = c.graze(&["wait", &a.to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "wait: {:?} {err}", out.status);
    assert_eq!(err.trim(), format!("array {a}: 20 completed"));

    let view = show(&c, &a.to_string());
    let tasks = view["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 20);
    // 8 cores would run 8 at once; the throttle holds it to 4, and 4 is reached.
    assert_eq!(most_at_once(tasks), 4, "{view}");
    for i in 1..=20 {
        let r = format!("{a}.{i}");
        let t = show(&c, &r);
        assert_eq!(t["task"]["index"], i, "{t}");
        let logs = String::from_utf8_lossy(&c.graze(&["logs", &r]).stdout).into_owned();
        assert!(
            logs.contains(&format!("task {i} of 20 in {a}")),
            "{r}: {logs}"
        );
    }
    let q = String::from_utf8_lossy(&c.graze(&["queue", "--all"]).stdout).into_owned();
    assert!(q.contains("20 completed"), "{q}");
}

#[test]
fn cancel_one_task_then_the_whole_array() {
    let c = cluster();
    let a = c.submit(&["-n", "1", "--array", "1-6%2", "--", "sleep", "60"]);
    let running = |c: &Cluster| -> Vec<u64> {
        show(c, &a.to_string())["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["state"] == "running")
            .map(|t| t["task"]["index"].as_u64().unwrap())
            .collect()
    };
    wait_for("2 tasks running", Duration::from_secs(30), || {
        (running(&c) == [1, 2]).then_some(())
    });
    let t3 = show(&c, &format!("{a}.3"));
    assert_eq!(
        t3["waiting_for"],
        format!("throttled (2 of array {a} running)"),
        "{t3}"
    );
    let out = c.graze(&["cancel", &format!("{a}.1")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        "task 1 cancelled, task 3 running",
        Duration::from_secs(30),
        || {
            (show(&c, &format!("{a}.1"))["state"] == "cancelled" && running(&c) == [2, 3])
                .then_some(())
        },
    );
    let out = c.graze(&["cancel", &a.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with(&format!("cancelled array {a}")), "{text}");
    let out = c.graze(&["wait", &a.to_string()]);
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    let view = show(&c, &a.to_string());
    for t in view["tasks"].as_array().unwrap() {
        assert_eq!(t["state"], "cancelled", "{t}");
    }
    // Nothing left to cancel: a clear refusal.
    let out = c.graze(&["cancel", &a.to_string()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no task is left to cancel"), "{err}");
    let out = c.graze(&["show", &format!("{a}.7")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("no task {a}.7: array {a} has indices 1-6")),
        "{err}"
    );
}

#[test]
fn an_ok_chain_runs_in_order_and_a_broken_ok_fails_at_once() {
    let c = cluster();
    let j1 = c.submit(&["-n", "1", "--", "sh", "-c", "sleep 0.3"]);
    let j2 = c.submit(&[
        "-n",
        "1",
        "--after",
        &format!("ok:{j1}"),
        "--",
        "sh",
        "-c",
        "sleep 0.3",
    ]);
    let j3 = c.submit(&["-n", "1", "--after", &j2.to_string(), "--", "true"]);
    let v3 = c.show(j3);
    assert_eq!(
        v3["waiting_for"],
        format!("waiting for job {j2} (ok)"),
        "{v3}"
    );
    let out = c.graze(&["wait", &j3.to_string()]);
    assert!(out.status.success(), "{out:?}");
    let (j1s, j1e) = starts_and_end(&c.show(j1));
    let (j2s, j2e) = starts_and_end(&c.show(j2));
    let (j3s, _) = starts_and_end(&c.show(j3));
    assert!(j1s[0] < j1e.unwrap());
    assert!(j2s[0] > j1e.unwrap(), "job 2 started after job 1 ended");
    assert!(j3s[0] > j2e.unwrap(), "job 3 started after job 2 ended");

    let bad = c.submit(&["-n", "1", "--", "sh", "-c", "sleep 0.3; exit 1"]);
    let dep = c.submit(&["-n", "1", "--after", &format!("ok:{bad}"), "--", "true"]);
    let out = c.graze(&["wait", &dep.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let b = c.show(bad);
    let d = c.show(dep);
    assert_eq!(d["state"], "dependency_failed", "{d}");
    assert_eq!(d["started_ms"], Value::Null, "never ran: {d}");
    let last = d["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["what"],
        format!("dependency-failed: job {bad} failed (exit 1); this job needed ok:{bad}")
    );
    // At once: in the same scheduler step as the failure.
    assert_eq!(d["ended_ms"], b["ended_ms"], "{b}\n{d}");

    // Decided at submit: a dependency on a job that already failed ends the job at once.
    let late = c.submit(&["-n", "1", "--after", &format!("ok:{bad}"), "--", "true"]);
    assert_eq!(c.show(late)["state"], "dependency_failed");
    // No such job: refused, nothing queued.
    let before = c
        .graze_json(&["queue", "--all", "--json"])
        .as_array()
        .unwrap()
        .len();
    let out = c.graze(&["submit", "-n", "1", "--after", "ok:999", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid --after 'ok:999': no job 999"),
        "{err}"
    );
    let after = c
        .graze_json(&["queue", "--all", "--json"])
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after);
}

#[test]
fn submit_wait_parsable_prints_the_bare_id_and_exits_with_the_job() {
    let c = cluster();
    let out = c.graze(&[
        "submit",
        "--wait",
        "--parsable",
        "-n",
        "1",
        "--",
        "sh",
        "-c",
        "exit 3",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let id: u64 = stdout.trim_end_matches('\n').parse().expect("a bare id");
    assert_eq!(stdout, format!("{id}\n"));
    assert_eq!(c.show(id)["state"], "failed");
    // An array: waits for every task; 0 when all complete.
    let out = c.graze(&[
        "submit",
        "--wait",
        "--parsable",
        "--array",
        "1-3",
        "-n",
        "1",
        "--",
        "true",
    ]);
    assert!(out.status.success(), "{out:?}");
    let a = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let view = show(&c, &a);
    assert!(
        view["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "completed"),
        "{view}"
    );
}
