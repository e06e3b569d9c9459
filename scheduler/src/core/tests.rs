use super::*;
use graze_proto::{
    Availability, ExitStatus, HostSlots, JobId, JobSpec, JobState, LaunchId, LaunchOutcome,
    NodeInfo, NodeStatus, SchedulerMsg, Unit,
};
use proptest::prelude::*;

mod checkpoint;
mod limits;

fn info(name: &str, cores: u32, groups: &[&str]) -> NodeInfo {
    NodeInfo {
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..fixtures::node_info(name, cores)
    }
}

fn status(offered: bool, idle_ms: u64) -> NodeStatus {
    NodeStatus {
        core_load: vec![],
        owner_cpu: 0.0,
        owner_idle_ms: idle_ms,
        availability: if offered {
            Availability::Offered
        } else {
            Availability::OwnerActive
        },
        idle_sources: vec![],
        unavailable_sources: vec![],
        window_ends_ms: None,
    }
}

fn spec(n: u32) -> JobSpec {
    JobSpec {
        name: None,
        nprocs: n,
        unit: Unit::Core,
        priority: 0,
        groups: vec![],
        nodes: vec![],
        command: vec!["mpiexec".into(), "graze-pi".into()],
        cwd: None,
        env: vec![],
        user: "u".into(),
        ..Default::default()
    }
}

fn add(c: &mut Core, conn: ConnId, name: &str, cores: u32, idle: u64) {
    c.node_connected(conn, info(name, cores, &[]), 0).unwrap();
    c.node_status(conn, status(true, idle), 0);
}

fn drain(c: &mut Core) -> Vec<Output> {
    std::iter::from_fn(|| c.poll_output()).collect()
}

