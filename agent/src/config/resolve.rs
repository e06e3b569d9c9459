//! Flags over the file over the defaults, every value checked, and a bad one quoted with
//! where it came from: `invalid KEY 'VALUE' in PATH: WHY` for the file,
//! `invalid --FLAG 'VALUE': WHY` for a flag. [`resolve`] is pure.

use super::cli::Cli;
use super::defaults::{
    Defaults, DEFAULT_NICE, DEFAULT_NODE_TIMEOUT, DEFAULT_OWNER_CPU_MAX, DEFAULT_START_AFTER,
    LAUNCHER_NAME,
};
use super::file::{ConfigFile, FileConfig};
use super::values::{self, AgentConfig, Policy};
use crate::owner::window::{Window, Windows};
use crate::owner::IdleSourceSpec;
use anyhow::{anyhow, bail, Result};
use std::fmt::Display;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

/// The error text for a missing idle source.
pub const NO_IDLE_SOURCE: &str =
    "no idle source configured: pass --idle-source x11, tty, evdev, file:PATH or always-idle";

/// A setting's two names: its flag (without `--`) and its key in the file.
#[derive(Clone, Copy, Debug)]
struct Key {
    flag: &'static str,
    file: &'static str,
}

const fn key(flag: &'static str, file: &'static str) -> Key {
    Key { flag, file }
}

/// Where a value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin<'a> {
    Flag,
    File(&'a Path),
    Default,
}

/// A value and where it came from, so that a bad one is quoted the same way everywhere.
#[derive(Clone, Debug)]
struct Layered<'a, T> {
    value: T,
    key: Key,
    origin: Origin<'a>,
}

impl<T> Layered<'_, T> {
    /// The error for this value (shown as `shown`) with the reason `why`.
    fn bad(&self, shown: &dyn Display, why: &str) -> anyhow::Error {
        bad(self.key, self.origin, shown, why)
    }
}

impl<'a, T: Display> Layered<'a, T> {
    /// Check the value; a failed check is quoted.
    fn check<W: AsRef<str>>(self, f: impl FnOnce(&T) -> Result<(), W>) -> Result<T> {
        match f(&self.value) {
            Ok(()) => Ok(self.value),
            Err(why) => Err(self.bad(&self.value, why.as_ref())),
        }
    }

    /// Parse the value; a failed parse is quoted.
    fn parse<U, W: AsRef<str>>(self, f: impl FnOnce(&T) -> Result<U, W>) -> Result<U> {
        f(&self.value).map_err(|why| self.bad(&self.value, why.as_ref()))
    }
}

fn bad(key: Key, origin: Origin<'_>, shown: &dyn Display, why: &str) -> anyhow::Error {
    match origin {
        Origin::Flag => anyhow!("invalid --{} '{shown}': {why}", key.flag),
        Origin::File(p) => anyhow!("invalid {} '{shown}' in {}: {why}", key.file, p.display()),
        Origin::Default => anyhow!("invalid {} '{shown}' (the default): {why}", key.file),
    }
}

/// The three layers: flags, the file (if one was read), defaults.
struct Layers<'a> {
    path: Option<&'a Path>,
}

