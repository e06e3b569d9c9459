//! Facts about this PC that the agent registers with: cores, sockets, memory, MPI.

use graze_proto::{MpiFlavour, NodeInfo};
use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// CPU sockets: distinct `physical_package_id`s under `/sys`, at least 1.
pub(crate) fn sockets() -> u32 {
    sockets_in(Path::new("/sys/devices/system/cpu"))
}

fn sockets_in(cpu_dir: &Path) -> u32 {
    let Ok(dir) = std::fs::read_dir(cpu_dir) else {
        return 1;
    };
    let ids: HashSet<String> = dir
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.strip_prefix("cpu")
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("topology/physical_package_id")).ok())
        .map(|s| s.trim().to_string())
        .collect();
    u32::try_from(ids.len()).unwrap_or(1).max(1)
}

/// Physical memory in bytes.
pub(crate) fn memory_bytes() -> u64 {
    let mut s = sysinfo::System::new();
    s.refresh_memory();
    s.total_memory()
}

/// Read an MPI flavour from a launcher's `--version` output.
pub(crate) fn parse_mpi_version(launcher: &str, out: &str) -> Option<MpiFlavour> {
    if out.contains("HYDRA") {
        let version = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("Version:"))
            .map(|v| v.trim().to_string())
            .unwrap_or_default();
        return Some(MpiFlavour {
            kind: "mpich".into(),
            launcher: launcher.into(),
            version,
        });
    }
    // `mpirun (Open MPI) 4.1.2`, or `mpirun.openmpi (OpenRTE) 4.1.4` (Debian, 4.1).
    if out.contains("Open MPI") || out.contains("(OpenRTE)") {
        let version = out
            .lines()
            .find(|l| l.contains("Open MPI") || l.contains("(OpenRTE)"))
            .and_then(|l| l.split_whitespace().last())
            .map(|v| v.trim_matches(|c| c == '(' || c == ')').to_string())
            .unwrap_or_default();
        return Some(MpiFlavour {
            kind: "openmpi".into(),
            launcher: launcher.into(),
            version,
        });
    }
    None
}

/// MPI implementations on PATH: `mpiexec` and `mpirun`, then Debian's per-flavour names
/// (`mpirun.openmpi`, `mpiexec.mpich`) for the ones the alternatives do not point at; each
/// kind once.
pub(crate) async fn mpi_flavours() -> Vec<MpiFlavour> {
    let mut found: Vec<MpiFlavour> = Vec::new();
    for name in ["mpiexec", "mpirun", "mpiexec.mpich", "mpirun.openmpi"] {
        let Some(path) = crate::config::find_on_path(name) else {
            continue;
        };
        let run = tokio::process::Command::new(&path)
            .arg("--version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = match tokio::time::timeout(Duration::from_secs(5), run).await {
            Ok(Ok(o)) => String::from_utf8_lossy(&o.stdout).into_owned(),
            Ok(Err(e)) => {
                tracing::debug!(launcher = %path.display(), error = %e, "cannot run");
                continue;
            }
            Err(_) => {
                tracing::warn!(launcher = %path.display(), "'--version' hangs; ignored");
                continue;
            }
        };
        if let Some(f) = parse_mpi_version(&path.to_string_lossy(), &out) {
            if !found.iter().any(|g| g.kind == f.kind) {
                found.push(f);
            }
        }
    }
    found
}

/// What the agent registers with.
pub(crate) async fn node_info(cfg: &crate::AgentConfig) -> NodeInfo {
    NodeInfo {
        name: cfg.name.clone(),
        addr: cfg.bind.map(|b| b.to_string()).unwrap_or_default(),
        cores: cfg.cores,
        sockets: sockets(),
        memory_bytes: memory_bytes(),
        groups: cfg.groups.clone(),
        mpi: mpi_flavours().await,
        software: format!("graze-agent {}", env!("CARGO_PKG_VERSION")),
        policy: cfg.policy.wire(),
        held: Vec::new(),
        instance: String::new(),
        isolation: isolation(cfg),
    }
}

/// Why this agent's jobs are not isolated from each other, or `None` (slot users).
pub(crate) fn isolation(cfg: &crate::AgentConfig) -> Option<String> {
    match (&cfg.run_as, &cfg.slot_users) {
        (Some(_), Some(_)) => None,
        (Some(u), None) => Some(format!(
            "every job runs as '{u}': jobs here are not isolated from each other (set slot_users)"
        )),
        (None, _) => Some(
            "the agent runs as a normal user and runs every job as itself: jobs here are not isolated from each other".into(),
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mpich_and_openmpi_versions() {
        let mpich = "HYDRA build details:\n    Version:                                 4.0.2\n    Release Date: x\n";
        let f = parse_mpi_version("/usr/bin/mpiexec", mpich).unwrap();
        assert_eq!(f.kind, "mpich");
        assert_eq!(f.version, "4.0.2");
        assert_eq!(f.launcher, "/usr/bin/mpiexec");
        let ompi =
            "mpirun (Open MPI) 4.1.2\n\nReport bugs to http://www.open-mpi.org/community/help/\n";
        let f = parse_mpi_version("/usr/bin/mpirun", ompi).unwrap();
        assert_eq!(f.kind, "openmpi");
        assert_eq!(f.version, "4.1.2");
        let debian = "mpirun.openmpi (OpenRTE) 4.1.4\n\nReport bugs to http://www.open-mpi.org/community/help/\n";
        let f = parse_mpi_version("/usr/bin/mpirun.openmpi", debian).unwrap();
        assert_eq!((f.kind.as_str(), f.version.as_str()), ("openmpi", "4.1.4"));
        assert!(parse_mpi_version("x", "something else").is_none());
    }

    #[test]
    fn counts_sockets() {
        let d = tempfile::tempdir().unwrap();
        for (cpu, pkg) in [
            ("cpu0", "0"),
            ("cpu1", "0"),
            ("cpu2", "1"),
            ("cpufreq", "9"),
        ] {
            let t = d.path().join(cpu).join("topology");
            std::fs::create_dir_all(&t).unwrap();
            std::fs::write(t.join("physical_package_id"), format!("{pkg}\n")).unwrap();
        }
        assert_eq!(sockets_in(d.path()), 2);
        assert_eq!(sockets_in(Path::new("/nonexistent")), 1);
        assert!(sockets() >= 1);
    }

    #[tokio::test]
    async fn finds_mpich_here() {
        // MPICH is installed on the development machines; elsewhere this only checks that
        // detection does not fail.
        let found = mpi_flavours().await;
        if crate::config::find_on_path("mpiexec").is_some() {
            assert!(found.iter().any(|f| f.kind == "mpich"), "{found:?}");
        }
    }
}
