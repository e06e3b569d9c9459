//! Prints (does not assert): the time to draw one frame of `graze top` with 1,000 nodes and
//! 10,000 jobs at 200x60 (target: under 5 ms), per view; the trace timeline's frame with 16
//! ranks of 100,000 spans each, fit and zoomed; and the TUI loop's CPU use while idle.
#![allow(clippy::unwrap_used)]

use graze::top::{run_loop, testdata, App, DataEvent, Event};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::time::{Duration, Instant};

fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the state letter's field 3.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

fn big_app() -> App {
    let (nodes, jobs) = testdata::big(1000, 10_000);
    let now = testdata::NOW_MS;
    let mut app = App::new(now - 180_000, false);
    app.update(Event::Data(DataEvent::Snapshot { nodes, jobs }));
    for i in 0..180 {
        app.update(Event::Tick(now - 180_000 + (i + 1) * 1000));
    }
    app
}

fn key(app: &mut App, code: crossterm::event::KeyCode) {
    app.update(Event::Term(crossterm::event::Event::Key(
        crossterm::event::KeyEvent::new(code, crossterm::event::KeyModifiers::NONE),
    )));
}

/// Draw `frames` frames, each from a blank screen (so the whole frame is diffed and
/// written), `prepare`d first when asked; their mean, p99 and max.
fn frame_times(
    term: &mut Terminal<TestBackend>,
    app: &mut App,
    frames: usize,
    prepare: bool,
) -> String {
    let mut times = Vec::with_capacity(frames);
    for _ in 0..frames {
        if prepare {
            app.prepare();
        }
        let t = Instant::now();
        term.draw(|f| app.draw(f)).unwrap();
        times.push(t.elapsed());
        term.clear().unwrap();
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / frames as u32;
    format!(
        "mean {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        mean.as_secs_f64() * 1e3,
        times[frames * 99 / 100].as_secs_f64() * 1e3,
        times[frames - 1].as_secs_f64() * 1e3
    )
}

fn main() {
    let mut app = big_app();
    let mut term = Terminal::new(TestBackend::new(200, 60)).unwrap();
    let t = Instant::now();
    app.prepare();
    println!(
        "render: order rows of 1,000 nodes and 10,000 jobs: {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let frames = 200;
    for (name, keys) in [("nodes", ""), ("queue", "2"), ("job", "\n")] {
        for c in keys.chars() {
            let code = if c == '\n' {
                crossterm::event::KeyCode::Enter
            } else {
                crossterm::event::KeyCode::Char(c)
            };
            key(&mut app, code);
        }
        if name == "job" {
            let id = app.open.unwrap();
            let mut lines = testdata::pi_logs();
            for l in &mut lines {
                l.rank = l.rank.map(|r| r % 4);
            }
            app.update(Event::Data(DataEvent::Log {
                job: id,
                lines,
                reset: true,
            }));
        }
        println!(
            "render: {name} view, 1,000 nodes + 10,000 jobs at 200x60: {} (target < 5 ms)",
            frame_times(&mut term, &mut app, frames, true)
        );
    }

    // The trace timeline: 16 ranks of 100,000 spans, the whole trace and zoomed in 6 times.
    let char_key = |app: &mut App, c: char| key(app, crossterm::event::KeyCode::Char(c));
    char_key(&mut app, '2');
    char_key(&mut app, 't');
    let job = app.trace.as_ref().unwrap().job;
    let trace = Box::new(testdata::big_trace(16, 100_000));
    let t = Instant::now();
    app.update(Event::Data(DataEvent::Trace {
        job,
        trace: Ok(trace),
    }));
    println!(
        "render: take in a trace of 16 ranks x 100,000 spans (sort check, index): {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    for (name, zoom) in [("fit", 0), ("zoomed 64x", 6)] {
        for _ in 0..zoom {
            char_key(&mut app, '+');
        }
        println!(
            "render: trace timeline {name}, 16 ranks x 100,000 spans at 200x60: {}",
            frame_times(&mut term, &mut app, frames, false)
        );
    }

    // Idle CPU: the real loop with the big cluster, no data and no keys, for a while.
    let secs = std::env::var("GRAZE_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10u64);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut app = big_app();
    let (_data_tx, mut data_rx) = tokio::sync::mpsc::unbounded_channel();
    let (_term_tx, mut term_rx) = tokio::sync::mpsc::unbounded_channel();
    let (cmd_tx, _cmd_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut term = Terminal::new(TestBackend::new(200, 60)).unwrap();
    let before = cpu_ticks();
    let wall = Instant::now();
    rt.block_on(async {
        let _ = tokio::time::timeout(
            Duration::from_secs(secs),
            run_loop(
                &mut term,
                &mut app,
                &mut data_rx,
                &mut term_rx,
                &cmd_tx,
                graze::format::now_ms,
            ),
        )
        .await;
    });
    let cpu = (cpu_ticks() - before) as f64 / clk_tck() as f64;
    println!(
        "idle: the TUI loop (1,000 nodes, 10,000 jobs, 200x60, one redraw a second) used {:.3} s CPU in {:.1} s: {:.2} % of one core",
        cpu,
        wall.elapsed().as_secs_f64(),
        100.0 * cpu / wall.elapsed().as_secs_f64()
    );
}
