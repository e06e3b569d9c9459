//! Issue 12 acceptance: a vacated job keeps its progress. Real scheduler, real agents, real
//! MPICH (and Open MPI for the mpi4py example) jobs; the owner is simulated by touching an
//! agent's `file:` idle source.
//!
//! Written against the shared checkpoint design (briefs/ckpt-design.md): `graze submit
//! --checkpoint*`, the agents' pack/unpack and streams, the scheduler's store. They pass only
//! once all four parts are merged.
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use std::process::Command;
use std::time::Duration;

/// Generous bounds: the machine is shared and may be loaded.
const LONG: Duration = Duration::from_secs(180);

/// The graze-pi flags of the acceptance run: fixed length, 400 rounds, reproducible.
const PI: &[&str] = &[
    "--seed",
    "12",
    "--samples",
    "5000000",
    "--tolerance",
    "1e-12",
    "--min-rounds",
    "400",
    "--max-rounds",
    "400",
    "--report-ms",
    "100000",
];

/// A longer run for periodic checkpoints (at least 10 s apart): 4,000 rounds of 8e6 samples,
/// about half a minute on this machine's kind (AVX2; longer without).
const PI_LONG: &[&str] = &[
    "--seed",
    "12",
    "--samples",
    "8000000",
    "--tolerance",
    "1e-12",
    "--min-rounds",
    "4000",
    "--max-rounds",
    "4000",
    "--report-ms",
    "100000",
];

/// An owner policy that vacates quickly.
const POLICY: &[&str] = &[
    "--resume-after",
    "60s",
    "--vacate-after",
    "3s",
    "--vacate-grace",
    "2s",
];

/// Rank 0's per-round lines.
fn rounds(text: &str) -> usize {
    text.lines().filter(|l| l.contains("pi: ")).count()
}

