//! Single-threaded throughput of the Pi kernel ([`graze_pi::Streams::count_inside`]) in
//! samples/s per core, against a plain C `-O3` xorshift kernel (`benches/xorshift.c`,
//! compiled with `cc -O3` into a temporary directory at run time) with the same sample
//! count, in the same run. Prints both throughputs and the ratio graze/C.
//!
//! Run with `cargo bench -p graze-pi` (release). Set `GRAZE_PI_BENCH_SAMPLES` to change the
//! sample count (default 1e9). Without a C compiler (`cc`, or `$CC`) the C half is skipped
//! with a message. Under `cargo test --all-targets` (no `--bench` argument) it only does a
//! tiny smoke run so the test suite stays fast.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use graze_pi::estimate;
use graze_pi::kernel::{SimdPath, Streams};

const C_SOURCE: &str = include_str!("xorshift.c");

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let samples: u64 = match std::env::var("GRAZE_PI_BENCH_SAMPLES") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|e| panic!("GRAZE_PI_BENCH_SAMPLES={v:?} is not a count: {e}")),
        Err(_) if benching => 1_000_000_000,
        Err(_) => 100_000,
    };

    let detected = SimdPath::detect();
    let mut paths = vec![detected];
    if detected != SimdPath::Portable {
        paths.push(SimdPath::Portable);
    }
    let mut graze = Vec::new();
    for path in paths {
        let rate = bench_graze(path, samples);
        graze.push((path, rate));
    }

    let Some(c_rate) = bench_c(samples) else {
        return;
    };
    for (path, rate) in graze {
        println!(
            "ratio graze/C ({path}{}): {:.2}",
            if path == detected { ", used" } else { "" },
            rate / c_rate
        );
    }
}

/// Times the kernel on `path`; prints and returns samples/s.
fn bench_graze(path: SimdPath, samples: u64) -> f64 {
    let mut streams = Streams::for_rank(black_box(0x5EED), 0);
    // Warm-up.
    black_box(streams.count_inside_on(path, samples.min(1_000_000)));
    let start = Instant::now();
    let inside = black_box(streams.count_inside_on(path, black_box(samples)));
    let secs = start.elapsed().as_secs_f64();
    let rate = samples as f64 / secs;
    println!(
        "graze-pi kernel ({path}): {samples} samples in {secs:.3} s = {rate:.3e} samples/s per \
         core (pi ~ {:.6})",
        estimate(inside, samples)
    );
    rate
}

/// Compiles and runs `xorshift.c`; prints and returns samples/s, or `None` (said why) when
/// there is no C compiler.
fn bench_c(samples: u64) -> Option<f64> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let src = dir.path().join("xorshift.c");
    let exe = dir.path().join("xorshift");
    std::fs::write(&src, C_SOURCE).expect("writing xorshift.c");
    match Command::new(&cc)
        .arg("-O3")
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .output()
    {
        Err(e) => {
            println!(
                "C baseline skipped: cannot run the C compiler '{cc}' ({e}); install one \
                 (Debian: `apt-get install gcc`) or set CC"
            );
            return None;
        }
        Ok(out) if !out.status.success() => panic!(
            "'{cc} -O3 xorshift.c' failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Ok(_) => {}
    }
    Some(run_c(&exe, samples))
}

fn run_c(exe: &Path, samples: u64) -> f64 {
    let out = Command::new(exe)
        .arg(samples.to_string())
        .arg("24301")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", exe.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} failed ({}): {text}{}",
        exe.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // "SAMPLES INSIDE SECONDS"
    let fields: Vec<f64> = text
        .split_whitespace()
        .map(|f| {
            f.parse()
                .unwrap_or_else(|e| panic!("bad C output {text:?}: {e}"))
        })
        .collect();
    let [n, inside, secs] = fields.as_slice() else {
        panic!("bad C output {text:?}: expected 'SAMPLES INSIDE SECONDS'");
    };
    let rate = n / secs;
    println!(
        "C -O3 xorshift kernel: {n} samples in {secs:.3} s = {rate:.3e} samples/s per core \
         (pi ~ {:.6})",
        4.0 * inside / n
    );
    rate
}
