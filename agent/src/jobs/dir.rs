//! The job directory and the spool: who owns them, and what is kept of a job's files after
//! it ends.

use super::confine::{self, Confinement};
use super::hydra::JobFiles;

/// Set up the spool for jobs run as another user: the spool, `jobs/` and `output/` belong to
/// root and the job user's group (0750), so the job user reaches its job directory and the
/// launcher socket, and other users reach nothing. Fails, naming the directory, when the
/// job user cannot reach the spool at all.
pub(crate) fn prepare_spool(
    c: &Confinement,
    spool: &std::path::Path,
    jobs_dir: &std::path::Path,
    output_dir: &std::path::Path,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::fs::PermissionsExt;
    for d in [spool, jobs_dir, output_dir] {
        std::fs::create_dir_all(d)
            .with_context(|| format!("creating spool directory '{}'", d.display()))?;
        if c.switch_user {
            std::os::unix::fs::chown(d, Some(0), Some(c.user.gid))
                .and_then(|()| std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o750)))
                .with_context(|| format!("giving '{}' to group {}", d.display(), c.user.gid))?;
        }
    }
    if c.switch_user {
        if let Err(d) = confine::reachable_by(&c.user, jobs_dir) {
            anyhow::bail!(
                "job user '{}' cannot reach the spool directory '{}': '{}' is not searchable by it; choose a spool under a directory others may enter (e.g. /var/spool)",
                c.user.name,
                spool.display(),
                d.display()
            );
        }
    }
    Ok(())
}

/// Let the job user (and only root and that user's group) connect to the launcher socket.
pub(crate) fn share_socket(c: &Confinement, sock: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if !c.switch_user {
        return Ok(());
    }
    std::os::unix::fs::chown(sock, Some(0), Some(c.user.gid))?;
    std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o660))
}

/// Give a job's working directory to its user, private to it (0700).
pub(crate) fn give_job_dir(c: &Confinement, dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if !c.switch_user {
        return Ok(());
    }
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if !e.file_type()?.is_symlink() {
            confine::chown_to(c, &e.path())?;
        }
    }
    confine::chown_to(c, dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// After a job's run `attempt`: remove graze's own files from its working directory; if the
/// job left files of its own there, keep them in `output` (`SPOOL/output/ID`), else remove the
/// directory. An `output` an earlier attempt left is kept, renamed `ID.attemptK` (K the attempt
/// before, as for output files: `graze_proto::attempt_aside`), so no attempt's files are lost.
/// Move an earlier attempt's kept directory `output` aside (or, failing that, remove it, as
/// before attempts were kept).
fn keep_earlier(output: &std::path::Path, attempt: u64) {
    let base = graze_proto::attempt_aside(&output.to_string_lossy(), attempt.max(2));
    let mut to = std::path::PathBuf::from(&base);
    let mut n = 2;
    while to.symlink_metadata().is_ok() && n < 1000 {
        to = std::path::PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    if let Err(e) = std::fs::rename(output, &to) {
        tracing::warn!(dir = %output.display(), error = %e, "cannot keep an earlier attempt's files");
        let _ = std::fs::remove_dir_all(output);
    }
}

pub(crate) fn finish_job_dir(files: &JobFiles, output: &std::path::Path, attempt: u64) {
    for f in [
        &files.hosts,
        &files.nodefile,
        &files.hydra_conf,
        &files.openmpi_hosts,
    ] {
        let _ = std::fs::remove_file(f);
    }
    // Temporary files are not output.
    let _ = std::fs::remove_dir_all(&files.tmp);
    let empty = match std::fs::read_dir(&files.dir) {
        Ok(mut rd) => rd.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(_) => false,
    };
    let result = if empty {
        std::fs::remove_dir(&files.dir)
    } else {
        if output.symlink_metadata().is_ok() {
            keep_earlier(output, attempt);
        }
        std::fs::rename(&files.dir, output).inspect(|()| {
            tracing::info!(dir = %output.display(), "the job left files in its working directory; kept");
        })
    };
    if let Err(e) = result {
        tracing::warn!(dir = %files.dir.display(), error = %e, "cannot tidy the job directory");
        let _ = std::fs::remove_dir_all(&files.dir);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn job_dir_keeps_only_the_jobs_output() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = [graze_proto::HostSlots {
            host: "n".into(),
            slots: 1,
        }];
        let f = JobFiles::paths(&dir.path().join("jobs"), graze_proto::JobId(1));
        f.write(&hosts).unwrap();
        let out = dir.path().join("output").join("1");
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        finish_job_dir(&f, &out, 1);
        assert!(!f.dir.exists());
        assert!(!out.exists(), "nothing of the job's own: nothing kept");

        let f = JobFiles::paths(&dir.path().join("jobs"), graze_proto::JobId(2));
        f.write(&hosts).unwrap();
        std::fs::write(f.dir.join("result.dat"), "42").unwrap();
        std::fs::write(f.tmp.join("scratch"), "x").unwrap();
        let out = dir.path().join("output").join("2");
        finish_job_dir(&f, &out, 1);
        assert!(!f.dir.exists());
        let kept: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(kept, vec!["result.dat"]);
    }

    #[test]
    fn a_later_attempt_keeps_the_earlier_attempts_files() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = [graze_proto::HostSlots {
            host: "n".into(),
            slots: 1,
        }];
        let out = dir.path().join("output").join("3");
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        for attempt in 1..=3 {
            let f = JobFiles::paths(&dir.path().join("jobs"), graze_proto::JobId(3));
            f.write(&hosts).unwrap();
            std::fs::write(f.dir.join("out.txt"), format!("run {attempt}")).unwrap();
            finish_job_dir(&f, &out, attempt);
        }
        let read = |p: &str| std::fs::read_to_string(dir.path().join("output").join(p)).unwrap();
        assert_eq!(read("3/out.txt"), "run 3");
        assert_eq!(read("3.attempt2/out.txt"), "run 2");
        assert_eq!(read("3.attempt1/out.txt"), "run 1");
    }
}
