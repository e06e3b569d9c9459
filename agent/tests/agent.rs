//! The agent against a fake scheduler speaking the real protocol over real QUIC: registration,
//! status, an MPI job whose hydra proxies go through the real `graze-launch` shim, killing,
//! losing the scheduler, refusals.

#![allow(clippy::unwrap_used)]

use graze_agent::{AgentConfig, IdleSourceSpec};
use graze_net::{quinn, Access, Identity};
use graze_proto::{
    AgentMsg, Availability, ExitStatus, Hello, HelloReply, HostSlots, JobId, JobMsg, LaunchId,
    LaunchOutcome, RemoteId, SchedulerMsg, Stream, PROTOCOL_VERSION,
};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(30);

/// What the agent said besides its status, job messages unwrapped and flattened.
#[derive(Debug)]
#[allow(dead_code)]
enum Event {
    Launch {
        id: LaunchId,
        job: JobId,
        secret: String,
        host: String,
        command: Vec<String>,
    },
    LaunchAbandoned {
        id: LaunchId,
    },
    Output {
        job: JobId,
        rank: Option<u32>,
        stream: Stream,
        line: String,
    },
    JobExited {
        job: JobId,
        exit: ExitStatus,
    },
    JobFailedToStart {
        job: JobId,
        reason: String,
    },
    JobCleared {
        job: JobId,
    },
    RemoteExited {
        remote: RemoteId,
        exit: ExitStatus,
        origin: String,
        origin_id: LaunchId,
    },
    OwnerReleased {
        latency_us: u64,
        jobs: Vec<JobId>,
    },
    Other(AgentMsg),
}

impl Event {
    fn from_job(m: JobMsg) -> Event {
        match m {
            JobMsg::Output { job, line } => Event::Output {
                job,
                rank: line.rank,
                stream: line.stream,
                line: line.line,
            },
            JobMsg::JobExited { job, exit } => Event::JobExited { job, exit },
            JobMsg::JobFailedToStart { job, reason } => Event::JobFailedToStart { job, reason },
            JobMsg::JobCleared { job } => Event::JobCleared { job },
            m @ JobMsg::JobNote { .. } => Event::Other(AgentMsg::Sequenced { seq: 0, msg: m }),
            JobMsg::RemoteExited {
                remote,
                exit,
                origin,
                origin_id,
            } => Event::RemoteExited {
                remote,
                exit,
                origin,
                origin_id,
            },
            JobMsg::OwnerReleased { latency_us, jobs } => Event::OwnerReleased { latency_us, jobs },
        }
    }
}

struct FakeScheduler {
    endpoint: quinn::Endpoint,
    access_path: PathBuf,
    token: String,
    _dir: tempfile::TempDir,
}

impl FakeScheduler {
    fn new() -> FakeScheduler {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::load_or_create(&dir.path().join("state")).unwrap();
        let endpoint = graze_net::server_endpoint(
            "127.0.0.1:0".parse().unwrap(),
            &id,
            Duration::from_secs(10),
        )
        .unwrap();
        let token = graze_net::random_token();
        let access = Access {
            scheduler: endpoint.local_addr().unwrap().to_string(),
            fingerprint: id.fingerprint(),
            token: token.clone(),
        };
        let access_path = dir.path().join("access.toml");
        access.save(&access_path).unwrap();
        FakeScheduler {
            endpoint,
            access_path,
            token,
            _dir: dir,
        }
    }

    /// Accept one agent connection and its hello; `refuse` answers the hello with a refusal.
    async fn accept(&self, refuse: Option<&str>) -> Peer {
        let incoming = tokio::time::timeout(WAIT, self.endpoint.accept())
            .await
            .expect("no connection from the agent")
            .unwrap();
        let conn = incoming.await.unwrap();
        let (mut send, mut recv) = conn.accept_bi().await.unwrap();
        let hello: Hello = graze_net::recv(&mut recv).await.unwrap().unwrap();
        assert_eq!(hello.version, PROTOCOL_VERSION);
        assert_eq!(hello.role, graze_proto::Role::Agent);
        let reply = match refuse {
            Some(r) => HelloReply::Refused { reason: r.into() },
            None => {
                assert!(graze_net::token_eq(&hello.token, &self.token));
                HelloReply::Welcome {
                    version: PROTOCOL_VERSION,
                }
            }
        };
        graze_net::send(&mut send, &reply).await.unwrap();
        Peer { conn, send, recv }
    }

    /// Accept a connection and answer its registration.
    async fn accept_registered(&self) -> (Peer, graze_proto::NodeInfo) {
        let mut p = self.accept(None).await;
        let AgentMsg::Register(info) = p.next().await else {
            panic!("first message is not Register");
        };
        p.send(SchedulerMsg::Registered {
            node_timeout_ms: 10_000,
        })
        .await;
        (p, info)
    }
}

