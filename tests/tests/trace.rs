//! Issue 16 acceptance: `graze submit --trace`. Real scheduler, real agents, real MPICH (and
//! Open MPI for the mpi4py example): the tracer preloaded into every rank, the agents' clock
//! sync over QUIC (one agent's `CLOCK_MONOTONIC` shifted by +5 s in a time namespace), the
//! files collected by the scheduler, and `graze trace`'s Chrome JSON, OTF2 and summary.
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Generous bounds: the machine is shared and may be loaded.
const LONG: Duration = Duration::from_secs(180);

/// graze-pi rounds of the acceptance run (fixed: min = max).
const ROUNDS: usize = 30;

/// graze-pi's flags: exactly [`ROUNDS`] rounds, reproducible.
const PI: &[&str] = &[
    "--seed",
    "16",
    "--samples",
    "2000000",
    "--tolerance",
    "1e-12",
    "--min-rounds",
    "30",
    "--max-rounds",
    "30",
    "--report-ms",
    "100000",
];

/// One complete event of the Chrome trace: rank, name, begin and end (µs on the merged clock).
#[derive(Debug, Clone)]
struct Ev {
    rank: i64,
    name: String,
    begin: f64,
    end: f64,
}

fn spans(chrome: &Value) -> Vec<Ev> {
    chrome["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X")
        .map(|e| {
            let ts = e["ts"].as_f64().unwrap();
            Ev {
                rank: e["tid"].as_i64().unwrap() - 1,
                name: e["name"].as_str().unwrap().to_string(),
                begin: ts,
                end: ts + e["dur"].as_f64().unwrap(),
            }
        })
        .collect()
}

/// Wait until every node of the job reported its trace (stored or not); the events.
fn wait_traces(c: &Cluster, id: u64, nodes: usize) -> Vec<String> {
    wait_for("every node's trace event", LONG, || {
        let ev = events(&c.show(id));
        let n = ev
            .iter()
            .filter(|e| {
                e.starts_with("trace stored from node")
                    || e.starts_with("no rank wrote a trace")
                    || e.contains("not stored")
            })
            .count();
        (n >= nodes).then_some(ev)
    })
}

/// `graze trace ID ARGS...`, which must succeed; its stdout and stderr.
fn graze_trace(c: &Cluster, id: u64, args: &[&str]) -> (String, String) {
    let ids = id.to_string();
    let mut all = vec!["trace", ids.as_str()];
    all.extend_from_slice(args);
    let out = c.graze(&all);
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "graze trace failed: {e}{o}");
    (o, e)
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Every rank has its Init, one Allreduce per round and its Finalize, and each round's
/// Allreduce spans overlap across ranks (the latest begin is before the earliest end, give or
/// take `slack_us`, the clock error bound).
fn check_pi_trace(ev: &[Ev], ranks: i64, slack_us: f64) {
    let mut per_round: Vec<Vec<&Ev>> = vec![Vec::new(); ROUNDS];
    for r in 0..ranks {
        let mine: Vec<&Ev> = ev.iter().filter(|e| e.rank == r).collect();
        let count = |n: &str| mine.iter().filter(|e| e.name == n).count();
        assert_eq!(count("MPI_Init"), 1, "rank {r}: {mine:?}");
        assert_eq!(count("MPI_Finalize"), 1, "rank {r}");
        let mut ar: Vec<&Ev> = mine
            .iter()
            .copied()
            .filter(|e| e.name == "MPI_Allreduce")
            .collect();
        assert_eq!(ar.len(), ROUNDS, "rank {r}'s Allreduces");
        ar.sort_by(|a, b| a.begin.total_cmp(&b.begin));
        for (k, e) in ar.into_iter().enumerate() {
            per_round[k].push(e);
        }
    }
    for (k, round) in per_round.iter().enumerate() {
        let last_begin = round.iter().map(|e| e.begin).fold(f64::MIN, f64::max);
        let first_end = round.iter().map(|e| e.end).fold(f64::MAX, f64::min);
        assert!(
            last_begin <= first_end + slack_us,
            "round {}: an Allreduce ended ({first_end} µs) before another began ({last_begin} µs): {round:?}",
            k + 1
        );
    }
}

