//! Pure formatting of the scheduler's views for people: tables, durations, job details, log
//! lines and the outcome of `graze wait`. No I/O and no clock reads: the time comes as `now_ms`
//! (milliseconds since the Unix epoch).

use graze_proto::{HostSlots, JobSpec, JobState, JobView, LogLine, NodeView, Unit};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A duration for people: `3s`, `14m`, `2h05m`, `3d04h` (the one formatter of every program).
pub use graze_proto::human_duration as duration;

/// A point in time as RFC 3339 UTC, to the second.
pub fn timestamp(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A point in time as the local clock shows it, `HH:MM` (the C library's time zone).
pub fn clock_time(ms: u64) -> String {
    let t = libc::time_t::try_from(ms / 1000).unwrap_or(libc::time_t::MAX);
    // SAFETY: localtime_r writes only into `tm`, a plain C struct we own; it is thread safe.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return timestamp(ms);
        }
        tm
    };
    format!("{:02}:{:02}", tm.tm_hour, tm.tm_min)
}

/// A reserved job's expected start (EASY backfill): `starts by 02:10 (reserved)`.
pub fn reserved_start(ms: u64) -> String {
    format!("starts by {} (reserved)", clock_time(ms))
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The job's name, or its command's first word when it has none.
pub fn job_name(spec: &JobSpec) -> &str {
    match &spec.name {
        Some(n) if !n.is_empty() => n,
        _ => spec.command.first().map(String::as_str).unwrap_or("-"),
    }
}

/// What the job asks for: `8 cores`, `1 node`, `2 sockets`.
pub fn request(spec: &JobSpec) -> String {
    let unit = match spec.unit {
        Unit::Core => "core",
        Unit::Socket => "socket",
        Unit::Node => "node",
    };
    let plural = if spec.nprocs == 1 { "" } else { "s" };
    format!("{} {unit}{plural}", spec.nprocs)
}

/// An allocation as `a1:4,a2:4`, or `-` when empty.
pub fn hosts(alloc: &[HostSlots]) -> String {
    if alloc.is_empty() {
        return "-".into();
    }
    alloc
        .iter()
        .map(|h| format!("{}:{}", h.host, h.slots))
        .collect::<Vec<_>>()
        .join(",")
}

/// Words joined for a shell: words with spaces or special characters are single-quoted.
pub fn shell_words(words: &[String]) -> String {
    fn plain(c: char) -> bool {
        c.is_ascii_alphanumeric() || "_-./:=,+@%^".contains(c)
    }
    words
        .iter()
        .map(|w| {
            if !w.is_empty() && w.chars().all(plain) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// How long the job has waited (queued), has run (running) or ran (final).
pub fn elapsed(job: &JobView, now_ms: u64) -> String {
    let start = job.started_ms.unwrap_or(job.submitted_ms);
    match job.state {
        JobState::Queued => duration(now_ms.saturating_sub(job.submitted_ms)),
        JobState::Running | JobState::Suspended | JobState::Cancelling => {
            duration(now_ms.saturating_sub(start))
        }
        JobState::Completed
        | JobState::Failed
        | JobState::Cancelled
        | JobState::Timeout
        | JobState::DependencyFailed => match job.ended_ms {
            Some(end) => duration(end.saturating_sub(start)),
            None => "-".into(),
        },
    }
}

/// The last column of the queue: why a queued job waits, where a job runs or ran.
pub fn where_or_why(job: &JobView) -> String {
    match job.state {
        JobState::Queued => {
            let why = crate::when::waiting_for(job).unwrap_or_else(|| "-".into());
            match job.expected_start_ms {
                Some(t) => format!("{}; {why}", reserved_start(t)),
                None => why,
            }
        }
        JobState::Running | JobState::Suspended | JobState::Cancelling => hosts(&job.allocation),
        JobState::Completed
        | JobState::Failed
        | JobState::Cancelled
        | JobState::Timeout
        | JobState::DependencyFailed => match (&job.exit, job.allocation.is_empty()) {
            (Some(e), false) => format!("{} ({e})", hosts(&job.allocation)),
            (Some(e), true) => format!("({e})"),
            (None, _) => hosts(&job.allocation),
        },
    }
}

/// Lay rows out in columns two spaces apart; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The table of `graze queue`, arrays folded into one line each (see
/// [`crate::batch::queue_table`]).
pub fn queue_table(jobs: &[JobView], now_ms: u64) -> String {
    crate::batch::queue_table(jobs, false, now_ms)
}

/// A node's state: its availability, `offline`, or `no status` before its first report.
pub fn node_state(node: &NodeView) -> String {
    let state = match (&node.status, node.online) {
        (_, false) => "offline".into(),
        (Some(s), true) if !s.availability.runs_jobs() && node.used_cores > 0 => format!(
            "{}, {} core{} reclaimed",
            s.availability,
            node.used_cores,
            if node.used_cores == 1 { "" } else { "s" }
        ),
        (Some(s), true) => s.availability.to_string(),
        (None, true) => "no status".into(),
    };
    if node.drained {
        format!("drained ({state})")
    } else {
        state
    }
}

/// Mean load of the node's logical CPUs, `37%`, or `-`.
pub fn node_load(node: &NodeView) -> String {
    match &node.status {
        Some(s) if node.online && !s.core_load.is_empty() => {
            let mean = s.core_load.iter().sum::<f32>() / s.core_load.len() as f32;
            format!("{mean:.0}%")
        }
        _ => "-".into(),
    }
}

fn list_or_dash<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The table of `graze nodes`.
pub fn nodes_table(nodes: &[NodeView]) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let idle = match &n.status {
                Some(s) if n.online => duration(s.owner_idle_ms),
                _ => "-".into(),
            };
            let mpi: Vec<&str> = n.info.mpi.iter().map(|m| m.kind.as_str()).collect();
            vec![
                n.info.name.clone(),
                node_state(n),
                format!("{}/{}", n.used_cores, n.info.cores),
                node_load(n),
                idle,
                list_or_dash(&n.info.groups),
                list_or_dash(&n.jobs),
                list_or_dash(&mpi),
                match &n.status {
                    Some(s) if n.online => list_or_dash(&s.idle_sources),
                    _ => "-".into(),
                },
            ]
        })
        .collect();
    let mut out = table(
        &[
            "NAME", "STATE", "CORES", "LOAD", "IDLE", "GROUPS", "JOBS", "MPI", "SOURCES",
        ],
        &rows,
    );
    // Nodes whose jobs all run as one user say so under the table.
    for n in nodes {
        if let Some(why) = n.info.isolation.as_deref().filter(|_| n.online) {
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format!("{}: {why}\n", n.info.name));
        }
    }
    out
}

