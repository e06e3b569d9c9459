//! The per-rank trace file, format 1 (`docs/TRACE_FORMAT.md`): a defensive parser ([`parse`])
//! and a [`Writer`] producing exactly that format (for tests, here and in the other crates).
//!
//! The parser never panics, whatever the bytes: every refusal the format page names is a
//! [`FormatError`] naming the file and the byte offset, and a file cut in the middle of a record
//! is read up to its last whole record with [`RankFile::truncated`] set.

use std::collections::HashMap;
use std::fmt;

use crate::Op;

/// The first 8 bytes of every trace file.
pub const MAGIC: &[u8; 8] = b"GRZTRC01";
/// The format version in the header.
pub const VERSION: u32 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 64;
/// Record length in bytes.
pub const RECORD_LEN: usize = 40;
/// Record kinds.
pub const KIND_MPI: u8 = 1;
pub const KIND_REGION: u8 = 2;
pub const KIND_NAME: u8 = 3;
/// The longest name a name definition may carry, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Host name field length in the header (the name is cut to one less).
const HOST_LEN: usize = 24;

/// A trace file's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Rank in `MPI_COMM_WORLD`; -1 when the process never initialised MPI.
    pub rank: i32,
    /// Size of `MPI_COMM_WORLD`; 0 when unknown.
    pub world_size: i32,
    pub pid: u32,
    /// Events dropped past the size limit (counted, not written).
    pub dropped: u64,
    /// `CLOCK_MONOTONIC` at the tracer's start (ns).
    pub start_ns: u64,
    /// Host name as written (at most 23 bytes; invalid UTF-8 replaced).
    pub host: String,
}

/// One MPI call (record kind 1), raw values as in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub op: Op,
    /// Peer rank in the communicator; -1 none, -2 `MPI_ANY_SOURCE` unresolved.
    pub peer: i32,
    /// -1: none.
    pub tag: i32,
    /// 0: none.
    pub comm_size: i32,
    pub begin_ns: u64,
    pub end_ns: u64,
    /// Payload bytes; -1 when not applicable.
    pub bytes: i64,
}

/// One record of a trace file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Kind 1.
    Call(Call),
    /// Kind 2: a user region. `name` is what `id` was defined as when the region was read
    /// (the [`Writer`] defines it first when needed).
    Region {
        id: u16,
        name: String,
        begin_ns: u64,
        end_ns: u64,
    },
    /// Kind 3: defines `id` for the regions after it.
    Name { id: u16, name: String },
}

/// A parsed trace file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankFile {
    pub header: Header,
    pub records: Vec<Record>,
    /// The file ended in the middle of a record (the rank died while writing); the records are
    /// those before it.
    pub truncated: bool,
}

/// Why a trace file was refused. Not retryable: the file is what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// The file's name, as the caller gave it.
    pub file: String,
    /// Byte offset in the file of the header or record at fault.
    pub offset: usize,
    pub kind: FormatErrorKind,
}

/// What was wrong, one case per refusal of `docs/TRACE_FORMAT.md`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatErrorKind {
    #[error("the header is cut short ({len} bytes, a header is {HEADER_LEN})")]
    ShortHeader { len: usize },
    #[error("not a graze trace file (magic {found:?}, expected \"GRZTRC01\")")]
    BadMagic { found: String },
    #[error("format version {found} is not supported (this graze reads version {VERSION})")]
    BadVersion { found: u32 },
    #[error("unknown record kind {kind}")]
    UnknownKind { kind: u8 },
    #[error("name definition of id {id} has length {len}, which must be 1 to {MAX_NAME_LEN}")]
    NameLength { id: u16, len: i64 },
    #[error("name definition of id {id} ({len} bytes, padded to {padded}) runs past the end of the file")]
    NamePastEnd { id: u16, len: usize, padded: usize },
    #[error("record ends ({end_ns} ns) before it begins ({begin_ns} ns)")]
    EndBeforeBegin { begin_ns: u64, end_ns: u64 },
    #[error("user region names id {id}, which no name definition before it defines")]
    UndefinedName { id: u16 },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trace file '{}', byte {}: {}",
            self.file, self.offset, self.kind
        )
    }
}

impl std::error::Error for FormatError {}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    u32_at(b, at) as i32
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    u64_at(b, at) as i64
}

