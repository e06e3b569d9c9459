//! The resolved values ([`AgentConfig`], [`Policy`]) and each value's parser and check. The
//! checks return only the reason; [`crate::config::resolve()`] quotes the value and says where it
//! came from.

use crate::owner::window::Windows;
use crate::owner::IdleSourceSpec;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

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

/// Everything the agent needs to run. Build it with [`crate::config::resolve()`] (from a
/// command line and a file) or fill it directly (tests).
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
    /// The prefix of the slot users (`PREFIX0`, `PREFIX1`, ...): each concurrent job runs as
    /// its own one when the agent runs as root; `None`: every job runs as `run_as`.
    pub slot_users: Option<String>,
    /// Nice level of job processes (0 to 19); also the service's `Nice=`.
    pub nice: i32,
    /// Memory cap of each job on this PC, in bytes (its cgroup's limit where cgroups are
    /// writable); also the service's `MemoryMax=`.
    pub memory_max: Option<u64>,
    /// The owner's local socket (`graze-agent snooze`, `status`); `None`: the default
    /// (`/run/graze/owner.sock` as root, else `SPOOL/owner.sock`).
    pub owner_socket: Option<PathBuf>,
    /// Where logins are recorded (who is at the seat, for `snooze`); `None`: `/var/run/utmp`.
    pub utmp: Option<PathBuf>,
    /// Sending checkpoint parts to the scheduler at most this fast (bytes per second), to
    /// spare an owner's network; `None`: as fast as the link allows.
    pub checkpoint_rate: Option<u64>,
}

/// Parse a duration such as `90s`, `15m` or `1h 30m`; `example` completes the error.
pub(crate) fn parse_duration(s: &str, example: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; write a duration such as {example}"))
}

/// A nice level for jobs (and the service).
pub(crate) fn check_nice(nice: i32) -> Result<(), &'static str> {
    if (0..=19).contains(&nice) {
        Ok(())
    } else {
        Err("must be from 0 to 19 (19 is the gentlest)")
    }
}

/// A node group: a word without spaces or commas.
pub(crate) fn check_group(g: &str) -> Result<(), &'static str> {
    if g.trim().is_empty() || g.chars().any(|c| c.is_whitespace() || c == ',') {
        Err("must be a non-empty word without spaces or commas")
    } else {
        Ok(())
    }
}

/// Parse a memory size: bytes, or a number with `K`, `M`, `G` or `T` (powers of 1024), at
/// least 1M.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let bytes = parse_bytes(s)?;
    if bytes < (1 << 20) {
        return Err("must be at least 1M".into());
    }
    Ok(bytes)
}

/// A rate in bytes per second (`checkpoint_rate`): as [`parse_size`], at least 1.
pub(crate) fn parse_rate(s: &str) -> Result<u64, String> {
    match parse_bytes(s)? {
        0 => Err("must be at least 1 byte per second".into()),
        b => Ok(b),
    }
}

/// Bytes, or a number with K, M, G or T.
fn parse_bytes(s: &str) -> Result<u64, String> {
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
    n.checked_mul(mult)
        .ok_or_else(|| "is too large".to_string())
}

/// A node name must work as a host name in hydra's host file.
pub(crate) fn check_name(name: &str) -> Result<(), &'static str> {
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
