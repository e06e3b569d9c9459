//! The client and the `graze` binary against a fake scheduler that answers canned replies over
//! real QUIC, with a pinned certificate and the hello, as the real scheduler does.
#![allow(clippy::unwrap_used)]

use graze::client::{Client, ClientError, Shown};
use graze::top::DataEvent;
use graze_net::{quinn, Access, Identity};
use graze_proto::{
    ClientReply, ClientRequest, ExitStatus, Hello, HelloReply, JobId, JobRef, JobSpec, JobState,
    JobView, LogLine, Stream, Unit, PROTOCOL_VERSION,
};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

fn job(id: u64, state: JobState, exit: Option<ExitStatus>) -> JobView {
    JobView {
        id: JobId(id),
        spec: JobSpec {
            name: Some("pi".into()),
            nprocs: 4,
            unit: Unit::Core,
            priority: 0,
            groups: vec![],
            nodes: vec![],
            command: vec!["mpiexec".into(), "graze-pi".into()],
            cwd: Some("/tmp".into()),
            env: vec![],
            user: "alice".into(),
            ..Default::default()
        },
        state,
        waiting_for: None,
        submitted_ms: 1_714_564_800_000,
        started_ms: Some(1_714_564_801_000),
        ended_ms: state.is_final().then_some(1_714_564_802_000),
        allocation: vec![],
        exit,
        requeues: 0,
        events: vec![],
        expected_start_ms: None,
        task: None,
        checkpoints: Vec::new(),
    }
}

