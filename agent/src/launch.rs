//! The launcher shim `graze-launch` and the agent's side of it.
//!
//! hydra runs `graze-launch HOST WORDS...` instead of `ssh HOST WORDS...`. The shim sends one
//! JSON line ([`ShimRequest`]) to its agent's unix socket (`GRAZE_LAUNCH_SOCK`), waits for one
//! JSON line back ([`ShimReply`]) and exits with the remote command's exit code. When the shim
//! dies first (mpiexec was killed), the agent sees its socket close and abandons the launch.

use graze_proto::{JobId, LaunchId};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Largest request line the agent accepts from a shim.
pub const MAX_REQUEST: u64 = 1 << 20;

/// The message of a shim started outside a job.
pub const OUTSIDE_JOB: &str = "graze-launch must run inside a graze job (GRAZE_LAUNCH_SOCK, GRAZE_JOB_ID and GRAZE_JOB_SECRET are set by graze-agent)";

/// What the shim asks its agent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ShimRequest {
    /// The job the shim runs in.
    pub job: JobId,
    /// The job's secret.
    pub secret: String,
    /// Target node.
    pub host: String,
    /// Words to run there with `sh -c`.
    pub command: Vec<String>,
}

/// The agent's answer. On the socket `{"exit_code":N}` or `{"error":"..."}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ShimReply {
    /// The remote command ended with this (shell-style) code.
    ExitCode(i32),
    /// The remote command could not be run.
    Error(String),
}

impl ShimReply {
    /// An error reply.
    pub fn error(msg: impl Into<String>) -> ShimReply {
        ShimReply::Error(msg.into())
    }

    /// An exit-code reply.
    pub fn exit(code: i32) -> ShimReply {
        ShimReply::ExitCode(code)
    }
}

/// Errors of the shim; each ends it with exit code 255.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// Started outside a graze job.
    #[error("{OUTSIDE_JOB}")]
    OutsideJob,
    /// Wrong arguments.
    #[error("usage: graze-launch HOST COMMAND [WORDS...]")]
    Usage,
    /// `GRAZE_JOB_ID` is not a number.
    #[error("invalid GRAZE_JOB_ID '{0}': must be a number")]
    BadJobId(String),
    /// Talking to the agent failed.
    #[error("talking to graze-agent at '{path}': {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The agent's answer made no sense.
    #[error("bad answer from graze-agent: {0}")]
    BadReply(String),
    /// The agent could not run the command.
    #[error("launch on '{host}' failed: {msg}")]
    Failed {
        /// Target node.
        host: String,
        /// Why.
        msg: String,
    },
}

/// The shim's job, given its arguments (without the program name) and environment lookup.
pub fn shim(args: &[String], env: impl Fn(&str) -> Option<String>) -> Result<i32, ShimError> {
    let (sock, job, secret) = match (
        env("GRAZE_LAUNCH_SOCK"),
        env("GRAZE_JOB_ID"),
        env("GRAZE_JOB_SECRET"),
    ) {
        (Some(s), Some(j), Some(k)) if !s.is_empty() => (PathBuf::from(s), j, k),
        _ => return Err(ShimError::OutsideJob),
    };
    let job = JobId(job.trim().parse().map_err(|_| ShimError::BadJobId(job))?);
    let (host, words) = match args {
        [host, words @ ..] if !words.is_empty() => (host.clone(), words.to_vec()),
        _ => return Err(ShimError::Usage),
    };
    let req = ShimRequest {
        job,
        secret,
        host: host.clone(),
        command: words,
    };
    let reply = ask(&sock, &req)?;
    match reply {
        ShimReply::ExitCode(c) => Ok(c),
        ShimReply::Error(e) => Err(ShimError::Failed { host, msg: e }),
    }
}

