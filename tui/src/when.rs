//! The words of `--time`, `--signal` and `--begin`, and the begin time a job waits for in the
//! user's local time zone (`waiting for 22:00`). Pure: "now" and the time zone are
//! parameters ([`Zone`]; [`LocalZone`] is the machine's, through libc's `localtime_r` and
//! `mktime`), so the tests fix both.

use graze_proto::{exact_duration, signal_name, signal_number, JobView, TimeSignal};

/// A duration: `90s`, `45m`, `2h`, `1h30m`, `1d12h`, `500ms`, or Slurm's `H:MM:SS` and
/// `D-H:MM:SS`. A bare number is refused (Slurm reads it as minutes; say which you mean).
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration: give e.g. 90s, 45m, 2h, 1h30m or 1:30:00".into());
    }
    if t.contains(':') {
        return parse_clock_duration(t);
    }
    if t.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "a duration needs a unit: {t}s, {t}m or {t}h (s, m, h, d; or H:MM:SS)"
        ));
    }
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err("expected a number before each unit, as in 1h30m".into());
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| "number too large".to_string())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let ms = match unit {
            "ms" => 1,
            "s" | "sec" => 1000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            other => {
                return Err(format!(
                    "unknown unit '{other}': use ms, s, m, h or d, as in 1h30m"
                ))
            }
        };
        total = n
            .checked_mul(ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| "duration too large".to_string())?;
    }
    Ok(total)
}

/// `H:MM:SS` or `D-H:MM:SS`.
fn parse_clock_duration(t: &str) -> Result<u64, String> {
    let (days, clock) = match t.split_once('-') {
        Some((d, c)) => (
            d.parse::<u64>()
                .map_err(|_| format!("'{d}' is not a number of days (D-H:MM:SS)"))?,
            c,
        ),
        None => (0, t),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let [h, m, s] = parts.as_slice() else {
        return Err(
            "write H:MM:SS (or D-H:MM:SS); MM:SS and H:MM are ambiguous: use 1h30m, 90s".into(),
        );
    };
    let num = |x: &str, max: u64| -> Result<u64, String> {
        let v: u64 = x
            .parse()
            .map_err(|_| format!("'{x}' is not a number (H:MM:SS)"))?;
        if v > max {
            return Err(format!("'{x}' is above {max} (H:MM:SS)"));
        }
        Ok(v)
    };
    let (h, m, s) = (num(h, 1_000_000)?, num(m, 59)?, num(s, 59)?);
    Ok((((days * 24 + h) * 60 + m) * 60 + s) * 1000)
}

/// `--time`: a duration of at least one second.
pub fn parse_time_limit(s: &str) -> Result<u64, String> {
    if s.trim().parse::<u64>() == Ok(0) {
        return Err("a time limit must be at least 1s".into());
    }
    let ms = parse_duration(s)?;
    if ms < 1000 {
        return Err("a time limit must be at least 1s".into());
    }
    Ok(ms)
}

/// Default of the `@T` part of `--signal SIG` (as Slurm's): 60 s before the limit.
pub const DEFAULT_SIGNAL_BEFORE_MS: u64 = 60_000;

/// `--signal SIG[@T]`: a signal name (`TERM`, `SIGUSR1`, `RTMIN+1`) or number, and how long
/// before the time limit it is sent (default 60s).
pub fn parse_signal(s: &str) -> Result<TimeSignal, String> {
    let (sig, at) = match s.split_once('@') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let signal = signal_number(sig).ok_or_else(|| {
        format!("unknown signal '{sig}': give a name such as TERM, USR1, INT or a number 1-64")
    })?;
    let before_ms = match at {
        Some(a) => parse_duration(a)?,
        None => DEFAULT_SIGNAL_BEFORE_MS,
    };
    if before_ms == 0 {
        return Err("the time before the limit must be more than 0s".into());
    }
    Ok(TimeSignal { signal, before_ms })
}

/// `TERM@60s` for a signal spec, as the user would write it.
pub fn signal_words(sig: &TimeSignal) -> String {
    let name = signal_name(sig.signal).unwrap_or_else(|| sig.signal.to_string());
    format!(
        "{}@{}",
        name.trim_start_matches("SIG"),
        exact_duration(sig.before_ms)
    )
}

/// A `--begin` as written, not yet tied to a day: resolved with [`Begin::resolve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Begin {
    /// `22:00`: the next such time (today if still ahead, else tomorrow).
    Next {
        /// Seconds after local midnight.
        secs: u32,
    },
    /// `today 19:00`, `tomorrow 19:00` (`tomorrow`: at midnight): that many days after today.
    DayAt {
        /// Days after today.
        days: u32,
        /// Seconds after local midnight.
        secs: u32,
    },
    /// `2026-12-03T19:00` (or with a space; a date alone means its midnight).
    At {
        /// Year.
        year: i64,
        /// Month 1-12.
        month: u32,
        /// Day 1-31.
        day: u32,
        /// Seconds after local midnight.
        secs: u32,
    },
    /// `now+2h`.
    After {
        /// How long after now (ms).
        ms: u64,
    },
}

