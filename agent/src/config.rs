//! The agent's configuration: command line, optional TOML file, and defaults from the machine.
//!
//! [`resolve`] is pure: flags override the file, the file overrides [`Defaults`], and every
//! bad value is quoted in the error.

use crate::idle::IdleSourceSpec;
use crate::window::{Window, Windows};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Name of the launcher shim binary.
pub const LAUNCHER_NAME: &str = "graze-launch";

/// Default for `start_after`.
pub const DEFAULT_START_AFTER: Duration = Duration::from_secs(15 * 60);

/// Default for `owner_cpu_max`, in percent of the whole PC.
pub const DEFAULT_OWNER_CPU_MAX: u32 = 25;

/// The owner policy beyond `start_after` and `owner_cpu_max`.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Owner idle time before a job suspended for them continues.
    pub resume_after: Duration,
    /// Time a job stays suspended for this PC's owner before it is vacated.
    pub vacate_after: Duration,
    /// Time between SIGTERM and SIGKILL when vacating.
    pub vacate_grace: Duration,
    /// When the PC may run graze work at all; empty = always.
    pub windows: Windows,
}

impl Default for Policy {
    fn default() -> Self {
        // The scheduler's defaults for an agent that sends none are the same values.
        let wire = graze_proto::OwnerPolicy::default();
        Policy {
            resume_after: Duration::from_millis(wire.resume_after_ms),
            vacate_after: Duration::from_millis(wire.vacate_after_ms),
            vacate_grace: Duration::from_millis(wire.vacate_grace_ms),
            windows: Windows::default(),
        }
    }
}

impl Policy {
    /// The part the scheduler acts on.
    pub fn wire(&self) -> graze_proto::OwnerPolicy {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        graze_proto::OwnerPolicy {
            resume_after_ms: ms(self.resume_after),
            vacate_after_ms: ms(self.vacate_after),
            vacate_grace_ms: ms(self.vacate_grace),
        }
    }
}

/// Everything the agent needs to run. Build it with [`resolve`] (from a command line and a
/// file) or fill it directly (tests).
#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    /// The access file written by the scheduler (address, fingerprint, token).
    pub access: PathBuf,
    /// Node name, unique in the cluster; the host name MPI sees.
    pub name: String,
    /// Cores offered when the owner is idle.
    pub cores: u32,
    /// Local address to connect from and run jobs on; `None` lets the OS choose.
    pub bind: Option<IpAddr>,
    /// Node groups.
    pub groups: Vec<String>,
    /// How the owner's idle time is measured; at least one is needed.
    pub idle_sources: Vec<IdleSourceSpec>,
    /// How long the owner must be idle before the cores are offered.
    pub start_after: Duration,
    /// Above this CPU use of the owner's own processes (percent of the whole PC) the cores
    /// are not offered; 100 disables the check.
    pub owner_cpu_max: u32,
    /// Directory for job files and the launcher socket (`SPOOL/launch.sock`).
    pub spool: PathBuf,
    /// Path of the `graze-launch` shim that hydra runs instead of ssh.
    pub launcher: PathBuf,
    /// Suspend, resume, vacate, windows and job limits.
    pub policy: Policy,
    /// How long job processes survive a lost scheduler: after this the agent kills them
    /// itself (the scheduler requeues the job after the same time). Match the scheduler's.
    pub node_timeout: Duration,
    /// The unprivileged user job processes run as when the agent runs as root; `None` when
    /// the agent runs as a normal user (jobs then run as that user).
    pub run_as: Option<String>,
    /// Nice level of job processes (0 to 19); also the service's `Nice=`.
    pub nice: i32,
    /// Memory cap of each job on this PC, in bytes (its cgroup's limit where cgroups are
    /// writable); also the service's `MemoryMax=`.
    pub memory_max: Option<u64>,
}

/// Default for `nice`.
pub const DEFAULT_NICE: i32 = 19;

