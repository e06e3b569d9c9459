//! The PMPI tracer for real: the libraries graze-agent embeds (`graze_agent::tracer`) preloaded
//! into real MPICH (and Open MPI) runs of `tests/tracer/mpi_calls.c`, read back with
//! `graze_trace::format::parse`. Also: processes that are not MPI programs, the size limit,
//! the wrong-flavour note and the Python helper (plain and under mpi4py).
//!
//! MPICH (`mpicc.mpich`, `mpiexec.mpich`) is a requirement of graze, so its absence fails these
//! tests. Open MPI is optional (`scripts/setup --openmpi`): its tests say so on stderr and pass
//! when `mpicc.openmpi` is not installed, and fail when it is but its tracer was not built.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use graze_agent::tracer::{self, Flavour};
use graze_trace::format::{self, Call, Record};
use graze_trace::Op;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

const MPI_CALLS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tracer/mpi_calls.c");
const HEADER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../trace/c");

const INIT: Op = Op(1);
const FINALIZE: Op = Op(2);
const SEND: Op = Op(3);
const RECV: Op = Op(4);
const ISEND: Op = Op(5);
const IRECV: Op = Op(6);
const WAIT: Op = Op(7);
const BCAST: Op = Op(8);
const ALLREDUCE: Op = Op(10);
const BARRIER: Op = Op(11);

/// One MPI run at a time: these are 2 cores, and ranks spin while they wait.
fn mpi_lock() -> std::sync::MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

/// A scratch directory for the whole test binary: installed libraries and compiled programs.
fn scratch() -> &'static Path {
    static D: OnceLock<tempfile::TempDir> = OnceLock::new();
    D.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

struct Mpi {
    flavour: Flavour,
    cc: &'static str,
    run: &'static str,
}

const MPICH: Mpi = Mpi {
    flavour: Flavour::Mpich,
    cc: "mpicc.mpich",
    run: "mpiexec.mpich",
};
const OPENMPI: Mpi = Mpi {
    flavour: Flavour::OpenMpi,
    cc: "mpicc.openmpi",
    run: "mpirun.openmpi",
};

fn installed(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Open MPI's tests run only where Open MPI is installed; then its tracer must be built.
fn openmpi_here() -> bool {
    if !installed(OPENMPI.cc) || !installed(OPENMPI.run) {
        eprintln!("Open MPI (mpicc.openmpi, mpirun.openmpi) is not installed: not tested here");
        return false;
    }
    true
}

/// The installed tracer library of `flavour` (it must have been built).
fn lib(flavour: Flavour) -> PathBuf {
    tracer::install(&scratch().join("lib"), flavour)
        .unwrap()
        .unwrap_or_else(|| {
            panic!(
                "the {} tracer was not built (see the build's warnings)",
                flavour.name()
            )
        })
}

/// `mpi_calls.c` compiled with `m`'s compiler (once).
fn program(m: &Mpi) -> PathBuf {
    static BUILT: Mutex<Vec<Flavour>> = Mutex::new(Vec::new());
    let out = scratch().join(format!("mpi_calls-{}", m.flavour.name()));
    let mut built = BUILT.lock().unwrap();
    if !built.contains(&m.flavour) {
        let o = Command::new(m.cc)
            .args(["-O2", "-o"])
            .arg(&out)
            .arg(format!("-I{HEADER_DIR}"))
            .arg(MPI_CALLS)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", m.cc));
        assert!(
            o.status.success(),
            "{} failed: {}",
            m.cc,
            String::from_utf8_lossy(&o.stderr)
        );
        built.push(m.flavour);
    }
    out
}

/// `m`'s launcher with `n` ranks of `cmd`, under `timeout`, with `env`.
fn mpirun(m: &Mpi, n: u32, cmd: &[&str], env: &[(&str, &str)]) -> Output {
    let _one = mpi_lock();
    let mut c = Command::new("timeout");
    c.args(["120", m.run, "-n", &n.to_string()]);
    if m.flavour == Flavour::OpenMpi {
        c.arg("--oversubscribe");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            c.arg("--allow-run-as-root");
        }
    }
    c.args(cmd).envs(env.iter().copied());
    c.output()
        .unwrap_or_else(|e| panic!("running {}: {e}", m.run))
}

fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Every `rank-R.gzt` in `dir`, parsed, by rank.
fn rank_files(dir: &Path) -> BTreeMap<i32, format::RankFile> {
    let mut m = BTreeMap::new();
    for name in files(dir) {
        let Some(r) = name
            .strip_prefix("rank-")
            .and_then(|s| s.strip_suffix(".gzt"))
        else {
            continue;
        };
        let bytes = std::fs::read(dir.join(&name)).unwrap();
        let f = format::parse(&name, &bytes).unwrap_or_else(|e| panic!("{e}"));
        assert!(!f.truncated, "{name} is cut short");
        assert_eq!(f.header.rank.to_string(), r, "{name}'s header rank");
        m.insert(f.header.rank, f);
    }
    m
}

fn calls(f: &format::RankFile) -> Vec<Call> {
    f.records
        .iter()
        .filter_map(|r| match r {
            Record::Call(c) => Some(*c),
            _ => None,
        })
        .collect()
}

fn of(calls: &[Call], op: Op) -> Vec<Call> {
    calls.iter().filter(|c| c.op == op).copied().collect()
}

/// The run of `mpi_calls` on `n` ranks of `m`, traced, checked call by call.
fn check_mpi_calls(m: &Mpi, n: i32) {
    let dir = tempfile::tempdir().unwrap();
    let lib = lib(m.flavour);
    let prog = program(m);
    let out = mpirun(
        m,
        n as u32,
        &[prog.to_str().unwrap()],
        &[
            ("LD_PRELOAD", lib.to_str().unwrap()),
            ("GRAZE_TRACE_DIR", dir.path().to_str().unwrap()),
        ],
    );
    let stdout = ok(&out, "the traced run");
    assert!(
        stdout.contains(&format!("done on {n} ranks (tracer loaded)")),
        "{stdout}"
    );
    let ranks = rank_files(dir.path());
    assert_eq!(
        ranks.keys().copied().collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>()
    );
    let mut allreduces = Vec::new();
    for (&r, f) in &ranks {
        let (next, prev) = ((r + 1) % n, (r + n - 1) % n);
        assert_eq!((f.header.world_size, f.header.dropped), (n, 0), "rank {r}");
        let c = calls(f);
        assert_eq!(
            c.first().map(|c| (c.op, c.comm_size)),
            Some((INIT, n)),
            "rank {r}"
        );
        assert_eq!(c.last().map(|c| c.op), Some(FINALIZE), "rank {r}");
        for w in c.windows(2) {
            assert!(
                w[0].end_ns <= w[1].begin_ns,
                "rank {r}: calls overlap: {w:?}"
            );
        }
        // (peer, tag, communicator size, bytes) of each call of an op.
        let args = |op| {
            of(&c, op)
                .iter()
                .map(|c| (c.peer, c.tag, c.comm_size, c.bytes))
                .collect::<Vec<_>>()
        };
        assert_eq!(args(SEND), [(next, 7, n, 32)], "rank {r}");
        // MPI_ANY_SOURCE resolved from the status.
        assert_eq!(args(RECV), [(prev, 7, n, 32)], "rank {r}");
        assert_eq!(args(IRECV), [(prev, 9, n, 12)], "rank {r}");
        assert_eq!(args(ISEND), [(next, 9, n, 12)], "rank {r}");
        assert_eq!(of(&c, WAIT).len(), 2, "rank {r}");
        let ar = of(&c, ALLREDUCE);
        assert_eq!(ar.len(), 5, "rank {r}");
        assert!(
            ar.iter()
                .all(|a| (a.bytes, a.comm_size, a.peer) == (8, n, -1)),
            "{ar:?}"
        );
        assert_eq!(of(&c, BARRIER).len(), 1, "rank {r}");
        assert_eq!(args(BCAST), [(0, -1, n, 40)], "rank {r}");
        // The user region around the rounds, after its name's definition.
        let regions: Vec<_> = f
            .records
            .iter()
            .filter_map(|x| match x {
                Record::Region {
                    name,
                    begin_ns,
                    end_ns,
                    ..
                } => Some((name.clone(), *begin_ns, *end_ns)),
                _ => None,
            })
            .collect();
        assert_eq!(regions.len(), 1, "rank {r}: {regions:?}");
        let (name, b, e) = &regions[0];
        assert_eq!(name, "phase");
        assert!(
            *b <= ar[0].begin_ns && ar[4].end_ns <= *e,
            "rank {r}: region {b}..{e} around {ar:?}"
        );
        allreduces.push(ar);
    }
    // A collective cannot end on one rank before it began on another (one node: one clock).
    for round in 0..5 {
        let last_begin = allreduces.iter().map(|a| a[round].begin_ns).max().unwrap();
        let first_end = allreduces.iter().map(|a| a[round].end_ns).min().unwrap();
        assert!(
            last_begin <= first_end,
            "round {round}: Allreduce spans do not overlap"
        );
    }
}

