//! The checkpoints on disk: `STATE/checkpoints/JOB/ID/` (a `part-NODE.tgz` per node and
//! `manifest.json`) for complete ones, `STATE/checkpoints/JOB/.incoming-ID/` for one being
//! received. A checkpoint becomes complete by one rename, after its parts and manifest are
//! fsynced, so a crash at any point leaves either the old set or the new one; what is left
//! under `.incoming-*` is never read, only removed at the next start.

use anyhow::{Context, Result};
use graze_proto::{CheckpointId, JobId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use tracing::warn;

/// How many complete checkpoints a job keeps: the current one and the one before it.
pub(crate) const KEEP: usize = 2;

/// What a complete checkpoint holds (`manifest.json`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Manifest {
    /// Which checkpoint.
    pub(crate) id: CheckpointId,
    /// When it became complete (ms since the Unix epoch).
    pub(crate) stored_ms: u64,
    /// Size of all parts (compressed bytes).
    pub(crate) bytes: u64,
    /// The job's ranks, all held.
    pub(crate) ranks: u32,
    /// The nodes the parts came from.
    pub(crate) nodes: Vec<String>,
    /// Node → the ranks its part holds.
    pub(crate) parts: BTreeMap<String, Vec<u32>>,
}

/// The file name of `node`'s part: node names are not restricted, so anything but ASCII
/// letters, digits, `-`, `_` and `.` is written as `%XX`.
pub(crate) fn part_name(node: &str) -> String {
    let mut s = String::from("part-");
    for b in node.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s.push_str(".tgz");
    s
}

/// The checkpoint store's directory.
#[derive(Debug, Clone)]
pub(crate) struct Disk {
    root: PathBuf,
}

fn fsync_dir(p: &Path) -> Result<()> {
    fs::File::open(p)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", p.display()))
}

impl Disk {
    /// The store under `root` (created if missing).
    pub(crate) fn open(root: &Path) -> Result<Disk> {
        fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        Ok(Disk {
            root: root.to_path_buf(),
        })
    }

    fn job_dir(&self, job: JobId) -> PathBuf {
        self.root.join(job.to_string())
    }

    /// Where checkpoint `id` of `job` is received.
    pub(crate) fn incoming_dir(&self, job: JobId, id: CheckpointId) -> PathBuf {
        self.job_dir(job).join(format!(".incoming-{id}"))
    }

