//! Availability windows: when a PC may run graze work at all, in local time.
//!
//! A window is written `DAYS [HH:MM[:SS]-HH:MM[:SS]]`:
//!
//! - `DAYS` is a day (`Mon`), a range (`Mon-Fri`, `Fri-Mon` wraps), a list (`Sat,Sun`,
//!   `Mon-Wed,Fri`), or `daily`;
//! - without times the window covers those days entirely (`Sat-Sun` = weekends all day);
//! - a time range whose end is not after its start runs overnight: `Mon-Fri 19:00-07:00`
//!   opens Monday 19:00 and closes Tuesday 07:00, ..., Friday 19:00 to Saturday 07:00;
//! - `24:00` is the end of the day.
//!
//! A PC with no windows is always available. Everything here is pure: [`Windows::contains`]
//! takes the weekday and the second of the day; [`local_now`] reads them from the clock.

use std::fmt;
use std::str::FromStr;

const DAY: u32 = 24 * 3600;

/// A day of the week, Monday = 0.
pub type Weekday = u8;

/// One window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Days the window opens on, bit 0 = Monday.
    days: u8,
    /// Opening second of the day.
    start: u32,
    /// Closing second of the day; `<= start` means the next day.
    end: u32,
    text: String,
}

/// Why a window does not parse. The message quotes the bad part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid availability window '{text}': {why}")]
pub struct WindowError {
    text: String,
    why: String,
}

impl WindowError {
    /// Why the window is invalid, without the window itself.
    pub fn why(&self) -> &str {
        &self.why
    }
}

fn err(text: &str, why: impl Into<String>) -> WindowError {
    WindowError {
        text: text.to_string(),
        why: why.into(),
    }
}

fn day(s: &str) -> Option<u8> {
    const FULL: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let l = s.to_ascii_lowercase();
    if l.len() < 3 {
        return None;
    }
    FULL.iter().position(|f| f.starts_with(&l)).map(|i| i as u8)
}

