//! Fixed cluster data for the TUI's snapshot tests and its render benchmark.

use graze_proto::{
    Availability, ExitStatus, HostSlots, JobEvent, JobId, JobSpec, JobState, JobView, LogLine,
    NodeInfo, NodeStatus, NodeView, Stream, Unit,
};

/// The "now" of the fixtures, ms since the epoch.
pub const NOW_MS: u64 = 1_700_000_000_000;

#[allow(clippy::too_many_arguments)]
fn node(
    name: &str,
    groups: &[&str],
    online: bool,
    availability: Availability,
    load: f32,
    owner: f32,
    idle_s: u64,
    used: u32,
    jobs: &[u64],
) -> NodeView {
    NodeView {
        info: NodeInfo {
            name: name.into(),
            addr: format!("127.0.0.{}", name.trim_start_matches("ws")),
            cores: 2,
            sockets: 1,
            memory_bytes: 8 << 30,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            mpi: vec![],
            software: "graze-agent 0.1.0".into(),
            held: vec![],
            instance: String::new(),
            isolation: None,
            policy: Default::default(),
        },
        online,
        status: online.then(|| NodeStatus {
            core_load: vec![load, load],
            owner_cpu: owner,
            owner_idle_ms: idle_s * 1000,
            availability,
            idle_sources: vec![format!("file:/tmp/owner-{name}")],
            unavailable_sources: vec![],
            window_ends_ms: None,
        }),
        used_cores: used,
        jobs: jobs.iter().map(|j| JobId(*j)).collect(),
        drained: false,
    }
}

/// Five nodes of 2 cores: two running job 1, one whose owner came back while job 2 runs, one
/// idle that offers in 4 s, one offline.
pub fn nodes() -> Vec<NodeView> {
    vec![
        node(
            "ws2",
            &["lab"],
            true,
            Availability::Offered,
            98.0,
            2.0,
            3600,
            2,
            &[1],
        ),
        node(
            "ws3",
            &["lab"],
            true,
            Availability::Offered,
            97.0,
            1.0,
            5400,
            2,
            &[1],
        ),
        node(
            "ws4",
            &["lab", "gpu"],
            true,
            Availability::OwnerActive,
            100.0,
            35.0,
            2,
            2,
            &[2],
        ),
        node(
            "ws5",
            &[],
            true,
            Availability::Waiting { remaining_ms: 4000 },
            3.0,
            3.0,
            56,
            0,
            &[],
        ),
        node(
            "ws6",
            &["lab"],
            false,
            Availability::Offered,
            0.0,
            0.0,
            0,
            0,
            &[],
        ),
    ]
}

fn job(id: u64, name: &str, n: u32, state: JobState, alloc: &[(&str, u32)]) -> JobView {
    let submitted_ms = NOW_MS - 300_000 + id * 1000;
    let started = !matches!(state, JobState::Queued);
    let ended = state.is_final();
    JobView {
        id: JobId(id),
        spec: JobSpec {
            name: Some(name.into()),
            nprocs: n,
            unit: Unit::Core,
            priority: 0,
            groups: vec![],
            nodes: vec![],
            command: vec!["mpiexec".into(), "graze-pi".into()],
            cwd: Some("/home/ada".into()),
            env: vec![],
            user: "ada".into(),
            ..Default::default()
        },
        state,
        waiting_for: (state == JobState::Queued).then(|| format!("needs {n} cores, 0 offered")),
        submitted_ms,
        started_ms: started.then_some(submitted_ms + 2000),
        ended_ms: ended.then_some(submitted_ms + 62_000),
        allocation: alloc
            .iter()
            .map(|(h, s)| HostSlots {
                host: (*h).into(),
                slots: *s,
            })
            .collect(),
        exit: ended.then_some(ExitStatus {
            code: Some(if state == JobState::Completed { 0 } else { 1 }),
            signal: None,
        }),
        requeues: u32::from(state == JobState::Failed),
        events: vec![JobEvent {
            at_ms: submitted_ms,
            what: "submitted".into(),
            seq: 0,
        }],
        expected_start_ms: None,
        task: None,
        checkpoints: Vec::new(),
    }
}