/// `HH:MM` or `HH:MM:SS`, 00:00 to 23:59:59.
fn parse_clock(s: &str) -> Result<u32, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (h, m, sec) = match parts.as_slice() {
        [h, m] => (*h, *m, "0"),
        [h, m, s] => (*h, *m, *s),
        _ => {
            return Err(format!(
                "'{s}' is not a time of day: write HH:MM or HH:MM:SS"
            ))
        }
    };
    let num = |x: &str, max: u32, what: &str| -> Result<u32, String> {
        let v: u32 = x
            .parse()
            .ok()
            .filter(|_| !x.is_empty() && x.len() <= 2)
            .ok_or_else(|| format!("'{x}' is not a valid {what} in '{s}'"))?;
        if v > max {
            return Err(format!(
                "{what} {v} is out of range in '{s}' (at most {max}; 00:00 to 23:59)"
            ));
        }
        Ok(v)
    };
    Ok(num(h, 23, "hour")? * 3600 + num(m, 59, "minute")? * 60 + num(sec, 59, "second")?)
}

/// Parse `--begin`: `22:00`, `today 19:00`, `tomorrow [19:00]`, `2026-12-03`,
/// `2026-12-03T19:00[:SS]` (or a space for `T`), `now`, `now+2h`.
pub fn parse_begin(s: &str) -> Result<Begin, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    if lower == "now" {
        return Ok(Begin::After { ms: 0 });
    }
    if let Some(d) = lower.strip_prefix("now+") {
        return Ok(Begin::After {
            ms: parse_duration(d)?,
        });
    }
    let mut words = lower.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(w @ ("today" | "tomorrow")), clock, None) => {
            let days = u32::from(w == "tomorrow");
            let secs = match clock {
                Some(c) => parse_clock(c)?,
                None if days == 1 => 0,
                None => return Err("'today' needs a time, as in 'today 19:00'".into()),
            };
            return Ok(Begin::DayAt { days, secs });
        }
        (Some(c), None, None) if !c.contains('-') => {
            return Ok(Begin::Next {
                secs: parse_clock(c)?,
            })
        }
        _ => {}
    }
    // A date, with an optional time after 'T' or a space.
    let (date, clock) = match t.split_once(['T', ' ']) {
        Some((d, c)) => (d, Some(c.trim())),
        None => (t, None),
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(
            "not a begin time: write 22:00, 'tomorrow 19:00', 2026-12-03T19:00 or now+2h".into(),
        );
    };
    let year: i64 = y
        .parse()
        .ok()
        .filter(|_| y.len() == 4)
        .ok_or_else(|| format!("'{y}' is not a four-digit year in '{date}'"))?;
    let month: u32 = m
        .parse()
        .ok()
        .filter(|v| (1..=12).contains(v))
        .ok_or_else(|| format!("'{m}' is not a month 01-12 in '{date}'"))?;
    let last = days_in_month(year, month);
    let day: u32 = d
        .parse()
        .ok()
        .filter(|v| (1..=last).contains(v))
        .ok_or_else(|| format!("'{d}' is not a day 01-{last} of that month in '{date}'"))?;
    let secs = match clock {
        Some(c) => parse_clock(c)?,
        None => 0,
    };
    Ok(Begin::At {
        year,
        month,
        day,
        secs,
    })
}