/// Everything about one job, for `graze show`.
pub fn job_details(job: &JobView, now_ms: u64) -> String {
    let spec = &job.spec;
    let mut rows: Vec<(&str, String)> = vec![
        ("name", job_name(spec).to_string()),
        ("user", spec.user.clone()),
        ("command", shell_words(&spec.command)),
        ("cwd", spec.cwd.clone().unwrap_or_else(|| "-".into())),
        ("state", job.state.to_string()),
    ];
    if let Some(e) = &job.exit {
        rows.push(("exit", e.to_string()));
    }
    if let Some(w) = crate::when::waiting_for(job) {
        rows.push(("waiting for", w));
    }
    crate::when::limit_rows(job, &mut rows);
    crate::checkpoint::checkpoint_rows(job, &mut rows);
    if spec.trace {
        rows.push((
            "trace",
            format!(
                "MPI calls traced; write the timeline with 'graze trace {}'",
                job.id
            ),
        ));
    }
    if let Some(t) = job.expected_start_ms {
        rows.push(("expected start", reserved_start(t)));
    }
    rows.push((
        "asks for",
        format!("{}, priority {}", request(spec), spec.priority),
    ));
    if !spec.groups.is_empty() {
        rows.push(("groups", spec.groups.join(",")));
    }
    if !spec.nodes.is_empty() {
        rows.push(("only nodes", spec.nodes.join(",")));
    }
    for (k, v) in &spec.env {
        rows.push(("env", shell_words(&[format!("{k}={v}")])));
    }
    rows.push(("allocation", hosts(&job.allocation).replace(',', " ")));
    rows.push((
        "submitted",
        format!(
            "{} ({} ago)",
            timestamp(job.submitted_ms),
            duration(now_ms.saturating_sub(job.submitted_ms))
        ),
    ));
    if let Some(st) = job.started_ms {
        rows.push((
            "started",
            format!(
                "{} ({} after submission)",
                timestamp(st),
                duration(st.saturating_sub(job.submitted_ms))
            ),
        ));
    }
    match (job.ended_ms, job.started_ms) {
        (Some(end), Some(st)) => rows.push((
            "ended",
            format!(
                "{} (ran {})",
                timestamp(end),
                duration(end.saturating_sub(st))
            ),
        )),
        (Some(end), None) => rows.push(("ended", timestamp(end))),
        (None, Some(st)) if !job.state.is_final() => {
            rows.push(("running for", duration(now_ms.saturating_sub(st))))
        }
        _ => {}
    }
    rows.push(("requeues", job.requeues.to_string()));

    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = format!("job {}\n", job.id);
    for (k, v) in rows {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "  {:width$} {v}", format!("{k}:"));
    }
    out.push_str(&crate::checkpoint::checkpoint_table(&job.checkpoints));
    if !job.events.is_empty() {
        out.push_str("  events:\n");
        for e in &job.events {
            let _ = writeln!(out, "    {}  {}", timestamp(e.at_ms), e.what);
        }
    }
    out
}