struct Peer {
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

impl Peer {
    async fn next(&mut self) -> AgentMsg {
        tokio::time::timeout(WAIT, graze_net::recv::<AgentMsg>(&mut self.recv))
            .await
            .expect("no message from the agent")
            .unwrap()
            .expect("agent closed the stream")
    }

    /// The next message that is not a status report.
    /// The next message that is not a status; numbered job messages are acknowledged and
    /// unwrapped, as the scheduler does.
    async fn next_event(&mut self) -> Event {
        loop {
            match self.next().await {
                AgentMsg::Status(_) => {}
                AgentMsg::Sequenced { seq, msg } => {
                    self.send(SchedulerMsg::Ack { seq }).await;
                    return Event::from_job(msg);
                }
                AgentMsg::Launch {
                    id,
                    job,
                    secret,
                    host,
                    command,
                } => {
                    return Event::Launch {
                        id,
                        job,
                        secret,
                        host,
                        command,
                    }
                }
                AgentMsg::LaunchAbandoned { id } => return Event::LaunchAbandoned { id },
                m => return Event::Other(m),
            }
        }
    }

    async fn send(&mut self, m: SchedulerMsg) {
        graze_net::send(&mut self.send, &m).await.unwrap();
    }

    /// Wait for a status whose availability satisfies `f`.
    async fn wait_status(&mut self, f: impl Fn(&Availability) -> bool) -> graze_proto::NodeStatus {
        loop {
            if let AgentMsg::Status(s) = self.next().await {
                if f(&s.availability) {
                    return s;
                }
            }
        }
    }
}

struct RunningAgent {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _spool: tempfile::TempDir,
}

impl RunningAgent {
    fn start(cfg: AgentConfig, spool: tempfile::TempDir) -> RunningAgent {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(graze_agent::run(cfg, async {
            let _ = stopped.await;
        }));
        RunningAgent {
            stop: Some(stop),
            task,
            _spool: spool,
        }
    }

    async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("agent did not stop")
            .unwrap()
            .unwrap();
    }
}

/// As root, jobs run as an unprivileged test user (created if missing) and the spool must be
/// reachable by it; as a normal user, jobs run as that user.
fn run_as(spool: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    graze_agent::install::ensure_user(Path::new("/"), "graze-test").unwrap();
    std::fs::set_permissions(spool, std::fs::Permissions::from_mode(0o755)).unwrap();
    Some("graze-test".into())
}

/// Marks the job processes of this test binary's agents (the agents pass `GRAZE_*` site
/// variables on to jobs), so tests running at the same time elsewhere on the machine with the
/// same job ids are not mistaken for ours.
fn test_marker() -> String {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let value = std::process::id().to_string();
    ONCE.call_once(|| std::env::set_var("GRAZE_AGENT_TEST_PID", &value));
    format!("GRAZE_AGENT_TEST_PID={value}")
}

fn config(sched: &FakeScheduler, name: &str, spool: &Path) -> AgentConfig {
    test_marker();
    AgentConfig {
        run_as: run_as(spool),
        slot_users: None,
        nice: 0,
        memory_max: None,
        checkpoint_rate: None,
        owner_socket: Some(spool.join("owner.sock")),
        utmp: None,
        access: sched.access_path.clone(),
        name: name.into(),
        cores: 3,
        bind: None,
        groups: vec!["test".into()],
        idle_sources: vec![IdleSourceSpec::AlwaysIdle],
        start_after: Duration::ZERO,
        owner_cpu_max: 100,
        spool: spool.to_owned(),
        launcher: PathBuf::from(env!("CARGO_BIN_EXE_graze-launch")),
        policy: graze_agent::config::Policy::default(),
        node_timeout: Duration::from_secs(3),
    }
}

fn start_agent(sched: &FakeScheduler, name: &str) -> RunningAgent {
    let spool = tempfile::tempdir().unwrap();
    let cfg = config(sched, name, spool.path());
    RunningAgent::start(cfg, spool)
}

fn start_job(job: u64, command: &[&str], hosts: &[(&str, u32)]) -> SchedulerMsg {
    SchedulerMsg::StartJob {
        job: JobId(job),
        command: command.iter().map(|s| s.to_string()).collect(),
        cwd: None,
        env: vec![],
        hosts: hosts
            .iter()
            .map(|(h, s)| HostSlots {
                host: h.to_string(),
                slots: *s,
            })
            .collect(),
        secret: format!("secret-{job}"),
        epoch: 1,
        stdout: None,
        stderr: None,
        trace: None,
    }
}

