//! Issue 13 item 3: the scheduler at 1,000, 2,000, 5,000 and 10,000 agents with 100,000 queued
//! jobs. A real `graze-scheduler` process on 127.0.0.1; simulated agents (`graze_tests::sim`:
//! tokio tasks in this process speaking the real protocol over real QUIC, an agent token, a
//! status a second, 1-core no-op jobs of 30 s, one agent in two offering, owners coming back
//! now and then) from 127.0.1.0-127.0.1.255, the agents of one address sharing its endpoint; the 100,000 jobs submitted first with the real
//! `graze submit --array` (10 arrays of 10,000); one `graze top` data feed (the watch stream,
//! fed into `graze top`'s own `App` and drawn at 200x60 once a second) connected throughout.
//! At each size, after the agents registered, it holds for a while and prints the scheduler's
//! CPU (from /proc/PID/stat) and RSS (/proc/PID/status), its open files, the time from an
//! agent's registration to its first `StartJob`, and the watch's bytes per second and frame
//! time, each with its ratio to the target. Asserts nothing.
//! `cargo bench -p graze-tests --bench scale` (`-- --test`: 100 and 200 agents, 2,000 jobs;
//! `GRAZE_SCALE_SIZES=1000,2000`, `GRAZE_SCALE_HOLD_SECS=20`, `GRAZE_SCALE_JOBS=100000`).
#![allow(clippy::unwrap_used)]

use graze::top::{App, DataEvent, Event};
use graze_proto::{ClientReply, ClientRequest, Role};
use graze_tests::sim::{self, Sim, SimConfig};
use graze_tests::Cluster;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CPU_TARGET: f64 = 0.5; // of one core, at 10,000 agents
const RSS_TARGET_KIB: f64 = 1024.0 * 1024.0; // 1 GiB
const FIRST_WORK_TARGET_MS: f64 = 1000.0;

#[derive(Default)]
struct WatchStats {
    /// Replies received.
    replies: AtomicU64,
    /// Bytes the watch connection received (UDP payload).
    rx_bytes: AtomicU64,
    /// Frame times (ms) since the last report.
    frames: Mutex<Vec<f64>>,
    /// Time from the Watch request to the snapshot in the App (ms).
    snapshot_ms: AtomicU64,
    stop: AtomicBool,
}

fn env_or<T: std::str::FromStr>(name: &str, d: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(d)
}

