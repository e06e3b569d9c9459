//! Builds graze's PMPI tracer (`trace/c/graze_trace.c`) once per MPI flavour, against that
//! flavour's `mpi.h`: `libgraze-trace-mpich.so` and `libgraze-trace-openmpi.so` in `OUT_DIR`,
//! embedded by `src/tracer.rs`. A flavour whose headers (or a C compiler) are missing is
//! skipped with a `cargo:warning`, so the agent builds on a machine without Open MPI.
//!
//! The library must not link libmpi (it is preloaded into mpiexec and shells too), so it is
//! linked with `-z defs`: any MPI symbol it referenced would fail the build here.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Flavour {
    /// File-name part and the `tracer.rs` constant's prefix.
    name: &'static str,
    /// The wrapper compiler and its flag that prints the compile flags.
    wrapper: (&'static str, &'static str),
    /// Debian's include directories when the wrapper is missing.
    fallback: &'static [&'static str],
}

const FLAVOURS: [Flavour; 2] = [
    Flavour {
        name: "mpich",
        wrapper: ("mpicc.mpich", "-show"),
        fallback: &["/usr/include/x86_64-linux-gnu/mpich", "/usr/include/mpich"],
    },
    Flavour {
        name: "openmpi",
        wrapper: ("mpicc.openmpi", "-showme:compile"),
        fallback: &[
            "/usr/lib/x86_64-linux-gnu/openmpi/include",
            "/usr/lib/x86_64-linux-gnu/openmpi/include/openmpi",
        ],
    },
];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let src_dir = manifest.join("../trace/c");
    let src = src_dir.join("graze_trace.c");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    println!("cargo:rerun-if-changed={}", src.display());
    println!(
        "cargo:rerun-if-changed={}",
        src_dir.join("graze_trace.h").display()
    );
    println!("cargo:rerun-if-env-changed=CC");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let mut consts = String::new();
    for f in &FLAVOURS {
        let built = include_dirs(f).and_then(|inc| build(&cc, &src, &src_dir, &inc, &out, f.name));
        let konst = f.name.to_uppercase();
        match built {
            Ok(lib) => consts.push_str(&format!(
                "pub(crate) const {konst}: Option<&[u8]> = Some(include_bytes!({:?}));\n",
                lib.display().to_string()
            )),
            Err(why) => {
                println!(
                    "cargo:warning=graze's {} tracer is not built: {why}",
                    f.name
                );
                consts.push_str(&format!(
                    "pub(crate) const {konst}: Option<&[u8]> = None;\n"
                ));
            }
        }
    }
    std::fs::write(out.join("tracer_libs.rs"), consts).expect("writing OUT_DIR/tracer_libs.rs");
}

/// The flavour's include directories: from its wrapper compiler, else Debian's paths; an
/// error when no directory with an `mpi.h` is found.
fn include_dirs(f: &Flavour) -> Result<Vec<PathBuf>, String> {
    let from_wrapper = Command::new(f.wrapper.0)
        .arg(f.wrapper.1)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|w| w.strip_prefix("-I"))
                .map(PathBuf::from)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let dirs = if from_wrapper.is_empty() {
        f.fallback.iter().map(PathBuf::from).collect()
    } else {
        from_wrapper
    };
    if dirs.iter().any(|d| d.join("mpi.h").is_file()) {
        Ok(dirs)
    } else {
        Err(format!(
            "no mpi.h found (looked in {}; install {})",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if f.name == "mpich" {
                "libmpich-dev"
            } else {
                "libopenmpi-dev, or run scripts/setup --openmpi"
            }
        ))
    }
}

fn build(
    cc: &str,
    src: &Path,
    src_dir: &Path,
    inc: &[PathBuf],
    out: &Path,
    name: &str,
) -> Result<PathBuf, String> {
    let lib = out.join(format!("libgraze-trace-{name}.so"));
    let mut cmd = Command::new(cc);
    cmd.args([
        "-O2",
        "-fPIC",
        "-shared",
        "-fvisibility=hidden",
        "-Wall",
        "-Wextra",
    ])
    .args(["-Wl,-z,defs", "-o"])
    .arg(&lib)
    .arg(src)
    .arg(format!("-I{}", src_dir.display()));
    for d in inc {
        cmd.arg(format!("-I{}", d.display()));
    }
    cmd.args(["-ldl", "-lpthread"]);
    let o = cmd
        .output()
        .map_err(|e| format!("cannot run the C compiler '{cc}': {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
                .trim()
                .replace('\n', " | ")
        ));
    }
    Ok(lib)
}
