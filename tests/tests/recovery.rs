//! Issue 5 acceptance: nothing lost across a scheduler crash, node loss and agent crash.
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use std::collections::BTreeMap;
use std::time::Duration;

/// Every job of `ids` is final; returns id -> state.
fn states(c: &Cluster) -> BTreeMap<u64, String> {
    let q = c.graze_json(&["queue", "--all", "--json"]);
    q.as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["id"].as_u64().unwrap(),
                j["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn scheduler_crash_loses_nothing_and_runs_each_job_once() {
    let mut c = Cluster::start(&[]);
    for (i, ip) in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
        .iter()
        .enumerate()
    {
        c.add_agent(&format!("r{i}"), ip, 2, &[]);
    }
    c.wait_offered(4);
    let locks = c.dir.path().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    // Each run holds an exclusive lock for its whole life: a second run of the same job
    // overlapping the first cannot take it, says OVERLAP and fails the job.
    let script = format!(
        "flock -n {}/job-$GRAZE_JOB_ID -c 'echo run-start; sleep 1.5; echo run-done' || {{ echo OVERLAP; exit 3; }}",
        locks.display()
    );
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids.push(c.submit(&["-n", "1", "--", "sh", "-c", &script]));
    }
    // Crash while some run and some wait.
    wait_for(
        "a few jobs done and some running",
        Duration::from_secs(120),
        || {
            let s = states(&c);
            let done = s.values().filter(|v| *v == "completed").count();
            let running = s.values().filter(|v| *v == "running").count();
            (done >= 8 && running >= 4).then_some(())
        },
    );
    let running_at_crash: Vec<u64> = states(&c)
        .into_iter()
        .filter(|(_, v)| v == "running")
        .map(|(k, _)| k)
        .collect();
    c.kill_scheduler();
    c.restart_scheduler(&[]);
    let s = states(&c);
    assert_eq!(s.len(), 100, "every accepted job is still there: {s:?}");
    wait_for("all 100 jobs final", Duration::from_secs(300), || {
        let s = states(&c);
        s.values()
            .all(|v| v == "completed" || v == "failed" || v == "cancelled")
            .then_some(())
    });
    let s = states(&c);
    for id in &ids {
        assert_eq!(s[id], "completed", "job {id}: {}", c.show(*id));
        let out = c.graze(&["logs", &id.to_string()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("OVERLAP"), "job {id} overlapped:\n{text}");
        assert_eq!(
            text.matches("run-done").count(),
            1,
            "job {id} must record one successful run:\n{text}"
        );
    }
    // Runs whose processes survived the crash went on: none of them was requeued.
    for id in &running_at_crash {
        let job = c.show(*id);
        assert_eq!(
            job["requeues"], 0,
            "job {id} running at the crash was requeued: {job}"
        );
    }
}