fn starts(out: &[Output]) -> Vec<(ConnId, JobId, Vec<HostSlots>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send {
                conn,
                msg: SchedulerMsg::StartJob { job, hosts, .. },
            } => Some((*conn, *job, hosts.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn waits_for_cores_then_packs_on_few_nodes() {
    let mut c = Core::new(CoreConfig {
        max_job_cores: 16,
        ..CoreConfig::default()
    });
    add(&mut c, 1, "a1", 2, 10);
    add(&mut c, 2, "a2", 2, 30);
    add(&mut c, 3, "a3", 2, 20);
    let id = c.submit(spec(8), "s".into(), 1).unwrap();
    drain(&mut c);
    let v = c.job_view(id).unwrap();
    assert_eq!(v.state, JobState::Queued);
    assert_eq!(v.waiting_for.as_deref(), Some("needs 8 cores, 6 offered"));
    add(&mut c, 4, "a4", 2, 5);
    let out = drain(&mut c);
    let s = starts(&out);
    assert_eq!(s.len(), 1);
    // Idle longest first among equal nodes: a2 (30), a3 (20), a1 (10), a4 (5).
    let hosts: Vec<&str> = s[0].2.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(hosts, ["a2", "a3", "a1", "a4"]);
    assert_eq!(s[0].0, 2, "main command goes to the first host");
    c.check_invariants().unwrap();
}

#[test]
fn deferred_passes_wait_for_the_driver_and_place_the_same() {
    let mut c = Core::new(CoreConfig {
        max_job_cores: 16,
        ..CoreConfig::default()
    });
    c.defer_passes();
    assert!(!c.run_deferred_pass(0), "nothing asked for a pass yet");
    add(&mut c, 1, "a1", 2, 10);
    add(&mut c, 2, "a2", 2, 30);
    add(&mut c, 3, "a3", 2, 20);
    // A submit still places its own job at once (here it does not fit).
    let id = c.submit(spec(8), "s".into(), 1).unwrap();
    drain(&mut c);
    assert_eq!(c.job_view(id).unwrap().state, JobState::Queued);
    // The node that makes it fit offers: nothing starts until the driver runs the pass ...
    add(&mut c, 4, "a4", 2, 5);
    assert!(starts(&drain(&mut c)).is_empty());
    assert_eq!(c.job_view(id).unwrap().state, JobState::Queued);
    // ... which places it as a pass at once would have (see the test above).
    assert!(c.run_deferred_pass(2));
    let s = starts(&drain(&mut c));
    let hosts: Vec<&str> = s[0].2.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(hosts, ["a2", "a3", "a1", "a4"]);
    assert!(!c.run_deferred_pass(3), "one pass for the whole batch");
    c.check_invariants().unwrap();
}

#[test]
fn views_of_many_jobs_give_each_its_own_waiting_reason() {
    let mut c = Core::new(CoreConfig {
        max_job_cores: 64,
        ..CoreConfig::default()
    });
    add(&mut c, 1, "a1", 2, 10);
    c.node_connected(2, info("g1", 4, &["gpu"]), 0).unwrap();
    c.node_status(2, status(true, 5), 0);
    let big = c.submit(spec(16), "s".into(), 1).unwrap();
    let gpu = c
        .submit(
            JobSpec {
                groups: vec!["gpu".into()],
                ..spec(8)
            },
            "s".into(),
            1,
        )
        .unwrap();
    let small = c.submit(spec(1), "s".into(), 1).unwrap();
    let big2 = c.submit(spec(16), "s".into(), 1).unwrap();
    let ids = [big, gpu, small, big2];
    let one_by_one: Vec<Option<String>> = ids
        .iter()
        .map(|id| c.job_view(*id).unwrap().waiting_for)
        .collect();
    let together: Vec<Option<String>> = c
        .job_views_of(ids)
        .into_iter()
        .map(|v| v.waiting_for)
        .collect();
    assert_eq!(together, one_by_one);
    // Different specs keep different reasons; equal ones share theirs.
    assert_ne!(together[0], together[1]);
    assert_eq!(together[0], together[3]);
}

#[test]
fn packs_onto_biggest_nodes() {
    let mut c = Core::new(CoreConfig::default());
    add(&mut c, 1, "small", 2, 100);
    add(&mut c, 2, "big", 8, 1);
    let id = c.submit(spec(8), "s".into(), 1).unwrap();
    let s = starts(&drain(&mut c));
    assert_eq!(s[0].1, id);
    assert_eq!(
        s[0].2,
        vec![HostSlots {
            host: "big".into(),
            slots: 8
        }]
    );
}

#[test]
fn never_fits_is_refused_with_numbers() {
    let mut c = Core::new(CoreConfig::default());
    for i in 0..4 {
        add(&mut c, i, &format!("a{i}"), 2, 0);
    }
    let e = c.submit(spec(100), "s".into(), 0).unwrap_err();
    assert_eq!(
        e,
        "job needs 100 cores but the whole cluster has 8 (4 nodes): it could never run"
    );
    assert!(c.job_views(true).is_empty());
}

#[test]
fn groups_and_nodes_restrict_placement() {
    let mut c = Core::new(CoreConfig::default());
    c.node_connected(1, info("gpu1", 4, &["gpu"]), 0).unwrap();
    c.node_status(1, status(true, 0), 0);
    add(&mut c, 2, "cpu1", 8, 0);
    let mut s = spec(2);
    s.groups = vec!["gpu".into()];
    c.submit(s, "x".into(), 0).unwrap();
    let st = starts(&drain(&mut c));
    assert_eq!(st[0].2[0].host, "gpu1");
    let mut s = spec(5);
    s.groups = vec!["gpu".into()];
    let e = c.submit(s, "x".into(), 0).unwrap_err();
    assert!(e.contains("in group gpu has 4"), "{e}");
    let mut s = spec(1);
    s.nodes = vec!["nope".into()];
    let e = c.submit(s, "x".into(), 0).unwrap_err();
    assert!(e.contains("unknown node 'nope'"), "{e}");
}

#[test]
fn socket_and_node_units() {
    let mut c = Core::new(CoreConfig::default());
    let mut i = info("n1", 8, &[]);
    i.sockets = 2;
    c.node_connected(1, i, 0).unwrap();
    c.node_status(1, status(true, 0), 0);
    let mut s = spec(2);
    s.unit = Unit::Socket;
    c.submit(s, "x".into(), 0).unwrap();
    let st = starts(&drain(&mut c));
    assert_eq!(st[0].2[0].slots, 2);
    assert_eq!(c.node_views()[0].used_cores, 8);
    let mut s = spec(1);
    s.unit = Unit::Node;
    let id = c.submit(s, "x".into(), 0).unwrap();
    assert_eq!(
        c.job_view(id).unwrap().waiting_for.as_deref(),
        Some("needs 1 nodes, 0 offered")
    );
}

#[test]
fn exit_then_clear_frees_cores() {
    let mut c = Core::new(CoreConfig::default());
    add(&mut c, 1, "a1", 2, 0);
    add(&mut c, 2, "a2", 2, 0);
    let id = c.submit(spec(4), "s".into(), 0).unwrap();
    drain(&mut c);
    // A node that is not the main node cannot end the job.
    c.job_exited(
        2,
        id,
        ExitStatus {
            code: Some(0),
            signal: None,
        },
        5,
    );
    assert_eq!(c.job_state(id), Some(JobState::Running));
    c.job_exited(
        1,
        id,
        ExitStatus {
            code: Some(0),
            signal: None,
        },
        5,
    );
    assert_eq!(c.job_state(id), Some(JobState::Completed));
    let out = drain(&mut c);
    let kills = out
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::Send {
                    msg: SchedulerMsg::KillJob { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(kills, 2);
    assert!(out.contains(&Output::JobFinal(id)));
    // Cores stay held until each node confirms.
    let id2 = c.submit(spec(4), "s".into(), 6).unwrap();
    assert_eq!(c.job_state(id2), Some(JobState::Queued));
    c.job_cleared(1, id, 7);
    assert_eq!(c.job_state(id2), Some(JobState::Queued));
    c.job_cleared(2, id, 7);
    assert_eq!(c.job_state(id2), Some(JobState::Running));
    c.check_invariants().unwrap();
}

#[test]
fn cancel_running_waits_for_every_node() {
    let mut c = Core::new(CoreConfig::default());
    add(&mut c, 1, "a1", 2, 0);
    add(&mut c, 2, "a2", 2, 0);
    let id = c.submit(spec(3), "s".into(), 0).unwrap();
    drain(&mut c);
    assert_eq!(c.cancel(id, 1).unwrap(), JobState::Cancelling);
    c.job_cleared(1, id, 2);
    assert_eq!(c.job_state(id), Some(JobState::Cancelling));
    c.job_cleared(2, id, 2);
    assert_eq!(c.job_state(id), Some(JobState::Cancelled));
    assert!(c.cancel(id, 3).unwrap_err().contains("already cancelled"));
}

#[test]
fn node_loss_requeues_and_fences_the_old_run() {
    let mut c = three_nodes();
    let id = c.submit(spec(4), "s".into(), 0).unwrap();
    let s = starts(&drain(&mut c));
    let lost = &s[0].2[1].host;
    let lost_conn = conn_of(lost);
    c.node_lost(lost_conn, 10);
    let v = c.job_view(id).unwrap();
    assert_eq!(v.state, JobState::Queued);
    assert_eq!(v.requeues, 1);
    assert!(v
        .events
        .iter()
        .any(|e| e.what == format!("requeued: node {lost} lost")));
    // The other node of the old run must confirm before the job runs again.
    assert!(starts(&drain(&mut c)).is_empty());
    let other = &s[0].2[0].host;
    let other_conn = conn_of(other);
    c.job_cleared(other_conn, id, 11);
    // Fenced a moment, so the cut-off agent's own kill lands before the next run.
    assert!(starts(&drain(&mut c)).is_empty());
    let fence = 10 + crate::core::DEFAULT_FENCE_MARGIN_MS;
    assert_eq!(c.poll_timeout(), Some(fence));
    c.handle_timeout(fence - 1);
    assert!(starts(&drain(&mut c)).is_empty());
    c.handle_timeout(fence);
    let s2 = starts(&drain(&mut c));
    assert_eq!(s2.len(), 1);
    c.check_invariants().unwrap();
}

#[test]
fn drained_node_takes_no_new_work_until_undrained() {
    let mut c = Core::new(CoreConfig::default());
    add(&mut c, 1, "a1", 2, 10);
    add(&mut c, 2, "a2", 2, 10);
    let running = c.submit(spec(2), "s".into(), 1).unwrap();
    let out = drain(&mut c);
    let on = starts(&out)[0].2[0].host.clone();
    let v = c.set_drained(&on, true, 2).unwrap();
    assert!(v.drained);
    // The running job goes on; a new job may only use the other node.
    assert_eq!(c.job_state(running), Some(JobState::Running));
    let id = c.submit(spec(2), "s".into(), 3).unwrap();
    let out = drain(&mut c);
    assert_ne!(starts(&out)[0].2[0].host, on);
    c.job_exited(
        if on == "a1" { 1 } else { 2 },
        running,
        ExitStatus {
            code: Some(0),
            signal: None,
        },
        4,
    );
    c.job_cleared(if on == "a1" { 1 } else { 2 }, running, 5);
    let third = c.submit(spec(2), "s".into(), 6).unwrap();
    drain(&mut c);
    assert_eq!(
        c.job_state(third),
        Some(JobState::Queued),
        "drained node stays unused"
    );
    c.set_drained(&on, false, 7).unwrap();
    assert_eq!(c.job_state(third), Some(JobState::Running));
    assert_eq!(c.job_state(id), Some(JobState::Running));
    let e = c.set_drained("zz", true, 8).unwrap_err();
    assert!(e.contains("unknown node 'zz'"), "{e}");
    c.check_invariants().unwrap();
}

#[test]
fn launch_is_confined_to_the_allocation() {
    let mut c = three_nodes();
    let id = c.submit(spec(4), "sec".into(), 0).unwrap();
    let s = starts(&drain(&mut c));
    let main = s[0].0;
    let hosts: Vec<String> = s[0].2.iter().map(|h| h.host.clone()).collect();
    let outside = ["a1", "a2", "a3"]
        .into_iter()
        .find(|h| !hosts.iter().any(|x| x == h))
        .unwrap();
    c.launch(main, LaunchId(1), id, "sec", outside, vec!["true".into()]);
    c.launch(main, LaunchId(2), id, "bad", &hosts[1], vec!["true".into()]);
    c.launch(
        main,
        LaunchId(3),
        JobId(99),
        "sec",
        &hosts[1],
        vec!["true".into()],
    );
    let out = drain(&mut c);
    let errors: Vec<String> = out
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                msg:
                    SchedulerMsg::LaunchDone {
                        outcome: LaunchOutcome::Refused { reason },
                        ..
                    },
                ..
            } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 3, "{out:?}");
    assert!(errors[0].contains("not allocated"));
    assert!(errors[1].contains("wrong secret"));
    assert!(errors[2].contains("no job 99"));
    c.launch(main, LaunchId(4), id, "sec", &hosts[1], vec!["true".into()]);
    let out = drain(&mut c);
    let Some(Output::Send {
        msg:
            SchedulerMsg::SpawnRemote {
                origin,
                origin_id,
                epoch,
                ..
            },
        ..
    }) = out.first()
    else {
        panic!("{out:?}")
    };
    assert_eq!(*epoch, 1);
    assert_eq!(*origin_id, LaunchId(4));
    let origin = origin.clone();
    c.remote_exited(
        &origin,
        LaunchId(4),
        ExitStatus {
            code: Some(0),
            signal: None,
        },
    );
    let out = drain(&mut c);
    assert_eq!(
        out,
        vec![Output::Send {
            conn: main,
            msg: SchedulerMsg::LaunchDone {
                id: LaunchId(4),
                outcome: LaunchOutcome::Exited(ExitStatus {
                    code: Some(0),
                    signal: None
                }),
            }
        }]
    );
}

fn avail(kind: u8) -> Availability {
    match kind {
        0 | 1 => Availability::Offered,
        2 => Availability::OwnerActive,
        3 => Availability::Reclaimed {
            resumes_in_ms: 1000,
        },
        4 => Availability::OutsideWindow,
        _ => Availability::Waiting { remaining_ms: 1000 },
    }
}

/// conn 1 = a1 (2 cores), conn 2 = a2 (2 cores), conn 3 = a3 (4 cores); a 4-rank job on
/// a1 + a2.
fn suspend_fixture(cfg: CoreConfig) -> (Core, JobId) {
    let mut c = Core::new(cfg);
    add(&mut c, 1, "a1", 2, 100);
    add(&mut c, 2, "a2", 2, 50);
    let id = c.submit(spec(4), "s".into(), 10).unwrap();
    let s = starts(&drain(&mut c));
    assert_eq!(s.len(), 1);
    (c, id)
}

fn sent(out: &[Output]) -> Vec<(ConnId, SchedulerMsg)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { conn, msg } => Some((*conn, msg.clone())),
            _ => None,
        })
        .collect()
}