/// A time zone: how local wall-clock seconds relate to UTC.
pub trait Zone {
    /// UTC offset (seconds east) in effect at UTC time `utc_s`.
    fn offset_at(&self, utc_s: i64) -> i64;
    /// The UTC time of local wall-clock time `local_s` (seconds since 1970-01-01 00:00 local);
    /// in a daylight-saving gap or overlap, what `mktime` makes of it.
    fn to_utc(&self, local_s: i64) -> i64;
}

/// A fixed offset from UTC (seconds east), for tests.
#[derive(Clone, Copy, Debug)]
pub struct FixedZone(pub i64);

impl Zone for FixedZone {
    fn offset_at(&self, _utc_s: i64) -> i64 {
        self.0
    }
    fn to_utc(&self, local_s: i64) -> i64 {
        local_s - self.0
    }
}

/// The machine's local time zone (`TZ`, `/etc/localtime`), through libc.
#[derive(Clone, Copy, Debug)]
pub struct LocalZone;

impl Zone for LocalZone {
    fn offset_at(&self, utc_s: i64) -> i64 {
        let t = utc_s as libc::time_t;
        // SAFETY: an all-zero `tm` is a valid value; localtime_r writes only into it.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for the call; localtime_r is thread-safe.
        if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
            return 0;
        }
        tm.tm_gmtoff
    }
    fn to_utc(&self, local_s: i64) -> i64 {
        let (y, mo, d) = civil_from_days(local_s.div_euclid(86400));
        let secs = local_s.rem_euclid(86400);
        // SAFETY: an all-zero `tm` is a valid value.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        tm.tm_year = (y - 1900) as libc::c_int;
        tm.tm_mon = mo as libc::c_int - 1;
        tm.tm_mday = d as libc::c_int;
        tm.tm_hour = (secs / 3600) as libc::c_int;
        tm.tm_min = (secs % 3600 / 60) as libc::c_int;
        tm.tm_sec = (secs % 60) as libc::c_int;
        tm.tm_isdst = -1;
        // SAFETY: `tm` is valid for the call; mktime only reads and normalises it.
        let t = unsafe { libc::mktime(&mut tm) };
        if t == -1 {
            local_s - self.offset_at(local_s)
        } else {
            t as i64
        }
    }
}

impl Begin {
    /// The begin time in ms since the epoch, for a user at `now_ms` in `zone`.
    pub fn resolve(&self, now_ms: u64, zone: &dyn Zone) -> u64 {
        let now_s = (now_ms / 1000) as i64;
        let local_now = now_s + zone.offset_at(now_s);
        let today = local_now.div_euclid(86400);
        let at_local = |days: i64, secs: u32| -> i64 { (today + days) * 86400 + i64::from(secs) };
        let utc_s = match *self {
            Begin::After { ms } => return now_ms.saturating_add(ms),
            Begin::Next { secs } => {
                let t = zone.to_utc(at_local(0, secs));
                if t >= now_s {
                    t
                } else {
                    zone.to_utc(at_local(1, secs))
                }
            }
            Begin::DayAt { days, secs } => zone.to_utc(at_local(i64::from(days), secs)),
            Begin::At {
                year,
                month,
                day,
                secs,
            } => zone.to_utc(days_from_civil(year, month, day) * 86400 + i64::from(secs)),
        };
        u64::try_from(utc_s).unwrap_or(0).saturating_mul(1000)
    }
}