/// Round `n` up to a multiple of 8.
fn padded(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Parse one rank's trace file. `name` is the file's name, used in errors only.
pub fn parse(name: &str, bytes: &[u8]) -> Result<RankFile, FormatError> {
    let err = |offset: usize, kind: FormatErrorKind| FormatError {
        file: name.to_string(),
        offset,
        kind,
    };
    if bytes.len() < HEADER_LEN {
        // A file shorter than the magic with the wrong first bytes is not ours at all; say so
        // rather than "cut short".
        let n = bytes.len().min(MAGIC.len());
        if bytes[..n] != MAGIC[..n] {
            return Err(err(
                0,
                FormatErrorKind::BadMagic {
                    found: String::from_utf8_lossy(&bytes[..n]).into_owned(),
                },
            ));
        }
        return Err(err(0, FormatErrorKind::ShortHeader { len: bytes.len() }));
    }
    if &bytes[..8] != MAGIC {
        return Err(err(
            0,
            FormatErrorKind::BadMagic {
                found: String::from_utf8_lossy(&bytes[..8]).into_owned(),
            },
        ));
    }
    let version = u32_at(bytes, 8);
    if version != VERSION {
        return Err(err(8, FormatErrorKind::BadVersion { found: version }));
    }
    let host_field = &bytes[40..40 + HOST_LEN];
    let host_len = host_field.iter().position(|&c| c == 0).unwrap_or(HOST_LEN);
    let header = Header {
        rank: i32_at(bytes, 12),
        world_size: i32_at(bytes, 16),
        pid: u32_at(bytes, 20),
        dropped: u64_at(bytes, 24),
        start_ns: u64_at(bytes, 32),
        host: String::from_utf8_lossy(&host_field[..host_len]).into_owned(),
    };

    let mut names: HashMap<u16, String> = HashMap::new();
    let mut records = Vec::new();
    let mut at = HEADER_LEN;
    let mut truncated = false;
    while at < bytes.len() {
        if bytes.len() - at < RECORD_LEN {
            truncated = true;
            break;
        }
        let r = &bytes[at..at + RECORD_LEN];
        let kind = r[0];
        let id = u16_at(r, 2);
        let begin_ns = u64_at(r, 16);
        let end_ns = u64_at(r, 24);
        let value = i64_at(r, 32);
        match kind {
            KIND_MPI | KIND_REGION => {
                if end_ns < begin_ns {
                    return Err(err(
                        at,
                        FormatErrorKind::EndBeforeBegin { begin_ns, end_ns },
                    ));
                }
                if kind == KIND_MPI {
                    records.push(Record::Call(Call {
                        op: Op(r[1]),
                        peer: i32_at(r, 4),
                        tag: i32_at(r, 8),
                        comm_size: i32_at(r, 12),
                        begin_ns,
                        end_ns,
                        bytes: value,
                    }));
                } else {
                    let Some(name) = names.get(&id) else {
                        return Err(err(at, FormatErrorKind::UndefinedName { id }));
                    };
                    records.push(Record::Region {
                        id,
                        name: name.clone(),
                        begin_ns,
                        end_ns,
                    });
                }
                at += RECORD_LEN;
            }
            KIND_NAME => {
                if value < 1 || value > MAX_NAME_LEN as i64 {
                    return Err(err(at, FormatErrorKind::NameLength { id, len: value }));
                }
                let len = value as usize;
                let start = at + RECORD_LEN;
                let pad = padded(len);
                if bytes.len() - start < pad {
                    return Err(err(
                        at,
                        FormatErrorKind::NamePastEnd {
                            id,
                            len,
                            padded: pad,
                        },
                    ));
                }
                let name = String::from_utf8_lossy(&bytes[start..start + len]).into_owned();
                names.insert(id, name.clone());
                records.push(Record::Name { id, name });
                at = start + pad;
            }
            kind => return Err(err(at, FormatErrorKind::UnknownKind { kind })),
        }
    }
    Ok(RankFile {
        header,
        records,
        truncated,
    })
}

/// Writes a trace file in format 1, in memory. Regions get their names defined on first use
/// (ids from 1); [`Writer::record`] writes any record as given.
#[derive(Debug, Clone)]
pub struct Writer {
    buf: Vec<u8>,
    /// What each id is currently defined as.
    defined: HashMap<u16, String>,
    /// Ids handed out by [`Writer::region`], by name.
    by_name: HashMap<String, u16>,
    next_id: u16,
}

impl Writer {
    /// Start a file with this header. The host name is cut to 23 bytes (on a character
    /// boundary).
    pub fn new(header: &Header) -> Writer {
        let mut buf = Vec::with_capacity(HEADER_LEN + 64 * RECORD_LEN);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&VERSION.to_le_bytes());
        buf.extend_from_slice(&header.rank.to_le_bytes());
        buf.extend_from_slice(&header.world_size.to_le_bytes());
        buf.extend_from_slice(&header.pid.to_le_bytes());
        buf.extend_from_slice(&header.dropped.to_le_bytes());
        buf.extend_from_slice(&header.start_ns.to_le_bytes());
        let mut host = [0u8; HOST_LEN];
        let mut cut = header.host.len().min(HOST_LEN - 1);
        while !header.host.is_char_boundary(cut) {
            cut -= 1;
        }
        host[..cut].copy_from_slice(&header.host.as_bytes()[..cut]);
        buf.extend_from_slice(&host);
        Writer {
            buf,
            defined: HashMap::new(),
            by_name: HashMap::new(),
            next_id: 1,
        }
    }

    fn raw(
        &mut self,
        kind: u8,
        op: u8,
        id: u16,
        ints: [i32; 3],
        [begin_ns, end_ns]: [u64; 2],
        value: i64,
    ) {
        self.buf.push(kind);
        self.buf.push(op);
        self.buf.extend_from_slice(&id.to_le_bytes());
        for i in ints {
            self.buf.extend_from_slice(&i.to_le_bytes());
        }
        self.buf.extend_from_slice(&begin_ns.to_le_bytes());
        self.buf.extend_from_slice(&end_ns.to_le_bytes());
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// Write an MPI call.
    pub fn call(&mut self, c: &Call) {
        self.raw(
            KIND_MPI,
            c.op.0,
            0,
            [c.peer, c.tag, c.comm_size],
            [c.begin_ns, c.end_ns],
            c.bytes,
        );
    }

    /// Define `id` as `name` (1 to 255 bytes; longer names are cut on a character boundary,
    /// an empty one becomes `?`).
    pub fn define(&mut self, id: u16, name: &str) {
        let mut cut = name.len().min(MAX_NAME_LEN);
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        let name = if cut == 0 { "?" } else { &name[..cut] };
        self.raw(KIND_NAME, 0, id, [-1, -1, 0], [0, 0], name.len() as i64);
        self.buf.extend_from_slice(name.as_bytes());
        self.buf
            .resize(self.buf.len() + padded(name.len()) - name.len(), 0);
        self.defined.insert(id, name.to_string());
    }

    /// Write a user region, defining its name first if this writer has not yet.
    pub fn region(&mut self, name: &str, begin_ns: u64, end_ns: u64) {
        let id = match self.by_name.get(name) {
            Some(&id) => id,
            None => {
                let id = self.next_id;
                self.next_id = self.next_id.wrapping_add(1).max(1);
                self.by_name.insert(name.to_string(), id);
                id
            }
        };
        if self.defined.get(&id).map(String::as_str) != Some(name) {
            self.define(id, name);
        }
        self.raw(KIND_REGION, 0, id, [-1, -1, 0], [begin_ns, end_ns], -1);
    }

    /// Write a record as given; a region whose id is not currently defined as its name is
    /// preceded by that definition.
    pub fn record(&mut self, r: &Record) {
        match r {
            Record::Call(c) => self.call(c),
            Record::Name { id, name } => self.define(*id, name),
            Record::Region {
                id,
                name,
                begin_ns,
                end_ns,
            } => {
                if self.defined.get(id) != Some(name) {
                    self.define(*id, name);
                }
                self.raw(KIND_REGION, 0, *id, [-1, -1, 0], [*begin_ns, *end_ns], -1);
            }
        }
    }

    /// The file's bytes so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The finished file.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header() -> Header {
        Header {
            rank: 3,
            world_size: 4,
            pid: 4242,
            dropped: 7,
            start_ns: 1_000,
            host: "node-a".into(),
        }
    }

    fn call(op: u8, begin_ns: u64, end_ns: u64) -> Call {
        Call {
            op: Op(op),
            peer: -1,
            tag: -1,
            comm_size: 4,
            begin_ns,
            end_ns,
            bytes: 8,
        }
    }

    fn sample() -> Vec<u8> {
        let mut w = Writer::new(&header());
        w.call(&call(1, 1_000, 2_000));
        w.region("compute", 2_000, 3_000);
        w.call(&call(10, 3_000, 3_500));
        w.region("compute", 4_000, 5_000);
        w.call(&call(2, 6_000, 6_100));
        w.finish()
    }

    fn refusal(bytes: &[u8]) -> FormatError {
        match parse("rank-3.gzt", bytes) {
            Err(e) => e,
            Ok(f) => panic!("expected a refusal, parsed {f:?}"),
        }
    }

    #[test]
    fn reads_what_the_writer_wrote() {
        let f = parse("rank-3.gzt", &sample()).expect("parses");
        assert_eq!(f.header, header());
        assert!(!f.truncated);
        let kinds: Vec<&str> = f
            .records
            .iter()
            .map(|r| match r {
                Record::Call(_) => "call",
                Record::Region { .. } => "region",
                Record::Name { .. } => "name",
            })
            .collect();
        // The second "compute" region reuses the first definition.
        assert_eq!(kinds, ["call", "name", "region", "call", "region", "call"]);
        assert_eq!(
            f.records[2],
            Record::Region {
                id: 1,
                name: "compute".into(),
                begin_ns: 2_000,
                end_ns: 3_000
            }
        );
        // 64 header + 5 records + a name def of 40 + 8 bytes.
        assert_eq!(sample().len(), 64 + 6 * 40 + 8);
    }

    #[test]
    fn refuses_a_short_header() {
        let e = refusal(&sample()[..63]);
        assert_eq!(e.kind, FormatErrorKind::ShortHeader { len: 63 });
        assert_eq!(e.offset, 0);
        assert!(e.to_string().contains("rank-3.gzt"), "{e}");
        assert!(e.to_string().contains("cut short"), "{e}");
    }

    #[test]
    fn refuses_a_wrong_magic() {
        let mut b = sample();
        b[0] = b'X';
        let e = refusal(&b);
        assert!(matches!(e.kind, FormatErrorKind::BadMagic { .. }), "{e}");
        assert!(e.to_string().contains("not a graze trace file"), "{e}");
        // A short file that is not ours at all is not "cut short".
        let e = refusal(b"hello");
        assert!(matches!(e.kind, FormatErrorKind::BadMagic { .. }), "{e}");
    }

    #[test]
    fn refuses_a_wrong_version() {
        let mut b = sample();
        b[8] = 2;
        let e = refusal(&b);
        assert_eq!(e.kind, FormatErrorKind::BadVersion { found: 2 });
        assert_eq!(e.offset, 8);
        assert!(e.to_string().contains("version 2"), "{e}");
    }

    #[test]
    fn refuses_an_unknown_kind() {
        let mut b = sample();
        b[64] = 9;
        let e = refusal(&b);
        assert_eq!(e.kind, FormatErrorKind::UnknownKind { kind: 9 });
        assert_eq!(e.offset, 64);
        assert_eq!(
            e.to_string(),
            "trace file 'rank-3.gzt', byte 64: unknown record kind 9"
        );
    }

    #[test]
    fn refuses_a_name_length_out_of_range() {
        for len in [0i64, 256, -1] {
            let mut b = sample();
            // The name definition is the second record.
            let at = 64 + 40;
            b[at + 32..at + 40].copy_from_slice(&len.to_le_bytes());
            let e = refusal(&b);
            assert_eq!(e.kind, FormatErrorKind::NameLength { id: 1, len }, "{e}");
            assert_eq!(e.offset, at);
        }
    }

    #[test]
    fn refuses_a_name_past_the_end() {
        let mut w = Writer::new(&header());
        w.define(1, "compute");
        let b = w.finish();
        let e = refusal(&b[..b.len() - 1]);
        assert_eq!(
            e.kind,
            FormatErrorKind::NamePastEnd {
                id: 1,
                len: 7,
                padded: 8
            }
        );
        assert_eq!(e.offset, 64);
        // A length claiming more than the file has.
        let mut b = b.clone();
        b[64 + 32] = 200;
        let e = refusal(&b);
        assert!(
            matches!(e.kind, FormatErrorKind::NamePastEnd { len: 200, .. }),
            "{e}"
        );
    }

    #[test]
    fn refuses_an_end_before_its_begin() {
        let mut w = Writer::new(&header());
        w.call(&call(10, 5_000, 4_000));
        let e = refusal(&w.finish());
        assert_eq!(
            e.kind,
            FormatErrorKind::EndBeforeBegin {
                begin_ns: 5_000,
                end_ns: 4_000
            }
        );
        let mut w = Writer::new(&header());
        w.region("x", 5_000, 4_999);
        let e = refusal(&w.finish());
        assert_eq!(e.offset, 64 + 48);
        assert!(e.to_string().contains("before it begins"), "{e}");
    }

    #[test]
    fn refuses_an_undefined_region_name() {
        let mut b = sample();
        // The first region (after call and name def at 64 + 88) names id 5.
        let at = 64 + 40 + 48;
        b[at + 2] = 5;
        let e = refusal(&b);
        assert_eq!(e.kind, FormatErrorKind::UndefinedName { id: 5 });
        assert_eq!(e.offset, at);
    }

    #[test]
    fn a_cut_record_reads_as_truncated() {
        let b = sample();
        let f = parse("rank-3.gzt", &b[..b.len() - 13]).expect("parses");
        assert!(f.truncated);
        assert_eq!(f.records.len(), 5);
        let f = parse("rank-3.gzt", &b[..HEADER_LEN + 1]).expect("parses");
        assert!(f.truncated);
        assert!(f.records.is_empty());
        let f = parse("rank-3.gzt", &b[..HEADER_LEN]).expect("parses");
        assert!(!f.truncated);
    }

    #[test]
    fn unknown_ops_are_kept() {
        let mut w = Writer::new(&header());
        w.call(&call(99, 1, 2));
        let f = parse("x", &w.finish()).expect("parses");
        assert_eq!(f.records, [Record::Call(call(99, 1, 2))]);
    }

    fn arb_call() -> impl Strategy<Value = Call> {
        (
            any::<u8>(),
            any::<i32>(),
            any::<i32>(),
            any::<i32>(),
            any::<u64>(),
            any::<u64>(),
            any::<i64>(),
        )
            .prop_map(|(op, peer, tag, comm_size, a, b, bytes)| Call {
                op: Op(op),
                peer,
                tag,
                comm_size,
                begin_ns: a.min(b),
                end_ns: a.max(b),
                bytes,
            })
    }

    #[derive(Debug, Clone)]
    enum Step {
        Call(Call),
        Region(String, u64, u64),
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        prop_oneof![
            arb_call().prop_map(Step::Call),
            ("[a-z_]{1,12}|\\PC{1,40}", any::<u64>(), any::<u64>())
                .prop_map(|(n, a, b)| Step::Region(n, a.min(b), a.max(b))),
        ]
    }

    proptest! {
        #[test]
        fn write_then_parse_roundtrips(
            rank in -1i32..1000,
            world_size in 0i32..1000,
            pid: u32,
            dropped: u64,
            start_ns: u64,
            host in "[a-z0-9.-]{0,23}",
            steps in proptest::collection::vec(arb_step(), 0..40),
        ) {
            let h = Header { rank, world_size, pid, dropped, start_ns, host };
            let mut w = Writer::new(&h);
            for s in &steps {
                match s {
                    Step::Call(c) => w.call(c),
                    Step::Region(n, b, e) => w.region(n, *b, *e),
                }
            }
            let bytes = w.finish();
            let f = parse("p.gzt", &bytes).expect("the writer's output parses");
            prop_assert_eq!(&f.header, &h);
            prop_assert!(!f.truncated);
            let got: Vec<&Record> =
                f.records.iter().filter(|r| !matches!(r, Record::Name { .. })).collect();
            prop_assert_eq!(got.len(), steps.len());
            for (r, s) in got.iter().zip(&steps) {
                match (r, s) {
                    (Record::Call(c), Step::Call(want)) => prop_assert_eq!(c, want),
                    (Record::Region { name, begin_ns, end_ns, .. }, Step::Region(n, b, e)) => {
                        prop_assert_eq!(name, n);
                        prop_assert_eq!((begin_ns, end_ns), (b, e));
                    }
                    other => prop_assert!(false, "mismatch {:?}", other),
                }
            }
            // Rewriting the parsed records gives the same bytes.
            let mut again = Writer::new(&f.header);
            for r in &f.records {
                again.record(r);
            }
            prop_assert_eq!(again.finish(), bytes);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse("fuzz.gzt", &bytes);
        }

        #[test]
        fn damaged_files_never_panic(
            steps in proptest::collection::vec(arb_step(), 0..10),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut: usize,
        ) {
            let mut w = Writer::new(&header());
            for s in &steps {
                match s {
                    Step::Call(c) => w.call(c),
                    Step::Region(n, b, e) => w.region(n, *b, *e),
                }
            }
            let mut bytes = w.finish();
            for (at, v) in flips {
                let n = bytes.len();
                bytes[at % n] = v;
            }
            let n = bytes.len();
            bytes.truncate(cut % (n + 1));
            if let Err(e) = parse("d.gzt", &bytes) {
                prop_assert!(e.offset <= bytes.len());
                prop_assert!(e.to_string().starts_with("trace file 'd.gzt', byte "));
            }
        }
    }
}
