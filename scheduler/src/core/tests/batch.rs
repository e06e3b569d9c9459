//! Arrays and dependencies: the throttle, cancelling a whole array or one task, restore, and
//! dependency chains (ok, notok, any, broken at once, cascades, on arrays).

use super::*;
use graze_proto::{ArraySpec, DepKind, Dependency, JobRef};

fn array_spec(n: u32, indices: Vec<u32>, throttle: Option<u32>) -> JobSpec {
    JobSpec {
        array: Some(ArraySpec { indices, throttle }),
        ..spec(n)
    }
}

fn after(n: u32, deps: &[(DepKind, JobId)]) -> JobSpec {
    JobSpec {
        after: deps
            .iter()
            .map(|(kind, job)| Dependency {
                kind: *kind,
                job: *job,
            })
            .collect(),
        ..spec(n)
    }
}

fn task(c: &Core, array: JobId, index: u32) -> JobId {
    match c.resolve(JobRef {
        job: array,
        task: Some(index),
    }) {
        Ok(Target::Job(id)) => id,
        other => panic!("{array}.{index}: {other:?}"),
    }
}

fn exit(code: i32) -> ExitStatus {
    ExitStatus {
        code: Some(code),
        signal: None,
    }
}

/// Job `id` ends with `code` on its (one) node, which then confirms the kill.
fn end(c: &mut Core, id: JobId, code: i32, now: u64) {
    let host = c.job_view(id).unwrap().allocation[0].host.clone();
    let conn = conn_of(&host);
    c.job_exited(conn, id, exit(code), now);
    c.job_cleared(conn, id, now);
}

/// Nodes a1..a3 with 4 cores each (conns 1..3).
fn nodes() -> Core {
    let mut c = Core::new(CoreConfig::default());
    for (i, n) in ["a1", "a2", "a3"].iter().enumerate() {
        add(&mut c, i as u64 + 1, n, 4, 0);
    }
    c
}

fn env_of(out: &[Output], job: JobId) -> Vec<(String, String)> {
    out.iter()
        .find_map(|o| match o {
            Output::Send {
                msg: SchedulerMsg::StartJob { job: j, env, .. },
                ..
            } if *j == job => Some(env.clone()),
            _ => None,
        })
        .unwrap()
}

#[test]
fn an_array_runs_at_most_its_throttle_and_each_task_knows_its_index() {
    let mut c = nodes();
    let a = c
        .submit(array_spec(1, vec![1, 2, 3, 5, 8], Some(2)), "s".into(), 1)
        .unwrap();
    let out = drain(&mut c);
    let started: Vec<JobId> = starts(&out).into_iter().map(|s| s.1).collect();
    assert_eq!(started, [task(&c, a, 1), task(&c, a, 2)]);
    let env = env_of(&out, task(&c, a, 2));
    for kv in [
        ("GRAZE_ARRAY_INDEX", "2"),
        ("GRAZE_ARRAY_JOB_ID", &a.to_string()),
        ("GRAZE_ARRAY_COUNT", "5"),
    ] {
        assert!(
            env.contains(&(kv.0.into(), kv.1.into())),
            "{kv:?} in {env:?}"
        );
    }
    let t3 = task(&c, a, 3);
    assert_eq!(
        c.job_view(t3).unwrap().waiting_for.as_deref(),
        Some(format!("throttled (2 of array {a} running)").as_str())
    );
    assert_eq!(c.job_view(t3).unwrap().task.unwrap().index, 3);
    c.check_invariants().unwrap();
    // One task ends: exactly one more starts.
    let t = task(&c, a, 1);
    end(&mut c, t, 0, 10);
    let s: Vec<JobId> = starts(&drain(&mut c)).into_iter().map(|s| s.1).collect();
    assert_eq!(s, [t3]);
    c.check_invariants().unwrap();
    // Ids: the array's id is no job's; the tasks follow it.
    assert_eq!(c.resolve(a.into()), Ok(Target::Array(a)));
    assert!(c.job_view(a).is_none());
    let e = c
        .resolve(JobRef {
            job: a,
            task: Some(4),
        })
        .unwrap_err();
    assert_eq!(e, format!("no task {a}.4: array {a} has indices 1-3,5,8"));
}

