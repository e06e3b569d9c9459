//! `graze-agent install` and `graze-agent uninstall`: set the agent up as a service, and take
//! all of it away again.
//!
//! As root (a system install):
//! - the system user `graze` (no login shell, home `/nonexistent`) that jobs run as;
//! - `/etc/graze/agent.toml`, and the access file as `/etc/graze/access.toml`, readable by
//!   root only (0600): the agent runs as root and `graze` is the user jobs run as, so letting
//!   `graze` read it would hand every job the agent's token;
//! - `/etc/systemd/system/graze-agent.service` with `Restart=on-failure`, `Nice=`,
//!   `CPUWeight=` and `MemoryMax=` from the owner policy, and `Delegate=yes` for job cgroups;
//! - `/var/spool/graze-agent` for job files.
//!
//! As a normal user (or with `--user`): `~/.config/graze/{agent,access}.toml` (0600) and a
//! systemd user unit `~/.config/systemd/user/graze-agent.service`.
//!
//! Every path can be put under `--root DIR` (tests; images). What install created is listed in
//! a manifest next to agent.toml, so uninstall removes exactly that, and nothing else, and
//! stops the service. Where systemd does not run, install still writes everything and says
//! how to start the agent; uninstall stops an agent started from the installed config.
//!
//! Windows (a service via the SCM) and macOS (a launchd daemon) are planned, not done.

mod user;

pub use user::{ensure_user, ensure_user_in, remove_user};

use crate::config::{self, InstallArgs, UninstallArgs, DEFAULT_NICE};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Name of the service (unit file `graze-agent.service`).
pub const SERVICE: &str = "graze-agent";
/// The system user jobs run as.
pub const SYSTEM_USER: &str = "graze";
/// File name of the install manifest, next to agent.toml.
pub const MANIFEST: &str = "install-manifest.toml";

/// What install created, so uninstall removes exactly that.
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `system` or `user`.
    pub mode: String,
    /// Files created (absolute, under the root).
    pub files: Vec<PathBuf>,
    /// Directories created, innermost last; removed when empty (the spool: with its content).
    pub dirs: Vec<PathBuf>,
    /// Directories removed with everything in them (the spool).
    #[serde(default)]
    pub trees: Vec<PathBuf>,
    /// The system user install created, if it did.
    #[serde(default)]
    pub created_user: Option<String>,
    /// The slot users install created (one per core: `USER-s0`, ...).
    #[serde(default)]
    pub created_slot_users: Vec<String>,
    /// The config path the service runs with (as the agent sees it, without the root).
    pub config: PathBuf,
}

/// The layout of an install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// System or user install.
    pub system: bool,
    /// The root prefix (`/` normally).
    pub root: PathBuf,
    /// Config directory as the agent sees it (`/etc/graze`, `~/.config/graze`).
    pub etc: PathBuf,
    /// Unit directory as systemd sees it.
    pub unit_dir: PathBuf,
    /// Spool, for a system install.
    pub spool: Option<PathBuf>,
}

impl Layout {
    /// The layout for a system (`system`) or user install under `root`.
    pub fn new(system: bool, root: Option<&Path>) -> Result<Layout> {
        let root = root.map_or_else(|| PathBuf::from("/"), Path::to_owned);
        if system {
            Ok(Layout {
                system,
                root,
                etc: "/etc/graze".into(),
                unit_dir: "/etc/systemd/system".into(),
                spool: Some("/var/spool/graze-agent".into()),
            })
        } else {
            let home = crate::jobs::confine::current_user().home;
            let config = std::env::var_os("XDG_CONFIG_HOME")
                .filter(|v| !v.is_empty() && root == Path::new("/"))
                .map_or_else(|| home.join(".config"), PathBuf::from);
            Ok(Layout {
                system,
                root,
                etc: config.join("graze"),
                unit_dir: config.join("systemd/user"),
                spool: None,
            })
        }
    }