fn busy(c: &mut Core, conn: ConnId, a: Availability, now: u64) {
    let mut st = status(true, 0);
    st.availability = a;
    c.node_status(conn, st, now);
}

#[test]
fn reclaim_suspends_on_every_node_and_resumes_together() {
    let (mut c, id) = suspend_fixture(CoreConfig::default());
    busy(&mut c, 2, Availability::OwnerActive, 1000);
    let out = sent(&drain(&mut c));
    assert_eq!(
        out,
        vec![
            (1, SchedulerMsg::SuspendJob { job: id }),
            (2, SchedulerMsg::SuspendJob { job: id })
        ]
    );
    let v = c.job_view(id).unwrap();
    assert_eq!(v.state, JobState::Suspended);
    assert!(v
        .events
        .last()
        .unwrap()
        .what
        .contains("suspended: node a2 is owner-busy"));
    c.check_invariants().unwrap();
    // Owner idle, but not for resume_after yet: still suspended.
    busy(
        &mut c,
        2,
        Availability::Reclaimed { resumes_in_ms: 5 },
        2000,
    );
    assert!(sent(&drain(&mut c)).is_empty());
    assert_eq!(c.job_state(id), Some(JobState::Suspended));
    // Idle for resume_after (node waits for start_after before new work): resumed everywhere.
    busy(&mut c, 2, Availability::Waiting { remaining_ms: 9 }, 3000);
    let out = sent(&drain(&mut c));
    assert_eq!(
        out,
        vec![
            (1, SchedulerMsg::ResumeJob { job: id }),
            (2, SchedulerMsg::ResumeJob { job: id })
        ]
    );
    let v = c.job_view(id).unwrap();
    assert_eq!(v.state, JobState::Running);
    assert!(
        v.events.last().unwrap().what.starts_with("resumed"),
        "{:?}",
        v.events
    );
    c.check_invariants().unwrap();
}

