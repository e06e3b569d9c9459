//! OTF2 output (`graze trace --otf2 DIR`), through Debian's libotf2 loaded at run time
//! (`libopen-trace-format2.so.10`, package libopen-trace-format2-10, pulled in by otf2-tools
//! and libotf2-trace-dev), so graze builds and runs without it.
//!
//! The archive is `DIR/traces.otf2` (with `traces.def` and `traces/`). One system-tree node per
//! graze node under a `cluster` root, one location group (an MPI process) and one location per
//! rank (location id = rank), one region per MPI op and per user region, and `MPI_COMM_WORLD`
//! (a group of all ranks and a comm) for the collective events.
//!
//! Times: the events carry each node's own `CLOCK_MONOTONIC` (the merged times mapped back
//! through the node's clock model), and each location's definitions carry the node's kept
//! clock samples as `ClockOffset` records (time = node time, offset = scheduler minus node,
//! standard deviation = the sample's RTT/2, its error bound). OTF2 readers (otf2-print, Vampir)
//! apply them, interpolating linearly as `graze trace` does, so every rank lands on the
//! scheduler's clock. A node without samples has no offsets: its times are the merged ones.
//!
//! Each span is an Enter/Leave pair (properly nested: a span that overlaps the end of the one
//! enclosing it is cut there). Blocking collectives on a communicator of the world's size also
//! get MpiCollectiveBegin/End, blocking sends MpiSend and blocking receives MpiRecv (peer taken
//! as a rank of `MPI_COMM_WORLD` when the communicator has the world's size).

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr, CString};
use std::path::{Path, PathBuf};

use libloading::Library;

use crate::clock::Model;
use crate::{op_class, op_name, Op, OpClass, Trace, What};

/// The library names tried, in order.
pub const LIBRARY_NAMES: [&str; 3] = ["libopen-trace-format2.so.10", "libotf2.so.10", "libotf2.so"];

/// Why the OTF2 archive could not be written. Retryable only after fixing the cause named.
#[derive(Debug, thiserror::Error)]
pub enum Otf2Error {
    /// libotf2 is not installed.
    #[error("cannot load libotf2 ({tried}): {reason}; install Debian's otf2-tools or libotf2-trace-dev (scripts/setup does)")]
    NotInstalled { tried: String, reason: String },
    /// The library loaded but lacks a function graze uses (not OTF2 3.x).
    #[error("libotf2 ({library}) lacks {symbol}: graze needs OTF2 3.x ({reason})")]
    MissingSymbol {
        library: String,
        symbol: String,
        reason: String,
    },
    /// The output directory already holds an archive.
    #[error("{} already exists; remove it or choose another directory", .0.display())]
    Exists(PathBuf),
    /// The directory cannot be made or named.
    #[error("cannot use {} for the OTF2 archive: {reason}", dir.display())]
    Dir { dir: PathBuf, reason: String },
    /// A libotf2 call failed.
    #[error("libotf2: {call} failed: {name} ({description})")]
    Call {
        call: &'static str,
        name: String,
        description: String,
    },
}

type Archive = c_void;
type Writer = c_void;
type ErrorCode = i32;

#[repr(C)]
struct FlushCallbacks {
    pre_flush: Option<unsafe extern "C" fn(*mut c_void, u8, u64, *mut c_void, bool) -> u8>,
    post_flush: Option<unsafe extern "C" fn(*mut c_void, u8, u64) -> u64>,
}

/// Always flush (libotf2 asks before it writes a full buffer out).
unsafe extern "C" fn pre_flush(_: *mut c_void, _: u8, _: u64, _: *mut c_void, _: bool) -> u8 {
    FLUSH
}

