//! Durable scheduler state in an embedded database (redb, `STATE/graze.redb`): jobs with their
//! specs, states and requeue history, the node roster, and each job's output index.
//! Every write is one transaction, committed (fsynced) before the driver acknowledges it.

use crate::core::JobRecord;
use anyhow::{Context, Result};
use graze_proto::{JobId, NodeInfo};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::Path;

const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
const OUTPUT: TableDefinition<u64, &[u8]> = TableDefinition::new("output_index");
/// Nodes an admin drained (the key alone; absent: not drained).
const DRAINED: TableDefinition<&str, u8> = TableDefinition::new("drained");
/// Per node: the agent instance and the highest job-message sequence number applied.
const SEQS: TableDefinition<&str, &[u8]> = TableDefinition::new("agent_seqs");

/// Where a job's output is and what it holds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputIndex {
    /// Output file, relative to the state dir.
    pub file: String,
    /// Lines stored.
    pub lines: u64,
    /// Lines per rank (`None`: unlabelled lines).
    pub per_rank: Vec<(Option<u32>, u64)>,
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

impl Db {
    pub(crate) fn open(path: &Path) -> Result<Db> {
        let db = Database::create(path)
            .with_context(|| format!("opening database {}", path.display()))?;
        let w = db.begin_write()?;
        {
            w.open_table(JOBS)?;
            w.open_table(NODES)?;
            w.open_table(DRAINED)?;
            w.open_table(OUTPUT)?;
            w.open_table(SEQS)?;
        }
        w.commit()?;
        Ok(Db { db })
    }

    pub(crate) fn load(&self) -> Result<Loaded> {
        let r = self.db.begin_read()?;
        let mut jobs = Vec::new();
        for e in r.open_table(JOBS)?.iter()? {
            let (k, v) = e?;
            let rec: JobRecord = serde_json::from_slice(v.value())
                .with_context(|| format!("job {} in the database is unreadable", k.value()))?;
            jobs.push(rec);
        }
        let mut nodes = Vec::new();
        for e in r.open_table(NODES)?.iter()? {
            let (k, v) = e?;
            let info: NodeInfo = serde_json::from_slice(v.value())
                .with_context(|| format!("node {} in the database is unreadable", k.value()))?;
            nodes.push(info);
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
    ) -> Result<()> {
        if jobs.is_empty() && nodes.is_empty() && outputs.is_empty() && seqs.is_empty() {
            return Ok(());
        }
        let w = self.db.begin_write()?;
        {
            let mut t = w.open_table(JOBS)?;
            for j in jobs {
                t.insert(j.id.0, serde_json::to_vec(j)?.as_slice())?;
            }
            let mut t = w.open_table(NODES)?;
            let mut d = w.open_table(DRAINED)?;
            for (n, drained) in nodes {
                t.insert(n.name.as_str(), serde_json::to_vec(n)?.as_slice())?;
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
        }
        w.commit().context("committing to the database")?;
        Ok(())
    }
}
