//! Owner idle detection and the availability rule.
//!
//! An [`IdleSource`] tells how long ago the PC's owner last did something. The owner's idle
//! time is the minimum over all sources; a source that cannot tell counts as "active now",
//! so a broken source never offers the PC by mistake.

use graze_proto::Availability;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

/// Below this idle time the owner counts as active (rather than idle but waiting).
pub const OWNER_ACTIVE: Duration = Duration::from_secs(2);

/// A configured idle source, as written in the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdleSourceSpec {
    /// `file:PATH`: idle time = now minus the modification time of the file.
    File(PathBuf),
    /// `always-idle`: idle since the agent started (tests, dedicated machines).
    AlwaysIdle,
    /// `x11` / `x11:DISPLAY` (alias `user-idle`): the X server's screen-saver idle counter.
    X11(Option<String>),
    /// `tty`: the atime of logged-in users' terminals (utmp), so SSH and console sessions
    /// count as presence.
    Tty,
    /// `evdev`: Linux input devices `/dev/input/event*`, event-driven.
    Evdev,
}

/// The accepted forms, for error messages.
pub const SPEC_FORMS: &str =
    "must be 'file:PATH', 'always-idle', 'x11', 'x11:DISPLAY', 'user-idle', 'tty' or 'evdev'";

impl FromStr for IdleSourceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always-idle" => return Ok(IdleSourceSpec::AlwaysIdle),
            "x11" | "user-idle" => return Ok(IdleSourceSpec::X11(None)),
            "tty" => return Ok(IdleSourceSpec::Tty),
            "evdev" => return Ok(IdleSourceSpec::Evdev),
            _ => {}
        }
        if let Some(d) = s.strip_prefix("x11:") {
            if !d.is_empty() {
                return Ok(IdleSourceSpec::X11(Some(d.to_string())));
            }
        }
        match s.strip_prefix("file:") {
            Some(p) if !p.is_empty() => Ok(IdleSourceSpec::File(PathBuf::from(p))),
            _ => Err(SPEC_FORMS.into()),
        }
    }
}

impl fmt::Display for IdleSourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdleSourceSpec::File(p) => write!(f, "file:{}", p.display()),
            IdleSourceSpec::AlwaysIdle => write!(f, "always-idle"),
            IdleSourceSpec::X11(None) => write!(f, "x11"),
            IdleSourceSpec::X11(Some(d)) => write!(f, "x11:{d}"),
            IdleSourceSpec::Tty => write!(f, "tty"),
            IdleSourceSpec::Evdev => write!(f, "evdev"),
        }
    }
}

impl IdleSourceSpec {
    /// The source this spec describes.
    pub fn build(
        &self,
        started: Instant,
        wake: &std::sync::Arc<tokio::sync::Notify>,
    ) -> Box<dyn IdleSource> {
        match self {
            IdleSourceSpec::File(p) => Box::new(FileSource { path: p.clone() }),
            IdleSourceSpec::AlwaysIdle => Box::new(AlwaysIdle { since: started }),
            IdleSourceSpec::X11(d) => Box::new(X11 {
                src: crate::x11::X11Source::new(d.clone()),
            }),
            IdleSourceSpec::Tty => Box::new(crate::tty::TtySource::new("/var/run/utmp")),
            IdleSourceSpec::Evdev => {
                Box::new(crate::evdev::EvdevSource::new("/dev/input", wake.clone()))
            }
        }
    }
}

/// Something that knows how long the owner has been idle. Real keyboard, mouse and terminal
/// sources implement this too.
pub trait IdleSource: Send {
    /// Name shown in the node status, e.g. `file:/tmp/x`.
    fn name(&self) -> String;
    /// Time since the owner's last input; `Ok(None)` when there is nothing to watch on this
    /// PC now (no X display, no input device, nobody logged in on a terminal): the source
    /// is skipped. An error means the source is broken: the owner counts as active.
    fn idle(&mut self, now: Instant, wall: SystemTime) -> Result<Option<Duration>, String>;
}

/// The graphical session (see [`crate::x11`]).
struct X11 {
    src: crate::x11::X11Source,
}

