//! Issue 5 acceptance, over real network namespaces: a cut link is a real partition.
//! Needs root and iproute2 (CI runs as root).
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use std::time::{Duration, Instant};

#[test]
fn partition_requeues_and_the_cut_off_agent_kills_its_ranks() {
    let net = TestNet::new(3);
    let t = ["--node-timeout", "3s"];
    let mut c = Cluster::start_in(Some(&net.sched_ns), &format!("{}:0", net.sched_ip), &t);
    let access = c.access.clone();
    for i in 0..3 {
        c.add_agent_in(
            Some(&net.agent_ns[i]),
            &access,
            &format!("p{i}"),
            &net.agent_ip[i],
            2,
            // No --node-timeout: the agents follow the scheduler's 3 s, told at registration.
            &[],
        );
    }
    c.wait_offered(3);
    // Each rank holds an exclusive lock for its whole life (the namespaces share this file
    // system): a rank of the next run that starts before the cut-off rank is dead cannot take
    // it, and fails the job.
    let script = c.exclusive_script("rank-$PMI_RANK", "echo up; sleep 12; echo done");
    // A 2-rank MPI job packs onto one node: cut that node off mid-job.
    let id = c.submit(&["-n", "2", "--", "mpiexec", "sh", "-c", &script]);
    c.wait_output(id, "up", 2);
    let hosts = c.hosts(id);
    assert_eq!(hosts.len(), 1, "{}", c.show(id));
    let victim = hosts[0].clone();
    let vi: usize = victim[1..].parse().unwrap();
    // mpiexec, its proxy and the ranks, all on the victim.
    let victim_pids = c.job_processes(id);
    let described: Vec<(u32, Option<String>, String)> = victim_pids
        .iter()
        .map(|p| (*p, process_tag(*p), process_cmdline(*p)))
        .collect();
    assert!(
        victim_pids
            .iter()
            .any(|p| process_cmdline(*p).contains("mpiexec")),
        "{described:?}"
    );
    assert!(
        victim_pids
            .iter()
            .any(|p| process_cmdline(*p).contains("sleep")),
        "{described:?}"
    );

    net.cut(vi);
    let cut = Instant::now();
    wait_for("the job requeued", Duration::from_secs(30), || {
        (c.show(id)["requeues"] == 1).then_some(())
    });
    let requeued_after = cut.elapsed();
    eprintln!("requeued {requeued_after:?} after the cut (node_timeout 3 s)");
    assert!(
        requeued_after < Duration::from_secs(5),
        "requeued after {requeued_after:?}, beyond node_timeout + 2 s"
    );

    // The cut-off agent kills its own ranks when it times out.
    wait_for(
        "the cut-off agent's ranks gone",
        Duration::from_secs(15),
        || {
            victim_pids
                .iter()
                .all(|p| process_state(*p).is_none_or(|s| s == 'Z'))
                .then_some(())
        },
    );
    eprintln!("cut-off ranks gone {:?} after the cut", cut.elapsed());

    let out = c.graze(&["wait", &id.to_string()]);
    let job = c.show(id);
    let logs = c.logs(id);
    assert!(!logs.contains("OVERLAP"), "two runs overlapped:\n{logs}");
    assert!(out.status.success(), "{job}\n{logs}");
    assert_eq!(job["state"], "completed", "{job}");
    assert!(
        !job["allocation"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["host"] == victim.as_str()),
        "{job}"
    );

    // Restore the link: the agent rejoins as a fresh node.
    net.restore(vi);
    wait_for(
        "the cut-off node back online",
        Duration::from_secs(60),
        || c.offered_nodes().contains(&victim).then_some(()),
    );
}