#[test]
fn both_nodes_busy_resume_only_when_both_free() {
    let (mut c, id) = suspend_fixture(CoreConfig::default());
    busy(&mut c, 1, Availability::OwnerActive, 1000);
    busy(&mut c, 2, Availability::OwnerActive, 1001);
    drain(&mut c);
    busy(&mut c, 1, Availability::Offered, 2000);
    assert!(sent(&drain(&mut c)).is_empty());
    assert_eq!(c.job_state(id), Some(JobState::Suspended));
    c.check_invariants().unwrap();
    busy(&mut c, 2, Availability::Offered, 3000);
    assert_eq!(sent(&drain(&mut c)).len(), 2);
    assert_eq!(c.job_state(id), Some(JobState::Running));
}

#[test]
fn owner_stays_vacates_everywhere_and_requeues_in_front_avoiding_the_node() {
    let (mut c, id) = suspend_fixture(CoreConfig::default());
    let other = c.submit(spec(4), "s".into(), 20).unwrap();
    busy(&mut c, 2, Availability::OwnerActive, 1000);
    drain(&mut c);
    let vacate_at = 1000 + graze_proto::OwnerPolicy::default().vacate_after_ms;
    // First the early-move check (nowhere else to go), then the vacate.
    assert_eq!(c.poll_timeout(), Some(61_000));
    c.handle_timeout(61_000);
    assert_eq!(c.poll_timeout(), Some(vacate_at));
    c.handle_timeout(vacate_at - 1);
    assert!(sent(&drain(&mut c)).is_empty());
    c.handle_timeout(vacate_at);
    let out = sent(&drain(&mut c));
    assert_eq!(
        out,
        vec![
            (1, SchedulerMsg::VacateJob { job: id }),
            (2, SchedulerMsg::VacateJob { job: id })
        ]
    );
    let v = c.job_view(id).unwrap();
    assert_eq!(v.state, JobState::Queued);
    assert_eq!(v.requeues, 1);
    let last = &v.events.last().unwrap().what;
    assert!(
        last.contains("vacated and requeued: the owner of node a2 stayed busy for 10m"),
        "{last}"
    );
    // Front of its priority: ahead of the job submitted after it... and before older ones.
    assert_eq!(c.queued(), vec![id, other]);
    c.check_invariants().unwrap();
    // Cores come back only when both nodes confirm.
    c.job_cleared(1, id, vacate_at + 1);
    c.job_cleared(2, id, vacate_at + 2);
    // A new idle node: the job runs there, not on a2 even though a2 offers again first...
    add(&mut c, 3, "a3", 4, 10);
    let s = starts(&drain(&mut c));
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].1, id);
    assert_eq!(s[0].2[0].host, "a3");
    c.check_invariants().unwrap();
}

#[test]
fn avoided_node_is_used_again_once_it_offers() {
    let (mut c, id) = suspend_fixture(CoreConfig::default());
    busy(&mut c, 2, Availability::OwnerActive, 1000);
    c.handle_timeout(1000 + 600_000);
    c.job_cleared(1, id, 700_000);
    c.job_cleared(2, id, 700_001);
    drain(&mut c);
    let v = c.job_view(id).unwrap();
    assert!(
        v.waiting_for.as_deref().unwrap().contains("avoiding a2"),
        "{:?}",
        v.waiting_for
    );
    busy(&mut c, 2, Availability::Offered, 700_002);
    let s = starts(&drain(&mut c));
    assert_eq!(s[0].1, id);
    c.check_invariants().unwrap();
}

#[test]
fn window_end_vacates_at_once() {
    let (mut c, id) = suspend_fixture(CoreConfig::default());
    busy(&mut c, 1, Availability::OutsideWindow, 1000);
    let out = sent(&drain(&mut c));
    assert!(
        out.contains(&(1, SchedulerMsg::VacateJob { job: id })),
        "{out:?}"
    );
    assert!(
        out.contains(&(2, SchedulerMsg::VacateJob { job: id })),
        "{out:?}"
    );
    let v = c.job_view(id).unwrap();
    assert_eq!(v.state, JobState::Queued);
    assert!(v
        .events
        .iter()
        .any(|e| e.what.contains("availability window of node a1 ended")));
}

#[test]
fn early_move_when_it_fits_elsewhere() {
    let cfg = CoreConfig {
        requeue_when_suspended_after_ms: 60_000,
        ..CoreConfig::default()
    };
    let (mut c, id) = suspend_fixture(cfg);
    busy(&mut c, 2, Availability::OwnerActive, 1000);
    drain(&mut c);
    assert_eq!(c.poll_timeout(), Some(61_000));
    // Nowhere else to go at the deadline: stays suspended.
    c.handle_timeout(61_000);
    assert!(sent(&drain(&mut c)).is_empty());
    assert_eq!(c.job_state(id), Some(JobState::Suspended));
    assert_eq!(c.poll_timeout(), Some(601_000));
    // A big idle node appears: moved early.
    c.node_connected(3, info("a3", 4, &[]), 70_000).unwrap();
    c.node_status(3, status(true, 10), 70_000);
    let out = sent(&drain(&mut c));
    assert!(
        out.contains(&(2, SchedulerMsg::VacateJob { job: id })),
        "{out:?}"
    );
    let v = c.job_view(id).unwrap();
    assert!(
        v.events
            .last()
            .unwrap()
            .what
            .contains("can run elsewhere now"),
        "{:?}",
        v.events
    );
    c.check_invariants().unwrap();
}

#[test]
fn cancel_and_node_loss_of_a_suspended_job() {
    let (mut c, id) = suspend_fixture(CoreConfig::default());
    busy(&mut c, 2, Availability::OwnerActive, 1000);
    drain(&mut c);
    c.node_lost(2, 2000);
    assert_eq!(c.job_state(id), Some(JobState::Queued));
    c.check_invariants().unwrap();
    let (mut c, id) = suspend_fixture(CoreConfig::default());
    busy(&mut c, 2, Availability::OwnerActive, 1000);
    drain(&mut c);
    assert_eq!(c.cancel(id, 1500), Ok(JobState::Cancelling));
    c.job_cleared(1, id, 1600);
    c.job_cleared(2, id, 1700);
    assert_eq!(c.job_state(id), Some(JobState::Cancelled));
    c.check_invariants().unwrap();
}

