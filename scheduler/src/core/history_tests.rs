//! Attempt records: every final state and every requeue path yields exactly one record, with
//! the run's nodes, times and reasons; owner events name the busy node.

use super::*;
use graze_proto::{
    Availability, ExitStatus, JobId, JobSpec, JobState, NodeInfo, NodeStatus, OwnerPolicy, Unit,
};

fn info(name: &str, cores: u32) -> NodeInfo {
    fixtures::node_info(name, cores)
}

fn status(a: Availability) -> NodeStatus {
    fixtures::node_status(a, 1000)
}

fn spec(n: u32) -> JobSpec {
    JobSpec {
        nprocs: n,
        unit: Unit::Core,
        command: vec!["/usr/bin/mpiexec".into(), "graze-pi".into()],
        user: "ann".into(),
        ..Default::default()
    }
}

/// a1 (conn 1) and a2 (conn 2), 2 cores each, offering.
fn cluster() -> Core {
    let mut c = Core::new(CoreConfig::default());
    for (conn, name) in [(1, "a1"), (2, "a2")] {
        c.node_connected(conn, info(name, 2), 0).unwrap();
        c.node_status(conn, status(Availability::Offered), 0);
    }
    c
}

/// An owner event as the core emits it: node, kind, job, time.
type Ev = (String, OwnerEventKind, JobId, u64);

/// Attempt records and owner events in the outputs so far.
fn records(c: &mut Core) -> (Vec<AttemptRecord>, Vec<Ev>) {
    let mut recs = Vec::new();
    let mut evs = Vec::new();
    while let Some(o) = c.poll_output() {
        match o {
            Output::AttemptEnded(r) => recs.push(r),
            Output::OwnerEvent {
                node,
                kind,
                job,
                at,
            } => evs.push((node, kind, job, at)),
            _ => {}
        }
    }
    (recs, evs)
}

fn exit(code: i32) -> ExitStatus {
    ExitStatus {
        code: Some(code),
        signal: None,
    }
}

#[test]
fn completed_and_failed_runs_give_one_record_each() {
    let mut c = cluster();
    let ok = c.submit(spec(2), "s".into(), 10).unwrap();
    let bad = c.submit(spec(2), "s".into(), 20).unwrap();
    assert!(records(&mut c).0.is_empty(), "no record before a run ends");
    c.job_exited(1, ok, exit(0), 1010);
    c.job_exited(2, bad, exit(3), 2020);
    let (r, _) = records(&mut c);
    assert_eq!(r.len(), 2);
    let a = &r[0];
    assert_eq!((a.job, a.attempt), (ok, 1));
    assert_eq!(a.outcome, AttemptOutcome::Final(JobState::Completed));
    assert_eq!(a.exit, Some(exit(0)));
    assert_eq!(a.user, "ann");
    assert_eq!(a.name, "mpiexec");
    assert_eq!(a.nodes.len(), 1);
    assert_eq!(
        (a.submitted_ms, a.started_ms, a.ended_ms),
        (10, Some(10), 1010)
    );
    assert_eq!((a.running_ms, a.suspended_ms), (1000, 0));
    assert_eq!(a.core_ms(), 2000);
    let b = &r[1];
    assert_eq!(b.outcome, AttemptOutcome::Final(JobState::Failed));
    assert_eq!(b.exit, Some(exit(3)));
    assert_eq!(b.running_ms, 2000);
    // The clears that follow add nothing.
    c.job_cleared(1, ok, 3000);
    c.job_cleared(2, bad, 3000);
    assert!(records(&mut c).0.is_empty());
    c.check_invariants().unwrap();
}