#[test]
fn mpich_run_records_every_call_with_peers_bytes_and_overlapping_allreduces() {
    check_mpi_calls(&MPICH, 4);
}

#[test]
fn openmpi_run_records_every_call_with_peers_bytes_and_overlapping_allreduces() {
    if openmpi_here() {
        check_mpi_calls(&OPENMPI, 2);
    }
}

#[test]
fn libraries_reference_no_mpi_symbol_and_load_anywhere() {
    let mut flavours = vec![Flavour::Mpich];
    if openmpi_here() {
        flavours.push(Flavour::OpenMpi);
    }
    for f in flavours {
        let lib = lib(f);
        let nm = Command::new("nm")
            .args(["-D", "--undefined-only"])
            .arg(&lib)
            .output()
            .unwrap();
        let undefined = ok(&nm, "nm");
        assert!(
            !undefined.contains("MPI") && !undefined.contains("ompi"),
            "{f:?}: {undefined}"
        );
        let dir = tempfile::tempdir().unwrap();
        let env = [
            ("LD_PRELOAD", lib.to_str().unwrap()),
            ("LD_BIND_NOW", "1"),
            ("GRAZE_TRACE_DIR", dir.path().to_str().unwrap()),
        ];
        let t = Command::new("/bin/true").envs(env).output().unwrap();
        ok(&t, "/bin/true preloaded");
        let sh = Command::new("sh")
            .args(["-c", "echo hello"])
            .envs(env)
            .output()
            .unwrap();
        assert_eq!(ok(&sh, "sh preloaded"), "hello\n");
        let py = Command::new("python3")
            .args(["-c", "print(6*7)"])
            .envs(env)
            .output()
            .unwrap();
        assert_eq!(ok(&py, "python3 preloaded"), "42\n");
        // Under MPICH's launcher: mpiexec and hydra_pmi_proxy load it too.
        let m = mpirun(&MPICH, 2, &["/bin/echo", "hi"], &env);
        assert_eq!(ok(&m, "mpiexec of /bin/echo preloaded"), "hi\nhi\n");
        assert!(
            files(dir.path()).is_empty(),
            "{f:?}: {:?}",
            files(dir.path())
        );
    }
}

#[test]
fn without_graze_trace_dir_nothing_is_written() {
    let cwd = tempfile::tempdir().unwrap();
    let lib = lib(Flavour::Mpich);
    let prog = program(&MPICH);
    let _one = mpi_lock();
    let out = Command::new("timeout")
        .args(["120", MPICH.run, "-n", "2"])
        .arg(&prog)
        .current_dir(cwd.path())
        .env("LD_PRELOAD", &lib)
        .env_remove("GRAZE_TRACE_DIR")
        .output()
        .unwrap();
    assert!(ok(&out, "the untraced run").contains("done on 2 ranks"));
    assert!(files(cwd.path()).is_empty(), "{:?}", files(cwd.path()));
}

