//! Checkpoints (issue 12): a checkpointing job vacated by `graze requeue --checkpoint` to
//! running again on two other nodes, its checkpoint sent to the scheduler, stored and restored
//! on the way, for checkpoints of 1 MB and 100 MB (random bytes: gzip cannot shrink them); and
//! a part's transfer against raw QUIC on loopback (graze-net's endpoints and 1 MiB blocks, one
//! stream, no tar, no gzip, no disk). Prints figures; asserts nothing.
//! `cargo bench -p graze-tests --bench checkpoint` (`-- --test`: one small trial).
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One rank: writes `BYTES` random bytes into its checkpoint directory first (the program's
/// own saving is not what is measured), marks its checkpoint done at the signal, and runs
/// until stopped. A restored run says so and ends.
const RANK: &str = r#"#!/bin/sh
r=$PMI_RANK
d=$GRAZE_CHECKPOINT_DIR
if [ "$GRAZE_RESTART_COUNT" -ge 1 ]; then
  echo "rank $r running again with $(wc -c < "$d/$r/data") bytes"
  exit 0
fi
mkdir -p "$d/$r"
head -c "$BYTES" /dev/urandom > "$d/$r/data"
trap ': > "$d/$r.done"' USR1
echo "rank $r ready"
while :; do sleep 0.1; done
"#;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The time (ms since the epoch) of `job`'s first event containing `needle` at or after `from`.
fn event_at(job: &Value, needle: &str, from: u64) -> Option<u64> {
    job["events"].as_array()?.iter().find_map(|e| {
        let at = e["at_ms"].as_u64()?;
        (at >= from && e["what"].as_str()?.contains(needle)).then_some(at)
    })
}

struct Trial {
    /// `graze requeue --checkpoint` to both ranks of the next run printing.
    total: Duration,
    /// Requeue to the checkpoint stored (signal, markers, vacate, pack, transfer, commit).
    stored: Duration,
    /// Stored to the next run's restore starting (the nodes clear, the placement).
    placed: Duration,
    /// Restore starting to both ranks printing (transfer back, unpack, launch).
    restored: Duration,
}

fn trial(bytes_per_rank: u64) -> Trial {
    let mut c = Cluster::start(&[]);
    for (i, ip) in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
        .iter()
        .enumerate()
    {
        c.add_agent(&format!("c{i}"), ip, 1, &[]);
    }
    c.wait_offered(4);
    let script = c.dir.path().join("rank.sh");
    std::fs::write(&script, RANK).unwrap();
    let env = format!("BYTES={bytes_per_rank}");
    let id = c.submit(&[
        "-n",
        "2",
        "--checkpoint",
        "--env",
        &env,
        "--",
        "mpiexec",
        "sh",
        script.to_str().unwrap(),
    ]);
    c.wait_output(id, "ready", 2);
    // The next run goes elsewhere: the two nodes it runs on now take no new job.
    for h in c.hosts(id) {
        let out = c.graze(&["drain", &h]);
        assert!(out.status.success(), "{out:?}");
    }
    // Follow the output, stamping each line as it arrives.
    let mut follow = Command::new(bin("graze"))
        .arg("--access")
        .arg(&c.access)
        .args(["logs", &id.to_string(), "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });

    let from = now_ms();
    let t0 = Instant::now();
    let out = c.graze(&["requeue", &id.to_string(), "--checkpoint"]);
    assert!(out.status.success(), "{out:?}");
    let mut again = 0;
    let end = loop {
        let (at, line) = rx
            .recv_timeout(Duration::from_secs(600))
            .expect("the restored run's output");
        if line.contains("running again") {
            assert!(
                line.contains(&format!("with {bytes_per_rank} bytes")),
                "{line}"
            );
            again += 1;
            if again == 2 {
                break at;
            }
        }
    };
    let total = end - t0;
    let _ = follow.kill();
    let _ = follow.wait();
    let job = c.show(id);
    let stored = event_at(&job, "stored:", from).expect("a stored checkpoint");
    let restore = event_at(&job, "restores checkpoint", from).expect("a restore");
    let ms = |a: u64, b: u64| Duration::from_millis(b.saturating_sub(a));
    Trial {
        total,
        stored: ms(from, stored),
        placed: ms(stored, restore),
        restored: total.saturating_sub(ms(from, restore)),
    }
}

/// Raw QUIC on loopback: `total` bytes in 1 MiB blocks on one stream of a fresh connection
/// between graze-net's endpoints; the time from the first block to the receiver's last byte.
fn raw_quic(total: usize) -> Duration {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let id = graze_net::Identity::load_or_create(dir.path()).unwrap();
        let idle = Duration::from_secs(30);
        let server = graze_net::server_endpoint("127.0.0.1:0".parse().unwrap(), &id, idle).unwrap();
        let addr = server.local_addr().unwrap();
        let recv = tokio::spawn(async move {
            let conn = server.accept().await.unwrap().await.unwrap();
            let (mut send, mut recv) = conn.accept_bi().await.unwrap();
            let mut got = 0usize;
            while let Some(b) = graze_net::recv_block(&mut recv).await.unwrap() {
                got += b.len();
            }
            graze_net::send(&mut send, &got).await.unwrap();
            send.finish().unwrap();
            let _ = send.stopped().await;
            got
        });
        let client =
            graze_net::client_endpoint("127.0.0.1".parse().unwrap(), &id.fingerprint(), idle)
                .unwrap();
        let conn = client.connect(addr, "graze").unwrap().await.unwrap();
        let (mut send, mut back) = conn.open_bi().await.unwrap();
        let block = vec![0x5au8; graze_proto::MAX_BLOCK];
        let t = Instant::now();
        let mut sent = 0;
        while sent < total {
            let n = block.len().min(total - sent);
            graze_net::send_block(&mut send, &block[..n]).await.unwrap();
            sent += n;
        }
        graze_net::send_block(&mut send, &[]).await.unwrap();
        let got: usize = graze_net::recv(&mut back).await.unwrap().unwrap();
        let took = t.elapsed();
        assert_eq!(got, total);
        assert_eq!(recv.await.unwrap(), total);
        took
    })
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let sizes: &[(u64, &str)] = if quick {
        &[(500_000, "1 MB")]
    } else {
        &[(500_000, "1 MB"), (50_000_000, "100 MB")]
    };
    let trials = if quick { 1 } else { 3 };
    let secs = |d: Duration| d.as_secs_f64();
    println!("checkpoint: graze requeue --checkpoint to running again on two other nodes");
    for &(per_rank, name) in sizes {
        let mut runs: Vec<Trial> = (0..trials).map(|_| trial(per_rank)).collect();
        runs.sort_by_key(|t| t.total);
        for t in &runs {
            println!(
                "  {name:>6}: {:>6.2} s in all = {:.2} s to stored (signal, vacate, pack, send) \
                 + {:.2} s to the restore + {:.2} s restore and start",
                secs(t.total),
                secs(t.stored),
                secs(t.placed),
                secs(t.restored)
            );
        }
        let med = &runs[runs.len() / 2];
        let total_bytes = 2 * per_rank;
        println!(
            "  {name:>6}: median {:.2} s; checkpoint to the store at {:.1} MB/s",
            secs(med.total),
            total_bytes as f64 / 1e6 / secs(med.stored).max(1e-3)
        );
    }
    let bytes = if quick { 8 << 20 } else { 100 << 20 };
    let took = raw_quic(bytes);
    println!(
        "  raw QUIC on loopback (graze-net endpoints, 1 MiB blocks): {} MiB in {:.2} s = {:.1} MB/s",
        bytes >> 20,
        secs(took),
        bytes as f64 / 1e6 / secs(took)
    );
}