/// One output line: `[R] text`, `[-] text` when the rank is unknown, or the bare text.
pub fn log_line(line: &LogLine, bare: bool) -> String {
    match (bare, line.rank) {
        (true, _) => line.line.clone(),
        (false, Some(r)) => format!("[{r}] {}", line.line),
        (false, None) => format!("[-] {}", line.line),
    }
}

/// The one-line summary `graze wait` prints: `job 42 completed: exit 0`.
pub fn wait_summary(job: &JobView) -> String {
    match &job.exit {
        Some(e) => format!("job {} {}: {e}", job.id, job.state),
        None => format!("job {} {}", job.id, job.state),
    }
}

/// The exit code of `graze wait` for a final job: 130 when cancelled, the job's shell code when
/// it has an exit status, 1 for a failure without one. A failed job never yields 0.
pub fn wait_exit_code(job: &JobView) -> u8 {
    let code = match (job.state, &job.exit) {
        (JobState::Cancelled, _) => 130,
        (JobState::Failed | JobState::Timeout, Some(e)) if e.shell_code() == 0 => 1,
        (_, Some(e)) => e.shell_code(),
        (JobState::Completed, None) => 0,
        (_, None) => 1,
    };
    u8::try_from(code).unwrap_or(1)
}

/// What `graze logs` says when the scheduler names the attempt whose lines follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptNote {
    /// A header on stdout, between attempts (`--attempt all`).
    Header(String),
    /// A note for stderr.
    Note(String),
}

/// The note for attempt `attempt` of `job` (`attempts`: every attempt with output) when the
/// user asked for `asked`; `later`: not the first attempt named on this stream (a follower saw
/// a new attempt start). `None`: nothing to say.
pub fn attempt_note(
    job: impl std::fmt::Display,
    attempt: u64,
    attempts: &[u64],
    asked: graze_proto::LogAttempt,
    later: bool,
) -> Option<AttemptNote> {
    use graze_proto::LogAttempt;
    match asked {
        LogAttempt::All => Some(AttemptNote::Header(format!("==> attempt {attempt} <=="))),
        LogAttempt::Number(_) => None,
        LogAttempt::Latest if later => Some(AttemptNote::Note(format!(
            "graze: job {job}: attempt {attempt} started (the job was requeued)"
        ))),
        LogAttempt::Latest => {
            let earlier: Vec<String> = attempts
                .iter()
                .filter(|a| **a != attempt)
                .map(u64::to_string)
                .collect();
            if earlier.is_empty() {
                return None;
            }
            Some(AttemptNote::Note(format!(
                "graze: job {job}: showing attempt {attempt}; earlier attempt{} {} \
                 (graze logs {job} --attempt N, or --attempt all)",
                if earlier.len() == 1 { "" } else { "s" },
                earlier.join(", ")
            )))
        }
    }
}

