//! The owner's controls on their own PC: a local socket the agent listens on, for
//! `graze-agent snooze 2h | off` (only a user logged in at this PC's seat or console, or root)
//! and `graze-agent status` (anyone on the PC). One request line, a reply of text lines whose
//! first line is `ok` or `error`. The caller's uid comes from the kernel (SO_PEERCRED), and
//! "at the seat" from utmp: a login on a console (`ttyN`), an X display (`:0`) or a terminal
//! inside one (`pts/N` from host `:0`) — not an SSH session.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The socket of a system agent when none is configured.
pub const DEFAULT_SOCKET: &str = "/run/graze/owner.sock";
/// Where logins are recorded.
pub const DEFAULT_UTMP: &str = "/var/run/utmp";
/// The longest snooze.
pub const MAX_SNOOZE: Duration = Duration::from_secs(7 * 24 * 3600);

/// A request on the socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Offer nothing for this long; vacate running jobs.
    Snooze(Duration),
    /// End a snooze.
    SnoozeOff,
    /// What graze does on this PC now, in plain words.
    Status,
}

impl Request {
    /// The request's line on the socket.
    pub fn line(&self) -> String {
        match self {
            Request::Snooze(d) => format!("snooze {}", d.as_secs()),
            Request::SnoozeOff => "snooze off".into(),
            Request::Status => "status".into(),
        }
    }

    /// Parse a request line (from a local, possibly hostile, process).
    pub fn parse(line: &str) -> Result<Request, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["status"] => Ok(Request::Status),
            ["snooze", "off"] => Ok(Request::SnoozeOff),
            ["snooze", secs] => {
                let s: u64 = secs
                    .parse()
                    .map_err(|_| format!("bad snooze length '{secs}'"))?;
                let d = Duration::from_secs(s);
                if s == 0 || d > MAX_SNOOZE {
                    return Err(format!(
                        "a snooze lasts from 1 s to {} days",
                        MAX_SNOOZE.as_secs() / 86400
                    ));
                }
                Ok(Request::Snooze(d))
            }
            _ => Err("unknown request (snooze SECONDS, snooze off, status)".into()),
        }
    }

    /// Whether it changes what the PC does (and so needs a user at the seat).
    pub fn changes(&self) -> bool {
        !matches!(self, Request::Status)
    }
}

/// `snooze` argument: `2h`, `30m`, `off`.
pub fn parse_snooze(arg: &str) -> Result<Request, String> {
    if arg == "off" {
        return Ok(Request::SnoozeOff);
    }
    let d = humantime::parse_duration(arg)
        .map_err(|e| format!("'{arg}' is not a duration like 2h or 30m, nor 'off': {e}"))?;
    Request::parse(&format!("snooze {}", d.as_secs()))
}

const RECORD: usize = 384;
const USER_PROCESS: i16 = 7;

fn field(r: &[u8], range: std::ops::Range<usize>) -> &str {
    let raw = &r[range];
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    std::str::from_utf8(&raw[..end]).unwrap_or("").trim()
}

/// True when utmp (`bytes`) has `user` logged in at the seat or console: a `ttyN` line, an
/// X display line (`:0`), or a terminal line whose host is an X display.
pub fn at_seat(bytes: &[u8], user: &str) -> bool {
    bytes
        .chunks_exact(RECORD)
        .filter(|r| i16::from_ne_bytes([r[0], r[1]]) == USER_PROCESS)
        .any(|r| {
            let (line, name, host) = (field(r, 8..40), field(r, 44..76), field(r, 76..332));
            name == user
                && (line
                    .strip_prefix("tty")
                    .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
                    || line.starts_with(':')
                    || (line.starts_with("pts/") && host.starts_with(':')))
        })
}

/// One utmp record, for tests and tools: a login of `user` on `line` from `host`.
pub fn utmp_record(user: &str, line: &str, host: &str) -> Vec<u8> {
    let mut r = vec![0u8; RECORD];
    r[..2].copy_from_slice(&USER_PROCESS.to_ne_bytes());
    let put = |r: &mut Vec<u8>, at: usize, max: usize, s: &str| {
        let b = &s.as_bytes()[..s.len().min(max)];
        r[at..at + b.len()].copy_from_slice(b);
    };
    put(&mut r, 8, 32, line);
    put(&mut r, 44, 32, user);
    put(&mut r, 76, 256, host);
    r
}