#[derive(Debug, Clone)]
enum Op {
    Connect(u8, u8),
    Offer(u8, u8, u16),
    Tick(u32),
    Lose(u8),
    Submit(u8, i8, Option<u32>, bool),
    Exit(u8, bool),
    Clear(u8, u8),
    Cancel(u8),
    Restart,
    Reconnect(u8, bool),
    /// A job with a time limit (s), a signal before it, a begin time (s from now), held.
    SubmitLimited(u8, u8, bool, u8, bool),
    Release(u8),
    Hold(u8),
    /// An array: ranks per task, tasks, throttle (0: none).
    SubmitArray(u8, u8, u8),
    /// A job depending on job (or array) id: ranks, kind, id.
    SubmitAfter(u8, u8, u8),
    /// A checkpointing job: ranks, periodic (every 20 s).
    SubmitCkpt(u8, bool),
    /// `graze requeue`: job, with --checkpoint.
    Requeue(u8, bool),
    /// The main command of a job exits 85.
    Exit85(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6, 1u8..9).prop_map(|(n, c)| Op::Connect(n, c)),
        (0u8..6, 0u8..6, any::<u16>()).prop_map(|(n, o, i)| Op::Offer(n, o, i)),
        (0u32..700_000).prop_map(Op::Tick),
        (0u8..6).prop_map(Op::Lose),
        (
            1u8..12,
            -2i8..3,
            proptest::option::of(1u32..900_000),
            proptest::bool::weighted(0.2)
        )
            .prop_map(|(n, p, t, x)| Op::Submit(n, p, t, x)),
        (0u8..40, any::<bool>()).prop_map(|(j, ok)| Op::Exit(j, ok)),
        (0u8..6, 0u8..40).prop_map(|(n, j)| Op::Clear(n, j)),
        (0u8..40).prop_map(Op::Cancel),
        Just(Op::Restart),
        (0u8..6, any::<bool>()).prop_map(|(n, h)| Op::Reconnect(n, h)),
        (1u8..12, 1u8..200, any::<bool>(), 0u8..30, any::<bool>())
            .prop_map(|(n, t, s, b, h)| Op::SubmitLimited(n, t, s, b, h)),
        (0u8..40).prop_map(Op::Release),
        (0u8..40).prop_map(Op::Hold),
        (1u8..5, 1u8..7, 0u8..3).prop_map(|(k, n, t)| Op::SubmitArray(k, n, t)),
        (1u8..5, 0u8..3, 0u8..40).prop_map(|(k, d, j)| Op::SubmitAfter(k, d, j)),
        (1u8..9, any::<bool>()).prop_map(|(k, p)| Op::SubmitCkpt(k, p)),
        (0u8..40, any::<bool>()).prop_map(|(j, k)| Op::Requeue(j, k)),
        (0u8..40).prop_map(Op::Exit85),
    ]
}

