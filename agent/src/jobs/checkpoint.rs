//! Checkpoint files on a node (issue 12): the hidden subcommands `graze-agent checkpoint-pack`
//! and `graze-agent checkpoint-unpack`, which read and write `$GRAZE_CHECKPOINT_DIR`.
//!
//! Like the output writer ([`crate::jobs::outfiles`]) they run as the job's user, started
//! through the job's [`crate::jobs::confine::Confinement`] and outside the job's process set:
//! root never opens a path inside the checkpoint directory, whose contents the job chose.
//!
//! - `checkpoint-pack --dir D --ranks 0,1` writes a gzip'd tar of `0/...` and `1/...` to
//!   stdout. Every rank named must have its marker (`D/r.done`, [`graze_proto::done_marker`]).
//!   Regular files and directories are taken; a symlink only if it points inside `D`. Anything
//!   else (a symlink out of `D`, a file it cannot read, a device or fifo) refuses the whole
//!   part. A file that changes while it is packed refuses the part too (never a damaged archive).
//!   The markers stay; the agent removes them before its next signal.
//! - `checkpoint-unpack --dir D --ranks 0,1` first removes `D/r` and `D/r.done` for its ranks,
//!   then reads concatenated gzip'd tars from stdin and extracts only the entries under `r/`
//!   for its ranks (absolute paths, `..` and links out of `D` refuse), and prints an
//!   [`UnpackSummary`] as one JSON line on stdout.
//!
//! Both exit 0 on success and [`EXIT_REFUSED`] with one line on stderr otherwise.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

/// Exit code of a pack or unpack that refused (the reason is the one line on stderr).
pub const EXIT_REFUSED: i32 = 2;

/// Arguments of `graze-agent checkpoint-pack` and `checkpoint-unpack`.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct CkptArgs {
    /// The checkpoint directory (`GRAZE_CHECKPOINT_DIR`).
    #[arg(long)]
    pub dir: PathBuf,
    /// The ranks, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub ranks: Vec<u32>,
}

/// What an unpack restored (one JSON line on its stdout).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct UnpackSummary {
    /// Regular files written.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The ranks that had entries.
    pub ranks: Vec<u32>,
}

/// Normalise `p` lexically (no file system access); `None` if it climbs above its start.
fn normalise(p: &Path) -> Option<PathBuf> {
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out.iter().collect())
}

/// True when a symlink at `rel` (relative to the checkpoint directory `dir`) whose target is
/// `target` points inside `dir`.
fn link_inside(dir: &Path, rel: &Path, target: &Path) -> bool {
    let joined = if target.is_absolute() {
        match target.strip_prefix(dir) {
            Ok(t) => t.to_path_buf(),
            Err(_) => return false,
        }
    } else {
        rel.parent().unwrap_or(Path::new("")).join(target)
    };
    normalise(&joined).is_some()
}

fn io_reason(e: &std::io::Error) -> String {
    crate::jobs::spawn::io_reason(e)
}

/// Why [`append_exact`] failed.
enum Packed {
    /// The file's size or times moved between its header and the end of its data.
    Changed,
    Io(std::io::Error),
}

/// A reader that fails unless exactly `left` bytes come: tar's header promised that many, and
/// tar-rs pads by what it copied, so a file grown or shrunk meanwhile would shift every later
/// header of the archive (a damaged checkpoint, found only at restore).
struct Exactly<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Append the regular file `f` as `rel`: its header from the open file's metadata, exactly
/// that many bytes, and the same size and times after the copy, or [`Packed::Changed`].
fn append_exact<W: Write>(
    b: &mut tar::Builder<W>,
    rel: &Path,
    f: std::fs::File,
) -> Result<(), Packed> {
    let before = f.metadata().map_err(Packed::Io)?;
    append_as_of(b, rel, f, &before)
}

/// [`append_exact`] with the file's metadata as of `before`.
fn append_as_of<W: Write>(
    b: &mut tar::Builder<W>,
    rel: &Path,
    mut f: std::fs::File,
    before: &std::fs::Metadata,
) -> Result<(), Packed> {
    use std::os::unix::fs::MetadataExt;
    let mut h = tar::Header::new_gnu();
    h.set_metadata(before);
    let data = Exactly {
        inner: &mut f,
        left: before.len(),
    };
    match b.append_data(&mut h, rel, data) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(Packed::Changed),
        Err(e) => return Err(Packed::Io(e)),
    }
    let after = f.metadata().map_err(Packed::Io)?;
    let same = after.len() == before.len()
        && after.mtime() == before.mtime()
        && after.mtime_nsec() == before.mtime_nsec()
        && after.ctime() == before.ctime()
        && after.ctime_nsec() == before.ctime_nsec();
    if same {
        Ok(())
    } else {
        Err(Packed::Changed)
    }
}

