//! Submit to done for a 4-rank hello on an idle 2-agent loopback cluster, against bare
//! `mpiexec -n 4` on the same machine. Prints figures; asserts nothing.
//! `cargo bench -p graze-tests --bench submit_to_done`.
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn stats(name: &str, mut v: Vec<Duration>) -> f64 {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let med = ms(v[v.len() / 2]);
    println!(
        "  {name:<28} median {med:>7.1} ms   min {:>7.1} ms   max {:>7.1} ms   (n={})",
        ms(v[0]),
        ms(v[v.len() - 1]),
        v.len()
    );
    med
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let trials = if quick { 2 } else { 15 };
    let mut c = Cluster::start(&[]);
    c.add_agent("b2", "127.0.0.2", 2, &[]);
    c.add_agent("b3", "127.0.0.3", 2, &[]);
    c.wait_offered(2);
    let hello = ["mpiexec", "echo", "hello"];

    let mut graze = Vec::new();
    for _ in 0..trials {
        let t = Instant::now();
        let mut args = vec!["-n", "4", "--"];
        args.extend_from_slice(&hello);
        let id = c.submit(&args);
        let out = c.graze(&["wait", &id.to_string()]);
        graze.push(t.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Cores come back once both agents confirm the job's processes are gone.
        wait_for("cores free", Duration::from_secs(10), || {
            let n = c.graze_json(&["nodes", "--json"]);
            n.as_array()
                .unwrap()
                .iter()
                .all(|n| n["used_cores"] == 0)
                .then_some(())
        });
    }
    let mut bare = Vec::new();
    for _ in 0..trials {
        let t = Instant::now();
        let st = Command::new("mpiexec")
            .args(["-n", "4", "echo", "hello"])
            .output()
            .unwrap();
        bare.push(t.elapsed());
        assert!(st.status.success());
    }
    println!("submit_to_done: 4-rank hello, 2 agents x 2 cores on loopback");
    let g = stats("graze submit + wait", graze);
    let b = stats("bare mpiexec -n 4", bare);
    println!("  ratio graze / bare: {:.2}", g / b);
}
