//! Issue 11, time limits and start conditions, with real processes: `--time` with
//! `--signal` (the MPI ranks get the signal and say so, the job ends `timeout`), a time
//! limit that does not count an owner's suspension, `--begin` and `--hold`/`graze release`.
//! Times are checked from the job's own events, never by wall-clock assertions.
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use serde_json::Value;
use std::time::Duration;

/// Generous bounds: the machine is shared and may be loaded.
const LONG: Duration = Duration::from_secs(120);

/// A rank that writes once it gets SIGTERM (from the handler, with `write`) and then goes on
/// running until it is killed.
const TRAP_TERM: &str = r#"
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char msg[64];
static volatile sig_atomic_t got = 0;

static void on_term(int sig) {
    (void)sig;
    got = 1;
    ssize_t w = write(1, msg, strlen(msg));
    (void)w;
}

int main(int argc, char **argv) {
    /* The handler first (hydra's PMI_RANK names the rank), so a slow MPI_Init on a loaded
       machine does not leave a window where the signal kills the rank. */
    const char *pmi = getenv("PMI_RANK");
    snprintf(msg, sizeof msg, "rank %s got SIGTERM\n", pmi ? pmi : "?");
    signal(SIGTERM, on_term);
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    printf("rank %d ready\n", rank);
    fflush(stdout);
    for (;;) {
        usleep(50000);
    }
    MPI_Finalize();
    return 0;
}
"#;