/// Add `rel` (relative to `dir`, under a rank's directory) and everything below it.
fn add_tree<W: Write>(
    b: &mut tar::Builder<W>,
    dir: &Path,
    rel: &Path,
    rank: u32,
) -> Result<(), String> {
    let full = dir.join(rel);
    let shown = rel.display();
    let meta = std::fs::symlink_metadata(&full)
        .map_err(|e| format!("rank {rank}: cannot read '{shown}': {}", io_reason(&e)))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(&full)
            .map_err(|e| format!("rank {rank}: cannot read '{shown}': {}", io_reason(&e)))?;
        if !link_inside(dir, rel, &target) {
            return Err(format!(
                "rank {rank}: symlink '{shown}' points out of the checkpoint directory"
            ));
        }
        let mut h = tar::Header::new_gnu();
        h.set_metadata(&meta);
        h.set_size(0);
        b.append_link(&mut h, rel, &target)
            .map_err(|e| format!("rank {rank}: cannot pack '{shown}': {}", io_reason(&e)))?;
    } else if ft.is_dir() {
        b.append_dir(rel, &full)
            .map_err(|e| format!("rank {rank}: cannot read '{shown}': {}", io_reason(&e)))?;
        let mut names: Vec<_> = std::fs::read_dir(&full)
            .map_err(|e| format!("rank {rank}: cannot read '{shown}': {}", io_reason(&e)))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("rank {rank}: cannot read '{shown}': {}", io_reason(&e)))?;
        names.sort();
        for n in names {
            add_tree(b, dir, &rel.join(n), rank)?;
        }
    } else if ft.is_file() {
        let f = std::fs::File::open(&full)
            .map_err(|e| format!("rank {rank}: cannot read '{shown}': {}", io_reason(&e)))?;
        append_exact(b, rel, f).map_err(|e| match e {
            Packed::Changed => format!(
                "rank {rank}: '{shown}' changed while it was being packed (the program wrote \
                 to its checkpoint after its marker)"
            ),
            Packed::Io(e) => format!("rank {rank}: cannot read '{shown}': {}", io_reason(&e)),
        })?;
    } else {
        return Err(format!(
            "rank {rank}: '{shown}' is not a regular file, directory or symlink"
        ));
    }
    Ok(())
}

/// Pack `ranks` of `dir` as a gzip'd tar into `out`. A rank without its marker, or anything
/// [`add_tree`] refuses, is an error. The markers stay: the agent removes them before it asks
/// for the next checkpoint (a packer removing them afterwards could take the next one's).
pub fn pack(dir: &Path, ranks: &[u32], out: impl Write) -> Result<(), String> {
    for r in ranks {
        let marker = dir.join(graze_proto::done_marker(*r));
        if std::fs::symlink_metadata(&marker).is_err() {
            return Err(format!(
                "rank {r}: no marker '{}'",
                graze_proto::done_marker(*r)
            ));
        }
    }
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    b.follow_symlinks(false);
    for r in ranks {
        let rel = PathBuf::from(r.to_string());
        match std::fs::symlink_metadata(dir.join(&rel)) {
            // A rank may have nothing but its marker.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            _ => add_tree(&mut b, dir, &rel, *r)?,
        }
    }
    let gz = b
        .into_inner()
        .map_err(|e| format!("cannot write the archive: {}", io_reason(&e)))?;
    let mut out = gz
        .finish()
        .map_err(|e| format!("cannot write the archive: {}", io_reason(&e)))?;
    out.flush()
        .map_err(|e| format!("cannot write the archive: {}", io_reason(&e)))
}