impl IdleSource for X11 {
    fn name(&self) -> String {
        format!("x11:{}", self.src.display_name())
    }
    fn idle(&mut self, now: Instant, _wall: SystemTime) -> Result<Option<Duration>, String> {
        self.src.idle(now)
    }
}

/// Idle time from a file's modification time: `touch FILE` means "the owner is here".
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
}

impl IdleSource for FileSource {
    fn name(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn idle(&mut self, _now: Instant, wall: SystemTime) -> Result<Option<Duration>, String> {
        let meta = std::fs::metadata(&self.path)
            .map_err(|e| format!("cannot read '{}': {e}", self.path.display()))?;
        let mtime = meta
            .modified()
            .map_err(|e| format!("no modification time for '{}': {e}", self.path.display()))?;
        // A modification time in the future counts as "now".
        Ok(Some(wall.duration_since(mtime).unwrap_or(Duration::ZERO)))
    }
}

/// Always idle, since the agent started (and never less than [`OWNER_ACTIVE`]).
#[derive(Debug)]
pub struct AlwaysIdle {
    since: Instant,
}

impl IdleSource for AlwaysIdle {
    fn name(&self) -> String {
        "always-idle".into()
    }

    fn idle(&mut self, now: Instant, _wall: SystemTime) -> Result<Option<Duration>, String> {
        // Never "owner active", not even in the first seconds: there is no owner.
        Ok(Some(
            now.saturating_duration_since(self.since).max(OWNER_ACTIVE),
        ))
    }
}

/// All configured sources, with the memory of which ones are broken (to log changes once).
pub struct Owner {
    sources: Vec<(Box<dyn IdleSource>, Option<String>)>,
}

/// One evaluation of the owner's idle time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerIdle {
    /// Minimum over all sources; zero when any source is broken.
    pub idle: Duration,
    /// Names of the sources that work.
    pub working: Vec<String>,
    /// Sources with nothing to watch now (no display, no device), skipped.
    pub unavailable: Vec<String>,
}

impl Owner {
    /// Sources from their specs.
    /// `wake` is notified by event-driven sources when they see input.
    pub fn new(
        specs: &[IdleSourceSpec],
        started: Instant,
        wake: &std::sync::Arc<tokio::sync::Notify>,
    ) -> Owner {
        Owner::from_sources(specs.iter().map(|s| s.build(started, wake)).collect())
    }

    /// Sources given directly (for custom sources and tests).
    pub fn from_sources(sources: Vec<Box<dyn IdleSource>>) -> Owner {
        Owner {
            sources: sources.into_iter().map(|s| (s, None)).collect(),
        }
    }

    /// Ask every source. A broken source counts as "owner active now"; its breaking and
    /// recovering are logged once each.
    pub fn evaluate(&mut self, now: Instant, wall: SystemTime) -> OwnerIdle {
        let mut idle: Option<Duration> = None;
        let mut working = Vec::new();
        let mut unavailable = Vec::new();
        for (src, broken) in &mut self.sources {
            let d = match src.idle(now, wall) {
                Ok(None) => {
                    broken.take();
                    unavailable.push(src.name());
                    continue;
                }
                Ok(Some(d)) => {
                    if broken.take().is_some() {
                        tracing::info!(source = %src.name(), "idle source works again");
                    }
                    working.push(src.name());
                    d
                }
                Err(e) => {
                    if broken.as_deref() != Some(e.as_str()) {
                        tracing::warn!(source = %src.name(), error = %e,
                            "idle source broken; counting the owner as active");
                        *broken = Some(e);
                    }
                    Duration::ZERO
                }
            };
            idle = Some(idle.map_or(d, |i| i.min(d)));
        }
        // No source able to tell: the owner counts as active (never offer by mistake).
        OwnerIdle {
            idle: idle.unwrap_or(Duration::ZERO),
            working,
            unavailable,
        }
    }
}

/// What the availability rule looks at.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnerState {
    /// Time since the owner's last input (minimum over the sources).
    pub idle: Duration,
    /// Time since the owner was last seen busy by any rule (input, CPU, window), if ever.
    pub since_busy: Option<Duration>,
    /// CPU use of the owner's own processes, percent of the whole PC.
    pub owner_cpu: f32,
    /// Inside an availability window (or none configured).
    pub window_open: bool,
    /// The owner reclaimed the PC and has not been idle for `resume_after` since.
    pub reclaimed: bool,
}

