//! Scheduler configuration: `scheduler.toml` plus command-line flags (flags win).

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Command line of `graze-scheduler`.
#[derive(clap::Parser, Debug, Default)]
#[command(
    name = "graze-scheduler",
    version,
    about = "graze head node: queues MPI jobs onto idle office PCs"
)]
pub struct Cli {
    /// Directory for the certificate, access file, tokens, audit log, job output and state.
    #[arg(long, env = "GRAZE_STATE_DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    /// Address to listen on for agents and clients (UDP, QUIC).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Address written into access.toml for others to reach this scheduler.
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Accept jobs up to this many ranks even when the known nodes have fewer cores.
    #[arg(long, value_name = "N")]
    pub max_job_cores: Option<u32>,
    /// An agent silent this long is taken as lost, e.g. `10s`.
    #[arg(long, value_name = "DURATION")]
    pub node_timeout: Option<String>,
    /// A suspended job that could run elsewhere is vacated and requeued after this long,
    /// e.g. `60s` [default: 60s].
    #[arg(long, value_name = "DURATION")]
    pub requeue_when_suspended_after: Option<String>,
    /// Attempt records, owner events and usage older than this many days are pruned
    /// [default: 30].
    #[arg(long, value_name = "DAYS")]
    pub history_days: Option<u32>,
    /// Where checkpointing jobs keep their checkpoint on every node (a subdirectory per
    /// cluster and job is used) [default: /var/tmp/graze-checkpoints].
    #[arg(long, value_name = "DIR")]
    pub checkpoint_node_dir: Option<String>,
    /// Largest checkpoint stored per job, all nodes' parts together (compressed), e.g.
    /// `1GiB`, `500MB` or a number of bytes [default: 1GiB].
    #[arg(long, value_name = "SIZE")]
    pub max_checkpoint_bytes: Option<String>,
    /// Largest trace kept per traced job (`graze submit --trace`), all nodes and ranks; each
    /// rank's tracer drops (and counts) events past its share [default: 256MiB].
    #[arg(long, value_name = "SIZE")]
    pub max_trace_bytes: Option<String>,
    /// Configuration file.
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Manage tokens instead of running the scheduler.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands of `graze-scheduler`; without one it runs the scheduler.
#[derive(clap::Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Create, revoke and list access tokens (stored hashed in STATE/tokens.toml).
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `graze-scheduler token ...`.
#[derive(clap::Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum TokenCommand {
    /// Create a token for a new identity and print an access file for it.
    Create {
        /// What the token may do.
        #[arg(long, value_enum)]
        role: crate::auth::TokenRole,
        /// Identity name, unique; recorded as the owner of the jobs it submits.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// Agent tokens: the one node name this token may register (one token per PC, so a
        /// PC's access file cannot pose as another PC).
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
    },
    /// Revoke an identity's token; its next connection is refused.
    Revoke {
        /// Identity name.
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// List identities and roles.
    List,
}

/// The state directory from flags or the config file, for the token commands.
pub fn state_dir_of(cli: &Cli) -> Result<PathBuf> {
    if let Some(d) = &cli.state_dir {
        return Ok(d.clone());
    }
    let file = match &cli.config {
        Some(p) => load_file(p)?,
        None => FileConfig::default(),
    };
    file.state_dir
        .context("no state directory: pass --state-dir DIR (or state_dir in scheduler.toml)")
}

/// The `scheduler.toml` file; every field optional.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See [`Cli::state_dir`].
    pub state_dir: Option<PathBuf>,
    /// See [`Cli::listen`].
    pub listen: Option<String>,
    /// See [`Cli::advertise`].
    pub advertise: Option<String>,
    /// See [`Cli::max_job_cores`].
    pub max_job_cores: Option<u32>,
    /// See [`Cli::node_timeout`].
    pub node_timeout: Option<String>,
    /// See [`Cli::requeue_when_suspended_after`].
    pub requeue_when_suspended_after: Option<String>,
    /// See [`Cli::history_days`].
    pub history_days: Option<u32>,
    /// See [`Cli::checkpoint_node_dir`].
    pub checkpoint_node_dir: Option<String>,
    /// See [`Cli::max_checkpoint_bytes`]: a number of bytes or a string with a unit.
    pub max_checkpoint_bytes: Option<Size>,
    /// See [`Cli::max_trace_bytes`].
    pub max_trace_bytes: Option<Size>,
}

/// A size in scheduler.toml: a number of bytes, or a string such as `"1GiB"`.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(untagged)]
pub enum Size {
    /// Bytes.
    Bytes(u64),
    /// With a unit.
    Text(String),
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Size::Bytes(b) => write!(f, "{b}"),
            Size::Text(t) => write!(f, "{t}"),
        }
    }
}