/// Remove `dir/r` and `dir/r.done` for each of `ranks` (missing ones are fine).
pub fn clear_ranks(dir: &Path, ranks: &[u32]) -> Result<(), String> {
    for r in ranks {
        let d = dir.join(r.to_string());
        match std::fs::symlink_metadata(&d) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&d),
            Ok(_) => std::fs::remove_file(&d),
            Err(_) => Ok(()),
        }
        .map_err(|e| format!("cannot remove '{r}': {}", io_reason(&e)))?;
        match std::fs::remove_file(dir.join(graze_proto::done_marker(*r))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "cannot remove '{}': {}",
                    graze_proto::done_marker(*r),
                    io_reason(&e)
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Clear `ranks` in `dir`, then extract the entries of the concatenated gzip'd tars on `input`
/// that belong to them (others are skipped).
pub fn unpack(dir: &Path, ranks: &[u32], input: impl Read) -> Result<UnpackSummary, String> {
    use std::io::BufRead;
    clear_ranks(dir, ranks)?;
    let mut input = std::io::BufReader::new(input);
    let bad = |e: std::io::Error| format!("the checkpoint data is damaged: {}", io_reason(&e));
    // No data at all (no part held this node's ranks) restores nothing.
    if input.fill_buf().map_err(bad)?.is_empty() {
        return Ok(UnpackSummary::default());
    }
    let wanted: BTreeSet<u32> = ranks.iter().copied().collect();
    let mut seen = BTreeSet::new();
    let mut sum = UnpackSummary::default();
    let mut a = tar::Archive::new(flate2::read::MultiGzDecoder::new(input));
    a.set_ignore_zeros(true);
    a.set_overwrite(true);
    for entry in a.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let shown = path.display().to_string();
        if path.is_absolute()
            || path
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(format!(
                "refusing '{shown}': not a plain path inside the checkpoint directory"
            ));
        }
        let rank = match path
            .components()
            .find(|c| matches!(c, Component::Normal(_)))
        {
            Some(Component::Normal(s)) => s.to_str().and_then(|s| s.parse::<u32>().ok()),
            _ => None,
        };
        let Some(rank) = rank.filter(|r| wanted.contains(r)) else {
            continue;
        };
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory => {}
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                sum.files += 1;
                sum.bytes += entry.size();
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name().map_err(bad)?.map(|t| t.into_owned());
                if !target.is_some_and(|t| link_inside(dir, &path, &t)) {
                    return Err(format!(
                        "refusing symlink '{shown}': it points out of the checkpoint directory"
                    ));
                }
            }
            _ => {
                return Err(format!(
                    "refusing '{shown}': not a regular file, directory or symlink"
                ))
            }
        }
        let ok = entry
            .unpack_in(dir)
            .map_err(|e| format!("cannot restore '{shown}': {}", io_reason(&e)))?;
        if !ok {
            return Err(format!(
                "refusing '{shown}': not a plain path inside the checkpoint directory"
            ));
        }
        seen.insert(rank);
    }
    sum.ranks = seen.into_iter().collect();
    Ok(sum)
}

/// `graze-agent checkpoint-pack`: the exit code.
pub fn run_pack(a: &CkptArgs) -> i32 {
    let stdout = std::io::stdout().lock();
    match pack(
        &a.dir,
        &a.ranks,
        std::io::BufWriter::with_capacity(1 << 16, stdout),
    ) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            EXIT_REFUSED
        }
    }
}

