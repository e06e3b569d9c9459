//! `graze top`: a live terminal UI of the nodes, the queue and one job's ranks and output.
//!
//! Data, screens and a loop: [`model`] is the data the scheduler pushes (plus CPU history),
//! [`app`] the state and [`App::update`], `draw.rs` the read-only drawing, [`timeline`] the
//! traced job's timeline (its state, keys and drawing), [`data`] the one-off requests, [`feed`] the
//! network side, and [`run_loop`] one `tokio::select!` over data events, terminal events and a
//! render tick. The loop is generic over ratatui's [`Backend`], so tests drive it with a
//! `TestBackend`. The terminal is restored by a drop guard and a panic hook; logs go to a file.

pub mod app;
pub mod data;
mod draw;
pub mod estimate;
pub mod feed;
pub mod model;
pub mod testdata;
pub mod timeline;

pub use app::{App, Command, Event, Screen};
pub use model::DataEvent;

use anyhow::Context as _;
use crossterm::event::{DisableMouseCapture, EnableMouseCapture, Event as TermEvent, EventStream};
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use graze_net::Access;
use ratatui::backend::{Backend, CrosstermBackend};
use ratatui::Terminal;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// Least time between two frames drawn for data changes (keys draw at once).
pub const FRAME: Duration = Duration::from_millis(100);
/// The clock tick: durations and CPU samples move on, and the screen is redrawn.
pub const TICK: Duration = Duration::from_secs(1);

/// Options of `graze top`.
#[derive(Debug, Clone, Default)]
pub struct TopOptions {
    /// Demo only: node name to its `file:` idle source, enabling the owner key `o`.
    pub owner_files: HashMap<String, PathBuf>,
}

/// Restores the terminal when dropped (on quit, on error, and while unwinding a panic).
struct TermGuard;

impl TermGuard {
    fn enter() -> std::io::Result<TermGuard> {
        enable_raw_mode()?;
        let guard = TermGuard;
        crossterm::execute!(std::io::stdout(), EnterAlternateScreen, EnableMouseCapture)?;
        Ok(guard)
    }
}

impl Drop for TermGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Leave the alternate screen, raw mode and mouse capture; show the cursor. Idempotent.
pub fn restore_terminal() {
    let _ = crossterm::execute!(
        std::io::stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = disable_raw_mode();
}

/// Restore the terminal before the default panic message is printed.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
}

/// Run `graze top` on this terminal until the user quits.
pub async fn run_top(access: Access, opts: TopOptions) -> anyhow::Result<()> {
    install_panic_hook();
    let _guard = TermGuard::enter().context("setting up the terminal")?;
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))
        .context("setting up the terminal")?;
    terminal.clear().context("clearing the terminal")?;

    let (data_tx, mut data_rx) = mpsc::unbounded_channel();
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (term_tx, mut term_rx) = mpsc::unbounded_channel();
    let owner_key = !opts.owner_files.is_empty();
    let feed = tokio::spawn(feed::run(access, data_tx, cmd_rx, opts.owner_files));
    let keys = tokio::spawn(async move {
        let mut events = EventStream::new();
        loop {
            let next = std::future::poll_fn(|cx| {
                futures_core::Stream::poll_next(std::pin::Pin::new(&mut events), cx)
            })
            .await;
            match next {
                Some(Ok(ev)) => {
                    if term_tx.send(ev).is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!("reading the terminal: {e}");
                    return;
                }
                None => return,
            }
        }
    });
    let mut app = App::new(crate::format::now_ms(), owner_key);
    let result = run_loop(
        &mut terminal,
        &mut app,
        &mut data_rx,
        &mut term_rx,
        &cmd_tx,
        crate::format::now_ms,
    )
    .await;
    keys.abort();
    drop(cmd_tx);
    // The feed closes its connection politely once the command channel is closed.
    let _ = tokio::time::timeout(Duration::from_secs(1), feed).await;
    result
}

/// The app loop: one `select!` over data events, terminal events and the ticks. Returns when
/// the app asks to quit or the terminal events end, and fails with the reason when the feed
/// stops ([`DataEvent::Stopped`]). `clock` gives ms since the epoch.
pub async fn run_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    data: &mut mpsc::UnboundedReceiver<DataEvent>,
    term: &mut mpsc::UnboundedReceiver<TermEvent>,
    cmds: &mpsc::UnboundedSender<Command>,
    clock: impl Fn() -> u64,
) -> anyhow::Result<()>
where
    B::Error: Send + Sync + 'static,
{
    let mut frame = tokio::time::interval(FRAME);
    frame.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut pending = true;
    let mut data_open = true;
    loop {
        let mut out = Vec::new();
        let mut draw_now = false;
        tokio::select! {
            d = data.recv(), if data_open => match d {
                Some(DataEvent::Stopped { reason }) => {
                    return Err(anyhow::anyhow!("graze top stopped: {reason}"));
                }
                Some(d) => {
                    out.extend(app.update(Event::Data(d)));
                    // Take in what else is waiting before drawing once.
                    for _ in 0..1000 {
                        match data.try_recv() {
                            Ok(d) => out.extend(app.update(Event::Data(d))),
                            Err(_) => break,
                        }
                    }
                    pending = true;
                }
                None => data_open = false,
            },
            t = term.recv() => match t {
                Some(t) => {
                    out.extend(app.update(Event::Term(t)));
                    draw_now = true;
                }
                None => return Ok(()),
            },
            _ = tick.tick() => {
                out.extend(app.update(Event::Tick(clock())));
                draw_now = true;
            }
            _ = frame.tick(), if pending => draw_now = true,
        }
        for c in out {
            if c == Command::Quit {
                return Ok(());
            }
            let _ = cmds.send(c);
        }
        if draw_now {
            pending = false;
            app.prepare();
            terminal
                .draw(|f| app.draw(f))
                .map_err(anyhow::Error::new)
                .context("drawing the screen")?;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
