//! Arrays and dependencies on the command line: the words (`--array 1-100%10`,
//! `--after ok:7,any:8`, job references `7` and `7.3`) and the text for whole arrays (the
//! folded queue line, `graze show 7`, `graze wait 7`, `graze cancel 7`).

use crate::format::{elapsed, job_name, request, table, timestamp, where_or_why};
use graze_proto::{
    index_words, ArraySpec, ArrayView, DepKind, Dependency, JobId, JobRef, JobState, JobView,
    MAX_ARRAY_TASKS,
};
use std::collections::BTreeMap;

fn index(s: &str, what: &str) -> Result<u32, String> {
    s.trim()
        .parse::<u32>()
        .map_err(|_| format!("'{s}' is not a whole number {what}"))
}

/// Parse `--array`: indices `1-100`, `1,5,9`, `1-3,7`, `1-9:2` (every second), then an
/// optional `%N` throttle (never more than N tasks running at once). At most
/// [`MAX_ARRAY_TASKS`] tasks; the indices are sorted and repeats dropped.
pub fn parse_array(s: &str) -> Result<ArraySpec, String> {
    let (list, throttle) = match s.split_once('%') {
        Some((l, t)) => {
            let t: u32 = t
                .trim()
                .parse()
                .map_err(|_| format!("the throttle '%{t}' must be a whole number of at least 1"))?;
            if t == 0 {
                return Err("the throttle '%0' must be at least 1".into());
            }
            (l, Some(t))
        }
        None => (s, None),
    };
    if list.trim().is_empty() {
        return Err("no indices: give e.g. 1-100, 1,5,9 or 1-9:2".into());
    }
    let mut indices = Vec::new();
    let mut total: u64 = 0;
    for item in list.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err("an empty index (check for a doubled or trailing comma)".into());
        }
        let (range, step) = match item.split_once(':') {
            Some((r, st)) => {
                let st = index(st, "step")?;
                if st == 0 {
                    return Err(format!("the step in '{item}' must be at least 1"));
                }
                (r, st)
            }
            None => (item, 1),
        };
        let (lo, hi) = match range.split_once('-') {
            Some((a, b)) => {
                if b.trim().is_empty() {
                    return Err(format!("the range '{item}' has no end"));
                }
                (index(a, "index")?, index(b, "index")?)
            }
            None if step != 1 => return Err(format!("a step needs a range: '{item}'")),
            None => {
                let i = index(range, "index")?;
                (i, i)
            }
        };
        if lo > hi {
            return Err(format!("the range '{item}' ends before it starts"));
        }
        // Counted before any index is made: `1-4000000000` must not allocate.
        total += u64::from((hi - lo) / step) + 1;
        if total > u64::from(MAX_ARRAY_TASKS) {
            return Err(format!(
                "too many tasks: at most {MAX_ARRAY_TASKS} in one array"
            ));
        }
        indices.extend((lo..=hi).step_by(step as usize));
    }
    indices.sort_unstable();
    indices.dedup();
    Ok(ArraySpec { indices, throttle })
}

/// Parse one `--after` item: `ok:7`, `notok:7`, `any:7`, or a bare `7` (meaning `ok:7`).
pub fn parse_dependency(s: &str) -> Result<Dependency, String> {
    let (kind, id) = match s.split_once(':') {
        Some((k, id)) => {
            let kind = match k.trim() {
                "ok" => DepKind::Ok,
                "notok" => DepKind::NotOk,
                "any" => DepKind::Any,
                other => {
                    return Err(format!(
                        "unknown kind '{other}': use ok:ID, notok:ID or any:ID"
                    ))
                }
            };
            (kind, id)
        }
        None => (DepKind::Ok, s),
    };
    let r = parse_job_ref(id)?;
    if r.task.is_some() {
        return Err(format!(
            "'{r}' names one task: a dependency names a job or a whole array ({})",
            r.job
        ));
    }
    Ok(Dependency { kind, job: r.job })
}

