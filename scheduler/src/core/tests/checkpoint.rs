//! Checkpoints (core/checkpoint.rs): setup and environment at start, checkpoint vacates, exit
//! 85, periodic checkpoints and `graze requeue`.

use super::*;
use graze_proto::{CheckpointId, CheckpointSpec};

const ROOT: &str = "/var/tmp/graze-checkpoints/0123456789ab";

fn cfg() -> CoreConfig {
    CoreConfig {
        checkpoint_root: ROOT.into(),
        ..CoreConfig::default()
    }
}

fn ckpt(n: u32, every_ms: Option<u64>) -> JobSpec {
    JobSpec {
        checkpoint: Some(CheckpointSpec {
            signal: 12,
            grace_ms: 30_000,
            every_ms,
        }),
        ..spec(n)
    }
}

/// a1 (idle longest, so first) and a2 with 2 cores each, and a 4-rank job on them.
fn two_nodes(s: JobSpec) -> (Core, JobId, Vec<Output>) {
    let mut c = Core::new(cfg());
    add(&mut c, 1, "a1", 2, 100);
    add(&mut c, 2, "a2", 2, 50);
    let id = c.submit(s, "s".into(), 10).unwrap();
    let out = drain(&mut c);
    assert_eq!(c.job_state(id), Some(JobState::Running));
    (c, id, out)
}

fn env_of(out: &[Output]) -> Vec<(String, String)> {
    sent(out)
        .into_iter()
        .find_map(|(_, m)| match m {
            SchedulerMsg::StartJob { env, .. } => Some(env),
            _ => None,
        })
        .unwrap()
}

fn var<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
    env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// One checkpoint message sent: conn, ranks, signal, stop, id.
type Asked = (ConnId, Vec<u32>, Option<i32>, bool, CheckpointId);

/// The checkpoint messages sent.
fn checkpoints(out: &[Output]) -> Vec<Asked> {
    sent(out)
        .into_iter()
        .filter_map(|(conn, m)| match m {
            SchedulerMsg::Checkpoint {
                ranks,
                signal,
                stop,
                id,
                epoch,
                grace_ms,
                ..
            } => {
                assert_eq!(epoch, id.epoch);
                assert_eq!(grace_ms, 30_000);
                Some((conn, ranks, signal, stop, id))
            }
            _ => None,
        })
        .collect()
}

fn vacates(out: &[Output]) -> Vec<ConnId> {
    sent(out)
        .into_iter()
        .filter(|(_, m)| matches!(m, SchedulerMsg::VacateJob { .. }))
        .map(|(c, _)| c)
        .collect()
}

fn last_event(c: &Core, id: JobId) -> String {
    c.job_view(id).unwrap().events.last().unwrap().what.clone()
}

