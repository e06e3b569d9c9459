//! Clock sync of traced runs (issue 16) on loopback: a traced job runs for a while on one
//! real agent, whose clock-sync samples (a burst of probes at the start, every 3 s and at the
//! end, the lowest round trip of each kept) are read back from the scheduler's store. Prints
//! the error bound (RTT/2) of the samples and the offsets; asserts nothing.
//! `cargo bench -p graze-tests --bench clock_sync` (`-- --test`: a short run).
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use serde_json::Value;
use std::time::Duration;

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    ensure_built();
    let secs = if quick { "2" } else { "15" };
    let mut c = Cluster::start(&[]);
    c.add_agent("c1", "127.0.0.2", 1, &[]);
    c.wait_offered(1);
    let id = c.submit(&["-n", "1", "--trace", "--", "sleep", secs]);
    c.graze(&["wait", &id.to_string()]);
    let clock = c.state_dir().join(format!("traces/{id}/1/c1/clock.json"));
    wait_for("the stored clock samples", Duration::from_secs(60), || {
        clock.exists().then_some(())
    });
    let samples: Value = serde_json::from_slice(&std::fs::read(&clock).unwrap()).unwrap();
    let mut bounds: Vec<u64> = samples
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rtt_ns"].as_u64().unwrap() / 2)
        .collect();
    let offsets: Vec<i64> = samples
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["offset_ns"].as_i64().unwrap())
        .collect();
    bounds.sort_unstable();
    let spread = offsets.iter().max().unwrap() - offsets.iter().min().unwrap();
    println!(
        "clock sync on loopback, a {secs} s traced run: {} samples; error bound (RTT/2) min {} µs, median {} µs, max {} µs; offsets spread {} µs (same clock: the true offset is 0)",
        bounds.len(),
        bounds[0] as f64 / 1000.0,
        bounds[bounds.len() / 2] as f64 / 1000.0,
        bounds[bounds.len() - 1] as f64 / 1000.0,
        spread as f64 / 1000.0
    );
}
