//! graze-pi under graze's PMPI tracer (issue 16): MPICH's `mpiexec -n 2` with the tracer
//! graze-agent embeds preloaded; every rank's file has Init, its "sample" and "allreduce"
//! regions per round with the round's Allreduce inside the latter, and Finalize.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use graze_trace::format::{self, Record};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_graze-pi");

#[test]
fn traced_graze_pi_marks_sample_and_allreduce_per_round() {
    let libdir = tempfile::tempdir().unwrap();
    let lib = graze_agent::tracer::install(libdir.path(), graze_agent::tracer::Flavour::Mpich)
        .unwrap()
        .expect("the MPICH tracer is built (libmpich-dev)");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("timeout")
        .args(["180", "mpiexec.mpich", "-n", "2", BIN])
        .args([
            "--samples",
            "20000",
            "--seed",
            "3",
            "--min-rounds",
            "4",
            "--max-rounds",
            "4",
        ])
        .env("LD_PRELOAD", &lib)
        .env("GRAZE_TRACE_DIR", dir.path())
        .env_remove("GRAZE_CHECKPOINT_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for rank in 0..2 {
        let name = format!("rank-{rank}.gzt");
        let f = format::parse(&name, &std::fs::read(dir.path().join(&name)).unwrap()).unwrap();
        assert_eq!(
            (f.header.rank, f.header.world_size, f.header.dropped),
            (rank, 2, 0)
        );
        let calls: Vec<_> = f
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Call(c) => Some(*c),
                _ => None,
            })
            .collect();
        let ops: Vec<u8> = calls.iter().map(|c| c.op.0).collect();
        // Init, the seed's Bcast, 4 Allreduces, Finalize.
        assert_eq!(ops, [1, 8, 10, 10, 10, 10, 2], "rank {rank}");
        let regions = |want: &str| -> Vec<(u64, u64)> {
            f.records
                .iter()
                .filter_map(|r| match r {
                    Record::Region {
                        name,
                        begin_ns,
                        end_ns,
                        ..
                    } if name == want => Some((*begin_ns, *end_ns)),
                    _ => None,
                })
                .collect()
        };
        let (sample, allreduce) = (regions("sample"), regions("allreduce"));
        assert_eq!(
            (sample.len(), allreduce.len()),
            (4, 4),
            "rank {rank}: {:?}",
            f.records
        );
        for (i, ar) in calls.iter().filter(|c| c.op.0 == 10).enumerate() {
            let (b, e) = allreduce[i];
            assert!(b <= ar.begin_ns && ar.end_ns <= e, "rank {rank} round {i}");
            assert!(
                sample[i].1 <= b,
                "rank {rank} round {i}: sample ends before the allreduce"
            );
        }
    }
}
