//! Per-job output files: `JOBS/<id>/output.jsonl`, one JSON [`LogLine`] per line.

use crate::db::OutputIndex;
use anyhow::{Context, Result};
use graze_proto::{JobId, LogLine};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

pub(crate) struct Store {
    dir: PathBuf,
    open: HashMap<JobId, BufWriter<File>>,
    index: HashMap<JobId, OutputIndex>,
}

impl Store {
    pub(crate) fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Store {
            dir: dir.to_owned(),
            open: HashMap::new(),
            index: HashMap::new(),
        })
    }

    fn path(&self, job: JobId) -> PathBuf {
        self.dir.join(job.to_string()).join("output.jsonl")
    }

    pub(crate) fn append(&mut self, job: JobId, line: &LogLine) -> Result<()> {
        if !self.open.contains_key(&job) {
            let p = self.path(job);
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .with_context(|| format!("opening {}", p.display()))?;
            self.open.insert(job, BufWriter::new(f));
        }
        if let Some(w) = self.open.get_mut(&job) {
            serde_json::to_writer(&mut *w, line)?;
            w.write_all(b"\n")?;
        }
        let ix = self.index.entry(job).or_insert_with(|| OutputIndex {
            file: format!("jobs/{job}/output.jsonl"),
            ..OutputIndex::default()
        });
        ix.lines += 1;
        match ix.per_rank.iter_mut().find(|(r, _)| *r == line.rank) {
            Some((_, n)) => *n += 1,
            None => {
                ix.per_rank.push((line.rank, 1));
                ix.per_rank.sort();
            }
        }
        Ok(())
    }

    /// Hand buffered lines to the kernel, so a crash of this process loses none.
    pub(crate) fn flush_all(&mut self) {
        for w in self.open.values_mut() {
            let _ = w.flush();
        }
    }

    /// The output index of a job.
    pub(crate) fn index(&self, job: JobId) -> Option<OutputIndex> {
        self.index.get(&job).cloned()
    }

    /// Indexes read back from the database at start.
    pub(crate) fn restore_index(&mut self, ix: Vec<(JobId, OutputIndex)>) {
        self.index.extend(ix);
    }

    pub(crate) fn close(&mut self, job: JobId) {
        if let Some(mut w) = self.open.remove(&job) {
            let _ = w.flush();
        }
    }

    pub(crate) fn read(&mut self, job: JobId) -> Result<Vec<LogLine>> {
        if let Some(w) = self.open.get_mut(&job) {
            w.flush()?;
        }
        let p = self.path(job);
        let f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("opening {}", p.display())),
        };
        let mut out = Vec::new();
        for l in BufReader::new(f).lines() {
            let l = l?;
            // A torn last line (crash mid-write) is skipped, not fatal.
            if let Ok(line) = serde_json::from_str(&l) {
                out.push(line);
            }
        }
        Ok(out)
    }
}