#[test]
fn bad_array_shapes_are_refused_and_nothing_is_queued() {
    let mut c = nodes();
    for (shape, want) in [
        (vec![], "at least one index"),
        (vec![3, 2], "ascending without repeats"),
        (vec![1, 1], "ascending without repeats"),
        ((0..=MAX).collect::<Vec<u32>>(), "at most 10000 allowed"),
    ] {
        let e = c
            .submit(array_spec(1, shape, None), "s".into(), 1)
            .unwrap_err();
        assert!(e.contains(want), "{e}");
    }
    let e = c
        .submit(array_spec(1, vec![1, 2], Some(0)), "s".into(), 1)
        .unwrap_err();
    assert_eq!(
        e,
        "invalid --array '1-2%0': the throttle must be at least 1"
    );
    assert!(c.job_views(true).is_empty());
    assert!(c.arrays.is_empty());
}

const MAX: u32 = graze_proto::MAX_ARRAY_TASKS;

#[test]
fn cancel_one_task_or_the_whole_array() {
    let mut c = nodes();
    let a = c
        .submit(array_spec(2, vec![1, 2, 3, 4], Some(2)), "s".into(), 1)
        .unwrap();
    drain(&mut c);
    let (t1, t2, t3) = (task(&c, a, 1), task(&c, a, 2), task(&c, a, 3));
    // One queued task.
    assert_eq!(c.cancel(t3, 2), Ok(JobState::Cancelled));
    assert_eq!(c.job_state(t1), Some(JobState::Running));
    // The whole array: the queued one ends at once, the running ones once their nodes clear.
    c.cancel_array(a, 3).unwrap();
    drain(&mut c);
    assert_eq!(c.job_state(task(&c, a, 4)), Some(JobState::Cancelled));
    assert_eq!(c.job_state(t1), Some(JobState::Cancelling));
    assert_eq!(c.array_final(a), Some(false));
    for t in [t1, t2] {
        let host = c.job_view(t).unwrap().allocation[0].host.clone();
        c.job_cleared(conn_of(&host), t, 4);
    }
    assert_eq!(c.array_final(a), Some(true));
    assert_eq!(
        c.cancel_array(a, 5),
        Err(format!("array {a} has ended: no task is left to cancel"))
    );
    c.check_invariants().unwrap();
}

#[test]
fn an_array_survives_a_restart_with_its_throttle() {
    let mut c = nodes();
    let a = c
        .submit(array_spec(1, vec![1, 2, 3], Some(1)), "s".into(), 1)
        .unwrap();
    drain(&mut c);
    let t1 = task(&c, a, 1);
    let mut r = restart(&c, 100);
    assert_eq!(r.resolve(a.into()), Ok(Target::Array(a)));
    assert_eq!(task(&r, a, 3), task(&c, a, 3));
    // The restored running task still counts against the throttle.
    let t2 = task(&r, a, 2);
    assert_eq!(
        r.job_view(t2).unwrap().waiting_for.as_deref(),
        Some(format!("throttled (1 of array {a} running)").as_str())
    );
    // New ids do not reuse the array's.
    let j = r.submit(spec(1), "s".into(), 101).unwrap();
    assert!(j > task(&r, a, 3));
    // Its node comes back holding task 1, which ends; task 2 starts.
    let mut i = info("a1", 4, &[]);
    i.held = vec![held(t1, 1)];
    r.node_connected(11, i, 102).unwrap();
    r.node_status(11, status(true, 0), 102);
    for (conn, n) in [(12, "a2"), (13, "a3")] {
        r.node_connected(conn, info(n, 4, &[]), 102).unwrap();
        r.node_status(conn, status(true, 0), 102);
    }
    drain(&mut r);
    r.job_exited(11, t1, exit(0), 103);
    r.job_cleared(11, t1, 103);
    let s: Vec<JobId> = starts(&drain(&mut r)).into_iter().map(|s| s.1).collect();
    assert_eq!(s, [t2]);
    r.check_invariants().unwrap();
}

#[test]
fn an_ok_chain_runs_in_order() {
    let mut c = nodes();
    let j1 = c.submit(spec(1), "s".into(), 1).unwrap();
    let j2 = c
        .submit(after(1, &[(DepKind::Ok, j1)]), "s".into(), 1)
        .unwrap();
    let j3 = c
        .submit(after(1, &[(DepKind::Ok, j2)]), "s".into(), 1)
        .unwrap();
    drain(&mut c);
    assert_eq!(c.job_state(j2), Some(JobState::Queued));
    assert_eq!(
        c.job_view(j3).unwrap().waiting_for.as_deref(),
        Some(format!("waiting for job {j2} (ok)").as_str())
    );
    end(&mut c, j1, 0, 5);
    assert_eq!(c.job_state(j2), Some(JobState::Running));
    assert_eq!(c.job_state(j3), Some(JobState::Queued));
    end(&mut c, j2, 0, 6);
    assert_eq!(c.job_state(j3), Some(JobState::Running));
    c.check_invariants().unwrap();
}

