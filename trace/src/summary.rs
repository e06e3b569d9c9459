//! `graze trace --summary`: per rank, the time in each MPI call and user region and the bytes
//! sent; per collective, which rank arrived last and how long the others waited for it (the
//! load imbalance).
//!
//! Collectives are matched by order: the n-th call of an op with a given communicator size on
//! each rank is one instance. A rank's wait in an instance is the time from its arrival
//! (begin) to the last rank's arrival. Non-blocking collectives (`MPI_Iallreduce`) are left out:
//! their span is only the start. Programs that run collectives on several communicators of
//! the same size interleave them here.

use std::collections::BTreeMap;
use std::fmt;

use crate::{op_class, op_name, Op, OpClass, Trace, What};

/// Count and time of one kind of span.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
}

impl Stats {
    fn add(&mut self, ns: u64) {
        self.count += 1;
        self.total_ns = self.total_ns.saturating_add(ns);
        self.max_ns = self.max_ns.max(ns);
    }
}

/// One rank's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankSummary {
    pub rank: i32,
    pub node: String,
    /// From its first begin to its last end.
    pub span_ns: u64,
    /// Time in MPI calls (sum over calls).
    pub mpi_ns: u64,
    /// Per MPI op, most time first.
    pub calls: Vec<(Op, Stats)>,
    /// Per user region, most time first.
    pub regions: Vec<(String, Stats)>,
    /// Payload bytes of point-to-point sends (Send, Isend, Ssend, Sendrecv).
    pub bytes_sent: u64,
    /// Payload bytes this rank contributed to collectives.
    pub collective_bytes: u64,
    pub dropped: u64,
    pub truncated: bool,
}

/// One collective op's load imbalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectiveSummary {
    pub op: Op,
    pub comm_size: Option<u32>,
    /// Instances matched across ranks.
    pub instances: u64,
    /// How many ranks took part.
    pub ranks: usize,
    /// The ranks counts of calls differ (some instances lack some ranks).
    pub uneven: bool,
    /// (rank, instances in which it arrived last), most often first.
    pub slowest: Vec<(i32, u64)>,
    /// Mean and largest wait of the ranks that were not last.
    pub mean_wait_ns: u64,
    pub max_wait_ns: u64,
}

/// The whole summary; `Display` prints it as aligned tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub ranks: Vec<RankSummary>,
    pub collectives: Vec<CollectiveSummary>,
}

fn sorted_by_time<K: Ord>(m: BTreeMap<K, Stats>) -> Vec<(K, Stats)> {
    let mut v: Vec<(K, Stats)> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.total_ns.cmp(&a.1.total_ns).then(a.0.cmp(&b.0)));
    v
}

fn is_send(op: Op) -> bool {
    matches!(op, Op::SEND | Op::ISEND | Op::SSEND | Op::SENDRECV)
}