    /// `p` (absolute, as the system sees it) under the root.
    pub fn at(&self, p: &Path) -> PathBuf {
        self.root.join(p.strip_prefix("/").unwrap_or(p))
    }

    /// The config file, as the agent sees it.
    pub fn config(&self) -> PathBuf {
        self.etc.join("agent.toml")
    }

    /// The installed access file, as the agent sees it.
    pub fn access(&self) -> PathBuf {
        self.etc.join("access.toml")
    }

    /// The unit file, as systemd sees it.
    pub fn unit(&self) -> PathBuf {
        self.unit_dir.join(format!("{SERVICE}.service"))
    }

    /// The manifest, under the root.
    pub fn manifest(&self) -> PathBuf {
        self.at(&self.etc.join(MANIFEST))
    }
}

/// CPUWeight= matching a nice level: the kernel's weight for that nice level, scaled so that
/// nice 0 is systemd's default weight 100 (nice 19 gives 1, the lowest).
/// Slot users are named `RUN_AS{SLOT_SUFFIX}N`: `graze-s0`, `graze-s1`, ...
pub const SLOT_SUFFIX: &str = "-s";

pub fn cpu_weight(nice: i32) -> u32 {
    // The kernel's sched_prio_to_weight table, nice -20..=19.
    const W: [u32; 40] = [
        88761, 71755, 56483, 46273, 36291, 29154, 23254, 18705, 14949, 11916, 9548, 7620, 6100,
        4904, 3906, 3121, 2501, 1991, 1586, 1277, 1024, 820, 655, 526, 423, 335, 272, 215, 172,
        137, 110, 87, 70, 56, 45, 36, 29, 23, 18, 15,
    ];
    let i = (nice.clamp(-20, 19) + 20) as usize;
    ((W[i] * 100 + 512) / 1024).max(1)
}

/// The unit file text.
pub fn unit_text(
    exe: &Path,
    config: &Path,
    system: bool,
    nice: i32,
    memory_max: Option<u64>,
) -> String {
    let mut s = String::new();
    s.push_str("# Written by `graze-agent install`; removed by `graze-agent uninstall`.\n");
    s.push_str("[Unit]\n");
    s.push_str("Description=graze agent: offers this PC's idle cores to a graze cluster\n");
    s.push_str("After=network-online.target\nWants=network-online.target\n\n");
    s.push_str("[Service]\nType=simple\n");
    s.push_str(&format!(
        "ExecStart={} --config {}\n",
        exe.display(),
        config.display()
    ));
    s.push_str("Restart=on-failure\nRestartSec=5s\n");
    s.push_str(&format!("Nice={nice}\n"));
    s.push_str(&format!("CPUWeight={}\n", cpu_weight(nice)));
    if let Some(m) = memory_max {
        s.push_str(&format!("MemoryMax={m}\n"));
    }
    s.push_str("# The agent makes one cgroup per job under its own.\nDelegate=yes\n");
    s.push_str("KillMode=control-group\n\n");
    s.push_str("[Install]\n");
    s.push_str(if system {
        "WantedBy=multi-user.target\n"
    } else {
        "WantedBy=default.target\n"
    });
    s
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The agent.toml an install writes.
pub fn config_text(a: &InstallArgs, layout: &Layout, run_as: Option<&str>) -> String {
    let mut s = String::from(
        "# graze-agent configuration written by `graze-agent install`; see the commented example\n\
         # config/agent.toml in the graze sources for every key.\n",
    );
    s.push_str(&format!(
        "access = {}\n",
        toml_str(&layout.access().to_string_lossy())
    ));
    if let Some(n) = &a.name {
        s.push_str(&format!("name = {}\n", toml_str(n)));
    }
    if let Some(c) = a.cores {
        s.push_str(&format!("cores = {c}\n"));
    }
    if !a.groups.is_empty() {
        let g: Vec<String> = a.groups.iter().map(|g| toml_str(g)).collect();
        s.push_str(&format!("groups = [{}]\n", g.join(", ")));
    }
    let sources = if a.idle_sources.is_empty() {
        vec!["always-idle".to_string()]
    } else {
        a.idle_sources.clone()
    };
    let src: Vec<String> = sources.iter().map(|g| toml_str(g)).collect();
    s.push_str(&format!("idle_sources = [{}]\n", src.join(", ")));
    if let Some(u) = run_as {
        s.push_str(&format!("run_as = {}\n", toml_str(u)));
        s.push_str(&format!(
            "slot_users = {}\n",
            toml_str(&format!("{u}{SLOT_SUFFIX}"))
        ));
    }
    s.push_str(&format!("nice = {}\n", a.job.nice.unwrap_or(DEFAULT_NICE)));
    if let Some(m) = &a.job.memory_max {
        s.push_str(&format!("memory_max = {}\n", toml_str(m)));
    }
    s
}

/// Whether systemd runs this machine (`/run/systemd/system` exists).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

struct Recorder {
    m: Manifest,
}

impl Recorder {
    fn dir(&mut self, p: &Path, mode: u32) -> Result<()> {
        let mut missing = Vec::new();
        let mut cur = Some(p);
        while let Some(d) = cur {
            if d.exists() {
                break;
            }
            missing.push(d.to_owned());
            cur = d.parent();
        }
        for d in missing.into_iter().rev() {
            std::fs::create_dir(&d).with_context(|| format!("creating '{}'", d.display()))?;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("setting the mode of '{}'", d.display()))?;
            self.m.dirs.push(d);
        }
        Ok(())
    }

    fn file(&mut self, p: &Path, body: &[u8], mode: u32) -> Result<()> {
        if let Some(d) = p.parent() {
            self.dir(d, 0o755)?;
        }
        let existed = p.exists();
        std::fs::write(p, body).with_context(|| format!("writing '{}'", p.display()))?;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of '{}'", p.display()))?;
        if !existed {
            self.m.files.push(p.to_owned());
        }
        Ok(())
    }
}

