//! The tracer's overhead per MPI call (issue 16's benchmark): `allreduce_loop.c`
//! (MPI_Allreduce of one double, many times) untraced, with the tracer preloaded but off (no
//! `GRAZE_TRACE_DIR`), and traced; printed, not asserted. On 1 rank the call does no waiting,
//! so the difference is the tracer's own cost; on 2 ranks it is the figure a user sees, but
//! on a busy 2-core machine the ranks' spinning makes it noisy. The same for Open MPI when it
//! is installed. Run: `cargo bench -p graze-agent --bench tracer`
//! (`GRAZE_BENCH_CALLS` sets the calls per run, default 200000).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use graze_agent::tracer::{self, Flavour};
use std::process::Command;

const LOOP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/allreduce_loop.c");
const RUNS: usize = 7;

fn installed(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// ns per Allreduce of one run (rank 0's figure).
fn run(launcher: &[&str], prog: &str, calls: u64, env: &[(&str, &str)]) -> f64 {
    let out = Command::new(launcher[0])
        .args(&launcher[1..])
        .arg(prog)
        .arg(calls.to_string())
        .env_remove("GRAZE_TRACE_DIR")
        .envs(env.iter().copied())
        .output()
        .expect("running the launcher");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("rank 0 prints ns per call")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench(flavour: Flavour, cc: &str, launcher: &[&str], calls: u64) {
    for ranks in ["1", "2"] {
        let mut l = launcher.to_vec();
        l.splice(1..1, ["-n", ranks]);
        bench_ranks(flavour, cc, &l, ranks, calls);
    }
}

fn bench_ranks(flavour: Flavour, cc: &str, launcher: &[&str], ranks: &str, calls: u64) {
    let scratch = tempfile::tempdir().unwrap();
    let lib = tracer::install(scratch.path(), flavour)
        .unwrap()
        .unwrap_or_else(|| panic!("the {} tracer was not built", flavour.name()));
    let prog = scratch.path().join("allreduce_loop");
    let o = Command::new(cc)
        .args(["-O2", "-o"])
        .arg(&prog)
        .arg(LOOP)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let prog = prog.to_str().unwrap();
    let lib = lib.to_str().unwrap();
    let mut plain = Vec::new();
    let mut off = Vec::new();
    let mut on = Vec::new();
    // Interleaved, so that a neighbour's load hits all three alike.
    for i in 0..RUNS {
        let dir = scratch.path().join(format!("trace-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        plain.push(run(launcher, prog, calls, &[]));
        off.push(run(launcher, prog, calls, &[("LD_PRELOAD", lib)]));
        on.push(run(
            launcher,
            prog,
            calls,
            &[
                ("LD_PRELOAD", lib),
                ("GRAZE_TRACE_DIR", dir.to_str().unwrap()),
            ],
        ));
    }
    let (p, f, t) = (median(plain), median(off), median(on));
    println!(
        "{:<8} MPI_Allreduce(1 double), {ranks} rank(s), {calls} calls, median of {RUNS} runs:",
        flavour.name()
    );
    println!("  untraced                         {p:8.1} ns/call");
    println!(
        "  tracer loaded, off (no dir)      {f:8.1} ns/call  ({:+.1} ns)",
        f - p
    );
    println!(
        "  traced                           {t:8.1} ns/call  ({:+.1} ns)",
        t - p
    );
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: keep that quick.
    let full = std::env::args().any(|a| a == "--bench");
    let calls: u64 = std::env::var("GRAZE_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 200_000 } else { 1000 });
    bench(Flavour::Mpich, "mpicc.mpich", &["mpiexec.mpich"], calls);
    if installed("mpicc.openmpi") && installed("mpirun.openmpi") {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let mut l = vec!["mpirun.openmpi", "--oversubscribe"];
        if root {
            l.push("--allow-run-as-root");
        }
        bench(Flavour::OpenMpi, "mpicc.openmpi", &l, calls);
    } else {
        println!("openmpi  not installed: not measured");
    }
}
