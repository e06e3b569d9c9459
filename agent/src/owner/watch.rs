//! The owner watch as a state machine: each tick turns what the sources saw into a decision
//! (the availability, whether to stop every job now, whether to report). Sans-IO: no clock
//! reads and no sources inside; time and observations are parameters.

use super::rule::{self, OwnerState, Rules};
use graze_proto::Availability;
use std::time::{Duration, Instant};

/// A status goes out at least this often.
pub(crate) const STATUS_EVERY: Duration = Duration::from_secs(1);

/// What one tick looks at.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Observation {
    /// Time since the owner's last input (minimum over the sources).
    pub(crate) idle: Duration,
    /// CPU use of the owner's own processes, percent of the whole PC.
    pub(crate) owner_cpu: f32,
    /// Inside an availability window (or none configured).
    pub(crate) window_open: bool,
    /// A source says the owner is present without input (an idle inhibitor), and why.
    pub(crate) present: Option<String>,
    /// The owner snoozed graze until this time (ms since the Unix epoch).
    pub(crate) snoozed_until_ms: Option<u64>,
    /// Jobs (not being killed) are on this node.
    pub(crate) has_jobs: bool,
    /// Connected to the scheduler (a status can be sent).
    pub(crate) connected: bool,
}

/// What the agent does after a tick.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Decision {
    /// This node's availability now.
    pub(crate) availability: Availability,
    /// The owner just reclaimed the PC while jobs run: stop every job, here and now.
    pub(crate) reclaim: bool,
    /// The owner has been idle for `resume_after` after a reclaim: the scheduler may resume.
    pub(crate) resumable: bool,
    /// Send a status now (the watch takes it as sent).
    pub(crate) report: bool,
    /// The availability's kind changed since the last report: from this one.
    pub(crate) changed_from: Option<Availability>,
}

/// The owner's state between ticks.
#[derive(Clone, Debug)]
pub(crate) struct OwnerWatch {
    rules: Rules,
    /// The owner reclaimed the PC and has not been idle for `resume_after` since.
    reclaimed: bool,
    /// The owner is using the PC now (input, CPU, outside the windows).
    busy_now: bool,
    /// When the owner was last seen busy by CPU or window (input has its own idle clock).
    last_busy: Option<Instant>,
    /// The last status reported, and when; `None` while disconnected.
    last_report: Option<(Instant, Availability)>,
    /// The availability of the last tick.
    last: Option<Availability>,
}

impl OwnerWatch {
    /// A watch applying `rules`; nothing reclaimed, nothing reported yet.
    pub(crate) fn new(rules: Rules) -> OwnerWatch {
        OwnerWatch {
            rules,
            reclaimed: false,
            busy_now: false,
            last_busy: None,
            last_report: None,
            last: None,
        }
    }

    /// True when jobs must not run here now: the owner is busy, or reclaimed the PC and has
    /// not been idle for `resume_after` since.
    pub(crate) fn holds_jobs_stopped(&self) -> bool {
        self.reclaimed || self.busy_now
    }

    /// The availability of the last tick, if any.
    pub(crate) fn last_availability(&self) -> Option<Availability> {
        self.last.clone()
    }

    /// When the next status is due (a second after the last one), if one was sent.
    pub(crate) fn report_due(&self) -> Option<Instant> {
        self.last_report.as_ref().map(|(at, _)| *at + STATUS_EVERY)
    }

    /// Report afresh on the next tick (a new connection).
    pub(crate) fn report_afresh(&mut self) {
        self.last_report = None;
    }