/// `graze-agent install`. Returns the message to print.
pub fn install(a: &InstallArgs) -> Result<String> {
    let system = !a.user && is_root();
    let layout = Layout::new(system, a.root.as_deref())?;
    if layout.manifest().exists() {
        bail!(
            "graze-agent is already installed here ({} exists): run `graze-agent uninstall{}` first",
            layout.manifest().display(),
            a.root.as_ref().map(|r| format!(" --root {}", r.display())).unwrap_or_default()
        );
    }
    let access = graze_net::Access::load(&a.access).context("checking the access file")?;
    let nice = a.job.nice.unwrap_or(DEFAULT_NICE);
    config::check_nice(nice).map_err(|why| anyhow::anyhow!("invalid --nice '{nice}': {why}"))?;
    let memory_max = match &a.job.memory_max {
        Some(s) => Some(
            config::parse_size(s)
                .map_err(|why| anyhow::anyhow!("invalid --memory-max '{s}': {why}"))?,
        ),
        None => None,
    };
    for s in &a.idle_sources {
        s.parse::<crate::IdleSourceSpec>()
            .map_err(|why| anyhow::anyhow!("invalid --idle-source '{s}': {why}"))?;
    }
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context("finding the graze-agent program for the unit's ExecStart")?;
    let mut rec = Recorder {
        m: Manifest {
            mode: if system { "system" } else { "user" }.into(),
            config: layout.config(),
            ..Manifest::default()
        },
    };
    let result = (|| -> Result<()> {
        let run_as = if system {
            Some(
                a.job
                    .run_as
                    .clone()
                    .unwrap_or_else(|| SYSTEM_USER.to_string()),
            )
        } else {
            None
        };
        // The jobs' user, created when missing.
        let gid = match &run_as {
            Some(u) => {
                let (created, _uid, gid) = ensure_user(&layout.root, u)?;
                if created {
                    rec.m.created_user = Some(u.clone());
                }
                // One user per core for concurrent jobs, in the job user's group.
                let slots = a.cores.unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
                });
                for i in 0..slots {
                    let name = format!("{u}{SLOT_SUFFIX}{i}");
                    let (created, _, _) = ensure_user_in(&layout.root, &name, Some(gid))?;
                    if created {
                        rec.m.created_slot_users.push(name);
                    }
                }
                Some(gid)
            }
            None => None,
        };
        rec.dir(&layout.at(&layout.etc), 0o755)?;
        let cfg = config_text(a, &layout, run_as.as_deref());
        rec.file(&layout.at(&layout.config()), cfg.as_bytes(), 0o644)?;
        // The access file: its owner alone (root for a system install). Not the jobs' user:
        // jobs must not read the agent's token.
        let access_at = layout.at(&layout.access());
        let body = format!(
            "# graze access file installed by `graze-agent install`: keep it private.\n{}",
            toml::to_string(&access).context("formatting the access file")?
        );
        rec.file(&access_at, body.as_bytes(), 0o600)?;
        if gid.is_some() {
            std::os::unix::fs::chown(&access_at, Some(0), Some(0))
                .with_context(|| format!("giving '{}' to root", access_at.display()))?;
        }
        if let Some(sp) = &layout.spool {
            rec.dir(&layout.at(sp), 0o755)?;
            rec.m.trees.push(layout.at(sp));
        }
        let unit = unit_text(&exe, &layout.config(), system, nice, memory_max);
        rec.file(&layout.at(&layout.unit()), unit.as_bytes(), 0o644)?;
        Ok(())
    })();
    if let Err(e) = result {
        // Take back what was done so far.
        remove_all(&rec.m, &layout);
        return Err(e);
    }
    let manifest = toml::to_string(&rec.m).context("formatting the install manifest")?;
    std::fs::write(layout.manifest(), manifest)
        .with_context(|| format!("writing '{}'", layout.manifest().display()))?;

    let mut msg = format!(
        "installed graze-agent ({} install): config {}, access file {}, unit {}\n",
        rec.m.mode,
        layout.at(&layout.config()).display(),
        layout.at(&layout.access()).display(),
        layout.at(&layout.unit()).display(),
    );
    if let Some(u) = &rec.m.created_user {
        msg.push_str(&format!("created the system user '{u}' that jobs run as\n"));
    }
    if let (Some(first), Some(last)) = (
        rec.m.created_slot_users.first(),
        rec.m.created_slot_users.last(),
    ) {
        msg.push_str(&format!(
            "created the slot users '{first}' to '{last}': each concurrent job runs as one of its own\n"
        ));
    }
    let live = a.root.is_none() && systemd_running();
    if live {
        let user_flag: &[&str] = if system { &[] } else { &["--user"] };
        systemctl(user_flag, &["daemon-reload"])?;
        systemctl(user_flag, &["enable", "--now", SERVICE])?;
        msg.push_str(&format!(
            "service {SERVICE} enabled and started; see `systemctl {}status {SERVICE}`\n",
            if system { "" } else { "--user " }
        ));
    } else {
        msg.push_str(&format!(
            "systemd is not running{}: start the agent yourself with\n  {} --config {}\n{}",
            if a.root.is_some() {
                " in that root"
            } else {
                " on this machine"
            },
            exe.display(),
            layout.config().display(),
            if system {
                "as root (jobs run as the unprivileged user)\n"
            } else {
                ""
            }
        ));
    }
    Ok(msg)
}

