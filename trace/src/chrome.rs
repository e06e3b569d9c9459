//! Chrome trace-event JSON (the "JSON Object Format"), which Perfetto (ui.perfetto.dev) and
//! `chrome://tracing` open.
//!
//! One process per node (`pid` = the node's place in [`Trace::nodes`] + 1, named by a
//! `process_name` metadata event), one thread per rank (`tid` = rank + 1, named `rank N`,
//! sorted by rank), one complete event (`"ph":"X"`) per span with `ts`/`dur` in µs with the
//! ns as three decimals, and its `args` (peer, tag, bytes, comm size). `otherData` carries the
//! clock error bounds, the dropped and truncated ranks and the merge's warnings.
//!
//! Written by hand, not through a serde model, so that the times are exact decimals and a
//! large trace streams out without a second copy in memory.

use std::io::{self, Write};

use crate::{op_class, op_name, OpClass, Trace, What};

/// The thread id of a rank (Perfetto treats tid 0 specially).
pub fn tid(rank: i32) -> i64 {
    i64::from(rank) + 1
}

fn json_str(s: &str) -> String {
    // serde_json never fails on a &str.
    serde_json::to_string(s).unwrap_or_else(|_| "\"?\"".to_string())
}

/// ns as µs with three decimals, exactly.
fn micros(ns: u64) -> String {
    format!("{}.{:03}", ns / 1000, ns % 1000)
}

fn category(what: &What) -> &'static str {
    match what {
        What::Region(_) => "region",
        What::Mpi(op) => match op_class(*op) {
            OpClass::Collective => "mpi,collective",
            OpClass::PointToPoint => "mpi,p2p",
            OpClass::Wait => "mpi,wait",
            OpClass::Setup => "mpi,setup",
            OpClass::Other => "mpi",
        },
    }
}

