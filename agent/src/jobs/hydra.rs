//! What a job's main command needs from the agent to run MPI: the host files, hydra's
//! configuration, the environment, and reading hydra's rank labels back from its output.

use graze_proto::{HostSlots, JobId};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// hydra's option that labels every output line with `[RANK@HOST]`.
pub const PREPEND_PATTERN: &str = "-prepend-pattern [%r@%h]";

/// Environment variables of the agent that never reach a job.
pub const SECRET_VARS: &[&str] = &["GRAZE_ACCESS"];

/// Split the rank label from an output line: hydra's `[RANK@HOST]` right before the rank's
/// text, or Open MPI's `[JOB,RANK]<stdout>:` / `[JOB,RANK]<stderr>:` (`orte_tag_output`);
/// anything else is not labelled.
pub fn parse_label(line: &str) -> (Option<u32>, &str) {
    let Some(rest) = line.strip_prefix('[') else {
        return (None, line);
    };
    if let Some(labelled) = parse_openmpi_label(rest) {
        return labelled;
    }
    let Some(at) = rest.find('@') else {
        return (None, line);
    };
    let digits = &rest[..at];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return (None, line);
    }
    let Ok(rank) = digits.parse::<u32>() else {
        return (None, line);
    };
    let after = &rest[at + 1..];
    let Some(close) = after.find(']') else {
        return (None, line);
    };
    let host = &after[..close];
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('[') {
        return (None, line);
    }
    (Some(rank), &after[close + 1..])
}

/// Open MPI's `JOB,RANK]<stdout>:TEXT` (after the `[`).
fn parse_openmpi_label(rest: &str) -> Option<(Option<u32>, &str)> {
    let (label, text) = rest.split_once(']')?;
    let (job, rank) = label.split_once(',')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(job) || !digits(rank) {
        return None;
    }
    let rank = rank.parse::<u32>().ok()?;
    let text = text
        .strip_prefix("<stdout>:")
        .or_else(|| text.strip_prefix("<stderr>:"))?;
    Some((Some(rank), text))
}

/// hydra's host file: `host:slots` per line.
pub fn hydra_hosts(hosts: &[HostSlots]) -> String {
    hosts
        .iter()
        .map(|h| format!("{}:{}\n", h.host, h.slots))
        .collect()
}

/// A PBS-style node file: the host name once per slot.
pub fn nodefile(hosts: &[HostSlots]) -> String {
    let mut s = String::new();
    for h in hosts {
        for _ in 0..h.slots {
            s.push_str(&h.host);
            s.push('\n');
        }
    }
    s
}

/// Open MPI's host file: `host slots=N` per line.
pub fn openmpi_hosts(hosts: &[HostSlots]) -> String {
    hosts
        .iter()
        .map(|h| format!("{} slots={}\n", h.host, h.slots))
        .collect()
}

/// The files of one job in `SPOOL/jobs/ID/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobFiles {
    /// The job directory.
    pub dir: PathBuf,
    /// hydra host file.
    pub hosts: PathBuf,
    /// Node file.
    pub nodefile: PathBuf,
    /// hydra config file.
    pub hydra_conf: PathBuf,
    /// Open MPI host file.
    pub openmpi_hosts: PathBuf,
}

impl JobFiles {
    /// Paths of the files for `job` under `jobs_dir` (nothing is written).
    pub fn paths(jobs_dir: &Path, job: JobId) -> JobFiles {
        let dir = jobs_dir.join(job.to_string());
        JobFiles {
            hosts: dir.join("hosts"),
            nodefile: dir.join("nodefile"),
            hydra_conf: dir.join("hydra.conf"),
            openmpi_hosts: dir.join("openmpi-hosts"),
            dir,
        }
    }

    /// Create the directory (afresh) and write the files.
    pub fn write(&self, hosts: &[HostSlots]) -> std::io::Result<()> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)?;
        }
        std::fs::create_dir_all(&self.dir)?;
        std::fs::write(&self.hosts, hydra_hosts(hosts))?;
        std::fs::write(&self.nodefile, nodefile(hosts))?;
        std::fs::write(&self.hydra_conf, format!("{PREPEND_PATTERN}\n"))?;
        std::fs::write(&self.openmpi_hosts, openmpi_hosts(hosts))?;
        Ok(())
    }
}

/// What the environment of a job's main command is made from.
#[derive(Clone, Debug)]
pub struct JobEnv<'a> {
    /// The job.
    pub job: JobId,
    /// Its files.
    pub files: &'a JobFiles,
    /// The whole allocation.
    pub hosts: &'a [HostSlots],
    /// The launcher shim.
    pub launcher: &'a Path,
    /// The agent's launcher socket.
    pub launch_sock: &'a Path,
    /// The job's secret.
    pub secret: &'a str,
    /// The job's process tag.
    pub tag: &'a str,
    /// Extra variables from the job spec (they win).
    pub extra: &'a [(String, String)],
}

