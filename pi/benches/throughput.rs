//! Single-threaded throughput of the Pi kernel (`count_inside`), in samples/s
//! per core. Run with `cargo bench -p graze-pi` (release). Set
//! `GRAZE_PI_BENCH_SAMPLES` to change the sample count (default 2e8).
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it only does a
//! tiny smoke run so the test suite stays fast.

use std::hint::black_box;
use std::time::Instant;

use graze_pi::{count_inside, estimate, Xoshiro256pp};

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let samples: u64 = match std::env::var("GRAZE_PI_BENCH_SAMPLES") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|e| panic!("GRAZE_PI_BENCH_SAMPLES={v:?} is not a count: {e}")),
        Err(_) if benching => 200_000_000,
        Err(_) => 100_000,
    };

    let mut rng = Xoshiro256pp::for_rank(black_box(0x5EED), 0);
    // Warm-up.
    black_box(count_inside(&mut rng, samples.min(1_000_000)));

    let start = Instant::now();
    let inside = black_box(count_inside(&mut rng, black_box(samples)));
    let secs = start.elapsed().as_secs_f64();

    println!(
        "graze-pi kernel: {samples} samples in {secs:.3} s = {:.3e} samples/s per core (pi ~ {:.6})",
        samples as f64 / secs,
        estimate(inside, samples)
    );
}