    /// Where `node`'s part of the incoming checkpoint `id` is written (its directory made).
    pub(crate) fn incoming_part(
        &self,
        job: JobId,
        id: CheckpointId,
        node: &str,
    ) -> Result<PathBuf> {
        let dir = self.incoming_dir(job, id);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir.join(part_name(node)))
    }

    /// `node`'s part of the complete checkpoint `id`.
    pub(crate) fn part(&self, job: JobId, id: CheckpointId, node: &str) -> PathBuf {
        self.job_dir(job).join(id.to_string()).join(part_name(node))
    }

    /// Make the incoming checkpoint complete: write and fsync its manifest, rename its
    /// directory to the id, fsync the job's directory. The parts were fsynced as they
    /// finished.
    pub(crate) fn commit(&self, job: JobId, m: &Manifest) -> Result<()> {
        let from = self.incoming_dir(job, m.id);
        let path = from.join("manifest.json");
        let text = serde_json::to_vec_pretty(m)?;
        {
            use std::io::Write;
            let mut f =
                fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            f.write_all(&text)
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        fsync_dir(&from)?;
        let to = self.job_dir(job).join(m.id.to_string());
        if to.exists() {
            fs::remove_dir_all(&to).with_context(|| format!("removing {}", to.display()))?;
        }
        fs::rename(&from, &to)
            .with_context(|| format!("renaming {} to {}", from.display(), to.display()))?;
        fsync_dir(&self.job_dir(job))
    }

    /// Remove the incoming checkpoint `id` (void or never completed).
    pub(crate) fn discard(&self, job: JobId, id: CheckpointId) {
        let dir = self.incoming_dir(job, id);
        if let Err(e) = fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(dir = %dir.display(), "removing a void checkpoint: {e}");
            }
        }
    }

    /// Remove the complete checkpoint `id`.
    pub(crate) fn remove(&self, job: JobId, id: CheckpointId) {
        let dir = self.job_dir(job).join(id.to_string());
        if let Err(e) = fs::remove_dir_all(&dir) {
            warn!(dir = %dir.display(), "removing an old checkpoint: {e}");
        }
    }

    /// Remove everything of `job` (it is final).
    pub(crate) fn remove_job(&self, job: JobId) {
        let dir = self.job_dir(job);
        if let Err(e) = fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(dir = %dir.display(), "removing a job's checkpoints: {e}");
            }
        }
    }

    /// Read the store at start: every `.incoming-*` (a transfer cut by a crash) and anything
    /// that is not a complete checkpoint is removed; the complete ones are returned per job,
    /// oldest first, at most [`KEEP`] (older ones are removed).
    pub(crate) fn scan(&self) -> Result<BTreeMap<JobId, Vec<Manifest>>> {
        let mut out = BTreeMap::new();
        let rd =
            fs::read_dir(&self.root).with_context(|| format!("reading {}", self.root.display()))?;
        for e in rd.flatten() {
            let path = e.path();
            let Some(job) = e
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u64>().ok())
                .map(JobId)
            else {
                warn!(path = %path.display(), "not a job's checkpoint directory: left alone");
                continue;
            };
            let mut found = Vec::new();
            for c in fs::read_dir(&path).into_iter().flatten().flatten() {
                let p = c.path();
                let name = c.file_name().to_string_lossy().into_owned();
                match self.read_one(&p, &name) {
                    Some(m) => found.push(m),
                    None => {
                        if !name.starts_with(".incoming-") {
                            warn!(path = %p.display(), "not a complete checkpoint: removed");
                        }
                        let r = if p.is_dir() {
                            fs::remove_dir_all(&p)
                        } else {
                            fs::remove_file(&p)
                        };
                        if let Err(e) = r {
                            warn!(path = %p.display(), "removing: {e}");
                        }
                    }
                }
            }
            found.sort_by_key(|m: &Manifest| m.id);
            while found.len() > KEEP {
                let old = found.remove(0);
                self.remove(job, old.id);
            }
            if found.is_empty() {
                let _ = fs::remove_dir(&path);
            } else {
                out.insert(job, found);
            }
        }
        Ok(out)
    }

    /// The manifest of the complete checkpoint in `p` (named `name`), if it is one.
    fn read_one(&self, p: &Path, name: &str) -> Option<Manifest> {
        let id: CheckpointId = name.parse().ok()?;
        let m: Manifest = serde_json::from_slice(&fs::read(p.join("manifest.json")).ok()?).ok()?;
        let parts_ok = m.parts.keys().all(|n| p.join(part_name(n)).is_file());
        (m.id == id && parts_ok).then_some(m)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn manifest(id: CheckpointId) -> Manifest {
        Manifest {
            id,
            stored_ms: id.at_ms + 1,
            bytes: 3,
            ranks: 2,
            nodes: vec!["a1".into()],
            parts: BTreeMap::from([("a1".to_string(), vec![0, 1])]),
        }
    }

    fn put(d: &Disk, job: JobId, id: CheckpointId) {
        let p = d.incoming_part(job, id, "a1").unwrap();
        fs::write(p, b"abc").unwrap();
        d.commit(job, &manifest(id)).unwrap();
    }

    const J: JobId = JobId(7);
    fn id(e: u64, t: u64) -> CheckpointId {
        CheckpointId { epoch: e, at_ms: t }
    }

    #[test]
    fn part_names_are_plain_file_names() {
        assert_eq!(part_name("a1.lan"), "part-a1.lan.tgz");
        assert_eq!(part_name("../x y"), "part-..%2Fx%20y.tgz");
    }

    #[test]
    fn committed_checkpoints_survive_a_scan_and_incoming_ones_never_do() {
        let t = tempfile::tempdir().unwrap();
        let d = Disk::open(t.path()).unwrap();
        put(&d, J, id(1, 100));
        // A transfer cut by a SIGKILL: parts and even a manifest, but never renamed.
        let half = d.incoming_part(J, id(2, 200), "a1").unwrap();
        fs::write(&half, b"half").unwrap();
        fs::write(
            d.incoming_dir(J, id(2, 200)).join("manifest.json"),
            serde_json::to_vec(&manifest(id(2, 200))).unwrap(),
        )
        .unwrap();
        let d = Disk::open(t.path()).unwrap();
        let got = d.scan().unwrap();
        assert_eq!(
            got[&J],
            vec![manifest(id(1, 100))],
            "the last good one stays current"
        );
        assert!(!d.incoming_dir(J, id(2, 200)).exists());
        assert_eq!(fs::read(d.part(J, id(1, 100), "a1")).unwrap(), b"abc");
    }

    #[test]
    fn scan_keeps_the_newest_two_and_drops_broken_ones() {
        let t = tempfile::tempdir().unwrap();
        let d = Disk::open(t.path()).unwrap();
        put(&d, J, id(1, 100));
        put(&d, J, id(2, 50));
        put(&d, J, id(2, 300));
        // A directory named like a checkpoint whose part is missing.
        put(&d, J, id(3, 10));
        fs::remove_file(d.part(J, id(3, 10), "a1")).unwrap();
        let got = d.scan().unwrap();
        let ids: Vec<_> = got[&J].iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![id(2, 50), id(2, 300)]);
        assert!(!t.path().join("7").join("r1-100").exists());
        assert!(!t.path().join("7").join("r3-10").exists());
    }

    #[test]
    fn removing_a_job_removes_all_of_it() {
        let t = tempfile::tempdir().unwrap();
        let d = Disk::open(t.path()).unwrap();
        put(&d, J, id(1, 100));
        d.incoming_part(J, id(2, 1), "a1").unwrap();
        d.remove_job(J);
        assert!(!t.path().join("7").exists());
        assert!(d.scan().unwrap().is_empty());
        d.remove_job(J);
    }
}