impl Summary {
    pub fn of(trace: &Trace) -> Summary {
        let mut ranks = Vec::new();
        // (op, comm size) -> rank -> arrivals in order
        let mut arrivals: BTreeMap<(u8, Option<u32>), BTreeMap<i32, Vec<u64>>> = BTreeMap::new();
        for r in &trace.ranks {
            let mut calls: BTreeMap<u8, Stats> = BTreeMap::new();
            let mut regions: BTreeMap<String, Stats> = BTreeMap::new();
            let (mut mpi_ns, mut sent, mut coll) = (0u64, 0u64, 0u64);
            for s in &r.spans {
                let d = s.end_ns.saturating_sub(s.begin_ns);
                match &s.what {
                    What::Mpi(op) => {
                        calls.entry(op.0).or_default().add(d);
                        mpi_ns = mpi_ns.saturating_add(d);
                        let bytes = s.bytes.unwrap_or(0);
                        let class = op_class(*op);
                        if is_send(*op) {
                            sent = sent.saturating_add(bytes);
                        } else if class == OpClass::Collective {
                            coll = coll.saturating_add(bytes);
                        }
                        if class == OpClass::Collective && *op != Op::IALLREDUCE {
                            arrivals
                                .entry((op.0, s.comm_size))
                                .or_default()
                                .entry(r.rank)
                                .or_default()
                                .push(s.begin_ns);
                        }
                    }
                    What::Region(name) => regions.entry(name.clone()).or_default().add(d),
                }
            }
            let first = r.spans.iter().map(|s| s.begin_ns).min().unwrap_or(0);
            let last = r.spans.iter().map(|s| s.end_ns).max().unwrap_or(0);
            ranks.push(RankSummary {
                rank: r.rank,
                node: r.node.clone(),
                span_ns: last.saturating_sub(first),
                mpi_ns,
                calls: sorted_by_time(calls)
                    .into_iter()
                    .map(|(op, s)| (Op(op), s))
                    .collect(),
                regions: sorted_by_time(regions),
                bytes_sent: sent,
                collective_bytes: coll,
                dropped: r.dropped,
                truncated: r.truncated,
            });
        }
        let mut collectives = Vec::new();
        for ((op, comm_size), per_rank) in arrivals {
            let most = per_rank.values().map(Vec::len).max().unwrap_or(0);
            let fewest = per_rank.values().map(Vec::len).min().unwrap_or(0);
            let mut last_counts: BTreeMap<i32, u64> = BTreeMap::new();
            let (mut waits, mut wait_sum, mut max_wait) = (0u64, 0u128, 0u64);
            let mut instances = 0;
            for n in 0..most {
                let here: Vec<(i32, u64)> = per_rank
                    .iter()
                    .filter_map(|(&rank, a)| a.get(n).map(|&t| (rank, t)))
                    .collect();
                // The last to arrive; on a tie the lowest rank.
                let Some(&(last_rank, last_t)) =
                    here.iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
                else {
                    continue;
                };
                instances += 1;
                if here.len() > 1 {
                    *last_counts.entry(last_rank).or_default() += 1;
                }
                for &(rank, t) in &here {
                    if rank != last_rank {
                        let w = last_t - t;
                        waits += 1;
                        wait_sum += u128::from(w);
                        max_wait = max_wait.max(w);
                    }
                }
            }
            let mut slowest: Vec<(i32, u64)> = last_counts.into_iter().collect();
            slowest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            collectives.push(CollectiveSummary {
                op: Op(op),
                comm_size,
                instances,
                ranks: per_rank.len(),
                uneven: most != fewest,
                slowest,
                mean_wait_ns: if waits == 0 {
                    0
                } else {
                    u64::try_from(wait_sum / u128::from(waits)).unwrap_or(u64::MAX)
                },
                max_wait_ns: max_wait,
            });
        }
        Summary { ranks, collectives }
    }
}

/// A duration for people: `850 ns`, `12.3 µs`, `4.56 ms`, `1.234 s`.
pub fn human_ns(ns: u64) -> String {
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", f / 1e6)
    } else {
        format!("{:.3} s", f / 1e9)
    }
}