/// How a begin time reads for a user at `now_ms` in `zone`: `22:00` today, `tomorrow 19:00`,
/// else `2026-12-03 19:00` (seconds only when not zero).
pub fn begin_words(begin_ms: u64, now_ms: u64, zone: &dyn Zone) -> String {
    let local = |ms: u64| {
        let s = (ms / 1000) as i64;
        s + zone.offset_at(s)
    };
    let (b, n) = (local(begin_ms), local(now_ms));
    let secs = b.rem_euclid(86400);
    let clock = if secs % 60 == 0 {
        format!("{:02}:{:02}", secs / 3600, secs % 3600 / 60)
    } else {
        format!(
            "{:02}:{:02}:{:02}",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    };
    let (bd, nd) = (b.div_euclid(86400), n.div_euclid(86400));
    if bd == nd {
        clock
    } else if bd == nd + 1 {
        format!("tomorrow {clock}")
    } else {
        let (y, m, d) = civil_from_days(bd);
        format!("{y:04}-{m:02}-{d:02} {clock}")
    }
}

/// Why a queued job waits, as the CLI shows it: the scheduler's reason, with a begin time in
/// the user's local time (`waiting for 22:00`).
pub fn waiting_for_at(job: &JobView, now_ms: u64, zone: &dyn Zone) -> Option<String> {
    let w = job.waiting_for.as_ref()?;
    match job.spec.begin_ms {
        Some(b) if w == graze_proto::BEGIN_WAIT => {
            Some(format!("waiting for {}", begin_words(b, now_ms, zone)))
        }
        _ => Some(w.clone()),
    }
}

/// [`waiting_for_at`] now, in the machine's time zone.
pub fn waiting_for(job: &JobView) -> Option<String> {
    waiting_for_at(job, crate::format::now_ms(), &LocalZone)
}

/// Fill the spec's `--time`, `--signal`, `--begin` and `--hold` from `graze submit`'s
/// arguments, for a user at `now_ms` in `zone`; refuses a signal without a limit or not before it.
pub fn apply_submit_args(
    args: &crate::cli::SubmitArgs,
    spec: &mut graze_proto::JobSpec,
    now_ms: u64,
    zone: &dyn Zone,
) -> anyhow::Result<()> {
    if let Some(sig) = &args.signal {
        let Some(limit) = args.time else {
            anyhow::bail!(
                "invalid --signal '{}': a signal before the time limit needs --time",
                signal_words(sig)
            );
        };
        if sig.before_ms >= limit {
            anyhow::bail!(
                "invalid --signal '{}': it must come before the time limit (--time {}), not at or above it",
                signal_words(sig),
                exact_duration(limit)
            );
        }
    }
    spec.time_limit_ms = args.time;
    spec.time_signal = args.signal;
    spec.begin_ms = args.begin.map(|b| b.resolve(now_ms, zone));
    spec.hold = args.hold;
    Ok(())
}

/// `graze show` rows for the job's time limit, signal, begin time and hold.
pub fn limit_rows(job: &JobView, rows: &mut Vec<(&str, String)>) {
    let spec = &job.spec;
    if let Some(t) = spec.time_limit_ms {
        rows.push(("time limit", exact_duration(t)));
    }
    if let Some(sig) = &spec.time_signal {
        rows.push(("signal", signal_words(sig)));
    }
    if let Some(b) = spec.begin_ms {
        rows.push((
            "begin",
            format!(
                "{} ({})",
                begin_words(b, crate::format::now_ms(), &LocalZone),
                crate::format::timestamp(b)
            ),
        ));
    }
    if spec.hold {
        rows.push(("hold", "held: `graze release` lets it start".into()));
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// 2026-12-02 20:30:00 in UTC+1 (19:30:00 UTC).
    const NOW: u64 = 1_796_239_800_000;
    const CET: FixedZone = FixedZone(3600);

    fn begin(s: &str) -> u64 {
        parse_begin(s).unwrap().resolve(NOW, &CET)
    }

    /// ms of a local (UTC+1) wall-clock date-time.
    fn local(y: i64, mo: u32, d: u32, h: i64, mi: i64) -> u64 {
        let s = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 - 3600;
        s as u64 * 1000
    }

    #[test]
    fn now_is_what_the_tests_think() {
        assert_eq!(local(2026, 12, 2, 20, 30), NOW);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(90_000));
        assert_eq!(parse_duration("45m"), Ok(2_700_000));
        assert_eq!(parse_duration("2h"), Ok(7_200_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("1d12h"), Ok(129_600_000));
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("1:30:00"), Ok(5_400_000));
        assert_eq!(parse_duration("2-01:00:05"), Ok(176_405_000));
        assert!(parse_duration("30").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("1:30").unwrap_err().contains("ambiguous"));
        assert!(parse_duration("1:60:00").unwrap_err().contains("above 59"));
        assert!(parse_duration("5x")
            .unwrap_err()
            .contains("unknown unit 'x'"));
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert_eq!(parse_time_limit("5s"), Ok(5000));
        assert!(parse_time_limit("0s").unwrap_err().contains("at least 1s"));
        assert!(parse_time_limit("0").is_err());
        assert!(parse_time_limit("500ms").is_err());
    }

    #[test]
    fn signals() {
        let t = |signal, before_ms| TimeSignal { signal, before_ms };
        assert_eq!(parse_signal("TERM@60s"), Ok(t(15, 60_000)));
        assert_eq!(parse_signal("SIGUSR1@2m"), Ok(t(10, 120_000)));
        assert_eq!(parse_signal("10@5s"), Ok(t(10, 5000)));
        assert_eq!(parse_signal("INT"), Ok(t(2, DEFAULT_SIGNAL_BEFORE_MS)));
        assert!(parse_signal("FOO@1s")
            .unwrap_err()
            .contains("unknown signal 'FOO'"));
        assert!(parse_signal("TERM@0s")
            .unwrap_err()
            .contains("more than 0s"));
        assert!(parse_signal("TERM@x").is_err());
        assert!(parse_signal("99@1s").is_err());
        assert_eq!(signal_words(&t(15, 90_000)), "TERM@1m30s");
    }

    #[test]
    fn begin_times() {
        // 22:00 is still ahead today; 19:00 has passed, so tomorrow.
        assert_eq!(begin("22:00"), local(2026, 12, 2, 22, 0));
        assert_eq!(begin("19:00"), local(2026, 12, 3, 19, 0));
        assert_eq!(begin("20:30"), NOW);
        assert_eq!(begin("tomorrow 19:00"), local(2026, 12, 3, 19, 0));
        assert_eq!(begin("Tomorrow"), local(2026, 12, 3, 0, 0));
        assert_eq!(begin("today 23:15"), local(2026, 12, 2, 23, 15));
        assert_eq!(begin("2026-12-03T19:00"), local(2026, 12, 3, 19, 0));
        assert_eq!(
            begin("2026-12-31 23:59:30"),
            local(2026, 12, 31, 23, 59) + 30_000
        );
        assert_eq!(begin("2027-01-01"), local(2027, 1, 1, 0, 0));
        assert_eq!(begin("now+2h"), NOW + 7_200_000);
        assert_eq!(begin("now"), NOW);
        // A year boundary from the last day.
        let dec31 = local(2026, 12, 31, 23, 0);
        assert_eq!(
            parse_begin("22:00").unwrap().resolve(dec31, &CET),
            local(2027, 1, 1, 22, 0)
        );
    }

    #[test]
    fn bad_begin_times() {
        for (s, want) in [
            ("25:00", "hour 25 is out of range"),
            ("22:60", "minute 60 is out of range"),
            ("2026-02-30T10:00", "not a day 01-28"),
            ("2026-13-01", "not a month"),
            ("today", "needs a time"),
            ("tomorrow 7pm", "not a time of day"),
            ("next week", "not a begin time"),
            ("now+soon", "expected a number"),
            ("22", "not a time of day"),
        ] {
            let e = parse_begin(s).unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
        }
    }

    #[test]
    fn begin_words_in_local_time() {
        assert_eq!(begin_words(local(2026, 12, 2, 22, 0), NOW, &CET), "22:00");
        assert_eq!(
            begin_words(local(2026, 12, 3, 19, 0), NOW, &CET),
            "tomorrow 19:00"
        );
        assert_eq!(
            begin_words(local(2026, 12, 24, 8, 5) + 7000, NOW, &CET),
            "2026-12-24 08:05:07"
        );
        // The same instant in UTC reads an hour earlier.
        assert_eq!(
            begin_words(local(2026, 12, 2, 22, 0), NOW, &FixedZone(0)),
            "21:00"
        );
    }

    #[test]
    fn waiting_reason_names_the_local_begin_time() {
        let mut job: JobView = serde_json::from_value(serde_json::json!({
            "id": 1, "spec": {"name": null, "nprocs": 1, "unit": "core", "priority": 0,
            "groups": [], "nodes": [], "command": ["x"], "cwd": null, "env": [], "user": "u"},
            "state": "queued", "waiting_for": graze_proto::BEGIN_WAIT, "submitted_ms": 0,
            "started_ms": null, "ended_ms": null, "allocation": [], "exit": null,
            "requeues": 0, "events": []
        }))
        .unwrap();
        job.spec.begin_ms = Some(local(2026, 12, 2, 22, 0));
        assert_eq!(
            waiting_for_at(&job, NOW, &CET).as_deref(),
            Some("waiting for 22:00")
        );
        job.waiting_for = Some("held".into());
        assert_eq!(waiting_for_at(&job, NOW, &CET).as_deref(), Some("held"));
    }

    fn submit(args: &[&str]) -> Result<graze_proto::JobSpec, String> {
        use clap::Parser as _;
        let mut all = vec!["graze", "submit", "-n", "1"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--", "prog"]);
        let cli = crate::cli::Cli::try_parse_from(all).map_err(|e| e.to_string())?;
        let crate::cli::Command::Submit(a) = cli.command else {
            return Err("not a submit".into());
        };
        let mut spec = graze_proto::JobSpec::default();
        apply_submit_args(&a, &mut spec, NOW, &CET).map_err(|e| e.to_string())?;
        Ok(spec)
    }

    #[test]
    fn submit_options() {
        let s = submit(&[
            "--time", "5s", "--signal", "TERM@2s", "--begin", "22:00", "--hold",
        ])
        .unwrap();
        assert_eq!(s.time_limit_ms, Some(5000));
        assert_eq!(
            s.time_signal,
            Some(TimeSignal {
                signal: 15,
                before_ms: 2000
            })
        );
        assert_eq!(s.begin_ms, Some(local(2026, 12, 2, 22, 0)));
        assert!(s.hold);
        let plain = submit(&[]).unwrap();
        assert_eq!(
            (
                plain.time_limit_ms,
                plain.time_signal,
                plain.begin_ms,
                plain.hold
            ),
            (None, None, None, false)
        );
    }

    #[test]
    fn bad_submit_options_quote_the_value() {
        for (args, want) in [
            (
                &["--time", "0"][..],
                "invalid value '0' for '--time <DURATION>': a time limit must be at least 1s",
            ),
            (&["--time", "0s"][..], "at least 1s"),
            (
                &["--begin", "25:00"][..],
                "invalid value '25:00' for '--begin <TIME>'",
            ),
            (
                &["--signal", "FOO@1s"][..],
                "invalid value 'FOO@1s' for '--signal <SIG[@T]>'",
            ),
            (
                &["--time", "1h", "--signal", "TERM@2h"][..],
                "invalid --signal 'TERM@2h': it must come before the time limit (--time 1h)",
            ),
            (&["--signal", "TERM@2s"][..], "needs --time"),
        ] {
            let e = submit(args).unwrap_err();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn the_machine_zone_round_trips() {
        // Whatever the machine's zone, local wall-clock time maps back to itself.
        let z = LocalZone;
        let utc = (NOW / 1000) as i64;
        let local_s = utc + z.offset_at(utc);
        assert_eq!(z.to_utc(local_s), utc);
    }
}