fn parse_days(text: &str, s: &str) -> Result<u8, WindowError> {
    if s.eq_ignore_ascii_case("daily") || s == "*" {
        return Ok(0x7f);
    }
    let mut days = 0u8;
    for part in s.split(',') {
        let one = |w: &str| {
            day(w).ok_or_else(|| {
                err(
                    text,
                    format!("'{w}' is not a day; write e.g. Mon, Mon-Fri, Sat,Sun or daily"),
                )
            })
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (one(a)?, one(b)?);
                let mut d = a;
                loop {
                    days |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days |= 1 << one(part)?,
        }
    }
    Ok(days)
}

fn parse_time(text: &str, s: &str) -> Result<u32, WindowError> {
    let bad = || {
        err(
            text,
            format!("'{s}' is not a time of day; write HH:MM or HH:MM:SS (00:00 to 24:00)"),
        )
    };
    let parts: Vec<&str> = s.split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
        return Err(bad());
    }
    let n: Vec<u32> = parts
        .iter()
        .map(|p| p.parse::<u32>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let (h, m, sec) = (n[0], n[1], n.get(2).copied().unwrap_or(0));
    if m > 59 || sec > 59 || h > 24 || (h == 24 && (m, sec) != (0, 0)) {
        return Err(bad());
    }
    Ok(h * 3600 + m * 60 + sec)
}

impl FromStr for Window {
    type Err = WindowError;

    fn from_str(text: &str) -> Result<Window, WindowError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let (days, range) = match words.as_slice() {
            [d] => (*d, None),
            [d, r] => (*d, Some(*r)),
            _ => {
                return Err(err(
                    text,
                    "write DAYS [HH:MM-HH:MM], e.g. 'Mon-Fri 19:00-07:00' or 'Sat-Sun'",
                ))
            }
        };
        let days = parse_days(text, days)?;
        let (start, end) = match range {
            None => (0, DAY),
            Some(r) => {
                let (a, b) = r.split_once('-').ok_or_else(|| {
                    err(
                        text,
                        format!("'{r}' is not a time range; write HH:MM-HH:MM"),
                    )
                })?;
                let (a, b) = (parse_time(text, a)?, parse_time(text, b)?);
                if a == b {
                    return Err(err(text, "the window opens and closes at the same time"));
                }
                (a, b)
            }
        };
        Ok(Window {
            days,
            start,
            end,
            text: text.to_string(),
        })
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Window {
    fn opens_on(&self, d: Weekday) -> bool {
        self.days & (1 << (d % 7)) != 0
    }

    /// True when the window is open on weekday `d` (Monday = 0) at second `sec` of the day.
    pub fn contains(&self, d: Weekday, sec: u32) -> bool {
        if self.end > self.start {
            self.opens_on(d) && sec >= self.start && sec < self.end
        } else {
            // Overnight: open from `start` on an opening day until `end` the next day.
            (self.opens_on(d) && sec >= self.start)
                || (self.opens_on((d + 6) % 7) && sec < self.end)
        }
    }
}

/// A PC's windows; empty = always available.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Windows(pub Vec<Window>);

impl Windows {
    /// True when any window is open (or there are none).
    pub fn contains(&self, d: Weekday, sec: u32) -> bool {
        self.0.is_empty() || self.0.iter().any(|w| w.contains(d, sec))
    }

    /// Seconds from weekday `d`, second `sec` until no window is open any more, while one is
    /// open now: the next window end at which no other window carries on (overlapping and
    /// adjacent windows join). `None` when none is open now, when there are no windows
    /// (always available) or when the windows stay open for the coming week.
    pub fn closes_in(&self, d: Weekday, sec: u32) -> Option<u32> {
        if self.0.is_empty() || !self.contains(d, sec) {
            return None;
        }
        // Availability can only end at some window's end: try every end in the next 8 days,
        // nearest first, and take the first after which nothing is open.
        let mut ends: Vec<u32> = (0..8u32)
            .flat_map(|k| self.0.iter().map(move |w| k * DAY + w.end))
            .filter(|t| *t > sec)
            .map(|t| t - sec)
            .collect();
        ends.sort_unstable();
        ends.dedup();
        ends.into_iter().find(|off| {
            let t = sec + off;
            !self.contains(((u32::from(d) + t / DAY) % 7) as Weekday, t % DAY)
        })
    }

    /// When the open window closes (ms since the Unix epoch), from the local clock; see
    /// [`Windows::closes_in`]. Local time's offset is taken as fixed until then (a daylight
    /// saving change in between shifts the answer by its hour).
    pub fn closes_at_ms(&self) -> Option<u64> {
        if self.0.is_empty() {
            return None;
        }
        let t = unix_secs();
        let (d, s) = local_at(t);
        let off = self.closes_in(d, s)?;
        Some((t.max(0) as u64 + u64::from(off)) * 1000)
    }

    /// True when open now, in local time.
    pub fn open_now(&self) -> bool {
        self.0.is_empty() || {
            let (d, s) = local_now();
            self.contains(d, s)
        }
    }
}

/// The local weekday (Monday = 0) and second of the day, from the C library's time zone
/// (`TZ`, else `/etc/localtime`).
pub fn local_now() -> (Weekday, u32) {
    local_at(unix_secs())
}

/// `HH:MM` local time at `ms` since the Unix epoch.
pub fn local_hhmm(ms: u64) -> String {
    let (_, s) = local_at((ms / 1000) as libc::time_t);
    format!("{:02}:{:02}", s / 3600, (s % 3600) / 60)
}

/// Seconds since the Unix epoch, from the C library's clock.
fn unix_secs() -> libc::time_t {
    // SAFETY: time(NULL) has no memory effects.
    unsafe { libc::time(std::ptr::null_mut()) }
}

/// The local weekday (Monday = 0) and second of the day at Unix time `t`.
fn local_at(t: libc::time_t) -> (Weekday, u32) {
    // SAFETY: localtime_r writes only into `tm`, which is a plain C struct we own, and is
    // thread safe.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            let secs = u32::try_from(t.rem_euclid(i64::from(DAY))).unwrap_or(0);
            // 1970-01-01 was a Thursday.
            let d = ((t.div_euclid(i64::from(DAY)) + 3).rem_euclid(7)) as u8;
            return (d, secs);
        }
        let d = ((tm.tm_wday + 6) % 7) as u8;
        let s = (tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec.min(59)) as u32;
        (d, s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn w(s: &str) -> Window {
        s.parse().unwrap()
    }
    const MON: u8 = 0;
    const TUE: u8 = 1;
    const FRI: u8 = 4;
    const SAT: u8 = 5;
    const SUN: u8 = 6;
    fn at(h: u32, m: u32) -> u32 {
        h * 3600 + m * 60
    }

    #[test]
    fn overnight_weekdays() {
        let x = w("Mon-Fri 19:00-07:00");
        assert!(!x.contains(MON, at(18, 59)));
        assert!(x.contains(MON, at(19, 0)));
        assert!(x.contains(TUE, at(6, 59)));
        assert!(!x.contains(TUE, at(7, 0)));
        assert!(
            !x.contains(MON, at(6, 0)),
            "Sunday night is not a weekday night"
        );
        assert!(x.contains(SAT, at(6, 0)), "Friday night runs into Saturday");
        assert!(!x.contains(SAT, at(8, 0)));
        assert!(!x.contains(SUN, at(20, 0)));
    }

    #[test]
    fn whole_days_and_lists() {
        let x = w("Sat-Sun");
        assert!(x.contains(SAT, 0));
        assert!(x.contains(SUN, DAY - 1));
        assert!(!x.contains(MON, 0));
        let y = w("sat,Sunday 08:00-24:00");
        assert!(y.contains(SUN, DAY - 1));
        assert!(!y.contains(SUN, at(7, 59)));
        let z = w("Fri-Mon");
        assert!(z.contains(FRI, 0) && z.contains(SUN, 0) && z.contains(MON, 0));
        assert!(!z.contains(TUE, 0));
        let d = w("daily 12:00:30-12:00:40");
        assert!(d.contains(TUE, at(12, 0) + 30));
        assert!(!d.contains(TUE, at(12, 0) + 40));
    }

    #[test]
    fn set_of_windows() {
        let ws = Windows(vec![w("Mon-Fri 19:00-07:00"), w("Sat-Sun")]);
        assert!(ws.contains(SUN, at(12, 0)));
        assert!(
            !ws.contains(MON, at(3, 0)),
            "weekends end at midnight; Sunday night is not in"
        );
        assert!(!ws.contains(TUE, at(12, 0)));
        assert!(Windows::default().contains(TUE, at(12, 0)));
    }

    #[test]
    fn errors_quote_the_value() {
        for (text, want) in [
            ("Mon-Fry 19:00-07:00", "'Fry' is not a day"),
            ("Mon-Fri 19:00", "'19:00' is not a time range"),
            ("Mon-Fri 25:00-07:00", "'25:00' is not a time of day"),
            ("Mon-Fri 7:00-08:00", "'7:00' is not a time of day"),
            ("Mon 08:00-08:00", "opens and closes at the same time"),
            ("", "write DAYS"),
            ("Mon 08:00-09:00 extra", "write DAYS"),
        ] {
            let e = text.parse::<Window>().unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("invalid availability window '{text}'")),
                "{e}"
            );
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn closes_in_joins_windows_and_wraps() {
        let ws = Windows(vec![w("Mon-Fri 19:00-07:00")]);
        // Monday 20:00: closes Tuesday 07:00, 11 h later.
        assert_eq!(ws.closes_in(MON, at(20, 0)), Some(11 * 3600));
        assert_eq!(ws.closes_in(TUE, at(6, 59)), Some(60));
        assert_eq!(ws.closes_in(TUE, at(12, 0)), None, "closed now");
        // Friday night then the weekend: open from Friday 19:00 to Monday 00:00.
        let ws = Windows(vec![w("Mon-Fri 19:00-07:00"), w("Sat-Sun")]);
        assert_eq!(ws.closes_in(FRI, at(23, 0)), Some(DAY + 3600 + DAY));
        assert_eq!(ws.closes_in(SUN, at(23, 0)), Some(3600));
        // Open all week: no end within the week.
        assert_eq!(Windows(vec![w("daily")]).closes_in(TUE, 5), None);
        assert_eq!(Windows::default().closes_in(TUE, 5), None);
    }

    #[test]
    fn local_clock_is_sane() {
        let (d, s) = local_now();
        assert!(d < 7 && s < DAY);
    }
}
