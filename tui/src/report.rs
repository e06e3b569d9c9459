//! `graze history` and `graze report`: pure formatting and aggregation of the scheduler's
//! attempt records and harvest figures (no I/O, no clock: `now` comes in), and the report's
//! chart (`chart.rs`).

use crate::format::{duration, table, timestamp};
use graze_proto::{AttemptView, HarvestData};
use serde::Serialize;
use std::collections::BTreeMap;

/// One day in ms.
const DAY_MS: u64 = 86_400_000;

/// Parse an age like `24h`, `7d`, `90m` (for `--since`): milliseconds.
pub fn parse_age(s: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; write an age like '24h', '7d' or '90m'"))?;
    u64::try_from(d.as_millis()).map_err(|_| "too long an age".to_string())
}

/// Parse a chart size `WxH` (each 100 to 10000 pixels).
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || "must be WIDTHxHEIGHT in pixels, each from 100 to 10000, e.g. 800x500".to_string();
    let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u32 = w.parse().map_err(|_| bad())?;
    let h: u32 = h.parse().map_err(|_| bad())?;
    if !(100..=10_000).contains(&w) || !(100..=10_000).contains(&h) {
        return Err(bad());
    }
    Ok((w, h))
}

/// Parse a `--state` filter: a final state's name or `requeued`.
pub fn parse_state(s: &str) -> Result<String, String> {
    const NAMES: [&str; 6] = [
        "completed",
        "failed",
        "cancelled",
        "timeout",
        "dependency-failed",
        "requeued",
    ];
    if NAMES.contains(&s) {
        Ok(s.to_string())
    } else {
        Err(format!("must be one of {}", NAMES.join(", ")))
    }
}

/// `exit 3`, `signal 9` or `-`.
fn exit_text(a: &AttemptView) -> String {
    a.exit.map_or_else(|| "-".to_string(), |e| e.to_string())
}

/// `pc1:2 pc2:1` or `-`.
fn nodes_text(a: &AttemptView) -> String {
    if a.nodes.is_empty() {
        return "-".into();
    }
    let parts: Vec<String> = a
        .nodes
        .iter()
        .zip(a.cores.iter().chain(std::iter::repeat(&0)))
        .map(|(h, c)| {
            if *c == h.slots {
                format!("{}:{}", h.host, h.slots)
            } else {
                format!("{}:{}({c} cores)", h.host, h.slots)
            }
        })
        .collect();
    parts.join(" ")
}

/// The `graze history` table.
pub fn history_table(attempts: &[AttemptView]) -> String {
    let rows: Vec<Vec<String>> = attempts
        .iter()
        .map(|a| {
            let state = match &a.requeue_reason {
                Some(why) => format!("requeued ({why})"),
                None => a.state.clone(),
            };
            let why = if a.requeue_reasons.is_empty() {
                "-".to_string()
            } else {
                a.requeue_reasons.join("; ")
            };
            vec![
                format!("{}.{}", a.job, a.attempt),
                a.name.clone(),
                a.user.clone(),
                state,
                exit_text(a),
                nodes_text(a),
                timestamp(a.submitted_ms),
                a.started_ms.map_or_else(|| "-".into(), timestamp),
                timestamp(a.ended_ms),
                duration(a.running_ms),
                duration(a.suspended_ms),
                format!("{:.1}", a.core_ms as f64 / 1000.0),
                format!("{} {}", a.requeues, why),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no ended jobs in that period\n".into();
    }
    table(
        &[
            "JOB",
            "NAME",
            "USER",
            "STATE",
            "EXIT",
            "NODES",
            "SUBMIT",
            "START",
            "END",
            "RUNNING",
            "SUSPENDED",
            "CORE-S",
            "REQUEUES",
        ],
        &rows,
    )
}

/// One PC's figures in the harvest report.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct PcFigures {
    /// The node.
    pub node: String,
    /// Core-hours given to jobs (attempt records: cores x running time, suspensions not counted).
    pub core_hours: f64,
    /// Jobs suspended because the owner came back.
    pub suspensions: u32,
    /// Jobs vacated because the owner stayed busy.
    pub vacates: u32,
    /// Owner releases measured.
    pub releases: usize,
    /// Median owner-release latency (ms).
    pub release_p50_ms: Option<f64>,
    /// 99th percentile owner-release latency (ms).
    pub release_p99_ms: Option<f64>,
    /// Core-hours offered (cores while the owner was away).
    pub offered_core_hours: f64,
    /// Core-hours held by jobs.
    pub used_core_hours: f64,
}

/// The report: per PC, and the chart's bars (core-hours per PC per night: noon to noon, local
/// time, named by the evening's date, so one overnight batch is one bar).
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Report {
    /// Start of the period (ms since the Unix epoch).
    pub since_ms: u64,
    /// End of the period.
    pub now_ms: u64,
    /// Per PC.
    pub pcs: Vec<PcFigures>,
    /// Nights (the local `YYYY-MM-DD` of their evening) with per-PC core-hours, in the order
    /// of `pcs`.
    pub nights: Vec<(String, Vec<f64>)>,
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted.len()) - 1;
    Some(sorted[i] as f64 / 1000.0)
}

