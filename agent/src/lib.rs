//! graze-agent: offers an office PC's idle cores to a graze scheduler and runs the job
//! processes it asks for.
//!
//! The agent connects to the scheduler (QUIC, see `graze-net`), registers its node, reports
//! the owner's idle time and the PC's load, starts jobs' main commands (`mpiexec ...`) with
//! the environment MPICH's hydra needs to launch through the `graze-launch` shim instead of
//! ssh, runs remote launches for other nodes' jobs, and kills every process of a job when
//! told to or when it loses the scheduler.
//!
//! Entry point: [`run`]. Binaries: `graze-agent` (`src/main.rs`) and `graze-launch`
//! (`src/bin/graze-launch.rs`, see [`launch`]).
//!
//! Modules: `agent` the owning task and its drivers, [`owner`] the owner watch (idle sources,
//! CPU meter, windows, the availability rule), [`jobs`] job processes (process sets, cgroups,
//! confinement, the guard, spawning, the MPI environment), `outbox` the sequenced job
//! messages, [`config`] flags and file, [`install`] the service, [`tracer`] the embedded PMPI
//! tracer libraries and Python helper (issue 16).

mod agent;
pub mod config;
pub mod doctor;
pub mod install;
pub mod jobs;
pub mod launch;
pub(crate) mod machine;
pub(crate) mod outbox;
pub mod owner;
pub mod tracer;

pub use config::{AgentConfig, Cli};
pub use owner::IdleSourceSpec;

use std::future::Future;

/// Run the agent until `shutdown` completes (then every job process on this PC is killed and
/// `Ok` returned) or a fatal error: the access file is unusable, the scheduler refused this
/// agent (wrong token or version, or registration refused), or the spool cannot be set up.
/// Losing the scheduler is not fatal: the agent kills its jobs and reconnects with backoff.
pub async fn run(
    cfg: AgentConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    agent::run(cfg, shutdown).await
}