fn answers(req: ClientRequest) -> Vec<ClientReply> {
    match req {
        ClientRequest::Submit(spec) if spec.nprocs == 99 => vec![ClientReply::Error {
            message: "no node group 'gpu'".into(),
        }],
        ClientRequest::Submit(_) => vec![ClientReply::Submitted { id: JobId(42) }],
        ClientRequest::Queue { .. } => {
            vec![ClientReply::Jobs(vec![job(3, JobState::Running, None)])]
        }
        ClientRequest::Nodes => vec![ClientReply::Nodes(vec![])],
        ClientRequest::History(_) => vec![ClientReply::History(vec![])],
        ClientRequest::Harvest { since_ms } => {
            vec![ClientReply::Harvest(Box::new(graze_proto::HarvestData {
                since_ms,
                ..Default::default()
            }))]
        }
        ClientRequest::Clusrun(_) => vec![ClientReply::Error {
            message: "clusrun needs an admin token".into(),
        }],
        // Job 8 was traced: a rank file in two chunks and the node's clock; others were not.
        ClientRequest::Trace { job, .. } if job.job == JobId(8) => vec![
            ClientReply::TraceFile {
                node: "pc1".into(),
                name: "rank-0.gzt".into(),
                hex: "0102".into(),
            },
            ClientReply::TraceFile {
                node: "pc1".into(),
                name: "rank-0.gzt".into(),
                hex: "03".into(),
            },
            ClientReply::TraceFile {
                node: "pc1".into(),
                name: "clock.json".into(),
                hex: hex::encode(br#"[{"local_ns":10,"offset_ns":-5,"rtt_ns":40}]"#),
            },
            ClientReply::TraceEnd {
                attempt: 2,
                attempts: vec![1, 2],
            },
        ],
        ClientRequest::Trace { job, .. } => vec![ClientReply::Error {
            message: format!("job {job} was not traced"),
        }],
        ClientRequest::Drain { node } | ClientRequest::Undrain { node } => {
            vec![ClientReply::Error {
                message: format!("draining {node} needs an admin token"),
            }]
        }
        ClientRequest::Show(JobRef {
            job: JobId(9),
            task: None,
        }) => vec![ClientReply::Error {
            message: "no job 9".into(),
        }],
        ClientRequest::Show(id) => vec![ClientReply::Job(Box::new(job(
            id.job.0,
            JobState::Queued,
            None,
        )))],
        ClientRequest::Release(id) | ClientRequest::Hold(id) => vec![ClientReply::Error {
            message: format!("job {id} is not held (running): only a held job can be released"),
        }],
        ClientRequest::Requeue { job: id, .. } => vec![ClientReply::Job(Box::new(job(
            id.job.0,
            JobState::Queued,
            None,
        )))],
        ClientRequest::Cancel(id) => vec![ClientReply::Job(Box::new(job(
            id.job.0,
            JobState::Cancelled,
            None,
        )))],
        ClientRequest::Wait(JobRef {
            job: JobId(5),
            task: None,
        }) => vec![ClientReply::Job(Box::new(job(
            5,
            JobState::Failed,
            Some(ExitStatus {
                code: Some(3),
                signal: None,
            }),
        )))],
        ClientRequest::Wait(id) => vec![ClientReply::Job(Box::new(job(
            id.job.0,
            JobState::Cancelled,
            None,
        )))],
        ClientRequest::Logs { rank, .. } => {
            let line = |rank, stream, line: &str| LogLine {
                rank,
                stream,
                line: line.into(),
            };
            let mut all = vec![
                line(Some(0), Stream::Stdout, "hello from 0"),
                line(Some(1), Stream::Stdout, "hello from 1"),
                line(Some(1), Stream::Stderr, "warning from 1"),
                line(None, Stream::Stdout, "mpiexec says"),
            ];
            if let Some(r) = rank {
                all.retain(|l| l.rank == Some(r));
            }
            let (a, b) = all.split_at(2.min(all.len()));
            vec![
                ClientReply::Log(a.to_vec()),
                ClientReply::Log(b.to_vec()),
                ClientReply::LogEnd,
            ]
        }
        ClientRequest::Watch => vec![ClientReply::Snapshot {
            nodes: vec![],
            jobs: vec![],
        }],
    }
}

async fn serve_conn(conn: quinn::Connection) {
    let Ok((mut send, mut recv)) = conn.accept_bi().await else {
        return;
    };
    let hello: Hello = graze_net::recv(&mut recv).await.unwrap().unwrap();
    let reply = if hello.token == "secret" {
        HelloReply::Welcome {
            version: PROTOCOL_VERSION,
        }
    } else {
        HelloReply::Refused {
            reason: "wrong cluster token".into(),
        }
    };
    graze_net::send(&mut send, &reply).await.unwrap();
    while let Ok((mut s, mut r)) = conn.accept_bi().await {
        tokio::spawn(async move {
            let req: ClientRequest = graze_net::recv(&mut r).await.unwrap().unwrap();
            // The client finishes its half after the request.
            assert!(graze_net::recv::<ClientRequest>(&mut r)
                .await
                .unwrap()
                .is_none());
            for a in answers(req) {
                graze_net::send(&mut s, &a).await.unwrap();
            }
            s.finish().unwrap();
            let _ = s.stopped().await;
        });
    }
}

/// Start the fake scheduler; write an access file for it into `dir`.
fn start(dir: &Path, token: &str) -> std::path::PathBuf {
    let id = Identity::load_or_create(dir).unwrap();
    let ep =
        graze_net::server_endpoint("127.0.0.1:0".parse().unwrap(), &id, Duration::from_secs(10))
            .unwrap();
    let access = Access {
        scheduler: ep.local_addr().unwrap().to_string(),
        fingerprint: id.fingerprint(),
        token: token.into(),
    };
    let path = dir.join("access.toml");
    access.save(&path).unwrap();
    tokio::spawn(async move {
        while let Some(incoming) = ep.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    serve_conn(conn).await;
                }
            });
        }
    });
    path
}