/// Nights run from noon to noon, local time.
const NOON_MS: i64 = 12 * 3_600_000;

/// The night of `ms` (from local noon to the next local noon): its start (ms since the Unix
/// epoch) and the `YYYY-MM-DD` of its evening, through `offset` (the local UTC offset in
/// seconds at that time).
fn local_night(ms: u64, offset: &dyn Fn(u64) -> i64) -> (u64, String) {
    let off = offset(ms);
    let local = ms as i64 + off * 1000 - NOON_MS;
    let day = local.div_euclid(DAY_MS as i64);
    let start = (day * DAY_MS as i64 + NOON_MS - off * 1000).max(0) as u64;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis((day * DAY_MS as i64) as u64);
    let text = humantime::format_rfc3339_seconds(t).to_string();
    (start, text[..10].to_string())
}

/// The harvest report from the scheduler's data; `offset` gives the local UTC offset (s).
pub fn build_report(d: &HarvestData, offset: &dyn Fn(u64) -> i64) -> Report {
    let mut given: BTreeMap<String, u64> = BTreeMap::new();
    // Per night start: per node core-ms.
    let mut nights: BTreeMap<u64, (String, BTreeMap<String, f64>)> = BTreeMap::new();
    for n in &d.nodes {
        given.entry(n.node.clone()).or_default();
    }
    for a in &d.attempts {
        for (h, cores) in a.nodes.iter().zip(a.cores.iter()) {
            let core_ms = u64::from(*cores).saturating_mul(a.running_ms);
            *given.entry(h.host.clone()).or_default() += core_ms;
            // Spread over the nights the run's span covers, in proportion.
            let start = a.started_ms.unwrap_or(a.ended_ms).min(a.ended_ms);
            let span = a.ended_ms - start;
            let mut t = start;
            loop {
                let (night, label) = local_night(t, offset);
                let next = local_night(night + DAY_MS + 3_600_000, offset).0.max(t + 1);
                let end = a.ended_ms.min(next);
                let share = if span == 0 {
                    1.0
                } else {
                    (end - t) as f64 / span as f64
                };
                let e = nights
                    .entry(night)
                    .or_insert_with(|| (label, BTreeMap::new()));
                *e.1.entry(h.host.clone()).or_default() += core_ms as f64 * share;
                if end >= a.ended_ms {
                    break;
                }
                t = end;
            }
        }
    }
    let pcs: Vec<PcFigures> = given
        .iter()
        .map(|(node, core_ms)| {
            let h = d.nodes.iter().find(|n| &n.node == node);
            let mut rel: Vec<u64> = h.map(|h| h.release_us.clone()).unwrap_or_default();
            rel.sort_unstable();
            let (off, used) = h.map_or((0, 0), |h| {
                h.hours
                    .iter()
                    .fold((0u64, 0u64), |(o, u), x| (o + x.1, u + x.2))
            });
            PcFigures {
                node: node.clone(),
                core_hours: *core_ms as f64 / 3.6e6,
                suspensions: h.map_or(0, |h| h.suspensions),
                vacates: h.map_or(0, |h| h.vacates),
                releases: rel.len(),
                release_p50_ms: percentile(&rel, 50.0),
                release_p99_ms: percentile(&rel, 99.0),
                offered_core_hours: off as f64 / 3.6e6,
                used_core_hours: used as f64 / 3.6e6,
            }
        })
        .collect();
    let nights = nights
        .into_values()
        .map(|(label, per)| {
            let v = pcs
                .iter()
                .map(|p| per.get(&p.node).copied().unwrap_or(0.0) / 3.6e6)
                .collect();
            (label, v)
        })
        .collect();
    Report {
        since_ms: d.since_ms,
        now_ms: d.now_ms,
        pcs,
        nights,
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.1}"))
}