/// Command line of `graze-agent`.
#[derive(clap::Parser, Clone, Debug, Default, PartialEq)]
#[command(
    name = "graze-agent",
    version,
    about = "Offer this PC's idle cores to a graze scheduler and run its jobs"
)]
pub struct Cli {
    /// Access file from the scheduler.
    #[arg(long, env = "GRAZE_ACCESS", value_name = "FILE")]
    pub access: Option<PathBuf>,
    /// Node name [default: host name].
    #[arg(long, value_name = "N")]
    pub name: Option<String>,
    /// Cores to offer [default: logical CPUs].
    #[arg(long, value_name = "N")]
    pub cores: Option<u32>,
    /// Local IP to connect from [default: chosen by the OS].
    #[arg(long, value_name = "IP")]
    pub bind: Option<String>,
    /// Node group (repeatable).
    #[arg(long = "group", value_name = "G")]
    pub groups: Vec<String>,
    /// Idle source: `x11`, `x11:DISPLAY`, `user-idle`, `tty`, `evdev`, `file:PATH` or
    /// `always-idle` (repeatable).
    #[arg(long = "idle-source", value_name = "SPEC")]
    pub idle_sources: Vec<String>,
    /// Owner idle time before offering cores, e.g. `90s`, `15m` [default: 15m].
    #[arg(long, value_name = "DURATION")]
    pub start_after: Option<String>,
    /// Owner CPU use (percent of the PC) above which cores are not offered; 100 disables
    /// [default: 25].
    #[arg(long, value_name = "PERCENT")]
    pub owner_cpu_max: Option<u32>,
    /// Owner idle time before a job suspended for the owner continues [default: 5m].
    #[arg(long, value_name = "DURATION")]
    pub resume_after: Option<String>,
    /// Time a job stays suspended for the owner before it is vacated [default: 10m].
    #[arg(long, value_name = "DURATION")]
    pub vacate_after: Option<String>,
    /// Time between SIGTERM and SIGKILL when a job is vacated [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub vacate_grace: Option<String>,
    /// Availability window, e.g. 'Mon-Fri 19:00-07:00' or 'Sat-Sun' (repeatable) [default:
    /// always].
    #[arg(long = "window", value_name = "WINDOW")]
    pub windows: Vec<String>,
    /// Spool directory for job files and the launcher socket.
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Path of the graze-launch shim [default: next to this program, else on PATH].
    #[arg(long, value_name = "FILE")]
    pub launcher: Option<PathBuf>,
    /// Keep job processes this long when the scheduler is lost, e.g. `10s` [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub node_timeout: Option<String>,
    /// Run job processes as this unprivileged user when started as root [default: graze].
    #[arg(long, value_name = "USER")]
    pub run_as: Option<String>,
    /// Nice level of job processes, 0 to 19 [default: 19].
    #[arg(long, value_name = "N")]
    pub nice: Option<i32>,
    /// Memory cap per job, e.g. `4G`, `512M` [default: none].
    #[arg(long, value_name = "SIZE")]
    pub memory_max: Option<String>,
    /// TOML file with the same keys as these flags; flags win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Install or uninstall the agent as a service instead of running it.
    #[command(subcommand)]
    pub command: Option<AgentCommand>,
}

/// Subcommands of `graze-agent`; without one it runs the agent.
#[derive(clap::Subcommand, Clone, Debug, PartialEq, Eq)]
pub enum AgentCommand {
    /// Set the agent up as a service (systemd unit, config, access file, jobs' user).
    Install(crate::install::InstallArgs),
    /// Stop the service and remove everything `install` created.
    Uninstall(crate::install::UninstallArgs),
    /// Internal: the process an agent starts to kill its jobs if it dies (see `guard.rs`).
    #[command(hide = true)]
    Guard(crate::guard::GuardArgs),
}