/// The round a restored run went on from (`graze-pi: resumed from checkpoint after round N`).
fn resumed_at(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (_, rest) = l.split_once("resumed from checkpoint after round ")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The rounds of the checkpoints graze-pi saved (`graze-pi: checkpoint saved after round N`).
fn saved_rounds(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once("checkpoint saved after round ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

/// The final Pi of an uninterrupted run of `graze-pi PI` on `n` ranks, outside graze.
fn uninterrupted_pi(n: u32, pi: &[&str]) -> f64 {
    let out = Command::new("mpiexec")
        .args(["-n", &n.to_string()])
        .arg(bin("graze-pi"))
        .args(pi)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    computed_pi(&String::from_utf8_lossy(&out.stdout))
        .unwrap()
        .1
}

fn submit_pi(c: &Cluster, extra: &[&str], pi: &[&str]) -> u64 {
    let mut args = vec!["-n", "2", "--name", "pi-ck"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "mpiexec", "graze-pi"]);
    args.extend_from_slice(pi);
    c.submit(&args)
}

#[test]
fn resume_after_vacate_restores_on_other_nodes() {
    ensure_built();
    let mut c = Cluster::start(&[]);
    c.add_agent("k2", "127.0.0.2", 1, POLICY);
    c.add_agent("k3", "127.0.0.3", 1, POLICY);
    c.wait_offered(2);
    let id = submit_pi(&c, &["--checkpoint", "--checkpoint-grace", "30s"], PI);
    c.wait_output(id, "pi: ", 5);
    let seen = rounds(&c.logs(id));

    // The owner of k3 comes back and stays: the job is checkpointed and vacated.
    let typing = Typing::start(c.agents[1].idle_file.clone(), Duration::from_secs(180));
    wait_for("the job checkpointed and requeued", LONG, || {
        let job = c.show(id);
        (job["requeues"] == 1).then_some(())
    });
    // Two other agents join and an admin drains k2: the job runs on the new two, restored,
    // and completes.
    let drained = c.graze(&["drain", "k2"]);
    assert!(drained.status.success(), "{drained:?}");
    c.add_agent("k4", "127.0.0.4", 1, POLICY);
    c.add_agent("k5", "127.0.0.5", 1, POLICY);
    let out = c.graze(&["wait", &id.to_string()]);
    drop(typing);
    let job = c.show(id);
    assert!(out.status.success(), "{job}");
    assert_eq!(job["state"], "completed", "{job}");
    let ev = events(&job);
    assert!(ev.iter().any(|e| e.contains("stored: 2 ranks")), "{ev:?}");
    assert!(
        ev.iter()
            .filter(|e| e.contains(": restored checkpoint "))
            .count()
            == 2,
        "{ev:?}"
    );
    // A final job's checkpoints are removed, from `graze show` and from the store.
    let cks = job["checkpoints"].as_array().cloned().unwrap_or_default();
    assert!(cks.is_empty(), "{job}");
    assert!(!c
        .state_dir()
        .join("checkpoints")
        .join(id.to_string())
        .exists());

    let mut hosts = c.hosts(id);
    hosts.sort();
    assert_eq!(hosts, ["k4", "k5"], "{job}");
    let logs = c.logs(id);
    let at = resumed_at(&logs).unwrap_or_else(|| panic!("not restored: {logs}"));
    assert!(
        at as usize >= seen,
        "resumed after round {at}, had seen {seen}"
    );
    let (_, pi) = computed_pi(&logs).unwrap();
    assert_eq!(pi, uninterrupted_pi(2, PI), "{logs}");
}

#[test]
fn periodic_checkpoint_bounds_the_loss_of_a_killed_node() {
    ensure_built();
    let mut c = Cluster::start(&[]);
    c.add_agent("p2", "127.0.0.2", 1, &[]);
    c.add_agent("p3", "127.0.0.3", 1, &[]);
    c.wait_offered(2);
    let id = submit_pi(&c, &["--checkpoint-every", "10s"], PI_LONG);
    // Wait for a stored periodic checkpoint, then SIGKILL a node's agent (no vacate).
    wait_for("a periodic checkpoint stored", LONG, || {
        events(&c.show(id))
            .iter()
            .any(|e| e.contains("stored"))
            .then_some(())
    });
    // The round of the stored checkpoint: the last one saved when the event was there.
    let stored = saved_rounds(&c.logs(id)).into_iter().max().unwrap();
    let victim = c
        .agents
        .iter()
        .position(|a| a.name == c.hosts(id)[1])
        .unwrap();
    c.agents[victim].child.kill().unwrap();
    c.add_agent("p4", "127.0.0.4", 1, &[]);
    let out = c.graze(&["wait", &id.to_string()]);
    let job = c.show(id);
    assert!(out.status.success(), "{job}");
    let logs = c.logs(id);
    let at = resumed_at(&logs).unwrap_or_else(|| panic!("not restored: {logs}"));
    // At most one interval lost: the run goes on from the stored checkpoint or a later one.
    assert!(
        at >= stored,
        "resumed after round {at}, a checkpoint of round {stored} was stored"
    );
    assert_eq!(computed_pi(&logs).unwrap().1, uninterrupted_pi(2, PI_LONG));
}

#[test]
fn mpi4py_example_checkpoints_and_resumes() {
    ensure_built();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/pi_checkpoint.py")
        .canonicalize()
        .unwrap();
    let mut c = Cluster::start(&[]);
    c.add_agent("m2", "127.0.0.2", 2, POLICY);
    c.wait_offered(1);
    // Open MPI's launcher (mpi4py on Debian is built against Open MPI); no -n for mpirun: one
    // rank per slot of the allocation graze wrote.
    let id = c.submit(&[
        "-n",
        "2",
        "--checkpoint",
        "--",
        "mpirun.openmpi",
        "/usr/bin/python3",
        script.to_str().unwrap(),
        "--seed",
        "4",
        "--samples",
        "20000",
        // Long enough (about 20 s unloaded) that the requeue below always comes mid-run, even
        // on a loaded machine.
        "--min-rounds",
        "2000",
        "--max-rounds",
        "2000",
        "--checkpoint-exit",
    ]);
    c.wait_output(id, "pi: ", 3);
    // `graze requeue --checkpoint`: signal, the example saves and exits 85, requeued, restored.
    let out = c.graze(&["requeue", &id.to_string(), "--checkpoint"]);
    assert!(out.status.success(), "{out:?}");
    let out = c.graze(&["wait", &id.to_string()]);
    let job = c.show(id);
    assert!(out.status.success(), "{job}");
    let logs = c.logs(id);
    assert!(resumed_at(&logs).is_some(), "{logs}");
    assert!(computed_pi(&logs).is_some(), "{logs}");
}

/// One rank of [`a_checkpoint_that_never_completes_leaves_the_previous_one_current`]: follows
/// the protocol in `sh`. Each signal saves a checkpoint numbered 1, 2, ...; from the second on
/// it carries 4 MB of random bytes (incompressible: its transfer at the agents'
/// `--checkpoint-rate` takes a while). A restored run says which checkpoint it found and ends.
const NEVER_COMPLETES: &str = r#"#!/bin/sh
r=$PMI_RANK
d=$GRAZE_CHECKPOINT_DIR
n=0
if [ -f "$d/$r/n" ]; then
  echo "rank $r restored checkpoint $(cat "$d/$r/n") (restart $GRAZE_RESTART_COUNT)"
  exit 0
fi
save() {
  n=$((n + 1))
  mkdir -p "$d/$r"
  if [ "$n" -ge 2 ]; then head -c 4000000 /dev/urandom > "$d/$r/big"; fi
  echo "$n" > "$d/$r/n"
  : > "$d/$r.done"
  echo "rank $r saved checkpoint $n"
}
trap save USR1
i=0
while [ $i -lt 1800 ]; do sleep 0.1; i=$((i + 1)); done
echo "rank $r ran out of time"
exit 1
"#;

/// Submit a 2-rank [`NEVER_COMPLETES`] job with a checkpoint every 10 s; returns its id and
/// the id of its first (small) checkpoint, once that one is stored.
fn never_completes_stored_once(c: &Cluster) -> (u64, serde_json::Value) {
    let script = c.dir.path().join("never-completes.sh");
    std::fs::write(&script, NEVER_COMPLETES).unwrap();
    let id = c.submit(&[
        "-n",
        "2",
        "--checkpoint-every",
        "10s",
        "--",
        "mpiexec",
        "sh",
        script.to_str().unwrap(),
    ]);
    wait_for("the first checkpoint stored", LONG, || {
        events(&c.show(id))
            .iter()
            .any(|e| e.contains("stored: 2 ranks"))
            .then_some(())
    });
    (id, c.show(id)["checkpoints"][0]["id"].clone())
}

/// The names of `job`'s checkpoint directories being received in the store (`.incoming-*`)
/// that already hold some bytes.
fn incoming_with_data(c: &Cluster, job: u64) -> bool {
    let dir = c.state_dir().join("checkpoints").join(job.to_string());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name().to_string_lossy().starts_with(".incoming-")
            && std::fs::read_dir(e.path()).is_ok_and(|parts| {
                parts
                    .flatten()
                    .any(|p| p.metadata().is_ok_and(|m| m.len() > 0))
            })
    })
}