/// Parse a size: a number with an optional unit, `B`, `kB`, `MB`, `GB`, `TB` (powers of
/// 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024), e.g. `1GiB`, `500 MB`, `1048576`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err("write it like '1GiB', '500MB' or a number of bytes".into());
    }
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "k" | "kB" | "KB" => 1000,
        "M" | "MB" => 1000_u64.pow(2),
        "G" | "GB" => 1000_u64.pow(3),
        "T" | "TB" => 1000_u64.pow(4),
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        u => {
            return Err(format!(
                "unknown unit '{u}': write it like '1GiB', '500MB' or a number of bytes"
            ))
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| "write it like '1GiB', '500MB' or a number of bytes".to_string())?;
    let v = n * mult as f64;
    if !v.is_finite() || v < 1.0 || v > u64::MAX as f64 {
        return Err("must be at least 1 byte".into());
    }
    Ok(v as u64)
}

/// Default of [`SchedulerConfig::max_checkpoint_bytes`]: 1 GiB.
pub const DEFAULT_MAX_CHECKPOINT_BYTES: u64 = 1 << 30;

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// State directory.
    pub state_dir: PathBuf,
    /// Listen address.
    pub listen: SocketAddr,
    /// Address written to access.toml; `None`: derived from the bound address.
    pub advertise: Option<String>,
    /// See [`crate::core::CoreConfig::max_job_cores`].
    pub max_job_cores: u32,
    /// Agent silence before it is lost.
    pub node_timeout: Duration,
    /// See [`crate::core::CoreConfig::requeue_when_suspended_after_ms`].
    pub requeue_when_suspended_after: Duration,
    /// History (attempts, owner events, usage) older than this is pruned.
    pub history_days: u32,
    /// Where checkpointing jobs keep their checkpoint on the nodes (absolute); see
    /// [`SchedulerConfig::checkpoint_root`].
    pub checkpoint_node_dir: String,
    /// Largest checkpoint stored per job (bytes received for one checkpoint, all parts).
    pub max_checkpoint_bytes: u64,
    /// Largest trace per job (see [`crate::core::CoreConfig::max_trace_bytes`]).
    pub max_trace_bytes: u64,
}

impl SchedulerConfig {
    /// Defaults with `state_dir`, listening on an OS-chosen loopback port (for tests).
    pub fn for_tests(state_dir: &Path) -> SchedulerConfig {
        SchedulerConfig {
            state_dir: state_dir.to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            max_job_cores: 0,
            node_timeout: graze_proto::DEFAULT_NODE_TIMEOUT,
            requeue_when_suspended_after: Duration::from_millis(
                crate::core::DEFAULT_REQUEUE_WHEN_SUSPENDED_AFTER_MS,
            ),
            history_days: DEFAULT_HISTORY_DAYS,
            checkpoint_node_dir: crate::core::DEFAULT_CHECKPOINT_NODE_DIR.into(),
            max_checkpoint_bytes: DEFAULT_MAX_CHECKPOINT_BYTES,
            max_trace_bytes: graze_proto::DEFAULT_MAX_TRACE_BYTES,
        }
    }

    /// [`crate::core::CoreConfig::checkpoint_root`] for the scheduler whose certificate has
    /// `fingerprint` (`sha256:HEX`): `{checkpoint_node_dir}/{first 12 hex digits}`, so
    /// clusters sharing a PC never share a directory.
    pub fn checkpoint_root(&self, fingerprint: &str) -> String {
        let hex = fingerprint.strip_prefix("sha256:").unwrap_or(fingerprint);
        let cluster: String = hex
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(12)
            .collect();
        format!(
            "{}/{cluster}",
            self.checkpoint_node_dir.trim_end_matches('/')
        )
    }
}

/// Default of [`SchedulerConfig::history_days`].
pub const DEFAULT_HISTORY_DAYS: u32 = 30;

/// Largest [`SchedulerConfig::history_days`] accepted (100 years).
pub const MAX_HISTORY_DAYS: u32 = 36_500;

/// Default of [`SchedulerConfig::listen`].
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7700";

/// Where a value came from, for its error: `invalid --KEY 'VALUE': WHY` (a flag),
/// `invalid KEY 'VALUE' in PATH: WHY` (the file actually read), or
/// `invalid KEY 'VALUE' (the default): WHY`.
#[derive(Clone, Copy)]
enum Origin<'a> {
    Flag,
    File(&'a Path),
    Default,
}