/// Bytes for people: `800 B`, `1.5 KiB`, `3.2 MiB`, `1.1 GiB`.
pub fn human_bytes(b: u64) -> String {
    let f = b as f64;
    if b < 1024 {
        format!("{b} B")
    } else if b < 1 << 20 {
        format!("{:.1} KiB", f / 1024.0)
    } else if b < 1 << 30 {
        format!("{:.1} MiB", f / f64::from(1u32 << 20))
    } else {
        format!("{:.1} GiB", f / f64::from(1u32 << 30))
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.ranks {
            let pct = if r.span_ns == 0 {
                0.0
            } else {
                100.0 * r.mpi_ns as f64 / r.span_ns as f64
            };
            write!(
                f,
                "rank {} on {}: {} traced, {} in MPI ({pct:.1}%), {} sent point-to-point, {} into collectives",
                r.rank,
                r.node,
                human_ns(r.span_ns),
                human_ns(r.mpi_ns),
                human_bytes(r.bytes_sent),
                human_bytes(r.collective_bytes),
            )?;
            if r.dropped > 0 {
                write!(f, ", {} events dropped (size limit)", r.dropped)?;
            }
            if r.truncated {
                write!(f, ", file cut short")?;
            }
            writeln!(f)?;
            let rows: Vec<(String, Stats)> = r
                .calls
                .iter()
                .map(|(op, s)| (op_name(*op).into_owned(), *s))
                .chain(r.regions.iter().map(|(n, s)| (format!("region {n}"), *s)))
                .collect();
            let w = rows
                .iter()
                .map(|(n, _)| n.chars().count())
                .max()
                .unwrap_or(0)
                .max(4);
            writeln!(
                f,
                "  {:<w$}  {:>8}  {:>11}  {:>11}  {:>11}",
                "call", "count", "total", "mean", "max"
            )?;
            for (name, s) in rows {
                writeln!(
                    f,
                    "  {name:<w$}  {:>8}  {:>11}  {:>11}  {:>11}",
                    s.count,
                    human_ns(s.total_ns),
                    human_ns(s.total_ns / s.count.max(1)),
                    human_ns(s.max_ns),
                )?;
            }
            writeln!(f)?;
        }
        if self.collectives.is_empty() {
            return writeln!(f, "no blocking collectives");
        }
        writeln!(
            f,
            "collectives (the n-th call of each rank matched; wait: from a rank's arrival to the last rank's)"
        )?;
        let rows: Vec<[String; 6]> = self
            .collectives
            .iter()
            .map(|c| {
                let slowest: Vec<String> = c
                    .slowest
                    .iter()
                    .take(3)
                    .map(|(r, n)| format!("rank {r} ({n}x)"))
                    .collect();
                let more = if c.slowest.len() > 3 { ", ..." } else { "" };
                [
                    op_name(c.op).into_owned(),
                    c.comm_size.map_or("?".into(), |n| n.to_string()),
                    format!("{}{}", c.instances, if c.uneven { " (uneven)" } else { "" }),
                    format!("{}{more}", slowest.join(", ")),
                    human_ns(c.mean_wait_ns),
                    human_ns(c.max_wait_ns),
                ]
            })
            .collect();
        let head = [
            "call",
            "size",
            "calls",
            "last to arrive",
            "mean wait",
            "max wait",
        ];
        let mut w = head.map(|h| h.chars().count());
        for row in &rows {
            for (i, cell) in row.iter().enumerate() {
                w[i] = w[i].max(cell.chars().count());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, c: [&str; 6]| {
            writeln!(
                f,
                "  {:<w0$}  {:>w1$}  {:>w2$}  {:<w3$}  {:>w4$}  {:>w5$}",
                c[0],
                c[1],
                c[2],
                c[3],
                c[4],
                c[5],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3],
                w4 = w[4],
                w5 = w[5]
            )
        };
        line(f, head)?;
        for row in &rows {
            line(f, row.each_ref().map(String::as_str))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RankTrack, Span};

    fn span(begin_ns: u64, end_ns: u64, what: What, bytes: Option<u64>) -> Span {
        Span {
            comm_size: Some(3),
            bytes,
            ..Span::new(begin_ns, end_ns, what)
        }
    }

    /// Three ranks, two Allreduces: rank 2 arrives last in the first (at 1000; others at 0
    /// and 400), rank 0 in the second (at 5000; others at 4000 and 4500).
    fn trace() -> Trace {
        let arrivals = [[0u64, 5_000], [400, 4_000], [1_000, 4_500]];
        let ranks = arrivals
            .iter()
            .enumerate()
            .map(|(r, a)| {
                let mut spans = vec![
                    span(a[0], 1_200, What::Mpi(Op::ALLREDUCE), Some(8)),
                    span(2_000, 3_000, What::Region("compute".into()), None),
                    span(3_000, 3_100, What::Mpi(Op::SEND), Some(100)),
                    span(a[1], 5_300, What::Mpi(Op::ALLREDUCE), Some(8)),
                ];
                if r == 1 {
                    spans.push(span(6_000, 6_100, What::Mpi(Op::BARRIER), None));
                }
                RankTrack {
                    rank: r as i32,
                    node: if r < 2 { "a".into() } else { "b".into() },
                    pid: 1,
                    spans,
                    dropped: 0,
                    truncated: false,
                }
            })
            .collect();
        Trace {
            start_ns: 0,
            ranks,
            nodes: vec![],
            warnings: vec![],
        }
    }

    #[test]
    fn per_rank_figures() {
        let s = Summary::of(&trace());
        let r0 = &s.ranks[0];
        assert_eq!(r0.calls[0].0, Op::ALLREDUCE);
        assert_eq!(
            r0.calls[0].1,
            Stats {
                count: 2,
                total_ns: 1_200 + 300,
                max_ns: 1_200
            }
        );
        assert_eq!(
            r0.regions,
            [(
                "compute".to_string(),
                Stats {
                    count: 1,
                    total_ns: 1_000,
                    max_ns: 1_000
                }
            )]
        );
        assert_eq!(r0.bytes_sent, 100);
        assert_eq!(r0.collective_bytes, 16);
        assert_eq!(r0.mpi_ns, 1_200 + 300 + 100);
        assert_eq!(r0.span_ns, 5_300);
    }

    #[test]
    fn slowest_rank_and_waits() {
        let s = Summary::of(&trace());
        let ar = s
            .collectives
            .iter()
            .find(|c| c.op == Op::ALLREDUCE)
            .expect("allreduce");
        assert_eq!(ar.instances, 2);
        assert_eq!(ar.ranks, 3);
        assert!(!ar.uneven);
        assert_eq!(ar.slowest, [(0, 1), (2, 1)]);
        // Waits: 1000, 600 (first), 1000, 500 (second).
        assert_eq!(ar.max_wait_ns, 1_000);
        assert_eq!(ar.mean_wait_ns, (1_000 + 600 + 1_000 + 500) / 4);
        let barrier = s
            .collectives
            .iter()
            .find(|c| c.op == Op::BARRIER)
            .expect("barrier");
        assert_eq!(barrier.ranks, 1);
        assert_eq!(barrier.instances, 1);
        assert!(barrier.slowest.is_empty());
        assert_eq!(barrier.max_wait_ns, 0);
    }

    #[test]
    fn uneven_counts_are_flagged() {
        let mut t = trace();
        t.ranks[2].spans.pop();
        let s = Summary::of(&t);
        let ar = &s.collectives[0];
        assert!(ar.uneven);
        assert_eq!(ar.instances, 2);
        assert!(s.to_string().contains("2 (uneven)"), "{s}");
    }

    #[test]
    fn prints_aligned_tables() {
        let text = Summary::of(&trace()).to_string();
        assert!(text.contains("rank 2 on b: 4.3 µs traced"), "{text}");
        assert!(text.contains("100 B sent point-to-point"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        let head = lines
            .iter()
            .position(|l| l.trim_start().starts_with("call") && l.contains("last to arrive"))
            .expect("collectives header");
        let row = lines[head + 1];
        assert!(row.trim_start().starts_with("MPI_Allreduce"), "{text}");
        assert!(row.contains("rank 0 (1x), rank 2 (1x)"), "{text}");
        // Columns line up: "max wait" ends where the row's last cell ends.
        assert_eq!(lines[head].chars().count(), row.chars().count(), "{text}");
        let r0 = lines
            .iter()
            .position(|l| l.starts_with("rank 0"))
            .expect("rank 0");
        assert!(
            lines[r0 + 2].trim_start().starts_with("MPI_Allreduce"),
            "{text}"
        );
        assert!(text.contains("region compute"), "{text}");
    }

    #[test]
    fn humans() {
        assert_eq!(human_ns(850), "850 ns");
        assert_eq!(human_ns(12_345), "12.3 µs");
        assert_eq!(human_ns(4_560_000), "4.56 ms");
        assert_eq!(human_ns(1_234_000_000), "1.234 s");
        assert_eq!(human_bytes(800), "800 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
