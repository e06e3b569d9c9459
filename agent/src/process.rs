//! Running one job process: spawn it in its own process group, forward its output lines,
//! report its exit.

use graze_proto::{ExitStatus, Stream, MAX_LINE};
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tracing::Instrument;

/// How long to wait, after a process exited, for the rest of its output.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// Convert std's exit status to the wire form.
pub fn exit_status(s: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    ExitStatus {
        code: s.code(),
        signal: s.signal(),
    }
}

/// An io error as a person reads it: without Rust's "(os error N)" suffix.
pub fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

/// Read `r` line by line, calling `emit` with each whole line (without its newline, lossily
/// decoded, cut to [`MAX_LINE`] and marked). Lines are never split: bytes past the limit are
/// dropped up to the next newline.
pub async fn read_lines<R, F, Fut>(r: R, mut emit: F)
where
    R: AsyncRead + Unpin,
    F: FnMut(String) -> Fut,
    Fut: Future<Output = bool>,
{
    // Keep a few bytes over the limit so that clip_line sees the line is too long.
    let keep = MAX_LINE + 8;
    let mut rd = BufReader::with_capacity(64 << 10, r);
    let mut line: Vec<u8> = Vec::new();
    let mut pending = false;
    loop {
        let buf = match rd.fill_buf().await {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(error = %e, "reading output");
                &[]
            }
        };
        if buf.is_empty() {
            if pending && !emit(finish(&mut line)).await {
                return;
            }
            return;
        }
        let (chunk, used, end) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        let room = keep.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        pending = true;
        rd.consume(used);
        if end {
            pending = false;
            if !emit(finish(&mut line)).await {
                return;
            }
        }
    }
}

fn finish(line: &mut Vec<u8>) -> String {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    let s = String::from_utf8_lossy(line).into_owned();
    line.clear();
    graze_proto::clip_line(s)
}

/// Where a process's events go.
pub trait Sink: Clone + Send + Sync + 'static {
    /// One output line; `false` stops reading.
    fn line(&self, stream: Stream, line: String) -> impl Future<Output = bool> + Send;
    /// The process ended.
    fn exited(&self, exit: ExitStatus) -> impl Future<Output = ()> + Send;
    /// One of its output streams ended (after its last line).
    fn closed(&self, _stream: Stream) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Spawn `cmd` (already set up with its process group, environment and stdin) with piped
/// output and drive it in a task. Returns its pid, which is also its process group id.
pub fn spawn<S: Sink>(
    mut cmd: tokio::process::Command,
    sink: S,
    span: tracing::Span,
) -> std::io::Result<u32> {
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(false);
    let mut child = cmd.spawn()?;
    let pid = child.id().unwrap_or(0);
    let mut handles = Vec::new();
    if let Some(r) = child.stdout.take() {
        handles.push(forward(r, Stream::Stdout, &sink, &span));
    }
    if let Some(r) = child.stderr.take() {
        handles.push(forward(r, Stream::Stderr, &sink, &span));
    }
    tokio::spawn(
        async move {
            let exit = match child.wait().await {
                Ok(s) => exit_status(s),
                Err(e) => {
                    tracing::error!(error = %e, "waiting for process {pid}");
                    ExitStatus::default()
                }
            };
            // Let the readers deliver what the process wrote before it ended; a background
            // child that holds the pipes open does not delay the exit for long.
            let _ = tokio::time::timeout(OUTPUT_GRACE, async {
                for h in handles {
                    let _ = h.await;
                }
            })
            .await;
            tracing::debug!(pid, %exit, "process ended");
            sink.exited(exit).await;
        }
        .instrument(span),
    );
    Ok(pid)
}

fn forward<R, S>(
    r: R,
    stream: Stream,
    sink: &S,
    span: &tracing::Span,
) -> tokio::task::JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    S: Sink,
{
    let sink = sink.clone();
    tokio::spawn(
        async move {
            let s = sink.clone();
            read_lines(r, move |l| {
                let s = s.clone();
                async move { s.line(stream, l).await }
            })
            .await;
            sink.closed(stream).await;
        }
        .instrument(span.clone()),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    async fn lines_of(bytes: &[u8]) -> Vec<String> {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        read_lines(bytes, move |l| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push(l);
                true
            }
        })
        .await;
        let v = got.lock().unwrap().clone();
        v
    }

    #[tokio::test]
    async fn splits_lines() {
        assert_eq!(lines_of(b"a\nb\r\n\nc").await, vec!["a", "b", "", "c"]);
        assert_eq!(lines_of(b"").await, Vec::<String>::new());
        assert_eq!(lines_of(b"x\n").await, vec!["x"]);
        assert_eq!(
            lines_of(b"bad \xff\xfe\n").await,
            vec!["bad \u{fffd}\u{fffd}"]
        );
    }

    #[tokio::test]
    async fn cuts_long_lines_whole() {
        let mut input = vec![b'x'; MAX_LINE * 3];
        input.extend_from_slice(b"\nnext\n");
        let l = lines_of(&input).await;
        assert_eq!(l.len(), 2);
        assert!(l[0].ends_with("[line cut by graze]"));
        assert!(l[0].len() < MAX_LINE + 100);
        assert_eq!(l[1], "next");
    }

    #[test]
    fn reasons() {
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(io_reason(&e), "No such file or directory");
    }

    type Seen = (Vec<(Stream, String)>, Option<ExitStatus>);

    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Seen>>);

    impl Sink for Collect {
        async fn line(&self, stream: Stream, line: String) -> bool {
            self.0.lock().unwrap().0.push((stream, line));
            true
        }
        async fn exited(&self, exit: ExitStatus) {
            self.0.lock().unwrap().1 = Some(exit);
        }
    }

    #[tokio::test]
    async fn runs_and_reports() {
        let c = Collect::default();
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"])
            .stdin(std::process::Stdio::null())
            .process_group(0);
        let pid = spawn(cmd, c.clone(), tracing::Span::none()).unwrap();
        assert!(pid > 0);
        for _ in 0..500 {
            if c.0.lock().unwrap().1.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (lines, exit) = c.0.lock().unwrap().clone();
        assert_eq!(exit.unwrap().code, Some(3));
        assert!(lines.contains(&(Stream::Stdout, "out".into())));
        assert!(lines.contains(&(Stream::Stderr, "err".into())));
    }
}