fn events(job: &Value) -> Vec<(u64, String)> {
    job["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["at_ms"].as_u64().unwrap(),
                e["what"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The time of the first event starting with `prefix`.
fn event_at(job: &Value, prefix: &str) -> u64 {
    events(job)
        .iter()
        .find(|(_, w)| w.starts_with(prefix))
        .map(|(t, _)| *t)
        .unwrap_or_else(|| panic!("no event '{prefix}...' in {job}"))
}

fn wait_state(c: &Cluster, id: u64, state: &str) -> Value {
    wait_for(&format!("job {id} {state}"), LONG, || {
        let j = c.show(id);
        (j["state"] == state).then_some(j)
    })
}

#[test]
fn the_ranks_get_the_signal_before_the_limit_and_the_job_times_out() {
    let mut c = Cluster::start(&[]);
    c.add_agent("a2", "127.0.0.2", 1, &[]);
    c.add_agent("a3", "127.0.0.3", 1, &[]);
    c.wait_offered(2);
    let prog = c.compile_mpi("mpicc", "trap_term", TRAP_TERM);
    let id = c.submit(&[
        "-n", "2", "--time", "5s", "--signal", "TERM@2s", "--", "mpiexec", &prog,
    ]);
    let job = wait_state(&c, id, "timeout");
    let logs = c.logs(id);
    for r in 0..2 {
        assert!(logs.contains(&format!("rank {r} ready")), "{logs}");
        assert!(
            logs.contains(&format!("rank {r} got SIGTERM")),
            "rank {r} did not report the signal:\n{logs}\n{job}"
        );
    }
    assert_eq!(job["allocation"].as_array().unwrap().len(), 2, "{job}");
    assert_eq!(job["requeues"], 0);
    let started = event_at(&job, "started on");
    let signalled = event_at(&job, "sent SIGTERM to the program on ");
    let limit = event_at(&job, "time limit 5s reached");
    // Deadlines never fire early (they may fire a little late, each on its own: the gap
    // between the two is not checked).
    assert!(signalled - started >= 3000, "signal too early: {job}");
    assert!(limit - started >= 5000, "killed too early: {job}");
    assert!(limit > signalled, "{job}");
    // The launcher was not signalled: nothing failed before the limit.
    assert!(
        !events(&job).iter().any(|(_, w)| w.starts_with("failed")),
        "{job}"
    );
    let table = String::from_utf8_lossy(&c.graze(&["queue", "--all"]).stdout).to_string();
    assert!(table.contains("timeout"), "{table}");
    // Its processes are gone and its cores free again.
    wait_for("the job's processes gone", LONG, || {
        c.job_processes(id).is_empty().then_some(())
    });
}

#[test]
fn an_owners_suspension_does_not_count_toward_the_limit() {
    let mut c = Cluster::start(&[]);
    let policy = ["--resume-after", "4s", "--vacate-after", "10m"];
    c.add_agent("a2", "127.0.0.2", 1, &policy);
    c.wait_offered(1);
    let id = c.submit(&[
        "-n",
        "1",
        "--time",
        "5s",
        "--",
        "sh",
        "-c",
        "echo up; while :; do sleep 0.1; done",
    ]);
    c.wait_output(id, "up", 1);
    touch(&c.agents[0].idle_file);
    wait_state(&c, id, "suspended");
    let job = wait_state(&c, id, "timeout");
    let started = event_at(&job, "started on");
    let suspended = event_at(&job, "suspended:");
    let resumed = event_at(&job, "resumed:");
    let limit = event_at(&job, "time limit 5s reached");
    assert!(resumed - suspended >= 2000, "suspended only briefly: {job}");
    assert!(limit > resumed, "killed while suspended: {job}");
    let running = (limit - started) - (resumed - suspended);
    assert!(
        running >= 5000,
        "killed after {running} ms of running time: {job}"
    );
    let what = &events(&job).last().unwrap().1.clone();
    assert!(what.contains("suspended for owners not counted"), "{what}");
}

#[test]
fn begin_waits_for_its_time() {
    let mut c = Cluster::start(&[]);
    c.add_agent("a2", "127.0.0.2", 1, &[]);
    c.wait_offered(1);
    let id = c.submit(&["-n", "1", "--begin", "now+4s", "--", "true"]);
    let queued = c.show(id);
    let begin = queued["spec"]["begin_ms"].as_u64().unwrap();
    if queued["state"] == "queued" {
        let table = String::from_utf8_lossy(&c.graze(&["queue"]).stdout).to_string();
        assert!(table.contains("waiting for "), "{table}");
        let show = String::from_utf8_lossy(&c.graze(&["show", &id.to_string()]).stdout).to_string();
        assert!(show.contains("waiting for"), "{show}");
    }
    let job = wait_state(&c, id, "completed");
    let started = event_at(&job, "started on");
    assert!(
        started >= begin,
        "started at {started}, before its begin {begin}: {job}"
    );
    let submitted = event_at(&job, "submitted");
    assert!(begin > submitted, "{job}");
    // A begin time survives a scheduler crash and restart.
    let id = c.submit(&["-n", "1", "--begin", "now+6s", "--", "true"]);
    let begin = c.show(id)["spec"]["begin_ms"].as_u64().unwrap();
    c.kill_scheduler();
    c.restart_scheduler(&[]);
    let job = wait_state(&c, id, "completed");
    let started = event_at(&job, "started on");
    assert!(
        started >= begin,
        "started at {started}, before its begin {begin}: {job}"
    );
}

#[test]
fn a_held_job_waits_for_release() {
    let mut c = Cluster::start(&[]);
    c.add_agent("a2", "127.0.0.2", 1, &[]);
    c.wait_offered(1);
    let held = c.submit(&["-n", "1", "--hold", "--", "true"]);
    // A job submitted after it runs and completes: the cores were free all along.
    let other = c.submit(&["-n", "1", "--", "true"]);
    wait_state(&c, other, "completed");
    let job = c.show(held);
    assert_eq!(job["state"], "queued", "{job}");
    assert_eq!(job["waiting_for"], "held", "{job}");
    let table = String::from_utf8_lossy(&c.graze(&["queue"]).stdout).to_string();
    assert!(table.contains("held"), "{table}");
    // A scheduler crash and restart keeps it held.
    c.kill_scheduler();
    c.restart_scheduler(&[]);
    c.wait_offered(1);
    let other = c.submit(&["-n", "1", "--", "true"]);
    wait_state(&c, other, "completed");
    let job = c.show(held);
    assert_eq!(job["state"], "queued", "{job}");
    assert_eq!(job["waiting_for"], "held", "{job}");
    let out = c.graze(&["release", &held.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_state(&c, held, "completed");
    // Releasing a job that is not held is a clear error.
    let again = c.graze(&["release", &held.to_string()]);
    assert_eq!(again.status.code(), Some(1));
    let err = String::from_utf8_lossy(&again.stderr).to_string();
    assert!(
        err.contains(&format!("job {held} is not held (completed)")),
        "{err}"
    );
    // graze hold on a queued job (the node busy), then release.
    let busy = c.submit(&["-n", "1", "--", "sh", "-c", "sleep 600"]);
    wait_state(&c, busy, "running");
    let later = c.submit(&["-n", "1", "--", "true"]);
    let out = c.graze(&["hold", &later.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(c.graze(&["cancel", &busy.to_string()]).status.success());
    wait_state(&c, busy, "cancelled");
    let other2 = c.submit(&["-n", "1", "--", "true"]);
    wait_state(&c, other2, "completed");
    assert_eq!(c.show(later)["waiting_for"], "held");
    assert!(c.graze(&["release", &later.to_string()]).status.success());
    wait_state(&c, later, "completed");
    let audit = std::fs::read_to_string(c.state_dir().join("audit.log")).unwrap();
    assert!(
        audit.contains("release") && audit.contains("hold"),
        "{audit}"
    );
}

#[test]
fn bad_limits_are_refused_at_submit() {
    let mut c = Cluster::start(&[]);
    c.add_agent("a2", "127.0.0.2", 1, &[]);
    c.wait_offered(1);
    for (args, want) in [
        (
            &["--time", "0"][..],
            "invalid value '0' for '--time <DURATION>'",
        ),
        (
            &["--begin", "25:00"][..],
            "invalid value '25:00' for '--begin <TIME>'",
        ),
        (
            &["--signal", "FOO@1s", "--time", "1m"][..],
            "invalid value 'FOO@1s'",
        ),
        (
            &["--time", "1h", "--signal", "TERM@2h"][..],
            "invalid --signal 'TERM@2h'",
        ),
    ] {
        let mut a = vec!["submit", "-n", "1"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--", "true"]);
        let out = c.graze(&a);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let q = c.graze_json(&["queue", "--all", "--json"]);
    assert_eq!(q.as_array().unwrap().len(), 0, "nothing queued: {q}");
}
