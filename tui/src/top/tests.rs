//! Screens of `graze top` with fixed data, driven through the real update path, compared as
//! whole screens with insta; and the app loop against a `TestBackend`.

use super::model::{CpuSample, DataEvent};
use super::testdata::{self, NOW_MS};
use super::*;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
use graze_proto::JobId;
use ratatui::backend::TestBackend;

fn key(c: KeyCode) -> Event {
    Event::Term(TermEvent::Key(KeyEvent::new(c, KeyModifiers::NONE)))
}

fn mouse(kind: MouseEventKind, column: u16, row: u16) -> Event {
    Event::Term(TermEvent::Mouse(MouseEvent {
        kind,
        column,
        row,
        modifiers: KeyModifiers::NONE,
    }))
}

fn chars(app: &mut App, s: &str) -> Vec<Command> {
    s.chars()
        .flat_map(|c| app.update(key(KeyCode::Char(c))))
        .collect()
}

/// An app with the fixture cluster, three minutes of varying CPU history and job 1's output.
fn fixture() -> App {
    let mut app = App::new(NOW_MS - 180_000, true);
    app.update(Event::Data(DataEvent::Connected));
    app.update(Event::Data(DataEvent::Snapshot {
        nodes: testdata::nodes(),
        jobs: testdata::jobs(),
    }));
    let base = testdata::nodes();
    for i in 0..179u64 {
        for n in &base {
            let mut n = n.clone();
            if let Some(s) = n.status.as_mut() {
                let wave = ((i * 7 + n.info.name.len() as u64 * 13) % 40) as f32;
                let owner = if n.info.name == "ws4" && i > 150 {
                    35.0 + wave / 2.0
                } else {
                    s.owner_cpu
                };
                let load = (s.core_load[0] - wave / 2.0).max(owner);
                s.core_load = vec![load, load];
                s.owner_cpu = owner;
            }
            app.update(Event::Data(DataEvent::Node(Box::new(n))));
        }
        app.update(Event::Tick(NOW_MS - 180_000 + (i + 1) * 1000));
    }
    // The last snapshot is the fixture itself.
    for n in testdata::nodes() {
        app.update(Event::Data(DataEvent::Node(Box::new(n))));
    }
    app.update(Event::Tick(NOW_MS));
    app
}

