//! Words both ends use for time limits: signal names (Linux numbering) and an exact duration
//! formatter (`1h30m`, `90s` as `1m30s`), so an event and `graze show` say what `--time` and
//! `--signal` were given.

/// The waiting reason of a job whose `--begin` time has not come. The CLI replaces it with
/// the begin time in the user's local time zone (`waiting for 22:00`).
pub const BEGIN_WAIT: &str = "waiting for its begin time";

/// The waiting reason of a held job (`--hold`, `graze hold`).
pub const HELD_WAIT: &str = "held";

/// Linux signal names without `SIG`, by number (1..=31); real-time signals are `RTMIN+N`.
const NAMES: [&str; 31] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
];

/// Lowest real-time signal number on Linux (glibc reserves 32 and 33).
const RTMIN: i32 = 34;

/// Highest signal number on Linux.
pub const MAX_SIGNAL: i32 = 64;

/// `SIGTERM` for 15, `SIG34` past the named ones; `None` outside 1..=64.
pub fn signal_name(n: i32) -> Option<String> {
    match n {
        1..=31 => Some(format!("SIG{}", NAMES[(n - 1) as usize])),
        32..=MAX_SIGNAL => Some(format!("SIG{n}")),
        _ => None,
    }
}

/// The number of a signal given as `TERM`, `SIGTERM`, `term`, `15` or `RTMIN+2`; `None` when
/// unknown or out of range.
pub fn signal_number(s: &str) -> Option<i32> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return (1..=MAX_SIGNAL).contains(&n).then_some(n);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some(pos) = NAMES.iter().position(|x| *x == name) {
        return Some(pos as i32 + 1);
    }
    if name == "IOT" {
        return Some(6);
    }
    if name == "POLL" {
        return Some(29);
    }
    if name == "RTMIN" {
        return Some(RTMIN);
    }
    let off: i32 = name.strip_prefix("RTMIN+")?.parse().ok()?;
    let n = RTMIN.checked_add(off)?;
    (off >= 0 && n <= MAX_SIGNAL).then_some(n)
}

/// An exact, compact duration: `5s`, `1m30s`, `2h`, `1d2h3m4s`, `1.500s` for whole
/// seconds plus milliseconds, `0s` for zero.
pub fn exact_duration(ms: u64) -> String {
    let (s, rest) = (ms / 1000, ms % 1000);
    let (d, h, m, sec) = (s / 86400, s % 86400 / 3600, s % 3600 / 60, s % 60);
    let mut out = String::new();
    if d > 0 {
        out.push_str(&format!("{d}d"));
    }
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if rest > 0 {
        out.push_str(&format!("{sec}.{rest:03}s"));
    } else if sec > 0 || out.is_empty() {
        out.push_str(&format!("{sec}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_and_numbers() {
        assert_eq!(signal_number("TERM"), Some(15));
        assert_eq!(signal_number("SIGterm"), Some(15));
        assert_eq!(signal_number("usr1"), Some(10));
        assert_eq!(signal_number("9"), Some(9));
        assert_eq!(signal_number("RTMIN+2"), Some(36));
        assert_eq!(signal_number("FOO"), None);
        assert_eq!(signal_number("0"), None);
        assert_eq!(signal_number("65"), None);
        assert_eq!(signal_number("RTMIN+31"), None);
        assert_eq!(signal_name(15).as_deref(), Some("SIGTERM"));
        assert_eq!(signal_name(40).as_deref(), Some("SIG40"));
        assert_eq!(signal_name(0), None);
        for n in 1..=31 {
            assert_eq!(signal_number(&signal_name(n).unwrap_or_default()), Some(n));
        }
    }

    #[test]
    fn new_messages_round_trip() {
        use crate::{decode, encode, ClientRequest, JobId, SchedulerMsg};
        let m = SchedulerMsg::SignalJob {
            job: JobId(7),
            epoch: 2,
            signal: 15,
        };
        let bytes = encode(&m);
        assert_eq!(decode::<SchedulerMsg>(&bytes[4..]).ok(), Some(m));
        for r in [
            ClientRequest::Release(JobId(3).into()),
            ClientRequest::Hold(JobId(4).into()),
        ] {
            let bytes = encode(&r);
            assert_eq!(decode::<ClientRequest>(&bytes[4..]).ok(), Some(r));
        }
    }

    #[test]
    fn exact_durations() {
        assert_eq!(exact_duration(0), "0s");
        assert_eq!(exact_duration(5000), "5s");
        assert_eq!(exact_duration(90_000), "1m30s");
        assert_eq!(exact_duration(7_200_000), "2h");
        assert_eq!(exact_duration(5_400_000), "1h30m");
        assert_eq!(exact_duration(93_784_000), "1d2h3m4s");
        assert_eq!(exact_duration(1500), "1.500s");
    }
}