const FILEMODE_WRITE: u8 = 0;
const SUBSTRATE_POSIX: u8 = 1;
const COMPRESSION_NONE: u8 = 1;
const FLUSH: u8 = 1;
const CHUNK_EVENTS: u64 = 1024 * 1024;
const CHUNK_DEFS: u64 = 4 * 1024 * 1024;
const UNDEFINED_U32: u32 = u32::MAX;
const UNDEFINED_U64: u64 = u64::MAX;
const LOCATION_GROUP_PROCESS: u8 = 1;
const LOCATION_CPU_THREAD: u8 = 1;
const ROLE_FUNCTION: u8 = 1;
const ROLE_BARRIER: u8 = 15;
const ROLE_COLL_ONE2ALL: u8 = 23;
const ROLE_COLL_ALL2ONE: u8 = 24;
const ROLE_COLL_ALL2ALL: u8 = 25;
const ROLE_POINT2POINT: u8 = 28;
const PARADIGM_USER: u8 = 1;
const PARADIGM_MPI: u8 = 4;
const GROUP_COMM_LOCATIONS: u8 = 4;
const GROUP_COMM_GROUP: u8 = 5;

macro_rules! api {
    ($($field:ident: $sym:literal => fn($($arg:ty),*) -> $ret:ty;)*) => {
        /// The libotf2 functions graze uses, declared by hand from /usr/include/otf2/*.h (3.0).
        struct Api {
            $($field: unsafe extern "C" fn($($arg),*) -> $ret,)*
            _lib: Library,
        }

        impl Api {
            fn load() -> Result<Api, Otf2Error> {
                let mut reasons = Vec::new();
                let mut found = None;
                for name in LIBRARY_NAMES {
                    // SAFETY: loading libotf2 runs its initialisers, which only set up its own
                    // state.
                    match unsafe { Library::new(name) } {
                        Ok(lib) => {
                            found = Some((name, lib));
                            break;
                        }
                        Err(e) => reasons.push(e.to_string()),
                    }
                }
                let Some((library, lib)) = found else {
                    return Err(Otf2Error::NotInstalled {
                        tried: LIBRARY_NAMES.join(", "),
                        reason: reasons.last().cloned().unwrap_or_default(),
                    });
                };
                Ok(Api {
                    $($field: {
                        // SAFETY: the signature is the header's (OTF2 3.0).
                        let f = unsafe {
                            lib.get::<unsafe extern "C" fn($($arg),*) -> $ret>(
                                concat!($sym, "\0").as_bytes(),
                            )
                        };
                        match f {
                            Ok(f) => *f,
                            Err(e) => {
                                return Err(Otf2Error::MissingSymbol {
                                    library: library.to_string(),
                                    symbol: $sym.to_string(),
                                    reason: e.to_string(),
                                })
                            }
                        }
                    },)*
                    _lib: lib,
                })
            }
        }
    };
}

