use super::rows::StateRow;
use super::*;
use crate::core::{Core, CoreConfig, Placement, RunState, Secret};
use graze_proto::{ExitStatus, JobSpec, Unit};

fn spec() -> JobSpec {
    JobSpec {
        name: None,
        nprocs: 2,
        unit: Unit::Core,
        priority: 0,
        groups: vec![],
        nodes: vec![],
        command: vec!["mpiexec".into(), "prog".into()],
        cwd: None,
        env: vec![],
        user: "u".into(),
        ..Default::default()
    }
}

fn record(state: RunState) -> JobRecord {
    JobRecord {
        id: JobId(7),
        spec: spec(),
        state,
        secret: Secret::new("sec"),
        submitted_ms: 1,
        started_ms: Some(2),
        alloc: vec![Placement {
            host: "a".into(),
            ranks: 2,
            cores: 2,
        }],
        clearing: vec!["b".into()],
        requeues: 1,
        events: vec![],
        epoch: 3,
        order: 1,
        run_suspended_ms: 40,
        run_open: false,
        task: Some(graze_proto::ArrayTask {
            array: JobId(5),
            index: 2,
            count: 3,
            throttle: Some(1),
        }),
    }
}

#[test]
fn rows_round_trip_and_a_failing_run_is_stored_as_the_wire_calls_it() {
    let exit = ExitStatus {
        code: Some(1),
        signal: None,
    };
    for state in [
        RunState::Queued,
        RunState::Running,
        RunState::Suspended { since: 5 },
        RunState::Cancelling,
        RunState::Completed {
            exit: ExitStatus::default(),
            at: 4,
        },
        RunState::Failed {
            exit: Some(exit),
            at: 4,
        },
        RunState::Failed { exit: None, at: 4 },
        RunState::Cancelled { at: 4 },
    ] {
        let r = record(state);
        let row = JobRow::from(&r);
        let text = serde_json::to_vec(&row).unwrap();
        let back: JobRow = serde_json::from_slice(&text).unwrap();
        assert_eq!(JobRecord::from(back), r);
    }
    let failing = record(RunState::Failing {
        exit: Some(exit),
        what: "failed: exit 1".into(),
        suspended: Some(9),
    });
    assert_eq!(
        JobRow::from(&failing).state,
        StateRow::Suspended { since: 9 }
    );
}

#[test]
fn a_database_is_reopened_and_restores_a_core() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graze.redb");
    {
        let db = Db::open(&path).unwrap();
        db.write(
            &[record(RunState::Queued)],
            &[],
            &[],
            &[],
            &Default::default(),
        )
        .unwrap();
    }
    let db = Db::open(&path).unwrap();
    let loaded = db.load().unwrap();
    assert_eq!(loaded.jobs, vec![record(RunState::Queued)]);
    let mut c = Core::new(CoreConfig::default());
    c.restore(loaded.jobs, loaded.nodes, &loaded.drained, 10);
    assert_eq!(c.queued(), vec![JobId(7)]);
}

#[test]
fn another_schema_version_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graze.redb");
    drop(Db::open(&path).unwrap());
    {
        let db = Database::create(&path).unwrap();
        let w = db.begin_write().unwrap();
        w.open_table(META).unwrap().insert("schema", 99).unwrap();
        w.commit().unwrap();
    }
    let e = format!("{:#}", Db::open(&path).err().unwrap());
    assert!(
        e.contains("has schema version 99, this scheduler reads version 3"),
        "{e}"
    );
}

#[test]
fn a_database_from_before_schema_versions_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graze.redb");
    {
        let db = Database::create(&path).unwrap();
        let w = db.begin_write().unwrap();
        w.open_table(JOBS)
            .unwrap()
            .insert(1, b"{}".as_slice())
            .unwrap();
        w.commit().unwrap();
    }
    let e = format!("{:#}", Db::open(&path).err().unwrap());
    assert!(
        e.contains("has schema version none (an older graze)"),
        "{e}"
    );
}

#[test]
fn node_rows_round_trip_without_held_runs() {
    let info = NodeInfo {
        name: "a".into(),
        addr: "127.0.0.2".into(),
        cores: 4,
        sockets: 2,
        memory_bytes: 1 << 30,
        groups: vec!["lab".into()],
        mpi: vec![graze_proto::MpiFlavour {
            kind: "mpich".into(),
            launcher: "/usr/bin/mpiexec".into(),
            version: "4".into(),
        }],
        software: "graze-agent 0.1".into(),
        policy: graze_proto::OwnerPolicy::default(),
        held: vec![],
        instance: "i".into(),
        isolation: None,
    };
    let text = serde_json::to_vec(&NodeRow::from(&info)).unwrap();
    let back: NodeRow = serde_json::from_slice(&text).unwrap();
    assert_eq!(NodeInfo::from(back), info);
}

