//! The owning task's side of checkpoints with a real core and a real store on disk: the
//! messages the core sends register what is expected, the stream tasks' questions settle it,
//! events land on the job, a restore is attached to the next run's setup. The network is
//! left out (the stream tasks have their own tests); so is the owner's agent table, so no
//! restore stream starts here.

use super::*;
use crate::core::{fixtures, Core, CoreConfig, Secret};
use graze_proto::{JobSpec, Unit};

fn owner(state: &Path) -> Owner {
    Owner {
        core: Core::new(CoreConfig::default()),
        agents: HashMap::new(),
        waiters: HashMap::new(),
        followers: HashMap::new(),
        watch: Default::default(),
        store: crate::store::Store::open(&state.join("jobs")).unwrap(),
        db: crate::db::Db::open(&state.join("graze.redb"))
            .unwrap()
            .into(),
        deferred: Vec::new(),
        seqs: HashMap::new(),
        seq_dirty: Default::default(),
        acks: HashMap::new(),
        audit: crate::audit::Audit::open(state).unwrap(),
        history: crate::history::History::new(30, 0),
        clusruns: Default::default(),
        checkpoints: Checkpoints::open(
            &state.join("checkpoints"),
            crate::config::DEFAULT_MAX_CHECKPOINT_BYTES,
        )
        .unwrap(),
        traces: crate::trace::Traces {
            root: state.join("traces"),
            max: graze_proto::DEFAULT_MAX_TRACE_BYTES,
        },
    }
}

/// Two nodes (conn 1: a1, conn 2: a2) and a checkpointing job of 4 ranks.
fn setup(o: &mut Owner) -> JobId {
    o.core
        .node_connected(1, fixtures::node_info("a1", 2), 0)
        .unwrap();
    o.core
        .node_connected(2, fixtures::node_info("a2", 2), 0)
        .unwrap();
    let spec = JobSpec {
        nprocs: 4,
        unit: Unit::Core,
        command: vec!["graze-pi".into()],
        user: "u".into(),
        checkpoint: Some(Default::default()),
        ..Default::default()
    };
    o.core.submit(spec, Secret::new("s"), 0).unwrap()
}

fn ask_checkpoint(o: &mut Owner, job: JobId, id: CheckpointId) {
    for (conn, ranks) in [(1, vec![0, 1]), (2, vec![2, 3])] {
        let mut m = SchedulerMsg::Checkpoint {
            job,
            epoch: id.epoch,
            id,
            ranks,
            signal: Some(10),
            grace_ms: 1000,
            stop: true,
        };
        assert!(o.checkpoint_outgoing(conn, &mut m, 0).is_none());
    }
}

/// A part arriving from `conn` as the stream task reports it; the reply to the agent.
fn part(
    o: &mut Owner,
    conn: ConnId,
    job: JobId,
    id: CheckpointId,
    ranks: Vec<u32>,
    data: &[u8],
) -> Option<String> {
    let (tx, mut rx) = oneshot::channel();
    o.checkpoint_msg(
        Msg::Begin {
            node: o.core.node_name(conn).unwrap().to_string(),
            job,
            id,
            reply: tx,
        },
        5,
    );
    let sink = match rx.try_recv().unwrap() {
        Ok(s) => s,
        Err(e) => return Some(e),
    };
    std::fs::write(&sink.path, data).unwrap();
    let (tx, mut rx) = oneshot::channel();
    o.checkpoint_msg(
        Msg::End {
            node: o.core.node_name(conn).unwrap().to_string(),
            job,
            id,
            outcome: Ok((ranks, data.len() as u64)),
            reply: tx,
        },
        6,
    );
    rx.try_recv().unwrap()
}

fn events(o: &Owner, job: JobId) -> Vec<String> {
    o.core
        .job_view(job)
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.what)
        .collect()
}

