//! Terminal presence: the access time of logged-in users' terminals.
//!
//! Every keystroke on a tty or pty updates its atime (the kernel rounds to about 8 s, but the
//! first keystroke after an idle stretch shows at once), so SSH and console sessions count as
//! the owner being there. Logged-in terminals come from utmp's `USER_PROCESS` records.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// Size of one glibc `struct utmp` on Linux (x86-64, aarch64, ...).
const RECORD: usize = 384;
/// `ut_type` of a logged-in user.
const USER_PROCESS: i16 = 7;
/// Offset and size of `ut_line` (the terminal, relative to /dev).
const LINE: std::ops::Range<usize> = 8..40;

/// Terminals (`pts/3`, `tty1`) of the `USER_PROCESS` records in utmp's bytes.
pub(crate) fn user_lines(bytes: &[u8]) -> Vec<String> {
    bytes
        .chunks_exact(RECORD)
        .filter(|r| i16::from_ne_bytes([r[0], r[1]]) == USER_PROCESS)
        .filter_map(|r| {
            let raw = &r[LINE];
            let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
            let line = std::str::from_utf8(&raw[..end]).ok()?.trim();
            // Only plain device names below /dev.
            (!line.is_empty() && !line.contains("..") && !line.starts_with('/'))
                .then(|| line.to_string())
        })
        .collect()
}

/// The `tty` idle source.
pub(crate) struct TtySource {
    utmp: PathBuf,
    dev: PathBuf,
}

impl TtySource {
    /// Read logins from `utmp`, terminals from `/dev`.
    pub(crate) fn new(utmp: impl Into<PathBuf>) -> TtySource {
        TtySource {
            utmp: utmp.into(),
            dev: PathBuf::from("/dev"),
        }
    }

    /// Idle time since the latest terminal access; `None` when nobody is logged in.
    pub(crate) fn idle_at(&self, wall: SystemTime) -> Option<Duration> {
        let bytes = std::fs::read(&self.utmp).ok()?;
        user_lines(&bytes)
            .iter()
            .filter_map(|l| std::fs::metadata(self.dev.join(l)).ok()?.accessed().ok())
            .max()
            .map(|t| wall.duration_since(t).unwrap_or(Duration::ZERO))
    }
}

impl crate::owner::source::IdleSource for TtySource {
    fn name(&self) -> String {
        "tty".into()
    }
    fn idle(&mut self, _now: Instant, wall: SystemTime) -> Result<Option<Duration>, String> {
        Ok(self.idle_at(wall))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(kind: i16, line: &str) -> Vec<u8> {
        let mut r = vec![0u8; RECORD];
        r[..2].copy_from_slice(&kind.to_ne_bytes());
        r[8..8 + line.len()].copy_from_slice(line.as_bytes());
        r
    }

    #[test]
    fn parses_user_records_only() {
        let mut b = record(USER_PROCESS, "pts/3");
        b.extend(record(8, "pts/4")); // DEAD_PROCESS
        b.extend(record(USER_PROCESS, "tty1"));
        b.extend(record(USER_PROCESS, "../etc/passwd"));
        b.extend(vec![1u8; 100]); // a torn last record is ignored
        assert_eq!(user_lines(&b), vec!["pts/3", "tty1"]);
        assert!(user_lines(&[]).is_empty());
    }

    #[test]
    fn idle_from_terminal_atime() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pts")).unwrap();
        let term = dir.path().join("pts/7");
        std::fs::write(&term, "").unwrap();
        let utmp = dir.path().join("utmp");
        std::fs::write(&utmp, record(USER_PROCESS, "pts/7")).unwrap();
        let mut s = TtySource::new(&utmp);
        s.dev = dir.path().to_owned();
        let later = SystemTime::now() + Duration::from_secs(60);
        let idle = s.idle_at(later).unwrap();
        assert!(
            idle >= Duration::from_secs(59) && idle <= Duration::from_secs(61),
            "{idle:?}"
        );
        std::fs::write(&utmp, record(8, "pts/7")).unwrap();
        assert_eq!(s.idle_at(later), None, "nobody logged in");
        assert_eq!(TtySource::new(dir.path().join("none")).idle_at(later), None);
    }
}