/// The TOML file's contents. Every key is optional.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// See [`AgentConfig::access`].
    pub access: Option<PathBuf>,
    /// See [`AgentConfig::name`].
    pub name: Option<String>,
    /// See [`AgentConfig::cores`].
    pub cores: Option<u32>,
    /// See [`AgentConfig::bind`].
    pub bind: Option<String>,
    /// See [`AgentConfig::groups`].
    pub groups: Option<Vec<String>>,
    /// See [`AgentConfig::idle_sources`].
    pub idle_sources: Option<Vec<String>>,
    /// See [`AgentConfig::start_after`]; e.g. `"15m"`.
    pub start_after: Option<String>,
    /// See [`AgentConfig::owner_cpu_max`].
    pub owner_cpu_max: Option<u32>,
    /// See [`Policy::resume_after`].
    pub resume_after: Option<String>,
    /// See [`Policy::vacate_after`].
    pub vacate_after: Option<String>,
    /// See [`Policy::vacate_grace`].
    pub vacate_grace: Option<String>,
    /// See [`Policy::windows`].
    pub windows: Option<Vec<String>>,
    /// See [`AgentConfig::spool`].
    pub spool: Option<PathBuf>,
    /// See [`AgentConfig::launcher`].
    pub launcher: Option<PathBuf>,
    /// See [`AgentConfig::node_timeout`].
    pub node_timeout: Option<String>,
    /// See [`AgentConfig::run_as`].
    pub run_as: Option<String>,
    /// See [`AgentConfig::nice`].
    pub nice: Option<i32>,
    /// See [`AgentConfig::memory_max`]; e.g. `"4G"`.
    pub memory_max: Option<String>,
}

/// A config file and where it came from (for error messages).
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigFile {
    /// The path as given.
    pub path: PathBuf,
    /// Its contents.
    pub values: FileConfig,
}

impl ConfigFile {
    /// Read and parse a config file; a missing or invalid file is an error.
    pub fn load(path: &Path) -> Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file '{}'", path.display()))?;
        ConfigFile::parse(path, &text)
    }

    /// Parse config text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile> {
        let values: FileConfig = toml::from_str(text)
            .with_context(|| format!("invalid config file '{}'", path.display()))?;
        Ok(ConfigFile {
            path: path.to_owned(),
            values,
        })
    }
}

/// Defaults that come from the machine. [`Defaults::detect`] reads them; tests make their own.
#[derive(Clone, Debug, PartialEq)]
pub struct Defaults {
    /// The host name.
    pub hostname: String,
    /// Logical CPUs.
    pub cpus: u32,
    /// Running as root.
    pub is_root: bool,
    /// `$XDG_RUNTIME_DIR`, if set.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// Login name, for `/tmp/graze-agent-USER`.
    pub user: String,
    /// The launcher shim found next to this program or on PATH.
    pub launcher: Option<PathBuf>,
}

impl Defaults {
    /// Read the defaults from this machine and process.
    pub fn detect() -> Defaults {
        let cpus = sysinfo::System::new_with_specifics(
            sysinfo::RefreshKind::nothing().with_cpu(sysinfo::CpuRefreshKind::nothing()),
        )
        .cpus()
        .len();
        let cpus = if cpus == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            cpus
        };
        // SAFETY: geteuid has no memory effects and cannot fail.
        let is_root = unsafe { libc::geteuid() } == 0;
        Defaults {
            hostname: sysinfo::System::host_name().unwrap_or_else(|| "localhost".into()),
            cpus: u32::try_from(cpus).unwrap_or(u32::MAX),
            is_root,
            xdg_runtime_dir: std::env::var_os("XDG_RUNTIME_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            user: std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_else(|_| {
                    // SAFETY: getuid has no memory effects and cannot fail.
                    format!("uid{}", unsafe { libc::getuid() })
                }),
            launcher: find_launcher(),
        }
    }

    /// The default spool directory for a node called `name`.
    pub fn spool(&self, name: &str) -> PathBuf {
        let base = if self.is_root {
            PathBuf::from("/var/spool/graze-agent")
        } else if let Some(x) = &self.xdg_runtime_dir {
            x.join("graze-agent")
        } else {
            PathBuf::from(format!("/tmp/graze-agent-{}", self.user))
        };
        base.join(name)
    }
}

/// Find `graze-launch`: next to the running program, then one directory up (test binaries
/// live in `target/debug/deps`, the shim in `target/debug`), then on PATH.
pub fn find_launcher() -> Option<PathBuf> {
    if let Ok(exe) = std::env::current_exe() {
        let dir = exe.parent();
        for d in [dir, dir.and_then(Path::parent)].into_iter().flatten() {
            let p = d.join(LAUNCHER_NAME);
            if is_executable(&p) {
                return Some(p);
            }
        }
    }
    find_on_path(LAUNCHER_NAME)
}