proptest! {
    // 300 cases by default; PROPTEST_CASES=N runs more (or fewer).
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(300)
    ))]
    /// No core is promised to two jobs, and after every input no queued job that fits stays
    /// queued (unless it waits behind a reservation it could delay), a backfilled job never
    /// moves the reservation later, an exclusive job has its nodes to itself, an array never
    /// runs more than its throttle and a job never starts before its dependencies are met.
    #[test]
    fn invariants_hold(ops in proptest::collection::vec(op(), 1..80)) {
        let mut c = Core::new(CoreConfig { max_job_cores: 64, ..CoreConfig::default() });
        // conn id per node name: node n uses conn n*100 + generation.
        let mut gen = [0u64; 6];
        let mut now = 0;
        // Attempt records seen per job: (runs recorded, final records).
        let mut records: std::collections::HashMap<JobId, (u64, u64)> = Default::default();
        for op in ops {
            now += 1;
            match op {
                Op::Connect(n, cores) => {
                    gen[n as usize] += 1;
                    let conn = n as u64 * 100 + gen[n as usize];
                    let _ = c.node_connected(conn, info(&format!("n{n}"), cores as u32, &[]), now);
                }
                Op::Offer(n, kind, idle) => {
                    let mut st = status(true, idle as u64);
                    st.availability = avail(kind);
                    // Some nodes' availability windows close soon.
                    st.window_ends_ms = (idle % 3 == 0).then(|| now + u64::from(idle) * 20);
                    // A quiet status (false) leaves every deadline as it was: the driver
                    // asks `poll_timeout` again only after the others.
                    let before = c.poll_timeout();
                    if !c.node_status(n as u64 * 100 + gen[n as usize], st, now) {
                        prop_assert_eq!(c.poll_timeout(), before, "a quiet status moved a deadline");
                    }
                }
                Op::Tick(d) => {
                    now += d as u64;
                    c.handle_timeout(now);
                    if let Some(at) = c.poll_timeout() {
                        prop_assert!(at > now, "deadline {at} not after {now}");
                    }
                    // No run outlives its time limit, and none started before its begin time.
                    for (id, j) in &c.jobs {
                        if let (RunState::Running, Some(limit)) = (&j.state, j.spec.time_limit_ms) {
                            prop_assert!(j.running_ms(now) < limit, "job {id} ran past its limit");
                        }
                        if let (Some(b), Some(st)) = (j.spec.begin_ms, j.started_ms) {
                            prop_assert!(st >= b, "job {id} started at {st} before its begin {b}");
                        }
                        if j.spec.hold {
                            prop_assert!(!j.state.is_placed(), "held job {id} runs");
                        }
                    }
                }
                Op::Lose(n) => c.node_lost(n as u64 * 100 + gen[n as usize], now),
                Op::Submit(k, p, limit, exclusive) => {
                    let mut s = spec(k as u32);
                    s.priority = p as i32;
                    s.time_limit_ms = limit.map(u64::from);
                    s.exclusive = exclusive;
                    let _ = c.submit(s, "s".into(), now);
                }
                Op::Exit(j, ok) => {
                    // The main node of the job reports the exit.
                    if let Some(v) = c.job_view(JobId(j as u64)) {
                        if let Some(h) = v.allocation.first() {
                            let n: usize = h.host[1..].parse().unwrap();
                            c.job_exited(n as u64 * 100 + gen[n], JobId(j as u64), ExitStatus { code: Some(i32::from(!ok)), signal: None }, now);
                        }
                    }
                }
                Op::Clear(n, j) => c.job_cleared(n as u64 * 100 + gen[n as usize], JobId(j as u64), now),
                Op::Restart => {
                    c = restart(&c, now);
                    gen.iter_mut().for_each(|g| *g += 1);
                }
                Op::Reconnect(n, holds) => {
                    // The node comes back on a new connection, holding what it ran (or not).
                    let name = format!("n{n}");
                    let mut i = info(&name, 4, &[]);
                    if holds {
                        i.held = c
                            .job_views(false)
                            .iter()
                            .filter(|v| v.allocation.iter().any(|h| h.host == name))
                            .map(|v| held(v.id, c.jobs[&v.id].epoch))
                            .collect();
                    }
                    gen[n as usize] += 1;
                    let conn = n as u64 * 100 + gen[n as usize];
                    let _ = c.node_connected(conn, i, now);
                    c.node_status(conn, status(true, 0), now);
                }
                Op::Cancel(j) => match c.resolve(JobId(j as u64).into()) {
                    Ok(Target::Array(a)) => { let _ = c.cancel_array(a, now); }
                    _ => { let _ = c.cancel(JobId(j as u64), now); }
                },
                Op::SubmitLimited(k, t, sig, b, h) => {
                    let limit = t as u64 * 1000;
                    let s = JobSpec {
                        time_limit_ms: Some(limit),
                        time_signal: sig.then_some(graze_proto::TimeSignal { signal: 15, before_ms: limit / 2 + 1 }),
                        begin_ms: (b > 0).then_some(now + b as u64 * 1000),
                        hold: h,
                        ..spec(k as u32)
                    };
                    let _ = c.submit(s, "s".into(), now);
                }
                Op::SubmitArray(k, n, t) => {
                    let s = JobSpec {
                        array: Some(graze_proto::ArraySpec {
                            indices: (1..=n as u32).collect(),
                            throttle: (t > 0).then_some(t as u32),
                        }),
                        ..spec(k as u32)
                    };
                    let _ = c.submit(s, "s".into(), now);
                }
                Op::SubmitAfter(k, d, j) => {
                    let kind = [graze_proto::DepKind::Ok, graze_proto::DepKind::NotOk, graze_proto::DepKind::Any][d as usize];
                    let s = JobSpec {
                        after: vec![graze_proto::Dependency { kind, job: JobId(j as u64) }],
                        ..spec(k as u32)
                    };
                    let _ = c.submit(s, "s".into(), now);
                }
                Op::SubmitCkpt(k, periodic) => {
                    let s = JobSpec {
                        checkpoint: Some(graze_proto::CheckpointSpec {
                            every_ms: periodic.then_some(20_000),
                            ..Default::default()
                        }),
                        ..spec(k as u32)
                    };
                    let _ = c.submit(s, "s".into(), now);
                }
                Op::Requeue(j, k) => { let _ = c.requeue_job(JobId(j as u64), k, "u", now); }
                Op::Exit85(j) => {
                    if let Some(v) = c.job_view(JobId(j as u64)) {
                        if let Some(h) = v.allocation.first() {
                            let n: usize = h.host[1..].parse().unwrap();
                            c.job_exited(n as u64 * 100 + gen[n], JobId(j as u64), ExitStatus { code: Some(85), signal: None }, now);
                        }
                    }
                }
                Op::Release(j) => { let _ = c.release(JobId(j as u64), now); }
                Op::Hold(j) => { let _ = c.hold(JobId(j as u64), now); }
            }
            let out = drain(&mut c);
            check_checkpoint_messages(&c, &out)?;
            for o in out {
                if let Output::AttemptEnded(r) = o {
                    let e = records.entry(r.job).or_default();
                    if r.attempt > 0 {
                        prop_assert_eq!(r.attempt, e.0 + 1, "attempts in order: {:?}", r);
                        e.0 += 1;
                    }
                    if matches!(r.outcome, AttemptOutcome::Final(_)) {
                        e.1 += 1;
                    }
                }
            }
            prop_assert_eq!(c.check_invariants(), Ok(()));
            // Every start that ended has exactly one record; a final job exactly one final one.
            for (id, j) in &c.jobs {
                let (runs, finals) = records.get(id).copied().unwrap_or_default();
                prop_assert_eq!(runs + u64::from(j.run_open), j.epoch, "job {}", id);
                prop_assert_eq!(finals, u64::from(j.state.is_final()), "job {}", id);
            }
        }
    }
}