api! {
    archive_open: "OTF2_Archive_Open" =>
        fn(*const c_char, *const c_char, u8, u64, u64, u8, u8) -> *mut Archive;
    archive_close: "OTF2_Archive_Close" => fn(*mut Archive) -> ErrorCode;
    set_flush_callbacks: "OTF2_Archive_SetFlushCallbacks" =>
        fn(*mut Archive, *const FlushCallbacks, *mut c_void) -> ErrorCode;
    set_serial_collective_callbacks: "OTF2_Archive_SetSerialCollectiveCallbacks" =>
        fn(*mut Archive) -> ErrorCode;
    set_creator: "OTF2_Archive_SetCreator" => fn(*mut Archive, *const c_char) -> ErrorCode;
    set_description: "OTF2_Archive_SetDescription" => fn(*mut Archive, *const c_char) -> ErrorCode;
    open_evt_files: "OTF2_Archive_OpenEvtFiles" => fn(*mut Archive) -> ErrorCode;
    close_evt_files: "OTF2_Archive_CloseEvtFiles" => fn(*mut Archive) -> ErrorCode;
    open_def_files: "OTF2_Archive_OpenDefFiles" => fn(*mut Archive) -> ErrorCode;
    close_def_files: "OTF2_Archive_CloseDefFiles" => fn(*mut Archive) -> ErrorCode;
    get_evt_writer: "OTF2_Archive_GetEvtWriter" => fn(*mut Archive, u64) -> *mut Writer;
    close_evt_writer: "OTF2_Archive_CloseEvtWriter" => fn(*mut Archive, *mut Writer) -> ErrorCode;
    get_def_writer: "OTF2_Archive_GetDefWriter" => fn(*mut Archive, u64) -> *mut Writer;
    close_def_writer: "OTF2_Archive_CloseDefWriter" => fn(*mut Archive, *mut Writer) -> ErrorCode;
    get_global_def_writer: "OTF2_Archive_GetGlobalDefWriter" => fn(*mut Archive) -> *mut Writer;
    close_global_def_writer: "OTF2_Archive_CloseGlobalDefWriter" =>
        fn(*mut Archive, *mut Writer) -> ErrorCode;
    enter: "OTF2_EvtWriter_Enter" => fn(*mut Writer, *mut c_void, u64, u32) -> ErrorCode;
    leave: "OTF2_EvtWriter_Leave" => fn(*mut Writer, *mut c_void, u64, u32) -> ErrorCode;
    mpi_send: "OTF2_EvtWriter_MpiSend" =>
        fn(*mut Writer, *mut c_void, u64, u32, u32, u32, u64) -> ErrorCode;
    mpi_recv: "OTF2_EvtWriter_MpiRecv" =>
        fn(*mut Writer, *mut c_void, u64, u32, u32, u32, u64) -> ErrorCode;
    coll_begin: "OTF2_EvtWriter_MpiCollectiveBegin" => fn(*mut Writer, *mut c_void, u64) -> ErrorCode;
    coll_end: "OTF2_EvtWriter_MpiCollectiveEnd" =>
        fn(*mut Writer, *mut c_void, u64, u8, u32, u32, u64, u64) -> ErrorCode;
    clock_offset: "OTF2_DefWriter_WriteClockOffset" => fn(*mut Writer, u64, i64, f64) -> ErrorCode;
    clock_properties: "OTF2_GlobalDefWriter_WriteClockProperties" =>
        fn(*mut Writer, u64, u64, u64, u64) -> ErrorCode;
    string: "OTF2_GlobalDefWriter_WriteString" => fn(*mut Writer, u32, *const c_char) -> ErrorCode;
    system_tree_node: "OTF2_GlobalDefWriter_WriteSystemTreeNode" =>
        fn(*mut Writer, u32, u32, u32, u32) -> ErrorCode;
    location_group: "OTF2_GlobalDefWriter_WriteLocationGroup" =>
        fn(*mut Writer, u32, u32, u8, u32, u32) -> ErrorCode;
    location: "OTF2_GlobalDefWriter_WriteLocation" =>
        fn(*mut Writer, u64, u32, u8, u64, u32) -> ErrorCode;
    region: "OTF2_GlobalDefWriter_WriteRegion" =>
        fn(*mut Writer, u32, u32, u32, u32, u8, u8, u32, u32, u32, u32) -> ErrorCode;
    group: "OTF2_GlobalDefWriter_WriteGroup" =>
        fn(*mut Writer, u32, u32, u8, u8, u32, u32, *const u64) -> ErrorCode;
    comm: "OTF2_GlobalDefWriter_WriteComm" => fn(*mut Writer, u32, u32, u32, u32, u32) -> ErrorCode;
    error_name: "OTF2_Error_GetName" => fn(ErrorCode) -> *const c_char;
    error_description: "OTF2_Error_GetDescription" => fn(ErrorCode) -> *const c_char;
}

impl Api {
    fn check(&self, call: &'static str, code: ErrorCode) -> Result<(), Otf2Error> {
        if code == 0 {
            return Ok(());
        }
        let text = |p: *const c_char| {
            if p.is_null() {
                format!("error {code}")
            } else {
                // SAFETY: libotf2 returns static NUL-terminated strings.
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        // SAFETY: plain lookups of static strings.
        let (name, description) =
            unsafe { ((self.error_name)(code), (self.error_description)(code)) };
        Err(Otf2Error::Call {
            call,
            name: text(name),
            description: text(description),
        })
    }

    fn not_null<T>(&self, call: &'static str, p: *mut T) -> Result<*mut T, Otf2Error> {
        if p.is_null() {
            Err(Otf2Error::Call {
                call,
                name: "NULL".into(),
                description: "the call returned no handle".into(),
            })
        } else {
            Ok(p)
        }
    }
}

/// Closes the archive on every way out.
struct Open<'a> {
    api: &'a Api,
    archive: *mut Archive,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        // SAFETY: the archive was opened by archive_open and is closed once, here.
        unsafe { (self.api.archive_close)(self.archive) };
    }
}