/// A value with its key and origin.
struct Layered<'a, T> {
    key: &'static str,
    value: T,
    origin: Origin<'a>,
}

impl<T: std::fmt::Display> Layered<'_, T> {
    /// The error for this value: quoted, with where it came from and why it is wrong.
    fn bad(&self, why: impl std::fmt::Display) -> anyhow::Error {
        let (key, value) = (self.key, &self.value);
        match self.origin {
            Origin::Flag => anyhow::anyhow!("invalid --{} '{value}': {why}", key.replace('_', "-")),
            Origin::File(p) => anyhow::anyhow!("invalid {key} '{value}' in {}: {why}", p.display()),
            Origin::Default => anyhow::anyhow!("invalid {key} '{value}' (the default): {why}"),
        }
    }
}

/// The flag, else the file's value (from `path`), else `default`.
fn pick<'a, T>(
    key: &'static str,
    flag: Option<T>,
    file: Option<T>,
    path: Option<&'a Path>,
    default: T,
) -> Layered<'a, T> {
    let (value, origin) = match (flag, file, path) {
        (Some(v), _, _) => (v, Origin::Flag),
        (None, Some(v), Some(p)) => (v, Origin::File(p)),
        (None, Some(v), None) => (v, Origin::Default),
        (None, None, _) => (default, Origin::Default),
    };
    Layered { key, value, origin }
}

/// Parse a duration like `90s` or `15m`, quoting the value when it is bad.
fn duration(v: &Layered<'_, String>) -> Result<Duration> {
    humantime::parse_duration(v.value.trim())
        .map_err(|e| v.bad(format!("{e}; write it like '10s', '90s' or '15m'")))
}

/// Read the file (if named), apply flags, validate.
pub fn resolve(cli: Cli) -> Result<SchedulerConfig> {
    let file = match &cli.config {
        Some(p) => load_file(p)?,
        None => FileConfig::default(),
    };
    let path = cli.config.as_deref();
    let state_dir = cli
        .state_dir
        .or(file.state_dir)
        .context("no state directory: pass --state-dir DIR (or state_dir in scheduler.toml)")?;
    let listen_v = pick(
        "listen",
        cli.listen,
        file.listen,
        path,
        DEFAULT_LISTEN.into(),
    );
    let listen: SocketAddr = listen_v
        .value
        .parse()
        .map_err(|_| listen_v.bad("must be IP:PORT, e.g. 0.0.0.0:7700"))?;
    let timeout_v = pick(
        "node_timeout",
        cli.node_timeout,
        file.node_timeout,
        path,
        humantime::format_duration(graze_proto::DEFAULT_NODE_TIMEOUT).to_string(),
    );
    let node_timeout = duration(&timeout_v)?;
    if node_timeout < graze_proto::MIN_NODE_TIMEOUT {
        bail!(timeout_v.bad(format!(
            "must be at least {}",
            humantime::format_duration(graze_proto::MIN_NODE_TIMEOUT)
        )));
    }
    let requeue_v = pick(
        "requeue_when_suspended_after",
        cli.requeue_when_suspended_after,
        file.requeue_when_suspended_after,
        path,
        humantime::format_duration(Duration::from_millis(
            crate::core::DEFAULT_REQUEUE_WHEN_SUSPENDED_AFTER_MS,
        ))
        .to_string(),
    );
    let requeue_when_suspended_after = duration(&requeue_v)?;
    let days_v = pick(
        "history_days",
        cli.history_days,
        file.history_days,
        path,
        DEFAULT_HISTORY_DAYS,
    );
    if !(1..=MAX_HISTORY_DAYS).contains(&days_v.value) {
        bail!(days_v.bad(format!("must be from 1 to {MAX_HISTORY_DAYS} days")));
    }
    let dir_v = pick(
        "checkpoint_node_dir",
        cli.checkpoint_node_dir,
        file.checkpoint_node_dir,
        path,
        crate::core::DEFAULT_CHECKPOINT_NODE_DIR.to_string(),
    );
    if !dir_v.value.starts_with('/') || dir_v.value.trim_end_matches('/').is_empty() {
        bail!(dir_v.bad(
            "must be an absolute directory (the same path on every node), e.g. /var/tmp/graze-checkpoints"
        ));
    }
    if dir_v.value.chars().any(char::is_control) {
        bail!(dir_v.bad("must not contain control characters"));
    }
    let size_v = pick(
        "max_checkpoint_bytes",
        cli.max_checkpoint_bytes.map(Size::Text),
        file.max_checkpoint_bytes,
        path,
        Size::Bytes(DEFAULT_MAX_CHECKPOINT_BYTES),
    );
    let max_checkpoint_bytes = match &size_v.value {
        Size::Bytes(0) => bail!(size_v.bad("must be at least 1 byte")),
        Size::Bytes(b) => *b,
        Size::Text(t) => parse_size(t).map_err(|e| size_v.bad(e))?,
    };
    let trace_v = pick(
        "max_trace_bytes",
        cli.max_trace_bytes.map(Size::Text),
        file.max_trace_bytes,
        path,
        Size::Bytes(graze_proto::DEFAULT_MAX_TRACE_BYTES),
    );
    let max_trace_bytes = match &trace_v.value {
        Size::Bytes(b) if *b < 4096 => bail!(trace_v.bad("must be at least 4096 bytes")),
        Size::Bytes(b) => *b,
        Size::Text(t) => match parse_size(t).map_err(|e| trace_v.bad(e))? {
            b if b < 4096 => bail!(trace_v.bad("must be at least 4096 bytes")),
            b => b,
        },
    };
    Ok(SchedulerConfig {
        max_trace_bytes,
        checkpoint_node_dir: dir_v.value,
        max_checkpoint_bytes,
        history_days: days_v.value,
        requeue_when_suspended_after,
        state_dir,
        listen,
        advertise: cli.advertise.or(file.advertise),
        max_job_cores: cli.max_job_cores.or(file.max_job_cores).unwrap_or(0),
        node_timeout,
    })
}