#[test]
fn a_checkpoint_that_never_completes_leaves_the_previous_one_current() {
    ensure_built();
    // Real hosts: a node's link is cut mid-transfer on the bridge of network namespaces.
    let net = TestNet::new(2);
    let t = ["--node-timeout", "3s"];
    let mut c = Cluster::start_in(Some(&net.sched_ns), &format!("{}:0", net.sched_ip), &t);
    let access = c.access.clone();
    for i in 0..2 {
        c.add_agent_in(
            Some(&net.agent_ns[i]),
            &access,
            &format!("n{i}"),
            &net.agent_ip[i],
            1,
            &["--checkpoint-rate", "200K"],
        );
    }
    c.wait_offered(2);
    let (id, first) = never_completes_stored_once(&c);
    // The second is large: once its parts are arriving, cut node n1 off.
    c.wait_output(id, "saved checkpoint 2", 2);
    wait_for("the second checkpoint arriving", LONG, || {
        incoming_with_data(&c, id).then_some(())
    });
    net.cut(1);
    wait_for("the job requeued after the cut", LONG, || {
        (c.show(id)["requeues"] == 1).then_some(())
    });
    let job = c.show(id);
    let ev = events(&job);
    assert!(
        ev.iter()
            .any(|e| e.contains("discarded: n1 was lost") && e.contains("stays current")),
        "{ev:?}"
    );
    // The half-received checkpoint never became current: the first one still is.
    let cks = job["checkpoints"].as_array().cloned().unwrap_or_default();
    assert_eq!(cks.len(), 1, "{job}");
    assert_eq!(cks[0]["id"], first, "{job}");
    assert_eq!(cks[0]["current"], true, "{job}");

    // The link comes back: the next run restores the first checkpoint and says so.
    net.restore(1);
    let out = c.graze(&["wait", &id.to_string()]);
    let job = c.show(id);
    assert!(out.status.success(), "{job}\n{}", c.logs(id));
    let ev = events(&job);
    let first = match first.as_str() {
        Some(s) => s.to_owned(),
        None => format!("r{}-{}", first["epoch"], first["at_ms"]),
    };
    assert!(
        ev.iter()
            .any(|e| e.contains(&format!("restores checkpoint {first}"))),
        "{ev:?}"
    );
    let logs = c.logs(id);
    assert_eq!(
        logs.matches("restored checkpoint 1 (restart 1)").count(),
        2,
        "{logs}"
    );
    // One signal per rank per checkpoint: a rank signalled twice (by its own agent and by
    // the main node's, which once adopted it by the tag hydra forwards) saved twice, or its
    // nested trap printed one number twice.
    let saves: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("saved checkpoint"))
        .collect();
    let distinct: std::collections::HashSet<&str> = saves.iter().copied().collect();
    assert_eq!(saves.len(), distinct.len(), "{logs}");
}

#[test]
fn a_scheduler_killed_mid_transfer_keeps_the_last_good_checkpoint() {
    ensure_built();
    let mut c = Cluster::start(&[]);
    c.add_agent("s2", "127.0.0.2", 1, &["--checkpoint-rate", "200K"]);
    c.add_agent("s3", "127.0.0.3", 1, &["--checkpoint-rate", "200K"]);
    c.wait_offered(2);
    let (id, first) = never_completes_stored_once(&c);
    // The second (4 MB a rank at 200 kB/s) is arriving: the scheduler crashes.
    wait_for("the second checkpoint arriving", LONG, || {
        incoming_with_data(&c, id).then_some(())
    });
    c.kill_scheduler();
    c.restart_scheduler(&[]);
    // The half-received one is gone from the store; the first is current, intact.
    let job = c.show(id);
    let cks = job["checkpoints"].as_array().cloned().unwrap_or_default();
    assert_eq!(cks.len(), 1, "{job}");
    assert_eq!(cks[0]["id"], first, "{job}");
    assert_eq!(cks[0]["current"], true, "{job}");
    assert!(
        !incoming_with_data(&c, id),
        "a partial checkpoint was left in the store"
    );
    let out = c.graze(&["cancel", &id.to_string()]);
    assert!(out.status.success(), "{out:?}");
}