/// The global string table.
#[derive(Default)]
struct Strings {
    ids: HashMap<String, u32>,
    order: Vec<CString>,
}

impl Strings {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.order.len() as u32;
        // Interior NULs cannot reach C: replace them.
        let c = CString::new(s.replace('\0', "?")).unwrap_or_default();
        self.order.push(c);
        self.ids.insert(s.to_string(), id);
        id
    }
}

fn region_role(op: Op) -> u8 {
    match op {
        Op::BARRIER => ROLE_BARRIER,
        Op::BCAST | Op::SCATTER | Op::SCATTERV => ROLE_COLL_ONE2ALL,
        Op::REDUCE | Op::GATHER | Op::GATHERV => ROLE_COLL_ALL2ONE,
        _ if op_class(op) == OpClass::Collective => ROLE_COLL_ALL2ALL,
        _ if op_class(op) == OpClass::PointToPoint => ROLE_POINT2POINT,
        _ => ROLE_FUNCTION,
    }
}

/// OTF2's collective op of a blocking collective (None: not one).
fn collective_op(op: Op) -> Option<u8> {
    Some(match op {
        Op::BARRIER => 0,
        Op::BCAST => 1,
        Op::GATHER => 2,
        Op::GATHERV => 3,
        Op::SCATTER => 4,
        Op::SCATTERV => 5,
        Op::ALLGATHER => 6,
        Op::ALLGATHERV => 7,
        Op::ALLTOALL => 8,
        Op::ALLTOALLV => 9,
        Op::ALLREDUCE => 11,
        Op::REDUCE => 12,
        _ => return None,
    })
}

/// One event of a location, in node time.
enum Ev {
    Enter(u32),
    Leave(u32),
    Send { peer: u32, tag: u32, bytes: u64 },
    Recv { peer: u32, tag: u32, bytes: u64 },
    CollBegin,
    CollEnd { op: u8, bytes: u64 },
}

