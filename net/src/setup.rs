//! What every graze program does at start: logging, and (for the daemons) the shutdown signal.

use std::path::PathBuf;

/// Where a program's logs go.
#[derive(Debug)]
pub enum LogTo {
    /// Standard error (the daemons, the CLI).
    Stderr,
    /// Append to this file (`graze top`, which owns the terminal). When it cannot be opened,
    /// nothing is logged rather than logs drawn over the screen.
    File(PathBuf),
}

/// Install the tracing subscriber: `RUST_LOG` when set and valid, else `default` (such as
/// `info`). Does nothing when one is already installed.
pub fn init_tracing(default: &str, to: LogTo) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match to {
        LogTo::Stderr => {
            let _ = builder.with_writer(std::io::stderr).try_init();
        }
        LogTo::File(path) => {
            if let Ok(f) = std::fs::File::options()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = builder
                    .with_ansi(false)
                    .with_writer(std::sync::Mutex::new(f))
                    .try_init();
            }
        }
    }
}

/// Completes on Ctrl-C or SIGTERM. When SIGTERM cannot be watched it says so and still
/// completes on Ctrl-C; when neither can, it says so and never completes.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops this process");
            None
        }
    };
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot watch Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// The tracing target of launch-timeline events: one `debug` event per step of a job's way
/// from submit to cleared, with the wall-clock time in µs, so a benchmark can line up the
/// scheduler's and the agents' logs (`RUST_LOG=info,graze::timeline=debug`).
pub const TIMELINE: &str = "graze::timeline";

/// Log one timeline step of job `job` (target [`TIMELINE`], level debug): `stage` is one word,
/// `detail` free text (a node, a host), last on the line. Costs nothing when not enabled.
pub fn timeline(job: u64, stage: &str, detail: &str) {
    tracing::debug!(target: TIMELINE, job, stage = %stage, at_us = now_us(), detail = %detail);
}

/// This machine's `CLOCK_MONOTONIC` in ns: the clock of MPI traces, of the agents' and the
/// scheduler's clock-sync exchanges, and (in µs) of logind's idle hint.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// The wall clock in µs since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