fn screen(app: &mut App, w: u16, h: u16) -> String {
    let mut t = ratatui::Terminal::new(TestBackend::new(w, h)).unwrap();
    app.prepare();
    t.draw(|f| app.draw(f)).unwrap();
    let buf = t.backend().buffer();
    let mut out = String::new();
    for y in 0..h {
        let mut line = String::new();
        for x in 0..w {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn both(name: &str, app: &mut App) {
    insta::assert_snapshot!(format!("{name}_80x24"), screen(app, 80, 24));
    insta::assert_snapshot!(format!("{name}_160x48"), screen(app, 160, 48));
}

fn open_job_1(app: &mut App) -> Vec<Command> {
    // Queue view, first row is job 1 (running jobs first), Enter opens it.
    let mut cmds = chars(app, "2");
    cmds.extend(app.update(key(KeyCode::Enter)));
    app.update(Event::Data(DataEvent::Log {
        job: JobId(1),
        lines: testdata::pi_logs(),
        reset: true,
    }));
    cmds
}

#[test]
fn nodes_view() {
    let mut app = fixture();
    both("nodes", &mut app);
}

#[test]
fn nodes_sorted_filtered_and_selected() {
    let mut app = fixture();
    chars(&mut app, "s"); // by state
    chars(&mut app, "/lab");
    app.update(key(KeyCode::Enter));
    app.update(key(KeyCode::Down));
    assert_eq!(app.selected_node(), Some("ws3"));
    both("nodes_sorted_filtered", &mut app);
}

#[test]
fn queue_view_with_expected_start() {
    let mut app = fixture();
    chars(&mut app, "2");
    // Select the waiting job: running jobs come first.
    chars(&mut app, "jj");
    assert_eq!(app.selected_job().map(|j| j.id), Some(JobId(3)));
    both("queue", &mut app);
}

#[test]
fn finished_jobs_are_reachable() {
    let mut app = fixture();
    chars(&mut app, "2");
    app.update(key(KeyCode::End));
    let id = app.selected_job().map(|j| j.id).unwrap();
    assert_eq!(id, JobId(4), "finished jobs last, newest end first");
    let cmds = app.update(key(KeyCode::Enter));
    assert_eq!(cmds, [Command::OpenLogs(JobId(4))]);
    assert_eq!(app.screen, Screen::Job);
}

#[test]
fn job_view_with_pi_chart() {
    let mut app = fixture();
    let cmds = open_job_1(&mut app);
    assert_eq!(cmds, [Command::OpenLogs(JobId(1))]);
    assert_eq!(app.screen, Screen::Job);
    both("job_rank0", &mut app);
    // Switch to rank 2 (on ws3).
    chars(&mut app, "jj");
    assert_eq!(
        app.selected_rank(),
        Some((Some(2), Some("ws3".to_string())))
    );
    both("job_rank2", &mut app);
}

#[test]
fn cancel_asks_first() {
    let mut app = fixture();
    open_job_1(&mut app);
    let cmds = chars(&mut app, "c");
    assert!(cmds.is_empty());
    both("cancel_confirm", &mut app);
    let cmds = chars(&mut app, "n");
    assert!(cmds.is_empty(), "n keeps the job");
    chars(&mut app, "c");
    assert_eq!(chars(&mut app, "y"), [Command::Cancel(JobId(1))]);
}

#[test]
fn help_overlay() {
    let mut app = fixture();
    chars(&mut app, "?");
    both("help", &mut app);
    chars(&mut app, "x");
    assert_eq!(app.mode, app::Mode::Normal);
}

#[test]
fn lost_scheduler_banner() {
    let mut app = fixture();
    app.update(Event::Data(DataEvent::Disconnected {
        reason: "connection lost: timed out".into(),
        attempt: 3,
    }));
    chars(&mut app, "2");
    both("disconnected", &mut app);
    // A new snapshot after reconnecting clears the banner and reopens the open job's output.
    open_job_1(&mut app);
    let cmds = app.update(Event::Data(DataEvent::Snapshot {
        nodes: testdata::nodes(),
        jobs: testdata::jobs(),
    }));
    assert_eq!(cmds, [Command::OpenLogs(JobId(1))]);
    assert!(app.model.lost.is_none());
}

#[test]
fn owner_key_and_mouse() {
    let mut app = fixture();
    app.update(key(KeyCode::Down));
    assert_eq!(chars(&mut app, "o"), [Command::TouchOwner("ws3".into())]);
    let scroll = |kind| mouse(kind, 0, 5);
    app.update(scroll(MouseEventKind::ScrollDown));
    assert_eq!(app.selected_node(), Some("ws6"));
    app.update(scroll(MouseEventKind::ScrollUp));
    assert_eq!(app.selected_node(), Some("ws3"));
    // Without the demo there is no owner key.
    let mut plain = App::new(NOW_MS, false);
    assert!(chars(&mut plain, "o").is_empty());
}

#[test]
fn history_splits_jobs_and_owner() {
    let app = fixture();
    let ws4 = &app.model.nodes["ws4"];
    assert_eq!(ws4.history.len(), model::HISTORY);
    let last: CpuSample = *ws4.history.back().unwrap();
    assert_eq!(last.owner, 35.0);
    assert_eq!(last.jobs, 65.0);
}

#[tokio::test]
async fn the_loop_draws_and_quits() {
    let mut term = ratatui::Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut app = App::new(NOW_MS, false);
    let (_data_tx, mut data_rx) = tokio::sync::mpsc::unbounded_channel();
    let (term_tx, mut term_rx) = tokio::sync::mpsc::unbounded_channel();
    let (cmd_tx, mut cmd_rx) = tokio::sync::mpsc::unbounded_channel();
    app.update(Event::Data(DataEvent::Snapshot {
        nodes: testdata::nodes(),
        jobs: testdata::jobs(),
    }));
    for c in ['2', '\n', 'q'] {
        let code = if c == '\n' {
            KeyCode::Enter
        } else {
            KeyCode::Char(c)
        };
        term_tx
            .send(TermEvent::Key(KeyEvent::new(code, KeyModifiers::NONE)))
            .unwrap();
    }
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        run_loop(
            &mut term,
            &mut app,
            &mut data_rx,
            &mut term_rx,
            &cmd_tx,
            || NOW_MS,
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(cmd_rx.try_recv().unwrap(), Command::OpenLogs(JobId(1)));
    let text = format!("{:?}", term.backend().buffer());
    assert!(text.contains("job 1 pi-a"), "{text}");
}

#[tokio::test]
async fn a_stopped_feed_ends_the_loop_with_its_reason() {
    let mut term = ratatui::Terminal::new(TestBackend::new(100, 30)).unwrap();
    let mut app = App::new(NOW_MS, false);
    let (data_tx, mut data_rx) = tokio::sync::mpsc::unbounded_channel();
    let (_term_tx, mut term_rx) = tokio::sync::mpsc::unbounded_channel();
    let (cmd_tx, _cmd_rx) = tokio::sync::mpsc::unbounded_channel();
    data_tx
        .send(DataEvent::Stopped {
            reason: "refused by the scheduler: invalid cluster token".into(),
        })
        .unwrap();
    let e = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        run_loop(
            &mut term,
            &mut app,
            &mut data_rx,
            &mut term_rx,
            &cmd_tx,
            || NOW_MS,
        ),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(e.to_string().contains("invalid cluster token"), "{e}");
}

/// The harvest view: key 4 asks for the figures, they are drawn per PC, and it asks again
/// only after a minute.
#[test]
fn harvest_view() {
    let mut app = fixture();
    let cmds = chars(&mut app, "4");
    assert_eq!(cmds, [Command::LoadHarvest]);
    assert_eq!(app.screen, Screen::Harvest);
    insta::assert_snapshot!("harvest_loading_80x24", screen(&mut app, 80, 24));
    app.update(Event::Data(DataEvent::Harvest(Box::new(
        testdata::harvest(),
    ))));
    both("harvest", &mut app);
    assert!(app.update(Event::Tick(NOW_MS + 30_000)).is_empty());
    assert_eq!(
        app.update(Event::Tick(NOW_MS + 60_000)),
        [Command::LoadHarvest]
    );
    // Leaving stops the asking; Tab cycles back into it and asks at once.
    chars(&mut app, "1");
    assert!(app.update(Event::Tick(NOW_MS + 200_000)).is_empty());
    let cmds = app.update(key(KeyCode::BackTab));
    assert_eq!(app.screen, Screen::Harvest);
    assert_eq!(cmds, [Command::LoadHarvest]);
}

fn trace_arrives(app: &mut App, job: u64, trace: Result<graze_trace::Trace, String>) {
    app.update(Event::Data(DataEvent::Trace {
        job: JobId(job),
        trace: trace.map(Box::new),
    }));
}

/// The timeline: `t` on a job of the queue asks for its trace, which is drawn one row per rank;
/// zoom, pan, a rank's span under the cursor, fit, and back.
#[test]
fn trace_timeline() {
    let mut app = fixture();
    let cmds = chars(&mut app, "2t");
    assert_eq!(cmds, [Command::LoadTrace(JobId(1))]);
    assert_eq!(app.screen, Screen::Trace);
    insta::assert_snapshot!("trace_loading_80x24", screen(&mut app, 80, 24));
    // Another job's answer is not this one's.
    trace_arrives(&mut app, 2, Ok(testdata::trace(2, 1)));
    assert!(screen(&mut app, 80, 24).contains("asking the scheduler"));
    trace_arrives(&mut app, 1, Ok(testdata::trace(4, 4)));
    both("trace", &mut app);
    let fitted = screen(&mut app, 160, 48);
    assert!(fitted.contains("MPI_Allreduce"), "{fitted}");

    chars(&mut app, "+++");
    both("trace_zoomed", &mut app);
    app.update(key(KeyCode::Left));
    chars(&mut app, "h");
    both("trace_panned", &mut app);
    let s = screen(&mut app, 160, 48);
    assert!(
        s.contains("rank 0 on ws2: MPI_Allreduce"),
        "the cursor is on rank 0's Allreduce of round 1:\n{s}"
    );
    chars(&mut app, "jj");
    let s = screen(&mut app, 160, 48);
    assert!(
        s.contains("rank 2 on ws3: region sample"),
        "rank 2 still samples:\n{s}"
    );
    insta::assert_snapshot!("trace_rank2_160x48", s);

    chars(&mut app, "g0");
    assert_eq!(
        screen(&mut app, 160, 48),
        fitted,
        "g and 0: the first rank, the whole trace"
    );

    // The mouse wheel zooms too.
    let wheel = |kind| mouse(kind, 40, 5);
    app.update(wheel(MouseEventKind::ScrollUp));
    assert!(screen(&mut app, 160, 48).contains("22.53 ms of 45.06 ms shown"));
    app.update(wheel(MouseEventKind::ScrollDown));
    assert_eq!(screen(&mut app, 160, 48), fitted);

    // q and Esc go back to where it was opened from; 5 shows it again.
    assert!(chars(&mut app, "q").is_empty(), "q does not quit here");
    assert_eq!(app.screen, Screen::Queue);
    chars(&mut app, "5");
    assert_eq!(app.screen, Screen::Trace);
    app.update(key(KeyCode::Esc));
    assert_eq!(app.screen, Screen::Queue);
}

/// From the job view, `t` opens the open job's trace, and Esc returns to the job view.
#[test]
fn trace_from_the_job_view() {
    let mut app = fixture();
    open_job_1(&mut app);
    assert_eq!(chars(&mut app, "t"), [Command::LoadTrace(JobId(1))]);
    trace_arrives(&mut app, 1, Ok(testdata::trace(4, 2)));
    app.update(key(KeyCode::Esc));
    assert_eq!(app.screen, Screen::Job);
}

/// An error fetching the trace is the screen's message; so is a trace without spans.
#[test]
fn trace_error_and_empty() {
    let mut app = fixture();
    chars(&mut app, "2t");
    trace_arrives(
        &mut app,
        1,
        Err(
            "the trace of job 1: job 1 was not traced: submit it with 'graze submit --trace'"
                .to_string(),
        ),
    );
    insta::assert_snapshot!("trace_error_80x24", screen(&mut app, 80, 24));
    // Asking again starts over.
    assert_eq!(chars(&mut app, "q2t"), [Command::LoadTrace(JobId(1))]);
    let mut empty = testdata::trace(2, 0);
    for r in &mut empty.ranks {
        r.spans.clear();
    }
    trace_arrives(&mut app, 1, Ok(empty));
    insta::assert_snapshot!("trace_empty_80x24", screen(&mut app, 80, 24));
}

/// More ranks than rows: the rows scroll with the selected rank.
#[test]
fn trace_many_ranks_scroll() {
    let mut app = fixture();
    chars(&mut app, "2t");
    trace_arrives(&mut app, 1, Ok(testdata::trace(64, 3)));
    let first = screen(&mut app, 80, 24);
    assert!(
        first.contains("0 ws2") && !first.contains("40 ws22"),
        "{first}"
    );
    for _ in 0..40 {
        app.update(key(KeyCode::Down));
    }
    let s = screen(&mut app, 80, 24);
    assert!(
        s.contains("rank 40 on ws22") && s.contains("40 ws22"),
        "{s}"
    );
    assert!(!s.contains(" 0 ws2 "), "{s}");
    insta::assert_snapshot!("trace_many_ranks_80x24", s);
    app.update(key(KeyCode::End));
    assert!(screen(&mut app, 80, 24).contains("rank 63 on ws33"));
}

/// A big trace (4 ranks of 100,000 spans) draws at every zoom; the cells find their spans
/// by binary search (the time it takes is printed by `benches/render.rs`, not asserted).
#[test]
fn trace_big_draws() {
    let mut app = fixture();
    chars(&mut app, "2t");
    trace_arrives(&mut app, 1, Ok(testdata::big_trace(4, 100_000)));
    let s = screen(&mut app, 160, 48);
    assert!(
        s.contains("█") && s.contains("500.00 ms of 500.00 ms shown"),
        "{s}"
    );
    // Zoomed in to 1 ms around the middle: spans of 7 and 3 µs, one cell each or more.
    for _ in 0..9 {
        chars(&mut app, "+");
    }
    let s = screen(&mut app, 160, 48);
    assert!(s.contains("▄") && s.contains("█"), "{s}");
    assert!(s.contains("rank 0 on ws2: "), "{s}");
}

#[test]
fn load_deltas_draw_like_whole_node_views() {
    // The same load changes, once as whole views and once as one `NodeLoads` batch (with a
    // node not known yet, which is skipped), draw the same screen.
    let changed: Vec<graze_proto::NodeView> = testdata::nodes()
        .into_iter()
        .map(|mut n| {
            if let Some(s) = n.status.as_mut() {
                s.core_load = vec![97.0, 3.0];
                s.owner_cpu = 2.0;
            }
            n
        })
        .collect();
    let mut by_views = fixture();
    for n in &changed {
        by_views.update(Event::Data(DataEvent::Node(Box::new(n.clone()))));
    }
    let mut by_loads = fixture();
    let mut loads: Vec<graze_proto::NodeLoad> = changed
        .iter()
        .filter_map(|n| {
            Some(graze_proto::NodeLoad::of(
                n.info.name.clone(),
                n.status.as_ref()?,
            ))
        })
        .collect();
    assert!(!loads.is_empty());
    loads.push(graze_proto::NodeLoad {
        node: "not-yet-known".into(),
        ..loads[0].clone()
    });
    by_loads.update(Event::Data(DataEvent::Loads(loads)));
    for app in [&mut by_views, &mut by_loads] {
        app.update(Event::Tick(NOW_MS + 1000));
    }
    let (a, b) = (
        screen(&mut by_views, 120, 30),
        screen(&mut by_loads, 120, 30),
    );
    assert!(!a.contains("not-yet-known"));
    assert_eq!(a, b);
    assert_ne!(a, screen(&mut fixture(), 120, 30));
}