/// Write `trace` as an OTF2 archive `dir/traces.otf2` (`dir` is created if missing).
pub fn write(trace: &Trace, dir: &Path) -> Result<(), Otf2Error> {
    let api = Api::load()?;
    let anchor = dir.join("traces.otf2");
    if anchor.exists() || dir.join("traces").exists() {
        return Err(Otf2Error::Exists(anchor));
    }
    std::fs::create_dir_all(dir).map_err(|e| Otf2Error::Dir {
        dir: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let c_dir = dir
        .to_str()
        .and_then(|d| CString::new(d).ok())
        .ok_or_else(|| Otf2Error::Dir {
            dir: dir.to_path_buf(),
            reason: "the path is not UTF-8 or holds a NUL".into(),
        })?;

    // Regions, strings, per-location events: all computed before libotf2 is touched.
    let mut strings = Strings::default();
    let world: u32 = trace
        .ranks
        .iter()
        .map(|r| r.rank.max(0) as u32 + 1)
        .max()
        .unwrap_or(0);
    let mut regions: Vec<(u32, u8, u8)> = Vec::new(); // (name string, role, paradigm)
    let mut region_of: HashMap<What, u32> = HashMap::new();
    let models: HashMap<&str, Model> = trace
        .nodes
        .iter()
        .map(|n| (n.node.as_str(), Model::from_kept(&n.samples)))
        .collect();
    let empty = Model::default();
    let mut locations: Vec<(u64, Vec<(u64, Ev)>)> = Vec::new();
    for r in &trace.ranks {
        let model = models.get(r.node.as_str()).unwrap_or(&empty);
        let local = |t: u64| {
            let g = i128::from(trace.start_ns) + i128::from(t);
            u64::try_from(model.local_of(g).max(0)).unwrap_or(u64::MAX)
        };
        let mut events: Vec<(u64, Ev)> = Vec::with_capacity(r.spans.len() * 2);
        // Open spans: (end in merged time, region).
        let mut stack: Vec<(u64, u32)> = Vec::new();
        let mut last = 0u64;
        let mut push = |events: &mut Vec<(u64, Ev)>, t: u64, ev: Ev| {
            let t = local(t).max(last);
            last = t;
            events.push((t, ev));
        };
        for s in &r.spans {
            while let Some(&(end, region)) = stack.last() {
                if end <= s.begin_ns {
                    push(&mut events, end, Ev::Leave(region));
                    stack.pop();
                } else {
                    break;
                }
            }
            let end = match stack.last() {
                Some(&(outer, _)) => s.end_ns.min(outer),
                None => s.end_ns,
            };
            let region = *region_of.entry(s.what.clone()).or_insert_with(|| {
                let (name, role, paradigm) = match &s.what {
                    What::Mpi(op) => (op_name(*op).into_owned(), region_role(*op), PARADIGM_MPI),
                    What::Region(n) => (n.clone(), ROLE_FUNCTION, PARADIGM_USER),
                };
                regions.push((strings.id(&name), role, paradigm));
                regions.len() as u32 - 1
            });
            push(&mut events, s.begin_ns, Ev::Enter(region));
            let in_world = s.comm_size == Some(world);
            let tag = s.tag.map_or(0, |t| t as u32);
            let bytes = s.bytes.unwrap_or(0);
            let peer = s.peer.and_then(|p| u32::try_from(p).ok());
            if let What::Mpi(op) = s.what {
                match (op, peer) {
                    (Op::SEND | Op::SSEND, Some(peer)) if in_world => {
                        push(&mut events, s.begin_ns, Ev::Send { peer, tag, bytes })
                    }
                    (Op::RECV, Some(peer)) if in_world => {
                        push(&mut events, end, Ev::Recv { peer, tag, bytes })
                    }
                    _ => {}
                }
                if let Some(cop) = collective_op(op).filter(|_| in_world) {
                    push(&mut events, s.begin_ns, Ev::CollBegin);
                    push(&mut events, end, Ev::CollEnd { op: cop, bytes });
                }
            }
            stack.push((end, region));
        }
        while let Some((end, region)) = stack.pop() {
            push(&mut events, end, Ev::Leave(region));
        }
        locations.push((r.rank.max(0) as u64, events));
    }

    let open = Open {
        api: &api,
        // SAFETY: valid NUL-terminated strings; the modes are the header's constants.
        archive: api.not_null("OTF2_Archive_Open", unsafe {
            (api.archive_open)(
                c_dir.as_ptr(),
                c"traces".as_ptr(),
                FILEMODE_WRITE,
                CHUNK_EVENTS,
                CHUNK_DEFS,
                SUBSTRATE_POSIX,
                COMPRESSION_NONE,
            )
        })?,
    };
    let a = open.archive;
    let callbacks = FlushCallbacks {
        pre_flush: Some(pre_flush),
        post_flush: None,
    };
    // SAFETY (this block and below): every handle comes from libotf2 for this archive and is
    // closed before the archive; pointers passed in outlive the calls (libotf2 copies the
    // flush callbacks struct and the strings).
    unsafe {
        api.check(
            "OTF2_Archive_SetFlushCallbacks",
            (api.set_flush_callbacks)(a, &callbacks, std::ptr::null_mut()),
        )?;
        api.check(
            "OTF2_Archive_SetSerialCollectiveCallbacks",
            (api.set_serial_collective_callbacks)(a),
        )?;
        api.check(
            "OTF2_Archive_SetCreator",
            (api.set_creator)(a, c"graze".as_ptr()),
        )?;
        api.check(
            "OTF2_Archive_SetDescription",
            (api.set_description)(a, c"graze MPI trace (graze submit --trace)".as_ptr()),
        )?;

        api.check("OTF2_Archive_OpenEvtFiles", (api.open_evt_files)(a))?;
        let world_comm = 0u32;
        for (loc, events) in &locations {
            let w = api.not_null("OTF2_Archive_GetEvtWriter", (api.get_evt_writer)(a, *loc))?;
            let nul = std::ptr::null_mut();
            for (t, ev) in events {
                let t = *t;
                match *ev {
                    Ev::Enter(r) => api.check("OTF2_EvtWriter_Enter", (api.enter)(w, nul, t, r))?,
                    Ev::Leave(r) => api.check("OTF2_EvtWriter_Leave", (api.leave)(w, nul, t, r))?,
                    Ev::Send { peer, tag, bytes } => api.check(
                        "OTF2_EvtWriter_MpiSend",
                        (api.mpi_send)(w, nul, t, peer, world_comm, tag, bytes),
                    )?,
                    Ev::Recv { peer, tag, bytes } => api.check(
                        "OTF2_EvtWriter_MpiRecv",
                        (api.mpi_recv)(w, nul, t, peer, world_comm, tag, bytes),
                    )?,
                    Ev::CollBegin => api.check(
                        "OTF2_EvtWriter_MpiCollectiveBegin",
                        (api.coll_begin)(w, nul, t),
                    )?,
                    Ev::CollEnd { op, bytes } => api.check(
                        "OTF2_EvtWriter_MpiCollectiveEnd",
                        (api.coll_end)(w, nul, t, op, world_comm, UNDEFINED_U32, bytes, bytes),
                    )?,
                }
            }
            api.check("OTF2_Archive_CloseEvtWriter", (api.close_evt_writer)(a, w))?;
        }
        api.check("OTF2_Archive_CloseEvtFiles", (api.close_evt_files)(a))?;

        api.check("OTF2_Archive_OpenDefFiles", (api.open_def_files)(a))?;
        for r in &trace.ranks {
            let loc = r.rank.max(0) as u64;
            let w = api.not_null("OTF2_Archive_GetDefWriter", (api.get_def_writer)(a, loc))?;
            if let Some(n) = trace.node_clock(&r.node) {
                for s in Model::from_kept(&n.samples).kept() {
                    api.check(
                        "OTF2_DefWriter_WriteClockOffset",
                        (api.clock_offset)(w, s.local_ns, s.offset_ns, (s.rtt_ns / 2) as f64),
                    )?;
                }
            }
            api.check("OTF2_Archive_CloseDefWriter", (api.close_def_writer)(a, w))?;
        }
        api.check("OTF2_Archive_CloseDefFiles", (api.close_def_files)(a))?;

        let g = api.not_null(
            "OTF2_Archive_GetGlobalDefWriter",
            (api.get_global_def_writer)(a),
        )?;
        api.check(
            "OTF2_GlobalDefWriter_WriteClockProperties",
            (api.clock_properties)(
                g,
                1_000_000_000,
                trace.start_ns,
                trace.end_ns().saturating_add(1),
                UNDEFINED_U64,
            ),
        )?;
        // Names first: the string table must be complete before it is written.
        let cluster = strings.id("cluster");
        let node_class = strings.id("node");
        let mut node_names = Vec::new();
        let mut nodes: Vec<&str> = trace.nodes.iter().map(|n| n.node.as_str()).collect();
        for r in &trace.ranks {
            if !nodes.contains(&r.node.as_str()) {
                nodes.push(&r.node);
            }
        }
        for n in &nodes {
            node_names.push(strings.id(n));
        }
        let rank_names: Vec<u32> = trace
            .ranks
            .iter()
            .map(|r| strings.id(&format!("rank {}", r.rank)))
            .collect();
        let world_name = strings.id("MPI_COMM_WORLD");
        let empty_name = strings.id("");
        for (id, s) in strings.order.iter().enumerate() {
            api.check(
                "OTF2_GlobalDefWriter_WriteString",
                (api.string)(g, id as u32, s.as_ptr()),
            )?;
        }
        for (id, (name, role, paradigm)) in regions.iter().enumerate() {
            api.check(
                "OTF2_GlobalDefWriter_WriteRegion",
                (api.region)(
                    g,
                    id as u32,
                    *name,
                    *name,
                    empty_name,
                    *role,
                    *paradigm,
                    0,
                    UNDEFINED_U32,
                    0,
                    0,
                ),
            )?;
        }
        api.check(
            "OTF2_GlobalDefWriter_WriteSystemTreeNode",
            (api.system_tree_node)(g, 0, cluster, cluster, UNDEFINED_U32),
        )?;
        for (i, name) in node_names.iter().enumerate() {
            api.check(
                "OTF2_GlobalDefWriter_WriteSystemTreeNode",
                (api.system_tree_node)(g, i as u32 + 1, *name, node_class, 0),
            )?;
        }
        // Location groups are numbered densely (libotf2 wants them in order); locations by rank.
        for (id, (r, name)) in trace.ranks.iter().zip(&rank_names).enumerate() {
            let node = nodes.iter().position(|n| *n == r.node).unwrap_or(0) as u32 + 1;
            let id = id as u32;
            api.check(
                "OTF2_GlobalDefWriter_WriteLocationGroup",
                (api.location_group)(g, id, *name, LOCATION_GROUP_PROCESS, node, UNDEFINED_U32),
            )?;
        }
        for (group, (name, (loc, events))) in rank_names.iter().zip(&locations).enumerate() {
            api.check(
                "OTF2_GlobalDefWriter_WriteLocation",
                (api.location)(
                    g,
                    *loc,
                    *name,
                    LOCATION_CPU_THREAD,
                    events.len() as u64,
                    group as u32,
                ),
            )?;
        }
        // MPI_COMM_WORLD: the locations of ranks 0..world (group 0), the comm's group of
        // those ranks (group 1), the comm (0).
        let members: Vec<u64> = (0..u64::from(world)).collect();
        api.check(
            "OTF2_GlobalDefWriter_WriteGroup",
            (api.group)(
                g,
                0,
                empty_name,
                GROUP_COMM_LOCATIONS,
                PARADIGM_MPI,
                0,
                world,
                members.as_ptr(),
            ),
        )?;
        api.check(
            "OTF2_GlobalDefWriter_WriteGroup",
            (api.group)(
                g,
                1,
                empty_name,
                GROUP_COMM_GROUP,
                PARADIGM_MPI,
                0,
                world,
                members.as_ptr(),
            ),
        )?;
        api.check(
            "OTF2_GlobalDefWriter_WriteComm",
            (api.comm)(g, world_comm, world_name, 1, UNDEFINED_U32, 0),
        )?;
        api.check(
            "OTF2_Archive_CloseGlobalDefWriter",
            (api.close_global_def_writer)(a, g),
        )?;
    }
    let archive = open.archive;
    std::mem::forget(open);
    // SAFETY: closed once, here, instead of by the guard.
    api.check("OTF2_Archive_Close", unsafe {
        (api.archive_close)(archive)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Call, Header, Writer};
    use crate::{merge, ClockSample, NodeInput};
    use std::process::Command;

    const SEC: u64 = 1_000_000_000;

    /// Two nodes, two ranks each; node b's clock runs 5 s ahead and its samples say so. Each
    /// rank: Init, a "sample" region, two Allreduces, a Send to its neighbour... and Finalize.
    fn trace() -> Trace {
        let rank_file = |rank: i32, shift: u64| {
            let mut w = Writer::new(&Header {
                rank,
                world_size: 4,
                pid: 100 + rank as u32,
                dropped: 0,
                start_ns: shift,
                host: "h".into(),
            });
            let call = |op: Op, b: u64, e: u64| Call {
                op,
                peer: -1,
                tag: -1,
                comm_size: 4,
                begin_ns: shift + b,
                end_ns: shift + e,
                bytes: 8,
            };
            w.call(&call(Op::INIT, 0, 1_000));
            for round in 0..2u64 {
                let b = 10_000 + round * 10_000;
                w.region("sample", shift + b - 5_000, shift + b);
                w.call(&call(Op::ALLREDUCE, b, b + 2_000 + rank as u64));
            }
            w.call(&Call {
                peer: (rank + 1) % 4,
                tag: 3,
                ..call(Op::SEND, 40_000, 41_000)
            });
            w.call(&Call {
                peer: (rank + 3) % 4,
                tag: 3,
                ..call(Op::RECV, 40_000, 42_000)
            });
            w.call(&call(Op::FINALIZE, 50_000, 51_000));
            w.finish()
        };
        let samples = |offset_ns: i64| -> Vec<ClockSample> {
            (0..3)
                .map(|i| ClockSample {
                    local_ns: (100 * SEC).saturating_add_signed(-offset_ns) + i * SEC,
                    offset_ns,
                    rtt_ns: 100_000,
                })
                .collect()
        };
        let node = |name: &str, ranks: [i32; 2], shift: u64, clock| NodeInput {
            node: name.into(),
            files: ranks
                .iter()
                .map(|&r| (format!("rank-{r}.gzt"), rank_file(r, shift)))
                .collect(),
            clock,
        };
        merge(&[
            node("a", [0, 1], 100 * SEC, samples(0)),
            node("b", [2, 3], 105 * SEC, samples(-5_000_000_000)),
        ])
        .expect("merges")
    }

    #[test]
    fn otf2_print_reads_it_on_one_clock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("otf2");
        let t = trace();
        write(&t, &out).expect("writes (needs libotf2: scripts/setup installs otf2-tools)");
        if let Ok(keep) = std::env::var("GRAZE_KEEP_OTF2") {
            let _ = std::fs::remove_dir_all(&keep);
            let _ = Command::new("cp").arg("-r").arg(&out).arg(&keep).status();
        }
        let o = Command::new("otf2-print")
            .arg(out.join("traces.otf2"))
            .output()
            .expect("otf2-print runs (Debian's otf2-tools; scripts/setup installs it)");
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "{}\n{text}",
            String::from_utf8_lossy(&o.stderr)
        );
        let count = |what: &str| text.lines().filter(|l| l.starts_with(what)).count();
        // Per rank: Init, 2 regions, 2 Allreduces, Send, Recv, Finalize = 8 spans.
        assert_eq!(count("ENTER "), 4 * 8, "{text}");
        assert_eq!(count("LEAVE "), 4 * 8, "{text}");
        assert_eq!(count("MPI_COLLECTIVE_BEGIN "), 4 * 2, "{text}");
        assert_eq!(count("MPI_COLLECTIVE_END "), 4 * 2, "{text}");
        assert_eq!(count("MPI_SEND "), 4, "{text}");
        assert_eq!(count("MPI_RECV "), 4, "{text}");
        assert!(text.contains("\"MPI_Allreduce\""), "{text}");
        assert!(text.contains("\"sample\""), "{text}");
        // The reader applies the clock offsets: every rank's first Allreduce enters at the
        // same time, though node b's files are 5 s ahead.
        let enters: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with("ENTER ") && l.contains("\"MPI_Allreduce\""))
            .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
            .collect();
        assert_eq!(enters.len(), 8, "{text}");
        let first_round: Vec<u64> = enters
            .iter()
            .copied()
            .filter(|&t| t < 100 * SEC + 15_000)
            .collect();
        assert_eq!(first_round, [100 * SEC + 10_000; 4], "{text}");
        assert_eq!(t.start_ns, 100 * SEC);
        // The offsets are in the archive, per location.
        let o = Command::new("otf2-print")
            .arg("-C")
            .arg(out.join("traces.otf2"))
            .output()
            .expect("otf2-print runs");
        let text = String::from_utf8_lossy(&o.stdout);
        let offsets: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("CLOCK_OFFSET"))
            .collect();
        assert_eq!(offsets.len(), 4 * 3, "{text}");
        assert_eq!(
            offsets
                .iter()
                .filter(|l| l.contains("Offset: -5000000000, StdDev: 50000"))
                .count(),
            2 * 3,
            "{text}"
        );
    }

    #[test]
    fn an_existing_archive_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("traces.otf2"), b"").expect("write");
        let e = write(&trace(), dir.path()).expect_err("refused");
        assert!(e.to_string().contains("already exists"), "{e}");
    }

    #[test]
    fn a_missing_rank_reads_cleanly() {
        let mut t = trace();
        t.ranks.remove(1);
        let dir = tempfile::tempdir().expect("tempdir");
        write(&t, dir.path()).expect("writes");
        let o = Command::new("otf2-print")
            .arg("-G")
            .arg(dir.path().join("traces.otf2"))
            .output()
            .expect("otf2-print runs");
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert!(o.status.success() && err.trim().is_empty(), "{err}\n{out}");
        assert!(
            out.contains("LOCATION                               3  Name: \"rank 3\""),
            "{out}"
        );
        assert!(out.contains("Group: \"rank 3\" <2>"), "{out}");
    }
}