fn ask(sock: &Path, req: &ShimRequest) -> Result<ShimReply, ShimError> {
    let io = |source| ShimError::Io {
        path: sock.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(sock).map_err(io)?;
    let mut line = serde_json::to_string(req).map_err(|e| ShimError::BadReply(e.to_string()))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .take(MAX_REQUEST)
        .read_line(&mut answer)
        .map_err(io)?;
    if answer.is_empty() {
        return Err(ShimError::BadReply(
            "graze-agent closed the connection without answering".into(),
        ));
    }
    serde_json::from_str(answer.trim_end())
        .map_err(|e| ShimError::BadReply(format!("'{}': {e}", answer.trim_end())))
}

/// `main` of `graze-launch`: run [`shim`] with the process's arguments and environment.
pub fn shim_main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match shim(&args, |k| std::env::var(k).ok()) {
        Ok(code) => ExitCode::from(u8::try_from(code & 0xff).unwrap_or(255)),
        Err(e @ ShimError::OutsideJob) => {
            eprintln!("{e}");
            ExitCode::from(255)
        }
        Err(e) => {
            eprintln!("graze-launch: {e}");
            ExitCode::from(255)
        }
    }
}

/// A shim request as it reaches the agent's core.
#[derive(Debug)]
pub struct LaunchRequest {
    /// Agent-local id, unique for the agent's life.
    pub id: LaunchId,
    /// What the shim asked.
    pub req: ShimRequest,
    /// Where the answer goes.
    pub reply: oneshot::Sender<ShimReply>,
}

/// What the launcher listener tells the core.
#[derive(Debug)]
pub enum ShimEvent {
    /// A shim asks for a launch.
    Request(LaunchRequest),
    /// The shim of launch `id` went away before its answer.
    Gone(LaunchId),
}

/// Bind the agent's launcher socket at `path` (replacing a stale one), readable by the
/// agent's user only.
pub fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if path.as_os_str().len() > 100 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "socket path '{}' is too long for a unix socket (at most about 100 bytes); choose a shorter spool directory",
                path.display()
            ),
        ));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!(
                "another graze-agent already listens on '{}'; give each agent its own spool directory",
                path.display()
            ),
        ));
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Accept shims forever, turning each into a [`ShimEvent::Request`] via `wrap`.
pub async fn serve<I: Send + 'static>(
    listener: tokio::net::UnixListener,
    tx: mpsc::Sender<I>,
    wrap: fn(ShimEvent) -> I,
) {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a launcher connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let tx = tx.clone();
        let next = next.clone();
        tokio::spawn(async move {
            if let Err(e) = one_shim(stream, &next, tx, wrap).await {
                tracing::warn!(error = %e, "launcher connection");
            }
        });
    }
}

