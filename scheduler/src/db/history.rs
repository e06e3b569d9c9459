//! History tables: one row per ended attempt (`attempts`), per owner event on a node
//! (`owner_events`: suspensions, vacates, the agent's release latencies) and per node and
//! hour of usage (`usage`: offered and used core-ms). Keys of the first two are a sequence
//! (the last key + 1, assigned in the writing transaction); rows are this module's serde
//! types. Rows older than `history_days` are pruned by [`super::Db::prune_history`].

use super::rows::{ExitRow, PlacementRow};
use crate::core::{AttemptOutcome, AttemptRecord, OwnerEventKind, Placement};
use graze_proto::{JobId, JobState};
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

pub(super) const ATTEMPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("attempts");
pub(super) const OWNER_EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("owner_events");
/// Key: (node, start of the hour in ms since the Unix epoch).
pub(super) const USAGE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("usage");

/// An attempt as stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct AttemptRow {
    pub(crate) job: u64,
    pub(crate) attempt: u64,
    pub(crate) user: String,
    pub(crate) name: String,
    /// The final state's name, or `requeued`.
    pub(crate) state: String,
    #[serde(default)]
    pub(crate) requeue_reason: Option<String>,
    pub(crate) exit: Option<ExitRow>,
    pub(crate) nodes: Vec<PlacementRow>,
    pub(crate) submitted_ms: u64,
    pub(crate) started_ms: Option<u64>,
    pub(crate) ended_ms: u64,
    pub(crate) running_ms: u64,
    pub(crate) suspended_ms: u64,
    pub(crate) requeues: u32,
    #[serde(default)]
    pub(crate) requeue_reasons: Vec<String>,
}

impl From<&AttemptRecord> for AttemptRow {
    fn from(r: &AttemptRecord) -> AttemptRow {
        let (state, requeue_reason) = match &r.outcome {
            AttemptOutcome::Final(s) => (s.to_string(), None),
            AttemptOutcome::Requeued(why) => ("requeued".to_string(), Some(why.clone())),
        };
        AttemptRow {
            job: r.job.0,
            attempt: r.attempt,
            user: r.user.clone(),
            name: r.name.clone(),
            state,
            requeue_reason,
            exit: r.exit.map(Into::into),
            nodes: r
                .nodes
                .iter()
                .map(|p| PlacementRow {
                    host: p.host.clone(),
                    ranks: p.ranks,
                    cores: p.cores,
                })
                .collect(),
            submitted_ms: r.submitted_ms,
            started_ms: r.started_ms,
            ended_ms: r.ended_ms,
            running_ms: r.running_ms,
            suspended_ms: r.suspended_ms,
            requeues: r.requeues,
            requeue_reasons: r.requeue_reasons.clone(),
        }
    }
}

impl AttemptRow {
    /// The core's record; `None` for a state name this version does not know.
    pub(crate) fn record(self) -> Option<AttemptRecord> {
        let outcome = if self.state == "requeued" {
            AttemptOutcome::Requeued(self.requeue_reason.unwrap_or_default())
        } else {
            AttemptOutcome::Final(self.state.parse::<JobState>().ok()?)
        };
        Some(AttemptRecord {
            job: JobId(self.job),
            attempt: self.attempt,
            user: self.user,
            name: self.name,
            outcome,
            exit: self.exit.map(Into::into),
            nodes: self
                .nodes
                .into_iter()
                .map(|p| Placement {
                    host: p.host,
                    ranks: p.ranks,
                    cores: p.cores,
                })
                .collect(),
            submitted_ms: self.submitted_ms,
            started_ms: self.started_ms,
            ended_ms: self.ended_ms,
            running_ms: self.running_ms,
            suspended_ms: self.suspended_ms,
            requeues: self.requeues,
            requeue_reasons: self.requeue_reasons,
        })
    }
}

/// An owner event on a node, as stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum OwnerEventRow {
    /// A job suspended because of this node.
    Suspend { node: String, job: u64, at_ms: u64 },
    /// A job vacated because of this node.
    Vacate { node: String, job: u64, at_ms: u64 },
    /// The agent's owner-release latency (µs).
    Release {
        node: String,
        latency_us: u64,
        at_ms: u64,
    },
}

impl OwnerEventRow {
    /// From the core's owner event.
    pub(crate) fn from_core(node: String, kind: OwnerEventKind, job: JobId, at_ms: u64) -> Self {
        match kind {
            OwnerEventKind::Suspend => OwnerEventRow::Suspend {
                node,
                job: job.0,
                at_ms,
            },
            OwnerEventKind::Vacate => OwnerEventRow::Vacate {
                node,
                job: job.0,
                at_ms,
            },
        }
    }

    /// When it happened.
    pub(crate) fn at_ms(&self) -> u64 {
        match self {
            OwnerEventRow::Suspend { at_ms, .. }
            | OwnerEventRow::Vacate { at_ms, .. }
            | OwnerEventRow::Release { at_ms, .. } => *at_ms,
        }
    }
}

/// One node's usage in one hour, as stored (core-ms).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct UsageRow {
    pub(crate) offered_core_ms: u64,
    pub(crate) used_core_ms: u64,
}

