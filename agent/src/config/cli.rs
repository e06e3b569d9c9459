//! The command lines: `graze-agent [run flags]`, `install`, `uninstall` and the hidden
//! `guard`. [`JobArgs`] is shared by running and installing.

use crate::jobs::guard::GuardArgs;
use std::path::PathBuf;

/// How job processes run on this PC: flags shared by `graze-agent` and `graze-agent install`
/// (which also gives `nice` and `memory_max` to the service).
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct JobArgs {
    /// Run job processes as this unprivileged user when started as root (a system install
    /// creates it if missing) [default: graze].
    #[arg(long, value_name = "USER")]
    pub run_as: Option<String>,
    /// One user per job slot when started as root: users PREFIX0, PREFIX1, ... (each with
    /// the run_as user's group; `graze-agent install` creates `graze-s0`...), so concurrent
    /// jobs cannot signal, trace or read each other [default: none: every job runs as
    /// run_as].
    #[arg(long, value_name = "PREFIX")]
    pub slot_users: Option<String>,
    /// Nice level of job processes (and of the service), 0 to 19 [default: 19].
    #[arg(long, value_name = "N")]
    pub nice: Option<i32>,
    /// Memory cap per job (and of the service), e.g. `4G`, `512M` [default: none].
    #[arg(long, value_name = "SIZE")]
    pub memory_max: Option<String>,
}

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
    /// Send checkpoints to the scheduler at most this fast, bytes per second, e.g. `10M`
    /// [default: unlimited].
    #[arg(long, value_name = "SIZE")]
    pub checkpoint_rate: Option<String>,
    /// The owner's local socket for `graze-agent snooze` and `status` [default:
    /// /run/graze/owner.sock as root, else SPOOL/owner.sock].
    #[arg(long, value_name = "PATH")]
    pub owner_socket: Option<PathBuf>,
    /// Where logins are recorded, to tell who is at the seat [default: /var/run/utmp].
    #[arg(long, value_name = "FILE")]
    pub utmp: Option<PathBuf>,
    /// Who jobs run as, their nice level and memory cap.
    #[command(flatten)]
    pub job: JobArgs,
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
    Install(InstallArgs),
    /// Stop the service and remove everything `install` created.
    Uninstall(UninstallArgs),
    /// Check that this PC sees its owner: each idle source found or not and why, then which
    /// sources see a touch of the keyboard or mouse, and how late.
    Doctor(crate::doctor::DoctorArgs),
    /// The person at this PC says "not now": `snooze 2h` offers nothing for 2 hours and moves
    /// running jobs elsewhere; `snooze off` ends it. Only a user logged in at the PC's seat
    /// or console (or root).
    Snooze(SnoozeArgs),
    /// What graze does on this PC now, in plain words.
    Status(OwnerSocketArgs),
    /// Internal: the process an agent starts to kill its jobs if it dies (see `jobs/guard.rs`).
    #[command(hide = true)]
    Guard(GuardArgs),
    /// Internal: writes a job's `--stdout`/`--stderr` files as the job's user (see
    /// `jobs/outfiles.rs`).
    #[command(hide = true)]
    OutputWriter(crate::jobs::outfiles::WriterArgs),
    /// Internal: packs a node's checkpoint files as the job's user (see `jobs/checkpoint.rs`).
    #[command(hide = true)]
    CheckpointPack(crate::jobs::checkpoint::CkptArgs),
    /// Internal: restores a node's checkpoint files as the job's user.
    #[command(hide = true)]
    CheckpointUnpack(crate::jobs::checkpoint::CkptArgs),
    /// Internal: writes the embedded PMPI tracer library for an MPI flavour (see `tracer.rs`).
    #[command(hide = true)]
    TracerLib(crate::tracer::TracerLibArgs),
}

/// `graze-agent install` arguments.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq, Default)]
pub struct InstallArgs {
    /// Access file from the scheduler (`graze-scheduler token create --role agent ...`).
    #[arg(long, value_name = "FILE")]
    pub access: PathBuf,
    /// Cores to offer [default: logical CPUs].
    #[arg(long, value_name = "N")]
    pub cores: Option<u32>,
    /// Node group (repeatable).
    #[arg(long = "group", value_name = "G")]
    pub groups: Vec<String>,
    /// Node name [default: host name].
    #[arg(long, value_name = "N")]
    pub name: Option<String>,
    /// Idle source (repeatable) [default: always-idle, for dedicated machines].
    #[arg(long = "idle-source", value_name = "SPEC")]
    pub idle_sources: Vec<String>,
    /// Who jobs run as (created for a system install if missing), their nice level and
    /// memory cap; nice and memory cap are the service's too.
    #[command(flatten)]
    pub job: JobArgs,
    /// Install a systemd user unit for the calling user (the default when not root).
    #[arg(long)]
    pub user: bool,
    /// Put every file under this directory instead of `/` (tests, images).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

/// `graze-agent uninstall` arguments.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq, Default)]
pub struct UninstallArgs {
    /// Uninstall the calling user's user unit (the default when not root).
    #[arg(long)]
    pub user: bool,
    /// The directory given to `install --root`.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

/// Where the agent's owner socket is.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnerSocketArgs {
    /// The agent's owner socket.
    #[arg(long, env = "GRAZE_OWNER_SOCKET", value_name = "PATH", default_value = crate::owner::local::DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

/// `graze-agent snooze` arguments.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq, Default)]
pub struct SnoozeArgs {
    /// How long (`2h`, `45m`; at most 7 days), or `off`.
    #[arg(value_name = "DURATION|off")]
    pub what: String,
    #[command(flatten)]
    pub socket: OwnerSocketArgs,
}