async fn one_shim<I>(
    stream: tokio::net::UnixStream,
    next_id: &std::sync::atomic::AtomicU64,
    tx: mpsc::Sender<I>,
    wrap: fn(ShimEvent) -> I,
) -> std::io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut rd = tokio::io::BufReader::new(rd.take(MAX_REQUEST));
    let mut line = String::new();
    rd.read_line(&mut line).await?;
    if line.is_empty() {
        // Connected and closed without a word: a liveness probe.
        return Ok(());
    }
    let req: ShimRequest = match serde_json::from_str(line.trim_end()) {
        Ok(r) => r,
        Err(e) => {
            let reply = ShimReply::error(format!("bad request: {e}"));
            return write_reply(&mut wr, &reply).await;
        }
    };
    let id = LaunchId(next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let (reply_tx, reply_rx) = oneshot::channel();
    let ev = ShimEvent::Request(LaunchRequest {
        id,
        req,
        reply: reply_tx,
    });
    if tx.send(wrap(ev)).await.is_err() {
        return write_reply(&mut wr, &ShimReply::error("graze-agent is shutting down")).await;
    }
    // The shim sends nothing more: reading returns only when it closes its end.
    let mut rest = rd.into_inner().into_inner();
    let mut buf = [0u8; 64];
    let closed = async {
        loop {
            match rest.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        reply = reply_rx => {
            let reply = reply.unwrap_or_else(|_| ShimReply::error("graze-agent dropped the launch"));
            write_reply(&mut wr, &reply).await
        }
        () = closed => {
            let _ = tx.send(wrap(ShimEvent::Gone(id))).await;
            Ok(())
        }
    }
}

async fn write_reply(
    wr: &mut tokio::net::unix::OwnedWriteHalf,
    reply: &ShimReply,
) -> std::io::Result<()> {
    let mut s = serde_json::to_string(reply).map_err(std::io::Error::other)?;
    s.push('\n');
    wr.write_all(s.as_bytes()).await?;
    wr.shutdown().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn reply_json() {
        assert_eq!(
            serde_json::to_string(&ShimReply::exit(3)).unwrap(),
            r#"{"exit_code":3}"#
        );
        assert_eq!(
            serde_json::to_string(&ShimReply::error("x")).unwrap(),
            r#"{"error":"x"}"#
        );
    }

    #[test]
    fn outside_a_job() {
        let e = shim(&["h".into(), "true".into()], env_of(&[])).unwrap_err();
        assert!(e.to_string().contains("must run inside a graze job"));
        let e = shim(
            &["h".into()],
            env_of(&[
                ("GRAZE_LAUNCH_SOCK", "/x"),
                ("GRAZE_JOB_ID", "1"),
                ("GRAZE_JOB_SECRET", "s"),
            ]),
        )
        .unwrap_err();
        assert!(matches!(e, ShimError::Usage));
        let e = shim(
            &["h".into(), "w".into()],
            env_of(&[
                ("GRAZE_LAUNCH_SOCK", "/x"),
                ("GRAZE_JOB_ID", "one"),
                ("GRAZE_JOB_SECRET", "s"),
            ]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid GRAZE_JOB_ID 'one': must be a number"
        );
    }

    #[derive(Debug)]
    enum TestInput {
        Shim(ShimEvent),
    }

    #[tokio::test]
    async fn shim_round_trip_and_abandon() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("launch.sock");
        let listener = bind(&sock).unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        tokio::spawn(serve(listener, tx, TestInput::Shim));
        let e = bind(&sock).unwrap_err();
        assert!(e.to_string().contains("another graze-agent"), "{e}");
        let env = env_of(&[
            ("GRAZE_LAUNCH_SOCK", sock.to_str().unwrap()),
            ("GRAZE_JOB_ID", "9"),
            ("GRAZE_JOB_SECRET", "sec"),
        ]);
        let shim_task = tokio::task::spawn_blocking(move || {
            shim(&["a2".into(), "echo".into(), "hi".into()], env)
        });
        let Some(TestInput::Shim(ShimEvent::Request(r))) = rx.recv().await else {
            panic!("no request");
        };
        assert_eq!(r.id, LaunchId(1));
        assert_eq!(
            r.req,
            ShimRequest {
                job: JobId(9),
                secret: "sec".into(),
                host: "a2".into(),
                command: vec!["echo".into(), "hi".into()],
            }
        );
        r.reply.send(ShimReply::exit(7)).unwrap();
        assert_eq!(shim_task.await.unwrap().unwrap(), 7);

        // An error answer.
        let env = env_of(&[
            ("GRAZE_LAUNCH_SOCK", sock.to_str().unwrap()),
            ("GRAZE_JOB_ID", "9"),
            ("GRAZE_JOB_SECRET", "sec"),
        ]);
        let shim_task = tokio::task::spawn_blocking(move || shim(&["a3".into(), "x".into()], env));
        let Some(TestInput::Shim(ShimEvent::Request(r))) = rx.recv().await else {
            panic!("no request");
        };
        r.reply.send(ShimReply::error("no such node")).unwrap();
        let e = shim_task.await.unwrap().unwrap_err();
        assert_eq!(e.to_string(), "launch on 'a3' failed: no such node");

        // A shim that goes away is reported.
        let mut s = tokio::net::UnixStream::connect(&sock).await.unwrap();
        let req = serde_json::to_string(&ShimRequest {
            job: JobId(9),
            secret: "sec".into(),
            host: "a4".into(),
            command: vec!["x".into()],
        })
        .unwrap();
        s.write_all(format!("{req}\n").as_bytes()).await.unwrap();
        let Some(TestInput::Shim(ShimEvent::Request(r))) = rx.recv().await else {
            panic!("no request");
        };
        drop(s);
        let Some(TestInput::Shim(ShimEvent::Gone(id))) = rx.recv().await else {
            panic!("no gone");
        };
        assert_eq!(id, r.id);
    }
}
