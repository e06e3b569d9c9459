//! Per-job output files: `JOBS/<id>/output.jsonl`, one JSON line per output line: the
//! [`LogLine`] and the attempt (run number) it belongs to, `{"attempt":2,"rank":0,...}`.
//! Lines written before attempts were recorded have no `attempt` and read as attempt 1.

use crate::db::OutputIndex;
use anyhow::{Context, Result};
use graze_proto::{JobId, LogLine};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// One stored line.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredLine {
    /// The run it came from: 1 for the first.
    #[serde(default = "first_attempt")]
    pub(crate) attempt: u64,
    #[serde(flatten)]
    pub(crate) line: LogLine,
}

fn first_attempt() -> u64 {
    1
}

/// The attempts that have lines, in order.
pub(crate) fn attempts_of(lines: &[StoredLine]) -> Vec<u64> {
    let mut v: Vec<u64> = lines.iter().map(|l| l.attempt).collect();
    v.sort_unstable();
    v.dedup();
    v
}

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

    /// Append a line of attempt `attempt` (0, a job never started, is stored as 1).
    pub(crate) fn append(&mut self, job: JobId, attempt: u64, line: &LogLine) -> Result<()> {
        let attempt = attempt.max(1);
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
            let stored = StoredLine {
                attempt,
                line: line.clone(),
            };
            serde_json::to_writer(&mut *w, &stored)?;
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
        match ix.attempts.iter_mut().find(|(a, _)| *a == attempt) {
            Some((_, n)) => *n += 1,
            None => {
                ix.attempts.push((attempt, 1));
                ix.attempts.sort();
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

    /// The attempts of a job that have lines, as far as this process has seen (the index;
    /// [`Store::read`] knows them all).
    pub(crate) fn known_attempts(&self, job: JobId) -> Vec<u64> {
        self.index
            .get(&job)
            .map(|ix| ix.attempts.iter().map(|a| a.0).collect())
            .unwrap_or_default()
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

    /// Every stored line of a job, in order, each with its attempt.
    pub(crate) fn read(&mut self, job: JobId) -> Result<Vec<StoredLine>> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use graze_proto::Stream;

    fn line(rank: Option<u32>, text: &str) -> LogLine {
        LogLine {
            rank,
            stream: Stream::Stdout,
            line: text.into(),
        }
    }

    #[test]
    fn lines_carry_their_attempt_and_old_lines_are_attempt_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let job = JobId(7);
        // A state dir from before attempts: lines without one, and a torn last line.
        let p = dir.path().join("7");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(
            p.join("output.jsonl"),
            "{\"rank\":0,\"stream\":\"stdout\",\"line\":\"old\"}\n{\"rank\":",
        )
        .unwrap();
        let got = s.read(job).unwrap();
        assert_eq!(
            got,
            vec![StoredLine {
                attempt: 1,
                line: line(Some(0), "old")
            }]
        );
        // The torn line is cut off by a newline first, as a restarted scheduler would see it.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(p.join("output.jsonl"))
            .unwrap();
        f.write_all(b"\n").unwrap();
        s.append(job, 1, &line(Some(1), "one")).unwrap();
        s.append(job, 2, &line(Some(0), "two")).unwrap();
        s.append(job, 2, &line(None, "two-b")).unwrap();
        let got = s.read(job).unwrap();
        let texts: Vec<(u64, &str)> = got
            .iter()
            .map(|l| (l.attempt, l.line.line.as_str()))
            .collect();
        assert_eq!(texts, [(1, "old"), (1, "one"), (2, "two"), (2, "two-b")]);
        assert_eq!(attempts_of(&got), [1, 2]);
        let ix = s.index(job).unwrap();
        assert_eq!(ix.attempts, [(1, 1), (2, 2)]);
        assert_eq!(s.known_attempts(job), [1, 2]);
        // On disk each line names its attempt.
        let raw = std::fs::read_to_string(p.join("output.jsonl")).unwrap();
        assert!(
            raw.contains("{\"attempt\":2,\"rank\":0,\"stream\":\"stdout\",\"line\":\"two\"}"),
            "{raw}"
        );
    }

    #[test]
    fn old_indexes_read_without_attempts() {
        let ix: OutputIndex =
            serde_json::from_str(r#"{"file":"jobs/1/output.jsonl","lines":3,"per_rank":[[0,3]]}"#)
                .unwrap();
        assert!(ix.attempts.is_empty());
    }
}