#[test]
fn past_the_size_limit_events_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let lib = lib(Flavour::Mpich);
    let prog = program(&MPICH);
    let limit = format::HEADER_LEN + 10 * format::RECORD_LEN;
    let out = mpirun(
        &MPICH,
        2,
        &[prog.to_str().unwrap(), "1000"],
        &[
            ("LD_PRELOAD", lib.to_str().unwrap()),
            ("GRAZE_TRACE_DIR", dir.path().to_str().unwrap()),
            ("GRAZE_TRACE_MAX_BYTES", &limit.to_string()),
        ],
    );
    ok(&out, "the run past the limit");
    let ranks = rank_files(dir.path());
    assert_eq!(ranks.len(), 2);
    for (r, f) in &ranks {
        let len = std::fs::metadata(dir.path().join(format!("rank-{r}.gzt")))
            .unwrap()
            .len();
        assert_eq!(len as usize, limit, "rank {r}");
        // Init + 1000 Allreduces + Finalize, of which 10 fit.
        assert_eq!((f.records.len(), f.header.dropped), (10, 992), "rank {r}");
        assert_eq!(calls(f)[0].op, INIT);
    }
}

#[test]
fn a_bad_size_limit_is_named_and_the_default_used() {
    let dir = tempfile::tempdir().unwrap();
    let lib = lib(Flavour::Mpich);
    let prog = program(&MPICH);
    let out = mpirun(
        &MPICH,
        2,
        &[prog.to_str().unwrap(), "3"],
        &[
            ("LD_PRELOAD", lib.to_str().unwrap()),
            ("GRAZE_TRACE_DIR", dir.path().to_str().unwrap()),
            ("GRAZE_TRACE_MAX_BYTES", "lots"),
        ],
    );
    ok(&out, "the run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("ignoring GRAZE_TRACE_MAX_BYTES='lots'"));
    let ranks = rank_files(dir.path());
    assert!(ranks
        .values()
        .all(|f| f.records.len() == 5 && f.header.dropped == 0));
}

/// A rank of one flavour with the other flavour's library: it runs (handles pass through
/// untouched), is not traced, and leaves a note per process.
fn check_wrong_flavour(m: &Mpi, lib_flavour: Flavour, theirs: &str, ours: &str) {
    let dir = tempfile::tempdir().unwrap();
    let lib = lib(lib_flavour);
    let prog = program(m);
    let out = mpirun(
        m,
        2,
        &[prog.to_str().unwrap()],
        &[
            ("LD_PRELOAD", lib.to_str().unwrap()),
            ("GRAZE_TRACE_DIR", dir.path().to_str().unwrap()),
        ],
    );
    assert!(ok(&out, "the wrong-flavour run").contains("done on 2 ranks"));
    let names = files(dir.path());
    assert_eq!(names.len(), 2, "{names:?}");
    for n in names {
        assert!(n.starts_with("note-") && n.ends_with(".txt"), "{n}");
        let text = std::fs::read_to_string(dir.path().join(&n)).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains(theirs) && text.contains(&format!("built for {ours}")),
            "{text}"
        );
    }
}

#[test]
fn the_other_flavour_leaves_a_note_and_runs_untraced() {
    if openmpi_here() {
        check_wrong_flavour(&MPICH, Flavour::OpenMpi, "MPICH Version", "Open MPI");
        check_wrong_flavour(&OPENMPI, Flavour::Mpich, "Open MPI v", "MPICH");
    }
}

fn python_helper_dir() -> PathBuf {
    let d = scratch().join("py");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("graze_trace.py"), tracer::PYTHON_HELPER).unwrap();
    d
}