/// Parse a scheduler.toml; errors name the file.
pub fn load_file(p: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    parse_file(&text).with_context(|| format!("in {}", p.display()))
}

/// Parse scheduler.toml text.
pub fn parse_file(text: &str) -> Result<FileConfig> {
    Ok(toml::from_str(text)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses() {
        let f = parse_file(include_str!("../../config/scheduler.toml")).unwrap();
        assert_eq!(f.listen.as_deref(), Some("0.0.0.0:7700"));
        let c = resolve(Cli {
            state_dir: Some("/x".into()),
            ..Cli::default()
        })
        .unwrap();
        assert_eq!(c.node_timeout, Duration::from_secs(10));
    }

    #[test]
    fn flags_override_file_and_errors_quote_values() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.toml");
        std::fs::write(
            &f,
            "state_dir = \"/x\"\nlisten = \"127.0.0.1:9\"\nmax_job_cores = 4\n",
        )
        .unwrap();
        let c = resolve(Cli {
            config: Some(f.clone()),
            max_job_cores: Some(8),
            ..Cli::default()
        })
        .unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/x"));
        assert_eq!(c.listen.port(), 9);
        assert_eq!(c.max_job_cores, 8);
        std::fs::write(&f, "state_dir = \"/x\"\nlisten = \"nowhere\"\n").unwrap();
        let e = format!(
            "{:#}",
            resolve(Cli {
                config: Some(f.clone()),
                ..Cli::default()
            })
            .unwrap_err()
        );
        assert_eq!(
            e,
            format!(
                "invalid listen 'nowhere' in {}: must be IP:PORT, e.g. 0.0.0.0:7700",
                f.display()
            )
        );
        std::fs::write(&f, "state_dir = \"/x\"\nlisten_port = 3\n").unwrap();
        let e = format!(
            "{:#}",
            resolve(Cli {
                config: Some(f.clone()),
                ..Cli::default()
            })
            .unwrap_err()
        );
        assert!(e.contains("unknown field `listen_port`"), "{e}");
        let e = format!(
            "{:#}",
            resolve(Cli {
                state_dir: Some("/x".into()),
                node_timeout: Some("soon".into()),
                ..Cli::default()
            })
            .unwrap_err()
        );
        assert!(
            e.starts_with("invalid --node-timeout 'soon': "),
            "a flag's error names the flag: {e}"
        );
    }

    #[test]
    fn checkpoint_keys_parse_and_bad_ones_are_quoted() {
        let f = parse_file(include_str!("../../config/scheduler.toml")).unwrap();
        assert_eq!(f.max_checkpoint_bytes, Some(Size::Text("1GiB".into())));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.toml");
        let run = |text: &str| {
            std::fs::write(&p, format!("state_dir = \"/x\"\n{text}\n")).unwrap();
            resolve(Cli {
                config: Some(p.clone()),
                ..Cli::default()
            })
            .map_err(|e| format!("{e:#}"))
        };
        let c = run("").unwrap();
        assert_eq!(c.max_checkpoint_bytes, 1 << 30);
        assert_eq!(c.checkpoint_node_dir, "/var/tmp/graze-checkpoints");
        assert_eq!(
            c.checkpoint_root("sha256:0123456789abcdef0123"),
            "/var/tmp/graze-checkpoints/0123456789ab"
        );
        let c = run("max_checkpoint_bytes = 5000\ncheckpoint_node_dir = \"/scratch/ck/\"").unwrap();
        assert_eq!(c.max_checkpoint_bytes, 5000);
        assert_eq!(
            c.checkpoint_root("sha256:ffffffffffffff"),
            "/scratch/ck/ffffffffffff"
        );
        assert_eq!(
            run("max_checkpoint_bytes = \"500MB\"")
                .unwrap()
                .max_checkpoint_bytes,
            500_000_000
        );
        assert_eq!(
            run("max_checkpoint_bytes = \"2 MiB\"")
                .unwrap()
                .max_checkpoint_bytes,
            2 << 20
        );
        let at = p.display();
        assert_eq!(
            run("max_checkpoint_bytes = \"lots\"").unwrap_err(),
            format!("invalid max_checkpoint_bytes 'lots' in {at}: write it like '1GiB', '500MB' or a number of bytes")
        );
        assert!(run("max_checkpoint_bytes = \"3 parsecs\"")
            .unwrap_err()
            .contains("unknown unit 'parsecs'"));
        assert_eq!(
            run("max_checkpoint_bytes = 0").unwrap_err(),
            format!("invalid max_checkpoint_bytes '0' in {at}: must be at least 1 byte")
        );
        assert!(run("max_checkpoint_bytes = -3").is_err());
        assert_eq!(
            run("max_trace_bytes = \"1MiB\"").unwrap().max_trace_bytes,
            1 << 20
        );
        assert_eq!(
            run("max_trace_bytes = 100").unwrap_err(),
            format!("invalid max_trace_bytes '100' in {at}: must be at least 4096 bytes")
        );
        assert_eq!(
            run("max_trace_bytes = \"1KB\"").unwrap_err(),
            format!("invalid max_trace_bytes '1KB' in {at}: must be at least 4096 bytes")
        );
        let e = run("checkpoint_node_dir = \"var/tmp\"").unwrap_err();
        assert!(
            e.starts_with(&format!(
                "invalid checkpoint_node_dir 'var/tmp' in {at}: must be an absolute"
            )),
            "{e}"
        );
        assert!(run("checkpoint_node_dir = \"/\"").is_err());
        let e = resolve(Cli {
            state_dir: Some("/x".into()),
            max_checkpoint_bytes: Some("1XB".into()),
            ..Cli::default()
        })
        .unwrap_err();
        assert!(
            format!("{e:#}").starts_with("invalid --max-checkpoint-bytes '1XB': unknown unit 'XB'"),
            "{e:#}"
        );
    }

    /// Every bad value of the file is quoted with its key and the file actually read.
    #[test]
    fn file_errors_name_key_value_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sched.toml");
        let run = |text: &str| {
            std::fs::write(&f, format!("state_dir = \"/x\"\n{text}\n")).unwrap();
            format!(
                "{:#}",
                resolve(Cli {
                    config: Some(f.clone()),
                    ..Cli::default()
                })
                .unwrap_err()
            )
        };
        let p = f.display();
        assert_eq!(
            run("node_timeout = \"1s\""),
            format!("invalid node_timeout '1s' in {p}: must be at least 3s")
        );
        let e = run("node_timeout = \"soon\"");
        assert!(
            e.starts_with(&format!("invalid node_timeout 'soon' in {p}: ")),
            "{e}"
        );
        assert!(e.ends_with("write it like '10s', '90s' or '15m'"), "{e}");
        assert_eq!(
            run("history_days = 0"),
            format!("invalid history_days '0' in {p}: must be from 1 to 36500 days")
        );
        let e = run("history_days = \"a month\"");
        assert!(e.contains("history_days"), "{e}");
        let e = run("requeue_when_suspended_after = \"later\"");
        assert!(
            e.starts_with(&format!(
                "invalid requeue_when_suspended_after 'later' in {p}: "
            )),
            "{e}"
        );
        // A flag wins over the file, and its error names the flag, not the file.
        std::fs::write(&f, "state_dir = \"/x\"\nlisten = \"127.0.0.1:9\"\n").unwrap();
        let e = format!(
            "{:#}",
            resolve(Cli {
                config: Some(f.clone()),
                listen: Some("nowhere".into()),
                ..Cli::default()
            })
            .unwrap_err()
        );
        assert_eq!(
            e,
            "invalid --listen 'nowhere': must be IP:PORT, e.g. 0.0.0.0:7700"
        );
    }
}
