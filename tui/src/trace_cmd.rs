//! `graze trace JOB -o trace.json [--otf2 DIR] [--summary] [--attempt N]`: fetch a traced
//! run's files from the scheduler ([`fetch`]), merge them on the scheduler's clock
//! (`graze_trace::merge`) and write the Chrome trace-event JSON (Perfetto, `chrome://tracing`),
//! OTF2 (Vampir) and the per-rank summary.

use crate::client::{Client, ClientError};
use anyhow::{Context, Result};
use graze_proto::{ClientReply, ClientRequest, JobRef, CLOCK_FILE};
use graze_trace::{ClockSample, NodeInput};
use std::path::PathBuf;

/// `graze trace`'s arguments.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct TraceArgs {
    /// The job (or ARRAY.INDEX) submitted with `--trace`.
    #[arg(value_name = "JOB", value_parser = crate::batch::parse_job_ref, allow_negative_numbers = true)]
    pub job: JobRef,
    /// Write the merged trace as Chrome trace-event JSON (open it in Perfetto or
    /// chrome://tracing); `-` for stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also write OTF2 (for Vampir) into this directory, through Debian's libotf2.
    #[arg(long, value_name = "DIR")]
    pub otf2: Option<PathBuf>,
    /// Print a table per rank: time in each MPI call, bytes sent, and the slowest rank per
    /// collective.
    #[arg(long)]
    pub summary: bool,
    /// Which run (1 is the first) [default: the latest with a trace].
    #[arg(long, value_name = "N")]
    pub attempt: Option<u64>,
}

/// The stored files of a traced run, per node, as `graze_trace::merge` takes them: each
/// node's rank files and its clock samples (`clock.json`, parsed here; a bad one is an error
/// naming the node).
pub async fn fetch(client: &Client, job: JobRef, attempt: Option<u64>) -> Result<Vec<NodeInput>> {
    let (nodes, _) = fetch_attempt(client, job, attempt).await?;
    Ok(nodes)
}

/// [`fetch`], and the attempt the files belong to.
pub async fn fetch_attempt(
    client: &Client,
    job: JobRef,
    attempt: Option<u64>,
) -> Result<(Vec<NodeInput>, u64)> {
    let mut replies = client
        .open(&ClientRequest::Trace { job, attempt })
        .await
        .with_context(|| format!("asking for the trace of job {job}"))?;
    let mut files: Vec<(String, String, Vec<u8>)> = Vec::new();
    let end = loop {
        match replies.next().await {
            Ok(Some(ClientReply::TraceFile { node, name, hex })) => {
                let bytes = hex::decode(&hex).map_err(|e| {
                    anyhow::anyhow!(
                        "the scheduler sent a bad chunk of '{name}' of node '{node}': {e}"
                    )
                })?;
                match files.last_mut() {
                    Some((n, f, b)) if *n == node && *f == name => b.extend_from_slice(&bytes),
                    _ => files.push((node, name, bytes)),
                }
            }
            Ok(Some(ClientReply::TraceEnd { attempt, .. })) => break attempt,
            Ok(Some(other)) => {
                return Err(ClientError::Unexpected {
                    request: "trace",
                    reply: crate::client::reply_name(&other),
                }
                .into())
            }
            Ok(None) => return Err(ClientError::NoAnswer { request: "trace" }.into()),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("the trace of job {job}"))),
        }
    };
    Ok((group(files)?, end))
}

/// Files per node; `clock.json` becomes the node's samples.
pub fn group(files: Vec<(String, String, Vec<u8>)>) -> Result<Vec<NodeInput>> {
    let mut nodes: Vec<NodeInput> = Vec::new();
    for (node, name, bytes) in files {
        let i = match nodes.iter().position(|n| n.node == node) {
            Some(i) => i,
            None => {
                nodes.push(NodeInput {
                    node: node.clone(),
                    ..Default::default()
                });
                nodes.len() - 1
            }
        };
        if name == CLOCK_FILE {
            let clock: Vec<ClockSample> = serde_json::from_slice(&bytes).with_context(|| {
                format!("the clock samples ({CLOCK_FILE}) of node '{node}' are not readable")
            })?;
            nodes[i].clock = clock;
        } else {
            nodes[i].files.push((name, bytes));
        }
    }
    Ok(nodes)
}

/// `graze trace`.
pub async fn run(client: &Client, args: TraceArgs) -> Result<()> {
    use std::io::Write;
    if args.output.is_none() && args.otf2.is_none() && !args.summary {
        anyhow::bail!(
            "say what to write: -o trace.json (Perfetto), --otf2 DIR (Vampir) or --summary"
        );
    }
    let (nodes, attempt) = fetch_attempt(client, args.job, args.attempt).await?;
    let trace = graze_trace::merge(&nodes)
        .with_context(|| format!("merging the trace of job {} attempt {attempt}", args.job))?;
    let mut err = std::io::stderr().lock();
    for w in &trace.warnings {
        let _ = writeln!(err, "graze trace: {w}");
    }
    let worst = trace.nodes.iter().map(|n| n.error_ns).max().unwrap_or(0);
    let _ = writeln!(
        err,
        "job {} attempt {attempt}: {} ranks on {} nodes, clock error bound {}",
        args.job,
        trace.ranks.len(),
        trace.nodes.len(),
        graze_trace::summary::human_ns(worst)
    );
    drop(err);
    if let Some(out) = &args.output {
        if out.as_os_str() == "-" {
            let mut o = std::io::stdout().lock();
            graze_trace::chrome::write(&trace, &mut o).context("writing the trace to stdout")?;
            o.flush()?;
        } else {
            let f = std::fs::File::create(out)
                .with_context(|| format!("creating '{}'", out.display()))?;
            let mut w = std::io::BufWriter::new(f);
            graze_trace::chrome::write(&trace, &mut w)
                .and_then(|()| w.flush())
                .with_context(|| format!("writing '{}'", out.display()))?;
        }
    }
    if let Some(dir) = &args.otf2 {
        graze_trace::otf2::write(&trace, dir)
            .with_context(|| format!("writing OTF2 into '{}'", dir.display()))?;
    }
    if args.summary {
        crate::print(&graze_trace::summary::Summary::of(&trace).to_string())?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn files_are_grouped_per_node_with_their_clock() {
        let files = vec![
            ("a".into(), "rank-0.gzt".into(), vec![1]),
            (
                "a".into(),
                CLOCK_FILE.into(),
                br#"[{"local_ns":1,"offset_ns":2,"rtt_ns":3}]"#.to_vec(),
            ),
            ("b".into(), "rank-1.gzt".into(), vec![2]),
        ];
        let nodes = group(files).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].clock.len(), 1);
        assert_eq!(nodes[0].files.len(), 1);
        assert!(nodes[1].clock.is_empty());
        let bad = vec![("a".into(), CLOCK_FILE.into(), b"{".to_vec())];
        let e = format!("{:#}", group(bad).unwrap_err());
        assert!(e.contains("clock samples (clock.json) of node 'a'"), "{e}");
    }
}