fn systemctl(pre: &[&str], args: &[&str]) -> Result<()> {
    let st = std::process::Command::new("systemctl")
        .args(pre)
        .args(args)
        .status()
        .with_context(|| format!("running systemctl {}", args.join(" ")))?;
    if !st.success() {
        bail!(
            "systemctl {} {} failed: {st}",
            pre.join(" "),
            args.join(" ")
        );
    }
    Ok(())
}

/// `graze-agent uninstall`. Returns the message to print.
pub fn uninstall(a: &UninstallArgs) -> Result<String> {
    let system = !a.user && is_root();
    let layout = Layout::new(system, a.root.as_deref())?;
    let mpath = layout.manifest();
    let text = std::fs::read_to_string(&mpath).with_context(|| {
        format!(
            "graze-agent is not installed here: no manifest at '{}'",
            mpath.display()
        )
    })?;
    let m: Manifest = toml::from_str(&text)
        .with_context(|| format!("reading the install manifest '{}'", mpath.display()))?;
    let mut msg = String::new();
    if a.root.is_none() && systemd_running() {
        let user_flag: &[&str] = if system { &[] } else { &["--user"] };
        if let Err(e) = systemctl(user_flag, &["disable", "--now", SERVICE]) {
            msg.push_str(&format!("warning: {e:#}\n"));
        }
    }
    let stopped = stop_agents(&layout.at(&m.config));
    if stopped > 0 {
        msg.push_str(&format!(
            "stopped {stopped} running graze-agent process(es)\n"
        ));
    }
    let _ = std::fs::remove_file(&mpath);
    remove_all(&m, &layout);
    for u in &m.created_slot_users {
        remove_user(&layout.root, u)?;
    }
    if !m.created_slot_users.is_empty() {
        msg.push_str(&format!(
            "removed {} slot users\n",
            m.created_slot_users.len()
        ));
    }
    if let Some(u) = &m.created_user {
        remove_user(&layout.root, u)?;
        msg.push_str(&format!("removed the system user '{u}'\n"));
    }
    if a.root.is_none() && systemd_running() {
        let user_flag: &[&str] = if system { &[] } else { &["--user"] };
        let _ = systemctl(user_flag, &["daemon-reload"]);
    }
    msg.push_str("uninstalled graze-agent\n");
    Ok(msg)
}