    /// One evaluation at `now`:
    ///
    /// 1. the availability rule ([`rule::availability`]) over the observation;
    /// 2. without jobs, a reclaim is forgotten: `start_after` alone says when the PC takes
    ///    work;
    /// 3. busy (input, CPU, window, presence): all but input mark `last_busy`; with jobs and not yet
    ///    reclaimed, the PC is reclaimed now (`reclaim`);
    /// 4. not busy, reclaimed, and the rule no longer says `Reclaimed`: the reclaim ends
    ///    (`resumable`);
    /// 5. report when connected and never reported, when the kind changed, or
    ///    [`STATUS_EVERY`] after the last report.
    pub(crate) fn tick(&mut self, now: Instant, obs: &Observation) -> Decision {
        let mut state = OwnerState {
            idle: obs.idle,
            since_busy: self.last_busy.map(|b| now.saturating_duration_since(b)),
            owner_cpu: obs.owner_cpu,
            window_open: obs.window_open,
            reclaimed: self.reclaimed,
            present: obs.present.clone(),
            snoozed_until_ms: obs.snoozed_until_ms,
        };
        let mut avail = rule::availability(&state, &self.rules);
        self.busy_now = rule::is_busy(&avail);
        if self.reclaimed && !obs.has_jobs {
            self.reclaimed = false;
            state.reclaimed = false;
            avail = rule::availability(&state, &self.rules);
        }
        let mut reclaim = false;
        let mut resumable = false;
        if self.busy_now {
            if avail != Availability::OwnerActive {
                self.last_busy = Some(now);
            }
            if !self.reclaimed && obs.has_jobs {
                self.reclaimed = true;
                reclaim = true;
            }
        } else if self.reclaimed && !matches!(avail, Availability::Reclaimed { .. }) {
            self.reclaimed = false;
            resumable = true;
            state.reclaimed = false;
            avail = rule::availability(&state, &self.rules);
        }
        let mut changed_from = None;
        let due = match &self.last_report {
            None => true,
            Some((at, last)) => {
                if !rule::same_kind(last, &avail) {
                    changed_from = Some(last.clone());
                    true
                } else {
                    now.duration_since(*at) >= STATUS_EVERY
                }
            }
        };
        let report = due && obs.connected;
        self.last = Some(avail.clone());
        if report {
            self.last_report = Some((now, avail.clone()));
        } else if !obs.connected {
            // Remember nothing, so the first status after connecting goes out at once.
            self.last_report = None;
        }
        Decision {
            availability: avail,
            reclaim,
            resumable,
            report,
            changed_from,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn rules() -> Rules {
        Rules {
            start_after: 10 * S,
            owner_cpu_max: 25,
            resume_after: 30 * S,
        }
    }

    fn obs(idle_s: u64, has_jobs: bool) -> Observation {
        Observation {
            idle: Duration::from_secs(idle_s),
            owner_cpu: 0.0,
            window_open: true,
            present: None,
            snoozed_until_ms: None,
            has_jobs,
            connected: true,
        }
    }

    #[test]
    fn idle_owner_offers_and_reports_each_second() {
        let t0 = Instant::now();
        let mut w = OwnerWatch::new(rules());
        let d = w.tick(t0, &obs(60, false));
        assert_eq!(d.availability, Availability::Offered);
        assert!(d.report && !d.reclaim && !d.resumable);
        let d = w.tick(t0 + S / 2, &obs(60, false));
        assert!(!d.report, "half a second later: nothing new");
        let d = w.tick(t0 + S, &obs(61, false));
        assert!(d.report, "one second later: the periodic status");
        assert!(!w.holds_jobs_stopped());
    }

    #[test]
    fn owner_input_with_jobs_reclaims_once_then_resumes_after_resume_after() {
        let t0 = Instant::now();
        let mut w = OwnerWatch::new(rules());
        w.tick(t0, &obs(60, true));
        let d = w.tick(t0 + S / 10, &obs(0, true));
        assert_eq!(d.availability, Availability::OwnerActive);
        assert!(d.reclaim, "input with jobs: stop them now");
        assert_eq!(d.changed_from, Some(Availability::Offered));
        assert!(d.report, "a change of kind goes out at once");
        assert!(w.holds_jobs_stopped());
        let d = w.tick(t0 + S / 5, &obs(0, true));
        assert!(!d.reclaim, "reclaimed once, not on every tick");
        // Idle again, but not yet for resume_after.
        let d = w.tick(t0 + 10 * S, &obs(10, true));
        assert!(matches!(d.availability, Availability::Reclaimed { .. }));
        assert!(w.holds_jobs_stopped());
        let d = w.tick(t0 + 31 * S, &obs(31, true));
        assert!(d.resumable);
        assert_eq!(d.availability, Availability::Offered);
        assert!(!w.holds_jobs_stopped());
    }

    #[test]
    fn without_jobs_input_does_not_reclaim() {
        let t0 = Instant::now();
        let mut w = OwnerWatch::new(rules());
        let d = w.tick(t0, &obs(0, false));
        assert!(!d.reclaim);
        let d = w.tick(t0 + 3 * S, &obs(3, false));
        assert_eq!(
            d.availability,
            Availability::Waiting {
                remaining_ms: 7_000
            }
        );
    }

    #[test]
    fn a_reclaim_is_forgotten_when_the_jobs_are_gone() {
        let t0 = Instant::now();
        let mut w = OwnerWatch::new(rules());
        w.tick(t0, &obs(0, true));
        let d = w.tick(t0 + 15 * S, &obs(15, false));
        assert_eq!(d.availability, Availability::Offered);
        assert!(!w.holds_jobs_stopped());
    }

    #[test]
    fn cpu_busy_counts_from_when_it_ended() {
        let t0 = Instant::now();
        let mut w = OwnerWatch::new(rules());
        let busy = Observation {
            owner_cpu: 90.0,
            ..obs(600, true)
        };
        let d = w.tick(t0, &busy);
        assert_eq!(d.availability, Availability::OwnerCpuBusy { percent: 90 });
        assert!(d.reclaim);
        // Input idle for long, but the CPU was busy 5 s ago: still reclaimed.
        let d = w.tick(t0 + 5 * S, &obs(605, true));
        assert_eq!(
            d.availability,
            Availability::Reclaimed {
                resumes_in_ms: 25_000
            }
        );
    }

    #[test]
    fn disconnected_reports_nothing_and_reports_at_once_after() {
        let t0 = Instant::now();
        let mut w = OwnerWatch::new(rules());
        w.tick(t0, &obs(60, false));
        let off = Observation {
            connected: false,
            ..obs(60, false)
        };
        assert!(!w.tick(t0 + 2 * S, &off).report);
        let d = w.tick(t0 + 2 * S + S / 10, &obs(60, false));
        assert!(d.report && d.changed_from.is_none());
        w.tick(t0 + 3 * S, &obs(60, false));
        w.report_afresh();
        assert!(w.tick(t0 + 3 * S + S / 10, &obs(60, false)).report);
    }

    #[test]
    fn an_inhibitor_reclaims_and_counts_from_its_release() {
        let t0 = Instant::now();
        let mut w = OwnerWatch::new(rules());
        w.tick(t0, &obs(600, true));
        let inhibited = Observation {
            present: Some("inhibitor 'mpv: playing video'".into()),
            ..obs(600, true)
        };
        let d = w.tick(t0 + S, &inhibited);
        assert_eq!(
            d.availability,
            Availability::OwnerPresent {
                reason: "inhibitor 'mpv: playing video'".into()
            }
        );
        assert!(d.reclaim && d.report);
        // Released 5 s later: resume_after counts from the release, not from the last input.
        w.tick(t0 + 5 * S, &inhibited);
        let d = w.tick(t0 + 6 * S, &obs(606, true));
        assert_eq!(
            d.availability,
            Availability::Reclaimed {
                resumes_in_ms: 29_000
            }
        );
    }
}