/// Parse a job reference: `7` (a job, or a whole array) or `7.3` (task 3 of array 7).
pub fn parse_job_ref(s: &str) -> Result<JobRef, String> {
    let bad = || {
        "must be a job id (a positive integer) or ARRAY.INDEX for one task, as `graze queue` shows"
            .to_string()
    };
    let (job, task) = match s.trim().split_once('.') {
        Some((j, t)) => (j, Some(t.parse::<u32>().map_err(|_| bad())?)),
        None => (s.trim(), None),
    };
    match job.parse::<u64>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(n) => Ok(JobRef {
            job: JobId(n),
            task,
        }),
    }
}

/// States in the order an array's counts list them.
const ORDER: [JobState; 9] = [
    JobState::Running,
    JobState::Suspended,
    JobState::Cancelling,
    JobState::Queued,
    JobState::Completed,
    JobState::Failed,
    JobState::Timeout,
    JobState::Cancelled,
    JobState::DependencyFailed,
];

/// `4 running, 90 queued, 6 completed`.
pub fn state_counts(tasks: &[&JobView]) -> String {
    ORDER
        .iter()
        .filter_map(|s| {
            let n = tasks.iter().filter(|t| t.state == *s).count();
            (n > 0).then(|| format!("{n} {s}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `sweep[1-100%10]`: the array's name with its indices and throttle.
pub fn array_name(tasks: &[&JobView]) -> String {
    let Some(first) = tasks.first() else {
        return String::new();
    };
    let idx: Vec<u32> = tasks
        .iter()
        .filter_map(|t| t.task.map(|t| t.index))
        .collect();
    let throttle = first
        .task
        .and_then(|t| t.throttle)
        .map(|t| format!("%{t}"))
        .unwrap_or_default();
    format!("{}[{}{throttle}]", job_name(&first.spec), index_words(&idx))
}

/// The id as the CLI names it: `7.3` for a task, `7` otherwise.
pub fn job_label(j: &JobView) -> String {
    match j.task {
        Some(t) => t.job_ref().to_string(),
        None => j.id.to_string(),
    }
}

const QUEUE_HEADERS: [&str; 8] = [
    "ID",
    "NAME",
    "USER",
    "CORES",
    "STATE",
    "WAIT/RUN-TIME",
    "REQUEUES",
    "NODES/WHY",
];

/// `graze queue`: one line per job, and one per array with its tasks counted by state; with
/// `expand`, one line per task (`7.3`).
pub fn queue_table(jobs: &[JobView], expand: bool, now_ms: u64) -> String {
    let mut arrays: BTreeMap<JobId, Vec<&JobView>> = BTreeMap::new();
    for j in jobs {
        if let Some(t) = j.task {
            arrays.entry(t.array).or_default().push(j);
        }
    }
    let mut rows = Vec::new();
    for j in jobs {
        match j.task {
            Some(t) if !expand => {
                let Some(tasks) = arrays.remove(&t.array) else {
                    continue;
                };
                let why = tasks
                    .iter()
                    .find(|t| t.state == JobState::Queued)
                    .or_else(|| tasks.iter().find(|t| !t.state.is_final()))
                    .map(|t| where_or_why(t))
                    .unwrap_or_else(|| "-".into());
                rows.push(vec![
                    t.array.to_string(),
                    array_name(&tasks),
                    j.spec.user.clone(),
                    request(&j.spec),
                    state_counts(&tasks),
                    "-".into(),
                    tasks.iter().map(|t| t.requeues).sum::<u32>().to_string(),
                    why,
                ]);
            }
            _ => rows.push(vec![
                job_label(j),
                job_name(&j.spec).to_string(),
                j.spec.user.clone(),
                request(&j.spec),
                j.state.to_string(),
                elapsed(j, now_ms),
                j.requeues.to_string(),
                where_or_why(j),
            ]),
        }
    }
    table(&QUEUE_HEADERS, &rows)
}

/// `graze show 7` for an array: its summary, then one line per task.
pub fn array_details(a: &ArrayView, now_ms: u64) -> String {
    let tasks: Vec<&JobView> = a.tasks.iter().collect();
    let mut out = String::new();
    if let Some(first) = tasks.first() {
        let rows: Vec<(&str, String)> = vec![
            ("array", a.id.to_string()),
            ("name", array_name(&tasks)),
            ("user", first.spec.user.clone()),
            ("command", crate::format::shell_words(&first.spec.command)),
            (
                "tasks",
                format!("{} ({})", tasks.len(), state_counts(&tasks)),
            ),
            ("each asks for", request(&first.spec)),
            ("submitted", timestamp(first.submitted_ms)),
        ];
        for (k, v) in rows {
            out.push_str(&format!("{k:<14} {v}\n"));
        }
        out.push('\n');
    }
    out.push_str(&queue_table(&a.tasks, true, now_ms));
    out
}

/// The first task (by index) that did not complete, if any.
fn first_not_ok(a: &ArrayView) -> Option<&JobView> {
    a.tasks.iter().find(|t| t.state != JobState::Completed)
}

/// What `graze wait 7` prints for an array.
pub fn array_wait_summary(a: &ArrayView) -> String {
    let tasks: Vec<&JobView> = a.tasks.iter().collect();
    let mut s = format!("array {}: {}", a.id, state_counts(&tasks));
    if let Some(t) = first_not_ok(a) {
        s.push_str(&format!(
            " (first not completed: {})",
            crate::format::wait_summary(t).replacen(&format!("job {}", t.id), &job_label(t), 1)
        ));
    }
    s
}

/// The exit code of `graze wait 7`: 0 when every task completed, else that of the first task
/// (by index) that did not.
pub fn array_exit_code(a: &ArrayView) -> u8 {
    first_not_ok(a).map_or(0, crate::format::wait_exit_code)
}

/// What `graze cancel 7` prints for an array.
pub fn array_cancel_message(a: &ArrayView) -> String {
    let tasks: Vec<&JobView> = a.tasks.iter().collect();
    format!("cancelled array {}: {}", a.id, state_counts(&tasks))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn array_words() {
        let a = parse_array("1-5%2").unwrap();
        assert_eq!(a.indices, [1, 2, 3, 4, 5]);
        assert_eq!(a.throttle, Some(2));
        assert_eq!(parse_array("1,5,9").unwrap().indices, [1, 5, 9]);
        assert_eq!(parse_array("1-3,7").unwrap().indices, [1, 2, 3, 7]);
        assert_eq!(parse_array("1-9:2").unwrap().indices, [1, 3, 5, 7, 9]);
        assert_eq!(parse_array("7,1-3,2").unwrap().indices, [1, 2, 3, 7]);
        assert_eq!(parse_array("0").unwrap().indices, [0]);
        assert_eq!(parse_array("1-10000").unwrap().indices.len(), 10_000);
    }

    #[test]
    fn bad_array_words_say_why() {
        for (bad, want) in [
            ("5-1", "the range '5-1' ends before it starts"),
            ("0-", "the range '0-' has no end"),
            ("1-5%0", "the throttle '%0' must be at least 1"),
            ("1-5%x", "the throttle '%x'"),
            ("1-4000000000", "too many tasks: at most 10000"),
            ("1-10001", "too many tasks"),
            ("", "no indices"),
            ("%3", "no indices"),
            ("1,,2", "an empty index"),
            ("a-3", "'a' is not a whole number index"),
            ("-3", "'' is not a whole number index"),
            ("1-9:0", "the step in '1-9:0' must be at least 1"),
            ("4:2", "a step needs a range"),
        ] {
            let e = parse_array(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn dependency_words() {
        let d = |kind, job| Dependency {
            kind,
            job: JobId(job),
        };
        assert_eq!(parse_dependency("ok:7"), Ok(d(DepKind::Ok, 7)));
        assert_eq!(parse_dependency("notok:8"), Ok(d(DepKind::NotOk, 8)));
        assert_eq!(parse_dependency("any:9"), Ok(d(DepKind::Any, 9)));
        assert_eq!(parse_dependency("7"), Ok(d(DepKind::Ok, 7)));
        let e = parse_dependency("after:7").unwrap_err();
        assert!(e.contains("unknown kind 'after'"), "{e}");
        let e = parse_dependency("ok:x").unwrap_err();
        assert!(e.contains("must be a job id"), "{e}");
        let e = parse_dependency("ok:7.3").unwrap_err();
        assert!(e.contains("'7.3' names one task"), "{e}");
        assert!(parse_dependency("ok:0").is_err());
    }

    fn task(id: u64, index: u32, state: JobState) -> JobView {
        JobView {
            id: JobId(id),
            spec: graze_proto::JobSpec {
                name: Some("sweep".into()),
                nprocs: 2,
                command: vec!["mpiexec".into(), "run".into()],
                user: "alice".into(),
                ..Default::default()
            },
            state,
            waiting_for: (state == JobState::Queued)
                .then(|| "throttled (2 of array 7 running)".to_string()),
            submitted_ms: 0,
            started_ms: None,
            ended_ms: None,
            allocation: vec![],
            exit: None,
            requeues: 0,
            events: vec![],
            expected_start_ms: None,
            task: Some(graze_proto::ArrayTask {
                array: JobId(7),
                index,
                count: 5,
                throttle: Some(2),
            }),
            checkpoints: Vec::new(),
        }
    }

    fn array() -> ArrayView {
        ArrayView {
            id: JobId(7),
            tasks: vec![
                task(8, 1, JobState::Completed),
                task(9, 2, JobState::Running),
                task(10, 3, JobState::Running),
                task(11, 4, JobState::Queued),
                task(12, 6, JobState::Queued),
            ],
        }
    }

    #[test]
    fn an_array_folds_into_one_queue_line() {
        let a = array();
        let folded = queue_table(&a.tasks, false, 0);
        let lines: Vec<&str> = folded.lines().collect();
        assert_eq!(lines.len(), 2, "{folded}");
        assert!(lines[1].starts_with("7 "), "{folded}");
        for want in [
            "sweep[1-4,6%2]",
            "2 running, 2 queued, 1 completed",
            "throttled (2 of array 7 running)",
        ] {
            assert!(lines[1].contains(want), "{want}: {folded}");
        }
        let expanded = queue_table(&a.tasks, true, 0);
        assert_eq!(expanded.lines().count(), 6, "{expanded}");
        assert!(expanded.contains("\n7.4 "), "{expanded}");
    }

    #[test]
    fn an_array_waits_and_exits_by_its_first_task_not_completed() {
        let mut a = array();
        assert_eq!(array_exit_code(&a), 1);
        for t in &mut a.tasks {
            t.state = JobState::Completed;
        }
        assert_eq!(array_exit_code(&a), 0);
        assert_eq!(array_wait_summary(&a), "array 7: 5 completed");
        a.tasks[3].state = JobState::Cancelled;
        assert_eq!(array_exit_code(&a), 130);
        assert_eq!(
            array_wait_summary(&a),
            "array 7: 4 completed, 1 cancelled (first not completed: 7.4 cancelled)"
        );
    }

    #[test]
    fn job_refs() {
        assert_eq!(parse_job_ref("7"), Ok(JobRef::from(JobId(7))));
        assert_eq!(
            parse_job_ref("7.3"),
            Ok(JobRef {
                job: JobId(7),
                task: Some(3)
            })
        );
        for bad in ["0", "7.", "7.x", ".3", "-1", "7.3.1"] {
            assert!(parse_job_ref(bad).is_err(), "{bad}");
        }
    }
}
