//! Prints how fast graze-trace handles a large run: parse + merge, Chrome JSON, the summary
//! and OTF2 (when libotf2 is installed), in spans per second. Figures, not assertions:
//! `cargo bench -p graze-trace --bench merge [-- SPANS_PER_RANK]`.

use std::time::Instant;

use graze_trace::format::{Call, Header, Writer};
use graze_trace::{chrome, merge, otf2, summary::Summary, ClockSample, NodeInput, Op};

fn main() {
    let per_rank: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(250_000);
    let ranks = 8;
    let nodes: Vec<NodeInput> = (0..2)
        .map(|n| NodeInput {
            node: format!("node{n}"),
            files: (0..ranks / 2)
                .map(|i| {
                    let rank = n * ranks / 2 + i;
                    let mut w = Writer::new(&Header {
                        rank,
                        world_size: ranks,
                        pid: 1,
                        dropped: 0,
                        start_ns: 0,
                        host: format!("node{n}"),
                    });
                    for k in 0..per_rank / 2 {
                        let t = 1_000_000 + k * 10_000;
                        w.region("sample", t, t + 5_000);
                        w.call(&Call {
                            op: Op::ALLREDUCE,
                            peer: -1,
                            tag: -1,
                            comm_size: ranks,
                            begin_ns: t + 5_000,
                            end_ns: t + 9_000,
                            bytes: 8,
                        });
                    }
                    (format!("rank-{rank}.gzt"), w.finish())
                })
                .collect(),
            clock: (0..60)
                .map(|s| ClockSample {
                    local_ns: s * 2_000_000_000,
                    offset_ns: -(n as i64) * 5_000_000_000 + s as i64 * 1_000,
                    rtt_ns: 80_000,
                })
                .collect(),
        })
        .collect();
    let spans = per_rank * ranks as u64;
    let bytes: usize = nodes
        .iter()
        .flat_map(|n| n.files.iter().map(|f| f.1.len()))
        .sum();
    let rate = |what: &str, t: Instant| {
        let s = t.elapsed().as_secs_f64();
        println!(
            "{what:<16} {:>8.1} ms  {:>6.2} M spans/s",
            s * 1e3,
            spans as f64 / s / 1e6
        );
    };
    println!(
        "{ranks} ranks x {per_rank} spans ({:.1} MiB of rank files)",
        bytes as f64 / (1 << 20) as f64
    );
    let t = Instant::now();
    let trace = match merge(&nodes) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("merge failed: {e}");
            std::process::exit(1);
        }
    };
    rate("parse + merge", t);
    let t = Instant::now();
    let mut json = Vec::new();
    if let Err(e) = chrome::write(&trace, &mut json) {
        eprintln!("chrome: {e}");
        std::process::exit(1);
    }
    rate("chrome json", t);
    println!(
        "{:<16} {:>8.1} MiB",
        "json size",
        json.len() as f64 / (1 << 20) as f64
    );
    let t = Instant::now();
    std::hint::black_box(Summary::of(&trace).to_string());
    rate("summary", t);
    let dir = std::env::temp_dir().join(format!("graze-trace-bench-{}", std::process::id()));
    let t = Instant::now();
    match otf2::write(&trace, &dir) {
        Ok(()) => rate("otf2", t),
        Err(e) => println!("otf2             not measured: {e}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