#[tokio::test]
async fn client_requests() {
    let dir = tempfile::tempdir().unwrap();
    let path = start(dir.path(), "secret");
    let client = Client::connect(&Access::load(&path).unwrap())
        .await
        .unwrap();

    let spec = job(1, JobState::Queued, None).spec;
    assert_eq!(client.submit(spec.clone()).await.unwrap(), JobId(42));
    let bad = JobSpec { nprocs: 99, ..spec };
    match client.submit(bad).await {
        Err(ClientError::Scheduler(m)) => assert_eq!(m, "no node group 'gpu'"),
        other => panic!("{other:?}"),
    }
    assert_eq!(client.queue(true).await.unwrap().len(), 1);
    assert!(client.nodes().await.unwrap().is_empty());
    assert_eq!(
        client.show_job(JobId(4)).await.unwrap().state,
        JobState::Queued
    );
    assert!(matches!(
        client.show_job(JobId(9)).await,
        Err(ClientError::Scheduler(_))
    ));
    assert!(matches!(
        client.cancel(JobId(4).into()).await.unwrap(),
        Shown::Job(j) if j.state == JobState::Cancelled
    ));
    assert_eq!(
        client.wait_job(JobId(5)).await.unwrap().state,
        JobState::Failed
    );

    let mut logs = client.logs(JobId(5).into(), None, true).await.unwrap();
    let mut n = 0;
    while let Some(batch) = logs.next_batch().await.unwrap() {
        n += batch.len();
    }
    assert_eq!(n, 4);
    assert!(logs.next_batch().await.unwrap().is_none());

    // A trace comes in chunks, put back together per file; the clock file becomes samples.
    let nodes = graze::trace_cmd::fetch(&client, JobId(8).into(), None)
        .await
        .unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(
        nodes[0].files,
        vec![("rank-0.gzt".to_string(), vec![1, 2, 3])]
    );
    assert_eq!(nodes[0].clock[0].offset_ns, -5);
    let e = graze::trace_cmd::fetch(&client, JobId(4).into(), None)
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("job 4 was not traced"), "{e:#}");

    // Several requests at once on one connection.
    let (a, b) = tokio::join!(client.queue(false), client.show_job(JobId(7)));
    assert_eq!(a.unwrap()[0].id, JobId(3));
    assert_eq!(b.unwrap().id, JobId(7));
    client.close().await;
}

#[tokio::test]
async fn wrong_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = start(dir.path(), "wrong");
    let e = Client::connect(&Access::load(&path).unwrap())
        .await
        .err()
        .unwrap();
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("wrong cluster token"), "{e}");
}

