//! `merge`: every node's rank files, each corrected by its node's clock model, into one
//! [`Trace`].

use std::collections::BTreeMap;

use crate::clock::Model;
use crate::format::{self, FormatError, Record};
use crate::{NodeClock, NodeInput, RankTrack, Span, Trace, What};

/// Why a run's files could not be merged. Not retryable: the files are what they are.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A rank file is malformed; the error names the file and the byte.
    #[error("node {node}: {source}")]
    Format {
        node: String,
        #[source]
        source: FormatError,
    },
    /// Two files claim the same rank.
    #[error("rank {rank} appears twice: in {first} and in {second}")]
    DuplicateRank {
        rank: i32,
        first: String,
        second: String,
    },
    /// No node sent a rank file.
    #[error("the run left no rank trace files ({nodes} nodes, {files} other files)")]
    NoRankFiles { nodes: usize, files: usize },
}

/// The longest tracer note kept in a warning, in bytes.
const NOTE_MAX: usize = 300;

/// One span before the common start is subtracted: times on the scheduler clock.
struct Pending {
    begin: i128,
    end: i128,
    span: Span,
}

/// Merge the nodes' rank files: parse each (`*.gzt`), correct its times by its node's clock
/// model ([`crate::clock`]), and build the [`Trace`]: ranks sorted, spans sorted by begin
/// (longer first at equal begins, so enclosing regions come before what they enclose), times
/// relative to the earliest begin. A node without clock samples is used uncorrected, with a
/// warning. Files of processes that never initialised MPI (rank -1) are left out with a
/// warning; tracer notes (`note-*.txt`) become warnings.
pub fn merge(nodes: &[NodeInput]) -> Result<Trace, MergeError> {
    let mut warnings = Vec::new();
    let mut clocks = Vec::new();
    // rank -> (where, track without spans, pending spans)
    let mut ranks: BTreeMap<i32, (String, RankTrack, Vec<Pending>)> = BTreeMap::new();
    let mut other_files = 0;
    let mut world_sizes: Vec<(i32, String)> = Vec::new();
    for node in nodes {
        let model = Model::new(&node.clock);
        if model.is_empty() {
            warnings.push(format!(
                "node {}: no clock samples; its times are not corrected (offset 0, error unknown)",
                node.node
            ));
        }
        clocks.push(NodeClock {
            node: node.node.clone(),
            samples: model.kept().to_vec(),
            error_ns: model.error_ns(),
        });
        for (name, bytes) in &node.files {
            if name == "clock.json" {
                // The node's samples as the scheduler stores them; the caller passes them in
                // `NodeInput::clock`.
                continue;
            }
            if !name.ends_with(".gzt") {
                other_files += 1;
                if name.starts_with("note-") && name.ends_with(".txt") {
                    let mut cut = bytes.len().min(NOTE_MAX);
                    let text = loop {
                        match std::str::from_utf8(&bytes[..cut]) {
                            Ok(t) => break t.to_string(),
                            Err(e) => cut = e.valid_up_to(),
                        }
                    };
                    warnings.push(format!("node {}: tracer note: {}", node.node, text.trim()));
                } else {
                    warnings.push(format!(
                        "node {}: {name} is not a rank trace file; ignored",
                        node.node
                    ));
                }
                continue;
            }
            let file = format::parse(name, bytes).map_err(|source| MergeError::Format {
                node: node.node.clone(),
                source,
            })?;
            let h = &file.header;
            let place = format!("{}:{name}", node.node);
            if h.rank < 0 {
                warnings.push(format!(
                    "{place}: process {} never initialised MPI; its {} records are left out",
                    h.pid,
                    file.records.len()
                ));
                continue;
            }
            if let Some((first, _, _)) = ranks.get(&h.rank) {
                return Err(MergeError::DuplicateRank {
                    rank: h.rank,
                    first: first.clone(),
                    second: place,
                });
            }
            if h.world_size > 0 {
                world_sizes.push((h.world_size, place.clone()));
            }
            if file.truncated {
                warnings.push(format!(
                    "{place}: cut in the middle of a record (the rank died while writing); read up to its last whole record"
                ));
            }
            let mut pending = Vec::with_capacity(file.records.len());
            for r in &file.records {
                let (b, e, span) = match r {
                    Record::Name { .. } => continue,
                    Record::Call(c) => (
                        c.begin_ns,
                        c.end_ns,
                        Span {
                            begin_ns: 0,
                            end_ns: 0,
                            what: What::Mpi(c.op),
                            peer: (c.peer != -1).then_some(c.peer),
                            tag: (c.tag != -1).then_some(c.tag),
                            comm_size: u32::try_from(c.comm_size).ok().filter(|&n| n > 0),
                            bytes: u64::try_from(c.bytes).ok(),
                        },
                    ),
                    Record::Region {
                        name,
                        begin_ns,
                        end_ns,
                        ..
                    } => (
                        *begin_ns,
                        *end_ns,
                        Span::new(0, 0, What::Region(name.clone())),
                    ),
                };
                let begin = model.correct(b);
                let end = model.correct(e).max(begin);
                pending.push(Pending { begin, end, span });
            }
            let track = RankTrack {
                rank: h.rank,
                node: node.node.clone(),
                pid: h.pid,
                spans: Vec::new(),
                dropped: h.dropped,
                truncated: file.truncated,
            };
            if h.dropped > 0 {
                warnings.push(format!(
                    "{place}: rank {} dropped {} events past the trace size limit",
                    h.rank, h.dropped
                ));
            }
            ranks.insert(h.rank, (place, track, pending));
        }
    }
    let sizes: std::collections::BTreeSet<i32> = world_sizes.iter().map(|(s, _)| *s).collect();
    if sizes.len() > 1 {
        warnings.push(format!(
            "the rank files disagree on the world size ({}): are they from one run?",
            world_sizes
                .iter()
                .map(|(s, place)| format!("{place}: {s}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    } else if let Some(&size) = sizes.first() {
        let missing: Vec<String> = (0..size)
            .filter(|r| !ranks.contains_key(r))
            .map(|r| r.to_string())
            .collect();
        if !missing.is_empty() {
            warnings.push(format!(
                "no trace file for rank {} of {size}",
                missing.join(", ")
            ));
        }
    }
    if ranks.is_empty() {
        return Err(MergeError::NoRankFiles {
            nodes: nodes.len(),
            files: other_files,
        });
    }
    let start = ranks
        .values()
        .flat_map(|(_, _, p)| p.iter().map(|s| s.begin))
        .min()
        .unwrap_or(0);
    let rel = |t: i128| u64::try_from(t - start).unwrap_or(u64::MAX);
    let ranks = ranks
        .into_values()
        .map(|(_, mut track, pending)| {
            track.spans = pending
                .into_iter()
                .map(|p| Span {
                    begin_ns: rel(p.begin),
                    end_ns: rel(p.end),
                    ..p.span
                })
                .collect();
            track
                .spans
                .sort_by_key(|s| (s.begin_ns, std::cmp::Reverse(s.end_ns)));
            track
        })
        .collect();
    Ok(Trace {
        start_ns: u64::try_from(start.max(0)).unwrap_or(u64::MAX),
        ranks,
        nodes: clocks,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Call, Header, Writer};
    use crate::{ClockSample, Op};

    const SEC: u64 = 1_000_000_000;

    fn rank_file(rank: i32, host: &str, shift: u64, allreduces: &[(u64, u64)]) -> Vec<u8> {
        let mut w = Writer::new(&Header {
            rank,
            world_size: 4,
            pid: (1000 + rank) as u32,
            dropped: 0,
            start_ns: shift,
            host: host.into(),
        });
        let call = |op: Op, b: u64, e: u64| Call {
            op,
            peer: -1,
            tag: -1,
            comm_size: 4,
            begin_ns: shift + b,
            end_ns: shift + e,
            bytes: 8,
        };
        w.call(&call(Op::INIT, 0, 1_000));
        for &(b, e) in allreduces {
            w.region("sample", shift + b - 500, shift + b);
            w.call(&call(Op::ALLREDUCE, b, e));
        }
        w.call(&call(Op::FINALIZE, 100_000, 101_000));
        w.finish()
    }

    fn node(name: &str, ranks: &[i32], shift: u64, clock: Vec<ClockSample>) -> NodeInput {
        NodeInput {
            node: name.into(),
            files: ranks
                .iter()
                .map(|&r| {
                    (
                        format!("rank-{r}.gzt"),
                        rank_file(r, name, shift, &[(10_000, 20_000 + r as u64)]),
                    )
                })
                .collect(),
            clock,
        }
    }

    fn samples(offset_ns: i64) -> Vec<ClockSample> {
        (0..3)
            .map(|i| ClockSample {
                local_ns: 100 * SEC + i * 2 * SEC,
                offset_ns,
                rtt_ns: 200_000,
            })
            .collect()
    }

    #[test]
    fn a_shifted_node_is_put_back() {
        // Node b's clock runs 5 s ahead; its samples say so.
        let a = node("a", &[0, 1], 100 * SEC, samples(0));
        let b = node("b", &[3, 2], 105 * SEC, samples(-5_000_000_000));
        let t = merge(&[a, b]).expect("merges");
        assert_eq!(t.start_ns, 100 * SEC);
        assert_eq!(
            t.ranks.iter().map(|r| r.rank).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        for r in &t.ranks {
            let ar: Vec<&Span> = r
                .spans
                .iter()
                .filter(|s| s.what == What::Mpi(Op::ALLREDUCE))
                .collect();
            assert_eq!(ar.len(), 1);
            assert_eq!(ar[0].begin_ns, 10_000, "rank {}", r.rank);
            assert_eq!(ar[0].end_ns, 20_000 + r.rank as u64);
            assert_eq!(ar[0].comm_size, Some(4));
            assert_eq!(ar[0].bytes, Some(8));
            assert_eq!(ar[0].peer, None);
            // Sorted by begin.
            assert!(r.spans.windows(2).all(|w| w[0].begin_ns <= w[1].begin_ns));
            assert_eq!(r.spans[0].what, What::Mpi(Op::INIT));
            assert_eq!(r.spans[0].begin_ns, 0);
        }
        assert_eq!(t.ranks[2].node, "b");
        assert_eq!(t.node_clock("b").map(|c| c.error_ns), Some(100_000));
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
        assert_eq!(t.end_ns(), 101_000);
    }

    #[test]
    fn without_samples_the_shift_stays_and_is_warned() {
        let a = node("a", &[0], 100 * SEC, samples(0));
        let b = node("b", &[1], 105 * SEC, vec![]);
        let t = merge(&[a, b]).expect("merges");
        let ar = |r: usize| {
            t.ranks[r]
                .spans
                .iter()
                .find(|s| s.what == What::Mpi(Op::ALLREDUCE))
                .map(|s| s.begin_ns)
        };
        assert_eq!(ar(1).zip(ar(0)).map(|(b, a)| b - a), Some(5 * SEC));
        assert_eq!(t.warnings.len(), 2);
        assert!(
            t.warnings[0].contains("node b: no clock samples"),
            "{:?}",
            t.warnings
        );
        assert_eq!(t.warnings[1], "no trace file for rank 2, 3 of 4");
    }

    #[test]
    fn duplicate_ranks_are_refused() {
        let a = node("a", &[0, 1], 0, vec![]);
        let b = node("b", &[1], 0, vec![]);
        let e = merge(&[a, b]).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "rank 1 appears twice: in a:rank-1.gzt and in b:rank-1.gzt"
        );
    }

    #[test]
    fn a_bad_file_is_an_error_naming_it() {
        let mut a = node("a", &[0], 0, vec![]);
        a.files
            .push(("rank-7.gzt".into(), b"GRZTRC01 junk".to_vec()));
        let e = merge(&[a]).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "node a: trace file 'rank-7.gzt', byte 0: the header is cut short (13 bytes, a header is 64)"
        );
    }

    #[test]
    fn notes_uninitialised_and_dropped_are_kept() {
        let mut a = node("a", &[0], 0, vec![]);
        a.files.push((
            "note-77.txt".into(),
            b"graze tracer: built for MPICH but this rank runs Open MPI; tracing disabled\n"
                .to_vec(),
        ));
        a.files
            .push(("pid-88.gzt".into(), rank_file(-1, "a", 0, &[])));
        a.files.push(("core".into(), vec![0xff]));
        a.files.push(("clock.json".into(), b"[]".to_vec()));
        let mut dropped = Writer::new(&Header {
            rank: 1,
            world_size: 2,
            pid: 9,
            dropped: 42,
            start_ns: 0,
            host: "a".into(),
        });
        dropped.region("x", 5, 6);
        let mut bytes = dropped.finish();
        bytes.extend_from_slice(&[1, 2, 3]);
        a.files.push(("rank-1.gzt".into(), bytes));
        let t = merge(&[a]).expect("merges");
        assert_eq!(t.ranks.len(), 2);
        assert_eq!(t.ranks[1].dropped, 42);
        assert!(t.ranks[1].truncated);
        assert_eq!(t.ranks[1].spans[0].what, What::Region("x".into()));
        let w = t.warnings.join("\n");
        assert!(
            w.contains("tracer note: graze tracer: built for MPICH"),
            "{w}"
        );
        assert!(w.contains("process 999 never initialised MPI"), "{w}");
        assert!(w.contains("core is not a rank trace file"), "{w}");
        assert!(w.contains("dropped 42 events"), "{w}");
        assert!(w.contains("a:rank-1.gzt: cut in the middle"), "{w}");
        assert!(!w.contains("clock.json"), "{w}");
        assert!(
            w.contains(
                "the rank files disagree on the world size (a:rank-0.gzt: 4, a:rank-1.gzt: 2)"
            ),
            "{w}"
        );
    }

    #[test]
    fn no_rank_files_is_an_error() {
        let a = NodeInput {
            node: "a".into(),
            files: vec![("note-1.txt".into(), b"x".to_vec())],
            clock: vec![],
        };
        let e = merge(&[a]).expect_err("refused");
        assert!(e.to_string().contains("no rank trace files"), "{e}");
    }

    fn arb_sample() -> impl proptest::strategy::Strategy<Value = ClockSample> {
        use proptest::prelude::*;
        (any::<u64>(), any::<i64>(), any::<u64>()).prop_map(|(local_ns, offset_ns, rtt_ns)| {
            ClockSample {
                local_ns,
                offset_ns,
                rtt_ns,
            }
        })
    }

    proptest::proptest! {
        #[test]
        fn any_input_merges_or_is_refused_never_panics(
            files in proptest::collection::vec(
                (0i32..6, proptest::collection::vec((0u64..1_000_000, 0u64..1_000_000), 0..6),
                 proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..3)),
                0..6),
            clock in proptest::collection::vec(arb_sample(), 0..5),
            shift in 0u64..u64::MAX / 2,
        ) {
            let node = NodeInput {
                node: "n".into(),
                files: files
                    .iter()
                    .enumerate()
                    .map(|(i, (rank, ar, flips))| {
                        let ar: Vec<(u64, u64)> =
                            ar.iter().map(|&(a, b)| (a.min(b) + 500, a.max(b) + 500)).collect();
                        let mut bytes = rank_file(*rank, "n", shift, &ar);
                        for &(at, v) in flips {
                            let n = bytes.len();
                            bytes[at % n] = v;
                        }
                        (format!("f{i}.gzt"), bytes)
                    })
                    .collect(),
                clock,
            };
            if let Ok(t) = merge(&[node]) {
                proptest::prop_assert!(t.ranks.windows(2).all(|w| w[0].rank < w[1].rank));
                for r in &t.ranks {
                    proptest::prop_assert!(r.spans.windows(2).all(|w| w[0].begin_ns <= w[1].begin_ns));
                    proptest::prop_assert!(r.spans.iter().all(|s| s.begin_ns <= s.end_ns));
                }
                let first = t.ranks.iter().flat_map(|r| r.spans.iter().map(|s| s.begin_ns)).min();
                proptest::prop_assert!(first.is_none() || first == Some(0));
            }
        }
    }
}