#[test]
fn parts_become_a_checkpoint_a_lost_node_voids_the_next_and_the_good_one_is_restored() {
    let t = tempfile::tempdir().unwrap();
    let mut o = owner(t.path());
    let job = setup(&mut o);
    let first = CheckpointId {
        epoch: 1,
        at_ms: 100,
    };
    ask_checkpoint(&mut o, job, first);
    // A stranger's part and one for a checkpoint nobody asked for are refused.
    o.core
        .node_connected(3, fixtures::node_info("a3", 2), 0)
        .unwrap();
    assert!(part(&mut o, 3, job, first, vec![0], b"x")
        .unwrap()
        .contains("not asked"));
    let other = CheckpointId { epoch: 1, at_ms: 1 };
    assert!(part(&mut o, 1, job, other, vec![0], b"x")
        .unwrap()
        .contains("was not asked"));
    assert_eq!(part(&mut o, 1, job, first, vec![0, 1], b"aa"), None);
    assert!(
        o.checkpoints.views(job).is_empty(),
        "not complete before a2's part"
    );
    assert_eq!(part(&mut o, 2, job, first, vec![2, 3], b"bbb"), None);
    assert!(
        events(&o, job).contains(&"checkpoint r1-100 stored: 4 ranks from a1 a2, 5 B".to_string())
    );
    let mut v = o.core.job_view(job).unwrap();
    o.checkpoint_fill(&mut v);
    assert_eq!(v.checkpoints.len(), 1);
    assert!(v.checkpoints[0].current);

    // The next one: a2 is lost before its part arrives.
    let second = CheckpointId {
        epoch: 1,
        at_ms: 200,
    };
    ask_checkpoint(&mut o, job, second);
    assert_eq!(part(&mut o, 1, job, second, vec![0, 1], b"new"), None);
    o.checkpoint_node_lost("a2", 7);
    assert!(events(&o, job).contains(
        &"checkpoint r1-200 discarded: a2 was lost before its part arrived; r1-100 stays current"
            .to_string()
    ));
    assert!(!t
        .path()
        .join("checkpoints")
        .join(job.to_string())
        .join(".incoming-r1-200")
        .exists());

    // A third is cut off by the next start, which restores the first.
    let third = CheckpointId {
        epoch: 1,
        at_ms: 300,
    };
    ask_checkpoint(&mut o, job, third);
    for (conn, ranks) in [(1, vec![0, 1]), (3, vec![2, 3])] {
        let mut m = SchedulerMsg::CheckpointSetup {
            job,
            epoch: 2,
            dir: "/var/tmp/x".into(),
            ranks,
            restore: None,
            signal: 10,
        };
        o.checkpoint_outgoing(conn, &mut m, 8);
        match m {
            SchedulerMsg::CheckpointSetup { restore, .. } => {
                assert_eq!(
                    restore,
                    Some(RestoreRef {
                        id: first,
                        bytes: 5
                    })
                )
            }
            _ => unreachable!(),
        }
    }
    let ev = events(&o, job);
    assert!(ev.contains(
        &"checkpoint r1-300 discarded: the job started again before it completed; r1-100 stays current"
            .to_string()
    ), "{ev:?}");
    assert_eq!(
        ev.iter()
            .filter(|e| e.starts_with("run 2 restores checkpoint r1-100"))
            .count(),
        1,
        "one restore event per run: {ev:?}"
    );
    // A part that arrives after all is not taken.
    assert!(part(&mut o, 1, job, third, vec![0, 1], b"late").is_some());

    // What a restarted scheduler reads back.
    let again = Checkpoints::open(
        &t.path().join("checkpoints"),
        crate::config::DEFAULT_MAX_CHECKPOINT_BYTES,
    )
    .unwrap();
    assert_eq!(again.views(job), o.checkpoints.views(job));

    o.checkpoint_job_final(job);
    assert!(!t.path().join("checkpoints").join(job.to_string()).exists());
    assert!(o.checkpoints.views(job).is_empty());
}

#[test]
fn a_checkpoint_over_the_limit_is_void_and_says_so() {
    let t = tempfile::tempdir().unwrap();
    let mut o = owner(t.path());
    o.checkpoints.max_bytes = 4;
    let job = setup(&mut o);
    let id = CheckpointId {
        epoch: 1,
        at_ms: 100,
    };
    ask_checkpoint(&mut o, job, id);
    assert_eq!(part(&mut o, 1, job, id, vec![0, 1], b"aaa"), None);
    let why = part(&mut o, 2, job, id, vec![2, 3], b"bb").unwrap();
    assert!(why.contains("max_checkpoint_bytes (4 B)"), "{why}");
    let ev = events(&o, job);
    assert!(
        ev.iter()
            .any(|e| e.starts_with("checkpoint r1-100 discarded")
                && e.ends_with("the job has no earlier checkpoint")),
        "{ev:?}"
    );
    assert!(o.checkpoints.views(job).is_empty());
}