/// The owner policy's thresholds.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    /// Idle time before cores are offered.
    pub start_after: Duration,
    /// Owner CPU percent above which the PC is busy; 100 disables the check.
    pub owner_cpu_max: u32,
    /// Idle time before a reclaimed PC runs its suspended jobs again.
    pub resume_after: Duration,
}

/// The availability rule, first match wins:
///
/// - outside every availability window: `OutsideWindow`;
/// - the owner's own processes use more than `owner_cpu_max` percent: `OwnerCpuBusy`
///   (`owner_cpu_max >= 100` disables this check);
/// - input less than [`OWNER_ACTIVE`] ago: `OwnerActive`;
/// - reclaimed, and idle (since input and since busy) for less than `resume_after`:
///   `Reclaimed`;
/// - idle for at least `start_after`: `Offered`;
/// - otherwise `Waiting` with the time left.
pub fn availability(s: &OwnerState, r: &Rules) -> Availability {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if !s.window_open {
        return Availability::OutsideWindow;
    }
    if r.owner_cpu_max < 100 && s.owner_cpu > r.owner_cpu_max as f32 {
        return Availability::OwnerCpuBusy {
            percent: s.owner_cpu.round().clamp(0.0, 100.0) as u32,
        };
    }
    if s.idle < OWNER_ACTIVE {
        return Availability::OwnerActive;
    }
    let idle = s.since_busy.map_or(s.idle, |b| b.min(s.idle));
    if s.reclaimed && idle < r.resume_after {
        return Availability::Reclaimed {
            resumes_in_ms: ms(r.resume_after - idle),
        };
    }
    if idle >= r.start_after {
        Availability::Offered
    } else {
        Availability::Waiting {
            remaining_ms: ms(r.start_after - idle),
        }
    }
}

/// True when the owner is using the PC now (as opposed to idle, or reclaimed and idle).
pub fn is_busy(a: &Availability) -> bool {
    matches!(
        a,
        Availability::OutsideWindow | Availability::OwnerCpuBusy { .. } | Availability::OwnerActive
    )
}