/// Two running Pi jobs, one waiting for cores, one completed, one failed after a requeue.
pub fn jobs() -> Vec<JobView> {
    vec![
        job(1, "pi-a", 4, JobState::Running, &[("ws2", 2), ("ws3", 2)]),
        job(2, "pi-b", 2, JobState::Running, &[("ws4", 2)]),
        job(3, "pi-c", 6, JobState::Queued, &[]),
        job(4, "hello", 2, JobState::Completed, &[("ws2", 2)]),
        job(5, "solver", 4, JobState::Failed, &[("ws3", 2), ("ws6", 2)]),
    ]
}

/// Output of job 1 so far: rank 0's per-round estimates converging on pi, the other ranks'
/// local estimates.
pub fn pi_logs() -> Vec<LogLine> {
    let pis = [
        3.141200, 3.142900, 3.140800, 3.141950, 3.141410, 3.141700, 3.141530, 3.141620, 3.141575,
        3.141598, 3.141589, 3.141594,
    ];
    let mut out = Vec::new();
    let mut old = 0.0f64;
    for (round, pi) in pis.iter().enumerate() {
        out.push(LogLine {
            rank: Some(0),
            stream: Stream::Stdout,
            line: format!("pi: {pi:.6} - delta: {:.6}", (pi - old).abs()),
        });
        old = *pi;
        for r in 0..4u32 {
            out.push(LogLine {
                rank: Some(r),
                stream: Stream::Stdout,
                line: format!(
                    "rank {r}: round {} local estimate {:.6} (samples {})",
                    round + 1,
                    pi + f64::from(r) * 0.0007 - 0.001,
                    (round + 1) * 400_000
                ),
            });
        }
    }
    out
}

/// A big cluster for the render benchmark: `n_nodes` nodes and `n_jobs` jobs.
pub fn big(n_nodes: usize, n_jobs: usize) -> (Vec<NodeView>, Vec<JobView>) {
    let states = [
        Availability::Offered,
        Availability::OwnerActive,
        Availability::Waiting {
            remaining_ms: 30_000,
        },
        Availability::OutsideWindow,
    ];
    let nodes = (0..n_nodes)
        .map(|i| {
            let mut v = node(
                &format!("node{i:04}"),
                &["lab"],
                i % 50 != 0,
                states[i % states.len()].clone(),
                (i % 100) as f32,
                (i % 7) as f32,
                i as u64 * 10,
                (i % 3) as u32,
                &[(i % n_jobs.max(1)) as u64 + 1],
            );
            v.info.cores = 16;
            v
        })
        .collect();
    let jobs = (0..n_jobs)
        .map(|i| {
            let state = match i % 5 {
                0 | 1 => JobState::Queued,
                2 => JobState::Running,
                3 => JobState::Completed,
                _ => JobState::Failed,
            };
            let alloc = [(format!("node{:04}", i % n_nodes.max(1)), 4u32)];
            let alloc: Vec<(&str, u32)> = alloc.iter().map(|(h, s)| (h.as_str(), *s)).collect();
            job(i as u64 + 1, &format!("job-{i}"), 4, state, &alloc)
        })
        .collect();
    (nodes, jobs)
}

/// Harvest figures of the last week: ws1 gave 2 x 3 h plus 4 x 1 h, ws4's owner suspended a
/// job twice and vacated it once.
pub fn harvest() -> graze_proto::HarvestData {
    use graze_proto::{AttemptView, HarvestData, NodeHarvest};
    let attempt = |job: u64, attempt: u64, host: &str, cores: u32, hours: u64, state: &str| {
        let end = NOW_MS - 3_600_000;
        let run = hours * 3_600_000;
        AttemptView {
            job: JobId(job),
            attempt,
            user: "alice".into(),
            name: "pi".into(),
            state: state.into(),
            requeue_reason: None,
            exit: None,
            nodes: vec![HostSlots {
                host: host.into(),
                slots: cores,
            }],
            cores: vec![cores],
            submitted_ms: end - run,
            started_ms: Some(end - run),
            ended_ms: end,
            running_ms: run,
            suspended_ms: 0,
            core_ms: u64::from(cores) * run,
            requeues: 0,
            requeue_reasons: vec![],
        }
    };
    let hours = |offered: u64, used: u64| vec![(NOW_MS - 7_200_000, offered, used)];
    HarvestData {
        since_ms: NOW_MS - 7 * 86_400_000,
        now_ms: NOW_MS,
        attempts: vec![
            attempt(1, 1, "ws1", 2, 3, "completed"),
            attempt(2, 1, "ws1", 4, 1, "completed"),
            attempt(3, 1, "ws4", 2, 1, "requeued"),
        ],
        nodes: vec![
            NodeHarvest {
                node: "ws1".into(),
                hours: hours(4 * 36_000_000, 10 * 3_600_000),
                ..Default::default()
            },
            NodeHarvest {
                node: "ws4".into(),
                suspensions: 2,
                vacates: 1,
                release_us: vec![41_000, 52_000],
                hours: hours(2 * 3_600_000, 2 * 3_600_000),
            },
            NodeHarvest {
                node: "ws9".into(),
                ..Default::default()
            },
        ],
    }
}