/// `graze-agent checkpoint-unpack`: the exit code.
pub fn run_unpack(a: &CkptArgs) -> i32 {
    let stdin = std::io::stdin().lock();
    match unpack(&a.dir, &a.ranks, stdin) {
        Ok(s) => {
            println!("{}", serde_json::to_string(&s).unwrap_or_default());
            0
        }
        Err(e) => {
            eprintln!("{e}");
            EXIT_REFUSED
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::fs;

    fn setup() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::create_dir_all(d.join("0/sub")).unwrap();
        fs::write(d.join("0/state.bin"), b"rank zero").unwrap();
        fs::write(d.join("0/sub/more"), b"deeper").unwrap();
        fs::create_dir_all(d.join("1")).unwrap();
        fs::write(d.join("1/state.bin"), b"rank one").unwrap();
        std::os::unix::fs::symlink("state.bin", d.join("1/latest")).unwrap();
        fs::write(d.join("0.done"), b"").unwrap();
        fs::write(d.join("1.done"), b"").unwrap();
        t
    }

    #[test]
    fn packs_restore_only_their_ranks() {
        let src = setup();
        let mut part0 = Vec::new();
        pack(src.path(), &[0], &mut part0).unwrap();
        let mut part1 = Vec::new();
        pack(src.path(), &[1], &mut part1).unwrap();
        // The markers stay (the agent removes them before its next signal).
        assert!(src.path().join("0.done").exists());
        assert!(src.path().join("1.done").exists());
        // Two parts, concatenated, as the scheduler sends them.
        let mut both = part0.clone();
        both.extend_from_slice(&part1);

        let dst = tempfile::tempdir().unwrap();
        // Stale files of a rank are replaced; another rank's are left alone.
        fs::create_dir_all(dst.path().join("1")).unwrap();
        fs::write(dst.path().join("1/stale"), b"x").unwrap();
        fs::write(dst.path().join("1.done"), b"").unwrap();
        fs::create_dir_all(dst.path().join("0")).unwrap();
        fs::write(dst.path().join("0/keep"), b"x").unwrap();
        let s = unpack(dst.path(), &[1], both.as_slice()).unwrap();
        assert_eq!(s.ranks, vec![1]);
        assert_eq!(s.files, 1);
        assert_eq!(s.bytes, 8);
        assert_eq!(
            fs::read(dst.path().join("1/state.bin")).unwrap(),
            b"rank one"
        );
        assert_eq!(
            fs::read_link(dst.path().join("1/latest")).unwrap(),
            Path::new("state.bin")
        );
        assert!(!dst.path().join("1/stale").exists());
        assert!(!dst.path().join("1.done").exists());
        assert!(dst.path().join("0/keep").exists());
        assert!(!dst.path().join("0/state.bin").exists());

        let s = unpack(dst.path(), &[0, 1], both.as_slice()).unwrap();
        assert_eq!(s.ranks, vec![0, 1]);
        assert_eq!(s.files, 3);
        assert_eq!(fs::read(dst.path().join("0/sub/more")).unwrap(), b"deeper");
        assert!(!dst.path().join("0/keep").exists());
    }

    /// A file that grew or shrank after its header was made refuses the part, never a
    /// damaged archive (tar-rs pads by what it copied, which shifted every later header).
    #[test]
    fn a_file_changed_while_packed_refuses() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        for (from, to) in [(4096usize, 100usize), (100, 4096), (512, 512)] {
            fs::write(&p, vec![1u8; from]).unwrap();
            let f = fs::File::open(&p).unwrap();
            let before = f.metadata().unwrap();
            // Rewritten in between (same size in the last case: its times moved).
            std::thread::sleep(std::time::Duration::from_millis(20));
            fs::write(&p, vec![2u8; to]).unwrap();
            let mut b = tar::Builder::new(Vec::new());
            let r = append_as_of(&mut b, Path::new("0/f"), f, &before);
            assert!(matches!(r, Err(Packed::Changed)), "{from} -> {to}");
        }
        // Unchanged: packed whole.
        fs::write(&p, vec![3u8; 1000]).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        assert!(append_exact(&mut b, Path::new("0/f"), fs::File::open(&p).unwrap()).is_ok());
        let bytes = b.into_inner().unwrap();
        let mut a = tar::Archive::new(bytes.as_slice());
        let mut e = a.entries().unwrap().next().unwrap().unwrap();
        let mut got = Vec::new();
        e.read_to_end(&mut got).unwrap();
        assert_eq!(got, vec![3u8; 1000]);
    }

    #[test]
    fn a_symlink_out_or_a_missing_marker_refuses() {
        let src = setup();
        std::os::unix::fs::symlink("/etc/passwd", src.path().join("1/evil")).unwrap();
        let e = pack(src.path(), &[0, 1], Vec::new()).unwrap_err();
        assert_eq!(
            e,
            "rank 1: symlink '1/evil' points out of the checkpoint directory"
        );
        // Nothing was taken: the markers stay.
        assert!(src.path().join("0.done").exists());
        fs::remove_file(src.path().join("1/evil")).unwrap();
        std::os::unix::fs::symlink("../../x", src.path().join("1/up")).unwrap();
        assert!(pack(src.path(), &[1], Vec::new())
            .unwrap_err()
            .contains("points out"));
        fs::remove_file(src.path().join("1/up")).unwrap();
        fs::remove_file(src.path().join("1.done")).unwrap();
        assert_eq!(
            pack(src.path(), &[1], Vec::new()).unwrap_err(),
            "rank 1: no marker '1.done'"
        );
    }

    fn raw_tar(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let t = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&t).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn unpack_refuses_escapes_and_damage() {
        let dst = tempfile::tempdir().unwrap();
        let link_out = raw_tar(|b| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            b.append_link(&mut h, "0/x", "/etc/passwd").unwrap();
        });
        assert!(unpack(dst.path(), &[0], link_out.as_slice())
            .unwrap_err()
            .contains("points out"));
        // `..` in a name: tar's own writer refuses to write one, so craft the header.
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..8].copy_from_slice(b"0/../../");
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        let mut t = h.as_bytes().to_vec();
        t.extend_from_slice(&[0u8; 1024]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&t).unwrap();
        let dotdot = gz.finish().unwrap();
        assert!(unpack(dst.path(), &[0], dotdot.as_slice())
            .unwrap_err()
            .contains("not a plain path"));
        assert!(unpack(dst.path(), &[0], &b"not gzip at all"[..])
            .unwrap_err()
            .contains("damaged"));
        // Nothing at all is an empty restore.
        assert_eq!(
            unpack(dst.path(), &[0], &b""[..]).unwrap(),
            UnpackSummary::default()
        );
    }
}