/// True when `a` and `b` are the same kind of availability (the numbers inside may differ).
pub fn same_kind(a: &Availability, b: &Availability) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print() {
        assert_eq!(
            "always-idle".parse::<IdleSourceSpec>().unwrap(),
            IdleSourceSpec::AlwaysIdle
        );
        let f: IdleSourceSpec = "file:/tmp/x".parse().unwrap();
        assert_eq!(f, IdleSourceSpec::File("/tmp/x".into()));
        assert_eq!(f.to_string(), "file:/tmp/x");
        assert!("file:".parse::<IdleSourceSpec>().is_err());
        assert_eq!(
            "x11::99".parse::<IdleSourceSpec>().unwrap(),
            IdleSourceSpec::X11(Some(":99".into()))
        );
        assert_eq!(
            "user-idle".parse::<IdleSourceSpec>().unwrap(),
            IdleSourceSpec::X11(None)
        );
        assert_eq!(
            "tty".parse::<IdleSourceSpec>().unwrap(),
            IdleSourceSpec::Tty
        );
        assert_eq!(
            "evdev".parse::<IdleSourceSpec>().unwrap(),
            IdleSourceSpec::Evdev
        );
        assert!("x12".parse::<IdleSourceSpec>().is_err());
    }

    fn st(idle: u64) -> OwnerState {
        OwnerState {
            idle: Duration::from_secs(idle),
            since_busy: None,
            owner_cpu: 0.0,
            window_open: true,
            reclaimed: false,
        }
    }

    #[test]
    fn rule() {
        let r = Rules {
            start_after: Duration::from_secs(60),
            owner_cpu_max: 25,
            resume_after: Duration::from_secs(30),
        };
        assert_eq!(availability(&st(60), &r), Availability::Offered);
        assert_eq!(availability(&st(1), &r), Availability::OwnerActive);
        assert_eq!(
            availability(&st(50), &r),
            Availability::Waiting {
                remaining_ms: 10_000
            }
        );
        let cpu = OwnerState {
            owner_cpu: 30.4,
            ..st(600)
        };
        assert_eq!(
            availability(&cpu, &r),
            Availability::OwnerCpuBusy { percent: 30 }
        );
        let off = Rules {
            owner_cpu_max: 100,
            ..r.clone()
        };
        let cpu99 = OwnerState {
            owner_cpu: 99.0,
            ..st(600)
        };
        assert_eq!(availability(&cpu99, &off), Availability::Offered);
        let closed = OwnerState {
            window_open: false,
            ..st(600)
        };
        assert_eq!(availability(&closed, &r), Availability::OutsideWindow);
        // Reclaimed: idle since input and since the last busy CPU sample counts.
        let rec = OwnerState {
            reclaimed: true,
            since_busy: Some(Duration::from_secs(10)),
            ..st(600)
        };
        assert_eq!(
            availability(&rec, &r),
            Availability::Reclaimed {
                resumes_in_ms: 20_000
            }
        );
        let rec = OwnerState {
            since_busy: Some(Duration::from_secs(40)),
            ..rec
        };
        // Idle for resume_after but not start_after: waiting (suspended jobs may resume).
        assert_eq!(
            availability(&rec, &r),
            Availability::Waiting {
                remaining_ms: 20_000
            }
        );
        assert!(is_busy(&Availability::OwnerActive));
        assert!(!is_busy(&Availability::Reclaimed { resumes_in_ms: 1 }));
    }

    #[test]
    fn file_source_and_broken_is_active() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("touch");
        let started = Instant::now();
        let mut owner = Owner::new(
            &[IdleSourceSpec::File(p.clone()), IdleSourceSpec::AlwaysIdle],
            started - Duration::from_secs(100),
            &Default::default(),
        );
        let r = owner.evaluate(Instant::now(), SystemTime::now());
        assert_eq!(r.idle, Duration::ZERO, "missing file counts as active");
        assert_eq!(r.working, vec!["always-idle".to_string()]);

        std::fs::write(&p, "").unwrap();
        let later = SystemTime::now() + Duration::from_secs(30);
        let r = owner.evaluate(Instant::now(), later);
        assert!(r.idle >= Duration::from_secs(29), "{:?}", r.idle);
        assert!(r.idle <= Duration::from_secs(31), "{:?}", r.idle);
        assert_eq!(r.working.len(), 2);
    }

    #[test]
    fn minimum_over_sources() {
        struct Fixed(u64);
        impl IdleSource for Fixed {
            fn name(&self) -> String {
                format!("fixed:{}", self.0)
            }
            fn idle(&mut self, _: Instant, _: SystemTime) -> Result<Option<Duration>, String> {
                Ok((self.0 > 0).then(|| Duration::from_secs(self.0)))
            }
        }
        let mut o = Owner::from_sources(vec![Box::new(Fixed(50)), Box::new(Fixed(7))]);
        let r = o.evaluate(Instant::now(), SystemTime::now());
        assert_eq!(r.idle, Duration::from_secs(7));
        // An unavailable source (0 here) is skipped, not counted as active...
        let mut o = Owner::from_sources(vec![Box::new(Fixed(50)), Box::new(Fixed(0))]);
        let r = o.evaluate(Instant::now(), SystemTime::now());
        assert_eq!(r.idle, Duration::from_secs(50));
        assert_eq!(r.unavailable, vec!["fixed:0".to_string()]);
        // ... but with none able to tell, the owner counts as active.
        let mut o = Owner::from_sources(vec![Box::new(Fixed(0))]);
        let r = o.evaluate(Instant::now(), SystemTime::now());
        assert_eq!(r.idle, Duration::ZERO);
    }

    #[test]
    fn kinds() {
        assert!(same_kind(
            &Availability::Waiting { remaining_ms: 1 },
            &Availability::Waiting { remaining_ms: 2 }
        ));
        assert!(!same_kind(
            &Availability::Offered,
            &Availability::OwnerActive
        ));
    }
}
