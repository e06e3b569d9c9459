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
        db.write(&[record(RunState::Queued)], &[], &[], &[])
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
