//! The pure availability rule: no clock, no I/O.

use super::source::OWNER_ACTIVE;
use graze_proto::Availability;
use std::time::Duration;

/// What the availability rule looks at.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct OwnerState {
    /// Time since the owner's last input (minimum over the sources).
    pub(crate) idle: Duration,
    /// Time since the owner was last seen busy by any rule (input, CPU, window), if ever.
    pub(crate) since_busy: Option<Duration>,
    /// CPU use of the owner's own processes, percent of the whole PC.
    pub(crate) owner_cpu: f32,
    /// Inside an availability window (or none configured).
    pub(crate) window_open: bool,
    /// The owner reclaimed the PC and has not been idle for `resume_after` since.
    pub(crate) reclaimed: bool,
    /// A source says the owner is present without input (an idle inhibitor), and why.
    pub(crate) present: Option<String>,
    /// The owner snoozed graze until this time (ms since the Unix epoch).
    pub(crate) snoozed_until_ms: Option<u64>,
}

/// The owner policy's thresholds.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Rules {
    /// Idle time before cores are offered.
    pub(crate) start_after: Duration,
    /// Owner CPU percent above which the PC is busy; 100 disables the check.
    pub(crate) owner_cpu_max: u32,
    /// Idle time before a reclaimed PC runs its suspended jobs again.
    pub(crate) resume_after: Duration,
}

/// The availability rule, first match wins:
///
/// - outside every availability window: `OutsideWindow`;
/// - snoozed by the owner (`graze-agent snooze`): `Snoozed`;
/// - the owner's own processes use more than `owner_cpu_max` percent: `OwnerCpuBusy`
///   (`owner_cpu_max >= 100` disables this check);
/// - input less than [`OWNER_ACTIVE`] ago: `OwnerActive`;
/// - a source says the owner is present (an idle inhibitor): `OwnerPresent` with its reason;
/// - reclaimed, and idle (since input and since busy) for less than `resume_after`:
///   `Reclaimed`;
/// - idle for at least `start_after`: `Offered`;
/// - otherwise `Waiting` with the time left.
pub(crate) fn availability(s: &OwnerState, r: &Rules) -> Availability {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if !s.window_open {
        return Availability::OutsideWindow;
    }
    if let Some(until_ms) = s.snoozed_until_ms {
        return Availability::Snoozed { until_ms };
    }
    if r.owner_cpu_max < 100 && s.owner_cpu > r.owner_cpu_max as f32 {
        return Availability::OwnerCpuBusy {
            percent: s.owner_cpu.round().clamp(0.0, 100.0) as u32,
        };
    }
    if s.idle < OWNER_ACTIVE {
        return Availability::OwnerActive;
    }
    if let Some(reason) = &s.present {
        return Availability::OwnerPresent {
            reason: reason.clone(),
        };
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
pub(crate) fn is_busy(a: &Availability) -> bool {
    matches!(
        a,
        Availability::OutsideWindow
            | Availability::Snoozed { .. }
            | Availability::OwnerCpuBusy { .. }
            | Availability::OwnerActive
            | Availability::OwnerPresent { .. }
    )
}

/// True when `a` and `b` are the same kind of availability (the numbers inside may differ).
pub(crate) fn same_kind(a: &Availability, b: &Availability) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn st(idle: u64) -> OwnerState {
        OwnerState {
            idle: Duration::from_secs(idle),
            since_busy: None,
            owner_cpu: 0.0,
            window_open: true,
            reclaimed: false,
            present: None,
            snoozed_until_ms: None,
        }
    }

    #[test]
    fn a_snooze_comes_after_the_window_and_before_everything_else() {
        let r = Rules {
            start_after: Duration::from_secs(60),
            owner_cpu_max: 25,
            resume_after: Duration::from_secs(30),
        };
        let snoozed = OwnerState {
            snoozed_until_ms: Some(42),
            ..st(3600)
        };
        assert_eq!(
            availability(&snoozed, &r),
            Availability::Snoozed { until_ms: 42 }
        );
        assert!(is_busy(&Availability::Snoozed { until_ms: 42 }));
        let closed = OwnerState {
            window_open: false,
            ..snoozed
        };
        assert_eq!(availability(&closed, &r), Availability::OutsideWindow);
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
        // An idle inhibitor: present although idle for long; input still comes first.
        let inhibited = OwnerState {
            present: Some("inhibitor 'mpv: playing video'".into()),
            ..st(600)
        };
        let present = Availability::OwnerPresent {
            reason: "inhibitor 'mpv: playing video'".into(),
        };
        assert_eq!(availability(&inhibited, &r), present);
        assert!(is_busy(&present));
        let typing = OwnerState {
            idle: Duration::ZERO,
            ..inhibited.clone()
        };
        assert_eq!(availability(&typing, &r), Availability::OwnerActive);
        let outside = OwnerState {
            window_open: false,
            ..inhibited
        };
        assert_eq!(availability(&outside, &r), Availability::OutsideWindow);
        assert!(is_busy(&Availability::OwnerActive));
        assert!(!is_busy(&Availability::Reclaimed { resumes_in_ms: 1 }));
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
