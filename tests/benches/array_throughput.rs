//! Issue 11's batch benchmark: 200 four-rank `mpiexec` jobs (a real MPICH hello) on 8 cores
//! (4 agents x 2 cores on loopback), submitted as one array and timed until every task is
//! done, against the limit: the same program run by bare `mpiexec` with the same host-file
//! shape (2 hosts x 2 slots, hydra's fork launcher), two jobs at a time. Prints both and the
//! ratio (target 1.3x); asserts nothing but success. Then the same jobs submitted one by one
//! (a `graze submit` each, then a `graze wait` each), against the same limit.
//! `cargo bench -p graze-tests --bench array_throughput` (`-- --test`: 20 jobs).
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use std::process::Command;
use std::time::Instant;

const HELLO: &str = r#"
#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv) {
    int rank, size;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    printf("hello %d of %d\n", rank, size);
    MPI_Finalize();
    return 0;
}
"#;

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let jobs: u32 = if quick { 20 } else { 200 };
    // Job processes at the bench's own priority, like the bare runs (see submit_to_done.rs).
    std::env::set_var("GRAZE_CPU_WEIGHT", "off");
    let mut c = Cluster::start(&[]);
    for (i, ip) in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
        .iter()
        .enumerate()
    {
        c.add_agent(&format!("b{i}"), ip, 2, &["--nice", "0"]);
    }
    c.wait_offered(4);
    let prog = c.compile_mpi("mpicc", "hello", HELLO);

    let t = Instant::now();
    let range = format!("1-{jobs}");
    let out = c.graze(&[
        "submit",
        "--wait",
        "--parsable",
        "--array",
        &range,
        "-n",
        "4",
        "--",
        "mpiexec",
        &prog,
    ]);
    let graze = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    wait_for("cores free", std::time::Duration::from_secs(30), || {
        let n = c.graze_json(&["nodes", "--json"]);
        n.as_array()
            .unwrap()
            .iter()
            .all(|n| n["used_cores"] == 0)
            .then_some(())
    });

    // The same jobs submitted one by one (one `graze submit` each, as a script would), then
    // waited for one by one.
    let t = Instant::now();
    let ids: Vec<u64> = (0..jobs)
        .map(|_| c.submit(&["-n", "4", "--", "mpiexec", &prog]))
        .collect();
    let submitted = t.elapsed();
    for id in &ids {
        let out = c.graze(&["wait", &id.to_string()]);
        assert!(
            out.status.success(),
            "job {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let single = t.elapsed();

    // The limit: the same work with nothing between, two 4-rank jobs at a time on 8 cores.
    let hosts = c.dir.path().join("bare-hosts");
    std::fs::write(&hosts, "h1:2\nh2:2\n").unwrap();
    let t = Instant::now();
    std::thread::scope(|s| {
        for w in 0..2 {
            let (prog, hosts) = (&prog, &hosts);
            s.spawn(move || {
                for _ in (w..jobs).step_by(2) {
                    let st = Command::new("mpiexec")
                        .args(["-launcher", "fork", "-f"])
                        .arg(hosts)
                        .args(["-n", "4", prog])
                        .output()
                        .unwrap();
                    assert!(st.status.success(), "{st:?}");
                }
            });
        }
    });
    let bare = t.elapsed();
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e3 / f64::from(jobs);
    println!("array_throughput: {jobs} four-rank MPICH hello jobs, 4 agents x 2 cores on loopback");
    println!(
        "  graze, one array (submit --wait)   {:>8.2} s   {:>6.1} ms/job",
        graze.as_secs_f64(),
        per(graze)
    );
    println!(
        "  graze, one by one (submit; wait)   {:>8.2} s   {:>6.1} ms/job   (the submits took {:.2} s)",
        single.as_secs_f64(),
        per(single),
        submitted.as_secs_f64()
    );
    println!(
        "  bare mpiexec, two at a time        {:>8.2} s   {:>6.1} ms/job",
        bare.as_secs_f64(),
        per(bare)
    );
    println!(
        "  ratio graze / bare: array {:.2}, one by one {:.2} (target 1.3)",
        graze.as_secs_f64() / bare.as_secs_f64(),
        single.as_secs_f64() / bare.as_secs_f64()
    );
}