async fn watch_feed(access: graze_net::Access, w: Arc<WatchStats>) {
    let s = match graze_net::connect(&access, Role::Client, None, Duration::from_secs(30)).await {
        Ok(s) => s,
        Err(e) => return eprintln!("watch: connect: {e}"),
    };
    let (send, recv) = s.conn.open_bi().await.unwrap();
    let mut f = graze_net::Framed { send, recv };
    let asked = Instant::now();
    f.send(&ClientRequest::Watch).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        loop {
            match f.recv::<ClientReply>().await {
                Ok(Some(r)) => {
                    if tx.send(r).is_err() {
                        break;
                    }
                }
                Ok(None) => break eprintln!("watch: the scheduler ended the stream"),
                Err(e) => break eprintln!("watch: {e}"),
            }
        }
    });
    let mut app = App::new(graze::format::now_ms(), false);
    let mut term = Terminal::new(TestBackend::new(200, 60)).unwrap();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut have_snapshot = false;
    while !w.stop.load(Relaxed) {
        tokio::select! {
            r = rx.recv() => {
                let Some(r) = r else { break };
                w.replies.fetch_add(1, Relaxed);
                let ev = match r {
                    ClientReply::Snapshot { nodes, jobs } => {
                        have_snapshot = true;
                        w.snapshot_ms.store(asked.elapsed().as_millis() as u64, Relaxed);
                        DataEvent::Snapshot { nodes, jobs }
                    }
                    ClientReply::NodeChanged(n) => DataEvent::Node(n),
                    ClientReply::NodeLoads(l) => DataEvent::Loads(l),
                    ClientReply::JobChanged(j) => DataEvent::Job(j),
                    other => {
                        eprintln!("watch: unexpected {other:?}");
                        break;
                    }
                };
                app.update(Event::Data(ev));
            }
            _ = tick.tick() => {
                w.rx_bytes.store(s.conn.stats().udp_rx.bytes, Relaxed);
                if have_snapshot {
                    app.update(Event::Tick(graze::format::now_ms()));
                    let t = Instant::now();
                    app.prepare();
                    term.draw(|f| app.draw(f)).unwrap();
                    w.frames.lock().unwrap().push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
    }
    reader.abort();
    s.conn.close(0u32.into(), b"done");
}

fn ratio(v: f64, target: f64) -> String {
    format!("{:.2}x target", v / target)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let sizes: Vec<usize> = std::env::var("GRAZE_SCALE_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| {
            if quick {
                vec![100, 200]
            } else {
                vec![1000, 2000, 5000, 10_000]
            }
        });
    let jobs: u32 = env_or("GRAZE_SCALE_JOBS", if quick { 2000 } else { 100_000 });
    let hold = Duration::from_secs(env_or("GRAZE_SCALE_HOLD_SECS", if quick { 5 } else { 20 }));
    let (soft, hard) = sim::raise_nofile();
    println!("scale: open-file limit of this tool raised to {soft} (hard {hard})");

    // Jobs are queued before any agent is there: accept them anyway.
    let c = Cluster::start(&["--max-job-cores", "64"]);
    let pid = c.scheduler.id();
    println!(
        "scale: scheduler pid {pid}, open-file limit {} (soft/hard), {} fds at start",
        sim::proc_nofile(pid),
        sim::proc_fds(pid)
    );
    let agent_access = graze_net::Access::load(&c.create_token("agent", "sim")).unwrap();
    let admin_access = graze_net::Access::load(&c.access).unwrap();

    // The queue: arrays of at most 10,000 tasks, through the real client.
    let cpu0 = sim::proc_cpu(pid);
    let t = Instant::now();
    let mut left = jobs;
    while left > 0 {
        let n = left.min(graze_proto::MAX_ARRAY_TASKS);
        left -= n;
        let out = c.graze(&[
            "submit",
            "--array",
            &format!("1-{n}"),
            "-n",
            "1",
            "--",
            "true",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    println!(
        "scale: {jobs} jobs queued in {:.1} s (scheduler CPU {:.1} s, {:.0} us/job); RSS {:.0} MiB",
        t.elapsed().as_secs_f64(),
        (sim::proc_cpu(pid) - cpu0).as_secs_f64(),
        (sim::proc_cpu(pid) - cpu0).as_secs_f64() * 1e6 / f64::from(jobs.max(1)),
        sim::proc_status(pid, "VmRSS") as f64 / 1024.0
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let w = Arc::new(WatchStats::default());
    let watch = rt.spawn(watch_feed(admin_access, w.clone()));
    let mut s = Sim::new(SimConfig {
        access: agent_access,
        cores: 1,
        job_time: Duration::from_secs(30),
        status_every: Duration::from_secs(1),
        offer_one_in: 2,
        owner_every: Some(Duration::from_secs(120)),
        owner_for: Duration::from_secs(5),
        node_timeout: graze_proto::DEFAULT_NODE_TIMEOUT,
    });
    let stats = s.stats.clone();
    let _guard = rt.enter();
    for &n in &sizes {
        let before = s.len();
        let ramp = Instant::now();
        // Join at about 500 agents a second.
        while s.len() < n {
            for _ in 0..25 {
                if s.len() < n {
                    let i = s.len();
                    s.spawn(i, sim::loopback(i));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let deadline = Instant::now() + Duration::from_secs(180);
        while ((stats.registered.load(Relaxed) + stats.failures.load(Relaxed)) as usize) < n
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let ramp_s = ramp.elapsed().as_secs_f64();
        let registered = stats.registered.load(Relaxed);
        // Settle, then the steady window.
        std::thread::sleep(Duration::from_secs(2));
        lock_clear(&w.frames);
        let (cpu_a, wall_a, rx_a) = (sim::proc_cpu(pid), Instant::now(), w.rx_bytes.load(Relaxed));
        let (gen_a, drops_a) = (sim::proc_cpu(std::process::id()), udp_rcvbuf_errors());
        let started_a = stats.started.load(Relaxed);
        std::thread::sleep(hold);
        let cpu = (sim::proc_cpu(pid) - cpu_a).as_secs_f64() / wall_a.elapsed().as_secs_f64();
        let gen_cpu = (sim::proc_cpu(std::process::id()) - gen_a).as_secs_f64()
            / wall_a.elapsed().as_secs_f64();
        let drops = udp_rcvbuf_errors().saturating_sub(drops_a);
        let rx = (w.rx_bytes.load(Relaxed) - rx_a) as f64 / wall_a.elapsed().as_secs_f64();
        let started = stats.started.load(Relaxed) - started_a;
        let rss = sim::proc_status(pid, "VmRSS") as f64;
        let hwm = sim::proc_status(pid, "VmHWM") as f64;
        let mut first: Vec<u64> = stats.first_work_us.lock().unwrap().drain(..).collect();
        let mut refill: Vec<u64> = stats.refill_us.lock().unwrap().drain(..).collect();
        let mut frames: Vec<f64> = w.frames.lock().unwrap().drain(..).collect();
        frames.sort_by(f64::total_cmp);
        let fmean = frames.iter().sum::<f64>() / frames.len().max(1) as f64;
        let fmax = frames.last().copied().unwrap_or(0.0);
        let cpu_target = CPU_TARGET * n as f64 / 10_000.0;
        println!(
            "scale: {n} agents ({registered} registered, {} joined in {ramp_s:.1} s; {} connection retries, {} failures)",
            n - before,
            stats.retries.load(Relaxed),
            stats.failures.load(Relaxed)
        );
        println!(
            "  scheduler CPU:  {:>6.1} % of one core over {:.0} s ({}; target {:.0} % at 10,000, {} scaled to {n})",
            cpu * 100.0,
            hold.as_secs_f64(),
            ratio(cpu, CPU_TARGET),
            CPU_TARGET * 100.0,
            ratio(cpu, cpu_target)
        );
        println!(
            "  load generator (agents and feed, this process): {:.1} % of a core; UDP datagrams dropped for a full receive buffer (whole machine): {drops}",
            gen_cpu * 100.0
        );
        println!(
            "  scheduler RSS:  {:>6.0} MiB (peak {:.0} MiB; {}), {} fds, {} threads, {:.1} KiB RSS per agent",
            rss / 1024.0,
            hwm / 1024.0,
            ratio(rss, RSS_TARGET_KIB),
            sim::proc_fds(pid),
            sim::proc_status(pid, "Threads"),
            rss / n as f64
        );
        println!(
            "  register to first StartJob ({} agents): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} for the max)",
            first.len(),
            sim::percentile_ms(&mut first, 50),
            sim::percentile_ms(&mut first, 99),
            sim::percentile_ms(&mut first, 100),
            ratio(sim::percentile_ms(&mut first, 100), FIRST_WORK_TARGET_MS)
        );
        println!(
            "  clear to next StartJob ({}): p50 {:.1} ms, p99 {:.1} ms; {started} jobs started in the window",
            refill.len(),
            sim::percentile_ms(&mut refill, 50),
            sim::percentile_ms(&mut refill, 99),
        );
        println!(
            "  graze top feed: {:.1} KiB/s received, frame at 200x60: mean {fmean:.1} ms, max {fmax:.1} ms ({} frames; snapshot took {} ms)",
            rx / 1024.0,
            frames.len(),
            w.snapshot_ms.load(Relaxed)
        );
        println!(
            "  totals: {} StartJob, {} exited, {} cleared, {} owner returns, {} suspends, {} resumes, {} statuses",
            stats.started.load(Relaxed),
            stats.exited.load(Relaxed),
            stats.cleared.load(Relaxed),
            stats.owner_returns.load(Relaxed),
            stats.suspended.load(Relaxed),
            stats.resumed.load(Relaxed),
            stats.statuses.load(Relaxed),
        );
    }
    let errors = stats.errors.lock().unwrap().clone();
    if !errors.is_empty() {
        println!("scale: first errors: {errors:#?}");
    }
    w.stop.store(true, Relaxed);
    rt.block_on(async {
        s.stop(Duration::from_secs(30)).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), watch).await;
    });
    println!(
        "scale: agents stopped ({} left); scheduler RSS {:.0} MiB",
        stats.left.load(Relaxed),
        sim::proc_status(pid, "VmRSS") as f64 / 1024.0
    );
    drop(c);
}

fn lock_clear(m: &Mutex<Vec<f64>>) {
    m.lock().unwrap().clear();
}

/// Datagrams the kernel dropped because a socket's receive buffer was full, machine-wide
/// (`RcvbufErrors` of `/proc/net/snmp`).
fn udp_rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}
