//! When a waiting job is expected to start, or why that is unknown.
//!
//! One source of truth: when the scheduler gives a job a reservation (EASY backfill,
//! `JobView::expected_start_ms`, from running jobs' time limits), that is the estimate.
//! Otherwise cores held by running jobs come back at an unknown time, and what is known is:
//! free offered cores, and nodes whose owner is idle and that offer their cores in a known
//! number of seconds (`Availability::Waiting`). The estimate uses only those and says
//! "unknown" with the reason otherwise.

use super::model::Model;
use graze_proto::{Availability, JobState, JobView, Unit};

/// A waiting job's expected start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Cores are free for it now; the next scheduling pass starts it.
    Now,
    /// In about this many ms, when idle nodes start offering their cores.
    In {
        /// Milliseconds from the time of the estimate.
        ms: u64,
        /// The node whose offer completes the job's cores.
        node: String,
    },
    /// By this time (ms since the Unix epoch): the scheduler's reservation.
    Reserved {
        /// The reservation's start.
        at_ms: u64,
    },
    /// Not known, and why.
    Unknown(String),
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::Now => write!(f, "now"),
            Expected::In { ms, node } => {
                write!(f, "in ~{}s ({node} offers then)", ms.div_ceil(1000))
            }
            Expected::Reserved { at_ms } => {
                write!(f, "by {} (reserved)", crate::format::clock_time(*at_ms))
            }
            Expected::Unknown(why) => write!(f, "unknown: {why}"),
        }
    }
}

fn eligible(job: &JobView, name: &str, groups: &[String]) -> bool {
    job.spec.groups.iter().all(|g| groups.contains(g))
        && (job.spec.nodes.is_empty() || job.spec.nodes.iter().any(|n| n == name))
}

/// Estimate when `job` (queued) starts, given the model.
pub fn expected_start(model: &Model, job: &JobView) -> Expected {
    if job.state != JobState::Queued {
        return Expected::Unknown(format!("the job is {}", job.state));
    }
    if let Some(at_ms) = job.expected_start_ms {
        return Expected::Reserved { at_ms };
    }
    // Held and begin-time jobs wait whatever the cores.
    match (job.waiting_for.as_deref(), job.spec.begin_ms) {
        (Some(graze_proto::HELD_WAIT), _) => {
            return Expected::Unknown("held until `graze release`".into())
        }
        (Some(graze_proto::BEGIN_WAIT), Some(b)) => {
            return Expected::Unknown(format!(
                "not before {}",
                crate::when::begin_words(b, crate::format::now_ms(), &crate::when::LocalZone)
            ))
        }
        _ => {}
    }
    let per_rank = |cores: u32, sockets: u32| -> u32 {
        match job.spec.unit {
            Unit::Core => 1,
            Unit::Socket => (cores / sockets.max(1)).max(1),
            Unit::Node => cores.max(1),
        }
    };
    // Jobs ahead of it (higher priority, or same priority and submitted earlier) that also wait
    // take cores first.
    let ahead = model.jobs.values().find(|o| {
        o.state == JobState::Queued
            && o.id != job.id
            && (o.spec.priority > job.spec.priority
                || (o.spec.priority == job.spec.priority
                    && (o.submitted_ms, o.id) < (job.submitted_ms, job.id)))
    });
    let mut free = 0u32;
    let mut soon: Vec<(u64, u32, &str)> = Vec::new();
    let mut held = 0u32;
    let mut capacity = 0u32;
    for e in model.nodes.values() {
        let v = &e.view;
        if !eligible(job, &v.info.name, &v.info.groups) {
            continue;
        }
        let unit = per_rank(v.info.cores, v.info.sockets);
        let ranks = |cores: u32| {
            if job.spec.unit == Unit::Node {
                u32::from(cores >= v.info.cores)
            } else {
                cores / unit
            }
        };
        capacity += ranks(v.info.cores);
        if !v.online {
            continue;
        }
        let avail_cores = v.info.cores.saturating_sub(v.used_cores);
        held += ranks(v.info.cores) - ranks(avail_cores);
        match v.status.as_ref().map(|s| &s.availability) {
            Some(Availability::Offered) => free += ranks(avail_cores),
            Some(Availability::Waiting { remaining_ms }) => {
                soon.push((*remaining_ms, ranks(avail_cores), &v.info.name))
            }
            _ => {}
        }
    }
    let need = job.spec.nprocs;
    if let Some(a) = ahead {
        return Expected::Unknown(format!("job {} is ahead of it in the queue", a.id));
    }
    if free >= need {
        return Expected::Now;
    }
    soon.sort();
    let mut have = free;
    for (ms, r, name) in &soon {
        have += r;
        if have >= need {
            return Expected::In {
                ms: *ms,
                node: (*name).to_string(),
            };
        }
    }
    if have + held >= need && held > 0 {
        return Expected::Unknown(
            "it needs cores held by running jobs, and the scheduler gave it no reservation".into(),
        );
    }
    if capacity >= need {
        return Expected::Unknown(
            "it needs nodes whose owners are busy, off-window or offline".into(),
        );
    }
    Expected::Unknown(format!(
        "it needs {need} {}s but its nodes have {capacity}",
        job.spec.unit
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::model::{DataEvent, Model};
    use super::super::testdata;
    use super::*;

    #[test]
    fn estimates_follow_the_cluster() {
        let mut m = Model::default();
        m.apply(DataEvent::Snapshot {
            nodes: testdata::nodes(),
            jobs: testdata::jobs(),
        });
        // Job 3 (6 cores) waits while 4 + 2 cores run on an 8-core cluster, one node idle.
        let j3 = m.jobs[&graze_proto::JobId(3)].clone();
        let e = expected_start(&m, &j3);
        assert_eq!(
            e,
            Expected::Unknown(
                "it needs cores held by running jobs, and the scheduler gave it no reservation"
                    .into()
            ),
            "{e}"
        );
        // The scheduler's reservation is the estimate when it gives one.
        let mut reserved = j3.clone();
        reserved.expected_start_ms = Some(7_200_000);
        assert_eq!(
            expected_start(&m, &reserved),
            Expected::Reserved { at_ms: 7_200_000 }
        );
        assert!(expected_start(&m, &reserved)
            .to_string()
            .ends_with(" (reserved)"));
        // A 2-core job fits on the idle node once it offers (ws5, 4 s).
        let mut small = j3.clone();
        small.id = graze_proto::JobId(99);
        small.spec.nprocs = 2;
        small.submitted_ms = 0;
        let e = expected_start(&m, &small);
        assert_eq!(e.to_string(), "in ~4s (ws5 offers then)");
        // Held: unknown whatever the cores.
        let mut held = small.clone();
        held.waiting_for = Some(graze_proto::HELD_WAIT.into());
        assert_eq!(
            expected_start(&m, &held).to_string(),
            "unknown: held until `graze release`"
        );
        // Too big for the cluster.
        small.spec.nprocs = 64;
        assert!(expected_start(&m, &small)
            .to_string()
            .contains("needs 64 cores but its nodes have 10"));
    }
}