#[test]
fn cancel_running_and_cancel_queued_give_one_record_each() {
    let mut c = cluster();
    let run = c.submit(spec(4), "s".into(), 0).unwrap();
    let wait = c.submit(spec(4), "s".into(), 0).unwrap();
    c.cancel(wait, 50).unwrap();
    c.cancel(run, 100).unwrap();
    let (r, _) = records(&mut c);
    assert_eq!(
        r.len(),
        1,
        "the running job's record waits for its kill: {r:?}"
    );
    assert_eq!((r[0].job, r[0].attempt), (wait, 0));
    assert_eq!(r[0].outcome, AttemptOutcome::Final(JobState::Cancelled));
    assert_eq!((r[0].started_ms, r[0].running_ms), (None, 0));
    assert!(r[0].nodes.is_empty());
    c.job_cleared(1, run, 150);
    assert!(records(&mut c).0.is_empty());
    c.job_cleared(2, run, 200);
    let (r, _) = records(&mut c);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].job, r[0].attempt), (run, 1));
    assert_eq!(r[0].outcome, AttemptOutcome::Final(JobState::Cancelled));
    assert_eq!(r[0].ended_ms, 200);
    assert_eq!(r[0].nodes.len(), 2);
    assert_eq!(r[0].core_ms(), 4 * 200);
}

#[test]
fn node_loss_requeues_with_a_record_and_the_rerun_counts_it() {
    let mut c = cluster();
    let id = c.submit(spec(2), "s".into(), 0).unwrap();
    let host = c.jobs[&id].alloc[0].host.clone();
    let conn = if host == "a1" { 1 } else { 2 };
    c.node_lost(conn, 500);
    let (r, _) = records(&mut c);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].attempt, 1);
    assert_eq!(
        r[0].outcome,
        AttemptOutcome::Requeued(format!("node {host} lost"))
    );
    assert_eq!((r[0].requeues, r[0].running_ms), (1, 500));
    assert_eq!(r[0].requeue_reasons, vec![format!("node {host} lost")]);
    // The rerun (after the fence) ends: attempt 2, one requeue so far, and why.
    c.handle_timeout(1000);
    let host2 = c.jobs[&id].alloc[0].host.clone();
    assert_ne!(host2, host);
    let conn2 = if host2 == "a1" { 1 } else { 2 };
    c.job_exited(conn2, id, exit(0), 3000);
    let (r, _) = records(&mut c);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].attempt, 2);
    assert_eq!(r[0].outcome, AttemptOutcome::Final(JobState::Completed));
    assert_eq!(r[0].started_ms, Some(1000));
    assert_eq!(r[0].requeues, 1);
    assert_eq!(r[0].requeue_reasons, vec![format!("node {host} lost")]);
}

#[test]
fn owner_suspends_then_vacates_one_record_and_events_naming_the_node() {
    let mut c = cluster();
    let id = c.submit(spec(4), "s".into(), 0).unwrap();
    records(&mut c);
    c.node_status(2, status(Availability::OwnerActive), 1000);
    let (r, ev) = records(&mut c);
    assert!(r.is_empty());
    assert_eq!(
        ev,
        vec![("a2".to_string(), OwnerEventKind::Suspend, id, 1000)]
    );
    let vacate_at = 1000 + OwnerPolicy::default().vacate_after_ms;
    c.handle_timeout(vacate_at);
    let (r, ev) = records(&mut c);
    assert_eq!(
        ev,
        vec![("a2".to_string(), OwnerEventKind::Vacate, id, vacate_at)]
    );
    assert_eq!(r.len(), 1);
    let AttemptOutcome::Requeued(why) = &r[0].outcome else {
        panic!("{r:?}")
    };
    assert!(
        why.starts_with("vacated: the owner of node a2 stayed busy"),
        "{why}"
    );
    assert_eq!(r[0].suspended_ms, vacate_at - 1000);
    assert_eq!(r[0].running_ms, 1000);
    assert_eq!(r[0].requeue_reasons, vec![why.clone()]);
    c.check_invariants().unwrap();
}

#[test]
fn cancel_while_suspended_keeps_the_suspended_time() {
    let mut c = cluster();
    let id = c.submit(spec(2), "s".into(), 0).unwrap();
    let host = c.jobs[&id].alloc[0].host.clone();
    let conn = if host == "a1" { 1 } else { 2 };
    c.node_status(conn, status(Availability::OwnerActive), 100);
    c.cancel(id, 400).unwrap();
    c.job_cleared(conn, id, 500);
    let (r, _) = records(&mut c);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].outcome, AttemptOutcome::Final(JobState::Cancelled));
    assert_eq!((r[0].running_ms, r[0].suspended_ms), (200, 300));
}