/// `graze top`'s feed stops with the reason when its token is refused (revoked): retrying
/// cannot help, so it does not try again every second.
#[tokio::test]
async fn top_feed_stops_on_a_refused_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = start(dir.path(), "revoked");
    let (data_tx, mut data_rx) = tokio::sync::mpsc::unbounded_channel();
    let (_cmd_tx, cmd_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::time::timeout(
        Duration::from_secs(10),
        graze::top::feed::run(
            Access::load(&path).unwrap(),
            data_tx,
            cmd_rx,
            Default::default(),
        ),
    )
    .await
    .expect("the feed kept retrying a refused token");
    let mut events = Vec::new();
    while let Ok(e) = data_rx.try_recv() {
        events.push(e);
    }
    match events.as_slice() {
        [DataEvent::Stopped { reason }] => {
            assert!(reason.contains("wrong cluster token"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

/// `graze top`'s feed answers the timeline's `LoadTrace` with a `DataEvent::Trace` from
/// `top::data::load_trace` (here: the scheduler's error, which the timeline shows). The fake's
/// watch stream ends after its snapshot, so the feed reconnects now and then; an ask that
/// meets it disconnected is answered "not connected", and it asks again.
#[tokio::test]
async fn top_feed_answers_a_trace_request() {
    use graze::top::Command;
    let dir = tempfile::tempdir().unwrap();
    let path = start(dir.path(), "secret");
    let (data_tx, mut data_rx) = tokio::sync::mpsc::unbounded_channel();
    let (cmd_tx, cmd_rx) = tokio::sync::mpsc::unbounded_channel();
    let feed = tokio::spawn(graze::top::feed::run(
        Access::load(&path).unwrap(),
        data_tx,
        cmd_rx,
        Default::default(),
    ));
    let mut answers = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(ev) = data_rx.recv().await {
            match ev {
                DataEvent::Connected => cmd_tx.send(Command::LoadTrace(JobId(7))).unwrap(),
                DataEvent::Trace { job, trace } => {
                    assert_eq!(job, JobId(7));
                    let why = trace.unwrap_err();
                    answers.push(why.clone());
                    // The fake scheduler says job 7 was not traced.
                    if why.contains("job 7 was not traced") {
                        return;
                    }
                    assert_eq!(why, "not connected to the scheduler");
                }
                _ => {}
            }
        }
    })
    .await;
    assert!(found.is_ok(), "no answer from load_trace: {answers:?}");
    drop(cmd_tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), feed).await;
}

async fn graze(access: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_graze"))
        .arg("--access")
        .arg(access)
        .args(args)
        .output()
        .await
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let path = start(dir.path(), "secret");

    let o = graze(&path, &["submit", "-n", "4", "--", "mpiexec", "graze-pi"]).await;
    assert_eq!((o.status.code(), text(&o.stdout)), (Some(0), "42\n".into()));
    let o = graze(&path, &["submit", "--json", "-n", "4", "--", "x"]).await;
    assert_eq!(text(&o.stdout), "{\"id\": 42}\n");

    let o = graze(&path, &["submit", "-n", "99", "--", "x"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(text(&o.stderr), "error: no node group 'gpu'\n");

    let o = graze(&path, &["show", "9"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(text(&o.stderr), "error: no job 9\n");

    let o = graze(&path, &["show", "4"]).await;
    assert_eq!(o.status.code(), Some(0));
    assert!(
        text(&o.stdout).starts_with("job 4\n"),
        "{}",
        text(&o.stdout)
    );

    let o = graze(&path, &["queue", "--json"]).await;
    let jobs: Vec<JobView> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(jobs[0].id, JobId(3));

    let o = graze(&path, &["wait", "5"]).await;
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(text(&o.stderr), "job 5 failed: exit 3\n");
    let o = graze(&path, &["wait", "6"]).await;
    assert_eq!(o.status.code(), Some(130));
    assert_eq!(text(&o.stderr), "job 6 cancelled\n");

    let o = graze(&path, &["cancel", "6"]).await;
    assert_eq!(text(&o.stdout), "cancelled job 6\n");

    let o = graze(&path, &["requeue", "6", "--checkpoint"]).await;
    assert_eq!(
        (o.status.code(), text(&o.stdout)),
        (
            Some(0),
            "requeued job 6 (queued): the next run continues from the checkpoint it takes now\n"
                .into()
        )
    );
    let o = graze(&path, &["requeue", "6"]).await;
    assert_eq!(
        text(&o.stdout),
        "requeued job 6 (queued): it starts again from the beginning\n"
    );
    let o = graze(
        &path,
        &["submit", "-n", "2", "--checkpoint-every", "5s", "--", "x"],
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr)
            .contains("invalid value '5s' for '--checkpoint-every <DURATION>': at least 10s"),
        "{}",
        text(&o.stderr)
    );

    let o = graze(&path, &["logs", "5"]).await;
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        text(&o.stdout),
        "[0] hello from 0\n[1] hello from 1\n[-] mpiexec says\n"
    );
    assert_eq!(text(&o.stderr), "[1] warning from 1\n");
    let o = graze(&path, &["logs", "5", "--rank", "0"]).await;
    assert_eq!(text(&o.stdout), "hello from 0\n");

    let missing = dir.path().join("nope.toml");
    let o = graze(&missing, &["queue"]).await;
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.starts_with("error: no access file at "), "{err}");
    assert!(
        err.contains("nope.toml (named by --access or GRAZE_ACCESS)"),
        "{err}"
    );
}