/// Who may change what the PC does: root, or a user at the seat per `utmp`.
pub fn may_change(uid: u32, utmp: &Path) -> Result<(), String> {
    if uid == 0 {
        return Ok(());
    }
    let name = crate::jobs::confine::user_by_uid(uid)
        .ok_or_else(|| format!("uid {uid} has no user name"))?;
    let bytes =
        std::fs::read(utmp).map_err(|e| format!("cannot read '{}': {e}", utmp.display()))?;
    if at_seat(&bytes, &name) {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not logged in at this PC's seat or console; only the person at the PC (or root) may snooze graze here"
        ))
    }
}

/// Bind the socket at `path` (its directory made 0755 if missing), connectable by anyone on
/// the PC (0666): the request decides who may do what. A socket file left by a dead agent is
/// replaced; one a live agent listens on is not.
pub fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another agent listens on it",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let l = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(l)
}

/// The client side: send `req` to the agent at `socket`, return (ok, text).
pub fn ask(socket: &Path, req: &Request) -> Result<(bool, String), String> {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot reach the graze agent at '{}': {e} (is graze-agent running here? --socket names another)",
            socket.display()
        )
    })?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    writeln!(s, "{}", req.line()).map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut first = String::new();
    r.read_line(&mut first).map_err(|e| e.to_string())?;
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut r, &mut rest).map_err(|e| e.to_string())?;
    match first.trim() {
        "ok" => Ok((true, rest)),
        "error" => Ok((false, rest)),
        other => Err(format!("unexpected answer from the agent: '{other}'")),
    }
}

/// The socket path: configured, else [`DEFAULT_SOCKET`] as root, else `SPOOL/owner.sock`.
pub fn socket_path(configured: Option<&Path>, spool: &Path, is_root: bool) -> PathBuf {
    match configured {
        Some(p) => p.to_owned(),
        None if is_root => PathBuf::from(DEFAULT_SOCKET),
        None => spool.join("owner.sock"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_refuse_nonsense() {
        assert_eq!(Request::parse("status"), Ok(Request::Status));
        assert_eq!(Request::parse("snooze off"), Ok(Request::SnoozeOff));
        assert_eq!(
            Request::parse("snooze 7200"),
            Ok(Request::Snooze(Duration::from_secs(7200)))
        );
        for bad in [
            "",
            "snooze",
            "snooze -1",
            "snooze 0",
            "snooze 99999999",
            "rm -rf /",
        ] {
            assert!(Request::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_snooze("2h"),
            Ok(Request::Snooze(Duration::from_secs(7200)))
        );
        assert_eq!(parse_snooze("off"), Ok(Request::SnoozeOff));
        assert!(parse_snooze("soon").unwrap_err().contains("not a duration"));
        assert!(parse_snooze("30d").unwrap_err().contains("7 days"));
        for r in [
            Request::Status,
            Request::SnoozeOff,
            Request::Snooze(Duration::from_secs(5)),
        ] {
            assert_eq!(Request::parse(&r.line()), Ok(r));
        }
    }

    #[test]
    fn the_seat_is_a_console_a_display_or_a_terminal_on_one() {
        let mut u = utmp_record("ann", "tty1", "");
        u.extend(utmp_record("bob", "pts/3", "10.0.0.9"));
        u.extend(utmp_record("cat", ":0", ":0"));
        u.extend(utmp_record("dan", "pts/1", ":0"));
        u.extend(utmp_record("eve", "ttyS0x", ""));
        assert!(at_seat(&u, "ann"));
        assert!(!at_seat(&u, "bob"), "an SSH login is not at the seat");
        assert!(at_seat(&u, "cat"));
        assert!(at_seat(&u, "dan"));
        assert!(!at_seat(&u, "eve"));
        assert!(!at_seat(&u, "nobody"));
        assert!(!at_seat(&[1u8; 100], "ann"));
    }
}