#[test]
fn unconfirmed_after_restart_is_requeued_with_a_record() {
    let mut c = cluster();
    let id = c.submit(spec(2), "s".into(), 0).unwrap();
    records(&mut c);
    let rec = c.job_record(id).unwrap();
    assert!(rec.run_open);
    let nodes = ["a1", "a2"].iter().map(|n| info(n, 2)).collect();
    let mut c2 = Core::new(CoreConfig::default());
    c2.restore(vec![rec], nodes, &[], 1000);
    let deadline = c2.poll_timeout().unwrap();
    c2.handle_timeout(deadline);
    let (r, _) = records(&mut c2);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].attempt, 1);
    assert!(
        matches!(&r[0].outcome, AttemptOutcome::Requeued(w) if w.contains("did not report back")),
        "{r:?}"
    );
}

#[test]
fn a_failing_multi_node_run_gives_one_record_failed_or_requeued() {
    // Failed once every node confirms.
    let mut c = cluster();
    let id = c.submit(spec(4), "s".into(), 0).unwrap();
    let main = if c.jobs[&id].alloc[0].host == "a1" {
        1
    } else {
        2
    };
    let other = 3 - main;
    c.job_exited(main, id, exit(3), 100);
    assert!(records(&mut c).0.is_empty());
    c.job_cleared(main, id, 110);
    c.job_cleared(other, id, 120);
    let (r, _) = records(&mut c);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].outcome, AttemptOutcome::Final(JobState::Failed));
    assert_eq!(r[0].exit, Some(exit(3)));
    assert_eq!(r[0].ended_ms, 120);
    // A node lost meanwhile: requeued instead, with the exit seen.
    let mut c = cluster();
    let id = c.submit(spec(4), "s".into(), 0).unwrap();
    let main = if c.jobs[&id].alloc[0].host == "a1" {
        1
    } else {
        2
    };
    c.job_exited(main, id, exit(3), 100);
    c.node_lost(3 - main, 150);
    let (r, _) = records(&mut c);
    assert_eq!(r.len(), 1);
    assert!(matches!(r[0].outcome, AttemptOutcome::Requeued(_)), "{r:?}");
    assert_eq!(r[0].exit, Some(exit(3)));
}

#[test]
fn a_node_back_without_the_processes_and_an_early_move_each_give_one_record() {
    // Back without the processes (a new connection, holding nothing).
    let mut c = cluster();
    let id = c.submit(spec(2), "s".into(), 0).unwrap();
    let host = c.jobs[&id].alloc[0].host.clone();
    records(&mut c);
    c.node_connected(9, info(&host, 2), 300).unwrap();
    let (r, _) = records(&mut c);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(
        r[0].outcome,
        AttemptOutcome::Requeued(format!("node {host} came back without the job's processes"))
    );
    // Early move: suspended for requeue_when_suspended_after and it fits elsewhere.
    let mut c = cluster();
    let id = c.submit(spec(2), "s".into(), 0).unwrap();
    let host = c.jobs[&id].alloc[0].host.clone();
    let conn = if host == "a1" { 1 } else { 2 };
    c.node_status(conn, status(Availability::OwnerActive), 100);
    records(&mut c);
    let early = 100 + c.cfg.requeue_when_suspended_after_ms;
    c.handle_timeout(early);
    let (r, ev) = records(&mut c);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].attempt, 1);
    let AttemptOutcome::Requeued(why) = &r[0].outcome else {
        panic!("{r:?}")
    };
    assert!(why.contains("it can run elsewhere now"), "{why}");
    assert_eq!(ev, vec![(host.clone(), OwnerEventKind::Vacate, id, early)]);
    // Once the old node confirms, it runs elsewhere: attempt 2 is open, nothing more recorded.
    assert!(!c.jobs[&id].run_open);
    c.job_cleared(conn, id, early + 10);
    assert!(records(&mut c).0.is_empty());
    assert!(c.jobs[&id].run_open);
    assert_ne!(c.jobs[&id].alloc[0].host, host);
    assert_eq!(c.jobs[&id].epoch, 2);
    c.check_invariants().unwrap();
}