impl<'a> Layers<'a> {
    /// The flag, else the file's value; `None` when neither is set.
    fn pick<T>(&self, key: Key, flag: Option<T>, file: Option<T>) -> Option<Layered<'a, T>> {
        let (value, origin) = match (flag, file) {
            (Some(v), _) => (v, Origin::Flag),
            (None, Some(v)) => (v, self.path.map_or(Origin::Default, Origin::File)),
            (None, None) => return None,
        };
        Some(Layered { value, key, origin })
    }

    /// The flag, else the file's value, else `default`.
    fn pick_or<T>(&self, key: Key, flag: Option<T>, file: Option<T>, default: T) -> Layered<'a, T> {
        self.pick(key, flag, file).unwrap_or(Layered {
            value: default,
            key,
            origin: Origin::Default,
        })
    }

    /// A list: the flags if any were given, else the file's list, else empty.
    fn list<T: Clone>(&self, key: Key, flag: &[T], file: &Option<Vec<T>>) -> Layered<'a, Vec<T>> {
        let flag = (!flag.is_empty()).then(|| flag.to_vec());
        self.pick_or(key, flag, file.clone(), Vec::new())
    }

    /// Each element of a list, checked or parsed, quoted one by one.
    fn each<T, U, W: AsRef<str>>(
        list: Layered<'a, Vec<T>>,
        f: impl Fn(&T) -> Result<U, W>,
    ) -> Result<Vec<U>>
    where
        T: Display,
    {
        list.value
            .iter()
            .map(|v| f(v).map_err(|why| bad(list.key, list.origin, v, why.as_ref())))
            .collect()
    }
}

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
    let l = Layers {
        path: file.map(|c| c.path.as_path()),
    };

    let access = l
        .pick(key("access", "access"), cli.access.clone(), f.access.clone())
        .ok_or_else(|| {
            anyhow!(
                "no access file: pass --access FILE, set GRAZE_ACCESS, or set access in the config file"
            )
        })?
        .value;

    let name = l
        .pick_or(
            key("name", "name"),
            cli.name.clone(),
            f.name.clone(),
            defaults.hostname.clone(),
        )
        .check(|n| values::check_name(n))?;

    let cores = l
        .pick_or(key("cores", "cores"), cli.cores, f.cores, defaults.cpus)
        .check(|c| {
            if *c == 0 {
                Err("must be at least 1")
            } else {
                Ok(())
            }
        })?;

    let bind = l
        .pick(key("bind", "bind"), cli.bind.clone(), f.bind.clone())
        .map(|b| {
            b.parse(|s| {
                s.parse::<IpAddr>()
                    .map_err(|_| "must be an IP address such as 192.168.1.20")
            })
        })
        .transpose()?;

    let groups = l.list(key("group", "groups"), &cli.groups, &f.groups);
    let groups = Layers::each(groups, |g: &String| {
        values::check_group(g).map(|()| g.clone())
    })?;

    let sources = l.list(
        key("idle-source", "idle_sources"),
        &cli.idle_sources,
        &f.idle_sources,
    );
    let idle_sources = Layers::each(sources, |s: &String| s.parse::<IdleSourceSpec>())?;
    if idle_sources.is_empty() {
        bail!(NO_IDLE_SOURCE);
    }

    let duration = |k: Key, c: &Option<String>, v: &Option<String>, d: Duration, ex: &str| {
        l.pick(k, c.clone(), v.clone())
            .map_or(Ok(d), |s| s.parse(|s| values::parse_duration(s, ex)))
    };
    let start_after = duration(
        key("start-after", "start_after"),
        &cli.start_after,
        &f.start_after,
        DEFAULT_START_AFTER,
        "90s, 15m or 0s",
    )?;

    let owner_cpu_max = l
        .pick_or(
            key("owner-cpu-max", "owner_cpu_max"),
            cli.owner_cpu_max,
            f.owner_cpu_max,
            DEFAULT_OWNER_CPU_MAX,
        )
        .check(|p| {
            if *p > 100 {
                Err("must be a percentage from 0 to 100 (100 disables the check)")
            } else {
                Ok(())
            }
        })?;

    let dflt = Policy::default();
    let long = "10s, 5m or 1h";
    let policy = Policy {
        resume_after: duration(
            key("resume-after", "resume_after"),
            &cli.resume_after,
            &f.resume_after,
            dflt.resume_after,
            long,
        )?,
        vacate_after: duration(
            key("vacate-after", "vacate_after"),
            &cli.vacate_after,
            &f.vacate_after,
            dflt.vacate_after,
            long,
        )?,
        vacate_grace: duration(
            key("vacate-grace", "vacate_grace"),
            &cli.vacate_grace,
            &f.vacate_grace,
            dflt.vacate_grace,
            long,
        )?,
        windows: Windows(Layers::each(
            l.list(key("window", "windows"), &cli.windows, &f.windows),
            |w: &String| w.parse::<Window>().map_err(|e| e.why().to_string()),
        )?),
    };

    let spool = l.pick_or(
        key("spool", "spool"),
        cli.spool.clone(),
        f.spool.clone(),
        defaults.spool(&name),
    );
    if spool.value.as_os_str().is_empty() {
        return Err(spool.bad(&"", "must be a directory"));
    }
    let spool = spool.value;

    let launcher = l
        .pick(
            key("launcher", "launcher"),
            cli.launcher.clone(),
            f.launcher.clone(),
        )
        .map(|v| v.value)
        .or_else(|| defaults.launcher.clone())
        .ok_or_else(|| {
            anyhow!(
                "cannot find {LAUNCHER_NAME} next to graze-agent or on PATH; install it or set launcher in the config file"
            )
        })?;

    let node_timeout = match l.pick(
        key("node-timeout", "node_timeout"),
        cli.node_timeout.clone(),
        f.node_timeout.clone(),
    ) {
        None => DEFAULT_NODE_TIMEOUT,
        Some(s) => {
            let d = s.clone().parse(|s| values::parse_duration(s, "10s"))?;
            if d < graze_proto::MIN_NODE_TIMEOUT {
                let min = humantime::format_duration(graze_proto::MIN_NODE_TIMEOUT);
                return Err(s.bad(&s.value, &format!("must be at least {min}")));
            }
            d
        }
    };

    let run_as = run_as(&l, cli, f, defaults)?;
    let slot_users = match l.pick(
        key("slot-users", "slot_users"),
        cli.job.slot_users.clone(),
        f.slot_users.clone(),
    ) {
        None => None,
        Some(p) if !defaults.is_root => {
            return Err(p.bad(
                &p.value,
                "slot users need an agent started as root; this agent runs jobs as itself",
            ))
        }
        Some(p) => Some(p.check(|v| {
            if !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                Ok(())
            } else {
                Err("a user name prefix: letters, digits, '-' and '_'")
            }
        })?),
    };

    let nice = l
        .pick_or(key("nice", "nice"), cli.job.nice, f.nice, DEFAULT_NICE)
        .check(|n| values::check_nice(*n))?;

    let memory_max = l
        .pick(
            key("memory-max", "memory_max"),
            cli.job.memory_max.clone(),
            f.memory_max.clone(),
        )
        .map(|m| m.parse(|s| values::parse_size(s)))
        .transpose()?;

    let checkpoint_rate = l
        .pick(
            key("checkpoint-rate", "checkpoint_rate"),
            cli.checkpoint_rate.clone(),
            f.checkpoint_rate.clone(),
        )
        .map(|m| m.parse(|s| values::parse_rate(s)))
        .transpose()?;

    let owner_socket = l
        .pick(
            key("owner-socket", "owner_socket"),
            cli.owner_socket.clone(),
            f.owner_socket.clone(),
        )
        .map(|p| p.value);
    let utmp = l
        .pick(key("utmp", "utmp"), cli.utmp.clone(), f.utmp.clone())
        .map(|p| p.value);

    Ok(AgentConfig {
        owner_socket,
        utmp,
        checkpoint_rate,
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
        slot_users,
        nice,
        memory_max,
    })
}

/// The user jobs run as: as root, `run_as` (default `graze`), never root; as a normal user,
/// that user (naming another is an error).
fn run_as(
    l: &Layers<'_>,
    cli: &Cli,
    f: &FileConfig,
    defaults: &Defaults,
) -> Result<Option<String>> {
    let k = key("run-as", "run_as");
    if defaults.is_root {
        let u = l
            .pick_or(
                k,
                cli.job.run_as.clone(),
                f.run_as.clone(),
                crate::jobs::confine::DEFAULT_RUN_AS.to_string(),
            )
            .check(|u| {
                if u == "root" || u == "0" || u.trim().is_empty() {
                    Err("job processes never run as root; name an unprivileged user such as graze")
                } else {
                    Ok(())
                }
            })?;
        return Ok(Some(u));
    }
    match l.pick(k, cli.job.run_as.clone(), f.run_as.clone()) {
        Some(u) if u.value != defaults.user => Err(u.bad(
            &u.value,
            &format!(
                "only an agent started as root runs jobs as another user; this agent runs as '{}' and runs jobs as itself",
                defaults.user
            ),
        )),
        _ => Ok(None),
    }
}
