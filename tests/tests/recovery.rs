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
    // Each run holds an exclusive lock for its whole life: a second run of the same job
    // overlapping the first cannot take it, says OVERLAP and fails the job.
    let script = c.exclusive_script(
        "job-$GRAZE_JOB_ID",
        "echo run-start; sleep 1.5; echo run-done",
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
        let text = c.logs(*id);
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

/// `GRAZE_JOB_TAG` and command line of each live process of job `id` in this cluster.
fn tagged(c: &Cluster, id: u64) -> Vec<(u32, String, String)> {
    c.job_processes(id)
        .into_iter()
        .filter_map(|pid| Some((pid, process_tag(pid)?, process_cmdline(pid))))
        .collect()
}

#[test]
fn agent_crash_requeues_and_the_job_completes_elsewhere() {
    let t = ["--node-timeout", "3s"];
    let mut c = Cluster::start(&t);
    c.add_agent("k2", "127.0.0.2", 2, &t);
    c.add_agent("k3", "127.0.0.3", 2, &t);
    c.add_agent("k4", "127.0.0.4", 2, &t);
    c.wait_offered(3);
    // Each rank holds an exclusive lock for its whole life: a rank of the next run starting
    // while the crashed agent's orphan of the same rank lives cannot take it, says OVERLAP
    // and fails the job.
    let script = c.exclusive_script("rank-$PMI_RANK", "echo up; sleep 12; echo done");
    let id = c.submit(&["-n", "4", "--", "mpiexec", "sh", "-c", &script]);
    c.wait_output(id, "up", 4);
    let hosts = c.hosts(id);
    assert_eq!(hosts.len(), 2, "{}", c.show(id));
    let victim = hosts[1].clone();
    // The victim's processes: those whose tag is not the main node's (the one running mpiexec).
    let procs = tagged(&c, id);
    let main_tag = procs
        .iter()
        .find(|p| p.2.starts_with("mpiexec"))
        .map(|p| p.1.clone())
        .unwrap();
    let victim_pids: Vec<u32> = procs
        .iter()
        .filter(|p| p.1 != main_tag)
        .map(|p| p.0)
        .collect();
    assert!(!victim_pids.is_empty(), "{procs:?}");

    // SIGKILL the victim's agent: its job processes are orphaned, its link goes silent.
    let a = c.agents.iter_mut().find(|a| a.name == victim).unwrap();
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed = std::time::Instant::now();
    // Its guard kills what it left behind, without waiting for a new agent.
    wait_for(
        "the crashed agent's orphans gone",
        Duration::from_secs(10),
        || {
            victim_pids
                .iter()
                .all(|p| process_state(*p).is_none_or(|s| s == 'Z'))
                .then_some(())
        },
    );
    eprintln!(
        "orphans gone {:?} after the agent was killed",
        killed.elapsed()
    );
    wait_for("the job requeued", Duration::from_secs(30), || {
        (c.show(id)["requeues"] == 1).then_some(())
    });
    let requeued_after = killed.elapsed();
    eprintln!("requeued {requeued_after:?} after the agent was killed (node_timeout 3 s)");
    assert!(
        requeued_after < Duration::from_secs(5),
        "requeued after {requeued_after:?}, beyond node_timeout + 2 s"
    );
    let job = c.show(id);
    assert!(
        job["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["what"] == format!("requeued: node {victim} lost")),
        "{job}"
    );

    // The agent comes back (as its service would restart it) and rejoins.
    c.agents.retain(|a| a.name != victim);
    // k2, k3, k4 live on 127.0.0.2, .3, .4.
    let ip = format!("127.0.0.{}", &victim[1..]);
    c.add_agent(&victim.clone(), &ip, 2, &t);

    let out = c.graze(&["wait", &id.to_string()]);
    let job = c.show(id);
    let logs = c.logs(id);
    assert!(!logs.contains("OVERLAP"), "two runs overlapped:\n{logs}");
    assert!(out.status.success(), "{job}\n{logs}");
    assert_eq!(job["state"], "completed", "{job}");
}
