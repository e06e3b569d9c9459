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

/// A configured idle source, as written in the config: `file:PATH` or `always-idle`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdleSourceSpec {
    /// Idle time = now minus the modification time of the file.
    File(PathBuf),
    /// Idle since the agent started (tests, dedicated machines).
    AlwaysIdle,
}

impl FromStr for IdleSourceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "always-idle" {
            return Ok(IdleSourceSpec::AlwaysIdle);
        }
        match s.strip_prefix("file:") {
            Some(p) if !p.is_empty() => Ok(IdleSourceSpec::File(PathBuf::from(p))),
            _ => Err("must be 'file:PATH' or 'always-idle'".into()),
        }
    }
}

impl fmt::Display for IdleSourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdleSourceSpec::File(p) => write!(f, "file:{}", p.display()),
            IdleSourceSpec::AlwaysIdle => write!(f, "always-idle"),
        }
    }
}

impl IdleSourceSpec {
    /// The source this spec describes.
    pub fn build(&self, started: Instant) -> Box<dyn IdleSource> {
        match self {
            IdleSourceSpec::File(p) => Box::new(FileSource { path: p.clone() }),
            IdleSourceSpec::AlwaysIdle => Box::new(AlwaysIdle { since: started }),
        }
    }
}

/// Something that knows how long the owner has been idle. Real keyboard, mouse and terminal
/// sources implement this too.
pub trait IdleSource: Send {
    /// Name shown in the node status, e.g. `file:/tmp/x`.
    fn name(&self) -> String;
    /// Time since the owner's last input, or why this source cannot tell now.
    fn idle(&mut self, now: Instant, wall: SystemTime) -> Result<Duration, String>;
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

    fn idle(&mut self, _now: Instant, wall: SystemTime) -> Result<Duration, String> {
        let meta = std::fs::metadata(&self.path)
            .map_err(|e| format!("cannot read '{}': {e}", self.path.display()))?;
        let mtime = meta
            .modified()
            .map_err(|e| format!("no modification time for '{}': {e}", self.path.display()))?;
        // A modification time in the future counts as "now".
        Ok(wall.duration_since(mtime).unwrap_or(Duration::ZERO))
    }
}

/// Always idle, since the agent started.
#[derive(Debug)]
pub struct AlwaysIdle {
    since: Instant,
}

impl IdleSource for AlwaysIdle {
    fn name(&self) -> String {
        "always-idle".into()
    }

    fn idle(&mut self, now: Instant, _wall: SystemTime) -> Result<Duration, String> {
        Ok(now.saturating_duration_since(self.since))
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
}

impl Owner {
    /// Sources from their specs.
    pub fn new(specs: &[IdleSourceSpec], started: Instant) -> Owner {
        Owner::from_sources(specs.iter().map(|s| s.build(started)).collect())
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
        for (src, broken) in &mut self.sources {
            let d = match src.idle(now, wall) {
                Ok(d) => {
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
        OwnerIdle {
            idle: idle.unwrap_or(Duration::ZERO),
            working,
        }
    }
}

/// The availability rule.
///
/// - the owner's own processes use more than `owner_cpu_max` percent: `OwnerCpuBusy`
///   (`owner_cpu_max >= 100` disables this check);
/// - idle for at least `start_after`: `Offered`;
/// - idle for less than [`OWNER_ACTIVE`]: `OwnerActive`;
/// - otherwise `Waiting` with the time left.
pub fn availability(
    idle: Duration,
    start_after: Duration,
    owner_cpu: f32,
    owner_cpu_max: u32,
) -> Availability {
    if owner_cpu_max < 100 && owner_cpu > owner_cpu_max as f32 {
        return Availability::OwnerCpuBusy {
            percent: owner_cpu.round().clamp(0.0, 100.0) as u32,
        };
    }
    if idle >= start_after {
        Availability::Offered
    } else if idle < OWNER_ACTIVE {
        Availability::OwnerActive
    } else {
        let left = start_after - idle;
        Availability::Waiting {
            remaining_ms: left.as_millis().try_into().unwrap_or(u64::MAX),
        }
    }
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
        assert!("x11".parse::<IdleSourceSpec>().is_err());
    }

    #[test]
    fn rule() {
        let m = Duration::from_secs(60);
        let s = Duration::from_secs;
        assert_eq!(availability(s(60), m, 0.0, 25), Availability::Offered);
        assert_eq!(availability(s(1), m, 0.0, 25), Availability::OwnerActive);
        assert_eq!(
            availability(s(50), m, 0.0, 25),
            Availability::Waiting {
                remaining_ms: 10_000
            }
        );
        assert_eq!(
            availability(s(600), m, 30.4, 25),
            Availability::OwnerCpuBusy { percent: 30 }
        );
        assert_eq!(availability(s(600), m, 99.0, 100), Availability::Offered);
        assert_eq!(
            availability(Duration::ZERO, Duration::ZERO, 0.0, 25),
            Availability::Offered
        );
    }

    #[test]
    fn file_source_and_broken_is_active() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("touch");
        let started = Instant::now();
        let mut owner = Owner::new(
            &[IdleSourceSpec::File(p.clone()), IdleSourceSpec::AlwaysIdle],
            started - Duration::from_secs(100),
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
            fn idle(&mut self, _: Instant, _: SystemTime) -> Result<Duration, String> {
                Ok(Duration::from_secs(self.0))
            }
        }
        let mut o = Owner::from_sources(vec![Box::new(Fixed(50)), Box::new(Fixed(7))]);
        let r = o.evaluate(Instant::now(), SystemTime::now());
        assert_eq!(r.idle, Duration::from_secs(7));
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
