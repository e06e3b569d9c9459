//! Time from a node's loss (its agent SIGKILLed, its link silent) to the job running again on
//! other nodes. Target: under node_timeout + 1 s. Prints figures; asserts nothing.
//! `cargo bench -p graze-tests --bench node_loss`.
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use std::time::{Duration, Instant};

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let trials = if quick { 1 } else { 5 };
    let t = ["--node-timeout", "3s"];
    let mut figures = Vec::new();
    for trial in 0..trials {
        let mut c = Cluster::start(&t);
        for (i, ip) in ["127.0.0.2", "127.0.0.3", "127.0.0.4"].iter().enumerate() {
            c.add_agent(&format!("n{i}"), ip, 2, &t);
        }
        c.wait_offered(3);
        let id = c.submit(&["-n", "2", "--", "mpiexec", "sh", "-c", "echo up; sleep 60"]);
        c.wait_output(id, "up", 2);
        let host = c.hosts(id)[0].clone();
        let a = c.agents.iter_mut().find(|a| a.name == host).unwrap();
        a.child.kill().unwrap();
        let lost = Instant::now();
        wait_for("the job running again", Duration::from_secs(60), || {
            let j = c.show(id);
            (j["requeues"] == 1 && j["state"] == "running").then_some(())
        });
        let again = lost.elapsed();
        println!(
            "  trial {trial}: running again {:.2} s after the node was lost",
            again.as_secs_f64()
        );
        figures.push(again.as_secs_f64());
    }
    figures.sort_by(|a, b| a.total_cmp(b));
    println!(
        "node_loss: node_timeout 3 s, target < 4 s; median {:.2} s, max {:.2} s",
        figures[figures.len() / 2],
        figures[figures.len() - 1]
    );
}