/// The first executable file called `name` in `$PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The error text for a missing idle source.
pub const NO_IDLE_SOURCE: &str =
    "no idle source configured: pass --idle-source x11, tty, evdev, file:PATH or always-idle";

/// Read the file named by `--config` (if any) and resolve everything.
pub fn load(cli: &Cli, defaults: &Defaults) -> Result<AgentConfig> {
    let file = match &cli.config {
        Some(p) => Some(ConfigFile::load(p)?),
        None => None,
    };
    resolve(cli, file.as_ref(), defaults)
}

/// Merge flags over the file over the defaults, and check every value.
pub fn resolve(cli: &Cli, file: Option<&ConfigFile>, defaults: &Defaults) -> Result<AgentConfig> {
    let empty = FileConfig::default();
    let f = file.map_or(&empty, |c| &c.values);
    // A bad value, quoted with where it came from:
    // `invalid --cores '0': ...` or `invalid cores '0' in agent.toml: ...`.
    let bad = |flag: &str, key: &str, from_cli: bool, value: &dyn std::fmt::Display, why: &str| {
        match file {
            Some(c) if !from_cli => {
                anyhow::anyhow!("invalid {key} '{value}' in {}: {why}", c.path.display())
            }
            _ => anyhow::anyhow!("invalid --{flag} '{value}': {why}"),
        }
    };

    let access = cli
        .access
        .clone()
        .or_else(|| f.access.clone())
        .ok_or_else(|| {
            anyhow::anyhow!(
            "no access file: pass --access FILE, set GRAZE_ACCESS, or set access in the config file"
        )
        })?;

    let name = cli
        .name
        .clone()
        .or_else(|| f.name.clone())
        .unwrap_or_else(|| defaults.hostname.clone());
    check_name(&name).map_err(|why| bad("name", "name", cli.name.is_some(), &name, why))?;

    let cores = cli.cores.or(f.cores).unwrap_or(defaults.cpus);
    if cores == 0 {
        return Err(bad(
            "cores",
            "cores",
            cli.cores.is_some(),
            &0,
            "must be at least 1",
        ));
    }

    let bind = match cli.bind.as_ref().or(f.bind.as_ref()) {
        None => None,
        Some(s) => Some(s.parse::<IpAddr>().map_err(|_| {
            bad(
                "bind",
                "bind",
                cli.bind.is_some(),
                s,
                "must be an IP address such as 192.168.1.20",
            )
        })?),
    };

    let groups = if cli.groups.is_empty() {
        f.groups.clone().unwrap_or_default()
    } else {
        cli.groups.clone()
    };
    for g in &groups {
        if g.trim().is_empty() || g.chars().any(|c| c.is_whitespace() || c == ',') {
            return Err(bad(
                "group",
                "groups",
                !cli.groups.is_empty(),
                g,
                "must be a non-empty word without spaces or commas",
            ));
        }
    }

    let (sources, from_cli) = if cli.idle_sources.is_empty() {
        (f.idle_sources.clone().unwrap_or_default(), false)
    } else {
        (cli.idle_sources.clone(), true)
    };
    let idle_sources = sources
        .iter()
        .map(|s| {
            s.parse::<IdleSourceSpec>()
                .map_err(|why| bad("idle-source", "idle_sources", from_cli, s, &why))
        })
        .collect::<Result<Vec<_>>>()?;
    if idle_sources.is_empty() {
        bail!(NO_IDLE_SOURCE);
    }

    let start_after = match cli.start_after.as_ref().or(f.start_after.as_ref()) {
        None => DEFAULT_START_AFTER,
        Some(s) => humantime::parse_duration(s.trim()).map_err(|e| {
            bad(
                "start-after",
                "start_after",
                cli.start_after.is_some(),
                s,
                &format!("{e}; write a duration such as 90s, 15m or 0s"),
            )
        })?,
    };

    let owner_cpu_max = cli
        .owner_cpu_max
        .or(f.owner_cpu_max)
        .unwrap_or(DEFAULT_OWNER_CPU_MAX);
    if owner_cpu_max > 100 {
        return Err(bad(
            "owner-cpu-max",
            "owner_cpu_max",
            cli.owner_cpu_max.is_some(),
            &owner_cpu_max,
            "must be a percentage from 0 to 100 (100 disables the check)",
        ));
    }

    let duration =
        |flag: &str, key: &str, c: &Option<String>, f: &Option<String>, d: Duration| match c
            .as_ref()
            .or(f.as_ref())
        {
            None => Ok(d),
            Some(s) => humantime::parse_duration(s.trim()).map_err(|e| {
                bad(
                    flag,
                    key,
                    c.is_some(),
                    s,
                    &format!("{e}; write a duration such as 10s, 5m or 1h"),
                )
            }),
        };
    let dflt = Policy::default();
    let resume_after = duration(
        "resume-after",
        "resume_after",
        &cli.resume_after,
        &f.resume_after,
        dflt.resume_after,
    )?;
    let vacate_after = duration(
        "vacate-after",
        "vacate_after",
        &cli.vacate_after,
        &f.vacate_after,
        dflt.vacate_after,
    )?;
    let vacate_grace = duration(
        "vacate-grace",
        "vacate_grace",
        &cli.vacate_grace,
        &f.vacate_grace,
        dflt.vacate_grace,
    )?;
    let (wins, from_cli) = if cli.windows.is_empty() {
        (f.windows.clone().unwrap_or_default(), false)
    } else {
        (cli.windows.clone(), true)
    };
    let windows = Windows(
        wins.iter()
            .map(|w| {
                w.parse::<Window>().map_err(|e| match file {
                    Some(c) if !from_cli => {
                        anyhow::anyhow!("{e} (windows in {})", c.path.display())
                    }
                    _ => anyhow::anyhow!("{e} (--window)"),
                })
            })
            .collect::<Result<_>>()?,
    );
    let policy = Policy {
        resume_after,
        vacate_after,
        vacate_grace,
        windows,
    };

    let spool = cli
        .spool
        .clone()
        .or_else(|| f.spool.clone())
        .unwrap_or_else(|| defaults.spool(&name));
    if spool.as_os_str().is_empty() {
        return Err(bad(
            "spool",
            "spool",
            cli.spool.is_some(),
            &"",
            "must be a directory",
        ));
    }

    let launcher = cli
        .launcher
        .clone()
        .or_else(|| f.launcher.clone())
        .or_else(|| defaults.launcher.clone())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "cannot find {LAUNCHER_NAME} next to graze-agent or on PATH; install it or set launcher in the config file"
            )
        })?;

    let node_timeout = match cli.node_timeout.as_ref().or(f.node_timeout.as_ref()) {
        None => graze_proto::DEFAULT_NODE_TIMEOUT,
        Some(s) => {
            let bad_timeout = |why: &str| {
                bad(
                    "node-timeout",
                    "node_timeout",
                    cli.node_timeout.is_some(),
                    s,
                    why,
                )
            };
            let d = humantime::parse_duration(s.trim())
                .map_err(|e| bad_timeout(&format!("{e}; write a duration such as 10s")))?;
            if d < graze_proto::MIN_NODE_TIMEOUT {
                let min = humantime::format_duration(graze_proto::MIN_NODE_TIMEOUT);
                return Err(bad_timeout(&format!("must be at least {min}")));
            }
            d
        }
    };

    let run_as = cli.run_as.as_ref().or(f.run_as.as_ref());
    let run_as = if defaults.is_root {
        let u = run_as
            .cloned()
            .unwrap_or_else(|| crate::confine::DEFAULT_RUN_AS.to_string());
        if u == "root" || u == "0" || u.trim().is_empty() {
            return Err(bad(
                "run-as",
                "run_as",
                cli.run_as.is_some(),
                &u,
                "job processes never run as root; name an unprivileged user such as graze",
            ));
        }
        Some(u)
    } else {
        match run_as {
            Some(u) if *u != defaults.user => {
                return Err(bad(
                    "run-as",
                    "run_as",
                    cli.run_as.is_some(),
                    u,
                    &format!(
                        "only an agent started as root runs jobs as another user; this agent runs as '{}' and runs jobs as itself",
                        defaults.user
                    ),
                ))
            }
            _ => None,
        }
    };

    let nice = cli.nice.or(f.nice).unwrap_or(DEFAULT_NICE);
    if !(0..=19).contains(&nice) {
        return Err(bad(
            "nice",
            "nice",
            cli.nice.is_some(),
            &nice,
            "must be from 0 to 19 (19 is the gentlest)",
        ));
    }

    let memory_max = match cli.memory_max.as_ref().or(f.memory_max.as_ref()) {
        None => None,
        Some(s) => Some(parse_size(s).map_err(|why| {
            bad(
                "memory-max",
                "memory_max",
                cli.memory_max.is_some(),
                s,
                &why,
            )
        })?),
    };

    Ok(AgentConfig {
        access,
        name,
        cores,
        bind,
        groups,
        idle_sources,
        start_after,
        owner_cpu_max,
        spool,
        launcher,
        policy,
        node_timeout,
        run_as,
        nice,
        memory_max,
    })
}