#[test]
fn a_version_2_database_is_read_and_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graze.redb");
    // A job row as version 2 wrote it: no batch fields in its spec.
    let v2 = br#"{"id":5,"spec":{"name":null,"nprocs":1,"unit":"core","priority":0,"groups":[],
        "nodes":[],"command":["true"],"cwd":null,"env":[],"user":"u"},"state":"queued",
        "secret":"s","submitted_ms":1,"started_ms":null,"alloc":[],"clearing":[],"requeues":0,
        "events":[],"epoch":0,"order":1}"#;
    {
        let db = Database::create(&path).unwrap();
        let w = db.begin_write().unwrap();
        w.open_table(META).unwrap().insert("schema", 2).unwrap();
        w.open_table(JOBS)
            .unwrap()
            .insert(5, v2.as_slice())
            .unwrap();
        w.commit().unwrap();
    }
    let loaded = Db::open(&path).unwrap().load().unwrap();
    assert_eq!(loaded.jobs.len(), 1);
    assert_eq!(loaded.jobs[0].spec.command, vec!["true".to_string()]);
    assert_eq!(loaded.jobs[0].spec.time_limit_ms, None);
    let db = Database::open(&path).unwrap();
    let r = db.begin_read().unwrap();
    let v = r
        .open_table(META)
        .unwrap()
        .get("schema")
        .unwrap()
        .unwrap()
        .value();
    assert_eq!(v, SCHEMA_VERSION);
}

/// History rows are written with the job's commit, read back after a reopen (usage buckets
/// add up), filtered by time, and pruned by age; an old job row without `run_open` counts a
/// placed run as open.
#[test]
fn history_tables_round_trip_add_up_and_prune() {
    use super::history::{HistoryWrite, OwnerEventRow, UsageRow, HOUR_MS};
    use crate::core::{AttemptOutcome, AttemptRecord};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.redb");
    let attempt = |job: u64, end: u64, outcome: AttemptOutcome| AttemptRecord {
        job: JobId(job),
        attempt: 1,
        user: "u".into(),
        name: "n".into(),
        outcome,
        exit: Some(ExitStatus {
            code: Some(3),
            signal: None,
        }),
        nodes: vec![Placement {
            host: "a".into(),
            ranks: 2,
            cores: 2,
        }],
        submitted_ms: 1,
        started_ms: Some(2),
        ended_ms: end,
        running_ms: end - 2,
        suspended_ms: 0,
        requeues: 0,
        requeue_reasons: vec![],
    };
    let old = attempt(1, 10, AttemptOutcome::Final(graze_proto::JobState::Failed));
    let new = attempt(
        2,
        5 * HOUR_MS,
        AttemptOutcome::Requeued("node a lost".into()),
    );
    let bucket = |o, u| UsageRow {
        offered_core_ms: o,
        used_core_ms: u,
    };
    {
        let db = Db::open(&path).unwrap();
        let w = HistoryWrite {
            attempts: vec![old.clone()],
            events: vec![OwnerEventRow::Suspend {
                node: "a".into(),
                job: 1,
                at_ms: 10,
            }],
            usage: vec![(("a".into(), 0), bucket(5, 1))],
        };
        db.write(&[record(RunState::Running)], &[], &[], &[], &w)
            .unwrap();
        let w = HistoryWrite {
            attempts: vec![new.clone()],
            events: vec![OwnerEventRow::Release {
                node: "a".into(),
                latency_us: 900,
                at_ms: 5 * HOUR_MS,
            }],
            usage: vec![
                (("a".into(), 0), bucket(5, 1)),
                (("a".into(), 5 * HOUR_MS), bucket(7, 0)),
            ],
        };
        db.write(&[], &[], &[], &[], &w).unwrap();
    }
    let db = Db::open(&path).unwrap();
    let r = db.read_history(0).unwrap();
    assert_eq!(r.attempts, vec![old, new.clone()]);
    assert_eq!(r.events.len(), 2);
    assert_eq!(
        r.usage[0],
        (("a".into(), 0), bucket(10, 2)),
        "buckets add up"
    );
    let r = db.read_history(HOUR_MS).unwrap();
    assert_eq!(r.attempts, vec![new.clone()]);
    assert_eq!(r.usage.len(), 1);
    assert!(
        !db.load().unwrap().jobs[0].run_open,
        "a stored run_open is kept"
    );
    assert_eq!(db.prune_history(HOUR_MS).unwrap(), 3);
    let r = db.read_history(0).unwrap();
    assert_eq!(r.attempts, vec![new]);
    assert_eq!((r.events.len(), r.usage.len()), (1, 1));
    // A row from before attempt records: no `run_open`, derived from the state.
    let mut row: serde_json::Value =
        serde_json::to_value(rows::JobRow::from(&record(RunState::Running))).unwrap();
    row.as_object_mut().unwrap().remove("run_open");
    let back: rows::JobRow = serde_json::from_value(row).unwrap();
    assert!(JobRecord::from(back).run_open);
}
