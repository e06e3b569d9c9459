//! Issue 12 acceptance: a vacated job keeps its progress. Real scheduler, real agents, real
//! MPICH (and Open MPI for the mpi4py example) jobs; the owner is simulated by touching an
//! agent's `file:` idle source.
//!
//! Written against the shared checkpoint design (briefs/ckpt-design.md): `graze submit
//! --checkpoint*`, the agents' pack/unpack and streams, the scheduler's store. They pass only
//! once all four parts are merged.
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// Generous bounds: the machine is shared and may be loaded.
const LONG: Duration = Duration::from_secs(180);

/// The graze-pi flags of the acceptance run: fixed length, 400 rounds, reproducible.
const PI: &[&str] = &[
    "--seed",
    "12",
    "--samples",
    "1000000",
    "--tolerance",
    "1e-12",
    "--min-rounds",
    "400",
    "--max-rounds",
    "400",
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

fn events(job: &Value) -> Vec<String> {
    job["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["what"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

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
fn uninterrupted_pi(n: u32) -> f64 {
    let out = Command::new("mpiexec")
        .args(["-n", &n.to_string()])
        .arg(bin("graze-pi"))
        .args(PI)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    computed_pi(&String::from_utf8_lossy(&out.stdout))
        .unwrap()
        .1
}

fn submit_pi(c: &Cluster, extra: &[&str]) -> u64 {
    let mut args = vec!["-n", "2", "--name", "pi-ck"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "mpiexec", "graze-pi"]);
    args.extend_from_slice(PI);
    c.submit(&args)
}

#[test]
fn resume_after_vacate_restores_on_other_nodes() {
    ensure_built();
    let mut c = Cluster::start(&[]);
    c.add_agent("k2", "127.0.0.2", 1, POLICY);
    c.add_agent("k3", "127.0.0.3", 1, POLICY);
    c.wait_offered(2);
    let id = submit_pi(&c, &["--checkpoint", "--checkpoint-grace", "30s"]);
    c.wait_output(id, "pi: ", 5);
    let seen = rounds(&c.logs(id));

    // The owner of k3 comes back and stays: the job is checkpointed and vacated.
    let idle = c.agents[1].idle_file.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let typing = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            for _ in 0..900 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                touch(&idle);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
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
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    typing.join().unwrap();
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
    assert_eq!(pi, uninterrupted_pi(2), "{logs}");
}

#[test]
#[ignore = "issue 12, open: the test's Pi run ends before its first 10 s checkpoint; needs a longer run"]
fn periodic_checkpoint_bounds_the_loss_of_a_killed_node() {
    ensure_built();
    let mut c = Cluster::start(&[]);
    c.add_agent("p2", "127.0.0.2", 1, &[]);
    c.add_agent("p3", "127.0.0.3", 1, &[]);
    c.wait_offered(2);
    let id = submit_pi(&c, &["--checkpoint-every", "10s"]);
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
    assert_eq!(computed_pi(&logs).unwrap().1, uninterrupted_pi(2));
}

#[test]
#[ignore = "issue 12, open: under Open MPI the ranks wrote no marker in the grace; not yet found why"]
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
        "--min-rounds",
        "300",
        "--max-rounds",
        "300",
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