/// What `graze cancel` prints, given the job as the scheduler answered.
pub fn cancel_message(job: &JobView) -> String {
    match job.state {
        JobState::Cancelled => format!("cancelled job {}", job.id),
        JobState::Cancelling => {
            format!("cancelled job {} (its processes are being killed)", job.id)
        }
        JobState::Completed | JobState::Failed | JobState::Timeout | JobState::DependencyFailed => {
            format!("job {} had already ended: {}", job.id, job.state)
        }
        JobState::Queued | JobState::Running | JobState::Suspended => {
            format!(
                "job {} is still {}; cancel not yet in effect",
                job.id, job.state
            )
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn attempt_notes() {
        use graze_proto::{JobId, LogAttempt};
        let j = JobId(7);
        assert_eq!(attempt_note(j, 1, &[1], LogAttempt::Latest, false), None);
        assert_eq!(
            attempt_note(j, 3, &[1, 2, 3], LogAttempt::Latest, false),
            Some(AttemptNote::Note(
                "graze: job 7: showing attempt 3; earlier attempts 1, 2 (graze logs 7 \
                 --attempt N, or --attempt all)"
                    .into()
            ))
        );
        assert_eq!(
            attempt_note(j, 2, &[1], LogAttempt::Latest, false),
            Some(AttemptNote::Note(
                "graze: job 7: showing attempt 2; earlier attempt 1 (graze logs 7 --attempt N, \
                 or --attempt all)"
                    .into()
            ))
        );
        assert_eq!(
            attempt_note(j, 2, &[1, 2], LogAttempt::Latest, true),
            Some(AttemptNote::Note(
                "graze: job 7: attempt 2 started (the job was requeued)".into()
            ))
        );
        assert_eq!(
            attempt_note(j, 2, &[1, 2], LogAttempt::All, false),
            Some(AttemptNote::Header("==> attempt 2 <==".into()))
        );
        assert_eq!(
            attempt_note(j, 1, &[1, 2], LogAttempt::Number(1), false),
            None
        );
    }
    use graze_proto::{
        Availability, ExitStatus, JobEvent, JobId, MpiFlavour, NodeInfo, NodeStatus, Stream,
    };

    /// 2024-05-01T12:00:00Z.
    const NOW: u64 = 1_714_564_800_000;

    fn spec(name: Option<&str>, nprocs: u32, unit: Unit) -> JobSpec {
        JobSpec {
            name: name.map(String::from),
            nprocs,
            unit,
            priority: 0,
            groups: vec![],
            nodes: vec![],
            command: vec![
                "mpiexec".into(),
                "graze-pi".into(),
                "--digits".into(),
                "8".into(),
            ],
            cwd: Some("/home/alice/pi".into()),
            env: vec![],
            user: "alice".into(),
            ..Default::default()
        }
    }

    fn job(id: u64, state: JobState) -> JobView {
        JobView {
            id: JobId(id),
            spec: spec(None, 8, Unit::Core),
            state,
            waiting_for: None,
            submitted_ms: NOW - 3_725_000,
            started_ms: None,
            ended_ms: None,
            allocation: vec![],
            exit: None,
            requeues: 0,
            events: vec![],
            expected_start_ms: None,
            task: None,
            checkpoints: Vec::new(),
        }
    }

    fn alloc() -> Vec<HostSlots> {
        vec![
            HostSlots {
                host: "a1".into(),
                slots: 4,
            },
            HostSlots {
                host: "a2".into(),
                slots: 4,
            },
        ]
    }

    fn jobs() -> Vec<JobView> {
        let mut queued = job(12, JobState::Queued);
        queued.spec = spec(Some("big-run"), 16, Unit::Core);
        queued.spec.user = "bob".into();
        queued.waiting_for = Some("needs 16 cores, 6 offered".into());
        queued.submitted_ms = NOW - 14 * 60_000 - 5_000;

        let mut running = job(11, JobState::Running);
        running.submitted_ms = NOW - 4 * 3_600_000;
        running.started_ms = Some(NOW - 2 * 3_600_000 - 5 * 60_000);
        running.allocation = alloc();
        running.requeues = 1;

        let mut done = job(9, JobState::Completed);
        done.spec = spec(Some("sweep"), 2, Unit::Node);
        done.started_ms = Some(NOW - 600_000);
        done.ended_ms = Some(NOW - 597_000);
        done.allocation = alloc();
        done.exit = Some(ExitStatus {
            code: Some(0),
            signal: None,
        });

        let mut cancelled = job(8, JobState::Cancelled);
        cancelled.spec = spec(None, 1, Unit::Socket);
        cancelled.ended_ms = Some(NOW - 1000);
        vec![queued, running, done, cancelled]
    }

    fn node(name: &str) -> NodeView {
        NodeView {
            info: NodeInfo {
                name: name.into(),
                addr: "10.0.0.1".into(),
                cores: 8,
                sockets: 1,
                memory_bytes: 16 << 30,
                groups: vec!["lab".into()],
                mpi: vec![MpiFlavour {
                    kind: "mpich".into(),
                    launcher: "/usr/bin/mpiexec".into(),
                    version: "4.1".into(),
                }],
                software: "graze-agent 0.1.0".into(),
                policy: Default::default(),
                held: vec![],
                instance: String::new(),
                isolation: None,
            },
            online: true,
            status: Some(NodeStatus {
                core_load: vec![10.0, 20.0, 30.0, 40.0],
                owner_cpu: 1.0,
                owner_idle_ms: 2 * 3_600_000 + 5 * 60_000,
                availability: Availability::Offered,
                idle_sources: vec!["x11".into()],
                unavailable_sources: vec![],
                window_ends_ms: None,
            }),
            used_cores: 4,
            jobs: vec![JobId(11)],
            drained: false,
        }
    }

    fn nodes() -> Vec<NodeView> {
        let a1 = node("a1");
        let mut a2 = node("a2");
        a2.used_cores = 0;
        a2.jobs = vec![];
        a2.info.groups = vec!["lab".into(), "fast".into()];
        a2.info.mpi.push(MpiFlavour {
            kind: "openmpi".into(),
            launcher: "/usr/bin/mpirun".into(),
            version: "4.1.6".into(),
        });
        if let Some(s) = a2.status.as_mut() {
            s.owner_idle_ms = 3_000;
            s.availability = Availability::Waiting {
                remaining_ms: 117_000,
            };
        }
        let mut b1 = node("b1-longer-name");
        b1.online = false;
        b1.used_cores = 0;
        b1.jobs = vec![];
        b1.info.groups = vec![];
        b1.info.mpi = vec![];
        let mut b2 = node("b2");
        b2.status = None;
        b2.used_cores = 0;
        b2.jobs = vec![];
        let mut b3 = node("b3");
        b3.used_cores = 0;
        b3.jobs = vec![];
        if let Some(s) = b3.status.as_mut() {
            s.owner_idle_ms = 14 * 60_000 + 59_000;
            s.availability = Availability::OwnerCpuBusy { percent: 85 };
        }
        vec![a1, a2, b1, b2, b3]
    }

    #[test]
    fn reserved_job_shows_its_start() {
        let mut j = job(7, JobState::Queued);
        j.waiting_for = Some("needs 8 cores, 2 offered".into());
        j.expected_start_ms = Some(NOW + 600_000);
        let w = where_or_why(&j);
        assert!(
            w.starts_with("starts by ") && w.ends_with(" (reserved); needs 8 cores, 2 offered"),
            "{w}"
        );
        let hhmm = &w["starts by ".len()..w.len() - " (reserved); needs 8 cores, 2 offered".len()];
        assert!(hhmm.len() == 5 && hhmm.as_bytes()[2] == b':', "{hhmm}");
        assert!(job_details(&j, NOW).contains("expected start"));
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(NOW), "2024-05-01T12:00:00Z");
        assert_eq!(timestamp(NOW + 999), "2024-05-01T12:00:00Z");
    }

    #[test]
    fn shell_quoting() {
        let w = |v: &[&str]| shell_words(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            w(&["mpiexec", "-n", "4", "./a.out"]),
            "mpiexec -n 4 ./a.out"
        );
        assert_eq!(
            w(&["sh", "-c", "echo hi; it's"]),
            r"sh -c 'echo hi; it'\''s'"
        );
        assert_eq!(w(&["x", ""]), "x ''");
    }

    #[test]
    fn names_and_requests() {
        let mut s = spec(None, 1, Unit::Node);
        assert_eq!(job_name(&s), "mpiexec");
        assert_eq!(request(&s), "1 node");
        s.name = Some("pi".into());
        s.nprocs = 3;
        s.unit = Unit::Socket;
        assert_eq!(job_name(&s), "pi");
        assert_eq!(request(&s), "3 sockets");
        s.command.clear();
        s.name = None;
        assert_eq!(job_name(&s), "-");
    }

    #[test]
    fn elapsed_per_state() {
        let mut j = job(1, JobState::Queued);
        j.submitted_ms = NOW - 5_000;
        assert_eq!(elapsed(&j, NOW), "5s");
        assert_eq!(
            elapsed(&j, NOW - 60_000),
            "0s",
            "clock skew never underflows"
        );
        j.state = JobState::Running;
        j.started_ms = Some(NOW - 2_000);
        assert_eq!(elapsed(&j, NOW), "2s");
        j.state = JobState::Failed;
        assert_eq!(elapsed(&j, NOW), "-");
        j.ended_ms = Some(NOW + 120_000);
        assert_eq!(elapsed(&j, NOW), "2m");
    }

    #[test]
    fn queue_snapshot() {
        insta::assert_snapshot!(queue_table(&jobs(), NOW));
    }

    #[test]
    fn empty_queue_is_the_header() {
        assert_eq!(
            queue_table(&[], NOW),
            "ID  NAME  USER  CORES  STATE  WAIT/RUN-TIME  REQUEUES  NODES/WHY\n"
        );
    }

    #[test]
    fn nodes_snapshot() {
        insta::assert_snapshot!(nodes_table(&nodes()));
    }

    #[test]
    fn nodes_without_isolation_say_so_under_the_table() {
        let mut n = nodes();
        n[0].info.isolation = Some("every job runs as 'graze': not isolated".into());
        let t = nodes_table(&n);
        let name = &n[0].info.name;
        assert!(
            t.ends_with(&format!(
                "\n{name}: every job runs as 'graze': not isolated\n"
            )),
            "{t}"
        );
        assert!(!nodes_table(&nodes()).contains("isolated"));
    }

    #[test]
    fn node_columns() {
        let n = nodes();
        assert_eq!(node_state(&n[0]), "offered");
        assert_eq!(node_state(&n[1]), "idle, offers in 117s");
        assert_eq!(node_state(&n[2]), "offline");
        assert_eq!(node_state(&n[3]), "no status");
        let mut inhibited = n[0].clone();
        if let Some(st) = inhibited.status.as_mut() {
            st.availability = Availability::OwnerPresent {
                reason: "inhibitor 'mpv: playing video'".into(),
            };
        }
        assert_eq!(
            node_state(&inhibited),
            "owner present: inhibitor 'mpv: playing video', 4 cores reclaimed"
        );
        inhibited.used_cores = 0;
        assert_eq!(
            node_state(&inhibited),
            "owner present: inhibitor 'mpv: playing video'"
        );
        assert_eq!(node_load(&n[0]), "25%");
        assert_eq!(node_load(&n[2]), "-");
    }

    #[test]
    fn show_running_snapshot() {
        let mut j = jobs().remove(1);
        j.spec.groups = vec!["lab".into()];
        j.spec.nodes = vec!["a1".into(), "a2".into()];
        j.spec.env = vec![("OMP_NUM_THREADS".into(), "1".into())];
        j.spec.priority = 5;
        j.events = vec![
            JobEvent {
                at_ms: j.submitted_ms,
                what: "submitted".into(),
                seq: 0,
            },
            JobEvent {
                at_ms: NOW - 3 * 3_600_000,
                what: "started on a1:4,a3:4".into(),
                seq: 0,
            },
            JobEvent {
                at_ms: NOW - 2 * 3_600_000 - 6 * 60_000,
                what: "requeued: a3 owner came back".into(),
                seq: 0,
            },
            JobEvent {
                at_ms: NOW - 2 * 3_600_000 - 5 * 60_000,
                what: "started on a1:4,a2:4".into(),
                seq: 0,
            },
        ];
        insta::assert_snapshot!(job_details(&j, NOW));
    }

    #[test]
    fn show_queued_and_failed_snapshot() {
        let queued = jobs().remove(0);
        let mut failed = job(5, JobState::Failed);
        failed.started_ms = Some(NOW - 70_000);
        failed.ended_ms = Some(NOW - 10_000);
        failed.allocation = alloc();
        failed.exit = Some(ExitStatus {
            code: None,
            signal: Some(9),
        });
        insta::assert_snapshot!(format!(
            "{}\n{}",
            job_details(&queued, NOW),
            job_details(&failed, NOW)
        ));
    }

    #[test]
    fn log_lines() {
        let mut l = LogLine {
            rank: Some(3),
            stream: Stream::Stdout,
            line: "pi = 3.14159".into(),
        };
        assert_eq!(log_line(&l, false), "[3] pi = 3.14159");
        assert_eq!(log_line(&l, true), "pi = 3.14159");
        l.rank = None;
        assert_eq!(log_line(&l, false), "[-] pi = 3.14159");
    }

    fn ended(state: JobState, code: Option<i32>, signal: Option<i32>) -> JobView {
        let mut j = job(42, state);
        j.exit = (code.is_some() || signal.is_some()).then_some(ExitStatus { code, signal });
        j
    }

    #[test]
    fn wait_outcomes() {
        let cases = [
            (
                ended(JobState::Completed, Some(0), None),
                0,
                "job 42 completed: exit 0",
            ),
            (
                ended(JobState::Completed, None, None),
                0,
                "job 42 completed",
            ),
            (
                ended(JobState::Failed, Some(3), None),
                3,
                "job 42 failed: exit 3",
            ),
            (
                ended(JobState::Failed, None, Some(9)),
                137,
                "job 42 failed: signal 9",
            ),
            (ended(JobState::Failed, None, None), 1, "job 42 failed"),
            (
                ended(JobState::Failed, Some(0), None),
                1,
                "job 42 failed: exit 0",
            ),
            (
                ended(JobState::Failed, Some(300), None),
                1,
                "job 42 failed: exit 300",
            ),
            (
                ended(JobState::Cancelled, None, None),
                130,
                "job 42 cancelled",
            ),
            (
                ended(JobState::Cancelled, None, Some(15)),
                130,
                "job 42 cancelled: signal 15",
            ),
        ];
        for (j, code, summary) in cases {
            assert_eq!(wait_exit_code(&j), code, "{summary}");
            assert_eq!(wait_summary(&j), summary);
        }
    }

    #[test]
    fn cancel_messages() {
        assert_eq!(
            cancel_message(&job(42, JobState::Cancelled)),
            "cancelled job 42"
        );
        assert_eq!(
            cancel_message(&job(42, JobState::Cancelling)),
            "cancelled job 42 (its processes are being killed)"
        );
        assert_eq!(
            cancel_message(&job(42, JobState::Completed)),
            "job 42 had already ended: completed"
        );
    }
}
