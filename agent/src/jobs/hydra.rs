//! What a job's main command needs from the agent to run MPI: the host files, hydra's
//! configuration, the environment, and reading hydra's rank labels back from its output.

use graze_proto::{HostSlots, JobId};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// hydra's option that labels every output line with `[RANK@HOST]`.
pub const PREPEND_PATTERN: &str = "-prepend-pattern [%r@%h]";

/// Environment variables of the agent that never reach a job.
pub const SECRET_VARS: &[&str] = &["GRAZE_ACCESS"];

/// The rank label at the start of `s` (which starts with `[`) and its length: hydra's
/// `[RANK@HOST]`, or Open MPI's `[JOB,RANK]<stdout>:` / `[JOB,RANK]<stderr>:`
/// (`orte_tag_output`). With `hosts` given, a hydra label must name one of them.
fn label_at(s: &str, hosts: &[String]) -> Option<(u32, usize)> {
    let rest = s.strip_prefix('[')?;
    let (label, after) = rest.split_once(']')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some((job, rank)) = label.split_once(',') {
        if !digits(job) || !digits(rank) {
            return None;
        }
        let tag = ["<stdout>:", "<stderr>:"]
            .into_iter()
            .find(|t| after.starts_with(t))?;
        return Some((rank.parse().ok()?, 1 + label.len() + 1 + tag.len()));
    }
    let (rank, host) = label.split_once('@')?;
    if !digits(rank) || host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    if host.contains('[') || (!hosts.is_empty() && !hosts.iter().any(|h| h == host)) {
        return None;
    }
    Some((rank.parse().ok()?, 1 + label.len() + 1))
}

/// Split a line of the main command's output at the rank labels in it: the text before the
/// first label (unlabelled, `None`), then each label's rank with the text up to the next.
fn segments<'a>(line: &'a str, hosts: &[String]) -> Vec<(Option<u32>, &'a str)> {
    let mut out = Vec::new();
    let (mut rank, mut start, mut from) = (None, 0, 0);
    while let Some(off) = line[from..].find('[') {
        let at = from + off;
        match label_at(&line[at..], hosts) {
            Some((r, len)) => {
                if rank.is_some() || at > start {
                    out.push((rank, &line[start..at]));
                }
                rank = Some(r);
                start = at + len;
                from = start;
            }
            None => from = at + 1,
        }
    }
    out.push((rank, &line[start..]));
    out
}

/// Puts the ranks' lines back together from one stream (stdout or stderr) of the main
/// command's output.
///
/// hydra's `-prepend-pattern` and Open MPI's output tags label each *write* of a rank, not
/// each line, and `mpiexec` passes the writes of all ranks on as they come. A rank that writes
/// one line in three pieces, while another rank writes a line of its own, comes out as
/// `[0@a]x = [1@b]hello` then `[0@a]4[0@a]2` (newline). So every line read is cut at its
/// labels; each piece goes to its rank's unfinished line, and the newline ends the line of
/// the rank that wrote last. Lines of two ranks never merge, and each comes out once, whole,
/// labelled once.
#[derive(Debug, Default)]
pub struct Relabel {
    /// The job's host names (hydra's `%h`): a `[R@H]` naming another host is text.
    hosts: Vec<String>,
    /// Unfinished lines, by rank (`None`: unlabelled text), oldest first.
    partial: Vec<(Option<u32>, String)>,
}

impl Relabel {
    /// A relabeller for a job on `hosts`.
    pub fn new(hosts: Vec<String>) -> Relabel {
        Relabel {
            hosts,
            partial: Vec::new(),
        }
    }

    /// One line read (without its newline): the ranks' lines it completes.
    pub fn line(&mut self, line: &str) -> Vec<(Option<u32>, String)> {
        let segs = segments(line, &self.hosts);
        let last = segs.len() - 1;
        let mut done = Vec::new();
        for (i, (rank, text)) in segs.into_iter().enumerate() {
            let idx = match self.partial.iter().position(|(r, _)| *r == rank) {
                Some(i) => i,
                None => {
                    self.partial.push((rank, String::new()));
                    self.partial.len() - 1
                }
            };
            let buf = &mut self.partial[idx].1;
            buf.push_str(text);
            if i == last || buf.len() > graze_proto::MAX_LINE {
                let (rank, whole) = self.partial.remove(idx);
                done.push((rank, graze_proto::clip_line(whole)));
            }
        }
        done
    }

    /// The stream ended: the unfinished lines, as they are.
    pub fn finish(&mut self) -> Vec<(Option<u32>, String)> {
        std::mem::take(&mut self.partial)
            .into_iter()
            .filter(|(_, t)| !t.is_empty())
            .map(|(r, t)| (r, graze_proto::clip_line(t)))
            .collect()
    }
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
    /// The job's private temporary directory on this node (`TMPDIR`), removed with the job.
    pub tmp: PathBuf,
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
            tmp: dir.join("tmp"),
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
        std::fs::create_dir_all(&self.tmp)?;
        Ok(())
    }
}