/// Write `trace` as Chrome trace-event JSON.
pub fn write(trace: &Trace, out: &mut impl Write) -> io::Result<()> {
    let mut out = io::BufWriter::new(out);
    // Nodes in the order of `trace.nodes`, then any a rank names that has no clock entry (a
    // trace not made by `merge`).
    let mut named: Vec<&str> = trace.nodes.iter().map(|n| n.node.as_str()).collect();
    for r in &trace.ranks {
        if !named.contains(&r.node.as_str()) {
            named.push(&r.node);
        }
    }
    let pid_of = |node: &str| named.iter().position(|n| *n == node).unwrap_or(0) + 1;
    writeln!(out, "{{\"displayTimeUnit\":\"ns\",\"traceEvents\":[")?;
    let mut first = true;
    let mut sep = |out: &mut dyn Write| -> io::Result<()> {
        if std::mem::take(&mut first) {
            Ok(())
        } else {
            writeln!(out, ",")
        }
    };
    for node in &named {
        let pid = pid_of(node);
        sep(&mut out)?;
        write!(
            out,
            "{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":{pid},\"tid\":0,\"args\":{{\"name\":{}}}}}",
            json_str(node)
        )?;
        sep(&mut out)?;
        write!(
            out,
            "{{\"ph\":\"M\",\"name\":\"process_sort_index\",\"pid\":{pid},\"tid\":0,\"args\":{{\"sort_index\":{pid}}}}}"
        )?;
    }
    for r in &trace.ranks {
        let pid = pid_of(&r.node);
        let tid = tid(r.rank);
        sep(&mut out)?;
        write!(
            out,
            "{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":{pid},\"tid\":{tid},\"args\":{{\"name\":\"rank {}\"}}}}",
            r.rank
        )?;
        sep(&mut out)?;
        write!(
            out,
            "{{\"ph\":\"M\",\"name\":\"thread_sort_index\",\"pid\":{pid},\"tid\":{tid},\"args\":{{\"sort_index\":{}}}}}",
            r.rank
        )?;
        for s in &r.spans {
            let name = match &s.what {
                What::Mpi(op) => op_name(*op).into_owned(),
                What::Region(n) => n.clone(),
            };
            let mut args = Vec::new();
            if let Some(p) = s.peer {
                args.push(format!("\"peer\":{p}"));
            }
            if let Some(t) = s.tag {
                args.push(format!("\"tag\":{t}"));
            }
            if let Some(b) = s.bytes {
                args.push(format!("\"bytes\":{b}"));
            }
            if let Some(c) = s.comm_size {
                args.push(format!("\"comm_size\":{c}"));
            }
            sep(&mut out)?;
            write!(
                out,
                "{{\"ph\":\"X\",\"name\":{},\"cat\":\"{}\",\"pid\":{pid},\"tid\":{tid},\"ts\":{},\"dur\":{},\"args\":{{{}}}}}",
                json_str(&name),
                category(&s.what),
                micros(s.begin_ns),
                micros(s.end_ns - s.begin_ns.min(s.end_ns)),
                args.join(",")
            )?;
        }
    }
    writeln!(out, "\n],\"otherData\":{{")?;
    write!(out, "\"graze_start_ns\":{},", trace.start_ns)?;
    write!(out, "\"graze_clock\":{{")?;
    for (i, n) in trace.nodes.iter().enumerate() {
        let offsets: Vec<String> = n
            .samples
            .iter()
            .map(|s| format!("[{},{},{}]", s.local_ns, s.offset_ns, s.rtt_ns))
            .collect();
        write!(
            out,
            "{}{}:{{\"error_ns\":{},\"samples\":{},\"local_offset_rtt_ns\":[{}]}}",
            if i > 0 { "," } else { "" },
            json_str(&n.node),
            n.error_ns,
            n.samples.len(),
            offsets.join(",")
        )?;
    }
    let dropped: Vec<String> = trace
        .ranks
        .iter()
        .filter(|r| r.dropped > 0)
        .map(|r| format!("\"rank {}\":{}", r.rank, r.dropped))
        .collect();
    let truncated: Vec<String> = trace
        .ranks
        .iter()
        .filter(|r| r.truncated)
        .map(|r| r.rank.to_string())
        .collect();
    let warnings: Vec<String> = trace.warnings.iter().map(|w| json_str(w)).collect();
    write!(
        out,
        "}},\"graze_dropped\":{{{}}},\"graze_truncated_ranks\":[{}],\"graze_warnings\":[{}]}}}}",
        dropped.join(","),
        truncated.join(","),
        warnings.join(",")
    )?;
    writeln!(out)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClockSample, NodeClock, Op, RankTrack, Span};
    use serde_json::Value;

    fn span(begin_ns: u64, end_ns: u64, what: What) -> Span {
        Span::new(begin_ns, end_ns, what)
    }

    fn trace() -> Trace {
        let track = |rank: i32, node: &str| RankTrack {
            rank,
            node: node.into(),
            pid: 100 + rank as u32,
            spans: vec![
                span(0, 1_500, What::Mpi(Op::INIT)),
                span(2_000, 3_000, What::Region("compute \"hot\"".into())),
                Span {
                    peer: Some(1 - rank),
                    tag: Some(7),
                    bytes: Some(800),
                    comm_size: Some(2),
                    ..span(3_000, 4_001, What::Mpi(Op::SEND))
                },
                span(5_000, 6_000, What::Mpi(Op(99))),
            ],
            dropped: rank as u64 * 3,
            truncated: rank == 1,
        };
        Trace {
            start_ns: 42,
            ranks: vec![track(0, "a"), track(1, "b")],
            nodes: vec![
                NodeClock {
                    node: "a".into(),
                    samples: vec![],
                    error_ns: 0,
                },
                NodeClock {
                    node: "b".into(),
                    samples: vec![ClockSample {
                        local_ns: 5,
                        offset_ns: -5_000_000_000,
                        rtt_ns: 90_000,
                    }],
                    error_ns: 45_000,
                },
            ],
            warnings: vec!["node a: no clock samples".into()],
        }
    }

    #[test]
    fn valid_json_with_the_right_events() {
        let mut out = Vec::new();
        write(&trace(), &mut out).expect("writes");
        let v: Value = serde_json::from_slice(&out).expect("valid JSON");
        let events = v["traceEvents"].as_array().expect("events");
        let x: Vec<&Value> = events.iter().filter(|e| e["ph"] == "X").collect();
        assert_eq!(x.len(), 8);
        let m = |name: &str| events.iter().filter(|e| e["name"] == name).count();
        assert_eq!(m("process_name"), 2);
        assert_eq!(m("thread_name"), 2);
        let names: Vec<&str> = events
            .iter()
            .filter(|e| e["name"] == "thread_name" || e["name"] == "process_name")
            .filter_map(|e| e["args"]["name"].as_str())
            .collect();
        assert_eq!(names, ["a", "b", "rank 0", "rank 1"]);
        // Rank 1 is on node b, the second process.
        let send1 = x
            .iter()
            .find(|e| e["name"] == "MPI_Send" && e["tid"] == 2)
            .expect("rank 1's send");
        assert_eq!(send1["pid"], 2);
        assert_eq!(send1["ts"].as_f64(), Some(3.0));
        assert_eq!(send1["dur"].as_f64(), Some(1.001));
        assert_eq!(send1["args"]["peer"], 0);
        assert_eq!(send1["args"]["tag"], 7);
        assert_eq!(send1["args"]["bytes"], 800);
        assert_eq!(send1["args"]["comm_size"], 2);
        assert_eq!(send1["cat"], "mpi,p2p");
        assert!(x
            .iter()
            .any(|e| e["name"] == "compute \"hot\"" && e["cat"] == "region"));
        assert!(x.iter().any(|e| e["name"] == "op 99"));
        let init = x.iter().find(|e| e["name"] == "MPI_Init").expect("init");
        assert_eq!(init["dur"].as_f64(), Some(1.5));
        let other = &v["otherData"];
        assert_eq!(other["graze_clock"]["b"]["error_ns"], 45_000);
        assert_eq!(other["graze_clock"]["b"]["samples"], 1);
        assert_eq!(other["graze_dropped"]["rank 1"], 3);
        assert_eq!(other["graze_truncated_ranks"][0], 1);
        assert_eq!(other["graze_warnings"][0], "node a: no clock samples");
        assert_eq!(other["graze_start_ns"], 42);
    }

    #[test]
    fn exact_microseconds() {
        assert_eq!(micros(0), "0.000");
        assert_eq!(micros(1_234_567), "1234.567");
        assert_eq!(micros(u64::MAX), "18446744073709551.615");
    }

    #[test]
    fn a_merged_run_with_a_shifted_node() {
        use crate::format::{Call, Header, Writer};
        use crate::{merge, NodeInput};
        const SEC: u64 = 1_000_000_000;
        let file = |rank: i32, shift: u64| {
            let mut w = Writer::new(&Header {
                rank,
                world_size: 2,
                pid: 7,
                dropped: 0,
                start_ns: shift,
                host: "h".into(),
            });
            w.call(&Call {
                op: Op::ALLREDUCE,
                peer: -1,
                tag: -1,
                comm_size: 2,
                begin_ns: shift + 1_000 + rank as u64 * 100,
                end_ns: shift + 3_000,
                bytes: 8,
            });
            w.finish()
        };
        let node = |name: &str, rank: i32, shift: u64, offset_ns: i64| NodeInput {
            node: name.into(),
            files: vec![(format!("rank-{rank}.gzt"), file(rank, shift))],
            clock: vec![ClockSample {
                local_ns: shift,
                offset_ns,
                rtt_ns: 2_000,
            }],
        };
        let t = merge(&[
            node("a", 0, 10 * SEC, 0),
            node("b", 1, 15 * SEC, -5_000_000_000),
        ])
        .expect("merges");
        let mut out = Vec::new();
        write(&t, &mut out).expect("writes");
        let v: Value = serde_json::from_slice(&out).expect("valid JSON");
        let x: Vec<&Value> = v["traceEvents"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["ph"] == "X")
            .collect();
        assert_eq!(x.len(), 2);
        assert_eq!(
            (x[0]["pid"].as_u64(), x[0]["ts"].as_f64()),
            (Some(1), Some(0.0))
        );
        assert_eq!(
            (x[1]["pid"].as_u64(), x[1]["ts"].as_f64()),
            (Some(2), Some(0.1))
        );
        assert_eq!(x[1]["dur"].as_f64(), Some(1.9));
        assert_eq!(v["otherData"]["graze_clock"]["b"]["error_ns"], 1_000);
    }

    #[test]
    fn nodes_without_clock_entries_get_their_own_process() {
        let mut t = trace();
        t.nodes.clear();
        t.ranks[1].node = "c".into();
        let mut out = Vec::new();
        write(&t, &mut out).expect("writes");
        let v: Value = serde_json::from_slice(&out).expect("valid JSON");
        let procs: Vec<(u64, &str)> = v["traceEvents"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["name"] == "process_name")
            .filter_map(|e| Some((e["pid"].as_u64()?, e["args"]["name"].as_str()?)))
            .collect();
        assert_eq!(procs, [(1, "a"), (2, "c")]);
    }
}
