//! Output patterns and attempts in the core: bad patterns refused at submit, the patterns and
//! the run number carried to the main node, agents' notes as events.

use super::*;
use graze_proto::{Availability, JobId, JobSpec, NodeInfo, NodeStatus, SchedulerMsg, Unit};

fn info(name: &str, cores: u32) -> NodeInfo {
    fixtures::node_info(name, cores)
}

fn offered() -> NodeStatus {
    fixtures::node_status(Availability::Offered, 0)
}

fn spec(stdout: Option<&str>, stderr: Option<&str>) -> JobSpec {
    JobSpec {
        nprocs: 2,
        unit: Unit::Core,
        command: vec!["mpiexec".into(), "prog".into()],
        user: "u".into(),
        stdout: stdout.map(str::to_owned),
        stderr: stderr.map(str::to_owned),
        ..Default::default()
    }
}

fn core_with(nodes: &[(ConnId, &str)]) -> Core {
    let mut c = Core::new(CoreConfig::default());
    for (conn, name) in nodes {
        c.node_connected(*conn, info(name, 2), 0).unwrap();
        c.node_status(*conn, offered(), 0);
    }
    c
}

/// (conn, job, epoch, stdout, stderr) of every StartJob sent.
type Start = (ConnId, JobId, u64, Option<String>, Option<String>);

fn starts(c: &mut Core) -> Vec<Start> {
    std::iter::from_fn(|| c.poll_output())
        .filter_map(|o| match o {
            Output::Send {
                conn,
                msg:
                    SchedulerMsg::StartJob {
                        job,
                        epoch,
                        stdout,
                        stderr,
                        ..
                    },
            } => Some((conn, job, epoch, stdout, stderr)),
            _ => None,
        })
        .collect()
}

#[test]
fn bad_patterns_are_refused_and_nothing_is_queued() {
    let mut c = core_with(&[(1, "a")]);
    for (out, err, want) in [
        (
            Some("out-%x.txt"),
            None,
            "--stdout: invalid output pattern 'out-%x.txt': unknown '%x'",
        ),
        (
            Some("o"),
            Some("err-%"),
            "--stderr: invalid output pattern 'err-%': it ends in a lone '%'",
        ),
        (
            None,
            Some("e.txt"),
            "invalid --stderr 'e.txt' without --stdout",
        ),
        (
            Some(""),
            None,
            "--stdout: invalid output pattern '': the pattern is empty",
        ),
    ] {
        let e = c.submit(spec(out, err), "s".into(), 0).unwrap_err();
        assert!(e.starts_with(want), "{e}");
    }
    assert!(c.job_views(true).is_empty());
    c.check_invariants().unwrap();
}

#[test]
fn start_carries_the_patterns_and_each_run_its_number() {
    let mut c = core_with(&[(1, "a"), (2, "b")]);
    let id = c
        .submit(spec(Some("out-%j-%r.txt"), None), "s".into(), 0)
        .unwrap();
    let s = starts(&mut c);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].1, id);
    assert_eq!(s[0].2, 1, "the first run is attempt 1");
    assert_eq!(s[0].3.as_deref(), Some("out-%j-%r.txt"));
    assert_eq!(s[0].4, None);
    assert_eq!(c.job_epoch(id), Some(1));
    // Its node is lost: the job runs again on the other node, as attempt 2.
    let first = s[0].0;
    c.node_lost(first, 10);
    let fence = 10 + crate::core::DEFAULT_FENCE_MARGIN_MS;
    c.handle_timeout(fence);
    let s2 = starts(&mut c);
    assert_eq!(s2.len(), 1);
    assert_ne!(s2[0].0, first);
    assert_eq!(s2[0].2, 2);
    assert_eq!(s2[0].3.as_deref(), Some("out-%j-%r.txt"));
    assert_eq!(c.job_epoch(id), Some(2));
    c.check_invariants().unwrap();
}

#[test]
fn notes_become_events_only_from_the_jobs_nodes() {
    let mut c = core_with(&[(1, "a"), (2, "b")]);
    let id = c.submit(spec(Some("o"), None), "s".into(), 0).unwrap();
    let s = starts(&mut c);
    let (on, off) = if s[0].0 == 1 { (1, 2) } else { (2, 1) };
    c.job_note(off, id, "stale".into(), 5);
    c.job_note(
        on,
        id,
        "cannot create output file 'o': Permission denied".into(),
        6,
    );
    let ev: Vec<String> = c
        .job_view(id)
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.what)
        .collect();
    assert!(!ev.iter().any(|e| e.contains("stale")), "{ev:?}");
    let node = if on == 1 { "a" } else { "b" };
    assert!(
        ev.contains(&format!(
            "on {node}: cannot create output file 'o': Permission denied"
        )),
        "{ev:?}"
    );
    c.job_note(on, JobId(999), "no such job".into(), 7);
    c.check_invariants().unwrap();
}