/// The report as a table.
pub fn report_table(r: &Report) -> String {
    let rows: Vec<Vec<String>> = r
        .pcs
        .iter()
        .map(|p| {
            vec![
                p.node.clone(),
                format!("{:.3}", p.core_hours),
                p.suspensions.to_string(),
                p.vacates.to_string(),
                p.releases.to_string(),
                opt_ms(p.release_p50_ms),
                opt_ms(p.release_p99_ms),
                format!("{:.3}", p.offered_core_hours),
                format!("{:.3}", p.used_core_hours),
            ]
        })
        .collect();
    let head = format!(
        "harvest from {} to {}\n",
        timestamp(r.since_ms),
        timestamp(r.now_ms)
    );
    if rows.is_empty() {
        return head + "no nodes\n";
    }
    head + &table(
        &[
            "PC",
            "CORE-H GIVEN",
            "SUSPENSIONS",
            "VACATES",
            "RELEASES",
            "RELEASE P50 MS",
            "RELEASE P99 MS",
            "CORE-H OFFERED",
            "CORE-H USED",
        ],
        &rows,
    )
}

/// The local UTC offset (s) at `ms`, from the C library (`TZ`, `/etc/localtime`).
pub fn local_offset(ms: u64) -> i64 {
    let t = (ms / 1000) as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which outlives the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if ok {
        tm.tm_gmtoff
    } else {
        0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use graze_proto::{HostSlots, JobId, NodeHarvest};

    fn attempt(node: &str, cores: u32, start: u64, end: u64) -> AttemptView {
        AttemptView {
            job: JobId(1),
            attempt: 1,
            user: "u".into(),
            name: "n".into(),
            state: "completed".into(),
            requeue_reason: None,
            exit: None,
            nodes: vec![HostSlots {
                host: node.into(),
                slots: cores,
            }],
            cores: vec![cores],
            submitted_ms: start,
            started_ms: Some(start),
            ended_ms: end,
            running_ms: end - start,
            suspended_ms: 0,
            core_ms: u64::from(cores) * (end - start),
            requeues: 0,
            requeue_reasons: vec![],
        }
    }

    #[test]
    fn report_sums_core_hours_spreads_days_and_takes_percentiles() {
        let d = HarvestData {
            since_ms: 0,
            now_ms: 3 * DAY_MS,
            // 2 cores for 2 h across noon UTC of day 1: 2 core-hours in each night.
            attempts: vec![attempt(
                "a",
                2,
                DAY_MS + 11 * 3_600_000,
                DAY_MS + 13 * 3_600_000,
            )],
            nodes: vec![NodeHarvest {
                node: "b".into(),
                suspensions: 2,
                vacates: 1,
                release_us: vec![3000, 1000, 2000, 100_000],
                hours: vec![(0, 7_200_000, 3_600_000)],
            }],
        };
        let r = build_report(&d, &|_| 0);
        assert_eq!(r.pcs.len(), 2);
        assert!((r.pcs[0].core_hours - 4.0).abs() < 1e-9);
        assert_eq!(r.pcs[1].suspensions, 2);
        assert_eq!(r.pcs[1].release_p50_ms, Some(2.0));
        assert_eq!(r.pcs[1].release_p99_ms, Some(100.0));
        assert!((r.pcs[1].offered_core_hours - 2.0).abs() < 1e-9);
        assert_eq!(r.nights.len(), 2);
        assert_eq!(r.nights[0].0, "1970-01-01");
        assert_eq!(r.nights[1].0, "1970-01-02");
        assert!((r.nights[0].1[0] - 2.0).abs() < 1e-9);
        assert!((r.nights[1].1[0] - 2.0).abs() < 1e-9);
        // A local offset of +2 h moves the whole run past local noon: the night of day 2.
        let r = build_report(&d, &|_| 7200);
        assert_eq!(r.nights.len(), 1);
        assert_eq!(r.nights[0].0, "1970-01-02");
        // A run across local midnight is one night, the evening's.
        let mut d = d;
        d.attempts = vec![attempt("a", 2, DAY_MS - 3_600_000, DAY_MS + 3_600_000)];
        let r = build_report(&d, &|_| 0);
        assert_eq!(r.nights.len(), 1);
        assert_eq!(r.nights[0].0, "1970-01-01");
        assert!((r.nights[0].1[0] - 4.0).abs() < 1e-9);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse_age("3x").unwrap_err().contains("'24h'"));
        assert_eq!(parse_age("24h").unwrap(), 86_400_000);
        assert_eq!(parse_age("7d").unwrap(), 7 * DAY_MS);
        assert!(parse_size("640").is_err());
        assert!(parse_size("50x400").is_err());
        assert_eq!(parse_size("640x400").unwrap(), (640, 400));
        assert!(parse_state("running").is_err());
        assert_eq!(parse_state("requeued").unwrap(), "requeued");
    }
}
