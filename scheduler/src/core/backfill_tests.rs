//! EASY backfill, `--exclusive` and availability windows against time limits, each with an
//! explicit `now`.

use super::*;
use graze_proto::{Availability, ExitStatus, JobId, JobSpec, NodeStatus, SchedulerMsg};

fn node(c: &mut Core, conn: ConnId, name: &str, cores: u32, window_ends_ms: Option<u64>) {
    let info = fixtures::node_info(name, cores);
    c.node_connected(conn, info, 0).unwrap();
    c.node_status(conn, status(Availability::Offered, window_ends_ms), 0);
}

fn status(availability: Availability, window_ends_ms: Option<u64>) -> NodeStatus {
    NodeStatus {
        window_ends_ms,
        ..fixtures::node_status(availability, 0)
    }
}

fn job(n: u32, limit_s: Option<u64>) -> JobSpec {
    JobSpec {
        nprocs: n,
        command: vec!["sleep".into(), "1".into()],
        user: "u".into(),
        time_limit_ms: limit_s.map(|s| s * 1000),
        ..Default::default()
    }
}

fn submit(c: &mut Core, spec: JobSpec, now: u64) -> JobId {
    let id = c.submit(spec, "s".into(), now).unwrap();
    c.check_invariants().unwrap();
    id
}

fn state(c: &Core, id: JobId) -> graze_proto::JobState {
    c.job_state(id).unwrap()
}

fn running(c: &Core, id: JobId) -> bool {
    state(c, id) == graze_proto::JobState::Running
}

/// The main node's conn reports the exit and every node of the job clears it.
fn end(c: &mut Core, id: JobId, now: u64) {
    let v = c.job_view(id).unwrap();
    let conn = |h: &str| -> ConnId { h[1..].parse().unwrap() };
    c.job_exited(
        conn(&v.allocation[0].host),
        id,
        ExitStatus {
            code: Some(0),
            signal: None,
        },
        now,
    );
    for h in &v.allocation {
        c.job_cleared(conn(&h.host), id, now);
    }
    c.check_invariants().unwrap();
}

/// Two 4-core nodes n1, n2 (conns 1, 2); a 6-core job with a 100 s limit runs from t = 0.
fn busy_cluster() -> (Core, JobId) {
    let mut c = Core::new(CoreConfig::default());
    node(&mut c, 1, "n1", 4, None);
    node(&mut c, 2, "n2", 4, None);
    let big = submit(&mut c, job(6, Some(100)), 0);
    assert!(running(&c, big));
    (c, big)
}

#[test]
fn head_gets_a_reservation_at_the_running_jobs_limit() {
    let (mut c, _big) = busy_cluster();
    let head = submit(&mut c, job(8, Some(50)), 10_000);
    let v = c.job_view(head).unwrap();
    assert_eq!(v.expected_start_ms, Some(100_000), "{v:?}");
    assert!(v.waiting_for.unwrap().contains("needs 8 cores, 2 offered"));
}

#[test]
fn short_jobs_backfill_long_and_unlimited_ones_wait() {
    let (mut c, _big) = busy_cluster();
    let head = submit(&mut c, job(8, Some(50)), 10_000);
    // Ends at 10 s + 90 s = 100 s: not after the shadow time, so it starts.
    let short = submit(&mut c, job(1, Some(90)), 10_000);
    assert!(running(&c, short));
    // Ends at 101 s: past the reservation, and no core is extra (the head needs all 8).
    let long = submit(&mut c, job(1, Some(91)), 10_000);
    assert!(!running(&c, long));
    let why = c.job_view(long).unwrap().waiting_for.unwrap();
    assert!(why.contains(&format!("would delay job {head}")), "{why}");
    // No --time: never ahead of a reservation.
    let unlimited = submit(&mut c, job(1, None), 10_000);
    let why = c.job_view(unlimited).unwrap().waiting_for.unwrap();
    assert!(why.contains("only jobs with --time"), "{why}");
    assert_eq!(c.job_view(head).unwrap().expected_start_ms, Some(100_000));
}

