//! Facts about this PC: what the agent registers with, and its CPU load over time.

use crate::procs::{self, ProcSet};
use graze_proto::{MpiFlavour, NodeInfo};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// CPU sockets: distinct `physical_package_id`s under `/sys`, at least 1.
pub fn sockets() -> u32 {
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
pub fn memory_bytes() -> u64 {
    let mut s = sysinfo::System::new();
    s.refresh_memory();
    s.total_memory()
}

/// Read an MPI flavour from a launcher's `--version` output.
pub fn parse_mpi_version(launcher: &str, out: &str) -> Option<MpiFlavour> {
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
pub async fn mpi_flavours() -> Vec<MpiFlavour> {
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
pub async fn node_info(cfg: &crate::AgentConfig) -> NodeInfo {
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
    }
}

/// One CPU sample.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuSample {
    /// Load of each logical CPU, 0..=100.
    pub core_load: Vec<f32>,
    /// Whole-PC CPU use minus the jobs' use, in percent of the whole PC.
    pub owner_cpu: f32,
    /// The jobs' processes' CPU use, in percent of the whole PC.
    pub job_cpu: f32,
}

/// Measures the PC's CPU use and how much of it is the jobs'.
pub struct CpuMeter {
    sys: sysinfo::System,
    last: Instant,
    /// Per job process: (start time, CPU ticks) at the last sample.
    job_ticks: HashMap<i32, (u64, u64)>,
    ticks_per_second: f64,
}

impl Default for CpuMeter {
    fn default() -> Self {
        CpuMeter::new()
    }
}

impl CpuMeter {
    /// A meter; the first [`CpuMeter::sample`] should come at least 200 ms later.
    pub fn new() -> CpuMeter {
        let mut sys = sysinfo::System::new();
        sys.refresh_cpu_usage();
        CpuMeter {
            sys,
            last: Instant::now(),
            job_ticks: HashMap::new(),
            ticks_per_second: procs::clock_ticks_per_second() as f64,
        }
    }

    /// Measure since the last call. `jobs` are the process sets of the running jobs.
    pub fn sample(&mut self, jobs: &[ProcSet]) -> CpuSample {
        self.sys.refresh_cpu_usage();
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64().max(1e-3);
        self.last = now;
        let core_load: Vec<f32> = self
            .sys
            .cpus()
            .iter()
            .map(|c| c.cpu_usage().clamp(0.0, 100.0))
            .collect();
        let ncpu = core_load.len().max(1) as f64;
        let total = f64::from(self.sys.global_cpu_usage());

        let mut next = HashMap::new();
        let mut job_ticks = 0u64;
        for p in procs::members_of(jobs) {
            if let Some((start, ticks)) = self.job_ticks.get(&p.pid) {
                if *start == p.start_ticks {
                    job_ticks += p.cpu_ticks.saturating_sub(*ticks);
                }
            }
            next.insert(p.pid, (p.start_ticks, p.cpu_ticks));
        }
        self.job_ticks = next;
        let job_pct = job_ticks as f64 / self.ticks_per_second / elapsed / ncpu * 100.0;
        let owner_cpu = (total - job_pct).clamp(0.0, 100.0) as f32;
        CpuSample {
            core_load,
            owner_cpu,
            job_cpu: job_pct.clamp(0.0, 100.0) as f32,
        }
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

    #[test]
    fn meter_counts_job_processes() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .process_group(0)
            .spawn()
            .unwrap();
        let set = ProcSet::new(vec![child.id() as i32], None);
        let mut m = CpuMeter::new();
        m.sample(std::slice::from_ref(&set));
        std::thread::sleep(Duration::from_millis(600));
        let s = m.sample(std::slice::from_ref(&set));
        set.kill(Duration::from_secs(5)).unwrap();
        child.wait().unwrap();
        // One busy core, even on a loaded machine, is a visible share of the PC.
        let ncpu = s.core_load.len().max(1) as f32;
        assert!(s.job_cpu > 20.0 / ncpu, "{s:?}");
        assert!(s.job_cpu <= 100.0 / ncpu + 10.0, "{s:?}");
    }

    #[test]
    fn meter_reports_something_sane() {
        let mut m = CpuMeter::new();
        std::thread::sleep(Duration::from_millis(250));
        let s = m.sample(&[]);
        assert!(!s.core_load.is_empty());
        assert!((0.0..=100.0).contains(&s.owner_cpu));
    }
}
