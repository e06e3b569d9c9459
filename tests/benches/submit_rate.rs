//! Issue 13 item 2(b): durable submits per second through the real client library
//! (`graze::client`), each acknowledged only after the scheduler committed it. A scheduler
//! and one node that never offers its cores (the jobs stay queued): first one submit per connection (connect, hello,
//! submit, close; one client after another, then 16 at once), then many submits over one
//! connection (`Client::submit_many`, pipelined). Prints the rates against the targets (500/s
//! and 5,000/s); asserts nothing but success.
//! `cargo bench -p graze-tests --bench submit_rate` (`-- --test`: fewer jobs).
#![allow(clippy::unwrap_used)]

use graze::client::Client;
use graze_proto::JobSpec;
use graze_tests::*;
use std::time::Instant;

/// Targets: one submit per connection, and many over one connection.
const TARGET_ONE: f64 = 500.0;
const TARGET_MANY: f64 = 5_000.0;
/// Clients submitting at once in the concurrent one-per-connection run.
const CLIENTS: usize = 16;

fn spec() -> JobSpec {
    JobSpec {
        nprocs: 1,
        command: vec!["true".into()],
        cwd: Some("/tmp".into()),
        user: "bench".into(),
        ..JobSpec::default()
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let (one, many) = if quick { (100, 1_000) } else { (1_000, 20_000) };
    let mut c = Cluster::start(&[]);
    // One node, never offered (its owner was here a minute ago): jobs are accepted, not run.
    c.add_agent("b2", "127.0.0.2", 1, &["--start-after", "2h"]);
    wait_for(
        "the node to register",
        std::time::Duration::from_secs(20),
        || (c.graze_json(&["nodes", "--json"]).as_array()?.len() == 1).then_some(()),
    );
    let access = graze_net::Access::load(&c.access).unwrap();
    // One thread, like the `graze` command's runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rate = |n: usize, t: Instant| n as f64 / t.elapsed().as_secs_f64();
    println!("submit_rate: durable submits through graze::client, scheduler on loopback");

    // One per connection, one client after another; where each one's time goes.
    let t = Instant::now();
    let mut parts = [Vec::new(), Vec::new(), Vec::new()];
    rt.block_on(async {
        for _ in 0..one {
            let t = Instant::now();
            let client = Client::connect(&access).await.unwrap();
            parts[0].push(t.elapsed());
            let t = Instant::now();
            client.submit(spec()).await.unwrap();
            parts[1].push(t.elapsed());
            let t = Instant::now();
            client.close().await;
            parts[2].push(t.elapsed());
        }
    });
    let r = rate(one, t);
    println!(
        "  one per connection, sequential   {one:>6} submits  {r:>8.0}/s   ratio to {TARGET_ONE:.0}/s: {:.2}",
        r / TARGET_ONE
    );
    let med = |v: &mut Vec<std::time::Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e3
    };
    println!(
        "    medians: connect and hello {:.2} ms, submit (with its commit) {:.2} ms, close {:.2} ms",
        med(&mut parts[0]),
        med(&mut parts[1]),
        med(&mut parts[2])
    );

    // One per connection, CLIENTS clients at once.
    let t = Instant::now();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..CLIENTS {
            let access = access.clone();
            tasks.spawn(async move {
                for _ in (w..one).step_by(CLIENTS) {
                    let client = Client::connect(&access).await.unwrap();
                    client.submit(spec()).await.unwrap();
                    client.close().await;
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    });
    let r = rate(one, t);
    println!(
        "  one per connection, {CLIENTS} at once  {one:>6} submits  {r:>8.0}/s   ratio to {TARGET_ONE:.0}/s: {:.2}",
        r / TARGET_ONE
    );

    // Many over one connection.
    let t = Instant::now();
    let ids = rt.block_on(async {
        let client = Client::connect(&access).await.unwrap();
        let ids = client.submit_many((0..many).map(|_| spec())).await.unwrap();
        client.close().await;
        ids
    });
    let r = rate(many, t);
    assert_eq!(ids.len(), many);
    println!(
        "  many over one connection         {many:>6} submits  {r:>8.0}/s   ratio to {TARGET_MANY:.0}/s: {:.2}",
        r / TARGET_MANY
    );
}