/// A traced Pi run: `ranks` ranks, two per node (`ws2`, `ws3`, ...). Each has its Init, then
/// an Isend from rank 0 to rank 1 (an Irecv and a Wait there), then `rounds` rounds of a
/// `sample` region (longer on higher ranks) and an Allreduce of 8 bytes that ends together on
/// every rank, then its Finalize. Rounds are 10 ms from 4 ms on.
pub fn trace(ranks: i32, rounds: u64) -> graze_trace::Trace {
    use graze_trace::{NodeClock, Op, RankTrack, Trace, What};
    const MS: u64 = 1_000_000;
    let mpi = |op| What::Mpi(Op(op));
    let node = |r: i32| format!("ws{}", 2 + r / 2);
    let mut tracks = Vec::new();
    for r in 0..ranks {
        let ru = r as u64;
        let mut spans = vec![graze_trace::Span::new(
            ru * 50_000,
            3 * MS + ru * 10_000,
            mpi(1),
        )];
        if r == 0 && ranks > 1 {
            spans.push(graze_trace::Span {
                peer: Some(1),
                tag: Some(7),
                bytes: Some(4096),
                ..graze_trace::Span::new(3 * MS + 100_000, 3 * MS + 150_000, mpi(5))
            });
        }
        if r == 1 {
            spans.push(graze_trace::Span {
                peer: Some(0),
                tag: Some(7),
                bytes: Some(4096),
                ..graze_trace::Span::new(3 * MS + 100_000, 3 * MS + 120_000, mpi(6))
            });
            spans.push(graze_trace::Span::new(
                3 * MS + 120_000,
                3 * MS + 600_000,
                mpi(7),
            ));
        }
        for k in 0..rounds {
            let start = 4 * MS + k * 10 * MS;
            let sampled = start + 6 * MS + ru * 800_000 % (3 * MS);
            spans.push(graze_trace::Span::new(
                start,
                sampled,
                What::Region("sample".into()),
            ));
            spans.push(graze_trace::Span {
                comm_size: Some(ranks as u32),
                bytes: Some(8),
                ..graze_trace::Span::new(sampled, start + 9_500_000 + ru * 5_000, mpi(10))
            });
        }
        let fin = 4 * MS + rounds * 10 * MS;
        spans.push(graze_trace::Span::new(fin, fin + MS + ru * 20_000, mpi(2)));
        tracks.push(RankTrack {
            rank: r,
            node: node(r),
            pid: 4000 + r as u32,
            spans,
            dropped: 0,
            truncated: false,
        });
    }
    let nodes = (0..(ranks + 1) / 2)
        .map(|n| NodeClock {
            node: node(2 * n),
            samples: vec![],
            error_ns: 40_000 + n as u64 * 80_000,
        })
        .collect();
    Trace {
        start_ns: 1_000_000_000,
        ranks: tracks,
        nodes,
        warnings: vec![],
    }
}

/// A big trace for the timeline's bound on drawing: `ranks` ranks of `spans` spans each,
/// alternating a `compute` region of 7 µs and an Allreduce of 3 µs.
pub fn big_trace(ranks: i32, spans: u64) -> graze_trace::Trace {
    use graze_trace::{Op, RankTrack, Trace, What};
    let tracks = (0..ranks)
        .map(|r| RankTrack {
            rank: r,
            node: format!("ws{}", 2 + r / 2),
            pid: 4000 + r as u32,
            spans: (0..spans)
                .map(|i| {
                    let t = (i / 2) * 10_000;
                    if i % 2 == 0 {
                        graze_trace::Span::new(t, t + 7_000, What::Region("compute".into()))
                    } else {
                        graze_trace::Span::new(t + 7_000, t + 10_000, What::Mpi(Op(10)))
                    }
                })
                .collect(),
            dropped: 0,
            truncated: false,
        })
        .collect();
    Trace {
        start_ns: 0,
        ranks: tracks,
        nodes: vec![],
        warnings: vec![],
    }
}