/// Pids of live processes whose environment carries a tag of `job`.
fn tagged_processes(job: u64) -> Vec<i32> {
    let suffix = format!("-{job}");
    let marker = test_marker();
    graze_agent::jobs::procs::all_processes()
        .into_iter()
        .filter(|p| !p.is_gone())
        .filter(|p| {
            std::fs::read(format!("/proc/{}/environ", p.pid))
                .map(|env| {
                    env.split(|b| *b == 0).any(|e| e == marker.as_bytes())
                        && env.split(|b| *b == 0).any(|e| {
                            let e = String::from_utf8_lossy(e);
                            e.starts_with("GRAZE_JOB_TAG=") && e.ends_with(&suffix)
                        })
                })
                .unwrap_or(false)
        })
        .map(|p| p.pid)
        .collect()
}

fn hydra_available() -> bool {
    std::process::Command::new("mpiexec")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("HYDRA"))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_and_reports_status() {
    let sched = FakeScheduler::new();
    let agent = start_agent(&sched, "a1");
    let (mut p, info) = sched.accept_registered().await;
    assert_eq!(info.name, "a1");
    assert_eq!(info.cores, 3);
    assert_eq!(info.groups, vec!["test"]);
    assert!(info.sockets >= 1);
    assert!(info.memory_bytes > 0);
    assert!(info.software.starts_with("graze-agent "));
    if hydra_available() {
        assert!(info.mpi.iter().any(|m| m.kind == "mpich"), "{:?}", info.mpi);
    }
    let s = p.wait_status(|a| a.is_offered()).await;
    assert_eq!(s.idle_sources, vec!["always-idle"]);
    assert!(!s.core_load.is_empty() || s.owner_cpu == 0.0);
    // At least one status per second.
    let t = Instant::now();
    p.wait_status(|_| true).await;
    p.wait_status(|_| true).await;
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mpi_job_launches_through_the_shim() {
    if !hydra_available() {
        eprintln!("skipped: mpiexec is not MPICH hydra");
        return;
    }
    let sched = FakeScheduler::new();
    let agent = start_agent(&sched, "a1");
    let (mut p, _) = sched.accept_registered().await;
    p.send(start_job(
        1,
        &[
            "mpiexec",
            "sh",
            "-c",
            "echo hi from $PMI_RANK; echo oops >&2",
        ],
        &[("a1", 2), ("a2", 1)],
    ))
    .await;

    let mut launches = Vec::new();
    let mut lines = BTreeSet::new();
    let mut errs = BTreeSet::new();
    let mut other = Vec::new();
    let exit = loop {
        match p.next_event().await {
            Event::Launch {
                id,
                job,
                secret,
                host,
                command,
            } => {
                assert_eq!(job, JobId(1));
                assert_eq!(secret, "secret-1");
                assert!(command[0].contains("hydra_pmi_proxy"), "{command:?}");
                launches.push(host);
                // Run it on this same agent, as the scheduler would on node `host`.
                p.send(SchedulerMsg::SpawnRemote {
                    remote: RemoteId(id.0),
                    job,
                    command,
                    epoch: 1,
                    origin: "self".into(),
                    origin_id: id,
                    trace: None,
                })
                .await;
            }
            Event::RemoteExited {
                origin_id, exit, ..
            } => {
                p.send(SchedulerMsg::LaunchDone {
                    id: origin_id,
                    outcome: LaunchOutcome::Exited(exit),
                })
                .await;
            }
            Event::Output {
                rank: Some(r),
                stream: Stream::Stdout,
                line,
                ..
            } => {
                lines.insert((r, line));
            }
            Event::Output {
                rank: Some(r),
                stream: Stream::Stderr,
                line,
                ..
            } => {
                errs.insert((r, line));
            }
            Event::JobExited { job, exit } => {
                assert_eq!(job, JobId(1));
                break exit;
            }
            m => other.push(m),
        }
    };
    assert!(exit.success(), "{exit}; other messages: {other:?}");
    launches.sort();
    assert_eq!(launches, vec!["a1", "a2"]);
    let want: BTreeSet<(u32, String)> = (0..3).map(|r| (r, format!("hi from {r}"))).collect();
    assert_eq!(lines, want, "other messages: {other:?}");
    let want: BTreeSet<(u32, String)> = (0..3).map(|r| (r, "oops".to_string())).collect();
    assert_eq!(errs, want);

    p.send(SchedulerMsg::KillJob { job: JobId(1) }).await;
    loop {
        if let Event::JobCleared { job } = p.next_event().await {
            assert_eq!(job, JobId(1));
            break;
        }
    }
    assert!(tagged_processes(1).is_empty());
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_mpi_job_is_killed_whole() {
    if !hydra_available() {
        eprintln!("skipped: mpiexec is not MPICH hydra");
        return;
    }
    let job = 770_003;
    let sched = FakeScheduler::new();
    let agent = start_agent(&sched, "m1");
    let (mut p, _) = sched.accept_registered().await;
    p.send(start_job(
        job,
        &["mpiexec", "sh", "-c", "echo up; sleep 100"],
        &[("m1", 1), ("m2", 2)],
    ))
    .await;
    let mut up = 0;
    let mut launches = Vec::new();
    while up < 3 {
        match p.next_event().await {
            Event::Launch {
                id, job, command, ..
            } => {
                launches.push(id);
                p.send(SchedulerMsg::SpawnRemote {
                    remote: RemoteId(id.0),
                    job,
                    command,
                    epoch: 1,
                    origin: "self".into(),
                    origin_id: id,
                    trace: None,
                })
                .await;
            }
            Event::Output { line, .. } if line == "up" => up += 1,
            m => panic!("{m:?}"),
        }
    }
    // mpiexec, two shims, two proxies, three ranks (each `sh` running `sleep`).
    assert!(
        tagged_processes(job).len() >= 8,
        "{:?}",
        tagged_processes(job)
    );

    p.send(SchedulerMsg::KillJob { job: JobId(job) }).await;
    let mut seen = Vec::new();
    loop {
        match p.next_event().await {
            Event::JobCleared { job: j } => {
                assert_eq!(j, JobId(job));
                break;
            }
            m => seen.push(m),
        }
    }
    assert!(
        seen.iter().any(|m| matches!(m, Event::JobExited { .. })),
        "{seen:?}"
    );
    let remotes = seen
        .iter()
        .filter(|m| matches!(m, Event::RemoteExited { .. }))
        .count();
    assert_eq!(remotes, 2, "{seen:?}");
    assert!(
        tagged_processes(job).is_empty(),
        "{:?}",
        tagged_processes(job)
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_job_kills_groups_descendants_and_orphans() {
    let job = 770_001;
    let sched = FakeScheduler::new();
    let agent = start_agent(&sched, "k1");
    let (mut p, _) = sched.accept_registered().await;
    p.send(start_job(
        job,
        &["sh", "-c", "sleep 100 & sleep 100 & echo started; wait"],
        &[("k1", 1)],
    ))
    .await;
    loop {
        if let Event::Output { line, .. } = p.next_event().await {
            assert_eq!(line, "started");
            break;
        }
    }
    // A remote launch that leaves an orphan in a new session: only its tag marks it.
    p.send(SchedulerMsg::SpawnRemote {
        remote: RemoteId(5),
        job: JobId(job),
        command: vec![
            "setsid".into(),
            "sh".into(),
            "-c".into(),
            "'sleep 100 > /dev/null 2>&1 &'".into(),
        ],
        epoch: 1,
        origin: "self".into(),
        origin_id: LaunchId(5),
        trace: None,
    })
    .await;
    loop {
        if let Event::RemoteExited { remote, exit, .. } = p.next_event().await {
            assert_eq!(remote, RemoteId(5));
            assert!(exit.success(), "{exit}");
            break;
        }
    }
    let deadline = Instant::now() + WAIT;
    while tagged_processes(job).len() < 4 {
        assert!(Instant::now() < deadline, "{:?}", tagged_processes(job));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    p.send(SchedulerMsg::KillJob { job: JobId(job) }).await;
    let mut exited = None;
    loop {
        match p.next_event().await {
            Event::JobExited { exit, .. } => exited = Some(exit),
            Event::JobCleared { job: j } => {
                assert_eq!(j, JobId(job));
                break;
            }
            _ => {}
        }
    }
    assert_eq!(
        exited,
        Some(ExitStatus {
            code: None,
            signal: Some(9)
        }),
        "JobExited comes before JobCleared"
    );
    assert!(
        tagged_processes(job).is_empty(),
        "{:?}",
        tagged_processes(job)
    );

    // Killing a job that is not here answers at once.
    p.send(SchedulerMsg::KillJob { job: JobId(4242) }).await;
    loop {
        if let Event::JobCleared { job } = p.next_event().await {
            assert_eq!(job, JobId(4242));
            break;
        }
    }
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_start_and_losing_the_scheduler() {
    let job = 770_002;
    let sched = FakeScheduler::new();
    let agent = start_agent(&sched, "l1");
    let (mut p, _) = sched.accept_registered().await;

    p.send(start_job(1, &["/nonexistent/prog", "x"], &[("l1", 1)]))
        .await;
    match p.next_event().await {
        Event::JobFailedToStart { job, reason } => {
            assert_eq!(job, JobId(1));
            assert_eq!(
                reason,
                "cannot run '/nonexistent/prog': No such file or directory"
            );
        }
        m => panic!("{m:?}"),
    }

    p.send(start_job(
        job,
        &["sh", "-c", "echo $$; sleep 100"],
        &[("l1", 1)],
    ))
    .await;
    let pid: i32 = loop {
        if let Event::Output { line, .. } = p.next_event().await {
            break line.parse().unwrap();
        }
    };
    assert!(!graze_agent::jobs::procs::is_gone(pid));

    // The scheduler goes away (a restart): the job keeps running, and the agent comes back
    // reporting the run it holds.
    p.conn.close(0u32.into(), b"bye");
    let (p2, info) = sched.accept_registered().await;
    assert_eq!(info.name, "l1");
    assert_eq!(
        info.held,
        vec![graze_proto::HeldJob {
            job: JobId(job),
            epoch: 1,
            main: true
        }]
    );
    assert!(
        !graze_agent::jobs::procs::is_gone(pid),
        "the job survived the reconnect"
    );
    // The scheduler is gone for good: after node_timeout (3 s here) the agent kills the job.
    p2.conn.close(0u32.into(), b"bye");
    let deadline = Instant::now() + WAIT;
    while !graze_agent::jobs::procs::is_gone(pid) || !tagged_processes(job).is_empty() {
        assert!(
            Instant::now() < deadline,
            "job survived the lost scheduler: pid {pid} {:?}, tagged {:?}",
            graze_agent::jobs::procs::read_stat(pid),
            tagged_processes(job)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shim_errors_and_abandoned_launches() {
    let sched = FakeScheduler::new();
    let agent = start_agent(&sched, "s1");
    let (mut p, _) = sched.accept_registered().await;

    // A shim with the wrong secret is refused by the agent itself.
    let mut m = start_job(
        1,
        &["sh", "-c", "graze-launch s2 echo hi; echo \"rc=$?\""],
        &[("s1", 1), ("s2", 1)],
    );
    if let SchedulerMsg::StartJob { env, .. } = &mut m {
        env.push(("GRAZE_JOB_SECRET".into(), "wrong".into()));
        let launcher_dir = Path::new(env!("CARGO_BIN_EXE_graze-launch"))
            .parent()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        env.push((
            "PATH".into(),
            format!(
                "{launcher_dir}:{}",
                std::env::var("PATH").unwrap_or_default()
            ),
        ));
    }
    p.send(m).await;
    let mut lines = Vec::new();
    loop {
        match p.next_event().await {
            Event::Output { line, .. } => lines.push(line),
            Event::JobExited { .. } => break,
            m => panic!("{m:?}"),
        }
    }
    assert!(
        lines.contains(&"graze-launch: launch on 's2' failed: wrong secret for job 1".to_string()),
        "{lines:?}"
    );
    assert!(lines.contains(&"rc=255".to_string()), "{lines:?}");

    // A shim that dies before its answer: the launch is abandoned.
    let launcher = env!("CARGO_BIN_EXE_graze-launch");
    let script = format!("{launcher} s2 sleep 100 & sleep 1; kill $!; wait");
    p.send(start_job(
        2,
        &["sh", "-c", &script],
        &[("s1", 1), ("s2", 1)],
    ))
    .await;
    let id = match p.next_event().await {
        Event::Launch {
            id, host, command, ..
        } => {
            assert_eq!(host, "s2");
            assert_eq!(command, vec!["sleep", "100"]);
            id
        }
        m => panic!("{m:?}"),
    };
    loop {
        match p.next_event().await {
            Event::LaunchAbandoned { id: gone } => {
                assert_eq!(gone, id);
                break;
            }
            Event::JobExited { .. } => {}
            m => panic!("{m:?}"),
        }
    }

    // An exit code from the scheduler reaches the shim's caller.
    let script = format!("{launcher} s2 false; echo \"rc=$?\"");
    p.send(start_job(
        3,
        &["sh", "-c", &script],
        &[("s1", 1), ("s2", 1)],
    ))
    .await;
    loop {
        match p.next_event().await {
            Event::Launch { id, .. } => {
                p.send(SchedulerMsg::LaunchDone {
                    id,
                    outcome: LaunchOutcome::Exited(ExitStatus {
                        code: None,
                        signal: Some(9),
                    }),
                })
                .await
            }
            Event::Output {
                job: JobId(3),
                line,
                ..
            } => {
                assert_eq!(line, "rc=137");
                break;
            }
            _ => {}
        }
    }
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn availability_follows_the_idle_file() {
    let sched = FakeScheduler::new();
    let spool = tempfile::tempdir().unwrap();
    let touch = spool.path().join("owner-touch");
    let mut cfg = config(&sched, "i1", spool.path());
    cfg.idle_sources = vec![IdleSourceSpec::File(touch.clone())];
    cfg.start_after = Duration::from_secs(3);
    let agent = RunningAgent::start(cfg, spool);
    let (mut p, _) = sched.accept_registered().await;

    // Missing file: broken source, owner counts as active.
    let s = p.wait_status(|_| true).await;
    assert_eq!(s.availability, Availability::OwnerActive);
    assert!(s.idle_sources.is_empty(), "{:?}", s.idle_sources);

    std::fs::write(&touch, "").unwrap();
    let s = p
        .wait_status(|a| matches!(a, Availability::Waiting { .. }))
        .await;
    assert_eq!(s.idle_sources, vec![format!("file:{}", touch.display())]);
    p.wait_status(|a| a.is_offered()).await;

    // The owner comes back: reported by the next tick (on a node without jobs the tick comes
    // with the periodic status, once a second; `owner_release` measures the latency).
    let f = std::fs::File::options().write(true).open(&touch).unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    p.wait_status(|a| *a == Availability::OwnerActive).await;
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_is_fatal() {
    let sched = FakeScheduler::new();
    let spool = tempfile::tempdir().unwrap();
    let cfg = config(&sched, "r1", spool.path());
    let task = tokio::spawn(graze_agent::run(cfg, std::future::pending()));
    let _p = sched.accept(Some("wrong token")).await;
    let err = tokio::time::timeout(WAIT, task)
        .await
        .expect("agent did not give up")
        .unwrap()
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("refused by the scheduler: wrong token"),
        "{text}"
    );

    // Registration refused is fatal too.
    let spool = tempfile::tempdir().unwrap();
    let cfg = config(&sched, "r2", spool.path());
    let task = tokio::spawn(graze_agent::run(cfg, std::future::pending()));
    let mut p = sched.accept(None).await;
    assert!(matches!(p.next().await, AgentMsg::Register(_)));
    p.send(SchedulerMsg::RegisterRefused {
        reason: "name taken".into(),
    })
    .await;
    let err = tokio::time::timeout(WAIT, task)
        .await
        .expect("agent did not give up")
        .unwrap()
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("the scheduler refused to register node 'r2': name taken"),
        "{text}"
    );

    // No idle source: refuses to start.
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = config(&sched, "r3", spool.path());
    cfg.idle_sources.clear();
    let err = graze_agent::run(cfg, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no idle source configured"),
        "{err}"
    );
}

/// A checkpointing job on one node: the vacate signals it, waits for its marker, ends it,
/// packs rank 0's files (as the job's user) and sends them on a stream of their own, and
/// clears only after the scheduler's reply; the next run's launch waits for the restore,
/// which puts the files back before the job reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_vacate_then_restore() {
    use graze_proto::{CheckpointId, CheckpointStream, RestoreRef, StreamEnd, StreamReply};
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let sched = FakeScheduler::new();
    let agent = start_agent(&sched, "a1");
    let (mut p, _) = sched.accept_registered().await;
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = root.path().join("ck/job-5");
    let dirs = dir.to_string_lossy().to_string();
    let env = vec![("GRAZE_CHECKPOINT_DIR".to_string(), dirs.clone())];

    p.send(SchedulerMsg::CheckpointSetup {
        job: JobId(5),
        epoch: 1,
        dir: dirs.clone(),
        ranks: vec![0],
        restore: None,
        signal: 10,
    })
    .await;
    let script = "trap 'mkdir -p $GRAZE_CHECKPOINT_DIR/0; echo saved-state > \
                  $GRAZE_CHECKPOINT_DIR/0/state; touch $GRAZE_CHECKPOINT_DIR/0.done; exit 85' USR1; \
                  echo ready; while :; do sleep 0.1; done";
    let mut first = start_job(5, &["sh", "-c", script], &[("a1", 1)]);
    if let SchedulerMsg::StartJob { env: e, .. } = &mut first {
        *e = env.clone();
    }
    p.send(first).await;
    loop {
        if let Event::Output { line, .. } = p.next_event().await {
            assert_eq!(line, "ready");
            break;
        }
    }
    // The scheduler's side of the part's stream.
    let replied = Arc::new(AtomicBool::new(false));
    let conn = p.conn.clone();
    let flag = replied.clone();
    let receiver = tokio::spawn(async move {
        let (mut send, mut recv) = conn.accept_bi().await.unwrap();
        let head: CheckpointStream = graze_net::recv(&mut recv).await.unwrap().unwrap();
        let mut data = Vec::new();
        while let Some(b) = graze_net::recv_block(&mut recv).await.unwrap() {
            data.extend_from_slice(&b);
        }
        let end: StreamEnd = graze_net::recv(&mut recv).await.unwrap().unwrap();
        flag.store(true, Ordering::SeqCst);
        graze_net::send(&mut send, &StreamReply { error: None })
            .await
            .unwrap();
        let _ = send.finish();
        (head, data, end)
    });
    let id = CheckpointId {
        epoch: 1,
        at_ms: 1_700_000_000_000,
    };
    p.send(SchedulerMsg::Checkpoint {
        job: JobId(5),
        epoch: 1,
        id,
        ranks: vec![0],
        signal: Some(10),
        grace_ms: 20_000,
        stop: true,
    })
    .await;
    let mut other = Vec::new();
    loop {
        match p.next_event().await {
            Event::JobCleared { job } => {
                assert_eq!(job, JobId(5));
                break;
            }
            Event::JobExited { exit, .. } => assert_eq!(exit.code, Some(85), "{exit}"),
            m => other.push(m),
        }
    }
    assert!(
        replied.load(Ordering::SeqCst),
        "cleared before the part was stored; {other:?}"
    );
    let (head, data, end) = tokio::time::timeout(WAIT, receiver).await.unwrap().unwrap();
    assert_eq!(
        head,
        CheckpointStream::Part {
            job: JobId(5),
            id,
            ranks: vec![0],
            error: None
        }
    );
    assert_eq!(end.error, None);
    assert_eq!(end.bytes, data.len() as u64);
    assert!(!data.is_empty());
    // The node's rank entries are gone with the run.
    assert!(!dir.join("0").exists() && !dir.join("0.done").exists());

    // The next run: its start waits for the restore.
    p.send(SchedulerMsg::CheckpointSetup {
        job: JobId(5),
        epoch: 2,
        dir: dirs.clone(),
        ranks: vec![0],
        restore: Some(RestoreRef {
            id,
            bytes: data.len() as u64,
        }),
        signal: 10,
    })
    .await;
    let mut second = start_job(
        5,
        &["sh", "-c", "cat $GRAZE_CHECKPOINT_DIR/0/state"],
        &[("a1", 1)],
    );
    if let SchedulerMsg::StartJob { env: e, epoch, .. } = &mut second {
        *e = env.clone();
        *epoch = 2;
    }
    p.send(second).await;
    let (mut send, mut recv) = p.conn.open_bi().await.unwrap();
    let head = CheckpointStream::Restore {
        job: JobId(5),
        epoch: 2,
        id,
        error: None,
    };
    graze_net::send(&mut send, &head).await.unwrap();
    graze_net::send_block(&mut send, &data).await.unwrap();
    graze_net::send_block(&mut send, &[]).await.unwrap();
    let end = StreamEnd {
        bytes: data.len() as u64,
        error: None,
    };
    graze_net::send(&mut send, &end).await.unwrap();
    let reply: StreamReply = tokio::time::timeout(WAIT, graze_net::recv(&mut recv))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply.error, None);
    let mut lines = Vec::new();
    let mut notes = Vec::new();
    let exit = loop {
        match p.next_event().await {
            Event::Output { line, .. } => lines.push(line),
            Event::JobExited { exit, .. } => break exit,
            Event::Other(AgentMsg::Sequenced {
                msg: JobMsg::JobNote { what, .. },
                ..
            }) => notes.push(what),
            _ => {}
        }
    };
    assert!(exit.success(), "{exit}: {lines:?} {notes:?}");
    assert_eq!(lines, vec!["saved-state"], "{notes:?}");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with(&format!("restored checkpoint {id} on a1: ranks 0 (1 files")),
        "{notes:?}"
    );
    p.send(SchedulerMsg::KillJob { job: JobId(5) }).await;
    loop {
        if let Event::JobCleared { .. } = p.next_event().await {
            break;
        }
    }
    assert!(!dir.join("0").exists());
    agent.shutdown().await;
}

/// The scheduler's side of one checkpoint part's stream: header, data, end; replies stored.
async fn receive_part(
    conn: &quinn::Connection,
) -> (
    graze_proto::CheckpointStream,
    Vec<u8>,
    Option<graze_proto::StreamEnd>,
) {
    use graze_proto::{CheckpointStream, StreamReply};
    let (mut send, mut recv) = tokio::time::timeout(WAIT, conn.accept_bi())
        .await
        .expect("no part stream")
        .unwrap();
    let head: CheckpointStream = graze_net::recv(&mut recv).await.unwrap().unwrap();
    let mut data = Vec::new();
    let mut end = None;
    if !matches!(&head, CheckpointStream::Part { error: Some(_), .. }) {
        while let Some(b) = graze_net::recv_block(&mut recv).await.unwrap() {
            data.extend_from_slice(&b);
        }
        end = graze_net::recv(&mut recv).await.unwrap();
    }
    graze_net::send(&mut send, &StreamReply { error: None })
        .await
        .unwrap();
    let _ = send.finish();
    (head, data, end)
}

/// Periodic checkpoints: the job goes on, an old marker does not count for the next one, and
/// a rank that writes no marker within the grace makes a part with the reason instead of data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_checkpoint_goes_on_and_names_missing_ranks() {
    use graze_proto::{CheckpointId, CheckpointStream};
    use std::os::unix::fs::PermissionsExt;
    let sched = FakeScheduler::new();
    let agent = start_agent(&sched, "a1");
    let (mut p, _) = sched.accept_registered().await;
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = root.path().join("job-6");
    let dirs = dir.to_string_lossy().to_string();
    p.send(SchedulerMsg::CheckpointSetup {
        job: JobId(6),
        epoch: 1,
        dir: dirs.clone(),
        ranks: vec![0, 1],
        restore: None,
        signal: 10,
    })
    .await;
    let script = "n=0; trap 'n=$((n+1)); mkdir -p $GRAZE_CHECKPOINT_DIR/0; echo $n > \
                  $GRAZE_CHECKPOINT_DIR/0/n; touch $GRAZE_CHECKPOINT_DIR/0.done; echo saved $n' USR1; \
                  echo ready; while :; do sleep 0.1; done";
    let mut start = start_job(6, &["sh", "-c", script], &[("a1", 2)]);
    if let SchedulerMsg::StartJob { env, .. } = &mut start {
        *env = vec![("GRAZE_CHECKPOINT_DIR".to_string(), dirs.clone())];
    }
    p.send(start).await;
    loop {
        if let Event::Output { line, .. } = p.next_event().await {
            assert_eq!(line, "ready");
            break;
        }
    }
    let id = CheckpointId { epoch: 1, at_ms: 1 };
    p.send(SchedulerMsg::Checkpoint {
        job: JobId(6),
        epoch: 1,
        id,
        ranks: vec![0],
        signal: Some(10),
        grace_ms: 20_000,
        stop: false,
    })
    .await;
    let (head, data, end) = receive_part(&p.conn).await;
    assert_eq!(
        head,
        CheckpointStream::Part {
            job: JobId(6),
            id,
            ranks: vec![0],
            error: None
        }
    );
    assert!(!data.is_empty());
    assert_eq!(end.unwrap().error, None);
    // The marker stays; the next checkpoint removes it before its signal.
    assert!(dir.join("0.done").exists());
    assert!(dir.join("0/n").exists());

    let id2 = CheckpointId { epoch: 1, at_ms: 2 };
    p.send(SchedulerMsg::Checkpoint {
        job: JobId(6),
        epoch: 1,
        id: id2,
        ranks: vec![0, 1],
        signal: Some(10),
        grace_ms: 1_000,
        stop: false,
    })
    .await;
    let (head, _, _) = receive_part(&p.conn).await;
    assert_eq!(
        head,
        CheckpointStream::Part {
            job: JobId(6),
            id: id2,
            ranks: vec![],
            error: Some("rank 1 wrote no marker within 1s".into())
        }
    );
    // The job went on through both.
    p.send(SchedulerMsg::KillJob { job: JobId(6) }).await;
    let mut saved = Vec::new();
    loop {
        match p.next_event().await {
            Event::Output { line, .. } => saved.push(line),
            Event::JobExited { exit, .. } => assert!(!exit.success()),
            Event::JobCleared { .. } => break,
            _ => {}
        }
    }
    assert!(
        saved.contains(&"saved 2".to_string()),
        "the job did not live through the first checkpoint: {saved:?}"
    );
    assert!(!dir.exists(), "the checkpoint directory outlived the job");
    agent.shutdown().await;
}

/// A checkpoint vacate of a run this node was not set up for still vacates, and its part says
/// why there is nothing, before the clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_without_setup_vacates_with_an_error_part() {
    use graze_proto::{CheckpointId, CheckpointStream};
    let sched = FakeScheduler::new();
    let agent = start_agent(&sched, "a1");
    let (mut p, _) = sched.accept_registered().await;
    p.send(start_job(
        7,
        &["sh", "-c", "echo ready; sleep 600"],
        &[("a1", 1)],
    ))
    .await;
    loop {
        if let Event::Output { line, .. } = p.next_event().await {
            assert_eq!(line, "ready");
            break;
        }
    }
    let id = CheckpointId { epoch: 1, at_ms: 3 };
    p.send(SchedulerMsg::Checkpoint {
        job: JobId(7),
        epoch: 1,
        id,
        ranks: vec![0],
        signal: Some(10),
        grace_ms: 1_000,
        stop: true,
    })
    .await;
    let (head, _, _) = receive_part(&p.conn).await;
    assert_eq!(
        head,
        CheckpointStream::Part {
            job: JobId(7),
            id,
            ranks: vec![],
            error: Some("no checkpoint setup for run 1 on a1".into())
        }
    );
    loop {
        if let Event::JobCleared { job } = p.next_event().await {
            assert_eq!(job, JobId(7));
            break;
        }
    }
    assert!(tagged_processes(7).is_empty());
    agent.shutdown().await;
}