#[test]
fn a_broken_ok_fails_the_chain_at_once_with_the_reason() {
    let mut c = nodes();
    let j1 = c.submit(spec(1), "s".into(), 1).unwrap();
    let j2 = c
        .submit(after(1, &[(DepKind::Ok, j1)]), "s".into(), 1)
        .unwrap();
    let j3 = c
        .submit(after(1, &[(DepKind::Ok, j2)]), "s".into(), 1)
        .unwrap();
    let j4 = c
        .submit(after(1, &[(DepKind::NotOk, j2)]), "s".into(), 1)
        .unwrap();
    drain(&mut c);
    end(&mut c, j1, 1, 5);
    let out = drain(&mut c);
    for j in [j2, j3] {
        assert_eq!(c.job_state(j), Some(JobState::DependencyFailed));
        assert!(out.contains(&Output::JobFinal(j)));
    }
    let last = |j| c.job_view(j).unwrap().events.last().unwrap().what.clone();
    assert_eq!(
        last(j2),
        format!("dependency-failed: job {j1} failed (exit 1); this job needed ok:{j1}")
    );
    assert_eq!(
        last(j3),
        format!("dependency-failed: job {j2} ended dependency-failed; this job needed ok:{j2}")
    );
    // notok on a job that never ran is met: it runs.
    assert_eq!(c.job_state(j4), Some(JobState::Running));
    c.check_invariants().unwrap();
}

#[test]
fn notok_any_and_decided_at_submit() {
    let mut c = nodes();
    let j1 = c.submit(spec(1), "s".into(), 1).unwrap();
    drain(&mut c);
    end(&mut c, j1, 0, 2);
    // Decided at submit: ok on a completed job runs at once; notok is broken at once.
    let ok = c
        .submit(after(1, &[(DepKind::Ok, j1)]), "s".into(), 3)
        .unwrap();
    let nok = c
        .submit(after(1, &[(DepKind::NotOk, j1)]), "s".into(), 3)
        .unwrap();
    let any = c
        .submit(after(1, &[(DepKind::Any, j1)]), "s".into(), 3)
        .unwrap();
    assert_eq!(c.job_state(ok), Some(JobState::Running));
    assert_eq!(c.job_state(nok), Some(JobState::DependencyFailed));
    assert_eq!(c.job_state(any), Some(JobState::Running));
    // A cancelled queued job: any and notok are met.
    let q = c.submit(spec(64), "s".into(), 4);
    assert!(q.is_err(), "needs more than the cluster");
    let q = c.submit(spec(12), "s".into(), 4).unwrap();
    let a2 = c
        .submit(after(1, &[(DepKind::Any, q)]), "s".into(), 4)
        .unwrap();
    drain(&mut c);
    assert_eq!(c.job_state(a2), Some(JobState::Queued));
    c.cancel(q, 5).unwrap();
    assert_eq!(c.job_state(a2), Some(JobState::Running));
    // No such job: refused, nothing queued.
    let n = c.job_views(true).len();
    let e = c
        .submit(after(1, &[(DepKind::Ok, JobId(999))]), "s".into(), 6)
        .unwrap_err();
    assert_eq!(e, "invalid --after 'ok:999': no job 999");
    assert_eq!(c.job_views(true).len(), n);
    c.check_invariants().unwrap();
}