/// What one commit adds to the history tables.
#[derive(Default, Debug)]
pub(crate) struct HistoryWrite {
    pub(crate) attempts: Vec<AttemptRecord>,
    pub(crate) events: Vec<OwnerEventRow>,
    /// Usage to add to each (node, hour) bucket.
    pub(crate) usage: Vec<((String, u64), UsageRow)>,
}

impl HistoryWrite {
    pub(crate) fn is_empty(&self) -> bool {
        self.attempts.is_empty() && self.events.is_empty() && self.usage.is_empty()
    }
}

/// Everything of the history tables since a time.
#[derive(Default, Debug)]
pub(crate) struct HistoryRead {
    pub(crate) attempts: Vec<AttemptRecord>,
    pub(crate) events: Vec<OwnerEventRow>,
    pub(crate) usage: Vec<((String, u64), UsageRow)>,
}

fn next_key(t: &redb::Table<'_, u64, &[u8]>) -> anyhow::Result<u64> {
    Ok(t.last()?.map_or(0, |(k, _)| k.value() + 1))
}

/// Add `h` to the history tables of the transaction `w`.
pub(super) fn write(w: &redb::WriteTransaction, h: &HistoryWrite) -> anyhow::Result<()> {
    let mut t = w.open_table(ATTEMPTS)?;
    for (k, a) in (next_key(&t)?..).zip(&h.attempts) {
        t.insert(k, serde_json::to_vec(&AttemptRow::from(a))?.as_slice())?;
    }
    let mut t = w.open_table(OWNER_EVENTS)?;
    for (k, e) in (next_key(&t)?..).zip(&h.events) {
        t.insert(k, serde_json::to_vec(e)?.as_slice())?;
    }
    let mut t = w.open_table(USAGE)?;
    for ((node, hour), add) in &h.usage {
        let old: UsageRow = t
            .get((node.as_str(), *hour))?
            .and_then(|v| serde_json::from_slice(v.value()).ok())
            .unwrap_or_default();
        let new = UsageRow {
            offered_core_ms: old.offered_core_ms.saturating_add(add.offered_core_ms),
            used_core_ms: old.used_core_ms.saturating_add(add.used_core_ms),
        };
        t.insert((node.as_str(), *hour), serde_json::to_vec(&new)?.as_slice())?;
    }
    Ok(())
}

/// Rows of the history tables from `since_ms` on (usage: hours ending after it). Unreadable
/// rows are skipped.
pub(super) fn read(r: &redb::ReadTransaction, since_ms: u64) -> anyhow::Result<HistoryRead> {
    let mut out = HistoryRead::default();
    for e in r.open_table(ATTEMPTS)?.iter()? {
        let (_, v) = e?;
        let Ok(row) = serde_json::from_slice::<AttemptRow>(v.value()) else {
            continue;
        };
        if row.ended_ms >= since_ms {
            out.attempts.extend(row.record());
        }
    }
    for e in r.open_table(OWNER_EVENTS)?.iter()? {
        let (_, v) = e?;
        if let Ok(row) = serde_json::from_slice::<OwnerEventRow>(v.value()) {
            if row.at_ms() >= since_ms {
                out.events.push(row);
            }
        }
    }
    for e in r.open_table(USAGE)?.iter()? {
        let (k, v) = e?;
        let (node, hour) = k.value();
        if hour.saturating_add(HOUR_MS) <= since_ms {
            continue;
        }
        if let Ok(row) = serde_json::from_slice::<UsageRow>(v.value()) {
            out.usage.push(((node.to_string(), hour), row));
        }
    }
    Ok(out)
}

/// One hour in ms: the usage buckets' width.
pub(crate) const HOUR_MS: u64 = 3_600_000;

/// Delete rows older than `cutoff_ms`; how many went.
pub(super) fn prune(w: &redb::WriteTransaction, cutoff_ms: u64) -> anyhow::Result<usize> {
    let mut gone = 0;
    let mut t = w.open_table(ATTEMPTS)?;
    let old: Vec<u64> = t
        .iter()?
        .filter_map(Result::ok)
        .filter(|(_, v)| {
            serde_json::from_slice::<AttemptRow>(v.value()).map_or(true, |r| r.ended_ms < cutoff_ms)
        })
        .map(|(k, _)| k.value())
        .collect();
    for k in old {
        t.remove(k)?;
        gone += 1;
    }
    let mut t = w.open_table(OWNER_EVENTS)?;
    let old: Vec<u64> = t
        .iter()?
        .filter_map(Result::ok)
        .filter(|(_, v)| {
            serde_json::from_slice::<OwnerEventRow>(v.value())
                .map_or(true, |r| r.at_ms() < cutoff_ms)
        })
        .map(|(k, _)| k.value())
        .collect();
    for k in old {
        t.remove(k)?;
        gone += 1;
    }
    let mut t = w.open_table(USAGE)?;
    let old: Vec<(String, u64)> = t
        .iter()?
        .filter_map(Result::ok)
        .map(|(k, _)| {
            let (n, h) = k.value();
            (n.to_string(), h)
        })
        .filter(|(_, h)| h.saturating_add(HOUR_MS) <= cutoff_ms)
        .collect();
    for (n, h) in old {
        t.remove((n.as_str(), h))?;
        gone += 1;
    }
    Ok(gone)
}