#[test]
fn reserved_job_starts_when_the_cores_come_back_before_the_backfilled_ones() {
    let (mut c, big) = busy_cluster();
    let head = submit(&mut c, job(8, Some(50)), 10_000);
    let long = submit(&mut c, job(1, Some(500)), 10_000);
    // The big job ends early, at 40 s: the head takes all 8 cores, the long job still waits.
    end(&mut c, big, 40_000);
    assert!(running(&c, head));
    assert!(!running(&c, long));
    end(&mut c, head, 60_000);
    assert!(running(&c, long));
}

#[test]
fn extra_cores_take_long_jobs_beside_the_reservation() {
    // Three 4-core nodes: a 6-core job (limit 100 s) holds n1 and half of n2; the head needs
    // 8 cores at 100 s, which leaves 4 extra cores then; 2 of them are free now.
    let mut c = Core::new(CoreConfig::default());
    node(&mut c, 1, "n1", 4, None);
    node(&mut c, 2, "n2", 4, None);
    node(&mut c, 3, "n3", 4, None);
    let big = submit(&mut c, job(10, Some(100)), 0);
    assert!(running(&c, big));
    let head = submit(&mut c, job(8, Some(50)), 1_000);
    assert_eq!(c.job_view(head).unwrap().expected_start_ms, Some(100_000));
    // Runs far past the reservation, but fits in the extra cores: it starts.
    let beside = submit(&mut c, job(2, Some(10_000)), 1_000);
    assert!(running(&c, beside), "{:?}", c.job_view(beside));
    // The extra cores are used up now.
    let more = submit(&mut c, job(1, Some(10_000)), 1_000);
    assert!(!running(&c, more));
    // The reservation did not move.
    assert_eq!(c.job_view(head).unwrap().expected_start_ms, Some(100_000));
}

#[test]
fn unknown_shadow_lets_only_jobs_beside_the_head_cores() {
    // A job without a limit holds 6 of 8 cores on n1+n2; n3 (4 cores) is free.
    let mut c = Core::new(CoreConfig::default());
    node(&mut c, 1, "n1", 4, None);
    node(&mut c, 2, "n2", 4, None);
    let forever = submit(&mut c, job(6, None), 0);
    assert!(running(&c, forever));
    node(&mut c, 3, "n3", 4, None);
    // Needs 8: the start is unknown, its cores are n1 and n2 (packed as if everything ended).
    let head = submit(&mut c, job(8, Some(50)), 1_000);
    let v = c.job_view(head).unwrap();
    assert_eq!(v.expected_start_ms, None);
    // A short job may take n3's cores (not needed by the head), not n1's or n2's.
    let a = submit(&mut c, job(4, Some(5)), 1_000);
    assert!(running(&c, a));
    let b = submit(&mut c, job(1, Some(5)), 1_000);
    assert!(
        !running(&c, b),
        "the 2 free cores on n1/n2 are reserved for the head"
    );
    let why = c.job_view(b).unwrap().waiting_for.unwrap();
    assert!(why.contains("its start is unknown"), "{why}");
}

#[test]
fn no_reservation_when_the_offered_cores_could_never_hold_it() {
    // 8 offered cores; a 12-core job (capacity 12 with n3 known but owner-busy) gets no
    // reservation, so jobs without a limit still run beside it as before.
    let mut c = Core::new(CoreConfig::default());
    node(&mut c, 1, "n1", 4, None);
    node(&mut c, 2, "n2", 4, None);
    node(&mut c, 3, "n3", 4, None);
    c.node_status(3, status(Availability::OwnerActive, None), 0);
    let huge = submit(&mut c, job(12, None), 1_000);
    let small = submit(&mut c, job(2, None), 1_000);
    assert!(!running(&c, huge) && running(&c, small));
    assert_eq!(c.job_view(huge).unwrap().expected_start_ms, None);
}

#[test]
fn suspended_job_moves_the_reservation_later() {
    let (mut c, _big) = busy_cluster();
    let head = submit(&mut c, job(8, Some(50)), 10_000);
    assert_eq!(c.job_view(head).unwrap().expected_start_ms, Some(100_000));
    // n1's owner comes back at 20 s: the big job is suspended; 30 s later it resumes.
    c.node_status(1, status(Availability::OwnerActive, None), 20_000);
    assert_eq!(state(&c, _big), graze_proto::JobState::Suspended);
    c.check_invariants().unwrap();
    c.node_status(1, status(Availability::Offered, None), 50_000);
    assert!(running(&c, _big));
    c.check_invariants().unwrap();
    // It ran 20 s, was suspended 30 s: 80 s left from 50 s.
    assert_eq!(c.job_view(head).unwrap().expected_start_ms, Some(130_000));
}

