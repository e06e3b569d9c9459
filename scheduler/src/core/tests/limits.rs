//! Time limits, `--signal`, `--begin` and hold/release (core/limits.rs).

use super::*;
use graze_proto::TimeSignal;

fn timed(n: u32, limit: u64, signal: Option<(i32, u64)>) -> JobSpec {
    JobSpec {
        time_limit_ms: Some(limit),
        time_signal: signal.map(|(signal, before_ms)| TimeSignal { signal, before_ms }),
        ..spec(n)
    }
}

fn events(c: &Core, id: JobId) -> Vec<String> {
    c.job_view(id)
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.what)
        .collect()
}

fn signals(out: &[Output]) -> Vec<(ConnId, SchedulerMsg)> {
    sent(out)
        .into_iter()
        .filter(|(_, m)| matches!(m, SchedulerMsg::SignalJob { .. }))
        .collect()
}

fn kills(out: &[Output]) -> Vec<ConnId> {
    sent(out)
        .into_iter()
        .filter(|(_, m)| matches!(m, SchedulerMsg::KillJob { .. }))
        .map(|(c, _)| c)
        .collect()
}

#[test]
fn signal_before_the_limit_then_timeout_and_kill() {
    let mut c = Core::new(CoreConfig::default());
    add(&mut c, 1, "a1", 2, 0);
    let id = c
        .submit(timed(2, 5000, Some((15, 2000))), "s".into(), 10)
        .unwrap();
    assert_eq!(starts(&drain(&mut c)).len(), 1);
    assert_eq!(
        c.poll_timeout(),
        Some(3010),
        "the signal 2s before the limit"
    );
    c.handle_timeout(3009);
    assert!(signals(&drain(&mut c)).is_empty());
    c.handle_timeout(3010);
    assert_eq!(
        signals(&drain(&mut c)),
        vec![(
            1,
            SchedulerMsg::SignalJob {
                job: id,
                epoch: 1,
                signal: 15
            }
        )]
    );
    let ev = events(&c, id);
    assert_eq!(
        ev.last().unwrap(),
        "sent SIGTERM to the program on a1, 2s before the time limit"
    );
    // Sent once: the next deadline is the limit.
    assert_eq!(c.poll_timeout(), Some(5010));
    c.handle_timeout(5009);
    assert_eq!(c.job_state(id), Some(JobState::Running));
    c.handle_timeout(5010);
    let out = drain(&mut c);
    assert_eq!(kills(&out), vec![1]);
    assert!(out.contains(&Output::JobFinal(id)));
    let v = c.job_view(id).unwrap();
    assert_eq!(v.state, JobState::Timeout);
    assert_eq!(v.ended_ms, Some(5010));
    assert!(
        v.events
            .last()
            .unwrap()
            .what
            .starts_with("time limit 5s reached: ran 5s (0s suspended for owners not counted)"),
        "{:?}",
        v.events
    );
    c.check_invariants().unwrap();
    // The killed main command's exit is kept; the cores come back on the clear; no requeue.
    let killed = ExitStatus {
        code: None,
        signal: Some(9),
    };
    c.job_exited(1, id, killed, 5020);
    c.job_cleared(1, id, 5021);
    let v = c.job_view(id).unwrap();
    assert_eq!(
        (v.state, v.exit, v.requeues),
        (JobState::Timeout, Some(killed), 0)
    );
    assert_eq!(c.node_views()[0].used_cores, 0);
    c.node_lost(1, 6000);
    assert_eq!(c.job_state(id), Some(JobState::Timeout));
    assert_eq!(c.poll_timeout(), None);
    c.check_invariants().unwrap();
}

#[test]
fn the_signal_goes_to_every_node_of_the_run() {
    let mut c = Core::new(CoreConfig::default());
    add(&mut c, 1, "a1", 2, 0);
    add(&mut c, 2, "a2", 2, 0);
    let id = c
        .submit(timed(4, 10_000, Some((10, 1000))), "s".into(), 0)
        .unwrap();
    drain(&mut c);
    c.handle_timeout(9000);
    let mut to: Vec<ConnId> = signals(&drain(&mut c)).iter().map(|(c, _)| *c).collect();
    to.sort_unstable();
    assert_eq!(to, [1, 2]);
    c.handle_timeout(10_000);
    let mut k = kills(&drain(&mut c));
    k.sort_unstable();
    assert_eq!(k, [1, 2]);
    assert_eq!(c.job_state(id), Some(JobState::Timeout));
}

