//! The owner watch: idle sources, the CPU meter, windows and the availability rule.
//!
//! An idle source (`source::IdleSource`) tells how long ago the PC's owner last did
//! something. The owner's idle time is the minimum over all sources; a source that cannot
//! tell counts as "active now", so a broken source never offers the PC by mistake.

pub(crate) mod cpu;
pub(crate) mod evdev;
pub(crate) mod file;
pub mod local;
pub(crate) mod logind;
pub(crate) mod rule;
pub(crate) mod source;
pub(crate) mod tty;
pub(crate) mod watch;
pub mod window;
pub(crate) mod x11;

use file::{AlwaysIdle, FileSource};
use source::IdleSource;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

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
    /// `logind` / `logind:ADDRESS`: the graphical sessions' idle hints and the idle
    /// inhibitors of systemd-logind (`org.freedesktop.login1`), on the system bus or on the
    /// D-Bus bus at `ADDRESS` (e.g. `unix:path=/run/x/bus`, for tests); event-driven.
    Logind(Option<String>),
}

/// The accepted forms, for error messages.
pub const SPEC_FORMS: &str = "must be 'file:PATH', 'always-idle', 'x11', 'x11:DISPLAY', 'user-idle', 'tty', 'evdev', 'logind' or 'logind:ADDRESS'";

impl FromStr for IdleSourceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always-idle" => return Ok(IdleSourceSpec::AlwaysIdle),
            "x11" | "user-idle" => return Ok(IdleSourceSpec::X11(None)),
            "tty" => return Ok(IdleSourceSpec::Tty),
            "evdev" => return Ok(IdleSourceSpec::Evdev),
            "logind" => return Ok(IdleSourceSpec::Logind(None)),
            _ => {}
        }
        if let Some(a) = s.strip_prefix("logind:") {
            // A D-Bus address is `transport:key=value,...`.
            if a.contains(':') && a.contains('=') {
                return Ok(IdleSourceSpec::Logind(Some(a.to_string())));
            }
            return Err(format!(
                "{SPEC_FORMS} (ADDRESS a D-Bus address such as 'unix:path=/run/bus')"
            ));
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
            IdleSourceSpec::Logind(None) => write!(f, "logind"),
            IdleSourceSpec::Logind(Some(a)) => write!(f, "logind:{a}"),
        }
    }
}

impl IdleSourceSpec {
    /// The source this spec describes.
    pub(crate) fn build(
        &self,
        started: Instant,
        wake: &std::sync::Arc<tokio::sync::Notify>,
    ) -> Box<dyn IdleSource> {
        match self {
            IdleSourceSpec::File(p) => Box::new(FileSource { path: p.clone() }),
            IdleSourceSpec::AlwaysIdle => Box::new(AlwaysIdle { since: started }),
            IdleSourceSpec::X11(d) => Box::new(x11::X11Idle {
                src: x11::X11Source::new(d.clone()),
            }),
            IdleSourceSpec::Tty => Box::new(tty::TtySource::new("/var/run/utmp")),
            IdleSourceSpec::Evdev => Box::new(evdev::EvdevSource::new("/dev/input", wake.clone())),
            IdleSourceSpec::Logind(a) => Box::new(logind::LogindSource::start(
                a.clone(),
                started,
                wake.clone(),
            )),
        }
    }
}

/// All configured sources, with the memory of which ones are broken (to log changes once).
pub(crate) struct Owner {
    sources: Vec<(Box<dyn IdleSource>, Option<String>)>,
}

/// One evaluation of the owner's idle time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OwnerIdle {
    /// Minimum over all sources; zero when any source is broken.
    pub(crate) idle: Duration,
    /// Names of the sources that work.
    pub(crate) working: Vec<String>,
    /// Sources with nothing to watch now (no display, no device), skipped.
    pub(crate) unavailable: Vec<String>,
    /// Why the owner counts as present whatever the idle time (the first working source
    /// that says so, e.g. an idle inhibitor).
    pub(crate) present: Option<String>,
}

impl Owner {
    /// Sources from their specs.
    /// `wake` is notified by event-driven sources when they see input.
    pub(crate) fn new(
        specs: &[IdleSourceSpec],
        started: Instant,
        wake: &std::sync::Arc<tokio::sync::Notify>,
    ) -> Owner {
        Owner::from_sources(specs.iter().map(|s| s.build(started, wake)).collect())
    }

    /// Sources given directly (for custom sources and tests).
    pub(crate) fn from_sources(sources: Vec<Box<dyn IdleSource>>) -> Owner {
        Owner {
            sources: sources.into_iter().map(|s| (s, None)).collect(),
        }
    }

    /// Ask every source. A broken source counts as "owner active now"; its breaking and
    /// recovering are logged once each.
    pub(crate) fn evaluate(&mut self, now: Instant, wall: SystemTime) -> OwnerIdle {
        let mut idle: Option<Duration> = None;
        let mut working = Vec::new();
        let mut unavailable = Vec::new();
        let mut present = None;
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
                    if present.is_none() {
                        present = src.presence();
                    }
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
            present,
        }
    }
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
        assert_eq!(
            "logind".parse::<IdleSourceSpec>().unwrap(),
            IdleSourceSpec::Logind(None)
        );
        let l: IdleSourceSpec = "logind:unix:path=/tmp/g/bus".parse().unwrap();
        assert_eq!(
            l,
            IdleSourceSpec::Logind(Some("unix:path=/tmp/g/bus".into()))
        );
        assert_eq!(l.to_string(), "logind:unix:path=/tmp/g/bus");
        for bad in ["logind:", "logind:system", "logind:/run/bus", "login"] {
            let e = bad.parse::<IdleSourceSpec>().unwrap_err();
            assert!(e.contains("'logind:ADDRESS'"), "{bad}: {e}");
        }
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
}
