//! The per-rank trace file, format 1 (`docs/TRACE_FORMAT.md`).

/// The first 8 bytes of every trace file.
pub const MAGIC: &[u8; 8] = b"GRZTRC01";
/// The format version in the header.
pub const VERSION: u32 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 64;
/// Record length in bytes.
pub const RECORD_LEN: usize = 40;