/// Variables every process of a job gets on this node, the main command's and each remote
/// launch's (hydra's proxy, Open MPI's `orted`).
///
/// `TMPDIR` is the job's own directory on this node. Open MPI keeps its session directory
/// (`$TMPDIR/ompi.HOST.UID/jf.JOBFAMILY/`: the daemons' rendezvous, PMIx's shared-memory
/// store, hwloc's shared topology) under it, named by host name, user and job. Several graze
/// nodes on one machine share all three, so two `orted`s of one job collided there: a
/// `mkdir` race ("File exists") or a segfault in `hwloc_shmem_topology_write`. A directory
/// per node and job ends that, and the job's temporary files go with the job.
///
/// `remote_shares_host`: this node's name is not the machine's host name, as with several
/// agents on one machine. Open MPI's shared-memory transport (vader) names its segments in
/// `/dev/shm` by host name, job and local rank, so the ranks of two such nodes overwrite each
/// other's segments and crash. Processes launched through the shim then put them in their
/// own directory. Only those: `mpirun` forwards the `OMPI_MCA_*` variables of its own
/// environment to every `orted` on their command line, which would override each node's own.
pub fn node_vars(tmp: &Path, remote_shares_host: bool) -> Vec<(String, OsString)> {
    let mut v = vec![("TMPDIR".to_string(), OsString::from(tmp))];
    if remote_shares_host {
        v.push((
            "OMPI_MCA_btl_vader_backing_directory".into(),
            OsString::from(tmp),
        ));
    }
    v
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
            // Every output line labelled `[JOB,RANK]<stdout>:`, read back by `Relabel`.
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
        v.extend(node_vars(&self.files.tmp, false));
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
        let parse_label = |l| match label_at(l, &[]) {
            Some((rank, len)) => (Some(rank), &l[len..]),
            None => (None, l),
        };
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

    fn relabel(hosts: &[&str], lines: &[&str]) -> Vec<(Option<u32>, String)> {
        let mut r = Relabel::new(hosts.iter().map(|h| h.to_string()).collect());
        let mut out: Vec<_> = lines.iter().flat_map(|l| r.line(l)).collect();
        out.extend(r.finish());
        out
    }

    fn ranked(v: &[(Option<u32>, &str)]) -> Vec<(Option<u32>, String)> {
        v.iter().map(|(r, s)| (*r, s.to_string())).collect()
    }

    #[test]
    fn labels_inside_a_line_are_removed() {
        // The graze-pi line from the issue: one line written in pieces.
        let got = relabel(
            &["ws5"],
            &["[0@ws5]not converged after [0@ws5]600[0@ws5] rounds (last delta [0@ws5]0.[0@ws5]000[0@ws5]984)"],
        );
        assert_eq!(
            got,
            ranked(&[(
                Some(0),
                "not converged after 600 rounds (last delta 0.000984)"
            )])
        );
    }

    #[test]
    fn pieces_of_two_ranks_never_merge() {
        let got = relabel(
            &["a", "b"],
            &[
                "[0@a]x = [1@b]hello from 1",
                "[0@a]4[0@a]2",
                "[1@b]par[0@a]next[1@b]tial",
                "[0@a] line",
            ],
        );
        assert_eq!(
            got,
            ranked(&[
                (Some(1), "hello from 1"),
                (Some(0), "x = 42"),
                (Some(1), "partial"),
                (Some(0), "next line"),
            ])
        );
        // Open MPI's tags, the same way.
        let got = relabel(
            &[],
            &["[1,0]<stdout>:ab[1,3]<stdout>:zz", "[1,0]<stdout>:c"],
        );
        assert_eq!(got, ranked(&[(Some(3), "zz"), (Some(0), "abc")]));
    }

    #[test]
    fn text_that_only_looks_like_a_label_stays() {
        // A host that is not the job's: text. Unlabelled lines stay unlabelled.
        let got = relabel(
            &["a"],
            &[
                "[0@a]array[2@x] = 5",
                "plain [0@] [a@b] [",
                "",
                "[mpiexec@vm] error",
            ],
        );
        assert_eq!(
            got,
            ranked(&[
                (Some(0), "array[2@x] = 5"),
                (None, "plain [0@] [a@b] ["),
                (None, ""),
                (None, "[mpiexec@vm] error"),
            ])
        );
        // Unfinished lines come out when the stream ends; empty ones do not.
        let mut r = Relabel::new(vec!["a".into()]);
        assert_eq!(r.line("[0@a]x[1@a]"), ranked(&[(Some(1), "")]));
        assert_eq!(r.finish(), ranked(&[(Some(0), "x")]));
    }

    #[test]
    fn an_endless_partial_line_is_cut() {
        let mut r = Relabel::new(vec!["a".into()]);
        let big = "y".repeat(graze_proto::MAX_LINE / 2 + 1);
        let mut out = Vec::new();
        for _ in 0..4 {
            out.extend(r.line(&format!("[0@a]{big}[1@a]z")));
        }
        assert!(out
            .iter()
            .any(|(r, t)| *r == Some(0) && t.ends_with("[line cut by graze]")));
        assert!(r
            .partial
            .iter()
            .all(|(_, t)| t.len() <= graze_proto::MAX_LINE + 32));
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
        assert_eq!(get("TMPDIR").unwrap(), "/s/jobs/5/tmp");
        // mpirun would forward it to every orted: only remote launches get it.
        assert_eq!(get("OMPI_MCA_btl_vader_backing_directory"), None);
        let n = node_vars(Path::new("/t"), true);
        assert!(n
            .iter()
            .any(|(k, v)| k == "OMPI_MCA_btl_vader_backing_directory" && v == "/t"));
    }
}