const PY_REGION: &str = "import graze_trace\n\
with graze_trace.region('compute'):\n    sum(range(1000))\n\
print(graze_trace.enabled())\n";

#[test]
fn python_helper_is_a_no_op_without_the_tracer_and_marks_regions_with_it() {
    let py = python_helper_dir();
    let plain = Command::new("python3")
        .args(["-c", PY_REGION])
        .env("PYTHONPATH", &py)
        .output()
        .unwrap();
    assert_eq!(ok(&plain, "python without the tracer"), "False\n");
    let bad = Command::new("python3")
        .args(["-c", "import graze_trace\ngraze_trace.region('')"])
        .env("PYTHONPATH", &py)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("needs a non-empty name"));

    let dir = tempfile::tempdir().unwrap();
    let traced = Command::new("python3")
        .args(["-c", PY_REGION])
        .env("PYTHONPATH", &py)
        .env("LD_PRELOAD", lib(Flavour::Mpich))
        .env("GRAZE_TRACE_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(ok(&traced, "python with the tracer"), "True\n");
    // No MPI_Init: the file is named by pid and its header has rank -1.
    let names = files(dir.path());
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("pid-"), "{names:?}");
    let f = format::parse(
        &names[0],
        &std::fs::read(dir.path().join(&names[0])).unwrap(),
    )
    .unwrap();
    assert_eq!(f.header.rank, -1);
    assert!(
        matches!(&f.records[..], [Record::Name { .. }, Record::Region { name, .. }] if name == "compute"),
        "{:?}",
        f.records
    );
}

