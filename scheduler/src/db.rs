//! Durable scheduler state in an embedded database (redb, `STATE/graze.redb`): jobs with their
//! specs, states and requeue history, the node roster, and each job's output index.
//! Every write is one transaction, committed (fsynced) before the driver acknowledges it.
//!
//! Rows are this module's own serde types ([`JobRow`], [`NodeRow`], in `rows`), converted from and to the
//! core's types at this boundary, so neither a core change nor a wire change silently changes
//! what is on disk. The database records its [`SCHEMA_VERSION`]; a database of another
//! version is refused with an error naming both, never misread.

use crate::core::JobRecord;
use anyhow::{bail, Context, Result};
use graze_proto::{JobId, NodeInfo};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub(crate) mod history;
mod rows;
use rows::{JobRow, NodeRow};

/// Version of the rows' layout. Bump it when a row type changes shape.
pub(crate) const SCHEMA_VERSION: u32 = 3;

/// Older versions this one reads as they are and upgrades in place: version 3 only added
/// spec fields that default when absent, and state variants version 2 never wrote.
const UPGRADES_FROM: &[u32] = &[2];

const META: TableDefinition<&str, u32> = TableDefinition::new("meta");
const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
const OUTPUT: TableDefinition<u64, &[u8]> = TableDefinition::new("output_index");
/// Nodes an admin drained (the key alone; absent: not drained).
const DRAINED: TableDefinition<&str, u8> = TableDefinition::new("drained");
/// Per node: the agent instance and the highest job-message sequence number applied.
const SEQS: TableDefinition<&str, &[u8]> = TableDefinition::new("agent_seqs");

/// Where a job's output is and what it holds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct OutputIndex {
    /// Output file, relative to the state dir.
    pub(crate) file: String,
    /// Lines stored.
    pub(crate) lines: u64,
    /// Lines per rank (`None`: unlabelled lines).
    pub(crate) per_rank: Vec<(Option<u32>, u64)>,
    /// Lines per attempt (run number), in order; absent in indexes written before attempts
    /// were recorded (their lines are attempt 1's).
    #[serde(default)]
    pub(crate) attempts: Vec<(u64, u64)>,
}

pub(crate) struct Db {
    db: Database,
}

/// Everything read back at start.
pub(crate) struct Loaded {
    pub(crate) jobs: Vec<JobRecord>,
    pub(crate) nodes: Vec<NodeInfo>,
    pub(crate) drained: Vec<String>,
    pub(crate) outputs: Vec<(JobId, OutputIndex)>,
    pub(crate) seqs: Vec<(String, (String, u64))>,
}

/// True when a [`Db::write`] of these would change nothing (and so commits nothing).
pub(crate) fn nothing_to_write(
    jobs: &[JobRecord],
    nodes: &[(NodeInfo, bool)],
    outputs: &[(JobId, OutputIndex)],
    seqs: &[(String, (String, u64))],
    hist: &history::HistoryWrite,
) -> bool {
    jobs.is_empty() && nodes.is_empty() && outputs.is_empty() && seqs.is_empty() && hist.is_empty()
}