#[test]
fn window_end_keeps_long_jobs_off_a_node() {
    let mut c = Core::new(CoreConfig::default());
    // n1's window closes at 1000 s; n2 has none.
    node(&mut c, 1, "n1", 2, Some(1_000_000));
    node(&mut c, 2, "n2", 1, None);
    // Ends at 2000 s: not on n1; n2 holds 1 of its 2 ranks, so it waits and says why.
    let long = submit(&mut c, job(2, Some(2_000)), 0);
    assert!(!running(&c, long));
    let why = c.job_view(long).unwrap().waiting_for.unwrap();
    assert!(why.contains("availability window there closes"), "{why}");
    // Fits the window: placed on n1.
    let short = submit(&mut c, job(2, Some(500)), 0);
    assert!(running(&c, short));
    assert_eq!(c.job_view(short).unwrap().allocation[0].host, "n1");
    // Without a limit: not restricted.
    end(&mut c, short, 10_000);
    c.cancel(long, 10_000).unwrap();
    let free = submit(&mut c, job(2, None), 10_000);
    assert!(running(&c, free));
    // A 1-rank long job goes to n2 instead of n1.
    let c2 = {
        let mut c = Core::new(CoreConfig::default());
        node(&mut c, 1, "n1", 2, Some(1_000_000));
        node(&mut c, 2, "n2", 1, None);
        let one = submit(&mut c, job(1, Some(2_000)), 0);
        assert_eq!(c.job_view(one).unwrap().allocation[0].host, "n2");
        c
    };
    c2.check_invariants().unwrap();
}

#[test]
fn exclusive_takes_whole_nodes_and_keeps_them() {
    let mut c = Core::new(CoreConfig::default());
    node(&mut c, 1, "n1", 4, None);
    node(&mut c, 2, "n2", 4, None);
    let small = submit(&mut c, job(1, None), 0);
    assert!(running(&c, small));
    let mut x = job(3, None);
    x.exclusive = true;
    let ex = submit(&mut c, x, 0);
    assert!(running(&c, ex));
    let v = c.job_view(ex).unwrap();
    assert_eq!(v.allocation.len(), 1);
    let host = v.allocation[0].host.clone();
    assert_ne!(
        Some(&host),
        c.job_view(small)
            .unwrap()
            .allocation
            .first()
            .map(|h| &h.host)
    );
    // All 4 cores of its node are held, though it runs 3 ranks.
    assert_eq!(c.node_view(&host).unwrap().used_cores, 4);
    // Nothing lands beside it: the 3 free cores left are on the small job's node.
    let other = submit(&mut c, job(4, None), 0);
    assert!(!running(&c, other));
    // A second exclusive job waits for a whole free node and says so.
    let mut y = job(5, Some(10));
    y.exclusive = true;
    let ex2 = submit(&mut c, y, 0);
    assert!(!running(&c, ex2));
    c.cancel(other, 0).unwrap();
    let why = c.job_view(ex2).unwrap().waiting_for.unwrap();
    assert_eq!(why, "needs 2 whole free nodes, 0 free");
    c.check_invariants().unwrap();
}

#[test]
fn exclusive_start_message_lists_only_its_ranks() {
    let mut c = Core::new(CoreConfig::default());
    node(&mut c, 1, "n1", 4, None);
    let mut x = job(2, None);
    x.exclusive = true;
    let ex = submit(&mut c, x, 0);
    let sent: Vec<_> = std::iter::from_fn(|| c.poll_output()).collect();
    let hosts = sent.iter().find_map(|o| match o {
        Output::Send {
            msg: SchedulerMsg::StartJob { job, hosts, .. },
            ..
        } if *job == ex => Some(hosts.clone()),
        _ => None,
    });
    assert_eq!(hosts.unwrap()[0].slots, 2);
}
