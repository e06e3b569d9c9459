//! Default values: the constants, and those that come from the machine ([`Defaults`]). The
//! owner policy's defaults are the wire's (`graze_proto::OwnerPolicy::default`), so the
//! scheduler assumes the same values for an agent that sends none.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Name of the launcher shim binary.
pub const LAUNCHER_NAME: &str = "graze-launch";
/// Default for `start_after`.
pub const DEFAULT_START_AFTER: Duration = Duration::from_secs(15 * 60);
/// Default for `owner_cpu_max`, in percent of the whole PC.
pub const DEFAULT_OWNER_CPU_MAX: u32 = 25;
/// Default for `node_timeout` (the scheduler's too).
pub const DEFAULT_NODE_TIMEOUT: Duration = graze_proto::DEFAULT_NODE_TIMEOUT;
/// Default for `nice`.
pub const DEFAULT_NICE: i32 = 19;

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