#[test]
fn time_suspended_for_an_owner_does_not_count() {
    let mut c = Core::new(CoreConfig::default());
    add(&mut c, 1, "a1", 2, 100);
    add(&mut c, 2, "a2", 2, 50);
    let id = c
        .submit(timed(4, 5000, Some((15, 2000))), "s".into(), 0)
        .unwrap();
    drain(&mut c);
    busy(&mut c, 2, Availability::OwnerActive, 1000);
    drain(&mut c);
    assert_eq!(c.job_state(id), Some(JobState::Suspended));
    // Suspended: neither the signal (due at 3000) nor the limit (5000) runs.
    assert!(
        c.poll_timeout().is_none_or(|t| t > 5000),
        "{:?}",
        c.poll_timeout()
    );
    c.handle_timeout(5000);
    let out = drain(&mut c);
    assert!(
        signals(&out).is_empty() && kills(&out).is_empty(),
        "{out:?}"
    );
    assert_eq!(c.job_state(id), Some(JobState::Suspended));
    // Resumed after 4 s suspended: 1 s ran, 4 s left.
    busy(&mut c, 2, Availability::Offered, 5000);
    drain(&mut c);
    assert_eq!(c.job_state(id), Some(JobState::Running));
    assert_eq!(c.jobs[&id].running_ms(5000), 1000);
    assert_eq!(
        c.poll_timeout(),
        Some(7000),
        "signal at 3 s of running time"
    );
    c.handle_timeout(7000);
    assert_eq!(signals(&drain(&mut c)).len(), 2);
    assert_eq!(c.poll_timeout(), Some(9000));
    c.handle_timeout(8999);
    assert_eq!(c.job_state(id), Some(JobState::Running));
    c.handle_timeout(9000);
    assert_eq!(c.job_state(id), Some(JobState::Timeout));
    let ev = events(&c, id);
    assert!(
        ev.last()
            .unwrap()
            .starts_with("time limit 5s reached: ran 5s (4s suspended for owners not counted)"),
        "{ev:?}"
    );
    c.check_invariants().unwrap();
}

#[test]
fn a_requeued_run_starts_its_time_from_zero() {
    let mut c = Core::new(CoreConfig::default());
    add(&mut c, 1, "a1", 2, 0);
    add(&mut c, 2, "a2", 2, 0);
    let id = c.submit(timed(2, 5000, None), "s".into(), 0).unwrap();
    let s = starts(&drain(&mut c));
    let (lost, other) = if s[0].2[0].host == "a1" {
        (1, 2)
    } else {
        (2, 1)
    };
    c.node_lost(lost, 4000);
    c.handle_timeout(4000 + DEFAULT_FENCE_MARGIN_MS);
    let s2 = starts(&drain(&mut c));
    assert_eq!(s2.len(), 1);
    assert_eq!(s2[0].0, other);
    assert_eq!(
        c.poll_timeout(),
        Some(4000 + DEFAULT_FENCE_MARGIN_MS + 5000)
    );
    assert_eq!(
        c.jobs[&id].running_ms(4000 + DEFAULT_FENCE_MARGIN_MS + 10),
        10
    );
}

#[test]
fn limits_that_make_no_sense_are_refused() {
    let mut c = Core::new(CoreConfig::default());
    add(&mut c, 1, "a1", 2, 0);
    let e = c.submit(timed(1, 0, None), "s".into(), 0).unwrap_err();
    assert_eq!(
        e,
        "invalid time limit '0': a time limit must be at least 1s"
    );
    let e = c
        .submit(timed(1, 3_600_000, Some((15, 7_200_000))), "s".into(), 0)
        .unwrap_err();
    assert_eq!(
        e,
        "invalid signal 'SIGTERM@2h': it must come before the time limit 1h, not at or above it"
    );
    let mut s = spec(1);
    s.time_signal = Some(TimeSignal {
        signal: 15,
        before_ms: 1000,
    });
    let e = c.submit(s, "s".into(), 0).unwrap_err();
    assert!(e.contains("needs a time limit"), "{e}");
    let e = c
        .submit(timed(1, 5000, Some((0, 1000))), "s".into(), 0)
        .unwrap_err();
    assert_eq!(e, "invalid signal '0': must be 1 to 64");
    assert!(c.job_views(true).is_empty(), "nothing queued");
}

#[test]
fn begin_time_holds_the_job_until_then() {
    let mut c = Core::new(CoreConfig::default());
    add(&mut c, 1, "a1", 2, 0);
    let id = c
        .submit(
            JobSpec {
                begin_ms: Some(60_000),
                ..spec(1)
            },
            "s".into(),
            10,
        )
        .unwrap();
    assert!(starts(&drain(&mut c)).is_empty());
    let v = c.job_view(id).unwrap();
    assert_eq!(v.waiting_for.as_deref(), Some(graze_proto::BEGIN_WAIT));
    assert_eq!(
        c.poll_timeout(),
        Some(60_000),
        "the pass runs at the begin time"
    );
    c.check_invariants().unwrap();
    // Other inputs before then do not start it.
    c.node_status(1, status(true, 5), 30_000);
    c.handle_timeout(59_999);
    assert!(starts(&drain(&mut c)).is_empty());
    c.handle_timeout(60_000);
    let s = starts(&drain(&mut c));
    assert_eq!(s.len(), 1);
    assert_eq!(c.job_view(id).unwrap().started_ms, Some(60_000));
    // A begin time already passed does not wait.
    add(&mut c, 2, "a2", 2, 0);
    drain(&mut c);
    let past = c
        .submit(
            JobSpec {
                begin_ms: Some(1),
                ..spec(1)
            },
            "s".into(),
            70_000,
        )
        .unwrap();
    assert_eq!(c.job_state(past), Some(JobState::Running));
    c.check_invariants().unwrap();
}

