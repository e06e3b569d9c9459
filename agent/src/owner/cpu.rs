//! The CPU meter: the PC's load per core, and how much of it is the owner's rather than
//! the jobs'.

use crate::jobs::procs::{self, ProcSet};
use std::collections::HashMap;
use std::time::Instant;

/// One CPU sample.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CpuSample {
    /// Load of each logical CPU, 0..=100.
    pub(crate) core_load: Vec<f32>,
    /// Whole-PC CPU use minus the jobs' use, in percent of the whole PC.
    pub(crate) owner_cpu: f32,
    /// The jobs' processes' CPU use, in percent of the whole PC.
    pub(crate) job_cpu: f32,
}

/// Measures the PC's CPU use and how much of it is the jobs'.
pub(crate) struct CpuMeter {
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
    pub(crate) fn new() -> CpuMeter {
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
    pub(crate) fn sample(&mut self, jobs: &[ProcSet]) -> CpuSample {
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
    use std::time::Duration;

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