fn outcomes(out: &[Output]) -> Vec<AttemptOutcome> {
    out.iter()
        .filter_map(|o| match o {
            Output::AttemptEnded(r) => Some(r.outcome.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn start_sets_up_every_node_before_the_main_command_with_the_protocol_env() {
    let (c, id, out) = two_nodes(ckpt(4, None));
    let msgs = sent(&out);
    let dir = format!("{ROOT}/job-{id}");
    let setups: Vec<_> = msgs
        .iter()
        .filter(|(_, m)| matches!(m, SchedulerMsg::CheckpointSetup { .. }))
        .cloned()
        .collect();
    assert_eq!(
        setups,
        vec![
            (
                1,
                SchedulerMsg::CheckpointSetup {
                    job: id,
                    epoch: 1,
                    dir: dir.clone(),
                    ranks: vec![0, 1],
                    restore: None,
                    signal: 12
                }
            ),
            (
                2,
                SchedulerMsg::CheckpointSetup {
                    job: id,
                    epoch: 1,
                    dir: dir.clone(),
                    ranks: vec![2, 3],
                    restore: None,
                    signal: 12
                }
            ),
        ]
    );
    // Every setup goes out before the StartJob (the agent defers the start until restored).
    let start = msgs
        .iter()
        .position(|(_, m)| matches!(m, SchedulerMsg::StartJob { .. }))
        .unwrap();
    let last_setup = msgs
        .iter()
        .rposition(|(_, m)| matches!(m, SchedulerMsg::CheckpointSetup { .. }))
        .unwrap();
    assert!(last_setup < start);
    let env = env_of(&out);
    assert_eq!(var(&env, "GRAZE_CHECKPOINT_DIR"), Some(dir.as_str()));
    assert_eq!(var(&env, "GRAZE_CHECKPOINT_SIGNAL"), Some("12"));
    assert_eq!(var(&env, "GRAZE_RESTART_COUNT"), Some("0"));
    c.check_invariants().unwrap();
}

#[test]
fn a_job_without_checkpoint_gets_only_the_restart_count() {
    let mut s = spec(4);
    // The user's own value of a protocol variable does not survive.
    s.env = vec![
        ("GRAZE_RESTART_COUNT".into(), "7".into()),
        ("A".into(), "1".into()),
    ];
    let (_c, _id, out) = two_nodes(s);
    assert!(!sent(&out)
        .iter()
        .any(|(_, m)| matches!(m, SchedulerMsg::CheckpointSetup { .. })));
    let env = env_of(&out);
    assert_eq!(var(&env, "GRAZE_RESTART_COUNT"), Some("0"));
    assert_eq!(var(&env, "A"), Some("1"));
    assert_eq!(
        env.iter()
            .filter(|(k, _)| k == "GRAZE_RESTART_COUNT")
            .count(),
        1
    );
    assert_eq!(var(&env, "GRAZE_CHECKPOINT_DIR"), None);
}

#[test]
fn owner_vacate_asks_for_a_checkpoint_instead_of_vacating_and_the_next_run_is_restart_one() {
    let (mut c, id, _) = two_nodes(ckpt(4, None));
    busy(&mut c, 2, Availability::OwnerActive, 1000);
    drain(&mut c);
    let vacate_at = 1000 + graze_proto::OwnerPolicy::default().vacate_after_ms;
    c.handle_timeout(61_000);
    c.handle_timeout(vacate_at);
    let out = drain(&mut c);
    assert!(vacates(&out).is_empty(), "no plain vacate: {out:?}");
    let id0 = CheckpointId {
        epoch: 1,
        at_ms: vacate_at,
    };
    assert_eq!(
        checkpoints(&out),
        vec![
            (1, vec![0, 1], Some(12), true, id0),
            (2, vec![2, 3], Some(12), true, id0)
        ]
    );
    assert_eq!(c.job_state(id), Some(JobState::Queued));
    let ev = last_event(&c, id);
    assert!(
        ev.starts_with("vacated and requeued: the owner of node a2 stayed busy"),
        "{ev}"
    );
    assert!(
        ev.ends_with(&format!(
            "; checkpoint {id0} asked (SIGUSR2 to the program, 30s grace)"
        )),
        "{ev}"
    );
    c.check_invariants().unwrap();
    // Not placed again until both nodes cleared (their parts are in by then).
    add(&mut c, 3, "a3", 4, 10);
    assert!(starts(&drain(&mut c)).is_empty());
    c.job_cleared(1, id, vacate_at + 1);
    assert!(starts(&drain(&mut c)).is_empty());
    c.job_cleared(2, id, vacate_at + 2);
    let out = drain(&mut c);
    let s = starts(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].2[0].host, "a3", "a2 is avoided");
    let env = env_of(&out);
    assert_eq!(var(&env, "GRAZE_RESTART_COUNT"), Some("1"));
    assert!(sent(&out).iter().any(|(conn, m)| *conn == 3
        && matches!(m, SchedulerMsg::CheckpointSetup { epoch: 2, ranks, .. } if *ranks == vec![0, 1, 2, 3])));
    c.check_invariants().unwrap();
}

#[test]
fn exit_85_requeues_a_checkpointing_job_and_collects_its_parts() {
    let (mut c, id, _) = two_nodes(ckpt(4, None));
    let e85 = ExitStatus {
        code: Some(85),
        signal: None,
    };
    c.job_exited(1, id, e85, 500);
    let out = drain(&mut c);
    let ck = checkpoints(&out);
    assert_eq!(ck.len(), 2);
    assert!(
        ck.iter().all(|(_, _, sig, stop, _)| sig.is_none() && *stop),
        "{ck:?}"
    );
    assert!(vacates(&out).is_empty());
    assert_eq!(
        outcomes(&out),
        vec![AttemptOutcome::Requeued("checkpointed (exit 85)".into())]
    );
    let v = c.job_view(id).unwrap();
    assert_eq!(v.state, JobState::Queued);
    assert_eq!(v.requeues, 1);
    let ev = last_event(&c, id);
    assert!(
        ev.starts_with("checkpointed (exit 85) on a1 and requeued; collecting checkpoint r1-500"),
        "{ev}"
    );
    // Front of the queue, no node avoided: it runs again on the same nodes once they cleared.
    assert_eq!(c.queued(), vec![id]);
    c.job_cleared(1, id, 501);
    c.job_cleared(2, id, 502);
    let out = drain(&mut c);
    assert_eq!(starts(&out).len(), 1);
    assert_eq!(var(&env_of(&out), "GRAZE_RESTART_COUNT"), Some("1"));
    c.check_invariants().unwrap();
}

#[test]
fn exit_85_without_checkpoint_is_an_ordinary_failure() {
    let (mut c, id, _) = two_nodes(spec(4));
    let e85 = ExitStatus {
        code: Some(85),
        signal: None,
    };
    c.job_exited(1, id, e85, 500);
    c.job_cleared(2, id, 501);
    c.job_cleared(1, id, 502);
    assert_eq!(c.job_state(id), Some(JobState::Failed));
}

#[test]
fn periodic_checkpoints_run_on_the_timer_and_wait_while_suspended() {
    let (mut c, id, _) = two_nodes(ckpt(4, Some(20_000)));
    // Started at 10: due at 20_010 (the early-move check is only for suspended jobs).
    assert_eq!(c.poll_timeout(), Some(20_010));
    c.handle_timeout(20_009);
    assert!(checkpoints(&drain(&mut c)).is_empty());
    c.handle_timeout(20_010);
    let out = drain(&mut c);
    let id1 = CheckpointId {
        epoch: 1,
        at_ms: 20_010,
    };
    assert_eq!(
        checkpoints(&out),
        vec![
            (1, vec![0, 1], Some(12), false, id1),
            (2, vec![2, 3], Some(12), false, id1)
        ]
    );
    assert_eq!(c.job_state(id), Some(JobState::Running), "the job goes on");
    assert_eq!(
        last_event(&c, id),
        "periodic checkpoint r1-20010 asked (SIGUSR2 to the program, every 20s)"
    );
    assert_eq!(c.poll_timeout(), Some(40_010));
    c.check_invariants().unwrap();
    // Suspended past the due time: nothing is asked, the timer waits.
    busy(&mut c, 2, Availability::OwnerActive, 30_000);
    drain(&mut c);
    let t = c.poll_timeout().unwrap();
    assert!(t > 40_010, "no periodic deadline while suspended: {t}");
    c.handle_timeout(50_000);
    assert!(checkpoints(&drain(&mut c)).is_empty());
    // Resumed: the overdue checkpoint is asked at once, then every 20 s from then.
    busy(&mut c, 2, Availability::Offered, 55_000);
    drain(&mut c);
    assert_eq!(c.job_state(id), Some(JobState::Running));
    assert_eq!(c.poll_timeout(), Some(40_010));
    c.handle_timeout(55_000);
    assert_eq!(checkpoints(&drain(&mut c)).len(), 2);
    assert_eq!(c.poll_timeout(), Some(75_000));
    c.check_invariants().unwrap();
    // After a scheduler restart the interval counts from the restart.
    let mut r = restart(&c, 60_000);
    r.check_invariants().unwrap();
    assert_eq!(r.jobs[&id].ckpt_next, Some(80_000));
    assert!(r.poll_timeout().unwrap() <= 80_000);
    drain(&mut r);
}

#[test]
fn requeue_by_a_user_vacates_at_once_plainly_or_with_a_checkpoint() {
    // Plain: a checkpointing job is vacated with VacateJob, no checkpoint asked.
    let (mut c, id, _) = two_nodes(ckpt(4, Some(20_000)));
    assert_eq!(c.requeue_job(id, false, "alice", 100), Ok(JobState::Queued));
    let out = drain(&mut c);
    assert_eq!(vacates(&out), vec![1, 2]);
    assert!(checkpoints(&out).is_empty());
    assert_eq!(
        outcomes(&out),
        vec![AttemptOutcome::Requeued("requeued by alice".into())]
    );
    assert_eq!(last_event(&c, id), "requeued by alice");
    assert!(c.jobs[&id].avoid.is_empty(), "no node avoided");
    assert_eq!(
        c.poll_timeout(),
        None,
        "no periodic checkpoint while queued"
    );
    c.check_invariants().unwrap();
    // Queued now: refused, and nothing changes.
    let e = c.requeue_job(id, false, "alice", 101).unwrap_err();
    assert_eq!(
        e,
        format!("job {id} is queued: only a running or suspended job can be requeued")
    );
    assert!(drain(&mut c).is_empty());
    c.job_cleared(1, id, 102);
    c.job_cleared(2, id, 103);
    drain(&mut c);
    assert_eq!(c.job_state(id), Some(JobState::Running));
    // With --checkpoint: a checkpoint vacate, here of a suspended run.
    busy(&mut c, 2, Availability::OwnerActive, 200);
    drain(&mut c);
    assert_eq!(c.job_state(id), Some(JobState::Suspended));
    c.requeue_job(id, true, "alice", 300).unwrap();
    let out = drain(&mut c);
    assert!(vacates(&out).is_empty());
    let ck = checkpoints(&out);
    assert_eq!(ck.len(), 2);
    assert!(ck.iter().all(|(_, _, s, stop, id)| *s == Some(12)
        && *stop
        && *id
            == CheckpointId {
                epoch: 2,
                at_ms: 300
            }));
    assert!(
        last_event(&c, id).starts_with("requeued by alice; checkpoint r2-300 asked"),
        "{}",
        last_event(&c, id)
    );
    c.check_invariants().unwrap();
}

#[test]
fn requeue_refusals_are_clear() {
    let (mut c, id, _) = two_nodes(spec(4));
    let e = c.requeue_job(id, true, "bob", 100).unwrap_err();
    assert!(
        e.starts_with(&format!("job {id} was not submitted with --checkpoint")),
        "{e}"
    );
    assert_eq!(c.job_state(id), Some(JobState::Running));
    assert!(drain(&mut c).is_empty(), "a refusal changes nothing");
    assert_eq!(
        c.requeue_job(JobId(99), false, "bob", 100).unwrap_err(),
        "no job 99"
    );
    c.cancel(id, 200).unwrap();
    c.job_cleared(1, id, 201);
    c.job_cleared(2, id, 202);
    assert_eq!(c.job_state(id), Some(JobState::Cancelled));
    let e = c.requeue_job(id, false, "bob", 300).unwrap_err();
    assert!(e.contains("is cancelled: only a running"), "{e}");
}

#[test]
fn a_bad_checkpoint_spec_is_refused_at_submit() {
    let mut c = Core::new(cfg());
    add(&mut c, 1, "a1", 2, 0);
    let mut s = ckpt(1, Some(1000));
    let e = c.submit(s.clone(), "s".into(), 0).unwrap_err();
    assert!(e.contains("shorter than 10s"), "{e}");
    s.checkpoint = Some(CheckpointSpec {
        signal: 99,
        ..Default::default()
    });
    assert!(c.submit(s, "s".into(), 0).is_err());
    assert!(c.job_views(true).is_empty());
}
