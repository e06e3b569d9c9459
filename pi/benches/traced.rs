//! graze-pi's rounds per second untraced against traced (issue 16's benchmark): MPICH's
//! `mpiexec -n 2 graze-pi` with small rounds (so that per-round costs show), without and with
//! the PMPI tracer preloaded; printed, not asserted. Run: `cargo bench -p graze-pi --bench
//! traced` (`GRAZE_PI_BENCH_ROUNDS`, default 200000 rounds of 10000 samples per rank, then a hundredth
//! as many of graze-pi's default 1000000).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_graze-pi");
const RUNS: usize = 5;

/// Rounds per second of one run (wall clock, start-up included).
fn run(samples: u64, rounds: u64, env: &[(&str, &std::ffi::OsStr)]) -> f64 {
    let r = rounds.to_string();
    let samples = samples.to_string();
    let t = Instant::now();
    let out = Command::new("mpiexec.mpich")
        .args([
            "-n",
            "2",
            BIN,
            "--samples",
            &samples,
            "--seed",
            "1",
            "--report-ms",
            "100000",
        ])
        .args(["--min-rounds", &r, "--max-rounds", &r])
        .env_remove("GRAZE_TRACE_DIR")
        .env_remove("GRAZE_CHECKPOINT_DIR")
        .envs(env.iter().copied())
        .output()
        .expect("running mpiexec.mpich");
    let secs = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rounds as f64 / secs
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds: u64 = std::env::var("GRAZE_PI_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 200_000 } else { 50 });
    let scratch = tempfile::tempdir().unwrap();
    let lib = graze_agent::tracer::install(scratch.path(), graze_agent::tracer::Flavour::Mpich)
        .unwrap()
        .expect("the MPICH tracer is built");
    // Tiny rounds (the tracer's worst case), then graze-pi's default round size.
    for (samples, rounds) in [(10_000, rounds), (1_000_000, (rounds / 100).max(10))] {
        let (mut plain, mut traced) = (Vec::new(), Vec::new());
        for i in 0..RUNS {
            let dir = scratch.path().join(format!("trace-{samples}-{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            plain.push(run(samples, rounds, &[]));
            let env = [
                ("LD_PRELOAD", lib.as_os_str()),
                ("GRAZE_TRACE_DIR", dir.as_os_str()),
            ];
            traced.push(run(samples, rounds, &env));
        }
        let (p, t) = (median(plain), median(traced));
        println!(
            "graze-pi, mpiexec -n 2, {rounds} rounds of {samples} samples/rank, median of {RUNS}:"
        );
        println!("  untraced  {p:10.0} rounds/s");
        println!(
            "  traced    {t:10.0} rounds/s  ({:+.1} %)",
            (t / p - 1.0) * 100.0
        );
    }
}
