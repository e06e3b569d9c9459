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
}

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
        }
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
    Ok(SchedulerConfig {
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
            format!("invalid node_timeout '1s' in {p}: must be at least 2s")
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