/// Parse a size: bytes, or a number with `K`, `M`, `G` or `T` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err("must be bytes or a number with K, M, G or T, e.g. 4G".into()),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| "must be bytes or a number with K, M, G or T, e.g. 4G".to_string())?;
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| "is too large".to_string())?;
    if bytes < (1 << 20) {
        return Err("must be at least 1M".into());
    }
    Ok(bytes)
}

/// A node name must work as a host name in hydra's host file.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("must not be empty");
    }
    if name.len() > 253 {
        return Err("must be at most 253 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("may only hold letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    fn defaults() -> Defaults {
        Defaults {
            hostname: "pc7".into(),
            cpus: 8,
            is_root: false,
            xdg_runtime_dir: None,
            user: "ann".into(),
            launcher: Some("/opt/graze/graze-launch".into()),
        }
    }

    fn cli(args: &[&str]) -> Cli {
        let mut v = vec!["graze-agent"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap()
    }

    fn file(text: &str) -> ConfigFile {
        ConfigFile::parse(Path::new("agent.toml"), text).unwrap()
    }

    fn err(c: &Cli, f: Option<&ConfigFile>) -> String {
        format!("{:#}", resolve(c, f, &defaults()).unwrap_err())
    }

    #[test]
    fn defaults_apply() {
        let c = resolve(
            &cli(&["--access", "/a.toml", "--idle-source", "always-idle"]),
            None,
            &defaults(),
        )
        .unwrap();
        assert_eq!(
            c,
            AgentConfig {
                access: "/a.toml".into(),
                name: "pc7".into(),
                cores: 8,
                bind: None,
                groups: vec![],
                idle_sources: vec![IdleSourceSpec::AlwaysIdle],
                start_after: Duration::from_secs(900),
                owner_cpu_max: 25,
                spool: "/tmp/graze-agent-ann/pc7".into(),
                launcher: "/opt/graze/graze-launch".into(),
                policy: Policy::default(),
                node_timeout: Duration::from_secs(10),
                run_as: None,
                nice: 19,
                memory_max: None,
            }
        );
    }

    #[test]
    fn spool_defaults() {
        let mut d = defaults();
        assert_eq!(d.spool("n"), PathBuf::from("/tmp/graze-agent-ann/n"));
        d.xdg_runtime_dir = Some("/run/user/1000".into());
        assert_eq!(d.spool("n"), PathBuf::from("/run/user/1000/graze-agent/n"));
        d.is_root = true;
        assert_eq!(d.spool("n"), PathBuf::from("/var/spool/graze-agent/n"));
    }

    #[test]
    fn valid_file_and_flags_override_it() {
        let f = file(
            r#"
            access = "/etc/graze/access.toml"
            name = "lab-3"
            cores = 4
            bind = "10.0.0.3"
            groups = ["lab", "fast"]
            idle_sources = ["file:/tmp/owner", "always-idle"]
            start_after = "90s"
            owner_cpu_max = 100
            spool = "/srv/graze"
            launcher = "/usr/local/bin/graze-launch"
            "#,
        );
        let c = resolve(&cli(&[]), Some(&f), &defaults()).unwrap();
        assert_eq!(c.name, "lab-3");
        assert_eq!(c.cores, 4);
        assert_eq!(c.bind, Some("10.0.0.3".parse().unwrap()));
        assert_eq!(c.groups, vec!["lab", "fast"]);
        assert_eq!(
            c.idle_sources,
            vec![
                IdleSourceSpec::File("/tmp/owner".into()),
                IdleSourceSpec::AlwaysIdle
            ]
        );
        assert_eq!(c.start_after, Duration::from_secs(90));
        assert_eq!(c.owner_cpu_max, 100);
        assert_eq!(c.spool, PathBuf::from("/srv/graze"));
        assert_eq!(c.launcher, PathBuf::from("/usr/local/bin/graze-launch"));

        let c = resolve(
            &cli(&[
                "--cores",
                "2",
                "--group",
                "x",
                "--start-after",
                "0s",
                "--idle-source",
                "always-idle",
                "--access",
                "/other",
            ]),
            Some(&f),
            &defaults(),
        )
        .unwrap();
        assert_eq!(c.cores, 2);
        assert_eq!(c.groups, vec!["x"]);
        assert_eq!(c.start_after, Duration::ZERO);
        assert_eq!(c.idle_sources, vec![IdleSourceSpec::AlwaysIdle]);
        assert_eq!(c.access, PathBuf::from("/other"));
        assert_eq!(c.name, "lab-3");
    }

    #[test]
    fn empty_file_is_valid() {
        let f = file("# nothing set\n");
        assert_eq!(f.values, FileConfig::default());
    }

    #[test]
    fn policy_from_file_and_flags() {
        let f = file(
            "access = \"/a\"\nidle_sources = [\"tty\", \"x11::0\"]\nresume_after = \"2m\"\nwindows = [\"Sat-Sun\"]\n",
        );
        let c = resolve(&cli(&["--vacate-after", "30s"]), Some(&f), &defaults()).unwrap();
        assert_eq!(c.policy.resume_after, Duration::from_secs(120));
        assert_eq!(c.policy.vacate_after, Duration::from_secs(30));
        assert_eq!(c.policy.vacate_grace, Duration::from_secs(10));
        assert_eq!(c.policy.windows.0.len(), 1);
        assert_eq!(c.policy.wire().vacate_after_ms, 30_000);
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../../config/agent.toml");
        let f = file(text);
        resolve(&cli(&["--access", "/a"]), Some(&f), &defaults()).unwrap();
    }

    #[test]
    fn invalid_values_are_quoted() {
        let base = "access = \"/a\"\nidle_sources = [\"always-idle\"]\n";
        let cases = [
            (
                "cores = 0",
                "invalid cores '0' in agent.toml: must be at least 1",
            ),
            (
                "bind = \"10.0.0\"",
                "invalid bind '10.0.0' in agent.toml: must be an IP address",
            ),
            (
                "start_after = \"5 parsecs\"",
                "invalid start_after '5 parsecs' in agent.toml",
            ),
            (
                "owner_cpu_max = 150",
                "invalid owner_cpu_max '150' in agent.toml: must be a percentage from 0 to 100",
            ),
            (
                "name = \"my pc\"",
                "invalid name 'my pc' in agent.toml: may only hold",
            ),
            ("groups = [\"a b\"]", "invalid groups 'a b' in agent.toml"),
            (
                "resume_after = \"soon\"",
                "invalid resume_after 'soon' in agent.toml",
            ),
            (
                "windows = [\"Mon-Fri 19:00-07:00\", \"Sun 9-17\"]",
                "invalid availability window 'Sun 9-17': '9' is not a time of day",
            ),
            (
                "nice = 20",
                "invalid nice '20' in agent.toml: must be from 0 to 19",
            ),
        ];
        for (line, want) in cases {
            let e = err(&cli(&[]), Some(&file(&format!("{base}{line}\n"))));
            assert!(e.contains(want), "for {line:?}: {e}");
        }
        let e = err(
            &cli(&[]),
            Some(&file("access = \"/a\"\nidle_sources = [\"x12\"]\n")),
        );
        assert!(
            e.contains(
                "invalid idle_sources 'x12' in agent.toml: must be 'file:PATH', 'always-idle'"
            ),
            "{e}"
        );
    }

    #[test]
    fn invalid_flags_are_quoted() {
        let e = err(
            &cli(&[
                "--access",
                "/a",
                "--idle-source",
                "always-idle",
                "--cores",
                "0",
            ]),
            None,
        );
        assert!(e.contains("invalid --cores '0': must be at least 1"), "{e}");
        let e = err(
            &cli(&["--access", "/a", "--idle-source", "ttyy"]),
            Some(&file("cores = 2")),
        );
        assert!(e.contains("invalid --idle-source 'ttyy'"), "{e}");
        let e = err(
            &cli(&[
                "--access",
                "/a",
                "--idle-source",
                "always-idle",
                "--start-after",
                "soon",
            ]),
            None,
        );
        assert!(e.contains("invalid --start-after 'soon'"), "{e}");
    }

    #[test]
    fn file_syntax_errors_name_the_file() {
        let e = format!(
            "{:#}",
            ConfigFile::parse(Path::new("agent.toml"), "cores = \"many\"").unwrap_err()
        );
        assert!(e.contains("invalid config file 'agent.toml'"), "{e}");
        assert!(e.contains("invalid type"), "{e}");
        let e = format!(
            "{:#}",
            ConfigFile::parse(Path::new("agent.toml"), "color = \"red\"").unwrap_err()
        );
        assert!(e.contains("unknown field `color`"), "{e}");
        let e = format!(
            "{:#}",
            ConfigFile::load(Path::new("/nonexistent/agent.toml")).unwrap_err()
        );
        assert!(
            e.contains("reading config file '/nonexistent/agent.toml'"),
            "{e}"
        );
    }

    #[test]
    fn missing_pieces_are_explained() {
        let e = err(&cli(&["--access", "/a"]), None);
        assert_eq!(e, NO_IDLE_SOURCE);
        let e = err(&cli(&["--idle-source", "always-idle"]), None);
        assert!(e.contains("no access file"), "{e}");
        let mut d = defaults();
        d.launcher = None;
        let e = format!(
            "{:#}",
            resolve(
                &cli(&["--access", "/a", "--idle-source", "always-idle"]),
                None,
                &d
            )
            .unwrap_err()
        );
        assert!(e.contains("cannot find graze-launch"), "{e}");
    }

    #[test]
    fn run_as_nice_and_memory() {
        let base = ["--access", "/a", "--idle-source", "always-idle"];
        let mut root = defaults();
        root.is_root = true;
        let c = resolve(&cli(&base), None, &root).unwrap();
        assert_eq!(c.run_as.as_deref(), Some("graze"));
        let mut a = base.to_vec();
        a.extend(["--run-as", "jobs", "--nice", "10", "--memory-max", "2G"]);
        let c = resolve(&cli(&a), None, &root).unwrap();
        assert_eq!(c.run_as.as_deref(), Some("jobs"));
        assert_eq!(c.nice, 10);
        assert_eq!(c.memory_max, Some(2 << 30));
        let e = format!(
            "{:#}",
            resolve(
                &cli(&[&base[..], &["--run-as", "root"]].concat()),
                None,
                &root
            )
            .unwrap_err()
        );
        assert!(
            e.contains("invalid --run-as 'root': job processes never run as root"),
            "{e}"
        );
        // A normal user runs jobs as itself and cannot name another user.
        let c = resolve(&cli(&base), None, &defaults()).unwrap();
        assert_eq!(c.run_as, None);
        let e = err(&cli(&[&base[..], &["--run-as", "bob"]].concat()), None);
        assert!(
            e.contains("invalid --run-as 'bob': only an agent started as root"),
            "{e}"
        );
        let e = err(&cli(&[&base[..], &["--nice=-5"]].concat()), None);
        assert!(e.contains("invalid --nice '-5'"), "{e}");
        let e = err(&cli(&base), Some(&file("memory_max = \"lots\"\n")));
        assert!(e.contains("invalid memory_max 'lots' in agent.toml"), "{e}");
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert!(parse_size("10").is_err());
    }

    #[test]
    fn humantime_forms() {
        for (s, secs) in [("90s", 90), ("15m", 900), ("0s", 0), ("1h 30m", 5400)] {
            let c = resolve(
                &cli(&[
                    "--access",
                    "/a",
                    "--idle-source",
                    "always-idle",
                    "--start-after",
                    s,
                ]),
                None,
                &defaults(),
            )
            .unwrap();
            assert_eq!(c.start_after, Duration::from_secs(secs), "{s}");
        }
    }
}
