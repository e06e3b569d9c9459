//! graze's PMPI tracer (issue 16), embedded: the C library `trace/c/graze_trace.c` built by
//! `build.rs` once per MPI flavour, and the Python helper `graze_trace.py` for mpi4py
//! programs. A traced run preloads [`install`]'s file into every rank with `LD_PRELOAD` and
//! sets `GRAZE_TRACE_DIR` (and `GRAZE_TRACE_MAX_BYTES`); each rank then writes
//! `rank-R.gzt` there (docs/TRACE_FORMAT.md), or a one-line `note-PID.txt` when its MPI is
//! the other flavour (the library then stays out of the way).

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

mod libs {
    include!(concat!(env!("OUT_DIR"), "/tracer_libs.rs"));
}

/// The MPI implementation a tracer library was compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Flavour {
    /// MPICH (and its ABI: `libmpi.so.12`).
    Mpich,
    /// Open MPI (`libmpi.so.40`).
    #[value(name = "openmpi")]
    OpenMpi,
}

impl Flavour {
    /// `mpich` or `openmpi`, as in the library's file name.
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Mpich => "mpich",
            Flavour::OpenMpi => "openmpi",
        }
    }
}

/// The tracer library for `flavour`; `None` when this agent was built without that flavour's
/// headers (see the build's warnings).
pub fn library(flavour: Flavour) -> Option<&'static [u8]> {
    match flavour {
        Flavour::Mpich => libs::MPICH,
        Flavour::OpenMpi => libs::OPENMPI,
    }
}

/// The Python helper module `graze_trace.py` (`with graze_trace.region("compute"): ...`).
pub const PYTHON_HELPER: &str = include_str!("../../python/graze_trace/graze_trace.py");

/// Writes `flavour`'s library into `dir` (created if missing) as
/// `libgraze-trace-FLAVOUR-HASH.so`, mode 0755, unless a file of that name and size is there
/// already, and returns its path; `None` when that flavour was not built. The name carries a
/// hash of the contents, so a new agent never overwrites a library a running job has mapped.
pub fn install(dir: &Path, flavour: Flavour) -> std::io::Result<Option<PathBuf>> {
    let Some(bytes) = library(flavour) else {
        return Ok(None);
    };
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(
        "libgraze-trace-{}-{:016x}.so",
        flavour.name(),
        fnv1a(bytes)
    ));
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64) {
        return Ok(Some(path));
    }
    write_library(&path, bytes)?;
    Ok(Some(path))
}

/// Writes `bytes` to `path` (mode 0755) through a temporary file in the same directory.
fn write_library(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// 64-bit FNV-1a: a stable content hash for the file name (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `graze-agent tracer-lib` arguments (hidden): write a flavour's library out.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct TracerLibArgs {
    /// Which MPI the library is for.
    #[arg(long, value_enum)]
    pub flavour: Flavour,
    /// Where to write it (mode 0755).
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
}

/// `graze-agent tracer-lib`: an error naming the flavour when it was not built.
pub fn run_tracer_lib(a: &TracerLibArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let bytes = library(a.flavour).with_context(|| {
        format!(
            "this graze-agent was built without the {} tracer (its mpi.h was missing at build \
             time; see scripts/setup)",
            a.flavour.name()
        )
    })?;
    write_library(&a.out, bytes).with_context(|| format!("writing {}", a.out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_writes_once_under_a_content_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = install(dir.path(), Flavour::Mpich)
            .expect("install")
            .expect("the MPICH tracer is built (libmpich-dev: scripts/setup)");
        let meta = std::fs::metadata(&p).expect("installed");
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        assert!(
            name.starts_with("libgraze-trace-mpich-") && name.ends_with(".so"),
            "{name}"
        );
        assert_eq!(
            std::fs::read(&p).expect("read"),
            library(Flavour::Mpich).expect("built")
        );
        assert_eq!(install(dir.path(), Flavour::Mpich).expect("again"), Some(p));
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
    }

    #[test]
    fn fnv1a_is_the_reference() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