impl Db {
    /// Open (or create) the database, refusing one written with another schema version.
    pub(crate) fn open(path: &Path) -> Result<Db> {
        let db = Database::create(path)
            .with_context(|| format!("opening database {}", path.display()))?;
        let found = {
            let r = db.begin_read()?;
            match r.open_table(META) {
                Ok(t) => t.get("schema")?.map(|v| v.value()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(e.into()),
            }
        };
        let w = db.begin_write()?;
        {
            let mut meta = w.open_table(META)?;
            match found {
                Some(v) if v == SCHEMA_VERSION => {}
                Some(v) if UPGRADES_FROM.contains(&v) => {
                    meta.insert("schema", SCHEMA_VERSION)?;
                }
                Some(v) => bail!(schema_error(path, &v.to_string())),
                None => {
                    // No version: a new database, or one from before versions were recorded.
                    let jobs_exist = w.open_table(JOBS)?.len()? > 0;
                    let nodes_exist = w.open_table(NODES)?.len()? > 0;
                    if jobs_exist || nodes_exist {
                        bail!(schema_error(path, "none (an older graze)"));
                    }
                    meta.insert("schema", SCHEMA_VERSION)?;
                }
            }
            w.open_table(JOBS)?;
            w.open_table(NODES)?;
            w.open_table(DRAINED)?;
            w.open_table(OUTPUT)?;
            w.open_table(SEQS)?;
            w.open_table(history::ATTEMPTS)?;
            w.open_table(history::OWNER_EVENTS)?;
            w.open_table(history::USAGE)?;
        }
        w.commit()?;
        Ok(Db { db })
    }

    pub(crate) fn load(&self) -> Result<Loaded> {
        let r = self.db.begin_read()?;
        let mut jobs = Vec::new();
        for e in r.open_table(JOBS)?.iter()? {
            let (k, v) = e?;
            let row: JobRow = serde_json::from_slice(v.value())
                .with_context(|| format!("job {} in the database is unreadable", k.value()))?;
            jobs.push(row.into());
        }
        let mut nodes = Vec::new();
        for e in r.open_table(NODES)?.iter()? {
            let (k, v) = e?;
            let row: NodeRow = serde_json::from_slice(v.value())
                .with_context(|| format!("node {} in the database is unreadable", k.value()))?;
            nodes.push(row.into());
        }
        let mut drained = Vec::new();
        for e in r.open_table(DRAINED)?.iter()? {
            drained.push(e?.0.value().to_string());
        }
        let mut outputs = Vec::new();
        for e in r.open_table(OUTPUT)?.iter()? {
            let (k, v) = e?;
            if let Ok(ix) = serde_json::from_slice(v.value()) {
                outputs.push((JobId(k.value()), ix));
            }
        }
        let mut seqs = Vec::new();
        for e in r.open_table(SEQS)?.iter()? {
            let (k, v) = e?;
            if let Ok(x) = serde_json::from_slice(v.value()) {
                seqs.push((k.value().to_string(), x));
            }
        }
        Ok(Loaded {
            jobs,
            nodes,
            drained,
            outputs,
            seqs,
        })
    }

    /// Write jobs, nodes (with their drain mark) and output indexes in one durable transaction.
    pub(crate) fn write(
        &self,
        jobs: &[JobRecord],
        nodes: &[(NodeInfo, bool)],
        outputs: &[(JobId, OutputIndex)],
        seqs: &[(String, (String, u64))],
        hist: &history::HistoryWrite,
    ) -> Result<()> {
        if nothing_to_write(jobs, nodes, outputs, seqs, hist) {
            return Ok(());
        }
        let w = self.db.begin_write()?;
        {
            let mut t = w.open_table(JOBS)?;
            for j in jobs {
                t.insert(j.id.0, serde_json::to_vec(&JobRow::from(j))?.as_slice())?;
            }
            let mut t = w.open_table(NODES)?;
            let mut d = w.open_table(DRAINED)?;
            for (n, drained) in nodes {
                let row = NodeRow::from(n);
                t.insert(n.name.as_str(), serde_json::to_vec(&row)?.as_slice())?;
                if *drained {
                    d.insert(n.name.as_str(), 1)?;
                } else {
                    d.remove(n.name.as_str())?;
                }
            }
            let mut t = w.open_table(OUTPUT)?;
            for (id, ix) in outputs {
                t.insert(id.0, serde_json::to_vec(ix)?.as_slice())?;
            }
            let mut t = w.open_table(SEQS)?;
            for (node, x) in seqs {
                t.insert(node.as_str(), serde_json::to_vec(x)?.as_slice())?;
            }
            history::write(&w, hist)?;
        }
        w.commit().context("committing to the database")?;
        Ok(())
    }
}

impl Db {
    /// The history rows from `since_ms` on (attempts ended, owner events, usage hours).
    pub(crate) fn read_history(&self, since_ms: u64) -> Result<history::HistoryRead> {
        let r = self.db.begin_read()?;
        history::read(&r, since_ms)
    }

    /// Delete history rows older than `cutoff_ms`, in one transaction; how many went.
    pub(crate) fn prune_history(&self, cutoff_ms: u64) -> Result<usize> {
        let w = self.db.begin_write()?;
        let gone = history::prune(&w, cutoff_ms)?;
        w.commit().context("committing the history prune")?;
        Ok(gone)
    }
}

/// The refusal of a database of another schema version.
fn schema_error(path: &Path, found: &str) -> String {
    format!(
        "the database {} has schema version {found}, this scheduler reads version {SCHEMA_VERSION}: \
         start it with an empty state directory, or run the graze version that wrote it",
        path.display()
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