#[test]
fn hold_and_release() {
    let mut c = Core::new(CoreConfig::default());
    add(&mut c, 1, "a1", 2, 0);
    let id = c
        .submit(
            JobSpec {
                hold: true,
                ..spec(1)
            },
            "s".into(),
            0,
        )
        .unwrap();
    assert!(starts(&drain(&mut c)).is_empty());
    assert_eq!(c.job_view(id).unwrap().waiting_for.as_deref(), Some("held"));
    c.check_invariants().unwrap();
    assert_eq!(
        c.hold(id, 1).unwrap_err(),
        format!("job {id} is already held")
    );
    assert_eq!(c.release(id, 2), Ok(JobState::Running));
    assert_eq!(starts(&drain(&mut c)).len(), 1);
    assert_eq!(
        c.release(id, 3).unwrap_err(),
        format!("job {id} is not held (running): only a held job can be released")
    );
    assert_eq!(
        c.hold(id, 3).unwrap_err(),
        format!("job {id} is running: only a queued job can be held")
    );
    // Hold a queued job (the node is full), then release it once the node is free.
    let big = c.submit(spec(2), "s".into(), 4).unwrap();
    assert_eq!(c.hold(big, 5), Ok(JobState::Queued));
    c.job_exited(
        1,
        id,
        ExitStatus {
            code: Some(0),
            signal: None,
        },
        6,
    );
    c.job_cleared(1, id, 7);
    assert!(starts(&drain(&mut c)).is_empty(), "held, not started");
    assert_eq!(
        c.job_view(big).unwrap().waiting_for.as_deref(),
        Some("held")
    );
    c.release(big, 8).unwrap();
    assert_eq!(starts(&drain(&mut c)).len(), 1);
    let ev = events(&c, big);
    assert!(ev.contains(&"held".to_string()) && ev.contains(&"released".to_string()));
    assert_eq!(c.release(JobId(99), 9).unwrap_err(), "no job 99");
    // A held job cancelled is not released.
    let gone = c
        .submit(
            JobSpec {
                hold: true,
                ..spec(1)
            },
            "s".into(),
            10,
        )
        .unwrap();
    c.cancel(gone, 11).unwrap();
    assert_eq!(
        c.release(gone, 12).unwrap_err(),
        format!("job {gone} is not held (cancelled): only a held job can be released")
    );
    c.check_invariants().unwrap();
}

#[test]
fn limits_begin_and_hold_survive_a_restart() {
    let mut c = Core::new(CoreConfig::default());
    add(&mut c, 1, "a1", 2, 0);
    let run = c
        .submit(timed(1, 10_000, Some((15, 4000))), "s".into(), 0)
        .unwrap();
    let held_job = c
        .submit(
            JobSpec {
                hold: true,
                ..spec(1)
            },
            "s".into(),
            0,
        )
        .unwrap();
    let later = c
        .submit(
            JobSpec {
                begin_ms: Some(50_000),
                ..spec(1)
            },
            "s".into(),
            0,
        )
        .unwrap();
    drain(&mut c);
    c.handle_timeout(6000);
    assert_eq!(signals(&drain(&mut c)).len(), 1);
    // Restart at 7 s: the run comes back with its running time, the signal is not sent again.
    let mut c = restart(&c, 7000);
    let mut i = info("a1", 2, &[]);
    i.held = vec![held(run, 1)];
    c.node_connected(11, i, 7100).unwrap();
    c.node_status(11, status(true, 0), 7100);
    drain(&mut c);
    assert_eq!(c.job_state(run), Some(JobState::Running));
    assert_eq!(c.poll_timeout(), Some(10_000));
    c.handle_timeout(10_000);
    let out = drain(&mut c);
    assert!(signals(&out).is_empty(), "{out:?}");
    assert_eq!(c.job_state(run), Some(JobState::Timeout));
    c.job_cleared(11, run, 10_001);
    drain(&mut c);
    // The held job stays held, the other waits for its begin time.
    assert_eq!(
        c.job_view(held_job).unwrap().waiting_for.as_deref(),
        Some("held")
    );
    assert_eq!(
        c.job_view(later).unwrap().waiting_for.as_deref(),
        Some(graze_proto::BEGIN_WAIT)
    );
    assert_eq!(c.poll_timeout(), Some(50_000));
    c.handle_timeout(50_000);
    assert_eq!(c.job_state(later), Some(JobState::Running));
    assert_eq!(c.job_state(held_job), Some(JobState::Queued));
    c.check_invariants().unwrap();
}