#[test]
fn dependencies_on_arrays() {
    let mut c = nodes();
    let a = c
        .submit(array_spec(1, vec![1, 2, 3], None), "s".into(), 1)
        .unwrap();
    let ok = c
        .submit(after(1, &[(DepKind::Ok, a)]), "s".into(), 1)
        .unwrap();
    let any = c
        .submit(after(1, &[(DepKind::Any, a)]), "s".into(), 1)
        .unwrap();
    let nok = c
        .submit(after(1, &[(DepKind::NotOk, a)]), "s".into(), 1)
        .unwrap();
    drain(&mut c);
    assert_eq!(
        c.job_view(ok).unwrap().waiting_for.as_deref(),
        Some(format!("waiting for array {a} (ok)").as_str())
    );
    let t = task(&c, a, 1);
    end(&mut c, t, 0, 2);
    // The first task that fails breaks ok at once, before the others end.
    let t = task(&c, a, 2);
    end(&mut c, t, 3, 3);
    assert_eq!(c.job_state(ok), Some(JobState::DependencyFailed));
    assert_eq!(
        c.job_view(ok).unwrap().events.last().unwrap().what,
        format!(
            "dependency-failed: task {a}.2 of array {a} failed (exit 3); this job needed ok:{a}"
        )
    );
    assert_eq!(c.job_state(any), Some(JobState::Queued));
    assert_eq!(c.job_state(nok), Some(JobState::Queued));
    let t = task(&c, a, 3);
    end(&mut c, t, 0, 4);
    assert_eq!(c.job_state(any), Some(JobState::Running));
    assert_eq!(c.job_state(nok), Some(JobState::Running));
    c.check_invariants().unwrap();

    // An array whose tasks all complete: ok runs, notok is broken; an array may depend too.
    let b = c
        .submit(array_spec(1, vec![1, 2], None), "s".into(), 5)
        .unwrap();
    let dep_arr = c
        .submit(
            JobSpec {
                after: vec![Dependency {
                    kind: DepKind::Ok,
                    job: b,
                }],
                ..array_spec(1, vec![7, 8], Some(1))
            },
            "s".into(),
            5,
        )
        .unwrap();
    let nok = c
        .submit(after(1, &[(DepKind::NotOk, b)]), "s".into(), 5)
        .unwrap();
    drain(&mut c);
    assert_eq!(c.job_state(task(&c, dep_arr, 7)), Some(JobState::Queued));
    let t = task(&c, b, 1);
    end(&mut c, t, 0, 6);
    let t = task(&c, b, 2);
    end(&mut c, t, 0, 6);
    assert_eq!(c.job_state(nok), Some(JobState::DependencyFailed));
    assert_eq!(
        c.job_view(nok).unwrap().events.last().unwrap().what,
        format!("dependency-failed: every task of array {b} completed; this job needed notok:{b}")
    );
    // ok met: the dependent array starts, one task at a time.
    assert_eq!(c.job_state(task(&c, dep_arr, 7)), Some(JobState::Running));
    assert_eq!(c.job_state(task(&c, dep_arr, 8)), Some(JobState::Queued));
    c.check_invariants().unwrap();
}

#[test]
fn dependencies_survive_a_restart() {
    let mut c = nodes();
    let j1 = c.submit(spec(1), "s".into(), 1).unwrap();
    let j2 = c
        .submit(after(1, &[(DepKind::Ok, j1)]), "s".into(), 1)
        .unwrap();
    drain(&mut c);
    let mut r = restart(&c, 10);
    for (conn, n) in [(11, "a1"), (12, "a2"), (13, "a3")] {
        let mut i = info(n, 4, &[]);
        if n == "a1" {
            i.held = vec![held(j1, 1)];
        }
        r.node_connected(conn, i, 11).unwrap();
        r.node_status(conn, status(true, 0), 11);
    }
    drain(&mut r);
    assert_eq!(r.job_state(j2), Some(JobState::Queued));
    r.job_exited(11, j1, exit(2), 12);
    assert_eq!(r.job_state(j2), Some(JobState::DependencyFailed));
    r.check_invariants().unwrap();
}

#[test]
fn events_are_numbered_across_jobs_and_restarts() {
    let mut c = nodes();
    let a = c.submit(spec(1), "s".into(), 1).unwrap();
    let b = c.submit(spec(1), "s".into(), 1).unwrap();
    drain(&mut c);
    end(&mut c, a, 0, 2);
    let seqs = |c: &Core, j| -> Vec<u64> {
        c.job_view(j)
            .unwrap()
            .events
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    let (sa, sb) = (seqs(&c, a), seqs(&c, b));
    let mut all: Vec<u64> = sa.iter().chain(&sb).copied().collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), sa.len() + sb.len(), "unique: {sa:?} {sb:?}");
    assert!(sa.windows(2).all(|w| w[0] < w[1]), "{sa:?}");
    let top = *all.last().unwrap();
    let mut r = restart(&c, 10);
    let n = r.submit(spec(1), "s".into(), 11).unwrap();
    assert!(seqs(&r, n)[0] > top);
}