#[test]
fn mpi4py_program_is_traced_with_its_python_region() {
    if !openmpi_here()
        || !Command::new("python3")
            .args(["-c", "import mpi4py"])
            .output()
            .is_ok_and(|o| o.status.success())
    {
        eprintln!(
            "mpi4py (python3-mpi4py, built against Open MPI) is not installed: not tested here"
        );
        return;
    }
    let py = python_helper_dir();
    let script = scratch().join("mpi4py_region.py");
    std::fs::write(
        &script,
        "from array import array\nfrom mpi4py import MPI\nimport graze_trace\n\
comm = MPI.COMM_WORLD\n\
with graze_trace.region('compute'):\n    x = array('d', [float(sum(range(comm.rank + 10)))])\n\
y = array('d', [0.0])\ncomm.Allreduce(x, y, op=MPI.SUM)\nprint(comm.rank, y[0])\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lib = lib(Flavour::OpenMpi);
    let out = mpirun(
        &OPENMPI,
        2,
        &["python3", script.to_str().unwrap()],
        &[
            ("LD_PRELOAD", lib.to_str().unwrap()),
            ("GRAZE_TRACE_DIR", dir.path().to_str().unwrap()),
            ("PYTHONPATH", py.to_str().unwrap()),
        ],
    );
    ok(&out, "mpi4py traced");
    let ranks = rank_files(dir.path());
    assert_eq!(ranks.len(), 2, "{:?}", files(dir.path()));
    for (r, f) in &ranks {
        let c = calls(f);
        assert_eq!(c.first().map(|c| c.op), Some(INIT), "rank {r}");
        assert_eq!(c.last().map(|c| c.op), Some(FINALIZE), "rank {r}");
        assert_eq!(of(&c, ALLREDUCE).len(), 1, "rank {r}: {c:?}");
        assert!(
            f.records
                .iter()
                .any(|x| matches!(x, Record::Region { name, .. } if name == "compute")),
            "rank {r}: {:?}",
            f.records
        );
    }
}

#[test]
fn libmpi_loaded_rtld_local_is_found_through_the_loaded_objects() {
    let d = scratch().join("local");
    std::fs::create_dir_all(&d).unwrap();
    let here = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tracer");
    let so = d.join("liblocal.so");
    let main = d.join("local_main");
    let cc = Command::new(MPICH.cc)
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(format!("{here}/local_lib.c"))
        .output()
        .unwrap();
    ok(&cc, "mpicc of local_lib.c");
    let cc = Command::new("cc")
        .arg("-o")
        .arg(&main)
        .arg(format!("{here}/local_main.c"))
        .arg("-ldl")
        .output()
        .unwrap();
    ok(&cc, "cc of local_main.c");
    let dir = tempfile::tempdir().unwrap();
    let lib = lib(Flavour::Mpich);
    let out = mpirun(
        &MPICH,
        2,
        &[main.to_str().unwrap(), so.to_str().unwrap()],
        &[
            ("LD_PRELOAD", lib.to_str().unwrap()),
            ("GRAZE_TRACE_DIR", dir.path().to_str().unwrap()),
        ],
    );
    // Both ranks print; hydra may interleave their bytes, so count rather than compare.
    let text = ok(&out, "the RTLD_LOCAL run");
    assert_eq!(text.matches("sum 2").count(), 2, "{text}");
    let ranks = rank_files(dir.path());
    assert_eq!(ranks.len(), 2);
    for (r, f) in &ranks {
        let ops: Vec<u8> = calls(f).iter().map(|c| c.op.0).collect();
        assert_eq!(ops, [1, 10, 10, 10, 2], "rank {r}");
    }
}

#[test]
fn thread_multiple_ranks_record_every_thread_s_calls_and_regions() {
    let d = scratch().join("threads");
    std::fs::create_dir_all(&d).unwrap();
    let prog = d.join("threads");
    let cc = Command::new(MPICH.cc)
        .args(["-O2", "-pthread", "-o"])
        .arg(&prog)
        .arg(format!("-I{HEADER_DIR}"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/tracer/threads.c"
        ))
        .output()
        .unwrap();
    ok(&cc, "mpicc of threads.c");
    let dir = tempfile::tempdir().unwrap();
    let lib = lib(Flavour::Mpich);
    let out = mpirun(
        &MPICH,
        2,
        &[prog.to_str().unwrap()],
        &[
            ("LD_PRELOAD", lib.to_str().unwrap()),
            ("GRAZE_TRACE_DIR", dir.path().to_str().unwrap()),
        ],
    );
    // Both ranks print; hydra may interleave their bytes ("threads donethreads done\n\n"
    // happened), so count rather than compare.
    let text = ok(&out, "the threaded run");
    assert_eq!(text.matches("threads done").count(), 2, "{text}");
    let ranks = rank_files(dir.path());
    assert_eq!(ranks.len(), 2);
    for (r, f) in &ranks {
        let c = calls(f);
        assert_eq!(
            (c[0].op, c.last().unwrap().op),
            (INIT, FINALIZE),
            "rank {r}"
        );
        let ar = of(&c, ALLREDUCE);
        assert_eq!(ar.len(), 4 * 500, "rank {r}");
        assert!(
            ar.iter().all(|a| (a.bytes, a.comm_size) == (4, 2)),
            "rank {r}"
        );
        let workers = f
            .records
            .iter()
            .filter(|x| matches!(x, Record::Region { name, .. } if name == "worker"))
            .count();
        // One name definition however many threads raced to define it.
        let names = f
            .records
            .iter()
            .filter(|x| matches!(x, Record::Name { .. }))
            .count();
        assert_eq!((workers, names, f.header.dropped), (4, 1, 0), "rank {r}");
    }
}

#[test]
fn tracer_lib_subcommand_writes_the_embedded_library() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("lib.so");
    let o = Command::new(env!("CARGO_BIN_EXE_graze-agent"))
        .args(["tracer-lib", "--flavour", "mpich", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    ok(&o, "graze-agent tracer-lib");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        tracer::library(Flavour::Mpich).unwrap()
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_graze-agent"))
        .args(["tracer-lib", "--flavour", "mpich", "--out"])
        .arg(d.path().join("missing/lib.so"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("writing") && err.contains("missing/lib.so"),
        "{err}"
    );
}
