//! Job processes: how they are started, confined, tracked and stopped.
//!
//! `checkpoint` packs and unpacks checkpoint files (as the job's user), `procs` is the process set (kill, stop, vacate by process group, cgroup and tag),
//! `cgroup` one cgroup per job, `confine` the user and clean environment jobs run with,
//! `dir` the job directory and spool permissions, `guard` the process that kills a dead
//! agent's jobs, `outfiles` the `--stdout`/`--stderr` files (written by a process running as
//! the job's user), `signal` a `--signal` to the program (not the MPI launcher), `slots` the pool of
//! slot users (one user per concurrent job), `spawn`
//! starting a process and streaming its output, and `hydra` the MPI
//! environment and files that land `mpiexec` on the allocation.

pub mod cgroup;
pub mod checkpoint;
pub mod confine;
pub(crate) mod dir;
pub mod guard;
pub mod hydra;
pub mod outfiles;
pub mod procs;
pub mod signal;
pub mod slots;
pub(crate) mod spawn;