impl JobEnv<'_> {
    /// The variables graze adds, in order; later ones win.
    pub fn vars(&self) -> Vec<(String, OsString)> {
        let nprocs: u64 = self.hosts.iter().map(|h| u64::from(h.slots)).sum();
        let mut v: Vec<(String, OsString)> = vec![
            ("HYDRA_HOST_FILE".into(), self.files.hosts.clone().into()),
            ("HYDRA_LAUNCHER".into(), "rsh".into()),
            ("HYDRA_LAUNCHER_EXEC".into(), self.launcher.into()),
            (
                "HYDRA_CONFIG_FILE".into(),
                self.files.hydra_conf.clone().into(),
            ),
            // Open MPI: the shim instead of ssh, and the allocation (tests/tests/openmpi.rs).
            ("OMPI_MCA_plm_rsh_agent".into(), self.launcher.into()),
            // Every output line labelled `[JOB,RANK]<stdout>:`, read back by `parse_label`.
            ("OMPI_MCA_orte_tag_output".into(), "1".into()),
            (
                "OMPI_MCA_orte_default_hostfile".into(),
                self.files.openmpi_hosts.clone().into(),
            ),
            ("GRAZE_JOB_ID".into(), self.job.to_string().into()),
            ("GRAZE_NODEFILE".into(), self.files.nodefile.clone().into()),
            ("GRAZE_NPROCS".into(), nprocs.to_string().into()),
            ("GRAZE_LAUNCH_SOCK".into(), self.launch_sock.into()),
            ("GRAZE_JOB_SECRET".into(), self.secret.into()),
            (crate::jobs::procs::TAG_VAR.into(), self.tag.into()),
        ];
        v.extend(self.extra.iter().map(|(k, val)| (k.clone(), val.into())));
        v
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hs(v: &[(&str, u32)]) -> Vec<HostSlots> {
        v.iter()
            .map(|(h, s)| HostSlots {
                host: (*h).into(),
                slots: *s,
            })
            .collect()
    }

    #[test]
    fn labels() {
        assert_eq!(parse_label("[0@x1]hi"), (Some(0), "hi"));
        assert_eq!(parse_label("[12@node-3.lab] x y"), (Some(12), " x y"));
        assert_eq!(parse_label("[3@a]"), (Some(3), ""));
        assert_eq!(parse_label("[3@a][1@b]z"), (Some(3), "[1@b]z"));
        assert_eq!(parse_label("[1,0]<stdout>:out"), (Some(0), "out"));
        assert_eq!(parse_label("[4,17]<stderr>: e"), (Some(17), " e"));
        for l in [
            "plain",
            "[x@a]hi",
            "[@a]hi",
            "[1@]hi",
            "[1@a hi",
            "[1 a]hi",
            "[99999999999@a]hi",
            "[1@a b]c",
            "[1,0]out",
            "[1,x]<stdout>:o",
            "[,0]<stdout>:o",
            "[1,0]<stdin>:o",
            "[1,99999999999]<stdout>:o",
            "",
            "[",
        ] {
            assert_eq!(parse_label(l), (None, l), "{l:?}");
        }
    }

    #[test]
    fn host_files() {
        let h = hs(&[("a1", 2), ("a2", 1)]);
        assert_eq!(hydra_hosts(&h), "a1:2\na2:1\n");
        assert_eq!(nodefile(&h), "a1\na1\na2\n");
        assert_eq!(openmpi_hosts(&h), "a1 slots=2\na2 slots=1\n");
    }

    #[test]
    fn writes_job_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = JobFiles::paths(dir.path(), JobId(42));
        assert_eq!(f.dir, dir.path().join("42"));
        f.write(&hs(&[("n", 3)])).unwrap();
        assert_eq!(std::fs::read_to_string(&f.hosts).unwrap(), "n:3\n");
        assert_eq!(std::fs::read_to_string(&f.nodefile).unwrap(), "n\nn\nn\n");
        assert_eq!(
            std::fs::read_to_string(&f.hydra_conf).unwrap(),
            "-prepend-pattern [%r@%h]\n"
        );
        // Writing again starts afresh.
        std::fs::write(f.dir.join("junk"), "").unwrap();
        f.write(&hs(&[("n", 1)])).unwrap();
        assert!(!f.dir.join("junk").exists());
    }

    #[test]
    fn env_has_everything() {
        let f = JobFiles::paths(Path::new("/s/jobs"), JobId(5));
        let hosts = hs(&[("a", 2), ("b", 3)]);
        let extra = vec![("GRAZE_NPROCS".to_string(), "override".to_string())];
        let e = JobEnv {
            job: JobId(5),
            files: &f,
            hosts: &hosts,
            launcher: Path::new("/bin/graze-launch"),
            launch_sock: Path::new("/s/launch.sock"),
            secret: "sec",
            tag: "abc-5",
            extra: &extra,
        };
        let v = e.vars();
        let get = |k: &str| {
            v.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, x)| x.to_string_lossy().into_owned())
        };
        assert_eq!(get("HYDRA_HOST_FILE").unwrap(), "/s/jobs/5/hosts");
        assert_eq!(get("HYDRA_LAUNCHER").unwrap(), "rsh");
        assert_eq!(get("HYDRA_LAUNCHER_EXEC").unwrap(), "/bin/graze-launch");
        assert_eq!(get("HYDRA_CONFIG_FILE").unwrap(), "/s/jobs/5/hydra.conf");
        assert_eq!(get("GRAZE_JOB_ID").unwrap(), "5");
        assert_eq!(get("GRAZE_JOB_TAG").unwrap(), "abc-5");
        assert_eq!(get("GRAZE_JOB_SECRET").unwrap(), "sec");
        assert_eq!(get("GRAZE_LAUNCH_SOCK").unwrap(), "/s/launch.sock");
        assert_eq!(get("GRAZE_NODEFILE").unwrap(), "/s/jobs/5/nodefile");
        assert_eq!(get("GRAZE_NPROCS").unwrap(), "override");
    }
}