/// What the checkpoint protocol needs of one batch of outputs: a checkpointing job's start
/// is preceded by a setup to every online node of its allocation, each with that node's
/// ranks in host-file order; a job without `--checkpoint` gets neither a setup nor a
/// checkpoint; the ranks of one checkpoint's messages never overlap and lie within the job.
fn check_checkpoint_messages(c: &Core, out: &[Output]) -> Result<(), TestCaseError> {
    let msgs = sent(out);
    let mut seen: std::collections::HashMap<(JobId, graze_proto::CheckpointId), Vec<u32>> =
        Default::default();
    for (i, (_, m)) in msgs.iter().enumerate() {
        match m {
            SchedulerMsg::StartJob {
                job,
                hosts,
                epoch,
                env,
                ..
            } => {
                let j = &c.jobs[job];
                let count = env
                    .iter()
                    .find(|(k, _)| k == "GRAZE_RESTART_COUNT")
                    .map(|(_, v)| v.clone());
                prop_assert_eq!(count, Some((epoch - 1).to_string()));
                if j.spec.checkpoint.is_none() {
                    continue;
                }
                let slots: Vec<u32> = hosts.iter().map(|h| h.slots).collect();
                for (h, ranks) in hosts.iter().zip(graze_proto::ranks_by_host(&slots)) {
                    let Some(conn) = c.conn_of(&h.host) else {
                        continue;
                    };
                    let setup = msgs[..i].iter().any(|(to, m)| {
                        *to == conn
                            && matches!(m,
                        SchedulerMsg::CheckpointSetup { job: sj, epoch: se, ranks: r, .. }
                            if sj == job && se == epoch && *r == ranks)
                    });
                    prop_assert!(
                        setup,
                        "no setup for job {} on {} before its start",
                        job,
                        h.host
                    );
                }
            }
            SchedulerMsg::CheckpointSetup { job, .. } => {
                prop_assert!(
                    c.jobs[job].spec.checkpoint.is_some(),
                    "setup for job {} without --checkpoint",
                    job
                );
            }
            SchedulerMsg::Checkpoint { job, id, ranks, .. } => {
                let j = &c.jobs[job];
                prop_assert!(
                    j.spec.checkpoint.is_some(),
                    "checkpoint of job {} without --checkpoint",
                    job
                );
                let all = seen.entry((*job, *id)).or_default();
                for r in ranks {
                    prop_assert!(
                        *r < j.spec.nprocs && !all.contains(r),
                        "rank {} of job {} twice or out of range",
                        r,
                        job
                    );
                    all.push(*r);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn held(job: JobId, epoch: u64) -> graze_proto::HeldJob {
    graze_proto::HeldJob {
        job,
        epoch,
        main: false,
    }
}

/// Persist everything and restore into a fresh core, as a scheduler restart does.
fn restart(c: &Core, now: u64) -> Core {
    let ids: Vec<JobId> = c.jobs.keys().copied().collect();
    let jobs = ids.iter().filter_map(|id| c.job_record(*id)).collect();
    let nodes = c.nodes.keys().filter_map(|n| c.node_info(n)).collect();
    let drained: Vec<String> = c
        .nodes
        .keys()
        .filter(|n| c.node_drained(n))
        .cloned()
        .collect();
    let mut n = Core::new(c.cfg.clone());
    n.restore(jobs, nodes, &drained, now);
    n
}

fn two_node_job() -> (Core, JobId) {
    let mut c = Core::new(CoreConfig::default());
    add(&mut c, 1, "a1", 2, 0);
    add(&mut c, 2, "a2", 2, 0);
    let id = c.submit(spec(4), "s".into(), 0).unwrap();
    drain(&mut c);
    assert_eq!(c.job_state(id), Some(JobState::Running));
    (c, id)
}

#[test]
fn restart_keeps_a_run_whose_nodes_all_hold_it() {
    let (c, id) = two_node_job();
    let mut c = restart(&c, 100);
    assert_eq!(c.job_state(id), Some(JobState::Running));
    assert_eq!(c.node_views().iter().filter(|n| n.online).count(), 0);
    for (conn, name) in [(11, "a1"), (12, "a2")] {
        let mut i = info(name, 2, &[]);
        i.held = vec![held(id, 1)];
        c.node_connected(conn, i, 200).unwrap();
        c.node_status(conn, status(true, 0), 200);
    }
    let out = drain(&mut c);
    assert!(
        !out.iter().any(|o| matches!(
            o,
            Output::Send {
                msg: SchedulerMsg::KillJob { .. },
                ..
            }
        )),
        "{out:?}"
    );
    assert_eq!(c.job_state(id), Some(JobState::Running));
    assert_eq!(c.poll_timeout(), None);
    // Its cores are held again: a new 1-core job must wait.
    let id2 = c.submit(spec(1), "t".into(), 300).unwrap();
    assert_eq!(c.job_state(id2), Some(JobState::Queued));
    c.check_invariants().unwrap();
    // And its end is still understood.
    c.job_exited(
        11,
        id,
        ExitStatus {
            code: Some(0),
            signal: None,
        },
        400,
    );
    assert_eq!(c.job_state(id), Some(JobState::Completed));
}

#[test]
fn restart_requeues_a_run_a_node_lost_or_that_never_came_back() {
    let (c, id) = two_node_job();
    let mut c1 = restart(&c, 100);
    let mut i = info("a1", 2, &[]);
    i.held = vec![held(id, 1)];
    c1.node_connected(11, i, 200).unwrap();
    // a2 comes back empty-handed: the run is broken.
    c1.node_connected(12, info("a2", 2, &[]), 200).unwrap();
    assert_eq!(c1.job_state(id), Some(JobState::Queued));
    let v = c1.job_view(id).unwrap();
    assert!(
        v.events
            .last()
            .unwrap()
            .what
            .contains("came back without the job's processes"),
        "{v:?}"
    );

    let mut c2 = restart(&c, 100);
    let mut i = info("a1", 2, &[]);
    i.held = vec![held(id, 1)];
    c2.node_connected(11, i, 200).unwrap();
    assert_eq!(c2.poll_timeout(), Some(100 + 10_000));
    c2.handle_timeout(10_100);
    let v = c2.job_view(id).unwrap();
    assert_eq!(v.state, JobState::Queued);
    assert!(
        v.events
            .last()
            .unwrap()
            .what
            .contains("a2 did not report back"),
        "{v:?}"
    );
    c2.check_invariants().unwrap();
}

#[test]
fn reconnect_with_a_stale_run_is_fenced() {
    let (mut c, id) = two_node_job();
    // a2's link drops and the job is requeued and restarted elsewhere meanwhile.
    c.node_lost(2, 10);
    c.job_cleared(1, id, 11);
    drain(&mut c);
    // a2 reconnects, still holding the old epoch 1.
    let mut i = info("a2", 2, &[]);
    i.held = vec![held(id, 1), held(JobId(77), 3)];
    c.node_connected(22, i, 20).unwrap();
    let out = drain(&mut c);
    let kills: Vec<JobId> = out
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                conn: 22,
                msg: SchedulerMsg::KillJob { job },
            } => Some(*job),
            _ => None,
        })
        .collect();
    assert_eq!(kills, vec![id, JobId(77)]);
}

#[test]
fn reconnect_within_the_timeout_keeps_the_run() {
    let (mut c, id) = two_node_job();
    // The agent reconnects on a new connection before the old one timed out.
    let mut i = info("a2", 2, &[]);
    i.held = vec![held(id, 1)];
    c.node_connected(22, i, 20).unwrap();
    c.node_status(22, status(true, 0), 20);
    let out = drain(&mut c);
    assert!(out.contains(&Output::Close {
        conn: 2,
        reason: "a newer agent registered with the same name".into()
    }));
    assert_eq!(c.job_state(id), Some(JobState::Running));
    // The old connection's loss is now a no-op.
    c.node_lost(2, 30);
    assert_eq!(c.job_state(id), Some(JobState::Running));
    c.check_invariants().unwrap();
}

/// Nodes a1, a2, a3 (conns 1, 2, 3) with 2 free cores each.
fn three_nodes() -> Core {
    let mut c = Core::new(CoreConfig::default());
    add(&mut c, 1, "a1", 2, 0);
    add(&mut c, 2, "a2", 2, 0);
    add(&mut c, 3, "a3", 2, 0);
    c
}

/// The conn of node a1, a2 or a3 in [`three_nodes`].
fn conn_of(name: &str) -> ConnId {
    match name {
        "a1" => 1,
        "a2" => 2,
        _ => 3,
    }
}

#[test]
fn a_failed_multi_node_run_is_failed_once_every_node_confirms() {
    let mut c = Core::new(CoreConfig::default());
    add(&mut c, 1, "a1", 2, 0);
    add(&mut c, 2, "a2", 2, 0);
    let id = c.submit(spec(4), "s".into(), 0).unwrap();
    let s = starts(&drain(&mut c));
    let (main, other) = (conn_of(&s[0].2[0].host), conn_of(&s[0].2[1].host));
    let failed = ExitStatus {
        code: Some(1),
        signal: None,
    };
    c.job_exited(main, id, failed, 5);
    // No verdict yet: the other node may be dying (its ranks with it).
    assert_eq!(c.job_state(id), Some(JobState::Running));
    let v = c.job_view(id).unwrap();
    assert!(
        v.events
            .last()
            .unwrap()
            .what
            .starts_with("main command ended (exit 1) on a"),
        "{:?}",
        v.events
    );
    assert!(!drain(&mut c)
        .iter()
        .any(|o| matches!(o, Output::JobFinal(_))));
    // A second report from the main node changes nothing.
    c.job_exited(main, id, failed, 6);
    c.job_cleared(main, id, 7);
    assert_eq!(c.job_state(id), Some(JobState::Running));
    c.job_cleared(other, id, 8);
    let v = c.job_view(id).unwrap();
    assert_eq!(v.state, JobState::Failed);
    assert_eq!(v.exit, Some(failed));
    assert_eq!(v.requeues, 0);
    assert!(drain(&mut c).contains(&Output::JobFinal(id)));
    c.check_invariants().unwrap();
}

#[test]
fn a_failed_multi_node_run_with_a_node_lost_meanwhile_is_requeued() {
    let mut c = three_nodes();
    let id = c.submit(spec(4), "s".into(), 0).unwrap();
    let s = starts(&drain(&mut c));
    let main = conn_of(&s[0].2[0].host);
    let lost = s[0].2[1].host.clone();
    // The lost node's agent crashed: its ranks died, mpiexec failed at once.
    c.job_exited(
        main,
        id,
        ExitStatus {
            code: Some(255),
            signal: None,
        },
        5,
    );
    c.job_cleared(main, id, 6);
    assert_eq!(c.job_state(id), Some(JobState::Running));
    c.node_lost(conn_of(&lost), 3_000);
    let v = c.job_view(id).unwrap();
    assert_eq!(v.state, JobState::Queued, "{v:?}");
    assert_eq!(v.requeues, 1);
    assert_eq!(v.exit, None);
    assert!(v
        .events
        .iter()
        .any(|e| e.what == format!("requeued: node {lost} lost")));
    // The requeue asks the main node again; it confirms (it holds nothing of the job).
    c.job_cleared(main, id, 3_001);
    // After the fence it runs again, on the nodes left.
    c.handle_timeout(3_000 + DEFAULT_FENCE_MARGIN_MS);
    let s2 = starts(&drain(&mut c));
    assert_eq!(s2.len(), 1);
    assert!(!s2[0].2.iter().any(|h| h.host == lost));
    c.check_invariants().unwrap();
}

#[test]
fn drain_survives_a_restart() {
    let mut c = Core::new(CoreConfig::default());
    add(&mut c, 1, "a1", 2, 10);
    add(&mut c, 2, "a2", 2, 10);
    c.set_drained("a1", true, 1).unwrap();
    assert!(drain(&mut c).contains(&Output::NodeChanged("a1".into())));
    let mut c = restart(&c, 2);
    assert!(c.node_drained("a1"));
    assert!(!c.node_drained("a2"));
    add(&mut c, 11, "a1", 2, 10);
    add(&mut c, 12, "a2", 2, 10);
    let id = c.submit(spec(2), "s".into(), 3).unwrap();
    let s = starts(&drain(&mut c));
    assert_eq!(s[0].1, id);
    assert_eq!(s[0].2[0].host, "a2");
    c.check_invariants().unwrap();
}

/// A failing run keeps its verdict through an owner's reclaim: suspended and resumed like any
/// run (the wire calls it suspended, then running), failed with its exit once every node
/// confirmed. `RunState::Failing` carries both the verdict and the suspension.
#[test]
fn a_failing_run_keeps_its_verdict_through_a_suspension() {
    let mut c = Core::new(CoreConfig::default());
    add(&mut c, 1, "a1", 2, 0);
    add(&mut c, 2, "a2", 2, 0);
    let id = c.submit(spec(4), "s".into(), 0).unwrap();
    let s = starts(&drain(&mut c));
    let (main, other) = (conn_of(&s[0].2[0].host), conn_of(&s[0].2[1].host));
    let failed = ExitStatus {
        code: Some(3),
        signal: None,
    };
    c.job_exited(main, id, failed, 5);
    assert!(matches!(
        c.jobs[&id].state,
        RunState::Failing {
            suspended: None,
            ..
        }
    ));
    c.node_status(other, status(false, 0), 10);
    assert_eq!(c.job_state(id), Some(JobState::Suspended));
    assert_eq!(c.jobs[&id].state.suspended_since(), Some(10));
    c.check_invariants().unwrap();
    c.node_status(other, status(true, 0), 20);
    assert_eq!(c.job_state(id), Some(JobState::Running));
    c.check_invariants().unwrap();
    c.job_cleared(main, id, 30);
    c.job_cleared(other, id, 31);
    let v = c.job_view(id).unwrap();
    assert_eq!(v.state, JobState::Failed);
    assert_eq!(v.exit, Some(failed));
    assert_eq!(
        c.jobs[&id].state,
        RunState::Failed {
            exit: Some(failed),
            at: 31
        }
    );
    c.check_invariants().unwrap();
}

mod batch;