#[test]
fn traced_pi_overlaps_across_a_shifted_clock() {
    ensure_built();
    if !is_root() {
        eprintln!("skipped: a time namespace (unshare --time) needs root");
        return;
    }
    let mut c = Cluster::start(&[]);
    c.add_agent("t1", "127.0.0.2", 2, &[]);
    // This PC's monotonic clock is 5 s ahead of the scheduler's.
    c.add_agent_shifted("t2", "127.0.0.3", 2, &[], 5);
    c.wait_offered(2);
    let mut args = vec!["-n", "4", "--trace", "--", "mpiexec", "graze-pi"];
    args.extend_from_slice(PI);
    let id = c.submit(&args);
    let out = c.graze(&["wait", &id.to_string()]);
    assert!(out.status.success(), "{}", c.show(id));
    let ev = wait_traces(&c, id, 2);
    let stored: Vec<&String> = ev
        .iter()
        .filter(|e| e.starts_with("trace stored from node"))
        .collect();
    assert_eq!(stored.len(), 2, "{ev:?}");
    for s in &stored {
        assert!(
            s.contains(": 2 ranks,") && s.contains(" 0 dropped events"),
            "{s}"
        );
    }
    let shown = c.graze(&["show", &id.to_string()]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("graze trace"));

    let dir = c.dir.path();
    let json = dir.join("trace.json");
    let otf2 = dir.join("otf2");
    let (summary, err) = graze_trace(
        &c,
        id,
        &[
            "-o",
            json.to_str().unwrap(),
            "--otf2",
            otf2.to_str().unwrap(),
            "--summary",
        ],
    );
    assert!(summary.contains("MPI_Allreduce"), "{summary}");
    assert!(err.contains("4 ranks on 2 nodes"), "{err}");

    let chrome = read_json(&json);
    let clock = &chrome["otherData"]["graze_clock"];
    // The shifted node's samples (a burst at the start and one at the end at least) say it is
    // 5 s ahead (scheduler minus node: -5 s); the other node's, that it is not.
    for (node, want) in [("t1", 0i64), ("t2", -5_000_000_000)] {
        let stored = c
            .state_dir()
            .join(format!("traces/{id}/1/{node}/clock.json"));
        let samples = read_json(&stored);
        let samples = samples.as_array().unwrap();
        assert!(samples.len() >= 2, "{node}: {samples:?}");
        for s in samples {
            let off = s["offset_ns"].as_i64().unwrap();
            assert!((off - want).abs() < 50_000_000, "{node}: offset {off}");
        }
    }
    let mut worst = 0u64;
    for node in ["t1", "t2"] {
        let e = clock[node]["error_ns"].as_u64().unwrap();
        assert!(e < 1_000_000, "{node}'s clock error bound {e} ns: {clock}");
        worst = worst.max(e);
    }
    println!("clock-sync error bound on loopback: {worst} ns");
    let ev = spans(&chrome);
    check_pi_trace(&ev, 4, 2.0 * worst as f64 / 1000.0);

    // Without the correction the shifted node's Allreduces would sit 5 s away: the merged
    // ones of the two nodes are within the run's length of each other instead.
    let ranks_of = |node: &str| -> Vec<i64> {
        let pid = chrome["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["ph"] == "M" && e["name"] == "process_name" && e["args"]["name"] == node)
            .map(|e| e["pid"].clone())
            .unwrap();
        let mut r: Vec<i64> = chrome["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["ph"] == "X" && e["pid"] == pid)
            .map(|e| e["tid"].as_i64().unwrap() - 1)
            .collect();
        r.sort_unstable();
        r.dedup();
        r
    };
    assert_eq!(ranks_of("t1").len() + ranks_of("t2").len(), 4);

    // otf2-print reads the OTF2 output.
    let anchor = otf2.join("traces.otf2");
    assert!(anchor.exists(), "no {}", anchor.display());
    let p = Command::new("otf2-print").arg(&anchor).output().unwrap();
    assert!(p.status.success(), "{p:?}");
    let text = String::from_utf8_lossy(&p.stdout);
    assert!(
        text.contains("MPI_Allreduce"),
        "{}",
        &text[..text.len().min(2000)]
    );
}

#[test]
fn mpi4py_example_runs_traced_with_a_python_region() {
    ensure_built();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/pi_checkpoint.py")
        .canonicalize()
        .unwrap();
    let mut c = Cluster::start(&[]);
    c.add_agent("p1", "127.0.0.2", 2, &[]);
    c.wait_offered(1);
    // mpi4py on Debian is built against Open MPI: its launcher, one rank per slot.
    let id = c.submit(&[
        "-n",
        "2",
        "--trace",
        "--",
        "mpirun.openmpi",
        "/usr/bin/python3",
        script.to_str().unwrap(),
        "--seed",
        "4",
        "--samples",
        "2000",
        "--min-rounds",
        "5",
        "--max-rounds",
        "5",
    ]);
    let out = c.graze(&["wait", &id.to_string()]);
    assert!(out.status.success(), "{}", c.show(id));
    let ev = wait_traces(&c, id, 1);
    assert!(
        ev.iter()
            .any(|e| e.starts_with("trace stored from node 'p1': 2 ranks")),
        "{ev:?}"
    );
    let json = c.dir.path().join("py.json");
    graze_trace(&c, id, &["-o", json.to_str().unwrap()]);
    let ev = spans(&read_json(&json));
    for r in 0..2 {
        let mine: Vec<&Ev> = ev.iter().filter(|e| e.rank == r).collect();
        let one = |n: &str| mine.iter().find(|e| e.name == n).copied();
        let (init, fin) = (one("MPI_Init").unwrap(), one("MPI_Finalize").unwrap());
        // The example's own phase, through the Python helper, once per round, inside MPI's
        // life (mpi4py's pickle-based lowercase `allreduce` is not an MPI_Allreduce call).
        let samples: Vec<&&Ev> = mine.iter().filter(|e| e.name == "sample").collect();
        assert_eq!(samples.len(), 5, "rank {r}'s 'sample' regions: {mine:?}");
        for s in samples {
            assert!(
                s.begin >= init.end && s.end <= fin.begin,
                "{s:?} outside MPI"
            );
        }
        let calls = mine.iter().filter(|e| e.name.starts_with("MPI_")).count();
        assert!(
            calls > 2,
            "rank {r} made no MPI call between Init and Finalize: {mine:?}"
        );
    }
}

#[test]
fn past_the_size_limit_events_are_dropped_and_counted() {
    ensure_built();
    // 8 KiB for the job: 4 KiB per rank, about 100 records, far fewer than 300 rounds make.
    let mut c = Cluster::start(&["--max-trace-bytes", "8KiB"]);
    c.add_agent("s1", "127.0.0.2", 2, &[]);
    c.wait_offered(1);
    let id = c.submit(&[
        "-n",
        "2",
        "--trace",
        "--",
        "mpiexec",
        "graze-pi",
        "--seed",
        "3",
        "--samples",
        "1000",
        "--min-rounds",
        "300",
        "--max-rounds",
        "300",
        "--tolerance",
        "1e-12",
        "--report-ms",
        "100000",
    ]);
    let out = c.graze(&["wait", &id.to_string()]);
    assert!(out.status.success(), "{}", c.show(id));
    let ev = wait_traces(&c, id, 1);
    let stored = ev
        .iter()
        .find(|e| e.starts_with("trace stored from node 's1': 2 ranks,"))
        .unwrap_or_else(|| panic!("{ev:?}"));
    let dropped: u64 = stored
        .rsplit(", ")
        .next()
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(dropped > 0, "{stored}");
    let bytes: u64 = stored
        .split(", ")
        .find_map(|t| t.strip_suffix(" bytes")?.parse().ok())
        .unwrap();
    assert!(bytes <= 8192, "{stored}");
}

#[test]
fn tracing_a_program_that_is_not_mpi_says_so_and_completes() {
    ensure_built();
    let mut c = Cluster::start(&[]);
    c.add_agent("n1", "127.0.0.2", 1, &[]);
    c.wait_offered(1);
    let id = c.submit(&["-n", "1", "--trace", "--", "sh", "-c", "echo hi"]);
    let out = c.graze(&["wait", &id.to_string()]);
    assert!(out.status.success(), "{}", c.show(id));
    let ev = wait_traces(&c, id, 1);
    assert!(
        ev.iter().any(|e| e.contains(
            "no rank wrote a trace on node 'n1': the program is statically linked or not an MPI program"
        )),
        "{ev:?}"
    );
    assert_eq!(c.show(id)["state"], "completed");
    assert!(c.logs(id).contains("hi"));
    // `graze trace` says what is wrong rather than writing an empty trace.
    let out = c.graze(&["trace", &id.to_string(), "-o", "/dev/null"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no rank trace files"), "{err}");
    // A rank file a job wrote by hand is refused by name, and the scheduler lives on.
    let id = c.submit(&[
        "-n",
        "1",
        "--trace",
        "--",
        "sh",
        "-c",
        "echo garbage > \"$GRAZE_TRACE_DIR/rank-0.gzt\"",
    ]);
    let out = c.graze(&["wait", &id.to_string()]);
    assert!(out.status.success(), "{}", c.show(id));
    let ev = wait_traces(&c, id, 1);
    assert!(
        ev.iter()
            .any(|e| e.starts_with("bad trace from node 'n1': trace file 'rank-0.gzt', byte 0")),
        "{ev:?}"
    );
    let out = c.graze(&["trace", &id.to_string(), "--summary"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rank-0.gzt"), "{err}");
    // An untraced job: the error says how to trace it.
    let plain = c.submit(&["-n", "1", "--", "true"]);
    c.graze(&["wait", &plain.to_string()]);
    let out = c.graze(&["trace", &plain.to_string(), "--summary"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("submit --trace"), "{err}");
}

/// Tracing and checkpoints together: a traced graze-pi asked to checkpoint (`graze requeue
/// --checkpoint`) saves, exits 85 (its tracer writes at exit), is requeued and restored; each
/// attempt keeps its own trace, and their rounds (graze-pi's "allreduce" regions) add up to the
/// run's.
#[test]
fn a_requeued_checkpointed_run_keeps_a_trace_per_attempt() {
    ensure_built();
    const TOTAL: usize = 2000;
    let mut c = Cluster::start(&[]);
    c.add_agent("q2", "127.0.0.2", 1, &[]);
    c.add_agent("q3", "127.0.0.3", 1, &[]);
    c.wait_offered(2);
    let id = c.submit(&[
        "-n",
        "2",
        "--trace",
        "--checkpoint",
        "--",
        "mpiexec",
        "graze-pi",
        "--seed",
        "16",
        "--samples",
        "5000000",
        "--tolerance",
        "1e-12",
        "--min-rounds",
        "2000",
        "--max-rounds",
        "2000",
        "--report-ms",
        "100000",
        "--checkpoint-exit",
    ]);
    wait_for("20 rounds done", LONG, || {
        (c.logs(id).lines().filter(|l| l.contains("pi: ")).count() >= 20).then_some(())
    });
    let out = c.graze(&["requeue", &id.to_string(), "--checkpoint"]);
    assert!(out.status.success(), "{out:?}");
    let out = c.graze(&["wait", &id.to_string()]);
    assert!(out.status.success(), "{}", c.show(id));
    // Two attempts on up to two nodes each: wait for the second attempt's trace events.
    wait_for("both attempts' traces", LONG, || {
        let ev = events(&c.show(id));
        (ev.iter()
            .filter(|e| e.starts_with("trace stored from node"))
            .count()
            >= 2
            && ev.iter().any(|e| e.contains("restores checkpoint")))
        .then_some(())
    });
    let resumed: usize = c
        .logs(id)
        .lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("resumed from checkpoint after round ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("not restored: {}", c.logs(id)));
    let dir = c.dir.path();
    let mut allreduces = Vec::new();
    for attempt in ["1", "2"] {
        let file = dir.join(format!("attempt-{attempt}.json"));
        let f = file.to_str().unwrap();
        wait_for(&format!("attempt {attempt}'s trace"), LONG, || {
            let out = c.graze(&["trace", &id.to_string(), "--attempt", attempt, "-o", f]);
            out.status.success().then_some(())
        });
        let ev = spans(&read_json(&file));
        let per_rank: Vec<usize> = (0..2)
            .map(|r| {
                // One "allreduce" region a round (graze-pi's Allreduce of the sums; with
                // --checkpoint a second Allreduce a round agrees on a pending signal).
                ev.iter()
                    .filter(|e| e.rank == r && e.name == "allreduce")
                    .count()
            })
            .collect();
        for r in 0..2 {
            assert_eq!(
                ev.iter()
                    .filter(|e| e.rank == r && e.name == "MPI_Init")
                    .count(),
                1,
                "attempt {attempt} rank {r}"
            );
        }
        assert_eq!(per_rank[0], per_rank[1], "attempt {attempt}: {per_rank:?}");
        allreduces.push(per_rank[0]);
    }
    // The first attempt ran at least to the saved round; the restored one ran exactly the
    // rest.
    assert!(
        allreduces[0] >= resumed,
        "{allreduces:?}, resumed after {resumed}"
    );
    assert_eq!(
        allreduces[1],
        TOTAL - resumed,
        "{allreduces:?}, resumed after {resumed}"
    );
}