fn remove_all(m: &Manifest, layout: &Layout) {
    for t in &m.trees {
        if let Err(e) = std::fs::remove_dir_all(t) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %t.display(), error = %e, "cannot remove");
            }
        }
    }
    for f in &m.files {
        let _ = std::fs::remove_file(f);
    }
    let _ = std::fs::remove_file(layout.manifest());
    for d in m.dirs.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
}

/// SIGTERM every graze-agent process started with `--config CONFIG` and wait (up to 10 s)
/// for them to end. Returns how many there were.
pub fn stop_agents(config: &Path) -> usize {
    let want = config.as_os_str().as_encoded_bytes();
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let is_agent = args.first().is_some_and(|a0| a0.ends_with(b"graze-agent"));
        let has_config = args.windows(2).any(|w| w[0] == b"--config" && w[1] == want);
        if is_agent && has_config {
            pids.push(pid);
        }
    }
    for p in &pids {
        // SAFETY: kill(2) takes plain integers.
        unsafe {
            libc::kill(*p, libc::SIGTERM);
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline
        && pids.iter().any(|p| !crate::jobs::procs::is_gone(*p))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    pids.len()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cpu_weight_follows_nice() {
        assert_eq!(cpu_weight(0), 100);
        assert_eq!(cpu_weight(19), 1);
        assert_eq!(cpu_weight(10), 11);
    }

    #[test]
    fn unit_has_the_policy() {
        let u = unit_text(
            Path::new("/usr/local/bin/graze-agent"),
            Path::new("/etc/graze/agent.toml"),
            true,
            19,
            Some(4 << 30),
        );
        for want in [
            "ExecStart=/usr/local/bin/graze-agent --config /etc/graze/agent.toml\n",
            "Restart=on-failure\n",
            "Nice=19\n",
            "CPUWeight=1\n",
            "MemoryMax=4294967296\n",
            "Delegate=yes\n",
            "WantedBy=multi-user.target\n",
        ] {
            assert!(u.contains(want), "missing {want:?} in\n{u}");
        }
        let u = unit_text(Path::new("/a"), Path::new("/c"), false, 5, None);
        assert!(!u.contains("MemoryMax"), "{u}");
        assert!(u.contains("WantedBy=default.target"), "{u}");
    }
}
